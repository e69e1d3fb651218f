"""syft-chat latency, throughput, cold start, idle CPU and memory vs raw and the floors.

Everything runs on one shared local workspace (``syft_chat.testing.make_workspace``):
real request files, real syft-event watchers, real SQLite files. In the same run,
alternating rounds, three baselines are measured and each figure compared with them:

* raw: the syft-rpc + syft-event echo of ``raw_baseline.py`` in its best form
  (temporary files outside the watched folders);
* the floor and the durable floor of ``floor_baseline.py`` (latency only): a bare
  atomic write seen by a watchdog observer and read, one way and round trip; the
  durable floor adds one ``synchronous=FULL`` SQLite insert + commit per side and
  an ``fsync``-ed answer, what syft-chat's default durability costs at the least.

The figures:

* latency: ``a.send_message(bob, text)`` call start -> bob's listener called
  (vs raw: request write start -> server handler called), and the full
  ``send_message`` round trip (vs raw: write start -> response parsed);
* throughput: 1 sender, and 8 distinct sender datasites each with its own
  client and thread, all sending to bob one message at a time;
* cold start (fresh process): ``syft_chat.client(...)`` returning, and until a
  first message from an already running peer reached the listener;
* idle CPU of a process holding one client over ``--idle-seconds``;
* resident memory (VmRSS) of a process holding one client vs a bare python
  with ``syft_rpc``/``syft_event`` imported.

    python benchmarks/bench_latency.py                  # >= 200 messages per figure, 30 s idle
    python benchmarks/bench_latency.py --quick          # CI-sized, < 20 s
    python benchmarks/bench_latency.py --profile out.prof   # cProfile the latency loop
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# run as `python benchmarks/x.py` from anywhere: benchmark this checkout's syft_chat
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import floor_baseline as floor  # noqa: E402  (after the sys.path set-up, on purpose)
import raw_baseline as raw  # noqa: E402

BOB = "bob@openmined.org"
ALICE = "alice@openmined.org"
SENDERS = 8
LISTENER_TIMEOUT_S = 5.0
#: The raw baseline in its best form: temporary files outside the watched folders, as
#: syft-chat writes them (inside, watchdog's rename pairing stalls ~1 message in 700).
RAW_TMP_OUTSIDE = True
#: The sides of the latency figures, in the order of the table's columns.
SIDES = ("chat", "raw", "floor", "durable")
#: Give up on a figure after this many messages in a row never reach the listener.
MAX_MISSES_IN_A_ROW = 3
#: Extra arguments of every syft_chat.client(...) call. By default installed
#: entry-point plugins (e.g. an encryption plugin) stay out: the figures are the
#: kernel's and its built-ins'. ``--with-plugins`` loads them as a user would get them.
CLIENT_KWARGS: dict[str, Any] = {"load_entry_points": False}


def rss_kib() -> int:
    """This process's resident set size in KiB (``VmRSS`` of /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Inbox:
    """A listener recording when each message content arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()

    def __call__(self, message: Any) -> None:
        now = time.perf_counter()
        with self.cond:
            self.arrived[message.content] = now
            self.cond.notify_all()

    def wait_for(self, content: str, timeout: float = LISTENER_TIMEOUT_S) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: content in self.arrived, timeout)
            return self.arrived.get(content)

    def wait_count(self, count: int, timeout: float = LISTENER_TIMEOUT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.arrived) >= count, timeout)


class Chat:
    """A temporary workspace with bob (listening) and ``senders`` other clients."""

    def __init__(self, senders: list[str]) -> None:
        import syft_chat
        import syft_chat.testing

        self.root = Path(tempfile.mkdtemp(prefix="syftchat-bench-"))
        self.clients: dict[str, Any] = {}
        try:
            configs = syft_chat.testing.make_workspace(self.root, [BOB, *senders])
            for email in [BOB, *senders]:  # bob first: senders check he serves chat
                self.clients[email] = syft_chat.client(
                    configs[email], db_path=self.root / "db" / f"{email}.db", **CLIENT_KWARGS
                )
            self.inbox = Inbox()
            self.clients[BOB].add_message_listener(self.inbox)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chat_latency(n: int, profile: str | None = None) -> dict[str, Any]:
    """One sender (alice) sends ``n`` messages to bob, one at a time.

    Returns the samples in seconds: ``one_way_s`` (send_message call start ->
    bob's listener called) and ``rtt_s`` (the send_message call), and ``errors``.
    """
    import syft_chat.testing  # noqa: F401  (make sure the submodule is loaded)

    with Chat([ALICE]) as chat:
        alice = chat.clients[ALICE]
        for i in range(10):  # warm-up
            alice.send_message(BOB, f"warm-up {i}")
            chat.inbox.wait_for(f"warm-up {i}")
        one_way: list[float] = []
        rtt: list[float] = []
        errors = misses = 0
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        for i in range(n):
            text = f"latency {i}"
            t0 = time.perf_counter()
            try:
                alice.send_message(BOB, text)
            except Exception as exc:
                errors += 1
                print(f"  send failed: {exc!r}", file=sys.stderr)
                continue
            t1 = time.perf_counter()
            arrived = chat.inbox.wait_for(text)
            if arrived is None:
                errors += 1
                misses += 1
                print(f"  {text!r} never reached the listener", file=sys.stderr)
                if misses >= MAX_MISSES_IN_A_ROW:
                    raise RuntimeError(f"{misses} messages in a row never reached bob's listener")
                continue
            misses = 0
            one_way.append(arrived - t0)
            rtt.append(t1 - t0)
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        plugins = alice.list_plugins()
    return {"one_way_s": one_way, "rtt_s": rtt, "errors": errors, "plugins": plugins}


def pooled(results: list[dict[str, Any]]) -> dict[str, float]:
    """Median/p95 over the samples of several rounds (chat_latency, run_raw_latency or
    run_floor_latency)."""
    one_way = [x for r in results for x in r["one_way_s"]]
    rtt = [x for r in results for x in r["rtt_s"]]
    a, b = raw.summarize_ms(one_way), raw.summarize_ms(rtt)
    return {
        "median_ms": a["median_ms"],
        "p95_ms": a["p95_ms"],
        "rtt_median_ms": b["median_ms"],
        "rtt_p95_ms": b["p95_ms"],
        "errors": sum(r["errors"] for r in results),
        "stalls": sum(1 for x in rtt if x > raw.STALL_S),
        "n": len(rtt),
    }


def chat_throughput(senders: int, n: int) -> float:
    """``senders`` datasites, each with its own client and thread, send ``n`` messages
    in total to bob, one at a time. Returns confirmed messages per second."""
    emails = [f"sender{i}@openmined.org" for i in range(senders)]
    per_sender = max(1, n // senders)
    with Chat(emails) as chat:
        for email in emails:  # warm-up: each path once
            chat.clients[email].send_message(BOB, f"warm-up {email}")

        def send_one(idx: int, i: int) -> bool:
            me = chat.clients[emails[idx]]
            try:
                me.send_message(BOB, f"msg {i} from {me.email}")
            except Exception as exc:
                print(f"  send failed: {exc!r}", file=sys.stderr)
                return False
            return True

        ok, elapsed = raw.timed_senders(senders, per_sender, send_one)
        if not chat.inbox.wait_count(senders + ok):
            print("  bob's listener missed messages", file=sys.stderr)
    return ok / elapsed


# --------------------------------------------------------------------------- subprocess workers


def worker(kind: str, workdir: Path, idle_seconds: float) -> dict[str, Any]:
    """Run in a fresh interpreter (``--worker KIND``); returns figures as a dict."""
    raw.quiet_logs()
    out: dict[str, Any] = {}
    if kind == "bare":  # a bare python with the SyftBox libraries imported
        import syft_event  # noqa: F401
        import syft_rpc  # noqa: F401

        out["rss_kib"] = rss_kib()
        return out
    if kind == "raw-cold":
        out.update(raw.run_raw_cold_start(tmp_outside=RAW_TMP_OUTSIDE))
        return out
    if kind == "raw-idle":  # one raw syft-event server, nothing else
        from syft_chat.testing import make_workspace

        server = raw.start_raw_server(make_workspace(workdir, [BOB])[BOB])
        try:
            out.update(_idle(idle_seconds))
        finally:
            server.stop()
        return out

    import syft_chat
    import syft_chat.testing

    if kind == "chat-idle":  # one client, nothing else
        configs = syft_chat.testing.make_workspace(workdir, [BOB])
        bob = syft_chat.client(configs[BOB], db_path=workdir / "bob.db", **CLIENT_KWARGS)
        bob.add_message_listener(lambda m: None)
        try:
            out.update(_idle(idle_seconds))
        finally:
            bob.close()
        return out
    if kind == "chat-cold":
        configs = syft_chat.testing.make_workspace(workdir, [BOB, ALICE])
        alice = syft_chat.client(configs[ALICE], db_path=workdir / "alice.db", **CLIENT_KWARGS)
        bob = None
        try:
            inbox = Inbox()
            t0 = time.perf_counter()
            bob = syft_chat.client(configs[BOB], db_path=workdir / "bob.db", **CLIENT_KWARGS)
            t_ctor = time.perf_counter()
            bob.add_message_listener(inbox)
            alice.send_message(BOB, "first")
            arrived = inbox.wait_for("first")
            if arrived is None:
                raise RuntimeError("the first message never reached bob's listener")
            out["start_s"] = t_ctor - t0
            out["first_request_s"] = arrived - t0
        finally:
            if bob is not None:
                bob.close()
            alice.close()
        return out
    raise SystemExit(f"unknown worker {kind!r}")


def _idle(seconds: float) -> dict[str, float]:
    time.sleep(1.0)  # let start-up settle
    rss = rss_kib()
    print("ready", flush=True)  # the parent starts its own measurements only now
    c0, w0 = cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    c1, w1 = cpu_seconds(), time.perf_counter()
    return {"rss_kib": rss, "idle_cpu_s": c1 - c0, "idle_wall_s": w1 - w0}


def import_seconds(modules: str) -> float:
    """Seconds a fresh interpreter takes to import ``modules`` (comma-separated)."""
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(done.stdout.strip())


def spawn(kind: str, idle_seconds: float) -> subprocess.Popen[str]:
    workdir = tempfile.mkdtemp(prefix=f"syftchat-{kind}-")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
    cmd += ["--workdir", workdir, "--idle-seconds", str(idle_seconds)]
    if CLIENT_KWARGS.get("load_entry_points", True):
        cmd.append("--with-plugins")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proc.workdir = workdir  # type: ignore[attr-defined]
    return proc


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        stdout, _ = proc.communicate(timeout=600)
    finally:
        shutil.rmtree(proc.workdir, ignore_errors=True)  # type: ignore[attr-defined]
    if proc.returncode != 0:
        raise RuntimeError(f"worker {proc.args} failed with {proc.returncode}")
    return dict(json.loads(stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- main


def ratio(mine: float, base: float | None) -> str:
    return f"{mine / base:.2f}x" if base else "-"


def row(
    name: str,
    mine: float,
    base: float,
    floor_: float | None = None,
    durable: float | None = None,
    fmt: str = "{:.2f}",
) -> list[str]:
    """One line of the figures table: the values, then syft-chat's ratio to each baseline."""

    def cell(x: float | None) -> str:
        return "-" if x is None else fmt.format(x)

    return [
        name,
        cell(mine),
        cell(base),
        cell(floor_),
        cell(durable),
        ratio(mine, base),
        ratio(mine, floor_),
        ratio(mine, durable),
    ]


def goal(name: str, mine: float, base: float, factor: float, at_most: bool) -> list[str]:
    """One line of the goals table: ``mine <= factor * base`` (or ``>=``), PASS or MISS."""
    ok = mine <= factor * base if at_most else mine >= factor * base
    return [name, ratio(mine, base), "PASS" if ok else "MISS"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=300, help="latency messages in total (>= 200)"
    )
    parser.add_argument(
        "--throughput-messages", type=int, default=200, help="messages per throughput round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--senders", type=int, default=SENDERS, help="concurrent senders")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (< 20 s)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the syft-chat latency loop")
    parser.add_argument(
        "--with-plugins",
        action="store_true",
        help="load installed entry-point plugins (default: kernel and built-ins only)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    CLIENT_KWARGS["load_entry_points"] = args.with_plugins
    if args.worker:
        print(json.dumps(worker(args.worker, args.workdir, args.idle_seconds)))
        return 0

    raw.quiet_logs()
    n = 100 if args.quick else args.messages
    n_tp = 80 if args.quick else args.throughput_messages
    rounds = 1 if args.quick else args.rounds
    sender_counts = sorted({1, args.senders})
    idle_s = min(args.idle_seconds, 2.0) if args.quick else args.idle_seconds

    # idle CPU and memory run in their own (otherwise idle) processes, alongside
    idle_procs = {k: spawn(k, idle_s) for k in ("chat-idle", "raw-idle")}
    for proc in idle_procs.values():  # wait until they are idle, not importing
        assert proc.stdout is not None
        proc.stdout.readline()
    bare = collect(spawn("bare", 0))

    t_start = time.perf_counter()
    # rounds alternate the order of the sides, so a load change on a shared machine
    # hits all; latency samples are pooled, throughput is the median of the rounds
    per_round = max(1, -(-n // rounds))
    lat: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    tp: dict[int, dict[str, list[float]]] = {s: {"chat": [], "raw": []} for s in sender_counts}
    for r in range(rounds):
        order = list(SIDES) if r % 2 == 0 else list(reversed(SIDES))
        print(f"round {r + 1}/{rounds}: latency {per_round} msgs, throughput ", end="")
        print(f"{n_tp} msgs with {' and '.join(map(str, sender_counts))} sender(s) ...", flush=True)
        for side in order:
            if side == "chat":
                lat[side].append(chat_latency(per_round, args.profile if r == 0 else None))
            elif side == "raw":
                lat[side].append(raw.run_raw_latency(per_round, tmp_outside=RAW_TMP_OUTSIDE))
            else:
                lat[side].append(floor.run_floor_latency(per_round, durable=side == "durable"))
        for s in sender_counts:
            for side in (x for x in order if x in ("chat", "raw")):
                if side == "chat":
                    tp[s][side].append(chat_throughput(s, n_tp))
                else:
                    tp[s][side].append(raw.run_raw_throughput(s, n_tp, tmp_outside=RAW_TMP_OUTSIDE))
    pool = {side: pooled(results) for side, results in lat.items()}
    ours, base, bare_floor, dur = (pool[side] for side in SIDES)
    print("cold start ...", flush=True)
    cold = collect(spawn("chat-cold", 0))
    raw_cold = collect(spawn("raw-cold", 0))
    idle = {k: collect(p) for k, p in idle_procs.items()}
    imports = (import_seconds("syft_chat"), import_seconds("syft_rpc, syft_event"))
    elapsed = time.perf_counter() - t_start

    def lat_row(name: str, key: str, fmt: str = "{:.2f}") -> list[str]:
        return row(name, ours[key], base[key], bare_floor[key], dur[key], fmt)

    rows = [
        lat_row("send -> listener median ms", "median_ms"),
        lat_row("send -> listener p95 ms", "p95_ms"),
        lat_row("send_message round trip median ms", "rtt_median_ms"),
        lat_row("send_message round trip p95 ms", "rtt_p95_ms"),
        lat_row("stalls > 250 ms (count)", "stalls", "{:.0f}"),
        lat_row("errors (count)", "errors", "{:.0f}"),
    ]
    throughput = {
        s: (statistics.median(rates["chat"]), statistics.median(rates["raw"]))
        for s, rates in tp.items()
    }
    for s, (mine, theirs) in throughput.items():
        rows.append(row(f"throughput {s} sender(s) msg/s", mine, theirs, fmt="{:.1f}"))
    rows += [
        row("cold import ms (syft_chat vs syft_rpc+event)", imports[0] * 1000, imports[1] * 1000),
        row("cold start: client() returns ms", cold["start_s"] * 1000, raw_cold["start_s"] * 1000),
        row(
            "cold start: first message handled ms",
            cold["first_request_s"] * 1000,
            raw_cold["first_request_s"] * 1000,
        ),
        row(
            f"idle CPU ms over {idle_s:g} s",
            idle["chat-idle"]["idle_cpu_s"] * 1000,
            idle["raw-idle"]["idle_cpu_s"] * 1000,
            fmt="{:.1f}",
        ),
        row(
            "RSS MiB, one client vs bare imports",
            idle["chat-idle"]["rss_kib"] / 1024,
            bare["rss_kib"] / 1024,
            fmt="{:.1f}",
        ),
        row(
            "RSS MiB, one client vs raw server",
            idle["chat-idle"]["rss_kib"] / 1024,
            idle["raw-idle"]["rss_kib"] / 1024,
            fmt="{:.1f}",
        ),
    ]
    # the performance issue's goals
    goals = []
    for what, key in (("median", "median_ms"), ("p95", "p95_ms")):
        goals += [
            goal(f"send -> listener {what} <= 1.5x raw", ours[key], base[key], 1.5, True),
            goal(f"send -> listener {what} <= 2.5x durable floor", ours[key], dur[key], 2.5, True),
        ]
    for s, (mine, theirs) in throughput.items():
        goals.append(goal(f"throughput {s} sender(s) >= 1.0x raw", mine, theirs, 1.0, False))
    goals.append([f"errors = 0 (syft-chat: {ours['errors']})", "-", _pass(ours["errors"] == 0)])

    print(
        f"\n{ours['n']} latency messages pooled over {rounds} round(s); throughput: median of ",
        end="",
    )
    print(f"{rounds} round(s) of {n_tp} messages")
    print(
        "raw = raw_baseline.py (tmp files outside the watched folders); floor / durable floor"
        " = floor_baseline.py (latency only)"
    )
    print(f"plugins of each client: {', '.join(lat['chat'][0]['plugins'])}")
    print(f"measured in {elapsed:.1f} s; load average {_loadavg()}")
    headers = ["figure", "syft-chat", "raw", "floor", "durable floor"]
    headers += ["chat/raw", "chat/floor", "chat/durable"]
    raw.print_table(headers, rows)
    print()
    raw.print_table(["goal", "ratio", "result"], goals)
    if args.profile:
        print(f"\nprofile of the syft-chat latency loop written to {args.profile}")
    return 0 if all(g[-1] != "MISS" for g in goals) else 1


def _pass(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _loadavg() -> str:
    """The 1/5/15-minute load average (``/proc/loadavg``), or "?" where there is none."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
