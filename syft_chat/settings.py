"""Tunable limits and timeouts of a client, with their defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChatSettings"]


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
    #: Seconds ``send_message`` waits for the recipient's confirmation by default.
    send_timeout: float = Field(default=15.0, gt=0)
    #: Lifetime of a request file, in seconds, written into the syft-rpc envelope.
    request_expiry: int = Field(default=24 * 60 * 60, gt=0)
    #: SQLite busy timeout in milliseconds (waits for a lock held by another process).
    db_busy_timeout_ms: int = Field(default=5000, ge=0)
