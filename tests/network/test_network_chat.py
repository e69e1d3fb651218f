"""syft-chat end to end across two separate sync folders, through a real SyftBox server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import syft_chat
from syft_chat import ChatMessage, MessageStatus

from .conftest import ALICE, BOB
from .syftbox_network import SyftBoxNetwork

pytestmark = pytest.mark.network


def _wait(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.1)


def test_chat_round_trip_over_the_network(syftbox_network: SyftBoxNetwork, tmp_path: Path) -> None:
    net = syftbox_network
    alice = syft_chat.client(net.config_path(ALICE), db_path=tmp_path / "alice.db")
    bob = syft_chat.client(net.config_path(BOB), db_path=tmp_path / "bob.db")
    try:
        got: list[ChatMessage] = []
        arrived = threading.Event()

        def on_message(message: ChatMessage) -> None:
            got.append(message)
            arrived.set()

        bob.add_message_listener(on_message)
        # each side sees the other once its published schema has synced
        _wait(lambda: alice.list_available_users() == [BOB])
        _wait(lambda: bob.list_available_users() == [ALICE])
        start = time.monotonic()
        response = alice.send_message(BOB, "hello over the wire", timeout=60)
        took = time.monotonic() - start
        print(f"network round trip: {took:.2f}s")
        assert response.status == "delivered"
        assert arrived.wait(10)
        assert got[0].sender == ALICE and got[0].content == "hello over the wire"
        assert alice.get_message(response.message_id).status == MessageStatus.DELIVERED
        reply = bob.send_message(ALICE, "hello back", reply_to=response.message_id, timeout=60)
        assert reply.status == "delivered"
        thread = alice.get_chat_history(thread_id=response.message_id)
        assert [m.content for m in thread] == ["hello over the wire", "hello back"]
    finally:
        alice.close()
        bob.close()


FAST = {"retry_initial": 3.0, "retry_max": 6.0}


def test_hundred_concurrent_messages_none_lost_none_duplicated(
    syftbox_network: SyftBoxNetwork, tmp_path: Path
) -> None:
    """The stock sync client writes downloads in place: half files must not lose or repeat."""
    net = syftbox_network
    alice = syft_chat.client(net.config_path(ALICE), db_path=tmp_path / "a.db", settings=FAST)
    bob = syft_chat.client(net.config_path(BOB), db_path=tmp_path / "b.db", settings=FAST)
    try:
        got: list[str] = []
        bob.add_message_listener(lambda m: got.append(m.content))
        _wait(lambda: alice.list_available_users() == [BOB])
        start = time.monotonic()
        ids: list[str] = []
        lock = threading.Lock()

        def burst(k: int) -> None:
            for i in range(25):
                r = alice.send_message(BOB, f"t{k}-{i}", timeout=0)
                with lock:
                    ids.append(r.message_id)

        threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for msg_id in ids:
            alice.wait_for_delivery(msg_id, timeout=120)
        took = time.monotonic() - start
        _wait(lambda: len(got) >= 100, timeout=30)
        time.sleep(2)
        stored = bob.get_chat_history(limit=1000)
        written = sum(alice.store.get(msg_id).attempts for msg_id in ids)  # type: ignore[union-attr]
        print(
            f"100 concurrent messages over the network: {took:.1f}s, {len(got)} announced, "
            f"{written} requests written ({written - len(ids)} re-uploads)"
        )
        assert len(ids) == 100
        assert sorted(m.msg_id for m in stored) == sorted(ids)  # none lost, none twice
        assert sorted(got) == sorted(f"t{k}-{i}" for k in range(4) for i in range(25))
    finally:
        alice.close()
        bob.close()


def test_recipient_offline_longer_than_request_expiry(
    syftbox_network: SyftBoxNetwork, tmp_path: Path
) -> None:
    net = syftbox_network
    settings = {**FAST, "request_expiry": 3}
    alice = syft_chat.client(net.config_path(ALICE), db_path=tmp_path / "a.db", settings=settings)
    bob = syft_chat.client(net.config_path(BOB), db_path=tmp_path / "b.db")
    _wait(lambda: alice.list_available_users() == [BOB])
    bob.close()
    net.stop_client(BOB)  # bob's datasite is offline: nothing syncs to it
    try:
        response = alice.send_message(BOB, "while you were away", timeout=1)
        assert response.status == "sent"
        time.sleep(8)  # longer than a request lives
        net.start_client(BOB)
        bob = syft_chat.client(net.config_path(BOB), db_path=tmp_path / "b.db")
        delivered = alice.wait_for_delivery(response.message_id, timeout=90)
        assert delivered.status == "delivered"
        _wait(lambda: [m.content for m in bob.get_chat_history()] == ["while you were away"])
    finally:
        alice.close()
        bob.close()


def test_a_refusal_by_the_server_reaches_the_sender(
    syftbox_network: SyftBoxNetwork, tmp_path: Path
) -> None:
    """Bob admits nobody: the server refuses alice's upload, her sync client renames the
    request to ``<id>.syftrejected.request``, and the message fails with that reason."""
    net = syftbox_network
    alice = syft_chat.client(net.config_path(ALICE), db_path=tmp_path / "a.db", settings=FAST)
    bob = syft_chat.client(net.config_path(BOB), db_path=tmp_path / "b.db")
    try:
        _wait(lambda: alice.list_available_users() == [BOB])
        bob.set_contact_mode("contacts_only")  # nobody allowed: the server denies every write
        rules = net.datasites(BOB) / BOB / "app_data" / "syft_chat" / "rpc" / "syftperm.yaml"
        on_server = net.server_file(f"{BOB}/app_data/syft_chat/rpc/syftperm.yaml")
        _wait(lambda: on_server.is_file() and on_server.read_bytes() == rules.read_bytes())
        time.sleep(1.0)  # the server commits its rules with the file
        failures: list[str | None] = []
        alice.add_status_listener(
            lambda m, s, e: failures.append(e) if s is MessageStatus.FAILED else None
        )
        response = alice.send_message(BOB, "let me in", timeout=0)
        _wait(lambda: failures, timeout=60)
        reason = f"refused by the SyftBox server: no permission to write to {BOB}'s chat folder"
        assert failures == [reason]
        stored = alice.get_message(response.message_id)
        assert stored is not None and stored.status is MessageStatus.FAILED
        folder = net.datasites(ALICE) / BOB / "app_data" / "syft_chat" / "rpc" / "chat" / ALICE
        _wait(lambda: not list(folder.glob("*.request")), timeout=10)  # marker cleaned up
        time.sleep(FAST["retry_initial"] + FAST["retry_max"])
        assert not list(folder.glob("*.request"))  # and nothing sent again
        assert bob.get_chat_history() == []
    finally:
        alice.close()
        bob.close()
