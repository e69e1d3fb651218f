"""Group conversations (issue 8): fan-out over the one-to-one path, converging membership."""

from __future__ import annotations

import json

import pytest
from support import envelope_body, read_response, wait_for, write_raw_request

import syft_chat
from syft_chat import MessageStatus
from syft_chat.features.groups import CHANGE_KEY

FIVE = [f"{name}@openmined.org" for name in ("ann", "ben", "cat", "dan", "eve")]
FAST = {"retry_initial": 0.3, "retry_max": 1.0}


@pytest.fixture
def five(workspace):
    ws = workspace(*FIVE)
    clients = {email: ws.client(email, settings=FAST) for email in FIVE}
    group = clients[FIVE[0]].create_group("research", FIVE[1:])
    for email in FIVE:
        wait_for(lambda e=email: _knows(clients[e], group.group_id, FIVE), timeout=10)
    return ws, clients, group.group_id


def _knows(client, group_id: str, members: list[str]) -> bool:
    try:
        return sorted(client.get_group(group_id).members) == sorted(members)
    except syft_chat.InvalidMessageError:
        return False


def _contents(client, group_id: str) -> list[str]:
    return sorted(m.content for m in client.get_chat_history(group_id=group_id, limit=1000))


def test_every_member_gets_every_message_once(five):
    _, clients, gid = five
    sent = {email: clients[email].send_to_group(gid, f"hello from {email}") for email in FIVE}
    expected = sorted(f"hello from {email}" for email in FIVE)
    for email in FIVE:
        wait_for(lambda e=email: _contents(clients[e], gid) == expected, timeout=10)
    for email, response in sent.items():
        author = clients[email]
        wait_for(lambda a=author, r=response: a.get_message(r.message_id).status == "delivered")
        assert set(author.group_delivery(response.message_id).values()) == {MessageStatus.DELIVERED}
        assert len(author.group_delivery(response.message_id)) == 4
    # group messages stay out of the one-to-one conversations
    ann, ben = clients[FIVE[0]], FIVE[1]
    assert ann.get_chat_history(with_user=ben) == []
    [message] = [m for m in ann.get_chat_history(group_id=gid) if m.sender == ben]
    assert message.group_id == gid


def test_an_offline_member_converges_when_back(five):
    ws, clients, gid = five
    eve = FIVE[4]
    clients[eve].close()
    ann = clients[FIVE[0]]
    response = ann.send_to_group(gid, "while eve is away")
    clients[FIVE[1]].send_to_group(gid, "ben too")
    wait_for(lambda: ann.group_delivery(response.message_id)[FIVE[1]] == "delivered")
    assert ann.group_delivery(response.message_id)[eve] == MessageStatus.SENT  # 3 of 4 so far
    ann.remove_group_members(gid, [FIVE[3]])  # membership changes while she is away
    back = ws.client(eve, settings=FAST)
    wait_for(lambda: _contents(back, gid) == ["ben too", "while eve is away"], timeout=15)
    wait_for(lambda: _knows(back, gid, [m for m in FIVE if m != FIVE[3]]), timeout=15)
    for email in FIVE[:3]:
        wait_for(lambda e=email: _knows(clients[e], gid, [m for m in FIVE if m != FIVE[3]]))
    wait_for(lambda: ann.get_message(response.message_id).status == "delivered", timeout=15)


def test_a_removed_member_is_refused_everywhere(five):
    ws, clients, gid = five
    ann, dan = clients[FIVE[0]], FIVE[3]
    group = ann.remove_group_members(gid, [dan])
    remaining = [m for m in FIVE if m != dan]
    for email in FIVE:  # dan is told too
        wait_for(lambda e=email: _knows(clients[e], gid, remaining), timeout=10)
    with pytest.raises(syft_chat.InvalidMessageError, match="not a member"):
        clients[dan].send_to_group(gid, "am I still here?")
    # dan forges group messages by hand: every member refuses them, with the reason
    for email in remaining:
        body = envelope_body(
            dan, email, "sneaking in", group_id=gid, metadata={CHANGE_KEY: group.version}
        )
        status, answer = read_response(write_raw_request(ws, to=email, folder=dan, body=body))
        assert status == 403 and "not a member" in answer["error"]
        assert "sneaking in" not in _contents(clients[email], gid)
        assert any("not a member" in f["reason"] for f in clients[email].failed_messages())


