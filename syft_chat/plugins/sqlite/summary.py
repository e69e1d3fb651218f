"""The conversation list of the ``sqlite`` store: one summary row per conversation.

``conversations`` (schema 7) holds, for every value of ``messages.conversation``, the
newest chat message (``last_id``, ``last_ts``: the largest ``(timestamp, id)`` of
``kind = 'message'``), the newest row of any kind (``any_ts``: a group's membership
changes) and the number of unread messages (incoming chat messages, not deleted,
``read_at`` NULL). Triggers on ``messages`` keep it in step inside the very statement
that changes a message, so it is updated in the same transaction as every insert,
update, read-mark and delete (including raw SQL run by hand on the file), and can never
disagree with the table. A first page of the list then reads ``limit`` rows of an
index instead of visiting every conversation (10,000 peers: 395 ms -> well under 5 ms).

The triggers cost what a change touches: an insert is one upsert; a read mark or a
deletion flag one counter update; deleting a conversation's newest message looks its
new newest up in ``ix_messages_conversation``. Changing a row's ``conversation``,
``kind``, ``direction`` or ``timestamp`` (which the library never does) recounts the
conversations involved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from syft_chat.errors import InvalidMessageError
from syft_chat.features.views import Conversation
from syft_chat.interfaces import GROUP_PREFIX
from syft_chat.models import ChatMessage, Direction, MessageKind
from syft_chat.plugins.sqlite.queries import Fetch, Row, Run, check_limit, ts_text
from syft_chat.plugins.sqlite.rows import READ_LIST_M, message_of_values, parse_ts

__all__ = [
    "CONVERSATIONS_DDL",
    "SUMMARY_TABLE",
    "UNREAD_INDEX",
    "UNREAD_INDEX_SQL",
    "conversation_rows",
    "fallback_page",
    "make_conversation",
    "page_sql",
    "rebuild",
    "rows_by_id",
    "summary_page",
    "unread_source",
]

_MESSAGE = MessageKind.MESSAGE.value

SUMMARY_TABLE = "conversations"

#: 1 for an unread message of row ``r`` (``new`` or ``old``), else 0
_UNREAD = (
    "({r}.direction = 'in' AND {r}.kind = 'message' AND {r}.deleted = 0 AND {r}.read_at IS NULL)"
)
#: the newest chat message of conversation ``{c}``: ``(id, timestamp)``
_NEWEST = (
    "SELECT id, timestamp FROM messages WHERE conversation = {c} AND kind = 'message'"
    " ORDER BY timestamp DESC, id DESC LIMIT 1"
)
#: the summary rows of the conversations matching ``{where}``, counted from messages
_COUNT = (
    "INSERT INTO conversations (conversation, last_id, last_ts, any_ts, unread)"
    " SELECT c.conversation, l.id, l.timestamp, c.any_ts, c.unread FROM ("
    "  SELECT conversation, MAX(timestamp) AS any_ts,"
    f"  SUM({_UNREAD.format(r='messages')}) AS unread"
    "  FROM messages WHERE {where} GROUP BY conversation) AS c"
    " LEFT JOIN messages AS l ON l.id = ("
    + _NEWEST.format(c="c.conversation").replace("SELECT id, timestamp", "SELECT id")
    + ")"
)
_IS_NEWER = (
    "excluded.last_id IS NOT NULL AND (last_id IS NULL"
    " OR (excluded.last_ts, excluded.last_id) > (last_ts, last_id))"
)
#: what a change of these columns means for the list: a recount (never done by the library)
_MOVED = (
    "old.conversation IS NOT new.conversation OR old.kind IS NOT new.kind"
    " OR old.direction IS NOT new.direction OR old.timestamp IS NOT new.timestamp"
)

CONVERSATIONS_DDL = (
    "CREATE TABLE conversations ("
    " conversation TEXT PRIMARY KEY,"
    " last_id INTEGER,"  # the newest chat message (NULL: none, e.g. a group's changes only)
    " last_ts TEXT,"  # its timestamp
    " any_ts TEXT NOT NULL,"  # the newest row of any kind
    " unread INTEGER NOT NULL DEFAULT 0)",
    # the list's order: the newest activity first (ties: by conversation)
    "CREATE INDEX ix_conversations_recent ON conversations"
    " (COALESCE(last_ts, any_ts) DESC, conversation)",
    "CREATE TRIGGER conversations_insert AFTER INSERT ON messages"
    " WHEN new.conversation IS NOT NULL BEGIN"
    " INSERT INTO conversations (conversation, last_id, last_ts, any_ts, unread)"
    " VALUES (new.conversation,"
    "  CASE WHEN new.kind = 'message' THEN new.id END,"
    "  CASE WHEN new.kind = 'message' THEN new.timestamp END,"
    f"  new.timestamp, {_UNREAD.format(r='new')})"
    " ON CONFLICT (conversation) DO UPDATE SET"
    f"  last_id = CASE WHEN {_IS_NEWER} THEN excluded.last_id ELSE last_id END,"
    f"  last_ts = CASE WHEN {_IS_NEWER} THEN excluded.last_ts ELSE last_ts END,"
    "  any_ts = MAX(any_ts, excluded.any_ts),"
    "  unread = unread + excluded.unread;"
    " END",
    "CREATE TRIGGER conversations_delete AFTER DELETE ON messages"
    " WHEN old.conversation IS NOT NULL BEGIN"
    " DELETE FROM conversations WHERE conversation = old.conversation"
    "  AND NOT EXISTS (SELECT 1 FROM messages WHERE conversation = old.conversation);"
    f" UPDATE conversations SET unread = unread - {_UNREAD.format(r='old')}"
    "  WHERE conversation = old.conversation;"
    f" UPDATE conversations SET (last_id, last_ts) = ({_NEWEST.format(c='old.conversation')})"
    "  WHERE conversation = old.conversation AND last_id = old.id;"
    " UPDATE conversations SET any_ts ="
    "  (SELECT MAX(timestamp) FROM messages WHERE conversation = old.conversation)"
    "  WHERE conversation = old.conversation AND any_ts = old.timestamp;"
    " END",
    "CREATE TRIGGER conversations_read AFTER UPDATE OF read_at, deleted ON messages"
    f" WHEN new.conversation IS NOT NULL AND NOT ({_MOVED})"
    f" AND {_UNREAD.format(r='old')} != {_UNREAD.format(r='new')} BEGIN"
    " UPDATE conversations SET"
    f"  unread = unread + {_UNREAD.format(r='new')} - {_UNREAD.format(r='old')}"
    "  WHERE conversation = new.conversation;"
    " END",
    "CREATE TRIGGER conversations_moved"
    " AFTER UPDATE OF conversation, kind, direction, timestamp ON messages"
    f" WHEN {_MOVED} BEGIN"
    " DELETE FROM conversations WHERE conversation IN (old.conversation, new.conversation);"
    f" {_COUNT.format(where='conversation IN (old.conversation, new.conversation)')};"
    " END",
)


def rebuild(db: Any) -> None:
    """Fill ``conversations`` from ``messages`` (the migration: one pass over the table)."""
    db.execute_sql("DELETE FROM conversations")
    db.execute_sql(_COUNT.format(where="conversation IS NOT NULL"))


def page_sql(columns: str, *, after_position: bool) -> str:
    """One page of the list: the summary row, the newest chat message's ``columns``
    (``m.``-qualified; NULL when it has none), newest activity first. Parameters: with
    ``after_position``, the position ``(ts, conversation)`` the page starts after; then
    the limit. Conversations without a chat message are listed only for groups (a
    stranger's stray edits make no conversation)."""
    position = (
        " AND COALESCE(s.last_ts, s.any_ts) <= ?1"
        " AND (COALESCE(s.last_ts, s.any_ts) < ?1 OR s.conversation > ?2)"
        if after_position
        else ""
    )
    limit = "?3" if after_position else "?1"
    return (
        "SELECT s.conversation, COALESCE(s.last_ts, s.any_ts), s.unread, s.last_id,"
        f" {columns} FROM conversations AS s LEFT JOIN messages AS m ON m.id = s.last_id"
        f" WHERE (s.last_id IS NOT NULL OR s.conversation LIKE 'group:%'){position}"
        f" ORDER BY COALESCE(s.last_ts, s.any_ts) DESC, s.conversation LIMIT {limit}"
    )


# --------------------------------------------------------------------------- reading


#: A partial index that makes unread counts cost the number of unread messages instead
#: of a conversation's length (261 ms -> 0.4 ms for 100 conversations of 10,000 messages).
#: Used when the schema has it; the planner does not pick it by itself, hence INDEXED BY.
UNREAD_INDEX = "ix_messages_unread"
UNREAD_INDEX_SQL = (
    f"CREATE INDEX {UNREAD_INDEX} ON messages (conversation)"
    f" WHERE direction = '{Direction.INCOMING.value}' AND kind = '{_MESSAGE}'"
    " AND deleted = 0 AND read_at IS NULL"
)


def unread_source(run: Run) -> str:
    """``messages``, with the unread index forced if the schema has it."""
    found = run(
        "SELECT 1 AS x FROM sqlite_master WHERE type = 'index' AND name = ?"
        " AND NOT EXISTS (SELECT 1 FROM sqlite_temp_master WHERE name = 'messages')",
        [UNREAD_INDEX],
    )
    return f"messages INDEXED BY {UNREAD_INDEX}" if found else "messages"


def conversation_rows(run: Run) -> list[dict[str, Any]]:
    """One row per conversation: ``conversation``, ``last_id`` (its newest chat message's
    ``id``, or ``None``), ``last_ts`` (that message's timestamp, else the conversation's
    newest row of any kind) and ``unread`` (incoming chat messages, not deleted, not read),
    newest activity first.

    The distinct conversations are found by seeking the ``(conversation, ...)`` index
    once per conversation, not by scanning the table.
    """
    sql = (
        "WITH RECURSIVE convs(c) AS ("
        " SELECT MIN(conversation) FROM messages WHERE conversation IS NOT NULL"
        " UNION ALL"
        " SELECT (SELECT MIN(conversation) FROM messages WHERE conversation > convs.c)"
        " FROM convs WHERE convs.c IS NOT NULL)"
        " SELECT c AS conversation, last.id AS last_id,"
        " COALESCE(last.timestamp,"
        "  (SELECT MAX(timestamp) FROM messages WHERE conversation = c)) AS last_ts,"
        f" (SELECT COUNT(*) FROM {unread_source(run)}"
        f"  WHERE conversation = c AND direction = '{Direction.INCOMING.value}'"
        f"  AND kind = '{_MESSAGE}' AND deleted = 0 AND read_at IS NULL) AS unread"
        " FROM convs LEFT JOIN messages AS last ON last.id = ("
        "  SELECT id FROM messages"
        f"  WHERE conversation = c AND kind = '{_MESSAGE}'"
        "  ORDER BY timestamp DESC, id DESC LIMIT 1)"
        " WHERE c IS NOT NULL"  # a stranger's stray edits make no conversation; a group does
        f" AND (last.id IS NOT NULL OR c LIKE '{GROUP_PREFIX}%')"
        " ORDER BY last_ts DESC, c"
    )
    return run(sql, [])


def rows_by_id(run: Run, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The rows with these ``id``s, by id."""
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        for row in run(f"SELECT * FROM messages WHERE id IN ({marks})", chunk):
            out[int(row["id"])] = row
    return out


def _position(before: object) -> tuple[str, str]:
    """The list position ``(activity timestamp text, conversation id)`` of ``before``."""
    if not isinstance(before, Conversation) or before.updated_at is None:
        raise InvalidMessageError(
            "before must be a Conversation of the previous page (its last one), "
            f"got {type(before).__name__}"
        )
    return ts_text(before.updated_at), before.conversation_id


def summary_page(
    fetch: Fetch, *, limit: int | None = None, before: Conversation | None = None
) -> list[Conversation]:
    """A page of the conversation list from the summary table (schema 7, :mod:`.summary`):
    the newest activity first; ``limit`` ``None`` is every conversation."""
    n = -1 if limit is None else check_limit(limit)
    if before is None:
        rows = fetch(SUMMARY_FIRST, [n])
    else:
        rows = fetch(SUMMARY_AFTER, [*_position(before), n])
    return [
        Conversation.model_construct(
            conversation_id=r[0],
            peer=None if r[0].startswith(GROUP_PREFIX) else r[0],
            kind="group" if r[0].startswith(GROUP_PREFIX) else "direct",
            last_message=None if r[3] is None else message_of_values(r[4:]),
            unread=int(r[2] or 0),
            updated_at=parse_ts(r[1]),
        )
        for r in rows
    ]


def fallback_page(
    conversations: list[Conversation], *, limit: int | None, before: Conversation | None
) -> list[Conversation]:
    """A page of a whole list (a file older than schema 7, read as it is)."""
    n = None if limit is None else check_limit(limit)
    if before is not None:
        ts, conversation = _position(before)
        at = [
            (ts_text(c.updated_at), c.conversation_id) if c.updated_at else ("", "")
            for c in conversations
        ]
        conversations = [
            c
            for c, (t, i) in zip(conversations, at, strict=True)
            if t < ts or (t == ts and i > conversation)
        ]
    return conversations if n is None else conversations[:n]


def make_conversation(
    row: Row, last: ChatMessage | None, parse_ts: Callable[[Any], datetime]
) -> Conversation:
    """A :class:`Conversation` from a :func:`conversation_rows` row and its last message."""
    conversation_id = str(row["conversation"])
    group = conversation_id.startswith(GROUP_PREFIX)
    return Conversation(
        conversation_id=conversation_id,
        peer=None if group else conversation_id,
        kind="group" if group else "direct",
        last_message=last,
        unread=int(row["unread"] or 0),
        updated_at=parse_ts(row["last_ts"]) if row["last_ts"] else None,
    )


SUMMARY_FIRST = page_sql(READ_LIST_M, after_position=False)
SUMMARY_AFTER = page_sql(READ_LIST_M, after_position=True)
