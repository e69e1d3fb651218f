"""History beyond the newest page: cursor paging, full-text search and the conversation list.

:class:`Views` gives ``search``, ``get_history_page``, ``list_conversations`` and
``mark_conversation_read`` to :class:`~syft_chat.SyftChatClient`; a store provides them
by implementing :class:`ViewStore` (the built-in ``sqlite`` store does, in
:mod:`syft_chat.plugins.sqlite.views`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, field_validator

from syft_chat.errors import InvalidMessageError, StorageError
from syft_chat.interfaces import MessageQuery, StoredMessage, with_reactions
from syft_chat.models import ChatMessage, MessageKind, to_utc

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

#: The orders of :meth:`Views.search`: the newest matches first, or the best first among
#: the newest matches.
SearchOrder = Literal["newest", "relevance"]

__all__ = [
    "Conversation",
    "HistoryPage",
    "SearchHit",
    "SearchOrder",
    "ViewStore",
    "Views",
    "history_query",
    "thread_conversation",
    "with_reactions",
]


def history_query(
    *,
    conversation: str | None = None,
    limit: int = 50,
    since: datetime | None = None,
    thread_id: str | None = None,
) -> MessageQuery:
    """The query of a history: the newest ``limit`` chat messages that match, oldest first.

    ``conversation`` is a peer's email (that one-to-one conversation, both directions; a
    group's messages from that peer are not in it) or a group's ``group:<id>``; ``since``
    is inclusive. Edit, delete and reaction records are not history. The one definition
    of history: ``SyftChatClient.get_chat_history`` and the command line's ``history``
    and ``thread`` (through the read-only reader) both run it.
    """
    return MessageQuery(
        kinds=frozenset({MessageKind.MESSAGE}),
        conversation=conversation,
        since=since,
        thread_id=thread_id,
        order="time",
        limit=limit,
        last=True,
    )


def thread_conversation(
    find: Callable[[MessageQuery], Sequence[StoredMessage]],
    thread_id: str | None,
    conversation: str | None = None,
) -> str | None:
    """The conversation whose thread ``thread_id`` a history without a conversation shows.

    A thread is a (conversation, thread id) pair: anyone may name any thread id, so the
    same id can be a thread of several conversations. Without ``conversation`` it is the
    conversation of the thread's root (the chat message whose id names the thread), else
    of the thread's first *stored* chat message (insertion order, not the timestamp a
    peer chose). ``conversation`` given, or no ``thread_id``: ``conversation`` itself.
    ``find`` is a store's :meth:`~syft_chat.interfaces.MessageStore.find`.
    """
    if thread_id is None or conversation is not None:
        return conversation
    chat = frozenset({MessageKind.MESSAGE})
    for query in (
        MessageQuery(msg_ids=(thread_id,), kinds=chat, thread_id=thread_id, limit=1),
        MessageQuery(kinds=chat, thread_id=thread_id, order="stored", limit=1),
    ):
        found = find(query)
        if found:
            return found[0].conversation
    return None


class SearchHit(BaseModel):
    """One search result: the message, the passage that matched, and how well.

    ``snippet`` is a short extract of the content with each match wrapped in ``[`` ``]``
    and cuts marked ``…``. ``rank`` is FTS5's ``bm25``: lower (more negative) is a
    better match; results come best first.
    """

    model_config = ConfigDict(frozen=True)

    message: ChatMessage
    snippet: str
    rank: float


class HistoryPage(BaseModel):
    """One page of a conversation's history, oldest first.

    ``before`` is the cursor of the older neighbouring page and ``after`` that of the
    newer one (pass them back as ``before=`` / ``after=``); ``None`` when there is no
    such page. Cursors are opaque strings, stable while the messages they point at
    exist: paging never repeats or skips a message, even among equal timestamps.
    """

    model_config = ConfigDict(frozen=True)

    messages: list[ChatMessage]
    before: str | None = None
    after: str | None = None

    def _repr_html_(self) -> str:
        from syft_chat.display import history_html

        return history_html(self.messages)


class Conversation(BaseModel):
    """A conversation in the list: who, its last chat message, and how many are unread.

    ``conversation_id`` is the peer's email for a one-to-one (``kind="direct"``, and
    ``peer`` is that email) or ``group:...`` for a group (``peer`` is ``None``).
    ``unread`` counts incoming chat messages not deleted and not yet marked read.
    ``updated_at`` is the time of the last chat message.
    """

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    peer: str | None
    kind: Literal["direct", "group"]
    last_message: ChatMessage | None
    unread: int
    updated_at: datetime | None

    @field_validator("updated_at")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_utc(value)


@runtime_checkable
class ViewStore(Protocol):
    """What a store implements to support the methods of :class:`Views`."""

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
        """One page of the matching history, oldest first, with its neighbours' cursors."""

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
        order: SearchOrder = "newest",
    ) -> list[SearchHit]:
        """Chat messages (not deleted) matching ``query``: the newest stored first, or
        with ``order="relevance"`` the best first among a bounded number of the newest
        matches (the ``sqlite`` store: 500)."""

    def conversations(
        self, *, limit: int | None = None, before: Conversation | None = None
    ) -> list[Conversation]:
        """The conversations with their last message and unread count, newest activity
        first (ties by ``conversation_id``): every one, or at most ``limit`` of those
        after ``before`` in that order."""

    def mark_conversation_read(self, conversation: str) -> list[ChatMessage]:
        """Mark a conversation's unread incoming messages read; return those marked."""


