"""Review 13: findings of an adversarial review, each a failing test first."""

from __future__ import annotations

import threading

from support import ALICE, BOB, MALLORY, envelope_body, read_response, wait_for, write_raw_request

SAME_ID = "11111111-2222-3333-4444-555555555555"


def test_two_senders_with_one_msg_id_are_both_heard_by_server_and_follower(workspace):
    """Message ids are per sender (schema 5): a message of mallory's reusing the id of
    alice's must not keep alice's from the listeners, in the serving process or in a
    follower (whose journal entry must load alice's, not mallory's)."""
    ws = workspace(ALICE, BOB, MALLORY)
    bob = ws.client(BOB)
    follower = ws.client(BOB)  # same datasite and database: follows the first
    assert getattr(follower, "role", None) == "following"
    heard: dict[str, list[tuple[str, str]]] = {"serving": [], "following": []}
    lock = threading.Lock()

    def listener(name):
        def on(m):
            with lock:
                heard[name].append((m.sender, m.content))

        return on

    bob.add_message_listener(listener("serving"))
    follower.add_message_listener(listener("following"))
    decoy = envelope_body(MALLORY, BOB, "a decoy", msg_id=SAME_ID)
    assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=decoy))[0] == 200
    real = envelope_body(ALICE, BOB, "the real one", msg_id=SAME_ID)
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=real))[0] == 200
    want = sorted([(MALLORY, "a decoy"), (ALICE, "the real one")])
    wait_for(lambda: sorted(heard["serving"]) == want, timeout=10)
    wait_for(lambda: sorted(heard["following"]) == want, timeout=10)
