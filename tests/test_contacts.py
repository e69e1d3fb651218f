"""Contact policy (issue 8): enforced in the permission files and at the receiver."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from support import ALICE, BOB, MALLORY, wait_for
from syft_core.permissions import (
    ComputedPermission,
    PermissionType,
    SyftPermission,
)

import syft_chat


def _may_write(ws, owner: str, user: str) -> bool:
    """What the legacy SyftBox server computes from the syftperm.yaml we wrote."""
    rpc = ws.endpoint(owner).parent
    rel = rpc.relative_to(ws.root / "datasites")
    perm = SyftPermission.from_rule_dicts(
        rel / "syftperm.yaml", yaml.safe_load((rpc / "syftperm.yaml").read_text())
    )
    path = rel / "chat" / user / "0b1e7b55-9a36-4d77-9d70-4c1b3e1f7e11.request"
    computed = ComputedPermission.from_user_rules_and_path(perm.rules, user, Path(path))
    return computed.perms[PermissionType.CREATE] and computed.perms[PermissionType.WRITE]


def test_blocked_sender_is_refused_recorded_and_denied_in_the_permission_file(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    bob, alice, mallory = ws.client(BOB), ws.client(ALICE), ws.client(MALLORY)
    got: list[str] = []
    bob.add_message_listener(lambda m: got.append(m.content))
    assert _may_write(ws, BOB, MALLORY) and _may_write(ws, BOB, ALICE)

    policy = bob.block(MALLORY)
    assert policy.blocked == {MALLORY}
    assert not _may_write(ws, BOB, MALLORY)  # she cannot even write into bob's folder
    assert _may_write(ws, BOB, ALICE)

    with pytest.raises(syft_chat.MessageRejectedError, match="blocked"):
        mallory.send_message(BOB, "let me in")
    alice.send_message(BOB, "hi bob")
    wait_for(lambda: got == ["hi bob"])
    conn = sqlite3.connect(ws.db(BOB))
    senders = [r[0] for r in conn.execute("SELECT sender FROM messages")]
    conn.close()
    assert senders == [ALICE]
    [failure] = [f for f in bob.failed_messages() if f["sender"] == MALLORY]
    assert "blocked" in failure["reason"]

    bob.unblock(MALLORY)
    assert _may_write(ws, BOB, MALLORY)
    assert mallory.send_message(BOB, "thanks").status == "delivered"


def test_contacts_only_mode(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    bob, alice, mallory = ws.client(BOB), ws.client(ALICE), ws.client(MALLORY)
    bob.allow(ALICE)
    policy = bob.set_contact_mode("contacts_only")
    assert policy.mode == "contacts_only" and policy.allowed == {ALICE}
    assert alice.send_message(BOB, "a contact").status == "delivered"
    with pytest.raises(syft_chat.MessageRejectedError, match="contacts only"):
        mallory.send_message(BOB, "a stranger")
    assert _may_write(ws, BOB, ALICE) and not _may_write(ws, BOB, MALLORY)
    pub = yaml.safe_load((ws.endpoint(BOB).parent / "syft.pub.yaml").read_text())
    patterns = {rule["pattern"] for rule in pub["rules"]}
    assert f"chat/{ALICE}/*.request" in patterns
    assert not any(MALLORY in p or "UserEmail" in p for p in patterns)
    with pytest.raises(syft_chat.InvalidMessageError):
        bob.set_contact_mode("everyone")


def test_policy_survives_a_restart_and_is_in_the_files_from_the_start(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    bob = ws.client(BOB)
    bob.block(MALLORY)
    bob.close()
    (ws.endpoint(BOB).parent / "syftperm.yaml").unlink()
    bob = ws.client(BOB)
    assert bob.contact_policy.blocked == {MALLORY}
    assert not _may_write(ws, BOB, MALLORY)
    assert not list(ws.endpoint(BOB).parent.glob(".*.tmp"))  # rewritten atomically
    with pytest.raises(syft_chat.InvalidMessageError):
        bob.block("not an email")


def test_no_email_can_inject_a_permission_rule(workspace, tmp_path):
    from syft_chat.features.contacts import ContactPolicy
    from syft_chat.plugins.syft_rpc.permissions import write_permission_files

    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    for hostile in ("a'b@x.org", "x@y.org\n- path: '**'", "a: b@c.org", "*@x.org"):
        with pytest.raises(syft_chat.InvalidMessageError):
            bob.block(hostile)
    # even a hostile value that reached the database by hand stays data, not YAML
    evil = "evil'\n- path: '**'\n  user: '*'\n  permissions: [admin]\n#@x.org"
    write_permission_files(tmp_path, "chat", ContactPolicy(mode="contacts_only", allowed={evil}))
    legacy = yaml.safe_load((tmp_path / "syftperm.yaml").read_text())
    assert all(rule["path"] != "**" for rule in legacy)
    assert [rule["user"] for rule in legacy if rule["path"].endswith(".request")] == [evil]
    pub = yaml.safe_load((tmp_path / "syft.pub.yaml").read_text())
    assert all("admin" not in rule["access"] for rule in pub["rules"])
