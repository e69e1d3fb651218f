"""Typed contracts between the kernel and its backends (transports and stores).

Backends are classes registered by name through the ``chat_register_transports``
and ``chat_register_stores`` hooks; the client constructs the one it was asked
for with a :class:`BackendContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from syft_chat.models import (
    ChatMessage,
    ContactPolicy,
    Direction,
    Group,
    MessageKind,
    MessageStatus,
)
from syft_chat.settings import ChatSettings

if TYPE_CHECKING:
    from syft_core import Client as SyftClient

#: Conversation ids of groups start with this; every other conversation is one-to-one.
GROUP_PREFIX = "group:"

__all__ = [
    "GROUP_PREFIX",
    "UPDATABLE",
    "BackendContext",
    "FailedRequest",
    "IncomingHandler",
    "IncomingRequest",
    "MessageQuery",
    "MessageStore",
    "Reaction",
    "RejectHandler",
    "Reply",
    "ReplyHandler",
    "StoreFactory",
    "StoredMessage",
    "Transport",
    "TransportFactory",
    "Version",
    "check_updatable",
    "find_messages",
    "with_reactions",
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
#: ``(request_id, peer, reply)``; also when the network refused to carry it (see
#: :class:`Transport`). It returns ``False`` when the answer is not this process's to take
#: (another process on the datasite sent that request and is still waiting for it): the
#: transport then leaves it where it is; anything else means it was taken.
ReplyHandler = Callable[[str, str, Reply], "bool | None"]
#: Called by a transport for a request it refused before decoding it:
#: ``(authenticated sender, reason, raw bytes)``.
RejectHandler = Callable[[str, str, bytes], None]


@runtime_checkable
class Transport(Protocol):
    """Moves request bodies between datasites and answers for the local one.

    A request is identified by ``request_id`` (fresh for every attempt); its answer
    reaches ``on_reply`` at most once per request. How requests travel (files, sockets)
    and how answers are found stay inside the transport. ``syft_chat.testing.
    transport_contract`` is the suite a transport passes.

    **Refusals by the network.** When the system underneath refuses to carry a request
    (for syft-rpc: the SyftBox server rejected the upload and the sync client renamed
    the file to a rejection marker), the transport reports it through ``on_reply`` like
    an answer from the peer: status ``403`` and a JSON body
    ``{"status": "rejected", "retry": false, "error": "<why>"}``. The core records the
    message ``failed`` with that error and stops retrying. The transport cleans up
    whatever the refusal left behind.

    **Following (optional).** A transport whose endpoint several processes could serve
    at once (syft-rpc: one folder per datasite) also implements
    ``follow(on_reply, on_reject)``: send and collect answers, without serving. The core
    then lets one process per datasite serve and makes the others follow it (see
    :mod:`syft_chat.messaging.serving`); a follower that takes over calls ``start``.
    Without ``follow`` every client serves.
    """

    name: ClassVar[str]

    def start(
        self,
        on_request: IncomingHandler,
        on_reply: ReplyHandler,
        on_reject: RejectHandler,
        *,
        awaiting: Collection[str] = (),
    ) -> None:
        """Begin serving; the handlers may be called from background threads.

        ``awaiting`` names the datasites that owe answers to requests sent before a
        restart: answers that arrived meanwhile are passed to ``on_reply`` too.
        """

    def stop(self) -> None:
        """Stop serving and release every thread and watch. Idempotent."""

    def can_reach(self, recipient: str) -> bool:
        """Whether ``recipient`` serves this chat app where this transport can write."""

    def list_peers(self) -> list[str]:
        """Every datasite that serves this chat app (discovery); may include this one."""

    def send(
        self,
        recipient: str,
        body: bytes,
        *,
        request_id: str,
        expires: datetime,
        replaces: str | None = None,
    ) -> None:
        """Hand one request for ``recipient`` over durably; returns once it is.

        ``replaces`` is the id of an earlier, unanswered attempt at the same message,
        which the transport may withdraw (an answer to it still counts).
        """

    def pending(self, recipient: str, request_id: str, *, until: datetime) -> bool:
        """Whether request ``request_id`` is still on its way to ``recipient`` and needs
        no replacement: handed over, not answered, not refused, valid until ``until``.

        The core asks before a retry: ``True`` keeps the request (the peer is offline or
        slow, another copy would not help) and the retry is only rescheduled. ``False``
        when unsure; a transport that cannot tell always answers ``False`` (every retry
        then writes a fresh request, which is always safe).
        """

    def collect_reply(self, recipient: str, request_id: str) -> None:
        """Pass the answer to ``request_id`` to ``on_reply`` now if it has arrived (a
        safety net for a missed notification; nothing happens otherwise)."""

    def update_access(self, policy: ContactPolicy) -> None:
        """Let only the datasites ``policy`` admits write requests here, where the
        underlying system can express it (the receiver checks every request anyway)."""


@dataclass(frozen=True)
class StoredMessage:
    """A message as a store keeps it: the message and its delivery bookkeeping.

    ``peer`` is the datasite the message travels to or from (``None`` for the author's
    own record of a group message, whose per-member copies carry the peers).
    ``applied`` is ``False`` for an incoming edit, deletion or reaction that waits for
    its message; ``notified`` whether listeners were told about an incoming message.
    """

    message: ChatMessage
    direction: Direction
    peer: str | None
    applied: bool = True
    notified: bool = True
    #: the sender's sequence number of the edit whose text is shown (``None``: unedited)
    edit_seq: int | None = None
    #: the latest request written for an outgoing message, and how many were
    request_id: str | None = None
    attempts: int = 0
    read_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def msg_id(self) -> str:
        return self.message.msg_id

    @property
    def conversation(self) -> str | None:
        """``group:<id>`` for a group's message, else the peer."""
        group = self.message.group_id
        return f"{GROUP_PREFIX}{group}" if group else self.peer


