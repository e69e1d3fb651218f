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
* decrypts every incoming request (``chat_decode_body``);
* refuses attachments (``chat_accept_attachments``): files are not encrypted yet, and
  an attachment would sit in plain text in the sender's datasite;
* pins each peer's identity key on first use (TOFU) and refuses to encrypt
  for a changed one until the user accepts it (:func:`trust`, or
  ``python -m syft_chat_encryption trust PEER``), unless the peer announced
  the change in a rotation statement signed by the pinned key
  (``public/did.rotation.json``, written by :func:`rotate_keys`). See the
  README's "Trust model".

It fails closed. Sending to a datasite without a published key, or any
encryption error, raises: the kernel fails the send and writes nothing.
A request that is not encrypted, claims another sender, or cannot be
decrypted raises: the kernel refuses it with the reason and never stores it.
Set ``SYFT_CHAT_ENCRYPTION_ALLOW_PLAINTEXT=1`` to accept unencrypted messages
from peers without the plugin (outgoing messages are still always encrypted).

A message that cannot be decrypted because it was encrypted for keys that have
changed since (ours or the sender's, as named in the request) is answered
"retry": the sender encrypts it again for the current keys and resends it.

The delivery confirmations (``{"status": "delivered", "message_id": ...}``)
are not encrypted; they hold no content.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from loguru import logger as _loguru
from pydantic import ValidationError
from syft_crypto import (
    EncryptedPayload,
    create_x3dh_did_document,
    decrypt_message,
    did_path,
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
    "ATTACHMENTS_REFUSED",
    "PIN_FILE",
    "PLAINTEXT_SWITCH",
    "ROTATION_FILE",
    "WIRE_KEY",
    "EncryptionError",
    "KeyChangedError",
    "KeyStatus",
    "Pin",
    "chat_accept_attachments",
    "chat_client_started",
    "chat_decode_body",
    "chat_encode_body",
    "ensure_keys",
    "fingerprint",
    "format_fingerprint",
    "has_published_key",
    "key_status",
    "main",
    "pin_path",
    "pinned_keys",
    "rotate_keys",
    "trust",
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


# --------------------------------------------------------------------------- pins

#: Name of the pin store, beside this datasite's private keys (never synced).
PIN_FILE = "syft_chat_encryption.pins.json"
#: Name of a datasite's key rotation statements, beside its ``did.json``.
ROTATION_FILE = "did.rotation.json"
_ROTATION_TYPE = "syft-chat-encryption.key-rotation"
#: ``last_seen`` is rewritten at most this often (not on every send).
_LAST_SEEN_EVERY = timedelta(minutes=1)
_pin_locks: dict[Path, threading.Lock] = {}
_pin_locks_guard = threading.Lock()


class KeyChangedError(EncryptionError):
    """The recipient publishes an identity key other than the pinned one; nothing was sent.

    ``pinned`` and ``published`` are the two fingerprints. Accept the new key
    with :func:`trust` once you checked it with the peer.
    """

    def __init__(self, message: str, *, peer: str, pinned: str, published: str) -> None:
        super().__init__(message)
        self.peer = peer
        self.pinned = pinned
        self.published = published


@dataclass(frozen=True)
class Pin:
    """The identity key remembered for one peer.

    ``source`` says how it was pinned: ``"first use"``, ``"trusted"`` (by
    :func:`trust`) or ``"rotation"`` (a statement signed by the previous
    pin); ``previous`` lists the fingerprints it replaced, oldest first.
    """

    peer: str
    fingerprint: str
    key: str  # the raw Ed25519 public key, base64url (to check rotation statements)
    first_seen: str
    last_seen: str
    source: str = "first use"
    previous: tuple[str, ...] = ()

    @classmethod
    def _from_json(cls, peer: str, data: dict[str, Any]) -> Pin:
        return cls(
            peer=peer,
            fingerprint=str(data["fingerprint"]),
            key=str(data["key"]),
            first_seen=str(data["first_seen"]),
            last_seen=str(data["last_seen"]),
            source=str(data.get("source", "first use")),
            previous=tuple(str(f) for f in data.get("previous", ())),
        )

    def _to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["peer"]
        data["previous"] = list(self.previous)
        return data


@dataclass(frozen=True)
class KeyStatus:
    """A peer's published identity key compared with its pin.

    ``state``: ``"unpinned"`` (never encrypted for them; the next send pins
    the published key), ``"pinned"`` (the same key), ``"rotated"`` (a
    different key, announced by a rotation statement signed by the pinned
    key: accepted on the next send), ``"changed"`` (a different key and no
    valid statement: sends are refused until :func:`trust`), ``"missing"``
    (no usable ``did.json``; ``detail`` says why).
    """

    peer: str
    state: str
    pinned: Pin | None
    published: str | None  # fingerprint of the published identity key
    detail: str = ""
    chain: tuple[str, ...] = field(default=(), repr=False)

    def describe(self) -> str:
        """Both fingerprints and what to do, in words."""
        pinned = self.pinned.fingerprint if self.pinned else "(none)"
        lines = [
            f"{self.peer}: {self.state}",
            f"  pinned:    {format_fingerprint(pinned)}"
            + (f"  (since {self.pinned.first_seen}, {self.pinned.source})" if self.pinned else ""),
            f"  published: {format_fingerprint(self.published or '(none)')}",
        ]
        if self.detail:
            lines.append(f"  {self.detail}")
        return "\n".join(lines)


def fingerprint(key: ed25519.Ed25519PublicKey | x25519.X25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: what is pinned and shown."""
    return hashlib.sha256(_raw(key)).hexdigest()


def format_fingerprint(fp: str) -> str:
    """A fingerprint in groups of four, for reading aloud."""
    if len(fp) != 64:
        return fp
    return " ".join(fp[i : i + 4] for i in range(0, 64, 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _syft(client: Any) -> SyftClient:
    """A syft-core client from a SyftChatClient or a syft-core client."""
    syft: SyftClient = getattr(client, "syft", client)
    return syft


def pin_path(client: Any) -> Path:
    """Where this datasite's pins are kept: beside its private keys, never synced."""
    return Path(private_key_path(_syft(client))).parent / PIN_FILE


def _pin_lock(path: Path) -> threading.Lock:
    with _pin_locks_guard:
        return _pin_locks.setdefault(path, threading.Lock())


def _write_atomically(path: Path, data: Any, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_pins(path: Path) -> dict[str, Pin]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {peer: Pin._from_json(peer, entry) for peer, entry in data["pins"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # fail closed: an unreadable pin file must not turn into "first use" for everyone
        raise EncryptionError(
            f"the key pins at {path} are unreadable ({type(exc).__name__}); nothing was sent. "
            "Restore the file, or delete it to pin every peer's current key again"
        ) from exc


def _save_pins(path: Path, pins: dict[str, Pin]) -> None:
    data = {"version": 1, "pins": {peer: pin._to_json() for peer, pin in sorted(pins.items())}}
    _write_atomically(path, data, 0o600)


def pinned_keys(client: Any) -> dict[str, Pin]:
    """Every pinned peer of this datasite (``client``: a SyftChatClient or syft-core client)."""
    path = pin_path(client)
    with _pin_lock(path):
        return _load_pins(path)


# --------------------------------------------------------------------------- published keys


def _published_keys(
    syft: SyftClient, email: str
) -> tuple[ed25519.Ed25519PublicKey, x25519.X25519PublicKey]:
    """``email``'s identity key and signed prekey, read once, the prekey's signature checked."""
    path = did_path(syft, email)
    if not path.is_file():
        raise EncryptionError(
            f"{email} publishes no encryption key (datasites/{email}/public/did.json); "
            "nothing was sent. They need the syft-chat-encryption plugin, started once"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        identity = get_identity_public_key_from_did(document)
        spk = get_public_key_from_did(document)
        signature = next(
            _unb64(k["publicKeyJwk"]["signature"])
            for k in document["keyAgreement"]
            if str(k["id"]).endswith("#signed-prekey")
        )
        identity.verify(signature, _raw(spk))
    except InvalidSignature as exc:
        raise EncryptionError(
            f"the signed prekey in {email}'s did.json is not signed by its identity key; "
            "nothing was sent"
        ) from exc
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise EncryptionError(
            f"{email}'s did.json is not a valid DID document ({type(exc).__name__}); "
            "nothing was sent"
        ) from exc
    return identity, spk


def _statement_bytes(statement: dict[str, Any]) -> bytes:
    signed = {k: statement[k] for k in ("type", "email", "old_key", "new_key", "issued")}
    return json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()


def _rotation_chain(syft: SyftClient, peer: str, pin: Pin, published: str) -> tuple[str, ...]:
    """The keys (base64url) leading from ``pin`` to the published fingerprint, each step
    signed by the key before it (and by the new key); ``()`` if there is no such chain."""
    path = did_path(syft, peer).with_name(ROTATION_FILE)
    try:
        statements = json.loads(path.read_text(encoding="utf-8"))["rotations"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    chain: list[str] = []
    current = pin.key
    for _ in range(len(statements) if isinstance(statements, list) else 0):
        for statement in statements:
            try:
                if statement["type"] != _ROTATION_TYPE or statement["email"] != peer:
                    continue
                if statement["old_key"] != current or statement["new_key"] in chain:
                    continue
                message = _statement_bytes(statement)
                old = ed25519.Ed25519PublicKey.from_public_bytes(_unb64(current))
                new = ed25519.Ed25519PublicKey.from_public_bytes(_unb64(statement["new_key"]))
                old.verify(_unb64(statement["signature"]), message)
                new.verify(_unb64(statement["new_signature"]), message)
            except (InvalidSignature, ValueError, KeyError, TypeError):
                continue
            current = statement["new_key"]
            chain.append(current)
            if fingerprint(new) == published:
                return tuple(chain)
            break
        else:
            return ()
    return ()


def _status(syft: SyftClient, peer: str, pins: dict[str, Pin]) -> KeyStatus:
    pin = pins.get(peer)
    try:
        identity, _ = _published_keys(syft, peer)
    except EncryptionError as exc:
        return KeyStatus(peer, "missing", pin, None, str(exc).replace("; nothing was sent", ""))
    published = fingerprint(identity)
    if pin is None:
        return KeyStatus(peer, "unpinned", None, published, "the next message pins this key")
    if pin.fingerprint == published:
        return KeyStatus(peer, "pinned", pin, published)
    chain = _rotation_chain(syft, peer, pin, published)
    if chain:
        return KeyStatus(
            peer,
            "rotated",
            pin,
            published,
            "announced by a rotation signed by the pinned key",
            chain,
        )
    return KeyStatus(
        peer,
        "changed",
        pin,
        published,
        f"the published key differs from the pinned one: check it with {peer}, then trust it",
    )


def key_status(client: Any, peer: str) -> KeyStatus:
    """Compare ``peer``'s published identity key with its pin (changes nothing)."""
    syft = _syft(client)
    path = pin_path(syft)
    with _pin_lock(path):
        return _status(syft, peer, _load_pins(path))


def trust(client: Any, peer: str, expected: str | None = None) -> KeyStatus:
    """Pin the identity key ``peer`` publishes now, replacing the pinned one.

    :param expected: the fingerprint you checked (spaces ignored); if the
        published key is another, nothing is pinned (``ValueError``).
    :return: the status before, with both fingerprints.
    :raises EncryptionError: ``peer`` publishes no valid key.
    """
    syft = _syft(client)
    path = pin_path(syft)
    with _pin_lock(path):
        pins = _load_pins(path)
        before = _status(syft, peer, pins)
        if before.published is None:
            raise EncryptionError(before.detail)
        if expected is not None and expected.replace(" ", "").lower() != before.published:
            raise ValueError(
                f"{peer} now publishes {format_fingerprint(before.published)}, not the expected "
                f"{format_fingerprint(expected)}; nothing was trusted"
            )
        identity, _ = _published_keys(syft, peer)
        old = before.pinned
        if old is None or old.fingerprint != before.published:
            now = _now()
            previous = (*old.previous, old.fingerprint) if old else ()
            pins[peer] = Pin(
                peer, before.published, _b64(_raw(identity)), now, now, "trusted", previous
            )
            _save_pins(path, pins)
            log.warning(
                "trusted the new identity key of %s: %s (was %s)",
                peer,
                before.published,
                old.fingerprint if old else "unpinned",
            )
    return before


def _check_pin(syft: SyftClient, peer: str, identity: ed25519.Ed25519PublicKey) -> None:
    """TOFU: pin on first use, go on the same key or a signed rotation, else refuse."""
    published = fingerprint(identity)
    path = pin_path(syft)
    with _pin_lock(path):
        pins = _load_pins(path)
        pin = pins.get(peer)
        now = _now()
        if pin is None:
            pins[peer] = Pin(peer, published, _b64(_raw(identity)), now, now)
            log.info("pinned the identity key of %s on first use: %s", peer, published)
        elif pin.fingerprint == published:
            try:
                stale = datetime.fromisoformat(now) - datetime.fromisoformat(pin.last_seen)
            except ValueError:
                stale = _LAST_SEEN_EVERY
            if stale < _LAST_SEEN_EVERY:
                return
            pins[peer] = replace(pin, last_seen=now)
        else:
            chain = _rotation_chain(syft, peer, pin, published)
            if not chain:
                pinned, now_published = (
                    format_fingerprint(pin.fingerprint),
                    format_fingerprint(published),
                )
                raise KeyChangedError(
                    f"{peer}'s encryption key changed: pinned {pinned} (since "
                    f"{pin.first_seen}), now published {now_published}, with no rotation "
                    "signed by the pinned key; nothing was sent. If they really changed keys "
                    "(check the fingerprint with them), run `python -m syft_chat_encryption "
                    f"trust {peer}` or call syft_chat_encryption.trust(client, {peer!r}), and "
                    "send again",
                    peer=peer,
                    pinned=pin.fingerprint,
                    published=published,
                )
            previous = (*pin.previous, pin.fingerprint)
            pins[peer] = Pin(peer, published, chain[-1], now, now, "rotation", previous)
            log.warning(
                "accepted the signed key rotation of %s: %s -> %s", peer, pin.fingerprint, published
            )
        _save_pins(path, pins)


# --------------------------------------------------------------------------- rotation


def rotate_keys(client: Any, *, identity: bool = True) -> tuple[str, str]:
    """Replace this datasite's keys and publish them; return the old and new identity fingerprints.

    A new signed prekey always; with ``identity`` (the default) a new identity
    key too, announced in ``public/did.rotation.json`` by a statement signed
    with the old identity key and the new one, so peers who pinned the old key
    accept the new one without asking. Messages already encrypted for the old
    keys are re-encrypted by their senders (the receiver answers "retry").
    The old private keys are overwritten.
    """
    syft = _syft(client)
    ensure_keys(syft)
    old_identity, _ = load_private_keys(syft)
    new_identity = ed25519.Ed25519PrivateKey.generate() if identity else old_identity
    spk = x25519.X25519PrivateKey.generate()
    old_fp, new_fp = fingerprint(old_identity.public_key()), fingerprint(new_identity.public_key())
    if identity:
        rotation_file = did_path(syft).with_name(ROTATION_FILE)
        try:
            statements = json.loads(rotation_file.read_text(encoding="utf-8"))["rotations"]
        except (OSError, ValueError, KeyError, TypeError):
            statements = []
        statement: dict[str, Any] = {
            "type": _ROTATION_TYPE,
            "email": syft.config.email,
            "old_key": _b64(_raw(old_identity.public_key())),
            "new_key": _b64(_raw(new_identity.public_key())),
            "issued": _now(),
        }
        message = _statement_bytes(statement)
        statement["signature"] = _b64(old_identity.sign(message))
        statement["new_signature"] = _b64(new_identity.sign(message))
        # the statement first: a peer reading the new did.json finds it
        _write_atomically(rotation_file, {"rotations": [*statements, statement]}, 0o644)
    save_private_keys(syft, new_identity, spk)
    _publish(did_path(syft), _did_document(syft, new_identity, spk))
    log.warning("rotated the encryption keys of %s: %s -> %s", syft.config.email, old_fp, new_fp)
    return old_fp, new_fp


# --------------------------------------------------------------------------- encryption


def _encrypt(
    plaintext: str, recipient: str, syft: SyftClient, spk_public: x25519.X25519PublicKey
) -> EncryptedPayload:
    """syft-crypto's X3DH encryption, for the prekey read (and checked) once.

    ``syft_crypto.encrypt_message`` reads the recipient's ``did.json`` again
    itself; a file swapped between our pin check and that read would be
    used unchecked. This is the same computation on the key we checked;
    ``syft_crypto.decrypt_message`` decrypts it.
    """
    _, own_spk = load_private_keys(syft)
    ephemeral = x25519.X25519PrivateKey.generate()
    material = own_spk.exchange(spk_public) + ephemeral.exchange(spk_public)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"X3DH-SyftBox").derive(
        material
    )
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext.encode(), None)
    return EncryptedPayload(
        ek=_raw(ephemeral.public_key()),
        iv=iv,
        ciphertext=sealed[:-16],
        tag=sealed[-16:],
        sender=syft.config.email,
        receiver=recipient,
    )


def _own_spk_fingerprint(syft: SyftClient) -> str:
    _, spk = load_private_keys(syft)
    return fingerprint(spk.public_key())


# --------------------------------------------------------------------------- hooks


@hookimpl
def chat_client_started(client: SyftChatClient) -> None:
    """Create or check this datasite's keys (a failure is recorded; sends then fail closed)."""
    ensure_keys(client.syft)


#: why attachments are refused while this plugin is loaded
ATTACHMENTS_REFUSED = (
    "syft-chat-encryption does not encrypt attachments yet: the file would sit unencrypted "
    "in your datasite; send it without encryption (uninstall or disable the plugin) or "
    "encrypt the file yourself"
)


@hookimpl
def chat_accept_attachments(
    files: list[Path], recipients: list[str], client: SyftChatClient
) -> str:
    """Refuse every attachment before anything is copied (see :data:`ATTACHMENTS_REFUSED`)."""
    return ATTACHMENTS_REFUSED


@hookimpl
def chat_encode_body(envelope: Envelope, client: SyftChatClient) -> bytes:
    """Encrypt the whole envelope for its recipient's pinned key, or raise (nothing is sent).

    Called anew for every attempt, so a retried message is encrypted for the
    keys published at that time.
    """
    if envelope.attachments:  # never reached through the client: refused before the copy
        raise EncryptionError(ATTACHMENTS_REFUSED)
    recipient = envelope.recipient
    syft = client.syft
    identity, spk = _published_keys(syft, recipient)
    if not keys_exist(syft):
        raise EncryptionError(
            f"{client.email} has no encryption keys yet (see client.plugin_failures for why "
            "they could not be created); nothing was sent"
        )
    _check_pin(syft, recipient, identity)
    payload = _encrypt(envelope.model_dump_json(), recipient, syft, spk)
    wire = {
        WIRE_KEY: _WIRE_VERSION,
        "payload": payload.model_dump(mode="json"),
        # which prekeys it was encrypted with: lets the receiver tell "keys changed,
        # send again" from tampering
        "keys": {"to": fingerprint(spk), "from": _own_spk_fingerprint(syft)},
    }
    return json.dumps(wire, separators=(",", ":")).encode()


def _stale_keys(wire: dict[str, Any], request: IncomingRequest, client: SyftChatClient) -> str:
    """Why an undecryptable message was encrypted for keys that changed since, or ``""``."""
    keys = wire.get("keys")
    if not isinstance(keys, dict):
        return ""  # an older sender: no way to tell
    try:
        if keys.get("to") != _own_spk_fingerprint(client.syft):
            return f"it was encrypted for an earlier key of {client.email}"
        _, sender_spk = _published_keys(client.syft, request.sender)
        if keys.get("from") != fingerprint(sender_spk):
            return (
                f"{request.sender}'s published key is not the one it was encrypted with "
                "(changed, or not synced here yet)"
            )
    except Exception:
        return ""
    return ""


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
        stale = _stale_keys(wire, request, client)
        if stale:  # the sender encrypts it again for the current keys and resends
            raise EncryptionError(
                f"could not decrypt: {stale}; the keys have changed, send it again",
                retry=True,
            ) from exc
        raise EncryptionError(
            f"could not decrypt ({type(exc).__name__}); the sender's or our keys may have changed"
        ) from exc
    try:
        return Envelope.model_validate_json(plaintext)
    except ValidationError as exc:
        raise EncryptionError(f"decrypted message is malformed: {describe_error(exc)}") from exc


# --------------------------------------------------------------------------- command line


def _cli_client(config: str | None) -> SyftClient:
    from syft_core import Client

    try:
        return Client.load(Path(config).expanduser() if config else None)
    except Exception as exc:
        raise SystemExit(f"Error: could not load the SyftBox config: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m syft_chat_encryption``: list pins, show a peer's keys, trust, rotate."""
    parser = argparse.ArgumentParser(
        prog="python -m syft_chat_encryption",
        description="Pinned encryption keys of syft-chat peers (trust on first use).",
    )
    parser.add_argument(
        "--config", help="SyftBox config file (default: $SYFTBOX_CLIENT_CONFIG_PATH or syft-core's)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("keys", help="list the pinned peers, and whether their keys changed")
    status = commands.add_parser("status", help="a peer's pinned and published fingerprints")
    status.add_argument("peer")
    trusting = commands.add_parser("trust", help="accept the key a peer publishes now")
    trusting.add_argument("peer")
    trusting.add_argument("--fingerprint", help="the fingerprint you checked with the peer")
    trusting.add_argument("-y", "--yes", action="store_true", help="do not ask")
    rotate = commands.add_parser("rotate", help="replace this datasite's keys (signed rotation)")
    rotate.add_argument(
        "--keep-identity", action="store_true", help="new signed prekey only, same identity key"
    )
    args = parser.parse_args(argv)
    syft = _cli_client(args.config)
    try:
        if args.command == "keys":
            pins = pinned_keys(syft)
            if not pins:
                print("no pinned keys yet (a key is pinned when you first send to a peer)")
            for peer in sorted(pins):
                print(key_status(syft, peer).describe())
        elif args.command == "status":
            print(key_status(syft, args.peer).describe())
        elif args.command == "trust":
            current = key_status(syft, args.peer)
            print(current.describe())
            if current.published is None:
                return 1
            if current.pinned is not None and current.pinned.fingerprint == current.published:
                print("already trusted; nothing to do")
                return 0
            if not args.yes and args.fingerprint is None:
                answer = input(
                    f"Trust {format_fingerprint(current.published)} for {args.peer}? [y/N] "
                )
                if answer.strip().lower() not in {"y", "yes"}:
                    print("nothing changed")
                    return 1
            trust(syft, args.peer, expected=args.fingerprint or current.published)
            print(f"trusted; messages to {args.peer} are encrypted for the new key")
        else:
            old, new = rotate_keys(syft, identity=not args.keep_identity)
            print(
                f"identity key: {format_fingerprint(old)}\n          ->  {format_fingerprint(new)}"
            )
    except (EncryptionError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
