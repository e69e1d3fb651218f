"""The ``syft-chat`` command line (click).

Commands that only read (``history``, ``thread``, ``status``, ``search``,
``conversations``) open the SQLite file read-only and never start a client, so
they are fast and never touch the workspace. Commands that talk to other
datasites (``send``, ``users``, ``tail``, ``serve``) start a
:class:`~syft_chat.SyftChatClient`.

Output for people goes to stdout (aligned, coloured on a terminal, plain when
piped or when ``NO_COLOR`` is set); progress notes go to stderr; ``--json``
prints JSON for scripts. A :class:`~syft_chat.SyftChatError` becomes one
``Error: ...`` line on stderr and exit code 1 (2 for a missing or unreadable
config, as for usage errors).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from .client import SyftChatClient
from .contacts import ContactPolicy
from .display import printable
from .errors import (
    ConfigError,
    SyftChatError,
    UnknownRecipientError,
)
from .hookspecs import hookimpl
from .models import ChatMessage, to_utc
from .readonly import ReadOnlyHistory
from .views import Conversation, SearchHit

__all__ = ["DEFAULT_APP", "cli", "default_db_path", "main", "parse_since"]

DEFAULT_APP = "syft_chat"
CONFIG_ENV = "SYFTBOX_CLIENT_CONFIG_PATH"
DB_ENV = "SYFT_CHAT_DB"
_DEFAULT_CONFIG = Path("~/.syftbox/config.json")
_LEGACY_CONFIG_NAME = "client_config.json"  # syft-core still reads it beside config.json


# --------------------------------------------------------------------------- errors


class CLIError(click.ClickException):
    """A one-line ``Error: ...`` on stderr and exit code 1."""

    exit_code = 1


class ConfigMissing(CLIError):
    """No usable SyftBox config: exit code 2, like a usage error."""

    exit_code = 2


def _fail(exc: SyftChatError) -> NoReturn:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, UnknownRecipientError):
        text += " (`syft-chat users` lists who does)"
    raise (ConfigMissing if isinstance(exc, ConfigError) else CLIError)(text) from exc


class _Group(click.Group):
    """Lists commands in the order they are defined, resolves aliases, and turns
    every :class:`SyftChatError` raised by a command into a one-line error."""

    aliases = {"listen": "tail"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyftChatError as exc:
            _fail(exc)


# --------------------------------------------------------------------------- time


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """Parse ``--since``: an ISO date/time (naive = local time), ``30m``/``1h``/``2d``/``1w``
    ago, ``today`` or ``yesterday`` (local midnight). Returns an aware UTC datetime.

    Raises :class:`ValueError` for anything else.
    """
    now = now or datetime.now(timezone.utc)
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    if text.lower() in {"today", "yesterday"}:
        midnight = now.astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        return to_utc(midnight - timedelta(days=1 if text.lower() == "yesterday" else 0))
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return to_utc(datetime.fromisoformat(text))


def _since_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_since(value)
    except (ValueError, OverflowError):
        raise click.BadParameter(
            f"{value!r} is not a time: use an ISO date or time (2024-05-01, "
            "2024-05-01T14:30, 2024-05-01T14:30+02:00), a relative time "
            "(30m, 1h, 2d, 1w) or today/yesterday"
        ) from None


def default_db_path(email: str, app: str = DEFAULT_APP) -> Path:
    """``~/.syft-chat/<email>/chat_messages.db`` (``.../<email>/<app>/...`` for other apps)."""
    base = Path.home() / ".syft-chat" / email
    return (base if app == DEFAULT_APP else base / app) / "chat_messages.db"


@dataclass
class Env:
    """What every command needs: where the config and the database are, and how to print."""

    config: str | None
    config_source: str  # "option", "environment" or "default"
    db: str | None
    app: str
    color: bool | None
    _email: str | None = field(default=None, repr=False)

    # ---- configuration

    def config_path(self) -> Path:
        """The SyftBox config file, or :class:`ConfigError` saying what is missing."""
        if self.config_source == "default":
            path = _DEFAULT_CONFIG.expanduser()
            if path.is_file() or path.with_name(_LEGACY_CONFIG_NAME).is_file():
                return path
            raise ConfigError(
                f"no SyftBox config found: --config was not given, ${CONFIG_ENV} is not set, "
                f"and {path} does not exist. Pass --config PATH, set {CONFIG_ENV}, or install "
                "and start SyftBox once to create it. To try syft-chat without SyftBox, run "
                "`syft-chat demo --keep`."
            )
        assert self.config is not None
        path = Path(self.config).expanduser()
        if not path.is_file():
            if self.config_source == "option":
                origin, fix = "--config", "leave out --config to use the default"
            else:
                origin, fix = f"${CONFIG_ENV}", f"unset {CONFIG_ENV} to use the default"
            raise ConfigError(
                f"no SyftBox config at {path} (from {origin}): the file does not exist. "
                f"Fix the path, or {fix} (~/.syftbox/config.json)."
            )
        return path

    def email(self) -> str:
        """This datasite's email, read from the config."""
        if self._email is None:
            from syft_core import Client as SyftClient

            path = self.config_path()
            try:
                self._email = str(SyftClient.load(path).email)
            except Exception as exc:
                raise ConfigError(f"could not read the SyftBox config {path}: {exc}") from exc
        return self._email

    def email_if_known(self) -> str | None:
        """The email when a config is available; ``None`` otherwise (read-only commands)."""
        try:
            return self.email()
        except ConfigError:
            if self.db is None:
                raise  # without a config we do not know which database to read
            return None

    def db_path(self) -> Path:
        if self.db:
            return Path(self.db).expanduser()
        return default_db_path(self.email(), self.app)

    # ---- opening things

    @contextmanager
    def reader(self) -> Iterator[tuple[ReadOnlyHistory, str | None]]:
        me = self.email_if_known()
        history = ReadOnlyHistory(self.db_path(), owner=me)
        try:
            yield history, me
        finally:
            history.close()

    def client(self, plugins: Sequence[object] = ()) -> SyftChatClient:
        config = self.config_path()
        db = self.db_path()
        return SyftChatClient(config, app_name=self.app, db_path=db, plugins=plugins)

    # ---- output

    def out(self, text: str = "", *, nl: bool = True) -> None:
        click.echo(text, nl=nl, color=self.color)

    def note(self, text: str) -> None:
        click.echo(click.style(text, dim=True), err=True, color=self.color)

    def json(self, value: Any) -> None:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))

    def json_line(self, value: Any) -> None:
        click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


