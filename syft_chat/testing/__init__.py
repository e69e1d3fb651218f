"""Helpers for testing syft-chat and its plugins against real datasites on disk.

Import it explicitly (``from syft_chat.testing import local_network``); it is
not a pytest plugin and registers nothing on its own, so importing it in your
``conftest.py`` changes no other test run.

* :func:`local_network` / :class:`ChatNetwork`: N datasites and their clients
  (each with its own database) in a temporary folder; ``net.ask(a, b, text)``
  sends and waits for the automatic reply (for testing bots);
* :func:`register_plugin`: a plugin on one client for one ``with`` block;
* :func:`wait_for`: poll a condition with a timeout;
* :func:`files_containing`: which files hold some bytes (prove nothing leaked);
* :func:`make_workspace` / :func:`write_config`: just the folders and configs.

A *local workspace* is what several SyftBox clients see when they share one
sync folder: one ``data_dir`` with ``datasites/<email>/`` for every member,
and one config file per member. Nothing is faked: the syft-rpc request files,
the syft-event watcher and the SQLite files are the real ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient
    from syft_chat.models import ChatMessage

__all__ = [
    "DEFAULT_EMAILS",
    "ChatNetwork",
    "default_emails",
    "files_containing",
    "isolate_plugins",
    "local_network",
    "make_workspace",
    "register_plugin",
    "wait_for",
    "write_config",
]

T = TypeVar("T")
P = TypeVar("P")


def write_config(path: Path, *, email: str, data_dir: Path) -> Path:
    """Write a minimal SyftBox client config (what ``syft_core.Client.load`` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "data_dir": str(data_dir),
        "email": email,
        "server_url": "http://127.0.0.1:5001/",
        "client_url": "http://127.0.0.1:8080/",
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def make_workspace(root: Path | str, emails: Iterable[str]) -> dict[str, Path]:
    """Lay out a local SyftBox workspace under ``root`` for ``emails``.

    Creates ``root/datasites/<email>/`` for each member and a config file
    ``root/configs/<email>.json`` pointing at the shared ``data_dir``.
    Returns ``{email: config_path}``.
    """
    root = Path(root).expanduser().resolve()
    data_dir = root
    configs: dict[str, Path] = {}
    for email in emails:
        (data_dir / "datasites" / email / "public").mkdir(parents=True, exist_ok=True)
        configs[email] = write_config(
            root / "configs" / f"{email}.json", email=email, data_dir=data_dir
        )
    return configs


# --------------------------------------------------------------------------- test kit

#: Names given to the datasites of ``local_network(root, n)``, in order.
DEFAULT_EMAILS: tuple[str, ...] = (
    "alice@openmined.org",
    "bob@openmined.org",
    "carol@openmined.org",
    "dave@openmined.org",
    "erin@openmined.org",
    "frank@openmined.org",
)


def isolate_plugins(monkeypatch: Any, *distributions: str, strict: bool = False) -> None:
    """Make clients created in this test load only ``distributions``' entry points.

    Call it from an autouse fixture with pytest's ``monkeypatch``: no plugin
    installed on the machine leaks in (none at all without arguments),
    ``strict`` makes a plugin that fails to load raise, and no SyftBox config
    is picked up from the environment.
    """
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", ",".join(distributions))
    if strict:
        monkeypatch.setenv("SYFT_CHAT_STRICT_PLUGINS", "1")
    else:
        monkeypatch.delenv("SYFT_CHAT_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("SYFT_CHAT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("SYFTBOX_CLIENT_CONFIG_PATH", raising=False)


def default_emails(n: int) -> list[str]:
    """``n`` datasite emails: alice, bob, carol... then ``user7@openmined.org`` and so on."""
    if n < 1:
        raise ValueError("a network needs at least one datasite")
    return [
        DEFAULT_EMAILS[i] if i < len(DEFAULT_EMAILS) else f"user{i + 1}@openmined.org"
        for i in range(n)
    ]


def wait_for(predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.005) -> T:
    """Poll ``predicate()`` until it returns something truthy, and return that.

    Raises ``AssertionError`` (so pytest shows it as a failed test) after
    ``timeout`` seconds.
    """
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            name = getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"condition {name} not met within {timeout}s")
        time.sleep(interval)


@contextmanager
def register_plugin(client: SyftChatClient, plugin: P, name: str | None = None) -> Iterator[P]:
    """Register ``plugin`` on ``client`` for the ``with`` block only; unregister in ``finally``."""
    client.register_plugin(plugin, name=name)
    try:
        yield plugin
    finally:
        client.unregister_plugin(plugin)


def files_containing(root: Path | str, needle: bytes) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (e.g. to prove nothing leaked)."""
    if not needle:
        raise ValueError("needle must not be empty")
    found = []
    for path in sorted(Path(root).rglob("*")):
        try:
            if path.is_file() and needle in path.read_bytes():
                found.append(path)
        except OSError:  # a file removed while we look (a response being resolved)
            continue
    return found


class ChatNetwork:
    """Several datasites in one local workspace, with one client each.

    Made by :func:`local_network`. Layout under ``root``: ``SyftBox/`` is the
    shared data dir (``SyftBox/datasites/<email>/``, as on a real machine),
    ``configs/<email>.json`` the SyftBox configs, ``dbs/<email>.db`` the
    message databases. Keys that syft-crypto keeps beside the data dir land
    in ``root/.syftbox/``, so nothing is written outside ``root``.
    """

    def __init__(self, root: Path | str, emails: Iterable[str], **client_kwargs: Any) -> None:
        self.root = Path(root).expanduser().resolve()
        self.emails = list(emails)
        if len(set(self.emails)) != len(self.emails):
            raise ValueError(f"duplicate emails in {self.emails}")
        self.data_dir = self.root / "SyftBox"
        self.configs = {
            email: write_config(
                self.root / "configs" / f"{email}.json", email=email, data_dir=self.data_dir
            )
            for email in self.emails
        }
        for email in self.emails:
            (self.datasites / email / "public").mkdir(parents=True, exist_ok=True)
        self.client_kwargs = client_kwargs
        self.clients: dict[str, SyftChatClient] = {}

    @property
    def datasites(self) -> Path:
        """The shared ``datasites/`` folder every member sees."""
        return self.data_dir / "datasites"

    def db_path(self, email: str) -> Path:
        return self.root / "dbs" / f"{email}.db"

    def start(self, email: str, **kwargs: Any) -> SyftChatClient:
        """Start (or return the running) client of ``email``; ``kwargs`` go to ``syft_chat.client``.

        A closed client is replaced by a fresh one on the same database.
        """
        from syft_chat import client as make_client

        running = self.clients.get(email)
        if running is not None and not running.closed:
            if kwargs:
                raise ValueError(f"{email}'s client is already running; close it first")
            return running
        if email not in self.configs:
            raise KeyError(f"{email} is not in this network ({', '.join(self.emails)})")
        options = {**self.client_kwargs, **kwargs}
        options.setdefault("db_path", self.db_path(email))
        self.clients[email] = make_client(self.configs[email], **options)
        return self.clients[email]

    def __getitem__(self, email: str) -> SyftChatClient:
        """The client of ``email`` (started if it never was; a closed one stays closed)."""
        return self.clients[email] if email in self.clients else self.start(email)

    def ask(
        self,
        sender: str,
        recipient: str,
        content: str,
        timeout: float = 5.0,
        **send_kwargs: Any,
    ) -> ChatMessage:
        """Send ``content`` from ``sender`` to ``recipient`` and return the first reply to it.

        For testing bots: waits until ``sender``'s database holds a message
        from ``recipient`` that replies to the one just sent.
        """
        me = self.start(sender)
        sent = me.send_message(recipient, content, timeout=timeout, **send_kwargs)

        def reply() -> ChatMessage | None:
            for message in me.get_chat_history(with_user=recipient, limit=200):
                if message.reply_to == sent.message_id and message.sender == recipient:
                    return message
            return None

        reply.__name__ = f"reply from {recipient} to {content[:30]!r}"
        return wait_for(reply, timeout)

    def close(self) -> None:
        """Close every client (idempotent)."""
        errors = []
        for client in self.clients.values():
            try:
                client.close()
            except Exception as exc:  # close them all, report the first problem
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> ChatNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ChatNetwork {self.root} {self.emails}>"


@contextmanager
def local_network(
    root: Path | str, emails: int | Iterable[str] = 2, *, start: bool = True, **client_kwargs: Any
) -> Iterator[ChatNetwork]:
    """A :class:`ChatNetwork` of ``emails`` (a count, or the emails) under ``root``.

    With ``start=True`` every member's client is started on entry (with
    ``client_kwargs``, e.g. ``plugins=[...]`` or ``settings={...}``), so the
    members can reach each other at once; with ``start=False`` start them
    with ``net.start(email)``. Every client is closed on exit::

        from syft_chat.testing import local_network

        def test_echo(tmp_path):
            with local_network(tmp_path, 2) as net:
                alice, bob = net.emails
                assert net.ask(alice, bob, "/echo hi").content == "hi"

    Plugins installed on the machine load as usual, subject to
    ``SYFT_CHAT_LOAD_PLUGINS`` (set it to your distribution's name in your
    ``conftest.py``); pass ``load_entry_points=False`` to load none.
    """
    names = default_emails(emails) if isinstance(emails, int) else list(emails)
    net = ChatNetwork(root, names, **client_kwargs)
    try:
        if start:
            for email in names:
                net.start(email)
        yield net
    finally:
        net.close()
