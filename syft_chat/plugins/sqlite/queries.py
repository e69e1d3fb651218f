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
import functools
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import peewee as pw

from syft_chat.errors import InvalidMessageError
from syft_chat.features.views import Conversation, HistoryPage, SearchHit
from syft_chat.interfaces import GROUP_PREFIX, MessageQuery
from syft_chat.models import ChatMessage, Direction, MessageKind, MessageStatus, to_utc, utcnow
from syft_chat.plugins.sqlite.ranking import bm25_scores, plain_terms
from syft_chat.plugins.sqlite.rows import (
    READ_COLUMNS,
    READ_LIST,
    READ_LIST_M,
    message_of_values,
    parse_ts,
)
from syft_chat.plugins.sqlite.summary import SUMMARY_TABLE, page_sql

__all__ = [
    "GROUP_PREFIX",
    "READ_COLUMNS",
    "SUMMARY_TABLE",
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
#: A row as a plain tuple (of :data:`READ_COLUMNS`, for message rows).
Values = Sequence[Any]
#: Runs one SQL statement with its parameters and returns every row as a tuple: the
#: hot reads (no column names, no dicts).
Fetch = Callable[[str, Sequence[Any]], list[Values]]

_MESSAGE = MessageKind.MESSAGE.value
_TS = READ_COLUMNS.index("timestamp")
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


def _cursor_of(row: Values) -> str:
    """The cursor of a page row (:data:`READ_COLUMNS` then ``id``)."""
    return encode_cursor(str(row[_TS]), int(row[-1]))


# --------------------------------------------------------------------------- filters


def _ts_text(value: datetime) -> str:
    """The store's timestamp text (fixed-width UTC), for comparisons with ``timestamp``."""
    return to_utc(value).isoformat(sep=" ", timespec="microseconds")


@functools.lru_cache(maxsize=64)
def _filter_sql(conversation: bool, thread: bool, since: bool, alias: str = "") -> str:
    """WHERE terms of history-like queries (chat messages only), made once per shape."""
    p = f"{alias}." if alias else ""
    where = [f"{p}kind = '{_MESSAGE}'"]
    if conversation:
        where.append(f"{p}conversation = ?")
    if thread:
        where.append(f"{p}thread_id = ?")
    if since:
        where.append(f"{p}timestamp >= ?")
    return " AND ".join(where)


def _filters(
    *,
    conversation: str | None,
    thread_id: str | None,
    since: datetime | None,
    alias: str = "",
) -> tuple[str, list[Any]]:
    """The WHERE condition for history-like queries (chat messages only), and its
    parameters; the text is cached per shape (:func:`_filter_sql`)."""
    params: list[Any] = [v for v in (conversation, thread_id) if v is not None]
    if since is not None:
        params.append(_ts_text(since))
    shape = (conversation is not None, thread_id is not None, since is not None)
    return _filter_sql(*shape, alias), params


# --------------------------------------------------------------------------- message queries

_ORDER = {
    "stored": ("id",),
    "seq": ("peer", "seq", "id"),
    "time": ("timestamp", "id"),
}
#: ``(column, attribute)`` of the equality filters of a :class:`MessageQuery`
_EQUAL = (
    ("sender", "sender"),
    ("peer", "peer"),
    ("conversation", "conversation"),
    ("thread_id", "thread_id"),
    ("target", "target"),
)


def _shape(query: MessageQuery) -> tuple[tuple[Any, ...], list[Any]]:
    """The shape of ``query`` (what its SQL text depends on) and its parameters.

    Enum filters (kinds, statuses, direction) and flags are part of the shape and are
    written into the SQL as literals, so that SQLite can use the partial indexes that
    name them; everything a caller chooses freely is a parameter.
    """
    shape: list[Any] = []
    params: list[Any] = []
    if query.msg_ids is not None:
        shape.append(("msg_ids", len(query.msg_ids)))
        params.extend(query.msg_ids)
    for column, attribute in _EQUAL:
        value = getattr(query, attribute)
        if value is not None:
            shape.append(column)
            params.append(value)
    if query.direction is not None:
        shape.append(("direction", Direction(query.direction).value))
    if query.kinds is not None:
        shape.append(("kind", tuple(sorted(MessageKind(k).value for k in query.kinds))))
    if query.statuses is not None:
        shape.append(("status", tuple(sorted(MessageStatus(s).value for s in query.statuses))))
    if query.has_peer is not None:
        shape.append(("has_peer", bool(query.has_peer)))
    if query.since is not None:
        shape.append("since")
        params.append(_ts_text(query.since))
    if query.seq_at_most is not None:
        shape.append("seq_at_most")
        params.append(query.seq_at_most)
    if query.updated_before is not None:
        shape.append("updated_before")
        params.append(_ts_text(query.updated_before))
    for column in ("applied", "notified"):
        value = getattr(query, column)
        if value is not None:
            shape.append((column, int(bool(value))))
    return tuple(shape), params


def _literals(column: str, values: Sequence[str]) -> str:
    """``column = 'v'`` / ``column IN ('a', 'b')`` of enum values (never user text)."""
    if not values:
        return "0"
    if len(values) == 1:
        return f"{column} = '{values[0]}'"
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


@functools.lru_cache(maxsize=512)
def _where_of_shape(shape: tuple[Any, ...]) -> str:
    clauses: list[str] = []
    for part in shape:
        name, value = part if isinstance(part, tuple) else (part, None)
        if name == "msg_ids":
            clauses.append(f"msg_id IN ({', '.join('?' * value)})" if value else "0")
        elif name in ("direction",):
            clauses.append(f"{name} = '{value}'")
        elif name == "kind":
            clauses.append(_literals(name, value))
        elif name == "status":  # IN, as the partial index of unconfirmed messages says
            clauses.append(f"status IN ({', '.join(repr(v) for v in value)})" if value else "0")
        elif name == "has_peer":
            clauses.append("peer IS NOT NULL" if value else "peer IS NULL")
        elif name == "since":
            clauses.append("timestamp >= ?")
        elif name == "seq_at_most":
            clauses.append("seq <= ?")
        elif name == "updated_before":
            clauses.append("updated_at < ?")
        elif name in ("applied", "notified"):
            clauses.append(f"{name} = {int(value)}")
        else:
            clauses.append(f"{name} = ?")
    return " AND ".join(clauses) or "1"


def where_sql(query: MessageQuery) -> tuple[str, list[Any]]:
    """The WHERE condition (and its parameters) of the rows ``query`` matches.

    The text is made once per shape of query and cached (:func:`_shape`)."""
    shape, params = _shape(query)
    return _where_of_shape(shape), params


@functools.lru_cache(maxsize=512)
def _find_of_shape(shape: tuple[Any, ...], order: str, last: bool, limited: bool) -> str:
    direction = " DESC" if last else ""
    sql = (
        f"SELECT {READ_LIST} FROM messages WHERE {_where_of_shape(shape)}"
        f" ORDER BY {', '.join(c + direction for c in _ORDER[order])}"
    )
    return sql + " LIMIT ?" if limited else sql


def find_sql(query: MessageQuery) -> tuple[str, list[Any]]:
    """The SELECT (of :data:`READ_COLUMNS`) for ``query``, in its order and limit.

    With ``query.last`` the rows come in the reverse order (the last ``limit`` first):
    :func:`find_rows` turns them round. The text is cached per shape of query.
    """
    shape, params = _shape(query)
    if query.limit is not None:
        params.append(max(0, int(query.limit)))
    return _find_of_shape(shape, query.order, bool(query.last), query.limit is not None), params


def find_rows(fetch: Fetch, query: MessageQuery) -> list[Values]:
    """Every row matching ``query`` as :data:`READ_COLUMNS` tuples, in its order
    (``SQLiteStore.find``'s rows)."""
    sql, params = find_sql(query)
    rows = fetch(sql, params)
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


@functools.lru_cache(maxsize=64)
def _reaction_sql(count: int, removed: bool) -> str:
    present = "" if removed else " AND present = 1"
    return (
        "SELECT msg_id, user, emoji, present, op_seq, created_at, author FROM reactions"
        f" WHERE msg_id IN ({','.join('?' * count)}){present} ORDER BY created_at, user"
    )


def reaction_rows(fetch: Fetch, msg_ids: Sequence[str], *, removed: bool = False) -> list[Values]:
    """The ``reactions`` rows of these messages as tuples ``(msg_id, user, emoji, present,
    op_seq, created_at, author)``, oldest first (``SQLiteStore.reactions``);
    ``removed=True`` includes the ones taken back."""
    found: list[Values] = []
    for chunk in _chunks(list(msg_ids), 500):
        found.extend(fetch(_reaction_sql(len(chunk), removed), chunk))
    return found


def check_limit(limit: object, *, name: str = "limit") -> int:
    """``limit`` as an int from 1 to 10,000, or :class:`InvalidMessageError`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise InvalidMessageError(f"{name} must be an int from 1 to {_MAX_LIMIT}, got {limit!r}")
    return limit


# --------------------------------------------------------------------------- paging


@functools.lru_cache(maxsize=128)
def _page_sql(cond: str, cursor: str) -> tuple[str, str]:
    """The page query and the neighbour test for one filter and one kind of cursor
    (``""`` none, ``"<"`` before, ``">"`` after), made once."""
    extra = f" AND (timestamp, id) {cursor} (?, ?)" if cursor else ""
    order = "timestamp, id" if cursor == ">" else "timestamp DESC, id DESC"
    page = f"SELECT {READ_LIST}, id FROM messages WHERE {cond}{extra} ORDER BY {order} LIMIT ?"
    # the other side of the page: is there an older (after) / newer (before) row?
    other = "<" if cursor == ">" else ">"
    exists = f"SELECT 1 FROM messages WHERE {cond} AND (timestamp, id) {other} (?, ?) LIMIT 1"
    return page, exists


def page_rows(
    fetch: Fetch,
    *,
    conversation: str | None = None,
    thread_id: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    before: str | None = None,
    after: str | None = None,
) -> tuple[list[Values], str | None, str | None]:
    """One page of history rows (:data:`READ_COLUMNS` then ``id``), oldest first, and the
    cursors of its neighbours.

    Without a cursor: the newest ``limit`` rows. ``before``: the ``limit`` rows just
    older than that position; ``after``: the ``limit`` rows just newer. Returns
    ``(rows, before, after)`` where ``before`` / ``after`` are ``None`` when there is no
    older / newer row to page to.
    """
    limit = check_limit(limit)
    if before is not None and after is not None:
        raise InvalidMessageError("give before or after, not both")
    cond, params = _filters(conversation=conversation, thread_id=thread_id, since=since)
    if after is not None:
        page, exists = _page_sql(cond, ">")
        rows = fetch(page, [*params, *decode_cursor(after), limit + 1])
        more_newer = len(rows) > limit
        rows = rows[:limit]
        more_older = bool(rows) and bool(fetch(exists, [*params, rows[0][_TS], rows[0][-1]]))
    else:
        page, exists = _page_sql(cond, "<" if before is not None else "")
        position = decode_cursor(before) if before is not None else ()
        rows = fetch(page, [*params, *position, limit + 1])
        more_older = len(rows) > limit
        rows = rows[:limit][::-1]
        more_newer = (
            before is not None
            and bool(rows)
            and bool(fetch(exists, [*params, rows[-1][_TS], rows[-1][-1]]))
        )
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


#: ``order="relevance"`` ranks only the newest this many matches (after the filters):
#: ranking every match of an everyday word (a third of a million messages) took
#: ~0.7 s; this window keeps a search under 10 ms (see :mod:`.ranking`).
RELEVANCE_WINDOW = 500
SEARCH_ORDERS = ("newest", "relevance")
_SNIPPET = f"snippet(messages_fts, 0, ?, ?, '…', {_SNIPPET_TOKENS})"
_RAW_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})


@functools.lru_cache(maxsize=64)
def _newest_sql(cond: str) -> str:
    # FTS5 walks its hits newest (highest rowid) first and stops at the limit; snippet()
    # runs for the returned rows only
    return (
        f"SELECT {READ_LIST_M}, {_SNIPPET}"
        " FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid"
        f" WHERE messages_fts MATCH ? AND m.deleted = 0 AND {cond}"
        " ORDER BY messages_fts.rowid DESC LIMIT ?"
    )


@functools.lru_cache(maxsize=64)
def _window_sql(cond: str) -> str:
    return (
        "SELECT m.id, m.timestamp, m.content"
        " FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid"
        f" WHERE messages_fts MATCH ? AND m.deleted = 0 AND {cond}"
        " ORDER BY messages_fts.rowid DESC LIMIT ?"
    )


@functools.lru_cache(maxsize=64)
def _chosen_sql(cond: str, count: int) -> str:
    # the window's walk again, newest first, snippets for the chosen rows only: FTS5 is
    # not asked for each rowid (every such lookup reads the word's hit list anew: 50 of
    # them took ~9 ms for an everyday word); "+" keeps the IN test on SQLite's side
    return (
        f"SELECT {READ_LIST_M}, m.id, {_SNIPPET}"
        " FROM messages_fts CROSS JOIN messages AS m ON m.id = messages_fts.rowid"
        f" WHERE messages_fts MATCH ? AND m.deleted = 0 AND {cond}"
        f" AND +messages_fts.rowid IN ({', '.join('?' * count)})"
        " ORDER BY messages_fts.rowid DESC LIMIT ?"
    )


def _terms(query: str, raw: bool) -> list[tuple[str, bool]]:
    """The words ranking counts: a plain query's; a raw one's, without FTS5 operators."""
    if raw:
        query = " ".join(
            w
            for w in query.replace('"', " ").replace("(", " ").replace(")", " ").split()
            if w not in _RAW_OPERATORS
        )
    return plain_terms(query)


def search_rows(
    fetch: Fetch,
    query: str,
    *,
    raw: bool = False,
    conversation: str | None = None,
    thread_id: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
    highlight: tuple[str, str] = ("[", "]"),
    order: str = "newest",
) -> list[Values]:
    """Chat messages matching ``query``: :data:`READ_COLUMNS`, then ``rank`` (BM25 among
    the rows ranked, :mod:`.ranking`: lower is a better match) and ``snippet`` (the
    matching passage, matches wrapped in ``highlight``, elisions shown as ``…``).

    ``order="newest"`` (the default): the newest stored matches first (highest ``id``:
    the order messages arrived in), ranked among themselves. ``order="relevance"``: of
    the newest :data:`RELEVANCE_WINDOW` matches, the best first (newer first on a tie).
    Deleted messages and edit / delete / reaction records are never returned (the
    triggers keep them out of the index; the query checks again).
    """
    limit = check_limit(limit)
    if order not in SEARCH_ORDERS:
        raise InvalidMessageError(f"order must be one of {SEARCH_ORDERS}, got {order!r}")
    match = fts_query(query, raw=raw)
    cond, params = _filters(conversation=conversation, thread_id=thread_id, since=since, alias="m")
    content = READ_COLUMNS.index("content")
    try:
        if order == "newest":
            rows = fetch(_newest_sql(cond), [*highlight, match, *params, limit])
            ranks = bm25_scores([r[content] for r in rows], _terms(query, raw))
            return [(*r[:-1], rank, r[-1]) for r, rank in zip(rows, ranks, strict=True)]
        window = fetch(_window_sql(cond), [match, *params, RELEVANCE_WINDOW])
        scores = bm25_scores([r[2] for r in window], _terms(query, raw))
        # best first; newer (timestamp, then id) first on a tie
        ranked = sorted(
            zip(scores, window, strict=True), key=lambda s: (s[0], _Desc(s[1][1]), -s[1][0])
        )[:limit]
        if not ranked:
            return []
        ids = [row[0] for _, row in ranked]
        sql = _chosen_sql(cond, len(ids))
        chosen = {r[-2]: r for r in fetch(sql, [*highlight, match, *params, *ids, len(ids)])}
        return [
            (*chosen[row[0]][:-2], score, chosen[row[0]][-1])
            for score, row in ranked
            if row[0] in chosen
        ]
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


class _Desc:
    """A sort key that orders text in reverse."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return self.value > other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


def search_hits(
    rows: Sequence[Values], with_reactions: Callable[[list[ChatMessage]], list[ChatMessage]]
) -> list[SearchHit]:
    """The :class:`SearchHit` of each :func:`search_rows` row (messages with reactions)."""
    messages = with_reactions([message_of_values(r) for r in rows])
    n = len(READ_COLUMNS)
    return [
        SearchHit.model_construct(message=m, snippet=r[n + 1] or "", rank=float(r[n]))
        for m, r in zip(messages, rows, strict=True)
    ]


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


def _position(before: object) -> tuple[str, str]:
    """The list position ``(activity timestamp text, conversation id)`` of ``before``."""
    if not isinstance(before, Conversation) or before.updated_at is None:
        raise InvalidMessageError(
            "before must be a Conversation of the previous page (its last one), "
            f"got {type(before).__name__}"
        )
    return _ts_text(before.updated_at), before.conversation_id


def summary_page(
    fetch: Fetch, *, limit: int | None = None, before: Conversation | None = None
) -> list[Conversation]:
    """A page of the conversation list from the summary table (schema 7, :mod:`.summary`):
    the newest activity first; ``limit`` ``None`` is every conversation."""
    n = -1 if limit is None else check_limit(limit)
    if before is None:
        rows = fetch(_SUMMARY_FIRST, [n])
    else:
        rows = fetch(_SUMMARY_AFTER, [*_position(before), n])
    return [
        Conversation.model_construct(
            conversation_id=r[0],
            peer=None if r[0].startswith(GROUP_PREFIX) else r[0],
            kind="group" if r[0].startswith(GROUP_PREFIX) else "direct",
            last_message=None if r[3] is None else message_of_values(r[4:]),
            unread=int(r[2] or 0),
            updated_at=parse_ts(r[1]),
        )
        for r in rows
    ]


def fallback_page(
    conversations: list[Conversation], *, limit: int | None, before: Conversation | None
) -> list[Conversation]:
    """A page of a whole list (a file older than schema 7, read as it is)."""
    n = None if limit is None else check_limit(limit)
    if before is not None:
        ts, conversation = _position(before)
        at = [
            (_ts_text(c.updated_at), c.conversation_id) if c.updated_at else ("", "")
            for c in conversations
        ]
        conversations = [
            c
            for c, (t, i) in zip(conversations, at, strict=True)
            if t < ts or (t == ts and i > conversation)
        ]
    return conversations if n is None else conversations[:n]


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


_SUMMARY_FIRST = page_sql(READ_LIST_M, after_position=False)
_SUMMARY_AFTER = page_sql(READ_LIST_M, after_position=True)


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

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Values]:
        """Run one read on the store's sqlite3 connection, rows as tuples (the caller
        holds ``_op``): the hot reads skip peewee's per-statement work."""
        return self._db.connection().execute(sql, params).fetchall()  # type: ignore[no-any-return]

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
                self._fetch,
                conversation=conversation,
                thread_id=thread_id,
                since=since,
                limit=limit,
                before=before,
                after=after,
            )
        messages = self._with_reactions([message_of_values(r) for r in rows])
        return HistoryPage.model_construct(messages=messages, before=older, after=newer)

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
        """Chat messages matching ``query``, newest first or (``order="relevance"``) best
        first among the newest matches (see :func:`search_rows`)."""
        with self._op("search"):
            rows = search_rows(
                self._fetch,
                query,
                raw=raw,
                conversation=conversation,
                thread_id=thread_id,
                since=since,
                limit=limit,
                highlight=highlight,
                order=order,
            )
        return search_hits(rows, self._with_reactions)

    def conversations(
        self, *, limit: int | None = None, before: Conversation | None = None
    ) -> list[Conversation]:
        """The conversations with their last chat message and unread count, the most
        recently active first: all of them, or the ``limit`` after ``before`` (a
        conversation of the previous page, its last to go on)."""
        with self._op("read"):
            return summary_page(self._fetch, limit=limit, before=before)

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
