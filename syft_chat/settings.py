"""Tunable limits and timeouts of a client, with their defaults."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DB_ENV", "ChatSettings", "default_db_path"]

#: The environment variable naming the message database when none is passed.
DB_ENV = "SYFT_CHAT_DB"


def default_db_path(email: str, app_name: str = "syft_chat") -> Path:
    """Where the Python API and the command line keep a datasite's messages by default:
    ``$SYFT_CHAT_DB`` if set, else ``~/.syft-chat/<email>/chat_messages.db``
    (``~/.syft-chat/<email>/<app>/chat_messages.db`` for an app other than ``syft_chat``).
    """
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    base = Path.home() / ".syft-chat" / email
    return (base if app_name == "syft_chat" else base / app_name) / "chat_messages.db"


class ChatSettings(BaseModel):
    """Settings of one :class:`~syft_chat.SyftChatClient`.

    Pass ``settings=ChatSettings(...)`` (or a dict) to the client to change them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Largest message content accepted, in UTF-8 bytes, on send and on receive.
    max_content_bytes: int = Field(default=64 * 1024, gt=0)
    #: Largest metadata dict accepted, in bytes of its JSON encoding.
    max_metadata_bytes: int = Field(default=16 * 1024, gt=0)
    #: Largest request file a receiver reads at all; bigger files are refused unread.
    max_request_bytes: int = Field(default=512 * 1024, gt=0)
    #: Seconds ``send_message`` waits for the recipient's confirmation by default;
    #: delivery goes on in the background after that.
    send_timeout: float = Field(default=5.0, ge=0)
    #: Seconds before an unconfirmed message is looked at again, at least: the first
    #: retry comes after ``max(retry_initial, retry_rtt_factor * round trip)``, where the
    #: round trip is the one observed for that peer (an average of recent confirmations);
    #: later retries double it...
    retry_initial: float = Field(default=10.0, gt=0)
    #: ...up to this many seconds (keep it well below ``request_expiry``). A retry finding
    #: the previous request still waiting (unanswered, not refused, and valid for at least
    #: ``retry_max`` more seconds) keeps it and only reschedules; otherwise it writes a
    #: fresh request (which is also how a request's expiry is renewed).
    retry_max: float = Field(default=300.0, gt=0)
    #: How many observed round trips to wait before the first retry (``0``: always
    #: ``retry_initial``).
    retry_rtt_factor: float = Field(default=3.0, ge=0)
    #: Peers whose answer folders are watched (each watch is a thread; a watch moves to
    #: another peer once nothing was sent to its own for 30 s). Answers from the others
    #: are looked for by one thread while something to them is unanswered:
    #: ``reply_sweep_seconds`` after a request, then less and less often (up to 1 s).
    reply_watches: int = Field(default=16, ge=1, le=1024)
    reply_sweep_seconds: float = Field(default=0.02, gt=0, le=60)
    #: ``list_available_users()`` answers from a cache: a new datasite folder shows at
    #: once, an existing datasite that starts or stops serving chat within this many
    #: seconds (re-checked in the background, only while someone keeps asking).
    discovery_refresh_seconds: float = Field(default=1.0, gt=0, le=3600)
    #: Threads announcing incoming messages (one conversation at a time each).
    listener_threads: int = Field(default=4, ge=1, le=64)
    #: Seconds a message waits for an earlier one of its conversation before
    #: it is announced anyway.
    order_gap_timeout: float = Field(default=60.0, gt=0)
    #: Seconds messages found waiting at start-up are held back so that a
    #: listener added right after ``client()`` still hears them (adding a
    #: listener or plugin ends the wait at once).
    startup_hold: float = Field(default=1.0, ge=0)
    #: Lifetime of a request file, in seconds, written into the syft-rpc envelope.
    request_expiry: int = Field(default=24 * 60 * 60, gt=0)
    #: Bytes of a refused request kept in ``failed_messages`` (the rest is dropped).
    failed_raw_bytes: int = Field(default=4096, ge=0)
    #: Days an edit / deletion / reaction waits for the message it names before
    #: it is forgotten (checked at start-up).
    waiting_action_days: int = Field(default=7, ge=1)
    #: Rows kept in ``failed_messages``; older ones are pruned.
    failed_messages_kept: int = Field(default=10_000, ge=1)
    #: Incoming messages one sender may send per minute (a minute's worth may come at
    #: once); beyond that it is answered 429 "send again later", so that a flood from one
    #: sender does not delay the others.
    sender_messages_per_minute: int = Field(default=600, ge=1)
    #: Incoming request bytes one sender may send per minute (as above).
    sender_bytes_per_minute: int = Field(default=8 * 1024 * 1024, ge=1)
    #: Whether a confirmation ("delivered", on the sender's side) means the message survives
    #: a power cut, not only a crash of the process: commits are synced to disk (SQLite
    #: ``synchronous=FULL`` in WAL mode) and response files are ``fsync``-ed (file, then
    #: folder) before they are in place. ``False`` (``synchronous=NORMAL``, no ``fsync``) is
    #: faster; a power cut may then lose the last messages confirmed.
    durable: bool = True
    #: Largest file that may be attached, in bytes (checked before anything is copied).
    max_attachment_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    #: Largest total of one message's attachments, in bytes.
    max_message_attachment_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    #: Largest total of the attachments one sends in one conversation, in bytes
    #: (deleted messages' attachments no longer count).
    max_conversation_attachment_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    #: Seconds between two looks at incoming attachments still pending (a cheap ``stat``
    #: each; a file is hashed once, when it is whole).
    attachment_check_interval: float = Field(default=1.0, gt=0)
    #: Seconds an incoming attachment that never arrives whole is watched (7 days); then
    #: it is no longer announced (its state is still computed whenever it is read).
    attachment_watch_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    #: At most this many incoming messages' attachments are watched at once; past it, the
    #: oldest watched is dropped (as if its time had run out).
    attachment_watch_max: int = Field(default=1000, ge=1)
    #: SQLite busy timeout in milliseconds (waits for a lock held by another process).
    db_busy_timeout_ms: int = Field(default=5000, ge=0)
