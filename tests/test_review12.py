"""Review 12: groups attacked by an admin acting beyond its powers, by an admin's own
client, and by the version arithmetic. Real clients; hostile sides write request files."""

from __future__ import annotations

import pytest
from support import envelope_body, read_response, wait_for, write_raw_request
from support import group_change as _change
from support import group_members as _members

import syft_chat
from syft_chat.features.groups import CHANGE_KEY, ENTRY_KEY

ANN, BEN, CAT, DAN, EVE = (f"{n}@openmined.org" for n in ("ann", "ben", "cat", "dan", "eve"))
FAST = {"retry_initial": 0.3, "retry_max": 1.0}


@pytest.fixture
def team(workspace):
    """ann owns a group of ann, ben (admin), cat (admin)."""
    ws = workspace(ANN, BEN, CAT, DAN, EVE)
    clients = {e: ws.client(e, settings=FAST) for e in (ANN, BEN, CAT, DAN, EVE)}
    gid = clients[ANN].create_group("team", [BEN, CAT]).group_id
    clients[ANN].set_group_admins(gid, [BEN, CAT])
    for email in (ANN, BEN, CAT):
        wait_for(
            lambda e=email: (
                (clients[e].get_group(gid).admins if _members(clients[e], gid) else ())
                == (BEN, CAT)
            ),
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


def test_a_member_not_seen_yet_is_asked_to_wait_not_refused(team):
    """Group versions are sums: after concurrent changes (ann removed eve's entry while ben
    added dan) a member's view can sum to the same number without knowing dan. dan's
    message was then refused 403 for ever although dan is a member."""
    ws, clients, gid = team
    cat = clients[CAT]
    clients[DAN].close()
    version = cat.get_group(gid).version
    # dan's view: dan's entry instead of the one cat has, and dan's own entry
    meta = {CHANGE_KEY: version, ENTRY_KEY: [1, "ben-s-add"]}
    body = envelope_body(DAN, CAT, "hello team", group_id=gid, metadata=meta)
    status, answer = read_response(write_raw_request(ws, to=CAT, folder=DAN, body=body))
    assert status == 425 and answer.get("retry"), answer
    assert cat.failed_messages() == []
    # a resent copy without a claim (an older client, a stranger) is refused as before
    body = envelope_body(DAN, CAT, "hello", group_id=gid, metadata={CHANGE_KEY: version})
    status, _ = read_response(write_raw_request(ws, to=CAT, folder=DAN, body=body))
    assert status == 403


def test_group_messages_carry_the_authors_entry(team):
    ws, clients, gid = team
    sent = clients[ANN].send_to_group(gid, "hi")
    stored = clients[ANN].get_message(sent.message_id)
    assert stored.metadata[ENTRY_KEY][0] >= 1
    wait_for(
        lambda: any(m.content == "hi" for m in clients[CAT].get_chat_history(group_id=gid)), 10
    )
