"""Regressions from an adversarial review: floods, huge files, clocks, odd arguments."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from datetime import datetime, timezone

import pytest
from support import ALICE, BOB, MALLORY, envelope_body, read_response, write_raw_request

import syft_chat
from syft_chat import MessageStatus
from syft_chat.display import format_message, printable


def test_a_flood_of_malformed_files_does_not_stall_serving(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    ws.client(BOB)
    alice = ws.client(ALICE)
    for _ in range(150):
        write_raw_request(ws, to=BOB, folder=MALLORY, raw=b"garbage")
    start = time.monotonic()
    assert alice.send_message(BOB, "still served?", timeout=10).status == "delivered"
    took = time.monotonic() - start
    assert took < 5, f"a real message waited {took:.1f}s behind the garbage"


def test_a_huge_request_file_is_refused_without_being_read(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    folder = ws.endpoint(BOB) / ALICE
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "0b1e7b55-9a36-4d77-9d70-4c1b3e1f7e12.request"
    with open(path, "wb") as fh:  # a 1 GiB sparse file: reading it would cost 1 GiB
        fh.truncate(1 << 30)
    os.utime(path, (time.time() - 60, time.time() - 60))
    tmp = path.with_name("x.tmp")
    path.rename(tmp)
    tmp.rename(path)  # announce it to the watcher
    status, answer = read_response(path, timeout=10)
    assert status == 400 and "limit" in answer["error"]
    [failure] = bob.failed_messages()
    assert len(failure["raw"]) <= bob.settings.failed_raw_bytes


def test_failed_messages_are_truncated_and_capped(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB, settings={"failed_messages_kept": 5, "failed_raw_bytes": 100})
    for i in range(8):
        body = envelope_body(ALICE, BOB, "x" * (bob.settings.max_content_bytes + 10 + i))
        read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=body))
    failures = bob.failed_messages(limit=100)
    assert len(failures) == 5
    assert all(len(f["raw"]) <= 100 for f in failures)


def test_far_future_timestamps_are_clamped_to_receipt(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    body = envelope_body(ALICE, BOB, "pinned?", timestamp="9999-12-31T23:59:59+00:00")
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=body))[0] == 200
    [message] = bob.get_chat_history()
    assert message.timestamp <= datetime.now(timezone.utc)


def test_out_of_range_timestamp_is_malformed_not_a_crash(workspace):
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    body = envelope_body(ALICE, BOB, "old", timestamp="0001-01-01T00:00:00+05:00")
    status, answer = read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=body))
    assert status == 400 and answer.get("retry") is not True
    assert bob.failed_messages()


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -1, "5", True])
def test_non_finite_or_odd_timeouts_are_refused(pair, timeout):
    _, alice, _ = pair
    with pytest.raises(syft_chat.InvalidMessageError):
        alice.send_message(BOB, "hi", timeout=timeout)


def test_odd_history_and_metadata_arguments_are_typed_errors(pair):
    _, alice, _ = pair
    for kwargs in ({"since": datetime.min}, {"with_user": ""}, {"limit": "5"}):
        with pytest.raises(syft_chat.InvalidMessageError):
            alice.get_chat_history(**kwargs)
    for metadata in ({1: 2}, {"x": math.nan}):
        with pytest.raises(syft_chat.InvalidMessageError):
            alice.send_message(BOB, "hi", metadata=metadata)
    with pytest.raises(syft_chat.InvalidMessageError):
        alice.failed_messages(limit="x")


def test_two_clients_on_one_database_never_reuse_a_sequence_number(workspace):
    ws = workspace(ALICE, BOB)
    ws.client(BOB)
    a1 = ws.client(ALICE)
    a2 = ws.client(ALICE, db_path=ws.db(ALICE))  # e.g. `syft-chat send` beside `serve`
    for client in (a1, a2, a1, a2, a1):
        client.send_message(BOB, "x")
    conn = sqlite3.connect(ws.db(ALICE))
    seqs = [r[0] for r in conn.execute("SELECT seq FROM messages ORDER BY id")]
    conn.close()
    assert seqs == [1, 2, 3, 4, 5]


def test_terminal_output_escapes_control_sequences():
    hostile = "hi \x1b]0;PWNED\x07\x1b[2J\r\u202efake"
    line = format_message(syft_chat.ChatMessage(sender=ALICE, recipient=BOB, content=hostile))
    assert "\x1b]0" not in line and "\x07" not in line and "\r" not in line
    assert "\u202e" not in line
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"


def test_status_formats_as_its_value():
    assert f"{MessageStatus.DELIVERED}" == "delivered" and str(MessageStatus.SENT) == "sent"


def test_config_with_a_bad_email_is_refused(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data_dir": str(tmp_path), "email": "a/b@y.org"}))
    with pytest.raises(syft_chat.ConfigError):
        syft_chat.client(cfg, db_path=tmp_path / "x.db")


def test_block_ignores_case(workspace):
    ws = workspace(ALICE, BOB, MALLORY)
    bob, mallory = ws.client(BOB), ws.client(MALLORY)
    bob.block(MALLORY.upper())
    with pytest.raises(syft_chat.MessageRejectedError, match="blocked"):
        mallory.send_message(BOB, "case games")


def test_forged_cursor_and_raw_nul_query_are_typed_errors(pair):
    import base64

    _, alice, _ = pair
    alice.send_message(BOB, "census dataset")
    huge = base64.urlsafe_b64encode(b"1|2026-01-01 00:00:00.000000+00:00|" + b"9" * 40).decode()
    with pytest.raises(syft_chat.InvalidMessageError):
        alice.get_history_page(before=huge)
    with pytest.raises(syft_chat.InvalidMessageError, match="NUL"):
        alice.search("census\x00dataset", raw=True)


def test_stray_actions_make_no_conversation_and_are_forgotten(workspace):
    from datetime import timedelta

    ws = workspace(ALICE, BOB, MALLORY)
    bob = ws.client(BOB)
    for i in range(5):
        body = envelope_body(MALLORY, BOB, f"junk {i}", kind="edit", target=f"nothing-{i}")
        assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=body))[0] == 200
    assert [c.conversation_id for c in bob.list_conversations()] == []
    from syft_chat.messaging.incoming import stray_actions

    assert bob.store.remove(stray_actions(timedelta(0))) == 5
