"""The seed's API surface: arguments, errors, lifecycle, the syft_chat_stateful alias."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
from support import ALICE, BOB, CAROL, wait_for

import syft_chat
from syft_chat import MessageStatus


def test_seed_module_name_is_an_alias():
    import syft_chat_stateful

    assert syft_chat_stateful is syft_chat
    assert syft_chat_stateful.client is syft_chat.client
    assert syft_chat_stateful.SyftChatClient is syft_chat.SyftChatClient


def test_public_api_is_exported():
    for name in (
        "client",
        "SyftChatClient",
        "ChatMessage",
        "ChatResponse",
        "hookimpl",
        "SyftChatError",
    ):
        assert name in syft_chat.__all__ and hasattr(syft_chat, name)


def test_missing_config_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(syft_chat.ConfigError, match="SYFTBOX_CLIENT_CONFIG_PATH"):
        syft_chat.client(tmp_path / "nope.json", db_path=tmp_path / "x.db")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(syft_chat.ConfigError, match=r"bad\.json"):
        syft_chat.client(bad, db_path=tmp_path / "x.db")
    assert not (tmp_path / "x.db").exists()


def test_config_from_environment_variable(workspace, monkeypatch):
    ws = workspace(ALICE, BOB)
    monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(ws.configs[ALICE]))
    with syft_chat.SyftChatClient(db_path=ws.db(ALICE)) as c:
        assert c.email == ALICE


def test_bad_arguments_are_typed_errors_and_store_nothing(pair):
    _, alice, bob = pair
    cases = [
        ((BOB, ""), syft_chat.InvalidMessageError),
        ((BOB, "   "), syft_chat.InvalidMessageError),
        ((BOB, 42), syft_chat.InvalidMessageError),
        ((BOB, "x" * (alice.settings.max_content_bytes + 1)), syft_chat.InvalidMessageError),
        (("not-an-email", "hi"), syft_chat.InvalidMessageError),
        ((ALICE, "hi me"), syft_chat.InvalidMessageError),
        (("ghost@nowhere.org", "hi"), syft_chat.UnknownRecipientError),
        (("../../etc@x/passwd", "hi"), syft_chat.InvalidMessageError),
    ]
    for args, error in cases:
        with pytest.raises(error):
            alice.send_message(*args)
    with pytest.raises(syft_chat.InvalidMessageError, match="JSON"):
        alice.send_message(BOB, "hi", metadata={"x": object()})
    with pytest.raises(syft_chat.InvalidMessageError):
        alice.get_chat_history(limit=-1)
    with pytest.raises(syft_chat.InvalidMessageError):
        alice.get_chat_history(since="yesterday")
    assert alice.get_chat_history() == []
    # errors are also the matching builtins
    with pytest.raises(ValueError):
        alice.send_message(BOB, "")
    with pytest.raises(LookupError):
        alice.send_message("ghost@nowhere.org", "hi")


def test_metadata_round_trips_as_json(pair):
    ws, alice, bob = pair
    sent = alice.send_message(BOB, "with meta", metadata={"priority": "high", "tags": ["a", 1]})
    got = bob.get_message(sent.message_id)
    assert got.metadata == {"priority": "high", "tags": ["a", 1]}
    raw = sqlite3.connect(ws.db(BOB)).execute("SELECT metadata FROM messages").fetchone()[0]
    assert json.loads(raw) == {"priority": "high", "tags": ["a", 1]}


def test_offline_recipient_is_not_an_error_and_the_message_stays_recorded(workspace):
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE)
    ws.client(BOB).close()  # bob published the endpoint, then went away
    start = time.monotonic()
    response = alice.send_message(BOB, "anyone?", timeout=0.2)
    assert time.monotonic() - start < 2
    assert response.status == "sent"
    row = alice.get_message(response.message_id)
    assert row.status == MessageStatus.SENT and row.content == "anyone?"
    assert [m.msg_id for m in alice.pending_messages()] == [response.message_id]
    # waiting explicitly for the confirmation is where a timeout is an error
    with pytest.raises(syft_chat.DeliveryTimeoutError) as info:
        alice.wait_for_delivery(response.message_id, timeout=0.2)
    assert isinstance(info.value, TimeoutError) and info.value.msg_id == response.message_id
    # timeout=0 returns at once
    assert alice.send_message(BOB, "fire and forget", timeout=0).status == "sent"


def test_close_is_idempotent_and_stops_serving(workspace):
    ws = workspace(ALICE, BOB)
    ws.client(ALICE)
    bob = ws.client(BOB)
    before = threading.active_count()
    bob.close()
    bob.close()
    assert bob.closed
    assert threading.active_count() < before
    with pytest.raises(syft_chat.ClientClosedError):
        bob.send_message(ALICE, "hi")
    with pytest.raises(syft_chat.ClientClosedError):
        bob.get_chat_history()
    # the database file is released: another process can take a write lock at once
    conn = sqlite3.connect(ws.db(BOB), timeout=0.1)
    conn.execute("BEGIN EXCLUSIVE")
    conn.rollback()
    conn.close()


def test_context_manager(workspace):
    ws = workspace(ALICE, BOB)
    with syft_chat.client(ws.configs[ALICE], db_path=ws.db(ALICE)) as alice:
        ws.client(BOB)
        assert alice.send_message(BOB, "hi").status == "delivered"
    assert alice.closed


def test_no_rpc_to_oneself_for_history(pair):
    ws, alice, bob = pair
    alice.send_message(BOB, "hello")
    own_folder = ws.endpoint(ALICE) / ALICE
    alice.get_chat_history()
    alice.get_chat_history(with_user=BOB)
    assert not own_folder.exists()


def test_locked_receiver_database_answers_error_and_keeps_running(workspace):
    ws = workspace(ALICE, BOB)
    alice = ws.client(ALICE)
    bob = ws.client(BOB, settings={"db_busy_timeout_ms": 50})
    locker = sqlite3.connect(ws.db(BOB), timeout=1)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        # bob answers "could not store, send again": not a refusal
        response = alice.send_message(BOB, "while locked", timeout=0.5)
        assert response.status == "sent"
        failures = bob.failed_messages()  # the lock also blocks recording, so none
        assert failures == [] or "locked" in failures[0]["reason"]
    finally:
        locker.rollback()
        locker.close()
    # nothing lost: alice sends it again by herself and bob stores it once
    assert alice.wait_for_delivery(response.message_id, timeout=10).status == "delivered"
    assert alice.send_message(BOB, "after unlock").status == "delivered"
    assert [m.content for m in bob.get_chat_history()] == ["while locked", "after unlock"]


def test_user_can_query_the_database_while_the_client_writes(pair):
    ws, alice, bob = pair
    conn = sqlite3.connect(ws.db(BOB))
    for i in range(20):
        alice.send_message(BOB, f"m{i}")
        conn.execute("SELECT count(*) FROM messages").fetchone()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 20
    cols = [r[1] for r in conn.execute("PRAGMA table_info(messages)")]
    conn.close()
    for col in ("msg_id", "sender", "content", "timestamp", "thread_id", "reply_to", "metadata"):
        assert col in cols


def test_status_changes_are_observable(pair):
    _, alice, bob = pair
    seen: list[tuple[str, MessageStatus]] = []

    class Ticks:
        @syft_chat.hookimpl
        def chat_message_status_changed(self, msg_id, status):
            seen.append((msg_id, status))

    alice.register_plugin(Ticks())
    sent = alice.send_message(BOB, "tick tick")
    wait_for(lambda: (sent.message_id, MessageStatus.DELIVERED) in seen)
    assert seen[0] == (sent.message_id, MessageStatus.SENT)


def test_message_repr_and_str(pair):
    _, alice, _ = pair
    alice.send_message(BOB, "hello there")
    msg = alice.get_chat_history()[0]
    assert "hello there" in str(msg) and ALICE in str(msg)
    assert ALICE in repr(alice)


def test_many_clients_many_threads(workspace):
    ws = workspace(ALICE, BOB, CAROL)
    clients = {e: ws.client(e) for e in (ALICE, BOB, CAROL)}
    errors: list[BaseException] = []

    def talk(me: str) -> None:
        try:
            for other in clients:
                if other != me:
                    for i in range(5):
                        clients[me].send_message(other, f"{me}->{other} {i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(e,)) for e in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for c in clients.values():
        assert len(c.get_chat_history(limit=100)) == 20


def test_history_and_messages_render_safely_in_notebooks(pair):
    _, alice, bob = pair
    alice.send_message(BOB, "<script>alert('x')</script> & <b>bold</b>")
    history = bob.get_chat_history()
    assert isinstance(history, list) and len(history) == 1
    page = history._repr_html_()
    bubble = history[0]._repr_html_()
    for html in (page, bubble):
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert "<b>bold</b>" not in html
    assert ALICE in page