def test_a_stranger_cannot_write_to_a_group(five):
    ws, clients, gid = five
    group = clients[FIVE[0]].get_group(gid)
    stranger = "zed@openmined.org"
    body = envelope_body(
        stranger, FIVE[1], "hi all", group_id=gid, metadata={CHANGE_KEY: group.version}
    )
    status, answer = read_response(write_raw_request(ws, to=FIVE[1], folder=stranger, body=body))
    assert status == 403
    change = json.dumps({"op": "add", "name": "x", "created_by": stranger, "members": [stranger]})
    forged = envelope_body(stranger, FIVE[1], change, kind="group", group_id=gid)
    status, _ = read_response(write_raw_request(ws, to=FIVE[1], folder=stranger, body=forged))
    assert status == 403
    assert sorted(clients[FIVE[1]].get_group(gid).members) == sorted(FIVE)


def test_threads_replies_edits_and_reactions_inside_a_group(five):
    _, clients, gid = five
    ann, ben, cat = (clients[e] for e in FIVE[:3])
    root = ann.send_to_group(gid, "agenda for friday?", thread_id="friday")
    wait_for(lambda: ben.get_message(root.message_id) is not None, timeout=10)
    reply = ben.send_to_group(gid, "data review", reply_to=root.message_id)
    ann.edit_message(root.message_id, "agenda for friday 10:00?")
    cat_sees = lambda: cat.get_message(root.message_id)  # noqa: E731
    wait_for(lambda: cat_sees() and cat_sees().content == "agenda for friday 10:00?", timeout=10)
    wait_for(lambda: cat.get_message(reply.message_id) is not None, timeout=10)
    cat.react(reply.message_id, "👍")
    wait_for(
        lambda: (
            ben.get_chat_history(group_id=gid, thread_id="friday")[-1].reactions
            == {"👍": [FIVE[2]]}
        ),
        timeout=10,
    )
    thread = ann.get_chat_history(group_id=gid, thread_id="friday")
    assert [m.msg_id for m in thread] == [root.message_id, reply.message_id]
    assert thread[1].reply_to == root.message_id
    with pytest.raises(syft_chat.InvalidMessageError, match="only its sender"):
        ben.edit_message(root.message_id, "hijacked")


def test_a_change_made_later_wins_whatever_the_clocks_say(five):
    """Membership changes are ordered by version, not by the author's timestamp (review)."""
    from datetime import datetime, timedelta, timezone

    ws, clients, gid = five
    ann, eve = clients[FIVE[0]], FIVE[4]
    ann.set_group_admins(gid, [eve])  # (only the owner and admins add members)
    for email in FIVE:
        wait_for(lambda e=email: clients[e].get_group(gid).admins == (eve,), timeout=10)
    group = ann.get_group(gid)
    skewed = (datetime.now(timezone.utc) + timedelta(minutes=4)).isoformat()
    roster = {e: r.model_dump() for e, r in group.roster.items()}
    roster["ghost@nowhere.org"] = {"member": True, "admin": False, "v": 1, "change": ""}
    change = json.dumps(
        {
            "op": "add",
            "name": group.name,
            "created_by": group.created_by,
            "targets": ["ghost@nowhere.org"],
            "roster": roster,
            "members": [*FIVE, "ghost@nowhere.org"],
        }
    )
    for email in FIVE[:4]:  # eve's clock runs fast, and she adds a ghost
        body = envelope_body(eve, email, change, kind="group", group_id=gid, timestamp=skewed)
        assert read_response(write_raw_request(ws, to=email, folder=eve, body=body))[0] == 200
    wait_for(lambda: "ghost@nowhere.org" in ann.get_group(gid).members)
    after = ann.remove_group_members(gid, [eve, "ghost@nowhere.org"])
    assert eve not in after.members and "ghost@nowhere.org" not in after.members
    for email in FIVE[:4]:
        wait_for(lambda e=email: _knows(clients[e], gid, FIVE[:4]), timeout=10)
    # a message still addressed to the ghost settles: failed for that member only
    sent = ann.send_to_group(gid, "hello")
    wait_for(lambda: set(ann.group_delivery(sent.message_id).values()) == {"delivered"})
