"""The contract suite every :class:`~syft_chat.interfaces.MessageStore` passes.

Subclass :class:`StoreContract` in a test module and provide a ``store`` fixture that
returns a fresh, empty store (pytest collects the inherited tests)::

    from syft_chat.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path / "chat.db", owner="alice@openmined.org")

The suite closes the store after each test. It checks what the protocol promises and
nothing more (no domain rules: those live above every store). This module imports
pytest; ``syft_chat.testing`` itself does not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from syft_chat.errors import StorageError
from syft_chat.interfaces import (
    UPDATABLE,
    FailedRequest,
    MessageQuery,
    MessageStore,
    Reaction,
    StoredMessage,
    Version,
    find_messages,
)
from syft_chat.models import (
    Attachment,
    AttachmentState,
    ChatMessage,
    Direction,
    Group,
    MessageKind,
    MessageStatus,
)

__all__ = ["OWNER", "PEER", "StoreContract", "record"]

OWNER = "alice@openmined.org"
PEER = "bob@openmined.org"
OTHER = "carol@openmined.org"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
_OUT, _IN = Direction.OUTGOING, Direction.INCOMING


def record(
    msg_id: str,
    *,
    direction: Direction = _OUT,
    peer: str | None = PEER,
    at: datetime = T0,
    seq: int | None = None,
    kind: MessageKind = MessageKind.MESSAGE,
    status: MessageStatus = MessageStatus.SENT,
    group_id: str | None = None,
    thread_id: str | None = None,
    target: str | None = None,
    applied: bool = True,
    notified: bool = True,
    content: str = "hi",
    attachments: list[Attachment] | None = None,
) -> StoredMessage:
    """A stored message with every field the store must keep set explicitly."""
    outgoing = direction is _OUT
    return StoredMessage(
        message=ChatMessage(
            msg_id=msg_id,
            sender=OWNER if outgoing else (peer or PEER),
            recipient=(peer or PEER) if outgoing else OWNER,
            content=content,
            timestamp=at,
            thread_id=thread_id,
            status=status,
            seq=seq,
            kind=kind,
            target=target,
            group_id=group_id,
            attachments=list(attachments or []),
        ),
        direction=direction,
        peer=peer,
        applied=applied,
        notified=notified,
    )


def _ids(records: list[StoredMessage]) -> list[str]:
    return [r.msg_id for r in records]


def _plain(r: StoredMessage | None) -> StoredMessage | None:
    """``r`` without the store-maintained ``updated_at``."""
    return None if r is None else replace(r, updated_at=None)


def _is_utc(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() == timedelta(0)


def _group(group_id: str, name: str, version: int = 1) -> Group:
    return Group(
        group_id=group_id,
        name=name,
        created_by=OWNER,
        members=(OWNER, PEER, OTHER),
        version=version,
        changed_at=T0 + timedelta(minutes=version),
        change_id=f"change-{group_id}-{version}",
    )


def _failed(n: int) -> FailedRequest:
    return FailedRequest(
        sender=f"user{n}@evil.org",
        reason=f"reason {n}",
        raw=b"\x00raw\xff" + str(n).encode(),
        msg_id=f"m{n}" if n % 2 else None,
        received_at=T0 + timedelta(seconds=n),
    )


#: a value for every UPDATABLE field, and how to read it back
def _attachment(n: int = 1, **changes: Any) -> Attachment:
    fields: dict[str, Any] = {
        "id": f"a{n}",
        "name": f"plot {n}.png",
        "size": 1234 * n,
        "media_type": "image/png",
        "sha256": f"{n:x}" * 64,
        "url": f"syft://{OWNER}/app_data/syft_chat/attachments/m1/plot {n}.png",
        "state": AttachmentState.AVAILABLE,
        **changes,
    }
    fields["sha256"] = fields["sha256"][:64]
    return Attachment(**fields)


_UPDATES: dict[str, tuple[Any, Callable[[StoredMessage], Any]]] = {
    "content": ("new text", lambda r: r.message.content),
    "status": (MessageStatus.DELIVERED, lambda r: r.message.status),
    "error": ("refused", lambda r: r.message.error),
    "deleted": (True, lambda r: r.message.deleted),
    "edited_at": (T0 + timedelta(hours=1), lambda r: r.message.edited_at),
    "edit_seq": (7, lambda r: r.edit_seq),
    "applied": (False, lambda r: r.applied),
    "notified": (False, lambda r: r.notified),
    "request_id": ("req-2", lambda r: r.request_id),
    "attempts": (3, lambda r: r.attempts),
    "read_at": (T0 + timedelta(hours=2), lambda r: r.read_at),
    "attachments": (
        [_attachment(1, state=AttachmentState.REVOKED, announced=True)],
        lambda r: r.message.attachments,
    ),
}


class StoreContract:
    """Tests of the :class:`MessageStore` protocol; subclass it and provide ``store``."""

    @pytest.fixture
    def store(self) -> MessageStore:  # pragma: no cover - replaced by the subclass
        raise NotImplementedError("subclass StoreContract and provide a `store` fixture")

    @pytest.fixture(autouse=True)
    def _close_store(self, store: MessageStore) -> Iterator[None]:
        yield
        store.close()

    # ------------------------------------------------------------------ insert and get

    def test_is_a_message_store(self, store: MessageStore) -> None:
        assert isinstance(store, MessageStore)
        assert isinstance(type(store).name, str) and type(store).name

    def test_round_trip_of_every_field(self, store: MessageStore) -> None:
        message = ChatMessage(
            msg_id="m1",
            sender=OWNER,
            recipient=PEER,
            content="héllo ✓\nsecond line",
            timestamp=datetime(2024, 5, 1, 14, 0, 0, 654321, tzinfo=timezone(timedelta(hours=2))),
            thread_id="t1",
            reply_to="m0",
            metadata={"n": 1, "list": [1, "two", None, {"x": 1.5}], "ü": True},
            status=MessageStatus.FAILED,
            seq=42,
            error="timed out",
            kind=MessageKind.EDIT,
            target="m0",
            deleted=True,
            edited_at=T0 + timedelta(minutes=5),
        )
        rec = StoredMessage(
            message=message,
            direction=_OUT,
            peer=PEER,
            applied=False,
            notified=False,
            edit_seq=41,
            request_id="req-1",
            attempts=2,
            read_at=T0 + timedelta(minutes=6),
        )
        assert store.insert(rec) is True
        got = store.get("m1")
        assert got is not None
        assert _plain(got) == rec
        assert got.message.timestamp == datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=timezone.utc)
        for value in (got.message.timestamp, got.message.edited_at, got.read_at):
            assert _is_utc(value)
        assert got.updated_at is None or _is_utc(got.updated_at)
        assert got.message.kind is MessageKind.EDIT
        assert got.message.status is MessageStatus.FAILED
        assert got.direction is _OUT

    def test_attachments_round_trip(self, store: MessageStore) -> None:
        shared = [_attachment(1), _attachment(2, state=AttachmentState.PENDING, announced=True)]
        rec = record("m1", attachments=shared)
        assert store.insert(rec) is True
        got = store.get("m1")
        assert got is not None and got.message.attachments == shared
        assert store.find(MessageQuery(msg_ids=("m1",)))[0].message.attachments == shared
        store.insert(record("m2"))
        plain = store.get("m2")
        assert plain is not None and plain.message.attachments == []  # the default
        got.message.attachments.clear()  # what a reader changes is not stored
        again = store.get("m1")
        assert again is not None and again.message.attachments == shared
        with store.transaction():
            store.update("m1", {"attachments": []})
        cleared = store.get("m1")
        assert cleared is not None and cleared.message.attachments == []

    @pytest.mark.parametrize("kind", list(MessageKind))
    def test_every_kind_round_trips(self, store: MessageStore, kind: MessageKind) -> None:
        rec = record("k", kind=kind, direction=_IN, status=MessageStatus.RECEIVED, seq=3)
        assert store.insert(rec)
        got = store.get("k")
        assert got is not None and got.message.kind is kind and _plain(got) == rec

    def test_group_message_round_trips(self, store: MessageStore) -> None:
        own = record("g1", peer=None, group_id="grp")
        copy = record("g1-bob", peer=PEER, group_id="grp", kind=MessageKind.COPY)
        assert store.insert(own) and store.insert(copy)
        got = store.get("g1")
        assert got is not None and _plain(got) == own
        assert got.peer is None and got.message.group_id == "grp"
        assert got.conversation == "group:grp"
        assert _plain(store.get("g1-bob")) == copy

    def test_get_unknown_is_none(self, store: MessageStore) -> None:
        assert store.get("nope") is None

    def test_duplicate_insert_changes_nothing(self, store: MessageStore) -> None:
        first = record("m1", content="first")
        assert store.insert(first) is True
        again = record("m1", content="second", status=MessageStatus.FAILED)  # same sender
        assert store.insert(again) is False
        assert _plain(store.get("m1")) == first
        assert len(store.find(MessageQuery())) == 1

    # ------------------------------------------------------------------ ids are per sender

    def test_two_senders_one_msg_id_are_two_messages(self, store: MessageStore) -> None:
        theirs = record("m1", direction=_IN, status=MessageStatus.RECEIVED, content="bob's")
        other = record("m1", direction=_IN, peer=OTHER, content="carol's")
        mine = record("m1", content="mine")
        assert store.insert(theirs) and store.insert(other)
        assert store.insert(record("m1", direction=_IN, content="bob again")) is False
        # without a sender: the earliest stored, until the owner has one of that id
        assert _plain(store.get("m1")) == theirs
        assert store.insert(mine)
        assert _plain(store.get("m1")) == mine  # one's own first
        assert _plain(store.get("m1", sender=PEER)) == theirs
        assert _plain(store.get("m1", sender=OTHER)) == other
        assert _plain(store.get("m1", sender=OWNER)) == mine
        assert store.get("m1", sender="nobody@x.org") is None
        assert [r.message.content for r in store.find(MessageQuery(msg_ids=("m1",)))] == [
            "bob's",
            "carol's",
            "mine",
        ]
        query = MessageQuery(msg_ids=("m1",), sender=OTHER)
        assert [r.message.content for r in store.find(query)] == ["carol's"]

    def test_update_changes_one_senders_message(self, store: MessageStore) -> None:
        store.insert(record("m1", direction=_IN, status=MessageStatus.RECEIVED))
        store.insert(record("m1", direction=_IN, peer=OTHER, status=MessageStatus.RECEIVED))
        assert store.update("m1", {"content": "carol's"}, sender=OTHER) is True
        assert store.update("m1", {"content": "x"}, sender="nobody@x.org") is False
        assert store.update("m1", {"attempts": 2}) is True  # the earliest (no own message)
        got = {r.message.sender: r for r in store.find(MessageQuery(msg_ids=("m1",)))}
        assert (got[PEER].message.content, got[PEER].attempts) == ("hi", 2)
        assert (got[OTHER].message.content, got[OTHER].attempts) == ("carol's", 0)
        store.insert(record("m1", status=MessageStatus.SENT))
        done = {MessageStatus.SENT}
        ok = store.update("m1", {"status": MessageStatus.DELIVERED}, if_status=done)
        assert ok is True  # the owner's own message first
        mine = store.get("m1", sender=OWNER)
        assert mine is not None and mine.message.status is MessageStatus.DELIVERED
        theirs = store.get("m1", sender=PEER)
        assert theirs is not None and theirs.message.status is MessageStatus.RECEIVED

    def test_versions_and_reactions_are_per_sender(self, store: MessageStore) -> None:
        store.add_version("m1", Version("bob's", T0, "e1", 1), sender=PEER)
        store.add_version("m1", Version("carol's", T0, "e2", 1), sender=OTHER)
        assert [v.content for v in store.versions("m1", sender=PEER)] == ["bob's"]
        assert sorted(v.content for v in store.versions("m1")) == ["bob's", "carol's"]
        store.erase_versions("m1", sender=OTHER)
        assert [v.content for v in store.versions("m1", sender=OTHER)] == [""]
        assert [v.content for v in store.versions("m1", sender=PEER)] == ["bob's"]
        on_bob = Reaction("m1", OWNER, "👍", True, 1, T0, PEER)
        on_carol = Reaction("m1", OWNER, "👍", True, 2, T0 + timedelta(seconds=1), OTHER)
        store.put_reaction(on_bob)
        store.put_reaction(on_carol)
        assert store.reactions(["m1"]) == [on_bob, on_carol]
        store.put_reaction(replace(on_carol, present=False))
        assert store.reactions(["m1"]) == [on_bob]

    def test_stored_messages_are_independent_of_the_caller(self, store: MessageStore) -> None:
        rec = record("m1")
        rec.message.metadata["k"] = [1]
        store.insert(rec)
        rec.message.metadata["k"].append(2)
        got = store.get("m1")
        assert got is not None and got.message.metadata == {"k": [1]}

    def test_what_a_reader_changes_is_not_stored(self, store: MessageStore) -> None:
        rec = record("m1")
        rec.message.metadata["k"] = [1]
        store.insert(rec)
        for got in (store.get("m1"), store.find(MessageQuery())[0]):
            assert got is not None
            got.message.metadata["k"].append(2)
            got.message.metadata["new"] = True
        got = store.get("m1")
        assert got is not None and got.message.metadata == {"k": [1]}

    # ------------------------------------------------------------------ update

    @pytest.mark.parametrize("field", sorted(UPDATABLE))
    def test_update_each_field(self, store: MessageStore, field: str) -> None:
        assert set(_UPDATES) == UPDATABLE
        value, read = _UPDATES[field]
        store.insert(record("m1"))
        store.insert(record("m2"))
        before = store.get("m2")
        assert store.update("m1", {field: value}) is True
        got = store.get("m1")
        assert got is not None and read(got) == value
        if isinstance(value, datetime):
            assert _is_utc(read(got))
        assert store.get("m2") == before  # only the one message changed
        assert store.update("unknown", {field: value}) is False

    def test_update_several_fields_and_clear(self, store: MessageStore) -> None:
        store.insert(record("m1"))
        store.update("m1", {"error": "x", "read_at": T0, "attempts": 1})
        assert store.update("m1", {"error": None, "read_at": None}) is True
        got = store.get("m1")
        assert got is not None
        assert (got.message.error, got.read_at, got.attempts) == (None, None, 1)

    def test_update_sets_updated_at(self, store: MessageStore) -> None:
        store.insert(record("m1"))
        start = datetime.now(timezone.utc) - timedelta(seconds=1)
        store.update("m1", {"attempts": 1})
        got = store.get("m1")
        assert got is not None and _is_utc(got.updated_at)
        assert got.updated_at is not None and got.updated_at >= start

    def test_update_if_status(self, store: MessageStore) -> None:
        store.insert(record("m1", status=MessageStatus.SENT))
        done = {MessageStatus.DELIVERED, MessageStatus.READ}
        assert store.update("m1", {"status": MessageStatus.FAILED}, if_status=done) is False
        got = store.get("m1")
        assert got is not None and got.message.status is MessageStatus.SENT
        ok = store.update("m1", {"status": MessageStatus.DELIVERED}, if_status={MessageStatus.SENT})
        assert ok is True
        got = store.get("m1")
        assert got is not None and got.message.status is MessageStatus.DELIVERED
        assert store.update("m1", {"error": "x"}, if_status=()) is False
        assert store.update("nope", {"error": "x"}, if_status={MessageStatus.SENT}) is False

    def test_update_unknown_field_raises(self, store: MessageStore) -> None:
        store.insert(record("m1"))
        before = store.get("m1")
        for field in ("sender", "msg_id", "timestamp", "bogus"):
            with pytest.raises(ValueError):
                store.update("m1", {"content": "changed", field: "x"})
        assert store.get("m1") == before

    # ------------------------------------------------------------------ find

    @pytest.fixture
    def sample(self, store: MessageStore) -> MessageStore:
        """Six messages covering every filter (inserted in id order a..f)."""
        minute = timedelta(minutes=1)
        rows = [
            record("a", at=T0, seq=1, thread_id="t1"),
            record("b", at=T0 + minute, direction=_IN, status=MessageStatus.RECEIVED, seq=1),
            record("c", at=T0 + 2 * minute, peer=OTHER, seq=2, kind=MessageKind.EDIT, target="a"),
            record("d", at=T0 + 3 * minute, peer=None, group_id="g", thread_id="t1"),
            record(
                "e",
                at=T0 + 4 * minute,
                direction=_IN,
                status=MessageStatus.RECEIVED,
                seq=2,
                applied=False,
                notified=False,
                kind=MessageKind.REACTION,
                target="a",
            ),
            record("f", at=T0 + 5 * minute, status=MessageStatus.FAILED, group_id="g", seq=3),
        ]
        for row in rows:
            assert store.insert(row)
        return store

    def test_find_everything_in_stored_order(self, sample: MessageStore) -> None:
        assert _ids(sample.find(MessageQuery())) == list("abcdef")

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            (MessageQuery(msg_ids=("e", "a", "zz")), "ae"),
            (MessageQuery(msg_ids=()), ""),
            (MessageQuery(direction=_IN), "be"),
            (MessageQuery(direction=_OUT), "acdf"),
            (MessageQuery(kinds=frozenset({MessageKind.EDIT, MessageKind.REACTION})), "ce"),
            (MessageQuery(kinds=frozenset()), ""),
            (
                MessageQuery(statuses=frozenset({MessageStatus.FAILED, MessageStatus.RECEIVED})),
                "bef",
            ),
            (MessageQuery(statuses=frozenset()), ""),
            (MessageQuery(peer=PEER), "abef"),
            (MessageQuery(peer=OTHER), "c"),
            (MessageQuery(has_peer=False), "d"),
            (MessageQuery(has_peer=True), "abcef"),
            (MessageQuery(conversation=PEER), "abe"),
            (MessageQuery(conversation="group:g"), "df"),
            (MessageQuery(thread_id="t1"), "ad"),
            (MessageQuery(target="a"), "ce"),
            (MessageQuery(since=T0 + timedelta(minutes=3)), "def"),
            (MessageQuery(seq_at_most=1), "ab"),
            (MessageQuery(peer=PEER, seq_at_most=2), "abe"),
            (MessageQuery(applied=False), "e"),
            (MessageQuery(applied=True), "abcdf"),
            (MessageQuery(notified=False), "e"),
            (MessageQuery(notified=True), "abcdf"),
            (MessageQuery(direction=_OUT, peer=PEER, since=T0 + timedelta(minutes=1)), "f"),
            (MessageQuery(updated_before=T0), ""),
            (MessageQuery(updated_before=datetime.now(timezone.utc) + timedelta(days=1)), "abcdef"),
        ],
    )
    def test_find_filters(self, sample: MessageStore, query: MessageQuery, expected: str) -> None:
        assert _ids(sample.find(query)) == list(expected)
        # a store's own find_messages (optional) returns exactly find's messages
        assert find_messages(sample, query) == [r.message for r in sample.find(query)]

    def test_find_since_accepts_other_timezones(self, sample: MessageStore) -> None:
        since = (T0 + timedelta(minutes=4)).astimezone(timezone(timedelta(hours=-5)))
        assert _ids(sample.find(MessageQuery(since=since))) == ["e", "f"]

    def test_find_seq_order(self, store: MessageStore) -> None:
        for msg_id, peer, seq in [
            ("x1", PEER, 3),
            ("x2", OTHER, 1),
            ("x3", PEER, 1),
            ("x4", PEER, 2),
            ("x5", OTHER, 1),
        ]:
            store.insert(record(msg_id, peer=peer, seq=seq, direction=_IN))
        # bob before carol, then seq, then insertion
        assert _ids(store.find(MessageQuery(order="seq"))) == ["x3", "x4", "x1", "x2", "x5"]
        last = store.find(MessageQuery(order="seq", limit=2, last=True))
        assert _ids(last) == ["x2", "x5"]

    def test_find_time_order_ties_by_insertion(self, store: MessageStore) -> None:
        minute = timedelta(minutes=1)
        for msg_id, at in [("z", T0 + minute), ("y", T0), ("b", T0 + minute), ("a", T0)]:
            store.insert(record(msg_id, at=at))
        assert _ids(store.find(MessageQuery(order="time"))) == ["y", "a", "z", "b"]
        assert _ids(store.find(MessageQuery(order="stored"))) == ["z", "y", "b", "a"]

    def test_find_limit_and_last(self, store: MessageStore) -> None:
        minute = timedelta(minutes=1)
        for msg_id, at in [("p", T0 + 2 * minute), ("q", T0), ("r", T0 + minute), ("s", T0)]:
            store.insert(record(msg_id, at=at))
        time_order = ["q", "s", "r", "p"]
        assert _ids(store.find(MessageQuery(order="time", limit=2))) == time_order[:2]
        assert _ids(store.find(MessageQuery(order="time", limit=3, last=True))) == time_order[1:]
        assert _ids(store.find(MessageQuery(order="time", last=True))) == time_order
        assert _ids(store.find(MessageQuery(order="time", limit=10, last=True))) == time_order
        assert _ids(store.find(MessageQuery(limit=2, last=True))) == ["r", "s"]
        assert store.find(MessageQuery(limit=0)) == []
        assert _ids(store.find(MessageQuery(limit=1, last=True, peer=PEER))) == ["s"]

    # ------------------------------------------------------------------ remove and max_seq

    def test_remove(self, sample: MessageStore) -> None:
        assert sample.remove(MessageQuery(conversation="group:g")) == 2
        assert sample.remove(MessageQuery(conversation="group:g")) == 0
        assert _ids(sample.find(MessageQuery())) == list("abce")
        assert sample.get("d") is None
        assert sample.remove(MessageQuery(msg_ids=())) == 0
        assert sample.remove(MessageQuery()) == 4
        assert sample.find(MessageQuery()) == []
        assert sample.insert(record("d"))  # a removed id can be stored again

    def test_max_seq(self, store: MessageStore) -> None:
        assert store.max_seq(PEER, _IN) == 0
        store.insert(record("i1", direction=_IN, seq=4))
        store.insert(record("i2", direction=_IN, seq=9, notified=False))
        store.insert(record("i3", direction=_IN, seq=None))
        store.insert(record("o1", direction=_OUT, seq=5))
        store.insert(record("c1", direction=_IN, peer=OTHER, seq=20))
        assert store.max_seq(PEER, _IN) == 9
        assert store.max_seq(PEER, _IN, notified=True) == 4
        assert store.max_seq(PEER, _IN, notified=False) == 9
        assert store.max_seq(PEER, _OUT) == 5
        assert store.max_seq(PEER, _OUT, notified=False) == 0
        assert store.max_seq(OTHER, _IN) == 20
        assert store.max_seq("nobody@x.org", _IN) == 0

    # ------------------------------------------------------------------ versions

    def test_versions(self, store: MessageStore) -> None:
        assert store.versions("m1") == []
        v = [
            Version("three", T0 + timedelta(minutes=3), "e3", 3),
            Version("none-a", T0 + timedelta(minutes=9), None, None),
            Version("one", T0 + timedelta(minutes=1), "e1", 1),
            Version("none-b", T0, "ex", None),
            Version("two", T0 + timedelta(minutes=2), "e2", 2),
        ]
        for version in v:
            store.add_version("m1", version)
        store.add_version("m2", Version("other", T0, None, 1))
        got = store.versions("m1")
        assert got == [v[2], v[4], v[0], v[1], v[3]]
        assert all(_is_utc(x.replaced_at) for x in got)
        store.erase_versions("m1")
        assert [x.content for x in store.versions("m1")] == [""] * 5
        assert [(x.edit_id, x.seq) for x in store.versions("m1")] == [
            (x.edit_id, x.seq) for x in got
        ]
        assert store.versions("m2") == [Version("other", T0, None, 1)]
        store.erase_versions("unknown")  # nothing to erase is fine

    # ------------------------------------------------------------------ reactions

    def test_reactions(self, store: MessageStore) -> None:
        assert store.reactions([]) == []
        assert store.reactions(["m1"]) == []
        r1 = Reaction("m1", PEER, "👍", True, 1, T0 + timedelta(seconds=2))
        r2 = Reaction("m1", OWNER, "🎉", True, None, T0)
        r3 = Reaction("m2", PEER, "👍", False, 2, T0 + timedelta(seconds=1))
        for r in (r1, r2, r3):
            store.put_reaction(r)
        assert store.reactions(["m1"]) == [r2, r1]  # oldest first
        assert store.reactions(["m1", "m2"]) == [r2, r1]  # taken back: left out
        assert store.reactions(["m1", "m2"], removed=True) == [r2, r3, r1]
        assert store.reactions(["m2"]) == []
        assert all(_is_utc(r.created_at) for r in store.reactions(["m1"]))

    def test_put_reaction_replaces_keeping_first_created_at(self, store: MessageStore) -> None:
        store.put_reaction(Reaction("m1", PEER, "👍", True, 1, T0))
        store.put_reaction(Reaction("m1", PEER, "👍", False, 2, T0 + timedelta(hours=1)))
        assert store.reactions(["m1"]) == []
        assert store.reactions(["m1"], removed=True) == [Reaction("m1", PEER, "👍", False, 2, T0)]
        store.put_reaction(Reaction("m1", PEER, "👍", True, 3, T0 + timedelta(hours=2)))
        assert store.reactions(["m1"]) == [Reaction("m1", PEER, "👍", True, 3, T0)]
        store.put_reaction(Reaction("m1", PEER, "❤️", True, 4, T0 + timedelta(hours=3)))
        assert len(store.reactions(["m1"])) == 2  # another emoji is another reaction

    def test_reactions_of_many_messages(self, store: MessageStore) -> None:
        ids = [f"m{i}" for i in range(1200)]
        for i, msg_id in enumerate(ids):
            store.put_reaction(Reaction(msg_id, PEER, "👍", True, i, T0 + timedelta(seconds=i)))
        assert [r.msg_id for r in store.reactions(ids)] == ids

    # ------------------------------------------------------------------ groups, contacts, settings

    def test_groups(self, store: MessageStore) -> None:
        assert store.groups() == []
        assert store.groups("g1") == []
        b, a2, a1 = _group("g3", "beta"), _group("g2", "alpha"), _group("g1", "alpha")
        for g in (b, a2, a1):
            store.put_group(g)
        assert store.groups() == [a1, a2, b]  # by name, then id
        assert store.groups("g2") == [a2]
        assert all(_is_utc(g.changed_at) for g in store.groups())
        newer = _group("g3", "aardvark", version=2).model_copy(update={"members": (OWNER,)})
        store.put_group(newer)
        assert store.groups("g3") == [newer]
        assert store.groups() == [newer, a1, a2]

    def test_contacts(self, store: MessageStore) -> None:
        assert store.contacts() == {}
        store.set_contact(PEER, "allowed")
        store.set_contact(OTHER, "blocked")
        assert store.contacts() == {PEER: "allowed", OTHER: "blocked"}
        store.set_contact(PEER, "blocked")
        assert store.contacts() == {PEER: "blocked", OTHER: "blocked"}
        store.set_contact(OTHER, None)
        store.set_contact("never@x.org", None)
        assert store.contacts() == {PEER: "blocked"}

    def test_settings(self, store: MessageStore) -> None:
        assert store.setting("k") is None
        store.set_setting("k", "v1")
        store.set_setting("other", "")
        assert store.setting("k") == "v1"
        store.set_setting("k", "v2")
        assert (store.setting("k"), store.setting("other")) == ("v2", "")

    # ------------------------------------------------------------------ refused requests

    def test_record_failed_keeps_the_newest(self, store: MessageStore) -> None:
        assert store.failed_messages() == []
        for n in range(1, 6):
            store.record_failed(_failed(n), keep=3)
        assert store.failed_messages() == [_failed(5), _failed(4), _failed(3)]
        assert store.failed_messages(limit=2) == [_failed(5), _failed(4)]
        store.record_failed(_failed(6), keep=1)
        assert store.failed_messages() == [_failed(6)]
        got = store.failed_messages()[0]
        assert isinstance(got.raw, bytes) and _is_utc(got.received_at)

    # ------------------------------------------------------------------ transactions

    def test_transaction_keeps_its_changes(self, store: MessageStore) -> None:
        with store.transaction():
            store.insert(record("m1"))
            assert store.get("m1") is not None  # reads see the block's own writes
            store.update("m1", {"attempts": 5})
        got = store.get("m1")
        assert got is not None and got.attempts == 5

    def _change_everything(self, store: MessageStore) -> None:
        store.insert(record("new"))
        store.update("old", {"content": "changed", "status": MessageStatus.FAILED})
        store.remove(MessageQuery(msg_ids=("gone",)))
        store.add_version("old", Version("v2", T0, "e2", 2))
        store.erase_versions("old")
        store.put_reaction(Reaction("old", PEER, "👍", False, 2, T0))
        store.put_reaction(Reaction("old", PEER, "🎉", True, 3, T0))
        store.put_group(_group("g1", "renamed", version=2))
        store.put_group(_group("g2", "new group"))
        store.set_contact(PEER, "blocked")
        store.set_contact(OTHER, None)
        store.set_setting("k", "changed")
        store.set_setting("k2", "new")
        store.record_failed(_failed(2), keep=1)

    def _state(self, store: MessageStore) -> tuple[Any, ...]:
        return (
            [_plain(r) for r in store.find(MessageQuery())],
            store.versions("old"),
            store.reactions(["old"], removed=True),
            store.groups(),
            store.contacts(),
            (store.setting("k"), store.setting("k2")),
            store.failed_messages(),
        )

    def _seed(self, store: MessageStore) -> tuple[Any, ...]:
        store.insert(record("old"))
        store.insert(record("gone"))
        store.add_version("old", Version("v1", T0, "e1", 1))
        store.put_reaction(Reaction("old", PEER, "👍", True, 1, T0))
        store.put_group(_group("g1", "group"))
        store.set_contact(PEER, "allowed")
        store.set_contact(OTHER, "allowed")
        store.set_setting("k", "v")
        store.record_failed(_failed(1), keep=10)
        return self._state(store)

    def test_exception_undoes_every_change(self, store: MessageStore) -> None:
        before = self._seed(store)
        with pytest.raises(RuntimeError, match="boom"), store.transaction():
            self._change_everything(store)
            assert self._state(store) != before
            raise RuntimeError("boom")
        assert self._state(store) == before
        assert store.insert(record("new"))  # the store is still usable

    def test_nested_inner_failure_undoes_only_the_inner_block(self, store: MessageStore) -> None:
        before = self._seed(store)
        with store.transaction():
            store.insert(record("outer-1"))
            try:
                with store.transaction():
                    self._change_everything(store)
                    raise RuntimeError("inner")
            except RuntimeError:
                pass
            assert self._state(store)[1:] == before[1:]
            with store.transaction():
                store.insert(record("inner-kept"))
            store.insert(record("outer-2"))
        assert _ids(store.find(MessageQuery())) == [
            "old",
            "gone",
            "outer-1",
            "inner-kept",
            "outer-2",
        ]
        assert self._state(store)[1:] == before[1:]

    def test_nested_outer_failure_undoes_the_inner_block_too(self, store: MessageStore) -> None:
        before = self._seed(store)
        with pytest.raises(KeyError), store.transaction():
            with store.transaction():
                self._change_everything(store)
            raise KeyError("outer")
        assert self._state(store) == before

    def test_transaction_holds_off_other_writers(self, store: MessageStore) -> None:
        done = threading.Event()

        def write() -> None:
            store.insert(record("from-thread"))
            done.set()

        with store.transaction():
            thread = threading.Thread(target=write, daemon=True)
            thread.start()
            assert not done.wait(0.2)
            store.insert(record("in-block"))
        assert done.wait(5)
        thread.join(5)
        assert _ids(store.find(MessageQuery())) == ["in-block", "from-thread"]

    # ------------------------------------------------------------------ close

    @pytest.mark.parametrize(
        "use",
        [
            lambda s: s.insert(record("m2")),
            lambda s: s.get("m1"),
            lambda s: s.update("m1", {"attempts": 1}),
            lambda s: s.find(MessageQuery()),
            lambda s: s.remove(MessageQuery()),
            lambda s: s.max_seq(PEER, _OUT),
            lambda s: s.versions("m1"),
            lambda s: s.add_version("m1", Version("x", T0, None, None)),
            lambda s: s.erase_versions("m1"),
            lambda s: s.reactions(["m1"]),
            lambda s: s.put_reaction(Reaction("m1", PEER, "👍", True, 1, T0)),
            lambda s: s.groups(),
            lambda s: s.put_group(_group("g", "g")),
            lambda s: s.contacts(),
            lambda s: s.set_contact(PEER, "allowed"),
            lambda s: s.setting("k"),
            lambda s: s.set_setting("k", "v"),
            lambda s: s.record_failed(_failed(1), keep=5),
            lambda s: s.failed_messages(),
            lambda s: s.transaction().__enter__(),
        ],
    )
    def test_closed_store_raises(
        self, store: MessageStore, use: Callable[[MessageStore], object]
    ) -> None:
        store.insert(record("m1"))
        store.close()
        store.close()  # idempotent
        with pytest.raises(StorageError):
            use(store)
