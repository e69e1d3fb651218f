"""Cursor paging, full-text search and the conversation list (issue 8), on real SQLite
files: the store directly (10,000 messages, ties in timestamp) and real clients in a
temporary workspace."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support import ALICE, BOB, CAROL, wait_for

import syft_chat
from syft_chat import Conversation, HistoryPage, InvalidMessageError, SearchHit
from syft_chat.hookspecs import hookimpl
from syft_chat.interfaces import StoredMessage
from syft_chat.models import ChatMessage, Direction, MessageStatus
from syft_chat.plugins.sqlite.queries import decode_cursor, encode_cursor
from syft_chat.plugins.sqlite.search import fts_query
from syft_chat.plugins.sqlite.store import SQLiteStore

ME = "me@example.org"
PEER = "peer@example.org"
OTHER = "other@example.org"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "chat.db", owner=ME)
    yield s
    s.close()


def add(
    store: SQLiteStore,
    content: str,
    *,
    peer: str = PEER,
    incoming: bool = False,
    at: datetime = T0,
    **kw: Any,
) -> ChatMessage:
    message = ChatMessage(sender=peer if incoming else ME, content=content, timestamp=at, **kw)
    status = MessageStatus.RECEIVED if incoming else MessageStatus.DELIVERED
    direction = Direction.INCOMING if incoming else Direction.OUTGOING
    stored = message.model_copy(update={"status": status})
    assert store.insert(StoredMessage(stored, direction, peer, notified=not incoming))
    return message


def sql(path: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(statement, params).fetchall()


def fts_rowids(path: Path, match: str) -> list[int]:
    """What the full-text index itself holds (external content: rowids from the index)."""
    return [
        r[0]
        for r in sql(path, "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (match,))
    ]


def ids(messages: list[ChatMessage]) -> list[str]:
    return [m.msg_id for m in messages]


# --------------------------------------------------------------------------- paging


@pytest.fixture
def big(store: SQLiteStore) -> tuple[SQLiteStore, list[str], list[str]]:
    """10,000 messages, inserted out of time order, in runs of up to 8 equal timestamps,
    across two conversations; returns the store and each conversation's ids in order."""
    rng = random.Random(8)
    stamps: list[datetime] = []
    second = 0
    while len(stamps) < 10_000:  # ~2,200 distinct instants, 1 to 8 messages each
        stamps += [T0 + timedelta(seconds=second)] * rng.randint(1, 8)
        second += 1
    stamps = stamps[:10_000]
    assert len(stamps) == 10_000
    rng.shuffle(stamps)  # insertion (id) order is not time order
    with store._db.atomic():
        for i, at in enumerate(stamps):
            peer = PEER if i % 4 else OTHER
            add(store, f"message {i}", peer=peer, incoming=bool(i % 3), at=at)
    rows = sql(
        store.path,
        "SELECT msg_id, conversation FROM messages WHERE kind = 'message' ORDER BY timestamp, id",
    )
    everyone = [r[0] for r in rows]
    with_peer = [r[0] for r in rows if r[1] == PEER]
    return store, everyone, with_peer


def walk_back(store: SQLiteStore, limit: int, **filters: Any) -> tuple[list[str], HistoryPage]:
    page = store.history_page(limit=limit, **filters)
    assert page.after is None  # the newest page has nothing newer
    seen = ids(page.messages)
    while page.before is not None:
        page = store.history_page(limit=limit, before=page.before, **filters)
        assert len(page.messages) <= limit and page.after is not None
        seen = ids(page.messages) + seen
    return seen, page


def walk_forward(store: SQLiteStore, first: HistoryPage, limit: int, **filters: Any) -> list[str]:
    page, seen = first, ids(first.messages)
    while page.after is not None:
        page = store.history_page(limit=limit, after=page.after, **filters)
        assert len(page.messages) == limit or page.after is None
        seen += ids(page.messages)
    return seen


def test_paging_10000_messages_each_exactly_once_in_order_both_ways(big):
    store, everyone, with_peer = big
    for filters, expected, limit in (
        ({}, everyone, 97),
        ({"conversation": PEER}, with_peer, 50),
    ):
        back, oldest = walk_back(store, limit, **filters)
        assert back == expected and len(set(back)) == len(expected)
        assert oldest.before is None
        forward = walk_forward(store, oldest, limit, **filters)
        assert forward == expected


