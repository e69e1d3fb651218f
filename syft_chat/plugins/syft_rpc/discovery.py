"""The built-in discovery: datasites in the workspace that publish the chat endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syft_chat.hookspecs import hookimpl
from syft_chat.plugins.syft_rpc.transport import serves_chat

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient


@hookimpl(trylast=True)
def chat_discover_users(client: SyftChatClient) -> list[str]:
    datasites = client.syft.datasites
    if not datasites.is_dir():
        return []
    return [
        entry.name
        for entry in datasites.iterdir()
        if "@" in entry.name and serves_chat(client.syft, client.app_name, entry.name)
    ]
