"""The listener -> server-sent events bridge, without a browser: a real client's
listeners feed an EventHub whose stream is read on an asyncio loop, as uvicorn does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from syft_chat.web import events
from syft_chat.web.events import EventHub

BOB = "bob@openmined.org"
T = TypeVar("T")


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run on a thread of its own (Playwright's sync API keeps a loop running on
    the main thread once a browser test has run), as uvicorn runs it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout=30)


def _data(frame: str) -> dict:
    assert frame.startswith("data: ")
    return json.loads(frame[len("data: ") :])


def test_a_message_a_status_and_a_change_reach_an_open_stream(pair):
    ws, alice, bob = pair
    hub = EventHub(alice)
    hub.start()

    async def run() -> tuple[list[dict], str]:
        stream = hub.stream()
        assert (await anext(stream)).startswith("retry:")
        assert _data(await anext(stream)) == {"type": "ready", "me": alice.email}
        loop = asyncio.get_running_loop()
        sent = await loop.run_in_executor(None, lambda: alice.send_message(BOB, "hi"))
        got = []
        while not any(e.get("type") == "message" for e in got):
            got.append(_data(await asyncio.wait_for(anext(stream), 5)))
            if got[-1]["type"] == "status" and got[-1]["status"] == "delivered":
                await loop.run_in_executor(None, lambda: bob.send_message(alice.email, "yo"))
        await loop.run_in_executor(
            None, lambda: bob.react(sent.message_id, "\u2764", sender=alice.email)
        )
        while got[-1]["type"] != "change":
            got.append(_data(await asyncio.wait_for(anext(stream), 5)))
        hub.close()
        async for _ in stream:  # close() ends the stream
            pass
        return got, sent.message_id

    got, msg_id = _run(run)
    statuses = [e for e in got if e["type"] == "status" and e["msg_id"] == msg_id]
    assert statuses[-1]["status"] == "delivered"
    message = next(e["message"] for e in got if e["type"] == "message")
    assert message["content"] == "yo" and message["conversation"] == BOB
    change = got[-1]
    assert change["change"] == "reaction_added" and change["actor"] == BOB
    assert change["message"]["reactions"] == {"\u2764": [BOB]}
    assert hub.open_streams == 0


def test_a_stream_that_falls_behind_gets_resync_instead(pair, monkeypatch):
    ws, alice, bob = pair
    monkeypatch.setattr(events, "MAX_BACKLOG", 3)
    hub = EventHub(alice)

    async def run() -> list[dict]:
        stream = hub.stream()
        await anext(stream)
        await anext(stream)  # ready: the stream is registered
        for i in range(10):
            hub.publish({"type": "x", "n": i})
        await asyncio.sleep(0.05)  # let the loop run the queued puts
        got = [_data(await anext(stream)) for _ in range(4)]
        hub.publish({"type": "x", "n": 99})
        got.append(_data(await asyncio.wait_for(anext(stream), 2)))
        await stream.aclose()
        return got

    got = _run(run)
    assert got == [
        {"type": "x", "n": 0},
        {"type": "x", "n": 1},
        {"type": "x", "n": 2},
        {"type": "resync"},
        {"type": "x", "n": 99},
    ]
    assert hub.open_streams == 0
