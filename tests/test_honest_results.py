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
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ALICE, BOB, envelope_body, read_response, wait_for, write_raw_request
from test_cli import CLI, COMMAND, _env

import syft_chat
from syft_chat.cli.online import UNCONFIRMED_EXIT
from syft_chat.errors import StorageError, SyftChatError
from syft_chat.models import MessageStatus
from syft_chat.settings import ChatSettings
from syft_chat.testing import make_workspace


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


# --------------------------------------------------------------------------- 2. no raise after send

_real_connect = sqlite3.connect
_ATTEMPT_UPDATE = re.compile(r"^\s*UPDATE messages SET .*\brequest_id = \?", re.DOTALL)


class _AttemptFault(sqlite3.Connection):
    """A plain connection whose one statement recording an attempt fails, once, by SQLite's
    own means: ``deny`` (an authorizer refusing exactly that UPDATE) or ``lock`` (another
    connection holding the write lock, ``BEGIN IMMEDIATE``, while it runs)."""

    mode = "deny"
    armed = False
    hit = 0

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _AttemptFaultCursor)


class _AttemptFaultCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        conn = self.connection
        assert isinstance(conn, _AttemptFault)
        if not (type(conn).armed and _ATTEMPT_UPDATE.match(sql)):
            return super().execute(sql, parameters)
        type(conn).armed = False
        type(conn).hit += 1
        if type(conn).mode == "deny":
            deny = sqlite3.SQLITE_UPDATE
            conn.set_authorizer(lambda action, *_: sqlite3.SQLITE_DENY if action == deny else 0)
            try:
                return super().execute(sql, parameters)
            finally:
                conn.set_authorizer(None)
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        blocker = _real_connect(path, isolation_level=None, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            return super().execute(sql, parameters)
        finally:
            blocker.rollback()
            blocker.close()


@pytest.mark.parametrize("mode", ["deny", "lock"])
def test_send_message_never_raises_once_handed_to_the_transport(
    workspace: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    ws = workspace(ALICE, BOB)
    alice_db = ws.db(ALICE).resolve()
    alice_db.parent.mkdir(parents=True, exist_ok=True)

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if isinstance(database, (str, Path)) and Path(database).resolve() == alice_db:
            kwargs.setdefault("factory", _AttemptFault)
        return _real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(_AttemptFault, "mode", mode)
    monkeypatch.setattr(_AttemptFault, "hit", 0)
    fast = {"retry_initial": 0.3, "retry_max": 1.0, "db_busy_timeout_ms": 100}
    alice = ws.client(ALICE, settings=fast)
    bob = ws.client(BOB)
    monkeypatch.setattr(_AttemptFault, "armed", True)
    response = alice.send_message(BOB, "exactly once", timeout=5)
    assert _AttemptFault.hit == 1  # the fault did happen, on the attempt's record
    assert response.status in ("sent", "delivered")
    wait_for(lambda: alice.get_message(response.message_id).status == MessageStatus.DELIVERED)
    received = [m for m in bob.get_chat_history(with_user=ALICE) if m.content == "exactly once"]
    assert [m.msg_id for m in received] == [response.message_id]
    assert [m.content for m in alice.get_chat_history(with_user=BOB)] == ["exactly once"]


# --------------------------------------------------------------------------- 3. files deleted


FAST: dict[str, Any] = {"retry_initial": 0.3, "retry_max": 1.0, "startup_hold": 0.0}


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_under_a_running_client_stops_confirming(
    workspace: Any, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE, settings=FAST)
    bob = ws.client(BOB, settings=FAST)
    first = alice.send_message(BOB, "before", timeout=10)
    assert first.status == "delivered"
    db = ws.db(BOB)
    if how == "deleted":
        db.unlink()
    else:
        other = db.with_name("other.db")
        sqlite3.connect(other).close()
        os.replace(other, db)
    caplog.clear()
    late = alice.send_message(BOB, "after", timeout=3)
    assert late.status == "sent"  # bob answered "retry" (503), never "stored" (200)
    with pytest.raises(StorageError, match=f"was {how}"):
        bob.get_chat_history()
    with pytest.raises(StorageError, match=f"was {how}"):
        bob.send_message(ALICE, "hello?")
    noticed = [r for r in caplog.records if f"was {how}" in r.getMessage()]
    assert len(noticed) == 1, [r.getMessage() for r in noticed]  # logged once
    bob.close()
    # bob starts again on a new file: alice's retries deliver what he never confirmed
    bob2 = ws.client(BOB, settings=FAST)
    wait_for(lambda: alice.get_message(late.message_id).status == MessageStatus.DELIVERED, 15)
    assert [m.content for m in bob2.get_chat_history(with_user=ALICE)] == ["after"]


def _remove(folder: Path) -> None:
    """``rmtree`` while the running client deletes files in it too (it races: try again)."""
    for _ in range(50):
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            continue


def test_an_endpoint_folder_deleted_under_a_running_client_is_recreated(
    workspace: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE, settings=FAST)
    bob = ws.client(BOB, settings=FAST)
    assert alice.send_message(BOB, "one", timeout=10).status == "delivered"
    app = ws.endpoint(BOB).parent.parent
    _remove(app)
    wait_for(lambda: (ws.endpoint(BOB).parent / "rpc.schema.json").is_file(), 10)
    assert (ws.endpoint(BOB).parent / "syft.pub.yaml").is_file()
    assert any("re-creating" in r.getMessage() for r in caplog.records)
    assert alice.send_message(BOB, "two", timeout=10).status == "delivered"
    # deleted again, and a sender re-creates the folder before bob notices: still served
    _remove(ws.endpoint(BOB))
    assert alice.send_message(BOB, "three", timeout=10).status == "delivered"
    assert [m.content for m in bob.get_chat_history(with_user=ALICE)] == ["one", "two", "three"]


# --------------------------------------------------------------------------- 4. durability


@pytest.mark.parametrize("durable", [True, False])
def test_a_confirmation_is_durable_by_default(
    workspace: Any, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    ws = workspace(ALICE, BOB)
    settings = {**FAST} if durable else {**FAST, "durable": False}
    alice = ws.client(ALICE, settings=FAST)
    bob = ws.client(BOB, settings=settings)
    assert ChatSettings().durable is True
    synchronous = bob.store._db.execute_sql("PRAGMA synchronous").fetchone()[0]  # type: ignore[attr-defined]
    assert synchronous == (2 if durable else 1)  # FULL / NORMAL
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert alice.send_message(BOB, "keep me", timeout=10).status == "delivered"
    folder = str(ws.endpoint(BOB) / ALICE)
    if durable:  # bob's response file is synced before its rename (never found empty);
        # the folder is not: a rename lost to a power cut is answered again (next test)
        wait_for(
            lambda: any(".response." in name for name in synced),
            5,
        )
    else:
        assert not any(".response." in name for name in synced), synced
    assert folder not in synced


def test_an_answer_lost_to_a_power_cut_is_given_again_at_start(workspace: Any) -> None:
    """What a power cut can undo of bob's answer, its rename (the folder is not synced), is
    redone from what bob committed: the request still waits and is answered again, and
    the message is stored once."""
    ws = workspace(ALICE, BOB)
    ws.client(BOB, settings=FAST).close()
    body = envelope_body(ALICE, BOB, "survive")
    request = write_raw_request(ws, to=BOB, folder=ALICE, body=body)
    saved = request.read_bytes()
    bob = ws.client(BOB, settings=FAST)
    assert read_response(request)[0] == 200
    bob.close()
    request.with_suffix(".response").unlink()  # the rename that did not reach the disk
    request.write_bytes(saved)
    bob = ws.client(BOB, settings=FAST)
    status, _ = read_response(request)
    assert status == 200
    assert [m.content for m in bob.get_chat_history()] == ["survive"]


def test_an_answer_lost_then_the_sender_blocked_is_still_a_confirmation(workspace: Any) -> None:
    """Bob stored alice's message, its answer was lost (a power cut, a crash before the
    response file), then bob blocked alice: the request answered again at start is a 200,
    not a refusal, which alice would record as "failed" for a message bob has. A new
    message from her is still refused."""
    ws = workspace(ALICE, BOB)
    ws.client(BOB).close()
    request = write_raw_request(ws, to=BOB, folder=ALICE, body=envelope_body(ALICE, BOB, "kept"))
    saved = request.read_bytes()
    bob = ws.client(BOB, settings=FAST)
    assert read_response(request)[0] == 200
    bob.block(ALICE)
    bob.close()
    request.with_suffix(".response").unlink()  # the answer that did not reach the disk
    request.write_bytes(saved)
    bob = ws.client(BOB, settings=FAST)
    status, body = read_response(request)
    assert (status, body["status"]) == (200, "delivered"), body
    assert bob.failed_messages() == []
    new = write_raw_request(ws, to=BOB, folder=ALICE, body=envelope_body(ALICE, BOB, "new"))
    assert read_response(new)[0] == 403
    assert [m.content for m in bob.get_chat_history()] == ["kept"]


# --------------------------------------------------------------------------- 5. full disk, signals


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root and a kernel that lets us mount one)."""
    folder = tmp_path / "small"
    folder.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_says_disk_full(workspace: Any, small_disk: Path) -> None:
    ws = workspace(ALICE, BOB)
    ws.client(BOB)
    alice = ws.client(ALICE, db_path=small_disk / "alice.db", settings=FAST)
    alice.send_message(BOB, "fits", timeout=5)
    _fill(small_disk)
    with pytest.raises(StorageError) as raised:
        for _ in range(50):
            alice.send_message(BOB, "x" * 60_000, timeout=0)
    assert "disk full" in str(raised.value)
    assert "cannot rollback" not in str(raised.value)


def test_starting_on_a_full_data_dir_is_a_syft_chat_error(tmp_path: Path, small_disk: Path) -> None:
    configs = make_workspace(small_disk / "ws", [ALICE, BOB])
    _fill(small_disk)
    for db in (tmp_path / "alice.db", small_disk / "alice.db"):  # the database elsewhere, or there
        with pytest.raises(SyftChatError) as raised:
            syft_chat.client(configs[ALICE], db_path=db, load_entry_points=False).close()
        assert not isinstance(raised.value, OSError)
        assert "full" in str(raised.value)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("delay", [0.2, 0.4, 0.7, 0.95])
def test_serve_stopped_in_its_first_second_exits_cleanly(
    cli: CLI, sig: signal.Signals, delay: float
) -> None:
    proc = subprocess.Popen(
        cli.args("serve"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(cli.tmp),
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err
    assert err.strip().endswith("stopped")


# ------------------------------------------------------------------- 6. one default database


def test_the_api_and_the_cli_default_to_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SYFT_CHAT_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
    bob = syft_chat.client(configs[BOB], db_path=tmp_path / "bob.db")
    try:
        with syft_chat.client(configs[ALICE]) as alice:  # no db_path: the default
            assert alice.db_path == home / ".syft-chat" / ALICE / "chat_messages.db"
            alice.send_message(BOB, "written by a program", timeout=10)
    finally:
        bob.close()
    assert not (tmp_path / "chat_messages.db").exists()
    env = _env(tmp_path)  # the same HOME
    shown = subprocess.run(
        [*COMMAND, "--config", str(configs[ALICE]), "history"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "written by a program" in shown.stdout
    elsewhere = subprocess.run(
        [*COMMAND, "--config", str(configs[ALICE]), "--db", str(tmp_path / "x.db"), "history"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "no database at" in elsewhere.stderr and "--db" in elsewhere.stderr
