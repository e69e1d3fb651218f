"""The ``memory`` store behind two real clients: the same rules as with SQLite, no file,
and the history gone once the client closes."""

from __future__ import annotations

from typing import Any

from support import ALICE, BOB, wait_for

from syft_chat.plugins.memory import MemoryStore


def _view(client: Any) -> list[tuple[Any, ...]]:
    """Each side's history (one-to-one and group), without the ids."""
    history = client.get_chat_history(limit=500)
    return [
        (
            m.sender,
            m.content,
            m.deleted,
            m.edited_at is not None,
            m.reactions,
            m.group_id is not None,
            m.thread_id if m.thread_id == "t1" else m.thread_id == m.msg_id,
            m.reply_to is not None,
        )
        for m in history
    ]


def _conversation(alice: Any, bob: Any) -> list[list[tuple[Any, ...]]]:
    """Messages, a reply, an edit, a delete, reactions and a group message, both ways."""
    hello = alice.send_message(BOB, "hello bob", thread_id="t1")
    assert hello.status == "delivered"
    answer = bob.send_message(ALICE, "hi alice", reply_to=hello.message_id)
    doomed = alice.send_message(BOB, "a typo heer")
    assert alice.edit_message(hello.message_id, "hello, bob").status == "delivered"
    assert alice.delete_message(doomed.message_id).status == "delivered"
    bob.react(hello.message_id, "👍")
    alice.react(answer.message_id, "🎉")
    alice.react(answer.message_id, "❤️")
    alice.react(answer.message_id, "❤️", remove=True)
    group = alice.create_group("pair", [BOB])
    wait_for(lambda: bob.list_groups())
    alice.send_to_group(group.group_id, "to the group")
    bob.send_to_group(group.group_id, "group reply")

    def converged() -> list[list[tuple[Any, ...]]] | None:
        views = [_view(alice), _view(bob)]
        done = len(views[0]) == 5 and views[0] == views[1]
        return views if done else None

    views = wait_for(converged, timeout=10)
    for client in (alice, bob):
        assert [e["content"] for e in client.get_edits(hello.message_id)] == ["hello bob"]
        group_history = client.get_chat_history(group_id=group.group_id)
        assert [m.content for m in group_history] == ["to the group", "group reply"]
    return views


def test_two_memory_clients_keep_the_same_histories(workspace):
    ws = workspace(ALICE, BOB)
    alice, bob = ws.client(ALICE, store="memory"), ws.client(BOB, store="memory")
    assert isinstance(alice.store, MemoryStore) and isinstance(bob.store, MemoryStore)
    views = _conversation(alice, bob)
    assert views[0] == views[1]
    assert [row[:5] for row in views[0]] == [
        (ALICE, "hello, bob", False, True, {"👍": [BOB]}),
        (BOB, "hi alice", False, False, {"🎉": [ALICE]}),
        (ALICE, "", True, True, {}),  # a deletion stamps edited_at
        (ALICE, "to the group", False, False, {}),
        (BOB, "group reply", False, False, {}),
    ]
    assert not ws.db(ALICE).exists() and not ws.db(BOB).exists()


def test_memory_and_sqlite_clients_show_the_same_history(workspace):
    in_memory = workspace(ALICE, BOB)
    memory_views = _conversation(
        in_memory.client(ALICE, store="memory"), in_memory.client(BOB, store="memory")
    )
    on_disk = workspace(ALICE, BOB)
    sqlite_views = _conversation(on_disk.client(ALICE), on_disk.client(BOB))
    assert memory_views == sqlite_views


def test_a_memory_store_and_sqlite_store_talk_to_each_other(workspace):
    ws = workspace(ALICE, BOB)
    views = _conversation(ws.client(ALICE, store="memory"), ws.client(BOB))
    assert views[0] == views[1]


def test_closing_loses_the_history(workspace):
    ws = workspace(ALICE, BOB)
    alice, bob = ws.client(ALICE, store="memory"), ws.client(BOB, store="memory")
    alice.send_message(BOB, "remember me?")
    alice.block("mallory@evil.org")
    wait_for(lambda: bob.get_chat_history())
    alice.close()
    again = ws.client(ALICE, store="memory")
    assert again.get_chat_history() == []
    assert "mallory@evil.org" not in again.contact_policy.blocked
    assert [m.content for m in bob.get_chat_history()] == ["remember me?"]
    again.send_message(BOB, "new start")
    assert [m.content for m in again.get_chat_history()] == ["new start"]
    bob.close()
    assert ws.client(BOB, store="memory").get_chat_history() == []
