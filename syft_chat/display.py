"""How messages look: aligned terminal lines (``syft-chat`` CLI) and HTML (notebooks).

Terminal rendering returns strings that may carry ANSI colour codes
(``click.style``); ``click.echo`` strips them when the output is not a
terminal, and the CLI turns them off for ``NO_COLOR``. Timestamps are shown in
the machine's local time.

HTML rendering escapes every piece of user content (content, sender,
recipient, ids, metadata) with :func:`html.escape`, and uses inline styles
only, so it renders the same in trusted and untrusted notebooks.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, SupportsIndex, overload

import click

from syft_chat.models import (
    AUTO_REPLY_KEY,
    Attachment,
    AttachmentState,
    ChatMessage,
    MessageStatus,
    claims_auto_reply,
)

__all__ = [
    "STATUS_COLOURS",
    "ChatHistory",
    "Symbols",
    "format_message",
    "format_messages",
    "format_thread",
    "history_html",
    "human_size",
    "json_text",
    "local_time",
    "message_html",
    "message_json",
    "printable",
    "short_id",
    "symbols_for",
]

#: click colour of each delivery status in terminal output.
STATUS_COLOURS = {
    "queued": "yellow",
    "sent": "yellow",
    "delivered": "green",
    "read": "green",
    "failed": "red",
}


class Symbols:
    """The few non-letters the terminal output uses, in Unicode or plain ASCII."""

    def __init__(self, unicode: bool) -> None:
        self.arrow = "→" if unicode else "->"
        self.reply = "↪" if unicode else "re:"
        self.branch = "└─ " if unicode else "`- "
        self.dot = "·" if unicode else "|"
        self.ok = "✓" if unicode else "ok"


def symbols_for(stream: Any = None) -> Symbols:
    """Unicode symbols if ``stream`` (default stdout) can encode them, else ASCII."""
    encoding = getattr(stream if stream is not None else sys.stdout, "encoding", None) or ""
    try:
        "→↪└─·✓".encode(encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return Symbols(unicode=False)
    return Symbols(unicode=True)


def short_id(value: str | None, length: int = 8) -> str:
    """The first ``length`` characters of an id (the CLI accepts unique prefixes)."""
    return (value or "")[:length]


def local_time(value: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``value`` (aware UTC) formatted in the machine's local time zone."""
    return value.astimezone().strftime(fmt)


def message_json(message: ChatMessage) -> dict[str, Any]:
    """The JSON object the CLI prints for a message (``--json``)."""
    data: dict[str, Any] = message.model_dump(mode="json")
    return data


def _is_bot(message: ChatMessage) -> bool:
    return bool(message.metadata.get(AUTO_REPLY_KEY))


def _status_word(message: ChatMessage) -> str:
    """The delivery status of an outgoing message; nothing for a received one."""
    status = message.status
    if status is None or status is MessageStatus.RECEIVED:
        return ""
    return str(status.value)


def _hints(message: ChatMessage, sym: Symbols, *, tree: bool = False) -> str:
    """Reply/thread/bot hints, shown before the content (a tree shows only the bot mark)."""
    parts = []
    if tree:
        pass
    elif message.reply_to:
        parts.append(f"{sym.reply} {short_id(message.reply_to)}")
    elif message.thread_id and message.thread_id != message.msg_id:
        parts.append(f"[{message.thread_id}]")
    if _is_bot(message):
        parts.append("[bot]")
    elif claims_auto_reply(message):  # the sender's word only
        parts.append("[bot?]")
    return click.style(" ".join(parts), fg="magenta") + " " if parts else ""


