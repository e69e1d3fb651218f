"""The ``syft-chat`` command line (click).

Commands that only read (``history``, ``thread``, ``status``, ``search``,
``conversations``) open the SQLite file read-only and never start a client, so
they are fast and never touch the workspace. Commands that talk to other
datasites (``send``, ``users``, ``tail``, ``serve``, ``web``) start a
:class:`~syft_chat.SyftChatClient`.

Output for people goes to stdout (aligned, coloured on a terminal, plain when
piped or when ``NO_COLOR`` is set); progress notes go to stderr; ``--json``
prints JSON for scripts. A :class:`~syft_chat.SyftChatError` becomes one
``Error: ...`` line on stderr and exit code 1 (2 for a missing or unreadable
config, as for usage errors; 3 when ``send``'s message is not confirmed in time).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource

from syft_chat.cli.diagnostics import demo, hooks, plugins
from syft_chat.cli.env import CONFIG_ENV, DB_ENV, DEFAULT_APP, Env, _fail, default_db_path
from syft_chat.cli.files import attachments, save
from syft_chat.cli.online import allow, block, contacts, send, serve, tail, unblock, users
from syft_chat.cli.reading import conversations, history, parse_since, search, status, thread
from syft_chat.cli.web import web
from syft_chat.errors import SyftChatError

__all__ = ["DEFAULT_APP", "cli", "default_db_path", "main", "parse_since"]


class _Group(click.Group):
    """Lists commands in the order they are added, resolves aliases, and turns
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


# The group lists commands in this order (see _Group.list_commands).
for _command in (
    send,
    history,
    thread,
    status,
    search,
    conversations,
    attachments,
    save,
    users,
    contacts,
    block,
    unblock,
    allow,
    tail,
    serve,
    web,
    plugins,
    hooks,
    demo,
):
    cli.add_command(_command)


# --------------------------------------------------------------------------- entry point


#: watchdog's inotify thread warns when a peer's folder appears while it is still walking
#: the folder above it, and then watches it anyway (the same callback, overwritten by
#: itself): nothing is wrong, so the command line does not print it
WATCHDOG_NOISE = r"Callback with id .* already exists for watch"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (the ``syft-chat`` console script)."""
    warnings.filterwarnings("ignore", message=WATCHDOG_NOISE, category=RuntimeWarning)
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
