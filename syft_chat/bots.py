"""A small helper for command bots: ``/help``, ``/echo text``, arguments parsed.

A :class:`CommandBot` is a plugin: it implements ``chat_reply_to``, so
register an instance with ``client.register_plugin(bot)`` or point an entry
point at it. Commands are methods marked with :func:`command`, or functions
added with :meth:`CommandBot.command`::

    from syft_chat.bots import CommandBot, command

    class Greeter(CommandBot):
        '''Says hello.'''

        @command
        def hello(self, name: str = "world") -> str:
            '''Greet NAME.'''
            return f"hello, {name}!"

A message ``/hello bob`` is answered ``hello, bob!``. Arguments are split like
a shell does (:func:`shlex.split`: quote an argument that holds spaces) and
bound to the command's parameters, converted to their annotated type
(``str``, ``int``, ``float``, ``bool``); a ``*args`` parameter takes the rest.
Parameters with these names are not arguments but are passed in:

``text``
    the raw text after the command name, unsplit (``/echo  a  "b"`` gives
    ``'a  "b"'``);
``message``
    the incoming :class:`~syft_chat.ChatMessage`;
``client``
    the receiving :class:`~syft_chat.SyftChatClient`.

A command returns what ``chat_reply_to`` may return: a string, a dict with
``content`` (and optionally ``metadata``), or ``None`` for no answer.
``/help`` is generated from the docstrings; an unknown command or wrong
arguments get a helpful answer; messages that are not commands are passed to
:meth:`CommandBot.default`, which ignores them unless you override it. A
command that raises is answered with a short apology naming only the
exception type (never its text: it could quote local data), and the traceback
is logged on ``syft_chat.bots``.

Bots never see automatic replies (the kernel filters them), so two bots
cannot answer each other forever.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import re
import shlex
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from syft_chat.hookspecs import hookimpl

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient
    from syft_chat.models import ChatMessage

__all__ = ["Command", "CommandBot", "command"]

log = logging.getLogger("syft_chat.bots")

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "_syft_chat_command"
_COMMAND_LINE = re.compile(r"(\S+)\s*(.*)", re.DOTALL)
_INJECTED = frozenset({"text", "message", "client"})
Answer = str | dict[str, Any] | None


def _to_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on", "y"}:
        return True
    if lowered in {"0", "false", "no", "off", "n"}:
        return False
    raise ValueError(f"expected yes or no, got {value!r}")


_CONVERTERS: dict[Any, Callable[[str], Any]] = {str: str, int: int, float: float, bool: _to_bool}
_EXPECTED = {int: "a whole number", float: "a number", bool: "yes or no"}


class UsageError(ValueError):
    """The arguments do not fit the command; the text is shown to the sender."""


@dataclass(frozen=True)
class _Mark:
    name: str | None
    aliases: tuple[str, ...]


@overload
def command(fn: F, /) -> F: ...


@overload
def command(*, name: str | None = None, aliases: tuple[str, ...] = ()) -> Callable[[F], F]: ...


def command(
    fn: F | None = None, /, *, name: str | None = None, aliases: tuple[str, ...] = ()
) -> F | Callable[[F], F]:
    """Mark a method of a :class:`CommandBot` subclass as a command.

    Use it bare (``@command``) or with options (``@command(name="time",
    aliases=("now",))``). The command is named after the function unless
    ``name`` is given; its docstring's first line is its ``/help`` entry.
    """

    def mark(f: F) -> F:
        setattr(f, _MARK, _Mark(name, tuple(aliases)))
        return f

    return mark(fn) if fn is not None else mark


class Command:
    """One command: its name, handler, and how to bind arguments to it."""

    def __init__(self, name: str, fn: Callable[..., Any], aliases: tuple[str, ...] = ()) -> None:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"invalid command name {name!r}")
        self.name = name
        self.fn = fn
        self.aliases = aliases
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable annotations: treat every argument as text
            hints = {}
        self._types = {p: hints.get(p, str) for p in self.signature.parameters}
        for param in self.signature.parameters.values():
            if (
                param.kind is inspect.Parameter.KEYWORD_ONLY
                and param.name not in _INJECTED
                and param.default is inspect.Parameter.empty
            ):
                raise ValueError(
                    f"command {name!r}: keyword-only parameter {param.name!r} needs a default"
                )
        self._takes_words = any(
            p.name not in _INJECTED
            and p.kind
            in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.VAR_POSITIONAL,
            )
            for p in self.signature.parameters.values()
        )
        doc = inspect.getdoc(fn) or ""
        self.summary = doc.splitlines()[0] if doc else ""

    def usage(self, prefix: str = "/") -> str:
        """``/name ARG [OPTIONAL] [REST...]``, from the signature."""
        parts = [f"{prefix}{self.name}"]
        for param in self.signature.parameters.values():
            if param.name in _INJECTED and param.name != "text":
                continue
            label = param.name.upper()
            if param.name == "text":
                parts.append("[TEXT]")
            elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                parts.append(f"[{label}...]")
            elif param.default is not inspect.Parameter.empty:
                parts.append(f"[{label}]")
            else:
                parts.append(label)
        return " ".join(parts)

    def bind(
        self, text: str, message: ChatMessage, client: SyftChatClient
    ) -> tuple[list[Any], dict[str, Any]]:
        """Bind the argument text to the handler's parameters, or raise :class:`UsageError`.

        Returns the positional and keyword arguments for the handler.
        """
        words: list[str] = []
        if self._takes_words:
            try:
                words = shlex.split(text)
            except ValueError as exc:
                raise UsageError(f"could not read the arguments ({exc})") from exc
        injected = {"text": text, "message": message, "client": client}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            kind = param.kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                continue
            if param.name in _INJECTED:
                value = injected[param.name]
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(self._convert(param.name, w) for w in words)
                words = []
                continue
            elif kind is inspect.Parameter.KEYWORD_ONLY:
                continue  # only injected names may be keyword-only (checked in __init__)
            elif words:
                value = self._convert(param.name, words.pop(0))
            elif param.default is not inspect.Parameter.empty:
                value = param.default
            else:
                raise UsageError(f"missing {param.name.upper()}")
            if kind is inspect.Parameter.KEYWORD_ONLY:
                kwargs[param.name] = value
            else:
                args.append(value)
        if words and "text" not in self.signature.parameters:
            raise UsageError(f"too many arguments ({len(words)} left over)")
        return args, kwargs

    def _convert(self, name: str, word: str) -> Any:
        kind = self._types.get(name, str)
        convert = _CONVERTERS.get(kind, str)
        try:
            return convert(word)
        except ValueError as exc:
            shown = word if len(word) <= 40 else word[:40] + "..."
            expected = _EXPECTED.get(kind, "a value")
            raise UsageError(f"{name.upper()} must be {expected}, not {shown!r}") from exc


class CommandBot:
    """Base class (or instance) for command bots; a registered instance is a plugin.

    :param name: the plugin name (shown in ``client.list_plugins()`` and in
        the ``syft_chat.bot`` metadata of its answers); defaults to the class name.
    :param prefix: what starts a command (default ``"/"``).
    :param description: the first line of ``/help``; defaults to the class docstring.

    Subclass it and mark methods with :func:`command`, or make an instance
    and add functions with :meth:`command`. ``/help`` is always there.
    """

    def __init__(
        self, name: str | None = None, *, prefix: str = "/", description: str | None = None
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        self.__name__ = name or type(self).__name__
        self.prefix = prefix
        doc = inspect.getdoc(type(self)) if type(self) is not CommandBot else None
        self.description = description if description is not None else (doc or "")
        self.commands: dict[str, Command] = {}
        self._aliases: dict[str, str] = {}
        self.add_command("help", self.help, aliases=())
        for attr in dir(type(self)):
            member = getattr(type(self), attr, None)
            mark = getattr(member, _MARK, None)
            if isinstance(mark, _Mark):
                self.add_command(mark.name or attr, getattr(self, attr), mark.aliases)

    # ------------------------------------------------------------------ building

    def add_command(
        self, name: str, fn: Callable[..., Any], aliases: tuple[str, ...] = ()
    ) -> Command:
        """Add (or replace) the command ``name`` handled by ``fn``."""
        cmd = Command(name, fn, tuple(aliases))
        self.commands[name] = cmd
        for alias in aliases:
            self._aliases[alias] = name
        return cmd

    def command(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> Any:
        """Decorator adding a plain function as a command of this instance.

        ::

            bot = CommandBot("dice")

            @bot.command
            def roll(sides: int = 6) -> str:
                '''Roll a die with SIDES sides.'''
                return str(random.randint(1, sides))
        """

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add_command(name or f.__name__, f, aliases)
            return f

        return add(fn) if fn is not None else add

    # ------------------------------------------------------------------ answering

    def help(self, text: str = "") -> str:
        """List the commands, or explain one: /help COMMAND."""
        wanted = text.strip().removeprefix(self.prefix)
        if wanted:
            cmd = self._find(wanted)
            if cmd is None:
                return self._unknown(wanted)
            doc = inspect.getdoc(cmd.fn) or "(no description)"
            return f"{cmd.usage(self.prefix)}\n{doc}"
        lines = [self.description.splitlines()[0]] if self.description else []
        lines.append("Commands:")
        for name in sorted(self.commands):
            cmd = self.commands[name]
            usage = cmd.usage(self.prefix)
            entry = f"  {usage}" + (f" - {cmd.summary}" if cmd.summary else "")
            if cmd.aliases:
                entry += f" (also {', '.join(self.prefix + a for a in cmd.aliases)})"
            lines.append(entry)
        return "\n".join(lines)

    def default(self, message: ChatMessage, client: SyftChatClient) -> Answer:
        """Answer a message that is not a command; ``None`` (the default) ignores it."""
        return None

    def handle(self, message: ChatMessage, client: SyftChatClient) -> Answer:
        """Answer one message (what ``chat_reply_to`` does; call it directly in unit tests)."""
        content = message.content.strip()
        if not content.startswith(self.prefix) or len(content) == len(self.prefix):
            return self.default(message, client)
        match = _COMMAND_LINE.match(content[len(self.prefix) :])
        if match is None:
            return self.default(message, client)
        name, rest = match.group(1), match.group(2)
        cmd = self._find(name)
        if cmd is None:
            return self._unknown(name)
        try:
            args, kwargs = cmd.bind(rest.strip(), message, client)
        except UsageError as exc:
            return f"{exc}. Usage: {cmd.usage(self.prefix)}"
        try:
            result: Answer = cmd.fn(*args, **kwargs)
        except Exception as exc:
            log.exception("command %s%s of bot %s failed", self.prefix, cmd.name, self.__name__)
            return f"sorry, {self.prefix}{cmd.name} failed ({type(exc).__name__})"
        if isinstance(result, str) and not result.strip():
            return None  # nothing to say (an empty message cannot be sent)
        return result

    @hookimpl
    def chat_reply_to(self, message: ChatMessage, client: SyftChatClient) -> Answer:
        return self.handle(message, client)

    # ------------------------------------------------------------------ helpers

    def _find(self, name: str) -> Command | None:
        name = self._aliases.get(name, name)
        return self.commands.get(name)

    def _unknown(self, name: str) -> str:
        known = sorted(self.commands) + sorted(self._aliases)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {self.prefix}{close[0]}?" if close else ""
        shown = name if len(name) <= 40 else name[:40] + "..."
        return f"unknown command {self.prefix}{shown}.{hint} Try {self.prefix}help."

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__name__!r} commands={sorted(self.commands)}>"