def test_each_page_is_oldest_first_and_cursors_are_opaque(big):
    store, everyone, _ = big
    page = store.history_page(limit=200)
    stamps = [m.timestamp for m in page.messages]
    assert stamps == sorted(stamps) and ids(page.messages) == everyone[-200:]
    assert page.before is not None
    assert "2025-03-01" not in page.before and ":" not in page.before  # opaque
    ts, row_id = decode_cursor(page.before)
    assert encode_cursor(ts, row_id) == page.before


def test_paging_with_thread_and_since_filters(store):
    for i in range(30):
        add(store, f"t{i}", at=T0 + timedelta(minutes=i // 3), thread_id="t" if i % 2 else None)
    page = store.history_page(thread_id="t", limit=4)
    pages = [page]
    while page.before:
        page = store.history_page(thread_id="t", limit=4, before=page.before)
        pages.insert(0, page)
    got = [m.content for p in pages for m in p.messages]
    assert got == [f"t{i}" for i in range(30) if i % 2]
    since = T0 + timedelta(minutes=8)  # the last 6 messages
    page = store.history_page(since=since, limit=4)
    older = store.history_page(since=since, limit=4, before=page.before)
    assert [m.content for m in older.messages + page.messages] == [f"t{i}" for i in range(24, 30)]
    assert older.before is None


def test_new_messages_while_walking_back_are_not_repeated_and_show_up_going_forward(store):
    for i in range(10):
        add(store, f"old {i}", at=T0)  # all at the same instant
    newest = store.history_page(limit=4)
    for i in range(3):
        add(store, f"new {i}", at=T0)  # same instant again, arriving meanwhile
    older = store.history_page(limit=4, before=newest.before)
    assert [m.content for m in older.messages] == ["old 2", "old 3", "old 4", "old 5"]
    later = store.history_page(limit=10, after=older.after)
    assert [m.content for m in later.messages] == [
        *["old 6", "old 7", "old 8", "old 9"],
        *["new 0", "new 1", "new 2"],
    ]
    assert later.after is None


def test_a_deleted_message_stays_in_its_page_as_a_tombstone(store):
    kept = [add(store, f"m{i}", at=T0 + timedelta(seconds=i)) for i in range(5)]
    sql(
        store.path,
        "UPDATE messages SET deleted = 1, content = '' WHERE msg_id = ?",
        (kept[2].msg_id,),
    )
    page = store.history_page(limit=10)
    assert [m.deleted for m in page.messages] == [False, False, True, False, False]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "MXwyMDI0",  # "1|2024": truncated
        encode_cursor("2025-03-01 09:00:00.000000+00:00", 1)[:-2] + "!!",
        encode_cursor("yesterday", 5),
        encode_cursor("2025-03-01 09:00:00.000000+00:00", 1).replace("MX", "Mn", 1),  # version 2
        "x" * 500,
        42,
    ],
)
def test_a_bad_cursor_is_a_clear_error(store, cursor):
    add(store, "hello")
    with pytest.raises(InvalidMessageError, match="not a history cursor"):
        store.history_page(before=cursor)
    with pytest.raises(InvalidMessageError, match="not a history cursor"):
        store.history_page(after=cursor)


def test_page_arguments_are_checked(store):
    page = store.history_page()
    assert page == HistoryPage(messages=[], before=None, after=None)
    cursor = encode_cursor("2025-03-01 09:00:00.000000+00:00", 1)
    with pytest.raises(InvalidMessageError, match="not both"):
        store.history_page(before=cursor, after=cursor)
    for limit in (0, -1, 10_001, True, 2.5):
        with pytest.raises(InvalidMessageError, match="limit"):
            store.history_page(limit=limit)


# --------------------------------------------------------------------------- search


def test_search_finds_words_after_insert_best_match_first_with_snippet(store):
    add(store, "the census dataset is ready for review")
    best = add(store, "census census", incoming=True)
    add(store, "nothing to see here")
    add(store, "the CENSUS was late", peer=OTHER, at=T0 + timedelta(hours=1))
    hits = store.search("census", order="relevance")
    assert all(isinstance(h, SearchHit) for h in hits)
    assert hits[0].message.msg_id == best.msg_id
    assert len(hits) == 3 and [h.rank for h in hits] == sorted(h.rank for h in hits)
    assert {h.snippet for h in hits} >= {"[census] [census]", "the [CENSUS] was late"}
    # all words must occur, any order, case and accents ignored; word* is a prefix
    assert [h.message.content for h in store.search("dataset CENSUS")] == [
        "the census dataset is ready for review"
    ]
    add(store, "Résumé of the café meeting")
    assert len(store.search("resume cafe")) == 1
    assert len(store.search("data*")) == 1 and store.search("data") == []


