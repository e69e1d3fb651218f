"""``syft_chat_stateful``: the seed's module name, a thin alias of :mod:`syft_chat`.

``import syft_chat_stateful as syft_chat`` gives the very same module object,
so the seed README's examples run unchanged.
"""

import sys

import syft_chat

sys.modules[__name__] = syft_chat
