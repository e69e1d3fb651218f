"""Review 12: groups attacked by an admin acting beyond its powers, by an admin's own
client, and by the version arithmetic. Real clients; hostile sides write request files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import envelope_body, read_response, wait_for, write_raw_request

import syft_chat

ANN, BEN, CAT, DAN, EVE = (f"{n}@openmined.org" for n in ("ann", "ben", "cat", "dan", "eve"))
FAST = {"retry_initial": 0.3, "retry_max": 1.0}


def _members(client: Any, gid: str) -> list[str] | None:
    try:
        return sorted(client.get_group(gid).members)
    except syft_chat.InvalidMessageError:
        return None


def _change(group: Any, op: str, targets: dict[str, dict[str, Any]]) -> str:
    roster = {e: r.model_dump() for e, r in group.roster.items()}
    roster.update(targets)
    return json.dumps(
        {
            "op": op,
            "name": group.name,
            "created_by": group.created_by,
            "targets": list(targets),
            "roster": roster,
            "members": [e for e, r in roster.items() if r["member"]],
        }
    )


@pytest.fixture
def team(workspace):
    """ann owns a group of ann, ben (admin), cat (admin)."""
    ws = workspace(ANN, BEN, CAT, DAN, EVE)
    clients = {e: ws.client(e, settings=FAST) for e in (ANN, BEN, CAT, DAN, EVE)}
    gid = clients[ANN].create_group("team", [BEN, CAT]).group_id
    clients[ANN].set_group_admins(gid, [BEN, CAT])
    for email in (ANN, BEN, CAT):
        wait_for(
            lambda e=email: (clients[e].get_group(gid).admins if _members(clients[e], gid) else ())
            == (BEN, CAT),
            timeout=10,
        )
    return ws, clients, gid


def test_an_admin_cannot_add_a_member_the_owner_can_never_remove(team):
    """A new entry's version was unbounded: an admin could add one at 2**31 - 1, and the
    owner's remove then failed with a validation traceback, everywhere and for ever."""
    ws, clients, gid = team
    group = clients[BEN].get_group(gid)
    clients[BEN].close()  # ben writes by hand now
    frozen = {EVE: {"member": True, "admin": False, "v": 2**31 - 1, "change": "zzz"}}
    for to in (ANN, CAT):
        body = envelope_body(BEN, to, _change(group, "add", frozen), kind="group", group_id=gid)
        status, answer = read_response(write_raw_request(ws, to=to, folder=BEN, body=body))
        assert 400 <= status < 500 and status != 425, answer
    assert EVE not in clients[ANN].get_group(gid).members
    # the owner can still add and remove eve
    clients[ANN].add_group_members(gid, [EVE])
    clients[ANN].remove_group_members(gid, [EVE])
    wait_for(lambda: EVE not in (_members(clients[CAT], gid) or [EVE]), timeout=10)


def test_an_admin_removing_another_admin_does_not_diverge(team):
    """ben's own client let him remove cat (an admin); every other member refused it,
    so ben alone believed cat gone, for ever."""
    ws, clients, gid = team
    ann, ben = clients[ANN], clients[BEN]
    try:
        ben.remove_group_members(gid, [CAT])
    except syft_chat.InvalidMessageError:
        pass  # refused up front: fine
    else:
        for client in (ann, clients[CAT]):
            wait_for(lambda c=client: CAT not in c.get_group(gid).members, timeout=10)
    assert _members(ben, gid) == _members(ann, gid) == _members(clients[CAT], gid)
