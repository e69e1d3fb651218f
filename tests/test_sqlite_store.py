"""Tests of the built-in ``sqlite`` store, on real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from syft_chat.errors import StorageError
from syft_chat.interfaces import (
    BackendContext,
    FailedRequest,
    MessageQuery,
    MessageStore,
    StoredMessage,
)
from syft_chat.messaging.status import PENDING, may_become
from syft_chat.models import ChatMessage, Direction, MessageKind, MessageStatus, utcnow
from syft_chat.plugins.sqlite import store as sqlite_store
from syft_chat.plugins.sqlite.store import SCHEMA_VERSION, SQLiteStore
from syft_chat.settings import ChatSettings


class Store(SQLiteStore):
    """The SQLite store with the operations these tests were first written against,
    each expressed in the narrow store contract and the core's rules (status never
    moves backwards: :func:`~syft_chat.messaging.status.may_become`)."""

    def add(
        self, message: ChatMessage, *, direction: Direction, peer: str | None, status: MessageStatus
    ) -> bool:
        stored = message.model_copy(update={"status": status})
        return self.insert(
            StoredMessage(stored, direction, peer, notified=direction is Direction.OUTGOING)
        )

    def get(self, msg_id: str) -> ChatMessage | None:  # type: ignore[override]
        found = super().get(msg_id)
        return found.message if found is not None else None

    def set_status(self, msg_id: str, status: MessageStatus, *, error: str | None = None) -> bool:
        return self.update(msg_id, {"status": status, "error": error}, if_status=may_become(status))

    def history(self, *, peer: str | None = None, limit: int = 50, **kw: Any) -> list[ChatMessage]:
        query = MessageQuery(
            kinds=frozenset({MessageKind.MESSAGE}),
            conversation=peer,
            since=kw.get("since"),
            thread_id=kw.get("thread_id"),
            order="time",
            limit=limit,
            last=True,
        )
        return [r.message for r in self.find(query)] if limit > 0 else []

    def next_seq(self, peer: str) -> int:
        return self.max_seq(peer, Direction.OUTGOING) + 1

    def _pending(self) -> list[StoredMessage]:
        query = MessageQuery(direction=Direction.OUTGOING, statuses=PENDING, has_peer=True)
        return self.find(query)

    def floor_seq(self, peer: str) -> int | None:
        seqs = [r.message.seq for r in self._pending() if r.peer == peer and r.message.seq]
        return min(seqs) if seqs else None

    def record_attempt(self, msg_id: str, request_id: str) -> bool:
        found = super().get(msg_id)
        changes = {"request_id": request_id, "attempts": (found.attempts if found else 0) + 1}
        sent = {**changes, "status": MessageStatus.SENT}
        if self.update(msg_id, sent, if_status={MessageStatus.QUEUED}):
            return True
        self.update(msg_id, changes)
        return False

    def outbox_requests(self) -> list[tuple[ChatMessage, str | None, str | None]]:
        return [(r.message, r.peer, r.request_id) for r in self._pending()]

    def outbox(self) -> list[ChatMessage]:
        query = MessageQuery(direction=Direction.OUTGOING, statuses=PENDING, order="time")
        return [r.message for r in self.find(query)]

    def unnotified(self) -> list[tuple[ChatMessage, str | None]]:
        query = MessageQuery(direction=Direction.INCOMING, notified=False, order="seq")
        return [(r.message, r.peer) for r in self.find(query)]

    def count(self) -> int:
        return len(self.find(MessageQuery()))

    def record_failed(  # type: ignore[override]
        self, *, sender: str, reason: str, raw: bytes, msg_id: str | None, keep: int = 10_000
    ) -> None:
        super().record_failed(FailedRequest(sender, reason, raw, msg_id, utcnow()), keep=keep)

    def failed_messages(self, limit: int = 100) -> list[dict[str, Any]]:  # type: ignore[override]
        return [vars(f) for f in super().failed_messages(limit)]


ME = "alice@example.org"
BOB = "bob@example.org"
CAROL = "carol@example.org"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    s = Store(db_path, owner=ME)
    yield s
    s.close()


def raw(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` on ``path`` through the stdlib sqlite3 module, as a user would."""
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(sql, params).fetchall()


