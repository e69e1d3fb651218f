"""The read-only commands: ``history``, ``thread``, ``status``, ``search`` and
``conversations``. They open the SQLite file read-only and never start a client, so
they are fast and never touch the workspace.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from syft_chat.cli.env import CLIError, Env, _json_option, pass_env
from syft_chat.display import printable
from syft_chat.features.views import Conversation, SearchHit
from syft_chat.models import ChatMessage, to_utc

__all__ = ["conversations", "history", "parse_since", "search", "status", "thread"]


def _no_database(path: Any) -> str:
    return (
        f"no messages yet: there is no database at {path} (a program that passed its own "
        "db_path= stored elsewhere: pass that path as --db, or set SYFT_CHAT_DB)"
    )


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


# --------------------------------------------------------------------------- reading


@click.command()
@click.option(
    "--with",
    "with_user",
    metavar="EMAIL",
    help="Only the one-to-one conversation with EMAIL (group:ID: that group's).",
)
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
    from syft_chat.display import format_messages, message_json

    with env.reader() as (reader, me):
        if not reader.exists:
            messages: list[ChatMessage] = []
            env.note(_no_database(reader.path))
        else:
            messages = reader.history(
                conversation=with_user.strip() if with_user else None,
                limit=limit,
                since=since,
                thread_id=thread_id,
            )
    messages = env.with_attachment_states(messages)
    if as_json:
        env.json([message_json(m) for m in messages])
        return
    if not messages and reader.exists:
        env.note("no messages match")
    for line in format_messages(messages, me=me):
        env.out(line)


@click.command()
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
    message in the thread. Only that thread's conversation is shown: for a
    message id, the message's; for a thread id, that of its first message.
    """
    from syft_chat.display import format_thread, message_json

    with env.reader() as (reader, me):
        found = reader.resolve_thread(thread_id)
        if found is None:
            raise CLIError(f"no thread {thread_id!r} in {reader.path}")
        resolved, conversation = found  # a thread is one conversation's
        messages = reader.history(conversation=conversation, thread_id=resolved, limit=limit)
    messages = env.with_attachment_states(messages)
    if as_json:
        env.json([message_json(m) for m in messages])
        return
    count = f"{len(messages)} message{'s' if len(messages) != 1 else ''}"
    env.note(f"thread {printable(resolved, one_line=True)} ({count})")  # a peer's thread id
    for line in format_thread(messages, me=me):
        env.out(line)


@click.command()
@click.argument("msg_id", metavar="MSG_ID")
@_json_option
@pass_env
def status(env: Env, msg_id: str, as_json: bool) -> None:
    """Show a stored message and its delivery status (read-only).

    MSG_ID may be a unique prefix. Status is one of queued, sent, delivered,
    failed (outgoing) or received (incoming).
    """
    from syft_chat.display import local_time, symbols_for

    with env.reader() as (reader, _me):
        found = reader.find(msg_id)
        if found is None:
            raise CLIError(f"no message {msg_id!r} in {reader.path}")
    found.message = env.with_attachment_states([found.message])[0]
    if as_json:
        env.json(found.as_json())
        return
    from syft_chat.display import attachment_line, printable_message

    m = printable_message(found.message)  # a peer's text is never passed to the terminal raw
    state = m.status.value if m.status else "unknown"
    from syft_chat.display import STATUS_COLOURS as colour

    rows = [
        ("id", m.msg_id),
        ("status", click.style(state, fg=colour.get(state), bold=True)),
        ("route", f"{m.sender} {symbols_for().arrow} {m.recipient or '?'}"),
        ("written", local_time(m.timestamp)),
    ]
    if found.updated_at:
        rows.append(("updated", local_time(found.updated_at)))
    if m.thread_id:
        rows.append(("thread", m.thread_id))
    if m.reply_to:
        rows.append(("reply to", m.reply_to))
    if found.error:
        rows.append(("error", click.style(printable(found.error), fg="red")))
    rows.append(("content", m.content))
    rows.extend(("attached", attachment_line(a)) for a in m.attachments)
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


@click.command()
@click.argument("query", nargs=-1, required=True, metavar="QUERY...")
@click.option(
    "--with",
    "with_user",
    metavar="EMAIL",
    help="Only the one-to-one conversation with EMAIL (group:ID: that group's).",
)
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
    help="At most this many.",
)
@click.option("--raw", is_flag=True, help='QUERY is FTS5 syntax: "a phrase", a OR b, NOT, NEAR().')
@click.option(
    "--order",
    type=click.Choice(["newest", "relevance"]),
    default="newest",
    show_default=True,
    help="newest: the latest matches first; relevance: the best of the latest 500 first.",
)
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
    order: str,
    as_json: bool,
) -> None:
    """Full-text search of stored messages, newest matches first (read-only).

    Every word of QUERY must occur (any order; case and accents ignored); word*
    matches a prefix. Deleted messages are never found; edited ones by their
    current text.
    """
    from syft_chat.display import format_messages

    text = " ".join(query)
    with env.reader() as (reader, me):
        if not reader.exists:
            hits: list[SearchHit] = []
            env.note(_no_database(reader.path))
        else:
            hits = reader.search(
                text,
                conversation=with_user.strip() if with_user else None,
                thread_id=thread_id,
                since=since,
                limit=limit,
                raw=raw,
                highlight=("[", "]") if as_json else _MARK,
                order=order,
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
    shown = env.with_attachment_states(shown)
    for line in format_messages(shown, me=me, content_is_printable=True):
        env.out(line)


@click.command()
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1, max=10_000),
    metavar="N",
    default=50,
    show_default=True,
    help="At most this many (the most recent).",
)
@click.option("--all", "everything", is_flag=True, help="Every conversation (no --limit).")
@_json_option
@pass_env
def conversations(env: Env, limit: int, everything: bool, as_json: bool) -> None:
    """List conversations, most recent first, with unread counts (read-only)."""
    from syft_chat.display import local_time

    more = False
    with env.reader() as (reader, me):
        if not reader.exists:
            found: list[Conversation] = []
            env.note(f"no conversations yet (no database at {reader.path})")
        elif everything:
            found = reader.conversations()
        else:  # one more than shown: is there a next page?
            found = reader.conversations(limit=min(limit + 1, 10_000))
            more, found = len(found) > limit, found[:limit]
    if more:
        env.note(f"the {limit} most recent shown; more with --limit or --all")
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
