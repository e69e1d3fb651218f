"""Typed contracts between the kernel and its backends (transports and stores).

Backends are classes registered by name through the ``chat_register_transports``
and ``chat_register_stores`` hooks; the client constructs the one it was asked
for with a :class:`BackendContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from .models import ChatMessage, Direction, MessageStatus
from .settings import ChatSettings

if TYPE_CHECKING:
    from syft_core import Client as SyftClient

__all__ = [
    "BackendContext",
    "IncomingHandler",
    "IncomingRequest",
    "MessageStore",
    "Reply",
    "ReplyHandler",
    "StoreFactory",
    "Transport",
    "TransportFactory",
]


@dataclass(frozen=True)
class BackendContext:
    """What a backend is constructed with."""

    email: str
    syft: SyftClient
    app_name: str
    db_path: Path
    settings: ChatSettings


@dataclass(frozen=True)
class IncomingRequest:
    """A request that arrived for this datasite.

    ``sender`` is the identity the *transport* vouches for (for syft-rpc: the
    permission-protected folder the request was written into), never a field
    of the body.
    """

    sender: str
    request_id: str
    body: bytes


@dataclass(frozen=True)
class Reply:
    """The answer to a request: an HTTP-like status code and a body."""

    status_code: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


#: Called by a transport for every incoming request, exactly once per request.
IncomingHandler = Callable[[IncomingRequest], Reply]
#: Called by a transport when the answer to one of our requests arrives:
#: ``(request_id, peer, reply)``.
ReplyHandler = Callable[[str, str, Reply], None]


@runtime_checkable
class Transport(Protocol):
    """Moves request bodies between datasites and answers for the local one."""

    name: ClassVar[str]

    def start(self, on_request: IncomingHandler, on_reply: ReplyHandler) -> None:
        """Begin serving; ``on_request``/``on_reply`` may be called from a background thread."""

    def stop(self) -> None:
        """Stop serving and release every thread and watch. Idempotent."""

    def can_reach(self, recipient: str) -> bool:
        """Whether ``recipient`` publishes the chat endpoint this transport can write to."""

    def send(self, recipient: str, body: bytes, *, request_id: str, expires: datetime) -> None:
        """Write one request for ``recipient``. Returns once it is durably handed over."""


@runtime_checkable
class MessageStore(Protocol):
    """Persists messages. Every method may be called from any thread."""

    name: ClassVar[str]

    def add(
        self,
        message: ChatMessage,
        *,
        direction: Direction,
        peer: str,
        status: MessageStatus,
    ) -> bool:
        """Store ``message``; return ``False`` (and change nothing) if its msg_id exists."""

    def get(self, msg_id: str) -> ChatMessage | None:
        """The stored message with this id, or ``None``."""

    def set_status(self, msg_id: str, status: MessageStatus, *, error: str | None = None) -> None:
        """Record a new delivery status (and the reason, for ``failed``)."""

    def history(
        self,
        *,
        peer: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
    ) -> list[ChatMessage]:
        """The newest ``limit`` matching messages, returned oldest first."""

    def close(self) -> None:
        """Close the database. Idempotent."""


TransportFactory = Callable[[BackendContext], Transport]
StoreFactory = Callable[[BackendContext], MessageStore]
