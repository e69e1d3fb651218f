"""The command-bot helper (syft_chat.bots), the bot service (syft_chat.service) and the test kit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import syft_chat
from syft_chat import ChatMessage, hookimpl
from syft_chat.bots import CommandBot, command
from syft_chat.models import AUTO_REPLY_KEY, CLAIMED_AUTO_REPLY_KEY
from syft_chat.service import serve_forever
from syft_chat.testing import (
    ChatNetwork,
    default_emails,
    files_containing,
    local_network,
    register_plugin,
    wait_for,
)

ALICE, BOB = "alice@openmined.org", "bob@openmined.org"


class Calc(CommandBot):
    """Calculator bot."""

    @command
    def add(self, a: int, b: int = 1, *more: int) -> str:
        """Add whole numbers."""
        return str(a + b + sum(more))

    @command(name="say", aliases=("shout",))
    def say_it(self, loud: bool, *words: str) -> str:
        """Say WORDS, loudly or not."""
        text = " ".join(words)
        return text.upper() if loud else text

    @command
    def echo(self, text: str) -> str:
        """Repeat TEXT."""
        return text

    @command
    def whoami(self, message: ChatMessage) -> dict[str, object]:
        """Your email, with metadata."""
        return {"content": message.sender, "metadata": {"calc": True}}

    @command
    def crash(self) -> str:
        """Always fails."""
        raise RuntimeError("secret local detail")


def _msg(content: str, **kw: object) -> ChatMessage:
    return ChatMessage(sender=ALICE, content=content, **kw)


# ---------------------------------------------------------------- bots, unit


@pytest.mark.parametrize(
    ("content", "answer"),
    [
        ("/add 2", "3"),
        ("/add 2 3 4 5", "14"),
        ("  /add 2 3  ", "5"),
        ("/add two", "A must be a whole number, not 'two'. Usage: /add A [B] [MORE...]"),
        ("/add", "missing A. Usage: /add A [B] [MORE...]"),
        ("/say yes 'hello world' again", "HELLO WORLD AGAIN"),
        ("/shout no hi", "hi"),  # an alias
        ("/say maybe x", "LOUD must be yes or no, not 'maybe'. Usage: /say LOUD [WORDS...]"),
        (
            "/say yes 'open",
            "could not read the arguments (No closing quotation). Usage: /say LOUD [WORDS...]",
        ),
        ("/echo it's  raw\ntext", "it's  raw\ntext"),  # text is not shell-split
        ("/echo", None),  # an empty answer is no answer
        ("/ad 1", "unknown command /ad. Did you mean /add? Try /help."),
        ("/nothing-like-it", "unknown command /nothing-like-it. Try /help."),
        ("/crash", "sorry, /crash failed (RuntimeError)"),  # the error text is not sent
        ("hello there", None),  # not a command
        ("/", None),
        ("/ add", None),
    ],
)
def test_command_parsing_and_answers(content, answer):
    assert Calc().handle(_msg(content), client=None) == answer  # type: ignore[arg-type]


def test_help_is_generated_from_docstrings():
    bot = Calc()
    text = bot.handle(_msg("/help"), client=None)  # type: ignore[arg-type]
    assert text.splitlines()[0] == "Calculator bot."
    assert "  /add A [B] [MORE...] - Add whole numbers." in text
    assert "  /say LOUD [WORDS...] - Say WORDS, loudly or not. (also /shout)" in text
    assert "  /help [TEXT] - List the commands, or explain one: /help COMMAND." in text
    detail = bot.handle(_msg("/help /add"), client=None)  # type: ignore[arg-type]
    assert detail == "/add A [B] [MORE...]\nAdd whole numbers."
    assert "unknown command /nope" in bot.handle(_msg("/help nope"), None)  # type: ignore[arg-type]


def test_function_commands_prefix_and_default_handler():
    class Parrot(CommandBot):
        def default(self, message, client):
            return f"you said: {message.content}"

    bot = Parrot("parrot", prefix="!", description="A parrot.\nMore text.")

    @bot.command(aliases=("r",))
    def roll(sides: int = 6, *, client=None) -> str:
        """Roll a die."""
        return f"rolled a d{sides}"

    assert bot.handle(_msg("!roll 20"), None) == "rolled a d20"  # type: ignore[arg-type]
    assert bot.handle(_msg("!r"), None) == "rolled a d6"  # type: ignore[arg-type]
    assert bot.handle(_msg("hi"), None) == "you said: hi"  # type: ignore[arg-type]
    assert bot.handle(_msg("/roll"), None) == "you said: /roll"  # type: ignore[arg-type]
    assert bot.handle(_msg("!help"), None).startswith(  # type: ignore[arg-type, union-attr]
        "A parrot.\nCommands:\n  !help [TEXT]"
    )
    assert bot.__name__ == "parrot" and "roll" in repr(bot)
    with pytest.raises(ValueError, match="needs a default"):
        bot.add_command("bad", lambda *, n: n)
    with pytest.raises(ValueError, match="invalid command name"):
        bot.add_command("two words", lambda: "x")
    with pytest.raises(ValueError, match="prefix"):
        CommandBot(prefix="")


# ---------------------------------------------------------------- bots, end to end


def test_bot_answers_through_chat_reply_to_and_bots_do_not_loop(tmp_path):
    with local_network(tmp_path, 2, load_entry_points=False) as net:
        alice, bob = net[ALICE], net[BOB]
        with register_plugin(bob, Calc("calc")), register_plugin(alice, Calc("calc")):
            reply = net.ask(ALICE, BOB, "/add 40 2")
            assert reply.content == "42"
            # alice received bob's label as bob's claim (the label is alice's judgement)
            assert AUTO_REPLY_KEY not in reply.metadata
            assert reply.metadata[CLAIMED_AUTO_REPLY_KEY] == {"auto_reply": True, "bot": "calc"}
            meta = net.ask(ALICE, BOB, "/whoami")
            assert meta.content == ALICE and meta.metadata["calc"] is True
            # alice's bot sees bob's answer "/add 1" as an automatic reply: no loop
            assert net.ask(ALICE, BOB, "/echo /add 1").content == "/add 1"
            net.ask(ALICE, BOB, "/echo sync")
            assert [m.content for m in alice.get_chat_history()] == [
                "/add 40 2", "42", "/whoami", ALICE, "/echo /add 1", "/add 1", "/echo sync", "sync"
            ]  # fmt: skip
        assert "calc" not in bob.list_plugins()  # register_plugin unregistered it
        assert bob.plugin_failures == [] and alice.plugin_failures == []


# ---------------------------------------------------------------- test kit


def test_local_network_and_helpers(tmp_path):
    assert default_emails(2) == [ALICE, BOB]
    assert default_emails(8)[-1] == "user8@openmined.org"
    with pytest.raises(ValueError):
        default_emails(0)
    with local_network(tmp_path / "n", 3, start=False, load_entry_points=False) as net:
        assert isinstance(net, ChatNetwork) and net.clients == {}
        assert net.emails == default_emails(3)
        carol = net.start("carol@openmined.org")
        assert net.start("carol@openmined.org") is carol  # running: the same client
        assert carol.db_path == net.db_path("carol@openmined.org")
        assert (net.datasites / ALICE / "public").is_dir()
        net.start(ALICE).send_message("carol@openmined.org", "needle-in-the-haystack")
        assert net.db_path(ALICE).exists()
        assert files_containing(net.root / "dbs", b"needle-in-the-haystack")
        with pytest.raises(KeyError):
            net.start("nobody@example.org")
        with pytest.raises(ValueError):
            files_containing(net.root, b"")
    assert carol.closed  # every client closed on exit
    with pytest.raises(ValueError, match="duplicate"):
        ChatNetwork(tmp_path / "d", [ALICE, ALICE])

    def never_true() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"never_true not met within 0\.05s"):
        wait_for(never_true, timeout=0.05)
    assert wait_for(lambda: "value") == "value"


# ---------------------------------------------------------------- service, in process


def test_serve_forever_stops_on_the_event_and_closes_the_client(tmp_path, caplog):
    stop = threading.Event()
    with local_network(tmp_path, 2, load_entry_points=False) as net:
        bob = net[BOB]
        bob.register_plugin(Calc("calc"))
        caplog.set_level("INFO", logger="syft_chat.service")
        server = threading.Thread(
            target=serve_forever,
            args=(bob,),
            kwargs={"stop": stop, "install_signal_handlers": False},
        )
        server.start()
        wait_for(lambda: any("ready" in r.getMessage() for r in caplog.records))
        assert net.ask(ALICE, BOB, "/add 1 1").content == "2"
        stop.set()
        server.join(5)
        assert not server.is_alive()
        assert bob.closed
    ready = next(r.getMessage() for r in caplog.records if "ready" in r.getMessage())
    assert BOB in ready and "calc" in ready
    assert any("stopped" in r.getMessage() for r in caplog.records)


def test_serve_forever_off_the_main_thread_warns_instead_of_installing_handlers(tmp_path, caplog):
    with local_network(tmp_path, 1, load_entry_points=False) as net:
        client = net[ALICE]
        stop = threading.Event()
        stop.set()
        thread = threading.Thread(target=serve_forever, args=(client,), kwargs={"stop": stop})
        thread.start()
        thread.join(5)
        assert client.closed
    assert any("not on the main thread" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- service, as a process

BOT_MODULE = '''
from syft_chat.bots import CommandBot, command


class Pong(CommandBot):
    """Answers /ping."""

    @command
    def ping(self) -> str:
        """Say pong."""
        return "pong"


bot = Pong("pong-bot")
'''


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_service_process_serves_a_bot_and_stops_cleanly(tmp_path, sig):
    (tmp_path / "pong_bot.py").write_text(textwrap.dedent(BOT_MODULE))
    with local_network(tmp_path / "net", 2, start=False, load_entry_points=False) as net:
        env = dict(os.environ, PYTHONPATH=str(tmp_path), SYFT_CHAT_LOAD_PLUGINS="")
        db = net.db_path(BOB)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syft_chat.service",
                "--config",
                str(net.configs[BOB]),
                "--db",
                str(db),
                "--plugin",
                "pong_bot:bot",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stderr is not None
            lines = []
            deadline = time.monotonic() + 30
            while not any("ready" in line for line in lines) and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    break
                lines.append(line)
            assert any("ready" in line and "pong-bot" in line for line in lines), lines
            assert net.ask(ALICE, BOB, "/ping", timeout=10).content == "pong"
            proc.send_signal(sig)
            _, rest = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, "".join(lines) + rest
        assert "stopped" in rest and "Traceback" not in rest
        # closed cleanly: SQLite removed its write-ahead log, and the data is there
        assert not Path(f"{db}-wal").exists()
        with sqlite3.connect(db) as conn:
            contents = [row[0] for row in conn.execute("SELECT content FROM messages ORDER BY id")]
        assert contents == ["/ping", "pong"]


def test_service_command_line_reports_a_bad_config(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "syft_chat.service", "--config", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        env=dict(os.environ, SYFT_CHAT_LOAD_PLUGINS=""),
        timeout=60,
    )
    assert result.returncode == 1
    assert "could not load the SyftBox config" in result.stderr


def test_hookimpl_is_what_command_bots_use():
    # a CommandBot is an ordinary plugin: its chat_reply_to carries the hookimpl marker
    marker = getattr(CommandBot.chat_reply_to, "syft_chat_impl", None)
    assert marker is not None
    assert hookimpl  # re-exported for plugins that are not command bots
    assert syft_chat.hookimpl is hookimpl


# ---------------------------------------------------------------- the tutorial


def test_tutorial_code_is_the_echo_bot_that_lives_in_plugins():
    """The plugin guide's tutorial shows the real files of plugins/syft-chat-echo-bot."""
    plugins = Path(__file__).resolve().parent.parent / "plugins"
    guide = (plugins / "README.md").read_text()
    marker = "<!-- tutorial: "
    shown = guide.split(marker)[1:]
    assert len(shown) == 2
    for block in shown:
        name, _, rest = block.partition(" -->\n")
        code = rest.split("```", 2)[1].split("\n", 1)[1]  # drop the ```python line
        assert textwrap.dedent(code) == (plugins / name).read_text(), name
