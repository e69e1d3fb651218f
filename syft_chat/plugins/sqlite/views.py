"""The history views of the ``sqlite`` store (mixed into ``SQLiteStore``): cursor pages,
search and the conversation list, on the queries of :mod:`.queries`, :mod:`.search` and
:mod:`.summary`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syft_chat.features.views import Conversation, HistoryPage, SearchHit
from syft_chat.models import ChatMessage, Direction, MessageKind, utcnow
from syft_chat.plugins.sqlite.queries import Values, chunks, page_rows, ts_text
from syft_chat.plugins.sqlite.rows import message_of_values
from syft_chat.plugins.sqlite.search import search_hits, search_rows
from syft_chat.plugins.sqlite.summary import summary_page, unread_source

__all__ = ["HistoryViews"]

_MESSAGE = MessageKind.MESSAGE.value


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
                f"SELECT * FROM {unread_source(self._run)} WHERE conversation = ?"
                f" AND direction = '{Direction.INCOMING.value}' AND kind = '{_MESSAGE}'"
                " AND deleted = 0 AND read_at IS NULL ORDER BY timestamp, id",
                (conversation,),
            )
            stamp = ts_text(utcnow())
            for chunk in chunks([int(r["id"]) for r in rows], 500):
                marks = ", ".join("?" * len(chunk))
                self._db.execute_sql(
                    f"UPDATE messages SET read_at = ? WHERE id IN ({marks}) AND read_at IS NULL",
                    (stamp, *chunk),
                )
        return [self._to_message(r) for r in rows]
