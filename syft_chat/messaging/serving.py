"""One process serves a datasite's chat; the others on the same datasite follow it.

Two processes serving the same endpoint split the incoming messages between them: each
request is stored and announced by whichever process picked it up, so each process's
listeners hear only some. So exactly one process per ``(datasite, app)`` serves: it holds
an exclusive lock (``fcntl.flock``) on ``<data_dir>/.syft-chat/<app>/<email>.lock`` and
says who it is in ``<email>.serving.json`` beside it (pid, store, database, start time,
journal). Any other client for the same datasite and app, in another process or in the
same one, **follows** it:

* it does not serve (no syft-event server, so no request is handled twice or split);
* it sends normally: its own requests, its own reply watcher, its own retries;
* it hears every incoming message: the serving process appends the id of each message
  it announces to its *journal* (``<email>.<token>.journal``, one JSON line each, in the
  order it announces them, before its listeners run), and the follower reads the
  journal, loads each message from the database they share and announces it to its own
  listeners and plugins, per conversation in that order, once per process;
* it retries the lock a few times a second and, when the serving process stops (or
  dies: the kernel drops the lock), takes over: it reads the old journal to its end,
  then serves, announcing what the old process stored but never announced.

Following needs the same database: a follower loads what it hears from the store the
serving process wrote it to (and ``get_chat_history`` must show it). A client with
another database, or an in-memory store, is refused with :class:`AlreadyServedError`
naming the serving process and its database, rather than silently missing messages.
Bots answer in the serving process only, so an installed bot answers once per message.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from syft_chat.errors import AlreadyServedError

try:  # POSIX; elsewhere every client serves, as before
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FOLLOWING",
    "SERVING",
    "Follower",
    "Heard",
    "Journal",
    "ServingLock",
    "Site",
    "same_store",
]

log = logging.getLogger("syft_chat.serving")

SERVING = "serving"
FOLLOWING = "following"
#: how long a client waits for a serving process that holds the lock to say who it is
_NOTE_WAIT = 5.0
#: message ids a process remembers having announced (exactly once per process)
_HEARD_KEPT = 100_000


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def same_store(note: dict[str, Any], store: str, db_path: Path) -> bool:
    """Whether a client with ``store`` and ``db_path`` shares the serving process's store."""
    if note.get("store") != store or store == "memory":
        return False
    theirs = note.get("db_path")
    return isinstance(theirs, str) and _same_file(theirs, str(db_path))


def refusal(note: dict[str, Any], email: str, app: str, store: str, db_path: Path) -> str:
    """Why this client may not start next to the serving process ``note`` describes."""
    where = note.get("db_path") or "?"
    theirs = f"store {note.get('store')!r}, database {where}"
    ours = f"store {store!r}, database {db_path}"
    return (
        f"{email} (app {app!r}) is already served by process {note.get('pid', '?')} "
        f"on {note.get('host', '?')} ({theirs}, since {note.get('started', '?')}); this client "
        f"({ours}) cannot follow it: it would not see the messages that process stores. "
        f"Use the same database (db_path={where!r}, or `syft-chat --db {where}`), or stop "
        "that process first."
    )


@dataclass(frozen=True)
class Site:
    """What identifies a client for serving: its datasite and app, and its store."""

    folder: Path  # ``<data_dir>/.syft-chat/<app>``
    email: str
    app: str
    store: str
    db_path: Path

    def can_follow(self, note: dict[str, Any]) -> bool:
        return same_store(note, self.store, self.db_path)

    def refused(self, note: dict[str, Any]) -> AlreadyServedError:
        return AlreadyServedError(
            refusal(note, self.email, self.app, self.store, self.db_path), note=note
        )


