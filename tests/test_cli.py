"""The ``syft-chat`` command line, driven as a user drives it: the console script in a
subprocess against a temporary workspace, with bob a real client in this process.

Also the pieces the CLI is built from (``--since`` parsing, terminal and HTML rendering).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import pytest
from support import ALICE, BOB

import syft_chat
from syft_chat.cli import main as cli_main
from syft_chat.cli import parse_since
from syft_chat.display import (
    ChatHistory,
    Symbols,
    format_messages,
    format_thread,
    history_html,
    message_html,
)
from syft_chat.models import AUTO_REPLY_KEY, ChatMessage, MessageStatus
from syft_chat.testing import make_workspace

_SCRIPT = shutil.which("syft-chat", path=str(Path(sys.executable).parent))
COMMAND = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "syft_chat"]
ANSI = "\x1b["


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYFT", "NO_COLOR"))}
    env.update(
        HOME=str(tmp_path / "home"),  # never the real ~/.syftbox or ~/.syft-chat
        PYTHONUNBUFFERED="1",
        SYFT_CHAT_LOAD_PLUGINS="",
    )
    env.update(extra)
    return env


class CLI:
    """Runs ``syft-chat`` as alice, in a workspace where bob is a real client."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.configs = make_workspace(tmp_path / "ws", [ALICE, BOB])
        self.db = tmp_path / "alice.db"
        self.bob = syft_chat.client(self.configs[BOB], db_path=tmp_path / "bob.db")

    def args(self, *args: str) -> list[str]:
        return [*COMMAND, "--config", str(self.configs[ALICE]), "--db", str(self.db), *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(*args),
            capture_output=True,
            text=True,
            timeout=60,
            env=env or _env(self.tmp),
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def send(self, *args: str) -> str:
        """``send --json ...``; returns the message id."""
        return str(json.loads(self.ok("send", "--json", *args))["message_id"])

    def start(self, *args: str) -> Child:
        return Child(self.args(*args), _env(self.tmp))


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    c = CLI(tmp_path)
    try:
        yield c
    finally:
        c.bob.close()


class Lines:
    """Lines of a child's stream, read on a thread so that a test can wait with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for line in self.stream:
            self.queue.put(line)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"{text!r} not seen; got {self.seen}") from None
            self.seen.append(line)
            if text in line:
                return line

    def rest(self) -> str:
        """Everything seen and still queued (call after the child exited)."""
        while not self.queue.empty():
            self.seen.append(self.queue.get_nowait())
        return "".join(self.seen)

    def close(self) -> None:
        self.thread.join(10)  # the child exited: the pump reaches EOF
        self.stream.close()


class Child:
    """A running ``syft-chat`` command, stopped with a signal."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out, self.err = Lines(self.proc.stdout), Lines(self.proc.stderr)

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.out.close()
            self.err.close()


# --------------------------------------------------------------------------- commands


def test_send_then_history_as_text_and_json(cli):
    out = cli.ok("send", BOB, "Hello", "from", "the", "CLI")
    assert "delivered" in out and BOB in out
    msg_id = re.search(r"id ([0-9a-f-]{36})", out).group(1)
    assert cli.bob.get_message(msg_id).content == "Hello from the CLI"  # bob stored it

    text = cli.ok("history", "--with", BOB)
    assert "Hello from the CLI" in text and "delivered" in text and msg_id[:8] in text
    assert ANSI not in text  # plain when piped

    history = json.loads(cli.ok("history", "--json", "--since", "1h", "--limit", "5"))
    assert [(m["msg_id"], m["sender"], m["recipient"], m["status"]) for m in history] == [
        (msg_id, ALICE, BOB, "delivered")
    ]
    assert json.loads(cli.ok("history", "--json", "--since", "2999-01-01")) == []
    assert ANSI in cli.ok("--color", "history")


def test_send_reads_stdin_and_env_vars_replace_options(cli):
    env = _env(
        cli.tmp, SYFTBOX_CLIENT_CONFIG_PATH=str(cli.configs[ALICE]), SYFT_CHAT_DB=str(cli.db)
    )
    result = subprocess.run(
        [*COMMAND, "send", "--json", BOB, "-"],
        input="a message\nover two lines\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    msg_id = json.loads(result.stdout)["message_id"]
    assert cli.bob.get_message(msg_id).content == "a message\nover two lines"


def test_thread_and_status(cli):
    first = cli.send(BOB, "Shall we look at the census dataset?")
    reply = cli.send("--reply-to", first[:8], BOB, "Also the 2020 tables")  # a prefix will do
    named = cli.send("--thread", "keys", BOB, "Did you get the new keys?")

    tree = cli.ok("thread", first[:6]).splitlines()
    assert len(tree) == 2
    assert "census" in tree[0] and "2020 tables" in tree[1]
    assert re.search(r"(└─|`-) Also the 2020 tables", tree[1])  # nested under its parent
    thread = json.loads(cli.ok("thread", "--json", first))
    assert [m["msg_id"] for m in thread] == [first, reply]
    assert thread[1]["reply_to"] == first and thread[1]["thread_id"] == first
    assert [m["msg_id"] for m in json.loads(cli.ok("thread", "--json", "keys"))] == [named]
    assert len(json.loads(cli.ok("thread", "--json", reply))) == 2  # a message's id: its thread

    status = json.loads(cli.ok("status", "--json", reply[:10]))
    assert status["msg_id"] == reply
    assert (status["status"], status["direction"], status["error"]) == ("delivered", "out", None)
    text = cli.ok("status", reply)
    assert re.search(r"status\s+delivered", text) and "2020 tables" in text

    missing = cli.run("status", "0000-no-such-message")
    assert missing.returncode == 1 and "no message" in missing.stderr


def test_users(cli):
    assert json.loads(cli.ok("users", "--json")) == [BOB]
    assert cli.ok("users").split() == [BOB]


def test_tail_prints_an_incoming_message_and_stops_on_sigint(cli):
    child = cli.start("tail", "--json")
    try:
        child.err.wait_for("listening")
        response = cli.bob.send_message(ALICE, "ping <b>from</b> bob", timeout=15)
        assert response.status == "delivered"
        line = json.loads(child.out.wait_for("ping"))
        assert (line["sender"], line["content"]) == (BOB, "ping <b>from</b> bob")
        assert line["msg_id"] == response.message_id
    finally:
        code = child.stop(signal.SIGINT)
    assert code == 0


def test_listen_alias_prints_readable_lines(cli):
    child = cli.start("listen", "--with", BOB)
    try:
        child.err.wait_for("listening")
        cli.bob.send_message(ALICE, "hello there", timeout=15)
        line = child.out.wait_for("hello there")
        assert BOB in line and ALICE in line
    finally:
        code = child.stop(signal.SIGINT)
    assert code == 0


def test_serve_answers_until_sigterm(cli):
    child = cli.start("serve")
    try:
        child.err.wait_for("serving syft-chat for " + ALICE)
        response = cli.bob.send_message(ALICE, "are you there?", timeout=15)
        assert response.status == "delivered"
        child.out.wait_for("are you there?")
    finally:
        code = child.stop(signal.SIGTERM)
    assert code == 0
    assert "stopped" in child.err.rest()
    history = json.loads(cli.ok("history", "--json", "--with", BOB))
    assert [(m["content"], m["status"]) for m in history] == [("are you there?", "received")]


def test_plugins_and_hooks(cli):
    report = json.loads(cli.ok("plugins", "--json"))
    names = {p["name"]: p for p in report["plugins"]}
    assert names["syft_chat.plugins.syft_rpc.transport"]["hooks"] == ["chat_register_transports"]
    assert report["failed"] == [] and report["interpreter"]
    assert "chat_reply_to" in cli.ok("hooks")


def test_demo_keep_prints_how_to_continue_with_the_cli(tmp_path):
    env = _env(tmp_path, TMPDIR=str(tmp_path))
    result = subprocess.run(
        [*COMMAND, "demo", "--keep"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "carol@openmined.org" in out and "[bot?]" in out  # carol says her bot answered
    exports = dict(
        line.strip().removeprefix("export ").split("=", 1)
        for line in out.splitlines()
        if line.strip().startswith("export ")
    )
    env.update({k: shlex.split(v)[0] for k, v in exports.items()})
    history = subprocess.run(
        [*COMMAND, "history", "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert history.returncode == 0, history.stderr
    contents = [m["content"] for m in json.loads(history.stdout)]
    assert "Hi Bob! Shall we look at the census dataset?" in contents


# --------------------------------------------------------------------------- error paths


def test_no_config_exits_2_and_says_how_to_fix(tmp_path):
    (tmp_path / "home").mkdir()
    for args in (["history"], ["send", BOB, "hi"], ["users"]):
        result = subprocess.run(
            [*COMMAND, *args], capture_output=True, text=True, timeout=60, env=_env(tmp_path)
        )
        assert result.returncode == 2, result.stderr
        err = result.stderr
        assert "no SyftBox config found" in err and ".syftbox/config.json" in err
        assert "--config" in err and "SYFTBOX_CLIENT_CONFIG_PATH" in err
        assert "Traceback" not in err and result.stdout == ""
    missing = subprocess.run(
        [*COMMAND, "--config", str(tmp_path / "nope.json"), "users"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path),
    )
    assert missing.returncode == 2 and "nope.json" in missing.stderr


def test_unknown_recipient(cli):
    result = cli.run("send", "nobody@openmined.org", "hello?")
    assert result.returncode == 1
    assert "nobody@openmined.org does not serve syft-chat" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreadable_database(cli):
    garbage = cli.tmp / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 64)
    for args in (["history"], ["status", "abc"], ["send", BOB, "hi"]):
        result = subprocess.run(
            [*COMMAND, "--config", str(cli.configs[ALICE]), "--db", str(garbage), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(cli.tmp),
        )
        assert result.returncode == 1, args
        assert "garbage.db" in result.stderr and "not a database" in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_since_is_a_usage_error(cli):
    result = cli.run("history", "--since", "last tuesday")
    assert result.returncode == 2 and "--since" in result.stderr


# --------------------------------------------------------------------------- building blocks


def test_parse_since():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_since("90m", now=now) == now - timedelta(minutes=90)
    assert parse_since("2d", now=now) == now - timedelta(days=2)
    assert parse_since("1w", now=now) == now - timedelta(weeks=1)
    assert parse_since("2024-04-30T10:00:00Z") == datetime(2024, 4, 30, 10, tzinfo=timezone.utc)
    assert parse_since("2024-04-30T12:00+02:00") == datetime(2024, 4, 30, 10, tzinfo=timezone.utc)
    naive = parse_since("2024-04-30 10:00")  # local time
    assert naive == datetime(2024, 4, 30, 10).astimezone().astimezone(timezone.utc)
    assert parse_since("today") <= datetime.now(timezone.utc)
    with pytest.raises(ValueError):
        parse_since("soon")


def _msg(content: str, **kw: Any) -> ChatMessage:
    kw.setdefault("sender", ALICE)
    kw.setdefault("recipient", BOB)
    return ChatMessage(content=content, **kw)


def test_html_escapes_all_user_content():
    evil = "<script>alert(1)</script>"
    msg = _msg(
        evil,
        sender='x"><img src=x onerror=alert(2)>@evil.org',
        metadata={"note": "<b>bold</b>", "<k>": 1},
        thread_id="<t>",
        reply_to="<r>",
    )
    for out in (message_html(msg), history_html([msg]), ChatHistory([msg])._repr_html_()):
        assert "<script>" not in out and "<img" not in out and "<b>bold" not in out
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
        assert "&lt;img src=x onerror=alert(2)&gt;" in out and "&lt;b&gt;bold" in out
        assert "<t>" not in out and "<r>" not in out and "<k>" not in out


def test_history_html_renders_a_conversation():
    first = _msg("Hi Bob!\nsecond line", status=MessageStatus.DELIVERED)
    answer = _msg(
        "Sure",
        sender=BOB,
        recipient=ALICE,
        reply_to=first.msg_id,
        thread_id=first.msg_id,
        metadata={AUTO_REPLY_KEY: True},
    )
    history = ChatHistory([first, answer], me=ALICE)
    assert isinstance(history, list) and history[0] is first
    assert isinstance(history[1:], ChatHistory) and history[1:].me == ALICE
    out = history._repr_html_()
    assert out.count('class="syft-chat-message"') == 2 and "2 messages" in out
    assert "delivered" in out and "reply to" in out and "bot" in out
    assert "white-space: pre-wrap" in out  # line breaks kept
    assert "no messages" in history_html([])


def test_terminal_lines_are_aligned_and_threads_nest():
    first = _msg("first", status=MessageStatus.DELIVERED)
    reply = _msg(
        "second\nthird", sender=BOB, recipient=ALICE, reply_to=first.msg_id, thread_id=first.msg_id
    )
    ascii_ = Symbols(unicode=False)
    lines = [
        re.sub(r"\x1b\[[0-9;]*m", "", line)
        for line in format_messages([first, reply], symbols=ascii_)
    ]
    assert lines[0].index("first") == lines[1].index(f"re: {first.msg_id[:8]}")
    assert lines[2].strip() == "third" and lines[2].index("third") == lines[1].index("re:")
    tree = [
        re.sub(r"\x1b\[[0-9;]*m", "", line)
        for line in format_thread([reply, first][::-1], symbols=ascii_)
    ]
    assert "`- second" in tree[1]


def test_contact_policy_from_the_command_line(tmp_path):
    import json as _json

    from syft_chat.testing import make_workspace

    configs = make_workspace(tmp_path / "ws", ["alice@openmined.org", "bob@openmined.org"])
    env = {**os.environ, "SYFT_CHAT_LOAD_PLUGINS": "", "SYFT_CHAT_DB": str(tmp_path / "b.db")}
    base = [sys.executable, "-m", "syft_chat", "--config", str(configs["bob@openmined.org"])]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env, timeout=60)

    blocked = run("block", "mallory@evil.org", "--json")
    assert blocked.returncode == 0, blocked.stderr
    assert _json.loads(blocked.stdout)["blocked"] == ["mallory@evil.org"]
    run("allow", "alice@openmined.org")
    shown = _json.loads(run("contacts", "--mode", "contacts_only", "--json").stdout)
    assert shown == {
        "mode": "contacts_only",
        "allowed": ["alice@openmined.org"],
        "blocked": ["mallory@evil.org"],
    }
    perms = (
        tmp_path
        / "ws"
        / "datasites"
        / "bob@openmined.org"
        / "app_data"
        / "syft_chat"
        / "rpc"
        / "syftperm.yaml"
    ).read_text()
    assert "mallory@evil.org" in perms and "disallow" in perms
    assert run("unblock", "mallory@evil.org").returncode == 0
    assert run("block", "not-an-email").returncode == 1


def test_the_command_line_does_not_print_watchdogs_benign_warning(capsys: Any) -> None:
    """watchdog warns, harmlessly, when a peer's folder appears during its own walk; a
    ``syft-chat`` user is not shown it (any other warning still shows)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert cli_main(["--help"]) == 0
        noise = "Callback with id '7' already exists for watch <w>. It will be Overwritten."
        warnings.warn(noise, RuntimeWarning, stacklevel=1)
        warnings.warn("something else", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]
    assert "Usage" in capsys.readouterr().out
