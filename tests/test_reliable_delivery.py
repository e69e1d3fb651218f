"""Reliable delivery (issue 3) on an on-disk workspace: outbox, receipts, order, failures."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

from support import ALICE, BOB, CAROL, envelope_body, read_response, wait_for, write_raw_request

from syft_chat import ChatMessage, MessageStatus, hookimpl

FAST = {"retry_initial": 0.3, "retry_max": 1.0, "send_timeout": 2.0}


def test_status_lifecycle_is_stored_and_observable(pair):
    ws, alice, bob = pair
    seen: list[tuple[str, MessageStatus]] = []
    alice.add_status_listener(lambda msg_id, status, error: seen.append((msg_id, status)))
    sent = alice.send_message(BOB, "tick")
    wait_for(lambda: (sent.message_id, MessageStatus.DELIVERED) in seen)
    assert [s for m, s in seen if m == sent.message_id] == [
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
    ]
    rows = sqlite3.connect(ws.db(ALICE)).execute("SELECT status, seq FROM messages").fetchall()
    assert rows == [("delivered", 1)]


def test_offline_recipient_gets_it_later_with_the_same_id(workspace):
    ws = workspace(ALICE, BOB)
    ws.client(BOB).close()
    alice = ws.client(ALICE, settings=FAST)
    response = alice.send_message(BOB, "see you when you're back", timeout=0.2)
    assert response.status == "sent"
    time.sleep(1.0)  # several re-sends while bob is away
    got: list[ChatMessage] = []
    bob = ws.client(BOB)
    bob.add_message_listener(got.append)
    assert alice.wait_for_delivery(response.message_id, timeout=10).status == "delivered"
    wait_for(lambda: len(got) == 1)
    assert got[0].msg_id == response.message_id
    assert len(bob.get_chat_history()) == 1
    time.sleep(0.5)  # any late duplicate request would be handled by now
    assert len(got) == 1 and len(bob.get_chat_history()) == 1


def test_sender_restart_resumes_the_outbox(workspace):
    ws = workspace(ALICE, BOB)
    ws.client(BOB).close()
    alice = ws.client(ALICE, settings=FAST)
    ids = [alice.send_message(BOB, f"queued {i}", timeout=0).message_id for i in range(3)]
    alice.close()  # alice goes away before anything is confirmed
    bob = ws.client(BOB)
    alice = ws.client(ALICE, settings=FAST)  # resumes: collects answers, re-sends the rest
    for msg_id in ids:
        assert alice.wait_for_delivery(msg_id, timeout=10).status == "delivered"
    assert [m.msg_id for m in bob.get_chat_history()] == ids
    assert alice.pending_messages() == []


def test_expired_request_is_renewed_by_resending(workspace):
    ws = workspace(ALICE, BOB)
    ws.client(BOB).close()
    alice = ws.client(ALICE, settings={**FAST, "request_expiry": 1})
    response = alice.send_message(BOB, "outlives its request", timeout=0)
    time.sleep(2.5)  # bob is away longer than a request lives
    bob = ws.client(BOB)
    assert alice.wait_for_delivery(response.message_id, timeout=10).status == "delivered"
    assert [m.content for m in bob.get_chat_history()] == ["outlives its request"]


def test_refusal_is_final_and_recorded_on_both_sides(pair):
    ws, alice, bob = pair

    class NoThanks:
        @hookimpl
        def chat_accept_message(self, message):
            return "not today"

    bob.register_plugin(NoThanks())
    import pytest

    import syft_chat

    with pytest.raises(syft_chat.MessageRejectedError) as info:
        alice.send_message(BOB, "hello?")
    stored = alice.get_message(info.value.msg_id)
    assert stored.status == MessageStatus.FAILED and "not today" in stored.error
    assert alice.pending_messages() == []
    [failure] = bob.failed_messages()
    assert failure["sender"] == ALICE and "not today" in failure["reason"]
    assert json.loads(failure["raw"])["content"] == "hello?"


def test_rejected_requests_land_in_failed_messages(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    bob = ws.client(BOB)
    spoof = write_raw_request(ws, to=BOB, folder=CAROL, body=envelope_body(ALICE, BOB, "fake"))
    garbage = write_raw_request(ws, to=BOB, folder=ALICE, raw=b"{half a fi")
    assert read_response(spoof)[0] == 403
    assert read_response(garbage)[0] == 400
    reasons = {f["sender"]: f["reason"] for f in bob.failed_messages()}
    assert "sender mismatch" in reasons[CAROL]
    assert "malformed request file" in reasons[ALICE]
    conn = sqlite3.connect(ws.db(BOB))
    raw = dict(conn.execute("SELECT sender, raw FROM failed_messages").fetchall())
    assert raw[ALICE] == b"{half a fi"
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_a_garbled_request_is_answered_with_a_resend_and_delivered_once(pair):
    """A request read half-synced gets 'send again'; the sender's retry delivers it once."""
    ws, alice, bob = pair
    body = envelope_body(ALICE, BOB, "half then whole")
    path = write_raw_request(ws, to=BOB, folder=ALICE, raw=b'{"id": "')  # partial file
    status, answer = read_response(path)
    assert status == 400 and answer["retry"] is True
    for _ in range(2):  # the sender sends again (twice, even): stored once
        assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=body))[0] == 200
    assert len(bob.get_chat_history()) == 1


