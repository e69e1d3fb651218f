"""History queries on a large message database: syft-chat's store vs hand-written SQL.

Builds a database of ``--messages`` messages (default 1,000,000) across
``--peers`` peers (default 100): the schema is created by
``syft_chat.plugins.sqlite_store.SQLiteStore`` itself, a few thousand rows go
through ``SQLiteStore.add`` (timed), and the bulk is inserted with
``sqlite3.executemany`` into the same ``messages`` columns. Then it times,
over ``--queries`` randomised queries each (default 200):

* ``history(peer=..., limit=50)``   a conversation's newest page
* ``history(since=..., limit=50)``  newest page after a point in time
* ``history(thread_id=..., limit=50)``  a thread

against the same query written by hand in SQL through stdlib ``sqlite3`` on the
same file (rows fetched as tuples, no model objects), and reports the database
size per million messages.

    python benchmarks/bench_history.py                 # 1M messages (~1-2 min to build)
    python benchmarks/bench_history.py --quick         # CI-sized: 20k messages, < 20 s
    python benchmarks/bench_history.py --db /tmp/h.db  # keep the file and reuse it next run
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

# run as `python benchmarks/x.py` from anywhere: benchmark this checkout's syft_chat
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from raw_baseline import percentile, print_table

from syft_chat.models import ChatMessage, Direction, MessageStatus
from syft_chat.plugins.sqlite_store import SQLiteStore

OWNER = "me@openmined.org"
GOAL_MS = 5.0
#: Messages of one conversation block share a peer; every other block is a thread.
BLOCK = 20
#: The generated messages span this much time, ending now.
SPAN = timedelta(days=365)
COLUMNS = (
    "msg_id, sender, recipient, peer, content, timestamp, thread_id, reply_to,"
    " metadata, direction, status, updated_at"
)
READ = "msg_id, sender, content, timestamp, thread_id, reply_to, metadata, recipient, status"
WORDS = [
    "hello",
    "results",
    "dataset",
    "model",
    "ok",
    "thanks",
    "see",
    "attached",
    "when",
    "can",
    "you",
    "run",
    "the",
    "job",
    "again",
    "on",
    "my",
    "data",
    "please",
    "review",
    "it",
    "looks",
    "good",
    "numbers",
    "are",
    "off",
    "let",
    "me",
    "check",
    "tomorrow",
]


def fmt_ts(value: datetime) -> str:
    """The store's timestamp text format (fixed-width UTC, so text order is time order)."""
    return value.astimezone(timezone.utc).isoformat(sep=" ", timespec="microseconds")


def peers(count: int) -> list[str]:
    return [f"peer{i:03d}@openmined.org" for i in range(count)]


def thread_of(i: int) -> str | None:
    block = i // BLOCK
    return f"thread-{block}" if block % 2 == 0 else None


def generate_rows(start: int, stop: int, n: int, peer_list: list[str], rng: random.Random):
    """Rows ``start..stop`` of ``n`` as tuples in COLUMNS order, oldest first."""
    t_end = datetime.now(timezone.utc)
    t_begin = t_end - SPAN
    step = SPAN / max(n, 1)
    rows = []
    for i in range(start, stop):
        peer = peer_list[(i // BLOCK) % len(peer_list)]
        outgoing = rng.random() < 0.5
        ts = fmt_ts(t_begin + step * i)
        content = " ".join(rng.choices(WORDS, k=rng.randint(3, 20)))
        rows.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                OWNER if outgoing else peer,
                peer if outgoing else OWNER,
                peer,
                content,
                ts,
                thread_of(i),
                None,
                "{}",
                "out" if outgoing else "in",
                "delivered" if outgoing else "received",
                ts,
            )
        )
    return rows


