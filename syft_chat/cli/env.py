"""What every command needs: the :class:`Env` (where the config and the database are, and
how to print), the errors that become one ``Error: ...`` line and an exit code, and the
options shared by several commands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click

from syft_chat.client import SyftChatClient
from syft_chat.display import json_text, printable
from syft_chat.errors import (
    ConfigError,
    SyftChatError,
    UnknownRecipientError,
)
from syft_chat.models import ChatMessage
from syft_chat.plugins.sqlite.reader import ReadOnlyHistory

__all__ = [
    "CONFIG_ENV",
    "DB_ENV",
    "DEFAULT_APP",
    "CLIError",
    "ConfigMissing",
    "Env",
    "default_db_path",
    "pass_env",
]

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
    # an error may quote a peer (a refusal's reason): never raw to the terminal
    text = printable(" ".join(str(exc).split()), one_line=True) or type(exc).__name__
    if isinstance(exc, UnknownRecipientError):
        text += " (`syft-chat users` lists who does)"
    raise (ConfigMissing if isinstance(exc, ConfigError) else CLIError)(text) from exc


def default_db_path(email: str, app: str = DEFAULT_APP) -> Path:
    """``~/.syft-chat/<email>/chat_messages.db`` (``.../<email>/<app>/...`` for other apps):
    the Python API's default too (:func:`syft_chat.settings.default_db_path`)."""
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

    def with_attachment_states(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` with the current state of their attachments, computed from the
        local synced copies (the config says where they are; without one, as stored)."""
        if not any(m.attachments for m in messages):
            return messages
        from syft_core import Client as SyftClient

        from syft_chat.features.attachment_states import AttachmentStates

        try:
            datasites = Path(SyftClient.load(self.config_path()).workspace.datasites)
        except Exception:  # read-only commands work without a config
            return messages
        return AttachmentStates(datasites=datasites, app=self.app).with_states(messages)

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
        click.echo(json_text(value, indent=2))

    def json_line(self, value: Any) -> None:
        click.echo(json_text(value, compact=True))


pass_env = click.make_pass_decorator(Env)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
