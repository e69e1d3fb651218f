"""The built-in ``memory`` message store: everything in dictionaries, lost on close.

``syft_chat.client(..., store="memory")`` keeps no file, as the original library's basic
variant did: the history lives as long as the client. For tests, demos and bots that
need no history across restarts.

A re-entrant lock serializes every call; :meth:`MemoryStore.transaction` holds it for
the whole block and records the previous value of every key it changes (an undo log),
so an exception undoes the block, and a nested block is a savepoint in that log.

Like every store it persists and decides nothing: the rules live in
:mod:`syft_chat.messaging` and :mod:`syft_chat.features`.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar

from syft_chat.errors import InvalidMessageError, StorageError
from syft_chat.hookspecs import hookimpl
from syft_chat.interfaces import (
    BackendContext,
    FailedRequest,
    MessageQuery,
    Reaction,
    StoredMessage,
    StoreFactory,
    Version,
    check_updatable,
)
from syft_chat.models import Attachment, Direction, Group, MessageStatus, to_utc, utcnow

__all__ = ["MemoryStore", "chat_register_stores"]

_MISSING: Any = object()
#: UPDATABLE fields that belong to the ChatMessage (the others are the record's)
_MESSAGE_FIELDS = frozenset({"content", "status", "error", "deleted", "edited_at", "attachments"})


def _matches(r: StoredMessage, q: MessageQuery) -> bool:
    m = r.message
    return (
        (q.msg_ids is None or m.msg_id in q.msg_ids)
        and (q.sender is None or m.sender == q.sender)
        and (q.direction is None or r.direction is q.direction)
        and (q.kinds is None or m.kind in q.kinds)
        and (q.statuses is None or m.status in q.statuses)
        and (q.peer is None or r.peer == q.peer)
        and (q.has_peer is None or (r.peer is not None) == q.has_peer)
        and (q.conversation is None or r.conversation == q.conversation)
        and (q.thread_id is None or m.thread_id == q.thread_id)
        and (q.target is None or m.target == q.target)
        and (q.since is None or m.timestamp >= to_utc(q.since))
        and (q.seq_at_most is None or (m.seq is not None and m.seq <= q.seq_at_most))
        and (q.applied is None or r.applied == q.applied)
        and (q.notified is None or r.notified == q.notified)
        and (
            q.updated_before is None
            or (r.updated_at is not None and r.updated_at < to_utc(q.updated_before))
        )
    )


def _sort_key(order: str) -> Callable[[tuple[int, StoredMessage]], tuple[Any, ...]]:
    if order == "seq":  # like SQL: a missing peer or seq sorts first
        return lambda e: (
            e[1].peer is not None,
            e[1].peer or "",
            *_nullable(e[1].message.seq),
            e[0],
        )
    if order == "time":
        return lambda e: (e[1].message.timestamp, e[0])
    return lambda e: (e[0],)


def _out(r: StoredMessage) -> StoredMessage:
    """What a reader gets: its own metadata (a dict), like a store that reads from disk."""
    own = {
        "metadata": copy.deepcopy(r.message.metadata),
        "attachments": list(r.message.attachments),
    }
    return replace(r, message=r.message.model_copy(update=own))


def _nullable(value: int | None) -> tuple[bool, int]:
    return (value is not None, value or 0)


class MemoryStore:
    """A :class:`~syft_chat.interfaces.MessageStore` in memory; history lost on close."""

    name: ClassVar[str] = "memory"

    def __init__(self, *, owner: str) -> None:
        self.owner = owner
        self._lock = threading.RLock()
        self._closed = False
        self._next = 0  # insertion counter: stored order, version and failure order
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []
        self._depth = 0
        #: by ``(msg_id, sender)``: message ids are per sender
        self._messages: dict[tuple[str, str], tuple[int, StoredMessage]] = {}
        #: by ``(msg_id, sender of the message)``
        self._versions: dict[tuple[str, str | None], tuple[tuple[int, Version], ...]] = {}
        #: by ``(msg_id, author, user, emoji)``
        self._reactions: dict[tuple[str, str, str, str], Reaction] = {}
        self._groups: dict[str, Group] = {}
        self._contacts: dict[str, str] = {}
        self._settings: dict[str, str] = {}
        self._failed: dict[int, FailedRequest] = {}

    @classmethod
    def from_context(cls, ctx: BackendContext) -> MemoryStore:
        """The store factory (``ctx.db_path`` is not used)."""
        return cls(owner=ctx.email)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _op(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise StorageError("the in-memory store is closed")
            yield

    def _counter(self) -> int:
        self._next += 1
        return self._next

    def _put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        old = table.get(key, _MISSING)
        table[key] = value
        if self._depth:
            self._undo.append((table, key, old))

    def _pop(self, table: dict[Any, Any], key: Any) -> None:
        old = table.pop(key, _MISSING)
        if self._depth and old is not _MISSING:
            self._undo.append((table, key, old))

    def _rollback(self, mark: int) -> None:
        while len(self._undo) > mark:
            table, key, old = self._undo.pop()
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every change inside is kept, or none is (nested: a savepoint)."""
        with self._op():
            mark = len(self._undo)
            self._depth += 1
            try:
                yield
            except BaseException:
                self._rollback(mark)
                raise
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._undo.clear()

    # ------------------------------------------------------------------ messages

    def _key(self, msg_id: str, sender: str | None) -> tuple[str, str] | None:
        """The key of message ``(sender, msg_id)``; without ``sender``, of the owner's
        message with that id if there is one, else of the earliest stored."""
        if sender is not None:
            key = (msg_id, sender)
            return key if key in self._messages else None
        if (msg_id, self.owner) in self._messages:
            return (msg_id, self.owner)
        found = [(n, k) for k, (n, _) in self._messages.items() if k[0] == msg_id]
        return min(found)[1] if found else None

    def insert(self, record: StoredMessage) -> bool:
        """Store a new message; ``False`` (and nothing changed) if its ``(sender, msg_id)``
        exists."""
        m = record.message
        try:  # a deep copy, and the same refusal as a store that writes JSON
            metadata = json.loads(json.dumps(m.metadata))
        except (TypeError, ValueError) as exc:
            raise InvalidMessageError(f"metadata is not JSON-serializable: {exc}") from exc
        recipient = m.recipient
        if recipient is None:
            recipient = record.peer if record.direction is Direction.OUTGOING else self.owner
        message = m.model_copy(
            update={
                "metadata": metadata,
                "recipient": recipient,
                "status": m.status or MessageStatus.RECEIVED,
                "edited_at": to_utc(m.edited_at) if m.edited_at else None,
                "reactions": {},
                "attachments": list(m.attachments),
            }
        )
        stored = replace(
            record,
            message=message,
            read_at=to_utc(record.read_at) if record.read_at else None,
            updated_at=utcnow(),
        )
        with self._op():
            key = (m.msg_id, m.sender)
            if key in self._messages:
                return False
            self._put(self._messages, key, (self._counter(), stored))
            return True

    def get(self, msg_id: str, *, sender: str | None = None) -> StoredMessage | None:
        """The stored message ``(sender, msg_id)``; without ``sender``, the owner's own
        message with this id, else the earliest stored; ``None`` if there is none."""
        with self._op():
            key = self._key(msg_id, sender)
            entry = self._messages.get(key) if key is not None else None
        return _out(entry[1]) if entry else None

    def update(
        self,
        msg_id: str,
        changes: Mapping[str, Any],
        *,
        sender: str | None = None,
        if_status: Collection[MessageStatus] | None = None,
    ) -> bool:
        """Change fields of one message (the one :meth:`get` returns); with ``if_status``,
        only from those statuses."""
        check_updatable(changes)
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("deleted", "applied", "notified"):
                value = bool(value)
            elif name in ("edited_at", "read_at"):
                value = to_utc(value) if value is not None else None
            elif name == "status":
                value = MessageStatus(value)
            elif name == "attachments":
                value = [Attachment.model_validate(a) for a in value]
            values[name] = value
        allowed = None if if_status is None else {MessageStatus(s) for s in if_status}
        with self._op():
            key = self._key(msg_id, sender)
            entry = self._messages.get(key) if key is not None else None
            if (
                key is None
                or entry is None
                or (allowed is not None and entry[1].message.status not in allowed)
            ):
                return False
            order, r = entry
            message = r.message.model_copy(
                update={k: v for k, v in values.items() if k in _MESSAGE_FIELDS}
            )
            record = {k: v for k, v in values.items() if k not in _MESSAGE_FIELDS}
            updated = replace(r, message=message, updated_at=utcnow(), **record)
            self._put(self._messages, key, (order, updated))
            return True

    def find(self, query: MessageQuery) -> list[StoredMessage]:
        """Every stored message matching ``query``, in its order."""
        with self._op():
            found = [e for e in self._messages.values() if _matches(e[1], query)]
        found.sort(key=_sort_key(query.order))
        if query.limit is not None:
            n = max(0, int(query.limit))
            found = (found[-n:] if n else []) if query.last else found[:n]
        return [_out(r) for _, r in found]

    def remove(self, query: MessageQuery) -> int:
        """Delete the messages matching ``query``; how many."""
        with self._op():
            gone = [k for k, (_, r) in self._messages.items() if _matches(r, query)]
            for key in gone:
                self._pop(self._messages, key)
            return len(gone)

    def max_seq(self, peer: str, direction: Direction, *, notified: bool | None = None) -> int:
        """The highest sequence number of messages to or from ``peer`` (0 if none)."""
        query = MessageQuery(peer=peer, direction=direction, notified=notified)
        with self._op():
            seqs = [r.message.seq or 0 for _, r in self._messages.values() if _matches(r, query)]
        return max(seqs, default=0)

    # ------------------------------------------------------------------ earlier versions

    def _version_keys(self, msg_id: str, sender: str | None) -> list[tuple[str, str | None]]:
        if sender is not None:
            return [(msg_id, sender)]
        return [k for k in self._versions if k[0] == msg_id]

    def versions(self, msg_id: str, *, sender: str | None = None) -> list[Version]:
        """Earlier texts of message ``(sender, msg_id)``, oldest first (by ``seq``,
        unnumbered last)."""
        with self._op():
            found = [
                e for k in self._version_keys(msg_id, sender) for e in self._versions.get(k, ())
            ]
        entries = sorted(found, key=lambda e: (e[1].seq is None, e[1].seq or 0, e[0]))
        return [v for _, v in entries]

    def add_version(self, msg_id: str, version: Version, *, sender: str | None = None) -> None:
        """Keep an earlier text of message ``(sender, msg_id)``."""
        kept = replace(version, replaced_at=to_utc(version.replaced_at))
        with self._op():
            entries = self._versions.get((msg_id, sender), ())
            self._put(self._versions, (msg_id, sender), (*entries, (self._counter(), kept)))

    def erase_versions(self, msg_id: str, *, sender: str | None = None) -> None:
        """Blank every earlier text of message ``(sender, msg_id)``."""
        with self._op():
            for key in self._version_keys(msg_id, sender):
                entries = self._versions.get(key)
                if entries:
                    erased = tuple((n, replace(v, content="")) for n, v in entries)
                    self._put(self._versions, key, erased)

    # ------------------------------------------------------------------ reactions

    def reactions(self, msg_ids: Sequence[str], *, removed: bool = False) -> list[Reaction]:
        """The reactions on these messages, oldest first."""
        wanted = set(msg_ids)
        with self._op():
            found = [
                r for r in self._reactions.values() if r.msg_id in wanted and (removed or r.present)
            ]
        return sorted(found, key=lambda r: (r.created_at, r.user))

    def put_reaction(self, reaction: Reaction) -> None:
        """Store a reaction, replacing the one of the same message, user and emoji."""
        key = (reaction.msg_id, reaction.author, reaction.user, reaction.emoji)
        with self._op():
            old = self._reactions.get(key)
            created = old.created_at if old else to_utc(reaction.created_at)
            self._put(self._reactions, key, replace(reaction, created_at=created))

    # ------------------------------------------------------------------ groups, contacts, settings

    def groups(self, group_id: str | None = None) -> list[Group]:
        """Every known group by name, or only ``group_id``'s."""
        with self._op():
            found = [g for g in self._groups.values() if group_id in (None, g.group_id)]
        return sorted(found, key=lambda g: (g.name, g.group_id))

    def put_group(self, group: Group) -> None:
        """Store a group's state, replacing the one with its id."""
        kept = group.model_copy(update={"changed_at": to_utc(group.changed_at)})
        with self._op():
            self._put(self._groups, group.group_id, kept)

    def contacts(self) -> dict[str, str]:
        """``{email: "allowed" | "blocked"}``."""
        with self._op():
            return dict(self._contacts)

    def set_contact(self, email: str, status: str | None) -> None:
        """Mark ``email`` ``allowed`` or ``blocked``, or forget it (``None``)."""
        with self._op():
            if status is None:
                self._pop(self._contacts, email)
            else:
                self._put(self._contacts, email, status)

    def setting(self, key: str) -> str | None:
        """A stored setting, or ``None``."""
        with self._op():
            return self._settings.get(key)

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting (for the life of this store)."""
        with self._op():
            self._put(self._settings, key, value)

    # ------------------------------------------------------------------ refused requests

    def record_failed(self, failure: FailedRequest, *, keep: int) -> None:
        """Keep a refused incoming request; only the newest ``keep`` are kept."""
        kept = replace(failure, raw=bytes(failure.raw), received_at=to_utc(failure.received_at))
        with self._op():
            n = self._counter()
            self._put(self._failed, n, kept)
            for old in [k for k in self._failed if k <= n - keep]:
                self._pop(self._failed, old)

    def failed_messages(self, limit: int = 100) -> list[FailedRequest]:
        """The newest refused incoming requests, newest first."""
        with self._op():
            newest = sorted(self._failed, reverse=True)[: max(0, limit)]
            return [self._failed[n] for n in newest]

    def close(self) -> None:
        """Forget everything. Idempotent; any later call raises :class:`StorageError`."""
        with self._lock:
            self._closed = True
            for table in (self._messages, self._versions, self._reactions, self._groups):
                table.clear()
            self._contacts.clear()
            self._settings.clear()
            self._failed.clear()
            self._undo.clear()


@hookimpl
def chat_register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    """Register the ``memory`` store."""
    register(MemoryStore.name, MemoryStore.from_context)
