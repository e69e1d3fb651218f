"""Unit tests of the hook facade (``syft_chat.dispatch.Hooks``) and its error policy.

Each test builds a fresh plugin manager with the built-in plugins
(``make_plugin_manager(load_entry_points=False)``) and registers small plugin
objects on it; no client, no transport, no database.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest

from syft_chat.dispatch import HookDecisionError, Hooks
from syft_chat.errors import RefuseMessage
from syft_chat.hookspecs import hookimpl
from syft_chat.interfaces import IncomingRequest
from syft_chat.manager import PluginFailure, make_plugin_manager
from syft_chat.models import ChatMessage, Envelope, utcnow

ALICE = "alice@example.com"
BOB = "bob@example.com"
JSON_CODEC = "syft_chat.plugins.json_codec"
CONTACT_POLICY = "syft_chat.plugins.contact_policy"


class FakeClient(SimpleNamespace):
    """What the built-in plugins read from ``client`` (the contact policy, the transport)."""

    def __init__(self, refuse: str | None = None, peers: tuple[str, ...] = ()) -> None:
        super().__init__(
            contact_policy=SimpleNamespace(refuses=lambda sender: refuse),
            transport=SimpleNamespace(list_peers=lambda: list(peers)),
        )


class Setup:
    def __init__(self) -> None:
        self.pm, failures = make_plugin_manager(load_entry_points=False)
        assert failures == []
        self.failures: list[PluginFailure] = []
        self.client = FakeClient()

    def hooks(self) -> Hooks:
        return Hooks(self.pm, self.failures.append)

    def add(self, plugin: object, name: str) -> object:
        self.pm.register(plugin, name=name)
        return plugin


@pytest.fixture
def s() -> Setup:
    return Setup()


def envelope(content: str = "hello") -> Envelope:
    return Envelope(msg_id="m-1", sender=ALICE, recipient=BOB, content=content, timestamp=utcnow())


def message(content: str = "hello") -> ChatMessage:
    return ChatMessage(sender=ALICE, content=content, seq=1)


# ------------------------------------------------------------------ notifications


class Listener:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[str] = []

    @hookimpl
    def chat_message_received(self, message: ChatMessage, client: Any) -> None:
        self.seen.append(message.content)
        if self.fail:
            raise RuntimeError("listener exploded")


@pytest.mark.parametrize("failing_first", [True, False])
def test_notification_calls_every_implementation_and_records_failures(
    s: Setup, failing_first: bool
) -> None:
    # registration order decides call order (LIFO): the failing one runs first, then last
    good, bad = Listener(), Listener(fail=True)
    for name, plugin in [("good", good), ("bad", bad)][:: -1 if failing_first else 1]:
        s.add(plugin, name)
    s.hooks().message_received(message("hi"), s.client)
    assert good.seen == ["hi"]
    assert bad.seen == ["hi"]
    assert s.failures == [
        PluginFailure("bad", "chat_message_received", "RuntimeError: listener exploded")
    ]


def test_every_notification_hook_isolates_failures(s: Setup) -> None:
    calls: list[str] = []

    class Broken:
        @hookimpl
        def chat_message_sent(self, message: Any, response: Any, client: Any) -> None:
            raise ValueError("sent")

        @hookimpl
        def chat_message_status_changed(
            self, msg_id: str, status: Any, error: Any, client: Any
        ) -> None:
            raise ValueError("status")

        @hookimpl
        def chat_message_changed(self, message: Any, change: str, actor: str, client: Any) -> None:
            raise ValueError("changed")

        @hookimpl
        def chat_message_read(self, message: Any, client: Any) -> None:
            raise ValueError("read")

        @hookimpl
        def chat_message_rejected(self, sender: str, reason: str, raw: bytes, client: Any) -> None:
            raise ValueError("rejected")

        @hookimpl
        def chat_client_closing(self, client: Any) -> None:
            raise ValueError("closing")

    class Working:
        @hookimpl
        def chat_message_sent(self, message: Any, response: Any, client: Any) -> None:
            calls.append("sent")

        @hookimpl
        def chat_message_rejected(self, sender: str, reason: str, raw: bytes, client: Any) -> None:
            calls.append(f"rejected:{reason}")

    s.add(Working(), "working")
    s.add(Broken(), "broken")
    hooks = s.hooks()
    m = message()
    hooks.message_sent(m, SimpleNamespace(), s.client)
    hooks.message_status_changed("m-1", "delivered", None, s.client)  # type: ignore[arg-type]
    hooks.message_changed(m, "edited", BOB, s.client)
    hooks.message_read(m, s.client)
    hooks.message_rejected(BOB, "spoofed", b"raw", s.client)
    hooks.client_closing(s.client)
    assert calls == ["sent", "rejected:spoofed"]
    assert [(f.plugin, f.stage) for f in s.failures] == [
        ("broken", "chat_message_sent"),
        ("broken", "chat_message_status_changed"),
        ("broken", "chat_message_changed"),
        ("broken", "chat_message_read"),
        ("broken", "chat_message_rejected"),
        ("broken", "chat_client_closing"),
    ]


def test_client_started_can_target_one_plugin(s: Setup) -> None:
    started: list[str] = []

    class Starter:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def chat_client_started(self, client: Any) -> None:
            started.append(self.name)

    late = Starter("late")
    s.add(Starter("early"), "early")
    s.add(late, "late")
    hooks = s.hooks()
    hooks.client_started(s.client, plugin=late)
    assert started == ["late"]
    hooks.client_started(s.client)
    assert sorted(started) == ["early", "late", "late"]


def test_discover_users_merges_and_survives_a_failure(s: Setup) -> None:
    class Directory:
        @hookimpl
        def chat_discover_users(self, client: Any) -> list[str]:
            return [BOB, "carol@example.com"]

    class Broken:
        @hookimpl
        def chat_discover_users(self, client: Any) -> list[str]:
            raise OSError("no network")

    s.add(Directory(), "directory")
    s.add(Broken(), "broken")
    s.client = FakeClient(peers=(BOB, "dave@example.com"))  # the built-in asks the transport
    users = s.hooks().discover_users(s.client)
    assert users == {BOB, "carol@example.com", "dave@example.com"}
    assert [(f.plugin, f.stage) for f in s.failures] == [("broken", "chat_discover_users")]


# ------------------------------------------------------------------ decisions


class BrokenCodec:
    @hookimpl
    def chat_encode_body(self, envelope: Envelope, client: Any) -> bytes:
        raise ValueError("bad key")

    @hookimpl
    def chat_decode_body(self, request: IncomingRequest, client: Any) -> Envelope:
        raise ValueError("bad key")


class BrokenPolicy:
    @hookimpl
    def chat_accept_message(self, message: ChatMessage, sender: str, client: Any) -> str | None:
        raise KeyError("policy db")


def test_encode_body_fails_closed_naming_the_plugin(s: Setup) -> None:
    s.add(BrokenCodec(), "crypto")
    with pytest.raises(HookDecisionError) as info:
        s.hooks().encode_body(envelope(), s.client)
    err = info.value
    assert err.plugin == "crypto"
    assert err.hook == "chat_encode_body"
    assert err.public is None  # an ordinary exception's text is not for the sender
    assert "crypto" in str(err) and "bad key" in str(err)
    assert s.failures == [PluginFailure("crypto", "chat_encode_body", "ValueError: bad key")]


def test_decode_body_fails_closed_naming_the_plugin(s: Setup) -> None:
    s.add(BrokenCodec(), "crypto")
    body = envelope().model_dump_json().encode()  # the JSON codec could decode it: never asked
    with pytest.raises(HookDecisionError) as info:
        s.hooks().decode_body(IncomingRequest(ALICE, "r-1", body), s.client)
    assert (info.value.plugin, info.value.hook) == ("crypto", "chat_decode_body")
    assert [(f.plugin, f.stage) for f in s.failures] == [("crypto", "chat_decode_body")]


def test_accept_message_fails_closed_naming_the_plugin(s: Setup) -> None:
    s.add(BrokenPolicy(), "policy")
    with pytest.raises(HookDecisionError) as info:
        s.hooks().accept_message(message(), ALICE, s.client)
    assert (info.value.plugin, info.value.hook) == ("policy", "chat_accept_message")
    assert [(f.plugin, f.stage) for f in s.failures] == [("policy", "chat_accept_message")]


def test_accept_message_returns_a_refusal_reason(s: Setup) -> None:
    hooks = s.hooks()
    assert hooks.accept_message(message(), ALICE, s.client) is None
    s.client = FakeClient(refuse="blocked")  # the built-in contact policy refuses
    assert hooks.accept_message(message(), ALICE, s.client) == "blocked"
    assert s.failures == []


def test_refuse_message_is_a_refusal_not_a_plugin_failure(s: Setup) -> None:
    class Gatekeeper:
        @hookimpl
        def chat_accept_message(self, message: ChatMessage, sender: str, client: Any) -> None:
            raise RefuseMessage("you are not on the list")

    s.add(Gatekeeper(), "gatekeeper")
    with pytest.raises(HookDecisionError) as info:
        s.hooks().accept_message(message(), ALICE, s.client)
    assert info.value.plugin == "gatekeeper"
    assert info.value.public == "you are not on the list"
    assert s.failures == []


def test_malformed_body_is_refused_by_the_json_codec(s: Setup) -> None:
    with pytest.raises(HookDecisionError) as info:
        s.hooks().decode_body(IncomingRequest(ALICE, "r-1", b"{not json"), s.client)
    assert info.value.plugin == JSON_CODEC
    assert info.value.public is not None and info.value.public.startswith("malformed message")
    assert "{not json" not in info.value.public  # the input is not echoed back
    assert s.failures == []


def test_json_codec_round_trip(s: Setup) -> None:
    hooks = s.hooks()
    sent = envelope("round trip")
    body = hooks.encode_body(sent, s.client)
    assert isinstance(body, bytes)
    assert hooks.decode_body(IncomingRequest(ALICE, "r-1", body), s.client) == sent


def test_no_codec_at_all_fails_closed(s: Setup) -> None:
    s.pm.unregister(name=JSON_CODEC)
    hooks = s.hooks()
    with pytest.raises(HookDecisionError, match="no codec"):
        hooks.encode_body(envelope(), s.client)
    with pytest.raises(HookDecisionError, match="no codec"):
        hooks.decode_body(IncomingRequest(ALICE, "r-1", b"{}"), s.client)


def test_firstresult_stops_at_the_first_non_none(s: Setup) -> None:
    asked: list[str] = []

    class Passes:
        @hookimpl(tryfirst=True)
        def chat_encode_body(self, envelope: Envelope, client: Any) -> None:
            asked.append("passes")

    class Encrypts:
        @hookimpl
        def chat_encode_body(self, envelope: Envelope, client: Any) -> bytes:
            asked.append("encrypts")
            return b"ciphertext"

    class Never:
        @hookimpl(trylast=True)
        def chat_encode_body(self, envelope: Envelope, client: Any) -> bytes:
            asked.append("never")
            return b"never"

    s.add(Encrypts(), "encrypts")
    s.add(Passes(), "passes")  # registered later, but tryfirst: asked first
    s.add(Never(), "never")
    assert s.hooks().encode_body(envelope(), s.client) == b"ciphertext"
    assert asked == ["passes", "encrypts"]  # the trylast ones (and the JSON codec) not asked


def test_a_tryfirst_codec_wins_over_the_builtin_json(s: Setup) -> None:
    class Crypto:
        @hookimpl(tryfirst=True)
        def chat_encode_body(self, envelope: Envelope, client: Any) -> bytes:
            return b"sealed:" + envelope.content.encode()

        @hookimpl(tryfirst=True)
        def chat_decode_body(self, request: IncomingRequest, client: Any) -> Envelope | None:
            if not request.body.startswith(b"sealed:"):
                return None  # not ours: let the JSON codec try
            return envelope(request.body.removeprefix(b"sealed:").decode())

    s.add(Crypto(), "crypto")
    hooks = s.hooks()
    assert hooks.encode_body(envelope("secret"), s.client) == b"sealed:secret"
    got = hooks.decode_body(IncomingRequest(ALICE, "r-1", b"sealed:secret"), s.client)
    assert got.content == "secret"
    plain = envelope("plain").model_dump_json().encode()
    assert hooks.decode_body(IncomingRequest(ALICE, "r-2", plain), s.client).content == "plain"


def test_a_hook_wrapper_wraps_implementations_and_sees_the_result(s: Setup) -> None:
    seen: list[tuple[str, Any]] = []

    class Auditor:
        @hookimpl(wrapper=True)
        def chat_encode_body(self, envelope: Envelope, client: Any) -> Generator[None, Any, Any]:
            seen.append(("before", envelope.content))
            result = yield
            seen.append(("after", result))
            return result + b"\n" if result is not None else None

    s.add(Auditor(), "auditor")
    body = s.hooks().encode_body(envelope("wrapped"), s.client)
    assert body.endswith(b"\n")  # the wrapper's return value is the result
    assert Envelope.model_validate_json(body).content == "wrapped"
    assert seen == [("before", "wrapped"), ("after", body[:-1])]
    assert s.failures == []


def test_a_hook_wrapper_wraps_each_notification_implementation(s: Setup) -> None:
    wrapped: list[str] = []

    class Timer:
        @hookimpl(wrapper=True)
        def chat_message_received(self, message: ChatMessage, client: Any) -> Generator:
            wrapped.append("enter")
            result = yield
            wrapped.append("exit")
            return result

    a, b = Listener(), Listener()
    s.add(a, "a")
    s.add(b, "b")
    s.add(Timer(), "timer")
    s.hooks().message_received(message("x"), s.client)
    assert a.seen == ["x"] and b.seen == ["x"]
    assert wrapped == ["enter", "exit", "enter", "exit"]  # once around each implementation


# ------------------------------------------------------------------ bots


def test_reply_to_pairs_answers_with_plugin_names(s: Setup) -> None:
    class Bot:
        def __init__(self, answer: Any) -> None:
            self.answer = answer

        @hookimpl
        def chat_reply_to(self, message: ChatMessage, client: Any) -> Any:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    s.add(Bot("pong"), "echo")
    s.add(Bot(None), "quiet")
    s.add(Bot({"content": "hi", "metadata": {"k": 1}}), "greeter")
    s.add(Bot(RuntimeError("bot crashed")), "crashy")
    answers = s.hooks().reply_to(message("ping"), s.client)
    assert sorted(answers, key=lambda a: a[0]) == [
        ("echo", "pong"),
        ("greeter", {"content": "hi", "metadata": {"k": 1}}),
    ]
    assert s.failures == [PluginFailure("crashy", "chat_reply_to", "RuntimeError: bot crashed")]


# ------------------------------------------------------------------ registries


def test_registries_include_the_builtins(s: Setup) -> None:
    hooks = s.hooks()
    transports = hooks.register_transports()
    stores = hooks.register_stores()
    assert [p for _, p in stores["sqlite"]] == ["syft_chat.plugins.sqlite.store"]
    assert len(transports) == 1
    [(factory, plugin)] = next(iter(transports.values()))
    assert plugin == "syft_chat.plugins.syft_rpc.transport" and callable(factory)


def test_registries_collect_duplicates_for_the_same_name(s: Setup) -> None:
    def factory_a(context: Any) -> str:
        return "a"

    def factory_b(context: Any) -> str:
        return "b"

    class TransportA:
        @hookimpl
        def chat_register_transports(self, register: Any) -> None:
            register("memory", factory_a)

    class TransportB:
        @hookimpl
        def chat_register_transports(self, register: Any) -> None:
            register("memory", factory_b)

    class StoreA:
        @hookimpl
        def chat_register_stores(self, register: Any) -> None:
            register("sqlite", factory_a)  # shadowing the built-in: a conflict, not a swap

    s.add(TransportA(), "plugin-a")
    s.add(TransportB(), "plugin-b")
    s.add(StoreA(), "plugin-a-store")
    hooks = s.hooks()
    memory = hooks.register_transports()["memory"]
    assert sorted(memory, key=lambda e: e[1]) == [(factory_a, "plugin-a"), (factory_b, "plugin-b")]
    sqlite = hooks.register_stores()["sqlite"]
    assert sorted(p for _, p in sqlite) == ["plugin-a-store", "syft_chat.plugins.sqlite.store"]


def test_a_raising_registry_is_recorded_and_the_others_still_register(s: Setup) -> None:
    class Broken:
        @hookimpl
        def chat_register_stores(self, register: Any) -> None:
            register("half", lambda context: None)
            raise ImportError("missing driver")

    s.add(Broken(), "broken")
    stores = s.hooks().register_stores()
    assert "sqlite" in stores
    assert s.failures == [
        PluginFailure("broken", "chat_register_stores", "ImportError: missing driver")
    ]


# ------------------------------------------------------------------ tracing


def _trace_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "syft_chat.trace"]


def test_trace_logs_each_call(
    s: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SYFT_CHAT_TRACE_PLUGINS", "1")
    caplog.set_level(logging.INFO, logger="syft_chat.trace")
    s.add(Listener(), "listener")
    hooks = s.hooks()
    hooks.message_received(message(), s.client)
    hooks.encode_body(envelope(), s.client)
    assert hooks.accept_message(message(), ALICE, s.client) is None
    lines = _trace_records(caplog)
    assert "chat_message_received [listener] -> None" in lines
    assert any(line.startswith(f"chat_encode_body [{JSON_CODEC}] -> b'") for line in lines)
    assert f"chat_accept_message [{CONTACT_POLICY}] -> None" in lines
    assert len(lines) == 3


def test_no_trace_without_the_switch(
    s: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SYFT_CHAT_TRACE_PLUGINS", raising=False)
    caplog.set_level(logging.INFO, logger="syft_chat.trace")
    s.add(Listener(), "listener")
    hooks = s.hooks()
    hooks.message_received(message(), s.client)
    hooks.encode_body(envelope(), s.client)
    assert _trace_records(caplog) == []


def test_hooks_use_the_plugin_manager_they_were_given() -> None:
    # two managers never share plugins: a listener on one is not called through the other
    first, second = Setup(), Setup()
    listener = Listener()
    first.add(listener, "listener")
    second.hooks().message_received(message(), second.client)
    assert listener.seen == []
    first.hooks().message_received(message(), first.client)
    assert listener.seen == ["hello"]
    assert isinstance(first.pm, pluggy.PluginManager) and first.pm is not second.pm
