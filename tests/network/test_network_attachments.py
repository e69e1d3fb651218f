"""Attachments over a real SyftBox network: the file travels by sync, not in the request."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

import syft_chat
from syft_chat import AttachmentState
from syft_chat.models import Envelope

from .conftest import ALICE, BOB
from .syftbox_network import SyftBoxNetwork

pytestmark = pytest.mark.network

CAROL = "carol@example.com"
FAST = {"retry_initial": 3.0, "retry_max": 6.0, "attachment_check_interval": 0.2}
FIVE_MB = 5 * 1024 * 1024


@pytest.fixture
def syftbox_emails() -> list[str]:
    return [ALICE, BOB, CAROL]


def _wait(predicate, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.1)


def test_five_mb_attachment_reaches_bob_only_and_revocation_stops_it(
    syftbox_network: SyftBoxNetwork, tmp_path: Path
) -> None:
    net = syftbox_network
    clients = {
        e: syft_chat.client(net.config_path(e), db_path=tmp_path / f"{e}.db", settings=FAST)
        for e in (ALICE, BOB, CAROL)
    }
    alice, bob, carol = clients[ALICE], clients[BOB], clients[CAROL]
    try:
        _wait(lambda: BOB in alice.list_available_users())
        _wait(lambda: ALICE in bob.list_available_users())
        data = os.urandom(FIVE_MB)
        src = tmp_path / "src" / "big.bin"
        src.parent.mkdir()
        src.write_bytes(data)
        available = threading.Event()
        when: list[float] = []

        def on_available(message: object, attachment: object) -> None:
            when.append(time.monotonic())
            available.set()

        bob.add_attachment_listener(on_available)
        start = time.monotonic()
        sent = alice.send_message(BOB, "5 MB", attachments=[src], timeout=60)
        queued = time.monotonic() - start
        assert sent.status == "delivered"
        assert available.wait(120), net.dump_logs()
        took = when[0] - start
        mine = alice.get_message(sent.message_id)
        (att,) = mine.attachments
        request = Envelope.from_message(mine, BOB).model_dump_json().encode()
        print(
            f"5 MB attachment: send() {queued:.2f}s, available at bob {took:.2f}s; "
            f"bytes copied into alice's datasite {att.size}; request body {len(request)} bytes"
        )
        assert len(request) < 4096  # the file never rides in the request
        assert att.size == FIVE_MB and att.sha256 == hashlib.sha256(data).hexdigest()
        got = bob.get_message(sent.message_id, sender=ALICE)
        assert got.attachments[0].state is AttachmentState.AVAILABLE
        synced = bob.attachment_path(sent.message_id, "a1", sender=ALICE)
        assert hashlib.sha256(synced.read_bytes()).hexdigest() == att.sha256
        rel = f"{ALICE}/app_data/syft_chat/attachments/{sent.message_id}/big.bin"
        # the server hands it to bob and refuses carol; carol's sync client never has it
        code, body = net.download(BOB, rel)
        assert code == 200 and hashlib.sha256(body).hexdigest() == att.sha256
        code, _ = net.download(CAROL, rel)
        assert 400 <= code < 500, code
        time.sleep(3)  # a few more sync rounds
        assert not (net.datasites(CAROL) / rel).exists()
        assert carol.get_message(sent.message_id, sender=ALICE) is None

        # revocation: both sides show it, the server refuses bob, his copy stops updating
        alice.revoke_attachment(sent.message_id, "a1", timeout=60)
        assert alice.get_message(sent.message_id).attachments[0].state is AttachmentState.REVOKED
        _wait(
            lambda: (
                bob.get_message(sent.message_id, sender=ALICE).attachments[0].state
                is AttachmentState.REVOKED
            )
        )
        _wait(lambda: 400 <= net.download(BOB, rel)[0] < 500, timeout=30)
        shared = net.datasites(ALICE) / rel
        shared.write_bytes(os.urandom(FIVE_MB))  # alice changes her copy after revoking
        time.sleep(6)
        after = net.datasites(BOB) / rel
        assert not after.exists() or hashlib.sha256(after.read_bytes()).hexdigest() == att.sha256
        with pytest.raises(syft_chat.AttachmentError, match="revoked"):
            bob.attachment_path(sent.message_id, "a1", sender=ALICE)
    finally:
        for c in clients.values():
            c.close()
