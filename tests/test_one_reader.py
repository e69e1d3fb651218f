"""One reader: every read-only command prints exactly what the matching API call returns.

Alice, bob and carol are real clients. They write one database (alice's) with one-to-one
messages both ways, a reply, a named thread, an edit, a deletion, reactions, a message
marked read and a group conversation with the same peers in it; then each read-only
command runs as the console script in a subprocess (``--json``) against that file while
alice's client still has it open, and its output is compared, field by field, with the
API call on the same database.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import ALICE, BOB, CAROL, wait_for

import syft_chat
from syft_chat.testing import isolate_plugins, make_workspace

_SCRIPT = shutil.which("syft-chat", path=str(Path(sys.executable).parent))
COMMAND = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "syft_chat"]


def _cli_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYFT", "NO_COLOR"))}
    env.update(HOME=str(tmp / "home"), SYFT_CHAT_LOAD_PLUGINS="")
    return env


def _run(tmp: Path, db: Path, *args: str, config: Path | None = None) -> Any:
    """``syft-chat [--config] --db DB ARGS... --json``, parsed."""
    head = [*COMMAND, *(["--config", str(config)] if config else []), "--db", str(db)]
    result = subprocess.run(
        [*head, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_cli_env(tmp),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclass
class World:
    tmp: Path
    config: Path
    db: Path
    alice: syft_chat.SyftChatClient
    ids: dict[str, str]
    group_id: str

    def cli(self, *args: str) -> Any:
        return _run(self.tmp, self.db, *args, config=self.config)

    def message(self, name: str) -> syft_chat.ChatMessage:
        found = self.alice.get_message(self.ids[name])
        assert found is not None
        return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("one_reader")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_plugins(monkeypatch)
        configs = make_workspace(tmp / "ws", [ALICE, BOB, CAROL])
        db = tmp / "alice.db"
        alice = syft_chat.client(configs[ALICE], db_path=db)
        bob = syft_chat.client(configs[BOB], db_path=tmp / "bob.db")
        carol = syft_chat.client(configs[CAROL], db_path=tmp / "carol.db")
        try:
            ids = _write_the_history(alice, bob, carol)
            group_id = ids.pop("group")
            bob.close()
            carol.close()
            yield World(tmp, configs[ALICE], db, alice, ids, group_id)
        finally:
            for client in (alice, bob, carol):
                client.close()


def _write_the_history(alice: Any, bob: Any, carol: Any) -> dict[str, str]:
    ids: dict[str, str] = {}
    ids["a1"] = alice.send_message(BOB, "the census data is ready").message_id
    ids["b1"] = bob.send_message(ALICE, "great census news", reply_to=ids["a1"]).message_id
    ids["a2"] = alice.send_message(BOB, "new keys for the census", thread_id="keys").message_id
    ids["b2"] = bob.send_message(ALICE, "got the keys", thread_id="keys").message_id
    ids["c1"] = carol.send_message(ALICE, "lunch? no census talk").message_id
    ids["a3"] = alice.send_message(BOB, "oops, census secrets").message_id

    group = alice.create_group("research", [BOB, CAROL])
    gid = ids["group"] = group.group_id
    for client in (alice, bob, carol):
        wait_for(lambda c=client: gid in {g.group_id for g in c.list_groups()}, timeout=20)
        wait_for(lambda c=client: len(c.get_group(gid).members) == 3, timeout=20)
    ids["gb"] = bob.send_to_group(gid, "group census from bob").message_id
    ids["gk"] = bob.send_to_group(gid, "the census keys, in the group", thread_id="keys").message_id
    wait_for(lambda: alice.get_message(ids["gb"]) is not None, timeout=20)
    wait_for(lambda: carol.get_message(ids["gb"]) is not None, timeout=20)
    ids["gc"] = carol.send_to_group(gid, "carol answers bob", reply_to=ids["gb"]).message_id
    ids["ga"] = alice.send_to_group(gid, "alice to everyone").message_id
    wait_for(lambda: carol.get_message(ids["ga"]) is not None, timeout=20)

    alice.edit_message(ids["a1"], "the census data is ready (v2)")
    alice.delete_message(ids["a3"])
    bob.react(ids["a1"], "👍")
    alice.react(ids["b1"], "🎉")
    carol.react(ids["ga"], "👀")
    alice.react(ids["gb"], "🔥")
    alice.mark_read(ids["b1"])

    def done() -> bool:
        history = {m.msg_id: m for m in alice.get_chat_history(limit=1000)}
        mine = [alice.get_message(ids[n]) for n in ("a1", "a2", "a3", "ga")]
        return (
            all(ids[n] in history for n in ("b1", "b2", "c1", "gb", "gk", "gc", "ga"))
            and history[ids["a1"]].reactions == {"👍": [BOB]}
            and history[ids["ga"]].reactions == {"👀": [CAROL]}
            and history[ids["gb"]].reactions == {"🔥": [ALICE]}
            and all(m is not None and m.status == "delivered" for m in mine)
            and not alice.pending_messages()
        )

    wait_for(done, timeout=30)  # nothing left to deliver: alice's file no longer changes
    return ids


# --------------------------------------------------------------------------- comparing


def _as_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value.model_dump(mode="json")


def _differences(cli: Any, api: Any, key: str = "msg_id") -> list[str]:
    """What differs between the command's JSON and the API's, per item and field."""
    if not isinstance(cli, list):
        cli, api = [cli], [api]

    def name(item: Any) -> str:
        inner = item.get("message", item)
        return str(inner.get(key) or inner.get("conversation_id"))

    out = []
    cli_names, api_names = [name(i) for i in cli], [name(i) for i in api]
    if cli_names != api_names:
        extra = [n for n in cli_names if n not in api_names]
        missing = [n for n in api_names if n not in cli_names]
        out.append(f"items differ: only in the CLI {extra}, only in the API {missing}")
        if not extra and not missing:
            out.append(f"order differs: CLI {cli_names}, API {api_names}")
    api_by_name = dict(zip(api_names, api, strict=True))
    for n, item in zip(cli_names, cli, strict=True):
        if n not in api_by_name:
            continue
        expected = api_by_name[n]
        flat_cli, flat_api = _flatten(item), _flatten(expected)
        for field in sorted(set(flat_cli) | set(flat_api)):
            if flat_cli.get(field, "<absent>") != flat_api.get(field, "<absent>"):
                out.append(
                    f"{n[:8]} {field}: CLI {flat_cli.get(field, '<absent>')!r},"
                    f" API {flat_api.get(field, '<absent>')!r}"
                )
    return out


def _flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in item.items():
        if isinstance(v, dict) and k in ("message", "last_message"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _since(w: World) -> str:
    return w.message("b2").timestamp.isoformat()


#: (case, command arguments, the API call): every read-only command and its filters
CASES: list[tuple[str, Callable[[World], list[str]], Callable[[World], Any]]] = [
    ("history", lambda w: ["history"], lambda w: w.alice.get_chat_history()),
    (
        "history --with bob",
        lambda w: ["history", "--with", BOB],
        lambda w: w.alice.get_chat_history(with_user=BOB),
    ),
    (
        "history --with carol",
        lambda w: ["history", "--with", CAROL],
        lambda w: w.alice.get_chat_history(with_user=CAROL),
    ),
    (
        "history --with group:ID",
        lambda w: ["history", "--with", f"group:{w.group_id}"],
        lambda w: w.alice.get_chat_history(group_id=w.group_id),
    ),
    (
        "history --thread keys",
        lambda w: ["history", "--thread", "keys"],
        lambda w: w.alice.get_chat_history(thread_id="keys"),
    ),
    (
        "history --with bob --thread keys",
        lambda w: ["history", "--with", BOB, "--thread", "keys"],
        lambda w: w.alice.get_chat_history(with_user=BOB, thread_id="keys"),
    ),
    (
        "history --since",
        lambda w: ["history", "--since", _since(w)],
        lambda w: w.alice.get_chat_history(since=w.message("b2").timestamp),
    ),
    (
        "history --limit 3",
        lambda w: ["history", "--limit", "3"],
        lambda w: w.alice.get_chat_history(limit=3),
    ),
    (
        "history --with bob --since --limit 2",
        lambda w: ["history", "--with", BOB, "--since", _since(w), "-n", "2"],
        lambda w: w.alice.get_chat_history(with_user=BOB, since=w.message("b2").timestamp, limit=2),
    ),
    (
        "thread PREFIX",
        lambda w: ["thread", w.ids["a1"][:8]],
        lambda w: w.alice.get_chat_history(thread_id=w.message("a1").thread_id, limit=1000),
    ),
    (
        "thread REPLY_ID",
        lambda w: ["thread", w.ids["b1"]],
        lambda w: w.alice.get_chat_history(thread_id=w.message("b1").thread_id, limit=1000),
    ),
    (
        "thread keys",
        lambda w: ["thread", "keys"],
        lambda w: w.alice.get_chat_history(thread_id="keys", limit=1000),
    ),
    (
        "thread GROUP_MESSAGE",
        lambda w: ["thread", w.ids["gb"]],
        lambda w: w.alice.get_chat_history(thread_id=w.message("gb").thread_id, limit=1000),
    ),
    (
        "status",
        lambda w: ["status", w.ids["a1"][:8]],
        lambda w: w.alice.get_message(w.ids["a1"]),
    ),
    (
        "status GROUP_MESSAGE",
        lambda w: ["status", w.ids["gc"]],
        lambda w: w.alice.get_message(w.ids["gc"]),
    ),
    ("search", lambda w: ["search", "census"], lambda w: w.alice.search("census")),
    (
        "search --with bob",
        lambda w: ["search", "census", "--with", BOB],
        lambda w: w.alice.search("census", with_user=BOB),
    ),
    (
        "search --with group:ID",
        lambda w: ["search", "census", "--with", f"group:{w.group_id}"],
        lambda w: w.alice.search("census", conversation=f"group:{w.group_id}"),
    ),
    (
        "search --thread keys",
        lambda w: ["search", "census", "--thread", "keys"],
        lambda w: w.alice.search("census", thread_id="keys"),
    ),
    (
        "search --since --limit 2",
        lambda w: ["search", "census", "--since", _since(w), "-n", "2"],
        lambda w: w.alice.search("census", since=w.message("b2").timestamp, limit=2),
    ),
    (
        "search --raw",
        lambda w: ["search", "--raw", "census NOT keys"],
        lambda w: w.alice.search("census NOT keys", raw=True),
    ),
    ("conversations", lambda w: ["conversations"], lambda w: w.alice.list_conversations()),
]


@pytest.mark.parametrize(("case", "command", "call"), CASES, ids=[c[0] for c in CASES])
def test_the_command_prints_what_the_api_returns(
    world: World, case: str, command: Callable[[World], list[str]], call: Callable[[World], Any]
) -> None:
    api = _as_json(call(world))
    cli = world.cli(*command(world))
    if case.startswith("status"):  # status adds the delivery bookkeeping to the message
        assert set(cli) - set(api) == {"direction", "updated_at"}
        cli = {k: v for k, v in cli.items() if k in api}
    problems = _differences(cli, api)
    assert not problems, f"{case}:\n" + "\n".join(problems)
    assert cli == api


def test_the_cases_see_every_kind_of_row(world: World) -> None:
    """The database holds what the comparisons are meant to cover."""
    everything = world.alice.get_chat_history(limit=1000)
    assert {m.msg_id for m in everything} == set(world.ids.values())
    by_id = {m.msg_id: m for m in everything}
    assert by_id[world.ids["a1"]].edited_at is not None and by_id[world.ids["a1"]].reactions
    assert by_id[world.ids["a3"]].deleted
    assert by_id[world.ids["gb"]].group_id == world.group_id
    assert by_id[world.ids["gb"]].sender == BOB  # the group shares a peer with a one-to-one
    assert by_id[world.ids["gk"]].thread_id == "keys"
    # and the filters do filter: the group's messages are not bob's one-to-one conversation
    assert world.ids["gb"] not in {m.msg_id for m in world.alice.get_chat_history(with_user=BOB)}
    kinds = {c.kind for c in world.alice.list_conversations()}
    assert kinds == {"direct", "group"}


# --------------------------------------------------------------------------- older files


def _write_old_file(path: Path, version: int) -> None:
    """A file as syft-chat wrote it at schema ``version`` (1 or 2): no kinds, conversations
    or reactions (and at 1, no sequence numbers)."""
    import peewee as pw

    from syft_chat.plugins.sqlite.schema import MIGRATIONS

    db = pw.SqliteDatabase(str(path))
    db.connect()
    for migration in MIGRATIONS[:version]:
        migration(db, ALICE)
    db.execute_sql("INSERT INTO schema_version (id, version) VALUES (1, ?)", (version,))
    rows = [
        ("m1", ALICE, BOB, BOB, "hi bob", "2025-06-02 08:00:00.000000+00:00", "m1", None, "out"),
        ("m2", BOB, ALICE, BOB, "hi alice", "2025-06-02 08:01:00.000000+00:00", "m1", "m1", "in"),
        ("m3", CAROL, ALICE, CAROL, "hi", "2025-06-02 08:02:00.000000+00:00", "m3", None, "in"),
    ]
    for msg_id, sender, recipient, peer, content, ts, thread, reply, direction in rows:
        db.execute_sql(
            "INSERT INTO messages (msg_id, sender, recipient, peer, content, timestamp,"
            " thread_id, reply_to, direction, status, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                msg_id,
                sender,
                recipient,
                peer,
                content,
                ts,
                thread,
                reply,
                direction,
                "delivered" if direction == "out" else "received",
                ts,
            ),
        )
    db.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_file_is_read_as_it_is_and_as_the_store_reads_it_migrated(tmp_path, version):
    """A schema-1 or -2 file is read without being migrated (the file does not change),
    and the commands print what the store returns from a migrated copy of it."""
    from syft_chat.features.views import history_query
    from syft_chat.plugins.sqlite.store import SQLiteStore

    def store_history(**kwargs: Any) -> list[Any]:
        return [r.message for r in store.find(history_query(**kwargs))]

    old = tmp_path / "old.db"
    _write_old_file(old, version)
    before = hashlib.sha256(old.read_bytes()).hexdigest()
    migrated = tmp_path / "migrated.db"
    shutil.copy(old, migrated)
    store = SQLiteStore(migrated, owner=ALICE)
    try:
        for args, kwargs in (
            ((), {}),
            (("--with", BOB), {"conversation": BOB}),
            (("--with", CAROL), {"conversation": CAROL}),
            (("--thread", "m1"), {"thread_id": "m1"}),
            (("-n", "1"), {"limit": 1}),
        ):
            cli = _run(tmp_path, old, "history", *args)
            expected = _as_json(store_history(**{"limit": 50, **kwargs}))
            assert not _differences(cli, expected), (args, _differences(cli, expected))
        assert _run(tmp_path, old, "thread", "m2") == _as_json(
            store_history(thread_id="m1", limit=1000)
        )
        status = _run(tmp_path, old, "status", "m2")
        assert {k: v for k, v in status.items() if k not in ("direction", "updated_at")} == (
            _as_json(store.get("m2").message)
        )
    finally:
        store.close()
    assert hashlib.sha256(old.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("old")) == ["old.db"]
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(version,)]
    finally:
        conn.close()