def test_search_is_newest_stored_first_by_default(store):
    first = add(store, "census census census")
    second = add(store, "a census")
    third = add(store, "census again", at=T0 - timedelta(days=1))  # stored last
    assert [h.message.msg_id for h in store.search("census")] == [
        third.msg_id,
        second.msg_id,
        first.msg_id,
    ]
    assert [h.message.msg_id for h in store.search("census", limit=2)] == [
        third.msg_id,
        second.msg_id,
    ]
    hits = store.search("census", order="newest")
    assert all(h.snippet and isinstance(h.rank, float) for h in hits)
    with pytest.raises(InvalidMessageError, match="order"):
        store.search("census", order="best")


def test_relevance_ranks_only_the_newest_window(store, monkeypatch):
    from syft_chat.plugins.sqlite import search

    best = add(store, "census census census census")
    newer = [add(store, f"census {i}") for i in range(3)]
    assert store.search("census", order="relevance")[0].message.msg_id == best.msg_id
    monkeypatch.setattr(search, "RELEVANCE_WINDOW", 3)  # the best one falls outside it
    ranked = store.search("census", order="relevance")
    assert {h.message.msg_id for h in ranked} == {m.msg_id for m in newer}


def test_search_filters_are_those_of_history(store):
    add(store, "apple one", at=T0)
    add(store, "apple two", peer=OTHER, at=T0 + timedelta(minutes=1), thread_id="fruit")
    add(store, "apple three", incoming=True, at=T0 + timedelta(minutes=2), thread_id="fruit")

    def contents(**kw: Any) -> set[str]:
        return {h.message.content for h in store.search("apple", **kw)}

    assert contents() == {"apple one", "apple two", "apple three"}
    assert contents(conversation=PEER) == {"apple one", "apple three"}
    assert contents(thread_id="fruit") == {"apple two", "apple three"}
    assert contents(since=T0 + timedelta(minutes=1)) == {"apple two", "apple three"}
    assert contents(conversation=OTHER, thread_id="fruit") == {"apple two"}
    assert len(store.search("apple", limit=2)) == 2


def test_search_never_returns_edit_delete_or_reaction_records(store):
    target = add(store, "original words")
    add(store, "zebra", kind="edit", target=target.msg_id)  # an edit's delivery record
    add(store, "zebra", kind="reaction", target=target.msg_id)
    assert store.search("zebra") == []
    assert fts_rowids(store.path, "zebra") == []


def test_search_after_tombstone_and_after_edit(store):
    gone = add(store, "secret launch codes")
    kept = add(store, "public launch notes")
    assert {h.message.msg_id for h in store.search("launch")} == {gone.msg_id, kept.msg_id}
    # stands in for delete_message: the store erases the text and marks the row
    sql(
        store.path, "UPDATE messages SET deleted = 1, content = '' WHERE msg_id = ?", (gone.msg_id,)
    )
    assert [h.message.msg_id for h in store.search("launch")] == [kept.msg_id]
    assert store.search("secret") == [] and store.search("codes") == []
    assert fts_rowids(store.path, "secret") == [] and fts_rowids(store.path, "codes") == []
    # stands in for edit_message
    sql(store.path, "UPDATE messages SET content = 'new words' WHERE msg_id = ?", (kept.msg_id,))
    assert [h.message.content for h in store.search("new words")] == ["new words"]
    assert store.search("public") == [] and fts_rowids(store.path, "public") == []
    assert len(fts_rowids(store.path, "words")) == 1


@pytest.mark.parametrize("query", ['"unclosed', "AND", "NEAR(", "a:b", "OR OR", "-x", "x*"])
def test_fts_syntax_in_a_plain_query_is_searched_as_text(store, query):
    add(store, 'AND near an "unclosed quote" a:b or x')
    store.search(query)  # never an error: words are quoted


@pytest.mark.parametrize(
    "query", ['"unclosed', "AND", "*", "NEAR(", "nosuchcolumn:word", "(a", "a OR"]
)
def test_a_malformed_raw_query_is_a_clear_error(store, query):
    add(store, "some words")
    with pytest.raises(InvalidMessageError, match="malformed search query"):
        store.search(query, raw=True)


