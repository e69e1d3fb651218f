"""Group conversations, over the same delivery path as one-to-one messages.

SyftBox has no multicast: a group message is stored once by its author (the
row users see, ``conversation = 'group:<id>'``) and travels as one copy per
member (rows of kind :attr:`~syft_chat.models.MessageKind.COPY`, hidden from
history, hooks and listeners), each a normal one-to-one delivery with its own
status: ``group_delivery(msg_id)`` shows "delivered to 4 of 5", and the group
message itself becomes ``delivered`` once every member confirmed it.

Membership changes are messages too (kind ``group``). A group belongs to its creator
(its id carries a tag of the creator's email, so nobody else can create a group under
that id), who may name admins; the owner and the admins add and remove members, anyone
but the owner may leave (the owner introduces the group to the members an admin adds, so
it stays while others remain; ownership is not handed over, since a newcomer could not
check a hand-over the way it checks the creator against the group id). Each change
carries the whole roster: one entry per datasite that was ever in the group (member or
not, admin or not, and the version of the last change to that entry). A receiver merges
a change entry by entry, keeping for each datasite the entry with the higher ``(version,
change msg_id)``, and only the entries the change's (authenticated) author may set:
entries are independent, so two admins adding carol and dave at the same time both take
effect, and every member converges on the same roster whatever order changes arrive in.
Versions are bounded (at most ``MAX_STEP`` above the receiver's entry, below 2**31), so
no number a peer sends can freeze a roster.

When a member who may manage the group learns, from a change, of members the change's
author did not know, it forwards its roster to those it knows that the author did not
reach (a ``sync``), so that members added concurrently learn of each other.

Every group message names the group version (the sum of the roster's versions) its
author's view was based on. A receiver that has not seen that much yet, or does not know
the author at all, asks for it to be sent again later (the change is on its way); one
that knows the author is no longer a member refuses the message.
These rules are written here once, over the narrow store interface, for every store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from syft_chat.errors import InvalidMessageError, UnknownRecipientError
from syft_chat.features.roster import (
    MAX_VERSION,
    GroupChange,
    GroupRefusal,
    Op,
    authorize,
    group_state,
    members_of,
    merge,
    new_group_id,
    parse_change,
    valid_group_id,
)
from syft_chat.identity import canonical_email
from syft_chat.interfaces import GROUP_PREFIX, MessageQuery, StoredMessage
from syft_chat.messaging.kinds import Announce, Refusal
from syft_chat.messaging.status import group_status
from syft_chat.models import (
    Attachment,
    ChatMessage,
    ChatResponse,
    Direction,
    Group,
    MessageKind,
    MessageStatus,
    RosterEntry,
    check_group_name,
    describe_error,
)

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = [
    "CHANGE_KEY",
    "ENTRY_KEY",
    "Group",
    "GroupChange",
    "GroupChangeRule",
    "Groups",
    "group_status",
]

#: metadata key: the group version (membership change) a message's author had seen
CHANGE_KEY = "syft_chat.group_version"
#: metadata key: the author's own roster entry ``[v, change]`` when it wrote the message
#: (versions are sums, so after concurrent changes a receiver that lacks the author's
#: entry can have seen "as much": the author's entry says whether it is behind)
ENTRY_KEY = "syft_chat.group_entry"


class GroupChangeRule:
    """The receive-side rule of a membership change."""

    kind: ClassVar[MessageKind] = MessageKind.GROUP
    announce: ClassVar[Announce] = None

    def __init__(self, groups: Groups) -> None:
        self._groups = groups

    def normalise(self, message: ChatMessage) -> ChatMessage:
        return message

    def check(self, message: ChatMessage, actor: str) -> Refusal | None:
        if not message.group_id or not valid_group_id(message.group_id):
            return Refusal(400, "a group change must name a valid group_id")
        current = self._groups.get(message.group_id)
        if current is not None and actor not in current.members:
            return Refusal(403, f"{actor} is not a member of group {current.group_id}")
        try:
            change = parse_change(message)
        except ValueError as exc:
            return Refusal(400, f"malformed group change: {describe_error(exc)}")
        try:
            self._groups.merge(message, change, actor)
        except GroupRefusal as refusal:
            return refusal.refusal
        return None

    def apply(self, record: StoredMessage) -> None:
        message = record.message
        self._groups.adopt(message, parse_change(message), message.sender)

    def after(self, record: StoredMessage) -> None:
        self._groups.forward(record.message, parse_change(record.message))

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

    def merge(self, message: ChatMessage, change: GroupChange, actor: str) -> Group | None:
        """The group after ``actor``'s change (see :func:`~syft_chat.features.roster.merge`)."""
        return merge(self.get(message.group_id or ""), message, change, actor, self.me)

    def adopt(self, change: ChatMessage, body: GroupChange, actor: str) -> bool:
        """Merge a (checked) change into the stored group; whether anything changed.
        Forwards the roster to members the change's author did not reach."""
        merged = self.merge(change, body, actor)
        if merged is None:
            return False
        self._core.store.put_group(merged)
        return True

    def forward(self, change: ChatMessage, body: GroupChange) -> None:
        """After adopting ``change``: if its author did not know entries this datasite
        knows (a concurrent change), and this datasite may manage the group, send its
        roster to every member (a ``sync``), so that everyone converges; the owner also
        sends it to the members an admin added (the owner introduces a group)."""
        group = self.get(change.group_id or "")
        if group is None or body.op == "sync" or not group.may_manage(self.me):
            return
        behind = [e for e, entry in group.roster.items() if entry.newer_than(body.roster.get(e))]
        # the owner introduces the group to the members an admin added
        owner_here = self.me == group.created_by and change.sender != self.me
        newcomers = [e for e in body.targets if owner_here and e in group.members]
        if not behind and not newcomers:
            return
        sync = GroupChange(
            op="sync",
            name=group.name,
            created_by=group.created_by,
            roster=dict(group.roster),
            members=list(group.members),
            version=group.version,
        )
        record = ChatMessage(
            sender=self.me,
            content=sync.model_dump_json(),
            kind=MessageKind.GROUP,
            group_id=group.group_id,
        )
        self.fan_out(record, group.members if behind else newcomers)

    def check_message(self, message: ChatMessage, actor: str) -> Refusal | None:
        """Whether a group chat message from ``actor`` is acceptable here (``None``: yes,
        or not a group message)."""
        if not message.group_id:
            return None
        based_on = message.metadata.get(CHANGE_KEY)
        group = self.get(message.group_id)
        ahead = isinstance(based_on, int) and group is not None and group.version < based_on
        claim = message.metadata.get(ENTRY_KEY)
        if (
            group is not None
            and isinstance(claim, list)
            and len(claim) == 2
            and type(claim[0]) is int
            and isinstance(claim[1], str)
        ):
            entry = group.roster.get(actor)
            ahead = ahead or entry is None or (claim[0], claim[1]) > (entry.v, entry.change)
        if group is None or ahead:
            return Refusal(
                425, "this member has not seen that group change yet; send again later", True
            )
        if actor not in group.members:
            return Refusal(403, f"{actor} is not a member of group {group.group_id}")
        return None

    def based_on(self, group: Group) -> dict[str, Any]:
        """The metadata naming the group version a message is based on (and the author's
        own entry in it)."""
        meta: dict[str, Any] = {CHANGE_KEY: group.version}
        entry = group.roster.get(self.me)
        if entry is not None:
            meta[ENTRY_KEY] = [entry.v, entry.change]
        return meta

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
        transaction (with ``also``, run inside it); the copies are sent in the background
        (the caller does not wait for 50 request files to be written)."""
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
        core.send_later([copy.msg_id for copy, _member in queued])

    def _change(
        self,
        op: Op,
        group_id: str,
        updates: dict[str, tuple[bool, bool]],
        *,
        name: str | None = None,
        created_by: str | None = None,
        notify_too: Iterable[str] = (),
    ) -> Group:
        """Set the entries ``updates`` (``{email: (member, admin)}``) here and tell every
        member after the change (and ``notify_too``: the removed, the leaver's peers)."""
        current = self.get(group_id)
        roster = dict(current.roster) if current is not None else {}
        record_id = str(uuid.uuid4())
        owner = created_by or (current.created_by if current is not None else self.me)
        for email, (member, admin) in updates.items():
            old = roster.get(email)
            if self.me != owner:  # only the owner names admins: an admin keeps the flag
                admin = old.admin if old is not None else False
            if old is not None and old.v + 1 >= MAX_VERSION:
                raise InvalidMessageError(
                    f"the entry of {email} in group {group_id!r} has reached the version "
                    f"limit ({MAX_VERSION - 1}): it cannot change any more"
                )
            roster[email] = RosterEntry(
                member=member,
                admin=admin,
                v=(old.v + 1) if old is not None else 1,
                change=record_id,
            )
        title = name or (current.name if current is not None else "")
        members = list(members_of(roster))
        body = GroupChange(
            op=op,
            name=title,
            created_by=owner,
            targets=list(updates),
            roster=roster,
            members=members,
            version=sum(r.v for r in roster.values()),
        )
        record = ChatMessage(
            msg_id=record_id,
            sender=self.me,
            content=body.model_dump_json(),
            kind=MessageKind.GROUP,
            group_id=group_id,
        )
        if current is not None:  # what every member will check: refused here first
            try:
                authorize(current, body, self.me)
            except GroupRefusal as refusal:
                raise InvalidMessageError(refusal.refusal.reason) from None
        state = group_state(group_id, title, owner, roster, record)
        notify = list(dict.fromkeys([*members, *notify_too]))
        self.fan_out(record, notify, also=lambda: self._core.store.put_group(state))
        updated = self.get(group_id)
        assert updated is not None
        return updated

    def _manage(self, group_id: str) -> Group:
        group = self.my_group(group_id)
        if not group.may_manage(self.me):
            raise InvalidMessageError(
                f"only the owner ({group.created_by}) or an admin may change the members of "
                f"group {group_id!r}"
            )
        return group

    # ------------------------------------------------------------------ the API

    def create_group(self, name: str, members: Iterable[str]) -> Group:
        self._core.check_open()
        try:
            name = check_group_name(name)
        except ValueError as exc:
            raise InvalidMessageError(str(exc)) from None
        me = self._core.email
        people = self._people([me, *members])
        if len(people) < 2:
            raise InvalidMessageError("a group needs at least one other member")
        updates = {m: (True, False) for m in people}
        return self._change("create", new_group_id(me), updates, name=name, created_by=me)

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
        group = self._manage(group_id)
        if group.created_by not in group.members:
            raise InvalidMessageError(
                f"the owner ({group.created_by}) has left group {group_id!r}: only the owner "
                "introduces a group to new members, so none can be added"
            )
        new = [m for m in self._people(members) if m not in group.members]
        if not new:
            return group
        return self._change("add", group_id, {m: (True, False) for m in new})

    def remove_group_members(self, group_id: str, members: Iterable[str]) -> Group:
        group = self._manage(group_id)
        gone = [m for m in self._people(members, reachable=False) if m in group.members]
        if self.me in gone:
            raise InvalidMessageError("use leave_group() to leave a group")
        if group.created_by in gone:
            raise InvalidMessageError("the owner of a group cannot be removed")
        if not gone:
            return group
        return self._change("remove", group_id, {m: (False, False) for m in gone}, notify_too=gone)

    def set_group_admins(self, group_id: str, admins: Iterable[str]) -> Group:
        group = self.my_group(group_id)
        if group.created_by != self.me:
            raise InvalidMessageError(f"only the owner ({group.created_by}) names admins")
        wanted = set(self._people(admins, reachable=False))
        strangers = wanted - set(group.members)
        if strangers:
            raise InvalidMessageError(f"not members of the group: {sorted(strangers)}")
        updates = {
            m: (True, m in wanted)
            for m in group.members
            if m != self.me and (m in wanted) != (m in group.admins)
        }
        if not updates:
            return group
        return self._change("admins", group_id, updates)

    def leave_group(self, group_id: str) -> Group:
        group = self.my_group(group_id)
        if len(group.members) <= 1:
            raise InvalidMessageError("the last member cannot leave")
        if self.me == group.created_by:
            raise InvalidMessageError(
                f"the owner of group {group_id!r} cannot leave while others remain: only the "
                "owner introduces the group to new members. Remove the other members first "
                "(ownership cannot be handed over: the group id is bound to its creator)"
            )
        return self._change("leave", group_id, {self.me: (False, False)}, notify_too=[])

    def send_to_group(
        self,
        group_id: str,
        content: str,
        thread_id: str | None = None,
        reply_to: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        attach: Callable[[str, list[str], str], list[Attachment]] | None = None,
    ) -> ChatResponse:
        """``attach(msg_id, members, conversation)`` shares the files of the message (with
        the members at send time) once everything else is checked, before it is stored."""
        core = self._core
        group = self.my_group(group_id)
        content = core.validate_content(content)
        meta = {**core.validate_metadata(metadata), **self.based_on(group)}
        conversation = f"{GROUP_PREFIX}{group_id}"
        thread_id, reply_to = core.resolve_thread(thread_id, reply_to, conversation=conversation)
        draft = ChatMessage(
            sender=core.email, content=content, metadata=meta, reply_to=reply_to, group_id=group_id
        )
        shared: list[Attachment] = []
        if attach is not None:
            readers = [m for m in group.members if m != core.email]
            shared = attach(draft.msg_id, readers, conversation)
        record = draft.model_copy(
            update={"thread_id": thread_id or draft.msg_id, "attachments": shared}
        )
        self.fan_out(record, group.members)
        return ChatResponse(status=MessageStatus.SENT.value, message_id=record.msg_id)

    def group_delivery(self, msg_id: str) -> dict[str, MessageStatus]:
        self._core.check_open()
        copies = MessageQuery(target=msg_id, kinds=frozenset({MessageKind.COPY}))
        return {
            r.peer or "": r.message.status or MessageStatus.QUEUED
            for r in self._core.store.find(copies)
        }
