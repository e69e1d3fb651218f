"""Unit tests of the compact in-memory records of the outgoing path
(``syft_chat.messaging.flights``): request ids kept as numbers, the per-peer floors."""

from __future__ import annotations

import random
import tracemalloc
import uuid

import pytest

from syft_chat.messaging.flights import Floors, new_request, request_key, request_text


def test_a_canonical_request_id_is_kept_as_its_number_and_given_back_unchanged() -> None:
    request_id = str(uuid.uuid4())
    key = request_key(request_id)
    assert key == uuid.UUID(request_id).int
    assert request_text(key) == request_id
    assert request_text(new_request()) != request_text(new_request())


@pytest.mark.parametrize(
    "request_id",
    ["not-a-uuid", "", "ABCDEFAB-1234-4234-8234-123456789ABC", "abcdefab12344234823412345678abcd"],
)
def test_any_other_request_id_is_kept_as_it_is(request_id: str) -> None:
    # the transport gets back exactly the string it gave (an upper-case or undashed
    # spelling of a UUID is not the same request id as the canonical one)
    assert request_key(request_id) == request_id
    assert request_text(request_key(request_id)) == request_id


def test_floors_give_the_lowest_unconfirmed_number_per_peer() -> None:
    floors = Floors()
    for seq in (1, 2, 3, 4):
        floors.add("bob", seq)
    floors.add("carol", 7)
    floors.remove("bob", 2)  # settled out of order: the floor stays
    assert floors.lowest("bob") == 1
    floors.remove("bob", 1)
    assert floors.lowest("bob") == 3  # 2 was settled already
    floors.remove("bob", 3)
    floors.remove("bob", 4)
    assert floors.lowest("bob") is None
    assert floors.lowest("carol") == 7


def test_floors_count_a_number_held_twice() -> None:
    floors = Floors()
    floors.add("bob", 5)
    floors.add("bob", 5)
    floors.add("bob", 6)
    floors.remove("bob", 5)
    assert floors.lowest("bob") == 5  # the other holder is unconfirmed
    floors.remove("bob", 5)
    assert floors.lowest("bob") == 6


def test_floors_match_a_plain_multiset_under_random_settling() -> None:
    rng = random.Random(7)
    floors = Floors()
    live: list[int] = []
    for seq in range(1, 3000):
        for _ in range(rng.choice((1, 1, 1, 2))):
            floors.add("bob", seq)
            live.append(seq)
        while live and rng.random() < 0.45:
            floors.remove("bob", live.pop(rng.randrange(len(live))))
        assert floors.lowest("bob") == (min(live) if live else None)


def test_floors_stay_small_when_one_number_is_settled_again_and_again() -> None:
    # a flight re-tracked many times (same seq) behind a stuck lower one: the settled
    # copies must not pile up in the heap (they are counted by holders, not by number)
    floors = Floors()
    floors.add("bob", 1)  # never confirmed: stays the floor
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100_000):
            floors.add("bob", 2)
            floors.remove("bob", 2)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert floors.lowest("bob") == 1
    assert grown < 20_000, f"{grown} bytes kept for one unconfirmed number"
    floors.remove("bob", 1)
    assert floors.lowest("bob") is None
