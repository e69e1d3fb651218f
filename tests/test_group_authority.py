"""Groups that a hostile member or a stranger cannot bend (the security issue, findings 1, 2,
4 and 5): owners and admins, groups bound to their creator, concurrent changes that are all
kept, and bounded numbers. Real clients; the hostile side writes request files by hand."""

from __future__ import annotations

import json

import pytest
from support import envelope_body, read_response, wait_for, write_raw_request
from support import group_change as _change
from support import group_members as _members
from support import send_group_change as _send

import syft_chat
from syft_chat.features.groups import CHANGE_KEY, new_group_id

ANN, BEN, CAT, DAN, EVE = (f"{n}@openmined.org" for n in ("ann", "ben", "cat", "dan", "eve"))
MALLORY = "mallory@openmined.org"
FAST = {"retry_initial": 0.3, "retry_max": 1.0}


@pytest.fixture
def team(workspace):
    """ann owns a group of ann, ben, cat and mallory."""
    ws = workspace(ANN, BEN, CAT, DAN, EVE, MALLORY)
    clients = {e: ws.client(e, settings=FAST) for e in (ANN, BEN, CAT, DAN, EVE, MALLORY)}
    group = clients[ANN].create_group("team", [BEN, CAT, MALLORY])
    for email in (ANN, BEN, CAT, MALLORY):
        wait_for(lambda e=email: _members(clients[e], group.group_id) is not None, timeout=10)
    return ws, clients, group.group_id


def test_only_the_owner_and_admins_change_members(team):
    ws, clients, gid = team
    with pytest.raises(syft_chat.InvalidMessageError, match="only the owner"):
        clients[BEN].add_group_members(gid, [DAN])
    group = clients[BEN].get_group(gid)
    # mallory, a plain member, forges an "add" at ben: refused, recorded, nothing changes
    dave = {DAN: {"member": True, "admin": False, "v": 1, "change": ""}}
    status, answer = _send(ws, MALLORY, BEN, _change(group, "add", dave), gid)
    assert status == 403 and "owner or an admin" in answer["error"]
    assert any("owner or an admin" in f["reason"] for f in clients[BEN].failed_messages())
    assert DAN not in clients[BEN].get_group(gid).members
    # an admin named by the owner may
    clients[ANN].set_group_admins(gid, [BEN])
    wait_for(lambda: clients[BEN].get_group(gid).admins == (BEN,), timeout=10)
    clients[BEN].add_group_members(gid, [DAN])
    for email in (ANN, BEN, CAT, DAN):
        wait_for(lambda e=email: DAN in (_members(clients[e], gid) or []), timeout=10)
    # anyone may leave
    clients[CAT].leave_group(gid)
    wait_for(lambda: CAT not in clients[ANN].get_group(gid).members, timeout=10)


def test_a_member_cannot_make_herself_unremovable(team):
    """Finding 1: a huge version once froze a member's view; now it is refused."""
    ws, clients, gid = team
    group = clients[CAT].get_group(gid)
    frozen = {MALLORY: {"member": True, "admin": True, "v": 2**63 - 1, "change": "zzz"}}
    status, answer = _send(ws, MALLORY, CAT, _change(group, "add", frozen), gid)
    assert 400 <= status < 500 and status != 425
    big = {MALLORY: {"member": True, "admin": False, "v": 5000, "change": "zzz"}}
    status, _ = _send(ws, MALLORY, CAT, _change(group, "add", big), gid)
    assert 400 <= status < 500 and status != 425
    clients[ANN].remove_group_members(gid, [MALLORY])
    for email in (ANN, BEN, CAT):
        wait_for(lambda e=email: MALLORY not in (_members(clients[e], gid) or []), timeout=10)
    # her messages are refused by every member
    for email in (ANN, BEN, CAT):
        meta = {CHANGE_KEY: clients[email].get_group(gid).version}
        body = envelope_body(MALLORY, email, "still here", group_id=gid, metadata=meta)
        status, _ = read_response(write_raw_request(ws, to=email, folder=MALLORY, body=body))
        assert status == 403


