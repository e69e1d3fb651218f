"""Identity, malformed input and permissions, with hand-written request files."""

from __future__ import annotations

import json
import sqlite3

import pytest
from support import ALICE, BOB, MALLORY, envelope_body, read_response, wait_for, write_raw_request

from syft_chat import ChatMessage


@pytest.fixture
def trio(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    bob = ws.client(BOB)
    got: list[ChatMessage] = []
    bob.add_message_listener(got.append)
    rejected: list[tuple[str, str]] = []

    class Recorder:
        from syft_chat import hookimpl

        @hookimpl
        def chat_message_rejected(self, sender, reason):
            rejected.append((sender, reason))

    bob.register_plugin(Recorder())
    return ws, bob, got, rejected


def _stored_senders(ws) -> list[str]:
    conn = sqlite3.connect(ws.db(BOB))
    try:
        return [r[0] for r in conn.execute("SELECT sender FROM messages")]
    finally:
        conn.close()


def test_body_claiming_another_sender_is_rejected(trio):
    ws, bob, got, rejected = trio
    # mallory writes into her own (permission-protected) folder, body claims alice
    path = write_raw_request(
        ws, to=BOB, folder=MALLORY, body=envelope_body(ALICE, BOB, "I am alice, wire me money")
    )
    status, body = read_response(path)
    assert status == 403
    assert "sender mismatch" in body["error"]
    assert _stored_senders(ws) == []
    assert got == []
    assert rejected and rejected[0][0] == MALLORY


def test_request_envelope_claiming_another_sender_is_rejected(trio):
    ws, bob, got, _ = trio
    # syft-rpc envelope says alice, but the file sits in mallory's folder
    path = write_raw_request(
        ws,
        to=BOB,
        folder=MALLORY,
        claimed_sender=ALICE,
        body=envelope_body(ALICE, BOB, "spoof"),
    )
    status, body = read_response(path)
    assert status == 403 and "claims" in body["error"]
    assert _stored_senders(ws) == []


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b'{"id": "x"}', b"\x00\xff" * 100],
    ids=["empty", "garbage", "not-a-request", "binary"],
)
def test_malformed_request_file_gets_error_and_server_keeps_serving(trio, raw):
    ws, bob, got, _ = trio
    path = write_raw_request(ws, to=BOB, folder=ALICE, raw=raw)
    status, body = read_response(path)
    assert status == 400 and "malformed" in body["error"]
    # the server still answers real messages
    alice = ws.client(ALICE)
    alice.send_message(BOB, "still there?")
    wait_for(lambda: [m.content for m in got] == ["still there?"])


def test_malformed_envelope_inside_valid_request(trio):
    ws, bob, got, rejected = trio
    path = write_raw_request(ws, to=BOB, folder=ALICE, body=b'{"content": 3}')
    status, body = read_response(path)
    assert status == 400 and "malformed message" in body["error"]
    assert got == [] and rejected


def test_message_for_someone_else_is_rejected(trio):
    ws, bob, got, _ = trio
    path = write_raw_request(ws, to=BOB, folder=ALICE, body=envelope_body(ALICE, MALLORY, "hi"))
    status, body = read_response(path)
    assert status == 400 and "addressed to" in body["error"]


def test_oversized_content_is_rejected_by_the_receiver(trio):
    ws, bob, got, _ = trio
    big = "x" * (bob.settings.max_content_bytes + 1)
    path = write_raw_request(ws, to=BOB, folder=ALICE, body=envelope_body(ALICE, BOB, big))
    status, body = read_response(path)
    assert status == 413
    assert _stored_senders(ws) == []


def test_huge_request_file_is_refused_unread(trio):
    ws, bob, got, _ = trio
    path = write_raw_request(
        ws, to=BOB, folder=ALICE, raw=b" " * (bob.settings.max_request_bytes + 10)
    )
    status, body = read_response(path)
    assert status == 400 and "limit" in body["error"]


def test_reused_msg_id_from_another_sender_is_another_message(trio):
    # message ids are per sender (issue 3): the reuse neither replaces nor blocks the original
    ws, bob, got, _ = trio
    alice = ws.client(ALICE)
    sent = alice.send_message(BOB, "original")
    path = write_raw_request(
        ws,
        to=BOB,
        folder=MALLORY,
        body=envelope_body(MALLORY, BOB, "hijack", msg_id=sent.message_id),
    )
    status, body = read_response(path)
    assert status == 200
    assert [m.content for m in bob.get_chat_history(with_user=ALICE)] == ["original"]
    assert [m.content for m in bob.get_chat_history(with_user=MALLORY)] == ["hijack"]
    assert bob.get_message(sent.message_id).content == "original"


