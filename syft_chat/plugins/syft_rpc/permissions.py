"""Permission files for the chat endpoint, in both SyftBox dialects.

Other datasites may create, read and write requests only inside the folder
named after their own email, and read (and clean up) the responses in it;
everyone may read the published schema. Nothing else in the app folder is
writable by others. The contact policy narrows this further (see
``syft_chat.features.contacts``).

* ``syft.pub.yaml``: the current (Go) SyftBox server's format; syft-event
  writes a broader default on every start, which we replace. It can only
  grant: a block is expressed by granting only contacts (contacts-only mode).
* ``syftperm.yaml``: the legacy Python server's format (syftbox 0.4.0); later
  rules win, so deny rules for blocked datasites come last.

Both are produced with ``yaml.safe_dump`` from data, never by pasting
strings, so no email can inject a rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from syft_chat.features.contacts import ContactPolicy
from syft_chat.plugins.syft_rpc.files import atomic_write

__all__ = ["write_permission_files"]

_HEADER = "# written by syft-chat: other datasites may use only their own request folder\n"
_USER_FOLDER = "{{.UserEmail}}"  # the Go server's template for the requesting datasite


def _pub_rules(endpoint: str, policy: ContactPolicy) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [{"pattern": "rpc.schema.json", "access": {"read": ["*"]}}]
    if policy.mode == "contacts_only":
        grants = [(email, [email]) for email in sorted(policy.allowed - policy.blocked)]
    else:  # "USER" is the requesting datasite itself
        grants = [(_USER_FOLDER, ["USER"])]
    for folder, users in grants:
        for suffix in ("request", "response"):
            rules.append(
                {
                    "pattern": f"{endpoint}/{folder}/*.{suffix}",
                    "access": {"read": list(users), "write": list(users)},
                }
            )
    return {"rules": rules}


def _legacy_rules(endpoint: str, policy: ContactPolicy) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {"path": "rpc.schema.json", "user": "*", "permissions": ["read"]}
    ]
    grantees = ["*"] if policy.mode == "open" else sorted(policy.allowed - policy.blocked)
    perms = {"request": ["create", "write", "read"], "response": ["write", "read"]}
    for user in grantees:
        for suffix, granted in perms.items():
            path = f"{endpoint}/{{useremail}}/*.{suffix}"
            rules.append({"path": path, "user": user, "permissions": list(granted)})
    for user in sorted(policy.blocked):  # later rules win: blocked datasites may do nothing
        for suffix, denied in perms.items():
            path = f"{endpoint}/{{useremail}}/*.{suffix}"
            rules.append(
                {"path": path, "user": user, "type": "disallow", "permissions": list(denied)}
            )
    return rules


def write_permission_files(
    rpc_dir: Path, endpoint: str, policy: ContactPolicy | None = None
) -> list[Path]:
    """(Re)write both permission files in ``rpc_dir``, atomically. Returns their paths."""
    policy = policy or ContactPolicy()
    rpc_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in (
        ("syft.pub.yaml", _pub_rules(endpoint, policy)),
        ("syftperm.yaml", _legacy_rules(endpoint, policy)),
    ):
        text = _HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        path = rpc_dir / name
        atomic_write(path, text.encode("utf-8"))
        written.append(path)
    return written
