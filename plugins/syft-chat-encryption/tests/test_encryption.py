"""End-to-end encryption through the installed entry point, on real datasites on disk."""

from __future__ import annotations

import json
import socket
import stat

import pytest
import syft_chat_encryption
from syft_rpc.protocol import SyftRequest

import syft_chat
from syft_chat import MessageStatus, hookimpl
from syft_chat.testing import files_containing, local_network, register_plugin, wait_for

ALICE, BOB = "alice@openmined.org", "bob@openmined.org"
SECRET = "the launch code is 0000, tell no one"


def _send_to_offline(client, recipient, text):
    """Send to a recipient that is not serving: the request stays on disk, unconfirmed."""
    try:
        status = client.send_message(recipient, text, timeout=0.3).status
    except syft_chat.DeliveryTimeoutError:  # kernels that raise instead of returning "sent"
        status = "sent"
    assert status in ("sent", "queued")


def _request_files(net, recipient=BOB):
    return sorted(net.datasites.glob(f"{recipient}/app_data/*/rpc/chat/*/*.request"))


def test_loaded_from_the_entry_point_and_keys_bootstrapped(crypto_network):
    bob = crypto_network[BOB]
    assert "syft-chat-encryption:encryption" in bob.list_plugins()
    assert bob.plugin_failures == []
    for email in (ALICE, BOB):
        did = json.loads((crypto_network.datasites / email / "public" / "did.json").read_text())
        assert did["keyAgreement"][0]["id"].endswith("#signed-prekey")
        key_file = syft_chat_encryption.private_key_path(crypto_network[email].syft)
        assert crypto_network.root in key_file.parents  # nothing outside the test's folder
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert crypto_network.datasites not in key_file.parents  # private keys never sync


