"""Run a datasite as a long-lived bot service: serve, run plugins, stop cleanly.

:func:`serve_forever` blocks until SIGINT (Ctrl-C) or SIGTERM (what service
managers such as systemd or Docker send), or until a ``stop`` event is set,
then closes the client: it stops serving, runs the notifications and bot
answers already queued, and closes the database. A second signal while
closing is handled as Python normally would (Ctrl-C raises
``KeyboardInterrupt``), so a stuck shutdown can still be interrupted.

From a shell (the ``syft-chat serve`` command calls the same function)::

    python -m syft_chat.service --config ~/.syftbox/config.json --db bot.db
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient

__all__ = ["main", "serve_forever", "stop_requested_at_start"]

log = logging.getLogger("syft_chat.service")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_requested_at_start() -> bool:
    """Whether the ``syft-chat`` command received SIGINT or SIGTERM while it was starting
    (before any handler of its own was installed; see ``syft_chat_boot``)."""
    boot = sys.modules.get("syft_chat_boot")
    return bool(boot is not None and boot.stop_requested())


def serve_forever(
    client: SyftChatClient,
    *,
    install_signal_handlers: bool = True,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``client`` until SIGINT/SIGTERM or ``stop`` is set, then close it.

    :param client: a started client (its transport serves from construction).
    :param install_signal_handlers: handle SIGINT and SIGTERM by stopping
        (only possible on the main thread; elsewhere they are left alone and a
        warning is logged). The previous handlers are restored before closing.
    :param stop: an event another thread may set to stop the service.

    Logs ``ready`` (INFO, logger ``syft_chat.service``) once serving, and
    ``stopped`` after the client is closed. Returns normally on a signal;
    the client is closed in every case, also if waiting raised.
    """
    stop = stop if stop is not None else threading.Event()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    try:
        if install_signal_handlers:
            if threading.current_thread() is threading.main_thread():
                for sig in _STOP_SIGNALS:
                    previous[sig] = signal.signal(sig, on_signal)
                if stop_requested_at_start():
                    stop.set()
            else:
                log.warning("serve_forever: not on the main thread, signal handlers not installed")
        names = [n for n in client.list_plugins() if not n.startswith("syft_chat.plugins.")]
        log.info(
            "ready: %s serves syft-chat (app %r, database %s); plugins: %s",
            client.email,
            client.app_name,
            client.db_path,
            ", ".join(names) or "built-ins only",
        )
        for failure in client.plugin_failures:
            log.warning("plugin failed: %s", failure)
        # wait in short slices: also notices a client closed from elsewhere
        while not stop.wait(0.5) and not client.closed:
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        client.close()
        log.info("stopped: %s", client.email)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m syft_chat.service``: serve one datasite with its installed plugins."""
    parser = argparse.ArgumentParser(
        prog="python -m syft_chat.service",
        description="Serve a datasite's syft-chat and run its plugins and bots until stopped.",
    )
    parser.add_argument(
        "--config",
        help="SyftBox config file (default: $SYFTBOX_CLIENT_CONFIG_PATH, ~/.syftbox/config.json)",
    )
    parser.add_argument(
        "--db",
        help="SQLite file for the messages (default: $SYFT_CHAT_DB, ~/.syft-chat/<email>/...)",
    )
    parser.add_argument("--app", default="syft_chat", help="app folder chat is served under")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE[:ATTR]",
        help="also register this plugin (importable module or module:object); repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from syft_chat import client as make_client
    from syft_chat.errors import SyftChatError

    try:
        plugins = [_import_object(spec) for spec in args.plugin]
        chat = make_client(args.config, db_path=args.db, app_name=args.app, plugins=plugins)
    except (SyftChatError, ImportError, AttributeError) as exc:
        print(f"syft-chat service: {exc}", file=sys.stderr)
        return 1
    serve_forever(chat)
    return 0


def _import_object(spec: str) -> object:
    import importlib

    module_name, _, attr = spec.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


if __name__ == "__main__":
    raise SystemExit(main())
