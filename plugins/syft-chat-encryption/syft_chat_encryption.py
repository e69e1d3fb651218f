"""End-to-end encryption of syft-chat messages with syft-crypto (X3DH).

A syft-chat plugin. Installed and loaded, it

* creates this datasite's keys on the first start (``chat_client_started``):
  the private keys go to ``<data dir's parent>/.syftbox/<hash>/pvt.jwks.json``
  (mode 0600, never synced), the public keys are published as the DID
  document ``datasites/<email>/public/did.json``. Existing keys are reused and
  checked against the published DID. This never contacts a server
  (syft-crypto's ``ensure_bootstrap`` would fetch the DID over HTTPS; we only
  read the local, synced copy);
* encrypts every outgoing envelope for its recipient (``chat_encode_body``):
  the whole envelope (content, metadata, thread) becomes an X3DH/AES-GCM
  payload; only the syft-rpc routing fields stay readable;
* decrypts every incoming request (``chat_decode_body``).

It fails closed. Sending to a datasite without a published key, or any
encryption error, raises: the kernel fails the send and writes nothing.
A request that is not encrypted, claims another sender, or cannot be
decrypted raises: the kernel refuses it with the reason and never stores it.
Set ``SYFT_CHAT_ENCRYPTION_ALLOW_PLAINTEXT=1`` to accept unencrypted messages
from peers without the plugin (outgoing messages are still always encrypted).

The delivery confirmations (``{"status": "delivered", "message_id": ...}``)
are not encrypted; they hold no content.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from loguru import logger as _loguru
from pydantic import ValidationError
from syft_crypto import (
    EncryptedPayload,
    create_x3dh_did_document,
    decrypt_message,
    did_path,
    encrypt_message,
    get_public_key_from_did,
    keys_exist,
    load_private_keys,
    private_key_path,
    save_private_keys,
)
from syft_crypto.did_utils import get_identity_public_key_from_did

from syft_chat import RefuseMessage, hookimpl
from syft_chat.models import Envelope, describe_error

if TYPE_CHECKING:
    from syft_core import Client as SyftClient

    from syft_chat import SyftChatClient
    from syft_chat.interfaces import IncomingRequest

__all__ = [
    "PLAINTEXT_SWITCH",
    "WIRE_KEY",
    "EncryptionError",
    "chat_client_started",
    "chat_decode_body",
    "chat_encode_body",
    "ensure_keys",
    "has_published_key",
]

log = logging.getLogger("syft_chat_encryption")

# syft-crypto logs through loguru at DEBUG/INFO, and on a failed decryption it
# logs the first bytes of the shared key: keep it quiet. Re-enable with
# `from loguru import logger; logger.enable("syft_crypto")` when debugging.
_loguru.disable("syft_crypto")

#: Marker (and format version) of an encrypted request body.
WIRE_KEY = "syft_chat_encryption"
_WIRE_VERSION = 1
#: Environment switch: ``1`` accepts unencrypted incoming messages.
PLAINTEXT_SWITCH = "SYFT_CHAT_ENCRYPTION_ALLOW_PLAINTEXT"


class EncryptionError(RefuseMessage):
    """Encryption or decryption failed; the message is neither sent nor stored.

    Its text goes back to the sender of a refused message, so it never
    quotes the request or local paths.
    """


# --------------------------------------------------------------------------- keys


def _raw(key: ed25519.Ed25519PublicKey | x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _did_document(syft: SyftClient, identity: Any, spk: Any) -> dict[str, Any]:
    spk_public = spk.public_key()
    signature = identity.sign(_raw(spk_public))  # Ed25519 signatures are deterministic
    document: dict[str, Any] = create_x3dh_did_document(
        syft.config.email, syft.config.server_url.host, identity.public_key(), spk_public, signature
    )
    return document


def _publish(path: Path, document: dict[str, Any]) -> None:
    """Write the DID atomically: a peer (or the sync client) never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".did.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_keys(syft: SyftClient) -> bool:
    """Make sure this datasite has private keys and publishes the matching DID.

    Returns ``True`` if new keys were created. Offline: reads and writes local
    files only.

    :raises EncryptionError: the published DID exists but the private keys
        are missing, or they do not match (restoring the keys, or deleting the
        DID to start a new identity, is the user's decision: old messages
        encrypted for the old keys could no longer be read).
    """
    did_file = did_path(syft)
    conflict = did_file.with_name("did.conflict.json")
    if conflict.exists():
        raise EncryptionError(
            f"two versions of this datasite's DID exist ({did_file} and {conflict}); keep the "
            "one matching your private keys and delete the other"
        )
    if not keys_exist(syft):
        if did_file.exists():
            raise EncryptionError(
                f"{did_file} is published but the private keys are missing (expected at "
                f"{private_key_path(syft)}): restore them from a backup, or delete the DID to "
                "create a new identity (messages encrypted for the old one become unreadable)"
            )
        identity = ed25519.Ed25519PrivateKey.generate()
        spk = x25519.X25519PrivateKey.generate()
        save_private_keys(syft, identity, spk)
        _publish(did_file, _did_document(syft, identity, spk))
        log.info("created encryption keys for %s; published %s", syft.config.email, did_file)
        return True
    identity, spk = load_private_keys(syft)
    if not did_file.exists():
        _publish(did_file, _did_document(syft, identity, spk))
        log.info("republished the DID of %s from its keys: %s", syft.config.email, did_file)
        return False
    try:
        published = json.loads(did_file.read_text(encoding="utf-8"))
        matches = _raw(get_identity_public_key_from_did(published)) == _raw(
            identity.public_key()
        ) and _raw(get_public_key_from_did(published)) == _raw(spk.public_key())
    except (ValueError, KeyError, TypeError) as exc:
        raise EncryptionError(f"{did_file} is not a valid DID document: {exc}") from exc
    if not matches:
        raise EncryptionError(
            f"the private keys at {private_key_path(syft)} do not match the published "
            f"{did_file}: restore the matching keys, or delete the DID to publish new ones"
        )
    return False


