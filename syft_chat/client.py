"""The seed's API: :func:`client` and :class:`SyftChatClient`."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from syft_core import Client as SyftClient

from syft_chat.dispatch import Hooks
from syft_chat.display import ChatHistory
from syft_chat.errors import (
    ClientClosedError,
    ConfigError,
    DeliveryTimeoutError,
    InvalidMessageError,
    MessageRejectedError,
    PluginError,
    SyftChatError,
    UnknownRecipientError,
)
from syft_chat.features.actions import ClientActions, change_of
from syft_chat.features.contacts import ClientContacts
from syft_chat.features.groups import ClientGroups
from syft_chat.features.views import ClientViews
from syft_chat.hookspecs import hookimpl
from syft_chat.interfaces import BackendContext, MessageStore, Transport
from syft_chat.manager import PluginFailure, make_plugin_manager, register_plugin
from syft_chat.messaging.announcing import Notifier
from syft_chat.messaging.delivery import Incoming, Outgoing, _json_size
from syft_chat.models import (
    AUTO_REPLY_KEY,
    ChatMessage,
    ChatResponse,
    MessageStatus,
    is_auto_reply,
    to_utc,
)
from syft_chat.settings import ChatSettings

__all__ = ["SyftChatClient", "client"]

log = logging.getLogger("syft_chat")

MessageListener = Callable[[ChatMessage], Any]
StatusListener = Callable[[str, MessageStatus, "str | None"], Any]
_EMAIL = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+$")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class _ListenerPlugin:
    """``add_message_listener(fn)`` is a tiny plugin implementing ``chat_message_received``."""

    def __init__(self, fn: MessageListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_message_received(self, message: ChatMessage) -> None:
        self.fn(message)


class _StatusPlugin:
    """``add_status_listener(fn)``: a tiny plugin implementing ``chat_message_status_changed``."""

    def __init__(self, fn: StatusListener) -> None:
        self.fn = fn

    @hookimpl
    def chat_message_status_changed(
        self, msg_id: str, status: MessageStatus, error: str | None
    ) -> None:
        self.fn(msg_id, status, error)


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


class SyftChatClient(ClientActions, ClientContacts, ClientGroups, ClientViews):
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
        if not _EMAIL.match(self.email):
            raise ConfigError(f"the SyftBox config's email {self.email!r} is not a datasite email")
        self.db_path = Path(db_path).expanduser()
        self.plugin_failures: list[PluginFailure] = []
        self._failures_lock = threading.Lock()
        pm, failures = make_plugin_manager(load_entry_points=load_entry_points)
        self.plugin_failures.extend(failures)
        self._pm = pm
        self.hooks = Hooks(pm, self._record_failure)
        self._listeners: dict[int, _ListenerPlugin] = {}
        self._status_listeners: dict[int, _StatusPlugin] = {}
        self._change_listeners: dict[int, object] = {}
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
        self._notifier = Notifier(name=f"syft-chat-notify[{self.email}]")
        try:
            self.transport: Transport = self._make_backend(
                "transport", transport, self.hooks.register_transports(), context
            )
            self._closed = False
            self._policy = self.store.contact_policy()
            update_access = getattr(self.transport, "update_access", None)
            if update_access is not None:
                update_access(self._policy)  # permission files reflect the policy from the start
            self._outgoing = Outgoing(self)
            self._incoming = Incoming(self)
            self._incoming.resume()  # announce what a crash left unannounced
            self.transport.start(
                self._incoming.on_request, self._outgoing.on_reply, self._incoming.reject
            )
            self._outgoing.resume()  # collect answers that came meanwhile; resend the rest
        except BaseException:
            self._shutdown()
            raise
        self._started = True
        self.hooks.client_started(self)
        # messages that waited for us are announced once a listener is added,
        # or after a moment (the seed adds its listener right after client())
        self._incoming.conversations.start(after=self.settings.startup_hold)

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
            self._incoming.conversations.start()

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
        self._incoming.conversations.start()

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
        if not all(isinstance(key, str) for key in metadata):
            raise InvalidMessageError("metadata keys must be strings")
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
        """Send ``content`` to ``to_email``; return where the message is.

        The message is stored (status ``queued``) before anything is written
        for the transport, then delivered; ``send_message`` waits up to
        ``timeout`` seconds (default ``settings.send_timeout``; ``0`` returns
        at once) for the recipient's confirmation. The returned
        :class:`ChatResponse` has ``status`` ``"delivered"`` (the recipient
        stored it) or ``"sent"`` (not confirmed yet: an offline recipient
        gets it later, across restarts of either side, with the same
        ``msg_id``). A reply inherits the thread of the message it answers; a
        message starting a conversation starts a thread named by its own
        ``msg_id``.

        :raises InvalidMessageError: bad arguments (nothing is stored).
        :raises UnknownRecipientError: the recipient does not serve chat here.
        :raises MessageRejectedError: the recipient refused it (status ``failed``).
        :raises DeliveryError: a plugin refused to encode it (``failed``), or the
            request could not be written (it stays queued and is retried).
        """
        self._check_open()
        recipient = self._validate_recipient(to_email)
        content = self._validate_content(content)
        meta = self._validate_metadata(metadata)
        thread_id, reply_to = self._resolve_thread(thread_id, reply_to)
        wait = self.settings.send_timeout if timeout is None else timeout
        if (
            not isinstance(wait, (int, float))
            or isinstance(wait, bool)
            or not math.isfinite(wait)
            or wait < 0
        ):
            raise InvalidMessageError(f"timeout must be a number of seconds >= 0, got {timeout!r}")

        draft = ChatMessage(sender=self.email, content=content, metadata=meta, reply_to=reply_to)
        threaded = {"thread_id": thread_id or draft.msg_id, "recipient": recipient}
        message = self._outgoing.queue(draft.model_copy(update=threaded), recipient)
        self._outgoing.attempt(message.msg_id)
        stored = (
            self._outgoing.wait(message.msg_id, float(wait))
            if wait
            else self.get_message(message.msg_id)
        )
        return self._outcome(message.msg_id, recipient, stored)

    def _outcome(self, msg_id: str, peer: str, stored: ChatMessage | None) -> ChatResponse:
        if stored is not None and stored.status == MessageStatus.FAILED:
            reason = stored.error or "refused"
            raise MessageRejectedError(
                f"{peer} refused message {msg_id}: {reason}", msg_id=msg_id, reason=reason
            )
        status = stored.status.value if stored is not None and stored.status else "sent"
        return ChatResponse(status=status, message_id=msg_id)

    def wait_for_delivery(self, msg_id: str, timeout: float | None = None) -> ChatResponse:
        """Wait until an outgoing message is confirmed (or refused), up to ``timeout`` s.

        Returns a :class:`ChatResponse` whose ``status`` says where it is;
        raises :class:`MessageRejectedError` if it was refused and
        :class:`DeliveryTimeoutError` if it is still unconfirmed at the end.
        """
        self._check_open()
        message = self.store.get(msg_id)
        if message is None or message.sender != self.email:
            raise InvalidMessageError(f"no outgoing message {msg_id!r}")
        wait = self.settings.send_timeout if timeout is None else float(timeout)
        response = self._outcome(msg_id, message.recipient or "", self._outgoing.wait(msg_id, wait))
        if response.status in (MessageStatus.QUEUED.value, MessageStatus.SENT.value):
            raise DeliveryTimeoutError(
                f"message {msg_id} is not confirmed after {wait:g}s (status {response.status}); "
                "it stays in the outbox and is retried",
                msg_id=msg_id,
            )
        return response

    def _set_status(self, msg_id: str, status: MessageStatus, error: str | None = None) -> bool:
        """Record a status change; announce it if something changed."""
        changed = self.store.set_status(msg_id, status, error=error)
        if changed:
            self._notify_status(msg_id, status, error)
        return changed

    def _notify_status(self, msg_id: str, status: MessageStatus, error: str | None) -> None:
        self._notify(self.hooks.message_status_changed, msg_id, status, error, self)

    def _notify(self, fn: Callable[..., Any], *args: Any) -> None:
        self._notifier.submit(fn, *args)

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener(msg_id, status, error)`` after each status change of a sent message.

        Runs on the client's notification thread, in order; use it to show ticks.
        """
        if not callable(listener):
            raise InvalidMessageError(f"listener must be callable, got {type(listener).__name__}")
        if id(listener) in self._status_listeners:
            return
        plugin = _StatusPlugin(listener)
        self._status_listeners[id(listener)] = plugin
        self._pm.register(plugin, name=f"status-listener:{id(listener):x}")

    def remove_status_listener(self, listener: StatusListener) -> None:
        """Stop calling a status listener. Unknown listeners are ignored."""
        plugin = self._status_listeners.pop(id(listener), None)
        if plugin is not None:
            self._pm.unregister(plugin)

    def mark_read(self, msg_id: str) -> bool:
        """Mark an incoming message read (locally); plugins hear ``chat_message_read``.

        Returns whether it was unread. A read-receipt plugin can send the
        receipt from that hook; the sender's side records it with
        :meth:`record_read`.
        """
        self._check_open()
        message = self.store.get(msg_id)
        if message is None or message.sender == self.email:
            raise InvalidMessageError(f"no incoming message {msg_id!r}")
        if not self.store.mark_read(msg_id):
            return False
        self._notify(self.hooks.message_read, message, self)
        return True

    def record_read(self, msg_id: str) -> bool:
        """Record that the recipient read a delivered outgoing message (status ``read``)."""
        self._check_open()
        message = self.store.get(msg_id)
        if message is None or message.sender != self.email:
            raise InvalidMessageError(f"no outgoing message {msg_id!r}")
        return self._set_status(msg_id, MessageStatus.READ)

    def failed_messages(self, limit: int = 100) -> list[dict[str, Any]]:
        """Incoming requests that were refused (newest first): sender, reason, raw body."""
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidMessageError(f"limit must be a non-negative int, got {limit!r}")
        return self.store.failed_messages(limit)

    def pending_messages(self) -> list[ChatMessage]:
        """Outgoing messages not yet confirmed (the outbox), oldest first."""
        self._check_open()
        return [message for message, _, _ in self.store.outbox_requests()]

    def _announce(self, message: ChatMessage) -> None:
        """Tell listeners and plugins about a new message, then let bots answer.

        Runs on the listener thread. An edit, deletion or reaction is
        announced as a change of the message it names (``chat_message_changed``).
        """
        if message.kind != "message":
            self._announce_change(message)
            return
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
                self.send_message(
                    message.sender, content, reply_to=message.msg_id, metadata=extra, timeout=0
                )
            except SyftChatError as exc:
                log.warning("bot %s could not answer %s: %s", plugin, message.msg_id, exc)
                self._record_failure(PluginFailure(plugin, "chat_reply_to", str(exc)))

    def _announce_change(self, action: ChatMessage) -> None:
        stored = self.store.get(action.msg_id)
        target = self.store.get(action.target or "")
        if stored is None or stored.error or target is None:
            return  # refused, or its message never arrived
        target = target.model_copy(
            update={"reactions": self.store.reactions([target.msg_id]).get(target.msg_id, {})}
        )
        self.hooks.message_changed(target, change_of(action), action.sender, self)

    # ------------------------------------------------------------------ reading

    def get_chat_history(
        self,
        with_user: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
        *,
        group_id: str | None = None,
    ) -> list[ChatMessage]:
        """Messages from the local database, newest ``limit`` returned oldest first.

        :param with_user: only the conversation with this datasite, both directions.
        :param limit: at most this many (the newest).
        :param since: only messages at or after this time (naive = local time).
        :param thread_id: only this thread.
        :param group_id: only this group's conversation (``with_user`` is one-to-one).
        """
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidMessageError(f"limit must be a non-negative int, got {limit!r}")
        if since is not None and not isinstance(since, datetime):
            raise InvalidMessageError(f"since must be a datetime, got {type(since).__name__}")
        if with_user is not None and (not isinstance(with_user, str) or not with_user.strip()):
            raise InvalidMessageError(f"with_user must be a datasite email, got {with_user!r}")
        if thread_id is not None and not isinstance(thread_id, str):
            raise InvalidMessageError("thread_id must be a string")
        try:
            since = to_utc(since) if since is not None else None
        except (ValueError, OverflowError) as exc:
            raise InvalidMessageError(f"since is out of range: {exc}") from exc
        if limit == 0:
            return ChatHistory([], me=self.email)
        messages = self.store.history(
            peer=with_user.strip() if with_user else None,
            limit=limit,
            since=since,
            thread_id=thread_id,
            group_id=group_id,
        )
        return ChatHistory(messages, me=self.email)  # a list that renders in Jupyter

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
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        try:
            transport = getattr(self, "transport", None)
            if transport is not None:
                transport.stop()
        finally:
            for part in (getattr(self, "_outgoing", None), getattr(self, "_incoming", None)):
                if part is not None:
                    part.close()
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
