"""A read-only view of a syft-chat SQLite file, for tools that must not start a client.

The command line's ``history``, ``thread``, ``status``, ``search`` and
``conversations`` use it: they open the file with ``mode=ro`` and never touch the
workspace. Every read is the store's own: the query of a history is
:func:`~syft_chat.features.views.history_query` (what ``get_chat_history`` runs), its
SQL :func:`~syft_chat.plugins.sqlite.queries.find_sql` (what ``SQLiteStore.find``
runs), rows become messages through :func:`~syft_chat.plugins.sqlite.rows.record_of_values`
and get their reactions through :func:`~syft_chat.features.views.with_reactions`, so a
command prints what the matching API call returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from syft_chat.errors import InvalidMessageError, StorageError
from syft_chat.features.views import (
    Conversation,
    HistoryPage,
    SearchHit,
    history_query,
    thread_conversation,
    with_reactions,
)
from syft_chat.interfaces import MessageQuery, Reaction
from syft_chat.interfaces import StoredMessage as StoredRecord
from syft_chat.models import ChatMessage
from syft_chat.plugins.sqlite import queries as sqlite_views
from syft_chat.plugins.sqlite import search as sqlite_search
from syft_chat.plugins.sqlite import summary as sqlite_list
from syft_chat.plugins.sqlite.rows import (
    message_of_row,
    message_of_values,
    reaction_of_values,
    record_of_values,
)
from syft_chat.plugins.sqlite.rows import parse_ts as _parse_timestamp
from syft_chat.plugins.sqlite.store import _storage_error

__all__ = ["ReadOnlyHistory", "StoredMessage"]

#: What the migration to schema 3 gives the columns a schema-1 or -2 file lacks. Such a
#: file is read (unmigrated) through a TEMP view that adds them, so that the store's
#: queries and row conversion run on it unchanged.
_LEGACY_COLUMNS = {
    "seq": "NULL",
    "request_id": "NULL",
    "attempts": "0",
    "notified": "1",
    "read_at": "NULL",
    "kind": "'message'",
    "target": "NULL",
    "conversation": "peer",
    "deleted": "0",
    "edited_at": "NULL",
    "applied": "1",
    "edit_seq": "NULL",
    "target_sender": "NULL",
    "attachments": "'[]'",
}


def _db_error(path: Path, exc: BaseException) -> StorageError:
    return _storage_error(path, "read", exc)


@dataclass
class StoredMessage:
    """A message as ``status`` shows it: the message (as ``get_message`` returns it) plus
    its bookkeeping."""

    message: ChatMessage
    direction: str
    error: str | None
    updated_at: datetime | None

    @classmethod
    def of(cls, record: StoredRecord) -> StoredMessage:
        m = record.message
        return cls(m, record.direction.value, m.error, record.updated_at)

    def as_json(self) -> dict[str, Any]:
        from syft_chat.display import message_json

        data = message_json(self.message)
        updated = self.updated_at.isoformat() if self.updated_at else None
        data.update(direction=self.direction, error=self.error, updated_at=updated)
        return data


class ReadOnlyHistory:
    """Reads a syft-chat SQLite file without writing to it (``mode=ro``).

    It runs the store's queries (history: the newest ``limit``, returned oldest
    first) and finds messages and threads by a unique id prefix. A file written by
    the original library is migrated first, as a client would (that needs
    ``owner``); one written by syft-chat before schema 3 is read as it is, and
    migrated only for search, pages and the conversation list.
    """

    def __init__(self, path: Path, *, owner: str | None = None) -> None:
        self.path = path
        self.owner = owner
        self._conn: sqlite3.Connection | None = None

    @property
    def exists(self) -> bool:
        if self.path.exists() and not self.path.is_file():
            raise StorageError(f"{self.path} is not a message database (it is not a file)")
        return self.path.is_file()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if not self.exists:
            raise StorageError(
                f"there is no message database at {self.path} yet: it is created the first "
                "time this datasite sends or serves (or pass --db / set SYFT_CHAT_DB)"
            )
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
            conn.row_factory = sqlite3.Row
            columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        except (sqlite3.Error, OSError) as exc:
            raise _db_error(self.path, exc) from exc
        if not columns:
            conn.close()
            raise StorageError(f"{self.path} has no 'messages' table: not a syft-chat database")
        if "direction" not in columns:  # written by the original library: migrate it once
            conn.close()
            conn = self._migrate_then_connect()
        else:
            self._check_version(conn)
            if "attachments" not in columns:  # schema 1 to 7
                self._legacy_view(conn, columns)
        self._conn = conn
        return conn

    def _legacy_view(self, conn: sqlite3.Connection, columns: set[str]) -> None:
        """Show an older file's ``messages`` with schema 8's columns, and its reactions
        (none before schema 3) with schema 5's ``author``, in TEMP views (of this
        connection only: the file is not written)."""
        added = "".join(
            f", {value} AS {name}" for name, value in _LEGACY_COLUMNS.items() if name not in columns
        )
        try:
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"CREATE TEMP VIEW messages AS SELECT *{added} FROM main.messages")
            if "target_sender" in columns:  # schema 5 to 7: its reactions are schema 5's
                pass
            elif "kind" in columns:  # schema 3 or 4: reactions without their author
                conn.execute(
                    "CREATE TEMP VIEW reactions AS SELECT *, '' AS author FROM main.reactions"
                )
            else:
                conn.execute(
                    "CREATE TEMP VIEW reactions AS SELECT NULL AS msg_id, NULL AS user,"
                    " NULL AS emoji, 1 AS present, NULL AS op_seq, NULL AS created_at,"
                    " '' AS author WHERE 0"
                )
        except sqlite3.Error as exc:
            conn.close()
            raise _db_error(self.path, exc) from exc

    def _check_version(self, conn: sqlite3.Connection) -> None:
        from syft_chat.plugins.sqlite.store import SCHEMA_VERSION

        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.Error:
            row = None
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            conn.close()
            raise StorageError(
                f"the message database {self.path} was written by a newer syft-chat (schema "
                f"version {row[0]}, this one knows {SCHEMA_VERSION}); upgrade syft-chat"
            )

    def _migrate_then_connect(self) -> sqlite3.Connection:
        from syft_chat.plugins.sqlite.store import SQLiteStore

        if self.owner is None:
            raise StorageError(
                f"{self.path} was written by an older syft-chat and must be migrated; "
                "pass --config so that its owner is known"
            )
        SQLiteStore(self.path, owner=self.owner).close()
        self._conn = None
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        return conn

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one of the store's queries (the ``run`` of :mod:`~.queries`)."""
        conn = self._connect()
        try:
            return [dict(row) for row in conn.execute(sql, tuple(params))]
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from exc

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one of the store's hot reads, rows as tuples (the ``fetch`` of :mod:`~.queries`)."""
        cursor = self._connect().cursor()
        cursor.row_factory = None
        try:
            return cursor.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from exc

    def _fetch_search(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """:meth:`_fetch`, letting a malformed FTS5 query through (search_rows says so)."""
        cursor = self._connect().cursor()
        cursor.row_factory = None
        try:
            return cursor.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:
            if sqlite_search.is_query_error(exc):
                raise
            raise _db_error(self.path, exc) from exc
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from exc

    def find_records(self, query: MessageQuery) -> list[StoredRecord]:
        """What ``SQLiteStore.find(query)`` returns, from the same SQL and conversion."""
        return [record_of_values(row) for row in sqlite_views.find_rows(self._fetch, query)]

    def reactions(self, msg_ids: Sequence[str], *, removed: bool = False) -> list[Reaction]:
        """What ``SQLiteStore.reactions`` returns, from the same SQL and conversion."""
        rows = sqlite_views.reaction_rows(self._fetch, msg_ids, removed=removed)
        return [reaction_of_values(row) for row in rows]

    def _with_reactions(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        return with_reactions(messages, self.reactions)

    def history(
        self,
        *,
        conversation: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
    ) -> list[ChatMessage]:
        """The newest ``limit`` matching chat messages, oldest first: ``get_chat_history``.

        ``conversation`` is a peer's email (the one-to-one conversation) or a group's
        ``group:<id>``. The query is :func:`~syft_chat.features.views.history_query`.
        """
        conversation = thread_conversation(self.find_records, thread_id, conversation)
        query = history_query(
            conversation=conversation, limit=limit, since=since, thread_id=thread_id
        )
        rows = sqlite_views.find_rows(self._fetch, query)
        return self._with_reactions([message_of_values(row) for row in rows])

    # ---- views that need schema 3 (the full-text index)

    def _require_views(self) -> None:
        """Search and conversations need schema 3; migrate an older file (as a client
        would) when its owner is known."""
        found = self._run("SELECT name FROM sqlite_master WHERE type = 'table'")
        if "messages_fts" in {r["name"] for r in found}:
            return
        if self.owner is None:
            raise StorageError(
                f"{self.path} was written by an older syft-chat and must be upgraded for "
                "search and conversations; pass --config so that its owner is known"
            )
        self.close()
        self._conn = self._migrate_then_connect()

    def search(
        self,
        query: str,
        *,
        conversation: str | None = None,
        thread_id: str | None = None,
        since: datetime | None = None,
        limit: int = 20,
        raw: bool = False,
        highlight: tuple[str, str] = ("[", "]"),
        order: str = "newest",
    ) -> list[SearchHit]:
        """Chat messages matching ``query``, newest first or best first among the newest
        (like ``SyftChatClient.search``)."""
        self._require_views()
        rows = sqlite_search.search_rows(
            self._fetch_search,
            query,
            raw=raw,
            conversation=thread_conversation(self.find_records, thread_id, conversation),
            thread_id=thread_id,
            since=since,
            limit=limit,
            highlight=highlight,
            order=order,
        )
        return sqlite_search.search_hits(rows, self._with_reactions)

    def history_page(
        self,
        *,
        conversation: str | None = None,
        thread_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """One page of history with its neighbours' cursors (like ``get_history_page``)."""
        self._require_views()
        rows, older, newer = sqlite_views.page_rows(
            self._fetch,
            conversation=thread_conversation(self.find_records, thread_id, conversation),
            thread_id=thread_id,
            since=since,
            limit=limit,
            before=before,
            after=after,
        )
        messages = self._with_reactions([message_of_values(r) for r in rows])
        return HistoryPage(messages=messages, before=older, after=newer)

    def conversations(
        self, *, limit: int | None = None, before: Conversation | None = None
    ) -> list[Conversation]:
        """The conversations, the most recently active first (like
        ``SyftChatClient.list_conversations``): all, or ``limit`` after ``before``."""
        self._require_views()
        tables = self._run("SELECT name FROM sqlite_master WHERE type = 'table'")
        if sqlite_list.SUMMARY_TABLE in {r["name"] for r in tables}:
            return sqlite_list.summary_page(self._fetch, limit=limit, before=before)
        # a file older than schema 7, read as it is: the list counted from messages
        rows = sqlite_list.conversation_rows(self._run)
        ids = [int(r["last_id"]) for r in rows if r["last_id"] is not None]
        last = sqlite_list.rows_by_id(self._run, ids)
        found = [
            sqlite_list.make_conversation(
                r,
                message_of_row(last[r["last_id"]]) if r["last_id"] in last else None,
                _parse_timestamp,
            )
            for r in rows
        ]
        return sqlite_list.fallback_page(found, limit=limit, before=before)

    # ---- lookups by id or prefix

    def _record(self, msg_id: str) -> StoredRecord | None:
        found = self.find_records(MessageQuery(msg_ids=(msg_id,)))  # as SQLiteStore.get:
        own = [r for r in found if r.message.sender == self.owner]  # one's own first
        return (own or found)[0] if found else None

    def _find_record(self, msg_id: str) -> StoredRecord | None:
        record = self._record(msg_id)
        if record is None and msg_id:
            ids = sqlite_views.prefixed(self._run, "msg_id", msg_id)
            if len(ids) > 1:
                raise InvalidMessageError(
                    f"{msg_id!r} is the start of several message ids; give more characters"
                )
            record = self._record(ids[0]) if ids else None
        return record

    def find(self, msg_id: str) -> StoredMessage | None:
        """The message with this id, or the only one whose id starts with it (as
        ``get_message`` returns it, plus its bookkeeping)."""
        record = self._find_record(msg_id)
        return StoredMessage.of(record) if record is not None else None

    def resolve_thread(self, thread: str) -> tuple[str, str | None] | None:
        """A thread, ``(thread id, conversation)``, from a thread id, a unique prefix of
        one, or a message in the thread (that message's conversation; for a thread id,
        that of :func:`~syft_chat.features.views.thread_conversation`)."""
        if self.find_records(MessageQuery(thread_id=thread, limit=1)):
            return thread, thread_conversation(self.find_records, thread)
        ids = sqlite_views.prefixed(self._run, "thread_id", thread)
        if len(ids) > 1:
            raise InvalidMessageError(
                f"{thread!r} is the start of several thread ids; give more characters"
            )
        if ids:
            return ids[0], thread_conversation(self.find_records, ids[0])
        record = self._find_record(thread)
        if record is None:
            return None
        return record.message.thread_id or record.message.msg_id, record.conversation

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- context
