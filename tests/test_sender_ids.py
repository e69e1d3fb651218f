"""Message ids are per sender (security issue 3, "message-id squatting"): a message is
identified by (sender, msg_id), so nobody can make a message of someone else's fail or be
replaced by reusing its id. Real clients; the hostile side writes request files by hand."""

from __future__ import annotations

import json
import shutil
import sqlite3
from typing import Any

from support import (
    ALICE,
    BOB,
    MALLORY,
    envelope_body,
    read_response,
    wait_for,
    write_raw_request,
)
from support import (
    group_members as _members,
)

from syft_chat.interfaces import MessageQuery, StoredMessage
from syft_chat.models import ChatMessage, Direction, MessageKind, MessageStatus
from syft_chat.plugins.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from syft_chat.plugins.sqlite.store import SQLiteStore

ANN, BEN = "ann@openmined.org", "ben@openmined.org"
FAST = {"retry_initial": 0.3, "retry_max": 1.0}


def test_a_copied_group_message_id_does_not_block_the_real_message(workspace, tmp_path):
    """The finding: mallory copies ann's group message id into a one-to-one message to ben
    before ben has ann's copy; ann's message still reaches ben, and both are shown."""
    ws = workspace(ANN, BEN, MALLORY)
    ann, mallory = ws.client(ANN, settings=FAST), ws.client(MALLORY, settings=FAST)
    ben = ws.client(BEN, settings=FAST)
    gid = ann.create_group("team", [BEN, MALLORY]).group_id
    for client in (ann, ben, mallory):
        wait_for(lambda c=client: _members(c, gid) is not None, timeout=10)
    ben.close()
    sent = ann.send_to_group(gid, "the real plan")
    wait_for(lambda: mallory.get_message(sent.message_id) is not None, timeout=10)
    # ann's copy for ben is still on its way (a slow sync): keep it aside for now
    inbox = ws.endpoint(BEN) / ANN
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in inbox.glob("*.request"):
        shutil.move(str(path), aside / path.name)
    # mallory reuses the id in a one-to-one message to ben
    squat = envelope_body(MALLORY, BEN, "a decoy", msg_id=sent.message_id)
    request = write_raw_request(ws, to=BEN, folder=MALLORY, body=squat)
    ben = ws.client(BEN, settings=FAST)
    assert read_response(request, timeout=10)[0] == 200
    for path in aside.iterdir():  # ann's copy arrives now (or ann's retry brings it)
        shutil.move(str(path), inbox / path.name)
    wait_for(lambda: ann.group_delivery(sent.message_id).get(BEN) == "delivered", timeout=15)
    [real] = ben.get_chat_history(group_id=gid)
    assert (real.msg_id, real.sender, real.content) == (sent.message_id, ANN, "the real plan")
    [decoy] = ben.get_chat_history(with_user=MALLORY)
    assert (decoy.msg_id, decoy.sender, decoy.content) == (sent.message_id, MALLORY, "a decoy")
    assert ben.get_message(sent.message_id, sender=ANN).content == "the real plan"
    assert ben.get_message(sent.message_id, sender=MALLORY).content == "a decoy"
    assert not any("already used" in f["reason"] for f in ben.failed_messages())


def test_reusing_a_one_to_one_message_id_changes_nothing_of_the_original(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    sent = alice.send_message(BOB, "from alice")
    assert sent.status == "delivered"
    squat = envelope_body(MALLORY, BOB, "from mallory", msg_id=sent.message_id, thread_id="m-t")
    status, _ = read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=squat))
    assert status == 200  # another sender's message: stored, not a 409 and not a duplicate
    again = read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=squat))
    assert again[0] == 200  # a resend from the same sender is a duplicate
    assert bob.get_message(sent.message_id, sender=ALICE).content == "from alice"
    assert [m.content for m in bob.get_chat_history(with_user=MALLORY)] == ["from mallory"]
    assert [m.content for m in bob.get_chat_history(with_user=ALICE)] == ["from alice"]
    # alice's own id is hers: her edit reaches her message at bob, not mallory's
    alice.edit_message(sent.message_id, "from alice, edited")
    wait_for(lambda: bob.get_message(sent.message_id, sender=ALICE).content.endswith("edited"))
    assert bob.get_message(sent.message_id, sender=MALLORY).content == "from mallory"
    # mallory's copy at alice's side (same id as alice's own message) is another message
    mine = envelope_body(MALLORY, ALICE, "to alice", msg_id=sent.message_id)
    assert read_response(write_raw_request(ws, to=ALICE, folder=MALLORY, body=mine))[0] == 200
    assert alice.get_message(sent.message_id).sender == ALICE  # one's own first
    assert alice.get_message(sent.message_id, sender=MALLORY).content == "to alice"
    own = alice.get_chat_history(with_user=BOB)
    assert [(m.content, m.status) for m in own] == [("from alice, edited", "delivered")]
    # a reply names the message of that id in its own conversation
    ws.client(MALLORY)
    to_alice = bob.send_message(ALICE, "re", reply_to=sent.message_id, timeout=0)
    to_mallory = bob.send_message(MALLORY, "re", reply_to=sent.message_id, timeout=0)
    assert bob.get_message(to_alice.message_id).thread_id == sent.message_id
    assert bob.get_message(to_mallory.message_id).thread_id == "m-t"


