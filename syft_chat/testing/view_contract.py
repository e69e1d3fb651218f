"""The contract suite of a :class:`~syft_chat.features.views.ViewStore`: the conversation
list (whole and in pages) and the orders of search.

Subclass :class:`ViewStoreContract` with a ``store`` fixture returning a fresh, empty
store that implements both ``MessageStore`` and ``ViewStore`` (as
:class:`~syft_chat.testing.store_contract.StoreContract`). This module imports pytest;
``syft_chat.testing`` itself does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from syft_chat.errors import InvalidMessageError
from syft_chat.features.views import Conversation, ViewStore
from syft_chat.interfaces import MessageQuery, StoredMessage
from syft_chat.models import ChatMessage, Direction, MessageStatus

__all__ = ["ViewStoreContract"]

OWNER = "alice@openmined.org"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _add(
    store: Any, peer: str, content: str = "hello", *, at: datetime = T0, incoming: bool = True
) -> ChatMessage:
    message = ChatMessage(
        sender=peer if incoming else OWNER,
        content=content,
        timestamp=at,
        status=MessageStatus.RECEIVED if incoming else MessageStatus.DELIVERED,
    )
    direction = Direction.INCOMING if incoming else Direction.OUTGOING
    assert store.insert(StoredMessage(message, direction, peer))
    return message


class ViewStoreContract:
    """Inherit, and provide a ``store`` fixture (see the module docstring)."""

    @pytest.fixture
    def store(self) -> Any:  # pragma: no cover - replaced by the subclass
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _close_store(self, store: Any) -> Iterator[None]:
        yield
        store.close()

    def test_is_a_view_store(self, store: Any) -> None:
        assert isinstance(store, ViewStore)

    def test_conversations_newest_activity_first_with_unread(self, store: Any) -> None:
        _add(store, "b@x.org", at=T0)
        _add(store, "c@x.org", at=T0 + timedelta(minutes=2))
        _add(store, "b@x.org", "mine", at=T0 + timedelta(minutes=1), incoming=False)
        listed = store.conversations()
        assert [(c.conversation_id, c.unread) for c in listed] == [("c@x.org", 1), ("b@x.org", 1)]
        assert listed[1].last_message.content == "mine"
        assert listed[1].updated_at == T0 + timedelta(minutes=1)
        assert all(isinstance(c, Conversation) and c.kind == "direct" for c in listed)

    def test_unread_counts_follow_reads_and_deletions(self, store: Any) -> None:
        first = _add(store, "b@x.org")
        _add(store, "b@x.org", at=T0 + timedelta(seconds=1))
        assert store.conversations()[0].unread == 2
        store.update(first.msg_id, {"deleted": True}, sender=first.sender)
        assert store.conversations()[0].unread == 1
        assert len(store.mark_conversation_read("b@x.org")) == 1
        assert store.conversations()[0].unread == 0
        store.remove(MessageQuery(peer="b@x.org"))
        assert store.conversations() == []

    def test_conversation_pages_visit_each_once_in_order(self, store: Any) -> None:
        for i in range(23):  # three share each timestamp: ties by conversation id
            _add(store, f"p{i:02d}@x.org", at=T0 + timedelta(minutes=i // 3))
        everything = store.conversations()
        assert len(everything) == 23
        pages, page = [], store.conversations(limit=5)
        while page:
            pages.append(page)
            page = store.conversations(limit=5, before=page[-1])
        assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
        assert [c for p in pages for c in p] == everything
        assert store.conversations(limit=1000) == everything

    def test_conversation_page_arguments_are_checked(self, store: Any) -> None:
        _add(store, "b@x.org")
        for bad in (0, 10_001, "3"):
            with pytest.raises(InvalidMessageError):
                store.conversations(limit=bad)
        with pytest.raises(InvalidMessageError):
            store.conversations(before="b@x.org")

    def test_search_is_newest_first_and_relevance_is_best_first(self, store: Any) -> None:
        best = _add(store, "b@x.org", "census census census", at=T0)
        middle = _add(store, "b@x.org", "census and more words here", at=T0)
        newest = _add(store, "b@x.org", "census and a great many other words here", at=T0)
        _add(store, "b@x.org", "nothing", at=T0)
        assert [h.message.msg_id for h in store.search("census")] == [
            newest.msg_id,
            middle.msg_id,
            best.msg_id,
        ]
        ranked = store.search("census", order="relevance")
        assert [h.message.msg_id for h in ranked] == [best.msg_id, middle.msg_id, newest.msg_id]
        assert [h.rank for h in ranked] == sorted(h.rank for h in ranked)
        assert all("census" in h.snippet for h in ranked)
        with pytest.raises(InvalidMessageError):
            store.search("census", order="oldest")
