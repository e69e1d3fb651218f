"""Key pinning (trust on first use), explicit trust, signed rotations and re-encryption."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest
import syft_chat_encryption as enc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from syft_crypto import EncryptedPayload, create_x3dh_did_document, decrypt_message
from syft_rpc.protocol import SyftRequest

import syft_chat
from syft_chat import MessageStatus
from syft_chat.testing import files_containing, wait_for

ALICE, BOB = "alice@openmined.org", "bob@openmined.org"
SECRET = "the launch code is 0000, tell no one"


def _raw(key):
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _fp(key):
    """The fingerprint, computed here (SHA-256 of the raw key), not by the plugin."""
    return hashlib.sha256(_raw(key)).hexdigest()


def _grouped(fp):
    """How messages show a fingerprint: groups of four hex digits."""
    return " ".join(fp[i : i + 4] for i in range(0, len(fp), 4))


def _did_file(net, email=BOB):
    return net.datasites / email / "public" / "did.json"


def _request_files(net, recipient=BOB):
    return set(net.datasites.glob(f"{recipient}/app_data/*/rpc/chat/*/*.request"))


def _publish_mallorys_keys(net, email=BOB):
    """Overwrite ``email``'s did.json with a valid DID document holding keys mallory owns."""
    identity, spk = ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    document = create_x3dh_did_document(
        email,
        "syftbox.net",
        identity.public_key(),
        spk.public_key(),
        identity.sign(_raw(spk.public_key())),
    )
    _did_file(net, email).write_text(json.dumps(document))
    return _fp(identity.public_key())


def _identity(net, email=BOB):
    identity, _ = enc.load_private_keys(net[email].syft)
    return _fp(identity.public_key())


def _send_to_offline(client, recipient, text):
    try:
        status = client.send_message(recipient, text, timeout=0.3).status
    except syft_chat.DeliveryTimeoutError:
        status = "sent"
    assert status in ("sent", "queued")


def test_first_use_pins_the_key_beside_the_private_keys(crypto_network):
    alice = crypto_network[ALICE]
    assert enc.key_status(alice, BOB).state == "unpinned"
    alice.send_message(BOB, "hello")
    (pin,) = enc.pinned_keys(alice).values()
    assert (pin.peer, pin.fingerprint, pin.source) == (BOB, _identity(crypto_network), "first use")
    path = enc.pin_path(alice)
    assert path.parent == enc.private_key_path(alice.syft).parent
    assert crypto_network.datasites not in path.parents  # never synced
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert enc.key_status(alice, BOB).state == "pinned"


def test_substituted_key_is_refused_with_both_fingerprints_and_nothing_written(crypto_network):
    alice = crypto_network[ALICE]
    alice.send_message(BOB, "hello")
    bobs = _identity(crypto_network)
    before = _request_files(crypto_network)
    mallorys = _publish_mallorys_keys(crypto_network)

    with pytest.raises(syft_chat.DeliveryError, match="encryption key changed") as info:
        alice.send_message(BOB, SECRET)
    text = str(info.value)
    for fp in (bobs, mallorys):
        assert _grouped(fp) in text
    assert f"trust {BOB}" in text
    stored = alice.get_message(info.value.msg_id)
    assert stored.status == MessageStatus.FAILED and mallorys[:4] in (stored.error or "")
    assert _request_files(crypto_network) <= before  # nothing new for mallory to read
    assert files_containing(crypto_network.datasites, SECRET.encode()) == []

    status = enc.key_status(alice, BOB)
    assert (status.state, status.pinned.fingerprint, status.published) == (
        "changed",
        bobs,
        mallorys,
    )
    assert enc.pinned_keys(alice)[BOB].fingerprint == bobs  # the refusal changed no pin


def test_trust_accepts_a_new_key_and_sending_works_again(crypto_network):
    """bob reinstalls (new keys, no signed rotation): refused until alice trusts the new key."""
    alice = crypto_network[ALICE]
    alice.send_message(BOB, "hello")
    old = _identity(crypto_network)
    crypto_network[BOB].close()
    enc.private_key_path(crypto_network[BOB].syft).unlink()
    _did_file(crypto_network).unlink()
    crypto_network.start(BOB)  # creates and publishes new keys
    new = _identity(crypto_network)
    assert new != old

    with pytest.raises(syft_chat.DeliveryError, match="encryption key changed"):
        alice.send_message(BOB, "refused")
    with pytest.raises(ValueError, match="nothing was trusted"):
        enc.trust(alice, BOB, expected=old)  # not what is published
    before = enc.trust(alice, BOB, expected=_grouped(new))
    assert (before.state, before.pinned.fingerprint, before.published) == ("changed", old, new)
    pin = enc.pinned_keys(alice)[BOB]
    assert (pin.fingerprint, pin.source, pin.previous) == (new, "trusted", (old,))

    assert alice.send_message(BOB, SECRET).status == "delivered"
    assert SECRET in [m.content for m in crypto_network[BOB].get_chat_history()]


