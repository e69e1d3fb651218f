"""The built-in discovery: the datasites the client's transport can reach."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syft_chat.hookspecs import hookimpl

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient


@hookimpl(trylast=True)
def chat_discover_users(client: SyftChatClient) -> list[str]:
    """Every datasite serving this chat app, as the transport lists them."""
    return client.transport.list_peers()
