"""The JSON forms the page reads: a message, a conversation, a group, a search hit.

Every string here may come from a peer; the page renders each one with ``textContent``
(never as HTML), so nothing is escaped here: JSON is the boundary.
"""

from __future__ import annotations

from typing import Any

from syft_chat.features.views import Conversation, SearchHit
from syft_chat.models import ChatMessage, Group

__all__ = [
    "attachments_json",
    "conversation_id",
    "conversation_json",
    "group_json",
    "hit_json",
    "message_json",
]

#: the metadata key bots' answers carry (shown as a "bot" badge)
_AUTO_REPLY = "syft_chat.auto_reply"


def conversation_id(message: ChatMessage, me: str) -> str | None:
    """The conversation a message belongs to: ``group:<id>``, or the peer's email."""
    if message.group_id:
        return f"group:{message.group_id}"
    peer = message.recipient if message.sender == me else message.sender
    return peer or None


def message_json(message: ChatMessage, me: str) -> dict[str, Any]:
    """What the page shows of one message (no raw metadata: it may be large)."""
    return {
        "msg_id": message.msg_id,
        "sender": message.sender,
        "recipient": message.recipient,
        "mine": message.sender == me,
        "conversation": conversation_id(message, me),
        "content": "" if message.deleted else message.content,
        "timestamp": message.timestamp.isoformat(),
        "thread_id": message.thread_id,
        "reply_to": message.reply_to,
        "status": message.status.value if message.status is not None else None,
        "error": message.error,
        "deleted": message.deleted,
        "edited": message.edited_at is not None,
        "reactions": {emoji: list(users) for emoji, users in message.reactions.items()},
        "group_id": message.group_id,
        "auto": bool(message.metadata.get(_AUTO_REPLY)),
        "attachments": attachments_json(message),
    }


def attachments_json(message: ChatMessage) -> list[dict[str, Any]]:
    """The message's attachments, with the state this datasite computed (never a path)."""
    return [
        {
            "id": a.id,
            "name": a.name,
            "size": a.size,
            "media_type": a.media_type,
            "state": a.state.value,
        }
        for a in message.attachments
    ]


def conversation_json(conversation: Conversation, me: str, names: dict[str, str]) -> dict[str, Any]:
    """One row of the conversation list; ``names`` maps group conversation ids to names."""
    cid = conversation.conversation_id
    last = conversation.last_message
    return {
        "id": cid,
        "kind": conversation.kind,
        "peer": conversation.peer,
        "title": names.get(cid, conversation.peer or cid),
        "unread": conversation.unread,
        "updated_at": conversation.updated_at.isoformat() if conversation.updated_at else None,
        "last_message": message_json(last, me) if last is not None else None,
    }


def group_json(group: Group, me: str) -> dict[str, Any]:
    """A group with what the page may offer: may ``me`` manage it, is ``me`` still in it."""
    return {
        "id": f"group:{group.group_id}",
        "group_id": group.group_id,
        "name": group.name,
        "owner": group.owner,
        "members": list(group.members),
        "admins": list(group.admins),
        "may_manage": group.may_manage(me),
        "member": me in group.members,
    }


def hit_json(hit: SearchHit, me: str) -> dict[str, Any]:
    """A search result: the message and the matching passage (matches in ``[`` ``]``)."""
    return {"message": message_json(hit.message, me), "snippet": hit.snippet}
