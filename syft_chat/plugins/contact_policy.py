"""The built-in contact policy check: blocked senders (and strangers in contacts-only mode)
are refused before anything is stored. See ``syft_chat.features.contacts``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syft_chat.hookspecs import hookimpl

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient
    from syft_chat.features.contacts import ContactPolicy
    from syft_chat.models import ChatMessage


@hookimpl(tryfirst=True)
def chat_accept_message(message: ChatMessage, sender: str, client: SyftChatClient) -> str | None:
    del message
    policy: ContactPolicy = client.contact_policy
    return policy.refuses(sender)