def msg(content: str, *, sender: str = ME, minutes: float = 0, **kw: Any) -> ChatMessage:
    return ChatMessage(
        sender=sender, content=content, timestamp=T0 + timedelta(minutes=minutes), **kw
    )


def send(store: SQLiteStore, content: str, to: str = BOB, **kw: Any) -> ChatMessage:
    m = msg(content, **kw)
    assert store.add(m, direction=Direction.OUTGOING, peer=to, status=MessageStatus.QUEUED)
    return m


def receive(store: SQLiteStore, content: str, sender: str = BOB, **kw: Any) -> ChatMessage:
    m = msg(content, sender=sender, **kw)
    assert store.add(m, direction=Direction.INCOMING, peer=sender, status=MessageStatus.RECEIVED)
    return m


def contents(messages: list[ChatMessage]) -> list[str]:
    return [m.content for m in messages]


# --------------------------------------------------------------------------- basics


def test_satisfies_protocol_and_registers_through_hook(db_path: Path) -> None:
    registered: dict[str, Callable[[BackendContext], MessageStore]] = {}
    sqlite_store.chat_register_stores(register=registered.__setitem__)
    assert list(registered) == ["sqlite"]
    ctx = BackendContext(
        email=ME,
        syft=None,  # type: ignore[arg-type]  # the store never touches it
        app_name="chat",
        db_path=db_path,
        settings=ChatSettings(db_busy_timeout_ms=1234),
    )
    store = registered["sqlite"](ctx)
    try:
        assert isinstance(store, MessageStore)
        assert isinstance(store, SQLiteStore) and store.owner == ME
        assert store.name == "sqlite"
        assert store._db.pragma("busy_timeout") == 1234
    finally:
        store.close()


def test_add_get_round_trip(store: SQLiteStore) -> None:
    stamp = datetime(2024, 5, 1, 14, 30, 0, 250, tzinfo=timezone(timedelta(hours=2)))
    m = ChatMessage(
        sender=ME,
        content="héllo ✓",
        timestamp=stamp,
        thread_id="t1",
        reply_to="r0",
        metadata={"n": 1, "nested": {"list": [1, "two", None]}, "ok": True},
    )
    assert store.add(m, direction=Direction.OUTGOING, peer=BOB, status=MessageStatus.QUEUED)
    got = store.get(m.msg_id)
    assert got is not None
    assert got.timestamp == stamp and got.timestamp.tzinfo == timezone.utc
    assert got.metadata == m.metadata
    assert got.recipient == BOB and got.status is MessageStatus.QUEUED
    assert got.model_dump(exclude={"recipient", "status"}) == m.model_dump(
        exclude={"recipient", "status"}
    )
    assert store.get("no-such-id") is None


def test_incoming_recipient_is_owner(store: SQLiteStore) -> None:
    m = receive(store, "hi")
    got = store.get(m.msg_id)
    assert got is not None and got.recipient == ME and got.status is MessageStatus.RECEIVED


def test_duplicate_msg_id_is_ignored(store: SQLiteStore, db_path: Path) -> None:
    m = receive(store, "first")
    again = m.model_copy(update={"content": "changed"})
    assert not store.add(
        again, direction=Direction.INCOMING, peer=BOB, status=MessageStatus.RECEIVED
    )
    assert store.count() == 1
    assert raw(db_path, "SELECT count(*), content FROM messages") == [(1, "first")]


def test_history_filters_by_peer_in_both_directions(store: SQLiteStore) -> None:
    send(store, "to bob", minutes=1)
    receive(store, "from bob", minutes=2)
    send(store, "to carol", to=CAROL, minutes=3)
    receive(store, "from carol", sender=CAROL, minutes=4)
    assert contents(store.history(peer=BOB)) == ["to bob", "from bob"]
    assert contents(store.history(peer=CAROL)) == ["to carol", "from carol"]
    assert len(store.history()) == 4


