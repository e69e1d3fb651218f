"""The two delivery paths: outgoing (outbox, retries, confirmations) and incoming.

Outgoing: a message is stored ``queued`` before anything is written for the
transport; each attempt writes a fresh request (new id, new expiry) and
withdraws the previous one; the answer to *any* attempt settles it
(``delivered``, or ``failed`` for a refusal); transient answers (a request
read half-synced, an expired request, a receiver that could not store) and
silence lead to another attempt, with a doubling delay. All of it is in the
database, so a restart resumes where it stopped.

Incoming: authenticate, decode, check, accept, store (de-duplicated on
``msg_id``), answer; announcing to listeners and bots happens afterwards, in
the sender's order, off the serving thread (see ``conversations.py``).
Refused requests are kept in ``failed_messages``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from syft_chat.dispatch import HookDecisionError
from syft_chat.display import UNPRINTABLE
from syft_chat.errors import DeliveryError, StorageError
from syft_chat.features.actions import authorize
from syft_chat.features.groups import (
    check_group_change,
    check_group_message,
    group_status,
    parse_change,
)
from syft_chat.interfaces import IncomingRequest, Reply
from syft_chat.messaging.ordering import Conversations
from syft_chat.messaging.retry import Outbox
from syft_chat.models import (
    PROTOCOL_VERSION,
    ChatMessage,
    ChatResponse,
    Direction,
    Envelope,
    MessageStatus,
    describe_error,
    utcnow,
)

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient

__all__ = ["Incoming", "Outgoing"]

log = logging.getLogger("syft_chat.messaging.delivery")

_PENDING = (MessageStatus.QUEUED, MessageStatus.SENT)
_TRANSIENT_CODES = {419, 425, 429, 500, 502, 503, 504}


def _parse_json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON; raises ValueError for NaN / infinity."""
    return len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())


#: an incoming timestamp further in the future than this is replaced by the
#: time of receipt (a peer must not pin its messages to the end of history)
_MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class _Flight:
    """What is known in memory about an unconfirmed outgoing message."""

    message: ChatMessage
    peer: str
    request_id: str | None = None  # the latest attempt
    settled: threading.Event = field(default_factory=threading.Event)