pass_env = click.make_pass_decorator(Env)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


# --------------------------------------------------------------------------- the group


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    envvar=CONFIG_ENV,
    metavar="PATH",
    help=f"SyftBox config file [env: {CONFIG_ENV}; default: ~/.syftbox/config.json].",
)
@click.option(
    "--db",
    envvar=DB_ENV,
    metavar="PATH",
    help=f"Message database [env: {DB_ENV}; default: ~/.syft-chat/<email>/chat_messages.db].",
)
@click.option(
    "--app", default=DEFAULT_APP, show_default=True, help="App folder chat is served under."
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Force colours on or off [default: on for a terminal, off if piped or NO_COLOR].",
)
@click.version_option(package_name="syft-chat", prog_name="syft-chat")
@click.pass_context
def cli(
    ctx: click.Context, config: str | None, db: str | None, app: str, color: bool | None
) -> None:
    """Persistent, asynchronous chat between SyftBox datasites.

    \b
    Try it without SyftBox:   syft-chat demo
    Send and read:            syft-chat send bob@example.org "Hello!"
                              syft-chat history --with bob@example.org
    Stay online for replies:  syft-chat tail    (or: syft-chat serve)
    """
    if not config:
        origin = "default"
    elif ctx.get_parameter_source("config") is ParameterSource.ENVIRONMENT:
        origin = "environment"
    else:
        origin = "option"
    if color is None and os.environ.get("NO_COLOR"):
        color = False
    ctx.color = color
    ctx.obj = Env(config=config, config_source=origin, db=db, app=app, color=color)


# --------------------------------------------------------------------------- sending


def _read_message(words: tuple[str, ...]) -> str:
    if words and words != ("-",):
        return " ".join(words)
    if not words and sys.stdin.isatty():
        raise click.UsageError("give the message text, or - to read it from stdin")
    return sys.stdin.read().rstrip("\n")