def test_history_since_aware_and_naive(store: SQLiteStore) -> None:
    for i in range(5):
        receive(store, f"m{i}", minutes=60 * i)
    cutoff = T0 + timedelta(hours=2)
    assert contents(store.history(since=cutoff)) == ["m2", "m3", "m4"]
    # the same instant as naive local time, and in another zone
    naive_local = cutoff.astimezone().replace(tzinfo=None)
    assert contents(store.history(since=naive_local)) == ["m2", "m3", "m4"]
    other_zone = cutoff.astimezone(timezone(timedelta(hours=-7)))
    assert contents(store.history(since=other_zone)) == ["m2", "m3", "m4"]


def test_history_thread_and_combined_filters(store: SQLiteStore) -> None:
    send(store, "a", thread_id="t1", minutes=1)
    receive(store, "b", thread_id="t1", minutes=2)
    receive(store, "c", thread_id="t2", minutes=3)
    receive(store, "d", sender=CAROL, thread_id="t1", minutes=4)
    assert contents(store.history(thread_id="t1")) == ["a", "b", "d"]
    assert contents(store.history(thread_id="t1", peer=BOB)) == ["a", "b"]
    assert contents(store.history(thread_id="t1", since=T0 + timedelta(minutes=2))) == ["b", "d"]
    assert store.history(thread_id="none") == []


def test_history_limit_returns_newest_oldest_first(store: SQLiteStore) -> None:
    # inserted out of time order: order must follow the timestamps
    for minute in (5, 1, 4, 2, 3):
        receive(store, f"m{minute}", minutes=minute)
    assert contents(store.history(limit=3)) == ["m3", "m4", "m5"]
    assert contents(store.history(limit=50)) == ["m1", "m2", "m3", "m4", "m5"]
    assert store.history(limit=0) == []


def test_history_ties_keep_insertion_order(store: SQLiteStore) -> None:
    for i in range(6):
        receive(store, f"same{i}", minutes=10)
    receive(store, "earlier", minutes=1)
    assert contents(store.history()) == ["earlier"] + [f"same{i}" for i in range(6)]
    assert contents(store.history(limit=2)) == ["same4", "same5"]


def test_set_status_and_error(store: SQLiteStore, db_path: Path) -> None:
    m = send(store, "x")
    store.set_status(m.msg_id, MessageStatus.SENT)
    assert store.get(m.msg_id).status is MessageStatus.SENT  # type: ignore[union-attr]
    store.set_status(m.msg_id, MessageStatus.FAILED, error="recipient refused: too large")
    assert store.get(m.msg_id).status is MessageStatus.FAILED  # type: ignore[union-attr]
    assert raw(db_path, "SELECT status, error FROM messages WHERE msg_id = ?", (m.msg_id,)) == [
        ("failed", "recipient refused: too large")
    ]
    store.set_status("unknown", MessageStatus.DELIVERED)  # no-op, no error
    assert store.count() == 1


def test_outbox(store: SQLiteStore) -> None:
    queued = send(store, "queued", minutes=3)
    sent = send(store, "sent", minutes=1)
    store.set_status(sent.msg_id, MessageStatus.SENT)
    done = send(store, "delivered", minutes=2)
    store.set_status(done.msg_id, MessageStatus.DELIVERED)
    failed = send(store, "failed", minutes=4)
    store.set_status(failed.msg_id, MessageStatus.FAILED, error="no")
    receive(store, "incoming", minutes=0)
    assert [m.msg_id for m in store.outbox()] == [sent.msg_id, queued.msg_id]


def test_reopen_persists(db_path: Path) -> None:
    first = Store(db_path, owner=ME)
    m = send(first, "kept", metadata={"k": "v"})
    first.close()
    second = Store(db_path, owner=ME)
    try:
        assert second.get(m.msg_id) == m.model_copy(
            update={"recipient": BOB, "status": MessageStatus.QUEUED}
        )
        assert second.count() == 1
    finally:
        second.close()


