"""Fixes after review 12: a group whose owner is gone (425 loops), version limits, and
backdating through ``seq``. Real clients over a real workspace; hostile sides write
request files by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support import envelope_body, read_response, wait_for, write_raw_request
from support import group_change as _change
from support import group_members as _members
from support import send_group_change as _send

import syft_chat
from syft_chat.features.groups import CHANGE_KEY
from syft_chat.interfaces import StoredMessage
from syft_chat.models import ChatMessage, Direction, MessageStatus

ANN, BEN, CAT, DAN, EVE = (f"{n}@openmined.org" for n in ("ann", "ben", "cat", "dan", "eve"))
FAST = {"retry_initial": 0.3, "retry_max": 1.0}


def _set_entry(client: Any, gid: str, email: str, **fields: Any) -> None:
    """Put ``client``'s stored group in a state reached otherwise (an old client, many
    changes): ``email``'s entry with ``fields``."""
    group = client.get_group(gid)
    roster = dict(group.roster)
    roster[email] = roster[email].model_copy(update=fields)
    members = tuple(e for e, r in roster.items() if r.member)
    version = sum(r.v for r in roster.values())
    state = group.model_copy(update={"roster": roster, "members": members, "version": version})
    client.store.put_group(state)


@pytest.fixture
def team(workspace):
    """ann owns a group of ann, ben (admin) and cat."""
    ws = workspace(ANN, BEN, CAT, DAN, EVE)
    clients = {e: ws.client(e, settings=FAST) for e in (ANN, BEN, CAT, DAN, EVE)}
    gid = clients[ANN].create_group("team", [BEN, CAT]).group_id
    clients[ANN].set_group_admins(gid, [BEN])
    for email in (BEN, CAT):
        wait_for(
            lambda e=email: (
                _members(clients[e], gid) is not None and clients[e].get_group(gid).admins == (BEN,)
            ),
            timeout=10,
        )
    return ws, clients, gid


# ---------------------------------------------------------------- 1. the owner stays


def test_the_owner_cannot_leave_while_others_remain(team):
    ws, clients, gid = team
    with pytest.raises(syft_chat.InvalidMessageError, match=r"owner.*hand|owner.*remove"):
        clients[ANN].leave_group(gid)
    assert ANN in clients[ANN].get_group(gid).members
    # a hand-written leave by the owner is refused by every member
    group = clients[ANN].get_group(gid)
    clients[ANN].close()
    gone = {ANN: {"member": False, "admin": False, "v": group.roster[ANN].v + 1, "change": ""}}
    for to in (BEN, CAT):
        status, answer = _send(ws, ANN, to, _change(group, "leave", gone), gid)
        assert status == 403 and "owner" in answer["error"], answer
        assert ANN in clients[to].get_group(gid).members
    # the others still may leave
    clients[CAT].leave_group(gid)
    wait_for(lambda: CAT not in (_members(clients[BEN], gid) or [CAT]), timeout=10)


def test_an_admin_cannot_add_when_the_owner_is_gone(team):
    """A group whose owner left (allowed before): nobody can introduce it to a newcomer,
    who answered 425 to the add and to every group message, for ever."""
    ws, clients, gid = team
    _set_entry(
        clients[BEN], gid, ANN, member=False, v=clients[BEN].get_group(gid).roster[ANN].v + 1
    )
    with pytest.raises(syft_chat.InvalidMessageError, match="owner"):
        clients[BEN].add_group_members(gid, [DAN])
    assert DAN not in clients[BEN].get_group(gid).members
    # a hand-written add of such a group is refused by the newcomer, not "not yet"
    group = clients[BEN].get_group(gid)
    clients[BEN].close()
    dan = {DAN: {"member": True, "admin": False, "v": 1, "change": ""}}
    status, answer = _send(ws, BEN, DAN, _change(group, "add", dan), gid)
    assert status == 403 and not answer.get("retry"), answer
    assert _members(clients[DAN], gid) is None


def test_a_version_at_its_limit_is_a_clear_error(team):
    ws, clients, gid = team
    _set_entry(clients[ANN], gid, CAT, v=2**31 - 1)
    with pytest.raises(syft_chat.InvalidMessageError, match="limit"):
        clients[ANN].remove_group_members(gid, [CAT])
    with pytest.raises(syft_chat.InvalidMessageError, match="limit"):
        clients[ANN].set_group_admins(gid, [BEN, CAT])
    assert CAT in clients[ANN].get_group(gid).members
    # other entries still change (here only: the others never saw cat's entry so high)
    assert BEN not in clients[ANN].remove_group_members(gid, [BEN]).members


# ---------------------------------------------------------------- 2. no backdating via seq


def _at(client: Any, msg_id: str, sender: str) -> datetime:
    row = client.store.get(msg_id, sender=sender)
    assert row is not None
    return row.message.timestamp


def _write(ws: Any, sender: str, to: str, at: datetime, **extra: Any) -> str:
    body = envelope_body(sender, to, "x", timestamp=at.isoformat(), **extra)
    status, answer = read_response(write_raw_request(ws, to=to, folder=sender, body=body))
    assert status == 200, answer
    return str(answer["message_id"])


def test_a_lower_or_missing_seq_does_not_backdate(workspace):
    ws = workspace(ANN, EVE)
    ann = ws.client(ANN, settings=FAST)
    now = datetime.now(timezone.utc)
    _write(ws, EVE, ANN, now - timedelta(hours=1), seq=1)
    second = _write(ws, EVE, ANN, now, seq=2)
    latest = _at(ann, second, EVE)
    early = now - timedelta(hours=20)  # within a day of the first message
    assert _at(ann, _write(ws, EVE, ANN, early), EVE) >= latest  # no seq
    assert _at(ann, _write(ws, EVE, ANN, early, seq=1), EVE) >= latest  # a seq used already
    _write(ws, EVE, ANN, now + timedelta(minutes=1), seq=5)
    # a late message (seq 3 of 5) is kept after seq 2, not before it
    assert _at(ann, _write(ws, EVE, ANN, early, seq=3), EVE) >= latest
    # a message with a new, higher seq is kept after everything lower
    assert _at(ann, _write(ws, EVE, ANN, early, seq=6), EVE) >= now + timedelta(minutes=1)


def test_a_group_message_is_bounded_by_the_group_not_a_direct_history(workspace):
    ws = workspace(ANN, BEN, EVE)
    ann, ben, eve = (ws.client(e, settings=FAST) for e in (ANN, BEN, EVE))
    gid = ann.create_group("team", [BEN, EVE]).group_id
    wait_for(lambda: _members(ben, gid) is not None, timeout=10)
    eve.close()
    # ben and eve talked a month ago
    now = datetime.now(timezone.utc)
    old = ChatMessage(
        sender=EVE,
        recipient=BEN,
        content="long ago",
        timestamp=now - timedelta(days=30),
        seq=1,
        status=MessageStatus.RECEIVED,
    )
    ben.store.insert(StoredMessage(old, Direction.INCOMING, EVE))
    meta = {CHANGE_KEY: ben.get_group(gid).version}
    msg = _write(
        ws, EVE, BEN, now - timedelta(days=2), seq=2, group_id=gid, kind="message", metadata=meta
    )
    assert _at(ben, msg, EVE) >= now - timedelta(days=1, minutes=1)
