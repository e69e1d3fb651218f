"""Fixtures for the real-SyftBox-network tier (see README.md in this folder)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .syftbox_network import SyftBoxNetwork, SyftBoxVenvError, ensure_syftbox_venv, venv_path

ALICE = "alice@example.com"
BOB = "bob@example.com"


@pytest.fixture(scope="session")
def syftbox_python() -> Path:
    """The python of the dedicated ``syftbox==0.4.0`` virtualenv; skips the tier without it."""
    if sys.platform == "win32":
        pytest.skip("the SyftBox network tier needs a POSIX system")
    try:
        return ensure_syftbox_venv()
    except SyftBoxVenvError as exc:
        pytest.skip(f"cannot create the syftbox venv at {venv_path()}: {exc}")


@pytest.fixture
def syftbox_emails() -> list[str]:
    """The datasites of ``syftbox_network``; override this fixture to change them."""
    return [ALICE, BOB]


@pytest.fixture
def syftbox_network(
    syftbox_python: Path, syftbox_emails: list[str], tmp_path: Path
) -> Iterator[SyftBoxNetwork]:
    """A started network (server + one client per email), stopped in teardown.

    ``network.config_path(email)`` is each datasite's config.json for ``Client.load``. On a
    failing test the processes' logs are attached to the report as a "syftbox logs" section.
    """
    net = SyftBoxNetwork(tmp_path / "syftbox", python=syftbox_python)
    try:
        net.start(syftbox_emails)
        yield net
    finally:
        net.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    net = getattr(item, "funcargs", {}).get("syftbox_network")
    if isinstance(net, SyftBoxNetwork):
        report.sections.append(("syftbox logs", net.dump_logs()))
