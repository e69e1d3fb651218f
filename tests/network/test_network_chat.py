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