class Outgoing:
    """Everything that happens to a message after ``send_message`` stored it.

    The database is the truth (a restart rebuilds everything from it); the
    in-memory ``_flights`` only spare the hot path from reading it back.
    """

    def __init__(self, client: SyftChatClient) -> None:
        self.client = client
        self.store = client.store
        self.transport = client.transport
        self.settings = client.settings
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}  # msg_id -> flight, until settled
        self._requests: dict[str, str] = {}  # request id -> msg_id, every live attempt
        self.outbox = Outbox(
            self._retry,
            initial=self.settings.retry_initial,
            maximum=self.settings.retry_max,
            name=f"syft-chat-outbox[{client.email}]",
        )

    # ------------------------------------------------------------------ queueing

    def queue(self, message: ChatMessage, peer: str) -> ChatMessage:
        """Number and store a new outgoing message (status ``queued``)."""
        numbered = self.store.add_outgoing(message, peer)  # atomic: no repeats, no gaps
        with self._lock:
            self._flights[numbered.msg_id] = _Flight(numbered, peer)
        return numbered

    def resume(self) -> None:
        """At start: collect answers that arrived while we were away, resend the rest."""
        rows = self.store.outbox_requests()
        with self._lock:
            for message, peer, request_id in rows:
                self._flights[message.msg_id] = _Flight(message, peer, request_id)
                if request_id:
                    self._requests[request_id] = message.msg_id
        self.transport.resume(sorted({peer for _, peer, _ in rows}))
        for message, _, _ in rows:
            self.outbox.track(message.msg_id, delay=0)

    def _floor(self, peer: str) -> int | None:
        """The lowest unconfirmed sequence number to ``peer`` (see ``Envelope.floor``)."""
        seqs = [f.message.seq for f in self._flights.values() if f.peer == peer and f.message.seq]
        return min(seqs) if seqs else None

    # ------------------------------------------------------------------ attempts

    def attempt(self, msg_id: str) -> None:
        """Write a (new) request for the unconfirmed message ``msg_id``.

        Raises :class:`DeliveryError` if a plugin refuses to encode it (the
        message is then ``failed``) or the transport cannot write (retried).
        """
        with self._lock:
            flight = self._flights.get(msg_id)
            floor = self._floor(flight.peer) if flight is not None else None
        if flight is None:
            return  # settled meanwhile
        peer = flight.peer
        shown = flight.message
        if shown.kind == "fanout":  # one member's copy of a group message: send the original
            original = self.store.get(shown.target or "")
            if original is None:
                self.settle(msg_id)
                return
            shown = original.model_copy(update={"seq": shown.seq})
        envelope = Envelope.from_message(shown, peer, floor=floor)
        try:
            body = self.client.hooks.encode_body(envelope, self.client)
        except HookDecisionError as exc:
            self.client._set_status(msg_id, MessageStatus.FAILED, str(exc))
            self.settle(msg_id)
            raise DeliveryError(f"not sent: {exc}", msg_id=msg_id) from exc
        if body is None:
            body = envelope.model_dump_json().encode()
        request_id = str(uuid.uuid4())
        with self._lock:
            previous, flight.request_id = flight.request_id, request_id
            self._requests[request_id] = msg_id
        if previous is not None:
            self.transport.withdraw(peer, previous)
        self.outbox.track(msg_id)  # the next attempt, unless an answer settles it first
        try:
            self.transport.send(
                peer,
                body,
                request_id=request_id,
                expires=utcnow() + timedelta(seconds=self.settings.request_expiry),
            )
        except Exception as exc:
            log.warning("could not write a request for %s: %s (will retry)", msg_id, exc)
            raise DeliveryError(f"could not write the request: {exc}", msg_id=msg_id) from exc
        if self.store.record_attempt(msg_id, request_id):  # queued -> sent
            self.client._notify_status(msg_id, MessageStatus.SENT, None)

    def _retry(self, msg_id: str) -> None:
        """Outbox thread: look for an answer, else send again."""
        with self._lock:
            flight = self._flights.get(msg_id)
        if flight is None or self.client.closed:
            return
        if flight.request_id is not None:
            self.transport.poll_reply(flight.peer, flight.request_id)
        message = self.store.get(msg_id)
        if message is None or message.status not in _PENDING:
            self.settle(msg_id)
            return
        with contextlib.suppress(DeliveryError):  # logged; a write error is retried
            self.attempt(msg_id)

    # ------------------------------------------------------------------ answers

    def on_reply(self, request_id: str, peer: str, reply: Reply) -> None:
        """Transport thread: the answer to one of our requests (possibly an old attempt)."""
        body = _parse_json(reply.body)
        with self._lock:
            msg_id = self._requests.get(request_id) or str(body.get("message_id") or "")
            flight = self._flights.get(msg_id)
        if flight is not None:
            message: ChatMessage | None = flight.message
            latest = flight.request_id == request_id
        else:  # a late answer for a message settled or from before a restart
            message = self.store.get(msg_id) if msg_id else None
            if message is not None and message.group_id and message.recipient != peer:
                message = self.store.get(f"{msg_id}/{peer}")  # that member's copy
                msg_id = message.msg_id if message is not None else msg_id
            latest = False
        if message is None or message.recipient != peer or message.sender != self.client.email:
            log.info("ignoring an answer from %s to an unknown request %s", peer, request_id)
            return
        if reply.ok:
            if self.client._set_status(msg_id, MessageStatus.DELIVERED):
                response = self._response(body, msg_id)
                self.client._notify(self.client.hooks.message_sent, message, response, self.client)
            self.settle(msg_id)
        elif body.get("retry") or reply.status_code in _TRANSIENT_CODES:
            if latest:
                log.info("transient answer for %s: %s; sending again", msg_id, body.get("error"))
                self.outbox.track(msg_id, soon=True)
            return
        else:
            error = str(body.get("error") or f"refused with status {reply.status_code}")
            self.client._set_status(msg_id, MessageStatus.FAILED, error)
            self.settle(msg_id)
        if message.kind == "fanout" and message.target:
            self._settle_group_message(message.target)

    def _settle_group_message(self, msg_id: str) -> None:
        """A member's copy was settled: is the group message settled for everyone?"""
        outcome = group_status(self.store.copies(msg_id))
        if outcome is not None:
            self.client._set_status(msg_id, outcome[0], outcome[1])

    @staticmethod
    def _response(body: dict[str, Any], msg_id: str) -> ChatResponse:
        try:
            response = ChatResponse.model_validate(body)
        except ValidationError:
            return ChatResponse(status=MessageStatus.DELIVERED.value, message_id=msg_id)
        return response.model_copy(update={"message_id": msg_id})

    def settle(self, msg_id: str) -> None:
        """The message is delivered or failed for good: stop tracking it, wake waiters."""
        self.outbox.forget(msg_id)
        with self._lock:
            flight = self._flights.pop(msg_id, None)
            if flight is not None:
                for request_id in [r for r, m in self._requests.items() if m == msg_id]:
                    del self._requests[request_id]
        if flight is not None:
            flight.settled.set()

    def wait(self, msg_id: str, timeout: float) -> ChatMessage | None:
        """Wait up to ``timeout`` s for ``msg_id`` to be settled; return it as stored."""
        end = time.monotonic() + timeout
        with self._lock:
            flight = self._flights.get(msg_id)
        while flight is not None and not self.client.closed:
            remaining = end - time.monotonic()
            if remaining <= 0 or flight.settled.wait(min(1.0, remaining)):
                break
            request_id = flight.request_id  # safety net for a missed file event
            if request_id is not None:
                self.transport.poll_reply(flight.peer, request_id)
        return self.store.get(msg_id)

    def close(self) -> None:
        self.outbox.close()
        with self._lock:
            flights = list(self._flights.values())
        for flight in flights:
            flight.settled.set()


