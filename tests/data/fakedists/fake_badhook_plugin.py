"""A plugin with a misspelt hook name (test data)."""

from syft_chat import hookimpl


@hookimpl
def chat_mesage_recieved(message):
    pass
