"""``syft-chat search`` and ``syft-chat conversations``: the console script in a subprocess,
reading a database that real clients (alice and bob, in this process) wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ALICE, BOB, CAROL, wait_for

import syft_chat
from syft_chat.testing import make_workspace

_SCRIPT = shutil.which("syft-chat", path=str(Path(sys.executable).parent))
COMMAND = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "syft_chat"]
ANSI = "\x1b["


class Chat:
    """alice, bob and carol as real clients; ``run`` drives the CLI as alice."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.configs = make_workspace(tmp / "ws", [ALICE, BOB, CAROL])
        self.db = tmp / "alice.db"
        self.alice = syft_chat.client(self.configs[ALICE], db_path=self.db)
        self.bob = syft_chat.client(self.configs[BOB], db_path=tmp / "bob.db")
        self.carol = syft_chat.client(self.configs[CAROL], db_path=tmp / "carol.db")

    def run(self, *args: str, db: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYFT", "NO_COLOR"))}
        env.update(HOME=str(self.tmp / "home"), SYFT_CHAT_LOAD_PLUGINS="")
        return subprocess.run(
            [*COMMAND, "--config", str(self.configs[ALICE]), "--db", str(db or self.db), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def close(self) -> None:
        for client in (self.alice, self.bob, self.carol):
            client.close()


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Chat]:
    c = Chat(tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_search_prints_best_matches_with_highlighted_snippets(chat):
    first = chat.bob.send_message(ALICE, "the census dataset is ready, census v2 attached")
    chat.alice.send_message(BOB, "great, the census looks good", thread_id="census-42")
    chat.carol.send_message(ALICE, "lunch? no census talk please")
    chat.alice.send_message(BOB, "unrelated words")

    text = chat.ok("search", "census")
    lines = text.splitlines()
    assert len(lines) == 3 and ANSI not in text
    assert lines[0].endswith("lunch? no [census] talk please")  # newest first
    assert ANSI in chat.ok("--color", "search", "census")
    text = chat.ok("search", "census", "--order", "relevance")
    lines = text.splitlines()
    assert lines[0].endswith("the [census] dataset is ready, [census] v2 attached")  # best first
    assert first.message_id[:8] in lines[0]

    hits = chat.json("search", "census", "--order", "relevance")
    assert [set(h) for h in hits] == [{"message", "snippet", "rank"}] * 3
    assert hits[0]["message"]["msg_id"] == first.message_id
    assert hits[0]["snippet"] == "the [census] dataset is ready, [census] v2 attached"
    assert [h["rank"] for h in hits] == sorted(h["rank"] for h in hits)

    def contents(*args: str) -> list[str]:
        return [h["message"]["content"] for h in chat.json("search", *args)]

    assert len(contents("census", "--with", CAROL)) == 1
    assert contents("census", "--thread", "census-42") == ["great, the census looks good"]
    assert contents("census", "--since", "2999-01-01") == []
    assert len(contents("census", "--since", "1h", "--limit", "2")) == 2
    assert contents("census", "dataset") == [
        "the census dataset is ready, census v2 attached"
    ]  # every word must occur
    assert contents("cens*", "good") == ["great, the census looks good"]
    assert len(contents("--raw", "census NOT lunch")) == 2
    assert contents("--raw", '"census looks"') == ["great, the census looks good"]


def test_search_follows_edits_and_deletes(chat):
    sent = chat.alice.send_message(BOB, "draft budget numbers")
    assert len(chat.json("search", "budget")) == 1
    chat.alice.edit_message(sent.message_id, "final forecast numbers")
    assert chat.json("search", "budget") == []
    assert [h["message"]["msg_id"] for h in chat.json("search", "forecast")] == [sent.message_id]
    chat.alice.delete_message(sent.message_id)
    assert chat.json("search", "forecast") == [] and chat.json("search", "numbers") == []


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("--raw", '"unclosed'), "malformed search query"),
        (("--raw", "AND"), "malformed search query"),
        (("--raw", "NEAR("), "malformed search query"),
        (("*",), "no words to search for"),
    ],
)
def test_a_malformed_query_is_one_error_line(chat, args, expect):
    chat.alice.send_message(BOB, "something to search")
    result = chat.run("search", *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and expect in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_plain_queries_with_fts_syntax_are_searched_as_words(chat):
    chat.alice.send_message(BOB, 'AND "unclosed quote near the end')
    for words in (('"unclosed',), ("AND",), ("NEAR(",), ("near", "the", "end")):
        assert len(chat.json("search", *words)) == 1, words


def test_usage_errors_and_no_database(chat):
    assert chat.run("search").returncode == 2  # QUERY is required
    assert chat.run("search", "x", "--limit", "0").returncode == 2
    result = chat.run("search", "x", db=chat.tmp / "missing.db")
    assert result.returncode == 0 and "no messages yet" in result.stderr
    result = chat.run("conversations", "--json", db=chat.tmp / "missing.db")
    assert result.returncode == 0 and json.loads(result.stdout) == []


def test_conversations_lists_unread_counts_newest_first(chat):
    chat.bob.send_message(ALICE, "hi alice")
    chat.bob.send_message(ALICE, "are you there?")
    chat.alice.send_message(BOB, "yes!")
    chat.carol.send_message(ALICE, "lunch at noon? " + "very " * 20 + "hungry")

    lines = chat.ok("conversations").splitlines()
    assert len(lines) == 2
    assert CAROL in lines[0] and "1 unread" in lines[0] and "lunch at noon?" in lines[0]
    assert lines[0].endswith("…")  # long previews are cut
    assert BOB in lines[1] and "2 unread" in lines[1] and lines[1].endswith("you: yes!")

    convs = chat.json("conversations")
    assert [(c["conversation_id"], c["kind"], c["peer"], c["unread"]) for c in convs] == [
        (CAROL, "direct", CAROL, 1),
        (BOB, "direct", BOB, 2),
    ]
    assert convs[1]["last_message"]["content"] == "yes!"
    assert convs[0]["updated_at"].endswith("Z")

    assert chat.alice.mark_conversation_read(BOB) == 2
    wait_for(lambda: [c["unread"] for c in chat.json("conversations")] == [1, 0])
    assert "unread" not in chat.ok("conversations").splitlines()[1]