#: The fields of a stored message that :meth:`MessageStore.update` may change.
UPDATABLE = frozenset(
    {
        "content",
        "status",
        "error",
        "deleted",
        "edited_at",
        "edit_seq",
        "applied",
        "notified",
        "request_id",
        "attempts",
        "read_at",
        "attachments",
    }
)


def with_reactions(
    messages: list[ChatMessage], reactions: Callable[[Sequence[str]], Iterable[Reaction]]
) -> list[ChatMessage]:
    """``messages`` with their present reactions filled in (``{emoji: [users...]}``, each
    emoji's users in the order they reacted); ``reactions`` is a store's
    :meth:`~syft_chat.interfaces.MessageStore.reactions`. A reaction belongs to the
    message of its ``msg_id`` and ``author`` (message ids are per sender)."""
    found: dict[tuple[str, str], dict[str, list[str]]] = {}
    senders: dict[str, set[str]] = {}
    for m in messages:
        senders.setdefault(m.msg_id, set()).add(m.sender)
    for r in reactions(list(senders)):
        if not r.present:
            continue
        for sender in senders.get(r.msg_id, ()) if r.author == "" else (r.author,):
            found.setdefault((r.msg_id, sender), {}).setdefault(r.emoji, []).append(r.user)
    return [
        m.model_copy(update={"reactions": found[(m.msg_id, m.sender)]})
        if (m.msg_id, m.sender) in found
        else m
        for m in messages
    ]


def find_messages(store: Any, query: MessageQuery) -> list[ChatMessage]:
    """The messages of ``store.find(query)``, without their delivery records.

    A store may offer this as its own ``find_messages(query)`` method (optional, not part
    of :class:`MessageStore`): the ``sqlite`` store builds the messages straight from its
    rows, which spares a history page the records it would throw away.
    """
    own = getattr(store, "find_messages", None)
    if own is not None:
        return list(own(query))
    return [record.message for record in store.find(query)]


def check_updatable(changes: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for a field :meth:`MessageStore.update` may not change."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")


@dataclass(frozen=True)
class MessageQuery:
    """A filter over stored messages; every field left ``None`` matches anything.

    ``order`` is ``"stored"`` (insertion order), ``"seq"`` (by peer, then the sender's
    sequence number, then insertion) or ``"time"`` (timestamp, then insertion). With
    ``limit`` and ``last=True`` the *last* ``limit`` rows in that order are returned,
    still in that order (the newest page of a history).
    """

    msg_ids: tuple[str, ...] | None = None
    #: the message's sender (with ``msg_ids``: one sender's messages of those ids)
    sender: str | None = None
    direction: Direction | None = None
    kinds: frozenset[MessageKind] | None = None
    statuses: frozenset[MessageStatus] | None = None
    peer: str | None = None
    has_peer: bool | None = None
    conversation: str | None = None
    thread_id: str | None = None
    target: str | None = None
    since: datetime | None = None
    #: only numbered messages, with a ``seq`` at most this
    seq_at_most: int | None = None
    applied: bool | None = None
    notified: bool | None = None
    updated_before: datetime | None = None
    order: Literal["stored", "seq", "time"] = "stored"
    limit: int | None = None
    last: bool = False


@dataclass(frozen=True)
class Reaction:
    """One user's emoji on one message. ``present=False`` is a reaction taken back, kept
    so that a change older (by ``op_seq``, the user's sequence number) than it is
    recognised as late.

    The message is ``(msg_id, author)``: ``author`` is its sender (message ids are per
    sender); ``""`` is a reaction recorded before that was known, which counts for every
    message with that id."""

    msg_id: str
    user: str
    emoji: str
    present: bool
    op_seq: int | None
    created_at: datetime
    author: str = ""


@dataclass(frozen=True)
class Version:
    """An earlier text of an edited message (``content`` erased once it is deleted)."""

    content: str
    replaced_at: datetime
    #: the edit message that replaced it, and that edit's sequence number
    edit_id: str | None
    seq: int | None


