"""The floor syft-chat is measured against: a raw syft-rpc + syft-event echo.

This is the fastest raw setup (a watchdog server, atomic writes), written with
nothing but the three SyftBox libraries, so that a benchmark of syft-chat can
say how much its kernel, plugins and store cost on top of the wire:

* **server** — ``syft_event.SyftEvents(app, client=...)`` with one
  ``on_request("/chat")`` handler that stores nothing and returns a small JSON
  dict (syft-event writes that response *in place*);
* **client** — builds a ``syft_rpc.protocol.SyftRequest`` (URL from
  ``syft_rpc.rpc.make_url``, body from ``syft_rpc.rpc.serialize``), writes it
  to a temporary file in the request folder and ``os.replace``\\ s it to
  ``<id>.request``; responses are detected by ONE watchdog observer on that
  folder (not a polling future per message). Because the response is written
  in place, a partially written file is expected: its parse is retried briefly.

Both ends run in one process, so "send -> handler" is measured with a plain
shared dict of ``time.perf_counter()`` stamps.

Use it as a module (``run_raw_latency``, ``run_raw_throughput``) or run it::

    python benchmarks/raw_baseline.py --messages 200 --senders 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

# run as `python benchmarks/x.py` from anywhere: benchmark this checkout's syft_chat
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syft_core import Client
from syft_event import Request, SyftEvents
from syft_rpc import rpc
from syft_rpc.protocol import SyftMethod, SyftRequest, SyftResponse
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from syft_chat.testing import make_workspace

__all__ = [
    "APP_NAME",
    "RawEcho",
    "percentile",
    "print_table",
    "quiet_logs",
    "run_raw_cold_start",
    "run_raw_latency",
    "run_raw_throughput",
    "start_raw_server",
    "summarize_ms",
]

APP_NAME = "raw_echo_bench"
SERVER = "bob@openmined.org"
#: How long a reader keeps retrying a response file that does not parse yet (written in place).
PARTIAL_RETRY_S = 0.2
#: Give up on one request after this long (counted as an error, never hangs the benchmark).
REQUEST_TIMEOUT_S = 10.0
#: A round trip longer than this is a "stall" (watchdog's 0.5 s rename-pairing delay).
STALL_S = 0.25


def quiet_logs() -> None:
    """Silence loguru (syft-event logs every file event at DEBUG)."""
    import logging

    from loguru import logger

    logger.remove()
    # watchdog logs a harmless error when an observer is stopped mid-read
    logging.getLogger("watchdog").setLevel(logging.CRITICAL)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summarize_ms(samples_s: list[float]) -> dict[str, float]:
    """``{median_ms, p95_ms}`` of samples given in seconds (NaN when empty)."""
    if not samples_s:
        return {"median_ms": float("nan"), "p95_ms": float("nan")}
    return {
        "median_ms": statistics.median(samples_s) * 1000,
        "p95_ms": percentile(samples_s, 95) * 1000,
    }


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print a plain text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return " | ".join(cells)

    print(fmt(headers))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(fmt(row))


class _ResponseWatcher(FileSystemEventHandler):
    """Handles every response event of one sender folder (runs on the observer thread)."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        path = event.dest_path or event.src_path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if path.endswith(".response"):
            self.sender.response_event(Path(path))


class _Sender:
    """One sending datasite: atomic request writer plus one response observer."""

    def __init__(
        self, email: str, config: Path, server: str, app_name: str, tmp_dir: Path | None = None
    ) -> None:
        self.email = email
        self.client = Client.load(config)
        self.url = rpc.make_url(server, app_name, "chat")
        self.folder = self.url.to_local_path(self.client.workspace.datasites) / email
        self.folder.mkdir(parents=True, exist_ok=True)
        #: where the temporary file is written before ``os.replace`` (default: the request folder)
        self.tmp_dir = tmp_dir or self.folder
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[float, threading.Event]] = {}
        self.round_trip: dict[str, float] = {}
        self.status: dict[str, int] = {}
        self.partial_retries = 0
        self.observer = Observer()
        self.observer.schedule(_ResponseWatcher(self), str(self.folder), recursive=False)
        self.observer.start()

    def send(self, payload: dict[str, Any], *, t0: float | None = None) -> str:
        """Write one request atomically; return its id. ``t0`` is when "send" began."""
        t0 = time.perf_counter() if t0 is None else t0
        request = SyftRequest(
            sender=self.email,
            method=SyftMethod.POST,
            url=self.url,
            body=rpc.serialize(payload),
            expires=datetime.now(timezone.utc) + timedelta(minutes=15),
        )
        rid = str(request.id)
        done = threading.Event()
        with self._lock:
            self._pending[rid] = (t0, done)
        tmp = self.tmp_dir / f".{rid}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(request.dumps())
        os.replace(tmp, self.folder / f"{rid}.request")
        return rid

    def wait(self, rid: str, timeout: float = REQUEST_TIMEOUT_S) -> bool:
        with self._lock:
            entry = self._pending.get(rid)
        if entry is None:
            return rid in self.round_trip
        return entry[1].wait(timeout)

    def response_event(self, path: Path) -> None:
        rid = path.stem
        with self._lock:
            entry = self._pending.get(rid)
        if entry is None:  # already resolved (a later modify/close event of the same file)
            return
        deadline = time.perf_counter() + PARTIAL_RETRY_S
        while True:
            try:
                response = SyftResponse.loads(path.read_bytes())
                break
            except FileNotFoundError:
                return
            except ValueError:  # partial JSON (pydantic.ValidationError is a ValueError)
                if time.perf_counter() > deadline:
                    return  # a later modify/close event retries
                self.partial_retries += 1
                time.sleep(0.0005)
        t1 = time.perf_counter()
        with self._lock:
            entry = self._pending.pop(rid, None)
        if entry is None:
            return
        self.round_trip[rid] = t1 - entry[0]
        self.status[rid] = int(response.status_code)
        entry[1].set()
        # what syft-rpc's resolve() does: the exchange is over, remove both files
        path.unlink(missing_ok=True)
        path.with_suffix(".request").unlink(missing_ok=True)

    def close(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)


