"""Typed contracts between the kernel and its backends (transports and stores).

Backends are classes registered by name through the ``chat_register_transports``
and ``chat_register_stores`` hooks; the client constructs the one it was asked
for with a :class:`BackendContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from syft_chat.models import ChatMessage, Direction, MessageStatus
from syft_chat.settings import ChatSettings

if TYPE_CHECKING:
    from syft_core import Client as SyftClient

    from syft_chat.features.contacts import ContactPolicy
    from syft_chat.features.groups import Group, GroupChange

__all__ = [
    "BackendContext",
    "IncomingHandler",
    "IncomingRequest",
    "MessageStore",
    "RejectHandler",
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
#: Called by a transport for a request it refused before decoding it:
#: ``(authenticated sender, reason, raw bytes)``.
RejectHandler = Callable[[str, str, bytes], None]


@runtime_checkable
class Transport(Protocol):
    """Moves request bodies between datasites and answers for the local one."""

    name: ClassVar[str]

    def start(
        self, on_request: IncomingHandler, on_reply: ReplyHandler, on_reject: RejectHandler
    ) -> None:
        """Begin serving; the handlers may be called from a background thread."""

    def stop(self) -> None:
        """Stop serving and release every thread and watch. Idempotent."""

    def can_reach(self, recipient: str) -> bool:
        """Whether ``recipient`` publishes the chat endpoint this transport can write to."""

    def send(self, recipient: str, body: bytes, *, request_id: str, expires: datetime) -> None:
        """Write one request for ``recipient``. Returns once it is durably handed over."""

    def poll_reply(self, recipient: str, request_id: str) -> None:
        """Look for the answer to a request now (safety net for a missed event)."""

    def withdraw(self, recipient: str, request_id: str) -> None:
        """Remove an unanswered request that is about to be replaced."""

    def resume(self, recipients: list[str]) -> None:
        """After a restart: collect answers that arrived meanwhile and watch for more."""


@runtime_checkable
class MessageStore(Protocol):
    """Persists messages. Every method may be called from any thread."""

    name: ClassVar[str]

    def add(
        self,
        message: ChatMessage,
        *,
        direction: Direction,
        peer: str | None,
        status: MessageStatus,
    ) -> bool:
        """Store ``message``; return ``False`` (and change nothing) if its msg_id exists."""

    def get(self, msg_id: str) -> ChatMessage | None:
        """The stored message with this id, or ``None``."""

    def set_status(self, msg_id: str, status: MessageStatus, *, error: str | None = None) -> bool:
        """Record a new delivery status (and the reason, for ``failed``); never backwards.

        Returns whether anything changed."""

    def history(
        self,
        *,
        peer: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
        group_id: str | None = None,
    ) -> list[ChatMessage]:
        """The newest ``limit`` matching messages, returned oldest first."""

    # reliable delivery

    def add_outgoing(self, message: ChatMessage, peer: str) -> ChatMessage:
        """Store a new outgoing message (``queued``) numbered next in its conversation,
        atomically; returns it with its ``seq``."""

    def next_seq(self, peer: str) -> int:
        """The next sequence number of an outgoing message to ``peer``."""

    def record_attempt(self, msg_id: str, request_id: str) -> bool:
        """Record a request written for an outgoing message (``queued`` becomes ``sent``);
        whether the status changed."""

    def outbox_requests(self) -> list[tuple[ChatMessage, str, str | None]]:
        """``(message, peer, last request id)`` for every unconfirmed outgoing message."""

    def unnotified(self) -> list[tuple[ChatMessage, str]]:
        """Incoming ``(message, peer)`` not yet announced, per peer in sequence order."""

    def mark_notified(self, msg_id: str) -> None:
        """Record that an incoming message was announced."""

    def last_notified_seq(self, peer: str) -> int | None:
        """The highest sequence number from ``peer`` already announced."""

    def mark_read(self, msg_id: str) -> bool:
        """Mark an incoming message read; whether it was unread."""

    # edits, deletions, reactions

    def apply_action(self, action: ChatMessage, actor: str) -> str | None:
        """Apply an edit / delete / reaction to its target; what changed, if anything."""

    def waiting_actions(self, target: str) -> list[ChatMessage]:
        """Incoming actions stored before their target arrived."""

    def prune_waiting_actions(self, older_than: timedelta) -> int:
        """Forget incoming actions whose message never arrived; how many."""

    def refuse_action(self, msg_id: str, reason: str) -> None:
        """Settle an incoming action that may not be applied."""

    def edits(self, msg_id: str) -> list[dict[str, Any]]:
        """Earlier versions of a message, oldest first."""

    def reactions(self, msg_ids: list[str]) -> dict[str, dict[str, list[str]]]:
        """``{msg_id: {emoji: [users]}}``."""

    # groups

    def apply_group_change(self, change: ChatMessage, body: GroupChange) -> bool:
        """Adopt a membership change if it is the group's latest."""

    def group(self, group_id: str) -> Group | None:
        """A group's current state."""

    def groups(self) -> list[Group]:
        """Every known group."""

    def copies(self, msg_id: str) -> dict[str, MessageStatus]:
        """Each member's status of a group message's copies."""

    # contact policy

    def contact_policy(self) -> ContactPolicy:
        """The stored contact policy."""

    def set_contact(self, email: str, status: str | None) -> None:
        """Mark a datasite ``allowed`` or ``blocked``, or forget it."""

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting that survives restarts."""

    def record_failed(
        self, *, sender: str, reason: str, raw: bytes, msg_id: str | None, keep: int = 10_000
    ) -> None:
        """Keep a refused incoming request, with the reason and its raw body."""

    def failed_messages(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest refused incoming requests."""

    def close(self) -> None:
        """Close the database. Idempotent."""


TransportFactory = Callable[[BackendContext], Transport]
StoreFactory = Callable[[BackendContext], MessageStore]
