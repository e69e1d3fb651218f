"""The only module that calls hooks, with one typed function per hook.

The error policy lives here and nowhere else:

* notifications and registries call every implementation, even after one
  raised; each failure is logged and recorded;
* decisions fail closed: a raising implementation becomes a refusal
  (:class:`HookDecisionError`) that names the plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from syft_chat.errors import RefuseMessage, SyftChatError
from syft_chat.manager import PluginFailure, trace_enabled

if TYPE_CHECKING:
    from pathlib import Path

    from syft_chat.interfaces import IncomingRequest, StoreFactory, TransportFactory
    from syft_chat.models import Attachment, ChatMessage, ChatResponse, Envelope, MessageStatus

__all__ = ["HookDecisionError", "Hooks"]

#: The ``client`` argument every hook receives (a :class:`~syft_chat.SyftChatClient`;
#: passed through untouched, so the facade does not depend on the client's module).
HookClient = Any

log = logging.getLogger("syft_chat.plugins")
trace_log = logging.getLogger("syft_chat.trace")


class HookDecisionError(SyftChatError):
    """A decision hook implementation raised; the decision fails closed."""

    def __init__(self, plugin: str, hook: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed in {hook}: {type(error).__name__}: {error}")
        self.plugin = plugin
        self.hook = hook
        #: what the sender of a refused message may be told (``RefuseMessage`` only)
        self.public = str(error) if isinstance(error, RefuseMessage) else None
        #: the refusal is temporary: the sender should encode and send again
        self.retry = isinstance(error, RefuseMessage) and error.retry


def _is_wrapper(impl: Any) -> bool:
    return bool(impl.hookwrapper or impl.wrapper)


class Hooks:
    """Typed facade over one plugin manager's hooks.

    Each implementation is called on its own (through a pluggy subset caller, so hook
    wrappers still wrap it), which is what lets a failing one be recorded and skipped
    while the others run.
    """

    def __init__(self, pm: pluggy.PluginManager, record: Callable[[PluginFailure], None]) -> None:
        self.pm = pm
        self._record = record
        self._trace = trace_enabled()

    # ------------------------------------------------------------------ machinery

    def _plugin_name(self, impl: Any) -> str:
        return str(impl.plugin_name)

    def _call(self, impl: Any, hook_name: str, kwargs: dict[str, Any]) -> Any:
        """Call one implementation through pluggy, so that hook wrappers run around it."""
        caller = getattr(self.pm.hook, hook_name)
        spec = caller.spec
        if spec is not None and spec.opts.get("historic"):
            # lifecycle hooks are called per plugin by the client (late plugins too)
            result = impl.function(*[kwargs[a] for a in impl.argnames])
        else:
            others = [
                i.plugin for i in caller.get_hookimpls() if i is not impl and not _is_wrapper(i)
            ]
            outcome = self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
            if spec is not None and spec.opts.get("firstresult"):
                result = outcome
            else:
                result = outcome[0] if outcome else None
        if self._trace:
            trace_log.info("%s [%s] -> %r", hook_name, self._plugin_name(impl), result)
        return result

    def _impls(self, hook_name: str, plugin: object | None = None) -> list[Any]:
        caller = getattr(self.pm.hook, hook_name)
        impls = [
            i
            for i in caller.get_hookimpls()
            if (plugin is None or i.plugin is plugin) and not _is_wrapper(i)
        ]
        return list(reversed(impls))  # pluggy's call order: tryfirst first, LIFO

    def _each(self, hook_name: str, plugin: object | None = None, **kwargs: Any) -> list[Any]:
        """Call every implementation; a raising one is recorded and skipped."""
        return [result for _, result in self._each_named(hook_name, plugin, **kwargs)]

    def _each_named(
        self, hook_name: str, plugin: object | None = None, **kwargs: Any
    ) -> list[tuple[str, Any]]:
        """Like :meth:`_each`, pairing each non-None result with its plugin's name."""
        results = []
        for impl in self._impls(hook_name, plugin):
            try:
                result = self._call(impl, hook_name, kwargs)
            except Exception as exc:
                name = self._plugin_name(impl)
                log.exception("syft-chat plugin %r raised in %s", name, hook_name)
                self._record(PluginFailure(name, hook_name, f"{type(exc).__name__}: {exc}"))
                continue
            if result is not None:
                results.append((self._plugin_name(impl), result))
        return results

    def _first(self, hook_name: str, **kwargs: Any) -> Any:
        """First non-None result; a raising implementation fails the decision closed."""
        for impl in self._impls(hook_name):
            try:
                result = self._call(impl, hook_name, kwargs)
            except RefuseMessage as exc:  # a refusal on purpose, not a failure
                raise HookDecisionError(self._plugin_name(impl), hook_name, exc) from exc
            except Exception as exc:
                name = self._plugin_name(impl)
                log.warning("syft-chat plugin %r raised in %s: %s", name, hook_name, exc)
                self._record(PluginFailure(name, hook_name, f"{type(exc).__name__}: {exc}"))
                raise HookDecisionError(name, hook_name, exc) from exc
            if result is not None:
                return result
        return None

    # ------------------------------------------------------------------ lifecycle

    def client_started(self, client: HookClient, plugin: object | None = None) -> None:
        self._each("chat_client_started", plugin, client=client)

    def client_closing(self, client: HookClient) -> None:
        self._each("chat_client_closing", client=client)

    # ------------------------------------------------------------------ registries

    def _registry(self, hook_name: str) -> dict[str, list[tuple[Any, str]]]:
        """Collect ``name -> [(factory, plugin), ...]``; more than one entry is a conflict."""
        found: dict[str, list[tuple[Any, str]]] = {}
        for impl in self._impls(hook_name):
            plugin = self._plugin_name(impl)

            def register(name: str, factory: Any, _plugin: str = plugin) -> None:
                found.setdefault(str(name), []).append((factory, _plugin))

            try:
                impl.function(*[register for _ in impl.argnames])
            except Exception as exc:
                log.exception("syft-chat plugin %r raised in %s", plugin, hook_name)
                self._record(PluginFailure(plugin, hook_name, f"{type(exc).__name__}: {exc}"))
        return found

    def register_transports(self) -> dict[str, list[tuple[TransportFactory, str]]]:
        return self._registry("chat_register_transports")

    def register_stores(self) -> dict[str, list[tuple[StoreFactory, str]]]:
        return self._registry("chat_register_stores")

    # ------------------------------------------------------------------ discovery

    def discover_users(self, client: HookClient) -> set[str]:
        users: set[str] = set()
        for result in self._each("chat_discover_users", client=client):
            users.update(str(u) for u in result)
        return users

    # ------------------------------------------------------------------ decisions

    def encode_body(self, envelope: Envelope, client: HookClient) -> bytes:
        result = self._first("chat_encode_body", envelope=envelope, client=client)
        if result is None:
            raise HookDecisionError("syft_chat", "chat_encode_body", LookupError("no codec"))
        return bytes(result)

    def decode_body(self, request: IncomingRequest, client: HookClient) -> Envelope:
        result: Envelope | None = self._first("chat_decode_body", request=request, client=client)
        if result is None:
            raise HookDecisionError("syft_chat", "chat_decode_body", LookupError("no codec"))
        return result

    def accept_message(self, message: ChatMessage, sender: str, client: HookClient) -> str | None:
        result = self._first("chat_accept_message", message=message, sender=sender, client=client)
        return None if result is None else str(result)

    def accept_attachments(
        self, files: list[Path], recipients: list[str], client: HookClient
    ) -> str | None:
        result = self._first(
            "chat_accept_attachments", files=files, recipients=recipients, client=client
        )
        return None if result is None else str(result)

    # ------------------------------------------------------------------ notifications

    def attachment_available(
        self, message: ChatMessage, attachment: Attachment, client: HookClient
    ) -> None:
        self._each(
            "chat_attachment_available", message=message, attachment=attachment, client=client
        )

    def message_received(self, message: ChatMessage, client: HookClient) -> None:
        self._each("chat_message_received", message=message, client=client)

    def reply_to(self, message: ChatMessage, client: HookClient) -> list[tuple[str, Any]]:
        """Every bot's answer to ``message``, as ``(plugin name, answer)``."""
        return self._each_named("chat_reply_to", message=message, client=client)

    def message_sent(
        self, message: ChatMessage, response: ChatResponse, client: HookClient
    ) -> None:
        self._each("chat_message_sent", message=message, response=response, client=client)

    def message_status_changed(
        self, msg_id: str, status: MessageStatus, error: str | None, client: HookClient
    ) -> None:
        self._each(
            "chat_message_status_changed", msg_id=msg_id, status=status, error=error, client=client
        )

    def message_changed(
        self, message: ChatMessage, change: str, actor: str, client: HookClient
    ) -> None:
        self._each(
            "chat_message_changed", message=message, change=change, actor=actor, client=client
        )

    def message_read(self, message: ChatMessage, client: HookClient) -> None:
        self._each("chat_message_read", message=message, client=client)

    def message_rejected(self, sender: str, reason: str, raw: bytes, client: HookClient) -> None:
        self._each("chat_message_rejected", sender=sender, reason=reason, raw=raw, client=client)
