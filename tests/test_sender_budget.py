"""A per-sender budget keeps a flood from one sender from delaying everyone else."""

from __future__ import annotations

import time

from support import ALICE, BOB, MALLORY, envelope_body, read_response, write_raw_request

from syft_chat.messaging.budget import SenderBudget

FLOOD = 3000  # about 6 s of work for bob without a budget


def test_budget_refills_and_says_how_long_to_wait():
    budget = SenderBudget(messages_per_minute=2, bytes_per_minute=100)
    assert budget.spend(MALLORY, 10) == 0 and budget.spend(MALLORY, 10) == 0
    assert 0 < budget.spend(MALLORY, 10) <= 30  # one message refills in 30 s
    assert budget.spend(ALICE, 90) == 0  # others have their own budget
    assert 0 < budget.spend(ALICE, 20) <= 60  # bytes run out too


def test_a_flood_from_one_sender_does_not_delay_another(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    settings = {"sender_messages_per_minute": 20}
    bob = ws.client(BOB, settings=settings)
    alice = ws.client(ALICE)
    flood = [
        write_raw_request(ws, to=BOB, folder=MALLORY, body=envelope_body(MALLORY, BOB, f"spam {i}"))
        for i in range(FLOOD)
    ]
    started = time.monotonic()
    response = alice.send_message(BOB, "the real message", timeout=30)
    took = time.monotonic() - started
    assert response.status == "delivered"
    print(f"alice's message took {took:.2f} s behind a flood of {FLOOD}")
    assert took < 4.0
    codes = [read_response(path, timeout=60)[0] for path in flood]
    assert codes.count(200) <= 25 and set(codes) == {200, 429}  # the rest: "send again later"
    assert bob.failed_messages() == []  # not refusals
