"""Edits, deletions and reactions (issue 8), delivered like messages, authorized by folder."""

from __future__ import annotations

import sqlite3

import pytest
from support import ALICE, BOB, MALLORY, envelope_body, read_response, wait_for, write_raw_request

import syft_chat


def _fts(db, word: str) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [
            r[0]
            for r in conn.execute(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (word,)
            )
        ]
    finally:
        conn.close()


def test_edit_by_the_sender_is_applied_on_both_sides(pair):
    ws, alice, bob = pair
    seen: list[str] = []
    changes: list[tuple[str, str, str]] = []
    bob.add_message_listener(lambda m: seen.append(m.content))
    bob.add_change_listener(lambda change, m, actor: changes.append((change, m.content, actor)))
    sent = alice.send_message(BOB, "meet at nine")
    assert alice.edit_message(sent.message_id, "meet at ten").status == "delivered"
    for client in (alice, bob):
        [message] = client.get_chat_history()
        assert message.content == "meet at ten" and message.edited_at is not None
        assert [e["content"] for e in client.get_edits(sent.message_id)] == ["meet at nine"]
    wait_for(lambda: changes == [("edited", "meet at ten", ALICE)])
    assert seen == ["meet at nine"]  # a seed-style listener hears only new messages
    # the search index follows the edit on both sides
    assert _fts(ws.db(BOB), "ten") and not _fts(ws.db(BOB), "nine")


def test_delete_leaves_a_tombstone_and_erases_the_text_everywhere(pair):
    ws, alice, bob = pair
    sent = alice.send_message(BOB, "secret plans")
    alice.edit_message(sent.message_id, "secret plans v2")
    alice.delete_message(sent.message_id)
    for client, db in ((alice, ws.db(ALICE)), (bob, ws.db(BOB))):
        [message] = client.get_chat_history()
        assert message.deleted and message.content == ""
        conn = sqlite3.connect(db)
        rows = conn.execute("SELECT content FROM messages WHERE msg_id = ?", (sent.message_id,))
        assert rows.fetchall() == [("",)]
        edits = conn.execute("SELECT content FROM message_edits").fetchall()
        conn.close()
        assert all(content == "" for (content,) in edits)
        assert _fts(db, "secret") == [] and _fts(db, "plans") == []
    with pytest.raises(syft_chat.InvalidMessageError, match="deleted"):
        alice.edit_message(sent.message_id, "back from the dead")


def test_only_the_sender_may_edit_or_delete(pair):
    ws, alice, bob = pair
    sent = alice.send_message(BOB, "mine")
    with pytest.raises(syft_chat.InvalidMessageError, match="only its sender"):
        bob.edit_message(sent.message_id, "yours now")
    with pytest.raises(syft_chat.InvalidMessageError, match="only its sender"):
        bob.delete_message(sent.message_id)
    # bob forges an edit request by hand: alice refuses it, from his authenticated folder
    forged = envelope_body(BOB, ALICE, "hacked", kind="edit", target=sent.message_id)
    status, answer = read_response(write_raw_request(ws, to=ALICE, folder=BOB, body=forged))
    assert status == 403 and "only the sender" in answer["error"]
    assert alice.get_message(sent.message_id).content == "mine"
    assert any("only the sender" in f["reason"] for f in alice.failed_messages())


def test_an_edit_that_arrives_before_its_message_is_applied_when_it_arrives(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    changes: list[str] = []
    bob.add_change_listener(lambda change, m, actor: changes.append(change))
    original = envelope_body(ALICE, BOB, "first draft", seq=1, floor=1)
    import json

    msg_id = json.loads(original)["msg_id"]
    edit = envelope_body(ALICE, BOB, "final text", kind="edit", target=msg_id, seq=2, floor=1)
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=edit))[0] == 200
    assert bob.get_chat_history() == []
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=original))[0] == 200
    [message] = bob.get_chat_history()
    assert message.content == "final text"
    wait_for(lambda: changes == ["edited"])
    # a forged early delete from someone else is refused when its target arrives
    later = envelope_body(ALICE, BOB, "keep me", seq=3, floor=3)
    later_id = json.loads(later)["msg_id"]
    forged = envelope_body(MALLORY, BOB, "", kind="delete", target=later_id)
    assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=forged))[0] == 200
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=later))[0] == 200
    assert bob.get_message(later_id).content == "keep me"
    assert any("only the sender" in f["reason"] for f in bob.failed_messages())


def test_redelivered_edit_is_applied_once(workspace):
    import json

    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)  # alice's side is played by hand-written requests
    original = envelope_body(ALICE, BOB, "v1")
    msg_id = json.loads(original)["msg_id"]
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=original))[0] == 200
    edit = envelope_body(ALICE, BOB, "v2", kind="edit", target=msg_id)
    for _ in range(3):
        assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=edit))[0] == 200
    assert [e["content"] for e in bob.get_edits(msg_id)] == ["v1"]
    assert bob.get_message(msg_id).content == "v2"