class Incoming:
    """The receive path: from an authenticated request to a stored, announced message."""

    def __init__(self, client: SyftChatClient) -> None:
        self.client = client
        self.store = client.store
        self.settings = client.settings
        self._seen_peers: set[str] = set()
        self._lock = threading.Lock()
        self.conversations = Conversations(
            client._announce,
            lambda message: self.store.mark_notified(message.msg_id),
            workers=self.settings.listener_threads,
            gap_timeout=self.settings.order_gap_timeout,
            name=f"syft-chat-listeners[{client.email}]",
        )

    def _know(self, peer: str) -> None:
        """On first sight of ``peer`` in this process, continue its conversation's order."""
        with self._lock:
            if peer in self._seen_peers:
                return
            self._seen_peers.add(peer)
        last = self.store.last_notified_seq(peer)
        if last is not None:
            self.conversations.expect(peer, last + 1)

    def resume(self) -> None:
        """At start: announce what was stored but not yet announced (e.g. after a crash)."""
        # edits / reactions whose message never came (or that a stranger aimed at nothing)
        self.store.prune_waiting_actions(timedelta(days=self.settings.waiting_action_days))
        for message, peer in self.store.unnotified():
            self._know(peer)
            self.conversations.submit(peer, message)

    def reject(self, sender: str, reason: str, raw: bytes, msg_id: str | None = None) -> None:
        """Keep a refused request in ``failed_messages`` and tell plugins."""
        log.info("refused a message from %s: %s", sender, reason)
        try:
            self.store.record_failed(
                sender=sender,
                reason=reason,
                raw=raw[: self.settings.failed_raw_bytes],
                msg_id=msg_id,
                keep=self.settings.failed_messages_kept,
            )
        except StorageError as exc:
            log.error("could not record a refused message from %s: %s", sender, exc)
        self.client.hooks.message_rejected(sender, reason, raw, self.client)

    def _refuse(
        self,
        request: IncomingRequest,
        code: int,
        reason: str,
        msg_id: str | None,
        *,
        public: str | None = None,
    ) -> Reply:
        """Record a refusal (with ``reason``) and answer the sender (with ``public``)."""
        self.reject(request.sender, reason, request.body, msg_id)
        answer = {"status": "rejected", "message_id": msg_id, "error": public or reason}
        return Reply(code, json.dumps(answer).encode())

    def on_request(self, request: IncomingRequest) -> Reply:
        """Serving thread: decide, store, answer. Announcing happens later, elsewhere."""
        client = self.client
        try:
            envelope = client.hooks.decode_body(request, client) or Envelope.model_validate_json(
                request.body
            )
        except HookDecisionError as exc:  # details stay local: the sender learns no more
            return self._refuse(
                request,
                400,
                f"could not decode: {exc}",
                None,
                public=f"could not decode: {exc.public or 'refused by a plugin'}",
            )
        except (ValidationError, ValueError, OverflowError) as exc:
            return self._refuse(request, 400, f"malformed message: {describe_error(exc)}", None)
        msg_id = envelope.msg_id
        problem = self._check(request, envelope)
        if problem is not None:
            return self._refuse(request, problem[0], problem[1], msg_id)
        message = envelope.to_message(status=MessageStatus.RECEIVED)
        now = utcnow()
        if message.timestamp > now + _MAX_CLOCK_SKEW:
            message = message.model_copy(update={"timestamp": now})
        try:
            refusal = client.hooks.accept_message(message, request.sender, client)
        except HookDecisionError as exc:  # fail closed; the details stay local
            return self._refuse(
                request,
                403,
                f"refused: {exc}",
                msg_id,
                public=f"refused: {exc.public or 'refused by a plugin'}",
            )
        if refusal:
            return self._refuse(request, 403, f"refused: {refusal}", msg_id)
        target = None
        if message.kind == "group":
            problem = check_group_change(self.store, message, request.sender, client.email)
            if problem is not None:
                return self._refuse(request, problem[0], problem[1], msg_id)
        elif message.group_id:
            verdict = check_group_message(self.store, message, request.sender)
            if verdict is not None and verdict[2]:  # not yet: the sender will try again
                answer = {"status": "error", "message_id": msg_id, "retry": True}
                return Reply(verdict[0], json.dumps({**answer, "error": verdict[1]}).encode())
            if verdict is not None:
                return self._refuse(request, verdict[0], verdict[1], msg_id)
        if message.kind == "reaction":  # stored as the sender's client would send it
            message = message.model_copy(update={"content": message.content.strip()})
        if message.kind not in ("message", "group"):
            target = self.store.get(message.target or "")
            problem = self._check_action(message, target, request.sender)
            if problem is not None:
                return self._refuse(request, problem[0], problem[1], msg_id)
        self._know(request.sender)
        try:
            inserted = self.store.add(
                message,
                direction=Direction.INCOMING,
                peer=request.sender,
                status=MessageStatus.RECEIVED,
            )
            if not inserted:
                existing = self.store.get(msg_id)
                if existing is None or existing.sender != request.sender:
                    return self._refuse(
                        request, 409, "msg_id already used by another message", msg_id
                    )
            elif message.kind == "group":
                self.store.apply_group_change(message, parse_change(message))
            elif message.kind != "message":
                if target is not None:  # else it waits for its target to arrive
                    self.store.apply_action(message, request.sender)
            else:
                self._apply_waiting(message)
        except StorageError as exc:
            log.error("could not store a message from %s: %s", request.sender, exc)
            answer = {
                "status": "error",
                "message_id": msg_id,
                "retry": True,
                "error": "receiver could not store the message",
            }
            return Reply(503, json.dumps(answer).encode())
        if inserted:
            self.conversations.submit(request.sender, message, envelope.floor)
        response = ChatResponse(status=MessageStatus.DELIVERED.value, message_id=msg_id)
        return Reply(200, response.model_dump_json().encode())

    def _check_action(
        self, action: ChatMessage, target: ChatMessage | None, actor: str
    ) -> tuple[int, str] | None:
        if not action.target:
            return 400, f"a {action.kind} must name the message it acts on"
        if action.kind == "reaction" and (
            not 0 < len(action.content) <= 32 or UNPRINTABLE.search(action.content)
        ):
            return 400, "a reaction is 1 to 32 printable characters"
        if target is None:
            return None  # not here yet: checked when it arrives
        group = self.store.group(target.group_id) if target.group_id else None
        members = group.members if group is not None else None
        problem = authorize(action, target, actor, self.client.email, members)
        return None if problem is None else (403, problem)

    def _apply_waiting(self, message: ChatMessage) -> None:
        """Apply the edits / deletions / reactions that arrived before ``message``."""
        policy = self.client.contact_policy
        for action in self.store.waiting_actions(message.msg_id):
            refused = policy.refuses(action.sender)  # blocked since it arrived?
            problem = (403, f"refused: {refused}") if refused else None
            problem = problem or self._check_action(action, message, action.sender)
            if problem is None:
                self.store.apply_action(action, action.sender)
            else:
                self.store.refuse_action(action.msg_id, problem[1])
                self.reject(action.sender, problem[1], b"", action.msg_id)

    def _check(self, request: IncomingRequest, envelope: Envelope) -> tuple[int, str] | None:
        limits = self.settings
        if envelope.v > PROTOCOL_VERSION:
            return 400, f"unsupported envelope version {envelope.v}"
        if envelope.sender != request.sender:
            return 403, (
                f"sender mismatch: message from {request.sender} "
                f"claims to be from {envelope.sender}"
            )
        if envelope.recipient != self.client.email:
            return 400, f"addressed to {envelope.recipient}, not {self.client.email}"
        try:
            size = len(envelope.content.encode("utf-8"))
        except UnicodeEncodeError:
            return 400, "content is not valid Unicode text"
        if size > limits.max_content_bytes:
            return 413, f"content is {size} bytes, over the {limits.max_content_bytes}-byte limit"
        try:
            if _json_size(envelope.metadata) > limits.max_metadata_bytes:
                return 413, "metadata over the size limit"
        except ValueError:
            return 400, "metadata is not valid JSON (NaN or infinity)"
        return None

    def close(self) -> None:
        self.conversations.close()
