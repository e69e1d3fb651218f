"""Attack on the performance changes (issue 14): each test fails on main@ba30ab2."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

from watchdog.observers import Observer

from syft_chat.plugins.syft_rpc.peers import PeerDirectory
from syft_chat.plugins.syft_rpc.replies import ReplyWatches


def _watches(tmp_path: Path, **kwargs):
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_seen(path: Path, peer: str) -> None:
        with lock:
            seen.append((peer, path.name))

    def folder_of(peer: str) -> Path:
        folder = tmp_path / peer
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    observer = Observer()
    observer.start()
    replies = ReplyWatches(folder_of=folder_of, seen=on_seen, name="t", **kwargs)
    replies.attach(observer)
    return replies, observer, seen, folder_of


def _wait_for(cond, seconds: float = 3.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_evicted_watch_peer_answer_is_noticed(tmp_path: Path) -> None:
    """A peer whose watch is taken by another (idle long enough) while its request is
    still unanswered is never looked at: eviction does not start the sweeper."""
    replies, observer, seen, folder_of = _watches(
        tmp_path, limit=1, sweep_seconds=0.02, idle_seconds=0.0
    )
    try:
        replies.sent("a@x.org", "r1")
        replies.sent("b@x.org", "r2")  # a's watch goes to b; r1 still unanswered
        assert replies.watched() == ["b@x.org"]
        (folder_of("a@x.org") / "r1.response").write_text("{}")
        assert _wait_for(lambda: ("a@x.org", "r1.response") in seen), seen
    finally:
        replies.close()
        observer.stop()
        observer.join()


def test_answer_arriving_before_rewatch_is_noticed(tmp_path: Path) -> None:
    """An answer that lands while a peer is swept (between two looks) and before the
    peer gets a watch again is seen by neither: the sweeper skips watched peers and a
    new watch only reports files created after it (no listing when a watch is taken)."""
    replies, observer, seen, folder_of = _watches(
        tmp_path, limit=1, sweep_seconds=30.0, max_sweep_seconds=30.0, idle_seconds=0.0
    )
    try:
        replies.sent("a@x.org", "r1")
        replies.sent("b@x.org", "r2")  # a evicted
        time.sleep(0.2)  # (a sweeper, if any, has had its first look)
        (folder_of("a@x.org") / "r1.response").write_text("{}")
        replies.sent("a@x.org", "r3")  # a takes the watch back
        assert replies.watched() == ["a@x.org"]
        assert _wait_for(lambda: ("a@x.org", "r1.response") in seen), seen
    finally:
        replies.close()
        observer.stop()
        observer.join()


def test_recreated_answer_folder_is_still_watched(tmp_path: Path) -> None:
    """The answer folder is removed and made again (a sync client's reset, the peer's
    datasite re-created): the watch on the old folder sees nothing, the peer stays
    'watched' so the sweeper skips it, and a new send does not re-make the watch."""
    replies, observer, seen, folder_of = _watches(tmp_path, limit=4, sweep_seconds=0.02)
    try:
        replies.sent("a@x.org", "r1")
        time.sleep(0.2)
        shutil.rmtree(tmp_path / "a@x.org")
        time.sleep(0.2)
        folder = folder_of("a@x.org")  # re-created (as send() does: mkdir)
        replies.sent("a@x.org", "r2")
        time.sleep(0.2)
        (folder / "r2.response").write_text("{}")
        assert _wait_for(lambda: ("a@x.org", "r2.response") in seen), seen
    finally:
        replies.close()
        observer.stop()
        observer.join()


def test_peer_directory_not_stale_after_idle(tmp_path: Path) -> None:
    """After the background re-walk stopped (idle), the next call answers from the old
    cache: a datasite that stopped serving is still listed however long ago it stopped."""
    (tmp_path / "a@x.org").mkdir()
    serving = {"a@x.org"}
    peers = PeerDirectory(
        tmp_path,
        admits=lambda n: True,
        serves=lambda n: n in serving,
        refresh_seconds=0.05,
        idle_seconds=0.1,
    )
    try:
        assert peers.list() == ["a@x.org"]
        time.sleep(1.5)  # the re-walk stops; datasites/ itself is settled
        serving.clear()  # a stops serving chat (its folder stays)
        time.sleep(0.5)
        assert peers.list() == []
    finally:
        peers.close()


def test_sweeper_cpu_with_many_offline_peers(tmp_path: Path) -> None:
    """Thousands of peers offline with one request each: the needed work is one stat
    per peer per second (~1-2% of a core at 3,000), but every wake of the sweeper walks
    every unanswered peer under the lock, and with the peers' looks staggered it wakes
    hundreds of times a second: superlinear (1,000 peers ~9%, 5,000 ~38%, 10,000 ~72%)."""
    for i in range(3000):
        (tmp_path / f"p{i}").mkdir()
    replies, observer, _seen, _folder_of = _watches(tmp_path, limit=1, sweep_seconds=0.02)
    try:
        for i in range(3000):
            replies.sent(f"p{i}", "r")
            if i % 15 == 0:
                time.sleep(0.01)  # requests written over a few seconds, as a chat does
        time.sleep(5)  # every peer backed off to one look a second
        cpu, wall = time.process_time(), time.monotonic()
        time.sleep(3)
        share = (time.process_time() - cpu) / (time.monotonic() - wall)
        assert share < 0.12, f"{share:.0%} of a core for 3,000 offline peers"
    finally:
        replies.close()
        observer.stop()
        observer.join()


def test_rotated_rejection_after_folder_recreated_fails_the_message(workspace) -> None:
    """bob's answer folder for alice is removed and made again (alice's watch on it is
    dead and, as 'watched', the sweeper skips it); the server then refuses each upload
    with a Go client's rotated marker ``<id>.rejected.<14 digits>.request``. The retry's
    safety net (collect_reply) stats only the two fixed marker names since the
    performance work, so the refusal is never noticed: the message is written again
    and again, refused each time, and never becomes failed."""
    from support import ALICE, BOB

    from syft_chat.testing import wait_for

    ws = workspace(ALICE, BOB)
    ws.client(BOB).close()  # bob serves chat, but is offline
    alice = ws.client(ALICE, settings={"retry_initial": 0.3, "retry_max": 1.0})
    folder = ws.endpoint(BOB) / ALICE
    first = alice.send_message(BOB, "warm-up", timeout=0)  # alice now watches the folder
    wait_for(lambda: any(folder.glob("*.request")), timeout=5)
    time.sleep(0.3)
    shutil.rmtree(folder)  # e.g. bob's datasite reset, re-created by the sync client
    folder.mkdir(parents=True)
    time.sleep(0.3)
    sent = alice.send_message(BOB, "refused by the server", timeout=0)

    stop = threading.Event()

    def server_refuses() -> None:  # the sync client's rename of each refused upload
        n = 0
        while not stop.wait(0.05):
            for path in folder.glob("*.request"):
                if ".rejected." in path.name:
                    continue
                n += 1
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(f"{path.stem}.rejected.202612011800{n:02d}.request"))

    refuser = threading.Thread(target=server_refuses, daemon=True)
    refuser.start()
    try:
        wait_for(lambda: alice.get_message(sent.message_id).status == "failed", timeout=10)
        wait_for(lambda: alice.get_message(first.message_id).status == "failed", timeout=10)
    finally:
        stop.set()
        refuser.join()