class Views:
    """Paging, search and the conversation list, over a store that offers them."""

    def __init__(self, core: MessagingCore) -> None:
        self._core = core

    def _view_store(self) -> ViewStore:
        self._core.check_open()
        store = self._core.store
        if not isinstance(store, ViewStore):
            raise StorageError(
                f"the {getattr(store, 'name', type(store).__name__)!r} store does not support "
                "paging, search or the conversation list"
            )
        return store

    @staticmethod
    def _conversation(with_user: object, conversation: object = None) -> str | None:
        if with_user is not None and conversation is not None:
            raise InvalidMessageError("give with_user or conversation, not both")
        value = with_user if with_user is not None else conversation
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            name = "with_user" if with_user is not None else "conversation"
            raise InvalidMessageError(f"{name} must be an email or conversation id string")
        return value.strip()

    @staticmethod
    def _since(since: object) -> datetime | None:
        if since is not None and not isinstance(since, datetime):
            raise InvalidMessageError(f"since must be a datetime, got {type(since).__name__}")
        return None if since is None else to_utc(since)

    @staticmethod
    def _thread(thread_id: object) -> str | None:
        if thread_id is not None and not isinstance(thread_id, str):
            raise InvalidMessageError(f"thread_id must be a str, got {type(thread_id).__name__}")
        return thread_id

    def _scope(self, conversation: str | None, thread_id: str | None) -> str | None:
        """A thread is one conversation's (see :func:`thread_conversation`)."""
        return thread_conversation(self._core.store.find, thread_id, conversation)

    def search(
        self,
        query: str,
        *,
        with_user: str | None = None,
        thread_id: str | None = None,
        since: datetime | None = None,
        limit: int = 20,
        raw: bool = False,
        conversation: str | None = None,
        order: SearchOrder = "newest",
    ) -> list[SearchHit]:
        """Full-text search of the local history, the newest matches first
        (``order="relevance"``: the best first among the newest matches).

        ``query`` is plain words that must all occur in a message (any order, case and
        accents ignored); ``word*`` matches words starting with ``word``. ``raw=True``
        takes FTS5 query syntax instead (``"exact phrase"``, ``a OR b``, ``a NOT b``,
        ``NEAR(a b)``). Deleted messages are never found; an edited one is found by its
        current text. The filters are those of :meth:`get_chat_history`
        (``conversation`` names a group's conversation instead of ``with_user``).

        :raises InvalidMessageError: an empty or malformed query, or a bad filter.
        """
        store = self._view_store()
        thread = self._thread(thread_id)
        return store.search(
            query,
            conversation=self._scope(self._conversation(with_user, conversation), thread),
            thread_id=thread,
            since=self._since(since),
            limit=limit,
            raw=raw,
            order=self._order(order),
        )

    @staticmethod
    def _order(order: object) -> SearchOrder:
        if order == "newest" or order == "relevance":
            return order
        raise InvalidMessageError(f"order must be 'newest' or 'relevance', got {order!r}")

    def get_history_page(
        self,
        *,
        with_user: str | None = None,
        thread_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
        conversation: str | None = None,
    ) -> HistoryPage:
        """One page of history, oldest first, for walking a conversation page by page.

        Without a cursor it is the newest ``limit`` messages; ``before=page.before``
        gives the page just older, ``after=page.after`` the page just newer. Following
        the cursors (until ``None``) visits every matching message exactly once, in
        order. Filters as in :meth:`get_chat_history`.

        :raises InvalidMessageError: a cursor not made by this method, both cursors,
            or a bad filter or limit.
        """
        store = self._view_store()
        thread = self._thread(thread_id)
        return store.history_page(
            conversation=self._scope(self._conversation(with_user, conversation), thread),
            thread_id=thread,
            since=self._since(since),
            limit=limit,
            before=before,
            after=after,
        )

    def list_conversations(
        self, *, limit: int | None = None, before: Conversation | None = None
    ) -> list[Conversation]:
        """The conversations (one-to-one and group) with their last message and unread
        count, the most recently active first. Read state is local (:meth:`mark_read`).

        Without arguments, every conversation. ``limit`` gives a page of at most that
        many; ``before=page[-1]`` (the last conversation of a page) the page after it:
        following them visits every conversation once, in order, as of each call.

        :raises InvalidMessageError: a bad ``limit`` or ``before``.
        """
        if before is not None and not isinstance(before, Conversation):
            raise InvalidMessageError(
                f"before must be a Conversation of the previous page, got {type(before).__name__}"
            )
        return self._view_store().conversations(limit=limit, before=before)

    def mark_conversation_read(self, with_user: str) -> int:
        """Mark every unread incoming message of a conversation read; return how many.

        ``with_user`` is the peer's email (or a group's conversation id). Plugins hear
        ``chat_message_read`` once for each message marked, as with :meth:`mark_read`
        (a read-receipt plugin sends its receipts from there).
        """
        conversation = self._conversation(with_user)
        if conversation is None:
            raise InvalidMessageError("with_user must be an email or conversation id string")
        marked = self._view_store().mark_conversation_read(conversation)
        for message in marked:
            self._core.notify_read(message)
        return len(marked)