def test_bootstrap_never_touches_the_network(tmp_path, monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with local_network(tmp_path, 2) as net:
        assert net.ask  # clients started, keys made
        net[ALICE].send_message(BOB, SECRET)
        assert net[BOB].plugin_failures == net[ALICE].plugin_failures == []


def test_round_trip_and_the_request_on_disk_holds_no_plain_text(crypto_network):
    alice, bob = crypto_network[ALICE], crypto_network[BOB]
    seen: list[bytes] = []

    class Spy:
        """Runs before the decryption: looks at the request file as it lies on disk."""

        @hookimpl(tryfirst=True)
        def chat_decode_body(self, request):
            for path in _request_files(crypto_network):
                raw = path.read_bytes()
                seen.append(raw)
                seen.append(SyftRequest.model_validate_json(raw).body or b"")
            return None  # let the encryption plugin decode it

    with register_plugin(bob, Spy()):
        response = alice.send_message(BOB, SECRET, metadata={"topic": "SECRET-TOPIC"})
    assert response.status == "delivered"
    got = bob.get_message(response.message_id)
    assert got.content == SECRET and got.metadata == {"topic": "SECRET-TOPIC"}
    assert seen, "the spy saw no request file"
    for blob in seen:  # the raw file and its base64-decoded body
        assert SECRET.encode() not in blob
        assert b"SECRET-TOPIC" not in blob
    assert json.loads(seen[1])[syft_chat_encryption.WIRE_KEY] == 1
    # and nothing in the synced tree holds the text afterwards either
    assert files_containing(crypto_network.datasites, SECRET.encode()) == []


def test_request_left_on_disk_for_an_offline_recipient_is_ciphertext(crypto_network):
    alice = crypto_network[ALICE]
    crypto_network[BOB].close()  # bob goes offline; his published endpoint stays
    _send_to_offline(alice, BOB, SECRET)
    (path,) = _request_files(crypto_network)
    body = SyftRequest.model_validate_json(path.read_bytes()).body or b""
    assert SECRET.encode() not in path.read_bytes() and SECRET.encode() not in body
    assert files_containing(crypto_network.datasites, SECRET.encode()) == []
    # bob comes back and reads it
    bob = crypto_network.start(BOB)
    wait_for(lambda: [m.content for m in bob.get_chat_history()] == [SECRET], timeout=10)


def test_control_without_encryption_the_body_is_plain_text(tmp_path, monkeypatch):
    """The checks above would catch a leak: without the plugin the text is in the body."""
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", "")
    with local_network(tmp_path, 2) as net:
        net[BOB].close()
        _send_to_offline(net[ALICE], BOB, SECRET)
        (path,) = _request_files(net)
        assert SECRET.encode() in (SyftRequest.model_validate_json(path.read_bytes()).body or b"")


def test_recipient_without_a_key_fails_closed(crypto_network):
    crypto_network[BOB].close()
    (crypto_network.datasites / BOB / "public" / "did.json").unlink()
    bob = crypto_network.start(BOB, load_entry_points=False)  # serves, publishes no key
    with pytest.raises(syft_chat.DeliveryError, match="publishes no encryption key") as info:
        crypto_network[ALICE].send_message(BOB, SECRET)
    assert crypto_network[ALICE].get_message(info.value.msg_id).status == MessageStatus.FAILED
    assert _request_files(crypto_network) == []  # nothing was written, in any form
    assert files_containing(crypto_network.datasites, SECRET.encode()) == []
    assert bob.get_chat_history() == []


def test_unencrypted_message_is_refused_and_not_stored(crypto_network, monkeypatch):
    crypto_network[ALICE].close()
    plain_alice = crypto_network.start(ALICE, load_entry_points=False)
    with pytest.raises(syft_chat.MessageRejectedError, match="only end-to-end encrypted"):
        plain_alice.send_message(BOB, "hello in clear")
    assert crypto_network[BOB].get_chat_history() == []
    # the documented escape hatch accepts it
    monkeypatch.setenv(syft_chat_encryption.PLAINTEXT_SWITCH, "1")
    plain_alice.send_message(BOB, "hello again")
    assert [m.content for m in crypto_network[BOB].get_chat_history()] == ["hello again"]


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("ciphertext", "could not decrypt"),
        ("tag", "could not decrypt"),
        ("sender", "payload claims to be from"),
        ("receiver", "encrypted for someone else"),
    ],
)
def test_tampered_message_is_refused_and_never_stored(crypto_network, field, reason):
    alice, bob = crypto_network[ALICE], crypto_network[BOB]
    rejected: list[str] = []

    class Tamper:
        @hookimpl(tryfirst=True)
        def chat_encode_body(self, envelope, client):
            wire = json.loads(syft_chat_encryption.chat_encode_body(envelope, client))
            payload = wire["payload"]
            if field in ("sender", "receiver"):
                payload[field] = "carol@openmined.org"
            else:
                payload[field] = payload[field][:-4] + (
                    "AAA=" if payload[field][-4:] != "AAA=" else "BBB="
                )
            return json.dumps(wire).encode()

    class Watch:
        @hookimpl
        def chat_message_rejected(self, sender, reason):
            rejected.append(reason)

    with (
        register_plugin(alice, Tamper()),
        register_plugin(bob, Watch()),
        pytest.raises(syft_chat.MessageRejectedError, match=reason) as info,
    ):
        alice.send_message(BOB, SECRET)
    assert "could not decode" in info.value.reason
    assert SECRET not in info.value.reason
    assert bob.get_chat_history() == []
    wait_for(lambda: rejected)
    assert alice.get_message(info.value.msg_id).status == MessageStatus.FAILED


def test_keys_survive_a_restart_and_a_mismatch_is_reported(crypto_network):
    did_file = crypto_network.datasites / BOB / "public" / "did.json"
    before = did_file.read_text()
    crypto_network[BOB].close()
    crypto_network.start(BOB)
    assert did_file.read_text() == before  # same identity, no new keys
    crypto_network[ALICE].send_message(BOB, "still works")

    # a DID published without its private keys is refused at start, and sends fail closed
    crypto_network[ALICE].close()
    alice_did = crypto_network.datasites / ALICE / "public" / "did.json"
    alice_did.write_text(before.replace(BOB.split("@")[0], "x"))  # bob's keys, not alice's
    alice = crypto_network.start(ALICE)
    assert any("do not match" in f.error for f in alice.plugin_failures)


def test_attachments_are_refused_before_anything_is_copied(crypto_network, tmp_path):
    """The plugin does not encrypt files: attaching one is refused with its reason, and
    nothing lands in the sender's datasite or database."""
    alice = crypto_network[ALICE]
    src = tmp_path / "secret.csv"
    src.write_text("a,b\n1,2\n")
    with pytest.raises(syft_chat.AttachmentError, match="does not encrypt attachments"):
        alice.send_message(BOB, "the file", attachments=[src])
    shared = crypto_network.datasites / ALICE / "app_data" / "syft_chat" / "attachments"
    assert not shared.exists()
    assert alice.get_chat_history(BOB) == []
    assert alice.send_message(BOB, "text still works").status == MessageStatus.DELIVERED.value
