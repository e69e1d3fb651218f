"""Group rosters: the wire form of a membership change and the rules that merge one.

A roster has an entry per datasite that was ever in the group (member or not, admin or
not, and the version of the last change to that entry, with that change's msg_id). A
change is merged entry by entry, keeping for each datasite the entry with the higher
``(version, change msg_id)``, and only the entries the change's authenticated author may
set (see :func:`merge`). These are pure functions of a group's state: the feature in
:mod:`syft_chat.features.groups` stores the result and tells the members.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from syft_chat.identity import is_canonical
from syft_chat.messaging.kinds import Refusal
from syft_chat.models import ChatMessage, Group, RosterEntry, check_group_name

__all__ = [
    "MAX_STEP",
    "MAX_VERSION",
    "GroupChange",
    "GroupRefusal",
    "Op",
    "authorize",
    "creator_tag",
    "group_state",
    "may_relay",
    "members_of",
    "merge",
    "new_group_id",
    "parse_change",
    "unknown",
    "valid_group_id",
]

_MAX_MEMBERS = 256
Op = Literal["create", "add", "remove", "leave", "admins", "sync"]
#: the most an entry's version may move in one change (a peer cannot jump it to the end)
MAX_STEP = 1024
#: versions stay below this (:class:`~syft_chat.models.RosterEntry`)
MAX_VERSION = 2**31
_GROUP_ID = re.compile(r"^[0-9a-f]{32}-[0-9a-f]{16}$")
_LEGACY_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")  # ids of groups made before owners


def valid_group_id(group_id: str) -> bool:
    """Whether ``group_id`` has the form of a group id (bound to its creator, or older)."""
    return bool(_GROUP_ID.match(group_id) or _LEGACY_ID.match(group_id))


def creator_tag(email: str) -> str:
    """The part of a group id that names its creator."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:16]


def new_group_id(creator: str) -> str:
    """A fresh group id bound to ``creator``: only ``creator`` can create it anywhere."""
    return f"{uuid.uuid4().hex}-{creator_tag(creator)}"


class GroupChange(BaseModel):
    """The content of a ``group`` message: what changed and the roster after it."""

    model_config = ConfigDict(extra="ignore")

    op: Op
    name: str = Field(min_length=1, max_length=200)
    created_by: str = Field(min_length=3, max_length=320)
    #: the datasites whose entries this change sets (the others are relayed state)
    targets: list[str] = Field(default_factory=list, max_length=_MAX_MEMBERS)
    roster: dict[str, RosterEntry] = Field(default_factory=dict, max_length=4 * _MAX_MEMBERS)
    #: the members after the change (for readers of the raw table; the roster decides)
    members: list[str] = Field(default_factory=list, max_length=_MAX_MEMBERS)
    version: int = Field(default=1, ge=1, lt=2**40)

    @field_validator("name")
    @classmethod
    def _visible_name(cls, name: str) -> str:  # a peer's name, like one made here
        return check_group_name(name)


def parse_change(message: ChatMessage) -> GroupChange:
    change = GroupChange.model_validate_json(message.content)
    for email in [*change.roster, *change.targets, change.created_by]:
        if not is_canonical(email):
            raise ValueError(f"not a canonical datasite email: {email[:64]!r}")
    if not set(change.targets) <= set(change.roster):
        raise ValueError("a change sets entries its roster lacks")
    members = [e for e, r in change.roster.items() if r.member]
    if change.op != "sync" and not 0 < len(members) <= _MAX_MEMBERS:
        raise ValueError(f"a group has 1 to {_MAX_MEMBERS} members")
    return change


def members_of(roster: dict[str, RosterEntry]) -> tuple[str, ...]:
    return tuple(e for e, r in roster.items() if r.member)


def group_state(
    group_id: str, name: str, owner: str, roster: dict[str, RosterEntry], change: ChatMessage
) -> Group:
    return Group(
        group_id=group_id,
        name=name,
        created_by=owner,
        members=members_of(roster),
        version=sum(r.v for r in roster.values()),
        changed_at=change.timestamp,
        change_id=change.msg_id,
        roster=roster,
    )


class GroupRefusal(Exception):
    """A membership change that may not be adopted (carries the answer)."""

    def __init__(self, code: int, reason: str, *, retry: bool = False) -> None:
        super().__init__(reason)
        self.refusal = Refusal(code, reason, retry)


