"""The commands that talk to other datasites and so start a
:class:`~syft_chat.SyftChatClient`: ``send``, ``users``, ``contacts``, ``block``,
``unblock``, ``allow``, ``tail`` (alias ``listen``) and ``serve``.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import click

from syft_chat.cli.env import Env, _json_option, pass_env
from syft_chat.client import SyftChatClient
from syft_chat.display import attachment_line, printable
from syft_chat.features.contacts import ContactPolicy
from syft_chat.hookspecs import hookimpl
from syft_chat.models import ChatMessage, MessageStatus
from syft_chat.service import stop_requested_at_start

__all__ = [
    "allow",
    "block",
    "contacts",
    "run_service",
    "send",
    "serve",
    "tail",
    "unblock",
    "users",
    "wait_for_stop",
]


# --------------------------------------------------------------------------- sending


def _read_message(words: tuple[str, ...]) -> str:
    if words and words != ("-",):
        return " ".join(words)
    if not words and sys.stdin.isatty():
        raise click.UsageError("give the message text, or - to read it from stdin")
    return sys.stdin.read().rstrip("\n")


#: ``send``'s exit code for a message stored and handed over, but not confirmed in time
UNCONFIRMED_EXIT = 3
#: seconds ``send`` waits for the confirmation unless ``--timeout`` says otherwise
SEND_TIMEOUT = 15.0


def _wait_for_confirmation(
    env: Env, client: SyftChatClient, msg_id: str, to: str, timeout: float
) -> None:
    """Wait up to ``timeout`` s for the confirmation (or a refusal, raised), in short slices,
    showing a progress line on stderr when it is a terminal."""
    from syft_chat.errors import DeliveryTimeoutError

    progress = sys.stderr.isatty()
    shown = printable(to, one_line=True)
    start = time.monotonic()
    try:
        while True:
            waited = time.monotonic() - start
            left = timeout - waited
            if progress:
                line = f"waiting for {shown} to confirm... {waited:.0f}s of {timeout:g}s"
                click.echo(
                    f"\r{click.style(line, dim=True)}\x1b[K", nl=False, err=True, color=env.color
                )
            if left <= 0:
                return
            try:
                client.wait_for_delivery(msg_id, timeout=min(1.0, left))
                return
            except DeliveryTimeoutError:
                continue
    finally:
        if progress:
            click.echo("\r\x1b[K", nl=False, err=True)


@click.command()
@click.argument("to", metavar="EMAIL")
@click.argument("message", nargs=-1, metavar="MESSAGE...")
@click.option("--thread", "thread_id", metavar="ID", help="Post in this thread.")
@click.option(
    "--reply-to", metavar="MSG_ID", help="Reply to this message (an id or a unique prefix)."
)
@click.option(
    "--attach",
    "attach",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, readable=True),
    metavar="FILE",
    help="Share FILE with the message (repeatable); readable by the recipient only.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=SEND_TIMEOUT,
    help=f"How long to wait for the confirmation [default: {SEND_TIMEOUT:g}; 0: do not wait].",
)
@_json_option
@pass_env
def send(
    env: Env,
    to: str,
    message: tuple[str, ...],
    thread_id: str | None,
    reply_to: str | None,
    attach: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Send MESSAGE to EMAIL and wait for the recipient's confirmation.

    The words of MESSAGE are joined with spaces; - (or nothing, when piped)
    reads it from stdin. Exit code 0 once the recipient confirmed it stored
    the message; 3 if it did not confirm within the timeout (the message
    stays stored with status 'sent' and waits in the recipient's folder; a
    later confirmation is recorded by the next syft-chat client you run); 1
    if the recipient is unknown or refuses the message.
    """
    content = _read_message(message)
    with env.client() as client:
        if reply_to is not None and client.get_message(reply_to) is None:
            with env.reader() as (history, _):
                found = history.find(reply_to) if history.exists else None
            reply_to = found.message.msg_id if found else reply_to
        response = client.send_message(
            to, content, thread_id, reply_to, attachments=attach, timeout=0
        )
        if response.status != MessageStatus.DELIVERED.value and timeout > 0:
            _wait_for_confirmation(env, client, response.message_id, to, timeout)
        stored = client.get_message(response.message_id)
    thread = stored.thread_id if stored else thread_id
    if stored is not None and stored.status is not None:
        response = response.model_copy(update={"status": stored.status.value})
    delivered = response.status in (MessageStatus.DELIVERED.value, MessageStatus.READ.value)
    if as_json:
        env.json(
            {
                "status": response.status,
                "message_id": response.message_id,
                "timestamp": response.timestamp.isoformat(),
                "to": to,
                "thread_id": thread,
                "reply_to": reply_to,
                "attachments": [
                    a.model_dump(mode="json") for a in (stored.attachments if stored else [])
                ],
            }
        )
    else:
        from syft_chat.display import symbols_for

        sym = symbols_for()
        shown = printable(to, one_line=True)
        if delivered:
            mark = click.style(f"{sym.ok} {response.status}", fg="green", bold=True)
        else:
            mark = click.style(f"{response.status}, not confirmed yet", fg="yellow", bold=True)
        env.out(f"{mark} to {click.style(shown, fg='cyan')}  id {printable(response.message_id)}")
        if thread and thread != response.message_id:
            env.note(f"  thread {printable(thread, one_line=True)}")
        for attachment in stored.attachments if stored else []:
            env.out(f"  + {attachment_line(attachment)}")
    if not delivered:
        env.note(
            f"{printable(to, one_line=True)} did not confirm within {timeout:g}s; the message "
            "waits in their folder, and its confirmation is recorded by the next syft-chat "
            f"client you run (`syft-chat status {response.message_id[:8]}` shows it)"
        )
        click.get_current_context().exit(UNCONFIRMED_EXIT)


