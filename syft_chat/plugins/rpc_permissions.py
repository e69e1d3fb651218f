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

from ..fileio import atomic_write

__all__ = ["write_permission_files"]


def _pub_yaml(endpoint: str) -> str:
    return f"""\
# written by syft-chat: other datasites may use only their own request folder
rules:
- pattern: rpc.schema.json
  access:
    read:
    - '*'
- pattern: '{endpoint}/{{{{.UserEmail}}}}/*.request'
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


def _legacy_yaml(endpoint: str) -> str:
    return f"""\
# written by syft-chat: other datasites may use only their own request folder
- path: 'rpc.schema.json'
  user: '*'
  permissions:
  - read
- path: '{endpoint}/{{useremail}}/*.request'
  user: '*'
  permissions:
  - create
  - write
  - read
- path: '{endpoint}/{{useremail}}/*.response'
  user: '*'
  permissions:
  - write
  - read
"""


def write_permission_files(rpc_dir: Path, endpoint: str) -> list[Path]:
    """(Re)write both permission files in ``rpc_dir``, atomically. Returns their paths."""
    rpc_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("syft.pub.yaml", _pub_yaml(endpoint)),
        ("syftperm.yaml", _legacy_yaml(endpoint)),
    ):
        path = rpc_dir / name
        atomic_write(path, text.encode("utf-8"))
        written.append(path)
    return written
