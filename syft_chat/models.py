"""Data models: the messages users see and the envelope that travels between datasites."""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

__all__ = [
    "AUTO_REPLY_KEY",
    "CLAIMED_AUTO_REPLY_KEY",
    "GROUP_NAME_MAX",
    "MAX_ATTACHMENTS",
    "PROTOCOL_VERSION",
    "WIRE_KINDS",
    "Attachment",
    "AttachmentState",
    "ChatMessage",
    "ChatResponse",
    "ContactMode",
    "ContactPolicy",
    "Direction",
    "Envelope",
    "Group",
    "MessageKind",
    "MessageStatus",
    "RosterEntry",
    "check_group_name",
    "claims_auto_reply",
    "describe_error",
    "is_auto_reply",
    "json_size",
    "new_msg_id",
    "strip_peer_claims",
    "to_utc",
    "utcnow",
]

#: Version of the wire envelope. A receiver refuses envelopes with a newer major version.
PROTOCOL_VERSION = 1

#: Metadata key marking a message as automatic (a bot's answer). It is this datasite's
#: judgement, never a peer's claim: the kernel sets it on its own bots' answers, and a
#: receiver moves a peer-sent one (and ``syft_chat.bot``) under :data:`CLAIMED_AUTO_REPLY_KEY`.
AUTO_REPLY_KEY = "syft_chat.auto_reply"
#: Metadata key of an incoming message holding what its sender *claimed*
#: (``{"auto_reply": ..., "bot": ...}``): shown as a claim, used only to keep bots quiet.
CLAIMED_AUTO_REPLY_KEY = "syft_chat.claimed_auto_reply"
#: the metadata keys a receiver never takes from a peer as they are
PEER_CLAIMS = {AUTO_REPLY_KEY: "auto_reply", "syft_chat.bot": "bot"}


def is_auto_reply(message: ChatMessage) -> bool:
    """Whether this datasite judged ``message`` automatic (its own bots' answers)."""
    return bool(message.metadata.get(AUTO_REPLY_KEY))


def claims_auto_reply(message: ChatMessage) -> bool:
    """Whether the sender of an incoming ``message`` says a bot wrote it (a claim only)."""
    claim = message.metadata.get(CLAIMED_AUTO_REPLY_KEY)
    return isinstance(claim, dict) and bool(claim.get("auto_reply"))


