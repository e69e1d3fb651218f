"""An upgrading user's database: the file the original library (``syft_chat_stateful``)
wrote, built by its own SQLAlchemy model and write path (``legacy_fixture``), opened by
a real syft-chat client and by the command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from legacy_fixture import LegacyRow, build_legacy_db, legacy_rows
from support import ALICE, BOB, CAROL, Workspace, wait_for

import syft_chat.testing
from syft_chat.interfaces import MessageQuery
from syft_chat.plugins.sqlite.store import SQLiteStore

STEP4_SQL = "SELECT msg_id, sender, content, thread_id, reply_to FROM messages WHERE thread_id = ?"
#: where the metadata text the original stored is kept when it cannot be read
LEGACY_META_KEY = "syft_chat.legacy_meta_data"
TO_BOB = ["m1-in", "m2-out", "m3-in", "m4-out", "m6-in", "m7-in", "m8-out", "m10-out"]


class Legacy:
    """The fixture file, its rows and the original's stored texts (read before migrating)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "chat_messages.db"
        self.marker = root / "pwned.txt"
        self.rows = legacy_rows(ALICE, BOB, CAROL, self.marker)
        build_legacy_db(self.path, self.rows)
        with closing(sqlite3.connect(self.path)) as conn:
            self.stored = {
                msg_id: (stamp, meta)
                for msg_id, stamp, meta in conn.execute(
                    "SELECT msg_id, timestamp, meta_data FROM messages"
                )
            }
        self.by_id = {row.msg_id: row for row in self.rows}

    def timestamp(self, msg_id: str) -> datetime:
        """The original's naive local time, as an aware UTC instant."""
        return datetime.fromisoformat(self.stored[msg_id][0]).astimezone(timezone.utc)

    def raw_meta(self, msg_id: str) -> str:
        return str(self.stored[msg_id][1])


@pytest.fixture
def legacy(tmp_path: Path) -> Legacy:
    return Legacy(tmp_path)


@pytest.fixture
def ws(workspace: Callable[..., Workspace]) -> Workspace:
    return workspace(ALICE, BOB, CAROL)


def _ids(messages: list[Any]) -> list[str]:
    return [m.msg_id for m in messages]


