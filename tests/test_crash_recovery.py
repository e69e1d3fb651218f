"""Nothing lost, nothing duplicated, order kept, with processes killed by SIGKILL mid-stream."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from support import ALICE, BOB

from syft_chat.testing import make_workspace, wait_for

PEER = Path(__file__).with_name("chaos_peer.py")
SETTINGS = {"retry_initial": 0.3, "retry_max": 1.0, "order_gap_timeout": 600}


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, CHAOS_SETTINGS=json.dumps(SETTINGS), SYFT_CHAT_LOAD_PLUGINS="")
    proc = subprocess.Popen(
        [sys.executable, str(PEER), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _announced_all(log: Path, n: int) -> bool:
    if not log.exists():
        return False
    return len({line.split()[1] for line in log.read_text().splitlines() if " " in line}) >= n


def _rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_thousand_messages_with_receiver_and_sender_killed(tmp_path):
    n = 1000
    configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
    alice_db, bob_db, log = tmp_path / "alice.db", tmp_path / "bob.db", tmp_path / "bob.log"
    serve = ["serve", str(configs[BOB]), str(bob_db), str(log)]
    send = ["send", str(configs[ALICE]), str(alice_db), BOB, str(n)]
    rng = random.Random(7)
    started = time.monotonic()

    bob = _start(serve, tmp_path)
    alice = _start(send, tmp_path)
    kills = {"bob": 0, "alice": 0}
    for round_ in range(4):
        time.sleep(rng.uniform(0.2, 0.6))
        _kill(bob)
        kills["bob"] += 1
        if round_ == 1:  # once, the sender dies too, and comes back
            _kill(alice)
            kills["alice"] += 1
            alice = _start(send, tmp_path)
        time.sleep(rng.uniform(0.1, 0.4))
        bob = _start(serve, tmp_path)
    assert alice.stdout is not None
    try:
        assert alice.stdout.readline().strip() == "done"  # everything confirmed
        alice.wait(120)
        # confirmed means stored; bob's listener runs after that, off the delivery path
        # (each announcement's record is a durable commit): let it catch up before the end
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _announced_all(log, n):
            time.sleep(0.2)
    finally:
        _kill(alice)
        _kill(bob)
    took = time.monotonic() - started

    sent = _rows(alice_db, "SELECT content, status, seq FROM messages ORDER BY seq")
    got = _rows(bob_db, "SELECT content, seq, msg_id FROM messages ORDER BY seq")
    expected = [f"m{i:04d}" for i in range(n)]
    assert [c for c, _, _ in sent] == expected
    assert {s for _, s, _ in sent} == {"delivered"}
    assert [c for c, _, _ in got] == expected  # every message exactly once, by sequence
    assert [s for _, s, _ in got] == list(range(1, n + 1))
    assert len({m for _, _, m in got}) == n
    # listeners: every message announced, in order (a kill between storing and
    # recording the announcement can repeat one announcement: at least once)
    lines = log.read_text().splitlines()
    firsts: list[str] = []
    for line in lines:
        content = line.split()[1]
        if content not in firsts:
            firsts.append(content)
    assert firsts == expected
    print(
        f"\n{n} messages, bob killed {kills['bob']}x, alice {kills['alice']}x: "
        f"0 lost, 0 duplicated, {len(lines) - n} repeated announcements, {took:.1f}s"
    )


def test_temporary_files_left_by_interrupted_writes_are_swept_at_start(workspace) -> None:
    """A crash (or a full disk) between writing a request's or answer's temporary file and
    its rename leaves the file in ``data_dir/.syft-chat/tmp``; the next start removes those
    older than an hour, never one a write may still be using, nor anything else."""
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    tmp = Path(bob.syft.workspace.data_dir) / ".syft-chat" / "tmp"
    bob.close()
    hours_ago = time.time() - 2 * 3600
    stale = [tmp / ".0b9a.request.1f2e3d4c5b6a.tmp", tmp / ".77aa.response.a1b2c3d4e5f6.tmp"]
    fresh = tmp / ".5c5c.response.0a0b0c0d0e0f.tmp"
    other = tmp / "notes.txt"
    for path in [*stale, fresh, other]:
        path.write_bytes(b"partial")
    for path in [*stale, other]:
        os.utime(path, (hours_ago, hours_ago))
    ws.client(BOB)
    wait_for(lambda: not any(p.exists() for p in stale))
    assert fresh.exists() and other.exists()