@cli.command()
@click.argument("to", metavar="EMAIL")
@click.argument("message", nargs=-1, metavar="MESSAGE...")
@click.option("--thread", "thread_id", metavar="ID", help="Post in this thread.")
@click.option(
    "--reply-to", metavar="MSG_ID", help="Reply to this message (an id or a unique prefix)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="How long to wait for the confirmation [default: 15].",
)
@_json_option
@pass_env
def send(
    env: Env,
    to: str,
    message: tuple[str, ...],
    thread_id: str | None,
    reply_to: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Send MESSAGE to EMAIL and wait for the recipient's confirmation.

    The words of MESSAGE are joined with spaces; - (or nothing, when piped)
    reads it from stdin. Exit code 1 if the recipient is unknown, refuses the
    message or does not confirm in time (the message then stays stored with
    status 'sent', and a late confirmation is still recorded).
    """
    content = _read_message(message)
    with env.client() as client:
        if reply_to is not None and client.get_message(reply_to) is None:
            with env.reader() as (history, _):
                found = history.find(reply_to) if history.exists else None
            reply_to = found.message.msg_id if found else reply_to
        response = client.send_message(to, content, thread_id, reply_to, timeout=timeout)
        stored = client.get_message(response.message_id)
    thread = stored.thread_id if stored else thread_id
    if as_json:
        env.json(
            {
                "status": response.status,
                "message_id": response.message_id,
                "timestamp": response.timestamp.isoformat(),
                "to": to,
                "thread_id": thread,
                "reply_to": reply_to,
            }
        )
        return
    from .display import symbols_for

    sym = symbols_for()
    mark = click.style(f"{sym.ok} {response.status}", fg="green", bold=True)
    env.out(f"{mark} to {click.style(to, fg='cyan')}  id {response.message_id}")
    if thread and thread != response.message_id:
        env.note(f"  thread {thread}")


# --------------------------------------------------------------------------- reading


@cli.command()
@click.option("--with", "with_user", metavar="EMAIL", help="Only the conversation with EMAIL.")
@click.option("--thread", "thread_id", metavar="ID", help="Only this thread.")
@click.option(
    "--since",
    metavar="WHEN",
    callback=_since_option,
    help="Only messages since WHEN: 2024-05-01, 2024-05-01T14:30, 30m, 1h, 2d, 1w, today.",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1, max=1_000_000),
    metavar="N",
    default=50,
    show_default=True,
    help="At most this many (the newest).",
)
@_json_option
@pass_env
def history(
    env: Env,
    with_user: str | None,
    thread_id: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show stored messages, oldest first (read-only: starts no client)."""
    from .display import format_messages, message_json

    with env.reader() as (reader, me):
        if not reader.exists:
            messages: list[ChatMessage] = []
            env.note(f"no messages yet (no database at {reader.path})")
        else:
            messages = reader.history(
                peer=with_user.strip() if with_user else None,
                limit=limit,
                since=since,
                thread_id=thread_id,
            )
    if as_json:
        env.json([message_json(m) for m in messages])
        return
    if not messages and reader.exists:
        env.note("no messages match")
    for line in format_messages(messages, me=me):
        env.out(line)


@cli.command()
@click.argument("thread_id", metavar="THREAD_ID")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=1_000_000),
    metavar="N",
    default=1000,
    show_default=True,
    help="At most this many.",
)
@_json_option
@pass_env
def thread(env: Env, thread_id: str, limit: int, as_json: bool) -> None:
    """Show a thread as a tree of replies (read-only).

    THREAD_ID may be a thread id, a unique prefix of one, or the id of any
    message in the thread.
    """
    from .display import format_thread, message_json

    with env.reader() as (reader, me):
        resolved = reader.resolve_thread(thread_id)
        if resolved is None:
            raise CLIError(f"no thread {thread_id!r} in {reader.path}")
        messages = reader.history(thread_id=resolved, limit=limit)
    if as_json:
        env.json([message_json(m) for m in messages])
        return
    env.note(f"thread {resolved} ({len(messages)} message{'s' if len(messages) != 1 else ''})")
    for line in format_thread(messages, me=me):
        env.out(line)