def test_an_edit_naming_someone_elses_message_changes_nothing(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    sent = alice.send_message(BOB, "original")
    # mallory stores her own message under alice's id, then edits and deletes "it"
    squat = envelope_body(MALLORY, BOB, "decoy", msg_id=sent.message_id)
    assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=squat))[0] == 200
    for kind, content in (("edit", "hacked"), ("delete", "")):
        forged = envelope_body(MALLORY, BOB, content, kind=kind, target=sent.message_id)
        assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=forged))[0] == 200
        forged = envelope_body(
            MALLORY, BOB, content, kind=kind, target=sent.message_id, target_sender=ALICE
        )
        status, answer = read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=forged))
        assert status == 403 and "only the sender" in answer["error"]
    real = bob.get_message(sent.message_id, sender=ALICE)
    assert (real.content, real.deleted, real.edited_at) == ("original", False, None)
    assert bob.get_message(sent.message_id).content == "original"  # the API: the earliest
    decoy = bob.get_message(sent.message_id, sender=MALLORY)
    assert decoy.deleted  # mallory could only delete her own message
    conn = sqlite3.connect(ws.db(BOB))
    try:
        rows = conn.execute(
            "SELECT sender, content, deleted FROM messages WHERE msg_id = ? AND kind = 'message'"
            " ORDER BY id",
            (sent.message_id,),
        ).fetchall()
    finally:
        conn.close()
    assert rows == [(ALICE, "original", 0), (MALLORY, "", 1)]
    assert [e["content"] for e in bob.get_edits(sent.message_id)] == []


def test_a_reaction_is_resolved_within_its_conversation(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    sent = alice.send_message(BOB, "react to me")
    alice.close()  # her side is played by hand from here (her client would take the answer)
    squat = envelope_body(MALLORY, BOB, "decoy", msg_id=sent.message_id)
    assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=squat))[0] == 200
    # an old client's reaction (no target_sender) lands on the message of its conversation
    like = envelope_body(ALICE, BOB, "👍", kind="reaction", target=sent.message_id)
    like = json.dumps({**json.loads(like), "metadata": {"op": "add"}}).encode()
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=like))[0] == 200

    def reactions(peer: str) -> dict[str, list[str]]:
        [message] = bob.get_chat_history(with_user=peer)
        return message.reactions

    assert (reactions(ALICE), reactions(MALLORY)) == ({"👍": [ALICE]}, {})
    # bob reacts to mallory's message: alice's is untouched
    bob.react(sent.message_id, "🙃", sender=MALLORY, timeout=0)
    assert (reactions(ALICE), reactions(MALLORY)) == ({"👍": [ALICE]}, {"🙃": [BOB]})


def test_the_seed_step_4_sql_still_works(pair):
    ws, alice, bob = pair
    first = alice.send_message(BOB, "question", thread_id="t-1")
    bob.send_message(ALICE, "answer", thread_id="t-1", reply_to=first.message_id)
    conn = sqlite3.connect(ws.db(BOB))
    try:
        rows = conn.execute(
            "SELECT msg_id, sender, content, thread_id, reply_to FROM messages WHERE thread_id = ?",
            ("t-1",),
        ).fetchall()
        [(sql,)] = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'"
        ).fetchall()
    finally:
        conn.close()
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        (ALICE, "question", "t-1", None),
        (BOB, "answer", "t-1", first.message_id),
    ]
    assert "UNIQUE (msg_id, sender)" in sql


