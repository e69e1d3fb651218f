"""Announcing incoming messages: per conversation in the sender's order, conversations in parallel.

Every stored incoming message is announced (listeners, ``chat_message_received``,
bots) exactly once per stored row, in the order its sender sent it: a
message that overtook an earlier one waits until the earlier one is stored,
or until the sender says nothing earlier is still coming (the envelope's
``floor``), or, as a last resort, until ``gap_timeout`` seconds have passed.
Each conversation is announced by one task at a time on a small thread pool,
so a slow listener or bot delays its own conversation only.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from syft_chat.models import ChatMessage

__all__ = ["Conversations"]

log = logging.getLogger("syft_chat.messaging.ordering")


@dataclass
class _Peer:
    next: int | None = None  # the sequence number expected next
    buffer: dict[int, ChatMessage] = field(default_factory=dict)
    queue: deque[ChatMessage] = field(default_factory=deque)
    running: bool = False
    timer: threading.Timer | None = None


class Conversations:
    """Orders and runs announcements; ``announce`` is called on pool threads."""

    def __init__(
        self,
        announce: Callable[[ChatMessage], None],
        *,
        workers: int = 4,
        gap_timeout: float = 60.0,
        name: str = "syft-chat-conversations",
    ) -> None:
        self._announce = announce
        self._gap_timeout = gap_timeout
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._peers: dict[str, _Peer] = {}
        self._name = name
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._closed = False
        self._held = True  # nothing is announced before start(): listeners are not there yet
        self._hold_timer: threading.Timer | None = None

    def start(self, after: float = 0.0) -> None:
        """Begin announcing, now or ``after`` seconds from now (whichever call comes first)."""
        if after > 0:
            with self._lock:
                if self._held and self._hold_timer is None and not self._closed:
                    self._hold_timer = threading.Timer(after, self.start)
                    self._hold_timer.daemon = True
                    self._hold_timer.start()
            return
        with self._lock:
            if not self._held:
                return
            self._held = False
            if self._hold_timer is not None:
                self._hold_timer.cancel()
            for peer, state in self._peers.items():
                self._enqueue(peer, state, [])

    def expect(self, peer: str, next_seq: int) -> None:
        """Start ``peer``'s conversation at ``next_seq`` (from what was announced before)."""
        with self._lock:
            state = self._peers.setdefault(peer, _Peer())
            if state.next is None:
                state.next = next_seq

    def submit(self, peer: str, message: ChatMessage, floor: int | None = None) -> None:
        """A newly stored message from ``peer``: announce it when its turn comes."""
        with self._lock:
            if self._closed:
                return
            state = self._peers.setdefault(peer, _Peer())
            if message.seq is None:
                ready = [message]  # unsequenced (another implementation): no order to keep
            else:
                if state.next is None:
                    state.next = floor or message.seq
                if floor is not None and floor > state.next:
                    state.next = floor  # everything below floor is settled at the sender
                state.buffer[message.seq] = message
                ready = self._drain(state)
            self._enqueue(peer, state, ready)
            self._arm_gap_timer(peer, state)

    def submit_ready(self, peer: str, message: ChatMessage) -> None:
        """A message already in its conversation's order (a follower hears them in the
        serving process's order): announce it after the ones before it."""
        with self._lock:
            if self._closed:
                return
            state = self._peers.setdefault(peer, _Peer())
            self._enqueue(peer, state, [message])

    @staticmethod
    def _drain(state: _Peer) -> list[ChatMessage]:
        assert state.next is not None
        ready = [state.buffer.pop(s) for s in sorted(s for s in state.buffer if s < state.next)]
        while state.next in state.buffer:
            ready.append(state.buffer.pop(state.next))
            state.next += 1
        return ready

    def _enqueue(self, peer: str, state: _Peer, ready: list[ChatMessage]) -> None:
        state.queue.extend(ready)
        if state.queue and not state.running and not self._held and not self._closed:
            state.running = True
            self._pool.submit(self._run, peer, state)

    def _arm_gap_timer(self, peer: str, state: _Peer) -> None:
        if state.buffer and state.timer is None:
            state.timer = threading.Timer(self._gap_timeout, self._gap_expired, (peer,))
            state.timer.daemon = True
            state.timer.start()
        elif not state.buffer and state.timer is not None:
            state.timer.cancel()
            state.timer = None

    def _gap_expired(self, peer: str) -> None:
        with self._lock:
            state = self._peers[peer]
            state.timer = None
            if self._closed or not state.buffer:
                return
            log.warning(
                "%s: messages before seq %d never arrived; announcing later ones",
                peer,
                min(state.buffer),
            )
            state.next = max(state.buffer) + 1
            self._enqueue(peer, state, self._drain(state))

    def _run(self, peer: str, state: _Peer) -> None:
        while True:
            with self._lock:
                if not state.queue:
                    state.running = False
                    self._idle.notify_all()
                    return
                message = state.queue.popleft()
            try:
                self._announce(message)
            except Exception:  # announce isolates plugins; this guards the pool itself
                log.exception("announcing message %s from %s failed", message.msg_id, peer)

    def close(self, timeout: float = 5.0) -> None:
        """Let queued announcements finish (up to ``timeout`` s), then stop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._hold_timer is not None:
                self._hold_timer.cancel()
            for state in self._peers.values():
                if state.timer is not None:
                    state.timer.cancel()
            if not threading.current_thread().name.startswith(self._name):
                self._idle.wait_for(
                    lambda: not any(s.running for s in self._peers.values()), timeout=timeout
                )
        self._pool.shutdown(wait=False, cancel_futures=True)