def strip_peer_claims(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` of an incoming message with the peer's bot label moved to a claim."""
    claim = {name: metadata[key] for key, name in PEER_CLAIMS.items() if key in metadata}
    kept = {
        k: v for k, v in metadata.items() if k not in PEER_CLAIMS and k != CLAIMED_AUTO_REPLY_KEY
    }
    if claim:
        kept[CLAIMED_AUTO_REPLY_KEY] = claim
    return kept


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


class MessageKind(str, Enum):
    """What a message is. Stored in the ``kind`` column of ``messages`` and sent on the wire.

    Each kind is declared once, with its validation, who may send it and how it is
    applied, in :mod:`syft_chat.messaging.kinds`; history and listeners see ``MESSAGE``
    only, the others act on a message or a group.
    """

    MESSAGE = "message"  #: a chat message
    EDIT = "edit"  #: new text for the message named by ``target`` (its sender only)
    DELETE = "delete"  #: erase the message named by ``target`` (its sender only)
    REACTION = "reaction"  #: an emoji on ``target``; ``metadata["op"]`` is add or remove
    GROUP = "group"  #: a membership change of ``group_id`` (the member list after it)
    #: the author's per-member delivery record of a group message (never on the wire,
    #: never shown to hooks or listeners: they see the group message itself)
    COPY = "fanout"
    #: the sender withdraws attachments of ``target`` (``metadata["attachments"]``: their
    #: ids; ``metadata["op"]``: ``"revoke"`` or ``"delete"``), its sender only
    ATTACHMENTS = "attachments"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @property
    def acts_on_message(self) -> bool:
        """Whether this kind acts on the message named by ``target``."""
        return self in (MessageKind.EDIT, MessageKind.DELETE, MessageKind.REACTION)


#: The kinds that travel between datasites.
WIRE_KINDS = frozenset(k for k in MessageKind if k is not MessageKind.COPY)


#: At most this many attachments per message (on send and on receive).
MAX_ATTACHMENTS = 32
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class AttachmentState(str, Enum):
    """Where an attachment is, as this datasite sees it (see ``docs/attachments.md``)."""

    PENDING = "pending"  #: not (fully) synced here yet
    AVAILABLE = "available"  #: present, and its size and SHA-256 match
    CORRUPT = "corrupt"  #: full size but another hash: never handed out
    REVOKED = "revoked"  #: the sender withdrew read access
    DELETED = "deleted"  #: the sender deleted it (or its message)

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Attachment(BaseModel):
    """A file shared with a message: it stays in the sender's datasite
    (``url``), readable by the message's recipients only.

    ``name`` is always sanitised (:func:`syft_chat.filenames.safe_name`), on
    send and on receive, so it never holds a path separator or control character.
    ``state`` is computed by this datasite (never taken from the wire).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    #: unique within its message (``a1``, ``a2``...)
    id: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    name: str
    size: int = Field(ge=0, lt=2**63)
    media_type: str = Field(default="application/octet-stream", max_length=127)
    sha256: str
    url: str = Field(min_length=1, max_length=2048)
    state: AttachmentState = AttachmentState.PENDING
    #: whether this datasite announced it available (local bookkeeping, never on the wire)
    announced: bool = False
    #: the verified local file, set when ``state`` is ``available`` (computed, never stored)
    local_path: str | None = Field(default=None, exclude=True)

    @field_validator("name", mode="before")
    @classmethod
    def _safe_name(cls, value: Any) -> str:
        from syft_chat.filenames import safe_name

        return safe_name(str(value) if value is not None else "")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower()
        if not _SHA256.match(value):
            raise ValueError("sha256 must be 64 hex digits")
        return value

    @field_validator("media_type")
    @classmethod
    def _media_type(cls, value: str) -> str:
        if not re.match(
            r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$", value
        ):
            return "application/octet-stream"
        return value.lower()

    def wire(self) -> dict[str, Any]:
        """What travels: everything but this datasite's state and bookkeeping."""
        return self.model_dump(mode="json", exclude={"state", "announced"})


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
    #: :attr:`MessageKind.MESSAGE` for chat messages; edits, deletions, reactions and
    #: group changes act on another message (``target``) or on a group
    kind: MessageKind = MessageKind.MESSAGE
    target: str | None = None
    #: the sender of ``target`` (message ids are per sender); ``None``: not said
    target_sender: str | None = None
    deleted: bool = False
    edited_at: datetime | None = None
    #: ``{emoji: [users...]}``, filled in by ``get_chat_history``
    reactions: dict[str, list[str]] = Field(default_factory=dict)
    #: the group conversation this message belongs to (``None``: one-to-one)
    group_id: str | None = None
    #: files shared with the message (see ``docs/attachments.md``); empty for most
    attachments: list[Attachment] = Field(default_factory=list)

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


#: the largest sequence number (SQLite's INTEGER is 64-bit)
_MAX_SEQ = 2**63 - 1


class Envelope(BaseModel):
    """The JSON body of a chat request on the wire (inside syft-rpc's request file).

    ``kind`` is ``"message"`` for a chat message; ``"edit"``, ``"delete"`` and
    ``"reaction"`` act on the message named by ``target`` (an edit's
    ``content`` is the new text, a reaction's the emoji, with
    ``metadata["op"]`` ``"add"`` or ``"remove"``).
    """

    model_config = ConfigDict(extra="ignore")

    v: int = PROTOCOL_VERSION
    kind: MessageKind = MessageKind.MESSAGE
    #: the group conversation (``None``: one-to-one)
    group_id: str | None = Field(default=None, max_length=128)
    #: the msg_id an edit / delete / reaction acts on
    target: str | None = Field(default=None, max_length=128)
    #: the sender of the message ``target`` names (message ids are per sender); sent by
    #: clients since schema 5, absent from older ones
    target_sender: str | None = Field(default=None, min_length=3, max_length=320)
    msg_id: str = Field(min_length=1, max_length=128)
    sender: str = Field(min_length=3, max_length=320)
    recipient: str = Field(min_length=3, max_length=320)
    content: str
    timestamp: datetime
    thread_id: str | None = Field(default=None, max_length=128)
    reply_to: str | None = Field(default=None, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: sender-side sequence number within the one-to-one conversation
    seq: int | None = Field(default=None, ge=1, le=_MAX_SEQ)
    #: the sender's lowest unconfirmed ``seq`` to this recipient: nothing below
    #: it will ever be (re)sent, so a receiver need not wait for it
    floor: int | None = Field(default=None, ge=1, le=_MAX_SEQ)
    #: the files shared with a chat message (older clients send none, and ignore them)
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)

    @field_validator("timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @field_serializer("attachments")
    def _wire_attachments(self, value: list[Attachment]) -> list[dict[str, Any]]:
        return [a.wire() for a in value]  # never this datasite's state or bookkeeping

    @field_validator("kind")
    @classmethod
    def _wire_kind(cls, value: MessageKind) -> MessageKind:
        if value not in WIRE_KINDS:
            raise ValueError(f"{value.value!r} is not a kind that travels")
        return value

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
            kind=message.kind,
            target=message.target,
            target_sender=message.target_sender,
            group_id=message.group_id,
            attachments=[Attachment(**a.wire()) for a in message.attachments],
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
            target_sender=self.target_sender,
            group_id=self.group_id,
            # the state is this datasite's to compute, never the sender's claim
            attachments=[Attachment(**a.wire()) for a in self.attachments],
        )


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON; raises ValueError for NaN / infinity."""
    return len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())


class RosterEntry(BaseModel):
    """One datasite's place in a group: whether it is a member, whether an admin, and
    the version of the last change to this entry (with that change's msg_id to order
    concurrent changes the same way everywhere)."""

    model_config = ConfigDict(frozen=True)

    member: bool
    admin: bool = False
    v: int = Field(ge=1, lt=2**31)
    change: str = Field(default="", max_length=128)

    def newer_than(self, other: RosterEntry | None) -> bool:
        return other is None or (self.v, self.change) > (other.v, other.change)


#: characters a group name may have
GROUP_NAME_MAX = 200
# control, format (zero-width, bidi overrides and isolates), surrogate, private-use,
# unassigned, line and paragraph separators: nothing a reader can see for what it is
_UNSEEN_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def check_group_name(name: object) -> str:
    """``name`` stripped, if it can name a group: 1 to :data:`GROUP_NAME_MAX` characters, none
    of them a control, format (bidi override, zero-width), private-use or unassigned
    character, or a line separator; else ``ValueError`` saying which character. Checked when
    a group is created here and when a peer's group change arrives."""
    if not isinstance(name, str) or not name.strip() or len(name) > GROUP_NAME_MAX:
        raise ValueError(f"a group name is 1 to {GROUP_NAME_MAX} characters")
    for char in name:
        if unicodedata.category(char) in _UNSEEN_IN_NAMES:
            raise ValueError(f"a group name cannot hold the invisible character U+{ord(char):04X}")
    return name.strip()


class Group(BaseModel):
    """A group as this datasite knows it.

    ``roster`` holds every datasite that was ever in it (an entry per datasite, merged
    entry by entry: see :mod:`syft_chat.features.groups`); ``members`` and ``admins``
    are the ones whose entry says so. The creator (``created_by``) owns the group.
    ``version`` is the sum of the entries' versions: it grows with every change seen.
    """

    model_config = ConfigDict(frozen=True)

    group_id: str
    name: str
    created_by: str
    members: tuple[str, ...]
    version: int
    changed_at: datetime
    #: the msg_id of the last membership change adopted
    change_id: str
    roster: dict[str, RosterEntry] = Field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.created_by

    @property
    def admins(self) -> tuple[str, ...]:
        return tuple(e for e, r in self.roster.items() if r.member and r.admin)

    def may_manage(self, who: str) -> bool:
        """Whether ``who`` may add and remove members (the owner and the admins)."""
        entry = self.roster.get(who)
        return entry is not None and entry.member and (who == self.created_by or entry.admin)


ContactMode = Literal["open", "contacts_only"]


class ContactPolicy(BaseModel):
    """Who may write to this datasite."""

    model_config = ConfigDict(frozen=True)

    mode: ContactMode = "open"
    allowed: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()

    def refuses(self, sender: str) -> str | None:
        """Why a message from ``sender`` is refused, or ``None`` to let it through.

        Blocks and allows hold canonical emails (:mod:`syft_chat.identity`); a sender
        that is not canonical is refused outright, so no other spelling slips past a block.
        """
        from syft_chat.identity import is_canonical

        if not is_canonical(sender):
            return "the sender is not a canonical datasite email"
        if sender in self.blocked:
            return "the sender is blocked"
        if self.mode == "contacts_only" and sender not in self.allowed:
            return "the recipient accepts messages from contacts only"
        return None


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
