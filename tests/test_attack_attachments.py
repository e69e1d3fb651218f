"""Attacks on attachments (issue 15): each test FAILS on the code it was written against and
passes once the finding it names is fixed. See the docstring of each for severity and fix."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from support import envelope_body, read_response, wait_for, write_raw_request
from wcmatch import glob as wcglob

from syft_chat import AttachmentError, AttachmentState, hookimpl
from syft_chat.testing import local_network

ALICE, BOB, CAROL = (f"{n}@openmined.org" for n in ("alice", "bob", "carol"))
FAST = {"retry_initial": 0.3, "retry_max": 1.0, "attachment_check_interval": 0.05}


@pytest.fixture
def net(tmp_path):
    with local_network(tmp_path / "net", [ALICE, BOB, CAROL], settings=FAST) as network:
        yield network


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _app(net, sender: str) -> Path:
    return net.datasites / sender / "app_data" / "syft_chat" / "attachments"


def _received(client, msg_id: str):
    return wait_for(lambda: client.get_message(msg_id, sender=ALICE), timeout=10)


class _Endpoints:
    def __init__(self, net) -> None:
        self.net = net

    def endpoint(self, email: str) -> Path:
        return self.net.datasites / email / "app_data" / "syft_chat" / "rpc" / "chat"


# --------------------------------------------------------------------------- integrity


def test_in_place_tamper_with_restored_mtime_is_not_available(net, tmp_path):
    """HIGH. FileCheck caches a verdict by (size, mtime_ns, inode); a sender (or anything
    writing the synced copy) rewrites the bytes in place and puts the mtime back (os.utime:
    any file owner can), and the tampered file stays `available` and is handed out.
    Fix: key the cache on st_ctime_ns too (not settable by the user), or re-hash on hand-out."""
    data = os.urandom(10_000)
    sent = net[ALICE].send_message(BOB, "weights", attachments=[_file(tmp_path, "m.bin", data)])
    got = _received(net[BOB], sent.message_id)
    assert got.attachments[0].state is AttachmentState.AVAILABLE  # verified (and cached)
    shared = _app(net, ALICE) / sent.message_id / "m.bin"
    before = os.stat(shared)
    with open(shared, "r+b") as fh:
        fh.write(b"EVIL")  # same size, same inode
    os.utime(shared, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert net[BOB].get_message(sent.message_id).attachments[0].state is AttachmentState.CORRUPT
    with pytest.raises(AttachmentError):
        net[BOB].attachment_path(sent.message_id, "a1")


@pytest.mark.parametrize("swap", ["symlink", "replaced"])
def test_open_attachment_hands_out_only_what_it_verified(net, tmp_path, swap):
    """HIGH. open_attachment checks the path, then open()s it again by name, following
    symlinks: a file swapped between the check and the open (the window is forced here) for
    a symlink to the receiver's private file, or for other bytes, is handed out. `save`
    (attachment_path + shutil.copyfile) has the same gap. Fix: open with O_NOFOLLOW once,
    fstat + hash that descriptor, and return / copy from it."""
    data = os.urandom(5_000)
    sent = net[ALICE].send_message(BOB, "x", attachments=[_file(tmp_path, "r.bin", data)])
    _received(net[BOB], sent.message_id)
    secret = tmp_path / "bob_private" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_bytes(b"BOB'S PRIVATE KEY")
    shared = _app(net, ALICE) / sent.message_id / "r.bin"
    files = net[BOB]._attachments.states._files
    real = files.check

    def check_then_swap(path, size, sha256):
        seen = real(path, size, sha256)
        if Path(path) == shared and seen == "ok":
            if swap == "symlink":
                shared.unlink()
                shared.symlink_to(secret)  # the attacker wins the race
            else:
                other = shared.with_name("other")
                other.write_bytes(b"E" * len(data))
                os.replace(other, shared)
        return seen

    files.check = check_then_swap
    try:
        with net[BOB].open_attachment(sent.message_id, "a1") as fh:
            got = fh.read()
    except (AttachmentError, OSError):
        return  # refused: fine
    finally:
        files.check = real
    assert got == data, f"open_attachment handed out other bytes: {got[:20]!r}"


def test_symlinked_folder_above_the_message_folder_is_not_followed(net, tmp_path):
    """MEDIUM. local_path only checks that the message folder resolves under
    `attachments/` *after* resolving it too, so a symlink higher up in the sender's datasite
    (`app_data/syft_chat/attachments -> /home/bob/private`) makes a receiver's own private
    file `available` as the sender's verified attachment (needs its hash: a known file).
    Fix: resolve against datasites/<sender> itself (or walk each component with lstat /
    O_NOFOLLOW|O_DIRECTORY openat) and refuse any symlink on the way."""
    private = tmp_path / "bob_private"
    (private / "m9").mkdir(parents=True)
    secret = private / "m9" / "notes.txt"
    secret.write_bytes(b"bob's diary")
    root = _app(net, ALICE)
    assert not root.exists()
    root.symlink_to(private, target_is_directory=True)  # written by alice in her datasite
    att = {
        "id": "a1",
        "name": "notes.txt",
        "size": secret.stat().st_size,
        "media_type": "text/plain",
        "sha256": hashlib.sha256(secret.read_bytes()).hexdigest(),
        "url": f"syft://{ALICE}/app_data/syft_chat/attachments/m9/notes.txt",
    }
    body = envelope_body(ALICE, BOB, "see", msg_id="m9", attachments=[att])
    code, _ = read_response(write_raw_request(_Endpoints(net), to=BOB, folder=ALICE, body=body))
    got = net[BOB].get_message("m9", sender=ALICE)
    if code != 200 or got is None:
        return  # refused: fine
    assert got.attachments[0].state is not AttachmentState.AVAILABLE
    with pytest.raises(AttachmentError):
        net[BOB].attachment_path("m9", "a1", sender=ALICE)


# --------------------------------------------------------------------------- names


def test_two_long_names_that_collide_stay_distinct_and_deliverable(net, tmp_path):
    """MEDIUM (clumsy user). unique_name appends ' (2)' after safe_name's 120-byte cut, so
    the copy on disk and the url carry a 124-byte name while Attachment's validator cuts it
    back to the first file's name: the message carries two attachments with one name, the
    grants name a file that does not exist, and the recipient refuses the whole message.
    Fix: make unique_name keep the bound (cut the stem before adding ' (n)') and build the
    url and grants from the validated Attachment.name."""
    name = "x" * 116 + ".csv"  # exactly 120 bytes
    files = [_file(tmp_path / "d1", name, b"one"), _file(tmp_path / "d2", name, b"two")]
    try:
        sent = net[ALICE].send_message(BOB, "two tables", attachments=files, timeout=10)
    except Exception as exc:  # the recipient refused it
        pytest.fail(f"sending two same-named files failed: {exc!r}")
    names = [a.name for a in net[ALICE].get_message(sent.message_id).attachments]
    assert len(set(n.lower() for n in names)) == 2, names
    assert all(len(n.encode()) <= 120 for n in names)
    on_disk = {p.name for p in (_app(net, ALICE) / sent.message_id).iterdir()}
    assert set(names) <= on_disk
    got = _received(net[BOB], sent.message_id)
    assert [a.state for a in got.attachments] == [AttachmentState.AVAILABLE] * 2


# --------------------------------------------------------------------------- permissions


def _legacy_can_read(datasites: Path, user: str, path: Path) -> bool:
    """syftbox 0.4.0's ComputedPermission for read (lib/permissions.py): every syftperm.yaml
    from the top down, rules in file order, a later matching rule wins; the owner always."""
    rel = path.relative_to(datasites)
    if rel.parts[0] == user:
        return True
    read = False
    perm_files = sorted(datasites.rglob("syftperm.yaml"), key=lambda p: len(p.parts))
    for perm_file in perm_files:
        folder = perm_file.parent.relative_to(datasites)
        try:
            inner = rel.relative_to(folder)
        except ValueError:
            continue
        for rule in yaml.safe_load(perm_file.read_text()) or []:
            if rule["user"] not in ("*", user) or "read" not in rule["permissions"]:
                continue
            if wcglob.globmatch(str(inner), rule["path"], flags=wcglob.GLOBSTAR):
                read = rule.get("type") != "disallow"
    return read


def test_legacy_permissions_shut_out_grants_inherited_from_above(net, tmp_path):
    """MEDIUM. syftperm.yaml (legacy server) has no `terminal`: a broader grant above the
    folder (here a public-read app_data/, as other apps or users write) still reaches every
    attachment, for anyone, and revoking (an empty rule list) removes nothing of it. The
    syft.pub.yaml side is terminal and holds. Fix: start the legacy file with
    `{path: '**', user: '*', permissions: [read, write, create, admin], type: disallow}`."""
    app_data = net.datasites / ALICE / "app_data"
    (app_data / "syftperm.yaml").write_text(
        yaml.safe_dump([{"path": "**", "user": "*", "permissions": ["read"]}])
    )
    sent = net[ALICE].send_message(BOB, "for bob", attachments=[_file(tmp_path, "b.txt", b"b")])
    shared = _app(net, ALICE) / sent.message_id / "b.txt"
    assert _legacy_can_read(net.datasites, BOB, shared)
    assert not _legacy_can_read(net.datasites, CAROL, shared), "carol reads bob's attachment"
    _received(net[BOB], sent.message_id)
    net[ALICE].revoke_attachment(sent.message_id, "a1", timeout=5)
    assert not _legacy_can_read(net.datasites, BOB, shared), "revoked, bob still reads it"


# --------------------------------------------------------------------------- limits


def test_concurrent_sends_cannot_pass_the_conversation_limit_together(tmp_path):
    """LOW-MEDIUM. The per-conversation total is read before the copy and added only after
    the message is stored, outside any lock: two sends at once both pass the check (the
    window is held open here by a chat_accept_attachments hook) and together exceed
    max_conversation_attachment_bytes. Fix: reserve the bytes (check + add in one store
    transaction / under a lock) before copying, and give them back on failure."""
    limits = {**FAST, "max_conversation_attachment_bytes": 1500}
    barrier = threading.Barrier(2, timeout=5)

    class Hold:
        @hookimpl
        def chat_accept_attachments(self, files, recipients, client):
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            return None

    with local_network(tmp_path / "net", [ALICE, BOB], settings=limits) as net:
        alice = net[ALICE]
        alice.register_plugin(Hold())
        src = [_file(tmp_path / f"d{i}", "part.bin", b"x" * 1000) for i in range(2)]
        results: list[object] = []

        def send(path: Path) -> None:
            try:
                results.append(alice.send_message(BOB, "part", attachments=[path]))
            except AttachmentError as exc:
                results.append(exc)

        threads = [threading.Thread(target=send, args=(p,)) for p in src]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        refused = [r for r in results if isinstance(r, AttachmentError)]
        assert len(results) == 2 and len(refused) == 1, results


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs mounted where alice's attachment folders go (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_during_the_copy_leaves_nothing_and_says_attachment_error(tmp_path, tiny_disk):
    """MEDIUM (robustness). On a full disk (a real 1 MiB tmpfs, filled first) the first
    permission write fails with ENOSPC, and prepare's cleanup, remove_share, begins by
    *writing* both permission files again: that fails too, the raw OSError escapes (not
    AttachmentError, so callers catching it crash) and the empty message folder stays in
    the datasite. The same path runs when the final grant rewrite fails after the copies
    (the copies then stay). A disk filling in the middle of a copy held up: the .tmp is
    removed, which frees the room the cleanup needs. Fix: remove_share deletes the files
    and the folder without writing first (nothing is granted until the final rewrite), and
    a cleanup error never replaces the AttachmentError."""
    with local_network(tmp_path / "net", [ALICE, BOB], settings=FAST) as net:
        root = _app(net, ALICE)
        root.parent.mkdir(parents=True, exist_ok=True)
        root.symlink_to(tiny_disk, target_is_directory=True)  # alice's own folder, on the tmpfs
        filler = tiny_disk / "other-app-data.bin"  # the disk is already full
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        files = [_file(tmp_path / "d1", "small.txt", b"hello")]
        with pytest.raises(AttachmentError):
            net[ALICE].send_message(BOB, "no room", attachments=files)
        assert [p.name for p in tiny_disk.iterdir()] == [filler.name], list(tiny_disk.rglob("*"))
        assert net[ALICE].get_chat_history(BOB) == []


# --------------------------------------------------------------------------- clumsy user


def test_attaching_a_folder_or_a_fifo_says_what_is_wrong(net, tmp_path):
    """LOW (clumsy user). A folder, a FIFO or /dev/zero exists, yet the refusal says
    "no such file", which sends the user looking for a typo. The refusal itself is right
    (nothing is copied). Fix: say "not a regular file" when the path exists."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo, Path("/dev/zero")):
        with pytest.raises(AttachmentError) as err:
            net[ALICE].send_message(BOB, "odd", attachments=[path])
        assert "no such file" not in str(err.value), str(err.value)
