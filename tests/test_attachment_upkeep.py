"""Attachments' upkeep: what is watched is bounded (a peer announcing files that never come
costs nothing for long), and a sender's folders no stored message owns are swept at start."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from support import envelope_body, read_response, wait_for, write_raw_request

from syft_chat import AttachmentState
from syft_chat.filenames import safe_name, unique_name
from syft_chat.plugins.syft_rpc.shared_files import write_share_permissions
from syft_chat.testing import local_network

ALICE, BOB = "alice@openmined.org", "bob@openmined.org"
FAST = {"retry_initial": 0.3, "retry_max": 1.0, "attachment_check_interval": 0.05}


class _Endpoints:
    def __init__(self, net) -> None:
        self.net = net

    def endpoint(self, email: str) -> Path:
        return self.net.datasites / email / "app_data" / "syft_chat" / "rpc" / "chat"


def _root(net, sender: str) -> Path:
    return net.datasites / sender / "app_data" / "syft_chat" / "attachments"


def _announce_missing(net, msg_id: str, data: bytes) -> Path:
    """alice tells bob of an attachment whose file is not there (yet); where it goes."""
    att = {
        "id": "a1",
        "name": "data.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "url": f"syft://{ALICE}/app_data/syft_chat/attachments/{msg_id}/data.bin",
    }
    body = envelope_body(ALICE, BOB, "soon", msg_id=msg_id, attachments=[att])
    code, _ = read_response(write_raw_request(_Endpoints(net), to=BOB, folder=ALICE, body=body))
    assert code == 200
    return _root(net, ALICE) / msg_id / "data.bin"


def _arrive(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_an_attachment_that_never_comes_is_watched_for_a_bounded_time(tmp_path):
    settings = {**FAST, "attachment_watch_seconds": 0.3}
    with local_network(tmp_path / "net", [ALICE, BOB], settings=settings) as net:
        heard: list[str] = []
        net[BOB].add_attachment_listener(lambda m, a: heard.append(m.msg_id))
        late = _announce_missing(net, "late1", b"late bytes")
        time.sleep(0.6)  # past the watch time, while the checker keeps looking
        net[BOB].check_attachments()
        _arrive(late, b"late bytes")
        time.sleep(0.3)
        assert net[BOB].check_attachments() == 0 and heard == []  # no longer announced
        got = net[BOB].get_message("late1", sender=ALICE)
        assert got.attachments[0].state is AttachmentState.AVAILABLE  # still shown right
        # in time: announced as usual
        soon = _announce_missing(net, "soon1", b"soon bytes")
        _arrive(soon, b"soon bytes")
        wait_for(lambda: heard == ["soon1"], timeout=5)


def test_at_most_attachment_watch_max_messages_are_watched_the_oldest_dropped(tmp_path):
    settings = {**FAST, "attachment_watch_max": 2, "attachment_check_interval": 30.0}
    with local_network(tmp_path / "net", [ALICE, BOB], settings=settings) as net:
        heard: list[str] = []
        net[BOB].add_attachment_listener(lambda m, a: heard.append(m.msg_id))
        paths = {m: _announce_missing(net, m, m.encode()) for m in ("w1", "w2", "w3")}
        for msg_id, path in paths.items():
            _arrive(path, msg_id.encode())
        assert net[BOB].check_attachments() == 2
        assert sorted(heard) == ["w2", "w3"]  # w1, the oldest, was dropped when w3 came


def _share(folder: Path, name: str, age: float) -> None:
    folder.mkdir(parents=True)
    (folder / name).write_bytes(b"bytes")
    write_share_permissions(folder, {name: [BOB]})
    then = time.time() - age
    os.utime(folder, (then, then))


def test_folders_no_stored_message_owns_are_swept_at_start(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="syft_chat.attachments")
    with local_network(tmp_path / "net", [ALICE, BOB], settings=FAST) as net:
        src = tmp_path / "r.txt"
        src.write_bytes(b"kept")
        sent = net[ALICE].send_message(BOB, "kept", attachments=[src])
        gone = net[ALICE].send_message(BOB, "deleted", attachments=[src])
        net[ALICE].close()
        root = _root(net, ALICE)
        kept, deleted = root / sent.message_id, root / gone.message_id
        old = time.time() - 7200
        os.utime(kept, (old, old))
        _share(root / "killed-mid-send", "x.txt", age=7200)  # copied, never stored
        _share(root / "being-sent", "y.txt", age=0)  # another process's send under way
        alice = net.start(ALICE)
        alice.delete_message(gone.message_id)
        assert not deleted.exists()
        wait_for(lambda: any("removed 1 attachment" in r.message for r in caplog.records))
        assert not (root / "killed-mid-send").exists()
        assert kept.is_dir() and (root / "being-sent").is_dir()
        with alice.open_attachment(sent.message_id, "a1") as fh:
            assert fh.read() == b"kept"


def test_unique_name_is_its_own_safe_name_and_stays_within_the_bound():
    for name in ("x" * 116 + ".csv", "é" * 70 + ".tar.gz", "a." + "b" * 40, "n" * 150, "a.txt"):
        first = safe_name(name)
        taken = {first.lower()}
        for _ in range(11):
            other = unique_name(first, taken)
            assert safe_name(other) == other and len(other.encode()) <= 120
            assert other.lower() not in taken
            taken.add(other.lower())
