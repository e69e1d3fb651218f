"""The schema of the built-in SQLite store and its migrations.

``MIGRATIONS[n]`` upgrades a file from schema version ``n`` to ``n + 1``; the
store applies the missing ones in one write transaction when it opens a file.
Old migrations never change what they do to a file they accept: a new schema is a
new function. (``_migrate_0_to_1`` learned to adopt the original library's own table,
which it used to refuse; every file it migrated before migrates the same.)
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from syft_chat.errors import StorageError
from syft_chat.models import to_utc, utcnow
from syft_chat.plugins.sqlite.rows import parse_ts as _parse_ts
from syft_chat.plugins.sqlite.summary import CONVERSATIONS_DDL, UNREAD_INDEX_SQL
from syft_chat.plugins.sqlite.summary import rebuild as rebuild_summary

__all__ = ["LEGACY_META_KEY", "MIGRATIONS", "SCHEMA_VERSION", "legacy_metadata"]

#: Version of the schema this code writes; ``schema_version.version`` in the file.
SCHEMA_VERSION = 8
_SEED_COLUMNS = ("msg_id", "sender", "content", "timestamp", "thread_id", "reply_to", "metadata")
#: The original library's table (SQLAlchemy reserves ``metadata``, so it named it ``meta_data``).
_ORIGINAL_COLUMNS = (*_SEED_COLUMNS[:-1], "meta_data")
#: The metadata key that keeps the original library's ``meta_data`` text when it cannot
#: be read as a literal (a ``repr`` of a datetime, say); the entries that could be read
#: are kept beside it.
LEGACY_META_KEY = "syft_chat.legacy_meta_data"
#: ``meta_data`` text longer than this is not parsed as a Python literal (``ast.parse``
#: takes some 300 bytes of memory per character of a list display: 9 MB took 3 GB); it
#: is kept as it is under :data:`LEGACY_META_KEY`. JSON text of any length is read.
_LITERAL_MAX_CHARS = 256 * 1024


def _fmt_ts(value: datetime) -> str:
    """``value`` as fixed-format UTC text (naive means local time)."""
    return to_utc(value).isoformat(sep=" ", timespec="microseconds")


_CREATE_MESSAGES = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    recipient TEXT,
    peer TEXT,
    content TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    thread_id TEXT,
    reply_to TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    status TEXT NOT NULL,
    error TEXT,
    updated_at TEXT NOT NULL
)"""
_CREATE_INDEXES = (
    "CREATE INDEX ix_messages_peer_ts ON messages (peer, timestamp)",
    "CREATE INDEX ix_messages_thread_ts ON messages (thread_id, timestamp)",
    "CREATE INDEX ix_messages_ts ON messages (timestamp)",
    "CREATE INDEX ix_messages_direction_status ON messages (direction, status)",
)


# --------------------------------------------------------------------------- migrations


class _Unreadable(Exception):
    """A ``meta_data`` value that is no JSON-compatible literal."""


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    raise TypeError(type(value).__name__)


def _as_json(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples and sets become lists), or raise _Unreadable."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _Unreadable from exc


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression (``ast.literal_eval``: nothing is run)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise _Unreadable from exc


def legacy_metadata(text: Any) -> dict[str, Any]:
    """The metadata dict of the original library's ``meta_data`` column.

    The original stored ``str(dict)`` (and read it back by evaluating it); this reads
    it without running anything: JSON, else an ``ast.literal_eval`` of the literal.
    When the whole text is no readable literal (a ``repr`` holding a datetime, or
    code), the entries of its dict display that are literals are kept, and the text
    itself under :data:`LEGACY_META_KEY`; text over 256 KiB that is no JSON is only
    kept (not parsed). ``None`` (NULL or ``'None'``) is ``{}``.
    """
    if text is None:
        return {}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text)
    if not text.strip():
        return {}
    try:
        loaded = json.loads(text)
    except (ValueError, RecursionError):
        pass
    else:
        if loaded is None:
            return {}
        return loaded if isinstance(loaded, dict) else {LEGACY_META_KEY: text}
    if len(text) > _LITERAL_MAX_CHARS:
        return {LEGACY_META_KEY: text}
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return {LEGACY_META_KEY: text}
    try:
        value = _as_json(_literal(node))
    except _Unreadable:
        pass
    else:
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
    kept: dict[str, Any] = {}
    if isinstance(node, ast.Dict):
        for key, item in zip(node.keys, node.values, strict=True):
            if key is None:  # a ``**mapping`` display
                continue
            try:
                kept.update(_as_json({_literal(key): _literal(item)}))
            except (_Unreadable, TypeError):  # TypeError: an unhashable key
                continue
    kept[LEGACY_META_KEY] = text
    return kept


