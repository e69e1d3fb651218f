"""The plugin layer: isolation, error policy, entry points and escape hatches."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import ALICE, BOB, wait_for

import syft_chat
from syft_chat import MessageStatus, hookimpl
from syft_chat.manager import _reset_entry_point_cache, make_plugin_manager

FAKEDISTS = Path(__file__).parent / "data" / "fakedists"


@pytest.fixture
def fake_dists(monkeypatch):
    """Put fake installed distributions (dist-info + entry points) on sys.path."""
    monkeypatch.syspath_prepend(str(FAKEDISTS))
    monkeypatch.delenv("SYFT_CHAT_LOAD_PLUGINS", raising=False)
    _reset_entry_point_cache()
    yield
    _reset_entry_point_cache()
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]


# ---------------------------------------------------------------- error policy


def test_raising_listener_does_not_stop_delivery_or_other_listeners(pair):
    _, alice, bob = pair
    good: list[str] = []

    def bad(message):
        raise RuntimeError("listener bug")

    bob.add_message_listener(bad)
    bob.add_message_listener(lambda m: good.append(m.content))
    r1 = alice.send_message(BOB, "one")
    r2 = alice.send_message(BOB, "two")
    wait_for(lambda: good == ["one", "two"])
    assert alice.get_message(r1.message_id).status == MessageStatus.DELIVERED
    assert alice.get_message(r2.message_id).status == MessageStatus.DELIVERED
    wait_for(lambda: len([f for f in bob.plugin_failures if "listener bug" in f.error]) == 2)
    assert all(f.stage == "chat_message_received" for f in bob.plugin_failures)


def test_removed_listener_is_not_called(pair):
    _, alice, bob = pair
    got: list[str] = []
    fn = got.append
    bob.add_message_listener(fn)
    bob.add_message_listener(fn)  # idempotent
    alice.send_message(BOB, "a")
    wait_for(lambda: len(got) == 1)
    bob.remove_message_listener(fn)
    alice.send_message(BOB, "b")
    alice.send_message(BOB, "sync")
    wait_for(lambda: len(bob.get_chat_history()) == 3)
    bob.close()  # drains the listener queue
    assert len(got) == 1


def test_raising_encoder_fails_closed(pair):
    ws, alice, bob = pair

    class BrokenCrypto:
        @hookimpl
        def chat_encode_body(self, envelope):
            raise ValueError("no key for recipient")

    alice.register_plugin(BrokenCrypto(), name="broken-crypto")
    with pytest.raises(syft_chat.DeliveryError, match="broken-crypto") as info:
        alice.send_message(BOB, "top secret")
    stored = alice.get_message(info.value.msg_id)
    assert stored.status == MessageStatus.FAILED
    # nothing was written for the transport, so nothing can leak in plain text
    assert not list(ws.endpoint(BOB).rglob("*.request"))
    assert bob.get_chat_history() == []


def test_raising_accept_hook_refuses_the_message(pair):
    _, alice, bob = pair

    class Gatekeeper:
        @hookimpl
        def chat_accept_message(self, message):
            raise RuntimeError("policy service down")

    bob.register_plugin(Gatekeeper(), name="gatekeeper")
    with pytest.raises(syft_chat.MessageRejectedError, match="refused by a plugin") as info:
        alice.send_message(BOB, "let me in")
    assert alice.get_message(info.value.msg_id).status == MessageStatus.FAILED
    assert "policy service down" not in str(info.value)  # details stay with bob
    assert bob.get_chat_history() == []
    [failure] = bob.failed_messages()
    assert "gatekeeper" in failure["reason"] and "policy service down" in failure["reason"]

    class Polite:
        @hookimpl(tryfirst=True)
        def chat_accept_message(self, message):
            raise syft_chat.RefuseMessage("closed for lunch")

    bob.register_plugin(Polite())
    with pytest.raises(syft_chat.MessageRejectedError, match="closed for lunch"):
        alice.send_message(BOB, "now?")


def test_accept_hook_reason_is_returned_to_the_sender(pair):
    _, alice, bob = pair

    class NoShouting:
        @hookimpl
        def chat_accept_message(self, message, sender):
            return "no shouting" if message.content.isupper() else None

    bob.register_plugin(NoShouting())
    with pytest.raises(syft_chat.MessageRejectedError) as info:
        alice.send_message(BOB, "HELLO")
    assert info.value.reason.endswith("no shouting")
    alice.send_message(BOB, "hello")
    assert [m.content for m in bob.get_chat_history()] == ["hello"]


def test_encode_and_decode_hooks_round_trip(pair):
    """A codec plugin on both sides: the request file never holds the plain text."""
    import base64

    from syft_chat.models import Envelope

    ws, alice, bob = pair

    class Codec:
        @hookimpl
        def chat_encode_body(self, envelope):
            return b"B64:" + base64.b64encode(envelope.model_dump_json().encode())

        @hookimpl
        def chat_decode_body(self, request):
            if request.body.startswith(b"B64:"):
                return Envelope.model_validate_json(base64.b64decode(request.body[4:]))
            return None

    raw_bodies: list[bytes] = []

    class Spy:
        @hookimpl(tryfirst=True)
        def chat_decode_body(self, request):
            raw_bodies.append(request.body)

    alice.register_plugin(Codec())
    bob.register_plugin(Codec())
    bob.register_plugin(Spy())
    alice.send_message(BOB, "plain words")
    assert b"plain words" not in raw_bodies[0]
    assert [m.content for m in bob.get_chat_history()] == ["plain words"]


def test_raising_lifecycle_hook_does_not_stop_the_client(workspace):
    ws = workspace(ALICE, BOB)

    class Flaky:
        @hookimpl
        def chat_client_started(self, client):
            raise RuntimeError("boom at start")

        @hookimpl
        def chat_client_closing(self, client):
            raise RuntimeError("boom at close")

    alice = ws.client(ALICE, plugins=[Flaky()])
    ws.client(BOB)
    assert alice.send_message(BOB, "fine").status == "delivered"
    assert any(f.stage == "chat_client_started" for f in alice.plugin_failures)
    alice.close()
    assert any(f.stage == "chat_client_closing" for f in alice.plugin_failures)


def test_late_plugin_still_sees_client_started(pair):
    _, alice, _ = pair
    started = []

    class Late:
        @hookimpl
        def chat_client_started(self, client):
            started.append(client.email)

    alice.register_plugin(Late())
    assert started == [ALICE]


def test_invalid_plugin_is_refused_and_not_half_registered(pair):
    _, alice, _ = pair

    class Typo:
        @hookimpl
        def chat_mesage_received(self, message):
            pass

    plugin = Typo()
    with pytest.raises(syft_chat.PluginError, match="chat_mesage_received"):
        alice.register_plugin(plugin)
    assert not alice._pm.is_registered(plugin)


def test_discovery_results_are_merged(pair):
    _, alice, _ = pair

    class Directory:
        @hookimpl
        def chat_discover_users(self, client):
            return ["carol@openmined.org", BOB, client.email]

    class Broken:
        @hookimpl
        def chat_discover_users(self, client):
            raise OSError("directory offline")

    alice.register_plugin(Directory())
    alice.register_plugin(Broken())
    assert alice.list_available_users() == [BOB, "carol@openmined.org"]


# ---------------------------------------------------------------- isolation


def test_two_clients_in_one_process_do_not_share_plugins(pair):
    _, alice, bob = pair
    calls: list[str] = []

    class AliceOnly:
        @hookimpl
        def chat_message_received(self, message, client):
            calls.append(client.email)

    plugin = AliceOnly()
    alice.register_plugin(plugin)
    assert alice._pm.is_registered(plugin) and not bob._pm.is_registered(plugin)
    assert alice._pm is not bob._pm
    alice.send_message(BOB, "to bob")
    bob.send_message(ALICE, "to alice")
    wait_for(lambda: calls == [ALICE])
    alice.send_message(BOB, "again")
    bob.close()
    assert calls == [ALICE]


def test_builtins_are_registered_like_any_plugin():
    pm, failures = make_plugin_manager(load_entry_points=False)
    names = {name for name, _ in pm.list_name_plugin()}
    assert names == set(syft_chat.manager.DEFAULT_PLUGINS)
    assert failures == []


# ---------------------------------------------------------------- entry points


def test_entry_points_load_and_broken_ones_are_reported(fake_dists, workspace):
    monkey_disable = "syft-chat-fake-dupe"  # would make the default store ambiguous
    import os

    os.environ["SYFT_CHAT_DISABLE_PLUGINS"] = monkey_disable
    try:
        ws = workspace(ALICE, BOB)
        alice, bob = ws.client(ALICE), ws.client(BOB)
    finally:
        del os.environ["SYFT_CHAT_DISABLE_PLUGINS"]
    failures = {f.plugin: f for f in bob.plugin_failures}
    assert failures["syft-chat-fake-broken"].stage == "import"
    assert "not installed" in failures["syft-chat-fake-broken"].error
    assert failures["syft-chat-fake-badhook"].stage == "register"
    assert "chat_mesage_recieved" in failures["syft-chat-fake-badhook"].error
    assert any("fake-good" in name for name in bob.list_plugins())
    assert not any("badhook" in name for name in bob.list_plugins())
    # the client works, and the good plugin is live
    alice.send_message(BOB, "hello plugins")
    import fake_good_plugin

    wait_for(lambda: fake_good_plugin.seen.count("hello plugins") == 1)
    assert "robot@bots.example" in alice.list_available_users()


def test_allow_list_is_read_before_any_import(fake_dists, monkeypatch, workspace):
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", "syft-chat-fake-good")
    ws = workspace(ALICE, BOB)
    bob = ws.client(BOB)
    assert "fake_broken_plugin" not in sys.modules
    assert "fake_badhook_plugin" not in sys.modules
    assert bob.plugin_failures == []
    assert any("fake-good" in name for name in bob.list_plugins())


def test_empty_allow_list_loads_nothing(fake_dists, monkeypatch):
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", "")
    pm, failures = make_plugin_manager()
    assert failures == []
    assert not any(m.startswith("fake_") for m in sys.modules)
    assert len(pm.list_name_plugin()) == len(syft_chat.manager.DEFAULT_PLUGINS)


def test_duplicate_backend_name_is_an_error_naming_both(fake_dists, monkeypatch, workspace):
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", "syft-chat-fake-dupe")
    ws = workspace(ALICE, BOB)
    with pytest.raises(syft_chat.PluginError) as info:
        ws.client(ALICE)
    assert "syft_chat.plugins.sqlite.store" in str(info.value)
    assert "syft-chat-fake-dupe" in str(info.value)
    assert "SYFT_CHAT_DISABLE_PLUGINS" in str(info.value)


def test_strict_mode_raises_on_load_errors(fake_dists, monkeypatch):
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", "syft-chat-fake-broken")
    monkeypatch.setenv("SYFT_CHAT_STRICT_PLUGINS", "1")
    with pytest.raises(syft_chat.PluginError, match="syft-chat-fake-broken"):
        make_plugin_manager()


def test_entry_points_are_imported_once_per_process(fake_dists, monkeypatch):
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", "syft-chat-fake-good")
    pm1, _ = make_plugin_manager()
    import fake_good_plugin

    fake_good_plugin.marker = "kept"
    pm2, _ = make_plugin_manager()
    assert pm1 is not pm2
    assert sys.modules["fake_good_plugin"].marker == "kept"


def test_message_sent_is_announced_once_per_confirmation(pair):
    _, alice, bob = pair
    sent: list[str] = []

    class Receipts:
        @hookimpl
        def chat_message_sent(self, message, response):
            assert response.message_id == message.msg_id
            sent.append(message.msg_id)

    alice.register_plugin(Receipts())
    r1 = alice.send_message(BOB, "one")
    r2 = alice.send_message(BOB, "two")
    wait_for(lambda: sent == [r1.message_id, r2.message_id])


def test_custom_store_and_transport_names(pair):
    _, alice, _ = pair
    with pytest.raises(syft_chat.PluginError, match="no store named 'redis'"):
        syft_chat.SyftChatClient(alice.syft.config_path, store="redis")

    class ChattyRegistrar:
        @hookimpl
        def chat_register_transports(self, register):
            raise RuntimeError("cannot register")

    with pytest.raises(syft_chat.PluginError, match="no transport named 'carrier-pigeon'"):
        syft_chat.SyftChatClient(
            alice.syft.config_path, transport="carrier-pigeon", plugins=[ChattyRegistrar()]
        )


def test_bot_replies_in_thread_and_bots_never_answer_bots(pair):
    _, alice, bob = pair

    class Echo:
        @hookimpl
        def chat_reply_to(self, message):
            return f"echo: {message.content}"

    class Fancy:
        @hookimpl
        def chat_reply_to(self, message):
            return {"content": "fancy", "metadata": {"kind": "card"}}

    class Broken:
        @hookimpl
        def chat_reply_to(self, message):
            raise RuntimeError("bot bug")

    bob.register_plugin(Echo(), name="echo-bot")
    bob.register_plugin(Fancy(), name="fancy-bot")
    bob.register_plugin(Broken(), name="broken-bot")
    alice.register_plugin(Echo(), name="alice-echo")  # would loop if fed automatic replies
    got: list = []
    alice.add_message_listener(got.append)
    sent = alice.send_message(BOB, "hello bot", thread_id="support")
    wait_for(lambda: len(got) == 2)
    by_content = {m.content: m for m in got}
    echo = by_content["echo: hello bot"]
    assert echo.reply_to == sent.message_id and echo.thread_id == "support"
    # the bot label is alice's judgement: bob's is kept as his claim
    assert echo.metadata["syft_chat.claimed_auto_reply"] == {"auto_reply": True, "bot": "echo-bot"}
    assert "syft_chat.auto_reply" not in echo.metadata
    assert by_content["fancy"].metadata["kind"] == "card"
    assert any(f.plugin == "broken-bot" for f in bob.plugin_failures)
    bob.close()  # drains bob's listener queue: any answer to an answer would be sent by now
    history = alice.get_chat_history(limit=10)
    assert sorted(m.content for m in history) == ["echo: hello bot", "fancy", "hello bot"]


def test_hook_wrappers_wrap_each_implementation(pair):
    """Hooks are called through pluggy: a wrapper sees each call, and a raising
    implementation is still isolated from the others."""
    ws, alice, bob = pair
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def chat_message_received(self, message):
            seen.append(f"before {message.content}")
            result = yield
            seen.append(f"after {message.content}")
            return result

    class Broken:
        @hookimpl
        def chat_message_received(self, message):
            raise RuntimeError("broken listener")

    heard: list[str] = []
    bob.register_plugin(Wrapper())
    bob.register_plugin(Broken())
    bob.add_message_listener(lambda m: heard.append(m.content))
    alice.send_message(BOB, "wrapped")
    assert wait_for(lambda: heard == ["wrapped"])
    assert wait_for(lambda: seen.count("after wrapped") >= 1)
    assert "before wrapped" in seen
    assert wait_for(lambda: any(f.stage == "chat_message_received" for f in bob.plugin_failures))
