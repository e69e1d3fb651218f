"""Every CLI output, text or ``--json``, escapes what a peer controls: terminal escapes,
C1 controls, bidi overrides and isolates never reach the terminal raw."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from support import ALICE, BOB, envelope_body, read_response, write_raw_request
from test_cli import CLI

import syft_chat

#: retitles the terminal, a C1 CSI (red), a right-to-left override, an isolate, C1 NEL
HOSTILE = "\x1b]0;pwned\x07\x9b31m\u202eevil\u2066\x85"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\x85")


class _Endpoints:
    """Enough of support.Workspace for write_raw_request, over the CLI's workspace."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def endpoint(self, email: str, app: str = "syft_chat") -> Path:
        return self.root / "datasites" / email / "app_data" / app / "rpc" / "chat"


@pytest.fixture
def hostile(tmp_path):
    """Alice's database holds a message from bob whose thread id and text are hostile."""
    cli = CLI(tmp_path)
    alice = syft_chat.client(cli.configs[ALICE], db_path=cli.db)
    try:
        msg_id = str(uuid.uuid4())
        body = envelope_body(
            BOB, ALICE, f"hello {HOSTILE}", msg_id=msg_id, thread_id=f"t{HOSTILE}", seq=1
        )
        path = write_raw_request(_Endpoints(tmp_path / "ws"), to=ALICE, folder=BOB, body=body)
        assert read_response(path)[0] == 200
    finally:
        alice.close()
    # a datasite folder with a hostile name that publishes the chat endpoint
    (tmp_path / "ws" / "datasites" / f"x{HOSTILE}@evil.org" / "app_data" / "syft_chat" / "rpc"
     / "chat").mkdir(parents=True)  # fmt: skip
    try:
        yield cli, msg_id
    finally:
        cli.bob.close()


def _clean(text: str) -> None:
    for char in RAW:
        assert char not in text, f"raw {char!r} in output: {text!r}"


def test_text_output_escapes_peer_strings(hostile):
    cli, msg_id = hostile
    for args in (
        ("thread", msg_id),  # the footer names the (hostile) thread id
        ("history",),
        ("status", msg_id),
        ("conversations",),
        ("search", "hello"),
        ("users",),
        ("contacts",),
    ):
        result = cli.run(*args)
        assert result.returncode == 0, result.stderr
        _clean(result.stdout)
        _clean(result.stderr)
    assert "\\x1b" in cli.run("thread", msg_id).stderr  # shown, escaped


def test_json_output_escapes_c1_and_bidi_but_keeps_the_value(hostile):
    cli, msg_id = hostile
    for args in (
        ("history", "--json"),
        ("thread", "--json", msg_id),
        ("status", "--json", msg_id),
        ("conversations", "--json"),
        ("search", "--json", "hello"),
        ("users", "--json"),
    ):
        result = cli.run(*args)
        assert result.returncode == 0, result.stderr
        _clean(result.stdout)
        json.loads(result.stdout)  # still JSON
    [message] = json.loads(cli.ok("history", "--json"))
    assert message["thread_id"] == f"t{HOSTILE}" and message["content"] == f"hello {HOSTILE}"
