"""The echo bot, loaded from its installed entry point, answering over real datasites."""

from __future__ import annotations

from datetime import datetime

import syft_chat_echo_bot

from syft_chat import MessageStatus
from syft_chat.models import claims_auto_reply
from syft_chat.testing import register_plugin, wait_for


def test_loaded_from_the_entry_point(echo_network):
    bob = echo_network["bob@openmined.org"]
    assert "syft-chat-echo-bot:echo" in bob.list_plugins()
    assert bob.plugin_failures == []


def test_echo_answers_in_the_same_thread(echo_network):
    alice, bob = echo_network.emails
    reply = echo_network.ask(alice, bob, "/echo hello   'world'")
    assert reply.content == "hello   'world'"  # the raw text, spacing and quotes kept
    assert reply.sender == bob
    assert claims_auto_reply(reply)  # bob says his bot wrote it (a claim, at alice)
    assert reply.metadata["syft_chat.claimed_auto_reply"]["bot"] == "syft-chat-echo-bot:echo"
    question = echo_network[alice].get_message(reply.reply_to)
    assert question is not None and reply.thread_id == question.thread_id
    assert question.status == MessageStatus.DELIVERED


def test_help_lists_every_command(echo_network):
    alice, bob = echo_network.emails
    text = echo_network.ask(alice, bob, "/help").content
    for usage in ("/echo [TEXT]", "/time", "/whoami", "/help"):
        assert usage in text
    assert text.startswith("Echo bot: I repeat what you say.")


def test_whoami_and_time(echo_network):
    alice, bob = echo_network.emails
    assert echo_network.ask(alice, bob, "/whoami").content == f"You are {alice}; I am {bob}."
    stamp = echo_network.ask(alice, bob, "/now").content  # an alias of /time
    assert datetime.fromisoformat(stamp).tzinfo is not None


def test_unknown_command_and_empty_echo_get_help(echo_network):
    alice, bob = echo_network.emails
    assert "Did you mean /echo?" in echo_network.ask(alice, bob, "/ecko hi").content
    assert echo_network.ask(alice, bob, "/echo").content == "Usage: /echo TEXT"


def test_plain_messages_are_left_alone(echo_network):
    alice, bob = echo_network.emails
    echo_network[alice].send_message(bob, "just chatting")
    echo_network.ask(alice, bob, "/echo sync")  # the bot has handled everything before it
    contents = [m.content for m in echo_network[alice].get_chat_history(with_user=bob)]
    assert contents == ["just chatting", "/echo sync", "sync"]


def test_two_bots_do_not_loop(echo_network):
    """Both datasites run the bot; bob's answer is automatic, so alice's bot ignores it."""
    alice, bob = echo_network.emails
    reply = echo_network.ask(alice, bob, "/echo /echo again")
    assert reply.content == "/echo again"  # a command, but an automatic reply
    echo_network.ask(alice, bob, "/echo sync")
    history = echo_network[bob].get_chat_history(with_user=alice)
    assert [m.content for m in history] == [
        "/echo /echo again",
        "/echo again",
        "/echo sync",
        "sync",
    ]
    assert echo_network[alice].plugin_failures == echo_network[bob].plugin_failures == []


def test_the_bot_can_also_be_registered_for_one_client(tmp_path, monkeypatch):
    """Without the entry point (SYFT_CHAT_LOAD_PLUGINS=''), register it on bob only."""
    from syft_chat.testing import local_network

    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", "")
    with local_network(tmp_path, ["ann@example.org", "ben@example.org"]) as net:
        ann, ben = net["ann@example.org"], net["ben@example.org"]
        bot = syft_chat_echo_bot.EchoBot("my-echo")
        with register_plugin(ben, bot):
            assert net.ask(ann.email, ben.email, "/echo one").content == "one"
        ann.send_message(ben.email, "/echo two")
        wait_for(lambda: len(ben.get_chat_history()) == 3)
        ann.send_message(ben.email, "/echo three")
        ben.close()  # drains the listener: no answer to "two" or "three" was sent
        assert [m.content for m in ann.get_chat_history()] == [
            "/echo one",
            "one",
            "/echo two",
            "/echo three",
        ]
