"""Permission files for the chat endpoint, in both SyftBox dialects.

Other datasites may create, read and write requests only inside the folder
named after their own email, and read (and clean up) the responses in it;
everyone may read the published schema. Nothing else in the app folder is
writable by others.

* ``syft.pub.yaml``: the current (Go) SyftBox server's format; syft-event
  writes a broader default on every start, which we replace.
* ``syftperm.yaml``: the legacy Python server's format (syftbox 0.4.0).
"""

from __future__ import annotations

from pathlib import Path

from ..contacts import ContactPolicy
from ..fileio import atomic_write

__all__ = ["write_permission_files"]


def _pub_yaml(endpoint: str, policy: ContactPolicy) -> str:
    if policy.mode == "contacts_only":
        # this dialect can only grant: in contacts-only mode, only contacts are granted
        senders = sorted(policy.allowed - policy.blocked)
        grants = "".join(
            f"""- pattern: '{endpoint}/{email}/*.request'
  access:
    read: ['{email}']
    write: ['{email}']
- pattern: '{endpoint}/{email}/*.response'
  access:
    read: ['{email}']
    write: ['{email}']
"""
            for email in senders
        )
    else:
        # this dialect cannot deny one user: blocks are enforced at the receiver
        grants = f"""- pattern: '{endpoint}/{{{{.UserEmail}}}}/*.request'
  access:
    read:
    - 'USER'
    write:
    - 'USER'
- pattern: '{endpoint}/{{{{.UserEmail}}}}/*.response'
  access:
    read:
    - 'USER'
    write:
    - 'USER'
"""
    return f"""\
# written by syft-chat: other datasites may use only their own request folder
rules:
- pattern: rpc.schema.json
  access:
    read:
    - '*'
{grants}"""


def _legacy_rule(endpoint: str, user: str, suffix: str, perms: str, deny: bool = False) -> str:
    kind = "  type: disallow\n" if deny else ""
    return f"""- path: '{endpoint}/{{useremail}}/*.{suffix}'
  user: '{user}'
{kind}  permissions: [{perms}]
"""


def _legacy_yaml(endpoint: str, policy: ContactPolicy) -> str:
    rules = [
        """- path: 'rpc.schema.json'
  user: '*'
  permissions: [read]
"""
    ]
    grantees = ["*"] if policy.mode == "open" else sorted(policy.allowed - policy.blocked)
    for user in grantees:
        rules.append(_legacy_rule(endpoint, user, "request", "create, write, read"))
        rules.append(_legacy_rule(endpoint, user, "response", "write, read"))
    # later rules win: blocked senders may not write (or read answers) at all
    for user in sorted(policy.blocked):
        rules.append(_legacy_rule(endpoint, user, "request", "create, write, read", deny=True))
        rules.append(_legacy_rule(endpoint, user, "response", "write, read", deny=True))
    header = "# written by syft-chat: other datasites may use only their own request folder\n"
    return header + "".join(rules)


def write_permission_files(
    rpc_dir: Path, endpoint: str, policy: ContactPolicy | None = None
) -> list[Path]:
    """(Re)write both permission files in ``rpc_dir``, atomically. Returns their paths."""
    policy = policy or ContactPolicy()
    rpc_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("syft.pub.yaml", _pub_yaml(endpoint, policy)),
        ("syftperm.yaml", _legacy_yaml(endpoint, policy)),
    ):
        path = rpc_dir / name
        atomic_write(path, text.encode("utf-8"))
        written.append(path)
    return written
