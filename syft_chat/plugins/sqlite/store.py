"""The built-in ``sqlite`` message store: one SQLite file per client, through peewee.

The ``messages`` table keeps the seed's seven columns under their seed names
(``msg_id, sender, content, timestamp, thread_id, reply_to, metadata``), so the
raw SQL of the seed README keeps working, and adds what delivery tracking needs.
``metadata`` is JSON text; ``timestamp`` is UTC text in one fixed format
(``2024-05-01 12:00:00.000000+00:00``), so text order is time order and SQLite's
``datetime()`` reads it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import peewee as pw

from syft_chat.errors import InvalidMessageError, StorageError
from syft_chat.features.contacts import ContactPolicy
from syft_chat.features.groups import Group, GroupChange
from syft_chat.hookspecs import hookimpl
from syft_chat.interfaces import BackendContext, StoreFactory
from syft_chat.models import ChatMessage, Direction, MessageStatus, utcnow
from syft_chat.plugins.sqlite.queries import GROUP_PREFIX, HistoryViews
from syft_chat.plugins.sqlite.schema import (
    _SEED_COLUMNS,
    SCHEMA_VERSION,
    _fmt_ts,
    _parse_ts,
)
from syft_chat.plugins.sqlite.schema import MIGRATIONS as _MIGRATIONS

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "chat_register_stores"]

_READ_COLUMNS = (
    *_SEED_COLUMNS,
    *("recipient", "status", "seq", "peer", "error", "kind", "target", "deleted", "edited_at"),
    "conversation",
)
_PENDING = (MessageStatus.QUEUED.value, MessageStatus.SENT.value)
_FINAL = (MessageStatus.DELIVERED.value, MessageStatus.READ.value)
_STATUSES = frozenset(s.value for s in MessageStatus)
MESSAGE_KIND = "message"
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _group_of(conversation: Any) -> str | None:
    if isinstance(conversation, str) and conversation.startswith(GROUP_PREFIX):
        return conversation[len(GROUP_PREFIX) :]
    return None


def _load_metadata(value: Any) -> dict[str, Any]:
    try:
        loaded = json.loads(value) if value else {}
    except (TypeError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _storage_error(path: Path, action: str, exc: BaseException) -> StorageError:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        hint = (
            "another process holds a lock on it; close other programs using it "
            "or raise ChatSettings.db_busy_timeout_ms"
        )
    elif "readonly" in text or "read-only" in text:
        hint = "the file or its directory is read-only; check their permissions"
    elif "not a database" in text or "malformed" in text:
        hint = "the file is not a valid SQLite database; move it aside to start a new one"
    elif "unable to open" in text or isinstance(exc, OSError):
        hint = "check that its directory exists and is writable"
    else:
        hint = "check the file's permissions and that the disk is not full"
    return StorageError(f"could not {action} the message database {path}: {exc} ({hint})")


# --------------------------------------------------------------------------- the store


class SQLiteStore(HistoryViews):
    """A :class:`~syft_chat.interfaces.MessageStore` in one SQLite file.

    One connection is shared by every thread, serialized by a re-entrant lock.
    """

    name: ClassVar[str] = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        owner: str,
        busy_timeout_ms: int = 5000,
        synchronous: str = "NORMAL",
    ) -> None:
        """Open (creating it and its directory if needed) and migrate the file at ``path``.

        ``owner`` is this datasite's email. Raises :class:`StorageError` if the
        file cannot be opened or was written by a newer syft-chat.
        """
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        self.path = Path(path).expanduser()
        self.owner = owner
        self._lock = threading.RLock()
        db = pw.SqliteDatabase(
            str(self.path),
            pragmas=[  # busy_timeout first: the others may wait for a lock
                ("busy_timeout", int(busy_timeout_ms)),
                ("journal_mode", "wal"),
                ("synchronous", synchronous.upper()),
                ("foreign_keys", 1),
            ],
            timeout=busy_timeout_ms / 1000,
            check_same_thread=False,
            thread_safe=False,
            autoconnect=False,
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db.connect()
            self._migrate(db)
        except (pw.PeeweeException, sqlite3.Error, OSError) as exc:
            db.close()
            raise _storage_error(self.path, "open", exc) from exc
        except BaseException:
            db.close()
            raise
        self._db: Any = db
        self._messages = pw.Table("messages").bind(db)

    @classmethod
    def from_context(cls, ctx: BackendContext) -> SQLiteStore:
        """The store factory: open ``ctx.db_path`` for ``ctx.email``."""
        return cls(ctx.db_path, owner=ctx.email, busy_timeout_ms=ctx.settings.db_busy_timeout_ms)

    def _migrate(self, db: Any) -> None:
        if self._version(db) == SCHEMA_VERSION:
            return
        with db.atomic("IMMEDIATE"):  # re-read under the write lock: another process may migrate
            version = self._version(db)
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"the message database {self.path} was written by a newer syft-chat "
                    f"(schema version {version}, this one knows {SCHEMA_VERSION}); "
                    "upgrade syft-chat or use another db_path"
                )
            for migration in _MIGRATIONS[version:]:
                try:
                    migration(db, self.owner)
                except StorageError as exc:
                    raise StorageError(f"cannot migrate {self.path}: {exc}") from exc
            db.execute_sql(
                "INSERT INTO schema_version (id, version) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (SCHEMA_VERSION,),
            )

    @staticmethod
    def _version(db: Any) -> int:
        if not db.table_exists("schema_version"):
            return 0
        row = db.execute_sql("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _select(t: Any) -> Any:
        return t.select(*[getattr(t.c, c) for c in _READ_COLUMNS])

    @contextmanager
    def _op(self, action: str) -> Iterator[Any]:
        """Hold the lock, refuse a closed store, turn database errors into StorageError."""
        with self._lock:
            if self._db is None:
                raise StorageError(f"store is closed ({self.path})")
            try:
                yield self._messages
            except (pw.PeeweeException, sqlite3.Error) as exc:
                raise _storage_error(self.path, action, exc) from exc

    @staticmethod
    def _to_message(row: dict[str, Any]) -> ChatMessage:
        known = row["status"] in _STATUSES
        return ChatMessage(
            msg_id=row["msg_id"],
            sender=row["sender"],
            content=row["content"],
            timestamp=_parse_ts(row["timestamp"]),
            thread_id=row["thread_id"],
            reply_to=row["reply_to"],
            metadata=_load_metadata(row["metadata"]),
            recipient=row["recipient"],
            status=MessageStatus(row["status"]) if known else None,
            seq=row["seq"],
            error=row["error"],
            kind=row["kind"],
            target=row["target"],
            deleted=bool(row["deleted"]),
            edited_at=_parse_ts(row["edited_at"]) if row["edited_at"] else None,
            group_id=_group_of(row["conversation"]),
        )

    def add(
        self,
        message: ChatMessage,
        *,
        direction: Direction,
        peer: str | None,
        status: MessageStatus,
    ) -> bool:
        """Store ``message``; return ``False`` (and change nothing) if its msg_id exists.

        ``peer`` is the datasite the message travels to or from; ``None`` for
        the author's own record of a group message (its copies for each
        member carry the peers).
        """
        direction = Direction(direction)
        recipient = message.recipient
        if recipient is None:
            recipient = peer if direction is Direction.OUTGOING else self.owner
        try:
            metadata = json.dumps(message.metadata, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidMessageError(f"metadata is not JSON-serializable: {exc}") from exc
        with self._op("store a message in") as t:
            query = t.insert(
                msg_id=message.msg_id,
                sender=message.sender,
                recipient=recipient,
                peer=peer,
                content=message.content,
                timestamp=_fmt_ts(message.timestamp),
                thread_id=message.thread_id,
                reply_to=message.reply_to,
                metadata=metadata,
                direction=direction.value,
                status=MessageStatus(status).value,
                updated_at=_fmt_ts(utcnow()),
                seq=message.seq,
                notified=0 if direction is Direction.INCOMING else 1,
                kind=message.kind,
                target=message.target,
                conversation=f"{GROUP_PREFIX}{message.group_id}" if message.group_id else peer,
                # an incoming edit / delete / reaction waits to be applied
                applied=int(direction is Direction.OUTGOING or message.kind == MESSAGE_KIND),
            ).on_conflict(action="NOTHING", conflict_target=[t.c.msg_id])
            return bool(self._db.execute(query).rowcount == 1)

    def get(self, msg_id: str) -> ChatMessage | None:
        """The stored message with this id, or ``None``."""
        with self._op("read") as t:
            rows = list(self._select(t).where(t.c.msg_id == msg_id).dicts())
        return self._to_message(rows[0]) if rows else None

    def set_status(self, msg_id: str, status: MessageStatus, *, error: str | None = None) -> bool:
        """Record a new delivery status (and the reason, for ``failed``).

        Returns whether anything changed. Status never moves backwards: a
        ``delivered`` or ``read`` message stays so whatever arrives later, and
        ``read`` is only recorded over ``delivered``. An unknown ``msg_id``
        changes nothing.
        """
        new = MessageStatus(status).value
        with self._op("update a message in") as t:
            where = (t.c.msg_id == msg_id) & (t.c.status != new)
            if new == MessageStatus.READ.value:
                where &= t.c.status == MessageStatus.DELIVERED.value
            elif new != MessageStatus.DELIVERED.value:
                where &= t.c.status.not_in(_FINAL)
            query = t.update(status=new, error=error, updated_at=_fmt_ts(utcnow())).where(where)
            return bool(self._db.execute(query).rowcount)

    # ------------------------------------------------------------------ reliable delivery

    def add_outgoing(self, message: ChatMessage, peer: str) -> ChatMessage:
        """Store a new outgoing message (``queued``), numbered next in its conversation.

        Numbering and storing are one write transaction, so two processes
        sharing the file never hand out the same sequence number.
        """
        with self._op("store a message in"), self._db.atomic("IMMEDIATE"):
            numbered = message.model_copy(
                update={"seq": self.next_seq(peer), "status": MessageStatus.QUEUED}
            )
            self.add(numbered, direction=Direction.OUTGOING, peer=peer, status=MessageStatus.QUEUED)
        return numbered

    def next_seq(self, peer: str) -> int:
        """The next sequence number for an outgoing message to ``peer`` (1, 2, ...)."""
        with self._op("read") as t:
            last = (
                t.select(pw.fn.MAX(t.c.seq))
                .where((t.c.peer == peer) & (t.c.direction == Direction.OUTGOING.value))
                .scalar()
            )
        return int(last or 0) + 1

    def floor_seq(self, peer: str) -> int | None:
        """The lowest sequence number of a message to ``peer`` not yet confirmed.

        Everything below it is delivered or failed for good, so a receiver
        need not wait for it. ``None`` when nothing is pending.
        """
        with self._op("read") as t:
            value = (
                t.select(pw.fn.MIN(t.c.seq))
                .where(
                    (t.c.peer == peer)
                    & (t.c.direction == Direction.OUTGOING.value)
                    & t.c.status.in_(_PENDING)
                )
                .scalar()
            )
        return None if value is None else int(value)

    def record_attempt(self, msg_id: str, request_id: str) -> bool:
        """Record a request written for an outgoing message; ``queued`` becomes ``sent``.

        Returns whether the status changed (one statement in the usual case).
        """
        with self._op("update a message in") as t:
            sent = t.update(
                request_id=request_id,
                attempts=t.c.attempts + 1,
                status=MessageStatus.SENT.value,
                updated_at=_fmt_ts(utcnow()),
            ).where((t.c.msg_id == msg_id) & (t.c.status == MessageStatus.QUEUED.value))
            if self._db.execute(sent).rowcount:
                return True
            t.update(request_id=request_id, attempts=t.c.attempts + 1).where(
                t.c.msg_id == msg_id
            ).execute()
            return False

    def outbox_requests(self) -> list[tuple[ChatMessage, str, str | None]]:
        """``(message, peer, last request id)`` of every outgoing message not yet confirmed,
        in send order."""
        with self._op("read") as t:
            query = (
                t.select(*[getattr(t.c, c) for c in (*_READ_COLUMNS, "request_id")])
                .where(
                    (t.c.direction == Direction.OUTGOING.value)
                    & t.c.status.in_(_PENDING)
                    & t.c.peer.is_null(False)  # a group message travels as per-member copies
                )
                .order_by(t.c.id)
            )
            rows = list(query.dicts())
        return [(self._to_message(r), r["peer"], r["request_id"]) for r in rows]

    def unnotified(self) -> list[tuple[ChatMessage, str]]:
        """Incoming ``(message, peer)`` whose listeners have not run yet, per peer in order."""
        with self._op("read") as t:
            query = (
                self._select(t)
                .where((t.c.direction == Direction.INCOMING.value) & (t.c.notified == 0))
                .order_by(t.c.peer, t.c.seq, t.c.id)
            )
            rows = list(query.dicts())
        return [(self._to_message(r), r["peer"]) for r in rows]

    def mark_notified(self, msg_id: str) -> None:
        """Record that listeners and bots were told about an incoming message."""
        with self._op("update a message in") as t:
            t.update(notified=1).where(t.c.msg_id == msg_id).execute()

    def last_notified_seq(self, peer: str) -> int | None:
        """The highest sequence number from ``peer`` already announced, if any."""
        with self._op("read") as t:
            value = (
                t.select(pw.fn.MAX(t.c.seq))
                .where(
                    (t.c.peer == peer)
                    & (t.c.direction == Direction.INCOMING.value)
                    & (t.c.notified == 1)
                )
                .scalar()
            )
        return None if value is None else int(value)

    # ------------------------------------------------------------------ edits, deletions, reactions

    def waiting_actions(self, target: str) -> list[ChatMessage]:
        """Incoming actions on ``target`` not applied yet (it had not arrived), in order."""
        with self._op("read") as t:
            query = (
                self._select(t)
                .where((t.c.target == target) & (t.c.applied == 0))
                .order_by(t.c.seq, t.c.id)
            )
            rows = list(query.dicts())
        return [self._to_message(row) for row in rows]

    def apply_action(self, action: ChatMessage, actor: str) -> str | None:
        """Apply an edit / delete / reaction to its target, in one transaction.

        Applying is independent of arrival order: an edit or reaction older
        (by the actor's sequence number) than what is already applied does
        not override it (an older edit is kept as an earlier version), and a
        deletion wins over everything. Returns what changed (``edited``,
        ``deleted``, ``reaction_added``, ``reaction_removed``) or ``None``.
        The caller has checked who may do it.
        """
        now = _fmt_ts(utcnow())
        target, seq = action.target, action.seq
        with self._op("update a message in") as t, self._db.atomic():
            row = (
                t.select(t.c.content, t.c.deleted, t.c.edit_seq, t.c.seq)
                .where(t.c.msg_id == target)
                .dicts()
                .first()
            )
            change: str | None = None
            if row is None:
                return None
            if row["deleted"]:
                if action.kind == "edit":  # a deleted message's text is gone, late edits too
                    t.update(content="").where(t.c.msg_id == action.msg_id).execute()
            elif action.kind == "edit":
                change = self._apply_edit(t, action, row, now)
            elif action.kind == "delete":
                t.update(content="", deleted=1, edited_at=_fmt_ts(action.timestamp)).where(
                    t.c.msg_id == target
                ).execute()
                # every copy of the text: versions, and the edit messages that carried them
                self._db.execute_sql(
                    "UPDATE message_edits SET content = '' WHERE msg_id = ?", (target,)
                )
                t.update(content="").where((t.c.target == target) & (t.c.kind == "edit")).execute()
                self._db.execute_sql("DELETE FROM reactions WHERE msg_id = ?", (target,))
                change = "deleted"
            elif action.kind == "reaction":
                change = self._apply_reaction(target or "", actor, action, seq, now)
            # an action that changed nothing (a repeated reaction) is not announced
            t.update(applied=1, error=None if change else "changed nothing").where(
                t.c.msg_id == action.msg_id
            ).execute()
            return change

    def _apply_edit(self, t: Any, action: ChatMessage, row: dict[str, Any], now: str) -> str | None:
        current = row["edit_seq"] if row["edit_seq"] is not None else row["seq"]
        newer = action.seq is None or current is None or action.seq > current
        if newer:  # the shown text becomes an earlier version
            self._db.execute_sql(
                "INSERT INTO message_edits (msg_id, content, replaced_at, edit_id, seq)"
                " VALUES (?, ?, ?, ?, ?)",
                (action.target, row["content"], now, action.msg_id, current),
            )
            t.update(
                content=action.content,
                edited_at=_fmt_ts(action.timestamp),
                edit_seq=action.seq if action.seq is not None else (current or 0) + 1,
            ).where(t.c.msg_id == action.target).execute()
            return "edited"
        # an older edit arriving late: only an earlier version
        self._db.execute_sql(
            "INSERT INTO message_edits (msg_id, content, replaced_at, edit_id, seq)"
            " VALUES (?, ?, ?, ?, ?)",
            (action.target, action.content, now, action.msg_id, action.seq),
        )
        return None

    def _apply_reaction(
        self, target: str, actor: str, action: ChatMessage, seq: int | None, now: str
    ) -> str | None:
        present = 0 if action.metadata.get("op") == "remove" else 1
        existing = self._db.execute_sql(
            "SELECT present, op_seq FROM reactions WHERE msg_id = ? AND user = ? AND emoji = ?",
            (target, actor, action.content),
        ).fetchone()
        last_seq = existing[1] if existing is not None else None
        if last_seq is not None and seq is not None and seq <= last_seq:
            return None  # an older change arriving late
        self._db.execute_sql(
            "INSERT INTO reactions (msg_id, user, emoji, created_at, present, op_seq)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (msg_id, user, emoji) DO UPDATE SET"
            " present = excluded.present, op_seq = excluded.op_seq",
            (target, actor, action.content, now, present, seq),
        )
        was = existing[0] if existing is not None else 0
        if present == was:
            return None
        return "reaction_added" if present else "reaction_removed"

    def prune_waiting_actions(self, older_than: timedelta) -> int:
        """Forget incoming actions whose message never arrived within ``older_than``."""
        cutoff = _fmt_ts(utcnow() - older_than)
        with self._op("update a message in") as t:
            query = t.delete().where(
                (t.c.applied == 0)
                & (t.c.direction == Direction.INCOMING.value)
                & (t.c.updated_at < cutoff)
            )
            return int(self._db.execute(query).rowcount)

    def refuse_action(self, msg_id: str, reason: str) -> None:
        """Settle an incoming action that may not be applied after all."""
        with self._op("update a message in") as t:
            t.update(applied=1, status=MessageStatus.FAILED.value, error=reason).where(
                t.c.msg_id == msg_id
            ).execute()

    def edits(self, msg_id: str) -> list[dict[str, Any]]:
        """Earlier versions of a message, oldest first (content erased if it was deleted)."""
        with self._op("read"):
            cursor = self._db.execute_sql(
                "SELECT content, replaced_at, edit_id FROM message_edits"
                " WHERE msg_id = ? ORDER BY seq IS NOT NULL, seq, id",
                (msg_id,),
            )
            return [
                {"content": c, "replaced_at": _parse_ts(r), "edit_id": e}
                for c, r, e in cursor.fetchall()
            ]

    def reactions(self, msg_ids: list[str]) -> dict[str, dict[str, list[str]]]:
        """``{msg_id: {emoji: [users...]}}`` for the given messages."""
        if not msg_ids:
            return {}
        found: dict[str, dict[str, list[str]]] = {}
        with self._op("read"):
            for start in range(0, len(msg_ids), 500):
                chunk = msg_ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                cursor = self._db.execute_sql(
                    f"SELECT msg_id, emoji, user FROM reactions WHERE present = 1"
                    f" AND msg_id IN ({marks})"
                    " ORDER BY created_at, user",
                    chunk,
                )
                for msg_id, emoji, user in cursor.fetchall():
                    found.setdefault(msg_id, {}).setdefault(emoji, []).append(user)
        return found

    # ------------------------------------------------------------------ groups

    def apply_group_change(self, change: ChatMessage, body: GroupChange) -> bool:
        """Adopt a membership change if it is the group's latest by ``(version, msg_id)``.

        ``version`` is one more than the change its author had seen, so a
        change made after another always wins over it, whatever the clocks
        say; concurrent changes (same version) are ordered by ``msg_id``, the
        same way on every member.
        """
        at = _fmt_ts(change.timestamp)
        with self._op("update a group in"), self._db.atomic():
            row = self._db.execute_sql(
                "SELECT version, change_id FROM groups WHERE group_id = ?", (change.group_id,)
            ).fetchone()
            if row is not None and (row[0], row[1]) >= (body.version, change.msg_id):
                return False
            self._db.execute_sql(
                "INSERT INTO groups"
                " (group_id, name, created_by, members, version, changed_at, change_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET"
                " name = excluded.name, members = excluded.members, version = excluded.version,"
                " changed_at = excluded.changed_at, change_id = excluded.change_id",
                (
                    change.group_id,
                    body.name,
                    body.created_by,
                    json.dumps(body.members),
                    body.version,
                    at,
                    change.msg_id,
                ),
            )
            return True

    def _group_row(self, row: tuple[Any, ...]) -> Group:
        group_id, name, created_by, members, version, changed_at, change_id = row
        return Group(
            group_id=group_id,
            version=version,
            name=name,
            created_by=created_by,
            members=tuple(json.loads(members)),
            changed_at=_parse_ts(changed_at),
            change_id=change_id,
        )

    def group(self, group_id: str) -> Group | None:
        """A group's current state, or ``None`` if unknown."""
        with self._op("read"):
            row = self._db.execute_sql(
                "SELECT group_id, name, created_by, members, version, changed_at, change_id"
                " FROM groups WHERE group_id = ?",
                (group_id,),
            ).fetchone()
        return None if row is None else self._group_row(row)

    def groups(self) -> list[Group]:
        """Every known group, by name."""
        with self._op("read"):
            rows = self._db.execute_sql(
                "SELECT group_id, name, created_by, members, version, changed_at, change_id"
                " FROM groups ORDER BY name, group_id"
            ).fetchall()
        return [self._group_row(row) for row in rows]

    def copies(self, msg_id: str) -> dict[str, MessageStatus]:
        """``{member: status}`` of the per-member copies of a group message."""
        with self._op("read") as t:
            rows = list(
                t.select(t.c.peer, t.c.status)
                .where((t.c.target == msg_id) & (t.c.kind == "fanout"))
                .tuples()
            )
        return {peer: MessageStatus(status) for peer, status in rows}

    # ------------------------------------------------------------------ contact policy

    def contact_policy(self) -> ContactPolicy:
        """The stored contact policy."""
        with self._op("read"):
            rows = self._db.execute_sql("SELECT email, status FROM contacts").fetchall()
            mode = self._db.execute_sql(
                "SELECT value FROM chat_settings WHERE key = 'contact_mode'"
            ).fetchone()
        return ContactPolicy(
            mode=mode[0] if mode and mode[0] in ("open", "contacts_only") else "open",
            allowed=frozenset(e for e, s in rows if s == "allowed"),
            blocked=frozenset(e for e, s in rows if s == "blocked"),
        )

    def set_contact(self, email: str, status: str | None) -> None:
        """Mark ``email`` ``allowed`` or ``blocked``, or forget it (``None``)."""
        with self._op("update the contacts in"):
            if status is None:
                self._db.execute_sql("DELETE FROM contacts WHERE email = ?", (email,))
            else:
                self._db.execute_sql(
                    "INSERT INTO contacts (email, status, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (email) DO UPDATE SET status = excluded.status,"
                    " updated_at = excluded.updated_at",
                    (email, status, _fmt_ts(utcnow())),
                )

    def set_setting(self, key: str, value: str) -> None:
        """Store one client setting that must survive restarts."""
        with self._op("update the settings in"):
            self._db.execute_sql(
                "INSERT INTO chat_settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def mark_read(self, msg_id: str) -> bool:
        """Mark an incoming message read; returns whether it was unread."""
        with self._op("update a message in") as t:
            query = t.update(read_at=_fmt_ts(utcnow())).where(
                (t.c.msg_id == msg_id)
                & (t.c.direction == Direction.INCOMING.value)
                & t.c.read_at.is_null()
            )
            return bool(self._db.execute(query).rowcount)

    def record_failed(
        self,
        *,
        sender: str,
        reason: str,
        raw: bytes,
        msg_id: str | None,
        keep: int = 10_000,
    ) -> None:
        """Keep a refused incoming request in ``failed_messages``, with its raw body.

        Only the newest ``keep`` rows are kept.
        """
        with self._op("record a refused message in"), self._db.atomic():
            cursor = self._db.execute_sql(
                "INSERT INTO failed_messages (received_at, sender, msg_id, reason, raw)"
                " VALUES (?, ?, ?, ?, ?)",
                (_fmt_ts(utcnow()), sender, msg_id, reason, raw),
            )
            self._db.execute_sql(
                "DELETE FROM failed_messages WHERE id <= ?", (cursor.lastrowid - keep,)
            )

    def failed_messages(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest refused incoming requests, newest first."""
        with self._op("read"):
            cursor = self._db.execute_sql(
                "SELECT received_at, sender, msg_id, reason, raw FROM failed_messages"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def history(
        self,
        *,
        peer: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
        group_id: str | None = None,
    ) -> list[ChatMessage]:
        """The newest ``limit`` matching messages, returned oldest first.

        ``peer`` matches both directions of the conversation with that datasite;
        ``since`` (naive means local time) is inclusive; equal timestamps keep
        insertion order.
        """
        if limit <= 0:
            return []
        with self._op("read") as t:
            query = self._select(t).where(t.c.kind == MESSAGE_KIND)
            if peer is not None:  # the one-to-one conversation (group messages excluded)
                query = query.where(t.c.conversation == peer)
            if group_id is not None:
                query = query.where(t.c.conversation == f"{GROUP_PREFIX}{group_id}")
            if since is not None:
                query = query.where(t.c.timestamp >= _fmt_ts(since))
            if thread_id is not None:
                query = query.where(t.c.thread_id == thread_id)
            query = query.order_by(t.c.timestamp.desc(), t.c.id.desc()).limit(limit)
            rows = list(query.dicts())
        return self._with_reactions([self._to_message(row) for row in reversed(rows)])

    def _with_reactions(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        found = self.reactions([m.msg_id for m in messages])
        if not found:
            return messages
        return [
            m.model_copy(update={"reactions": found[m.msg_id]}) if m.msg_id in found else m
            for m in messages
        ]

    def outbox(self) -> list[ChatMessage]:
        """Outgoing messages still ``queued`` or ``sent``, oldest first."""
        pending = [MessageStatus.QUEUED.value, MessageStatus.SENT.value]
        with self._op("read") as t:
            query = (
                self._select(t)
                .where((t.c.direction == Direction.OUTGOING.value) & t.c.status.in_(pending))
                .order_by(t.c.timestamp, t.c.id)
            )
            rows = list(query.dicts())
        return [self._to_message(row) for row in rows]

    def count(self) -> int:
        """How many messages are stored."""
        with self._op("read") as t:
            return int(t.select(pw.fn.COUNT(pw.SQL("*"))).scalar())

    def close(self) -> None:
        """Close the database. Idempotent; any later call raises :class:`StorageError`."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()


@hookimpl
def chat_register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    """Register the ``sqlite`` store."""
    register(SQLiteStore.name, SQLiteStore.from_context)
