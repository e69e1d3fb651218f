"""Edits, deletions and reactions: messages of their own kind that act on another one.

They travel exactly like chat messages (outbox, retries, receipts, the
per-conversation order, exactly-once on ``msg_id``), so they survive offline
peers and restarts. Who may do what is decided from the transport's
authenticated sender, never from a body field:

* only a message's original sender may edit or delete it;
* either party of the conversation may react (one reaction per user, emoji
  and message; adding twice or removing what is not there changes nothing).

An action that arrives before the message it names is stored and applied
when that message arrives. Anything refused lands in ``failed_messages``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from syft_chat.errors import InvalidMessageError
from syft_chat.features.groups import CHANGE_KEY, fan_out
from syft_chat.hookspecs import hookimpl
from syft_chat.models import ChatMessage, ChatResponse, MessageStatus

if TYPE_CHECKING:
    import pluggy

    from syft_chat.interfaces import MessageStore, Transport
    from syft_chat.messaging.delivery import Incoming, Outgoing
    from syft_chat.settings import ChatSettings

__all__ = ["ACTION_KINDS", "ChangeListener", "ClientActions", "authorize"]

log = logging.getLogger("syft_chat.features.actions")

ACTION_KINDS = ("edit", "delete", "reaction")
ChangeListener = Callable[[str, ChatMessage, str], Any]
_MAX_EMOJI = 32


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
    if target.kind != "message":
        return f"{action.kind} names {target.msg_id}, which is not a chat message"
    if action.group_id != target.group_id:
        return f"{action.kind} and its message belong to different conversations"
    if action.kind in ("edit", "delete") and target.sender != actor:
        return f"only the sender of a message may {action.kind} it"
    if action.kind == "reaction":
        party = set(members or ()) if target.group_id else {target.sender, target.recipient or ""}
        if actor not in party or me not in party:
            return f"{actor} is not part of that message's conversation"
    return None


def change_of(action: ChatMessage) -> str:
    """The change an action makes: ``edited``, ``deleted``, ``reaction_added``/``_removed``."""
    if action.kind == "edit":
        return "edited"
    if action.kind == "delete":
        return "deleted"
    return "reaction_removed" if action.metadata.get("op") == "remove" else "reaction_added"


class _ChangePlugin:
    """``add_change_listener(fn)``: a tiny plugin implementing ``chat_message_changed``."""

    def __init__(self, fn: ChangeListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_message_changed(self, message: ChatMessage, change: str, actor: str) -> None:
        self.fn(change, message, actor)


class _Host(Protocol):
    """What the mixin needs of the client."""

    email: str
    store: MessageStore
    transport: Transport
    settings: ChatSettings
    _outgoing: Outgoing
    _incoming: Incoming
    _pm: pluggy.PluginManager
    _change_listeners: dict[int, object]

    def _check_open(self) -> None: ...
    def _validate_content(self, content: Any) -> str: ...
    def _outcome(self, msg_id: str, peer: str, stored: ChatMessage | None) -> ChatResponse: ...


def _own_message(self: _Host, msg_id: str, verb: str) -> ChatMessage:
    self._check_open()
    message = self.store.get(msg_id) if isinstance(msg_id, str) else None
    if message is None or message.kind != "message":
        raise InvalidMessageError(f"cannot {verb} {msg_id!r}: no such message")
    if verb in ("edit", "delete") and message.sender != self.email:
        raise InvalidMessageError(
            f"cannot {verb} {msg_id!r}: only its sender ({message.sender}) may"
        )
    if message.deleted:
        raise InvalidMessageError(f"cannot {verb} {msg_id!r}: it was deleted")
    return message


def _send_action(
    self: _Host,
    target: ChatMessage,
    kind: str,
    content: str,
    metadata: dict[str, Any] | None,
    timeout: float | None,
) -> ChatResponse:
    if target.group_id:  # acts on a group message: every member is told
        group = self.store.group(target.group_id)
        if group is None or self.email not in group.members:
            raise InvalidMessageError(f"you are not a member of group {target.group_id!r}")
        record = ChatMessage(
            sender=self.email,
            content=content,
            kind=kind,
            target=target.msg_id,
            metadata={**(metadata or {}), CHANGE_KEY: group.version},
            group_id=target.group_id,
        )
        self.store.apply_action(record, self.email)
        fan_out(self, record, group.members)
        return ChatResponse(status=MessageStatus.SENT.value, message_id=record.msg_id)
    peer = target.recipient if target.sender == self.email else target.sender
    if not peer:
        raise InvalidMessageError(f"{target.msg_id!r} has no conversation partner")
    action = ChatMessage(
        sender=self.email,
        content=content,
        recipient=peer,
        kind=kind,
        target=target.msg_id,
        metadata=metadata or {},
    )
    self.store.apply_action(self._outgoing.queue(action, peer), self.email)
    self._outgoing.attempt(action.msg_id)
    wait = self.settings.send_timeout if timeout is None else timeout
    stored = self._outgoing.wait(action.msg_id, float(wait)) if wait else None
    return self._outcome(action.msg_id, peer, stored or self.store.get(action.msg_id))


class ClientActions:
    """The client's edit / delete / react API (mixed into :class:`SyftChatClient`)."""

    def edit_message(
        self: _Host, msg_id: str, content: str, *, timeout: float | None = None
    ) -> ChatResponse:
        """Replace the text of a message you sent, here and at its recipient.

        The earlier text stays queryable (:meth:`get_edits`). Returns where
        the edit is (``delivered`` / ``sent``), like :meth:`send_message`.
        """
        target = _own_message(self, msg_id, "edit")
        content = self._validate_content(content)
        return _send_action(self, target, "edit", content, None, timeout)

    def delete_message(self: _Host, msg_id: str, *, timeout: float | None = None) -> ChatResponse:
        """Delete a message you sent, on both sides.

        Its row stays as a tombstone (``deleted=True``) with its text, its
        earlier versions and its reactions erased; search never finds it.
        """
        target = _own_message(self, msg_id, "delete")
        return _send_action(self, target, "delete", "", None, timeout)

    def react(
        self: _Host,
        msg_id: str,
        emoji: str,
        *,
        remove: bool = False,
        timeout: float | None = None,
    ) -> ChatResponse:
        """Add (or with ``remove=True`` take back) your reaction to a message of a conversation."""
        target = _own_message(self, msg_id, "react to")
        if not isinstance(emoji, str) or not emoji.strip() or len(emoji) > _MAX_EMOJI:
            raise InvalidMessageError(f"emoji must be 1-{_MAX_EMOJI} characters, got {emoji!r}")
        op = {"op": "remove" if remove else "add"}
        return _send_action(self, target, "reaction", emoji.strip(), op, timeout)

    def get_edits(self: _Host, msg_id: str) -> list[dict[str, Any]]:
        """Earlier versions of a message, oldest first (``content``, ``replaced_at``)."""
        self._check_open()
        return self.store.edits(msg_id)

    def add_change_listener(self: _Host, listener: ChangeListener) -> None:
        """Call ``listener(change, message, actor)`` when another datasite edits, deletes or
        reacts to a message (``change`` is ``edited``, ``deleted``, ``reaction_added`` or
        ``reaction_removed``; ``message`` is as stored now)."""
        if not callable(listener):
            raise InvalidMessageError(f"listener must be callable, got {type(listener).__name__}")
        if id(listener) in self._change_listeners:
            return
        plugin = _ChangePlugin(listener)
        self._change_listeners[id(listener)] = plugin
        self._pm.register(plugin, name=f"change-listener:{id(listener):x}")
        self._incoming.conversations.start()

    def remove_change_listener(self: _Host, listener: ChangeListener) -> None:
        """Stop calling a change listener. Unknown listeners are ignored."""
        plugin = self._change_listeners.pop(id(listener), None)
        if plugin is not None:
            self._pm.unregister(plugin)