def merge(
    current: Group | None, message: ChatMessage, change: GroupChange, actor: str, me: str
) -> Group | None:
    """The group ``current`` (``None``: not known at ``me``) after ``actor``'s change,
    or ``None`` if it changes nothing.

    Raises :class:`GroupRefusal` when ``actor`` may not make it.
    """
    gid = message.group_id or ""
    if current is None:
        base = unknown(gid, change, actor, me)
        roster: dict[str, RosterEntry] = {}
        owner, name = change.created_by, change.name
    else:
        if change.op == "create":
            raise GroupRefusal(409, f"group {gid} exists already: a second create is refused")
        base = current
        roster, owner, name = dict(current.roster), current.created_by, current.name
    authorize(base, change, actor)
    changed = False
    for email, entry in change.roster.items():
        old = roster.get(email)
        if email in change.targets:
            entry = entry.model_copy(update={"change": message.msg_id})
        elif not may_relay(base, actor, old, entry):
            continue
        if (old is not None or current is not None) and entry.v > (
            old.v if old is not None else 0
        ) + MAX_STEP:
            raise GroupRefusal(400, f"the version of {email} jumps by more than {MAX_STEP}")
        if entry.newer_than(old):
            roster[email] = entry
            changed = True
    was = current.roster.get(owner) if current is not None else None
    if owner in roster and not roster[owner].member and (was is None or was.member):
        # the owner introduces the group to newcomers: without it nobody could, and a
        # newcomer would answer "not yet" for ever (a group whose owner left before
        # this rule keeps its state, and takes no new members: see _unknown)
        raise GroupRefusal(
            403,
            "the owner of a group cannot be removed, nor leave while others remain",
        )
    if change.op in ("create", "add", "remove", "admins") and actor == base.created_by:
        name = change.name  # the owner may rename
    if not changed and current is not None:
        return None
    return group_state(gid, name, owner, roster, message)


def unknown(gid: str, change: GroupChange, actor: str, me: str) -> Group:
    """A change of a group not known here. Only its owner introduces a group (its
    create, or a roster it sends a new member); an admin's invitation waits ("not
    yet") until the owner's introduction has arrived."""
    if _GROUP_ID.match(gid) and not gid.endswith("-" + creator_tag(change.created_by)):
        raise GroupRefusal(403, f"group {gid} was not created by {change.created_by}")
    if change.op == "create" and actor != change.created_by:
        raise GroupRefusal(403, f"a group is created by its creator, not by {actor}")
    entry = change.roster.get(me)
    if entry is None or not entry.member:
        raise GroupRefusal(403, "a change of a group this datasite is not in")
    if change.op not in ("create", "add", "sync"):
        raise GroupRefusal(403, "a change of a group this datasite does not know yet")
    claimed = group_state(
        gid,
        change.name,
        change.created_by,
        dict(change.roster),
        ChatMessage(sender=actor, content=""),
    )
    if not claimed.may_manage(actor):
        raise GroupRefusal(403, f"{actor} may not add members to group {gid}")
    owner = claimed.roster.get(change.created_by)
    if owner is None or not owner.member:  # nobody will ever introduce it
        raise GroupRefusal(
            403, f"the owner of group {gid} is not a member: it cannot be introduced"
        )
    if actor != change.created_by:
        raise GroupRefusal(
            425, f"waiting for {change.created_by} to introduce group {gid}", retry=True
        )
    return claimed


def authorize(group: Group, change: GroupChange, actor: str) -> None:
    """Raise :class:`GroupRefusal` unless ``actor`` may make ``change`` to ``group``."""
    op, targets = change.op, change.targets
    if op == "leave":
        if targets != [actor] or change.roster[actor].member:
            raise GroupRefusal(403, "leaving changes only the leaver's own entry")
        return
    if op == "sync":
        if targets:
            raise GroupRefusal(400, "a sync sets no entries of its own")
        return
    if op == "admins":
        if actor != group.created_by:
            raise GroupRefusal(403, "only the owner of a group names its admins")
        return
    if op == "create" and not targets:
        raise GroupRefusal(400, "a create names its members")
    if not group.may_manage(actor):
        raise GroupRefusal(
            403, f"only the owner or an admin may {op} members of group {group.group_id}"
        )
    for email in targets:
        entry, old = change.roster[email], group.roster.get(email)
        if entry.admin != (old.admin if old is not None else False) and (actor != group.created_by):
            raise GroupRefusal(403, "only the owner of a group names its admins")


def may_relay(group: Group, actor: str, old: RosterEntry | None, entry: RosterEntry) -> bool:
    """Whether an entry the change relays (made by someone else) is taken from ``actor``."""
    if not group.may_manage(actor):
        return False  # it reaches us from its author
    admin_changed = entry.admin != (old.admin if old is not None else False)
    return not admin_changed or actor == group.created_by
