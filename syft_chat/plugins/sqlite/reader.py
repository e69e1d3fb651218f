"""A read-only view of a syft-chat SQLite file, for tools that must not start a client.

The command line's ``history``, ``thread``, ``status``, ``search`` and
``conversations`` use it: they open the file with ``mode=ro`` and never touch the
workspace. Search, pages and the conversation list run the store's own queries
(:mod:`syft_chat.plugins.sqlite.queries`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from syft_chat.errors import InvalidMessageError, StorageError
from syft_chat.features.views import Conversation, HistoryPage, SearchHit
from syft_chat.models import ChatMessage, MessageStatus, to_utc
from syft_chat.plugins.sqlite import queries as sqlite_views
from syft_chat.plugins.sqlite.schema import _parse_ts as _parse_timestamp
from syft_chat.plugins.sqlite.store import _STATUSES, _load_metadata, _storage_error

__all__ = ["ReadOnlyHistory", "StoredMessage"]


def _db_error(path: Path, exc: BaseException) -> StorageError:
    return _storage_error(path, "read", exc)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class StoredMessage:
    """A message as the read-only reader sees it: the message plus its bookkeeping."""

    message: ChatMessage
    direction: str
    error: str | None
    updated_at: str | None

    def as_json(self) -> dict[str, Any]:
        from syft_chat.display import message_json

        data = message_json(self.message)
        updated = _parse_timestamp(self.updated_at).isoformat() if self.updated_at else None
        data.update(direction=self.direction, error=self.error, updated_at=updated)
        return data


class ReadOnlyHistory:
    """Reads a syft-chat SQLite file without writing to it (``mode=ro``).

    It answers the same history query as the store (newest ``limit``, returned
    oldest first) and finds messages and threads by a unique id prefix. A file
    written by an older syft-chat is migrated first, as a client would; that
    needs ``owner``.
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
        self._conn = conn
        return conn

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

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return list(conn.execute(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from exc

    @staticmethod
    def _stored(row: sqlite3.Row | Mapping[str, Any]) -> StoredMessage:
        known = _STATUSES
        # every column the message model knows (newer schemas add some), converted
        columns = row.keys()  # iterating a Row gives its values, not its names
        fields: dict[str, Any] = {
            name: row[name] for name in columns if name in ChatMessage.model_fields
        }
        fields.update(
            timestamp=_parse_timestamp(row["timestamp"]),
            metadata=_load_metadata(row["metadata"]),
            status=MessageStatus(row["status"]) if row["status"] in known else None,
        )
        message = ChatMessage(**fields)
        return StoredMessage(message, row["direction"], row["error"], row["updated_at"])

    def history(
        self,
        *,
        peer: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
    ) -> list[ChatMessage]:
        """The newest ``limit`` matching messages, oldest first (like ``get_chat_history``)."""
        columns = {row[1] for row in self._query("PRAGMA table_info(messages)")}
        # edits, deletions and reactions are delivery records, not history
        where, params = ["kind = 'message'" if "kind" in columns else "1=1"], []
        if peer is not None:
            where.append("peer = ?")
            params.append(peer)
        if since is not None:
            where.append("timestamp >= ?")
            params.append(to_utc(since).isoformat(sep=" ", timespec="microseconds"))
        if thread_id is not None:
            where.append("thread_id = ?")
            params.append(thread_id)
        rows = self._query(
            f"SELECT * FROM messages WHERE {' AND '.join(where)}"
            " ORDER BY timestamp DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [self._stored(row).message for row in reversed(rows)]

    # ---- the store's views (schema 3: kinds, conversations, the full-text index)

    def _run(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            return [dict(row) for row in conn.execute(sql, tuple(params))]
        except sqlite3.OperationalError as exc:
            if sqlite_views.is_query_error(exc):
                raise  # a malformed search query: search_rows says so
            raise _db_error(self.path, exc) from exc
        except sqlite3.Error as exc:
            raise _db_error(self.path, exc) from exc

    def _require_views(self) -> None:
        """Search and conversations need schema 3; migrate an older file (as a client
        would) when its owner is known."""
        tables = {r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type='table'")}
        if "messages_fts" in tables:
            return
        if self.owner is None:
            raise StorageError(
                f"{self.path} was written by an older syft-chat and must be upgraded for "
                "search and conversations; pass --config so that its owner is known"
            )
        self.close()
        self._conn = self._migrate_then_connect()

    def _message(self, row: Mapping[str, Any]) -> ChatMessage:
        return self._stored(row).message

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
    ) -> list[SearchHit]:
        """Chat messages matching ``query``, best first (like ``SyftChatClient.search``)."""
        self._require_views()
        rows = sqlite_views.search_rows(
            self._run,
            query,
            raw=raw,
            conversation=conversation,
            thread_id=thread_id,
            since=since,
            limit=limit,
            highlight=highlight,
        )
        return [
            SearchHit(message=self._message(r), snippet=r["snippet"] or "", rank=r["rank"])
            for r in rows
        ]

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
            self._run,
            conversation=conversation,
            thread_id=thread_id,
            since=since,
            limit=limit,
            before=before,
            after=after,
        )
        return HistoryPage(messages=[self._message(r) for r in rows], before=older, after=newer)

    def conversations(self) -> list[Conversation]:
        """Every conversation with its last message and unread count, newest first."""
        self._require_views()
        rows = sqlite_views.conversation_rows(self._run)
        ids = [int(r["last_id"]) for r in rows if r["last_id"] is not None]
        last = sqlite_views.rows_by_id(self._run, ids)
        return [
            sqlite_views.make_conversation(
                r,
                self._message(last[r["last_id"]]) if r["last_id"] in last else None,
                _parse_timestamp,
            )
            for r in rows
        ]

    def find(self, msg_id: str) -> StoredMessage | None:
        """The message with this id, or the only one whose id starts with it."""
        rows = self._query("SELECT * FROM messages WHERE msg_id = ?", [msg_id])
        if not rows and msg_id:
            rows = self._query(
                "SELECT * FROM messages WHERE msg_id LIKE ? ESCAPE '\\' LIMIT 2",
                [_like_prefix(msg_id)],
            )
            if len(rows) > 1:
                raise InvalidMessageError(
                    f"{msg_id!r} is the start of several message ids; give more characters"
                )
        return self._stored(rows[0]) if rows else None

    def resolve_thread(self, thread: str) -> str | None:
        """A thread id from a thread id, a unique prefix of one, or a message in the thread."""
        if self._query("SELECT 1 FROM messages WHERE thread_id = ? LIMIT 1", [thread]):
            return thread
        rows = self._query(
            "SELECT DISTINCT thread_id FROM messages WHERE thread_id LIKE ? ESCAPE '\\' LIMIT 2",
            [_like_prefix(thread)],
        )
        if len(rows) > 1:
            raise InvalidMessageError(
                f"{thread!r} is the start of several thread ids; give more characters"
            )
        if rows:
            return str(rows[0][0])
        found = self.find(thread)
        return found.message.thread_id or found.message.msg_id if found else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- context