def test_creates_parent_dirs_and_expands_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = Store("~/deep/er/chat.db", owner=ME)
    try:
        assert store.path == tmp_path / "deep" / "er" / "chat.db"
        assert store.path.is_file()
    finally:
        store.close()


# ------------------------------------------------------------ the file, seen from outside


def test_seed_step4_raw_sql_while_store_open(store: SQLiteStore, db_path: Path) -> None:
    root = send(store, "root", thread_id="th", minutes=1)
    reply = receive(store, "reply", thread_id="th", reply_to=root.msg_id, minutes=2)
    send(store, "elsewhere", thread_id="other", minutes=3)
    with closing(sqlite3.connect(db_path)) as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT msg_id, sender, content, thread_id, reply_to FROM messages WHERE thread_id = ?",
            ("th",),
        )
        rows = cursor.fetchall()
    assert sorted(rows) == sorted(
        [
            (root.msg_id, ME, "root", "th", None),
            (reply.msg_id, BOB, "reply", "th", root.msg_id),
        ]
    )
    store.add(msg("after"), direction=Direction.OUTGOING, peer=BOB, status=MessageStatus.QUEUED)


def test_columns_metadata_json_and_timestamp_text(store: SQLiteStore, db_path: Path) -> None:
    m = send(store, "x", metadata={"a": [1, 2], "b": "é"})
    columns = [row[1] for row in raw(db_path, "PRAGMA table_info(messages)")]
    assert set(columns) >= {
        "id", "msg_id", "sender", "content", "timestamp", "thread_id", "reply_to", "metadata",
        "recipient", "peer", "direction", "status", "error", "updated_at",
    }  # fmt: skip
    ((meta, stamp, as_dt, direction, peer),) = raw(
        db_path,
        "SELECT metadata, timestamp, datetime(timestamp), direction, peer FROM messages"
        " WHERE msg_id = ?",
        (m.msg_id,),
    )
    assert json.loads(meta) == {"a": [1, 2], "b": "é"}
    assert stamp == T0.strftime(TS_FORMAT) == "2024-05-01 12:00:00.000000+00:00"
    assert as_dt == "2024-05-01 12:00:00"
    assert (direction, peer) == ("out", BOB)


def test_invalid_metadata_reads_as_empty(store: SQLiteStore, db_path: Path) -> None:
    a, b = receive(store, "a", minutes=1), receive(store, "b", minutes=2)
    raw(db_path, "UPDATE messages SET metadata = ? WHERE msg_id = ?", ("{'repr': 1}", a.msg_id))
    raw(db_path, "UPDATE messages SET metadata = ? WHERE msg_id = ?", ("[1, 2]", b.msg_id))
    assert [m.metadata for m in store.history()] == [{}, {}]


def test_pragmas_and_indexes(store: SQLiteStore, db_path: Path) -> None:
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert store._db.pragma("synchronous") == 1  # NORMAL
    assert store._db.pragma("foreign_keys") == 1
    indexed = {
        tuple(col[2] for col in raw(db_path, f"PRAGMA index_info({name!r})"))
        for _, name, *_ in raw(db_path, "PRAGMA index_list(messages)")
    }
    assert {("peer", "timestamp"), ("thread_id", "timestamp"), ("timestamp",)} <= indexed
    assert ("msg_id", "sender") in indexed  # ids are per sender
    # schema 7: the outbox and the announcer read schema 6's partial indexes instead
    assert ("direction", "status") not in indexed and ("notified",) not in indexed


