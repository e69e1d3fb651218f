"""Message kinds, each declared once: how it is checked, stored and applied on receipt.

A :class:`KindRule` is registered per :class:`~syft_chat.models.MessageKind`; the
receive path (:mod:`syft_chat.messaging.incoming`) looks the rule up once and runs
``check`` and ``apply`` inside the one transaction that stores the message, so a change
is either stored *and* applied or not stored at all (and the sender is told to retry).

The rules of the chat message itself are here; edits, deletions and reactions are
declared in :mod:`syft_chat.features.actions`, membership changes in
:mod:`syft_chat.features.groups`, and the client registers them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from syft_chat.interfaces import StoredMessage
from syft_chat.models import ChatMessage, MessageKind

__all__ = ["Announce", "ChatMessageRule", "KindRule", "Kinds", "Refusal"]

#: What listeners hear of a stored message of a kind: ``"message"`` (message listeners,
#: ``chat_message_received`` and bots), ``"change"`` (``chat_message_changed``, for the
#: message it acts on) or ``None`` (nothing).
Announce = Literal["message", "change"] | None


@dataclass(frozen=True)
class Refusal:
    """Why a received message is not stored: an HTTP-like code and a reason.

    ``retry`` means "not yet" (something it depends on has not arrived): the sender is
    asked to send again later and nothing is recorded as refused.
    """

    code: int
    reason: str
    retry: bool = False


class KindRule(Protocol):
    """The receive-side rules of one message kind."""

    kind: ClassVar[MessageKind]
    announce: ClassVar[Announce]

    def normalise(self, message: ChatMessage) -> ChatMessage:
        """The message as it is stored (e.g. a reaction's emoji stripped)."""

    def check(self, message: ChatMessage, actor: str) -> Refusal | None:
        """Whether ``actor`` (transport-authenticated) may send it; ``None``: yes.

        Runs inside the receive transaction, before the message is stored."""

    def apply(self, record: StoredMessage) -> None:
        """What storing it changes; runs inside the receive transaction, after it is
        stored. Raising undoes everything (the sender retries)."""

    def after(self, record: StoredMessage) -> None:
        """Once it is durable and answered: what it sets off (e.g. telling others).
        Runs outside the transaction, on the serving thread; a failure is logged."""

    def describe(self, message: ChatMessage) -> str:
        """What it does, in a word (the ``change`` of ``chat_message_changed``)."""


class Kinds:
    """The rule of every kind that may arrive."""

    def __init__(self) -> None:
        self._rules: dict[MessageKind, KindRule] = {}

    def register(self, rule: KindRule) -> None:
        if rule.kind in self._rules:
            raise ValueError(f"the {rule.kind.value!r} kind is declared twice")
        self._rules[rule.kind] = rule

    def get(self, kind: MessageKind) -> KindRule | None:
        return self._rules.get(kind)


class ChatMessageRule:
    """A chat message: anyone the contact policy admits may send one; storing it applies
    the edits, deletions and reactions that arrived before it."""

    kind: ClassVar[MessageKind] = MessageKind.MESSAGE
    announce: ClassVar[Announce] = "message"

    def __init__(
        self,
        *,
        conversation_check: Callable[[ChatMessage, str], Refusal | None],
        apply_waiting: Callable[[ChatMessage], None],
    ) -> None:
        self._conversation_check = conversation_check
        self._apply_waiting = apply_waiting

    def normalise(self, message: ChatMessage) -> ChatMessage:
        return message

    def check(self, message: ChatMessage, actor: str) -> Refusal | None:
        return self._conversation_check(message, actor)

    def apply(self, record: StoredMessage) -> None:
        self._apply_waiting(record.message)

    def after(self, record: StoredMessage) -> None:
        pass

    def describe(self, message: ChatMessage) -> str:
        return "received"
