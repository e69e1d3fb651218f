"""The delivery status rule: a status never moves backwards.

``delivered`` and ``read`` are final (a late "send again" or a refusal of an old attempt
cannot undo a confirmation); ``read`` is recorded only over ``delivered``. Every store
applies this rule the same way, because the core asks it with a compare-and-set
(:meth:`~syft_chat.interfaces.MessageStore.update` with ``if_status``).
"""

from __future__ import annotations

from syft_chat.models import MessageStatus

__all__ = ["FINAL", "PENDING", "group_status", "may_become"]

#: Unconfirmed outgoing messages: still in the outbox.
PENDING = frozenset({MessageStatus.QUEUED, MessageStatus.SENT})
#: Confirmed outgoing messages: nothing moves them back.
FINAL = frozenset({MessageStatus.DELIVERED, MessageStatus.READ})


def may_become(new: MessageStatus) -> frozenset[MessageStatus]:
    """The statuses a message may have for ``new`` to be recorded over them."""
    if new is MessageStatus.READ:
        return frozenset({MessageStatus.DELIVERED})
    if new is MessageStatus.DELIVERED:
        return frozenset(MessageStatus) - FINAL
    return frozenset(MessageStatus) - FINAL - {new}


def group_status(copies: dict[str, MessageStatus]) -> tuple[MessageStatus, str | None] | None:
    """A group message's status from its per-member copies' (``None``: still going)."""
    if any(s in PENDING for s in copies.values()):
        return None
    failed = sorted(m for m, s in copies.items() if s == MessageStatus.FAILED)
    if failed:
        return MessageStatus.FAILED, f"not delivered to {', '.join(failed)}"
    return MessageStatus.DELIVERED, None
