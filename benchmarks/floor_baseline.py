"""The physical floor: a bare atomic file write seen by a watchdog observer, and read.

No SyftBox library at all, only the stdlib, watchdog and sqlite3, so that a
benchmark can say what the folder transport itself costs on this machine:

* **floor** - the sender writes a small JSON file to a temporary file OUTSIDE
  every watched folder and ``os.replace``\\ s it into the receiver's folder; one
  watchdog observer on that folder fires and the receiver reads the file (one
  way = write start -> receiver has read it). For the round trip the receiver
  answers the same way into the sender's folder, where the sender's own
  observer fires and the sender reads the answer.
* **durable floor** - the same, plus what syft-chat's default durability
  (``ChatSettings.durable=True``) adds per side: one ``sqlite3`` ``INSERT`` +
  ``COMMIT`` into a WAL database with ``synchronous=FULL`` (the pragmas of
  ``syft_chat.plugins.sqlite.store``); the sender stores before it writes, the
  receiver stores what it read (one way ends after that commit, as syft-chat's
  listener hears a message once it is committed); and the answer file is ``fsync``\\ ed
  before its rename (``syft_chat.plugins.syft_rpc.files``, like syft-chat's response
  files, whose folder is not synced: a lost rename is answered again; request files are
  not synced, there either).

Both ends run in one process, so one way is measured with shared
``time.perf_counter()`` stamps. The exchange's files are removed once the answer
was read (after the clock stopped), as syft-rpc's resolve does.

Use it as a module (``run_floor_latency``) or run it::

    python benchmarks/floor_baseline.py --messages 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

__all__ = ["Floor", "run_floor_latency"]

#: Give up on one message after this long (counted as an error, never hangs the benchmark).
TIMEOUT_S = 10.0
#: A round trip longer than this is a "stall" (as in raw_baseline.py).
STALL_S = 0.25
#: syft-chat's SQLite pragmas (``SQLiteStore``), with ``synchronous`` as for ``durable=True``.
PRAGMAS = (
    ("busy_timeout", 5000),
    ("journal_mode", "wal"),
    ("synchronous", "FULL"),
    ("foreign_keys", 1),
)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL,"
    " sender TEXT NOT NULL, body TEXT NOT NULL, ts REAL NOT NULL)"
)


def atomic_write(path: Path, tmp_dir: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``tmp_dir`` (unwatched), then ``os.replace`` it to ``path``."""
    tmp = tmp_dir / f".{path.name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


