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

from typing import Any

__all__ = ["CONVERSATIONS_DDL", "SUMMARY_TABLE", "page_sql", "rebuild"]

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
