"""Where answers to our requests are noticed: a bounded set of folder watches and one sweeper.

Each peer we write to has its own answer folder
(``datasites/<peer>/app_data/<app>/rpc/chat/<us>/``). A watchdog watch costs a thread
(and an inotify instance), so watching every peer ever written to would grow the
process by one thread per peer, for good. Instead:

* up to ``limit`` peers have a watch (a new answer is noticed at once, as before); a
  watch goes to another peer only once its own has seen nothing sent for
  ``idle_seconds`` (so a group of 50 does not move watches around on every message);
* the others, while a request to them is unanswered, are looked at by one sweeper
  thread: one ``stat`` of the folder, and a listing only when its modification time
  moved (a file was created, renamed or removed in it). A peer is looked at every
  ``sweep_seconds`` right after a request to it, then less and less often, up to
  every ``max_sweep_seconds`` (a peer offline for hours costs one ``stat`` a second);
* a peer with nothing unanswered costs nothing: the sweeper sleeps until it has work.

Threads and file descriptors therefore stay constant however many peers there are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger(__name__)

#: what the watches and the sweeper report: a file's name in a peer's answer folder
FileSeen = Callable[[Path, str], None]


#: a watch being scheduled (the slot is taken, the watch not made yet)
_PLACEHOLDER: ObservedWatch = object()  # type: ignore[assignment]


class _Watcher(FileSystemEventHandler):
    def __init__(self, seen: FileSeen, peer: str) -> None:
        self.seen = seen
        self.peer = peer

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = getattr(event, "dest_path", "") or event.src_path
        self.seen(Path(path.decode() if isinstance(path, bytes) else path), self.peer)


class ReplyWatches:
    """Notice the files that appear in peers' answer folders; report each with ``seen``.

    ``folder_of(peer)`` is the answer folder of ``peer``. ``seen(path, peer)`` runs on a
    watchdog or the sweeper thread and must never raise; it may be told of the same file
    more than once.
    """

    def __init__(
        self,
        *,
        folder_of: Callable[[str], Path],
        seen: FileSeen,
        limit: int,
        sweep_seconds: float,
        name: str,
        max_sweep_seconds: float = 1.0,
        idle_seconds: float = 30.0,
    ) -> None:
        self._folder_of = folder_of
        self._seen = seen
        self._limit = limit
        self._sweep_seconds = sweep_seconds
        self._max_sweep = max(max_sweep_seconds, sweep_seconds)
        self._idle_seconds = idle_seconds
        self._last_sent: dict[str, float] = {}  # watched peer -> monotonic time of its last send
        self._next_look: dict[str, tuple[float, float]] = {}  # swept peer -> (when, interval)
        self._name = name
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._watches: OrderedDict[str, ObservedWatch] = OrderedDict()  # oldest first
        self._unanswered: dict[str, set[str]] = {}  # peer -> request ids
        self._mtimes: dict[str, int] = {}  # peer -> folder mtime at its last listing
        self._wake = threading.Event()
        self._closed = False
        self._sweeper: threading.Thread | None = None

    def attach(self, observer: BaseObserver) -> None:
        """Use ``observer`` for the watches (peers sent to before get theirs now)."""
        with self._lock:
            self._observer = observer
            peers = list(self._unanswered)
        for peer in peers[-self._limit :]:
            self._watch(peer)
        if len(peers) > self._limit:
            with self._lock:
                self._start_sweeper_locked()

    def sent(self, peer: str, request_id: str) -> None:
        """A request to ``peer`` is out: notice its answer."""
        with self._lock:
            if self._closed:
                return
            self._unanswered.setdefault(peer, set()).add(request_id)
            self._next_look[peer] = (0.0, self._sweep_seconds)  # look soon, then back off
        self._watch(peer)
        self._wake.set()

    def answered(self, peer: str, request_id: str) -> None:
        """``request_id`` needs no more looking for (answered, refused or withdrawn)."""
        with self._lock:
            waiting = self._unanswered.get(peer)
            if waiting is not None:
                waiting.discard(request_id)
                if not waiting:
                    del self._unanswered[peer]
                    self._mtimes.pop(peer, None)
                    self._next_look.pop(peer, None)

    def expects(self, peer: str, request_id: str) -> bool:
        """Whether ``request_id`` to ``peer`` is one being looked out for."""
        with self._lock:
            return request_id in self._unanswered.get(peer, ())

    def watched(self) -> list[str]:
        """The peers with a watch, least recently written to first."""
        with self._lock:
            return list(self._watches)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        sweeper = self._sweeper
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(5)

    # ------------------------------------------------------------------ watches

    def _watch(self, peer: str) -> None:
        """Give ``peer`` a watch if one is free (or idle long enough to be taken)."""
        evicted: ObservedWatch | None = None
        now = time.monotonic()
        with self._lock:
            observer = self._observer
            if observer is None or self._closed:
                return
            if peer in self._watches:
                self._watches.move_to_end(peer)
                self._last_sent[peer] = now
                return
            if len(self._watches) >= self._limit:
                oldest = next(iter(self._watches))
                if now - self._last_sent.get(oldest, 0.0) < self._idle_seconds:
                    self._start_sweeper_locked()  # every watch is busy: the sweeper looks
                    return
                evicted = self._watches.pop(oldest)
                self._last_sent.pop(oldest, None)
            self._watches[peer] = _PLACEHOLDER  # taken: nobody schedules it twice
            self._last_sent[peer] = now
            folder = self._folder_of(peer)
        if evicted is not None and evicted is not _PLACEHOLDER:
            with contextlib.suppress(KeyError, RuntimeError):  # the observer already stopped
                observer.unschedule(evicted)
        try:
            watch = observer.schedule(
                _Watcher(self._seen, peer),
                path=str(folder),
                recursive=False,
                event_filter=[FileCreatedEvent, FileMovedEvent],
            )
        except OSError as exc:  # the folder vanished: the sweeper (or a retry) looks instead
            log.info("cannot watch %s: %s", folder, exc)
            with self._lock:
                if self._watches.get(peer) is _PLACEHOLDER:
                    del self._watches[peer]
                self._start_sweeper_locked()
            return
        with self._lock:
            if self._watches.get(peer) is _PLACEHOLDER and not self._closed:
                self._watches[peer] = watch
                return
        with contextlib.suppress(KeyError, RuntimeError):
            observer.unschedule(watch)

    # ------------------------------------------------------------------ the sweeper

    def _start_sweeper_locked(self) -> None:
        """(Under the lock.) The sweeper runs from now on (it sleeps while it has no work)."""
        if self._sweeper is not None or self._closed:
            return
        self._sweeper = threading.Thread(
            target=self._sweep_forever, name=f"syft-chat-replies[{self._name}]", daemon=True
        )
        self._sweeper.start()

    def _sweep_forever(self) -> None:
        while True:
            now = time.monotonic()
            with self._lock:
                if self._closed:
                    return
                due, wake_at = [], None
                for peer in self._unanswered:
                    if peer in self._watches and self._watches[peer] is not _PLACEHOLDER:
                        continue
                    when, interval = self._next_look.get(peer, (0.0, self._sweep_seconds))
                    if when <= now:
                        due.append(peer)
                        when = now + interval
                        self._next_look[peer] = (when, min(interval * 1.5, self._max_sweep))
                    wake_at = when if wake_at is None else min(wake_at, when)
                self._wake.clear()
            for peer in due:
                try:
                    self._sweep(peer)
                except Exception:  # pragma: no cover - seen() never raises
                    log.exception("error looking for answers from %s", peer)
            self._wake.wait(None if wake_at is None else max(0.0, wake_at - time.monotonic()))

    def _sweep(self, peer: str) -> None:
        """List ``peer``'s answer folder if anything changed in it since the last look."""
        folder = self._folder_of(peer)
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return
        with self._lock:
            # a folder changed within the last second is listed again: a file created in
            # the same clock tick as the last listing leaves the time where it was
            settled = time.time_ns() - mtime > 1_000_000_000
            if settled and self._mtimes.get(peer) == mtime:
                return
            self._mtimes[peer] = mtime
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in sorted(names):
            self._seen(folder / name, peer)
