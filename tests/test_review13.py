"""Review 13: findings of an adversarial review, each a failing test first."""

from __future__ import annotations

import threading

from support import ALICE, BOB, MALLORY, envelope_body, read_response, wait_for, write_raw_request

SAME_ID = "11111111-2222-3333-4444-555555555555"


def test_two_senders_with_one_msg_id_are_both_heard_by_server_and_follower(workspace):
    """Message ids are per sender (schema 5): a message of mallory's reusing the id of
    alice's must not keep alice's from the listeners, in the serving process or in a
    follower (whose journal entry must load alice's, not mallory's)."""
    ws = workspace(ALICE, BOB, MALLORY)
    bob = ws.client(BOB)
    follower = ws.client(BOB)  # same datasite and database: follows the first
    assert getattr(follower, "role", None) == "following"
    heard: dict[str, list[tuple[str, str]]] = {"serving": [], "following": []}
    lock = threading.Lock()

    def listener(name):
        def on(m):
            with lock:
                heard[name].append((m.sender, m.content))

        return on

    bob.add_message_listener(listener("serving"))
    follower.add_message_listener(listener("following"))
    decoy = envelope_body(MALLORY, BOB, "a decoy", msg_id=SAME_ID)
    assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=decoy))[0] == 200
    real = envelope_body(ALICE, BOB, "the real one", msg_id=SAME_ID)
    assert read_response(write_raw_request(ws, to=BOB, folder=ALICE, body=real))[0] == 200
    want = sorted([(MALLORY, "a decoy"), (ALICE, "the real one")])
    wait_for(lambda: sorted(heard["serving"]) == want, timeout=10)
    wait_for(lambda: sorted(heard["following"]) == want, timeout=10)


# --------------------------------------------------------------------------- the original database

_ORIGINAL_DDL = (
    "CREATE TABLE messages (id INTEGER NOT NULL PRIMARY KEY, msg_id VARCHAR, sender VARCHAR,"
    " content TEXT, timestamp DATETIME, thread_id VARCHAR, reply_to VARCHAR, meta_data TEXT)"
)


def _original_db(path, rows):
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as conn:
        conn.execute(_ORIGINAL_DDL)
        conn.executemany(
            "INSERT INTO messages (msg_id, sender, content, timestamp, meta_data)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        conn.commit()
    return path


def test_original_file_with_text_that_is_not_utf8_opens(tmp_path):
    """A row whose TEXT is not valid UTF-8 (written by another tool) must not make the
    whole history unopenable (it used to fail every open with "could not decode")."""
    import sqlite3
    from contextlib import closing

    from syft_chat.plugins.sqlite.store import SQLiteStore

    path = _original_db(
        tmp_path / "chat.db",
        [
            ("m1", BOB, "placeholder", "2024-05-01 09:00:00", "{}"),
            ("m2", ALICE, "fine", "2024-05-01 09:01:00", str({"recipient": BOB})),
        ],
    )
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "UPDATE messages SET content = CAST(x'6869ff21' AS TEXT),"
            " meta_data = CAST(x'7b276e6f7465273a202778ff277d' AS TEXT) WHERE msg_id = 'm1'"
        )
        conn.commit()
    store = SQLiteStore(path, owner=ALICE)
    try:
        got = store.get("m1", sender=BOB)
        assert got is not None and got.message.content == "hi\ufffd!"
        assert got.message.metadata == {"note": "x\ufffd"}
        assert store.get("m2", sender=ALICE).peer == BOB
    finally:
        store.close()


def test_a_giant_original_meta_data_is_not_parsed_as_a_python_literal():
    """``ast.parse`` of a 9 MB ``str(dict)`` took about 3 GB of memory and 11 s (a 12 MB one
    4.8 GB, 35 s): one such row could make the upgrade fail on every open (killed for
    memory). Beyond a bound the text is kept as it is, unread."""
    import time

    from syft_chat.plugins.sqlite.schema import LEGACY_META_KEY, legacy_metadata

    text = "{'recipient': 'bob', 'a': [" + "1, " * 3_000_000 + "]}"
    start = time.monotonic()
    assert legacy_metadata(text) == {LEGACY_META_KEY: text}
    assert time.monotonic() - start < 3
    big_json = '{"recipient": "bob", "a": [' + "1, " * 3_000_000 + "1]}"
    assert legacy_metadata(big_json)["recipient"] == "bob"  # JSON stays cheap and is read


def test_a_relative_db_path_survives_a_change_of_directory(workspace, tmp_path, monkeypatch):
    """The deleted/replaced check stats the path it was given: with a relative ``db_path``
    a later ``os.chdir`` (a notebook's ``%cd``) made the client think its database was
    deleted and stop storing and confirming for good."""
    ws = workspace(ALICE, BOB)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    alice = ws.client(ALICE)
    bob = ws.client(BOB, db_path="bob.db")
    assert alice.send_message(BOB, "one", timeout=10).status == "delivered"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert alice.send_message(BOB, "two", timeout=10).status == "delivered"
    assert [m.content for m in bob.get_chat_history(with_user=ALICE)] == ["one", "two"]
    assert bob.send_message(ALICE, "three", timeout=10).status == "delivered"
