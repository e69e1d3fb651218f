"""Threads and discovery do not grow with the number of peers (real clients on one workspace)."""

from __future__ import annotations

import shutil
import threading
import time

from support import ALICE, BOB, CAROL, wait_for

from syft_chat import MessageStatus

DAVE = "dave@openmined.org"
FAR = {"retry_initial": 3600.0, "retry_max": 7200.0}  # a retry never collects an answer here


def _folder_peer(ws, email: str) -> None:
    """A datasite that serves chat as far as the folder shows (nobody answers)."""
    ws.endpoint(email).mkdir(parents=True, exist_ok=True)


def test_threads_stay_bounded_however_many_peers_are_written_to(workspace):
    ws = workspace(ALICE)
    alice = ws.client(ALICE, settings={**FAR, "reply_watches": 4})
    for i in range(8):
        _folder_peer(ws, f"peer{i}@example.org")
        alice.send_message(f"peer{i}@example.org", "hi", timeout=0)
    after_few = threading.active_count()
    for i in range(8, 60):
        _folder_peer(ws, f"peer{i}@example.org")
        alice.send_message(f"peer{i}@example.org", "hi", timeout=0)
    # 4 watches at most, and one sweeper for the rest; before, one thread per peer
    assert threading.active_count() <= after_few + 1
    assert len(alice.pending_messages()) == 60


def test_an_answer_from_a_peer_without_a_watch_is_still_noticed_at_once(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    alice = ws.client(ALICE, settings={**FAR, "reply_watches": 1})
    carol = ws.client(CAROL)
    assert alice.send_message(CAROL, "hi carol").status == "delivered"  # the one watch
    _folder_peer(ws, BOB)  # bob is offline: his request waits in his folder, unwatched
    queued = alice.send_message(BOB, "while you were away", timeout=0)
    time.sleep(2)  # the sweeper has backed off to its slowest pace
    started = time.monotonic()
    bob = ws.client(BOB)  # answers the request that waited; only the sweeper sees it
    wait_for(lambda: alice.get_message(queued.message_id).status == MessageStatus.DELIVERED)
    assert time.monotonic() - started < 3  # not the hour-long retry
    assert [m.content for m in bob.get_chat_history()] == ["while you were away"]
    assert carol.get_chat_history()[0].content == "hi carol"


def test_a_group_fan_out_does_not_move_watches_around(workspace):
    members = [f"member{i}@example.org" for i in range(6)]
    ws = workspace(ALICE, *members)
    alice = ws.client(ALICE, settings={**FAR, "reply_watches": 2})
    clients = [ws.client(m) for m in members]
    group = alice.create_group("six", members)
    wait_for(lambda: all(c.list_groups() for c in clients))
    threads = threading.active_count()
    for i in range(3):
        sent = alice.send_to_group(group.group_id, f"round {i}")
        wait_for(
            lambda sent=sent: (
                set(alice.group_delivery(sent.message_id).values())
                <= {MessageStatus.DELIVERED, MessageStatus.READ}
            )
        )
    assert threading.active_count() <= threads + 1


def test_discovery_keeps_current_without_walking_each_call(workspace):
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE, settings={"discovery_refresh_seconds": 0.2})
    assert alice.list_available_users() == []
    ws.client(BOB)
    wait_for(lambda: alice.list_available_users() == [BOB], timeout=3)
    _folder_peer(ws, CAROL)  # a new datasite folder: seen at the next call
    assert alice.list_available_users() == [BOB, CAROL]
    shutil.rmtree(ws.root / "datasites" / CAROL)
    assert alice.list_available_users() == [BOB]
    (ws.root / "datasites" / "not-an-email").mkdir()
    assert alice.list_available_users() == [BOB]
