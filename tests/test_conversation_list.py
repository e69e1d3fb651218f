"""The conversation list of the ``sqlite`` store (schema 7): the summary table its
triggers keep, pages of it, and the upgrade of a schema-6 file.

The summary must always equal the list counted from ``messages`` (what schema 6 ran on
every call, still run for older files opened read-only): every test compares the two
after each change, whoever makes it (the store's methods or raw SQL).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from syft_chat import Conversation, InvalidMessageError
from syft_chat.interfaces import MessageQuery, StoredMessage
from syft_chat.models import ChatMessage, Direction, MessageKind, MessageStatus
from syft_chat.plugins.sqlite import summary
from syft_chat.plugins.sqlite.reader import ReadOnlyHistory
from syft_chat.plugins.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from syft_chat.plugins.sqlite.store import SQLiteStore

ME = "me@example.org"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
PEERS = [f"p{i}@example.org" for i in range(6)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "chat.db", owner=ME)
    yield s
    s.close()


def add(
    store: SQLiteStore,
    peer: str,
    *,
    incoming: bool = True,
    at: datetime = T0,
    kind: MessageKind = MessageKind.MESSAGE,
    group: str | None = None,
    content: str = "hi",
) -> ChatMessage:
    message = ChatMessage(
        sender=peer if incoming else ME,
        content=content,
        timestamp=at,
        kind=kind,
        target="t" if kind is not MessageKind.MESSAGE else None,
        group_id=group,
        status=MessageStatus.RECEIVED if incoming else MessageStatus.DELIVERED,
    )
    direction = Direction.INCOMING if incoming else Direction.OUTGOING
    assert store.insert(StoredMessage(message, direction, peer))
    return message


def sql(path: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(statement, params).fetchall()


def counted(store: SQLiteStore) -> list[tuple[Any, ...]]:
    """The list as schema 6 counted it from ``messages`` on every call."""
    with closing(sqlite3.connect(store.path)) as conn:
        conn.row_factory = sqlite3.Row

        def run(statement: str, params: Any) -> list[dict[str, Any]]:
            return [dict(r) for r in conn.execute(statement, tuple(params))]

        rows = summary.conversation_rows(run)
    return [(r["conversation"], r["last_id"], r["last_ts"], r["unread"]) for r in rows]


def listed(store: SQLiteStore) -> list[tuple[Any, ...]]:
    """The list as the summary table gives it."""
    rows = sql(
        store.path,
        "SELECT conversation, last_id, COALESCE(last_ts, any_ts), unread FROM conversations"
        " WHERE last_id IS NOT NULL OR conversation LIKE 'group:%'"
        " ORDER BY COALESCE(last_ts, any_ts) DESC, conversation",
    )
    return [tuple(r) for r in rows]


def check(store: SQLiteStore) -> None:
    assert listed(store) == counted(store)
    via_api = [(c.conversation_id, c.unread) for c in store.conversations()]
    assert via_api == [(r[0], r[3]) for r in counted(store)]


def test_every_change_keeps_the_summary_equal_to_a_recount(store):
    rng = random.Random(7)
    for step in range(400):
        action = rng.random()
        peer = rng.choice(PEERS)
        at = T0 + timedelta(minutes=rng.randint(0, 500))  # out of time order
        if action < 0.45:
            add(store, peer, incoming=rng.random() < 0.7, at=at)
        elif action < 0.55:
            add(store, peer, at=at, kind=rng.choice([MessageKind.EDIT, MessageKind.REACTION]))
        elif action < 0.62:
            add(store, peer, at=at, group=rng.choice(["g1", "g2"]))
        elif action < 0.70:
            add(store, peer, at=at, kind=MessageKind.GROUP, group="g3")
        elif action < 0.78:
            store.mark_conversation_read(peer)
        elif action < 0.84:
            found = store.find(MessageQuery(peer=peer, kinds=frozenset({MessageKind.MESSAGE})))
            if found:
                victim = rng.choice(found).message
                store.update(victim.msg_id, {"deleted": True}, sender=victim.sender)
        elif action < 0.92:
            found = store.find(MessageQuery(peer=peer))
            if found:
                victim = rng.choice(found).message
                store.remove(MessageQuery(msg_ids=(victim.msg_id,), sender=victim.sender))
        elif action < 0.96:
            found = store.find(MessageQuery(peer=peer))
            if found:
                victim = rng.choice(found).message
                store.update(victim.msg_id, {"read_at": None}, sender=victim.sender)
        else:  # by hand: what the library never does
            sql(
                store.path,
                "UPDATE messages SET conversation = ?, timestamp = ? WHERE id ="
                " (SELECT id FROM messages ORDER BY random() LIMIT 1)",
                (rng.choice(PEERS), at.isoformat(sep=" ", timespec="microseconds")),
            )
        if step % 20 == 0:
            check(store)
    check(store)
    assert len(counted(store)) >= 5


def test_removing_every_message_removes_the_conversation(store):
    add(store, PEERS[0])
    newest = add(store, PEERS[0], at=T0 + timedelta(hours=1))
    add(store, PEERS[1], at=T0 + timedelta(hours=2))
    store.remove(MessageQuery(msg_ids=(newest.msg_id,)))
    check(store)
    assert store.conversations()[1].updated_at == T0
    store.remove(MessageQuery(peer=PEERS[0]))
    check(store)
    assert [c.conversation_id for c in store.conversations()] == [PEERS[1]]
    assert sql(store.path, "SELECT conversation FROM conversations") == [(PEERS[1],)]


def test_pages_visit_every_conversation_once_in_order(store):
    rng = random.Random(3)
    for i in range(120):  # ties on the timestamp too: ordered by conversation id then
        add(store, f"u{i:03d}@example.org", at=T0 + timedelta(minutes=rng.randint(0, 30)))
    everything = store.conversations()
    assert len(everything) == 120
    walked: list[Conversation] = []
    page = store.conversations(limit=7)
    while page:
        assert len(page) <= 7
        walked += page
        page = store.conversations(limit=7, before=page[-1])
    assert [c.conversation_id for c in walked] == [c.conversation_id for c in everything]
    assert walked == everything


def test_a_conversation_that_moves_up_while_paging_is_not_repeated(store):
    for i in range(10):
        add(store, PEERS[i % 6] if i < 6 else f"x{i}@example.org", at=T0 + timedelta(minutes=i))
    first = store.conversations(limit=3)
    add(store, first[0].conversation_id, at=T0 + timedelta(days=1))  # already shown
    rest = store.conversations(before=first[-1])
    shown = [c.conversation_id for c in first + rest]
    assert len(shown) == len(set(shown)) == 10


def test_page_arguments_are_checked(store):
    add(store, PEERS[0])
    for bad in (0, -1, 10_001, "5", True):
        with pytest.raises(InvalidMessageError, match="limit"):
            store.conversations(limit=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="before"):
        store.conversations(before="p0@example.org")  # type: ignore[arg-type]


def test_the_first_page_reads_the_index_not_every_conversation(store):
    add(store, PEERS[0])
    plan = sql(store.path, "EXPLAIN QUERY PLAN " + summary.SUMMARY_FIRST, (50,))
    text = " ".join(str(r[-1]) for r in plan)
    assert "ix_conversations_recent" in text and "TEMP B-TREE" not in text


def _schema_6_file(path: Path) -> None:
    db = pw.SqliteDatabase(str(path))
    db.connect()
    with db.atomic():
        for migration in MIGRATIONS[:6]:
            migration(db, ME)
        db.execute_sql("INSERT INTO schema_version (id, version) VALUES (1, 6)")
    cols = "msg_id, sender, recipient, peer, content, timestamp, direction, status,"
    cols += " updated_at, kind, conversation, read_at"
    rows = []
    for i in range(30):
        peer = PEERS[i % 4]
        ts = (T0 + timedelta(minutes=i)).isoformat(sep=" ", timespec="microseconds")
        read = ts if i % 3 == 0 else None
        kind = "message" if i % 7 else "edit"
        rows.append((f"m{i}", peer, ME, peer, "hey", ts, "in", "received", ts, kind, peer, read))
    rows.append(("g", ME, None, None, "", ts, "out", "delivered", ts, "group", "group:g"))
    for row in rows:
        row = row + (None,) * (12 - len(row))
        db.execute_sql(f"INSERT INTO messages ({cols}) VALUES ({', '.join('?' * 12)})", row)
    db.close()


def test_a_schema_6_file_is_upgraded_and_read_as_it_is(tmp_path):
    old = tmp_path / "old.db"
    _schema_6_file(old)
    reader = ReadOnlyHistory(old, owner=ME)
    try:  # read-only, not upgraded: counted from messages, in pages too
        before_upgrade = reader.conversations()
        assert [c.conversation_id for c in reader.conversations(limit=2)] == [
            c.conversation_id for c in before_upgrade[:2]
        ]
        rest = reader.conversations(before=before_upgrade[1])
        assert rest == before_upgrade[2:]
    finally:
        reader.close()
    assert sql(old, "SELECT version FROM schema_version") == [(6,)]
    store = SQLiteStore(old, owner=ME)
    try:
        assert sql(old, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        check(store)
        assert store.conversations() == before_upgrade
        assert {c.conversation_id for c in before_upgrade} == {*PEERS[:4], "group:g"}
        names = {r[0] for r in sql(old, "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ix_messages_direction_status" not in names and "ix_messages_notified" not in names
        assert {"ix_messages_unconfirmed", "ix_messages_unannounced"} <= names
    finally:
        store.close()
    reader = ReadOnlyHistory(old, owner=ME)
    try:
        assert reader.conversations() == before_upgrade
        assert reader.conversations(limit=2, before=before_upgrade[0]) == before_upgrade[1:3]
    finally:
        reader.close()


def test_the_command_line_shows_a_page(tmp_path):
    import json
    import os
    import subprocess
    import sys

    db = tmp_path / "chat.db"
    store = SQLiteStore(db, owner=ME)
    try:
        for i in range(60):
            add(store, f"u{i:02d}@example.org", at=T0 + timedelta(minutes=i))
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYFT", "NO_COLOR"))}
    env.update(HOME=str(tmp_path / "home"), SYFT_CHAT_LOAD_PLUGINS="")

    def run(*args: str) -> tuple[list[str], str]:
        done = subprocess.run(
            [sys.executable, "-m", "syft_chat", "--db", str(db), "conversations", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        return [c["conversation_id"] for c in json.loads(done.stdout)], done.stderr

    shown, note = run("--json")
    assert shown == [f"u{i:02d}@example.org" for i in range(59, 9, -1)]  # the newest 50
    assert "--all" in note
    assert run("-n", "5", "--json")[0] == shown[:5]
    everything, note = run("--all", "--json")
    assert len(everything) == 60 and everything[:50] == shown and "--all" not in note
