"""Rows of the ``sqlite`` store as models: the one conversion of every read.

The hot reads (history, pages, search) fetch plain tuples in :data:`READ_COLUMNS` order
and turn them into models with :func:`record_of_values` / :func:`message_of_values`.
The rows come from our own database, written by our own store through validated models,
so they are *trusted*: the models are built without running pydantic's validation
(:func:`trusted_message`, some 1 µs instead of 8-12 µs per message, which was ~40% of a
history page). What validation would fix is done here: timestamps become aware UTC
datetimes, enums their members, ``metadata`` a dict. A row another tool wrote with a
value the models would refuse (an unknown status or kind, a timestamp in another
format) takes the value validation would have given it, as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from syft_chat.interfaces import GROUP_PREFIX, Reaction, StoredMessage
from syft_chat.models import (
    Attachment,
    ChatMessage,
    Direction,
    MessageKind,
    MessageStatus,
    to_utc,
)

__all__ = [
    "READ_COLUMNS",
    "attachments_json",
    "message_of_row",
    "message_of_values",
    "parse_ts",
    "reaction_of_row",
    "reaction_of_values",
    "record_of_row",
    "record_of_values",
    "trusted_message",
]

#: The columns a stored message is read from, in the order the ``*_of_values``
#: functions unpack them.
READ_COLUMNS = (
    *("msg_id", "sender", "content", "timestamp", "thread_id", "reply_to", "metadata"),
    *("recipient", "status", "seq", "peer", "error", "kind", "target", "deleted", "edited_at"),
    *("conversation", "direction", "applied", "notified", "edit_seq", "request_id"),
    *("attempts", "read_at", "updated_at", "target_sender", "attachments"),
)
#: ``SELECT`` list of :data:`READ_COLUMNS`, qualified by ``m.`` (for joins).
READ_LIST = ", ".join(READ_COLUMNS)
READ_LIST_M = ", ".join(f"m.{c}" for c in READ_COLUMNS)

_STATUS = {s.value: s for s in MessageStatus}
_KIND = {k.value: k for k in MessageKind}
_DIRECTION = {d.value: d for d in Direction}
_UTC = timezone.utc
_GROUP_CUT = len(GROUP_PREFIX)
#: what ``ChatMessage(...)`` with every field but ``reactions`` records as set
_FIELDS_SET = frozenset(ChatMessage.model_fields) - {"reactions"}
_new = object.__new__
_fromiso = datetime.fromisoformat
_set = object.__setattr__


def parse_ts(value: Any) -> datetime:
    """Read a stored timestamp; legacy rows may hold naive ISO text or epoch seconds."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    try:
        return to_utc(datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))
    except ValueError:
        try:
            return datetime.fromtimestamp(float(value), timezone.utc)
        except (TypeError, ValueError, OverflowError):
            return datetime.fromtimestamp(0, timezone.utc)


def trusted_message(fields: dict[str, Any]) -> ChatMessage:
    """A :class:`ChatMessage` of ``fields`` (every field but ``reactions``, already of
    the field's type), without validation: what ``model_construct`` does, without its
    per-field default handling (tests/test_sqlite_store.py checks that it equals the
    validated model for every kind of row)."""
    fields["reactions"] = {}
    message = _new(ChatMessage)
    _set(message, "__dict__", fields)
    _set(message, "__pydantic_fields_set__", set(_FIELDS_SET))
    _set(message, "__pydantic_extra__", None)
    _set(message, "__pydantic_private__", None)
    return message


def _ts(value: Any) -> datetime:
    """A stored timestamp: the store's own fixed UTC text fast, anything else as
    :func:`parse_ts` reads it."""
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is _UTC:
                return parsed
    return parse_ts(value)


def _metadata(value: Any) -> dict[str, Any]:
    if value == "{}" or not value:
        return {}
    try:
        loaded = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _attachments(value: Any) -> list[Attachment]:
    """The attachments column (rows of older schemas have none); an entry that no longer
    reads is left out rather than making the message unreadable. Validated: the entries
    came from the wire (names are re-sanitised on every read)."""
    if value == "[]" or not value:
        return []
    try:
        loaded = json.loads(value)
    except (TypeError, ValueError):
        return []
    found = []
    for entry in loaded if isinstance(loaded, list) else []:
        try:
            found.append(Attachment.model_validate(entry))
        except ValueError:
            continue
    return found