@dataclass(frozen=True)
class FailedRequest:
    """An incoming request that was refused: who sent it, why, and its raw body."""

    sender: str
    reason: str
    raw: bytes
    msg_id: str | None
    received_at: datetime


@runtime_checkable
class MessageStore(Protocol):
    """Persists and queries; decides nothing.

    Which edit wins, that a delete wins, reaction sets, how group membership converges
    and that a status never moves backwards are rules of the messaging core and its
    features, written once above every store (``syft_chat.testing.store_contract`` is
    the suite a store passes). Every method may be called from any thread and raises
    :class:`~syft_chat.errors.StorageError` when the storage fails.

    **Message ids are per sender.** A message is identified by ``(sender, msg_id)``: two
    senders' messages may share a ``msg_id`` and are two messages (nobody can block or
    replace someone else's message by reusing its id). The methods that take a
    ``msg_id`` take an optional ``sender``: with it, exactly that message; without it,
    *the* message of that id is this datasite's own (``sender == owner``) if there is
    one, else the earliest stored (as ``get`` returns it).
    """

    name: ClassVar[str]

    def transaction(self) -> AbstractContextManager[None]:
        """A unit of work: every change made inside it is kept, or none is.

        Leaving the block by an exception undoes its changes; nested blocks join the
        outer one (an inner failure that the caller catches undoes only the inner
        block's changes). The block holds off other writers, also other processes
        sharing the storage, so read-then-write inside it is safe.
        """

    def insert(self, record: StoredMessage) -> bool:
        """Store a new message; ``False`` (and nothing changed) if a message with its
        ``(sender, msg_id)`` exists (another sender's message with that id is no obstacle)."""

    def get(self, msg_id: str, *, sender: str | None = None) -> StoredMessage | None:
        """The stored message ``(sender, msg_id)``, or ``None``; without ``sender``, the
        owner's own message with this id if there is one, else the earliest stored."""

    def update(
        self,
        msg_id: str,
        changes: Mapping[str, Any],
        *,
        sender: str | None = None,
        if_status: Collection[MessageStatus] | None = None,
    ) -> bool:
        """Change fields of one message (names from :data:`UPDATABLE`): the one
        :meth:`get` returns for ``msg_id`` and ``sender``.

        With ``if_status``, only if its status is one of those (a compare-and-set).
        Returns whether a message was changed.
        """

    def find(self, query: MessageQuery) -> list[StoredMessage]:
        """Every stored message matching ``query``, in its order."""

    def remove(self, query: MessageQuery) -> int:
        """Delete the messages matching ``query``; how many."""

    def max_seq(self, peer: str, direction: Direction, *, notified: bool | None = None) -> int:
        """The highest sequence number of messages to or from ``peer`` (0 if none)."""

    def versions(self, msg_id: str, *, sender: str | None = None) -> list[Version]:
        """Earlier texts of message ``(sender, msg_id)``, oldest first (by ``seq``,
        unnumbered last); without ``sender``, those of every message with that id."""

    def add_version(self, msg_id: str, version: Version, *, sender: str | None = None) -> None:
        """Keep an earlier text of message ``(sender, msg_id)``."""

    def erase_versions(self, msg_id: str, *, sender: str | None = None) -> None:
        """Blank every earlier text of message ``(sender, msg_id)`` (it was deleted);
        without ``sender``, of every message with that id."""

    def reactions(self, msg_ids: Sequence[str], *, removed: bool = False) -> list[Reaction]:
        """The reactions on the messages with these ids (of any sender: see
        :attr:`Reaction.author`), oldest first; ``removed=True`` includes the ones taken
        back."""

    def put_reaction(self, reaction: Reaction) -> None:
        """Store a reaction, replacing the one of the same message (``msg_id`` and
        ``author``), user and emoji (keeping the first ``created_at``)."""

    def groups(self, group_id: str | None = None) -> list[Group]:
        """Every known group by name, or only ``group_id``'s."""

    def put_group(self, group: Group) -> None:
        """Store a group's state, replacing the one with its id."""

    def contacts(self) -> dict[str, str]:
        """``{email: "allowed" | "blocked"}``."""

    def set_contact(self, email: str, status: str | None) -> None:
        """Mark a datasite ``allowed`` or ``blocked``, or forget it (``None``)."""

    def setting(self, key: str) -> str | None:
        """A stored setting that survives restarts, or ``None``."""

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting that survives restarts."""

    def record_failed(self, failure: FailedRequest, *, keep: int) -> None:
        """Keep a refused incoming request; only the newest ``keep`` are kept."""

    def failed_messages(self, limit: int = 100) -> list[FailedRequest]:
        """The newest refused incoming requests, newest first."""

    def close(self) -> None:
        """Release the storage. Idempotent; later calls raise ``StorageError``."""


TransportFactory = Callable[[BackendContext], Transport]
StoreFactory = Callable[[BackendContext], MessageStore]