# --------------------------------------------------------------------------- online


@click.command()
@_json_option
@pass_env
def users(env: Env, as_json: bool) -> None:
    """List the datasites that serve syft-chat in this workspace."""
    with env.client() as client:
        found = client.list_available_users()
    if as_json:
        env.json(found)
        return
    if not found:
        env.note(f"no other datasite serves syft-chat (app {env.app!r}) in this workspace")
    for email in found:
        env.out(printable(email, one_line=True))  # a folder name: anything a peer chose


def _show_policy(env: Env, policy: ContactPolicy, as_json: bool) -> None:
    if as_json:
        env.json(
            {
                "mode": policy.mode,
                "allowed": sorted(policy.allowed),
                "blocked": sorted(policy.blocked),
            }
        )
        return

    def names(emails: frozenset[str]) -> str:
        return printable(", ".join(sorted(emails)), one_line=True) or "-"

    env.out(f"mode     {policy.mode}")
    env.out(f"allowed  {names(policy.allowed)}")
    env.out(f"blocked  {names(policy.blocked)}")


@click.command()
@click.option(
    "--mode",
    type=click.Choice(["open", "contacts_only"]),
    help="open: anyone not blocked; contacts_only: only allowed datasites.",
)
@_json_option
@pass_env
def contacts(env: Env, mode: str | None, as_json: bool) -> None:
    """Show the contact policy (and with --mode, change who may write to you)."""
    with env.client() as client:
        policy = client.set_contact_mode(mode) if mode else client.contact_policy  # type: ignore[arg-type]
    _show_policy(env, policy, as_json)


def _contact_command(name: str, verb: str, doc: str) -> click.Command:
    @click.command(name=name, help=doc)
    @click.argument("email")
    @_json_option
    @pass_env
    def command(env: Env, email: str, as_json: bool) -> None:
        with env.client() as client:
            policy = getattr(client, verb)(email)
        _show_policy(env, policy, as_json)

    return command


block = _contact_command(
    "block", "block", "Refuse everything from EMAIL (also in the permission files)."
)
unblock = _contact_command("unblock", "unblock", "Lift a block on EMAIL.")
allow = _contact_command("allow", "allow", "Add EMAIL to your contacts (for contacts-only mode).")


def wait_for_stop() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        if stop_requested_at_start():
            stop.set()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Printer:
    """A plugin printing every incoming message that passes the filters."""

    __name__ = "syft-chat-cli"  # its plugin name

    def __init__(self, emit: Callable[[ChatMessage], None], sender: str | None, thread: str | None):
        self.emit, self.sender, self.thread = emit, sender, thread

    def wants(self, message: ChatMessage) -> bool:
        if self.sender is not None and message.sender != self.sender:
            return False
        return self.thread is None or message.thread_id == self.thread

    @hookimpl
    def chat_message_received(self, message: ChatMessage) -> None:
        if self.wants(message):
            self.emit(message)


def _note_role(env: Env, client: Any) -> None:
    """Say so when another process serves this datasite (this one follows it)."""
    if client.role == "following":
        env.note(
            "another process serves this datasite with the same database: this one follows "
            "it (hears every message, sends its own) and serves when it stops"
        )


