"""The contract suite every :class:`~syft_chat.interfaces.Transport` passes.

Subclass :class:`TransportContract` and provide a ``make_transport`` fixture: a function
that returns a new, not yet started transport for one of the datasites :data:`ALICE`
and :data:`BOB` of one shared workspace (calling it twice for the same email is a
restart)::

    from syft_chat.testing.transport_contract import TransportContract

    class TestMyTransport(TransportContract):
        @pytest.fixture
        def make_transport(self, tmp_path):
            return lambda email: MyTransport(tmp_path, email)

The suite starts the transports with recording handlers and stops every one of them
after each test. This module imports pytest; ``syft_chat.testing`` itself does not.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from functools import partial

import pytest

from syft_chat.interfaces import IncomingRequest, Reply, Transport
from syft_chat.models import ContactPolicy
from syft_chat.testing import wait_for

__all__ = ["ALICE", "BOB", "Recorder", "TransportContract"]

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"
NOBODY = "nobody@openmined.org"
#: how long the suite waits to see that nothing more arrives
QUIET = 0.3


def _expires() -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=5)


class Recorder:
    """Handlers for ``Transport.start`` that record what they are called with.

    Requests are answered ``status_code`` with ``b"re:" + body``.
    """

    def __init__(self, status_code: int = 200) -> None:
        self.status_code = status_code
        self.requests: list[IncomingRequest] = []
        self.replies: list[tuple[str, str, Reply]] = []
        self.rejects: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()

    def on_request(self, request: IncomingRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        return Reply(self.status_code, b"re:" + request.body)

    def on_reply(self, request_id: str, peer: str, reply: Reply) -> None:
        with self._lock:
            self.replies.append((request_id, peer, reply))

    def on_reject(self, sender: str, reason: str, raw: bytes) -> None:
        with self._lock:
            self.rejects.append((sender, reason, raw))

    def requests_with(self, request_id: str) -> list[IncomingRequest]:
        with self._lock:
            return [r for r in self.requests if r.request_id == request_id]

    def replies_to(self, request_id: str) -> list[tuple[str, str, Reply]]:
        with self._lock:
            return [r for r in self.replies if r[0] == request_id]


class _Network:
    """Makes, starts and (at teardown) stops the transports of one test."""

    def __init__(self, make: Callable[[str], Transport]) -> None:
        self._make = make
        self.made: list[Transport] = []

    def new(self, email: str) -> Transport:
        transport = self._make(email)
        self.made.append(transport)
        return transport

    def start(
        self, email: str, recorder: Recorder | None = None, awaiting: tuple[str, ...] = ()
    ) -> tuple[Transport, Recorder]:
        transport, rec = self.new(email), recorder or Recorder()
        transport.start(rec.on_request, rec.on_reply, rec.on_reject, awaiting=awaiting)
        return transport, rec


class TransportContract:
    """Tests of the :class:`Transport` protocol; subclass it and provide ``make_transport``."""

    @pytest.fixture
    def make_transport(self) -> Callable[[str], Transport]:  # pragma: no cover - replaced
        raise NotImplementedError("subclass TransportContract and provide `make_transport`")

    @pytest.fixture
    def net(self, make_transport: Callable[[str], Transport]) -> Iterator[_Network]:
        network = _Network(make_transport)
        yield network
        for transport in network.made:
            transport.stop()

    def _send(self, sender: Transport, to: str, body: bytes, replaces: str | None = None) -> str:
        request_id = str(uuid.uuid4())
        sender.send(to, body, request_id=request_id, expires=_expires(), replaces=replaces)
        return request_id

    # ------------------------------------------------------------------ lifecycle and discovery

    def test_is_a_transport(self, net: _Network) -> None:
        transport = net.new(ALICE)
        assert isinstance(transport, Transport)
        assert isinstance(type(transport).name, str) and type(transport).name

    def test_started_peers_reach_each_other(self, net: _Network) -> None:
        alice, _ = net.start(ALICE)
        bob, _ = net.start(BOB)
        assert alice.can_reach(BOB) and bob.can_reach(ALICE)
        assert not alice.can_reach(NOBODY)
        assert {ALICE, BOB} <= set(alice.list_peers())
        assert NOBODY not in alice.list_peers()
        assert BOB in bob.list_peers() or ALICE in bob.list_peers()

    def test_stop_is_idempotent(self, net: _Network) -> None:
        never_started = net.new(BOB)
        never_started.stop()
        never_started.stop()
        alice, _ = net.start(ALICE)
        alice.stop()
        alice.stop()

    def test_update_access_admits_the_allowed(self, net: _Network) -> None:
        alice, _ = net.start(ALICE)
        bob, bob_rec = net.start(BOB)
        bob.update_access(ContactPolicy(mode="contacts_only", allowed=frozenset({ALICE})))
        request_id = self._send(alice, BOB, b"{}")
        wait_for(lambda: bob_rec.requests_with(request_id))

    # ------------------------------------------------------------------ requests and replies

    def test_request_reaches_the_peer_once_and_its_reply_comes_back(self, net: _Network) -> None:
        alice, alice_rec = net.start(ALICE)
        _, bob_rec = net.start(BOB)
        body = '{"content": "héllo ✓", "n": [1, 2]}'.encode()
        request_id = self._send(alice, BOB, body)
        [request] = wait_for(lambda: bob_rec.requests_with(request_id))
        assert request == IncomingRequest(sender=ALICE, request_id=request_id, body=body)
        [reply] = wait_for(lambda: alice_rec.replies_to(request_id))
        assert reply == (request_id, BOB, Reply(200, b"re:" + body))
        time.sleep(QUIET)
        assert len(bob_rec.requests_with(request_id)) == 1
        assert len(alice_rec.replies_to(request_id)) == 1
        assert alice_rec.rejects == [] and bob_rec.rejects == []

    def test_both_directions_and_many_requests(self, net: _Network) -> None:
        alice, alice_rec = net.start(ALICE)
        bob, bob_rec = net.start(BOB)
        sent = {self._send(alice, BOB, f"a{i}".encode()): f"a{i}".encode() for i in range(5)}
        back = self._send(bob, ALICE, b"from bob")
        for request_id, body in sent.items():
            [request] = wait_for(partial(bob_rec.requests_with, request_id))
            assert (request.sender, request.body) == (ALICE, body)
            [reply] = wait_for(partial(alice_rec.replies_to, request_id))
            assert reply[2].body == b"re:" + body
        [request] = wait_for(lambda: alice_rec.requests_with(back))
        assert (request.sender, request.body) == (BOB, b"from bob")
        wait_for(lambda: bob_rec.replies_to(back))
        time.sleep(QUIET)
        assert len(bob_rec.requests) == 5 and len(alice_rec.replies) == 5

    def test_the_reply_status_code_is_kept(self, net: _Network) -> None:
        alice, alice_rec = net.start(ALICE)
        net.start(BOB, Recorder(status_code=403))
        request_id = self._send(alice, BOB, b"{}")
        [(_, peer, reply)] = wait_for(lambda: alice_rec.replies_to(request_id))
        assert peer == BOB and reply.status_code == 403 and not reply.ok

    def test_a_request_sent_before_the_peer_starts_is_served(self, net: _Network) -> None:
        alice, alice_rec = net.start(ALICE)
        bob, _ = net.start(BOB)
        bob.stop()  # bob's datasite serves, then goes offline
        request_id = self._send(alice, BOB, b"while away")
        _, bob_rec = net.start(BOB)
        [request] = wait_for(lambda: bob_rec.requests_with(request_id))
        assert request.body == b"while away"
        wait_for(lambda: alice_rec.replies_to(request_id))

    def test_send_replacing_an_unanswered_request(self, net: _Network) -> None:
        alice, alice_rec = net.start(ALICE)
        first = self._send(alice, BOB, b"attempt 1")
        second = self._send(alice, BOB, b"attempt 2", replaces=first)
        _, bob_rec = net.start(BOB)
        [request] = wait_for(lambda: bob_rec.requests_with(second))
        assert request.body == b"attempt 2"
        [reply] = wait_for(lambda: alice_rec.replies_to(second))
        assert reply[2].body == b"re:attempt 2"
        time.sleep(QUIET)
        assert len(bob_rec.requests_with(first)) <= 1  # withdrawn, or still answered once
        assert len(alice_rec.replies_to(first)) <= 1

    def test_pending_while_unanswered_and_valid(self, net: _Network) -> None:
        alice, alice_rec = net.start(ALICE)
        bob, _ = net.start(BOB)
        bob.stop()  # offline: the request waits
        request_id = self._send(alice, BOB, b"waiting")
        now = datetime.now(timezone.utc)
        assert alice.pending(BOB, request_id, until=now)
        assert not alice.pending(BOB, request_id, until=now + timedelta(minutes=6))  # expired
        assert not alice.pending(BOB, str(uuid.uuid4()), until=now)  # never sent
        net.start(BOB)
        wait_for(lambda: alice_rec.replies_to(request_id))
        assert not alice.pending(BOB, request_id, until=now)  # answered

    # ------------------------------------------------------------------ missed replies

    def _answered_while_away(self, net: _Network) -> tuple[str, Recorder]:
        """Alice sends to Bob (offline) and stops; then Bob answers. Returns the request id."""
        alice, _ = net.start(ALICE)
        request_id = self._send(alice, BOB, b"are you there?")
        alice.stop()
        _, bob_rec = net.start(BOB)
        wait_for(lambda: bob_rec.requests_with(request_id))
        return request_id, bob_rec

    def test_collect_reply_delivers_a_missed_reply(self, net: _Network) -> None:
        request_id, _ = self._answered_while_away(net)
        alice, rec = net.start(ALICE)

        def collected() -> list[tuple[str, str, Reply]]:
            alice.collect_reply(BOB, request_id)
            return rec.replies_to(request_id)

        [reply] = wait_for(collected)
        assert reply == (request_id, BOB, Reply(200, b"re:are you there?"))
        alice.collect_reply(BOB, request_id)
        time.sleep(QUIET)
        assert len(rec.replies_to(request_id)) == 1
        alice.collect_reply(BOB, str(uuid.uuid4()))  # nothing arrived: nothing happens
        assert len(rec.replies) == 1

    def test_start_awaiting_delivers_replies_that_arrived_meanwhile(self, net: _Network) -> None:
        request_id, _ = self._answered_while_away(net)
        time.sleep(QUIET)  # let the answer be written
        _, rec = net.start(ALICE, awaiting=(BOB,))
        [reply] = wait_for(lambda: rec.replies_to(request_id))
        assert reply == (request_id, BOB, Reply(200, b"re:are you there?"))
