"""Group conversations, over the same delivery path as one-to-one messages.

SyftBox has no multicast: a group message is stored once by its author (the
row users see, ``conversation = 'group:<id>'``) and travels as one copy per
member (rows of kind :attr:`~syft_chat.models.MessageKind.COPY`, hidden from
history, hooks and listeners), each a normal one-to-one delivery with its own
status: ``group_delivery(msg_id)`` shows "delivered to 4 of 5", and the group
message itself becomes ``delivered`` once every member confirmed it.

Membership changes are messages too (kind ``group``), carrying the whole member
list after the change and a ``version``: one more than the version of the change
its author had seen. Every member keeps the list of the latest change by
``(version, msg_id)``, so a change made after another always wins over it whatever
the clocks say, concurrent changes are ordered the same way everywhere, and all
members converge on the same list whatever order changes arrive in.

Every group message names the version its author's view was based on. A receiver
that has not seen that change yet asks for it to be sent again later (it is on its
way); one that has refuses a message from someone who is not (or no longer) a member.
These rules are written here once, over the narrow store interface, for every store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field

from syft_chat.errors import InvalidMessageError, UnknownRecipientError
from syft_chat.identity import canonical_email, is_canonical
from syft_chat.interfaces import MessageQuery, StoredMessage
from syft_chat.messaging.kinds import Announce, Refusal
from syft_chat.messaging.status import group_status
from syft_chat.models import (
    ChatMessage,
    ChatResponse,
    Direction,
    Group,
    MessageKind,
    MessageStatus,
)

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = ["CHANGE_KEY", "Group", "GroupChange", "GroupChangeRule", "Groups", "group_status"]

#: metadata key: the group version (membership change) a message's author had seen
CHANGE_KEY = "syft_chat.group_version"
_MAX_MEMBERS = 256


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
    if not all(is_canonical(m) for m in change.members):
        raise ValueError("group members must be canonical datasite emails")
    return change


class GroupChangeRule:
    """The receive-side rule of a membership change."""

    kind: ClassVar[MessageKind] = MessageKind.GROUP
    announce: ClassVar[Announce] = None

    def __init__(self, groups: Groups) -> None:
        self._groups = groups

    def normalise(self, message: ChatMessage) -> ChatMessage:
        return message

    def check(self, message: ChatMessage, actor: str) -> Refusal | None:
        try:
            change = parse_change(message)
        except ValueError as exc:
            return Refusal(400, f"malformed group change: {exc}")
        current = self._groups.get(message.group_id or "")
        if current is not None:
            if actor not in current.members:
                return Refusal(403, f"{actor} is not a member of group {current.group_id}")
            return None
        me = self._groups.me
        if me not in change.members and change.op != "remove":
            return Refusal(403, "a change of a group this datasite is not in")
        if actor not in change.members and change.op != "leave":
            return Refusal(403, f"{actor} is not a member of the group it changes")
        return None

    def apply(self, record: StoredMessage) -> None:
        self._groups.adopt(record.message, parse_change(record.message))

    def describe(self, message: ChatMessage) -> str:
        return "group_changed"


class Groups:
    """Group state and the group API the client offers, over the messaging core."""

    def __init__(self, core: MessagingCore) -> None:
        self._core = core

    @property
    def me(self) -> str:
        return self._core.email

    # ------------------------------------------------------------------ rules

    def get(self, group_id: str) -> Group | None:
        found = self._core.store.groups(group_id)
        return found[0] if found else None

    def members(self, group_id: str) -> tuple[str, ...]:
        group = self.get(group_id)
        return group.members if group is not None else ()

    def adopt(self, change: ChatMessage, body: GroupChange) -> bool:
        """Adopt a membership change if it is the group's latest by ``(version, msg_id)``."""
        current = self.get(change.group_id or "")
        if current is not None and (current.version, current.change_id) >= (
            body.version,
            change.msg_id,
        ):
            return False
        self._core.store.put_group(
            Group(
                group_id=change.group_id or "",
                name=body.name,
                created_by=current.created_by if current is not None else body.created_by,
                members=tuple(body.members),
                version=body.version,
                changed_at=change.timestamp,
                change_id=change.msg_id,
            )
        )
        return True

    def check_message(self, message: ChatMessage, actor: str) -> Refusal | None:
        """Whether a group chat message from ``actor`` is acceptable here (``None``: yes,
        or not a group message)."""
        if not message.group_id:
            return None
        based_on = message.metadata.get(CHANGE_KEY)
        group = self.get(message.group_id)
        if group is None or (isinstance(based_on, int) and group.version < based_on):
            return Refusal(
                425, "this member has not seen that group change yet; send again later", True
            )
        if actor not in group.members:
            return Refusal(403, f"{actor} is not a member of group {group.group_id}")
        return None

    @staticmethod
    def based_on(group: Group) -> dict[str, Any]:
        """The metadata naming the group version a message is based on."""
        return {CHANGE_KEY: group.version}

    def my_group(self, group_id: str) -> Group:
        self._core.check_open()
        group = self.get(group_id) if isinstance(group_id, str) else None
        if group is None:
            raise InvalidMessageError(f"no group {group_id!r}")
        if self._core.email not in group.members:
            raise InvalidMessageError(f"you are not a member of group {group_id!r}")
        return group

    # ------------------------------------------------------------------ sending

    def _people(self, emails: Iterable[str], *, reachable: bool = True) -> list[str]:
        found = []
        for email in emails:
            email = canonical_email(email.strip() if isinstance(email, str) else email)
            core = self._core
            if reachable and email != core.email and not core.transport.can_reach(email):
                raise UnknownRecipientError(f"{email} does not serve syft-chat in this workspace")
            if email not in found:
                found.append(email)
        return found

    def fan_out(
        self,
        record: ChatMessage,
        to: Iterable[str],
        *,
        also: Callable[[], object] | None = None,
    ) -> None:
        """Store ``record`` (the author's row) and one copy per member of ``to`` in one
        transaction (with ``also``, run inside it), then send the copies."""
        core = self._core
        queued: list[tuple[ChatMessage, str]] = []
        with core.store.transaction():
            if also is not None:
                also()
            author = record.model_copy(update={"status": MessageStatus.SENT})
            core.store.insert(StoredMessage(author, Direction.OUTGOING, None))
            for member in to:
                if member == core.email:
                    continue
                copy = ChatMessage(
                    msg_id=f"{record.msg_id}/{member}",
                    sender=core.email,
                    content="",
                    recipient=member,
                    kind=MessageKind.COPY,
                    target=record.msg_id,
                    group_id=record.group_id,
                )
                if not core.transport.can_reach(member):  # e.g. added by someone by mistake
                    failed = copy.model_copy(update={"status": MessageStatus.FAILED})
                    core.store.insert(StoredMessage(failed, Direction.OUTGOING, member))
                    continue
                queued.append((core.queue(copy, member), member))
        for copy, _member in queued:
            core.attempt_quietly(copy.msg_id)

    def _change(
        self,
        op: str,
        name: str,
        members: list[str],
        created_by: str,
        group_id: str,
        notify: Iterable[str],
    ) -> Group:
        """Record a membership change here and tell ``notify``."""
        current = self.get(group_id)
        version = current.version + 1 if current is not None else 1
        body = GroupChange.model_validate(
            {
                "op": op,
                "name": name,
                "created_by": created_by,
                "members": members,
                "version": version,
            }
        )
        record = ChatMessage(
            sender=self._core.email,
            content=body.model_dump_json(),
            kind=MessageKind.GROUP,
            group_id=group_id,
        )
        self.fan_out(record, notify, also=lambda: self.adopt(record, body))
        updated = self.get(group_id)
        assert updated is not None
        return updated

    # ------------------------------------------------------------------ the API

    def create_group(self, name: str, members: Iterable[str]) -> Group:
        self._core.check_open()
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidMessageError("a group name is 1 to 200 characters")
        me = self._core.email
        people = self._people([me, *members])
        if len(people) < 2:
            raise InvalidMessageError("a group needs at least one other member")
        return self._change("create", name.strip(), people, me, str(uuid.uuid4()), people)

    def get_group(self, group_id: str) -> Group:
        self._core.check_open()
        group = self.get(group_id) if isinstance(group_id, str) else None
        if group is None:
            raise InvalidMessageError(f"no group {group_id!r}")
        return group

    def list_groups(self) -> list[Group]:
        self._core.check_open()
        return self._core.store.groups()

    def add_group_members(self, group_id: str, members: Iterable[str]) -> Group:
        group = self.my_group(group_id)
        people = list(dict.fromkeys([*group.members, *self._people(members)]))
        return self._change("add", group.name, people, group.created_by, group_id, people)

    def remove_group_members(self, group_id: str, members: Iterable[str]) -> Group:
        group = self.my_group(group_id)
        gone = set(self._people(members, reachable=False))
        if self._core.email in gone:
            raise InvalidMessageError("use leave_group() to leave a group")
        people = [m for m in group.members if m not in gone]
        return self._change("remove", group.name, people, group.created_by, group_id, group.members)

    def leave_group(self, group_id: str) -> Group:
        group = self.my_group(group_id)
        people = [m for m in group.members if m != self._core.email]
        if not people:
            raise InvalidMessageError("the last member cannot leave")
        return self._change("leave", group.name, people, group.created_by, group_id, people)

    def send_to_group(
        self,
        group_id: str,
        content: str,
        thread_id: str | None = None,
        reply_to: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> ChatResponse:
        core = self._core
        group = self.my_group(group_id)
        content = core.validate_content(content)
        meta = {**core.validate_metadata(metadata), **self.based_on(group)}
        thread_id, reply_to = core.resolve_thread(thread_id, reply_to)
        draft = ChatMessage(
            sender=core.email, content=content, metadata=meta, reply_to=reply_to, group_id=group_id
        )
        record = draft.model_copy(update={"thread_id": thread_id or draft.msg_id})
        self.fan_out(record, group.members)
        return ChatResponse(status=MessageStatus.SENT.value, message_id=record.msg_id)

    def group_delivery(self, msg_id: str) -> dict[str, MessageStatus]:
        self._core.check_open()
        copies = MessageQuery(target=msg_id, kinds=frozenset({MessageKind.COPY}))
        return {
            r.peer or "": r.message.status or MessageStatus.QUEUED
            for r in self._core.store.find(copies)
        }
