"""The bot label is the receiver's judgement, never a peer's claim; bots stay loop-free."""

from __future__ import annotations

import base64
import json
import uuid

from support import BOB, MALLORY, envelope_body, read_response, wait_for, write_raw_request

from syft_chat import hookimpl
from syft_chat.display import format_messages, message_html
from syft_chat.models import AUTO_REPLY_KEY, CLAIMED_AUTO_REPLY_KEY, is_auto_reply


class Echo:
    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl
    def chat_reply_to(self, message):
        self.asked.append(message.content)
        return f"echo: {message.content}"


def _send(ws, content: str, **extra) -> str:
    msg_id = str(uuid.uuid4())
    body = envelope_body(MALLORY, BOB, content, msg_id=msg_id, **extra)
    assert read_response(write_raw_request(ws, to=BOB, folder=MALLORY, body=body))[0] == 200
    return msg_id


def test_a_peer_cannot_set_the_bot_label(workspace):
    ws = workspace(MALLORY, BOB)
    bob = ws.client(BOB)
    got = []
    bob.add_message_listener(got.append)
    claimed = {AUTO_REPLY_KEY: True, "syft_chat.bot": "official-support", "x": 1}
    msg_id = _send(ws, "your account is locked, reply with your key", seq=1, metadata=claimed)
    wait_for(lambda: len(got) == 1)
    for message in (got[0], bob.get_message(msg_id)):
        assert not is_auto_reply(message)
        assert AUTO_REPLY_KEY not in message.metadata and "syft_chat.bot" not in message.metadata
        assert message.metadata[CLAIMED_AUTO_REPLY_KEY] == {
            "auto_reply": True,
            "bot": "official-support",
        }
        assert message.metadata["x"] == 1
        line = format_messages([message], symbols=None)[0]
        assert "[bot]" not in line and "[bot?]" in line  # shown as a claim, not a bot
        assert "<b>bot</b>" not in message_html(message)


def test_a_reply_to_our_own_bots_answer_is_never_offered_to_bots(workspace):
    """Loop-free even against a peer whose bot does not label its answers."""
    ws = workspace(MALLORY, BOB)
    bob = ws.client(BOB)
    echo = Echo()
    bob.register_plugin(echo, name="echo")
    ws.endpoint(MALLORY).mkdir(parents=True)  # mallory "serves" chat: bob's bot can answer
    first = _send(ws, "hello", seq=1)
    answers = ws.endpoint(MALLORY) / BOB
    wait_for(lambda: any(answers.glob("*.request")), 10)
    [request] = answers.glob("*.request")

    answer = json.loads(base64.b64decode(json.loads(request.read_text())["body"]))
    assert answer["reply_to"] == first and answer["metadata"][AUTO_REPLY_KEY] is True
    # mallory answers bob's bot's answer, unlabelled, as a bot that strips labels would
    got = []
    bob.add_message_listener(got.append)
    _send(ws, "echo: echo: hello", seq=2, reply_to=answer["msg_id"])
    wait_for(lambda: len(got) == 1)
    bob.close()  # drains the listener threads: a bot answer would have been made by now
    assert echo.asked == ["hello"]
