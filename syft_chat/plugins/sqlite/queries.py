"""The reading queries of the ``sqlite`` store: message queries, reactions, cursor pages,
full-text search, conversations.

The SQL lives in module functions that take a ``run(sql, params) -> rows`` callable, so
the store (through peewee, :class:`HistoryViews`) and the read-only reader of the command
line (stdlib ``sqlite3``, ``mode=ro``) run the very same queries; both turn a row into a
message with :func:`~syft_chat.plugins.sqlite.store.message_of_row`.

* **Message queries**: :func:`find_sql` is the SQL of a
  :class:`~syft_chat.interfaces.MessageQuery` (``SQLiteStore.find`` and ``remove``), and
  :func:`find_rows` runs it. History is one such query,
  :func:`~syft_chat.features.views.history_query`, for ``get_chat_history`` and
  ``syft-chat history`` / ``thread`` alike.

* **Pages** walk one filtered history in ``(timestamp, id)`` order. A cursor is that pair
  for a page's first or last message, encoded opaquely; two messages sharing a timestamp
  are still told apart by ``id``, so every message is seen exactly once.
* **Search** reads the FTS5 index ``messages_fts``, which the schema's triggers keep in
  step with every insert, edit and delete (nothing here rebuilds it). By default the
  query is taken as plain words that must all occur (``word*`` is a prefix); ``raw=True``
  passes FTS5's own query syntax through.
* **Conversations** are the distinct values of ``messages.conversation`` (the peer's
  email for a one-to-one conversation, ``group:...`` for a group).
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import peewee as pw

from syft_chat.errors import InvalidMessageError
from syft_chat.features.views import Conversation, HistoryPage, SearchHit
from syft_chat.interfaces import GROUP_PREFIX, MessageQuery
from syft_chat.models import ChatMessage, Direction, MessageKind, MessageStatus, to_utc, utcnow

__all__ = [
    "GROUP_PREFIX",
    "READ_COLUMNS",
    "UNREAD_INDEX_SQL",
    "HistoryViews",
    "conversation_rows",
    "decode_cursor",
    "encode_cursor",
    "find_rows",
    "find_sql",
    "fts_query",
    "is_query_error",
    "page_rows",
    "prefixed",
    "reaction_rows",
    "search_rows",
    "where_sql",
]

_T = TypeVar("_T")

#: A row as a mapping from column name to value.
Row = Mapping[str, Any]
#: Runs one SQL statement with its parameters and returns every row.
Run = Callable[[str, Sequence[Any]], list[dict[str, Any]]]

_MESSAGE = MessageKind.MESSAGE.value
_CURSOR_VERSION = "1"
_MAX_QUERY_CHARS = 4096
_MAX_LIMIT = 10_000
_SNIPPET_TOKENS = 12
#: sqlite error texts that mean "your FTS5 query is malformed", not "the database is broken"
_QUERY_ERRORS = (
    "fts5:",
    "unterminated string",
    "unknown special query",
    "no such column",
    "syntax error",
)


# --------------------------------------------------------------------------- cursors


def encode_cursor(timestamp: str, row_id: int) -> str:
    """An opaque cursor for the position of the row ``(timestamp, row_id)``."""
    raw = f"{_CURSOR_VERSION}|{timestamp}|{int(row_id)}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: object) -> tuple[str, int]:
    """``(timestamp text, id)`` from a cursor made by :func:`encode_cursor`.

    Raises :class:`InvalidMessageError` for anything else.
    """
    shown = repr(cursor) if len(repr(cursor)) <= 80 else repr(cursor)[:77] + "..."
    problem = InvalidMessageError(
        f"{shown} is not a history cursor (pass the before or after of a HistoryPage unchanged)"
    )
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise problem
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise problem from None
    parts = text.split("|")
    if len(parts) != 3 or parts[0] != _CURSOR_VERSION:
        raise problem
    _, timestamp, row_id = parts
    if not (row_id.isascii() and row_id.isdigit()) or not timestamp or len(row_id) > 18:
        raise problem  # (more than 18 digits would not fit SQLite's 64-bit integer)
    try:
        datetime.fromisoformat(timestamp)
    except ValueError:
        raise problem from None
    return timestamp, int(row_id)


def _cursor_of(row: Row) -> str:
    return encode_cursor(str(row["timestamp"]), int(row["id"]))


# --------------------------------------------------------------------------- filters


def _ts_text(value: datetime) -> str:
    """The store's timestamp text (fixed-width UTC), for comparisons with ``timestamp``."""
    return to_utc(value).isoformat(sep=" ", timespec="microseconds")