def test_schema_version_is_current(store: SQLiteStore, db_path: Path) -> None:
    assert SCHEMA_VERSION == 8
    assert raw(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


# --------------------------------------------------------------------------- migrations


def test_adopts_seed_table(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute(
            "CREATE TABLE messages (msg_id TEXT PRIMARY KEY, sender TEXT, content TEXT,"
            " timestamp TEXT, thread_id TEXT, reply_to TEXT, metadata TEXT)"
        )
        conn.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                ("z-old", BOB, "hello alice", "2024-05-01T12:00:00+00:00", "t", None, "{}"),
                ("a-mine", ME, "hi bob", "2024-05-01 12:00:00.000000+00:00", "t", "z-old", None),
                ("m-naive", BOB, "naive", str(datetime(2024, 5, 1, 13, 0)), None, None, "{'x': 1}"),
            ],
        )
    store = Store(db_path, owner=ME)
    try:
        assert raw(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        history = store.history()
        # equal timestamps keep the legacy insertion (rowid) order, not msg_id order
        assert [m.msg_id for m in history] == ["z-old", "a-mine", "m-naive"]
        old, mine, naive = history
        assert (old.recipient, old.status) == (ME, MessageStatus.RECEIVED)
        assert (mine.recipient, mine.status, mine.reply_to) == (
            None,
            MessageStatus.DELIVERED,
            "z-old",
        )
        assert naive.timestamp == datetime(2024, 5, 1, 13, 0).astimezone(timezone.utc)
        assert naive.metadata == {}  # a repr()'d dict is not JSON and is never eval'd
        assert contents(store.history(peer=BOB)) == ["hello alice", "naive"]
        assert store.outbox() == []
        assert raw(db_path, "SELECT direction FROM messages ORDER BY id") == [
            ("in",),
            ("out",),
            ("in",),
        ]
        m = send(store, "new one", minutes=120)
        assert store.history(limit=1) == [store.get(m.msg_id)]
    finally:
        store.close()
    names = {row[0] for row in raw(db_path, "SELECT name FROM sqlite_master")}
    assert "_messages_v0" not in names
    Store(db_path, owner=ME).close()  # reopening is a no-op migration


def test_foreign_messages_table_is_refused(db_path: Path) -> None:
    raw(db_path, "CREATE TABLE messages (body TEXT)")
    with pytest.raises(StorageError, match="not a chat database") as info:
        Store(db_path, owner=ME)
    assert str(db_path) in str(info.value)
    assert raw(db_path, "SELECT name FROM sqlite_master") == [("messages",)]  # rolled back


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    Store(db_path, owner=ME).close()
    raw(db_path, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="newer syft-chat") as info:
        Store(db_path, owner=ME)
    assert str(db_path) in str(info.value)


# --------------------------------------------------------------------------- failures


def test_locked_database_raises_then_recovers(db_path: Path) -> None:
    store = Store(db_path, owner=ME, busy_timeout_ms=100)
    try:
        with closing(sqlite3.connect(db_path, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StorageError, match="locked") as info:
                send(store, "blocked")
            assert str(db_path) in str(info.value)
            assert "db_busy_timeout_ms" in str(info.value)
            other.execute("COMMIT")
        send(store, "after the lock")
        assert contents(store.history()) == ["after the lock"]
    finally:
        store.close()


def test_corrupt_file_raises(db_path: Path) -> None:
    db_path.write_bytes(os.urandom(8192))
    with pytest.raises(StorageError, match="not a database") as info:
        Store(db_path, owner=ME)
    assert str(db_path) in str(info.value) and "move it aside" in str(info.value)


def test_unwritable_directory_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="a-file"):
        Store(blocker / "chat.db", owner=ME)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_read_only_file_raises(db_path: Path) -> None:
    store = Store(db_path, owner=ME)
    send(store, "before")
    store.close()
    db_path.chmod(0o444)
    try:
        with pytest.raises(StorageError, match="read"):
            s = Store(db_path, owner=ME)
            try:
                send(s, "after")
            finally:
                s.close()
    finally:
        db_path.chmod(0o644)


def test_bad_synchronous_value_is_refused(db_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Store(db_path, owner=ME, synchronous="NORMAL; DROP TABLE messages")


# --------------------------------------------------------------------------- threads and lifecycle


def test_concurrent_adds(store: SQLiteStore) -> None:
    threads, per_thread = 8, 200
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    ids = [[f"t{t}-m{i}" for i in range(per_thread)] for t in range(threads)]

    def worker(my_ids: list[str]) -> None:
        try:
            barrier.wait()
            for i, msg_id in enumerate(my_ids):
                m = ChatMessage(msg_id=msg_id, sender=BOB, content=msg_id)
                assert store.add(
                    m, direction=Direction.INCOMING, peer=BOB, status=MessageStatus.RECEIVED
                )
                assert not store.add(
                    m, direction=Direction.INCOMING, peer=BOB, status=MessageStatus.RECEIVED
                )
                if i % 50 == 0:
                    store.history(peer=BOB, limit=10)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(chunk,)) for chunk in ids]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert store.count() == threads * per_thread
    stored = {m.msg_id for m in store.history(limit=threads * per_thread)}
    assert stored == {msg_id for chunk in ids for msg_id in chunk}