# Bidi marks, embeddings, overrides and isolates, and the Unicode line / paragraph
# separators: a peer's text must not reorder or break a line it is shown in
_BIDI = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# C0/C1 control characters (but newline and tab), DEL, and the above: text from a peer
# must not move the cursor, retitle the terminal or reorder a line
UNPRINTABLE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_UNPRINTABLE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")  # newline and tab too
# what json.dumps(ensure_ascii=False) leaves raw: DEL, C1 controls and the above
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}]")


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with terminal control characters shown as escapes (``\\x1b``).

    Every peer-controlled string the CLI prints goes through here (C0 and C1 controls,
    DEL, bidi overrides / isolates / marks, line separators). ``one_line`` escapes
    newlines and tabs too, for names and ids that must not start a fake line.
    """
    pattern = _UNPRINTABLE_LINE if one_line else UNPRINTABLE
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


def json_text(value: Any, *, indent: int | None = None, compact: bool = False) -> str:
    """``value`` as JSON for the terminal: non-ASCII text stays readable, but the
    characters ``json.dumps`` would leave raw that act on a terminal (C1 controls, DEL,
    bidi overrides and marks, line separators) are written as ``\\uXXXX`` escapes (the
    same JSON value)."""
    separators = (",", ":") if compact else None
    text = json.dumps(value, indent=indent, ensure_ascii=False, separators=separators)
    # these characters only ever occur inside JSON strings, where \uXXXX means the same
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def printable_message(message: ChatMessage, content_is_printable: bool = False) -> ChatMessage:
    names = ("sender", "recipient", "thread_id", "reply_to", "msg_id")
    update: dict[str, Any] = {
        f: printable(v, one_line=True) for f in names if isinstance(v := getattr(message, f), str)
    }
    if not content_is_printable:
        update["content"] = printable(message.content)
    return message.model_copy(update=update)


def format_messages(
    messages: Sequence[ChatMessage],
    *,
    me: str | None = None,
    symbols: Symbols | None = None,
    indents: Sequence[int] | None = None,
    content_is_printable: bool = False,
) -> list[str]:
    """One aligned line per message (continuation lines for multi-line content).

    Columns: local time, short id, ``sender -> recipient``, the delivery status
    of outgoing messages, then hints (reply, thread, bot) and the content.
    ``me`` (this datasite's email) is highlighted. ``indents`` (one per
    message) nests replies, for :func:`format_thread`.
    """
    sym = symbols or symbols_for()
    # a peer's text never reaches the terminal raw (control sequences are escaped)
    messages = [printable_message(m, content_is_printable) for m in messages]
    senders = max((len(m.sender) for m in messages), default=0)
    recipients = max((len(m.recipient or "?") for m in messages), default=0)
    statuses = max((len(_status_word(m)) for m in messages), default=0)
    lines: list[str] = []
    for i, message in enumerate(messages):
        depth = indents[i] if indents is not None else 0
        stamp = click.style(local_time(message.timestamp), dim=True)
        ident = click.style(short_id(message.msg_id), fg="yellow", dim=True)

        def who(email: str, width: int) -> str:
            padded = email.ljust(width)
            return click.style(padded, fg="green" if email == me else "cyan", bold=email == me)

        to = who(message.recipient or "?", recipients)
        route = f"{who(message.sender, senders)} {sym.arrow} {to}"
        word = _status_word(message)
        status = click.style(word.ljust(statuses), fg=STATUS_COLOURS.get(word))
        prefix = f"{stamp}  {ident}  {route}  {status + '  ' if statuses else ''}"
        nest = ("   " * (depth - 1) + sym.branch) if depth > 0 else ""
        body = message.content.splitlines() or [""]
        hints = _hints(message, sym, tree=indents is not None)
        lines.append(f"{prefix}{nest}{hints}{body[0]}".rstrip())
        pad = " " * (len(click.unstyle(prefix)) + len(nest))
        if len(body) > 1:
            lines.extend(f"{pad}{line}" for line in body[1:])
        lines.extend(f"{pad}+ {attachment_line(a)}" for a in message.attachments)
    return lines


def human_size(size: int) -> str:
    """``size`` bytes for people: ``5 B``, ``12.3 KiB``, ``4.8 MiB``..."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def attachment_line(attachment: Attachment) -> str:
    """One attachment as the command line shows it: name, size and state (escaped)."""
    name = printable(attachment.name, one_line=True)
    state = str(attachment.state.value)
    colour = {"available": "green", "pending": "yellow"}.get(state, "red")
    return f"[{attachment.id}] {name}  {human_size(attachment.size)}  " + click.style(
        state, fg=colour
    )


def format_message(message: ChatMessage, *, me: str | None = None) -> str:
    """One message as it appears in ``syft-chat tail`` (see :func:`format_messages`)."""
    return "\n".join(format_messages([message], me=me))


def _thread_order(messages: Sequence[ChatMessage]) -> tuple[list[ChatMessage], list[int]]:
    """Depth-first order of a thread (replies under their parent) and each message's depth."""
    ids = {m.msg_id for m in messages}
    children: dict[str | None, list[ChatMessage]] = {}
    for m in messages:  # messages arrive oldest first, so children stay in time order
        parent = m.reply_to if m.reply_to in ids else None
        children.setdefault(parent, []).append(m)
    ordered: list[ChatMessage] = []
    depths: list[int] = []
    stack = [(m, 0) for m in reversed(children.get(None, []))]
    while stack:
        message, depth = stack.pop()
        ordered.append(message)
        depths.append(depth)
        stack.extend((c, depth + 1) for c in reversed(children.get(message.msg_id, [])))
    return ordered, depths


def format_thread(
    messages: Sequence[ChatMessage], *, me: str | None = None, symbols: Symbols | None = None
) -> list[str]:
    """A thread as a tree: each reply under the message it answers."""
    ordered, depths = _thread_order(messages)
    return format_messages(ordered, me=me, symbols=symbols, indents=depths)


# --------------------------------------------------------------------------- HTML

_E = html.escape

_BOX = (
    "font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; font-size: 13px; "
    "line-height: 1.4; max-width: 760px"
)
_BUBBLE = (
    "border: 1px solid rgba(127,127,127,.35); border-radius: 8px; padding: 6px 10px; "
    "margin: 4px 0; max-width: 85%"
)
_MINE = "margin-left: auto; background: rgba(46,160,67,.10)"
_THEIRS = "margin-right: auto; background: rgba(127,127,127,.08)"
_META = "opacity: .7; font-size: 11px"
_CONTENT = "white-space: pre-wrap; word-break: break-word; margin-top: 2px"


