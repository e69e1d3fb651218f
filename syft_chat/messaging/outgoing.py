"""The outgoing path: outbox, attempts, retries and confirmations.

A message is stored ``queued`` before anything is handed to the transport; each
attempt sends a fresh request (new id, new expiry) replacing the previous one; the
answer to *any* attempt settles it (``delivered``, or ``failed`` for a refusal);
transient answers (a request read half-synced, an expired request, a receiver that
could not store, "not yet") and silence lead to another attempt, on the schedule of
:mod:`syft_chat.messaging.retry`: its first step scales with the round trip observed
for the peer, and a retry that finds the previous request still waiting for the peer
(the transport's ``pending``) keeps it rather than writing another. A refusal by the
network itself (the transport reports it as a ``403`` answer with ``retry: false``)
fails the message like a refusal by the peer. All of it is in the store, so a restart
resumes where it stopped. A group message travels as one copy per member; the copies'
statuses are bookkeeping, and hooks hear of the group message only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from syft_chat.dispatch import HookDecisionError
from syft_chat.errors import DeliveryError, StorageError
from syft_chat.interfaces import MessageQuery, Reply, StoredMessage
from syft_chat.messaging.flights import (
    Flight,
    Floors,
    RequestKey,
    new_request,
    request_key,
    request_text,
)
from syft_chat.messaging.retry import Outbox, RoundTrips
from syft_chat.messaging.status import PENDING, group_status
from syft_chat.models import (
    ChatMessage,
    ChatResponse,
    Direction,
    Envelope,
    MessageKind,
    MessageStatus,
    utcnow,
)

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = ["Outgoing"]

log = logging.getLogger("syft_chat.outgoing")

_TRANSIENT_CODES = {419, 425, 429, 500, 502, 503, 504}


def _parse_json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Outgoing:
    """Everything that happens to a message after it is stored for sending.

    The store is the truth (a restart rebuilds everything from it); the in-memory
    flights only spare the hot path from reading it back.
    """

    def __init__(self, core: MessagingCore) -> None:
        self._core = core
        self._store = core.store
        self._transport = core.transport
        self._settings = core.settings
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}  # msg_id -> flight, until settled
        self._requests: dict[RequestKey, str] = {}  # request -> msg_id, every live attempt
        self._unrecorded: set[str] = set()  # msg_ids whose latest attempt the store lacks
        self._floors = Floors()  # per peer: the unconfirmed seqs of the flights
        #: clear while the start-up backlog is being tracked again (on the resume thread)
        self.resumed = threading.Event()
        self.resumed.set()
        self._deferred = threading.local()  # attempts recorded together (see recorded_together)
        self.schedule = Outbox(
            self._retry,
            initial=self._settings.retry_initial,
            maximum=self._settings.retry_max,
            name=f"syft-chat-outbox[{core.email}]",
            together=self.recorded_together,
        )
        self.round_trips = RoundTrips(
            floor=self._settings.retry_initial,
            factor=self._settings.retry_rtt_factor,
            maximum=self._settings.retry_max,
        )

    # ------------------------------------------------------------------ queueing

    def queue(self, message: ChatMessage, peer: str) -> ChatMessage:
        """Number and store a new outgoing message (status ``queued``), in one transaction
        (so two processes sharing a store never hand out the same number)."""
        store = self._store
        flight: Flight | None = None
        try:
            with store.transaction():
                seq = store.max_seq(peer, Direction.OUTGOING) + 1
                numbered = message.model_copy(update={"seq": seq, "status": MessageStatus.QUEUED})
                store.insert(StoredMessage(numbered, Direction.OUTGOING, peer))
                # tracked before the commit: the resume thread (which reads committed rows)
                # never takes a message sent since the start for one of before it
                flight = Flight.of(numbered, peer)
                with self._lock:
                    self._track(flight)
        except BaseException:
            if flight is not None:
                with self._lock:
                    self._untrack(flight)
            raise
        return numbered

    def _track(self, flight: Flight) -> None:
        """Keep ``flight`` in memory (the caller holds the lock)."""
        msg_id = flight.msg_id
        old = self._flights.get(msg_id)
        if old is not None:
            self._untrack(old)
        self._flights[msg_id] = flight
        if flight.seq:
            self._floors.add(flight.peer, flight.seq)
        if flight.request is not None:
            self._requests[flight.request] = msg_id

    def _untrack(self, flight: Flight) -> None:
        """Forget ``flight`` and its attempts (the caller holds the lock)."""
        msg_id = flight.msg_id
        if self._flights.get(msg_id) is not flight:
            return  # not tracked (or no longer): nothing of it is kept
        del self._flights[msg_id]
        self._unrecorded.discard(msg_id)
        if flight.seq:
            self._floors.remove(flight.peer, flight.seq)
        for request in flight.requests():
            if self._requests.get(request) == msg_id:
                del self._requests[request]

    def resume(self) -> list[str]:
        """At start: track every unconfirmed message again; the peers that owe answers."""
        pending = MessageQuery(direction=Direction.OUTGOING, statuses=PENDING, has_peer=True)
        try:
            found = self._store.find(
                pending
            )  # not under the lock: queue() takes it in a transaction
            with self._lock:  # a follower taking over already tracks what it sent
                rows = [r for r in found if r.msg_id not in self._flights]
                for row in rows:
                    assert row.peer is not None
                    self._track(Flight.of(row.message, row.peer, row.request_id, row.attempts))
        finally:
            self.resumed.set()
        for row in rows:
            self.schedule.track(row.msg_id, delay=0)
        return sorted({row.peer for row in rows if row.peer})

    def pending(self) -> list[ChatMessage]:
        """Unconfirmed outgoing messages users sent (not group copies), oldest first."""
        query = MessageQuery(direction=Direction.OUTGOING, statuses=PENDING, has_peer=True)
        return [
            r.message for r in self._store.find(query) if r.message.kind is not MessageKind.COPY
        ]

    def _floor(self, peer: str) -> int | None:
        """The lowest unconfirmed sequence number to ``peer`` (see ``Envelope.floor``)."""
        return self._floors.lowest(peer)

    def send_later(self, msg_ids: Iterable[str]) -> None:
        """Have the outbox thread make the first attempt at each of ``msg_ids``, in order."""
        for msg_id in msg_ids:
            self.schedule.track(msg_id, delay=0)

    # ------------------------------------------------------------------ attempts

    def attempt(self, msg_id: str, message: ChatMessage | None = None) -> None:
        """Send a (new) request for the unconfirmed message ``msg_id`` (``message``: it, as
        just queued, which saves reading it back).

        Raises :class:`DeliveryError` if a plugin refuses to encode it (the message is
        then ``failed``) or the transport cannot take it (retried).
        """
        core = self._core
        with self._lock:
            flight = self._flights.get(msg_id)
            floor = self._floor(flight.peer) if flight is not None else None
        if flight is None:
            return  # settled meanwhile
        peer = flight.peer
        # the text: of the group message, for one member's copy
        wanted = flight.copy_of if flight.copy_of is not None else msg_id
        if message is None or message.msg_id != wanted:
            stored = self._store.get(wanted, sender=core.email)
            if stored is None:
                self.settle(msg_id)
                return
            message = stored.message
        shown = message.model_copy(update={"seq": flight.seq}) if flight.is_copy else message
        envelope = Envelope.from_message(shown, peer, floor=floor)
        try:
            body = core.hooks.encode_body(envelope, core.client)
        except HookDecisionError as exc:
            self._set(msg_id, flight.is_copy, MessageStatus.FAILED, str(exc))
            self.settle(msg_id)
            raise DeliveryError(f"not sent: {exc}", msg_id=msg_id) from exc
        request = new_request()
        with self._lock:
            if self._flights.get(msg_id) is not flight:
                return  # settled meanwhile
            previous_id = flight.request_id
            previous, flight.request = flight.request, request
            if previous is not None:
                rare = flight.more()
                if rare.earlier is None:
                    rare.earlier = []
                rare.earlier.append(previous)
            flight.attempts += 1
            flight.sent_at = time.monotonic()
            self._requests[request] = msg_id
        request_id = request_text(request)
        # the next attempt, unless an answer settles it first
        self.schedule.track(msg_id, initial=self.round_trips.first_delay(peer))
        try:
            self._transport.send(
                peer,
                body,
                request_id=request_id,
                expires=utcnow() + timedelta(seconds=self._settings.request_expiry),
                replaces=previous_id,
            )
        except Exception as exc:
            log.warning("could not write a request for %s: %s (will retry)", msg_id, exc)
            raise DeliveryError(f"could not write the request: {exc}", msg_id=msg_id) from exc
        # handed over: from here on nothing may raise (a caller retrying on an error would
        # send the message twice); a failure to record the attempt is recorded later
        self._mark_unrecorded([flight])
        deferred: list[Flight] | None = getattr(self._deferred, "flights", None)
        if deferred is not None:
            deferred.append(flight)
        else:
            self._record_attempt(flight)

    @contextlib.contextmanager
    def recorded_together(self) -> Iterator[None]:
        """The attempts made inside (on this thread) are recorded in one transaction at
        the end: one commit, one sync to disk, for a group message's 50 copies. If that
        transaction fails, each is recorded by its next retry (or its answer)."""
        if getattr(self._deferred, "flights", None) is not None:
            yield  # nested: the outer block records
            return
        flights: list[Flight] = []
        self._deferred.flights = flights
        try:
            yield
        finally:
            self._deferred.flights = None
            if flights:
                self._record_all(flights)

    def _record_all(self, flights: list[Flight]) -> None:
        sent: list[str] = []
        try:
            with self._store.transaction():
                for flight in flights:
                    if self._record_attempt(flight, notify=False):
                        sent.append(flight.msg_id)
        except StorageError as exc:
            log.warning("recording %d attempts failed: %s (recorded later)", len(flights), exc)
            self._mark_unrecorded(flights)
            return
        for msg_id in sent:
            self._core.notify_status(msg_id, MessageStatus.SENT, None)

    def _mark_unrecorded(self, flights: list[Flight]) -> None:
        """The latest attempts of ``flights`` are not in the store (yet)."""
        with self._lock:  # (a flight settled meanwhile is left alone)
            self._unrecorded.update(f.msg_id for f in flights if self._flights.get(f.msg_id) is f)

    def _record_attempt(self, flight: Flight, *, notify: bool = True) -> bool:
        """Record the latest attempt (request id, count, ``sent``); on a storage failure,
        log it and leave it to the next retry (or the answer) to record. Whether the
        message became ``sent`` and should be announced so (with ``notify``, it is)."""
        msg_id = flight.msg_id
        changes = {"request_id": flight.request_id, "attempts": flight.attempts}
        became_sent = False
        try:
            if self._store.update(
                msg_id,
                {**changes, "status": MessageStatus.SENT},
                sender=self._core.email,  # (the outbox holds one's own messages only)
                if_status={MessageStatus.QUEUED},
            ):
                became_sent = not flight.is_copy  # a copy's status is bookkeeping
                if became_sent and notify:
                    self._core.notify_status(msg_id, MessageStatus.SENT, None)
            else:
                self._store.update(msg_id, changes, sender=self._core.email)
        except StorageError as exc:
            log.warning(
                "message %s was sent, but recording the attempt failed: %s (recorded later)",
                msg_id,
                exc,
            )
            return False
        self._unrecorded.discard(msg_id)
        return became_sent

    def _retry(self, msg_id: str) -> None:
        """Schedule thread: look for an answer, else send again."""
        with self._lock:
            flight = self._flights.get(msg_id)
        if flight is None or self._core.closed:
            return
        if msg_id in self._unrecorded:
            self._record_attempt(flight)
        if flight.request_id is not None:
            self._transport.collect_reply(flight.peer, flight.request_id)
        stored = self._store.get(msg_id, sender=self._core.email)
        if stored is None or stored.message.status not in PENDING:
            self.settle(msg_id)
            return
        if self._still_waiting(flight):
            # the peer has not picked it up yet (offline, slow sync): another copy would
            # not help; look again later, and renew it before it expires
            self.schedule.track(msg_id, initial=self.round_trips.first_delay(flight.peer))
            return
        with contextlib.suppress(DeliveryError):  # logged; a write error is retried
            self.attempt(msg_id)

    def _still_waiting(self, flight: Flight) -> bool:
        """Whether the latest request is still on its way and valid past the next retry."""
        if flight.request_id is None:
            return False
        until = utcnow() + timedelta(seconds=self._settings.retry_max)
        try:
            return bool(self._transport.pending(flight.peer, flight.request_id, until=until))
        except Exception:  # a transport failing to tell: sending again is always safe
            log.exception("transport could not tell whether %s is pending", flight.request_id)
            return False

    # ------------------------------------------------------------------ answers

    def on_reply(self, request_id: str, peer: str, reply: Reply) -> bool:
        """Transport thread: the answer to one of our requests (possibly an old attempt).

        Returns ``False`` for the answer to a message another process on this datasite
        is still sending (it is not in this process's outbox but pending in the store):
        that process collects it, and the transport leaves the answer for it.
        """
        body = _parse_json(reply.body)
        with self._lock:
            request = request_key(request_id)
            msg_id = self._requests.get(request) or str(body.get("message_id") or "")
            flight = self._flights.get(msg_id)
            latest = flight is not None and flight.request == request
            sent_at = flight.sent_at if flight is not None and latest else None
        core = self._core
        copy_of: str | None
        if flight is not None:
            known, copy_of = flight.peer == peer, flight.copy_of
        else:  # a late answer for a message settled or from before a restart
            me = core.email
            found = self._store.get(msg_id, sender=me) if msg_id else None
            if found is not None and found.message.group_id and found.message.recipient != peer:
                found = self._store.get(f"{msg_id}/{peer}", sender=me)  # that member's copy
            message = found.message if found is not None else None
            latest, sent_at = False, None
            msg_id = message.msg_id if message is not None else msg_id
            known = message is not None and message.recipient == peer and message.sender == me
            copy_of = (
                message.target if message is not None and message.kind is MessageKind.COPY else None
            )
            if found is not None and found.message.status in PENDING:
                with self._lock:
                    mine = msg_id in self._flights
                if not mine:
                    return False  # another process's flight: its answer, for it to collect
        if not known:
            log.info("ignoring an answer from %s to an unknown request %s", peer, request_id)
            return True
        is_copy = copy_of is not None
        if reply.ok:
            if sent_at is not None:  # the latest attempt: its round trip is unambiguous
                self.round_trips.observe(peer, time.monotonic() - sent_at)
            changed = self._set(msg_id, is_copy, MessageStatus.DELIVERED, None)
            if changed and not is_copy:  # a copy is bookkeeping
                self._notify_sent(msg_id, self._response(body, msg_id))
            self.settle(msg_id)
        elif body.get("retry") or reply.status_code in _TRANSIENT_CODES:
            if latest:
                log.info("transient answer for %s: %s; sending again", msg_id, body.get("error"))
                self.schedule.track(msg_id, soon=True)
            return True
        else:
            error = str(body.get("error") or f"refused with status {reply.status_code}")
            self._set(msg_id, is_copy, MessageStatus.FAILED, error)
            self.settle(msg_id)
        if copy_of:
            self._settle_group_message(copy_of)
        return True

    def _notify_sent(self, msg_id: str, response: ChatResponse) -> None:
        """``chat_message_sent`` for a confirmed message (read back: flights hold no text)."""
        try:
            found = self._store.get(msg_id, sender=self._core.email)
        except StorageError as exc:
            log.warning("could not read message %s back to announce it: %s", msg_id, exc)
            return
        if found is not None:
            self._core.notify_sent(found.message, response)

    def _set(self, msg_id: str, is_copy: bool, status: MessageStatus, error: str | None) -> bool:
        """Record a status; hooks hear it unless it is a group copy's (bookkeeping)."""
        return self._core.set_status(msg_id, status, error, announce=not is_copy)

    def _settle_group_message(self, msg_id: str) -> None:
        """A member's copy was settled: is the group message settled for everyone?"""
        copies = MessageQuery(target=msg_id, kinds=frozenset({MessageKind.COPY}))
        statuses = {
            r.peer or "": r.message.status or MessageStatus.QUEUED for r in self._store.find(copies)
        }
        outcome = group_status(statuses)
        if outcome is None:
            return
        if self._core.set_status(msg_id, outcome[0], outcome[1]) and outcome[0] is (
            MessageStatus.DELIVERED
        ):
            group_message = self._store.get(msg_id, sender=self._core.email)
            if group_message is not None and group_message.message.kind is MessageKind.MESSAGE:
                response = ChatResponse(status=MessageStatus.DELIVERED.value, message_id=msg_id)
                self._core.notify_sent(group_message.message, response)

    @staticmethod
    def _response(body: dict[str, Any], msg_id: str) -> ChatResponse:
        try:
            response = ChatResponse.model_validate(body)
        except ValidationError:
            return ChatResponse(status=MessageStatus.DELIVERED.value, message_id=msg_id)
        return response.model_copy(update={"message_id": msg_id})

    def settle(self, msg_id: str) -> None:
        """The message is delivered or failed for good: stop tracking it, wake waiters."""
        self.schedule.forget(msg_id)
        with self._lock:
            flight = self._flights.get(msg_id)
            if flight is not None:
                self._untrack(flight)
            event = flight.settled if flight is not None else None
        if event is not None:
            event.set()

    def wait(self, msg_id: str, timeout: float) -> ChatMessage | None:
        """Wait up to ``timeout`` s for ``msg_id`` to be settled; return it as stored."""
        end = time.monotonic() + timeout
        with self._lock:
            known = msg_id in self._flights
        if not known and not self.resumed.is_set():  # it may be one of the start-up backlog
            self.resumed.wait(timeout)
        with self._lock:  # (settle() untracks under this lock: the event cannot be missed)
            flight = self._flights.get(msg_id)
            if flight is not None and flight.settled is None:
                flight.more().settled = threading.Event()
            event = flight.settled if flight is not None else None
        while flight is not None and event is not None and not self._core.closed:
            remaining = end - time.monotonic()
            if remaining <= 0 or event.wait(min(1.0, remaining)):
                break
            request_id = flight.request_id  # safety net for a missed notification
            if request_id is not None:
                self._transport.collect_reply(flight.peer, request_id)
        try:
            found = self._store.get(msg_id, sender=self._core.email)
        except StorageError as exc:  # it was handed over: report it unconfirmed, not an error
            log.warning("could not read message %s back: %s", msg_id, exc)
            return None
        return found.message if found is not None else None

    def close(self) -> None:
        self.schedule.close()
        with self._lock:
            events = [f.settled for f in self._flights.values() if f.settled is not None]
        for event in events:
            event.set()
