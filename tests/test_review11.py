"""Review 11: hostile and faulty cases of the reshaped core."""

from __future__ import annotations

import threading
import time

from support import ALICE, BOB, CAROL, wait_for

from syft_chat import MessageStatus
from syft_chat.hookspecs import hookimpl
from syft_chat.models import MessageKind

FAST = {"retry_initial": 0.2, "retry_max": 1.0, "startup_hold": 0.0}


def test_hooks_never_hear_of_group_copies(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    alice = ws.client(ALICE, settings=FAST)
    bob = ws.client(BOB, settings=FAST)
    carol = ws.client(CAROL, settings=FAST)
    sent: list[tuple[str, MessageKind]] = []
    statuses: list[str] = []

    class Spy:
        @hookimpl
        def chat_message_sent(self, message, response):
            sent.append((message.msg_id, message.kind))

        @hookimpl
        def chat_message_status_changed(self, msg_id, status, error):
            statuses.append(msg_id)

    alice.register_plugin(Spy())
    group = alice.create_group("g", [BOB, CAROL])
    r = alice.send_to_group(group.group_id, "hello")
    wait_for(lambda: alice.group_delivery(r.message_id) == {
        BOB: MessageStatus.DELIVERED, CAROL: MessageStatus.DELIVERED})
    wait_for(lambda: (r.message_id, MessageKind.MESSAGE) in sent)
    time.sleep(0.5)
    assert all(kind is not MessageKind.COPY for _, kind in sent), sent
    assert all("/" not in m for m in statuses), statuses
    assert [m for m, _ in sent].count(r.message_id) == 1
    del bob, carol
