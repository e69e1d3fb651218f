"""Unit tests of announcement ordering (``syft_chat.messaging.ordering.Conversations``).

Real thread pool and timers, small real delays, generous timeouts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from syft_chat.messaging.ordering import Conversations
from syft_chat.models import ChatMessage

TIMEOUT = 5.0
QUIET = 0.1  # how long to watch for something that must not happen

ALICE = "alice@example.com"
BOB = "bob@example.com"


def msg(seq: int | None, sender: str = ALICE) -> ChatMessage:
    return ChatMessage(sender=sender, content=f"m{seq}", seq=seq)


class Announced:
    """An ``announce`` callback recording the messages, with an optional action per call."""

    def __init__(self, then: Callable[[ChatMessage], None] | None = None) -> None:
        self.messages: list[ChatMessage] = []
        self._cond = threading.Condition()
        self._then = then

    def __call__(self, message: ChatMessage) -> None:
        if self._then is not None:
            self._then(message)
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def contents(self, sender: str | None = None) -> list[str]:
        with self._cond:
            return [m.content for m in self.messages if sender is None or m.sender == sender]

    def wait_for(self, n: int, timeout: float = TIMEOUT) -> list[str]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.messages) >= n, timeout=timeout)
        assert ok, f"expected {n} announcements, got {self.contents()}"
        return self.contents()


@pytest.fixture
def made() -> Iterator[list[Conversations]]:
    convs: list[Conversations] = []
    yield convs
    for c in convs:
        c.close(timeout=TIMEOUT)


def make(
    made: list[Conversations],
    announce: Callable[[ChatMessage], None],
    *,
    workers: int = 4,
    gap_timeout: float = 60.0,
    started: bool = True,
) -> Conversations:
    convs = Conversations(announce, workers=workers, gap_timeout=gap_timeout, name="test-convs")
    made.append(convs)
    if started:
        convs.start()
    return convs


def test_nothing_is_announced_before_start(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced, started=False)
    convs.submit(ALICE, msg(1))
    convs.submit(BOB, msg(None, sender=BOB))
    time.sleep(QUIET)
    assert announced.contents() == []
    convs.start()
    assert sorted(announced.wait_for(2)) == ["m1", "mNone"]
    convs.start()  # a second start changes nothing
    time.sleep(QUIET)
    assert len(announced.contents()) == 2


def test_start_after_holds_then_starts(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced, started=False)
    begin = time.monotonic()
    convs.start(after=0.2)
    convs.submit(ALICE, msg(1))
    time.sleep(0.05)
    assert announced.contents() == []
    assert announced.wait_for(1) == ["m1"]
    assert time.monotonic() - begin >= 0.2


def test_start_now_overrides_a_pending_start_after(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced, started=False)
    convs.start(after=30)
    convs.submit(ALICE, msg(1))
    begin = time.monotonic()
    convs.start()
    assert announced.wait_for(1) == ["m1"]
    assert time.monotonic() - begin < TIMEOUT


def test_announced_in_seq_order_when_submitted_out_of_order(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.submit(ALICE, msg(1))
    assert announced.wait_for(1) == ["m1"]
    for seq in (4, 2, 5, 3):
        convs.submit(ALICE, msg(seq))
    assert announced.wait_for(5) == ["m1", "m2", "m3", "m4", "m5"]


def test_a_later_message_waits_for_the_missing_one(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.submit(ALICE, msg(1))
    convs.submit(ALICE, msg(3))
    time.sleep(QUIET)
    assert announced.contents() == ["m1"]
    convs.submit(ALICE, msg(2))
    assert announced.wait_for(3) == ["m1", "m2", "m3"]


def test_each_peer_has_its_own_sequence(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.expect(ALICE, 1)
    convs.expect(BOB, 1)
    convs.submit(ALICE, msg(2))
    convs.submit(BOB, msg(1, sender=BOB))  # Bob's 1 does not fill Alice's gap
    announced.wait_for(1)
    time.sleep(QUIET)
    assert announced.contents() == ["m1"]
    assert announced.messages[0].sender == BOB
    convs.submit(ALICE, msg(1))
    announced.wait_for(3)
    assert announced.contents(ALICE) == ["m1", "m2"]


def test_floor_skips_what_the_sender_says_is_settled(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.submit(ALICE, msg(1))
    convs.submit(ALICE, msg(5), floor=5)  # 2..4 were settled at the sender
    assert announced.wait_for(2) == ["m1", "m5"]
    convs.submit(ALICE, msg(7), floor=6)  # 6 is still coming: 7 waits
    time.sleep(QUIET)
    assert announced.contents() == ["m1", "m5"]
    convs.submit(ALICE, msg(6), floor=6)
    assert announced.wait_for(4) == ["m1", "m5", "m6", "m7"]


def test_floor_on_the_first_message_sets_where_to_start(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.submit(ALICE, msg(4), floor=3)  # 3 is unsettled: wait for it
    time.sleep(QUIET)
    assert announced.contents() == []
    convs.submit(ALICE, msg(3), floor=3)
    assert announced.wait_for(2) == ["m3", "m4"]


def test_floor_releases_buffered_messages_below_it(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.submit(ALICE, msg(1))
    convs.submit(ALICE, msg(3))  # waits for 2
    time.sleep(QUIET)
    assert announced.contents() == ["m1"]
    convs.submit(ALICE, msg(4), floor=4)  # 2 and 3 are settled: 3 need not wait
    assert announced.wait_for(3) == ["m1", "m3", "m4"]


def test_expect_continues_a_conversation_after_restart(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.expect(ALICE, 8)  # 1..7 were announced before the restart
    convs.submit(ALICE, msg(9))
    time.sleep(QUIET)
    assert announced.contents() == []  # without expect, 9 would start the conversation
    convs.submit(ALICE, msg(8))
    assert announced.wait_for(2) == ["m8", "m9"]
    convs.expect(ALICE, 1)  # only the first expect counts: the conversation is under way
    convs.submit(ALICE, msg(10))
    assert announced.wait_for(3) == ["m8", "m9", "m10"]


def test_unsequenced_messages_go_at_once(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced)
    convs.submit(ALICE, msg(1))
    convs.submit(ALICE, msg(3))  # held back: 2 is missing
    convs.submit(ALICE, msg(None))
    assert announced.wait_for(2) == ["m1", "mNone"]
    time.sleep(QUIET)
    assert announced.contents() == ["m1", "mNone"]


def test_a_gap_is_given_up_after_gap_timeout(
    made: list[Conversations], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="syft_chat.messaging.ordering")
    announced = Announced()
    convs = make(made, announced, gap_timeout=0.15)
    convs.submit(ALICE, msg(1))
    begin = time.monotonic()
    convs.submit(ALICE, msg(3))
    convs.submit(ALICE, msg(5))
    assert announced.wait_for(1) == ["m1"]
    assert announced.wait_for(3) == ["m1", "m3", "m5"]
    assert time.monotonic() - begin >= 0.15
    assert any("seq 3" in r.getMessage() for r in caplog.records), caplog.records
    convs.submit(ALICE, msg(6))  # after the gap: the conversation goes on at once
    assert announced.wait_for(4) == ["m1", "m3", "m5", "m6"]
    convs.submit(ALICE, msg(2))  # a straggler is still announced (once per stored row)
    assert announced.wait_for(5)[-1] == "m2"
    time.sleep(QUIET)
    assert len(announced.contents()) == 5


def test_a_filled_gap_cancels_the_timer(made: list[Conversations]) -> None:
    announced = Announced()
    convs = make(made, announced, gap_timeout=0.1)
    convs.submit(ALICE, msg(1))
    convs.submit(ALICE, msg(3))
    convs.submit(ALICE, msg(2))
    assert announced.wait_for(3) == ["m1", "m2", "m3"]
    convs.submit(ALICE, msg(5))  # a new gap, armed afresh
    time.sleep(0.05)
    assert announced.contents() == ["m1", "m2", "m3"]
    assert announced.wait_for(4) == ["m1", "m2", "m3", "m5"]


def test_a_slow_conversation_does_not_delay_another(made: list[Conversations]) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow_for_alice(message: ChatMessage) -> None:
        if message.sender == ALICE:
            started.set()
            assert release.wait(TIMEOUT)

    announced = Announced(then=slow_for_alice)
    convs = make(made, announced, workers=2)
    convs.submit(ALICE, msg(1))
    assert started.wait(TIMEOUT)
    convs.submit(ALICE, msg(2))
    convs.submit(BOB, msg(1, sender=BOB))
    convs.submit(BOB, msg(2, sender=BOB))
    assert announced.wait_for(2) == ["m1", "m2"]  # Bob's, while Alice's first is stuck
    assert announced.contents(ALICE) == []  # Alice's second waits for her first
    release.set()
    announced.wait_for(4)
    assert announced.contents(ALICE) == ["m1", "m2"]


def test_a_raising_announce_does_not_stop_the_pool(
    made: list[Conversations], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="syft_chat.messaging.ordering")

    def explode_on_first(message: ChatMessage) -> None:
        if message.content == "m1" and message.sender == ALICE:
            raise RuntimeError("listener bug")

    announced = Announced(then=explode_on_first)
    convs = make(made, announced, workers=1)
    convs.submit(ALICE, msg(1))
    convs.submit(ALICE, msg(2))
    convs.submit(BOB, msg(1, sender=BOB))
    announced.wait_for(2)
    assert announced.contents(ALICE) == ["m2"]
    assert announced.contents(BOB) == ["m1"]
    errors = [r for r in caplog.records if r.name == "syft_chat.messaging.ordering"]
    assert len(errors) == 1 and errors[0].exc_info is not None
    convs.submit(ALICE, msg(3))  # the conversation keeps going
    announced.wait_for(3)
    assert announced.contents(ALICE) == ["m2", "m3"]


def test_close_waits_for_running_announcements() -> None:
    started = threading.Event()
    finished = threading.Event()

    def slow(message: ChatMessage) -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    convs = Conversations(Announced(then=slow), workers=2, gap_timeout=60, name="test-convs")
    convs.start()
    convs.submit(ALICE, msg(1))
    assert started.wait(TIMEOUT)
    convs.close(timeout=TIMEOUT)
    assert finished.is_set()
    convs.close()  # idempotent


def test_close_lets_queued_announcements_finish_and_ignores_new_ones() -> None:
    gate = threading.Event()
    announced = Announced(then=lambda m: gate.wait(TIMEOUT))
    convs = Conversations(announced, workers=1, gap_timeout=60, name="test-convs")
    convs.start()
    for seq in (1, 2, 3):
        convs.submit(ALICE, msg(seq))
    closer = threading.Thread(target=convs.close, kwargs={"timeout": TIMEOUT})
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive()  # close is waiting for the conversation
    convs.submit(ALICE, msg(4))  # after close: ignored
    gate.set()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    assert announced.contents() == ["m1", "m2", "m3"]


def test_close_cancels_gap_timer_and_pending_start() -> None:
    announced = Announced()
    convs = Conversations(announced, workers=1, gap_timeout=0.05, name="test-convs")
    convs.start(after=0.05)
    convs.submit(ALICE, msg(1))
    convs.submit(ALICE, msg(3))
    convs.close()
    time.sleep(0.15)  # past both timers
    assert announced.contents() == []