def start_raw_server(
    config: Path, app_name: str = APP_NAME, on_handled: Callable[[str], None] | None = None
) -> SyftEvents:
    """Start the raw echo server for the datasite of ``config``.

    Its one handler calls ``on_handled(request_id)`` (if given), stores nothing and
    returns a small JSON dict. Stop it with ``.stop()``.
    """
    server = SyftEvents(app_name, client=Client.load(config))

    @server.on_request("/chat")
    def chat(request: Request) -> dict:
        if on_handled is not None:
            on_handled(request.id)
        return {"status": "ok", "id": request.id}

    server.start()
    return server


class RawEcho:
    """A workspace with one raw syft-event echo server and ``senders`` raw senders."""

    def __init__(
        self,
        root: Path,
        senders: int = 1,
        app_name: str = APP_NAME,
        *,
        tmp_outside: bool = False,
    ) -> None:
        self.root = Path(root)
        self.app_name = app_name
        self.sender_emails = [f"sender{i}@openmined.org" for i in range(senders)]
        configs = make_workspace(self.root, [SERVER, *self.sender_emails])
        #: request id -> perf_counter() when the server handler was invoked
        self.handled: dict[str, float] = {}
        handled = self.handled

        def on_handled(rid: str) -> None:
            handled[rid] = time.perf_counter()

        self.server = start_raw_server(configs[SERVER], app_name, on_handled)
        # tmp_outside: write the temporary file in a folder no observer watches, so the
        # rename reaches the watchers as a lone IN_MOVED_TO (see README: the 0.5 s stall)
        tmp_dir = self.root / "tmp" if tmp_outside else None
        self.senders = [
            _Sender(e, configs[e], SERVER, app_name, tmp_dir) for e in self.sender_emails
        ]

    def close(self) -> None:
        for sender in self.senders:
            sender.close()
        self.server.stop()


@contextmanager
def raw_echo(senders: int = 1, *, tmp_outside: bool = False) -> Iterator[RawEcho]:
    """A :class:`RawEcho` in a temporary directory, torn down (and removed) on exit."""
    root = Path(tempfile.mkdtemp(prefix="syftchat-raw-"))
    echo = None
    try:
        echo = RawEcho(root, senders, tmp_outside=tmp_outside)
        yield echo
    finally:
        if echo is not None:
            echo.close()
        shutil.rmtree(root, ignore_errors=True)


def _warm_up(echo: RawEcho, count: int = 10) -> None:
    for sender in echo.senders:
        for i in range(count):
            sender.wait(sender.send({"text": f"warm-up {i}"}))


def run_raw_latency(n: int = 200, *, tmp_outside: bool = False) -> dict[str, Any]:
    """One sender, ``n`` sequential messages.

    Returns ``median_ms``/``p95_ms`` of send -> server handler invoked (the figure
    comparable to syft-chat's send -> listener) and ``rtt_median_ms``/``rtt_p95_ms``
    of send -> response parsed by the sender, plus ``errors``, ``stalls`` (round
    trips over ``STALL_S``) and the samples in seconds (``one_way_s``, ``rtt_s``).
    ``tmp_outside`` writes the temporary file outside the watched folder instead of
    beside the request.
    """
    quiet_logs()
    with raw_echo(1, tmp_outside=tmp_outside) as echo:
        _warm_up(echo)
        sender = echo.senders[0]
        one_way: list[float] = []
        rtt: list[float] = []
        errors = 0
        for i in range(n):
            t0 = time.perf_counter()
            rid = sender.send({"text": f"hello {i}"}, t0=t0)
            if not sender.wait(rid) or sender.status.get(rid) != 200:
                errors += 1
                continue
            one_way.append(echo.handled[rid] - t0)
            rtt.append(sender.round_trip[rid])
        retries = sender.partial_retries
    handler = summarize_ms(one_way)
    trip = summarize_ms(rtt)
    stalls = sum(1 for x in rtt if x > STALL_S)
    return {
        "median_ms": handler["median_ms"],
        "p95_ms": handler["p95_ms"],
        "rtt_median_ms": trip["median_ms"],
        "rtt_p95_ms": trip["p95_ms"],
        "n": n,
        "errors": errors,
        "stalls": stalls,
        "partial_response_retries": retries,
        "one_way_s": one_way,  # type: ignore[dict-item]  # the samples, for pooling rounds
        "rtt_s": rtt,  # type: ignore[dict-item]
    }


