"""A syft-chat command bot: answers /help, /echo, /time and /whoami.

Installed, it answers every message that starts with ``/`` sent to the
datasite it runs on; other messages are left for the humans.
"""

from __future__ import annotations

from datetime import datetime, timezone

from syft_chat import ChatMessage, SyftChatClient
from syft_chat.bots import CommandBot, command

__all__ = ["EchoBot", "bot"]


class EchoBot(CommandBot):
    """Echo bot: I repeat what you say. Commands start with /."""

    @command
    def echo(self, text: str) -> str:
        """Repeat TEXT back to you."""
        return text or "Usage: /echo TEXT"

    @command(aliases=("now",))
    def time(self) -> str:
        """The current time (UTC) on this datasite."""
        return datetime.now(timezone.utc).isoformat(timespec="seconds")

    @command
    def whoami(self, message: ChatMessage, client: SyftChatClient) -> str:
        """Who you are, as this datasite authenticated you."""
        return f"You are {message.sender}; I am {client.email}."


#: The object the entry point names: one bot, shared by every client in the process.
bot = EchoBot("echo-bot")
