"""Full-text search of the ``sqlite`` store: the FTS5 index ``messages_fts``.

The schema's triggers keep the index in step with every insert, edit and delete (nothing
here rebuilds it). By default the query is taken as plain words that must all occur
(``word*`` is a prefix); ``raw=True`` passes FTS5's own query syntax through. Hits come
newest first (FTS5 walks its hit list from the highest rowid and stops at the limit), or
with ``order="relevance"`` the best of a bounded window of the newest, ranked by
:mod:`.ranking` (not by FTS5's ``bm25()``, whose first call reads each word's whole hit
list). Snippets are computed for the returned rows only.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

import peewee as pw

from syft_chat.errors import InvalidMessageError
from syft_chat.features.views import SearchHit
from syft_chat.models import ChatMessage
from syft_chat.plugins.sqlite.queries import Fetch, Values, check_limit, filters
from syft_chat.plugins.sqlite.ranking import bm25_scores, plain_terms
from syft_chat.plugins.sqlite.rows import READ_COLUMNS, READ_LIST_M, message_of_values

__all__ = [
    "RELEVANCE_WINDOW",
    "SEARCH_ORDERS",
    "fts_query",
    "is_query_error",
    "search_hits",
    "search_rows",
]

_MAX_QUERY_CHARS = 4096
_SNIPPET_TOKENS = 12
#: sqlite error texts that mean "your FTS5 query is malformed", not "the database is broken"
_QUERY_ERRORS = (
    "fts5:",
    "unterminated string",
    "unknown special query",
    "no such column",
    "syntax error",
)


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
    cond, params = filters(conversation=conversation, thread_id=thread_id, since=since, alias="m")
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
