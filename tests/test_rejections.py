"""Refusals by the SyftBox server, the round-trip-scaled first retry, and keeping a request
that is still waiting.

Real clients over a real workspace. A real server refusal needs the network tier; here the
sync client's part is played by hand: it renames the refused request file to its rejection
marker (legacy client ``<id>.syftrejected.request``, Go client ``<id>.rejected.request`` and,
rotating an older marker, ``<id>.rejected.<YYYYmmddHHMMSS>.request``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support import ALICE, BOB, Workspace, wait_for

from syft_chat import MessageStatus
from syft_chat.interfaces import BackendContext
from syft_chat.messaging.retry import Outbox, RoundTrips
from syft_chat.plugins.syft_rpc.transport import RpcTransport, refusal_reason, rejected_request_id
from syft_chat.settings import ChatSettings
from syft_chat.testing.transport_contract import Recorder

FAST = {"retry_initial": 0.3, "retry_max": 1.0}
PAST_A_RETRY = 1.5  # longer than retry_initial + retry_max: any retry would have happened

MARKERS: dict[str, Callable[[str], str]] = {
    "legacy": lambda rid: f"{rid}.syftrejected.request",
    "go": lambda rid: f"{rid}.rejected.request",
    "go-rotated": lambda rid: f"{rid}.rejected.20250712234500.request",
}


def _outbox(ws: Workspace) -> Path:
    """Alice's sender folder in bob's chat endpoint (her copy, where her sync client works)."""
    return ws.endpoint(BOB) / ALICE


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _requests(folder: Path) -> list[str]:
    return [name for name in _files(folder) if name.endswith(".request")]


def _offline_bob(workspace: Callable[..., Workspace]) -> Workspace:
    ws = workspace(ALICE, BOB)
    ws.client(BOB).close()  # bob's datasite serves chat, but nobody answers
    return ws


def _reject(folder: Path, request_id: str, marker: str) -> Path:
    """What a sync client does with a refused upload: rename the request to its marker."""
    target = folder / marker
    (folder / f"{request_id}.request").rename(target)
    return target


# --------------------------------------------------------------------------- markers


def test_marker_names() -> None:
    rid = "0b4a3c52-5d0e-4a43-9a1c-3f1d7c8e9b10"
    for make in MARKERS.values():
        assert rejected_request_id(make(rid)) == rid
    for name in (
        f"{rid}.request",
        f"{rid}.response",
        f"{rid}.rejected.response",
        f"{rid}.conflict.request",
        f".{rid}.rejected.request.tmp",
        f"{rid}.rejected.request.syft.tmp.1",
    ):
        assert rejected_request_id(name) is None, name


@pytest.mark.parametrize("style", sorted(MARKERS))
def test_a_refused_upload_fails_the_message_and_stops_retrying(
    workspace: Callable[..., Workspace], style: str
) -> None:
    ws = _offline_bob(workspace)
    alice = ws.client(ALICE, settings=FAST)
    heard: list[tuple[str, MessageStatus, str | None]] = []
    alice.add_status_listener(lambda m, s, e: heard.append((m, s, e)))
    sent = alice.send_message(BOB, "may I?", timeout=0)
    folder = _outbox(ws)
    [request] = wait_for(lambda: _requests(folder))
    request_id = request.removesuffix(".request")
    marker = _reject(folder, request_id, MARKERS[style](request_id))

    reason = refusal_reason(BOB)
    assert reason == (
        f"refused by the SyftBox server: no permission to write to {BOB}'s chat folder"
    )
    failed = wait_for(
        lambda: [e for m, s, e in heard if m == sent.message_id and s is MessageStatus.FAILED]
    )
    assert failed == [reason]
    stored = alice.get_message(sent.message_id)
    assert stored is not None and stored.status is MessageStatus.FAILED
    assert alice.pending_messages() == []
    wait_for(lambda: not marker.exists())  # cleaned up
    time.sleep(PAST_A_RETRY)
    assert _files(folder) == []  # no new request after the refusal, no marker left
    statuses = [s for m, s, _ in heard if m == sent.message_id]
    assert statuses == [MessageStatus.SENT, MessageStatus.FAILED]
    record = alice.store.get(sent.message_id)
    assert record is not None and record.attempts == 1


@pytest.mark.parametrize("style", ["legacy", "go-rotated"])
def test_a_marker_found_at_start_up_fails_the_message(
    workspace: Callable[..., Workspace], style: str
) -> None:
    """The refusal arrived while the sender was away: found by the start-up scan."""
    ws = _offline_bob(workspace)
    alice = ws.client(ALICE, settings=FAST)
    sent = alice.send_message(BOB, "while you were out", timeout=0)
    folder = _outbox(ws)
    [request] = wait_for(lambda: _requests(folder))
    alice.close()
    request_id = request.removesuffix(".request")
    marker = _reject(folder, request_id, MARKERS[style](request_id))
    alice = ws.client(ALICE, settings=FAST)
    wait_for(lambda: (m := alice.get_message(sent.message_id)) and m.status is MessageStatus.FAILED)
    wait_for(lambda: not marker.exists())  # (the start-up scan runs after client() returns)
    time.sleep(PAST_A_RETRY)
    assert _files(folder) == []


def test_collect_reply_reports_a_marker_it_finds(workspace: Callable[..., Workspace]) -> None:
    """Without a file event (nothing watched the folder), ``collect_reply`` finds it."""
    ws = _offline_bob(workspace)
    context = BackendContext(
        email=ALICE,
        syft=_syft(ws.configs[ALICE]),
        app_name="syft_chat",
        db_path=ws.db(ALICE),
        settings=ChatSettings(),
    )
    transport = RpcTransport(context)
    recorder = Recorder()
    transport.start(recorder.on_request, recorder.on_reply, recorder.on_reject)
    try:
        folder = _outbox(ws)
        folder.mkdir(parents=True, exist_ok=True)
        request_id = "6f1e3f4e-8d0c-4d7e-9f53-2a1b0c9d8e7f"
        marker = folder / MARKERS["go"](request_id)
        marker.write_bytes(b"{}")  # not watched: the transport never wrote to bob
        transport.collect_reply(BOB, request_id)
        [(rid, peer, reply)] = recorder.replies_to(request_id)
        assert (rid, peer, reply.status_code) == (request_id, BOB, 403)
        assert not reply.ok and b'"retry": false' in reply.body
        assert refusal_reason(BOB).encode() in reply.body
        assert not marker.exists()
        transport.collect_reply(BOB, request_id)  # gone: nothing more
        assert len(recorder.replies_to(request_id)) == 1
    finally:
        transport.stop()


def test_a_marker_for_an_old_attempt_of_a_delivered_message_changes_nothing(pair) -> None:
    ws, alice, bob = pair
    heard: list[tuple[str, MessageStatus]] = []
    alice.add_status_listener(lambda m, s, e: heard.append((m, s)))
    sent = alice.send_message(BOB, "got it?", timeout=10)
    assert sent.status == "delivered"
    record = alice.store.get(sent.message_id)
    assert record is not None and record.request_id
    wait_for(lambda: (sent.message_id, MessageStatus.DELIVERED) in heard)
    folder = _outbox(ws)
    late = folder / MARKERS["legacy"](record.request_id)
    late.write_bytes(b"{}")  # a refusal of that attempt, arriving late
    wait_for(lambda: not late.exists())  # noticed (and removed)
    time.sleep(0.3)
    found = alice.get_message(sent.message_id)
    assert found is not None and found.status is MessageStatus.DELIVERED and found.error is None
    assert [s for m, s in heard if m == sent.message_id] == [
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
    ]


# --------------------------------------------------------------------------- keeping a request


def test_a_retry_keeps_a_request_still_waiting(workspace: Callable[..., Workspace]) -> None:
    ws = _offline_bob(workspace)
    alice = ws.client(ALICE, settings={"retry_initial": 0.2, "retry_max": 0.5})
    sent = alice.send_message(BOB, "whenever you're back", timeout=0)
    folder = _outbox(ws)
    first = wait_for(lambda: _requests(folder))
    time.sleep(2.0)  # several retries are due meanwhile
    assert _requests(folder) == first  # the same request, not a new one
    record = alice.store.get(sent.message_id)
    assert record is not None and record.attempts == 1
    ws.client(BOB)
    assert alice.wait_for_delivery(sent.message_id, timeout=10).status == "delivered"
    record = alice.store.get(sent.message_id)
    assert record is not None and record.attempts == 1


def test_a_request_that_is_gone_or_expiring_is_written_again(
    workspace: Callable[..., Workspace],
) -> None:
    ws = _offline_bob(workspace)
    alice = ws.client(ALICE, settings={"retry_initial": 0.2, "retry_max": 0.5})
    sent = alice.send_message(BOB, "once more", timeout=0)
    folder = _outbox(ws)
    [first] = wait_for(lambda: _requests(folder))
    (folder / first).unlink()  # lost (e.g. removed by hand)
    [second] = wait_for(lambda: _requests(folder))
    assert second != first
    assert alice.get_message(sent.message_id).status is MessageStatus.SENT  # type: ignore[union-attr]


def test_a_request_expiring_before_the_next_retry_is_renewed(
    workspace: Callable[..., Workspace],
) -> None:
    ws = _offline_bob(workspace)
    settings = {"retry_initial": 0.2, "retry_max": 0.5, "request_expiry": 1}
    alice = ws.client(ALICE, settings=settings)
    sent = alice.send_message(BOB, "still there?", timeout=0)
    folder = _outbox(ws)
    seen: set[str] = set()
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        now = _requests(folder)
        assert len(now) <= 1
        seen.update(now)
        time.sleep(0.02)
    assert len(seen) >= 3  # renewed more than once
    record = alice.store.get(sent.message_id)
    assert record is not None and record.attempts >= 3


def test_pending_says_whether_a_request_still_waits(workspace: Callable[..., Workspace]) -> None:
    ws = _offline_bob(workspace)
    alice = ws.client(ALICE, settings={"retry_initial": 60.0, "retry_max": 60.0})
    alice.send_message(BOB, "are you there?", timeout=0)
    folder = _outbox(ws)
    [request] = wait_for(lambda: _requests(folder))
    request_id = request.removesuffix(".request")
    transport = alice.transport
    now = datetime.now(timezone.utc)
    assert transport.pending(BOB, request_id, until=now)
    assert transport.pending(BOB, request_id, until=now + timedelta(hours=23))
    assert not transport.pending(BOB, request_id, until=now + timedelta(hours=25))  # expires
    assert not transport.pending(BOB, "4d0c2b8a-1c3e-4f5a-8b7d-6e9f0a1b2c3d", until=now)
    (folder / f"{request_id}.response").write_bytes(b"{}")  # answered
    assert not transport.pending(BOB, request_id, until=now)
    (folder / f"{request_id}.response").unlink()
    (folder / f"{request_id}.request").write_bytes(b'{"half": ')  # unreadable
    assert not transport.pending(BOB, request_id, until=now)


# --------------------------------------------------------------------------- round trips


def test_round_trips_scale_the_first_retry() -> None:
    rtts = RoundTrips(floor=10.0, factor=3.0, maximum=300.0)
    assert rtts.first_delay(BOB) == 10.0 and rtts.estimate(BOB) is None  # nothing seen yet
    rtts.observe(BOB, 2.0)
    assert rtts.first_delay(BOB) == 10.0  # 3 x 2 s is under the floor
    rtts.observe(ALICE, 8.0)
    assert rtts.first_delay(ALICE) == pytest.approx(24.0)  # 3 x 8 s
    rtts.observe(ALICE, 15.0)  # smoothed: 0.7 x 8 + 0.3 x 15 = 10.1
    assert rtts.estimate(ALICE) == pytest.approx(10.1)
    assert rtts.first_delay(ALICE) == pytest.approx(30.3)
    rtts.observe(ALICE, 3600.0)  # a peer offline for an hour counts as retry_max at most
    assert rtts.estimate(ALICE) == pytest.approx(0.7 * 10.1 + 0.3 * 300.0)
    assert rtts.first_delay(ALICE) == pytest.approx(3 * 97.07)
    rtts.observe(ALICE, 3600.0)
    assert rtts.first_delay(ALICE) == 300.0  # never beyond retry_max
    assert rtts.first_delay(BOB) == 10.0  # per peer
    assert RoundTrips(floor=10.0, factor=0.0, maximum=300.0).first_delay(BOB) == 10.0


def test_the_schedule_starts_from_the_scaled_first_delay() -> None:
    """Over the real schedule: the first retry waits ``k * rtt``, later ones double it."""
    calls: list[float] = []
    called = threading.Event()

    def retry(msg_id: str) -> None:
        calls.append(time.monotonic())
        called.set()

    rtts = RoundTrips(floor=0.02, factor=3.0, maximum=1.0)
    rtts.observe(BOB, 0.05)  # first delay: 0.15 s, not the 0.02 s floor
    outbox = Outbox(retry, initial=0.02, maximum=1.0, name="test-outbox")
    try:
        start = time.monotonic()
        outbox.track("m", initial=rtts.first_delay(BOB))
        assert called.wait(5)
        assert calls[0] - start >= 0.15
        called.clear()
        again = time.monotonic()
        outbox.track("m", initial=rtts.first_delay(BOB))  # the next step doubles: 0.3 s
        assert called.wait(5)
        assert calls[1] - again >= 0.3
    finally:
        outbox.close()


def test_a_confirmed_round_trip_is_observed_per_peer(pair) -> None:
    ws, alice, bob = pair
    assert alice.send_message(BOB, "measure me", timeout=10).status == "delivered"
    outgoing = alice._core.outgoing
    rtt = outgoing.round_trips.estimate(BOB)
    assert rtt is not None and 0 < rtt < 5
    assert outgoing.round_trips.estimate(ALICE) is None


def _syft(config: Path):  # type: ignore[no-untyped-def]
    from syft_core import Client

    return Client.load(config)
