"""syft-chat's built-in plugins (see ``syft_chat.manager.DEFAULT_PLUGINS``).

They are ordinary plugins, registered through the same function as
third-party ones; read them as examples.
"""
