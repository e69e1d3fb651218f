"""Incoming timestamps are kept in a sane window: never in the future (beyond a small clock
skew), never more than a day before the conversation began here, never before the sender's
previous message."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from support import ALICE, BOB, envelope_body, read_response, write_raw_request


def _send(ws, seq: int, when: datetime | str) -> str:
    msg_id = str(uuid.uuid4())
    stamp = when if isinstance(when, str) else when.isoformat()
    body = envelope_body(ALICE, BOB, f"#{seq}", msg_id=msg_id, seq=seq, timestamp=stamp)
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=body))[0] == 200
    return msg_id


def test_backdated_timestamps_are_clamped(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    now = datetime.now(timezone.utc)
    first = _send(ws, 1, "0001-01-01T00:00:00+00:00")  # year 1
    stamp = bob.get_message(first).timestamp
    assert now - timedelta(days=1, minutes=1) <= stamp <= now  # a day before receipt at most
    second = _send(ws, 2, now - timedelta(hours=2))  # honest: kept as sent
    assert bob.get_message(second).timestamp == now - timedelta(hours=2)
    third = _send(ws, 3, now - timedelta(hours=10))  # before its predecessor
    assert bob.get_message(third).timestamp == now - timedelta(hours=2)
    fourth = _send(ws, 4, now + timedelta(days=365))  # the future: the time of receipt
    assert now <= bob.get_message(fourth).timestamp <= datetime.now(timezone.utc)
    history = [m.msg_id for m in bob.get_chat_history(ALICE)]
    assert history == [first, second, third, fourth]  # in the order they were written
