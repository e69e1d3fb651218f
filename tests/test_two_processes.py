"""Two processes on one datasite: one serves, the other follows; no message is split.

A real second process (``two_procs_peer.py``) runs a client for alice next to a client
in this test, on the same database; bob sends. Both must hear every message exactly
once, in order; the follower's own sends go out; when the serving process stops, the
follower takes over; a second process with another database is refused, naming the
serving process and its database.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import ALICE, BOB, Workspace, wait_for

from syft_chat.errors import AlreadyServedError
from syft_chat.models import ChatMessage

PEER = Path(__file__).with_name("two_procs_peer.py")
N = 12


class Peer:
    """The second process: its output lines, read on a thread."""

    def __init__(self, config: Path, db: Path) -> None:
        env = dict(os.environ, SYFT_CHAT_LOAD_PLUGINS="")  # same PYTHONPATH as this test
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), str(config), str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.heard: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("heard "):
                self.heard.append(line.split(" ", 2)[2])
            else:
                self.lines.put(line)

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            if line.startswith(prefix):
                return line

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def quit(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.command("quit")
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._thread.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@pytest.fixture
def peers():
    started: list[Peer] = []

    def start(config: Path, db: Path) -> Peer:
        peer = Peer(config, db)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.quit()


def _listening(client) -> list[str]:
    heard: list[str] = []
    lock = threading.Lock()

    def listener(message: ChatMessage) -> None:
        with lock:
            heard.append(message.content)

    client.add_message_listener(listener)
    return heard


def _send_all(bob, texts: list[str]) -> None:
    ids = [bob.send_message(ALICE, text, timeout=0).message_id for text in texts]
    for msg_id in ids:
        assert bob.wait_for_delivery(msg_id, timeout=20).status == "delivered"


def test_a_second_process_follows_and_both_hear_every_message(workspace, peers):
    ws: Workspace = workspace(ALICE, BOB)
    alice = ws.client(ALICE)
    heard_here = _listening(alice)
    assert alice.role == "serving"
    peer = peers(ws.configs[ALICE], ws.db(ALICE))
    assert peer.expect("ready") == "ready following"
    bob = ws.client(BOB)
    texts = [f"message {i}" for i in range(N)]
    _send_all(bob, texts)
    wait_for(lambda: len(heard_here) >= N and len(peer.heard) >= N, timeout=20)
    time.sleep(0.5)  # nothing more comes
    assert heard_here == texts  # every message, once, in order
    assert peer.heard == texts  # also in the follower: none split between them


def test_the_followers_sends_are_delivered(workspace, peers):
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE)
    bob = ws.client(BOB)
    heard_by_bob = _listening(bob)
    peer = peers(ws.configs[ALICE], ws.db(ALICE))
    assert peer.expect("ready") == "ready following"
    for i in range(3):
        peer.command(f"send {BOB} from the notebook {i}")
        status, msg_id = peer.expect("sent").split()[1:]
        assert status == "delivered"
        assert alice.get_message(msg_id) is not None  # same database
    wait_for(lambda: len(heard_by_bob) == 3, timeout=10)
    assert heard_by_bob == [f"from the notebook {i}" for i in range(3)]


def test_the_follower_takes_over_when_the_serving_process_stops(workspace, peers):
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE)
    peer = peers(ws.configs[ALICE], ws.db(ALICE))
    assert peer.expect("ready") == "ready following"
    bob = ws.client(BOB)
    _send_all(bob, ["before"])
    wait_for(lambda: peer.heard == ["before"], timeout=10)
    alice.close()
    peer.command("role")

    def serving() -> bool:
        peer.command("role")
        return peer.expect("role") == "role serving"

    wait_for(serving, timeout=15, interval=0.2)
    _send_all(bob, ["after 1", "after 2"])
    wait_for(lambda: len(peer.heard) >= 3, timeout=10)
    assert peer.heard == ["before", "after 1", "after 2"]
    # a new client here now follows the process that took over, and hears too
    again = ws.client(ALICE)
    assert again.role == "following"
    heard_here = _listening(again)
    _send_all(bob, ["later"])
    wait_for(lambda: heard_here == ["later"] and len(peer.heard) == 4, timeout=10)
    assert peer.heard[-1] == "later"


def test_this_process_takes_over_from_a_serving_process(workspace, peers):
    ws = workspace(ALICE, BOB)
    peer = peers(ws.configs[ALICE], ws.db(ALICE))
    assert peer.expect("ready") == "ready serving"
    alice = ws.client(ALICE, settings={"startup_hold": 0})
    assert alice.role == "following"
    heard_here = _listening(alice)
    bob = ws.client(BOB)
    _send_all(bob, ["one", "two"])
    wait_for(lambda: heard_here == ["one", "two"] and peer.heard == ["one", "two"], timeout=10)
    peer.quit()
    wait_for(lambda: alice.role == "serving", timeout=15)
    _send_all(bob, ["three"])
    wait_for(lambda: len(heard_here) >= 3, timeout=10)
    time.sleep(0.3)
    assert heard_here == ["one", "two", "three"]


def test_a_second_process_with_another_database_is_refused(workspace, peers, tmp_path):
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE)
    peer = peers(ws.configs[ALICE], tmp_path / "another.db")
    line = peer.expect("error")
    assert f"process {os.getpid()}" in line
    assert str(alice.db_path) in line
    assert peer.proc.wait(20) == 3


def test_in_one_process_a_second_client_follows_or_is_refused(workspace, tmp_path):
    ws = workspace(ALICE, BOB)
    first = ws.client(ALICE)
    second = ws.client(ALICE)
    assert (first.role, second.role) == ("serving", "following")
    heard = [_listening(first), _listening(second)]
    _send_all(ws.client(BOB), ["hi"])
    wait_for(lambda: heard == [["hi"], ["hi"]], timeout=10)
    with pytest.raises(AlreadyServedError, match=r"already served by process \d+") as info:
        ws.client(ALICE, db_path=tmp_path / "another.db")
    assert str(first.db_path) in str(info.value)
