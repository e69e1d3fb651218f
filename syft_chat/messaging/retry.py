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
uses no CPU.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

__all__ = ["Outbox", "RoundTrips"]

log = logging.getLogger("syft_chat.messaging.retry")


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
        self._due: dict[str, float] = {}  # msg_id -> monotonic due time
        self._delay: dict[str, float] = {}  # backoff after silence
        self._soon: dict[str, float] = {}  # backoff after transient answers
        self._heap: list[tuple[float, str]] = []
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
            due = time.monotonic() + delay
            self._due[msg_id] = due
            heapq.heappush(self._heap, (due, msg_id))
            if len(self._heap) > 2 * len(self._due) + 64:
                self._compact()
            self._cond.notify()

    def _compact(self) -> None:
        """Drop the stale entries (rescheduled or forgotten messages): the heap never holds
        more than about twice the tracked messages, however often they are rescheduled."""
        self._heap = [(due, msg_id) for msg_id, due in self._due.items()]
        heapq.heapify(self._heap)

    def forget(self, msg_id: str) -> None:
        """Stop tracking ``msg_id`` (confirmed or failed for good)."""
        with self._cond:
            self._due.pop(msg_id, None)
            self._delay.pop(msg_id, None)
            self._soon.pop(msg_id, None)
            if len(self._heap) > 2 * len(self._due) + 64:
                self._compact()

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def _next_due(self) -> list[str]:
        """Block until something is due (or closed); return the due msg_ids."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # stale entry: rescheduled or forgotten
                if self._heap and self._heap[0][0] <= now:
                    due = []
                    while self._heap and self._heap[0][0] <= now:
                        when, msg_id = heapq.heappop(self._heap)
                        if self._due.get(msg_id) == when:
                            del self._due[msg_id]
                            due.append(msg_id)
                    return due
                self._cond.wait(None if not self._heap else self._heap[0][0] - now)
            return []

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
