"""Shared fixtures: real SyftBox workspaces on disk, real clients, real SQLite files.

The helpers live in ``support.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ALICE, BOB, CHROMIUM, Workspace

from syft_chat.testing import isolate_plugins


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up plugins installed on the machine."""
    isolate_plugins(monkeypatch)


@pytest.fixture(autouse=True)
def _no_home_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A client made without ``db_path`` never opens the real ``~/.syft-chat`` database."""
    monkeypatch.setenv("SYFT_CHAT_DB", str(tmp_path / "default-chat.db"))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Callable[..., Workspace]]:
    made: list[Workspace] = []

    def factory(*emails: str) -> Workspace:
        ws = Workspace(tmp_path / f"ws{len(made)}", list(emails or (ALICE, BOB)))
        made.append(ws)
        return ws

    yield factory
    for ws in made:
        ws.close()


@pytest.fixture
def pair(workspace: Callable[..., Workspace]) -> tuple[Workspace, Any, Any]:
    ws = workspace(ALICE, BOB)
    return ws, ws.client(ALICE), ws.client(BOB)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """The system Chromium driven by Playwright, one for the whole run (two Playwright
    sessions in one process clash); skipped, saying why, only when it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()