def _filters(
    *,
    conversation: str | None,
    thread_id: str | None,
    since: datetime | None,
    alias: str = "",
) -> tuple[list[str], list[Any]]:
    """WHERE terms (joined with AND) for history-like queries: chat messages only."""
    p = f"{alias}." if alias else ""
    where, params = [f"{p}kind = '{_MESSAGE}'"], []
    if conversation is not None:
        where.append(f"{p}conversation = ?")
        params.append(conversation)
    if thread_id is not None:
        where.append(f"{p}thread_id = ?")
        params.append(thread_id)
    if since is not None:
        where.append(f"{p}timestamp >= ?")
        params.append(_ts_text(since))
    return where, params


# --------------------------------------------------------------------------- message queries

#: The columns a stored message is read from (what ``record_of_row`` converts).
READ_COLUMNS = (
    *("msg_id", "sender", "content", "timestamp", "thread_id", "reply_to", "metadata"),
    *("recipient", "status", "seq", "peer", "error", "kind", "target", "deleted", "edited_at"),
    *("conversation", "direction", "applied", "notified", "edit_seq", "request_id"),
    *("attempts", "read_at", "updated_at", "target_sender"),
)
_ORDER = {
    "stored": ("id",),
    "seq": ("peer", "seq", "id"),
    "time": ("timestamp", "id"),
}


def where_sql(query: MessageQuery) -> tuple[str, list[Any]]:
    """The WHERE condition (and its parameters) of the rows ``query`` matches."""
    clauses: list[str] = []
    params: list[Any] = []

    def one_of(column: str, values: Collection[Any]) -> None:
        clauses.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
        params.extend(values)

    if query.msg_ids is not None:
        one_of("msg_id", query.msg_ids)
    if query.sender is not None:
        clauses.append("sender = ?")
        params.append(query.sender)
    if query.direction is not None:
        clauses.append("direction = ?")
        params.append(query.direction.value)
    if query.kinds is not None:
        one_of("kind", sorted(k.value for k in query.kinds))
    if query.statuses is not None:  # literals (enum values): SQLite then uses partial indexes
        values = sorted(MessageStatus(s).value for s in query.statuses)
        clauses.append(f"status IN ({', '.join(repr(v) for v in values)})" if values else "0")
    for column in ("peer", "conversation", "thread_id", "target"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.has_peer is not None:
        clauses.append("peer IS NOT NULL" if query.has_peer else "peer IS NULL")
    if query.since is not None:
        clauses.append("timestamp >= ?")
        params.append(_ts_text(query.since))
    if query.seq_at_most is not None:
        clauses.append("seq <= ?")
        params.append(query.seq_at_most)
    if query.updated_before is not None:
        clauses.append("updated_at < ?")
        params.append(_ts_text(query.updated_before))
    for column in ("applied", "notified"):
        value = getattr(query, column)
        if value is not None:  # a literal (0 or 1): SQLite then uses the partial indexes
            clauses.append(f"{column} = {int(bool(value))}")
    return (" AND ".join(clauses) or "1"), params


def find_sql(query: MessageQuery) -> tuple[str, list[Any]]:
    """The SELECT (of :data:`READ_COLUMNS`) for ``query``, in its order and limit.

    With ``query.last`` the rows come in the reverse order (the last ``limit`` first):
    :func:`find_rows` turns them round.
    """
    where, params = where_sql(query)
    order = _ORDER[query.order]
    direction = " DESC" if query.last else ""
    sql = (
        f"SELECT {', '.join(READ_COLUMNS)} FROM messages WHERE {where}"
        f" ORDER BY {', '.join(c + direction for c in order)}"
    )
    if query.limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, int(query.limit)))
    return sql, params