@cli.command()
@click.argument("msg_id", metavar="MSG_ID")
@_json_option
@pass_env
def status(env: Env, msg_id: str, as_json: bool) -> None:
    """Show a stored message and its delivery status (read-only).

    MSG_ID may be a unique prefix. Status is one of queued, sent, delivered,
    failed (outgoing) or received (incoming).
    """
    from .display import local_time, symbols_for

    with env.reader() as (reader, _me):
        found = reader.find(msg_id)
        if found is None:
            raise CLIError(f"no message {msg_id!r} in {reader.path}")
    if as_json:
        env.json(found.as_json())
        return
    from .display import printable_message

    m = printable_message(found.message)  # a peer's text is never passed to the terminal raw
    state = m.status.value if m.status else "unknown"
    from .display import STATUS_COLOURS as colour

    rows = [
        ("id", m.msg_id),
        ("status", click.style(state, fg=colour.get(state), bold=True)),
        ("route", f"{m.sender} {symbols_for().arrow} {m.recipient or '?'}"),
        ("written", local_time(m.timestamp)),
    ]
    if found.updated_at:
        try:
            rows.append(("updated", local_time(datetime.fromisoformat(found.updated_at))))
        except ValueError:
            rows.append(("updated", found.updated_at))
    if m.thread_id:
        rows.append(("thread", m.thread_id))
    if m.reply_to:
        rows.append(("reply to", m.reply_to))
    if found.error:
        rows.append(("error", click.style(printable(found.error), fg="red")))
    rows.append(("content", m.content))
    for label, value in rows:
        env.out(f"{click.style(label.ljust(8), dim=True)}  {value}")


_MARK = ("\x02", "\x03")  # around each match in a snippet, for the terminal


def _styled_snippet(snippet: str, color: bool) -> str:
    """A search snippet with its matches in bold (or in [brackets] without colour)."""
    out, rest = [], snippet
    while _MARK[0] in rest:
        before, _, rest = rest.partition(_MARK[0])
        match, _, rest = rest.partition(_MARK[1])
        match = printable(match)  # a peer's text is never passed to the terminal raw
        out.append(
            printable(before)
            + (click.style(match, fg="yellow", bold=True) if color else f"[{match}]")
        )
    return "".join(out) + printable(rest)


@cli.command()
@click.argument("query", nargs=-1, required=True, metavar="QUERY...")
@click.option("--with", "with_user", metavar="EMAIL", help="Only the conversation with EMAIL.")
@click.option("--thread", "thread_id", metavar="ID", help="Only this thread.")
@click.option(
    "--since", metavar="WHEN", callback=_since_option, help="Only messages since WHEN (as history)."
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1, max=10_000),
    metavar="N",
    default=20,
    show_default=True,
    help="At most this many (the best matches).",
)
@click.option("--raw", is_flag=True, help='QUERY is FTS5 syntax: "a phrase", a OR b, NOT, NEAR().')
@_json_option
@pass_env
def search(
    env: Env,
    query: tuple[str, ...],
    with_user: str | None,
    thread_id: str | None,
    since: datetime | None,
    limit: int,
    raw: bool,
    as_json: bool,
) -> None:
    """Full-text search of stored messages, best matches first (read-only).

    Every word of QUERY must occur (any order; case and accents ignored); word*
    matches a prefix. Deleted messages are never found; edited ones by their
    current text.
    """
    from .display import format_messages

    text = " ".join(query)
    with env.reader() as (reader, me):
        if not reader.exists:
            hits: list[SearchHit] = []
            env.note(f"no messages yet (no database at {reader.path})")
        else:
            hits = reader.search(
                text,
                conversation=with_user.strip() if with_user else None,
                thread_id=thread_id,
                since=since,
                limit=limit,
                raw=raw,
                highlight=("[", "]") if as_json else _MARK,
            )
    if as_json:
        env.json([hit.model_dump(mode="json") for hit in hits])
        return
    if not hits and reader.exists:
        env.note("no messages match")
    color = env.color if env.color is not None else sys.stdout.isatty()
    shown = [
        h.message.model_copy(update={"content": _styled_snippet(h.snippet, color)}) for h in hits
    ]
    for line in format_messages(shown, me=me, content_is_printable=True):
        env.out(line)


@cli.command()
@_json_option
@pass_env
def conversations(env: Env, as_json: bool) -> None:
    """List conversations, most recent first, with unread counts (read-only)."""
    from .display import local_time

    with env.reader() as (reader, me):
        if not reader.exists:
            found: list[Conversation] = []
            env.note(f"no conversations yet (no database at {reader.path})")
        else:
            found = reader.conversations()
    if as_json:
        env.json([c.model_dump(mode="json") for c in found])
        return
    width = max((len(c.conversation_id) for c in found), default=0)
    unread_width = max((len(f"{c.unread} unread") for c in found if c.unread), default=0)
    for c in found:
        when = local_time(c.updated_at) if c.updated_at else " " * 19
        name = click.style(
            printable(c.conversation_id).ljust(width), fg="cyan", bold=bool(c.unread)
        )
        count = f"{c.unread} unread" if c.unread else ""
        unread = click.style(count.ljust(unread_width), fg="yellow", bold=True)
        last = c.last_message
        if last is None:
            preview = ""
        else:
            body = "(deleted)" if last.deleted else " ".join(last.content.split())
            if last.sender == me:
                who = "you: "
            else:  # a one-to-one conversation is named by the sender already
                who = "" if last.sender == c.peer else f"{last.sender}: "
            preview = printable(f"{who}{body[:60]}{'…' if len(body) > 60 else ''}")
        line = f"{click.style(when, dim=True)}  {name}  {unread + '  ' if unread_width else ''}"
        env.out(f"{line}{preview}".rstrip())