def attachments_json(attachments: Sequence[Attachment]) -> str:
    """The ``attachments`` column's text for ``attachments``."""
    return json.dumps([a.model_dump(mode="json") for a in attachments], ensure_ascii=False)


def message_of_values(row: Sequence[Any]) -> ChatMessage:
    """A :class:`ChatMessage` from a tuple of :data:`READ_COLUMNS`."""
    stamp, edited, conversation = row[3], row[15], row[16]
    try:  # the store's own fixed UTC text, inline (the common case)
        timestamp = _fromiso(stamp)
        if timestamp.tzinfo is not _UTC:
            timestamp = parse_ts(stamp)
    except (TypeError, ValueError):
        timestamp = parse_ts(stamp)
    metadata = row[6]
    message = _new(ChatMessage)
    _set(
        message,
        "__dict__",
        {
            "msg_id": row[0],
            "sender": row[1],
            "content": row[2],
            "timestamp": timestamp,
            "thread_id": row[4],
            "reply_to": row[5],
            "metadata": {} if metadata == "{}" else _metadata(metadata),
            "recipient": row[7],
            "status": _STATUS.get(row[8]),
            "seq": row[9],
            "error": row[11],
            "kind": _KIND.get(row[12], MessageKind.MESSAGE),
            "target": row[13],
            "target_sender": row[25],
            "deleted": bool(row[14]),
            "edited_at": _ts(edited) if edited else None,
            "reactions": {},
            "attachments": _attachments(row[26]),
            "group_id": conversation[_GROUP_CUT:]
            if type(conversation) is str and conversation.startswith(GROUP_PREFIX)
            else None,
        },
    )
    _set(message, "__pydantic_fields_set__", set(_FIELDS_SET))
    _set(message, "__pydantic_extra__", None)
    _set(message, "__pydantic_private__", None)
    return message


def record_of_values(row: Sequence[Any]) -> StoredMessage:
    """A :class:`StoredMessage` from a tuple of :data:`READ_COLUMNS`."""
    applied, notified, read_at, updated = row[18], row[19], row[23], row[24]
    # a frozen dataclass's __init__ sets each field through object.__setattr__ (~2 us);
    # its __dict__ filled at once is the same object
    record = _new(StoredMessage)
    _set(
        record,
        "__dict__",
        {
            "message": message_of_values(row),
            "direction": _DIRECTION.get(row[17], Direction.INCOMING),
            "peer": row[10],
            "applied": True if applied is None else bool(applied),
            "notified": True if notified is None else bool(notified),
            "edit_seq": row[20],
            "request_id": row[21],
            "attempts": int(row[22] or 0),
            "read_at": _ts(read_at) if read_at else None,
            "updated_at": _ts(updated) if updated else None,
        },
    )
    return record


def _values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A mapping row as a :data:`READ_COLUMNS` tuple (the columns it lacks: defaults)."""
    values = [row.get(name) for name in READ_COLUMNS]
    if values[12] is None:  # kind
        values[12] = MessageKind.MESSAGE.value
    return tuple(values)


def message_of_row(row: Mapping[str, Any]) -> ChatMessage:
    """A :class:`ChatMessage` from a ``messages`` row as a mapping (the columns it lacks
    take defaults)."""
    return message_of_values(_values(row))


def record_of_row(row: Mapping[str, Any]) -> StoredMessage:
    """A :class:`StoredMessage` from a ``messages`` row as a mapping."""
    return record_of_values(_values(row))


def reaction_of_values(row: Sequence[Any]) -> Reaction:
    """A :class:`Reaction` from ``(msg_id, user, emoji, present, op_seq, created_at,
    author)``."""
    msg_id, user, emoji, present, op_seq, created_at, author = row
    return Reaction(msg_id, user, emoji, bool(present), op_seq, _ts(created_at), author or "")


def reaction_of_row(row: Mapping[str, Any]) -> Reaction:
    """A :class:`Reaction` from a ``reactions`` row."""
    return Reaction(
        row["msg_id"],
        row["user"],
        row["emoji"],
        bool(row["present"]),
        row["op_seq"],
        parse_ts(row["created_at"]),
        row.get("author") or "",
    )