class _Store:
    """One side's database: a WAL file with ``synchronous=FULL``, one insert per message."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        for name, value in PRAGMAS:
            self.conn.execute(f"PRAGMA {name}={value}")
        self.conn.execute(SCHEMA)

    def insert(self, msg_id: str, sender: str, body: str) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute(
            "INSERT INTO messages (msg_id, sender, body, ts) VALUES (?, ?, ?, ?)",
            (msg_id, sender, body, time.time()),
        )
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class _Watcher(FileSystemEventHandler):
    """Calls ``fn(path)`` for each file of ``suffix`` appearing in the watched folder."""

    def __init__(self, suffix: str, fn: Any) -> None:
        self.suffix = suffix
        self.fn = fn

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        path = event.dest_path or event.src_path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if path.endswith(self.suffix):
            self.fn(Path(path))


class Floor:
    """A sender and a receiver folder, one observer on each, in ``root``."""

    def __init__(self, root: Path, *, durable: bool = False) -> None:
        self.root = Path(root)
        self.durable = durable
        self.tmp = self.root / "tmp"  # no observer watches it (same filesystem)
        self.to_receiver = self.root / "receiver"
        self.to_sender = self.root / "sender"
        for folder in (self.tmp, self.to_receiver, self.to_sender):
            folder.mkdir(parents=True, exist_ok=True)
        self.sender_db = _Store(self.root / "sender.db") if durable else None
        self.receiver_db = _Store(self.root / "receiver.db") if durable else None
        self._lock = threading.Lock()
        #: message id -> perf_counter() when the receiver had read (and stored) it
        self.received: dict[str, float] = {}
        #: message id -> perf_counter() when the sender had read the answer
        self.answered: dict[str, float] = {}
        self._done: dict[str, threading.Event] = {}
        self._observers = []
        for folder, suffix, fn in (
            (self.to_receiver, ".msg", self._on_message),
            (self.to_sender, ".ack", self._on_answer),
        ):
            observer = Observer()
            observer.schedule(_Watcher(suffix, fn), str(folder), recursive=False)
            observer.start()
            self._observers.append(observer)

    def send(self, text: str) -> str:
        """Store (durable floor) and write one message; return its id."""
        msg_id = uuid.uuid4().hex
        with self._lock:
            self._done[msg_id] = threading.Event()
        body = json.dumps({"id": msg_id, "sender": "alice", "text": text})
        if self.sender_db is not None:
            self.sender_db.insert(msg_id, "alice", body)
        atomic_write(self.to_receiver / f"{msg_id}.msg", self.tmp, body.encode())
        return msg_id

    def wait(self, msg_id: str, timeout: float = TIMEOUT_S) -> bool:
        with self._lock:
            done = self._done.get(msg_id)
        return done is not None and done.wait(timeout)

    def _on_message(self, path: Path) -> None:  # the receiver's observer thread
        msg_id = path.stem
        with self._lock:
            if msg_id in self.received:  # a later event of the same file
                return
        try:
            message = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return
        if self.receiver_db is not None:
            self.receiver_db.insert(message["id"], message["sender"], json.dumps(message))
        now = time.perf_counter()
        with self._lock:
            self.received[msg_id] = now
        answer = json.dumps({"id": msg_id, "status": "delivered"}).encode()
        atomic_write(self.to_sender / f"{msg_id}.ack", self.tmp, answer, durable=self.durable)

    def _on_answer(self, path: Path) -> None:  # the sender's observer thread
        msg_id = path.stem
        with self._lock:
            done = self._done.get(msg_id)
            if done is None or done.is_set():
                return
        try:
            json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return
        now = time.perf_counter()
        with self._lock:
            self.answered[msg_id] = now
        done.set()
        path.unlink(missing_ok=True)  # the exchange is over (clock already stopped)
        (self.to_receiver / f"{msg_id}.msg").unlink(missing_ok=True)

    def close(self) -> None:
        for observer in self._observers:
            observer.stop()
        for observer in self._observers:
            observer.join(timeout=5)
        for db in (self.sender_db, self.receiver_db):
            if db is not None:
                db.close()


def run_floor_latency(n: int = 200, *, durable: bool = False) -> dict[str, Any]:
    """``n`` sequential messages (after 10 warm-up ones) through a fresh :class:`Floor`.

    Returns the samples in seconds, ``one_way_s`` (send start -> receiver has read
    it, and for ``durable`` committed it) and ``rtt_s`` (send start -> sender has
    read the answer), with ``errors``, ``stalls`` and their median/p95 in ms
    (the same keys as ``raw_baseline.run_raw_latency``).
    """
    root = Path(tempfile.mkdtemp(prefix="syftchat-floor-"))
    floor = None
    one_way: list[float] = []
    rtt: list[float] = []
    errors = 0
    try:
        floor = Floor(root, durable=durable)
        for i in range(10):
            floor.wait(floor.send(f"warm-up {i}"))
        for i in range(n):
            t0 = time.perf_counter()
            msg_id = floor.send(f"hello {i}")
            if not floor.wait(msg_id):
                errors += 1
                continue
            one_way.append(floor.received[msg_id] - t0)
            rtt.append(floor.answered[msg_id] - t0)
    finally:
        if floor is not None:
            floor.close()
        shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {"n": n, "errors": errors, "one_way_s": one_way, "rtt_s": rtt}
    for key, samples in (("", one_way), ("rtt_", rtt)):
        out[f"{key}median_ms"] = statistics.median(samples) * 1000 if samples else float("nan")
        out[f"{key}p95_ms"] = _p95(samples) * 1000 if samples else float("nan")
    out["stalls"] = sum(1 for x in rtt if x > STALL_S)
    return out


def _p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (as ``raw_baseline.percentile``)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per figure")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (a few seconds)")
    args = parser.parse_args(argv)
    n = 50 if args.quick else args.messages
    print(f"{'figure':<40} {'value':>10}")
    errors = 0
    for durable in (False, True):
        tag = "durable floor" if durable else "floor"
        lat = run_floor_latency(n, durable=durable)
        print(f"{tag + ' one way median ms':<40} {lat['median_ms']:>10.2f}")
        print(f"{tag + ' one way p95 ms':<40} {lat['p95_ms']:>10.2f}")
        print(f"{tag + ' round trip median ms':<40} {lat['rtt_median_ms']:>10.2f}")
        print(f"{tag + ' round trip p95 ms':<40} {lat['rtt_p95_ms']:>10.2f}")
        print(f"{tag + ' errors':<40} {lat['errors']:>10d}")
        errors += lat["errors"]
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