def test_close_is_idempotent_and_use_after_close_raises(db_path: Path) -> None:
    store = Store(db_path, owner=ME)
    m = send(store, "x")
    store.close()
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: store.add(
            msg("y"), direction=Direction.OUTGOING, peer=BOB, status=MessageStatus.QUEUED
        ),
        lambda: store.get(m.msg_id),
        lambda: store.set_status(m.msg_id, MessageStatus.SENT),
        lambda: store.history(),
        store.outbox,
        store.count,
    ]
    for call in calls:
        with pytest.raises(StorageError, match="store is closed"):
            call()


def test_migrates_a_version_1_file(db_path: Path) -> None:
    """A file written by the first release (schema 1) gains the delivery columns in place."""
    from syft_chat.plugins.sqlite import store as mod

    conn = sqlite3.connect(db_path)
    conn.close()
    db = mod.pw.SqliteDatabase(str(db_path))
    db.connect()
    from syft_chat.plugins.sqlite.schema import _migrate_0_to_1

    _migrate_0_to_1(db, ME)
    db.execute_sql("INSERT INTO schema_version (id, version) VALUES (1, 1)")
    db.execute_sql(
        "INSERT INTO messages (msg_id, sender, recipient, peer, content, timestamp, metadata,"
        " direction, status, updated_at) VALUES ('m1', ?, ?, ?, 'old', "
        "'2024-01-01 00:00:00.000000+00:00', '{}', 'in', 'received', 'x')",
        (BOB, ME, BOB),
    )
    db.close()
    store = Store(db_path, owner=ME)
    try:
        assert raw(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert store.get("m1").content == "old"
        assert store.unnotified() == []  # old rows count as already announced
        assert raw(db_path, "SELECT count(*) FROM failed_messages") == [(0,)]
    finally:
        store.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_a_file_of_every_earlier_schema_reads_and_migrates_to_the_current(
    db_path: Path, version: int
) -> None:
    """A file left at schema ``version`` (its migrations run, nothing after) is read by
    the command line's read-only reader as it is (the file unchanged), then a store
    migrates it to the current schema: the old row keeps its text and has no
    attachments, and a new message keeps its attachments."""
    from syft_chat.interfaces import StoredMessage
    from syft_chat.models import Attachment
    from syft_chat.plugins.sqlite import store as mod
    from syft_chat.plugins.sqlite.reader import ReadOnlyHistory
    from syft_chat.plugins.sqlite.schema import MIGRATIONS

    db = mod.pw.SqliteDatabase(str(db_path))
    db.connect()
    for migrate in MIGRATIONS[:version]:
        migrate(db, ME)
    db.execute_sql("INSERT INTO schema_version (id, version) VALUES (1, ?)", (version,))
    db.execute_sql(
        "INSERT INTO messages (msg_id, sender, recipient, peer, content, timestamp, metadata,"
        " direction, status, updated_at) VALUES ('m1', ?, ?, ?, 'old', "
        "'2024-01-01 00:00:00.000000+00:00', '{}', 'in', 'received', 'x')",
        (BOB, ME, BOB),
    )
    if version >= 3:  # schema 3's conversation column (what its writer set)
        db.execute_sql("UPDATE messages SET conversation = peer")
    db.close()
    before = db_path.read_bytes()
    reader = ReadOnlyHistory(db_path, owner=ME)
    try:
        (seen,) = reader.history(conversation=BOB)
    finally:
        reader.close()
    assert (seen.content, seen.attachments) == ("old", [])
    assert db_path.read_bytes() == before
    attachment = Attachment(
        id="a1",
        name="r.csv",
        size=3,
        sha256="0" * 64,
        url=f"syft://{ME}/app_data/syft_chat/attachments/m2/r.csv",
    )
    store = SQLiteStore(db_path, owner=ME)
    try:
        assert raw(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert raw(db_path, "SELECT attachments FROM messages") == [("[]",)]
        old = store.get("m1")
        assert old is not None and (old.message.content, old.message.attachments) == ("old", [])
        new = ChatMessage(msg_id="m2", sender=ME, recipient=BOB, content="x", seq=1)
        new = new.model_copy(update={"attachments": [attachment]})
        store.insert(StoredMessage(new, Direction.OUTGOING, BOB))
        got = store.get("m2", sender=ME)
        assert got is not None and got.message.attachments == [attachment]
    finally:
        store.close()


def test_status_never_moves_backwards(store: SQLiteStore) -> None:
    msg = ChatMessage(sender=ME, content="x", recipient=BOB)
    store.add(msg, direction=Direction.OUTGOING, peer=BOB, status=MessageStatus.QUEUED)
    assert store.set_status(msg.msg_id, MessageStatus.DELIVERED)
    assert not store.set_status(msg.msg_id, MessageStatus.SENT)
    assert not store.set_status(msg.msg_id, MessageStatus.FAILED, error="late")
    assert store.get(msg.msg_id).status == MessageStatus.DELIVERED
    assert store.set_status(msg.msg_id, MessageStatus.READ)
    assert store.get(msg.msg_id).status == MessageStatus.READ


def test_sequence_numbers_and_floor(store: SQLiteStore) -> None:
    assert store.next_seq(BOB) == 1
    ids = []
    for i in range(3):
        m = ChatMessage(sender=ME, content=f"m{i}", recipient=BOB, seq=store.next_seq(BOB))
        store.add(m, direction=Direction.OUTGOING, peer=BOB, status=MessageStatus.SENT)
        ids.append(m.msg_id)
    assert store.next_seq(BOB) == 4 and store.next_seq("other@x.org") == 1
    assert store.floor_seq(BOB) == 1
    store.set_status(ids[0], MessageStatus.DELIVERED)
    store.set_status(ids[1], MessageStatus.FAILED, error="refused")
    assert store.floor_seq(BOB) == 3
    assert store.record_attempt(ids[2], "req-1") is False  # already sent: only recorded
    [(msg, peer, request_id)] = store.outbox_requests()
    assert (msg.msg_id, peer, request_id) == (ids[2], BOB, "req-1")


def test_failed_messages_keep_reason_and_raw(store: SQLiteStore, db_path: Path) -> None:
    store.record_failed(sender=BOB, reason="sender mismatch", raw=b"\x00raw", msg_id="m9")
    [row] = store.failed_messages()
    assert row["reason"] == "sender mismatch" and row["raw"] == b"\x00raw"
    assert raw(db_path, "SELECT sender, msg_id FROM failed_messages") == [(BOB, "m9")]


def test_record_attempt_moves_queued_to_sent_once(store: SQLiteStore, db_path: Path) -> None:
    m = ChatMessage(sender=ME, content="x", recipient=BOB, seq=1)
    store.add(m, direction=Direction.OUTGOING, peer=BOB, status=MessageStatus.QUEUED)
    assert store.record_attempt(m.msg_id, "r1") is True
    assert store.record_attempt(m.msg_id, "r2") is False
    assert raw(db_path, "SELECT status, request_id, attempts FROM messages") == [("sent", "r2", 2)]


# --------------------------------------------------------------------------- trusted rows


#: an attachments column entry as the store writes it (state and announced included)
_ATTACHMENT = {
    "id": "a1",
    "name": "r.csv",
    "size": 3,
    "media_type": "text/csv",
    "sha256": "ab" * 32,
    "url": "syft://a@b.org/app_data/syft_chat/attachments/m1/r.csv",
    "state": "available",
    "announced": True,
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"kind": "edit", "target": "m0", "target_sender": "x@y.org"},
        {"kind": "reaction", "conversation": "group:g1"},
        {"deleted": 1, "edited_at": "2024-05-01 12:00:01.000000+00:00"},
        {"metadata": '{"a": [1, 2], "b": {"c": null}}', "seq": 7, "error": "boom"},
        {"timestamp": "2024-05-01T12:00:00Z", "status": "no-such-status", "kind": "odd"},
        {"timestamp": 1714564800, "metadata": "not json", "thread_id": "t", "reply_to": "r"},
        {"timestamp": "2024-05-01 14:00:00+02:00", "status": None, "recipient": None},
        {"attachments": json.dumps([_ATTACHMENT])},
    ],
)
def test_a_row_maps_to_the_model_validation_would_make(changes: dict[str, Any]) -> None:
    """Rows are turned into models without pydantic's validation (rows.trusted_message):
    the result must be the model validating the same values gives, for every kind of row,
    including values another tool wrote (an unknown status, another timestamp format)."""
    from syft_chat.plugins.sqlite import rows

    values = {
        **dict.fromkeys(rows.READ_COLUMNS),
        "msg_id": "m1",
        "sender": "a@b.org",
        "content": "hi",
        "timestamp": "2024-05-01 12:00:00.000000+00:00",
        "metadata": "{}",
        "recipient": "c@d.org",
        "status": "delivered",
        "kind": "message",
        "deleted": 0,
        "conversation": "c@d.org",
        "direction": "out",
        "applied": 1,
        "notified": 1,
        "attempts": 0,
        "updated_at": "2024-05-01 12:00:00.000000+00:00",
        "attachments": "[]",
        **changes,
    }
    row = tuple(values[c] for c in rows.READ_COLUMNS)
    fast = rows.message_of_values(row)
    status, kind, conv = values["status"], values["kind"], values["conversation"]
    validated = ChatMessage(
        msg_id=values["msg_id"],
        sender=values["sender"],
        content=values["content"],
        timestamp=rows.parse_ts(values["timestamp"]),
        thread_id=values["thread_id"],
        reply_to=values["reply_to"],
        metadata=json.loads(values["metadata"]) if values["metadata"] != "not json" else {},
        recipient=values["recipient"],
        status=status if status in {s.value for s in MessageStatus} else None,
        seq=values["seq"],
        error=values["error"],
        kind=kind if kind in {k.value for k in MessageKind} else "message",
        target=values["target"],
        target_sender=values["target_sender"],
        deleted=bool(values["deleted"]),
        edited_at=rows.parse_ts(values["edited_at"]) if values["edited_at"] else None,
        group_id=conv[len("group:") :] if conv.startswith("group:") else None,
        attachments=json.loads(values["attachments"] or "[]"),
    )
    assert fast == validated
    assert fast.model_dump() == validated.model_dump()
    assert fast.model_fields_set == validated.model_fields_set
    assert fast.timestamp.tzinfo is not None and fast.timestamp.utcoffset().total_seconds() == 0
    # the same types too (1 == True, but a bool field must hold a bool)
    assert {k: type(v) for k, v in vars(fast).items()} == {
        k: type(v) for k, v in vars(validated).items()
    }
    copy = fast.model_copy(update={"reactions": {"👍": ["x"]}})  # what with_reactions does
    assert copy.reactions == {"👍": ["x"]} and fast.reactions == {}
    record = rows.record_of_values(row)
    assert record.message == validated and record.direction is Direction.OUTGOING
    assert record.updated_at == rows.parse_ts(values["updated_at"])
