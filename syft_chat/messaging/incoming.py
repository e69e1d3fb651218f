"""The incoming path: from an authenticated request to a stored, applied message.

Decode (``chat_decode_body``: the built-in JSON codec or a plugin's), check the
envelope against the transport-authenticated sender, ask ``chat_accept_message``,
then, in **one store transaction**, run the kind's check, store the message and
apply it (an edit changes its message, a group change the member list, a chat
message picks up the changes that waited for it). Either all of it is durable or
none of it is and the sender is told to send again (503), so a resend can never
find a half-done state. Only then is the sender answered and the message handed to
:mod:`syft_chat.messaging.ordering` to be announced, in its sender's order, off the
serving thread. Refused requests are kept in ``failed_messages``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from syft_chat.dispatch import HookDecisionError
from syft_chat.errors import StorageError
from syft_chat.identity import is_canonical
from syft_chat.interfaces import (
    GROUP_PREFIX,
    IncomingRequest,
    MessageQuery,
    Reply,
    StoredMessage,
)
from syft_chat.messaging.budget import SenderBudget
from syft_chat.messaging.kinds import Refusal
from syft_chat.messaging.ordering import Conversations
from syft_chat.models import (
    PROTOCOL_VERSION,
    ChatMessage,
    ChatResponse,
    Direction,
    Envelope,
    MessageKind,
    MessageStatus,
    json_size,
    strip_peer_claims,
    utcnow,
)

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = ["Incoming", "stray_actions"]

log = logging.getLogger("syft_chat.incoming")

#: an incoming timestamp further in the future than this is replaced by the
#: time of receipt (a peer must not pin its messages to the end of history)
_MAX_CLOCK_SKEW = timedelta(minutes=5)
#: an incoming timestamp is never earlier than this before the conversation's first
#: message here (before the time of receipt, for a conversation's first message): a peer
#: must not pin its messages to the start of history (backdated to year 1)
_MAX_BACKDATE = timedelta(days=1)
_CHAT = frozenset({MessageKind.MESSAGE})


def stray_actions(older_than: timedelta) -> MessageQuery:
    """Incoming edits, deletions and reactions that waited longer than ``older_than`` for a
    message that never came (or that a stranger aimed at nothing): forgotten at start."""
    cutoff = utcnow() - older_than
    return MessageQuery(direction=Direction.INCOMING, applied=False, updated_before=cutoff)


def _answer(code: int, **fields: object) -> Reply:
    return Reply(code, json.dumps(fields).encode())


def _delivered(msg_id: str) -> Reply:
    response = ChatResponse(status=MessageStatus.DELIVERED.value, message_id=msg_id)
    return Reply(200, response.model_dump_json().encode())


class Incoming:
    """The receive path of one client."""

    def __init__(self, core: MessagingCore) -> None:
        self._core = core
        self._store = core.store
        self._settings = core.settings
        self._seen_peers: set[str] = set()
        self._lock = threading.Lock()
        self._budget = SenderBudget(
            self._settings.sender_messages_per_minute, self._settings.sender_bytes_per_minute
        )
        self.ordering = Conversations(
            core.announcer.announce,
            workers=self._settings.listener_threads,
            gap_timeout=self._settings.order_gap_timeout,
            name=f"syft-chat-listeners[{core.email}]",
        )

    def _know(self, peer: str) -> None:
        """On first sight of ``peer`` in this process, continue its conversation's order."""
        if peer in self._seen_peers:
            return
        with self._lock:  # held until expected: the resume thread may submit meanwhile
            if peer in self._seen_peers:
                return
            last = self._store.max_seq(peer, Direction.INCOMING, notified=True)
            if last:
                self.ordering.expect(peer, last + 1)
            self._seen_peers.add(peer)

    def forget_strays(self) -> None:
        """At start: forget the edits / reactions whose message never came (or that a
        stranger aimed at nothing); an indexed delete (see the store's schema)."""
        self._store.remove(stray_actions(timedelta(days=self._settings.waiting_action_days)))

    def resume(self) -> None:
        """At start: announce what was stored but not yet announced (e.g. after a crash)."""
        waiting = MessageQuery(direction=Direction.INCOMING, notified=False, order="seq")
        for row in self._store.find(waiting):
            peer = row.peer or row.message.sender
            self._know(peer)
            self.ordering.submit(peer, row.message)

    def _refuse(
        self,
        request: IncomingRequest,
        refusal: Refusal,
        msg_id: str | None,
        *,
        public: str | None = None,
    ) -> Reply:
        """Record a refusal (with its reason) and answer the sender (with ``public``)."""
        self._core.record_refusal(request.sender, refusal.reason, request.body, msg_id)
        return _answer(
            refusal.code, status="rejected", message_id=msg_id, error=public or refusal.reason
        )

    def on_request(self, request: IncomingRequest) -> Reply:
        """Serving thread: decide, store and apply in one transaction, answer."""
        core = self._core
        wait = self._budget.spend(request.sender, len(request.body))
        if wait:  # a flood from one sender must not delay the others: not a refusal
            return _answer(
                429,
                status="error",
                retry=True,
                retry_after=round(wait, 3),
                error="too many messages from this sender; send again later",
            )
        try:
            envelope = core.hooks.decode_body(request, core.client)
        except HookDecisionError as exc:  # details stay local: the sender learns no more
            if exc.retry:  # not now (e.g. encrypted for keys that changed): encode and resend
                return _answer(
                    503, status="error", retry=True, error=f"could not decode: {exc.public}"
                )
            reason = f"could not decode: {exc.public or exc}"
            public = f"could not decode: {exc.public or 'refused by a plugin'}"
            return self._refuse(request, Refusal(400, reason), None, public=public)
        msg_id = envelope.msg_id
        problem = self._check(request, envelope)
        if problem is not None:
            return self._refuse(request, problem, msg_id)
        message = envelope.to_message(status=MessageStatus.RECEIVED)
        # the bot label is our judgement, never the peer's: its claim is kept as a claim
        message = message.model_copy(update={"metadata": strip_peer_claims(message.metadata)})
        try:
            message = self._own_reply(message)
        except StorageError:
            return _answer(
                503,
                status="error",
                message_id=msg_id,
                retry=True,
                error="receiver could not store the message",
            )
        now = utcnow()
        if message.timestamp > now + _MAX_CLOCK_SKEW:
            message = message.model_copy(update={"timestamp": now})
        floor = self._earliest(request.sender, message, now)
        if message.timestamp < floor:
            message = message.model_copy(update={"timestamp": floor})
        try:
            refusal = core.hooks.accept_message(message, request.sender, core.client)
        except HookDecisionError as exc:  # fail closed; the details stay local
            if self._stored(request.sender, msg_id):
                return _delivered(msg_id)
            public = f"refused: {exc.public or 'refused by a plugin'}"
            return self._refuse(request, Refusal(403, f"refused: {exc}"), msg_id, public=public)
        if refusal:
            if self._stored(request.sender, msg_id):
                return _delivered(msg_id)
            return self._refuse(request, Refusal(403, f"refused: {refusal}"), msg_id)
        rule = core.kinds.get(message.kind)
        if rule is None:
            return self._refuse(request, Refusal(400, f"unknown kind {message.kind}"), msg_id)
        message = rule.normalise(message)
        self._know(request.sender)
        record = StoredMessage(
            message,
            Direction.INCOMING,
            request.sender,
            applied=not message.kind.acts_on_message,
            notified=False,
        )
        try:
            with core.deferring() as committed, self._store.transaction():
                # message ids are per sender: another sender's message with this id is
                # another message, never a reason to refuse this one
                if self._store.get(msg_id, sender=request.sender) is not None:
                    refused = None  # a resend of what is stored and applied
                    stored = False
                else:
                    refused = rule.check(message, request.sender)
                    stored = refused is None and self._store.insert(record)
                    if stored:
                        rule.apply(record)
            for fn, args in committed:  # what plugins hear of the change, now it is durable
                fn(*args)
        except StorageError as exc:
            (log.debug if exc.logged else log.error)(
                "could not store a message from %s: %s", request.sender, exc
            )
            return _answer(
                503,
                status="error",
                message_id=msg_id,
                retry=True,
                error="receiver could not store the message",
            )
        if refused is not None:
            if refused.retry:  # not yet: the sender will try again
                return _answer(
                    refused.code,
                    status="error",
                    message_id=msg_id,
                    retry=True,
                    error=refused.reason,
                )
            return self._refuse(request, refused, msg_id)
        if stored:
            self.ordering.submit(request.sender, message, envelope.floor)
            try:
                rule.after(record)
            except Exception:  # the message is stored and answered: never undone
                log.exception("after storing %s from %s", msg_id, request.sender)
        return _delivered(msg_id)

    def _stored(self, sender: str, msg_id: str) -> bool:
        """Whether ``sender``'s ``msg_id`` is stored here: a resend of what was accepted
        before (its answer lost to a crash or a power cut) is confirmed, even if the
        sender was blocked since, never refused: the sender would record as failed a
        message that was stored and announced here."""
        try:
            return self._store.get(msg_id, sender=sender) is not None
        except StorageError:
            return False

    def _own_reply(self, message: ChatMessage) -> ChatMessage:
        """``message`` answering nothing if its ``reply_to`` names a message stored here of
        another conversation (or hidden): a thread never spans conversations."""
        if message.reply_to is None:
            return message
        parent = self._store.get(message.reply_to)
        if parent is None:  # not here (yet): a history only links it within its thread
            return message
        own = f"{GROUP_PREFIX}{message.group_id}" if message.group_id else message.sender
        if parent.message.kind is MessageKind.MESSAGE and parent.conversation == own:
            return message
        return message.model_copy(update={"reply_to": None})

    def _earliest(self, sender: str, message: ChatMessage, now: datetime) -> datetime:
        """The earliest timestamp ``message`` may carry (earlier ones are clamped to it).

        A day before the conversation's first chat message here (the group's, for a group
        message; before ``now`` if there is none yet), and never before the latest
        message from ``sender`` with a lower ``seq``: the latest of all its messages when
        ``message`` has no ``seq`` or one already used (a late message, whose ``seq``
        fills a gap, is only kept after the ones numbered before it).
        """
        conversation = f"{GROUP_PREFIX}{message.group_id}" if message.group_id else sender
        first_query = MessageQuery(conversation=conversation, kinds=_CHAT, order="time", limit=1)
        try:
            first = self._store.find(first_query)
            floor = (first[0].message.timestamp if first else now) - _MAX_BACKDATE
        except OverflowError:  # a year-1 timestamp stored before this rule
            floor = datetime.min.replace(tzinfo=timezone.utc)
        except StorageError:
            return now - _MAX_BACKDATE
        try:
            previous = self._previous(sender, message.seq)
        except (StorageError, OverflowError):
            previous = None
        return max(floor, previous) if previous is not None else floor

    def _previous(self, sender: str, seq: int | None) -> datetime | None:
        """The time of the latest message from ``sender`` that a message numbered ``seq``
        follows (see :meth:`_earliest`)."""
        mine = MessageQuery(peer=sender, direction=Direction.INCOMING)
        latest = self._store.find(replace(mine, order="time", limit=1, last=True))
        if not latest:
            return None
        newest = latest[0].message
        if seq is None or (newest.seq is not None and newest.seq < seq):
            return newest.timestamp  # the usual case: the next message, in order
        at_most = self._store.find(replace(mine, seq_at_most=seq, order="seq", limit=1, last=True))
        if at_most and at_most[0].message.seq == seq:  # a number used already
            return newest.timestamp
        lower = self._store.find(
            replace(mine, seq_at_most=seq - 1, order="time", limit=1, last=True)
        )
        return lower[0].message.timestamp if lower else None

    def _check(self, request: IncomingRequest, envelope: Envelope) -> Refusal | None:
        limits, me = self._settings, self._core.email
        if not is_canonical(request.sender):  # whatever the transport, one spelling per identity
            return Refusal(400, f"sender {request.sender!a} is not a canonical datasite email")
        if envelope.v > PROTOCOL_VERSION:
            return Refusal(400, f"unsupported envelope version {envelope.v}")
        if envelope.sender != request.sender:
            return Refusal(
                403,
                f"sender mismatch: message from {request.sender} "
                f"claims to be from {envelope.sender}",
            )
        if envelope.recipient != me:
            return Refusal(400, f"addressed to {envelope.recipient}, not {me}")
        if envelope.attachments and envelope.kind is not MessageKind.MESSAGE:
            return Refusal(400, f"a {envelope.kind} message carries no attachments")
        try:
            size = len(envelope.content.encode("utf-8"))
        except UnicodeEncodeError:
            return Refusal(400, "content is not valid Unicode text")
        if size > limits.max_content_bytes:
            return Refusal(
                413, f"content is {size} bytes, over the {limits.max_content_bytes}-byte limit"
            )
        try:
            if json_size(envelope.metadata) > limits.max_metadata_bytes:
                return Refusal(413, "metadata over the size limit")
        except ValueError:
            return Refusal(400, "metadata is not valid JSON (NaN or infinity)")
        return None

    def close(self) -> None:
        self.ordering.close()