def has_published_key(syft: SyftClient, email: str) -> bool:
    """Whether ``email`` publishes a DID document in this workspace."""
    return bool(did_path(syft, email).is_file())


# --------------------------------------------------------------------------- hooks


@hookimpl
def chat_client_started(client: SyftChatClient) -> None:
    """Create or check this datasite's keys (a failure is recorded; sends then fail closed)."""
    ensure_keys(client.syft)


@hookimpl
def chat_encode_body(envelope: Envelope, client: SyftChatClient) -> bytes:
    """Encrypt the whole envelope for its recipient, or raise (nothing is sent)."""
    recipient = envelope.recipient
    if not has_published_key(client.syft, recipient):
        raise EncryptionError(
            f"{recipient} publishes no encryption key (datasites/{recipient}/public/did.json); "
            "nothing was sent. They need the syft-chat-encryption plugin, started once"
        )
    if not keys_exist(client.syft):
        raise EncryptionError(
            f"{client.email} has no encryption keys yet (see client.plugin_failures for why "
            "they could not be created); nothing was sent"
        )
    payload = encrypt_message(envelope.model_dump_json(), recipient, client.syft)
    wire = {WIRE_KEY: _WIRE_VERSION, "payload": payload.model_dump(mode="json")}
    return json.dumps(wire, separators=(",", ":")).encode()


@hookimpl
def chat_decode_body(request: IncomingRequest, client: SyftChatClient) -> Envelope | None:
    """Decrypt an incoming request, or raise (the message is refused, never stored)."""
    try:
        wire = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        wire = None
    if not isinstance(wire, dict) or WIRE_KEY not in wire:
        if os.environ.get(PLAINTEXT_SWITCH, "").lower() in {"1", "true", "yes"}:
            return None  # the built-in JSON decoding takes it
        raise EncryptionError(
            "this datasite accepts only end-to-end encrypted messages: install the "
            "syft-chat-encryption plugin"
        )
    if wire[WIRE_KEY] != _WIRE_VERSION:
        raise EncryptionError(f"unsupported encryption format {wire[WIRE_KEY]!r}")
    try:
        payload = EncryptedPayload.model_validate(wire.get("payload"))
    except ValidationError as exc:
        raise EncryptionError(f"malformed encrypted payload: {describe_error(exc)}") from exc
    if payload.sender != request.sender:
        raise EncryptionError(
            f"payload claims to be from {payload.sender[:80]!r} but came from {request.sender}"
        )
    if payload.receiver != client.email:
        raise EncryptionError(f"payload is encrypted for someone else, not {client.email}")
    try:
        plaintext = decrypt_message(payload, client.syft)
    except Exception as exc:
        # details (paths, key errors) stay in the local log, not in the reply
        log.info("could not decrypt a message from %s: %r", request.sender, exc)
        if not has_published_key(client.syft, request.sender):
            raise EncryptionError(f"{request.sender} publishes no encryption key") from exc
        raise EncryptionError(
            f"could not decrypt ({type(exc).__name__}); the sender's or our keys may have changed"
        ) from exc
    try:
        return Envelope.model_validate_json(plaintext)
    except ValidationError as exc:
        raise EncryptionError(f"decrypted message is malformed: {describe_error(exc)}") from exc