# --------------------------------------------------------------------------- online


@cli.command()
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
        env.out(email)


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
    env.out(f"mode     {policy.mode}")
    env.out(f"allowed  {', '.join(sorted(policy.allowed)) or '-'}")
    env.out(f"blocked  {', '.join(sorted(policy.blocked)) or '-'}")


@cli.command()
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


def _contact_command(name: str, verb: str, doc: str) -> None:
    @cli.command(name=name, help=doc)
    @click.argument("email")
    @_json_option
    @pass_env
    def command(env: Env, email: str, as_json: bool) -> None:
        with env.client() as client:
            policy = getattr(client, verb)(email)
        _show_policy(env, policy, as_json)


_contact_command("block", "block", "Refuse everything from EMAIL (also in the permission files).")
_contact_command("unblock", "unblock", "Lift a block on EMAIL.")
_contact_command("allow", "allow", "Add EMAIL to your contacts (for contacts-only mode).")


def wait_for_stop() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
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


@cli.command()
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
    confirmed, and installed bots answer.
    """
    from .display import format_message, message_json

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
        wait_for_stop()
    env.note("stopped")


@cli.command()
@click.option("--quiet", "-q", is_flag=True, help="Do not print a line per incoming message.")
@pass_env
def serve(env: Env, quiet: bool) -> None:
    """Serve this datasite's chat and run its plugins and bots until stopped.

    Stops cleanly on Ctrl-C or SIGTERM (for a service manager).
    """
    from .display import format_message

    me = env.email()
    plugins: list[object] = []
    if not quiet:
        plugins.append(_Printer(lambda m: env.out(format_message(m, me=me)), None, None))
    client = env.client(plugins=plugins)
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
        for failure in client.plugin_failures:
            env.note(f"plugin failed: {failure}")
        try:
            service = importlib.import_module("syft_chat.service")
        except ModuleNotFoundError as exc:
            if exc.name != "syft_chat.service":
                raise
            wait_for_stop()
        else:
            service.serve_forever(client)
    finally:
        client.close()
    env.note("stopped")


# --------------------------------------------------------------------------- diagnostics


@cli.command()
@_json_option
def plugins(as_json: bool) -> None:
    """List the plugins that load (bots marked), and those that failed."""
    from .manager import make_plugin_manager

    pm, failures = make_plugin_manager()
    entries: list[dict[str, Any]] = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        entries.append({"name": str(name), "hooks": hooks, "bot": "chat_reply_to" in hooks})
    if as_json:
        click.echo(
            json.dumps(
                {
                    "interpreter": sys.executable,
                    "python": sys.version.split()[0],
                    "plugins": entries,
                    "failed": [vars(f) for f in failures],
                },
                indent=2,
            )
        )
        return
    click.echo(f"interpreter: {sys.executable} (Python {sys.version.split()[0]})")
    click.echo("plugins:")
    for entry in entries:
        bot = " (bot)" if entry["bot"] else ""
        click.echo(f"  {entry['name']}: {', '.join(entry['hooks'])}{bot}")
    if failures:
        click.echo("failed:")
        for failure in failures:
            click.echo(f"  {failure}")


@cli.command()
def hooks() -> None:
    """Print the hook reference (Markdown)."""
    from .docs import hook_reference

    click.echo(hook_reference(), nl=False)


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the workspace and print how to continue.")
def demo(keep: bool) -> None:
    """Run a conversation on a temporary local workspace (nothing to configure)."""
    from .demo import run_demo

    run_demo(keep=keep)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (the ``syft-chat`` console script)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        result = cli.main(args=args, prog_name="syft-chat", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    return result if isinstance(result, int) else 0
