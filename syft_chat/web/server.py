"""Serving the page: uvicorn on 127.0.0.1, in a thread of the process that serves the datasite.

:class:`WebServer` binds the socket itself (loopback only; the port given, else
``$SYFTBOX_ASSIGNED_PORT``, else a free one), so its address, and the secret in it, is
known before the first request. Its connections are capped and timed out
(:mod:`syft_chat.web.limits`). Its :attr:`~WebServer.url` is what the user opens; the same
address is written to :attr:`~WebServer.url_file` (mode 0600, in the datasite's private
``.syft-chat`` folder, removed on stop) for an app started by the SyftBox client, whose
output nobody reads. :meth:`~WebServer.write_open_file` writes a 0600 HTML file beside it
that redirects to the address: what ``--open`` hands the browser, since a browser's command
line (``ps``) is readable by every local user and must not carry the secret.
"""

from __future__ import annotations

import html
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from syft_chat.errors import ConfigError

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient

__all__ = ["HOST", "PORT_ENV", "WebServer", "choose_port"]

HOST = "127.0.0.1"
#: the port the SyftBox client assigns to an app it runs
PORT_ENV = "SYFTBOX_ASSIGNED_PORT"

log = logging.getLogger("syft_chat.web")


def choose_port(port: int | None = None) -> int:
    """``port``, else ``$SYFTBOX_ASSIGNED_PORT``, else ``0`` (a free port at bind time)."""
    if port is not None:
        chosen = port
    else:
        raw = os.environ.get(PORT_ENV, "").strip()
        if not raw:
            return 0
        if not raw.isdigit():
            raise ConfigError(f"${PORT_ENV} must be a port number, got {raw!r}")
        chosen = int(raw)
    if not 0 <= chosen <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {chosen}")
    return chosen


class WebServer:
    """The page of one client, served until :meth:`stop`.

    :param client: a started client; the page acts as this datasite.
    :param port: see :func:`choose_port`.
    :param url_file: where to write the address (default:
        ``<data_dir>/.syft-chat/<app>/<email>.web-url``; ``None`` to skip it when
        ``write_url_file`` is false).
    """

    def __init__(
        self,
        client: SyftChatClient,
        port: int | None = None,
        *,
        url_file: Path | None = None,
        write_url_file: bool = True,
    ) -> None:
        try:
            import uvicorn

            from syft_chat.web.app import make_app
            from syft_chat.web.events import EventHub
            from syft_chat.web.limits import BACKLOG, KEEP_ALIVE, LimitedH11
            from syft_chat.web.security import Guard, Secrets
        except ImportError as exc:  # the optional extra is missing
            raise ConfigError(
                f"the web page needs the 'web' extra ({exc.name} is not installed): "
                "pip install 'syft-chat[web]'"
            ) from exc
        self.client = client
        self.secrets = Secrets()
        wanted = choose_port(port)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((HOST, wanted))
        except OSError as exc:
            self._socket.close()
            raise ConfigError(f"cannot listen on {HOST}:{wanted}: {exc.strerror or exc}") from exc
        self.port: int = self._socket.getsockname()[1]
        self.hub = EventHub(client)
        app = Guard(make_app(client, self.hub), self.secrets, self.port)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            # no local user may hold the process's descriptors: see syft_chat.web.limits
            http=LimitedH11,
            backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE,
        )
        self._backlog = BACKLOG
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._open_file: Path | None = None
        folder = Path(client.syft.workspace.data_dir) / ".syft-chat" / client.app_name
        self.url_file: Path | None = (
            url_file or folder / f"{client.email}.web-url" if write_url_file else None
        )

    @property
    def address(self) -> tuple[str, int]:
        """The address the socket is bound to (always loopback)."""
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The address to open, secret included."""
        return f"http://{HOST}:{self.port}/?token={self.secrets.token}"

    def start(self, timeout: float = 10.0) -> str:
        """Start serving in a thread; return :attr:`url` once it answers."""
        self.hub.start()
        self._socket.listen(self._backlog)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"syft-chat-web-{self.port}",
            daemon=True,
        )
        self._thread.start()
        end = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise ConfigError(f"the web page did not start on {HOST}:{self.port}")
            time.sleep(0.01)
        if self.url_file is not None:
            self._write_url_file(self.url_file)
        log.info("web page for %s at http://%s:%d/", self.client.email, HOST, self.port)
        return self.url

    def _write_url_file(self, path: Path) -> None:
        self._write_private(path, self.url + "\n")

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(path, 0o600)

    def write_open_file(self) -> Path:
        """A private (0600) HTML file that sends the browser on to :attr:`url`, for a
        browser started with a file's path instead of the secret; removed on :meth:`stop`."""
        folder = Path(self.client.syft.workspace.data_dir) / ".syft-chat" / self.client.app_name
        path = folder / f"{self.client.email}.web-open-{self.port}.html"
        target = html.escape(self.url, quote=True)
        page = (
            '<!doctype html><meta charset="utf-8"><title>syft-chat</title>'
            f'<meta http-equiv="refresh" content="0;url={target}">'
            f'<a href="{target}">Open the chat page</a>\n'
        )
        self._write_private(path, page)
        self._open_file = path
        return path

    def stop(self) -> None:
        """End the event streams and stop serving (idempotent)."""
        self.hub.close()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._socket.close()
        if self._open_file is not None:
            self._open_file.unlink(missing_ok=True)
            self._open_file = None
        if self.url_file is not None:
            try:
                if self.url_file.read_text(encoding="utf-8").strip() == self.url:
                    self.url_file.unlink()
            except OSError:
                pass

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