def _schema_4_file(path: Any, owner: str) -> None:
    """A file exactly as schema 4 wrote it: messages, edits, reactions, FTS."""
    import peewee as pw

    db = pw.SqliteDatabase(str(path))
    db.connect()
    with db.atomic():
        for migration in MIGRATIONS[:4]:
            migration(db, owner)
        db.execute_sql("INSERT INTO schema_version (id, version) VALUES (1, 4)")
    cols = (
        "msg_id, sender, recipient, peer, content, timestamp, thread_id, reply_to, metadata,"
        " direction, status, updated_at, seq, kind, target, conversation, notified"
    )
    now = "2024-05-01 12:00:00.000000+00:00"
    rows = [
        ("m1", BOB, owner, BOB, "hello narwhal", now, "t1", None, "{}", "in", "received", now,
         1, "message", None, BOB, 1),
        ("m2", owner, BOB, BOB, "walrus reply", now, "t1", "m1", "{}", "out", "delivered", now,
         1, "message", None, BOB, 1),
        ("e1", BOB, owner, BOB, "hello octopus", now, None, None, "{}", "in", "received", now,
         2, "edit", "m1", BOB, 1),
    ]  # fmt: skip
    for row in rows:
        db.execute_sql(f"INSERT INTO messages ({cols}) VALUES ({', '.join('?' * 17)})", row)
    db.execute_sql("UPDATE messages SET content = 'hello octopus', edit_seq = 2 WHERE id = 1")
    db.execute_sql(
        "INSERT INTO message_edits (msg_id, content, replaced_at, edit_id, seq)"
        " VALUES ('m1', 'hello narwhal', ?, 'e1', 1)",
        (now,),
    )
    db.execute_sql(
        "INSERT INTO reactions (msg_id, user, emoji, created_at, present, op_seq)"
        " VALUES ('m2', ?, '👍', ?, 1, 3)",
        (BOB, now),
    )
    db.close()


def test_migration_from_schema_4_keeps_every_row_search_and_edits(tmp_path):
    path = tmp_path / "chat.db"
    _schema_4_file(path, ALICE)
    conn = sqlite3.connect(path)
    before = conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
    conn.close()
    assert SCHEMA_VERSION >= 5
    store = SQLiteStore(path, owner=ALICE)
    try:
        conn = sqlite3.connect(path)
        after = conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
        names = [d[0] for d in conn.execute("SELECT * FROM messages").description]
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        triggers = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        }
        conn.close()
        assert version == SCHEMA_VERSION
        assert [r[: len(before[0])] for r in after] == before  # every row, its id and columns
        assert "target_sender" in names
        assert {"ix_messages_unread", "ix_messages_target", "ix_messages_conversation"} <= indexes
        assert {"messages_fts_insert", "messages_fts_delete", "messages_fts_update"} <= triggers
        [hit] = store.search("octopus")
        assert hit.message.msg_id == "m1" and store.search("narwhal") == []
        assert [v.content for v in store.versions("m1")] == ["hello narwhal"]
        assert [r.emoji for r in store.reactions(["m2"])] == ["👍"]
        with store.transaction():  # the index agrees with the rebuilt table
            store._sql("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
        # the FTS triggers still follow edits after the rebuild
        store.update("m1", {"content": "hello squid"}, sender=BOB)
        assert [h.message.msg_id for h in store.search("squid")] == ["m1"]
        assert store.search("octopus") == []
        # and the new key: another sender's m1 is another message
        other = ChatMessage(msg_id="m1", sender=MALLORY, recipient=ALICE, content="squat")
        assert store.insert(StoredMessage(other, Direction.INCOMING, MALLORY))
        assert not store.insert(StoredMessage(other, Direction.INCOMING, MALLORY))
        assert len(store.find(MessageQuery(msg_ids=("m1",)))) == 2
        got = store.get("m1", sender=BOB)
        assert got is not None and got.message.content == "hello squid"
        assert got.message.kind is MessageKind.MESSAGE
        assert got.message.status is MessageStatus.RECEIVED
    finally:
        store.close()
    # and it opens again (migrated once)
    SQLiteStore(path, owner=ALICE).close()
