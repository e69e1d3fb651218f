"""Group conversations, over the same delivery path as one-to-one messages.

SyftBox has no multicast: a group message is stored once by its author (the
row users see, ``conversation = 'group:<id>'``) and travels as one copy per
member (rows of kind ``fanout``, hidden from history), each a normal
one-to-one delivery with its own status: ``group_delivery(msg_id)`` shows
"delivered to 4 of 5". Membership changes are messages too (kind
``group``), carrying the whole member list after the change; every member
keeps the list of the latest change by ``(timestamp, msg_id)``, so all
members converge on the same list whatever order changes arrive in, also
after being offline.

Every group message names the membership change its author's view was based
on. A receiver that has not seen that change yet asks for it to be sent
again later (it is on its way); one that has, refuses a message from
someone who is not (or no longer) a member, with the reason recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from syft_chat.errors import InvalidMessageError, UnknownRecipientError
from syft_chat.models import ChatMessage, ChatResponse, Direction, MessageStatus

if TYPE_CHECKING:
    from syft_chat.interfaces import MessageStore, Transport
    from syft_chat.messaging.delivery import Outgoing
    from syft_chat.settings import ChatSettings

__all__ = [
    "CHANGE_KEY",
    "ClientGroups",
    "Group",
    "GroupChange",
    "check_group_change",
    "check_group_message",
    "fan_out",
    "group_status",
    "parse_change",
]

#: metadata key: the group version (membership change) a message's author had seen
CHANGE_KEY = "syft_chat.group_version"
FAILED = MessageStatus.FAILED
_MAX_MEMBERS = 256


class Group(BaseModel):
    """A group as this datasite knows it."""

    model_config = ConfigDict(frozen=True)

    group_id: str
    name: str
    created_by: str
    members: tuple[str, ...]
    version: int
    changed_at: datetime
    change_id: str


class GroupChange(BaseModel):
    """The content of a ``group`` message: the member list after the change."""

    op: Literal["create", "add", "remove", "leave"]
    name: str
    created_by: str
    members: list[str]
    #: one more than the version of the change its author had seen (create: 1)
    version: int = Field(default=1, ge=1)


def parse_change(message: ChatMessage) -> GroupChange:
    change = GroupChange.model_validate_json(message.content)
    if not 0 < len(change.members) <= _MAX_MEMBERS or len(set(change.members)) != len(
        change.members
    ):
        raise ValueError("a group has 1 to 256 distinct members")
    return change


def check_group_change(
    store: MessageStore, message: ChatMessage, actor: str, me: str
) -> tuple[int, str] | None:
    """Whether ``actor`` may make this membership change (``None``: yes)."""
    try:
        change = parse_change(message)
    except ValueError as exc:
        return 400, f"malformed group change: {exc}"
    current = store.group(message.group_id or "")
    if current is not None:
        if actor not in current.members:
            return 403, f"{actor} is not a member of group {current.group_id}"
        return None
    if me not in change.members and change.op != "remove":
        return 403, "a change of a group this datasite is not in"
    if actor not in change.members and change.op != "leave":
        return 403, f"{actor} is not a member of the group it changes"
    return None


def check_group_message(
    store: MessageStore, message: ChatMessage, actor: str
) -> tuple[int, str, bool] | None:
    """Whether a group chat message from ``actor`` is acceptable.

    ``None``: yes; else ``(code, reason, retry)`` where ``retry`` means "not
    yet" (the membership change it is based on has not arrived here).
    """
    based_on = message.metadata.get(CHANGE_KEY)
    group = store.group(message.group_id or "")
    if group is None or (isinstance(based_on, int) and group.version < based_on):
        return 425, "this member has not seen that group change yet; send again later", True
    if actor not in group.members:
        return 403, f"{actor} is not a member of group {group.group_id}", False
    return None


class _Sender(Protocol):
    email: str
    store: MessageStore
    transport: Transport
    _outgoing: Outgoing


class _Host(Protocol):
    email: str
    store: MessageStore
    transport: Transport
    settings: ChatSettings
    _outgoing: Outgoing

    def _check_open(self) -> None: ...
    def _validate_content(self, content: Any) -> str: ...
    def _validate_metadata(self, metadata: Any) -> dict[str, Any]: ...
    def _resolve_thread(
        self, thread_id: str | None, reply_to: str | None
    ) -> tuple[str | None, str | None]: ...


def _members(client: _Host, emails: Iterable[str], *, reachable: bool = True) -> list[str]:
    found = []
    for email in emails:
        if not isinstance(email, str) or "@" not in email:
            raise InvalidMessageError(f"not a datasite email: {email!r}")
        email = email.strip()
        if reachable and email != client.email and not client.transport.can_reach(email):
            raise UnknownRecipientError(f"{email} does not serve syft-chat in this workspace")
        if email not in found:
            found.append(email)
    return found


def fan_out(client: _Sender, record: ChatMessage, to: Iterable[str]) -> ChatMessage:
    """Store ``record`` (the author's row) and send one copy to each of ``to``."""
    client.store.add(record, direction=Direction.OUTGOING, peer=None, status=MessageStatus.SENT)
    for member in to:
        if member == client.email:
            continue
        copy = ChatMessage(
            msg_id=f"{record.msg_id}/{member}",
            sender=client.email,
            content="",
            recipient=member,
            kind="fanout",
            target=record.msg_id,
            group_id=record.group_id,
        )
        if not client.transport.can_reach(member):  # e.g. added by someone by mistake
            client.store.add(copy, direction=Direction.OUTGOING, peer=member, status=FAILED)
            continue
        client._outgoing.queue(copy, member)
        client._outgoing.attempt(copy.msg_id)
    return record


def _change(
    client: _Host,
    op: str,
    name: str,
    members: list[str],
    created_by: str,
    group_id: str,
    notify: Iterable[str],
) -> Group:
    """Record a membership change here and tell ``notify``."""
    current = client.store.group(group_id)
    version = current.version + 1 if current is not None else 1
    body = GroupChange.model_validate(
        {"op": op, "name": name, "created_by": created_by, "members": members, "version": version}
    )
    record = ChatMessage(
        sender=client.email,
        content=body.model_dump_json(),
        kind="group",
        group_id=group_id,
    )
    client.store.apply_group_change(record, body)
    fan_out(client, record, notify)
    updated = client.store.group(group_id)
    assert updated is not None
    return updated


class ClientGroups:
    """The client's group API (mixed into :class:`SyftChatClient`)."""

    def create_group(self: _Host, name: str, members: Iterable[str]) -> Group:
        """Create a group with you and ``members``; each member is told."""
        self._check_open()
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidMessageError("a group name is 1 to 200 characters")
        people = _members(self, [self.email, *members])
        if len(people) < 2:
            raise InvalidMessageError("a group needs at least one other member")
        return _change(self, "create", name.strip(), people, self.email, str(uuid.uuid4()), people)

    def get_group(self: _Host, group_id: str) -> Group:
        """A group you know, by id."""
        self._check_open()
        group = self.store.group(group_id)
        if group is None:
            raise InvalidMessageError(f"no group {group_id!r}")
        return group

    def list_groups(self: _Host) -> list[Group]:
        """Every group you are (or were) in."""
        self._check_open()
        return self.store.groups()

    def add_group_members(self: _Host, group_id: str, members: Iterable[str]) -> Group:
        """Add members; everyone (old and new) is told the new member list."""
        group = _my_group(self, group_id)
        people = list(dict.fromkeys([*group.members, *_members(self, members)]))
        return _change(self, "add", group.name, people, group.created_by, group_id, people)

    def remove_group_members(self: _Host, group_id: str, members: Iterable[str]) -> Group:
        """Remove members; everyone, the removed included, is told."""
        group = _my_group(self, group_id)
        gone = set(_members(self, members, reachable=False))
        if self.email in gone:
            raise InvalidMessageError("use leave_group() to leave a group")
        people = [m for m in group.members if m not in gone]
        return _change(
            self, "remove", group.name, people, group.created_by, group_id, group.members
        )

    def leave_group(self: _Host, group_id: str) -> Group:
        """Leave a group; the others are told."""
        group = _my_group(self, group_id)
        people = [m for m in group.members if m != self.email]
        if not people:
            raise InvalidMessageError("the last member cannot leave")
        return _change(self, "leave", group.name, people, group.created_by, group_id, people)

    def send_to_group(
        self: _Host,
        group_id: str,
        content: str,
        thread_id: str | None = None,
        reply_to: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> ChatResponse:
        """Send a message to every member of a group (one delivery per member).

        Returns at once with status ``sent``; :meth:`group_delivery` shows
        each member's status, and the message becomes ``delivered`` when every
        member has confirmed it.
        """
        group = _my_group(self, group_id)
        content = self._validate_content(content)
        meta = self._validate_metadata(metadata)
        thread_id, reply_to = self._resolve_thread(thread_id, reply_to)
        meta[CHANGE_KEY] = group.version
        draft = ChatMessage(
            sender=self.email,
            content=content,
            metadata=meta,
            reply_to=reply_to,
            group_id=group_id,
        )
        record = draft.model_copy(update={"thread_id": thread_id or draft.msg_id})
        fan_out(self, record, group.members)
        return ChatResponse(status=MessageStatus.SENT.value, message_id=record.msg_id)

    def group_delivery(self: _Host, msg_id: str) -> dict[str, MessageStatus]:
        """Each member's delivery status of a group message you sent."""
        self._check_open()
        return self.store.copies(msg_id)


def _my_group(client: _Host, group_id: str) -> Group:
    client._check_open()
    group = client.store.group(group_id) if isinstance(group_id, str) else None
    if group is None:
        raise InvalidMessageError(f"no group {group_id!r}")
    if client.email not in group.members:
        raise InvalidMessageError(f"you are not a member of group {group_id!r}")
    return group


def group_status(copies: dict[str, MessageStatus]) -> tuple[MessageStatus, str | None] | None:
    """The author's status of a group message from its copies' (``None``: still going)."""
    if any(s in (MessageStatus.QUEUED, MessageStatus.SENT) for s in copies.values()):
        return None
    failed = sorted(m for m, s in copies.items() if s == MessageStatus.FAILED)
    if failed:
        return MessageStatus.FAILED, f"not delivered to {', '.join(failed)}"
    return MessageStatus.DELIVERED, None