def test_a_group_is_bound_to_its_creator(team):
    """Finding 2: a member who learns a new group's id cannot create it first elsewhere."""
    ws, clients, _ = team
    gid = new_group_id(ANN)  # the id ann's next group will have, learned somehow
    roster = {
        e: {"member": True, "admin": False, "v": 1, "change": ""} for e in (ANN, BEN, MALLORY)
    }
    create = json.dumps(
        {
            "op": "create",
            "name": "x",
            "created_by": ANN,
            "targets": list(roster),
            "roster": roster,
            "members": list(roster),
        }
    )
    status, answer = _send(ws, MALLORY, BEN, create, gid)  # forged created_by
    assert status == 403 and "creator" in answer["error"]
    mine = json.loads(create) | {"created_by": MALLORY}
    status, answer = _send(ws, MALLORY, BEN, json.dumps(mine), gid)  # her own claim to it
    assert status == 403 and "not created by" in answer["error"]
    assert _members(clients[BEN], gid) is None
    # a second create of a known group is refused
    known = clients[ANN].create_group("real", [BEN, MALLORY])
    wait_for(lambda: _members(clients[BEN], known.group_id) is not None, timeout=10)
    again = json.loads(create) | {"created_by": ANN}
    clients[ANN].close()  # (its reply watcher would collect the answer to the hand-made file)
    status, _ = _send(ws, ANN, BEN, json.dumps(again), known.group_id)
    assert status in (403, 409)


def test_concurrent_adds_by_two_admins_both_take_effect(team):
    ws, clients, gid = team
    ann, ben = clients[ANN], clients[BEN]
    ann.set_group_admins(gid, [BEN])
    for email in (ANN, BEN, CAT):
        wait_for(lambda e=email: clients[e].get_group(gid).admins == (BEN,), timeout=10)
    clients[CAT].close()  # offline during the changes
    ann.add_group_members(gid, [DAN])
    ben.add_group_members(gid, [EVE])  # at the same time, each unaware of the other
    cat = ws.client(CAT, settings=FAST)
    everyone = sorted([ANN, BEN, CAT, DAN, EVE, MALLORY])
    for client in (ann, ben, cat, clients[DAN], clients[EVE], clients[MALLORY]):
        wait_for(lambda c=client: _members(c, gid) == everyone, timeout=20)
    versions = {c.email: c.get_group(gid).roster for c in (ann, ben, cat, clients[DAN])}
    assert (
        len(
            {
                json.dumps({e: r.model_dump() for e, r in v.items()}, sort_keys=True)
                for v in versions.values()
            }
        )
        == 1
    )


def test_a_group_change_without_a_group_id_is_refused_and_groups_stay_listable(team):
    """Finding 4: one envelope without group_id broke list_groups() for good."""
    ws, clients, gid = team
    change = json.dumps(
        {"op": "create", "name": "x", "created_by": MALLORY, "members": [MALLORY, BEN]}
    )
    body = envelope_body(MALLORY, BEN, change, kind="group")
    status, _ = read_response(write_raw_request(ws, to=BEN, folder=MALLORY, body=body))
    assert status == 400
    body = envelope_body(MALLORY, BEN, change, kind="group", group_id="")
    status, _ = read_response(write_raw_request(ws, to=BEN, folder=MALLORY, body=body))
    assert status == 400
    # a "remove" from a stranger makes no group row with a forged name
    remove = json.dumps(
        {
            "op": "remove",
            "name": "forged",
            "created_by": MALLORY,
            "targets": [BEN],
            "members": [MALLORY],
            "roster": {BEN: {"member": False, "v": 1}, MALLORY: {"member": True, "v": 1}},
        }
    )
    status, _ = _send(ws, MALLORY, DAN, remove, new_group_id(MALLORY))
    assert status == 403
    assert [g.name for g in clients[DAN].list_groups()] == []
    ben = clients[BEN]
    ben.close()
    again = ws.client(BEN, settings=FAST)
    assert [g.group_id for g in again.list_groups()] == [gid]


@pytest.mark.parametrize("field", ["seq", "floor"])
def test_out_of_range_numbers_are_a_clear_refusal(team, field):
    """Finding 5: seq or floor >= 2**63 raised in storage (500, retried for ever)."""
    ws, clients, _ = team
    body = envelope_body(MALLORY, BEN, "big", **{field: 2**63})
    status, answer = read_response(write_raw_request(ws, to=BEN, folder=MALLORY, body=body))
    assert status == 400 and not answer.get("retry")
    assert any("malformed" in f["reason"] for f in clients[BEN].failed_messages())
