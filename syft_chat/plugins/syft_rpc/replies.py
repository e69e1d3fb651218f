"""Where answers to our requests are noticed: a bounded set of folder watches and one sweeper.

Each peer we write to has its own answer folder
(``datasites/<peer>/app_data/<app>/rpc/chat/<us>/``). A watchdog watch costs a thread
(and an inotify instance), so watching every peer ever written to would grow the
process by one thread per peer, for good. Instead:

* up to ``limit`` peers have a watch (a new answer is noticed at once); a watch goes to
  another peer only once its own has seen nothing sent for ``idle_seconds`` (so a group
  of 50 does not move watches around on every message);
* one sweeper thread looks at every peer with something unanswered, watched or not: one
  ``stat`` of the folder, and a listing only when its modification time moved (a file
  was created, renamed or removed in it) or moved less than a second ago. A peer without
  a watch is looked at ``sweep_seconds`` after a request to it, then less and less often,
  up to every ``max_sweep_seconds``; a watched one every ``max_sweep_seconds`` (its watch
  sees the answer at once: the sweeper is the net under it). So an answer from a peer
  without a watch is found within moments, and nothing a watch missed (a file that came
  before the watch, a folder deleted and re-created under it, a rotated refusal marker)
  waits for a retry: it is found within ``max_sweep_seconds``. The sweeper takes only the
  peers that are due (a heap of times), so a thousand peers offline for hours cost a
  thousand ``stat`` calls a second;
* a peer with nothing unanswered costs nothing: the sweeper sleeps until it has work.

Threads and file descriptors therefore stay constant however many peers there are.
"""

from __future__ import annotations

import contextlib
import heapq
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

from syft_chat.plugins.syft_rpc.files import folder_id

log = logging.getLogger(__name__)

#: what the watches and the sweeper report: a file's name in a peer's answer folder
FileSeen = Callable[[Path, str], None]
#: looks due within this many seconds of each other are taken together
_SLACK = 0.005


class _Watcher(FileSystemEventHandler):
    def __init__(self, seen: FileSeen, peer: str) -> None:
        self.seen = seen
        self.peer = peer

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = getattr(event, "dest_path", "") or event.src_path
        self.seen(Path(path.decode() if isinstance(path, bytes) else path), self.peer)


class _Watch:
    """A peer's watch (``None`` while it is being made) and the folder it was made on."""

    __slots__ = ("folder_id", "watch")

    def __init__(self) -> None:
        self.watch: ObservedWatch | None = None
        self.folder_id: tuple[int, int] | None = None


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
        self._name = name
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._watches: OrderedDict[str, _Watch] = OrderedDict()  # least recently sent first
        self._last_sent: dict[str, float] = {}  # watched peer -> monotonic time of its last send
        self._unanswered: dict[str, set[str]] = {}  # peer -> request ids
        self._mtimes: dict[str, int] = {}  # peer -> folder mtime at its last listing
        self._next_look: dict[str, tuple[float, float]] = {}  # peer -> (when, interval)
        self._due: list[tuple[float, str]] = []  # heap of (when, peer); stale entries skipped
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

    def sent(self, peer: str, request_id: str) -> None:
        """A request to ``peer`` is out: notice its answer."""
        with self._lock:
            if self._closed:
                return
            self._unanswered.setdefault(peer, set()).add(request_id)
            current = self._watches.get(peer)
            if current is not None and current.watch is not None:
                self._look_later(peer)  # its watch sees the answer: the sweeper is a net
            else:
                self._look_soon(peer)
            self._start_sweeper_locked()
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
        """Give ``peer`` a watch if one is free (or idle long enough to be taken); renew
        its watch if its folder was replaced since the watch was made."""
        now = time.monotonic()
        folder = self._folder_of(peer)
        stale: ObservedWatch | None = None
        with self._lock:
            observer = self._observer
            if observer is None or self._closed:
                return
            current = self._watches.get(peer)
            if current is not None:
                self._watches.move_to_end(peer)
                self._last_sent[peer] = now
                if current.watch is None or current.folder_id == folder_id(folder):
                    return
                stale, current.watch = current.watch, None  # a dead watch: make it again
                slot = current
            else:
                if len(self._watches) >= self._limit:
                    oldest = next(iter(self._watches))
                    if now - self._last_sent.get(oldest, 0.0) < self._idle_seconds:
                        return  # every watch is busy: the sweeper looks instead
                    taken = self._watches.pop(oldest)
                    self._last_sent.pop(oldest, None)
                    stale = taken.watch
                    if oldest in self._unanswered:  # from now on only the sweeper sees it
                        self._look_soon(oldest)
                slot = _Watch()
                self._watches[peer] = slot
                self._last_sent[peer] = now
        if stale is not None:
            with contextlib.suppress(KeyError, RuntimeError):  # the observer already stopped
                observer.unschedule(stale)
        made_on = folder_id(folder)
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
                if self._watches.get(peer) is slot:
                    del self._watches[peer]
                    self._last_sent.pop(peer, None)
            return
        with self._lock:
            if self._watches.get(peer) is slot and not self._closed:
                slot.watch, slot.folder_id = watch, made_on
                if peer in self._unanswered:  # what came before the watch: the sweeper
                    self._look_soon(peer)
                    self._wake.set()
                return
        with contextlib.suppress(KeyError, RuntimeError):
            observer.unschedule(watch)

    # ------------------------------------------------------------------ the sweeper

    def _look_later(self, peer: str) -> None:
        """(Under the lock.) Look at a watched ``peer``'s folder within ``max_sweep_seconds``
        (what its watch may have missed), unless a look is planned sooner."""
        planned = self._next_look.get(peer)
        when = time.monotonic() + self._max_sweep
        if planned is None or planned[0] > when:
            self._next_look[peer] = (when, self._max_sweep)
            heapq.heappush(self._due, (when, peer))

    def _look_soon(self, peer: str) -> None:
        """(Under the lock.) Look at ``peer``'s folder now, then back off again."""
        self._next_look[peer] = (0.0, self._sweep_seconds)
        heapq.heappush(self._due, (0.0, peer))

    def _start_sweeper_locked(self) -> None:
        """(Under the lock.) The sweeper runs from now on (it sleeps while it has no work)."""
        if self._sweeper is not None or self._closed:
            return
        self._sweeper = threading.Thread(
            target=self._sweep_forever, name=f"syft-chat-replies[{self._name}]", daemon=True
        )
        self._sweeper.start()

    def _take_due(self, now: float) -> tuple[list[str], float | None]:
        """(Under the lock.) The peers due for a look (each scheduled again, further out)
        and when the next one is due."""
        due: list[str] = []
        while self._due:
            when, peer = self._due[0]
            planned = self._next_look.get(peer)
            if planned is None or planned[0] != when:  # answered, or rescheduled meanwhile
                heapq.heappop(self._due)
                continue
            if when > now + _SLACK:
                return due, when
            heapq.heappop(self._due)
            interval = planned[1]
            later = now + interval
            self._next_look[peer] = (later, min(interval * 1.5, self._max_sweep))
            heapq.heappush(self._due, (later, peer))
            due.append(peer)
        return due, None

    def _sweep_forever(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._wake.clear()
                due, next_at = self._take_due(time.monotonic())
            for peer in due:
                try:
                    self._sweep(peer)
                except Exception:  # pragma: no cover - seen() never raises
                    log.exception("error looking for answers from %s", peer)
            if not due:
                self._wake.wait(None if next_at is None else max(0.0, next_at - time.monotonic()))

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