def timed_senders(
    senders: int, per_sender: int, send_one: Callable[[int, int], bool]
) -> tuple[int, float]:
    """Run ``send_one(sender_index, i)`` ``per_sender`` times on each of ``senders``
    threads, started together. Returns (how many returned True, seconds taken)."""
    ok = [0] * senders
    barrier = threading.Barrier(senders + 1)

    def run(idx: int) -> None:
        barrier.wait()
        for i in range(per_sender):
            if send_one(idx, i):
                ok[idx] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(senders)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return sum(ok), time.perf_counter() - start


def run_raw_throughput(senders: int = 8, n: int = 400, *, tmp_outside: bool = False) -> float:
    """``senders`` distinct datasites, each on its own thread sending one message at a
    time (send, wait for the response, next) to one server; ``n`` messages in total.

    Returns completed round trips per second (failures are not counted).
    """
    quiet_logs()
    per_sender = max(1, n // senders)
    with raw_echo(senders, tmp_outside=tmp_outside) as echo:
        _warm_up(echo, 3)

        def send_one(idx: int, i: int) -> bool:
            sender = echo.senders[idx]
            rid = sender.send({"text": f"msg {i} from {sender.email}"})
            return bool(sender.wait(rid) and sender.status.get(rid) == 200)

        ok, elapsed = timed_senders(senders, per_sender, send_one)
    return ok / elapsed


def run_raw_cold_start(*, tmp_outside: bool = False) -> dict[str, float]:
    """Seconds from constructing the ``SyftEvents`` server to ``start()`` returning
    (``start_s``) and to the handler seeing the first request (``first_request_s``).

    The sender (and its observer) exists before the clock starts, as a running peer would.
    ``tmp_outside`` as for :func:`run_raw_latency`.
    """
    quiet_logs()
    root = Path(tempfile.mkdtemp(prefix="syftchat-rawcold-"))
    server = None
    sender = None
    try:
        sender_email = "sender0@openmined.org"
        configs = make_workspace(root, [SERVER, sender_email])
        tmp_dir = root / "tmp" if tmp_outside else None
        sender = _Sender(sender_email, configs[sender_email], SERVER, APP_NAME, tmp_dir)
        handled = threading.Event()
        t0 = time.perf_counter()
        server = start_raw_server(configs[SERVER], APP_NAME, lambda rid: handled.set())
        t_start = time.perf_counter()
        sender.send({"text": "first"})
        if not handled.wait(REQUEST_TIMEOUT_S):
            raise RuntimeError("the raw server never saw the first request")
        t_first = time.perf_counter()
        return {"start_s": t_start - t0, "first_request_s": t_first - t0}
    finally:
        if sender is not None:
            sender.close()
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per figure")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (a few seconds)")
    parser.add_argument(
        "--tmp-outside",
        action="store_true",
        help="also measure with the temporary file outside the watched folder",
    )
    args = parser.parse_args(argv)
    n = 50 if args.quick else args.messages
    variants = [False, True] if args.tmp_outside else [False]
    print(f"{'figure':<44} {'value':>10}")
    for outside in variants:
        tag = " (tmp outside)" if outside else ""
        lat = run_raw_latency(n, tmp_outside=outside)
        print(f"{'send->handler median ms' + tag:<44} {lat['median_ms']:>10.2f}")
        print(f"{'send->handler p95 ms' + tag:<44} {lat['p95_ms']:>10.2f}")
        print(f"{'round trip median ms' + tag:<44} {lat['rtt_median_ms']:>10.2f}")
        print(f"{'round trip p95 ms' + tag:<44} {lat['rtt_p95_ms']:>10.2f}")
        print(f"{'errors' + tag:<44} {lat['errors']:>10d}")
        for s in sorted({1, args.senders}):
            rate = run_raw_throughput(s, max(n, 8 * s), tmp_outside=outside)
            print(f"{f'throughput {s} sender(s) msg/s' + tag:<44} {rate:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