def find_rows(run: Run, query: MessageQuery) -> list[dict[str, Any]]:
    """Every row matching ``query``, in its order (``SQLiteStore.find``'s rows)."""
    sql, params = find_sql(query)
    rows = run(sql, params)
    if query.last:
        rows.reverse()
    return rows


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def prefixed(run: Run, column: str, prefix: str, *, limit: int = 2) -> list[str]:
    """Up to ``limit`` distinct values of ``column`` (``msg_id`` or ``thread_id``) that
    start with ``prefix``."""
    if column not in ("msg_id", "thread_id"):
        raise ValueError(f"cannot look up {column!r} by prefix")
    rows = run(
        f"SELECT DISTINCT {column} AS value FROM messages"
        f" WHERE {column} LIKE ? ESCAPE '\\' LIMIT ?",
        [_like_prefix(prefix), limit],
    )
    return [str(r["value"]) for r in rows]


def reaction_rows(
    run: Run, msg_ids: Sequence[str], *, removed: bool = False
) -> list[dict[str, Any]]:
    """The ``reactions`` rows of these messages, oldest first (``SQLiteStore.reactions``);
    ``removed=True`` includes the ones taken back."""
    found: list[dict[str, Any]] = []
    present = "" if removed else " AND present = 1"
    for chunk in _chunks(list(msg_ids), 500):
        marks = ",".join("?" * len(chunk))
        found.extend(
            run(
                "SELECT msg_id, user, emoji, present, op_seq, created_at, author FROM reactions"
                f" WHERE msg_id IN ({marks}){present} ORDER BY created_at, user",
                chunk,
            )
        )
    return found