def test_signed_rotation_is_accepted_without_asking(crypto_network):
    alice, bob = crypto_network[ALICE], crypto_network[BOB]
    alice.send_message(BOB, "hello")
    first = _identity(crypto_network)
    assert enc.rotate_keys(bob) == (first, _identity(crypto_network))
    enc.rotate_keys(bob)  # twice while alice does not send: a chain of two statements
    latest = _identity(crypto_network)
    assert enc.key_status(alice, BOB).state == "rotated"

    assert alice.send_message(BOB, SECRET).status == "delivered"
    pin = enc.pinned_keys(alice)[BOB]
    assert (pin.fingerprint, pin.source, pin.previous[0]) == (latest, "rotation", first)
    assert SECRET in [m.content for m in bob.get_chat_history()]

    # a new prekey under the same identity key needs no statement at all
    enc.rotate_keys(bob, identity=False)
    assert _identity(crypto_network) == latest
    assert alice.send_message(BOB, "same identity, new prekey").status == "delivered"


def test_rotation_not_signed_by_the_pinned_key_is_refused(crypto_network):
    alice, bob = crypto_network[ALICE], crypto_network[BOB]
    alice.send_message(BOB, "hello")
    enc.rotate_keys(bob)  # a genuine statement: old -> new
    # mallory publishes her key, with a statement "new -> mallory" she signs herself
    rotation_file = _did_file(crypto_network).with_name(enc.ROTATION_FILE)
    statements = json.loads(rotation_file.read_text())["rotations"]
    forged = dict(statements[0], old_key=statements[0]["new_key"])
    forged["new_key"] = statements[0]["old_key"][::-1]
    rotation_file.write_text(json.dumps({"rotations": [*statements, forged]}))
    _publish_mallorys_keys(crypto_network)
    with pytest.raises(syft_chat.DeliveryError, match="no rotation signed by the pinned key"):
        alice.send_message(BOB, SECRET)
    assert enc.key_status(alice, BOB).state == "changed"


@pytest.mark.parametrize("identity", [True, False], ids=["new-identity", "new-prekey"])
def test_message_encrypted_for_old_keys_is_re_encrypted_and_delivered(crypto_network, identity):
    alice = crypto_network[ALICE]
    alice.send_message(BOB, "hello")
    crypto_network[BOB].close()
    before = _request_files(crypto_network)
    _send_to_offline(alice, BOB, SECRET)  # encrypted for bob's current keys, waits on disk
    (pending,) = [m for m in alice.get_chat_history(with_user=BOB) if m.content == SECRET]
    (old_request,) = _request_files(crypto_network) - before
    old_body = SyftRequest.model_validate_json(old_request.read_bytes()).body or b""

    enc.rotate_keys(crypto_network[BOB].syft, identity=identity)  # before bob reads it
    bob = crypto_network.start(BOB)
    wait_for(lambda: SECRET in [m.content for m in bob.get_chat_history()], timeout=15)
    wait_for(
        lambda: alice.get_message(pending.msg_id).status == MessageStatus.DELIVERED, timeout=15
    )
    assert bob.plugin_failures == []
    # the old ciphertext really was undecryptable with bob's new keys
    payload = EncryptedPayload.model_validate(json.loads(old_body)["payload"])
    with pytest.raises(ValueError, match="Decryption failed"):
        decrypt_message(payload, bob.syft)


def test_the_pin_survives_a_restart(crypto_network):
    crypto_network[ALICE].send_message(BOB, "hello")
    bobs = _identity(crypto_network)
    crypto_network[ALICE].close()
    mallorys = _publish_mallorys_keys(crypto_network)
    alice = crypto_network.start(ALICE)
    assert enc.pinned_keys(alice)[BOB].fingerprint == bobs
    with pytest.raises(syft_chat.DeliveryError, match=_grouped(mallorys)):
        alice.send_message(BOB, SECRET)


def test_an_unreadable_pin_file_fails_closed(crypto_network):
    alice = crypto_network[ALICE]
    alice.send_message(BOB, "hello")
    enc.pin_path(alice).write_text("{not json")
    with pytest.raises(syft_chat.DeliveryError, match=r"key pins .* are unreadable"):
        alice.send_message(BOB, SECRET)


def test_command_line_lists_shows_and_trusts(crypto_network, capsys):
    alice = crypto_network[ALICE]
    config = str(crypto_network.configs[ALICE])
    alice.send_message(BOB, "hello")
    bobs = _identity(crypto_network)
    mallorys = _publish_mallorys_keys(crypto_network)

    assert enc.main(["--config", config, "keys"]) == 0
    out = capsys.readouterr().out
    assert "changed" in out and _grouped(bobs) in out
    assert _grouped(mallorys) in out

    assert enc.main(["--config", config, "trust", BOB, "--fingerprint", "0" * 64]) == 1
    assert "nothing was trusted" in capsys.readouterr().err
    assert enc.pinned_keys(alice)[BOB].fingerprint == bobs

    assert enc.main(["--config", config, "trust", BOB, "--yes"]) == 0
    out = capsys.readouterr().out
    assert _grouped(bobs) in out and _grouped(mallorys) in out
    assert enc.key_status(alice, BOB).state == "pinned"
    assert enc.pinned_keys(alice)[BOB].fingerprint == mallorys
