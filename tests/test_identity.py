"""Canonical identities: one spelling per datasite email, checked where a sender comes from
(the transport's folder name) and wherever an email is compared (blocks, allows, recipients,
group members). Hostile senders are hand-written request files in hand-named folders."""

from __future__ import annotations

import sqlite3

import pytest
from support import ALICE, BOB, CAROL, envelope_body, read_response, wait_for, write_raw_request

from syft_chat import InvalidMessageError, MessageRejectedError
from syft_chat.identity import InvalidIdentityError, canonical_email, is_canonical

#: folder names a person cannot tell from alice@openmined.org (or that are no email at all)
LOOK_ALIKES = {
    "cyrillic a": "\u0430lice@openmined.org",
    "trailing dot": "alice@openmined.org.",
    "trailing space": "alice@openmined.org ",
    "zero-width space": "ali\u200bce@openmined.org",
    "control character": "alice\x1b[2J@openmined.org",
    "bidi override": "alice@openmined\u202e.org",
    "no @": "alice.openmined.org",
    "upper case": "Alice@openmined.org",
    "upper-case domain": "alice@OpenMined.org",
    "unicode domain": "alice@openm\u0456ned.org",
}


def _stored_senders(ws, email: str) -> list[str]:
    conn = sqlite3.connect(ws.db(email))
    try:
        return [r[0] for r in conn.execute("SELECT sender FROM messages")]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("alice@openmined.org", "alice@openmined.org"),
        ("Alice@OpenMined.ORG", "alice@openmined.org"),
        ("alice@ex\u00e4mple.org", "alice@xn--exmple-cua.org"),
        ("a.b+tag_1%x-y@sub.example-1.org", "a.b+tag_1%x-y@sub.example-1.org"),
    ],
)
def test_canonical_email_folds_only_what_is_unambiguous(value, canonical):
    assert canonical_email(value) == canonical
    assert is_canonical(canonical)
    assert is_canonical(value) == (value == canonical)


@pytest.mark.parametrize("value", [*LOOK_ALIKES.values(), "", "a@b@c.org", "a..b@c.org", 42])
def test_not_emails_raise_a_clear_error(value):
    if value in (LOOK_ALIKES["upper case"], LOOK_ALIKES["upper-case domain"]):
        pytest.skip("folds to a canonical email (but is not canonical itself)")
    if value == LOOK_ALIKES["unicode domain"]:
        assert canonical_email(value).startswith("alice@xn--")
        assert not is_canonical(value)
        return
    with pytest.raises(InvalidIdentityError, match="datasite email"):
        canonical_email(value)
    assert not is_canonical(value)


@pytest.mark.parametrize("folder", list(LOOK_ALIKES.values()), ids=list(LOOK_ALIKES))
def test_a_sender_folder_that_is_not_canonical_is_refused_and_never_stored(workspace, folder):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    heard = []
    bob.add_message_listener(heard.append)
    path = write_raw_request(ws, to=BOB, folder=folder, body=envelope_body(folder, BOB, "hi"))
    status, answer = read_response(path)
    assert 400 <= status < 500 and status not in (419, 425, 429)
    assert "canonical" in answer["error"]
    assert _stored_senders(ws, BOB) == []
    assert heard == []
    [failure] = bob.failed_messages()
    assert failure["sender"] == folder and "canonical" in failure["reason"]
    assert folder not in bob.list_available_users()


def test_a_block_covers_every_spelling(workspace):
    ws = workspace(ALICE, BOB)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    policy = bob.block("  Alice@OpenMined.org ")
    assert policy.blocked == {ALICE}  # stored in canonical form
    with pytest.raises(MessageRejectedError, match="blocked"):
        alice.send_message(BOB, "blocked?", timeout=10)
    for folder in ("alice@openmined.org.", "Alice@openmined.org"):
        path = write_raw_request(ws, to=BOB, folder=folder, body=envelope_body(folder, BOB, "x"))
        assert read_response(path)[0] in (400, 403)
    assert _stored_senders(ws, BOB) == []
    with pytest.raises(InvalidMessageError):
        bob.block("alice@openmined.org.")


def test_recipients_and_group_members_are_canonical(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    alice, bob = ws.client(ALICE), ws.client(BOB)
    ws.client(CAROL)
    got = []
    bob.add_message_listener(got.append)
    response = alice.send_message(" Bob@OpenMined.org ", "one conversation", timeout=10)
    assert response.status == "delivered"
    assert alice.get_message(response.message_id).recipient == BOB
    wait_for(lambda: len(got) == 1)
    for bad in ("bob@openmined.org.", "b\u200bob@openmined.org", "bob"):
        with pytest.raises(InvalidMessageError):
            alice.send_message(bad, "no")
        with pytest.raises(InvalidMessageError):
            alice.create_group("g", [bad, CAROL])
    group = alice.create_group("g", ["Bob@openmined.org", CAROL])
    assert set(group.members) == {ALICE, BOB, CAROL}
