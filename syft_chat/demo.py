"""``syft-chat demo``: a conversation between local datasites, nothing to configure.

Lays out a SyftBox workspace with alice, bob and carol in a temporary folder
(real request files, real watchers, real SQLite files), runs a short
conversation with a thread, replies and a bot, prints it, and removes the
folder (or keeps it and prints how to continue with the CLI).
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import threading
import time
from pathlib import Path

import click

from syft_chat.client import SyftChatClient
from syft_chat.display import format_messages, format_thread
from syft_chat.errors import SyftChatError
from syft_chat.hookspecs import hookimpl
from syft_chat.manager import make_plugin_manager
from syft_chat.models import ChatMessage, MessageStatus, claims_auto_reply
from syft_chat.testing import make_workspace

__all__ = ["ALICE", "BOB", "CAROL", "AwayBot", "installed_bots", "run_demo"]

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"
CAROL = "carol@openmined.org"
_WAIT = 10.0


class AwayBot:
    """The demo's stand-in bot (used when no bot plugin is installed): an away message."""

    @hookimpl
    def chat_reply_to(self, message: ChatMessage, client: SyftChatClient) -> str:
        name = message.sender.split("@")[0].capitalize()
        return (
            f"Hi {name}, {client.email.split('@')[0]} is away today. I saved your message "
            f"({len(message.content.split())} words) and will point to it tomorrow."
        )


def installed_bots() -> dict[str, object]:
    """The installed plugins implementing ``chat_reply_to``, by name (subject to the
    ``SYFT_CHAT_LOAD_PLUGINS`` / ``SYFT_CHAT_DISABLE_PLUGINS`` switches).

    Entry points are loaded once per process, so these are the very objects
    every client registers.
    """
    pm, _failures = make_plugin_manager()
    return {
        str(pm.get_name(impl.plugin) or impl.plugin_name): impl.plugin
        for impl in pm.hook.chat_reply_to.get_hookimpls()
    }


def _wait_delivered(client: SyftChatClient, peer: str, timeout: float = _WAIT) -> None:
    """Wait until ``client``'s messages to ``peer`` are confirmed (or failed)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pending = [
            m
            for m in client.get_chat_history(with_user=peer)
            if m.sender == client.email and m.status in (MessageStatus.QUEUED, MessageStatus.SENT)
        ]
        if not pending:
            return
        time.sleep(0.02)


def _step(text: str) -> None:
    click.echo(click.style(f"\n{text}", bold=True))


def _show(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"  {line}")


def _continue_hint(folder: Path, configs: dict[str, Path], dbs: dict[str, Path]) -> None:
    q = shlex.quote
    click.echo(f"\nKept the workspace in {folder}. Continue as alice with the CLI:")
    click.echo(f"  export SYFTBOX_CLIENT_CONFIG_PATH={q(str(configs[ALICE]))}")
    click.echo(f"  export SYFT_CHAT_DB={q(str(dbs[ALICE]))}")
    click.echo("  syft-chat history                 # alice's messages")
    click.echo("  syft-chat users                   # who serves chat here")
    click.echo("In another terminal, keep bob online so that he confirms what alice sends:")
    click.echo(f"  syft-chat --config {q(str(configs[BOB]))} --db {q(str(dbs[BOB]))} serve")
    click.echo("and back as alice:")
    click.echo(f'  syft-chat send {BOB} "Hello again"')
    click.echo("  syft-chat tail                    # follow alice's incoming messages")
    click.echo("A notebook next to it, as alice, on the same database, hears every message too:")
    click.echo(f"  syft_chat.client({str(configs[ALICE])!r}, db_path={str(dbs[ALICE])!r})")
    click.echo(f"Remove it when you are done: rm -rf {q(str(folder))}")


def run_demo(keep: bool = False, root: Path | None = None) -> Path:
    """Lay out a workspace with alice, bob and carol, let them talk, print the history.

    Every datasite loads the installed plugins (so that, say, an encryption
    plugin is on both ends), but only carol runs the bots: the installed ones
    (asked ``/help``), or the demo's :class:`AwayBot` if none is installed.
    Returns the workspace folder (deleted afterwards unless ``keep``).
    """
    folder = Path(root) if root else Path(tempfile.mkdtemp(prefix="syft-chat-demo-"))
    click.echo(f"Local SyftBox workspace: {folder}")
    configs = make_workspace(folder, [ALICE, BOB, CAROL])
    dbs = {email: folder / f"{email.split('@')[0]}.db" for email in configs}
    bots = installed_bots()
    click.echo(
        "datasites: alice, bob and carol; carol's bot: "
        + (", ".join(sorted(bots)) or "the demo's away-message bot (no bot plugin installed)")
    )
    bob_got = threading.Event()
    alice_got_bot = threading.Event()

    def bob_listener(message: ChatMessage) -> None:
        click.echo(f"  (bob's listener) new message from {message.sender}: {message.content!r}")
        bob_got.set()

    def alice_listener(message: ChatMessage) -> None:
        if claims_auto_reply(message):
            alice_got_bot.set()

    try:
        with (
            SyftChatClient(configs[ALICE], db_path=dbs[ALICE]) as alice,
            SyftChatClient(configs[BOB], db_path=dbs[BOB]) as bob,
            SyftChatClient(configs[CAROL], db_path=dbs[CAROL]) as carol,
        ):
            for human in (alice, bob):  # bots answer for carol only
                for plugin in bots.values():
                    human.unregister_plugin(plugin)
            if not bots:
                carol.register_plugin(AwayBot(), name="demo-away-bot")
            for failure in {str(f) for c in (alice, bob, carol) for f in c.plugin_failures}:
                click.echo(f"  (plugin failed: {failure})")
            bob.add_message_listener(bob_listener)
            alice.add_message_listener(alice_listener)
            click.echo(f"alice sees chat users: {', '.join(alice.list_available_users())}")

            _step("alice starts a conversation with bob; bob replies; alice replies to him")
            hello = alice.send_message(BOB, "Hi Bob! Shall we look at the census dataset?")
            click.echo(f"  alice -> bob: {hello.status} (id {hello.message_id})")
            bob_got.wait(_WAIT)
            answer = bob.send_message(ALICE, "Sure, tomorrow at 10?", reply_to=hello.message_id)
            alice.send_message(BOB, "Perfect, see you then.", reply_to=answer.message_id)

            _step("alice opens a named thread, 'keys', for another topic")
            keys = alice.send_message(BOB, "Did you get the new keys?", thread_id="keys")
            bob.send_message(ALICE, "Yes, rotated this morning.", reply_to=keys.message_id)

            _step("alice writes to carol, whose bot answers")
            question = "/help" if bots else "Carol, could you share the census schema?"
            alice.send_message(CAROL, question)
            if alice_got_bot.wait(_WAIT):
                _wait_delivered(carol, ALICE)  # let carol record alice's confirmation
            else:
                click.echo(f"  (no bot answer to {question!r} within {_WAIT:g} s)")

            _step("alice's history (read from her SQLite database)")
            _show(format_messages(alice.get_chat_history(), me=ALICE))
            _step("the thread started by alice's first message, as bob stored it")
            _show(format_thread(bob.get_chat_history(thread_id=hello.message_id), me=BOB))
    except SyftChatError as exc:
        click.echo(f"demo failed: {exc}", err=True)
        raise
    finally:
        if keep:
            _continue_hint(folder, configs, dbs)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return folder
