"""syft-event's periodic cleanup as the transport runs it (``plugins/syft_rpc/cleanup.py``):
a real ``PeriodicCleanup`` over a real datasite folder, one pass at a time."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from support import ALICE, BOB
from syft_core import Client as SyftClient
from syft_event.cleanup import PeriodicCleanup
from syft_rpc.protocol import SyftRequest
from syft_rpc.rpc import make_url

from syft_chat.plugins.syft_rpc.cleanup import HeldCleanup
from syft_chat.testing import make_workspace

MONTH = 31 * 86400


def _request_text(created: datetime) -> str:
    return SyftRequest(
        sender=ALICE,
        method="POST",
        url=make_url(BOB, "syft_chat", "chat"),
        body=b"{}",
        created=created,
        expires=created + timedelta(minutes=5),
    ).model_dump_json()


def test_a_symlinked_request_is_never_followed_and_goes_by_its_own_age(tmp_path: Path) -> None:
    configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
    syft = SyftClient.load(configs[BOB])
    cleanup = PeriodicCleanup("syft_chat", client=syft)
    HeldCleanup(cleanup, max_bytes=4096)
    folder = syft.app_data("syft_chat") / "rpc" / "chat" / ALICE
    folder.mkdir(parents=True)
    target = tmp_path / "elsewhere.json"  # says it is a month old: loaded, it would be deleted
    target.write_text(_request_text(datetime.now(timezone.utc) - timedelta(days=31)))
    link = folder / "3f1b2c4d-0000-4000-8000-000000000001.request"
    link.symlink_to(target)
    plain = folder / "3f1b2c4d-0000-4000-8000-000000000002.request"
    plain.write_text(_request_text(datetime.now(timezone.utc) - timedelta(days=31)))

    cleanup.perform_cleanup()
    assert link.is_symlink() and not plain.exists()  # the plain file was loaded and judged

    old = time.time() - MONTH
    os.utime(link, (old, old), follow_symlinks=False)
    cleanup.perform_cleanup()
    assert not link.is_symlink() and target.exists()  # the link went by its own age


def test_a_request_that_landed_a_month_ago_goes_whatever_created_it_claims(tmp_path: Path) -> None:
    configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
    syft = SyftClient.load(configs[BOB])
    cleanup = PeriodicCleanup("syft_chat", client=syft)
    HeldCleanup(cleanup, max_bytes=4096)
    folder = syft.app_data("syft_chat") / "rpc" / "chat" / ALICE
    folder.mkdir(parents=True)
    future = folder / "3f1b2c4d-0000-4000-8000-000000000003.request"
    future.write_text(_request_text(datetime.now(timezone.utc) + timedelta(days=3650)))
    answer = future.with_suffix(".response")
    answer.write_text("{}")
    recent = folder / "3f1b2c4d-0000-4000-8000-000000000004.request"
    recent.write_text(_request_text(datetime.now(timezone.utc)))
    old = time.time() - MONTH
    os.utime(future, (old, old))

    cleanup.perform_cleanup()
    assert not future.exists() and not answer.exists()  # a future date kept it forever
    assert recent.exists()
