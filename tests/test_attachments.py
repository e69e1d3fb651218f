"""Attachments (issue 15): files shared from the sender's datasite, permissioned, verified."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from support import envelope_body, read_response, wait_for, write_raw_request

import syft_chat
from syft_chat import AttachmentError, AttachmentState, hookimpl
from syft_chat.filenames import safe_name
from syft_chat.testing import local_network

ALICE, BOB, CAROL, DAVE = (f"{n}@openmined.org" for n in ("alice", "bob", "carol", "dave"))
FAST = {"retry_initial": 0.3, "retry_max": 1.0, "attachment_check_interval": 0.05}


@pytest.fixture
def net(tmp_path):
    with local_network(tmp_path, [ALICE, BOB, CAROL, DAVE], settings=FAST) as network:
        yield network


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _folder(net, sender: str, msg_id: str) -> Path:
    return net.datasites / sender / "app_data" / "syft_chat" / "attachments" / msg_id


def _perms(folder: Path) -> tuple[dict, list]:
    pub = yaml.safe_load((folder / "syft.pub.yaml").read_text())
    legacy = yaml.safe_load((folder / "syftperm.yaml").read_text())
    return pub, legacy


def _readers(folder: Path, name: str) -> tuple[set[str], set[str]]:
    pub, legacy = _perms(folder)
    assert pub["terminal"] is True
    go = {u for r in pub["rules"] if r["pattern"] == name for u in r["access"]["read"]}
    old = {r["user"] for r in legacy if r["path"] == name and r["permissions"] == ["read"]}
    return go, old


class _Endpoints:
    """What ``write_raw_request`` needs of a workspace, for a ``local_network``."""

    def __init__(self, net) -> None:
        self.net = net

    def endpoint(self, email: str) -> Path:
        return self.net.datasites / email / "app_data" / "syft_chat" / "rpc" / "chat"


def _raw(net, body: bytes) -> Path:
    return write_raw_request(_Endpoints(net), to=BOB, folder=ALICE, body=body)


def _received(client, msg_id: str):
    return wait_for(lambda: client.get_message(msg_id, sender=ALICE), timeout=10)


def test_one_to_one_attachment_is_copied_permissioned_and_available(net, tmp_path):
    data = os.urandom(300_000)
    src = _file(tmp_path, "results.csv", data)
    heard: list[tuple[str, str, str]] = []
    net[BOB].add_attachment_listener(lambda m, a: heard.append((m.msg_id, a.id, a.state.value)))
    sent = net[ALICE].send_message(BOB, "the numbers", attachments=[src])
    assert src.read_bytes() == data  # copied, never moved
    folder = _folder(net, ALICE, sent.message_id)
    assert (folder / "results.csv").read_bytes() == data
    assert _readers(folder, "results.csv") == ({BOB}, {BOB})  # exactly the recipient
    mine = net[ALICE].get_message(sent.message_id)
    (att,) = mine.attachments
    assert (att.name, att.size, att.media_type) == ("results.csv", len(data), "text/csv")
    assert att.sha256 == hashlib.sha256(data).hexdigest()
    assert att.url == f"syft://{ALICE}/app_data/syft_chat/attachments/{sent.message_id}/results.csv"
    got = _received(net[BOB], sent.message_id)
    assert got.attachments[0].state is AttachmentState.AVAILABLE
    path = net[BOB].attachment_path(sent.message_id, "a1", sender=ALICE)
    assert path.read_bytes() == data
    with net[BOB].open_attachment(sent.message_id, "a1") as fh:
        assert fh.read() == data
    wait_for(lambda: heard, timeout=5)
    assert heard == [(sent.message_id, "a1", "available")]
    history = net[BOB].get_chat_history(ALICE)
    assert history[-1].attachments[0].state is AttachmentState.AVAILABLE
    listed = net[BOB].list_attachments(with_user=ALICE)
    assert [(m.msg_id, a.id) for m, a in listed] == [(sent.message_id, "a1")]
    net[BOB].check_attachments()
    assert len(heard) == 1  # once


def test_group_of_three_grants_each_member_and_no_one_else(net, tmp_path):
    group = net[ALICE].create_group("lab", [BOB, CAROL])
    for who in (BOB, CAROL):
        wait_for(lambda w=who: _in_group(net[w], group.group_id), timeout=10)
    src = _file(tmp_path, "plot.png", b"\x89PNG" + os.urandom(5000))
    sent = net[ALICE].send_to_group(group.group_id, "a plot", attachments=[src])
    folder = _folder(net, ALICE, sent.message_id)
    assert _readers(folder, "plot.png") == ({BOB, CAROL}, {BOB, CAROL})
    pub, legacy = _perms(folder)
    # the legacy file starts by shutting everyone out (it has no `terminal`), then grants
    shut, *grants = legacy
    assert (shut["path"], shut["user"], shut["type"]) == ("**", "*", "disallow")
    assert "read" in shut["permissions"]
    assert all("type" not in r for r in grants)
    everyone = {u for r in pub["rules"] for u in r["access"]["read"]} | {r["user"] for r in grants}
    assert DAVE not in everyone and "*" not in everyone  # a non-member is granted nothing
    for who in (BOB, CAROL):
        got = wait_for(lambda w=who: net[w].get_message(sent.message_id, sender=ALICE), timeout=10)
        assert got.attachments[0].state is AttachmentState.AVAILABLE
        assert got.attachments[0].media_type == "image/png"
    assert net[DAVE].get_message(sent.message_id, sender=ALICE) is None
    # revoking a group message's attachment reaches every member
    net[ALICE].revoke_attachment(sent.message_id)
    assert _readers(folder, "plot.png") == (set(), set())
    for who in (BOB, CAROL):
        wait_for(
            lambda w=who: (
                net[w].get_message(sent.message_id, sender=ALICE).attachments[0].state
                is AttachmentState.REVOKED
            ),
            timeout=10,
        )
    # a member removed later is left out of later attachments
    net[ALICE].remove_group_members(group.group_id, [CAROL])
    later = net[ALICE].send_to_group(group.group_id, "b", attachments=[src])
    assert _readers(_folder(net, ALICE, later.message_id), "plot.png") == ({BOB}, {BOB})


def _in_group(client, gid):
    try:
        return client.get_group(gid)
    except syft_chat.InvalidMessageError:
        return None


def test_tampered_copy_is_corrupt_and_never_handed_out(net, tmp_path):
    src = _file(tmp_path, "model.bin", os.urandom(10_000))
    sent = net[ALICE].send_message(BOB, "weights", attachments=[src])
    _received(net[BOB], sent.message_id)
    shared = _folder(net, ALICE, sent.message_id) / "model.bin"
    tampered = bytearray(shared.read_bytes())
    tampered[0] ^= 0xFF
    shared.write_bytes(bytes(tampered))  # same size, another hash
    got = net[BOB].get_message(sent.message_id, sender=ALICE)
    assert got.attachments[0].state is AttachmentState.CORRUPT
    with pytest.raises(AttachmentError, match="corrupt") as err:
        net[BOB].attachment_path(sent.message_id, "a1")
    assert err.value.state == "corrupt"
    with pytest.raises(AttachmentError):
        net[BOB].open_attachment(sent.message_id, "a1")


def test_partial_copy_is_pending_until_whole_then_announced_once(net, tmp_path):
    data = os.urandom(200_000)
    src = _file(tmp_path, "big.dat", data)
    heard: list[str] = []
    net[BOB].add_attachment_listener(lambda m, a: heard.append(a.id))
    shared = None

    # the sync client has not brought the file yet when the message arrives
    class HideFile:
        @hookimpl
        def chat_encode_body(self, envelope, client):
            nonlocal shared
            shared = _folder(net, ALICE, envelope.msg_id) / "big.dat"
            shared.rename(shared.with_name("hidden"))
            return None

    net[ALICE].register_plugin(HideFile())
    sent = net[ALICE].send_message(BOB, "data", attachments=[src])
    got = _received(net[BOB], sent.message_id)
    assert got.attachments[0].state is AttachmentState.PENDING
    assert shared is not None
    hidden = shared.with_name("hidden")
    with open(shared, "wb") as fh:  # a sync client writing in place: half of it
        fh.write(data[:100_000])
    net[BOB].check_attachments()
    assert net[BOB].get_message(sent.message_id).attachments[0].state is AttachmentState.PENDING
    with pytest.raises(AttachmentError, match="pending"):
        net[BOB].attachment_path(sent.message_id, "a1")
    assert heard == []
    os.replace(hidden, shared)  # now whole
    wait_for(lambda: heard, timeout=5)
    assert net[BOB].attachment_path(sent.message_id, "a1").read_bytes() == data
    net[BOB].check_attachments()
    assert heard == ["a1"]


def test_hostile_names_are_sanitised_on_send(net, tmp_path):
    names = ["..passwd", "CON.txt", "a\x07b\x1bc.txt", "syftperm.yaml", "x" * 240 + ".csv"]
    files = [_file(tmp_path / f"d{i}", n, b"x") for i, n in enumerate(names)]
    sent = net[ALICE].send_message(BOB, "odd names", attachments=files)
    shown = [a.name for a in net[ALICE].get_message(sent.message_id).attachments]
    assert shown == [safe_name(n) for n in names]
    assert shown[:4] == ["passwd", "_CON.txt", "a_b_c.txt", "_syftperm.yaml"]
    assert len(shown[4].encode()) <= 120 and shown[4].endswith(".csv")
    folder = _folder(net, ALICE, sent.message_id)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*shown, "syft.pub.yaml", "syftperm.yaml"]
    )
    got = _received(net[BOB], sent.message_id)
    assert all(a.state is AttachmentState.AVAILABLE for a in got.attachments)


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "a\x00\nb", "", ".", "..", "NUL", "é" * 200],
)
def test_safe_name_never_escapes(name):
    safe = safe_name(name)
    assert safe and safe not in (".", "..") and "/" not in safe and "\\" not in safe
    assert all(c.isprintable() for c in safe) and len(safe.encode()) <= 120
    assert safe_name(safe) == safe


def _hostile(url: str, name: str = "x.txt") -> dict:
    return {
        "id": "a1",
        "name": name,
        "size": 1,
        "media_type": "text/plain",
        "sha256": "0" * 64,
        "url": url,
    }


@pytest.mark.parametrize(
    "url",
    [
        f"syft://{BOB}/app_data/syft_chat/attachments/m1/x.txt",  # someone else's datasite
        f"syft://{ALICE}/app_data/other_app/attachments/m1/x.txt",  # another app
        f"syft://{ALICE}/app_data/syft_chat/attachments/../../../x.txt",
        f"syft://{ALICE}/app_data/syft_chat/attachments/m1/sub/x.txt",
        f"syft://{ALICE}/public/x.txt",
        "file:///etc/passwd",
    ],
)
def test_received_url_outside_the_senders_app_folder_is_refused(net, url):
    bob = net[BOB]
    body = envelope_body(ALICE, BOB, "look", msg_id="m1", attachments=[_hostile(url)])
    path = _raw(net, body)
    code, answer = read_response(path)
    assert code == 400 and "outside the sender's datasite folder" in answer["error"]
    assert bob.get_message("m1", sender=ALICE) is None
    assert "outside the sender's datasite folder" in bob.failed_messages()[0]["reason"]


def test_received_hostile_name_is_sanitised(net):
    bob = net[BOB]
    url = f"syft://{ALICE}/app_data/syft_chat/attachments/m2/passwd"
    body = envelope_body(
        ALICE, BOB, "x", msg_id="m2", attachments=[_hostile(url, "../../etc/passwd")]
    )
    code, _ = read_response(_raw(net, body))
    assert code == 200
    got = bob.get_message("m2", sender=ALICE)
    assert got.attachments[0].name == "passwd"
    assert got.attachments[0].state is AttachmentState.PENDING


def test_over_limit_refused_before_anything_is_copied(tmp_path):
    limits = {
        **FAST,
        "max_attachment_bytes": 1000,
        "max_message_attachment_bytes": 1500,
        "max_conversation_attachment_bytes": 2000,
    }
    with local_network(tmp_path, [ALICE, BOB], settings=limits) as net:
        alice = net[ALICE]
        big = _file(tmp_path, "big.bin", b"x" * 1001)
        half = _file(tmp_path, "half.bin", b"x" * 800)
        app = net.datasites / ALICE / "app_data" / "syft_chat" / "attachments"
        for files, words in (
            ([big], "per file"),
            ([half, half], "per message"),
            ([tmp_path / "nope.txt"], "no such file"),
        ):
            with pytest.raises(AttachmentError, match=words):
                alice.send_message(BOB, "too much", attachments=files)
            assert not app.exists() or not any(app.iterdir())
            assert alice.get_chat_history(BOB) == []
        alice.send_message(BOB, "one", attachments=[half])
        alice.send_message(BOB, "two", attachments=[half])
        with pytest.raises(AttachmentError, match="max_conversation_attachment_bytes"):
            alice.send_message(BOB, "three", attachments=[half])
        assert len(list(app.iterdir())) == 2 and len(alice.get_chat_history(BOB)) == 2


def test_a_plugin_refuses_attachments_before_any_copy(net, tmp_path):
    class NoFiles:
        @hookimpl
        def chat_accept_attachments(self, files, recipients, client):
            return f"no files for {','.join(recipients)}"

    refusing = NoFiles()
    net[ALICE].register_plugin(refusing)
    src = _file(tmp_path, "a.txt", b"a")
    with pytest.raises(AttachmentError, match=f"no files for {BOB}"):
        net[ALICE].send_message(BOB, "x", attachments=[src])
    assert not (net.datasites / ALICE / "app_data" / "syft_chat" / "attachments").exists()
    net[ALICE].send_message(BOB, "without is fine")

    class Broken:
        @hookimpl(tryfirst=True)
        def chat_accept_attachments(self, files, recipients, client):
            raise RuntimeError("boom")

    net[ALICE].unregister_plugin(refusing)
    net[ALICE].register_plugin(Broken())
    with pytest.raises(AttachmentError, match="boom"):  # a raising plugin refuses (fails closed)
        net[ALICE].send_message(BOB, "x", attachments=[src])
    assert not (net.datasites / ALICE / "app_data" / "syft_chat" / "attachments").exists()


def test_revoke_rewrites_permissions_and_both_sides_show_revoked(net, tmp_path):
    src = _file(tmp_path, "a.txt", b"secret")
    src2 = _file(tmp_path, "b.txt", b"still shared")
    changes: list[str] = []
    net[BOB].add_change_listener(lambda change, m, actor: changes.append(change))
    sent = net[ALICE].send_message(BOB, "two files", attachments=[src, src2])
    _received(net[BOB], sent.message_id)
    net[ALICE].revoke_attachment(sent.message_id, "a1", timeout=5)
    folder = _folder(net, ALICE, sent.message_id)
    assert _readers(folder, "a.txt") == (set(), set())
    assert _readers(folder, "b.txt") == ({BOB}, {BOB})
    states = lambda c: [a.state for a in c.get_message(sent.message_id).attachments]  # noqa: E731
    assert states(net[ALICE]) == [AttachmentState.REVOKED, AttachmentState.AVAILABLE]
    wait_for(lambda: states(net[BOB])[0] is AttachmentState.REVOKED, timeout=5)
    assert states(net[BOB]) == [AttachmentState.REVOKED, AttachmentState.AVAILABLE]
    with pytest.raises(AttachmentError, match="revoked"):
        net[BOB].attachment_path(sent.message_id, "a1")
    wait_for(lambda: "attachment_revoked" in changes, timeout=5)
    with pytest.raises(AttachmentError):
        net[BOB].revoke_attachment(sent.message_id, "a1")  # not bob's message


def test_a_refused_message_leaves_its_recipient_no_read(net, tmp_path):
    net[BOB].block(ALICE)
    src = _file(tmp_path, "a.txt", b"for bob only")
    with pytest.raises(syft_chat.MessageRejectedError):
        net[ALICE].send_message(BOB, "x", attachments=[src])
    (mine,) = net[ALICE].get_chat_history(BOB)
    folder = _folder(net, ALICE, mine.msg_id)
    wait_for(lambda: _readers(folder, "a.txt") == (set(), set()), timeout=5)
    assert net[ALICE].get_message(mine.msg_id).attachments[0].state is AttachmentState.REVOKED
    assert (folder / "a.txt").read_bytes() == b"for bob only"  # kept, readable by nobody else


def test_delete_removes_the_file_and_both_sides_show_deleted(net, tmp_path):
    src = _file(tmp_path, "a.txt", b"gone soon")
    sent = net[ALICE].send_message(BOB, "x", attachments=[src])
    _received(net[BOB], sent.message_id)
    net[ALICE].delete_message(sent.message_id, timeout=5)
    assert not _folder(net, ALICE, sent.message_id).exists()
    assert src.exists()  # the user's own file is never touched
    mine = net[ALICE].get_message(sent.message_id)
    assert mine.attachments[0].state is AttachmentState.DELETED
    wait_for(lambda: net[BOB].get_message(sent.message_id).deleted, timeout=5)
    assert net[BOB].get_message(sent.message_id).attachments[0].state is AttachmentState.DELETED
    with pytest.raises(AttachmentError, match="deleted"):
        net[BOB].attachment_path(sent.message_id, "a1")


def test_receiver_restart_mid_transfer_announces_once_after_restart(tmp_path):
    data = os.urandom(50_000)
    src = _file(tmp_path, "f.bin", data)
    with local_network(tmp_path / "n", [ALICE, BOB], settings=FAST) as net:
        bob = net[BOB]
        early: list[str] = []
        bob.add_attachment_listener(lambda m, a: early.append(a.id))
        cut: list[Path] = []

        class Truncate:  # before bob hears of it: his sync client has only part of it
            @hookimpl
            def chat_encode_body(self, envelope, client):
                shared = _folder(net, ALICE, envelope.msg_id) / "f.bin"
                shared.write_bytes(data[:10_000])
                cut.append(shared)

        net[ALICE].register_plugin(Truncate())
        sent = net[ALICE].send_message(BOB, "x", attachments=[src])
        (shared,) = cut
        full = data
        _received(bob, sent.message_id)
        bob.check_attachments()
        bob.close()
        assert early == []
        shared.write_bytes(full)  # the transfer finishes while bob is down
        heard: list[str] = []
        seen = threading.Event()

        class Hear:
            @hookimpl
            def chat_attachment_available(self, message, attachment, client):
                heard.append(f"{message.msg_id}:{attachment.id}:{attachment.state}")
                seen.set()

        bob = net.start(BOB, plugins=[Hear()])
        assert seen.wait(5)
        bob.check_attachments()
        assert heard == [f"{sent.message_id}:a1:available"]
        bob.close()
        bob = net.start(BOB, plugins=[Hear()])  # and never again after a further restart
        bob.check_attachments()
        assert heard == [f"{sent.message_id}:a1:available"]


def test_attachments_survive_in_history_and_old_rows_have_none(net, tmp_path):
    src = _file(tmp_path, "n.txt", b"n")
    net[ALICE].send_message(BOB, "plain")
    net[ALICE].send_message(BOB, "with", attachments=[src])
    history = net[ALICE].get_chat_history(BOB)
    assert [len(m.attachments) for m in history] == [0, 1]
    assert json.loads(history[1].model_dump_json())["attachments"][0]["name"] == "n.txt"


def test_an_envelope_without_attachments_still_works(net):
    body = envelope_body(ALICE, BOB, "old peer", msg_id="old")
    code, _ = read_response(_raw(net, body))
    assert code == 200 and net[BOB].get_message("old").attachments == []


def test_display_shows_images_inline_and_escapes_names(net, tmp_path):
    png = _file(tmp_path, "&pic's.png", b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    doc = _file(tmp_path, "notes.txt", b"hello")
    sent = net[ALICE].send_message(BOB, "see", attachments=[png, doc])
    got = _received(net[BOB], sent.message_id)
    html = got._repr_html_()
    assert "<img" in html and "data:image/png;base64," in html
    assert "&pic's" not in html and 'alt="&amp;pic&#x27;s.png"' in html
    assert "notes.txt" in html and "5 B" in html
    from syft_chat.display import format_message

    text = format_message(got)
    assert "notes.txt" in text and "available" in text


def test_cli_send_attach_list_and_save(tmp_path):
    from test_cli import CLI

    cli = CLI(tmp_path)
    try:
        one = _file(tmp_path, "one.csv", b"a,b\n1,2\n")
        two = _file(tmp_path, "two.txt", b"two")
        sent = json.loads(
            cli.ok("send", "--json", BOB, "files", "--attach", str(one), "--attach", str(two))
        )
        assert [a["name"] for a in sent["attachments"]] == ["one.csv", "two.txt"]
        msg_id = sent["message_id"]
        assert cli.bob.get_message(msg_id).attachments[1].state is AttachmentState.AVAILABLE
        listed = cli.ok("attachments")
        assert "one.csv" in listed and "8 B" in listed and "available" in listed
        rows = json.loads(cli.ok("attachments", "--json", "--with", BOB))
        assert [(r["msg_id"], r["id"], r["state"]) for r in rows] == [
            (msg_id, "a1", "available"),
            (msg_id, "a2", "available"),
        ]
        shown = cli.ok("history", "--with", BOB)  # read-only, states from the synced copies
        assert "+ [a1] one.csv  8 B  available" in shown
        assert "+ [a2] two.txt  3 B  available" in shown
        assert "attached  [a1] one.csv  8 B  available" in cli.ok("status", msg_id[:8])
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        cli.ok("save", msg_id[:8], "a2", str(out_dir))
        assert (out_dir / "two.txt").read_bytes() == b"two"
        refused = cli.run("save", msg_id, "a9", str(out_dir))
        assert refused.returncode == 1 and "no attachment 'a9'" in refused.stderr
        missing = cli.run("send", BOB, "x", "--attach", str(tmp_path / "nope"))
        assert missing.returncode == 2 and "does not exist" in missing.stderr
    finally:
        cli.bob.close()


def test_the_example_in_docs_attachments_runs():
    text = (Path(__file__).resolve().parent.parent / "docs" / "attachments.md").read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/attachments.md", "exec"), {})


def test_schema_7_file_reads_unmigrated_and_migrates_with_empty_attachments(tmp_path):
    """A file of the previous schema (no ``attachments`` column) is read by the command
    line's read-only reader as it is (the file does not change), reactions included, and a
    client migrates it in one step (every old row: no attachments)."""
    import sqlite3

    from syft_chat.interfaces import Reaction, StoredMessage
    from syft_chat.models import ChatMessage, Direction, utcnow
    from syft_chat.plugins.sqlite.reader import ReadOnlyHistory
    from syft_chat.plugins.sqlite.store import SQLiteStore

    path = tmp_path / "v7.db"
    store = SQLiteStore(path, owner=ALICE)
    message = ChatMessage(msg_id="m1", sender=ALICE, recipient=BOB, content="old", seq=1)
    store.insert(StoredMessage(message, Direction.OUTGOING, BOB))
    store.put_reaction(Reaction("m1", BOB, "👍", True, 1, utcnow(), ALICE))
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE messages DROP COLUMN attachments")  # as schema 7 left it
    conn.execute("UPDATE schema_version SET version = 7")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    reader = ReadOnlyHistory(path, owner=ALICE)
    try:
        (got,) = reader.history(conversation=BOB)
    finally:
        reader.close()
    assert (got.content, got.attachments, got.reactions) == ("old", [], {"👍": [BOB]})
    assert path.read_bytes() == before
    store = SQLiteStore(path, owner=ALICE)
    try:
        migrated = store.get("m1")
        assert migrated is not None and migrated.message.attachments == []
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (8,)
    conn.close()