def test_redelivered_message_is_stored_and_announced_once(trio):
    ws, bob, got, _ = trio
    body = envelope_body(ALICE, BOB, "once")
    first = write_raw_request(ws, to=BOB, folder=ALICE, body=body)
    second = write_raw_request(ws, to=BOB, folder=ALICE, body=body)
    assert read_response(first)[0] == 200
    status, answer = read_response(second)
    assert status == 200 and answer["status"] == "delivered"
    wait_for(lambda: len(got) == 1)
    assert len(bob.get_chat_history()) == 1


def test_file_with_a_non_id_name_is_set_aside(trio):
    ws, bob, got, _ = trio
    path = write_raw_request(
        ws, to=BOB, folder=ALICE, body=envelope_body(ALICE, BOB, "x"), name="evil.request"
    )
    wait_for(lambda: path.with_name("evil.request.invalid").exists())
    assert got == []


def test_permission_files_let_others_write_only_their_own_folder(workspace):
    ws = workspace(ALICE, BOB)
    ws.client(BOB)
    rpc = ws.endpoint(BOB).parent
    pub = (rpc / "syft.pub.yaml").read_text()
    legacy = (rpc / "syftperm.yaml").read_text()
    assert "chat/{{.UserEmail}}/*.request" in pub
    assert "'**/" not in pub  # syft-event's broader default was replaced
    assert "chat/{useremail}/*.request" in legacy and "create" in legacy
    # both parse with syft-core's permission parser
    import yaml
    from syft_core.permissions import SyftPermission

    rel = rpc.relative_to(ws.root / "datasites" / BOB)
    legacy_rules = SyftPermission.from_rule_dicts(rel / "syftperm.yaml", yaml.safe_load(legacy))
    # the Go server's dialect: USER resolves to the requesting datasite
    pub_rules = yaml.safe_load(pub)["rules"]
    assert {r.path for r in legacy_rules.rules} == {
        "rpc.schema.json",
        "chat/{useremail}/*.request",
        "chat/{useremail}/*.response",
    }
    by_pattern = {r["pattern"]: r["access"] for r in pub_rules}
    assert by_pattern["chat/{{.UserEmail}}/*.request"] == {"read": ["USER"], "write": ["USER"]}
    assert by_pattern["rpc.schema.json"] == {"read": ["*"]}
    assert not any("*" in a.get("write", []) for a in by_pattern.values())


def test_response_files_are_written_atomically(pair, monkeypatch):
    """No response is ever observed partially written (fault injected: a slow write)."""
    ws, alice, bob = pair
    # every response passes through files.atomic_write: a tmp file then a rename
    import syft_chat.plugins.syft_rpc.files as fileio
    import syft_chat.plugins.syft_rpc.transport as transport

    seen: list[str] = []
    real = fileio.atomic_write

    def spy(path, data, **kwargs):
        seen.append(path.suffix)
        real(path, data, **kwargs)

    monkeypatch.setattr(transport, "atomic_write", spy)
    alice.send_message(BOB, "atomic?")
    assert seen.count(".request") == 1 and seen.count(".response") == 1
    # and no temporary files are left behind
    leftovers = list(ws.endpoint(BOB).rglob("*.tmp"))
    assert leftovers == []


def test_error_replies_never_echo_the_request_back(trio):
    ws, bob, got, _ = trio
    secret = b"SECRET-TOKEN-1234 not json at all"
    path = write_raw_request(ws, to=BOB, folder=MALLORY, raw=secret)
    status, body = read_response(path)
    assert status == 400
    assert "SECRET" not in json.dumps(body)
    path = write_raw_request(
        ws, to=BOB, folder=MALLORY, body=b'{"content": "SECRET-TOKEN-1234", "msg_id": 7}'
    )
    status, body = read_response(path)
    assert status == 400 and "SECRET" not in json.dumps(body)


def test_symlinked_request_is_never_read(trio, tmp_path):
    ws, bob, got, _ = trio
    target = tmp_path / "private.txt"
    target.write_text("root:x:0:0:private")
    folder = ws.endpoint(BOB) / MALLORY
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "0b1e7b55-9a36-4d77-9d70-4c1b3e1f7e11.request"
    link.symlink_to(target)
    wait_for(lambda: link.with_name(link.name + ".invalid").is_symlink())
    assert not link.with_suffix(".response").exists()
    assert got == []


def test_lone_surrogate_content_is_rejected_not_crashing(trio):
    ws, bob, got, _ = trio
    body = envelope_body(ALICE, BOB, "x").replace(b'"content": "x"', b'"content": "\\ud800"')
    path = write_raw_request(ws, to=BOB, folder=ALICE, body=body)
    status, answer = read_response(path)
    assert status == 400 and ("Unicode" in answer["error"] or "malformed" in answer["error"])
    alice = ws.client(ALICE)
    assert alice.send_message(BOB, "fine").status == "delivered"
