"""The reading queries of the ``sqlite`` store: message queries, reactions, cursor pages.

The SQL lives in module functions that take a ``fetch(sql, params) -> rows`` callable (rows
as tuples; ``run`` for the few that want names), so the store (on peewee's connection,
:class:`~syft_chat.plugins.sqlite.views.HistoryViews`) and the read-only reader of the
command line (stdlib ``sqlite3``, ``mode=ro``) run the very same queries; both turn a row
into a message with :func:`~syft_chat.plugins.sqlite.rows.message_of_values`. Every SQL
text is made once per shape of query and cached. Search is :mod:`.search`, the
conversation list :mod:`.summary`.

* **Message queries**: :func:`find_sql` is the SQL of a
  :class:`~syft_chat.interfaces.MessageQuery` (``SQLiteStore.find`` and ``remove``), and
  :func:`find_rows` runs it. History is one such query,
  :func:`~syft_chat.features.views.history_query`, for ``get_chat_history`` and
  ``syft-chat history`` / ``thread`` alike.
* **Pages** walk one filtered history in ``(timestamp, id)`` order. A cursor is that pair
  for a page's first or last message, encoded opaquely; two messages sharing a timestamp
  are still told apart by ``id``, so every message is seen exactly once.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from syft_chat.errors import InvalidMessageError
from syft_chat.interfaces import GROUP_PREFIX, MessageQuery
from syft_chat.models import Direction, MessageKind, MessageStatus, to_utc
from syft_chat.plugins.sqlite.rows import READ_COLUMNS, READ_LIST

__all__ = [
    "GROUP_PREFIX",
    "READ_COLUMNS",
    "Fetch",
    "Run",
    "Values",
    "check_limit",
    "chunks",
    "decode_cursor",
    "encode_cursor",
    "filters",
    "find_rows",
    "find_sql",
    "page_rows",
    "prefixed",
    "reaction_rows",
    "ts_text",
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
_MAX_LIMIT = 10_000
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


def ts_text(value: datetime) -> str:
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


def filters(
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
        params.append(ts_text(since))
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
        params.append(ts_text(query.since))
    if query.seq_at_most is not None:
        shape.append("seq_at_most")
        params.append(query.seq_at_most)
    if query.updated_before is not None:
        shape.append("updated_before")
        params.append(ts_text(query.updated_before))
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
    for chunk in chunks(list(msg_ids), 500):
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
    cond, params = filters(conversation=conversation, thread_id=thread_id, since=since)
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


def chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
