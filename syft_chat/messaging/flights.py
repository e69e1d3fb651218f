"""What the outgoing path keeps in memory per unconfirmed message, kept small.

An outbox of 100,000 messages for an offline peer is held as 100,000 :class:`Flight`
records, so each byte here is 100 KB there: a flight keeps its keys and its latest
attempt only (never the text: the store has it), the request id as the number of its
UUID (:func:`request_key`), and what few flights need (a group copy's group message, a
waiter's event, earlier attempts) in a :class:`Rare` record that most never have.
"""

from __future__ import annotations

import heapq
import threading
import uuid
from dataclasses import dataclass

from syft_chat.models import ChatMessage, MessageKind

__all__ = ["Flight", "Floors", "Rare", "RequestKey", "new_request", "request_key", "request_text"]

#: a request id as kept in memory: the 128-bit number of a canonical UUID string (48
#: bytes rather than 85), any other string as it is
RequestKey = int | str


def request_key(request_id: str) -> RequestKey:
    """``request_id`` as kept in memory; :func:`request_text` gives the same string back."""
    try:
        number = uuid.UUID(request_id).int
    except (ValueError, TypeError):
        return request_id
    # only the canonical spelling becomes a number (it is what request_text gives back)
    return number if str(uuid.UUID(int=number)) == request_id else request_id


def request_text(key: RequestKey) -> str:
    """The request id kept as ``key`` (see :func:`request_key`)."""
    return str(uuid.UUID(int=key)) if isinstance(key, int) else key


def new_request() -> RequestKey:
    """A fresh random request id, as kept in memory."""
    return uuid.uuid4().int


@dataclass(slots=True)
class Rare:
    """What only some flights need; a flight without any of it has none."""

    copy_of: str | None = None  # a group member's copy (``MessageKind.COPY``): the group message
    #: set when settled; made only for a caller that waits (most flights are never waited for)
    settled: threading.Event | None = None
    #: the earlier attempts still answerable (the outgoing path maps them to the message)
    earlier: list[RequestKey] | None = None


@dataclass(slots=True)
class Flight:
    """What is known in memory about an unconfirmed outgoing message: its keys and its
    latest attempt."""

    msg_id: str
    peer: str
    seq: int | None
    request: RequestKey | None = None  # the latest attempt's id (see request_key)
    attempts: int = 0
    sent_at: float | None = None  # monotonic time the latest attempt was written
    rare: Rare | None = None

    @classmethod
    def of(
        cls, message: ChatMessage, peer: str, request_id: str | None = None, attempts: int = 0
    ) -> Flight:
        request = request_key(request_id) if request_id is not None else None
        flight = cls(message.msg_id, peer, message.seq, request, attempts)
        if message.kind is MessageKind.COPY:
            flight.more().copy_of = message.target
        return flight

    def more(self) -> Rare:
        """The flight's :class:`Rare` record, made on first use."""
        if self.rare is None:
            self.rare = Rare()
        return self.rare

    @property
    def request_id(self) -> str | None:
        """The latest attempt's request id, as the transport knows it."""
        return request_text(self.request) if self.request is not None else None

    @property
    def copy_of(self) -> str | None:
        return self.rare.copy_of if self.rare is not None else None

    @property
    def is_copy(self) -> bool:
        return self.copy_of is not None

    @property
    def settled(self) -> threading.Event | None:
        return self.rare.settled if self.rare is not None else None

    def requests(self) -> list[RequestKey]:
        """The ids of every attempt still answerable, the latest first."""
        earlier = self.rare.earlier if self.rare is not None else None
        latest = [self.request] if self.request is not None else []
        return latest + (earlier or [])


class Floors:
    """Per peer, the unconfirmed sequence numbers (a multiset) in a heap: the lowest in
    O(1), adding and settling in O(log n) of that peer's outbox.

    ``remove`` must pair with an earlier ``add`` of the same number. The top of a heap is
    always unconfirmed; a number settled below the top waits in a per-peer count until it
    reaches the top (numbers are handed out increasing, so that count is empty while
    messages are confirmed in order), and the heap is rebuilt once more than half of it
    is settled, so it never holds more than about twice the unconfirmed ones.
    """

    def __init__(self) -> None:
        self._heaps: dict[str, list[int]] = {}
        self._gone: dict[str, dict[int, int]] = {}  # peer -> settled seq -> count, in the heap
        self._settled: dict[str, int] = {}  # peer -> the counts of _gone[peer] added up

    def add(self, peer: str, seq: int) -> None:
        heapq.heappush(self._heaps.setdefault(peer, []), seq)

    def remove(self, peer: str, seq: int) -> None:
        heap = self._heaps[peer]
        gone = self._gone.setdefault(peer, {})
        gone[seq] = gone.get(seq, 0) + 1
        settled = self._settled.get(peer, 0) + 1
        while heap and heap[0] in gone:  # the top is unconfirmed again
            top = heapq.heappop(heap)
            settled -= 1
            if gone[top] > 1:
                gone[top] -= 1
            else:
                del gone[top]
        self._settled[peer] = settled
        if not heap:
            del self._heaps[peer], self._gone[peer], self._settled[peer]
        elif not gone:
            del self._gone[peer], self._settled[peer]
        elif settled > len(heap) // 2 + 16:  # (holders, not numbers: one may be held often)
            left = dict(gone)
            live = []
            for s in heap:
                if left.get(s, 0) > 0:
                    left[s] -= 1
                else:
                    live.append(s)
            heapq.heapify(live)
            self._heaps[peer] = live
            del self._gone[peer], self._settled[peer]

    def lowest(self, peer: str) -> int | None:
        heap = self._heaps.get(peer)
        return heap[0] if heap else None