def test_fixture_is_the_original_schema(legacy: Legacy) -> None:
    with closing(sqlite3.connect(legacy.path)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(messages)")]
        naive = conn.execute("SELECT timestamp FROM messages WHERE msg_id = 'm1-in'").fetchone()
    assert columns == [
        "id", "msg_id", "sender", "content", "timestamp", "thread_id", "reply_to", "meta_data",
    ]  # fmt: skip
    assert naive == ("2024-05-01 09:00:00.123456",)  # SQLAlchemy DateTime text, naive
    assert legacy.raw_meta("m2-out") == repr({"recipient": BOB})
    assert "__import__" in legacy.raw_meta("m6-in")


def test_client_keeps_every_row_and_finds_both_directions(legacy: Legacy, ws: Workspace) -> None:
    alice = ws.client(ALICE, db_path=legacy.path)
    history = alice.get_chat_history(limit=100)
    assert _ids(history) == [row.msg_id for row in legacy.rows]
    for m in history:
        row: LegacyRow = legacy.by_id[m.msg_id]
        assert (m.sender, m.content, m.thread_id, m.reply_to) == (
            row.sender,
            row.content,
            row.thread_id,
            row.reply_to,
        )
        assert m.timestamp == legacy.timestamp(m.msg_id)
    with_bob = alice.get_chat_history(with_user=BOB, limit=100)
    assert _ids(with_bob) == TO_BOB  # both directions, in time order
    assert {m.sender for m in with_bob} == {ALICE, BOB}
    assert all(m.recipient == (BOB if m.sender == ALICE else ALICE) for m in with_bob)
    assert _ids(alice.get_chat_history(with_user=CAROL)) == ["m5-out"]
    assert _ids(alice.get_chat_history(with_user=BOB, limit=2)) == ["m8-out", "m10-out"]
    conversations = alice.list_conversations()
    assert [c.peer for c in conversations] == [BOB, CAROL]  # most recently active first
    assert conversations[0].last_message is not None
    assert conversations[0].last_message.msg_id == "m10-out"
    assert [c.unread for c in conversations] == [4, 0]  # the original kept no read state
    assert _ids(alice.get_chat_history(thread_id="t1")) == ["m1-in", "m2-out", "m3-in", "m10-out"]


def test_metadata_is_parsed_without_eval(legacy: Legacy, ws: Workspace) -> None:
    alice = ws.client(ALICE, db_path=legacy.path)
    meta = {m.msg_id: m.metadata for m in alice.get_chat_history(limit=100)}
    assert meta["m1-in"] == {}  # NULL
    assert meta["m2-out"] == {"recipient": BOB}  # a repr, read by ast.literal_eval
    assert meta["m3-in"] == {"lang": "de", "e": "😀"}
    assert meta["m4-out"] == {  # the datetime is no literal: the rest is read, the text kept
        "recipient": BOB,
        "n": 3,
        LEGACY_META_KEY: legacy.raw_meta("m4-out"),
    }
    assert meta["m5-out"] == {"recipient": CAROL, "tags": ["x"]}  # a set becomes a list
    assert meta["m6-in"] == {LEGACY_META_KEY: legacy.raw_meta("m6-in")}
    assert not legacy.marker.exists()  # the code in it never ran
    assert meta["m7-in"] == {}  # str(None)
    assert meta["m8-out"] == {"recipient": BOB}  # JSON
    assert meta["m9-out"] == {}
    assert meta["m10-out"] == {"recipient": BOB, "ok": True, "none": None, "pair": [1, 2]}
    with closing(sqlite3.connect(legacy.path)) as conn:
        for (text,) in conn.execute("SELECT metadata FROM messages"):
            assert isinstance(json.loads(text), dict)  # the column is JSON now
    assert not legacy.marker.exists()


def test_seed_step4_sql_on_the_migrated_file(legacy: Legacy, ws: Workspace) -> None:
    ws.client(ALICE, db_path=legacy.path)  # migrates; the raw SQL runs while it is open
    with closing(sqlite3.connect(legacy.path)) as conn:
        cursor = conn.cursor()
        cursor.execute(STEP4_SQL, ("t1",))
        rows = cursor.fetchall()
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        (count,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    assert sorted(rows) == sorted(
        (r.msg_id, r.sender, r.content, r.thread_id, r.reply_to)
        for r in legacy.rows
        if r.thread_id == "t1"
    )
    assert len(rows) == 4
    assert count == len(legacy.rows)
    assert "_messages_v0" not in names
    assert "schema_version" in names


def test_store_migrates_once_in_one_transaction(legacy: Legacy) -> None:
    store = SQLiteStore(legacy.path, owner=ALICE)
    try:
        records = {r.message.msg_id: r for r in store.find(MessageQuery())}
    finally:
        store.close()
    assert records["m2-out"].direction.value == "out" and records["m2-out"].peer == BOB
    assert records["m1-in"].direction.value == "in" and records["m1-in"].peer == BOB
    assert records["m9-out"].peer is None  # the original kept no recipient: kept, unlisted
    SQLiteStore(legacy.path, owner=ALICE).close()  # reopening changes nothing
    store = SQLiteStore(legacy.path, owner=ALICE)
    try:
        assert {r.message.msg_id: r for r in store.find(MessageQuery())}.keys() == records.keys()
    finally:
        store.close()


def test_send_and_receive_after_the_upgrade(legacy: Legacy, ws: Workspace) -> None:
    alice = ws.client(ALICE, db_path=legacy.path)
    bob = ws.client(BOB)
    sent = alice.send_message(BOB, "hello from the new library")
    got = wait_for(lambda: [m for m in bob.get_chat_history() if m.msg_id == sent.message_id])
    assert got[0].content == "hello from the new library"
    reply = bob.send_message(ALICE, "welcome back", reply_to=sent.message_id)
    wait_for(lambda: reply.message_id in _ids(alice.get_chat_history(with_user=BOB)))
    history = alice.get_chat_history(with_user=BOB, limit=100)
    assert _ids(history) == [*TO_BOB, sent.message_id, reply.message_id]
    assert alice.list_conversations()[0].peer == BOB
    assert not legacy.marker.exists()


def test_no_eval_in_the_library() -> None:
    import syft_chat as package

    root = Path(package.__file__).parent
    call = re.compile(r"\b(eval|exec)\s*\(")
    found = [
        f"{path.relative_to(root)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if call.search(line)
    ]
    assert found == []


# --------------------------------------------------------------------------- the CLI

_SCRIPT = shutil.which("syft-chat", path=str(Path(sys.executable).parent))
COMMAND = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "syft_chat"]


def test_cli_history_on_the_original_file(legacy: Legacy, tmp_path: Path) -> None:
    configs = syft_chat.testing.make_workspace(tmp_path / "cli-ws", [ALICE, BOB, CAROL])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYFT", "NO_COLOR"))}
    env.update(HOME=str(tmp_path / "home"), SYFT_CHAT_LOAD_PLUGINS="")
    base = [*COMMAND, "--config", str(configs[ALICE]), "--db", str(legacy.path)]
    result = subprocess.run(
        [*base, "history", "--json", "--with", BOB, "--limit", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert [m["msg_id"] for m in shown] == TO_BOB
    assert [m["content"] for m in shown][:3] == ["hi alice", "hi bob", "grüße 😀 ünïcode"]
    text = subprocess.run([*base, "history"], capture_output=True, text=True, timeout=60, env=env)
    assert text.returncode == 0, text.stderr
    assert "lost recipient" in text.stdout and "to carol" in text.stdout
    assert not legacy.marker.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("", {}),
        ("None", {}),
        ("{}", {}),
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        (
            "{'a': (1, 2), 'b': {3}, 'c': b'x', 1: 'one'}",
            {"a": [1, 2], "b": [3], "c": "x", "1": "one"},
        ),
        (b"{'recipient': 'bob'}", {"recipient": "bob"}),
        ("{'recipient': 'bob', **other}", {"recipient": "bob", LEGACY_META_KEY: None}),
        ("{(1, 2): 'tuple key', [1]: 'unhashable', 'ok': 1}", {"ok": 1, LEGACY_META_KEY: None}),
        ("{'inf': 1e999, 'z': 1j, 'ok': 'é'}", {"ok": "é", LEGACY_META_KEY: None}),
        ("{'f': (lambda: 1)()}", {LEGACY_META_KEY: None}),
        ("[1, 2]", {LEGACY_META_KEY: None}),
        ("not python at all", {LEGACY_META_KEY: None}),
        ("[" * 100_000, {LEGACY_META_KEY: None}),
        ("{'a': " * 5_000 + "1" + "}" * 5_000, {LEGACY_META_KEY: None}),
    ],
)
def test_legacy_metadata_reads_literals_only(text: Any, expected: dict[str, Any]) -> None:
    from syft_chat.plugins.sqlite.schema import LEGACY_META_KEY as KEY
    from syft_chat.plugins.sqlite.schema import legacy_metadata

    assert KEY == LEGACY_META_KEY
    if LEGACY_META_KEY in expected:  # the text itself, kept as it was stored
        expected = {**expected, LEGACY_META_KEY: text}
    assert legacy_metadata(text) == expected