def _metadata_html(metadata: dict[str, Any]) -> str:
    if not metadata:
        return ""
    try:
        text = json.dumps(metadata, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(metadata)
    return (
        f'<details style="{_META}"><summary>metadata</summary>'
        f'<pre style="margin: 2px 0; white-space: pre-wrap">{_E(text)}</pre></details>'
    )


#: images shown inline (never SVG: it can carry script); larger ones are a link
_INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_INLINE_MAX = 2 * 1024 * 1024


def _attachment_html(attachment: Attachment) -> str:
    name, size = _E(attachment.name), _E(human_size(attachment.size))
    state = attachment.state
    path = attachment.local_path if state is AttachmentState.AVAILABLE else None
    if path and attachment.media_type in _INLINE_IMAGES and attachment.size <= _INLINE_MAX:
        import base64
        from pathlib import Path

        from syft_chat.plugins.syft_rpc.shared_files import open_verified

        data = ""  # the bytes of the one descriptor that was verified, or none
        try:
            opened = open_verified(Path(path), attachment.size, attachment.sha256)
            if opened is not None:
                with opened:
                    data = base64.b64encode(opened.read()).decode("ascii")
        except OSError:
            data = ""
        if data:
            return (
                f'<div><img alt="{name}" title="{name} ({size})" style="max-width: 100%; '
                f'max-height: 320px" src="data:{_E(attachment.media_type)};base64,{data}"></div>'
            )
    if path:
        from pathlib import Path

        link = f'<a href="{_E(Path(path).as_uri())}" download="{name}">{name}</a>'
        return f"<div>&#128206; {link} &middot; {size}</div>"
    return f"<div>&#128206; {name} &middot; {size} &middot; <i>{_E(str(state.value))}</i></div>"


def message_html(message: ChatMessage, *, me: str | None = None) -> str:
    """One message as an HTML chat bubble; every user-supplied string is escaped.

    ``me`` (this datasite's email) puts its own messages on the right.
    """
    mine = me is not None and message.sender == me
    recipient = f" &rarr; {_E(message.recipient)}" if message.recipient else ""
    hints = []
    if message.reply_to:
        hints.append(f"&#8618; reply to <code>{_E(short_id(message.reply_to))}</code>")
    if message.thread_id and message.thread_id != message.msg_id:
        hints.append(f"thread <code>{_E(short_id(message.thread_id, 24))}</code>")
    if _is_bot(message):
        hints.append("<b>bot</b>")
    elif claims_auto_reply(message):  # the sender's word only
        hints.append("bot? (the sender says so)")
    if message.status is not None and message.status is not MessageStatus.RECEIVED:
        hints.append(_E(str(message.status.value)))
    error = getattr(message, "error", None)  # the reason a sent message failed
    if error:
        hints.append(f"error: {_E(str(error))}")
    timestamp = _E(local_time(message.timestamp))
    return (
        f'<div class="syft-chat-message" style="{_BUBBLE}; {_MINE if mine else _THEIRS}" '
        f'title="{_E(message.msg_id)}">'
        f'<div style="{_META}"><b>{_E(message.sender)}</b>{recipient} &middot; {timestamp}'
        f"{' &middot; ' + ' &middot; '.join(hints) if hints else ''}</div>"
        f'<div style="{_CONTENT}">{_E(message.content)}</div>'
        f"{''.join(_attachment_html(a) for a in message.attachments)}"
        f"{_metadata_html(message.metadata)}</div>"
    )


def history_html(messages: Iterable[ChatMessage], *, me: str | None = None) -> str:
    """A conversation (oldest first) as HTML; every user-supplied string is escaped."""
    items = list(messages)
    if not items:
        return f'<div class="syft-chat-history" style="{_BOX}"><i>no messages</i></div>'
    bubbles = "".join(f'<div style="display: flex">{message_html(m, me=me)}</div>' for m in items)
    count = f"{len(items)} message{'s' if len(items) != 1 else ''}"
    return (
        f'<div class="syft-chat-history" style="{_BOX}">'
        f'<div style="{_META}">{count}</div>{bubbles}</div>'
    )


class ChatHistory(list[ChatMessage]):
    """A list of messages that renders as a conversation in Jupyter.

    It is an ordinary ``list`` (``get_chat_history`` returns one); ``me``
    optionally names this datasite, to put its own messages on the right.
    A slice is a ``ChatHistory`` too.
    """

    def __init__(self, messages: Iterable[ChatMessage] = (), *, me: str | None = None) -> None:
        super().__init__(messages)
        self.me = me

    def _repr_html_(self) -> str:
        return history_html(self, me=self.me)

    @overload
    def __getitem__(self, index: SupportsIndex) -> ChatMessage: ...
    @overload
    def __getitem__(self, index: slice) -> ChatHistory: ...
    def __getitem__(self, index: SupportsIndex | slice) -> ChatMessage | ChatHistory:
        if isinstance(index, slice):
            return ChatHistory(super().__getitem__(index), me=self.me)
        return super().__getitem__(index)