def test_raw_queries_use_fts5_syntax(store):
    add(store, "red apple")
    add(store, "green apple")
    add(store, "red pepper")
    assert {h.message.content for h in store.search("apple NOT green", raw=True)} == {"red apple"}
    assert len(store.search('"red apple" OR pepper', raw=True)) == 2
    assert len(store.search("NEAR(red apple, 1)", raw=True)) == 1


@pytest.mark.parametrize(
    "query", ["", "   ", "*", "* - !", "(", '"', "^", "\x00", "\ud800 x", 42, None, "x" * 5000]
)
def test_unusable_queries_are_a_clear_error(store, query):
    add(store, "x marks the spot")
    with pytest.raises(InvalidMessageError, match="search query"):
        store.search(query)


def test_fts_query_quotes_words():
    assert fts_query('say "hi" AND bye*') == '"say" AND """hi""" AND "AND" AND "bye"*'
    assert fts_query("a\x00b") == '"a" AND "b"'
    assert fts_query("NEAR(a b)", raw=True) == "NEAR(a b)"


# --------------------------------------------------------------------------- conversations


def test_conversation_rows_group_by_conversation_with_groups(store):
    add(store, "to peer", at=T0)
    add(store, "from peer", incoming=True, at=T0 + timedelta(minutes=1))
    add(store, "from other", peer=OTHER, incoming=True, at=T0 + timedelta(minutes=5))
    grouped = add(store, "in the group", peer=OTHER, incoming=True, at=T0 + timedelta(minutes=3))
    sql(
        store.path,
        "UPDATE messages SET conversation = 'group:g1' WHERE msg_id = ?",
        (grouped.msg_id,),
    )
    add(store, "👍", peer=PEER, incoming=True, kind="reaction", at=T0 + timedelta(hours=1))
    convs = store.conversations()
    assert [(c.conversation_id, c.kind, c.peer, c.unread) for c in convs] == [
        (OTHER, "direct", OTHER, 1),
        ("group:g1", "group", None, 1),
        (PEER, "direct", PEER, 1),  # the reaction is not a message: not the last, not unread
    ]
    assert convs[2].last_message is not None and convs[2].last_message.content == "from peer"
    assert convs[0].updated_at == T0 + timedelta(minutes=5)
    assert [m.content for m in store.mark_conversation_read("group:g1")] == ["in the group"]
    assert store.mark_conversation_read("group:g1") == []
    assert [c.unread for c in store.conversations()] == [1, 0, 1]


class ReadHook:
    def __init__(self) -> None:
        self.read: list[str] = []

    @hookimpl
    def chat_message_read(self, message: ChatMessage, client: Any) -> None:
        self.read.append(message.msg_id)


