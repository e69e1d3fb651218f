"""The built-in listener adapters: ``add_message_listener(fn)`` and its siblings register a
tiny plugin implementing one notification hook, per client, like any other plugin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from syft_chat.errors import InvalidMessageError
from syft_chat.hookspecs import hookimpl
from syft_chat.models import Attachment, ChatMessage, MessageStatus

__all__ = [
    "AttachmentListener",
    "ChangeListener",
    "Listeners",
    "MessageListener",
    "StatusListener",
]

MessageListener = Callable[[ChatMessage], Any]
StatusListener = Callable[[str, MessageStatus, "str | None"], Any]
ChangeListener = Callable[[str, ChatMessage, str], Any]
AttachmentListener = Callable[[ChatMessage, Attachment], Any]


class _OnMessage:
    def __init__(self, fn: MessageListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_message_received(self, message: ChatMessage) -> None:
        self.fn(message)


class _OnStatus:
    def __init__(self, fn: StatusListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_message_status_changed(
        self, msg_id: str, status: MessageStatus, error: str | None
    ) -> None:
        self.fn(msg_id, status, error)


class _OnChange:
    def __init__(self, fn: ChangeListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_message_changed(self, message: ChatMessage, change: str, actor: str) -> None:
        self.fn(change, message, actor)


class _OnAttachment:
    def __init__(self, fn: AttachmentListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_attachment_available(self, message: ChatMessage, attachment: Attachment) -> None:
        self.fn(message, attachment)


_ADAPTERS: dict[str, type[Any]] = {
    "message": _OnMessage,
    "status": _OnStatus,
    "change": _OnChange,
    "attachment": _OnAttachment,
}


class Listeners:
    """The listener functions of one client, each registered as its own plugin."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._plugins: dict[tuple[str, int], object] = {}

    def add(self, kind: str, fn: Callable[..., Any]) -> bool:
        """Register ``fn`` for ``kind`` (``message``, ``status`` or ``change``); whether it
        was new (adding the same function twice has no further effect)."""
        if not callable(fn):
            raise InvalidMessageError(f"listener must be callable, got {type(fn).__name__}")
        key = (kind, id(fn))
        if key in self._plugins:
            return False
        plugin = _ADAPTERS[kind](fn)
        name = getattr(fn, "__qualname__", type(fn).__name__)
        self._pm.register(plugin, name=f"{kind}-listener:{name}:{id(fn):x}")
        self._plugins[key] = plugin
        return True

    def remove(self, kind: str, fn: Callable[..., Any]) -> None:
        """Stop calling ``fn``; unknown functions are ignored."""
        plugin = self._plugins.pop((kind, id(fn)), None)
        if plugin is not None and self._pm.is_registered(plugin):
            self._pm.unregister(plugin)
