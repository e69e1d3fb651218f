"""Data models: the messages users see and the envelope that travels between datasites."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "AUTO_REPLY_KEY",
    "PROTOCOL_VERSION",
    "ChatMessage",
    "ChatResponse",
    "Direction",
    "Envelope",
    "MessageStatus",
    "describe_error",
    "is_auto_reply",
    "new_msg_id",
    "to_utc",
    "utcnow",
]

#: Version of the wire envelope. A receiver refuses envelopes with a newer major version.
PROTOCOL_VERSION = 1

#: Metadata key marking a message sent automatically (by a bot); bots never answer those.
AUTO_REPLY_KEY = "syft_chat.auto_reply"


def is_auto_reply(message: ChatMessage) -> bool:
    """Whether ``message`` was sent automatically by a bot."""
    return bool(message.metadata.get(AUTO_REPLY_KEY))


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(timezone.utc)


def to_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    A naive datetime is taken to be in the machine's local time (what
    ``datetime.now()`` returns), which is what a user passing ``since=datetime.now()
    - timedelta(days=1)`` means.
    """
    if value.tzinfo is None:
        value = value.astimezone()  # interpret as local time
    return value.astimezone(timezone.utc)


def new_msg_id() -> str:
    """A fresh, globally unique message id."""
    return str(uuid.uuid4())


class MessageStatus(str, Enum):
    """Where a message is. Stored in the ``status`` column of ``messages``."""

    QUEUED = "queued"  #: stored locally, not yet handed to the transport
    SENT = "sent"  #: request written for the recipient, no confirmation yet
    DELIVERED = "delivered"  #: the recipient confirmed it stored the message
    FAILED = "failed"  #: the recipient refused it, or it could not be sent; see ``error``
    READ = "read"  #: the recipient said it was read (needs a read-receipt plugin)
    RECEIVED = "received"  #: an incoming message, stored

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Direction(str, Enum):
    """Whether a stored message was sent or received by this datasite."""

    OUTGOING = "out"
    INCOMING = "in"


class ChatMessage(BaseModel):
    """One chat message, as returned by ``get_chat_history`` and given to listeners.

    The first seven fields are the seed's, and the column names of the
    ``messages`` table. ``recipient`` and ``status`` are filled in for messages
    read from the local database.
    """

    model_config = ConfigDict(frozen=True)

    msg_id: str = Field(default_factory=new_msg_id)
    sender: str
    content: str
    timestamp: datetime = Field(default_factory=utcnow)
    thread_id: str | None = None
    reply_to: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    recipient: str | None = None
    status: MessageStatus | None = None
    seq: int | None = None
    error: str | None = None
    #: ``message`` for chat messages; ``edit``, ``delete`` or ``reaction`` for the
    #: messages that act on another one (named by ``target``)
    kind: str = "message"
    target: str | None = None
    deleted: bool = False
    edited_at: datetime | None = None
    #: ``{emoji: [users...]}``, filled in by ``get_chat_history``
    reactions: dict[str, list[str]] = Field(default_factory=dict)
    #: the group conversation this message belongs to (``None``: one-to-one)
    group_id: str | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    def __str__(self) -> str:
        return f"[{self.timestamp:%Y-%m-%d %H:%M:%S}] {self.sender}: {self.content}"

    def _repr_html_(self) -> str:
        """Jupyter display: one chat bubble, every user string HTML-escaped."""
        from syft_chat.display import message_html

        return message_html(self)


class ChatResponse(BaseModel):
    """What ``send_message`` returns: the recipient's confirmation."""

    model_config = ConfigDict(frozen=True)

    status: str
    message_id: str
    timestamp: datetime = Field(default_factory=utcnow)

    @field_validator("timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return to_utc(value)


class Envelope(BaseModel):
    """The JSON body of a chat request on the wire (inside syft-rpc's request file).

    ``kind`` is ``"message"`` for a chat message; ``"edit"``, ``"delete"`` and
    ``"reaction"`` act on the message named by ``target`` (an edit's
    ``content`` is the new text, a reaction's the emoji, with
    ``metadata["op"]`` ``"add"`` or ``"remove"``).
    """

    model_config = ConfigDict(extra="ignore")

    v: int = PROTOCOL_VERSION
    kind: Literal["message", "edit", "delete", "reaction", "group"] = "message"
    #: the group conversation (``None``: one-to-one)
    group_id: str | None = Field(default=None, max_length=128)
    #: the msg_id an edit / delete / reaction acts on
    target: str | None = Field(default=None, max_length=128)
    msg_id: str = Field(min_length=1, max_length=128)
    sender: str = Field(min_length=3, max_length=320)
    recipient: str = Field(min_length=3, max_length=320)
    content: str
    timestamp: datetime
    thread_id: str | None = Field(default=None, max_length=128)
    reply_to: str | None = Field(default=None, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: sender-side sequence number within the one-to-one conversation
    seq: int | None = Field(default=None, ge=1)
    #: the sender's lowest unconfirmed ``seq`` to this recipient: nothing below
    #: it will ever be (re)sent, so a receiver need not wait for it
    floor: int | None = Field(default=None, ge=1)

    @field_validator("timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @classmethod
    def from_message(
        cls, message: ChatMessage, recipient: str, floor: int | None = None
    ) -> Envelope:
        return cls(
            msg_id=message.msg_id,
            sender=message.sender,
            recipient=recipient,
            content=message.content,
            timestamp=message.timestamp,
            thread_id=message.thread_id,
            reply_to=message.reply_to,
            metadata=message.metadata,
            seq=message.seq,
            floor=floor,
            kind=message.kind,  # type: ignore[arg-type]  # validated by pydantic
            target=message.target,
            group_id=message.group_id,
        )

    def to_message(self, status: MessageStatus | None = None) -> ChatMessage:
        return ChatMessage(
            msg_id=self.msg_id,
            sender=self.sender,
            content=self.content,
            timestamp=self.timestamp,
            thread_id=self.thread_id,
            reply_to=self.reply_to,
            metadata=self.metadata,
            recipient=self.recipient,
            status=status,
            seq=self.seq,
            kind=self.kind,
            target=self.target,
            group_id=self.group_id,
        )


def describe_error(exc: BaseException) -> str:
    """A short description of a parse error that never echoes the input back.

    Error replies go to whoever wrote the request; pydantic's default message
    quotes the input, which would let a crafted file read back local data.
    """
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_input=False, include_url=False)[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return "; ".join(parts) or "invalid"
    if isinstance(exc, UnicodeError):
        return "not valid UTF-8"
    text = str(exc).splitlines()
    return text[0][:200] if text else type(exc).__name__
