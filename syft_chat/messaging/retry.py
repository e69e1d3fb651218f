"""The retry schedule of unconfirmed outgoing messages.

Every outgoing message is tracked from the moment its request is written
until its recipient confirms it (or refuses it for good). When a message is
due, the client looks for an answer and, if there is none, writes a fresh
request (a new request id and expiry: this is also how a request's expiry is
renewed), unless the transport says the previous request is still waiting for
the peer and stays valid (then it is kept, and only the next look is
scheduled). The first delay is ``max(retry_initial, retry_rtt_factor * rtt)``
(:class:`RoundTrips`: the confirmation round trip observed for that peer, so a
slow network is not flooded with copies); it doubles up to ``retry_max``. The
thread sleeps until the next due time: an idle client with nothing pending
uses no CPU. Due times are rounded up to :data:`TICK` (never early, at most a tick
late), so that the messages due in one tick share one entry: an outbox of 100,000
messages costs about 50 bytes each here.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

__all__ = ["Outbox", "RoundTrips"]

log = logging.getLogger("syft_chat.messaging.retry")

#: the resolution of due times, in seconds
TICK = 1 / 64
#: the furthest a message is scheduled ahead, in seconds (about 34 years): any positive
#: delay is accepted (``retry_max`` may be ``inf``), but a due time must stay a number of
#: ticks and a time the thread can wait for
LONGEST = float(2**30)


class _Slot:
    """The messages due in one tick (some may have been rescheduled or forgotten since:
    only those whose ``Outbox._due`` is this slot are)."""

    __slots__ = ("ids", "live", "when")

    def __init__(self, when: float) -> None:
        self.when = when  # monotonic time
        self.ids: list[str] = []
        self.live = 0  # how many of ids are due here


class Outbox:
    """Calls ``retry(msg_id)`` for each tracked message when it is due."""

    def __init__(
        self,
        retry: Callable[[str], None],
        *,
        initial: float,
        maximum: float,
        name: str = "syft-chat-outbox",
        together: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self._retry = retry
        self._together = together  # wraps the retries of messages due at once
        self._initial = initial
        self._maximum = maximum
        self._cond = threading.Condition()
        self._due: dict[str, _Slot] = {}  # msg_id -> the tick it is due in
        self._delay: dict[str, float] = {}  # backoff after silence
        self._soon: dict[str, float] = {}  # backoff after transient answers
        self._slots: dict[int, _Slot] = {}  # tick -> slot, for the ticks in the heap
        self._ticks: list[int] = []  # heap of the slots' ticks
        self._entries = 0  # msg_ids in all slots, stale ones included
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def track(
        self,
        msg_id: str,
        *,
        delay: float | None = None,
        soon: bool = False,
        initial: float | None = None,
    ) -> None:
        """(Re)schedule ``msg_id``: ``delay`` seconds from now, else the next backoff step.

        ``initial`` replaces the outbox's first step for this message (e.g. scaled
        to the peer's round trip); it only matters while ``msg_id`` has no step yet.
        ``soon`` is for a transient answer (the receiver asked for a resend):
        its own backoff starts at half a second rather than ``initial``.
        """
        with self._cond:
            if self._closed:
                return
            if delay is None:
                steps = self._soon if soon else self._delay
                step = steps.get(msg_id)
                if soon:
                    first = min(0.5, self._initial)
                else:
                    first = self._initial if initial is None else initial
                delay = first if step is None else min(step * 2, self._maximum)
                steps[msg_id] = delay
            delay = min(delay, LONGEST)
            now = time.monotonic()
            # rounded up (never early); "now" is the current tick (not a tick late)
            tick = math.ceil((now + delay) / TICK) if delay > 0 else math.floor(now / TICK)
            slot = self._slots.get(tick)
            if slot is None:
                slot = self._slots[tick] = _Slot(tick * TICK)
                heapq.heappush(self._ticks, tick)
            old = self._due.get(msg_id)
            if old is not None:
                old.live -= 1
            slot.ids.append(msg_id)
            slot.live += 1
            self._entries += 1
            self._due[msg_id] = slot
            if self._entries > 2 * len(self._due) + 64:
                self._compact()
            self._cond.notify()

    def due(self, msg_id: str) -> float | None:
        """The monotonic time ``msg_id`` is due, ``None`` if it is not tracked."""
        with self._cond:
            slot = self._due.get(msg_id)
            return slot.when if slot is not None else None

    def _compact(self) -> None:
        """Drop the stale entries (rescheduled or forgotten messages): the slots never hold
        more than about twice the tracked messages, however often they are rescheduled."""
        for slot in self._slots.values():
            slot.ids = []
        for msg_id, slot in self._due.items():
            slot.ids.append(msg_id)
        self._slots = {t: s for t, s in self._slots.items() if s.ids}
        self._ticks = list(self._slots)
        heapq.heapify(self._ticks)
        self._entries = len(self._due)

    def forget(self, msg_id: str) -> None:
        """Stop tracking ``msg_id`` (confirmed or failed for good)."""
        with self._cond:
            slot = self._due.pop(msg_id, None)
            if slot is not None:
                slot.live -= 1
            self._delay.pop(msg_id, None)
            self._soon.pop(msg_id, None)
            if self._entries > 2 * len(self._due) + 64:
                self._compact()

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def _next_due(self) -> list[str]:
        """Block until something is due (or closed); return the due msg_ids."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._ticks and not self._slots[self._ticks[0]].live:
                    self._drop()  # only stale entries: rescheduled or forgotten
                if self._ticks and self._slots[self._ticks[0]].when <= now:
                    due = []
                    while self._ticks and self._slots[self._ticks[0]].when <= now:
                        slot = self._drop()
                        for msg_id in slot.ids:
                            if self._due.get(msg_id) is slot:
                                del self._due[msg_id]
                                due.append(msg_id)
                    return due
                first = self._slots[self._ticks[0]].when if self._ticks else None
                self._cond.wait(None if first is None else first - now)
            return []

    def _drop(self) -> _Slot:
        """Take the earliest slot out of the heap (the caller holds the lock)."""
        slot = self._slots.pop(heapq.heappop(self._ticks))
        self._entries -= len(slot.ids)
        slot.live = 0
        return slot

    def _run(self) -> None:
        while True:
            due = self._next_due()
            if self._closed:
                return
            try:
                with self._together():
                    for msg_id in due:
                        try:
                            self._retry(msg_id)
                        except Exception:
                            log.exception("retrying message %s failed; trying again later", msg_id)
                            self.track(msg_id)
            except Exception:  # pragma: no cover - together() logs its own failures
                log.exception("error after retrying %d messages", len(due))

    def close(self) -> None:
        """Stop the thread. Idempotent. Pending messages stay in the database."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)


class RoundTrips:
    """Per-peer estimate of the confirmation round trip, for the first retry's delay.

    A sample is the time from writing a request to its confirmation, taken only when
    the confirmed request is the latest attempt (an answer to an earlier one says
    nothing clear about the time). Samples are capped at ``maximum`` (a peer that was
    offline for an hour says nothing about the network) and averaged with weight
    ``alpha`` for the newest (an exponentially weighted moving average), so one
    unusually slow confirmation moves the estimate only part of the way.
    """

    def __init__(self, *, floor: float, factor: float, maximum: float, alpha: float = 0.3):
        self._floor = floor
        self._factor = factor
        self._maximum = maximum
        self._alpha = alpha
        self._lock = threading.Lock()
        self._estimate: dict[str, float] = {}

    def observe(self, peer: str, seconds: float) -> None:
        sample = min(max(seconds, 0.0), self._maximum)
        with self._lock:
            old = self._estimate.get(peer)
            self._estimate[peer] = (
                sample if old is None else (1 - self._alpha) * old + self._alpha * sample
            )

    def estimate(self, peer: str) -> float | None:
        """The smoothed round trip to ``peer`` in seconds, ``None`` before any sample."""
        with self._lock:
            return self._estimate.get(peer)

    def first_delay(self, peer: str) -> float:
        """``max(floor, factor * estimate)``, at most ``maximum``."""
        rtt = self.estimate(peer) or 0.0
        return min(max(self._floor, self._factor * rtt), max(self._floor, self._maximum))
