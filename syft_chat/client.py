"""The seed's API: :func:`client` and :class:`SyftChatClient`."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from syft_core import Client as SyftClient

from .dispatch import HookDecisionError, Hooks
from .errors import (
    ClientClosedError,
    ConfigError,
    DeliveryError,
    DeliveryTimeoutError,
    InvalidMessageError,
    MessageRejectedError,
    PluginError,
    StorageError,
    SyftChatError,
    UnknownRecipientError,
)
from .hookspecs import hookimpl
from .interfaces import BackendContext, IncomingRequest, MessageStore, Reply, Transport
from .manager import PluginFailure, make_plugin_manager, register_plugin
from .models import (
    AUTO_REPLY_KEY,
    PROTOCOL_VERSION,
    ChatMessage,
    ChatResponse,
    Direction,
    Envelope,
    MessageStatus,
    describe_error,
    is_auto_reply,
    to_utc,
    utcnow,
)
from .notifier import Notifier
from .settings import ChatSettings

__all__ = ["SyftChatClient", "client"]

log = logging.getLogger("syft_chat")

MessageListener = Callable[[ChatMessage], Any]
_EMAIL = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+$")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class _ListenerPlugin:
    """``add_message_listener(fn)`` is a tiny plugin implementing ``chat_message_received``."""

    def __init__(self, fn: MessageListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_message_received(self, message: ChatMessage) -> None:
        self.fn(message)


@dataclass
class _Pending:
    msg_id: str
    peer: str
    event: threading.Event = field(default_factory=threading.Event)
    reply: Reply | None = None


def _load_syft_client(config_path: str | os.PathLike[str] | None) -> SyftClient:
    path = Path(config_path).expanduser() if config_path is not None else None
    try:
        return SyftClient.load(path)
    except Exception as exc:
        where = (
            str(path)
            if path is not None
            else os.environ.get("SYFTBOX_CLIENT_CONFIG_PATH", "~/.syftbox/config.json")
        )
        raise ConfigError(
            f"could not load the SyftBox config from {where}: {exc}. Pass config_path=, set "
            "SYFTBOX_CLIENT_CONFIG_PATH, or run the SyftBox client once to create "
            "~/.syftbox/config.json (or try `python -m syft_chat demo`, which needs none)."
        ) from exc


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


class SyftChatClient:
    """A chat participant: sends, receives, stores and serves for one datasite.

    :param config_path: SyftBox config file; ``None`` looks where syft-core
        does (``$SYFTBOX_CLIENT_CONFIG_PATH``, then ``~/.syftbox/config.json``).
    :param app_name: the app folder used on both the sending and serving side.
    :param db_path: the SQLite file holding the ``messages`` table.
    :param transport: name of a registered transport (default ``"syft-rpc"``).
    :param store: name of a registered store (default ``"sqlite"``).
    :param settings: a :class:`ChatSettings` or a dict of its fields.
    :param plugins: extra plugin objects registered for this client only.
    :param load_entry_points: load plugins installed in the ``syft_chat``
        entry-point group (subject to ``SYFT_CHAT_LOAD_PLUGINS``).

    The client starts serving as soon as it is constructed; use it as a
    context manager or call :meth:`close`.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        app_name: str = "syft_chat",
        db_path: str | os.PathLike[str] = "chat_messages.db",
        *,
        transport: str = "syft-rpc",
        store: str = "sqlite",
        settings: ChatSettings | dict[str, Any] | None = None,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
    ) -> None:
        if not isinstance(app_name, str) or not _APP_NAME.match(app_name):
            raise InvalidMessageError(
                f"app_name must be a simple folder name (letters, digits, . _ -), got {app_name!r}"
            )
        self._closed = True  # until fully started
        self._close_lock = threading.Lock()
        self.app_name = app_name
        self.settings = (
            settings if isinstance(settings, ChatSettings) else ChatSettings(**(settings or {}))
        )
        self.syft = _load_syft_client(config_path)
        self.email = str(self.syft.email)
        self.db_path = Path(db_path).expanduser()
        self.plugin_failures: list[PluginFailure] = []
        self._failures_lock = threading.Lock()
        pm, failures = make_plugin_manager(load_entry_points=load_entry_points)
        self.plugin_failures.extend(failures)
        self._pm = pm
        self.hooks = Hooks(pm, self._record_failure)
        self._listeners: dict[int, _ListenerPlugin] = {}
        self._pending: dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._started = False
        for plugin in plugins:
            self.register_plugin(plugin)

        context = BackendContext(
            email=self.email,
            syft=self.syft,
            app_name=app_name,
            db_path=self.db_path,
            settings=self.settings,
        )
        self.store: MessageStore = self._make_backend(
            "store", store, self.hooks.register_stores(), context
        )
        self._notifier = Notifier(name=f"syft-chat-listeners[{self.email}]")
        try:
            self.transport: Transport = self._make_backend(
                "transport", transport, self.hooks.register_transports(), context
            )
            self._closed = False
            self.transport.start(self._on_request, self._on_reply)
        except BaseException:
            self._closed = True
            self._notifier.close()
            self.store.close()
            raise
        self._started = True
        self.hooks.client_started(self)

    # ------------------------------------------------------------------ plugins

    def _record_failure(self, failure: PluginFailure) -> None:
        with self._failures_lock:
            self.plugin_failures.append(failure)

    def _make_backend(
        self, kind: str, name: str, registry: dict[str, list[tuple[Any, str]]], ctx: BackendContext
    ) -> Any:
        providers = registry.get(name)
        if not providers:
            known = ", ".join(sorted(registry)) or "none"
            raise PluginError(f"no {kind} named {name!r} is registered (available: {known})")
        if len(providers) > 1:
            names = " and ".join(repr(p) for _, p in providers)
            raise PluginError(
                f"two plugins register the {kind} {name!r}: {names}; uninstall one, or set "
                "SYFT_CHAT_DISABLE_PLUGINS to skip it"
            )
        factory, _plugin = providers[0]
        return factory(ctx)

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin (module or object with ``@hookimpl`` methods) for this client only.

        Raises :class:`PluginError` if it does not validate against the hookspecs.
        """
        failure = register_plugin(self._pm, plugin, name=name)
        if failure is not None:
            raise PluginError(f"invalid plugin {failure.plugin}: {failure.error}")
        if self._started:
            self.hooks.client_started(self, plugin=plugin)

    def unregister_plugin(self, plugin: object) -> None:
        """Remove a plugin registered with :meth:`register_plugin`."""
        if self._pm.is_registered(plugin):
            self._pm.unregister(plugin)

    def list_plugins(self) -> list[str]:
        """Names of the plugins registered in this client."""
        return sorted(name for name, _ in self._pm.list_name_plugin())

    # ------------------------------------------------------------------ listeners

    def add_message_listener(self, listener: MessageListener) -> None:
        """Call ``listener(message)`` once for every new incoming message.

        Listeners run on the client's listener thread, never on the delivery
        path; one that raises is logged and does not affect delivery or other
        listeners. Adding the same function twice has no further effect.
        """
        if not callable(listener):
            raise InvalidMessageError(f"listener must be callable, got {type(listener).__name__}")
        if id(listener) in self._listeners:
            return
        plugin = _ListenerPlugin(listener)
        self._listeners[id(listener)] = plugin
        name = getattr(listener, "__qualname__", type(listener).__name__)
        self._pm.register(plugin, name=f"listener:{name}:{id(listener):x}")

    def remove_message_listener(self, listener: MessageListener) -> None:
        """Stop calling ``listener``. Unknown listeners are ignored."""
        plugin = self._listeners.pop(id(listener), None)
        if plugin is not None:
            self._pm.unregister(plugin)

    # ------------------------------------------------------------------ sending

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this SyftChatClient is closed")

    def _validate_content(self, content: Any) -> str:
        if not isinstance(content, str):
            raise InvalidMessageError(f"content must be a str, got {type(content).__name__}")
        if not content.strip():
            raise InvalidMessageError("content is empty")
        size = len(content.encode("utf-8", "surrogatepass"))
        if size > self.settings.max_content_bytes:
            raise InvalidMessageError(
                f"content is {size} bytes; the limit is {self.settings.max_content_bytes} "
                "(ChatSettings.max_content_bytes)"
            )
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidMessageError(f"content is not valid Unicode text: {exc}") from exc
        return content

    def _validate_metadata(self, metadata: Any) -> dict[str, Any]:
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            raise InvalidMessageError(f"metadata must be a dict, got {type(metadata).__name__}")
        try:
            size = _json_size(metadata)
        except (TypeError, ValueError) as exc:
            raise InvalidMessageError(f"metadata must be JSON-serialisable: {exc}") from exc
        if size > self.settings.max_metadata_bytes:
            raise InvalidMessageError(
                f"metadata is {size} bytes of JSON; the limit is {self.settings.max_metadata_bytes}"
            )
        return dict(metadata)

    def _validate_recipient(self, to_email: Any) -> str:
        if not isinstance(to_email, str) or not _EMAIL.match(to_email.strip()):
            raise InvalidMessageError(f"to_email must be a datasite email, got {to_email!r}")
        recipient: str = to_email.strip()
        if recipient == self.email:
            raise InvalidMessageError("cannot send a message to yourself")
        if not self.transport.can_reach(recipient):
            raise UnknownRecipientError(
                f"{recipient} does not serve syft-chat (app {self.app_name!r}) in this workspace; "
                "see list_available_users()"
            )
        return recipient

    def _resolve_thread(
        self, thread_id: str | None, reply_to: str | None
    ) -> tuple[str | None, str | None]:
        for name, value in (("thread_id", thread_id), ("reply_to", reply_to)):
            if value is not None and (not isinstance(value, str) or not value or len(value) > 128):
                raise InvalidMessageError(f"{name} must be a non-empty str of at most 128 chars")
        if reply_to is None:
            return thread_id, None
        parent = self.store.get(reply_to)
        if parent is None:
            raise InvalidMessageError(f"reply_to names no known message: {reply_to!r}")
        return thread_id or parent.thread_id or parent.msg_id, reply_to

    def send_message(
        self,
        to_email: str,
        content: str,
        thread_id: str | None = None,
        reply_to: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ChatResponse:
        """Send ``content`` to ``to_email`` and return the recipient's confirmation.

        The message is stored locally (status ``queued``) before anything is
        written for the transport. A reply inherits the thread of the message
        it answers; a message starting a conversation starts a thread named
        by its own ``msg_id``.

        :raises InvalidMessageError: bad arguments (nothing is stored).
        :raises UnknownRecipientError: the recipient does not serve chat here.
        :raises DeliveryTimeoutError: no confirmation within ``timeout``
            seconds (default ``settings.send_timeout``); the message stays
            stored with status ``sent``.
        :raises MessageRejectedError: the recipient refused it (status ``failed``).
        """
        self._check_open()
        to_email = self._validate_recipient(to_email)
        content = self._validate_content(content)
        meta = self._validate_metadata(metadata)
        thread_id, reply_to = self._resolve_thread(thread_id, reply_to)
        wait = self.settings.send_timeout if timeout is None else float(timeout)
        if wait <= 0:
            raise InvalidMessageError("timeout must be positive")

        draft = ChatMessage(sender=self.email, content=content, metadata=meta, reply_to=reply_to)
        message = draft.model_copy(
            update={"thread_id": thread_id or draft.msg_id, "recipient": to_email}
        )
        self.store.add(
            message, direction=Direction.OUTGOING, peer=to_email, status=MessageStatus.QUEUED
        )

        envelope = Envelope.from_message(message, to_email)
        try:
            body = self.hooks.encode_body(envelope, self) or envelope.model_dump_json().encode()
        except HookDecisionError as exc:
            self._set_status(message.msg_id, MessageStatus.FAILED, str(exc))
            raise DeliveryError(f"not sent: {exc}", msg_id=message.msg_id) from exc

        request_id = str(uuid.uuid4())
        pending = _Pending(message.msg_id, to_email)
        with self._pending_lock:
            self._pending[request_id] = pending
        # `sent` is recorded before the write: the answer can arrive (and record
        # `delivered`) before transport.send() even returns.
        self._set_status(message.msg_id, MessageStatus.SENT)
        try:
            self.transport.send(
                to_email,
                body,
                request_id=request_id,
                expires=utcnow() + timedelta(seconds=self.settings.request_expiry),
            )
        except Exception as exc:
            with self._pending_lock:
                self._pending.pop(request_id, None)
            self._set_status(message.msg_id, MessageStatus.FAILED, f"transport error: {exc}")
            raise DeliveryError(
                f"could not write the request: {exc}", msg_id=message.msg_id
            ) from exc
        return self._await_reply(request_id, pending, wait)

    def _await_reply(self, request_id: str, pending: _Pending, wait: float) -> ChatResponse:
        end = time.monotonic() + wait
        while not pending.event.wait(min(1.0, max(end - time.monotonic(), 0.0))):
            if self._closed:
                break
            # safety net for a missed file event: look for the answer directly
            poll = getattr(self.transport, "poll_reply", None)
            if poll is not None:
                poll(pending.peer, request_id)
            if pending.event.is_set() or time.monotonic() >= end:
                break
        if self._closed and not pending.event.is_set():
            raise ClientClosedError("the client was closed while waiting for a confirmation")
        reply = pending.reply
        if reply is None:
            raise DeliveryTimeoutError(
                f"{pending.peer} did not confirm message {pending.msg_id} within {wait:g}s; it "
                "stays stored with status 'sent' and a late confirmation will still be recorded",
                msg_id=pending.msg_id,
            )
        body = _parse_json(reply.body)
        if reply.ok:
            return _response_from(body, pending.msg_id)
        reason = str(body.get("error") or reply.body[:300].decode("utf-8", "replace"))
        raise MessageRejectedError(
            f"{pending.peer} refused message {pending.msg_id} ({reply.status_code}): {reason}",
            msg_id=pending.msg_id,
            reason=reason,
        )

    def _on_reply(self, request_id: str, peer: str, reply: Reply) -> None:
        """A reply to one of our requests arrived (transport thread)."""
        with self._pending_lock:
            pending = self._pending.pop(request_id, None)
        body = _parse_json(reply.body)
        msg_id = pending.msg_id if pending is not None else str(body.get("message_id") or "")
        stored = self.store.get(msg_id) if msg_id else None
        if stored is not None and stored.recipient == peer and not self._closed:
            if reply.ok:
                self._set_status(msg_id, MessageStatus.DELIVERED)
                response = _response_from(body, msg_id)
                self._notifier.submit(self.hooks.message_sent, stored, response, self)
            else:
                error = str(body.get("error") or f"refused with status {reply.status_code}")
                self._set_status(msg_id, MessageStatus.FAILED, error)
        if pending is not None:
            pending.reply = reply
            pending.event.set()

    def _set_status(self, msg_id: str, status: MessageStatus, error: str | None = None) -> None:
        self.store.set_status(msg_id, status, error=error)
        self._notifier.submit(self.hooks.message_status_changed, msg_id, status, error, self)

    # ------------------------------------------------------------------ receiving

    def _reject(
        self, request: IncomingRequest, code: int, reason: str, msg_id: str | None
    ) -> Reply:
        log.info("refused a message from %s: %s", request.sender, reason)
        self.hooks.message_rejected(
            request.sender, reason, request.body[: self.settings.max_request_bytes], self
        )
        return Reply(
            code, json.dumps({"status": "rejected", "message_id": msg_id, "error": reason}).encode()
        )

    def _on_request(self, request: IncomingRequest) -> Reply:
        """An authenticated request arrived (transport's serving thread)."""
        try:
            envelope = self.hooks.decode_body(request, self) or Envelope.model_validate_json(
                request.body
            )
        except HookDecisionError as exc:
            return self._reject(request, 400, f"could not decode: {exc}", None)
        except (ValidationError, ValueError) as exc:
            return self._reject(request, 400, f"malformed message: {describe_error(exc)}", None)
        msg_id = envelope.msg_id
        if envelope.v > PROTOCOL_VERSION:
            return self._reject(request, 400, f"unsupported envelope version {envelope.v}", msg_id)
        if envelope.sender != request.sender:
            return self._reject(
                request,
                403,
                f"sender mismatch: message from {request.sender} "
                f"claims to be from {envelope.sender}",
                msg_id,
            )
        if envelope.recipient != self.email:
            return self._reject(
                request, 400, f"addressed to {envelope.recipient}, not {self.email}", msg_id
            )
        try:
            size = len(envelope.content.encode("utf-8"))
        except UnicodeEncodeError:
            return self._reject(request, 400, "content is not valid Unicode text", msg_id)
        if size > self.settings.max_content_bytes:
            return self._reject(
                request,
                413,
                f"content is {size} bytes, over the {self.settings.max_content_bytes}-byte limit",
                msg_id,
            )
        if _json_size(envelope.metadata) > self.settings.max_metadata_bytes:
            return self._reject(request, 413, "metadata over the size limit", msg_id)
        message = envelope.to_message(status=MessageStatus.RECEIVED)
        try:
            refusal = self.hooks.accept_message(message, request.sender, self)
        except HookDecisionError as exc:
            refusal = str(exc)
        if refusal:
            return self._reject(request, 403, f"refused: {refusal}", msg_id)
        try:
            inserted = self.store.add(
                message,
                direction=Direction.INCOMING,
                peer=request.sender,
                status=MessageStatus.RECEIVED,
            )
            if not inserted:
                existing = self.store.get(msg_id)
                if existing is None or existing.sender != request.sender:
                    return self._reject(
                        request, 409, "msg_id already used by another message", msg_id
                    )
        except StorageError as exc:
            log.error("could not store a message from %s: %s", request.sender, exc)
            return Reply(
                503,
                json.dumps(
                    {
                        "status": "error",
                        "message_id": msg_id,
                        "error": "receiver could not store the message",
                    }
                ).encode(),
            )
        if inserted:
            self._notifier.submit(self._announce, message)
        response = ChatResponse(status=MessageStatus.DELIVERED.value, message_id=msg_id)
        return Reply(200, response.model_dump_json().encode())

    def _announce(self, message: ChatMessage) -> None:
        """Tell listeners and plugins about a new message, then let bots answer.

        Runs on the listener thread.
        """
        self.hooks.message_received(message, self)
        if is_auto_reply(message) or self._closed:
            return  # bots never answer automatic replies: no bot-to-bot loops
        for plugin, answer in self.hooks.reply_to(message, self):
            if isinstance(answer, str):
                content, extra = answer, {}
            elif isinstance(answer, dict) and isinstance(answer.get("content"), str):
                content, extra = answer["content"], dict(answer.get("metadata") or {})
            else:
                self._record_failure(
                    PluginFailure(plugin, "chat_reply_to", f"unusable answer {answer!r}")
                )
                continue
            extra.update({AUTO_REPLY_KEY: True, "syft_chat.bot": plugin})
            try:
                self.send_message(message.sender, content, reply_to=message.msg_id, metadata=extra)
            except SyftChatError as exc:
                log.warning("bot %s could not answer %s: %s", plugin, message.msg_id, exc)
                self._record_failure(PluginFailure(plugin, "chat_reply_to", str(exc)))

    # ------------------------------------------------------------------ reading

    def get_chat_history(
        self,
        with_user: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
    ) -> list[ChatMessage]:
        """Messages from the local database, newest ``limit`` returned oldest first.

        :param with_user: only the conversation with this datasite, both directions.
        :param limit: at most this many (the newest).
        :param since: only messages at or after this time (naive = local time).
        :param thread_id: only this thread.
        """
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidMessageError(f"limit must be a non-negative int, got {limit!r}")
        if since is not None and not isinstance(since, datetime):
            raise InvalidMessageError(f"since must be a datetime, got {type(since).__name__}")
        if with_user is not None and not isinstance(with_user, str):
            raise InvalidMessageError("with_user must be an email string")
        if limit == 0:
            return []
        return self.store.history(
            peer=with_user.strip() if with_user else None,
            limit=limit,
            since=to_utc(since) if since is not None else None,
            thread_id=thread_id,
        )

    def get_message(self, msg_id: str) -> ChatMessage | None:
        """One stored message (sent or received) by id, with its status."""
        self._check_open()
        return self.store.get(msg_id)

    def list_available_users(self) -> list[str]:
        """Datasites that serve syft-chat (this app), excluding yourself, sorted."""
        self._check_open()
        users = self.hooks.discover_users(self)
        users.discard(self.email)
        return sorted(users)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop serving, run queued notifications, close the database. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self.hooks.client_closing(self)
            self._closed = True
        try:
            self.transport.stop()
        finally:
            with self._pending_lock:
                for pending in self._pending.values():
                    pending.event.set()
            self._notifier.close()
            self.store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SyftChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<SyftChatClient {self.email} app={self.app_name!r} db={str(self.db_path)!r} {state}>"
        )


def _parse_json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _response_from(body: dict[str, Any], msg_id: str) -> ChatResponse:
    try:
        response = ChatResponse.model_validate(body)
    except ValidationError:
        return ChatResponse(status=MessageStatus.DELIVERED.value, message_id=msg_id)
    if response.message_id != msg_id:
        return ChatResponse(status=response.status, message_id=msg_id, timestamp=response.timestamp)
    return response


def client(
    config_path: str | os.PathLike[str] | None = None,
    db_path: str | os.PathLike[str] = "chat_messages.db",
    **kwargs: Any,
) -> SyftChatClient:
    """Create a started :class:`SyftChatClient` (the seed's factory).

    Extra keyword arguments (``app_name``, ``settings``, ``plugins``...) are
    passed to :class:`SyftChatClient`.
    """
    return SyftChatClient(config_path, db_path=db_path, **kwargs)
