"""Which stored message a message names: message ids are per sender.

A message is identified by ``(sender, msg_id)``. An edit, deletion or reaction names its
target by ``target`` and (since schema 5) ``target_sender``; a group message's per-member
copies name the author's row. These lookups are written once here, for the features
(:mod:`syft_chat.features.actions`) and the announcer alike.
"""

from __future__ import annotations

from syft_chat.interfaces import MessageQuery, MessageStore, StoredMessage
from syft_chat.models import ChatMessage, MessageKind

__all__ = ["find_target", "in_conversation", "named"]

_EDITS = (MessageKind.EDIT, MessageKind.DELETE)


def in_conversation(target: ChatMessage, action: ChatMessage) -> bool:
    """Whether ``target`` is a chat message of ``action``'s conversation (its group, or
    the one-to-one conversation of its sender and recipient)."""
    if target.kind is not MessageKind.MESSAGE:
        return False
    if action.group_id or target.group_id:
        return target.group_id == action.group_id
    return {target.sender, target.recipient} == {action.sender, action.recipient}


def find_target(store: MessageStore, action: ChatMessage) -> StoredMessage | None:
    """The stored message ``action`` acts on, or ``None`` (not here, or not one it may
    name): an edit's or deletion's is its sender's own; a reaction's is in its
    conversation (``target_sender``'s if given, else the earliest stored)."""
    if not action.target:
        return None
    if action.kind in _EDITS:
        if action.target_sender not in (None, action.sender):
            return None
        return store.get(action.target, sender=action.sender)
    if action.target_sender is not None:
        found = store.get(action.target, sender=action.target_sender)
        return found if found is not None and in_conversation(found.message, action) else None
    query = MessageQuery(msg_ids=(action.target,), kinds=frozenset({MessageKind.MESSAGE}))
    found_all = [r for r in store.find(query) if in_conversation(r.message, action)]
    return found_all[0] if found_all else None


def named(store: MessageStore, action: ChatMessage) -> StoredMessage | None:
    """When :func:`find_target` finds nothing: the message of that id the action will be
    judged against (and refused, if it may not act on it), or ``None`` (it waits).

    An explicit ``target_sender`` names exactly one message; without one (an older
    client), the message of that id :meth:`MessageStore.get` returns."""
    if not action.target:
        return None
    if action.target_sender is not None:
        return store.get(action.target, sender=action.target_sender)
    return store.get(action.target)
