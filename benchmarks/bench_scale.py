"""How syft-chat scales with its backlogs: a long outbox, a big database, waiting requests.

Figures, each against the performance goal (PASS / MISS):

* ``send_message`` latency (``timeout=0``, median of ``--sends`` sends, with p10-p90)
  with 0, 10,000 and (without ``--quick``) 100,000 messages queued for an offline peer;
  goal: within 1.2x of the empty outbox.
* RSS per queued message (``VmRSS`` growth while queueing, divided by the count);
  goal: <= 0.5 KiB.
* ``client()`` on an empty database and on a 1,000,000-message one (200,000 with
  ``--quick``); goal: <= 50 ms on the big one.
* With 10,000 requests (2,000 with ``--quick``) waiting at start: ``client()`` (goal
  <= 50 ms: it never waits for them), the first listener call after start (goal
  <= 1 s) and the drain rate (every waiting message announced; goal >= 500 msg/s). The
  requests come from one sender, so the receiver runs with the per-sender flood guard
  lifted (``sender_messages_per_minute``: by default 600 a minute, i.e. 10 msg/s).
* Threads and open file descriptors of one client that has written to 10, then 1,000
  peers (100 with ``--quick``) that never answer; goal: the same at both counts (reply
  watches are bounded: ``ChatSettings.reply_watches``).
* ``list_available_users()`` with 5,000 datasites in the workspace (1,000 with
  ``--quick``), median of 50 calls after the first, the first call too; goal: <= 20 ms.
* ``send_to_group`` at 50 members: the call's latency (goal <= 10 ms), the sender's CPU
  per member's copy until every copy is written (members that never answer, so only
  the sender runs; goal <= 1 ms), and with 50 real member clients the time until all
  50 confirmed, against one member's confirmation of a plain message (goal <= 1.5x
  that + 50 ms).

How the backlogs are made (so that ``--quick`` stays under ~30 s):

* the outbox is filled through ``send_message(..., timeout=0)`` itself, with the
  transport's file write switched off and the store's commits grouped (one
  transaction per 2,000): the in-memory state is exactly what sending leaves; the
  measured sends then write their request files and commit one by one, as always.
  The retry schedule is pushed out (``retry_initial`` = 1 h) so that no retry runs
  during the measurement.
* the big database is written with ``sqlite3.executemany`` into the store's own schema
  (short texts; every message delivered / announced, as in a long-lived client).
* waiting requests are real request files, written by the sender's transport with
  envelopes from its codec, while the receiver is not running.

Run with the project's virtualenv from the repository root; to compare with another
checkout, run the same file with ``PYTHONPATH=<that checkout>``::

    python benchmarks/bench_scale.py --quick
    PYTHONPATH=/path/to/main python benchmarks/bench_scale.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import syft_chat
from syft_chat.models import ChatMessage, Envelope
from syft_chat.plugins.sqlite.store import SQLiteStore
from syft_chat.testing import make_workspace

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"
FAR = {"retry_initial": 3600.0, "retry_max": 7200.0}
#: the waiting requests all come from one sender: without this, the flood guard
#: (``sender_messages_per_minute``, default 600) alone caps the drain at 10 msg/s
UNTHROTTLED = {"sender_messages_per_minute": 1_000_000, "sender_bytes_per_minute": 1 << 40}
results: list[tuple[str, str, str, str]] = []  # figure, value, goal, PASS/MISS/info


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def record(name: str, value: str, goal: str, ok: bool | None) -> None:
    verdict = "info" if ok is None else ("PASS" if ok else "MISS")
    results.append((name, value, goal, verdict))
    print(f"  {name}: {value} (goal {goal}) {verdict}  [load {load()}]", flush=True)


def quiet_client(config: Path, db: Path, **settings: Any) -> syft_chat.SyftChatClient:
    """A client with no installed plugins (the core is measured, as in bench_latency.py)."""
    return syft_chat.client(config, db_path=db, settings=settings or None, load_entry_points=False)


# --------------------------------------------------------------------------- the outbox


def time_sends(client: Any, n: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        client.send_message(BOB, f"timed {i}", timeout=0)
        times.append(time.perf_counter() - t0)
    return times


@contextlib.contextmanager
def no_files(client: Any) -> Iterator[None]:
    """The transport writes no request files meanwhile (sending is otherwise unchanged)."""
    transport = client.transport
    transport.send = lambda *a, **k: None
    try:
        yield
    finally:
        del transport.send


def fill(client: Any, count: int) -> None:
    with no_files(client):
        done = 0
        while done < count:
            with client.store.transaction():
                for _ in range(min(2000, count - done)):
                    client.send_message(BOB, f"queued {done}", timeout=0)
                    done += 1


def spread(times: list[float]) -> str:
    qs = statistics.quantiles(times, n=10)
    med = statistics.median(times)
    return f"{med * 1000:.2f} ms (p10 {qs[0] * 1000:.2f}, p90 {qs[-1] * 1000:.2f})"


def bench_outbox(root: Path, sizes: list[int], sends: int) -> None:
    print("send_message with messages queued for an offline peer", flush=True)
    configs = make_workspace(root / "outbox", [ALICE, BOB])
    bob = quiet_client(configs[BOB], root / "outbox" / "bob.db")
    bob.close()  # bob published his endpoint, then went offline
    alice = quiet_client(configs[ALICE], root / "outbox" / "alice.db", **FAR)
    try:
        time_sends(alice, 20)  # warm up (the first send watches bob's folder, ...)
        base = statistics.median(time_sends(alice, sends))
        queued = alice.pending_messages()
        record(f"send_message, {len(queued)} queued", f"{base * 1000:.2f} ms", "baseline", None)
        for size in sizes:
            have = len(alice.pending_messages())
            gc.collect()
            before = rss_bytes()
            fill(alice, size - have)
            gc.collect()
            per = (rss_bytes() - before) / max(1, size - have)
            times = time_sends(alice, sends)
            ratio = statistics.median(times) / base
            record(f"send_message, {size:,} queued", spread(times), "<= 1.2x empty", ratio <= 1.2)
            record(f"  ratio to empty, {size:,} queued", f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2)
            record(f"RSS per queued message ({size:,})", f"{per:.0f} B", "<= 512 B", per <= 512)
    finally:
        alice.close()


# --------------------------------------------------------------------------- the big database


def build_big(path: Path, n: int) -> None:
    SQLiteStore(path, owner=ALICE).close()  # the schema, as the store makes it
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    peers = [f"peer{i:03d}@openmined.org" for i in range(100)]
    start = datetime.now(timezone.utc) - timedelta(days=365)
    step = timedelta(days=365) / n
    cols = (
        "msg_id, sender, recipient, peer, content, timestamp, direction, status, updated_at,"
        " seq, conversation, notified, attempts"
    )

    def rows(lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
        for i in range(lo, hi):
            peer = peers[i % len(peers)]
            out = i % 2 == 0
            ts = (start + step * i).isoformat(sep=" ", timespec="microseconds")
            yield (
                str(uuid.uuid4()),
                ALICE if out else peer,
                peer if out else ALICE,
                peer,
                f"message {i}",
                ts,
                "out" if out else "in",
                "delivered" if out else "received",
                ts,
                i // len(peers) + 1,
                peer,
                1,
                1 if out else 0,
            )

    sql = f"INSERT INTO messages ({cols}) VALUES ({', '.join('?' * 13)})"
    for lo in range(0, n, 100_000):
        with conn:
            conn.executemany(sql, rows(lo, min(n, lo + 100_000)))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()


def time_client(config: Path, db: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client = quiet_client(config, db)
        times.append(time.perf_counter() - t0)
        client.close()
    return times


def bench_big_db(root: Path, n: int, runs: int) -> None:
    print(f"client() on an empty and a {n:,}-message database", flush=True)
    configs = make_workspace(root / "big", [ALICE])
    empty, big = root / "big" / "empty.db", root / "big" / "big.db"
    t0 = time.perf_counter()
    build_big(big, n)
    print(f"  (built {n:,} messages in {time.perf_counter() - t0:.1f} s)", flush=True)
    time_client(configs[ALICE], empty, 1)  # warm up (imports, plugin loading)
    time_client(configs[ALICE], big, 1)  # and the migration of the new file, if any
    e_times: list[float] = []
    b_times: list[float] = []
    for _ in range(runs):  # alternating
        e_times += time_client(configs[ALICE], empty, 1)
        b_times += time_client(configs[ALICE], big, 1)
    e, b = statistics.median(e_times) * 1000, statistics.median(b_times) * 1000
    record("client(), empty database", f"{e:.0f} ms", "info", None)
    record(
        f"client(), {n:,} messages",
        f"{b:.0f} ms (max {max(b_times) * 1000:.0f})",
        "<= 50 ms",
        b <= 50,
    )


# --------------------------------------------------------------------------- waiting requests


def write_requests(alice: Any, n: int) -> None:
    core, transport = alice._core, alice.transport
    expires = datetime.now(timezone.utc) + timedelta(days=1)
    for i in range(n):
        message = ChatMessage(
            msg_id=str(uuid.uuid4()), sender=ALICE, recipient=BOB, content=f"w{i}", seq=i + 1
        )
        envelope = Envelope.from_message(message, BOB, floor=None)
        body = core.hooks.encode_body(envelope, alice)
        transport.send(BOB, body, request_id=str(uuid.uuid4()), expires=expires)


def bench_waiting(root: Path, n: int, timeout: float) -> None:
    print(f"{n:,} requests waiting at start", flush=True)
    configs = make_workspace(root / "waiting", [ALICE, BOB])
    bob_db = root / "waiting" / "bob.db"
    quiet_client(configs[BOB], bob_db).close()  # publish, then go offline
    alice = quiet_client(configs[ALICE], root / "waiting" / "alice.db", **FAR)
    try:
        write_requests(alice, n)
    finally:
        alice.close()
    heard: list[float] = []
    done = threading.Event()

    def on_message(message: Any) -> None:
        heard.append(time.perf_counter())
        if len(heard) >= n:
            done.set()

    t0 = time.perf_counter()
    bob = quiet_client(configs[BOB], bob_db, **UNTHROTTLED)
    returned = time.perf_counter() - t0
    bob.add_message_listener(on_message)
    try:
        done.wait(timeout)
        took = (heard[-1] - t0) if heard else float("inf")
        first = (heard[0] - t0) if heard else float("inf")
        rate = len(heard) / took if heard else 0.0
        record(
            f"client(), {n:,} waiting", f"{returned * 1000:.0f} ms", "<= 50 ms", returned <= 0.05
        )
        record("first listener call after start", f"{first * 1000:.0f} ms", "<= 1 s", first <= 1)
        record(
            "drain rate (all announced)",
            f"{rate:.0f} msg/s ({len(heard):,} of {n:,} in {took:.1f} s)",
            ">= 500 msg/s",
            rate >= 500 and len(heard) == n,
        )
    finally:
        bob.close()


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- many peers


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def bench_peers(root: Path, counts: tuple[int, int], datasites: int) -> None:
    config = make_workspace(root / "peers", [ALICE])[ALICE]
    ds = root / "peers" / "datasites"

    def serving(email: str) -> None:  # the folder of a datasite serving chat; nobody answers
        (ds / email / "app_data" / "syft_chat" / "rpc" / "chat").mkdir(parents=True, exist_ok=True)

    with quiet_client(config, root / "peers.db", **FAR) as alice:
        seen = {}
        written = 0
        for count in counts:
            for i in range(written, count):
                serving(f"peer{i}@example.org")
                alice.send_message(f"peer{i}@example.org", "hi", timeout=0)
            written = count
            time.sleep(0.5)
            seen[count] = (threading.active_count(), open_fds())
        (few_t, few_f), (many_t, many_f) = seen[counts[0]], seen[counts[1]]
        record(
            f"threads, {counts[0]} -> {counts[1]} peers",
            f"{few_t} -> {many_t}",
            "constant",
            many_t <= few_t + 8,
        )
        record(
            f"fds, {counts[0]} -> {counts[1]} peers",
            f"{few_f} -> {many_f}",
            "constant",
            many_f <= few_f + 8,
        )
        for i in range(written, datasites):
            serving(f"peer{i}@example.org")
        t0 = time.perf_counter()
        found = alice.list_available_users()
        first = time.perf_counter() - t0
        assert len(found) == datasites, len(found)
        time.sleep(1.1)  # the folder's modification time has settled
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            alice.list_available_users()
            times.append(time.perf_counter() - t0)
        record(
            f"list_available_users(), {datasites} datasites",
            f"{spread(times)}; first call {first * 1000:.0f} ms",
            "<= 20 ms",
            statistics.median(times) <= 0.020,
        )


# --------------------------------------------------------------------------- groups


def bench_group(root: Path, members: int, runs: int) -> None:
    emails = [f"member{i}@example.org" for i in range(members)]
    configs = make_workspace(root / "group", [ALICE, *emails])
    ds = root / "group" / "datasites"
    for email in emails:  # serving, as the folder shows; nobody answers yet
        (ds / email / "app_data" / "syft_chat" / "rpc" / "chat").mkdir(parents=True, exist_ok=True)
    with quiet_client(configs[ALICE], root / "group" / "alice.db", **FAR) as alice:
        group = alice.create_group("everyone", emails)
        calls, cpu = [], []
        for i in range(runs):
            before = time.process_time()
            t0 = time.perf_counter()
            sent = alice.send_to_group(group.group_id, f"hello {i}")
            calls.append(time.perf_counter() - t0)
            while any(s.value == "queued" for s in alice.group_delivery(sent.message_id).values()):
                time.sleep(0.001)
            cpu.append((time.process_time() - before) / members)
        record(
            f"send_to_group() returns, {members} members",
            spread(calls),
            "<= 10 ms",
            statistics.median(calls) <= 0.010,
        )
        record(
            f"sender CPU per copy, {members} members",
            f"{statistics.median(cpu) * 1000:.2f} ms (max {max(cpu) * 1000:.2f})",
            "<= 1 ms",
            statistics.median(cpu) <= 0.001,
        )
        clients = [quiet_client(configs[e], root / "group" / f"{e}.db") for e in emails]
        try:
            one = []
            for i in range(runs):
                t0 = time.perf_counter()
                alice.send_message(emails[i % members], f"one {i}", timeout=10)
                one.append(time.perf_counter() - t0)
            # members were offline when the group was made: let the roster reach them
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(not c.list_groups() for c in clients):
                time.sleep(0.05)
            alls = []
            for i in range(runs):
                t0 = time.perf_counter()
                sent = alice.send_to_group(group.group_id, f"all {i}")
                while any(
                    s.value not in ("delivered", "read")
                    for s in alice.group_delivery(sent.message_id).values()
                ):
                    if time.perf_counter() - t0 > 30:
                        break
                    time.sleep(0.002)
                alls.append(time.perf_counter() - t0)
            goal = 1.5 * statistics.median(one) + 0.050
            record(
                f"all {members} confirmed vs one member",
                f"{statistics.median(alls) * 1000:.0f} ms"
                f" vs {statistics.median(one) * 1000:.1f} ms",
                f"<= {goal * 1000:.0f} ms",
                statistics.median(alls) <= goal,
            )
        finally:
            for c in clients:
                c.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized, under ~30 s")
    parser.add_argument("--sends", type=int, default=50, help="timed sends per figure (>= 50)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [10_000] if args.quick else [10_000, 100_000]
    big = 200_000 if args.quick else 1_000_000
    waiting = 2_000 if args.quick else 10_000
    print(f"syft_chat from {Path(syft_chat.__file__).parent}; load {load()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    started = time.perf_counter()
    try:
        bench_outbox(root, sizes, max(50, args.sends))
        bench_big_db(root, big, 3 if args.quick else 5)
        bench_waiting(root, waiting, 120 if args.quick else 600)
        bench_group(root, 50, 5)
        bench_peers(root, (10, 100 if args.quick else 1000), 1000 if args.quick else 5000)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'figure':<42} {'value':<44} {'goal':<14} result")
    for name, value, goal, verdict in results:
        print(f"{name:<42} {value:<44} {goal:<14} {verdict}")
    print(f"({time.perf_counter() - started:.0f} s, load {load()})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if any(v == "MISS" for *_, v in results) else 0


if __name__ == "__main__":
    sys.exit(main())
