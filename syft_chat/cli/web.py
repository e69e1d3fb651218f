"""``syft-chat web``: serve the datasite and the chat page (``serve --web``)."""

from __future__ import annotations

import click

from syft_chat.cli.env import Env, pass_env
from syft_chat.cli.online import open_option, port_option, quiet_option, run_service

__all__ = ["web"]


@click.command()
@port_option
@open_option
@quiet_option
@pass_env
def web(env: Env, port: int | None, open_browser: bool, quiet: bool) -> None:
    """Serve this datasite and its chat page on 127.0.0.1 until stopped.

    Prints the page's address, with a secret that signs the browser in (also written,
    readable by you only, to <data_dir>/.syft-chat/<app>/<email>.web-url); opens a
    browser only with --open. The same as `serve --web`.
    """
    run_service(env, quiet=quiet, web=True, port=port, open_browser=open_browser)
