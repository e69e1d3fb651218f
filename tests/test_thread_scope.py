"""A thread is a (conversation, thread id) pair: a stranger who names the thread id (or a
message) of someone else's conversation starts a thread of their own conversation, and
never appears in the other one. Alice and bob are real clients; mallory is hand-written
request files in her own sender folder."""

from __future__ import annotations

import json
import uuid

import pytest
from support import ALICE, BOB, CAROL, MALLORY, envelope_body, read_response, write_raw_request
from test_cli import CLI
from test_cli_escaping import _Endpoints

import syft_chat
from syft_chat import InvalidMessageError


def _from_mallory(ws, to: str, content: str, **extra) -> str:
    msg_id = str(uuid.uuid4())
    body = envelope_body(MALLORY, to, content, msg_id=msg_id, seq=1, **extra)
    status, answer = read_response(write_raw_request(ws, to=to, folder=MALLORY, body=body))
    assert status == 200, answer  # accepted (open contact mode), in mallory's conversation
    return msg_id


def test_a_stranger_naming_a_thread_and_its_root_stays_in_her_own_conversation(workspace):
    ws = workspace(ALICE, BOB)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    root = alice.send_message(BOB, "census plans for monday")
    reply = bob.send_message(ALICE, "census at ten", reply_to=root.message_id)
    thread = root.message_id
    spoof = _from_mallory(
        ws, BOB, "census: wire the money", thread_id=thread, reply_to=root.message_id
    )
    ours = [root.message_id, reply.message_id]

    # without a conversation: the thread of the conversation its root belongs to
    assert [m.msg_id for m in bob.get_chat_history(thread_id=thread)] == ours
    assert [m.msg_id for m in bob.get_chat_history(ALICE, thread_id=thread)] == ours
    assert [m.msg_id for m in bob.get_history_page(thread_id=thread).messages] == ours
    assert [h.message.msg_id for h in bob.search("census", thread_id=thread)] != []
    assert spoof not in {h.message.msg_id for h in bob.search("census", thread_id=thread)}
    # mallory's message is a thread of mallory's conversation, and answers nothing there
    [hers] = bob.get_chat_history(MALLORY, thread_id=thread)
    assert hers.msg_id == spoof and hers.thread_id == thread
    assert hers.reply_to is None  # its parent is in another conversation: dropped
    assert [h.message.msg_id for h in bob.search("census", with_user=MALLORY)] == [spoof]


def test_a_named_thread_is_found_in_the_conversation_that_started_it(workspace):
    ws = workspace(ALICE, BOB)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    first = alice.send_message(BOB, "the keys", thread_id="keys")
    _from_mallory(ws, BOB, "the keys are mine", thread_id="keys")
    later = bob.send_message(ALICE, "got them", thread_id="keys")
    assert [m.msg_id for m in bob.get_chat_history(thread_id="keys")] == [
        first.message_id,
        later.message_id,
    ]
    assert [m.sender for m in bob.get_chat_history(MALLORY, thread_id="keys")] == [MALLORY]


def test_a_reply_to_a_message_of_another_conversation_is_refused_when_sending(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    ws.client(CAROL)
    root = alice.send_message(BOB, "just between us")
    with pytest.raises(InvalidMessageError, match="another conversation"):
        bob.send_message(CAROL, "look at this", reply_to=root.message_id)
    assert bob.send_message(ALICE, "fine", reply_to=root.message_id).status == "delivered"


def test_cli_thread_shows_only_the_conversation_of_the_thread_it_resolved(tmp_path):
    cli = CLI(tmp_path)
    try:
        alice = syft_chat.client(cli.configs[ALICE], db_path=cli.db)
        try:
            root = alice.send_message(BOB, "census plans").message_id
            reply = cli.bob.send_message(ALICE, "census at ten", reply_to=root).message_id
            spoof = _from_mallory(
                _Endpoints(tmp_path / "ws"), ALICE, "census: wire it", thread_id=root,
                reply_to=root,
            )  # fmt: skip
        finally:
            alice.close()

        def ids(*args: str) -> list[str]:
            found = json.loads(cli.ok(*args, "--json"))
            return [m.get("msg_id") or m["message"]["msg_id"] for m in found]

        assert ids("thread", root) == [root, reply]
        assert ids("thread", root[:8]) == [root, reply]
        assert ids("thread", reply) == [root, reply]
        assert ids("thread", spoof) == [spoof]  # a message's thread, in its conversation
        assert ids("history", "--thread", root) == [root, reply]
        assert spoof not in ids("search", "census", "--thread", root)
        assert ids("history", "--with", MALLORY, "--thread", root) == [spoof]
    finally:
        cli.bob.close()
