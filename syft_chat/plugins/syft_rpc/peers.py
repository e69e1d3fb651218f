"""Which datasites serve chat, without walking the whole ``datasites/`` tree on each call.

A workspace can hold thousands of datasites, and telling whether one serves chat costs a
``stat`` or a small read each. :class:`PeerDirectory` keeps the answer:

* a call costs one ``stat`` of ``datasites/``: when its modification time moved (a
  datasite folder was added or removed), the folder is listed and only the new names
  are looked at;
* a datasite that already existed and starts (or stops) serving is picked up by a
  background re-walk every ``refresh_seconds``, which runs only while someone keeps
  asking (it stops after ``idle_seconds`` without a call).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class PeerDirectory:
    """The datasites under ``datasites`` for which ``serves(name)`` holds, kept current.

    ``admits(name)`` filters folder names before ``serves`` is asked (e.g. only canonical
    email addresses).
    """

    def __init__(
        self,
        datasites: Path,
        *,
        admits: Callable[[str], bool],
        serves: Callable[[str], bool],
        refresh_seconds: float,
        idle_seconds: float = 30.0,
        name: str = "",
    ) -> None:
        self._datasites = datasites
        self._admits = admits
        self._serves = serves
        self._refresh_seconds = refresh_seconds
        self._idle_seconds = idle_seconds
        self._name = name
        self._lock = threading.Lock()
        self._names: set[str] | None = None  # every folder name, at the last listing
        self._serving: set[str] = set()
        self._sorted: list[str] = []
        self._mtime: int | None = None
        self._last_call = 0.0
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()

    def list(self) -> list[str]:
        """The serving datasites, sorted."""
        with self._lock:
            self._last_call = time.monotonic()
            try:
                mtime: int | None = os.stat(self._datasites).st_mtime_ns
            except OSError:
                mtime = None
            # a folder changed within the last second is listed again: a datasite added in
            # the same clock tick as the last listing leaves the time where it was
            recent = mtime is not None and time.time_ns() - mtime < 1_000_000_000
            if self._names is None or mtime != self._mtime or recent:
                self._relist(mtime, everything=self._names is None)
            self._start_refresher()
            return list(self._sorted)

    def close(self) -> None:
        self._closed.set()

    def _listing(self) -> set[str]:
        try:
            return set(os.listdir(self._datasites))
        except OSError:
            return set()

    def _relist(self, mtime: int | None, *, everything: bool) -> None:
        """(Under the lock.) List the folder; ask ``serves`` of new names (of all if
        ``everything``), forget removed ones."""
        names = self._listing()
        known = set() if everything or self._names is None else self._names
        serving = {name for name in self._serving if name in names}
        serving.update(name for name in names - known if self._admits(name) and self._serves(name))
        self._names, self._mtime = names, mtime
        self._set(serving)

    def _set(self, serving: set[str]) -> None:
        if serving != self._serving or len(self._sorted) != len(serving):
            self._serving = serving
            self._sorted = sorted(serving)

    # ------------------------------------------------------------------ refreshing

    def _start_refresher(self) -> None:
        """(Under the lock.)"""
        if self._refresher is not None and self._refresher.is_alive():
            return
        if self._closed.is_set():
            return
        self._refresher = threading.Thread(
            target=self._refresh_while_asked, name=f"syft-chat-peers[{self._name}]", daemon=True
        )
        self._refresher.start()

    def _refresh_while_asked(self) -> None:
        while not self._closed.wait(self._refresh_seconds):
            with self._lock:
                if time.monotonic() - self._last_call > self._idle_seconds:
                    self._refresher = None
                    return
            try:
                try:
                    mtime: int | None = os.stat(self._datasites).st_mtime_ns
                except OSError:
                    mtime = None
                names = self._listing()
                serving = {n for n in names if self._admits(n) and self._serves(n)}  # unlocked
            except Exception:  # pragma: no cover - serves() does not raise
                log.exception("could not look for chat peers in %s", self._datasites)
                continue
            with self._lock:  # (a datasite added since the listing: the next call sees it)
                self._names, self._mtime = names, mtime
                self._set(serving)
