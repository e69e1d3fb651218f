"""A per-sender budget of incoming messages and bytes (token buckets).

One sender flooding a datasite with valid messages must not delay everyone else's: each
authenticated sender may spend ``sender_messages_per_minute`` messages and
``sender_bytes_per_minute`` bytes of request body per minute (a full minute's worth may
come at once), refilled continuously. Over budget, the request is answered
``429`` with ``retry`` and ``retry_after`` (seconds): not a refusal, nothing is stored or
recorded, and the sender's outbox sends it again later, backing off.
"""

from __future__ import annotations

import threading
import time

__all__ = ["SenderBudget"]

#: buckets kept before full (idle) ones are forgotten
_MAX_TRACKED = 10_000


class SenderBudget:
    """Token buckets of messages and bytes per sender; thread-safe."""

    def __init__(self, messages_per_minute: int, bytes_per_minute: int) -> None:
        self._messages = float(messages_per_minute)
        self._bytes = float(bytes_per_minute)
        self._buckets: dict[str, tuple[float, float, float]] = {}  # messages, bytes, when
        self._lock = threading.Lock()

    def spend(self, sender: str, size: int) -> float:
        """Take one message of ``size`` bytes from ``sender``'s budget: ``0`` if it fits,
        else the seconds until it would (nothing is taken then)."""
        now = time.monotonic()
        with self._lock:
            messages, size_left, then = self._buckets.get(
                sender, (self._messages, self._bytes, now)
            )
            elapsed = now - then
            messages = min(self._messages, messages + elapsed * self._messages / 60)
            size_left = min(self._bytes, size_left + elapsed * self._bytes / 60)
            cost = min(
                float(size), self._bytes
            )  # a body bigger than a minute's worth waits for a full one
            if messages >= 1 and size_left >= cost:
                self._buckets[sender] = (messages - 1, size_left - cost, now)
                if len(self._buckets) > _MAX_TRACKED:
                    self._forget_idle(now)
                return 0.0
            self._buckets[sender] = (messages, size_left, now)
            wait_messages = (1 - messages) * 60 / self._messages if messages < 1 else 0.0
            wait_bytes = (cost - size_left) * 60 / self._bytes if size_left < cost else 0.0
            return max(wait_messages, wait_bytes, 0.001)

    def _forget_idle(self, now: float) -> None:
        for sender, (_m, _b, then) in list(self._buckets.items()):
            if now - then > 60:  # refilled by now: the same as never seen
                del self._buckets[sender]
