"""The client's listener thread: runs notifications off the delivery path."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Notifier"]

log = logging.getLogger("syft_chat.messaging.announcing")

_STOP = object()


class Notifier:
    """One daemon thread that runs submitted calls in order.

    Calls are wrapped by the submitter's error policy (``dispatch.Hooks``);
    anything that still escapes is logged here and never stops the thread.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if not self._closed:
            self._queue.put((fn, args))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:  # pragma: no cover - dispatch already isolates plugins
                log.exception("notification failed")

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued (up to ``timeout`` seconds), then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
