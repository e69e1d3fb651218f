"""Commands that need no config: ``plugins`` and ``hooks`` (what is installed and how
to write more) and ``demo`` (try syft-chat on a temporary workspace).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from syft_chat.cli.env import _json_option
from syft_chat.display import printable

__all__ = ["demo", "hooks", "plugins"]


# --------------------------------------------------------------------------- diagnostics


@click.command()
@_json_option
def plugins(as_json: bool) -> None:
    """List the plugins that load (bots marked), and those that failed."""
    from syft_chat.manager import make_plugin_manager

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
            click.echo(f"  {printable(str(failure))}")


@click.command()
def hooks() -> None:
    """Print the hook reference (Markdown)."""
    from syft_chat.docs import hook_reference

    click.echo(hook_reference(), nl=False)


@click.command()
@click.option("--keep", is_flag=True, help="Keep the workspace and print how to continue.")
def demo(keep: bool) -> None:
    """Run a conversation on a temporary local workspace (nothing to configure)."""
    from syft_chat.demo import run_demo

    run_demo(keep=keep)