def _adopt_original(db: Any, owner: str, now: str) -> None:
    """Copy the original library's rows (in ``_messages_v0``) into the v1 table.

    Its conversation partner is only in ``meta_data``: an outgoing message's peer is
    the ``recipient`` there (none if it has none), an incoming one's its sender.
    Every row is kept; a missing or repeated ``msg_id`` gets one made from its row.
    Text that is not valid UTF-8 (another tool wrote it) is read with U+FFFD in place
    of the bytes it cannot decode, rather than making the file unopenable.
    """
    conn = db.connection()
    factory = conn.text_factory
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    try:
        rows = db.execute_sql(
            "SELECT rowid, msg_id, sender, content, timestamp, thread_id, reply_to, meta_data"
            " FROM _messages_v0 ORDER BY rowid"
        ).fetchall()
    finally:
        conn.text_factory = factory
    seen: set[str] = set()
    for rowid, msg_id, sender, content, stamp, thread_id, reply_to, meta_text in rows:
        if not isinstance(msg_id, str) or not msg_id:
            msg_id = f"legacy-{rowid}"
        if msg_id in seen:
            msg_id = f"{msg_id}-legacy-{rowid}"
        seen.add(msg_id)
        metadata = legacy_metadata(meta_text)
        named = metadata.get("recipient")
        named = named if isinstance(named, str) and named else None
        sender = "" if sender is None else sender
        if sender == owner:
            recipient, peer, direction, status = named, named, "out", "delivered"
        else:
            recipient, peer, direction, status = owner, sender or None, "in", "received"
        db.execute_sql(
            "INSERT INTO messages (msg_id, sender, recipient, peer, content, timestamp,"
            " thread_id, reply_to, metadata, direction, status, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                msg_id,
                sender,
                recipient,
                peer,
                "" if content is None else content,
                _fmt_ts(_parse_ts("" if stamp is None else stamp)),
                thread_id,
                reply_to,
                json.dumps(metadata, ensure_ascii=False),
                direction,
                status,
                now,
            ),
        )


def _migrate_0_to_1(db: Any, owner: str) -> None:
    """Create the v1 schema, adopting a seed ``messages`` table if there is one.

    The seed's table has ``msg_id`` as primary key and no insertion-order column;
    ``id INTEGER PRIMARY KEY AUTOINCREMENT`` cannot be added with ALTER TABLE, so
    the table is rebuilt (the SQLite-documented way) keeping rowid order. The
    original library's own table (``meta_data`` holding ``str(dict)``, the partner
    of an outgoing message only in it) is adopted by :func:`_adopt_original`.
    """
    legacy = {row[1] for row in db.execute_sql("PRAGMA table_info(messages)").fetchall()}
    original = False
    if legacy:
        missing = sorted(set(_SEED_COLUMNS) - legacy)
        original = bool(missing) and set(_ORIGINAL_COLUMNS) <= legacy
        if missing and not original:
            raise StorageError(f"its 'messages' table lacks {missing}: not a chat database")
        db.execute_sql("ALTER TABLE messages RENAME TO _messages_v0")
    db.execute_sql(_CREATE_MESSAGES)
    if original:
        _adopt_original(db, owner, _fmt_ts(utcnow()))
    elif legacy:
        db.execute_sql(
            "INSERT INTO messages (msg_id, sender, recipient, peer, content, timestamp,"
            " thread_id, reply_to, metadata, direction, status, updated_at)"
            " SELECT msg_id, COALESCE(sender, ''), CASE WHEN sender = ?1 THEN NULL ELSE ?1 END,"
            " CASE WHEN sender = ?1 THEN NULL ELSE sender END, COALESCE(content, ''),"
            " COALESCE(timestamp, ''), thread_id, reply_to, COALESCE(metadata, '{}'),"
            " CASE WHEN sender = ?1 THEN 'out' ELSE 'in' END,"
            " CASE WHEN sender = ?1 THEN 'delivered' ELSE 'received' END, ?2"
            " FROM _messages_v0 ORDER BY rowid",
            (owner, _fmt_ts(utcnow())),
        )
    if legacy:
        rows = db.execute_sql("SELECT id, timestamp FROM messages").fetchall()
        for row_id, stamp in rows:  # normalize to the fixed UTC format
            fixed = _fmt_ts(_parse_ts(stamp))
            if fixed != stamp:
                db.execute_sql("UPDATE messages SET timestamp = ? WHERE id = ?", (fixed, row_id))
        db.execute_sql("DROP TABLE _messages_v0")
    for statement in _CREATE_INDEXES:
        db.execute_sql(statement)
    db.execute_sql(
        "CREATE TABLE schema_version"
        " (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
    )


