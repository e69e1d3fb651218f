"""syft-event's periodic cleanup as the transport runs it (``plugins/syft_rpc/cleanup.py``):
a real ``PeriodicCleanup`` over a real datasite folder, one pass at a time."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support import ALICE, BOB, dated_request
from syft_core import Client as SyftClient
from syft_event.cleanup import PeriodicCleanup

from syft_chat.plugins.syft_rpc.cleanup import HeldCleanup
from syft_chat.testing import make_workspace

MONTH = 31 * 86400
NOW = datetime.now(timezone.utc)


@pytest.fixture
def cleanup(tmp_path: Path) -> tuple[PeriodicCleanup, Path]:
    """Bob's cleanup, guarded as the transport guards it, and alice's folder in his endpoint."""
    configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
    syft = SyftClient.load(configs[BOB])
    real = PeriodicCleanup("syft_chat", client=syft)
    HeldCleanup(real, max_bytes=4096)
    return real, syft.app_data("syft_chat") / "rpc" / "chat" / ALICE


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_a_symlinked_request_is_never_followed_and_goes_by_its_own_age(
    cleanup: tuple[PeriodicCleanup, Path], tmp_path: Path
) -> None:
    real, folder = cleanup
    # says it is a month old: loaded, it would be deleted
    target = dated_request(tmp_path / "elsewhere", NOW - timedelta(days=31))
    link = folder / "3f1b2c4d-0000-4000-8000-000000000001.request"
    folder.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    plain = dated_request(folder, NOW - timedelta(days=31))

    real.perform_cleanup()
    assert link.is_symlink() and not plain.exists()  # the plain file was loaded and judged

    _age(link, MONTH)
    real.perform_cleanup()
    assert not link.is_symlink() and target.exists()  # the link went by its own age


def test_a_request_that_landed_a_month_ago_goes_whatever_created_it_claims(
    cleanup: tuple[PeriodicCleanup, Path],
) -> None:
    real, folder = cleanup
    future = dated_request(folder, NOW + timedelta(days=3650))
    answer = future.with_suffix(".response")
    answer.write_text("{}")
    recent = dated_request(folder, NOW)
    _age(future, MONTH)

    real.perform_cleanup()
    assert not future.exists() and not answer.exists()  # a future date kept it forever
    assert recent.exists()
