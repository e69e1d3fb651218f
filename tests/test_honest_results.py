"""Honest results and clear failures: what a command or call reports is what happened.

* ``syft-chat send`` exits 0 only for a confirmed message, 3 for one stored and handed over
  but not confirmed in time, and shows a progress line on a terminal while it waits;
* ``send_message`` never raises once the message was handed to the transport;
* a database deleted under a running client is noticed; durability is a setting;
* a full disk says so; the CLI and the API find the same database.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BOB
from test_cli import CLI, _env

from syft_chat.cli.online import UNCONFIRMED_EXIT


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    c = CLI(tmp_path)
    try:
        yield c
    finally:
        c.bob.close()


# --------------------------------------------------------------------------- 1. send's exit code


def test_send_exits_0_only_when_delivered(cli: CLI) -> None:
    result = cli.run("send", BOB, "are you there?")
    assert result.returncode == 0, result.stderr
    assert "delivered" in result.stdout


def test_send_unconfirmed_exits_3_and_says_so(cli: CLI) -> None:
    cli.bob.close()  # bob is offline: his folder is there, nobody answers
    result = cli.run("send", "--timeout", "1", BOB, "hello?")
    assert result.returncode == UNCONFIRMED_EXIT == 3, result.stderr
    assert "not confirmed yet" in result.stdout
    assert "delivered" not in result.stdout
    assert "did not confirm within 1s" in result.stderr
    as_json = cli.run("send", "--json", "--timeout", "0.5", BOB, "still there?")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["status"] == "sent"


def test_send_shows_progress_on_a_terminal_and_waits_15s_by_default(cli: CLI) -> None:
    cli.bob.close()
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        cli.args("send", BOB, "anyone?"),
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
        env=_env(cli.tmp),
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"2s of 15s" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(primary, 4096)
                except OSError:
                    break
        assert b"waiting for bob@openmined.org to confirm..." in seen, seen
        assert b"2s of 15s" in seen, seen
        assert proc.poll() is None  # still waiting: the default is 15 s
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
