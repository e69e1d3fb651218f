"""The built-in ``sqlite`` message store: one SQLite file per client, through peewee.

The ``messages`` table keeps the seed's seven columns under their seed names
(``msg_id, sender, content, timestamp, thread_id, reply_to, metadata``), so the
raw SQL of the seed README keeps working, and adds what delivery tracking needs.
``metadata`` is JSON text; ``timestamp`` is UTC text in one fixed format
(``2024-05-01 12:00:00.000000+00:00``), so text order is time order and SQLite's
``datetime()`` reads it.

This module persists and queries; it decides nothing (the rules live in
:mod:`syft_chat.messaging` and :mod:`syft_chat.features`, above every store).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import peewee as pw

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
    with_reactions,
)
from syft_chat.models import (
    Attachment,
    ChatMessage,
    Direction,
    Group,
    MessageKind,
    MessageStatus,
    utcnow,
)
from syft_chat.plugins.sqlite.queries import find_rows, reaction_rows, where_sql
from syft_chat.plugins.sqlite.rows import (
    READ_LIST,
    attachments_json,
    message_of_row,
    message_of_values,
    reaction_of_row,
    reaction_of_values,
    record_of_row,
    record_of_values,
)
from syft_chat.plugins.sqlite.rows import parse_ts as _parse_ts
from syft_chat.plugins.sqlite.schema import MIGRATIONS as _MIGRATIONS
from syft_chat.plugins.sqlite.schema import (
    SCHEMA_VERSION,
    _fmt_ts,
)
from syft_chat.plugins.sqlite.views import HistoryViews

__all__ = [
    "SCHEMA_VERSION",
    "SQLiteStore",
    "chat_register_stores",
    "message_of_row",
    "reaction_of_row",
    "record_of_row",
]

log = logging.getLogger("syft_chat.store")

_STATUSES = frozenset(s.value for s in MessageStatus)
_KINDS = frozenset(k.value for k in MessageKind)
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_BOOLEAN = frozenset({"deleted", "applied", "notified"})
_TIMES = frozenset({"edited_at", "read_at"})
#: the one INSERT of a message, made once (not built per call)
_INSERT_COLUMNS = (
    "msg_id, sender, recipient, peer, content, timestamp, thread_id, reply_to, metadata,"
    " direction, status, error, updated_at, seq, notified, kind, target, target_sender,"
    " conversation, applied, deleted, edited_at, edit_seq, request_id, attempts, read_at,"
    " attachments"
)
_INSERT = (
    f"INSERT INTO messages ({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 27)})"
    " ON CONFLICT (msg_id, sender) DO NOTHING"
)


def _cause(exc: BaseException) -> BaseException:
    """The error that started it: a failed ROLLBACK after a failed statement (SQLite rolls
    back by itself on a full disk, so peewee's ROLLBACK then finds no transaction) hides
    the statement's error, which is the one worth reporting."""
    while "cannot rollback" in str(exc).lower() and exc.__context__ is not None:
        exc = exc.__context__
    return exc


def _storage_error(path: Path, action: str, exc: BaseException) -> StorageError:
    exc = _cause(exc)
    text = str(exc).lower()
    if "full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
        hint = "the disk is full: free some space on it"
        return StorageError(f"could not {action} the message database {path}: disk full ({hint})")
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

    One connection is shared by every thread, serialized by a re-entrant lock; a
    :meth:`transaction` holds the lock and SQLite's write lock (``BEGIN IMMEDIATE``)
    until it ends, so other processes sharing the file wait for it too.
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
        # absolute: the deleted/replaced check stats it again later, maybe from elsewhere
        self.path = Path(path).expanduser().absolute()
        self.owner = owner
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction() blocks (under the lock)
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
        self._file = self._identity()  # which file we opened (see _check_file)
        self._lost: str | None = None

    @classmethod
    def from_context(cls, ctx: BackendContext) -> SQLiteStore:
        """The store factory: open ``ctx.db_path`` for ``ctx.email``."""
        return cls(
            ctx.db_path,
            owner=ctx.email,
            busy_timeout_ms=ctx.settings.db_busy_timeout_ms,
            synchronous="FULL" if ctx.settings.durable else "NORMAL",
        )

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

    # ------------------------------------------------------------------ plumbing

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _check_file(self) -> None:
        """Refuse to go on if the file at ``path`` is no longer the one we opened (deleted
        or replaced: whatever we wrote would be lost, or land in a file nobody reads). One
        ``stat``; the first time it is noticed it is logged, every later call raises."""
        if self._lost is None:
            if self._file is None or self._identity() == self._file:
                return
            gone = not self.path.exists()
            self._lost = (
                f"the message database {self.path} was {'deleted' if gone else 'replaced'} "
                "while this client had it open; nothing more is stored or confirmed (senders "
                "are told to send again): close the client and start it again"
            )
            log.error("%s", self._lost)
        error = StorageError(self._lost)
        error.logged = True
        raise error

    @contextmanager
    def _op(self, action: str) -> Iterator[Any]:
        """Hold the lock, refuse a closed store (or one whose file was deleted), turn
        database errors into StorageError."""
        with self._lock:
            if self._db is None:
                raise StorageError(f"store is closed ({self.path})")
            if self._depth == 0 or self._lost is not None:
                self._check_file()
            try:
                yield self._messages
            except (pw.PeeweeException, sqlite3.Error) as exc:
                raise _storage_error(self.path, action, exc) from exc

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """One read statement, rows as tuples: what ``with self._op("read")`` around
        :meth:`_fetch` does, without a generator-based context manager per call (the hot
        reads: history, its reactions)."""
        with self._lock:
            if self._db is None:
                raise StorageError(f"store is closed ({self.path})")
            if self._depth == 0 or self._lost is not None:
                self._check_file()
            try:
                return self._db.connection().execute(sql, params).fetchall()  # type: ignore[no-any-return]
            except (pw.PeeweeException, sqlite3.Error) as exc:
                raise _storage_error(self.path, "read", exc) from exc

    def _sql(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute_sql(sql, tuple(params))

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self._sql(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @staticmethod
    def _to_message(row: dict[str, Any]) -> ChatMessage:
        return message_of_row(row)

    @staticmethod
    def _of_values(row: Sequence[Any]) -> ChatMessage:
        return message_of_values(row)

    def _with_reactions(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        return with_reactions(messages, self.reactions)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every change inside is kept, or none is (``BEGIN IMMEDIATE``; nested: a savepoint)."""
        with self._op("write to"):
            outer = self._depth == 0
            if outer:
                self._abandon_open_transaction()  # one a failed ROLLBACK left behind
            block = self._db.atomic("IMMEDIATE") if outer else self._db.atomic()
            self._depth += 1
            try:
                with block:
                    yield
                    if outer:  # before the COMMIT that a confirmation will rely on
                        self._check_file()
            finally:
                self._depth -= 1
                if outer:
                    self._abandon_open_transaction()

    def _abandon_open_transaction(self) -> None:
        """Roll back what SQLite still has open outside any block (peewee rolls back a failed
        COMMIT, but if that ROLLBACK fails too, the connection stays in the transaction and
        every later write would join it, never to be committed)."""
        if self._db is None or self._db.in_transaction():
            return  # inside a block of peewee's (e.g. the migration's)
        if self._db.connection().in_transaction:
            # if this fails too, it is tried again at the start of the next transaction()
            with contextlib.suppress(pw.PeeweeException, sqlite3.Error):
                self._db.execute_sql("ROLLBACK")

    # ------------------------------------------------------------------ messages

    def insert(self, record: StoredMessage) -> bool:
        """Store a new message; ``False`` (and nothing changed) if its ``(sender, msg_id)``
        exists."""
        m = record.message
        recipient = m.recipient
        if recipient is None:
            recipient = record.peer if record.direction is Direction.OUTGOING else self.owner
        try:
            metadata = json.dumps(m.metadata, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidMessageError(f"metadata is not JSON-serializable: {exc}") from exc
        values = (
            m.msg_id,
            m.sender,
            recipient,
            record.peer,
            m.content,
            _fmt_ts(m.timestamp),
            m.thread_id,
            m.reply_to,
            metadata,
            record.direction.value,
            (m.status or MessageStatus.RECEIVED).value,
            m.error,
            _fmt_ts(utcnow()),
            m.seq,
            int(record.notified),
            m.kind.value,
            m.target,
            m.target_sender,
            record.conversation,
            int(record.applied),
            int(m.deleted),
            _fmt_ts(m.edited_at) if m.edited_at else None,
            record.edit_seq,
            record.request_id,
            record.attempts,
            _fmt_ts(record.read_at) if record.read_at else None,
            attachments_json(m.attachments),
        )
        with self._op("store a message in"):
            return bool(self._db.execute_sql(_INSERT, values).rowcount == 1)

    def _row_id(self, msg_id: str, sender: str | None) -> tuple[str, list[Any]]:
        """SQL for the ``id`` of message ``(sender, msg_id)``; without ``sender``, of the
        owner's message with that id if there is one, else of the earliest stored."""
        if sender is not None:
            return "SELECT id FROM messages WHERE msg_id = ? AND sender = ?", [msg_id, sender]
        return (
            "SELECT id FROM messages WHERE msg_id = ? ORDER BY sender = ? DESC, id LIMIT 1",
            [msg_id, self.owner],
        )

    def get(self, msg_id: str, *, sender: str | None = None) -> StoredMessage | None:
        """The stored message ``(sender, msg_id)``; without ``sender``, the owner's own
        message with this id, else the earliest stored; ``None`` if there is none."""
        which, params = self._row_id(msg_id, sender)
        with self._op("read"):
            rows = self._fetch(f"SELECT {READ_LIST} FROM messages WHERE id = ({which})", params)
        return record_of_values(rows[0]) if rows else None

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
        values: dict[str, Any] = {"updated_at": _fmt_ts(utcnow())}
        for name, value in changes.items():
            if name in _BOOLEAN:
                value = int(bool(value))
            elif name in _TIMES:
                value = _fmt_ts(value) if value is not None else None
            elif name == "status":
                value = MessageStatus(value).value
            elif name == "attachments":
                value = attachments_json([Attachment.model_validate(a) for a in value])
            values[name] = value
        sets = ", ".join(f"{name} = ?" for name in values)
        which, which_params = self._row_id(msg_id, sender)
        params: list[Any] = [*values.values(), *which_params]
        where = f"id = ({which})"
        if if_status is not None:
            allowed = [MessageStatus(s).value for s in if_status]
            if not allowed:
                return False
            where += f" AND status IN ({', '.join('?' * len(allowed))})"
            params.extend(allowed)
        with self._op("update a message in"):
            return bool(self._sql(f"UPDATE messages SET {sets} WHERE {where}", params).rowcount)

    def find(self, query: MessageQuery) -> list[StoredMessage]:
        """Every stored message matching ``query``, in its order (the SQL is
        :func:`~syft_chat.plugins.sqlite.queries.find_sql`, the command line's too)."""
        return [record_of_values(row) for row in find_rows(self._read, query)]

    def find_messages(self, query: MessageQuery) -> list[ChatMessage]:
        """The messages of :meth:`find` without their delivery records (a history page:
        see :func:`~syft_chat.interfaces.find_messages`)."""
        return [message_of_values(row) for row in find_rows(self._read, query)]

    def remove(self, query: MessageQuery) -> int:
        """Delete the messages matching ``query``; how many."""
        where, params = where_sql(query)
        with self._op("delete messages from"):
            return int(self._sql(f"DELETE FROM messages WHERE {where}", params).rowcount)

    def max_seq(self, peer: str, direction: Direction, *, notified: bool | None = None) -> int:
        """The highest sequence number of messages to or from ``peer`` (0 if none)."""
        sql = "SELECT MAX(seq) FROM messages WHERE peer = ? AND direction = ?"
        params: list[Any] = [peer, direction.value]
        if notified is not None:
            sql += " AND notified = ?"
            params.append(int(notified))
        with self._op("read"):
            value = self._sql(sql, params).fetchone()[0]
        return int(value or 0)

    # ------------------------------------------------------------------ earlier versions

    @staticmethod
    def _of_message(msg_id: str, sender: str | None) -> tuple[str, tuple[Any, ...]]:
        if sender is None:
            return "msg_id = ?", (msg_id,)
        return "msg_id = ? AND sender IS ?", (msg_id, sender)

    def versions(self, msg_id: str, *, sender: str | None = None) -> list[Version]:
        """Earlier texts of message ``(sender, msg_id)``, oldest first."""
        where, params = self._of_message(msg_id, sender)
        with self._op("read"):
            rows = self._sql(
                "SELECT content, replaced_at, edit_id, seq FROM message_edits"
                f" WHERE {where} ORDER BY seq IS NULL, seq, id",
                params,
            ).fetchall()
        return [Version(c, _parse_ts(r), e, s) for c, r, e, s in rows]

    def add_version(self, msg_id: str, version: Version, *, sender: str | None = None) -> None:
        """Keep an earlier text of message ``(sender, msg_id)``."""
        with self._op("store an edit in"):
            self._sql(
                "INSERT INTO message_edits (msg_id, sender, content, replaced_at, edit_id, seq)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    msg_id,
                    sender,
                    version.content,
                    _fmt_ts(version.replaced_at),
                    version.edit_id,
                    version.seq,
                ),
            )

    def erase_versions(self, msg_id: str, *, sender: str | None = None) -> None:
        """Blank every earlier text of message ``(sender, msg_id)``."""
        where, params = self._of_message(msg_id, sender)
        with self._op("erase the edits in"):
            self._sql(f"UPDATE message_edits SET content = '' WHERE {where}", params)

    # ------------------------------------------------------------------ reactions

    def reactions(self, msg_ids: Sequence[str], *, removed: bool = False) -> list[Reaction]:
        """The reactions on these messages, oldest first."""
        rows = reaction_rows(self._read, msg_ids, removed=removed)
        return [reaction_of_values(row) for row in rows]

    def put_reaction(self, reaction: Reaction) -> None:
        """Store a reaction, replacing the one of the same message, user and emoji."""
        r = reaction
        with self._op("store a reaction in"):
            self._sql(
                "INSERT INTO reactions"
                " (msg_id, author, user, emoji, created_at, present, op_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (msg_id, author, user, emoji)"
                " DO UPDATE SET present = excluded.present, op_seq = excluded.op_seq",
                (
                    r.msg_id,
                    r.author,
                    r.user,
                    r.emoji,
                    _fmt_ts(r.created_at),
                    int(r.present),
                    r.op_seq,
                ),
            )

    # ------------------------------------------------------------------ groups

    def groups(self, group_id: str | None = None) -> list[Group]:
        """Every known group by name, or only ``group_id``'s."""
        sql = (
            "SELECT group_id, name, created_by, members, version, changed_at, change_id, roster"
            " FROM groups"
        )
        params: tuple[Any, ...] = ()
        if group_id is not None:
            sql, params = sql + " WHERE group_id = ?", (group_id,)
        with self._op("read"):
            rows = self._sql(sql + " ORDER BY name, group_id", params).fetchall()
        return [
            Group(
                group_id=gid,
                name=name,
                created_by=created_by,
                members=tuple(json.loads(members)),
                version=version,
                changed_at=_parse_ts(changed_at),
                change_id=change_id,
                roster=json.loads(roster or "{}"),
            )
            for gid, name, created_by, members, version, changed_at, change_id, roster in rows
        ]

    def put_group(self, group: Group) -> None:
        """Store a group's state, replacing the one with its id."""
        g = group
        with self._op("update a group in"):
            self._sql(
                "INSERT INTO groups"
                " (group_id, name, created_by, members, version, changed_at, change_id, roster)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (group_id) DO UPDATE SET"
                " name = excluded.name, created_by = excluded.created_by,"
                " members = excluded.members, version = excluded.version,"
                " changed_at = excluded.changed_at, change_id = excluded.change_id,"
                " roster = excluded.roster",
                (
                    g.group_id,
                    g.name,
                    g.created_by,
                    json.dumps(list(g.members)),
                    g.version,
                    _fmt_ts(g.changed_at),
                    g.change_id,
                    json.dumps({e: r.model_dump() for e, r in g.roster.items()}),
                ),
            )

    # ------------------------------------------------------------------ contacts and settings

    def contacts(self) -> dict[str, str]:
        """``{email: "allowed" | "blocked"}``."""
        with self._op("read"):
            return dict(self._sql("SELECT email, status FROM contacts").fetchall())

    def set_contact(self, email: str, status: str | None) -> None:
        """Mark ``email`` ``allowed`` or ``blocked``, or forget it (``None``)."""
        with self._op("update the contacts in"):
            if status is None:
                self._sql("DELETE FROM contacts WHERE email = ?", (email,))
            else:
                self._sql(
                    "INSERT INTO contacts (email, status, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (email) DO UPDATE SET status = excluded.status,"
                    " updated_at = excluded.updated_at",
                    (email, status, _fmt_ts(utcnow())),
                )

    def setting(self, key: str) -> str | None:
        """A stored setting, or ``None``."""
        with self._op("read"):
            row = self._sql("SELECT value FROM chat_settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        """Store one client setting that must survive restarts."""
        with self._op("update the settings in"):
            self._sql(
                "INSERT INTO chat_settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ refused requests

    def record_failed(self, failure: FailedRequest, *, keep: int) -> None:
        """Keep a refused incoming request; only the newest ``keep`` rows are kept."""
        f = failure
        with self._op("record a refused message in"), self._db.atomic():
            cursor = self._sql(
                "INSERT INTO failed_messages (received_at, sender, msg_id, reason, raw)"
                " VALUES (?, ?, ?, ?, ?)",
                (_fmt_ts(f.received_at), f.sender, f.msg_id, f.reason, f.raw),
            )
            self._sql("DELETE FROM failed_messages WHERE id <= ?", (cursor.lastrowid - keep,))

    def failed_messages(self, limit: int = 100) -> list[FailedRequest]:
        """The newest refused incoming requests, newest first."""
        with self._op("read"):
            rows = self._sql(
                "SELECT sender, reason, raw, msg_id, received_at FROM failed_messages"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            FailedRequest(s, r, bytes(raw or b""), m, _parse_ts(at)) for s, r, raw, m, at in rows
        ]

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