def build(path: Path, n: int, n_peers: int, via_store: int, seed: int = 1) -> dict[str, float]:
    """Create the database at ``path``: ``via_store`` rows through ``SQLiteStore.add``
    (timed), the rest by ``executemany``. Returns timings."""
    rng = random.Random(seed)
    peer_list = peers(n_peers)
    store = SQLiteStore(path, owner=OWNER)
    via_store = min(via_store, n)
    add_times: list[float] = []
    try:
        for row in generate_rows(n - via_store, n, n, peer_list, rng):
            msg = ChatMessage(
                msg_id=row[0],
                sender=row[1],
                recipient=row[2],
                content=row[4],
                timestamp=datetime.fromisoformat(row[5]),
                thread_id=row[6],
            )
            direction = Direction.OUTGOING if row[9] == "out" else Direction.INCOMING
            status = MessageStatus.DELIVERED if row[9] == "out" else MessageStatus.RECEIVED
            t0 = time.perf_counter()
            store.add(msg, direction=direction, peer=row[3], status=status)
            add_times.append(time.perf_counter() - t0)
    finally:
        store.close()

    # the bulk: same table, same columns, the store's own schema and indexes
    t0 = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    chunk = 50_000
    placeholders = ", ".join("?" * len(COLUMNS.split(",")))
    sql = f"INSERT INTO messages ({COLUMNS}) VALUES ({placeholders})"
    for start in range(0, n - via_store, chunk):
        stop = min(start + chunk, n - via_store)
        with conn:
            conn.executemany(sql, generate_rows(start, stop, n, peer_list, rng))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    bulk_s = time.perf_counter() - t0

    # the same per-message insert as the store does, by hand: one INSERT + commit
    raw_times: list[float] = []
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for row in generate_rows(0, via_store, n, peer_list, random.Random(seed + 1)):
        t1 = time.perf_counter()
        conn.execute(sql.replace("INSERT", "INSERT OR IGNORE", 1), row)
        raw_times.append(time.perf_counter() - t1)
    conn.execute("DELETE FROM messages WHERE id > (SELECT MAX(id) FROM messages) - ?", (via_store,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"bulk_s": bulk_s, "add": add_times, "raw_add": raw_times}  # type: ignore[dict-item]


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def time_calls(fn: Callable[[Any], Any], args: list[Any]) -> list[float]:
    for a in args[:5]:  # warm the page cache and statement caches
        fn(a)
    out = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="database size")
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200, help="queries per figure")
    parser.add_argument("--via-store", type=int, default=2000, help="rows added via .add()")
    parser.add_argument("--quick", action="store_true", help="CI-sized run: 20k messages")
    parser.add_argument("--db", type=Path, help="keep the database here (reused if it exists)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.messages
    via_store = min(args.via_store, 500 if args.quick else args.via_store)

    tmp = None
    if args.db:
        path = args.db.expanduser().resolve()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="syftchat-history-"))
        path = tmp / "history.db"
    try:
        build_info: dict[str, Any] = {}
        if path.exists():
            print(f"reusing {path}")
        else:
            print(f"building {n:,} messages across {args.peers} peers in {path} ...", flush=True)
            build_info = build(path, n, args.peers, via_store, args.seed)
            print(f"built in {build_info['bulk_s']:.1f} s", flush=True)
        return run_queries(path, args, build_info)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def run_queries(path: Path, args: argparse.Namespace, build_info: dict[str, Any]) -> int:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    count, t_min, t_max = raw.execute(
        "SELECT COUNT(*), MIN(timestamp), MAX(timestamp) FROM messages"
    ).fetchone()
    size = db_bytes(path)
    n_threads = raw.execute(
        "SELECT COUNT(DISTINCT thread_id) FROM messages WHERE thread_id IS NOT NULL"
    ).fetchone()[0]
    all_peers = [r[0] for r in raw.execute("SELECT DISTINCT peer FROM messages")]
    rng = random.Random(args.seed + 7)
    q = args.queries
    peer_args = [rng.choice(all_peers) for _ in range(q)]
    lo = datetime.fromisoformat(t_min)
    hi = datetime.fromisoformat(t_max)
    since_args = [lo + (hi - lo) * rng.random() for _ in range(q)]
    thread_args = [f"thread-{2 * rng.randrange(max(n_threads, 1))}" for _ in range(q)]

    def raw_query(where: str, param: Any) -> list[tuple]:
        return raw.execute(
            f"SELECT {READ} FROM messages WHERE {where} ORDER BY timestamp DESC, id DESC LIMIT 50",
            (param,),
        ).fetchall()[::-1]

    store = SQLiteStore(path, owner=OWNER)
    try:
        figures = [
            (
                "history(peer=, limit=50)",
                lambda p: store.history(peer=p, limit=50),
                lambda p: raw_query("peer = ?", p),
                peer_args,
            ),
            (
                "history(since=, limit=50)",
                lambda s: store.history(since=s, limit=50),
                lambda s: raw_query("timestamp >= ?", fmt_ts(s)),
                since_args,
            ),
            (
                "history(thread_id=, limit=50)",
                lambda t: store.history(thread_id=t, limit=50),
                lambda t: raw_query("thread_id = ?", t),
                thread_args,
            ),
        ]
        # sanity: the store and the hand-written SQL return the same rows
        for _, ours, theirs, a in figures:
            assert [m.msg_id for m in ours(a[0])] == [r[0] for r in theirs(a[0])]

        rows: list[list[str]] = []
        passed = True
        for name, ours, theirs, a in figures:
            t_ours = time_calls(ours, a)
            t_raw = time_calls(theirs, a)
            for stat, fn in (("median", statistics.median), ("p95", lambda v: percentile(v, 95))):
                mine, base = fn(t_ours) * 1000, fn(t_raw) * 1000
                ok = mine < GOAL_MS
                passed &= ok
                rows.append(
                    [
                        f"{name} {stat} ms",
                        f"{mine:.2f}",
                        f"{base:.2f}",
                        f"{mine / base:.1f}x",
                        f"< {GOAL_MS:g} ms",
                        "PASS" if ok else "MISS",
                    ]
                )
    finally:
        store.close()
        raw.close()

    if build_info.get("add"):
        mine = statistics.median(build_info["add"]) * 1000
        base = statistics.median(build_info["raw_add"]) * 1000
        rows.append(
            [
                "store.add() median ms",
                f"{mine:.3f}",
                f"{base:.3f}",
                f"{mine / base:.1f}x",
                "-",
                "-",
            ]
        )
    per_million = size / count * 1_000_000 / 2**20
    rows.append(
        ["DB size MiB per 1M messages", f"{per_million:.0f}", "-", "-", "-", "-"],
    )
    print(f"\n{count:,} messages, {len(all_peers)} peers, {n_threads:,} threads, ", end="")
    print(f"{size / 2**20:.1f} MiB on disk; {q} queries per figure")
    print_table(["figure", "syft-chat", "raw sqlite3", "ratio", "goal", "result"], rows)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
