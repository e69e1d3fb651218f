"""Unit tests of the retry schedule (``syft_chat.messaging.retry.Outbox``).

Real threads and small real delays (tens of milliseconds). Lower bounds on
elapsed time are exact (the outbox never calls early); upper bounds are
generous so a loaded machine does not make the tests flaky.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from syft_chat.messaging import retry as retry_module
from syft_chat.messaging.retry import Outbox

TIMEOUT = 5.0  # generous: how long to wait for something that should happen
QUIET = 0.1  # how long to watch for something that must not happen


class Calls:
    """A ``retry`` callback that records ``(msg_id, monotonic time)`` of every call."""

    def __init__(self, then: Callable[[str], None] | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self._cond = threading.Condition()
        self._then = then

    def __call__(self, msg_id: str) -> None:
        with self._cond:
            self.calls.append((msg_id, time.monotonic()))
            self._cond.notify_all()
        if self._then is not None:
            self._then(msg_id)

    def wait_for(self, n: int, timeout: float = TIMEOUT) -> list[tuple[str, float]]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.calls) >= n, timeout=timeout)
            assert ok, f"expected {n} retry calls, got {self.calls}"
            return list(self.calls)

    def ids(self) -> list[str]:
        with self._cond:
            return [msg_id for msg_id, _ in self.calls]


@pytest.fixture
def outboxes() -> Iterator[list[Outbox]]:
    made: list[Outbox] = []
    yield made
    for outbox in made:
        outbox.close()


def make(
    outboxes: list[Outbox], retry: Callable[[str], None], initial: float, maximum: float
) -> Outbox:
    outbox = Outbox(retry, initial=initial, maximum=maximum, name="test-outbox")
    outboxes.append(outbox)
    return outbox


def test_retry_is_called_when_due(outboxes: list[Outbox]) -> None:
    calls = Calls()
    outbox = make(outboxes, calls, initial=0.05, maximum=1.0)
    start = time.monotonic()
    outbox.track("m1")
    assert outbox.pending() == 1
    [(msg_id, when)] = calls.wait_for(1)
    assert msg_id == "m1"
    assert 0.05 <= when - start < TIMEOUT
    assert outbox.pending() == 0  # a called message is no longer due until tracked again


def test_delay_doubles_from_initial_up_to_maximum(outboxes: list[Outbox]) -> None:
    # the callback re-tracks (as the client does when there is still no answer):
    # the delays are 0.02, 0.04, then capped at 0.04; uncapped they would reach 0.64
    outbox: Outbox

    def again(msg_id: str) -> None:
        outbox.track(msg_id)

    calls = Calls(then=again)
    outbox = make(outboxes, calls, initial=0.02, maximum=0.04)
    start = time.monotonic()
    outbox.track("m1")
    times = [start] + [when for _, when in calls.wait_for(6)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.02
    assert gaps[1] >= 0.04  # doubled
    assert all(g >= 0.04 for g in gaps[2:6])  # stays at the maximum...
    assert gaps[5] < 0.5  # ...and does not keep doubling (0.64 without the cap)


def assert_delay(outbox: Outbox, msg_id: str, expected: float, *, soon: bool = False) -> None:
    """Track ``msg_id`` once more and check the delay the outbox chose (from its due time)."""
    before = time.monotonic()
    outbox.track(msg_id, soon=soon)
    after = time.monotonic()
    due = outbox.due(msg_id)
    assert due is not None
    # never early; rounded up to the schedule's resolution
    assert before + expected <= due <= after + expected + retry_module.TICK, (
        due - before,
        expected,
    )


def test_backoff_steps_are_per_message(outboxes: list[Outbox]) -> None:
    # deterministic: reads the due times the outbox keeps (no thread timing involved)
    outbox = make(outboxes, Calls(), initial=10.0, maximum=100.0)
    for expected in (10.0, 20.0, 40.0):
        assert_delay(outbox, "a", expected)
    assert_delay(outbox, "b", 10.0)
    assert_delay(outbox, "a", 80.0)  # the fourth step of "a"


def test_delay_zero_is_immediate(outboxes: list[Outbox]) -> None:
    calls = Calls()
    outbox = make(outboxes, calls, initial=30.0, maximum=60.0)
    start = time.monotonic()
    outbox.track("m1", delay=0)
    [(msg_id, when)] = calls.wait_for(1)
    assert msg_id == "m1"
    assert when - start < 2.0  # nowhere near ``initial`` (30 s)


def test_soon_starts_its_own_backoff_at_half_a_second(outboxes: list[Outbox]) -> None:
    calls = Calls()
    outbox = make(outboxes, calls, initial=30.0, maximum=60.0)
    outbox.track("silent")  # the ordinary backoff: 30 s, must not fire here
    start = time.monotonic()
    outbox.track("m1", soon=True)
    [(msg_id, when)] = calls.wait_for(1)
    assert msg_id == "m1"
    assert 0.5 <= when - start < 5.0
    # soon's backoff doubles on its own; the silence backoff is untouched by it
    assert_delay(outbox, "m1", 1.0, soon=True)
    assert_delay(outbox, "m1", 30.0)  # first silence step: initial
    assert calls.ids() == ["m1"]


def test_soon_never_waits_longer_than_initial(outboxes: list[Outbox]) -> None:
    calls = Calls()
    outbox = make(outboxes, calls, initial=0.03, maximum=1.0)
    start = time.monotonic()
    outbox.track("m1", soon=True)
    [(_, when)] = calls.wait_for(1)
    assert 0.03 <= when - start < 0.45  # min(0.5, initial) = 0.03, not 0.5


def test_forget_stops_retrying(outboxes: list[Outbox]) -> None:
    calls = Calls()
    outbox = make(outboxes, calls, initial=0.03, maximum=1.0)
    outbox.track("gone")
    outbox.track("kept", delay=0.06)
    outbox.forget("gone")
    assert outbox.pending() == 1
    calls.wait_for(1)
    time.sleep(0.1)
    assert calls.ids() == ["kept"]
    assert outbox.pending() == 0


def test_retrack_supersedes_the_previous_due_time(outboxes: list[Outbox]) -> None:
    calls = Calls()
    outbox = make(outboxes, calls, initial=1.0, maximum=1.0)
    start = time.monotonic()
    outbox.track("later", delay=0.03)
    outbox.track("later", delay=0.15)  # pushed back
    outbox.track("earlier", delay=0.5)
    outbox.track("earlier", delay=0.05)  # brought forward
    got = calls.wait_for(2)
    time.sleep(max(0.0, start + 0.55 - time.monotonic()))  # past every superseded due time
    assert sorted(calls.ids()) == ["earlier", "later"]  # each exactly once
    when = dict(got)
    assert when["later"] - start >= 0.15
    assert when["earlier"] - start < 0.45


def test_retrack_supersedes_while_the_thread_is_busy(outboxes: list[Outbox]) -> None:
    # several messages fall due while ``retry`` is busy: a superseded due time among them
    # must not be called (the message's own, later due time still stands)
    busy = threading.Event()
    release = threading.Event()

    def block(msg_id: str) -> None:
        if msg_id == "blocker":
            busy.set()
            assert release.wait(TIMEOUT)

    calls = Calls(then=block)
    outbox = make(outboxes, calls, initial=1.0, maximum=1.0)
    outbox.track("blocker", delay=0)
    assert busy.wait(TIMEOUT)
    outbox.track("a", delay=0.01)
    outbox.track("b", delay=0.02)
    outbox.track("b", delay=30)  # pushed back while both old due times pass
    time.sleep(0.1)
    release.set()
    calls.wait_for(2)
    time.sleep(QUIET)
    assert calls.ids() == ["blocker", "a"]
    assert outbox.pending() == 1  # "b", still due later


def test_raising_retry_is_logged_and_tracked_again(
    outboxes: list[Outbox], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="syft_chat.messaging.retry")
    failures = []

    def flaky(msg_id: str) -> None:
        if not failures:
            failures.append(msg_id)
            raise RuntimeError("transport down")

    calls = Calls(then=flaky)
    outbox = make(outboxes, calls, initial=0.03, maximum=1.0)
    outbox.track("m1")
    got = calls.wait_for(2)  # called again without anyone re-tracking it
    assert [msg_id for msg_id, _ in got[:2]] == ["m1", "m1"]
    assert got[1][1] - got[0][1] >= 0.06  # the next backoff step, not a hot loop
    errors = [r for r in caplog.records if r.name == "syft_chat.messaging.retry"]
    assert errors and "m1" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "transport down" in str(errors[0].exc_info[1])


def test_close_stops_the_thread_and_ignores_later_tracks(outboxes: list[Outbox]) -> None:
    calls = Calls()
    outbox = make(outboxes, calls, initial=0.05, maximum=1.0)
    outbox.track("pending")
    outbox.close()
    assert not outbox._thread.is_alive()
    outbox.track("late", delay=0)
    outbox.track("late2")
    assert outbox.pending() == 1  # only the one tracked before close (left for the database)
    time.sleep(0.15)
    assert calls.ids() == []
    outbox.close()  # idempotent


def _blocked_in_wait(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "wait" and "threading" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class _CountingClock:
    """Stands in for the ``time`` module in ``retry``: real time, counted reads."""

    def __init__(self) -> None:
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return time.monotonic()


@pytest.mark.parametrize("state", ["empty", "done", "far_future", "forgotten"])
def test_idle_schedule_does_not_spin(
    outboxes: list[Outbox], monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    # the clock is real; it is only wrapped to count how often the thread looks at it
    clock = _CountingClock()
    monkeypatch.setattr(retry_module, "time", clock)
    calls = Calls()
    outbox = make(outboxes, calls, initial=0.01, maximum=0.01)
    if state == "done":
        outbox.track("m1")
        calls.wait_for(1)
    elif state == "far_future":
        outbox.track("m1", delay=3600)
    elif state == "forgotten":
        outbox.track("m1", delay=3600)
        outbox.forget("m1")
    time.sleep(0.05)  # let the thread settle into its wait
    before = clock.reads
    time.sleep(0.3)
    assert clock.reads - before <= 2, f"the idle thread read the clock {clock.reads - before}x"
    assert _blocked_in_wait(outbox._thread)
    assert outbox._thread.is_alive()


@pytest.mark.parametrize("far", [1e10, 1e307, float("inf")])
def test_a_delay_too_far_to_wait_for_is_kept_without_stopping_the_schedule(
    outboxes: list[Outbox], far: float
) -> None:
    # ChatSettings accepts any positive retry_initial / retry_max (inf included): a message
    # whose next step is that far away is simply not retried in this process's lifetime,
    # it must neither raise out of track() (send_message would fail after storing) nor
    # kill the thread (no message would be retried again)
    calls = Calls()
    outbox = make(outboxes, calls, initial=far, maximum=far)
    start = time.monotonic()
    outbox.track("far")
    due = outbox.due("far")
    assert due is not None and due - start > 3.0e7  # years away
    time.sleep(0.05)  # the thread now waits for the far due time
    outbox.track("near", delay=0.02)
    [(msg_id, _)] = calls.wait_for(1)
    assert msg_id == "near"
    assert outbox._thread.is_alive()
    assert outbox.pending() == 1
