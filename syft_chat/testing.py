"""Helpers for testing syft-chat and its plugins against real datasites on disk.

Import it explicitly (``from syft_chat.testing import make_workspace``); it is
not a pytest plugin and registers nothing on its own.

A *local workspace* is what several SyftBox clients see when they share one
sync folder: one ``data_dir`` with ``datasites/<email>/`` for every member,
and one config file per member. Nothing is faked: the syft-rpc request files,
the syft-event watcher and the SQLite files are the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["make_workspace", "write_config"]


def write_config(path: Path, *, email: str, data_dir: Path) -> Path:
    """Write a minimal SyftBox client config (what ``syft_core.Client.load`` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "data_dir": str(data_dir),
        "email": email,
        "server_url": "http://127.0.0.1:5001/",
        "client_url": "http://127.0.0.1:8080/",
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def make_workspace(root: Path | str, emails: Iterable[str]) -> dict[str, Path]:
    """Lay out a local SyftBox workspace under ``root`` for ``emails``.

    Creates ``root/datasites/<email>/`` for each member and a config file
    ``root/configs/<email>.json`` pointing at the shared ``data_dir``.
    Returns ``{email: config_path}``.
    """
    root = Path(root).expanduser().resolve()
    data_dir = root
    configs: dict[str, Path] = {}
    for email in emails:
        (data_dir / "datasites" / email / "public").mkdir(parents=True, exist_ok=True)
        configs[email] = write_config(
            root / "configs" / f"{email}.json", email=email, data_dir=data_dir
        )
    return configs
