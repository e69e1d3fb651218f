"""The bridge from the client's listeners to the page's server-sent events.

The client calls its message, status, change and attachment listeners on its notification
thread;
:class:`EventHub` turns each call into one small JSON event and hands it to every open
``/api/events`` stream, each an :class:`asyncio.Queue` on the web server's event loop
(``call_soon_threadsafe``: the listener never waits for a browser). A stream that falls
more than :data:`MAX_BACKLOG` events behind gets a ``resync`` event instead (the page then
reloads what it shows), so a stuck tab cannot grow memory without bound.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from syft_chat.models import Attachment, ChatMessage, MessageStatus
from syft_chat.web.attachments import with_states
from syft_chat.web.payloads import message_json

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient

__all__ = ["HEARTBEAT", "MAX_BACKLOG", "EventHub"]

#: events one stream may have waiting before it is told to resync instead
MAX_BACKLOG = 1000
#: seconds between comment lines on an idle stream (notices a closed tab)
HEARTBEAT = 15.0

_CLOSE = object()


class _Stream:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.overflowed = False

    def put(self, item: object) -> None:  # on the event loop
        if item is _CLOSE:
            self.queue.put_nowait(item)
        elif self.queue.qsize() >= MAX_BACKLOG:
            if not self.overflowed:
                self.overflowed = True
                self.queue.put_nowait({"type": "resync"})
        else:
            self.queue.put_nowait(item)


class EventHub:
    """Listens to one client and fans its notifications out to the open streams."""

    def __init__(self, client: SyftChatClient) -> None:
        self.client = client
        self.me = client.email
        self._streams: set[_Stream] = set()
        self._lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- listeners

    def start(self) -> None:
        """Register the listeners (call once)."""
        self.client.add_message_listener(self._on_message)
        self.client.add_status_listener(self._on_status)
        self.client.add_change_listener(self._on_change)
        self.client.add_attachment_listener(self._on_attachment)

    def close(self) -> None:
        """Remove the listeners and end every open stream."""
        self._closed = True
        self.client.remove_message_listener(self._on_message)
        self.client.remove_status_listener(self._on_status)
        self.client.remove_change_listener(self._on_change)
        self.client.remove_attachment_listener(self._on_attachment)
        self.publish(_CLOSE)

    def _json(self, message: ChatMessage) -> dict[str, Any]:
        [current] = with_states(self.client, [message])
        return message_json(current, self.me)

    def _on_message(self, message: ChatMessage) -> None:
        self.publish({"type": "message", "message": self._json(message)})

    def _on_attachment(self, message: ChatMessage, attachment: Attachment) -> None:
        # the message as stored, states computed: the page replaces its copy
        self.publish(
            {
                "type": "change",
                "change": "attachment_available",
                "actor": message.sender,
                "message": message_json(message, self.me),
            }
        )

    def _on_status(self, msg_id: str, status: MessageStatus, error: str | None) -> None:
        self.publish({"type": "status", "msg_id": msg_id, "status": str(status), "error": error})

    def _on_change(self, change: str, message: ChatMessage, actor: str) -> None:
        self.publish(
            {
                "type": "change",
                "change": change,
                "actor": actor,
                "message": self._json(message),
            }
        )

    # ---------------------------------------------------------------- streams

    def publish(self, event: object) -> None:
        """Hand ``event`` (a JSON-able dict) to every open stream; any thread."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(stream.put, event)
            except RuntimeError:  # that stream's loop is closed: the server stopped
                with self._lock:
                    self._streams.discard(stream)

    async def stream(self) -> AsyncIterator[str]:
        """One ``text/event-stream`` body: a ``ready`` event, then every event as it comes."""
        stream = _Stream(asyncio.get_running_loop())
        with self._lock:
            self._streams.add(stream)
        try:
            yield "retry: 1000\n\n"  # a dropped stream reconnects after 1 s
            yield _frame({"type": "ready", "me": self.me})
            while not self._closed:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), HEARTBEAT)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is _CLOSE:
                    return
                if isinstance(item, dict) and item.get("type") == "resync":
                    stream.overflowed = False
                yield _frame(item)
        finally:
            with self._lock:
                self._streams.discard(stream)

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._streams)


def _frame(event: Any) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