def check_limit(limit: object, *, name: str = "limit") -> int:
    """``limit`` as an int from 1 to 10,000, or :class:`InvalidMessageError`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise InvalidMessageError(f"{name} must be an int from 1 to {_MAX_LIMIT}, got {limit!r}")
    return limit


# --------------------------------------------------------------------------- paging


def page_rows(
    run: Run,
    *,
    conversation: str | None = None,
    thread_id: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    before: str | None = None,
    after: str | None = None,
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """One page of history rows, oldest first, and the cursors of its neighbours.

    Without a cursor: the newest ``limit`` rows. ``before``: the ``limit`` rows just
    older than that position; ``after``: the ``limit`` rows just newer. Returns
    ``(rows, before, after)`` where ``before`` / ``after`` are ``None`` when there is no
    older / newer row to page to.
    """
    limit = check_limit(limit)
    if before is not None and after is not None:
        raise InvalidMessageError("give before or after, not both")
    where, params = _filters(conversation=conversation, thread_id=thread_id, since=since)
    cond = " AND ".join(where)

    def fetch(extra: str, extra_params: Sequence[Any], order: str, n: int) -> list[dict[str, Any]]:
        sql = f"SELECT * FROM messages WHERE {cond}{extra} ORDER BY {order} LIMIT ?"
        return run(sql, [*params, *extra_params, n])

    def exists(op: str, row: Row) -> bool:
        sql = f"SELECT 1 AS x FROM messages WHERE {cond} AND (timestamp, id) {op} (?, ?) LIMIT 1"
        return bool(run(sql, [*params, row["timestamp"], row["id"]]))

    newest_first = "timestamp DESC, id DESC"
    if after is not None:
        position = decode_cursor(after)
        rows = fetch(" AND (timestamp, id) > (?, ?)", position, "timestamp, id", limit + 1)
        more_newer = len(rows) > limit
        rows = rows[:limit]
        more_older = bool(rows) and exists("<", rows[0])
    else:
        if before is not None:
            rows = fetch(
                " AND (timestamp, id) < (?, ?)", decode_cursor(before), newest_first, limit + 1
            )
        else:
            rows = fetch("", (), newest_first, limit + 1)
        more_older = len(rows) > limit
        rows = rows[:limit][::-1]
        more_newer = before is not None and bool(rows) and exists(">", rows[-1])
    return (
        rows,
        _cursor_of(rows[0]) if more_older else None,
        _cursor_of(rows[-1]) if more_newer else None,
    )


# --------------------------------------------------------------------------- search


def fts_query(text: object, *, raw: bool = False) -> str:
    """The FTS5 MATCH expression for a user's query.

    By default every whitespace-separated word must occur (each is quoted, so ``AND``,
    ``NEAR(``, ``"`` or ``*`` are searched as text, never parsed); a word ending in
    ``*`` matches as a prefix. With ``raw=True`` the text is FTS5 query syntax, passed
    through (a syntax error surfaces when the query runs).
    """
    if not isinstance(text, str):
        raise InvalidMessageError(f"the search query must be a str, got {type(text).__name__}")
    if len(text) > _MAX_QUERY_CHARS:
        raise InvalidMessageError(
            f"the search query is {len(text)} characters; the limit is {_MAX_QUERY_CHARS}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessageError(f"the search query is not valid Unicode text: {exc}") from None
    if raw:
        if not text.strip():
            raise InvalidMessageError("the search query is empty")
        if "\x00" in text:  # SQLite would silently ignore everything after it
            raise InvalidMessageError("the search query contains a NUL character")
        return text
    terms = []
    for word in text.replace("\x00", " ").split():
        prefix = word.endswith("*")
        word = word.rstrip("*")
        if not any(ch.isalnum() for ch in word):
            continue  # punctuation only: FTS5 would index no token for it
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    if not terms:
        raise InvalidMessageError(f"the search query {text[:80]!r} has no words to search for")
    return " AND ".join(terms)


def is_query_error(exc: BaseException) -> bool:
    """Whether a database error says the FTS5 query is malformed (not that the file is bad)."""
    text = str(exc).lower()
    return any(marker in text for marker in _QUERY_ERRORS)


def search_rows(
    run: Run,
    query: str,
    *,
    raw: bool = False,
    conversation: str | None = None,
    thread_id: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
    highlight: tuple[str, str] = ("[", "]"),
) -> list[dict[str, Any]]:
    """Chat messages matching ``query``, best match first (FTS5 ``bm25``; newer first on a tie).

    Each row is the message's columns plus ``snippet`` (the matching passage, matches
    wrapped in ``highlight``, elisions shown as ``…``) and ``rank`` (``bm25``: lower is
    a better match). Deleted messages and edit / delete / reaction records are never
    returned (the triggers keep them out of the index; the query checks again).
    """
    limit = check_limit(limit)
    match = fts_query(query, raw=raw)
    where, params = _filters(conversation=conversation, thread_id=thread_id, since=since, alias="m")
    # rank the matches first and compute snippets for the returned rows only:
    # snippet() in the ranking query would run for every match, not just the best ones
    sql = (
        "WITH best AS ("
        " SELECT m.id AS id, bm25(messages_fts) AS rank"
        " FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid"
        f" WHERE messages_fts MATCH ? AND m.deleted = 0 AND {' AND '.join(where)}"
        " ORDER BY rank, m.timestamp DESC, m.id DESC LIMIT ?)"
        " SELECT m.*, best.rank AS rank,"
        f" snippet(messages_fts, 0, ?, ?, '…', {_SNIPPET_TOKENS}) AS snippet"
        " FROM best JOIN messages_fts ON messages_fts.rowid = best.id"
        " JOIN messages AS m ON m.id = best.id"
        " WHERE messages_fts MATCH ?"
        " ORDER BY best.rank, m.timestamp DESC, m.id DESC"
    )
    try:
        return run(sql, [match, *params, limit, highlight[0], highlight[1], match])
    except (sqlite3.OperationalError, pw.OperationalError) as exc:
        if not is_query_error(exc):
            raise
        hint = (
            " (a raw query is FTS5 syntax: quote phrases, AND / OR / NOT, word*;"
            " without raw, the words are searched as plain text)"
        )
        raise InvalidMessageError(
            f"malformed search query {query[:80]!r}: {exc}{hint if raw else ''}"
        ) from None


# --------------------------------------------------------------------------- conversations


#: A partial index that makes unread counts cost the number of unread messages instead
#: of a conversation's length (261 ms -> 0.4 ms for 100 conversations of 10,000 messages).
#: Used when the schema has it; the planner does not pick it by itself, hence INDEXED BY.
UNREAD_INDEX = "ix_messages_unread"
UNREAD_INDEX_SQL = (
    f"CREATE INDEX {UNREAD_INDEX} ON messages (conversation)"
    f" WHERE direction = '{Direction.INCOMING.value}' AND kind = '{_MESSAGE}'"
    " AND deleted = 0 AND read_at IS NULL"
)


def _unread_source(run: Run) -> str:
    """``messages``, with the unread index forced if the schema has it."""
    found = run(
        "SELECT 1 AS x FROM sqlite_master WHERE type = 'index' AND name = ?", [UNREAD_INDEX]
    )
    return f"messages INDEXED BY {UNREAD_INDEX}" if found else "messages"


def conversation_rows(run: Run) -> list[dict[str, Any]]:
    """One row per conversation: ``conversation``, ``last_id`` (its newest chat message's
    ``id``, or ``None``), ``last_ts`` (that message's timestamp, else the conversation's
    newest row of any kind) and ``unread`` (incoming chat messages, not deleted, not read),
    newest activity first.

    The distinct conversations are found by seeking the ``(conversation, ...)`` index
    once per conversation, not by scanning the table.
    """
    sql = (
        "WITH RECURSIVE convs(c) AS ("
        " SELECT MIN(conversation) FROM messages WHERE conversation IS NOT NULL"
        " UNION ALL"
        " SELECT (SELECT MIN(conversation) FROM messages WHERE conversation > convs.c)"
        " FROM convs WHERE convs.c IS NOT NULL)"
        " SELECT c AS conversation, last.id AS last_id,"
        " COALESCE(last.timestamp,"
        "  (SELECT MAX(timestamp) FROM messages WHERE conversation = c)) AS last_ts,"
        f" (SELECT COUNT(*) FROM {_unread_source(run)}"
        f"  WHERE conversation = c AND direction = '{Direction.INCOMING.value}'"
        f"  AND kind = '{_MESSAGE}' AND deleted = 0 AND read_at IS NULL) AS unread"
        " FROM convs LEFT JOIN messages AS last ON last.id = ("
        "  SELECT id FROM messages"
        f"  WHERE conversation = c AND kind = '{_MESSAGE}'"
        "  ORDER BY timestamp DESC, id DESC LIMIT 1)"
        " WHERE c IS NOT NULL"  # a stranger's stray edits make no conversation; a group does
        f" AND (last.id IS NOT NULL OR c LIKE '{GROUP_PREFIX}%')"
        " ORDER BY last_ts DESC, c"
    )
    return run(sql, [])


def rows_by_id(run: Run, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The rows with these ``id``s, by id."""
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        for row in run(f"SELECT * FROM messages WHERE id IN ({marks})", chunk):
            out[int(row["id"])] = row
    return out


def make_conversation(
    row: Row, last: ChatMessage | None, parse_ts: Callable[[Any], datetime]
) -> Conversation:
    """A :class:`Conversation` from a :func:`conversation_rows` row and its last message."""
    conversation_id = str(row["conversation"])
    group = conversation_id.startswith(GROUP_PREFIX)
    return Conversation(
        conversation_id=conversation_id,
        peer=None if group else conversation_id,
        kind="group" if group else "direct",
        last_message=last,
        unread=int(row["unread"] or 0),
        updated_at=parse_ts(row["last_ts"]) if row["last_ts"] else None,
    )


# --------------------------------------------------------------------------- the mixin


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


class HistoryViews:
    """Store methods for paging, search and the conversation list (mixed into ``SQLiteStore``).

    Every method holds the store's lock for its queries and turns database errors into
    :class:`~syft_chat.errors.StorageError`, as the store's own methods do.
    """

    if TYPE_CHECKING:
        _db: Any
        owner: str

        def _op(self, action: str) -> AbstractContextManager[Any]: ...

        @staticmethod
        def _to_message(row: dict[str, Any]) -> ChatMessage: ...

        def _with_reactions(self, messages: list[ChatMessage]) -> list[ChatMessage]: ...

    def _run(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Run one statement on the store's connection (the caller holds ``_op``)."""
        return _rows(self._db.execute_sql(sql, tuple(params)))

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
        """One page of the matching history, oldest first, with the neighbours' cursors.

        See :func:`page_rows`; ``conversation`` is a peer's email (one-to-one) or a
        group's conversation id. Deleted messages appear as tombstones, as in history.
        """
        with self._op("read"):
            rows, older, newer = page_rows(
                self._run,
                conversation=conversation,
                thread_id=thread_id,
                since=since,
                limit=limit,
                before=before,
                after=after,
            )
        messages = self._with_reactions([self._to_message(r) for r in rows])
        return HistoryPage(messages=messages, before=older, after=newer)

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
        """Chat messages matching ``query``, best first (see :func:`search_rows`)."""
        with self._op("search"):
            rows = search_rows(
                self._run,
                query,
                raw=raw,
                conversation=conversation,
                thread_id=thread_id,
                since=since,
                limit=limit,
                highlight=highlight,
            )
        messages = self._with_reactions([self._to_message(r) for r in rows])
        return [
            SearchHit(message=m, snippet=r["snippet"] or "", rank=r["rank"])
            for m, r in zip(messages, rows, strict=True)
        ]

    def conversations(self) -> list[Conversation]:
        """Every conversation with its last chat message and unread count, newest first."""
        from syft_chat.plugins.sqlite.schema import _parse_ts

        with self._op("read"):
            rows = conversation_rows(self._run)
            last = rows_by_id(self._run, [r["last_id"] for r in rows if r["last_id"] is not None])
        return [
            make_conversation(
                r,
                self._to_message(last[r["last_id"]]) if r["last_id"] in last else None,
                _parse_ts,
            )
            for r in rows
        ]

    def mark_conversation_read(self, conversation: str) -> list[ChatMessage]:
        """Mark every unread incoming chat message of ``conversation`` read; return them.

        The same messages the conversation list counts as unread; each is marked in one
        transaction, so a message is returned by at most one caller.
        """
        with self._op("update a message in"), self._db.atomic():
            rows = self._run(
                f"SELECT * FROM {_unread_source(self._run)} WHERE conversation = ?"
                f" AND direction = '{Direction.INCOMING.value}' AND kind = '{_MESSAGE}'"
                " AND deleted = 0 AND read_at IS NULL ORDER BY timestamp, id",
                (conversation,),
            )
            stamp = _ts_text(utcnow())
            for chunk in _chunks([int(r["id"]) for r in rows], 500):
                marks = ", ".join("?" * len(chunk))
                self._db.execute_sql(
                    f"UPDATE messages SET read_at = ? WHERE id IN ({marks}) AND read_at IS NULL",
                    (stamp, *chunk),
                )
        return [self._to_message(r) for r in rows]


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