@dataclass
class ServingLock:
    """The lock that makes one process serve ``email``'s chat (``app``) at a time."""

    folder: Path
    email: str

    def __post_init__(self) -> None:
        self.path = self.folder / f"{self.email}.lock"
        self.note_path = self.folder / f"{self.email}.serving.json"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no process (this one included) holds it; never blocks."""
        if self._fd is not None:
            return True
        if fcntl is None:  # pragma: no cover - no locking here: serve, as before
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def publish(self, note: dict[str, Any]) -> None:
        """Say who serves (written atomically: readers never see half a note)."""
        tmp = self.note_path.with_name(f".{self.note_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(note), encoding="utf-8")
        os.replace(tmp, self.note_path)

    def read_note(self) -> dict[str, Any] | None:
        try:
            note = json.loads(self.note_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return note if isinstance(note, dict) else None

    def wait_for_note(self, timeout: float = _NOTE_WAIT) -> dict[str, Any] | None:
        """The serving process's note, once it wrote one that is not stale.

        A note is stale when its process no longer holds the lock; the lock holder
        writes its note right after taking the lock, so a short wait is enough.
        """
        end = time.monotonic() + timeout
        while True:
            note = self.read_note()
            if note is not None and not self.is_stale(note):
                return note
            if time.monotonic() > end:
                return note
            time.sleep(0.05)

    def is_stale(self, note: dict[str, Any]) -> bool:
        # the note names the pid that wrote it; a note left by a dead process is stale
        pid = note.get("pid")
        if not isinstance(pid, int) or note.get("host") != platform.node():
            return False
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def release(self, journal: Path | None = None) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            note = self.read_note()
            if journal is not None and note is not None and note.get("journal") == str(journal):
                self.note_path.unlink(missing_ok=True)  # ours: nobody serves now
            if journal is not None:
                journal.unlink(missing_ok=True)  # followers read an open journal to its end
        except OSError:  # pragma: no cover - best effort
            pass
        finally:
            os.close(fd)  # releases the flock

    def clean_journals(self, keep: Path) -> None:
        """Remove journals older serving processes left behind (a crash)."""
        for stale in self.folder.glob(f"{self.email}.*.journal"):
            if stale != keep:
                stale.unlink(missing_ok=True)


def make_note(*, email: str, app: str, store: str, db_path: Path, journal: Path) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": platform.node(),
        "email": email,
        "app": app,
        "store": store,
        "db_path": str(db_path.resolve()) if store != "memory" else str(db_path),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "journal": str(journal),
        "token": journal.stem.rsplit(".", 1)[-1],
    }


def journal_path(folder: Path, email: str) -> Path:
    return folder / f"{email}.{secrets.token_hex(6)}.journal"


class Journal:
    """The serving process's list of what it announced, for the followers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, msg_id: str, peer: str) -> None:
        line = (json.dumps({"id": msg_id, "peer": peer}) + "\n").encode()
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, line)  # one append of a short line: never interleaved
            except OSError as exc:
                log.error("could not tell followers about %s: %s", msg_id, exc)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class JournalReader:
    """Reads a journal from where it was opened (the end, or the start), whole lines only."""

    def __init__(self, path: Path, *, from_start: bool) -> None:
        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - kept open: survives its unlinking
        if not from_start:
            self._file.seek(0, os.SEEK_END)
        self._rest = b""

    def read(self) -> list[tuple[str, str]]:
        data = self._rest + self._file.read()
        lines = data.split(b"\n")
        self._rest = lines.pop()
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
                entries.append((str(entry["id"]), str(entry["peer"])))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable journal line in %s", self.path)
        return entries

    def close(self) -> None:
        self._file.close()


class Heard:
    """The messages this process announced (so that it announces each once), by
    ``(sender, msg_id)``: message ids are per sender."""

    def __init__(self, kept: int = _HEARD_KEPT) -> None:
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._kept = kept
        self._lock = threading.Lock()

    def first_time(self, msg_id: str, sender: str) -> bool:
        key = (sender, msg_id)
        with self._lock:
            if key in self._ids:
                return False
            self._ids[key] = None
            if len(self._ids) > self._kept:
                self._ids.popitem(last=False)
            return True


class Follower:
    """The thread of a following client: reads the journal, retries the lock.

    ``hear(msg_id, peer)`` is called for every journal entry, in order;
    ``take_over()`` once this process got the lock (after the old journal was read to
    its end); ``conflict(note)`` when a new serving process cannot be followed.
    """

    def __init__(
        self,
        lock: ServingLock,
        note: dict[str, Any],
        *,
        hear: Callable[[str, str], None],
        take_over: Callable[[], None],
        compatible: Callable[[dict[str, Any]], bool],
        interval: float = 0.2,
        name: str = "syft-chat-follower",
    ) -> None:
        self._lock = lock
        self._hear = hear
        self._take_over = take_over
        self._compatible = compatible
        self._interval = interval
        self._stop = threading.Event()
        self.leader = note
        self._reader: JournalReader | None = self._open(note, from_start=False)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _open(self, note: dict[str, Any], *, from_start: bool) -> JournalReader | None:
        path = note.get("journal")
        if not isinstance(path, str):
            return None
        try:
            return JournalReader(Path(path), from_start=from_start)
        except OSError:
            return None  # not written yet, or its process is gone: the next note tells

    def _drain(self) -> None:
        if self._reader is None:
            return
        try:
            entries = self._reader.read()
        except OSError as exc:  # pragma: no cover - a local file that is open
            log.warning("could not read the journal %s: %s", self._reader.path, exc)
            return
        for msg_id, peer in entries:
            try:
                self._hear(msg_id, peer)
            except Exception:  # pragma: no cover - hear isolates plugins
                log.exception("could not announce %s from the journal", msg_id)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._drain()
                if self._lock.try_acquire():
                    self._drain()  # what the old serving process announced last
                    self._close_reader()
                    if not self._stop.is_set():
                        self._take_over()
                    return
                self._follow_new_leader()
            except Exception:  # never let the thread die: it is what hears
                log.exception("following the serving process failed; trying again")

    def _follow_new_leader(self) -> None:
        note = self._lock.read_note()
        if note is None or note.get("journal") == self.leader.get("journal"):
            if self._reader is None and note is not None:
                self._reader = self._open(note, from_start=True)
            return
        if self._lock.is_stale(note):
            return
        self._drain()  # the end of the old journal first
        self._close_reader()
        if not self._compatible(note):
            if note.get("token") != self.leader.get("conflict"):
                log.error(
                    "cannot follow the new serving process %s (store %r, database %s): this "
                    "client does not hear new messages until it stops or this one takes over",
                    note.get("pid"),
                    note.get("store"),
                    note.get("db_path"),
                )
            self.leader = {**note, "journal": None, "conflict": note.get("token")}
            return
        self.leader = note
        self._reader = self._open(note, from_start=True)  # everything the new one announced

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(5)
        self._close_reader()