def test_conversation_list_unread_and_mark_read_with_real_clients(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    hook = ReadHook()
    alice = ws.client(ALICE, plugins=[hook])
    bob, carol = ws.client(BOB), ws.client(CAROL)
    first = bob.send_message(ALICE, "hi alice")
    bob.send_message(ALICE, "are you there?")
    alice.send_message(BOB, "yes, here")
    carol.send_message(ALICE, "lunch?")
    gone = bob.send_message(ALICE, "oops wrong chat")
    bob.delete_message(gone.message_id)
    wait_for(
        lambda: alice.get_message(gone.message_id) and alice.get_message(gone.message_id).deleted
    )

    convs = alice.list_conversations()
    assert all(isinstance(c, Conversation) for c in convs)
    # bob's deleted message is his conversation's newest, but not unread
    assert [(c.conversation_id, c.kind, c.unread) for c in convs] == [
        (BOB, "direct", 2),
        (CAROL, "direct", 1),
    ]
    by_id = {c.conversation_id: c for c in convs}
    assert by_id[CAROL].last_message.content == "lunch?"
    assert by_id[BOB].last_message.msg_id == gone.message_id and by_id[BOB].last_message.deleted
    newest = max(c.updated_at for c in convs)
    assert convs[0].updated_at == newest

    assert alice.mark_read(first.message_id) is True
    assert alice.mark_conversation_read(BOB) == 1
    assert alice.mark_conversation_read(BOB) == 0
    assert {c.conversation_id: c.unread for c in alice.list_conversations()} == {BOB: 0, CAROL: 1}
    wait_for(lambda: len(hook.read) == 2)
    assert hook.read[0] == first.message_id  # the read hook fired for each, once
    assert bob.list_conversations()[0].unread == 1  # bob's side: alice's "yes, here"
    with pytest.raises(InvalidMessageError):
        alice.mark_conversation_read("")


# --------------------------------------------------------------------------- real clients


def test_search_and_pages_through_real_clients(pair):
    ws, alice, bob = pair
    sent = alice.send_message(BOB, "the census dataset is ready")
    alice.send_message(BOB, "second note", thread_id="notes")
    bob.send_message(ALICE, "thanks, census looks good", thread_id="notes")
    for client in (alice, bob):
        hits = client.search("census", with_user=ALICE if client is bob else BOB)
        assert {h.message.content for h in hits} == {
            "the census dataset is ready",
            "thanks, census looks good",
        }
        assert [h.message.content for h in client.search("census", thread_id="notes")] == [
            "thanks, census looks good"
        ]
    assert bob.search("census", since=datetime.now() + timedelta(hours=1)) == []

    alice.edit_message(sent.message_id, "the survey dataset is ready")
    bob.delete_message(bob.get_chat_history()[-1].msg_id)
    for client, db in ((alice, ws.db(ALICE)), (bob, ws.db(BOB))):
        wait_for(lambda c=client: c.search("census") == [])
        assert [h.message.msg_id for h in client.search("survey")] == [sent.message_id]
        assert fts_rowids(db, "census") == []

    page = bob.get_history_page(with_user=ALICE, limit=2)
    assert [m.deleted for m in page.messages] == [False, True]
    assert page.messages[0].content == "second note"
    older = bob.get_history_page(with_user=ALICE, limit=2, before=page.before)
    assert [m.content for m in older.messages] == ["the survey dataset is ready"]
    assert older.before is None and older.after is not None
    assert "survey" in page._repr_html_() or "second note" in page._repr_html_()


def test_client_checks_arguments(pair):
    ws, alice, bob = pair
    with pytest.raises(InvalidMessageError, match="not both"):
        alice.search("x", with_user=BOB, conversation=BOB)
    with pytest.raises(InvalidMessageError, match="since"):
        alice.get_history_page(since="yesterday")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="limit"):
        alice.get_history_page(limit=0)
    with pytest.raises(InvalidMessageError, match="malformed"):
        alice.search("NEAR(", raw=True)
    with pytest.raises(InvalidMessageError, match="not a history cursor"):
        alice.get_history_page(before="garbage")
    alice.close()
    with pytest.raises(syft_chat.ClientClosedError):
        alice.search("x")


def test_unread_counts_use_the_partial_index(store):
    from syft_chat.plugins.sqlite.summary import UNREAD_INDEX

    add(store, "one", incoming=True)
    add(store, "two", incoming=True)
    add(store, "mine")
    assert sql(store.path, "SELECT name FROM sqlite_master WHERE name = ?", (UNREAD_INDEX,))
    assert [(c.conversation_id, c.unread) for c in store.conversations()] == [(PEER, 2)]
    assert len(store.mark_conversation_read(PEER)) == 2
    assert store.conversations()[0].unread == 0


def test_relevance_orders_as_fts5_bm25_within_the_window(store):
    """The ranking (BM25 computed over the window) orders one-word queries as FTS5's own
    bm25 does when the window holds every match (messages of one length: the averages
    the two take, over the window or the whole table, are then the same)."""
    rng = random.Random(11)
    words = ["census", "data", "model", "Café", "résumé", "run"]
    for _ in range(60):
        add(store, " ".join(rng.choices(words, k=8)))
    for query in ("census", "cafe", "mod*", "resume"):
        hits = store.search(query, order="relevance", limit=60)
        match = fts_query(query)
        expected = sql(
            store.path,
            "SELECT m.msg_id FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid"
            " WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts), m.timestamp DESC, m.id DESC",
            (match,),
        )
        assert [h.message.msg_id for h in hits] == [r[0] for r in expected], query
        assert [h.rank for h in hits] == sorted(h.rank for h in hits)


def test_ranking_terms_fold_like_the_index():
    from syft_chat.plugins.sqlite.ranking import bm25_scores, plain_terms

    assert plain_terms("Résumé e-mail data*") == [
        ("resume", False),
        ("e", False),
        ("mail", False),
        ("data", True),
    ]
    scores = bm25_scores(["a résumé", "résumé résumé", "other"], plain_terms("resume"))
    assert scores[1] < scores[0] < scores[2] == 0.0