def _request_with_seq(ws, seq: int, floor: int | None, content: str):
    extra = {"seq": seq}
    if floor is not None:
        extra["floor"] = floor
    return write_raw_request(
        ws, to=BOB, folder=ALICE, body=envelope_body(ALICE, BOB, content, **extra)
    )


def test_per_conversation_order_holds_when_requests_overtake(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    got: list[str] = []
    bob.add_message_listener(lambda m: got.append(m.content))
    # seq 1 and 2 are on their way; 3 and 2 arrive first; floor says 1 is still pending
    read_response(_request_with_seq(ws, 3, 1, "third"))
    read_response(_request_with_seq(ws, 2, 1, "second"))
    time.sleep(0.3)
    assert got == []  # stored (and confirmed) but held back until 1 arrives
    assert len(bob.get_chat_history()) == 2
    read_response(_request_with_seq(ws, 1, 1, "first"))
    wait_for(lambda: got == ["first", "second", "third"])


def test_floor_releases_messages_whose_predecessor_failed_for_good(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    got: list[str] = []
    bob.add_message_listener(lambda m: got.append(m.content))
    read_response(_request_with_seq(ws, 1, 1, "one"))
    read_response(_request_with_seq(ws, 3, 2, "three"))  # 2 still pending at the sender
    time.sleep(0.2)
    assert got == ["one"]
    read_response(_request_with_seq(ws, 4, 3, "four"))  # now the sender says 2 is settled
    wait_for(lambda: got == ["one", "three", "four"])


def test_gap_timeout_is_the_last_resort(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB, settings={"order_gap_timeout": 0.3})
    got: list[str] = []
    bob.add_message_listener(lambda m: got.append(m.content))
    read_response(_request_with_seq(ws, 5, 5, "five"))  # first contact: starts at its floor
    read_response(_request_with_seq(ws, 7, 6, "seven"))  # 6 never comes
    wait_for(lambda: got == ["five", "seven"], timeout=5)


def test_a_slow_listener_does_not_block_other_conversations(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    bob = ws.client(BOB)
    alice, carol = ws.client(ALICE), ws.client(CAROL)
    release = threading.Event()
    got: list[str] = []

    def listener(message: ChatMessage) -> None:
        if message.sender == ALICE:
            release.wait(10)  # a slow bot busy with alice
        got.append(message.content)

    bob.add_message_listener(listener)
    alice.send_message(BOB, "from alice")
    carol.send_message(BOB, "from carol")
    wait_for(lambda: got == ["from carol"])  # carol is not stuck behind alice
    release.set()
    wait_for(lambda: sorted(got) == ["from alice", "from carol"])


def test_messages_stored_but_not_announced_before_a_crash_are_announced_on_restart(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    alice = ws.client(ALICE)
    alice.send_message(BOB, "stored, then crash")
    bob.close()
    # simulate a crash between storing and announcing (fault injected in the file)
    conn = sqlite3.connect(ws.db(BOB))
    conn.execute("UPDATE messages SET notified = 0")
    conn.commit()
    conn.close()
    got: list[str] = []

    class Late:
        @hookimpl
        def chat_message_received(self, message):
            got.append(message.content)

    ws.client(BOB, plugins=[Late()])
    wait_for(lambda: got == ["stored, then crash"])


def test_read_receipts_through_the_hook(pair):
    _, alice, bob = pair
    receipts: list[str] = []

    class ReadReceipts:
        @hookimpl
        def chat_message_read(self, message, client):
            receipts.append(message.msg_id)
            alice.record_read(message.msg_id)  # stands in for a receipt message

    bob.register_plugin(ReadReceipts())
    sent = alice.send_message(BOB, "read me")
    assert bob.mark_read(sent.message_id) is True
    assert bob.mark_read(sent.message_id) is False  # once
    wait_for(lambda: alice.get_message(sent.message_id).status == MessageStatus.READ)
    assert receipts == [sent.message_id]