def _migrate_1_to_2(db: Any, owner: str) -> None:
    """Reliable delivery: sequence numbers, request tracking, notification state, failures."""
    del owner
    for column in (
        "seq INTEGER",  # sender-side sequence within the one-to-one conversation
        "request_id TEXT",  # the transport request last written for an outgoing message
        "attempts INTEGER NOT NULL DEFAULT 0",  # how many requests were written
        "notified INTEGER NOT NULL DEFAULT 1",  # incoming: listeners and bots were told
        "read_at TEXT",  # incoming: when the user marked it read
    ):
        db.execute_sql(f"ALTER TABLE messages ADD COLUMN {column}")
    db.execute_sql("CREATE INDEX ix_messages_peer_dir_seq ON messages (peer, direction, seq)")
    db.execute_sql("CREATE INDEX ix_messages_notified ON messages (notified)")
    db.execute_sql(
        "CREATE TABLE failed_messages ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " received_at TEXT NOT NULL,"
        " sender TEXT NOT NULL,"
        " msg_id TEXT,"
        " reason TEXT NOT NULL,"
        " raw BLOB)"
    )
    db.execute_sql("CREATE INDEX ix_failed_sender ON failed_messages (sender, received_at)")


def _migrate_2_to_3(db: Any, owner: str) -> None:
    """Conversations beyond one-to-one: message kinds, edits, reactions, search, contacts.

    ``kind`` is ``message`` for chat messages; edits, deletions and reactions
    are delivered as messages of their own kind naming their ``target``, and
    keep their delivery record here too (history and search show only
    ``kind = 'message'``). ``conversation`` is the peer's email for a
    one-to-one conversation. The full-text index is kept in sync by triggers,
    so it can never disagree with ``content`` (a deleted message's text leaves
    both).
    """
    del owner
    for column in (
        "kind TEXT NOT NULL DEFAULT 'message'",
        "target TEXT",  # the msg_id an edit / delete / reaction acts on
        "conversation TEXT",
        "deleted INTEGER NOT NULL DEFAULT 0",
        "edited_at TEXT",
        "applied INTEGER NOT NULL DEFAULT 1",  # incoming edit/delete/reaction: 0 = waiting
        "edit_seq INTEGER",  # the sender's sequence number of the edit now shown
    ):
        db.execute_sql(f"ALTER TABLE messages ADD COLUMN {column}")
    db.execute_sql("UPDATE messages SET conversation = peer")
    db.execute_sql(
        "CREATE INDEX ix_messages_conversation ON messages (conversation, kind, timestamp, id)"
    )
    db.execute_sql("CREATE INDEX ix_messages_target ON messages (target, applied)")
    db.execute_sql(UNREAD_INDEX_SQL)  # unread counts of the conversation list
    db.execute_sql(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        " content, content='messages', content_rowid='id', tokenize='unicode61')"
    )
    db.execute_sql(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages"
        " WHEN new.kind = 'message' AND new.deleted = 0 BEGIN"
        " INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END"
    )
    db.execute_sql(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages"
        " WHEN old.kind = 'message' AND old.deleted = 0 BEGIN"
        " INSERT INTO messages_fts (messages_fts, rowid, content)"
        " VALUES ('delete', old.id, old.content); END"
    )
    # one trigger, two steps in order (SQLite runs separate triggers newest first,
    # which would drop the new text right after indexing it)
    db.execute_sql(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, deleted ON messages BEGIN"
        " INSERT INTO messages_fts (messages_fts, rowid, content)"
        " SELECT 'delete', old.id, old.content WHERE old.kind = 'message' AND old.deleted = 0;"
        " INSERT INTO messages_fts (rowid, content)"
        " SELECT new.id, new.content WHERE new.kind = 'message' AND new.deleted = 0; END"
    )
    db.execute_sql(
        "INSERT INTO messages_fts (rowid, content)"
        " SELECT id, content FROM messages WHERE kind = 'message' AND deleted = 0"
    )
    db.execute_sql(
        "CREATE TABLE message_edits ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " msg_id TEXT NOT NULL,"  # the edited message
        " content TEXT NOT NULL,"  # the text it had before this edit
        " replaced_at TEXT NOT NULL,"
        " edit_id TEXT,"  # the edit message that replaced it
        " seq INTEGER)"  # the version's place in the sender's order
    )
    db.execute_sql("CREATE INDEX ix_message_edits_msg ON message_edits (msg_id, id)")
    db.execute_sql(
        "CREATE TABLE reactions ("
        " msg_id TEXT NOT NULL, user TEXT NOT NULL, emoji TEXT NOT NULL,"
        " created_at TEXT NOT NULL,"
        " present INTEGER NOT NULL DEFAULT 1,"  # 0: taken back (kept to order late arrivals)
        " op_seq INTEGER,"  # the reacting datasite's sequence number of the last change
        " PRIMARY KEY (msg_id, user, emoji))"
    )
    db.execute_sql(
        "CREATE TABLE contacts ("
        " email TEXT PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('allowed', 'blocked')),"
        " updated_at TEXT NOT NULL)"
    )
    db.execute_sql("CREATE TABLE chat_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # a group's state is the member list of its latest membership change
    # (ordered by (version, msg_id), the same on every member: they converge)
    db.execute_sql(
        "CREATE TABLE groups ("
        " group_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_by TEXT NOT NULL,"
        " members TEXT NOT NULL,"  # JSON list
        " version INTEGER NOT NULL DEFAULT 0,"  # one more than the change it was based on
        " changed_at TEXT NOT NULL, change_id TEXT NOT NULL)"
    )


def _migrate_3_to_4(db: Any, owner: str) -> None:
    """Group authority: a roster entry per datasite (member, admin, version of its last
    change), merged entry by entry so that concurrent changes are all kept.

    Existing groups get one entry per member at version 1; their ``version`` becomes the
    sum of the entries' versions, as for new groups.
    """
    del owner
    db.execute_sql("ALTER TABLE groups ADD COLUMN roster TEXT NOT NULL DEFAULT '{}'")
    rows = db.execute_sql("SELECT group_id, members, change_id FROM groups").fetchall()
    for group_id, members, change_id in rows:
        try:
            people = [m for m in json.loads(members) if isinstance(m, str)]
        except ValueError:
            people = []
        roster = {m: {"member": True, "admin": False, "v": 1, "change": change_id} for m in people}
        db.execute_sql(
            "UPDATE groups SET roster = ?, version = ? WHERE group_id = ?",
            (json.dumps(roster), len(roster), group_id),
        )


#: The ``messages`` table of schema 5: the columns of schema 4, in their order, then
#: ``target_sender``; a message is identified by ``(msg_id, sender)``, not by ``msg_id``.
_MESSAGES_V5 = """
CREATE TABLE _messages_v5 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT,
    peer TEXT,
    content TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    thread_id TEXT,
    reply_to TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    status TEXT NOT NULL,
    error TEXT,
    updated_at TEXT NOT NULL,
    seq INTEGER,
    request_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 1,
    read_at TEXT,
    kind TEXT NOT NULL DEFAULT 'message',
    target TEXT,
    conversation TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    edited_at TEXT,
    applied INTEGER NOT NULL DEFAULT 1,
    edit_seq INTEGER,
    target_sender TEXT,
    UNIQUE (msg_id, sender)
)"""
_V4_COLUMNS = (
    "id, msg_id, sender, recipient, peer, content, timestamp, thread_id, reply_to, metadata,"
    " direction, status, error, updated_at, seq, request_id, attempts, notified, read_at, kind,"
    " target, conversation, deleted, edited_at, applied, edit_seq"
)
#: the indexes of schemas 1 to 3 (``ix_messages_unread`` is ``UNREAD_INDEX_SQL``)
_V4_INDEXES = (
    *_CREATE_INDEXES,
    "CREATE INDEX ix_messages_peer_dir_seq ON messages (peer, direction, seq)",
    "CREATE INDEX ix_messages_notified ON messages (notified)",
    "CREATE INDEX ix_messages_conversation ON messages (conversation, kind, timestamp, id)",
    "CREATE INDEX ix_messages_target ON messages (target, applied)",
    UNREAD_INDEX_SQL,
)
#: the full-text index's triggers, exactly as schema 3 made them
_FTS_TRIGGERS = (
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages"
    " WHEN new.kind = 'message' AND new.deleted = 0 BEGIN"
    " INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages"
    " WHEN old.kind = 'message' AND old.deleted = 0 BEGIN"
    " INSERT INTO messages_fts (messages_fts, rowid, content)"
    " VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, deleted ON messages BEGIN"
    " INSERT INTO messages_fts (messages_fts, rowid, content)"
    " SELECT 'delete', old.id, old.content WHERE old.kind = 'message' AND old.deleted = 0;"
    " INSERT INTO messages_fts (rowid, content)"
    " SELECT new.id, new.content WHERE new.kind = 'message' AND new.deleted = 0; END",
)


def _migrate_4_to_5(db: Any, owner: str) -> None:
    """Message ids are per sender: a message is identified by ``(msg_id, sender)``.

    ``messages.msg_id UNIQUE`` let anyone claim an id first (copy someone else's message
    id into a message of one's own, and the real one was refused for good). SQLite cannot
    drop a constraint, so the table is rebuilt (the SQLite-documented way: a new table,
    the rows copied with their ``id``, the old one dropped, the new one renamed, its
    indexes and the full-text triggers made again as schema 3 made them; the FTS5 index
    stays valid, as every ``id`` and ``content`` is kept). ``target_sender`` names the
    sender of the message an edit, deletion or reaction acts on (``NULL``: not said).

    The earlier texts (``message_edits.sender``) and reactions (``reactions.author``) of a
    message are kept per ``(msg_id, sender)`` too; existing rows get the sender of the one
    message their ``msg_id`` named (unique until now).
    """
    del owner
    db.execute_sql(_MESSAGES_V5)
    db.execute_sql(
        f"INSERT INTO _messages_v5 ({_V4_COLUMNS}) SELECT {_V4_COLUMNS} FROM messages ORDER BY id"
    )
    for trigger in ("messages_fts_insert", "messages_fts_delete", "messages_fts_update"):
        db.execute_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    db.execute_sql("DROP TABLE messages")  # (its indexes go with it)
    db.execute_sql("ALTER TABLE _messages_v5 RENAME TO messages")
    for statement in (*_V4_INDEXES, *_FTS_TRIGGERS):
        db.execute_sql(statement)
    db.execute_sql("ALTER TABLE message_edits ADD COLUMN sender TEXT")
    db.execute_sql(
        "UPDATE message_edits SET sender ="
        " (SELECT m.sender FROM messages AS m WHERE m.msg_id = message_edits.msg_id)"
    )
    db.execute_sql("DROP INDEX ix_message_edits_msg")
    db.execute_sql("CREATE INDEX ix_message_edits_msg ON message_edits (msg_id, sender, id)")
    db.execute_sql(
        "CREATE TABLE _reactions_v5 ("
        " msg_id TEXT NOT NULL, user TEXT NOT NULL, emoji TEXT NOT NULL,"
        " created_at TEXT NOT NULL,"
        " present INTEGER NOT NULL DEFAULT 1,"
        " op_seq INTEGER,"
        " author TEXT NOT NULL DEFAULT '',"  # the sender of the message reacted to
        " PRIMARY KEY (msg_id, author, user, emoji))"
    )
    db.execute_sql(
        "INSERT INTO _reactions_v5 (msg_id, user, emoji, created_at, present, op_seq, author)"
        " SELECT r.msg_id, r.user, r.emoji, r.created_at, r.present, r.op_seq,"
        " COALESCE((SELECT m.sender FROM messages AS m WHERE m.msg_id = r.msg_id), '')"
        " FROM reactions AS r"
    )
    db.execute_sql("DROP TABLE reactions")
    db.execute_sql("ALTER TABLE _reactions_v5 RENAME TO reactions")


#: Partial indexes of the start-up queries, so that they cost what they find, not the
#: history's length: the edits / reactions still waiting for their message (the stray
#: ones are deleted at start), the incoming messages not announced yet and the outgoing
#: ones not confirmed yet (a full-table scan each on a 1,000,000-message file: ~1.1 s).
#: ``where_sql`` writes ``applied``, ``notified`` and statuses as literals: SQLite uses them.
_V6_INDEXES = (
    "CREATE INDEX ix_messages_waiting ON messages (updated_at) WHERE applied = 0",
    "CREATE INDEX ix_messages_unannounced ON messages (peer, seq, id) WHERE notified = 0",
    "CREATE INDEX ix_messages_unconfirmed ON messages (id) WHERE status IN ('queued', 'sent')",
)


def _migrate_5_to_6(db: Any, owner: str) -> None:
    """Start-up without full-table scans: the partial indexes of :data:`_V6_INDEXES`."""
    del owner
    for statement in _V6_INDEXES:
        db.execute_sql(statement)


#: Schema 7's indexes: those no query needs dropped (the outbox and the announcer read
#: schema 6's partial indexes), the ones of rare values made partial. A message of a
#: 1,000,000-message file had ~400 bytes of secondary indexes.
_V7_INDEXES = (
    "DROP INDEX ix_messages_direction_status",  # -> ix_messages_unconfirmed
    "DROP INDEX ix_messages_notified",  # -> ix_messages_unannounced
    "DROP INDEX ix_messages_target",  # only edits, deletions, reactions and copies
    "CREATE INDEX ix_messages_target ON messages (target, applied) WHERE target IS NOT NULL",
    "DROP INDEX ix_messages_thread_ts",  # only messages in a thread
    "CREATE INDEX ix_messages_thread_ts ON messages (thread_id, timestamp)"
    " WHERE thread_id IS NOT NULL",
    # only incoming: the time of a sender's latest message, on every arrival (where_sql
    # writes the direction as a literal, so SQLite uses it)
    "DROP INDEX ix_messages_peer_ts",
    "CREATE INDEX ix_messages_peer_ts ON messages (peer, timestamp) WHERE direction = 'in'",
)


def _migrate_6_to_7(db: Any, owner: str) -> None:
    """The conversation list as a summary table kept by triggers (:mod:`.summary`), and
    fewer, smaller indexes (:data:`_V7_INDEXES`)."""
    del owner
    for statement in CONVERSATIONS_DDL:
        db.execute_sql(statement)
    rebuild_summary(db)
    for statement in _V7_INDEXES:
        db.execute_sql(statement)


def _migrate_7_to_8(db: Any, owner: str) -> None:
    """``messages.attachments``: the files shared with a message, a JSON list of
    :class:`~syft_chat.models.Attachment` (``'[]'`` for every existing row)."""
    del owner
    db.execute_sql("ALTER TABLE messages ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]'")


#: ``MIGRATIONS[n]`` upgrades a file from version ``n`` to ``n + 1``.
MIGRATIONS: list[Callable[[Any, str], None]] = [
    _migrate_0_to_1,
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
    _migrate_5_to_6,
    _migrate_6_to_7,
    _migrate_7_to_8,
]
assert len(MIGRATIONS) == SCHEMA_VERSION