@click.command()
@click.option("--with", "with_user", metavar="EMAIL", help="Only messages from EMAIL.")
@click.option("--thread", "thread_id", metavar="ID", help="Only messages in this thread.")
@click.option(
    "--last",
    "-n",
    type=click.IntRange(min=0, max=1_000_000),
    metavar="N",
    default=0,
    show_default=True,
    help="First print the newest N stored messages.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@pass_env
def tail(env: Env, with_user: str | None, thread_id: str | None, last: int, as_json: bool) -> None:
    """Follow new messages live until Ctrl-C (alias: listen).

    This datasite serves chat meanwhile: incoming messages are stored and
    confirmed, and installed bots answer. If another process (a notebook, `serve`)
    already serves it with the same database, tail follows that process and prints
    every message too; with another database it stops with an error naming it.
    """
    from syft_chat.display import format_message, message_json

    me = env.email()
    lock = threading.Lock()

    def emit(message: ChatMessage) -> None:
        with lock:
            if as_json:
                env.json_line(message_json(message))
            else:
                env.out(format_message(message, me=me))

    printer = _Printer(emit, with_user, thread_id)
    with env.client(plugins=[printer]) as client:
        if last:
            for message in client.get_chat_history(with_user, last, thread_id=thread_id):
                emit(message)
        env.note(f"listening for messages to {me} (Ctrl-C to stop)")
        _note_role(env, client)
        wait_for_stop()
    env.note("stopped")


#: the chat page's options, shared by ``serve --web`` and ``web``
port_option = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="The page's port [default: $SYFTBOX_ASSIGNED_PORT, else a free one].",
)
open_option = click.option(
    "--open", "open_browser", is_flag=True, help="Open the page in a browser."
)
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Do not print a line per incoming message."
)


@click.command()
@quiet_option
@click.option("--web", is_flag=True, help="Also serve the chat page on 127.0.0.1.")
@port_option
@open_option
@pass_env
def serve(env: Env, quiet: bool, web: bool, port: int | None, open_browser: bool) -> None:
    """Serve this datasite's chat and run its plugins and bots until stopped.

    With --web, the same process also serves the chat page on 127.0.0.1 and prints its
    address (with the secret that signs the browser in). Stops cleanly on Ctrl-C or
    SIGTERM (for a service manager).
    """
    run_service(env, quiet=quiet, web=web or open_browser, port=port, open_browser=open_browser)


def run_service(
    env: Env, *, quiet: bool, web: bool, port: int | None = None, open_browser: bool = False
) -> None:
    """What ``serve`` (and ``web``) run: the client, optionally the page, until a signal."""
    from syft_chat.display import format_message

    # stop cleanly on a signal from the very start, also one while the client starts
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    try:
        me = env.email()
        plugins: list[object] = []
        if not quiet:
            plugins.append(_Printer(lambda m: env.out(format_message(m, me=me)), None, None))
        client = env.client(plugins=plugins)
    except BaseException:
        restore()
        raise
    page = None
    try:
        names = [
            n
            for n in client.list_plugins()
            if not n.startswith("syft_chat.plugins.") and n != _Printer.__name__
        ]
        env.note(
            f"serving syft-chat for {me} (app {env.app!r}, database {client.db_path}); "
            f"plugins: {', '.join(names) or 'built-ins only'}; Ctrl-C to stop"
        )
        _note_role(env, client)
        for failure in client.plugin_failures:
            env.note(f"plugin failed: {printable(str(failure))}")
        if web:
            page = _start_page(env, client, port, open_browser, quiet=quiet)
        try:
            service = importlib.import_module("syft_chat.service")
        except ModuleNotFoundError as exc:
            if exc.name != "syft_chat.service":
                raise
            while not stop.wait(0.5) and not client.closed:
                pass
        else:
            service.serve_forever(client, install_signal_handlers=False, stop=stop)
    finally:
        restore()
        if page is not None:
            page.stop()
        client.close()
    env.note("stopped")


def _start_page(
    env: Env,
    client: SyftChatClient,
    port: int | None,
    open_browser: bool,
    *,
    quiet: bool = False,
) -> Any:
    """Serve the page and say where. The secret goes to a terminal only: with ``--quiet`` (as
    the SyftBox client runs the app, keeping its output in a log) or with output to a file
    or pipe, the line names the address without it and the 0600 file that has it all."""
    from syft_chat.web import WebServer

    page = WebServer(client, port)
    url = page.start()
    if not quiet and sys.stdout.isatty():
        env.out(f"chat page: {url}")
        env.note(f"(the address is also in {page.url_file}, readable by you only)")
    else:
        env.out(
            f"chat page: http://{page.address[0]}:{page.port}/ (the address with its secret "
            f"is in {page.url_file}, readable by you only)"
        )
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        # a browser's command line is public (ps): it gets a private file that redirects
        webbrowser.open(page.write_open_file().as_uri())
    return page


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Set ``stop`` on the first SIGINT or SIGTERM (then the previous handlers are back, so
    a second signal acts as usual); returns the function restoring them."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        previous.clear()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()
        restore()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    if stop_requested_at_start():
        stop.set()
    return restore
