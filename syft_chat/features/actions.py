"""Edits, deletions and reactions: messages of their own kind that act on another one.

They travel exactly like chat messages (outbox, retries, receipts, the
per-conversation order, exactly-once on ``msg_id``), so they survive offline
peers and restarts. Who may do what is decided from the transport's
authenticated sender, never from a body field:

* only a message's original sender may edit or delete it;
* either party of the conversation (a member, in a group) may react (one reaction
  per user, emoji and message; adding twice or removing what is not there changes
  nothing).

How a change is applied does not depend on arrival order: an edit or reaction
older (by the actor's sequence number) than the one applied does not override it
(an older edit is kept as an earlier version), and a deletion wins over everything
and erases every copy of the text. An action that arrives before the message it
names is stored and applied when that message arrives (in the same transaction).
These rules are written here once, over the narrow store interface, for every store.

**Which message an action names.** Message ids are per sender, so an action names
``(target_sender, target)``; :func:`find_target` resolves it. An edit or deletion can
only name one of the actor's own messages. A reaction names a message of its own
conversation (one-to-one: of the two parties; a group: of that group). Clients send
``target_sender``; for an action without it (an older client), the target is the actor's
own message (edits, deletions) or the earliest stored message of that id in the
action's conversation (reactions), and a message of that id elsewhere refuses it as
before. Nobody's message of the same id can make a new client's action fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from syft_chat.display import UNPRINTABLE
from syft_chat.errors import InvalidMessageError
from syft_chat.interfaces import MessageQuery, MessageStore, Reaction, StoredMessage, Version
from syft_chat.messaging.kinds import Announce, Refusal
from syft_chat.messaging.targets import find_target, named
from syft_chat.models import (
    AttachmentState,
    ChatMessage,
    ChatResponse,
    ContactPolicy,
    MessageKind,
    MessageStatus,
    utcnow,
)

if TYPE_CHECKING:
    from syft_chat.features.groups import Groups
    from syft_chat.messaging.core import MessagingCore

__all__ = [
    "ACTION_KINDS",
    "ActionRule",
    "Actions",
    "apply_action",
    "authorize",
    "change_of",
]

ACTION_KINDS = (MessageKind.EDIT, MessageKind.DELETE, MessageKind.REACTION)
_MAX_EMOJI = 32
_EDIT, _DELETE, _REACTION = ACTION_KINDS


def authorize(
    action: ChatMessage,
    target: ChatMessage,
    actor: str,
    me: str,
    members: Iterable[str] | None = None,
) -> str | None:
    """Why ``actor`` may not apply ``action`` to ``target`` (``None``: it may).

    ``members`` is the member list of the target's group, for a group message.
    """
    if target.kind is not MessageKind.MESSAGE:
        return f"{action.kind} names {target.msg_id}, which is not a chat message"
    if action.group_id != target.group_id:
        return f"{action.kind} and its message belong to different conversations"
    if action.kind in (_EDIT, _DELETE) and target.sender != actor:
        return f"only the sender of a message may {action.kind} it"
    if action.kind is _REACTION:
        party = set(members or ()) if target.group_id else {target.sender, target.recipient or ""}
        if actor not in party or me not in party:
            return f"{actor} is not part of that message's conversation"
    return None


def change_of(action: ChatMessage) -> str:
    """The change an action makes: ``edited``, ``deleted``, ``reaction_added``/``_removed``."""
    if action.kind is _EDIT:
        return "edited"
    if action.kind is _DELETE:
        return "deleted"
    return "reaction_removed" if action.metadata.get("op") == "remove" else "reaction_added"


# --------------------------------------------------------------------------- applying


def apply_action(store: MessageStore, action: ChatMessage, actor: str) -> str | None:
    """Apply an edit / delete / reaction to its target; what changed, if anything.

    The caller has checked who may do it and holds a transaction. Marks an incoming
    action applied (an action that changed nothing, such as a repeated reaction, is
    kept with the note "changed nothing" and not announced).
    """
    target = find_target(store, action)
    if target is None:
        return None
    change: str | None = None
    me = action.sender
    if target.message.deleted:
        if action.kind is _EDIT:  # a deleted message's text is gone, late edits' too
            store.update(action.msg_id, {"content": ""}, sender=me)
    elif action.kind is _EDIT:
        change = _apply_edit(store, action, target)
    elif action.kind is _DELETE:
        _erase(store, target.message, action)
        change = "deleted"
    elif action.kind is _REACTION:
        change = _apply_reaction(store, target.message, actor, action)
    store.update(
        action.msg_id,
        {"applied": True, "error": None if change else "changed nothing"},
        sender=me,
    )
    return change


def _apply_edit(store: MessageStore, action: ChatMessage, target: StoredMessage) -> str | None:
    shown = target.message
    current = target.edit_seq if target.edit_seq is not None else shown.seq
    now = utcnow()
    who = shown.sender
    if action.seq is None or current is None or action.seq > current:
        # the shown text becomes an earlier version
        version = Version(shown.content, now, action.msg_id, current)
        store.add_version(shown.msg_id, version, sender=who)
        seq = action.seq if action.seq is not None else (current or 0) + 1
        store.update(
            shown.msg_id,
            {"content": action.content, "edited_at": action.timestamp, "edit_seq": seq},
            sender=who,
        )
        return "edited"
    # an older edit arriving late: only an earlier version
    version = Version(action.content, now, action.msg_id, action.seq)
    store.add_version(shown.msg_id, version, sender=who)
    return None


def _erase(store: MessageStore, target: ChatMessage, action: ChatMessage) -> None:
    """A deletion: the text, its earlier versions, the edits that carried them, reactions."""
    who = target.sender
    erased: dict[str, Any] = {"content": "", "deleted": True, "edited_at": action.timestamp}
    if target.attachments:  # the files go with it (the sender removes them from its datasite)
        erased["attachments"] = [
            a.model_copy(update={"state": AttachmentState.DELETED}) for a in target.attachments
        ]
    store.update(target.msg_id, erased, sender=who)
    store.erase_versions(target.msg_id, sender=who)
    edits = MessageQuery(target=target.msg_id, sender=who, kinds=frozenset({_EDIT}))
    for edit in store.find(edits):  # only its sender's edits are its edits
        store.update(edit.msg_id, {"content": ""}, sender=who)
    for reaction in store.reactions([target.msg_id]):
        if reaction.author in ("", who):
            store.put_reaction(replace(reaction, present=False))


def _apply_reaction(
    store: MessageStore, message: ChatMessage, actor: str, action: ChatMessage
) -> str | None:
    present = action.metadata.get("op") != "remove"
    target, author = message.msg_id, message.sender
    existing = next(
        (
            r
            for r in store.reactions([target], removed=True)
            if r.user == actor and r.emoji == action.content and r.author in ("", author)
        ),
        None,
    )
    seq = action.seq
    late = existing is not None and existing.op_seq is not None and seq is not None
    if late and seq <= existing.op_seq:  # type: ignore[operator,union-attr]
        return None  # an older change arriving late
    created = existing.created_at if existing is not None else utcnow()
    store.put_reaction(Reaction(target, actor, action.content, present, seq, created, author))
    if present == (existing.present if existing is not None else False):
        return None
    return "reaction_added" if present else "reaction_removed"


# --------------------------------------------------------------------------- receiving


class ActionRule:
    """The receive-side rule of an edit, a deletion or a reaction (one class, three kinds)."""

    kind: ClassVar[MessageKind]
    announce: ClassVar[Announce] = "change"

    def __init__(
        self,
        core: MessagingCore,
        groups: Groups,
        policy: Callable[[], ContactPolicy],
    ) -> None:
        self._core = core
        self._groups = groups
        self._policy = policy

    @classmethod
    def for_kind(cls, kind: MessageKind) -> type[ActionRule]:
        return type(f"{kind.value.title()}Rule", (cls,), {"kind": kind})

    def normalise(self, message: ChatMessage) -> ChatMessage:
        if message.kind is _REACTION:  # stored as the sender's client would send it
            return message.model_copy(update={"content": message.content.strip()})
        return message

    def check(self, message: ChatMessage, actor: str) -> Refusal | None:
        if not message.target:
            return Refusal(400, f"a {message.kind} must name the message it acts on")
        if message.kind is _REACTION and (
            not 0 < len(message.content) <= _MAX_EMOJI or UNPRINTABLE.search(message.content)
        ):
            return Refusal(400, "a reaction is 1 to 32 printable characters")
        if message.kind in (_EDIT, _DELETE) and message.target_sender not in (None, actor):
            return Refusal(403, f"only the sender of a message may {message.kind} it")
        store = self._core.store
        target = find_target(store, message) or named(store, message)
        if target is None:
            return None  # not here yet: checked when it arrives
        return self._authorize(message, target.message, actor)

    def _authorize(self, action: ChatMessage, target: ChatMessage, actor: str) -> Refusal | None:
        members = self._groups.members(target.group_id) if target.group_id else None
        problem = authorize(action, target, actor, self._core.email, members)
        return None if problem is None else Refusal(403, problem)

    def apply(self, record: StoredMessage) -> None:
        if find_target(self._core.store, record.message) is not None:
            apply_action(self._core.store, record.message, record.message.sender)

    def after(self, record: StoredMessage) -> None:
        pass

    def describe(self, message: ChatMessage) -> str:
        return change_of(message)

    def apply_waiting(self, target: ChatMessage) -> None:
        """``target`` was just stored: apply (or refuse) the actions that waited for it."""
        store = self._core.store
        waiting = MessageQuery(target=target.msg_id, applied=False, order="seq")
        for action in (r.message for r in store.find(waiting)):
            found = find_target(store, action)
            if found is not None and found.message.sender != target.sender:
                continue  # it names another message of that id
            if found is None and (action.target_sender or target.sender) != target.sender:
                continue  # it names another sender's message: still waiting for that one
            refused = self._policy().refuses(action.sender)  # blocked since it arrived?
            problem = Refusal(403, f"refused: {refused}") if refused else None
            problem = problem or self._authorize(action, target, action.sender)
            if problem is None and found is not None:
                apply_action(store, action, action.sender)
            elif problem is not None:
                store.update(
                    action.msg_id,
                    {"applied": True, "status": MessageStatus.FAILED, "error": problem.reason},
                    sender=action.sender,
                )
                self._core.record_refusal(action.sender, problem.reason, b"", action.msg_id)


# --------------------------------------------------------------------------- the API


class Actions:
    """Edit, delete and react: the API the client offers, over the messaging core."""

    def __init__(self, core: MessagingCore, groups: Groups) -> None:
        self._core = core
        self._groups = groups

    def _own_message(self, msg_id: str, verb: str, sender: str | None = None) -> ChatMessage:
        core = self._core
        core.check_open()
        found = core.store.get(msg_id, sender=sender) if isinstance(msg_id, str) else None
        message = found.message if found is not None else None
        if message is None or message.kind is not MessageKind.MESSAGE:
            raise InvalidMessageError(f"cannot {verb} {msg_id!r}: no such message")
        if verb in ("edit", "delete") and message.sender != core.email:
            raise InvalidMessageError(
                f"cannot {verb} {msg_id!r}: only its sender ({message.sender}) may"
            )
        if message.deleted:
            raise InvalidMessageError(f"cannot {verb} {msg_id!r}: it was deleted")
        return message

    def _send(
        self,
        target: ChatMessage,
        kind: MessageKind,
        content: str,
        metadata: dict[str, Any] | None,
        timeout: float | None,
    ) -> ChatResponse:
        core = self._core
        if target.group_id:  # acts on a group message: every member is told
            group = self._groups.my_group(target.group_id)
            record = ChatMessage(
                sender=core.email,
                content=content,
                kind=kind,
                target=target.msg_id,
                target_sender=target.sender,
                metadata={**(metadata or {}), **self._groups.based_on(group)},
                group_id=target.group_id,
            )
            self._groups.fan_out(
                record, group.members, also=lambda: apply_action(core.store, record, core.email)
            )
            return ChatResponse(status=MessageStatus.SENT.value, message_id=record.msg_id)
        peer = target.recipient if target.sender == core.email else target.sender
        if not peer:
            raise InvalidMessageError(f"{target.msg_id!r} has no conversation partner")
        action = ChatMessage(
            sender=core.email,
            content=content,
            recipient=peer,
            kind=kind,
            target=target.msg_id,
            target_sender=target.sender,
            metadata=metadata or {},
        )
        with core.store.transaction():
            queued = core.queue(action, peer)
            apply_action(core.store, queued, core.email)
        return core.deliver(queued, peer, timeout)

    def edit_message(
        self, msg_id: str, content: str, *, timeout: float | None = None
    ) -> ChatResponse:
        target = self._own_message(msg_id, "edit")
        content = self._core.validate_content(content)
        return self._send(target, _EDIT, content, None, timeout)

    def delete_message(self, msg_id: str, *, timeout: float | None = None) -> ChatResponse:
        target = self._own_message(msg_id, "delete")
        return self._send(target, _DELETE, "", None, timeout)

    def react(
        self,
        msg_id: str,
        emoji: str,
        *,
        remove: bool = False,
        timeout: float | None = None,
        sender: str | None = None,
    ) -> ChatResponse:
        target = self._own_message(msg_id, "react to", sender)
        if not isinstance(emoji, str) or not emoji.strip() or len(emoji) > _MAX_EMOJI:
            raise InvalidMessageError(f"emoji must be 1-{_MAX_EMOJI} characters, got {emoji!r}")
        op = {"op": "remove" if remove else "add"}
        return self._send(target, _REACTION, emoji.strip(), op, timeout)

    def get_edits(self, msg_id: str, *, sender: str | None = None) -> list[dict[str, Any]]:
        self._core.check_open()
        found = self._core.store.get(msg_id, sender=sender) if isinstance(msg_id, str) else None
        if found is None:
            return []
        return [
            {"content": v.content, "replaced_at": v.replaced_at, "edit_id": v.edit_id}
            for v in self._core.store.versions(msg_id, sender=found.message.sender)
        ]