def test_reactions_one_per_user_emoji_and_message(pair):
    _, alice, bob = pair
    changes: list[tuple[str, str]] = []
    alice.add_change_listener(lambda change, m, actor: changes.append((change, actor)))
    sent = alice.send_message(BOB, "lunch?")
    bob.react(sent.message_id, "👍")
    bob.react(sent.message_id, "👍")  # twice: still one
    bob.react(sent.message_id, "🍕")
    alice.react(sent.message_id, "👍")
    for client in (alice, bob):
        [message] = client.get_chat_history()
        assert sorted(message.reactions["👍"]) == [ALICE, BOB]
        assert message.reactions["🍕"] == [BOB]
    bob.react(sent.message_id, "🍕", remove=True)
    [message] = alice.get_chat_history()
    assert "🍕" not in message.reactions and sorted(message.reactions["👍"]) == [ALICE, BOB]
    wait_for(lambda: ("reaction_removed", BOB) in changes)
    assert changes.count(("reaction_added", BOB)) == 2  # the repeated 👍 changed nothing
    with pytest.raises(syft_chat.InvalidMessageError):
        bob.react(sent.message_id, "")


def test_a_stranger_cannot_react(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    sent = alice.send_message(BOB, "between us")
    forged = envelope_body(MALLORY, BOB, "👎", kind="reaction", target=sent.message_id)
    status, answer = read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=forged))
    assert status == 403 and "not part of that message's conversation" in answer["error"]
    assert bob.get_chat_history()[0].reactions == {}


def test_change_hook_for_plugins_and_a_raising_one_is_isolated(pair):
    _, alice, bob = pair
    got: list[str] = []

    class Audit:
        @syft_chat.hookimpl
        def chat_message_changed(self, message, change, actor):
            got.append(f"{actor} {change} {message.content}")

    class Broken:
        @syft_chat.hookimpl
        def chat_message_changed(self):
            raise RuntimeError("audit log full")

    bob.register_plugin(Audit())
    bob.register_plugin(Broken())
    sent = alice.send_message(BOB, "draft")
    alice.edit_message(sent.message_id, "final")
    wait_for(lambda: got == [f"{ALICE} edited final"])
    assert any(f.stage == "chat_message_changed" for f in bob.plugin_failures)


def test_edits_and_reactions_converge_whatever_the_arrival_order(workspace):
    """Actions applied by the sender's sequence, not by arrival (found by a review)."""
    import json

    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    original = envelope_body(ALICE, BOB, "v0", seq=1, floor=1)
    msg_id = json.loads(original)["msg_id"]
    bodies = [original]
    for i in range(1, 6):
        bodies.append(
            envelope_body(ALICE, BOB, f"v{i}", kind="edit", target=msg_id, seq=1 + i, floor=1)
        )
    react = {"kind": "reaction", "target": msg_id}
    bodies.append(envelope_body(ALICE, BOB, "👍", seq=7, floor=1, metadata={"op": "add"}, **react))
    bodies.append(
        envelope_body(ALICE, BOB, "👍", seq=8, floor=1, metadata={"op": "remove"}, **react)
    )
    for body in [bodies[0], *reversed(bodies[1:])]:  # newest changes arrive first
        assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=body))[0] == 200
    message = bob.get_message(msg_id)
    assert message.content == "v5"  # the sender's last edit, not the last to arrive
    assert bob.get_chat_history()[0].reactions == {}  # removed after it was added
    assert [e["content"] for e in bob.get_edits(msg_id)] == ["v0", "v1", "v2", "v3", "v4"]


def test_a_delete_erases_the_text_of_the_edits_too(pair):
    ws, alice, bob = pair
    sent = alice.send_message(BOB, "hello narwhal")
    alice.edit_message(sent.message_id, "hello narwhal edited")
    alice.delete_message(sent.message_id)
    for db in (ws.db(ALICE), ws.db(BOB)):
        conn = sqlite3.connect(db)
        texts = [r[0] for r in conn.execute("SELECT content FROM messages")]
        conn.close()
        assert not any("narwhal" in t for t in texts), texts
    late = envelope_body(ALICE, BOB, "late okapi", kind="edit", target=sent.message_id)
    late_id = __import__("json").loads(late)["msg_id"]
    write_raw_request(ws, to=BOB, folder=ALICE, body=late)  # alice's client takes the answer
    wait_for(lambda: bob.get_message(late_id) is not None)
    conn = sqlite3.connect(ws.db(BOB))
    assert not any("okapi" in r[0] for r in conn.execute("SELECT content FROM messages"))
    conn.close()


def test_a_waiting_action_from_a_since_blocked_sender_is_refused(workspace):
    import json

    ws = workspace(ALICE, BOB, MALLORY)
    bob = ws.client(BOB)
    original = envelope_body(ALICE, BOB, "hi", seq=1, floor=1)
    msg_id = json.loads(original)["msg_id"]
    react = envelope_body(
        MALLORY, BOB, "💩", kind="reaction", target=msg_id, metadata={"op": "add"}
    )
    assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=react))[0] == 200
    bob.block(MALLORY)
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=original))[0] == 200
    assert bob.get_chat_history()[0].reactions == {}


def test_reactions_are_normalised_at_the_receiver(workspace):
    import json

    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    original = envelope_body(ALICE, BOB, "x")
    msg_id = json.loads(original)["msg_id"]
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=original))[0] == 200
    for emoji, code in (("  👍  ", 200), ("👍" + " " * 2000, 200), ("\x00", 400), ("\u202e", 400)):
        body = envelope_body(
            ALICE, BOB, emoji, kind="reaction", target=msg_id, metadata={"op": "add"}
        )
        status, _ = read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=body))
        assert status == code, repr(emoji)
    assert bob.get_chat_history()[0].reactions == {"👍": [ALICE]}
