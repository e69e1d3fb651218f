"""The public face of the messaging core: what the client and its features build on.

:class:`MessagingCore` owns the outgoing and incoming paths, the announcer and the
registry of message kinds for one client. Features (edits, groups, contacts, views)
receive it and use only the methods below; none of them touches the client.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from syft_chat.dispatch import HookClient, Hooks
from syft_chat.errors import (
    ClientClosedError,
    InvalidMessageError,
    MessageRejectedError,
    StorageError,
)
from syft_chat.interfaces import FailedRequest, MessageStore, Transport
from syft_chat.manager import PluginFailure
from syft_chat.messaging.announcing import Announcer, Notifier
from syft_chat.messaging.incoming import Incoming
from syft_chat.messaging.kinds import Kinds
from syft_chat.messaging.outgoing import Outgoing
from syft_chat.messaging.status import may_become
from syft_chat.models import (
    ChatMessage,
    ChatResponse,
    MessageKind,
    MessageStatus,
    json_size,
    utcnow,
)
from syft_chat.settings import ChatSettings

__all__ = ["MessagingCore"]

log = logging.getLogger("syft_chat")


class MessagingCore:
    """Sending, receiving and announcing for one datasite, over one store and transport.

    :param client: the client handed to hooks as their ``client`` argument.
    :param reply: how a bot's answer is sent: ``reply(message, content, metadata)``.
    """

    def __init__(
        self,
        *,
        client: HookClient,
        email: str,
        settings: ChatSettings,
        store: MessageStore,
        transport: Transport,
        hooks: Hooks,
        record_failure: Callable[[PluginFailure], None],
        reply: Callable[[ChatMessage, str, dict[str, Any]], None],
    ) -> None:
        self.client = client
        self.email = email
        self.settings = settings
        self.store = store
        self.transport = transport
        self.hooks = hooks
        self._record_failure = record_failure
        self.kinds = Kinds()
        self.closed = False
        self._notifier = Notifier(name=f"syft-chat-notify[{email}]")
        self.announcer = Announcer(self, reply)
        self.outgoing = Outgoing(self)
        self.incoming = Incoming(self)
        self._close_lock = threading.Lock()
        self._deferred = threading.local()  # per thread: hook calls waiting for a commit

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, hold: float) -> None:
        """Serve: announce what a crash left unannounced, start the transport, collect
        answers that came meanwhile and resend the rest; announcing starts after
        ``hold`` seconds (or when a listener is added)."""
        self.incoming.resume()
        awaiting = self.outgoing.resume()
        self.transport.start(
            self.incoming.on_request, self.outgoing.on_reply, self._on_reject, awaiting=awaiting
        )
        self.incoming.ordering.start(after=hold)

    def start_announcing(self) -> None:
        """A listener or plugin is there: stop holding announcements back."""
        self.incoming.ordering.start()

    def close(self) -> None:
        """Stop the paths and run queued notifications (the store and transport are the
        caller's to close)."""
        self.closed = True
        self.outgoing.close()
        self.incoming.close()
        self.announcer.flush()
        self._notifier.close()

    def check_open(self) -> None:
        if self.closed:
            raise ClientClosedError("this SyftChatClient is closed")

    # ------------------------------------------------------------------ validation

    def validate_content(self, content: Any) -> str:
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

    def validate_metadata(self, metadata: Any) -> dict[str, Any]:
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            raise InvalidMessageError(f"metadata must be a dict, got {type(metadata).__name__}")
        if not all(isinstance(key, str) for key in metadata):
            raise InvalidMessageError("metadata keys must be strings")
        try:
            size = json_size(metadata)
        except (TypeError, ValueError) as exc:
            raise InvalidMessageError(f"metadata must be JSON-serialisable: {exc}") from exc
        if size > self.settings.max_metadata_bytes:
            raise InvalidMessageError(
                f"metadata is {size} bytes of JSON; the limit is {self.settings.max_metadata_bytes}"
            )
        return dict(metadata)

    def validate_timeout(self, timeout: Any) -> float:
        wait = self.settings.send_timeout if timeout is None else timeout
        if (
            not isinstance(wait, (int, float))
            or isinstance(wait, bool)
            or not math.isfinite(wait)
            or wait < 0
        ):
            raise InvalidMessageError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        return float(wait)

    def resolve_thread(
        self, thread_id: str | None, reply_to: str | None
    ) -> tuple[str | None, str | None]:
        """The thread of a new message: a reply inherits its parent's."""
        for name, value in (("thread_id", thread_id), ("reply_to", reply_to)):
            if value is not None and (not isinstance(value, str) or not value or len(value) > 128):
                raise InvalidMessageError(f"{name} must be a non-empty str of at most 128 chars")
        if reply_to is None:
            return thread_id, None
        parent = self.get(reply_to)
        if parent is None:
            raise InvalidMessageError(f"reply_to names no known message: {reply_to!r}")
        return thread_id or parent.thread_id or parent.msg_id, reply_to

    # ------------------------------------------------------------------ sending

    def get(self, msg_id: str) -> ChatMessage | None:
        """A stored message users may see (a group message's per-member copies are not)."""
        found = self.store.get(msg_id)
        if found is None or found.message.kind is MessageKind.COPY:
            return None
        return found.message

    def queue(self, message: ChatMessage, peer: str) -> ChatMessage:
        """Store a new outgoing message (``queued``), numbered next to ``peer``."""
        return self.outgoing.queue(message, peer)

    def attempt(self, msg_id: str) -> None:
        """Send a request for a queued message now (raises ``DeliveryError``)."""
        self.outgoing.attempt(msg_id)

    def attempt_quietly(self, msg_id: str) -> None:
        """Like :meth:`attempt`; a failure is logged and left to the retry schedule."""
        try:
            self.outgoing.attempt(msg_id)
        except Exception as exc:
            log.warning("first attempt at %s failed: %s", msg_id, exc)

    def deliver(self, message: ChatMessage, peer: str, timeout: float | None) -> ChatResponse:
        """Send a queued message and wait up to ``timeout`` s for its confirmation."""
        wait = self.validate_timeout(timeout)
        self.outgoing.attempt(message.msg_id)
        # handed to the transport: from here on it is never an error (only a refusal is)
        if wait:
            stored = self.outgoing.wait(message.msg_id, wait)
        else:
            try:
                stored = self.get(message.msg_id)
            except StorageError as exc:
                log.warning("could not read message %s back: %s", message.msg_id, exc)
                stored = None
        if stored is not None and stored.status is MessageStatus.QUEUED:
            stored = stored.model_copy(update={"status": MessageStatus.SENT})  # not recorded yet
        return self.outcome(message.msg_id, peer, stored)

    def wait(self, msg_id: str, timeout: float) -> ChatMessage | None:
        return self.outgoing.wait(msg_id, timeout)

    @staticmethod
    def outcome(msg_id: str, peer: str, stored: ChatMessage | None) -> ChatResponse:
        """What a send returns: its status, or ``MessageRejectedError`` if refused."""
        if stored is not None and stored.status == MessageStatus.FAILED:
            reason = stored.error or "refused"
            raise MessageRejectedError(
                f"{peer} refused message {msg_id}: {reason}", msg_id=msg_id, reason=reason
            )
        status = stored.status.value if stored is not None and stored.status else "sent"
        return ChatResponse(status=status, message_id=msg_id)

    # ------------------------------------------------------------------ status and notifications

    def set_status(
        self, msg_id: str, status: MessageStatus, error: str | None = None, *, announce: bool = True
    ) -> bool:
        """Record a status (never backwards, see :mod:`~syft_chat.messaging.status`); hooks
        hear it if it changed (unless ``announce`` is false)."""
        changed = self.store.update(
            msg_id, {"status": status, "error": error}, if_status=may_become(status)
        )
        if changed and announce:
            self.notify_status(msg_id, status, error)
        return changed

    def notify_status(self, msg_id: str, status: MessageStatus, error: str | None) -> None:
        self._notifier.submit(self.hooks.message_status_changed, msg_id, status, error, self.client)

    def notify_sent(self, message: ChatMessage, response: ChatResponse) -> None:
        self._notifier.submit(self.hooks.message_sent, message, response, self.client)

    def notify_read(self, message: ChatMessage) -> None:
        self._notifier.submit(self.hooks.message_read, message, self.client)

    def with_reactions(self, message: ChatMessage) -> ChatMessage:
        found: dict[str, list[str]] = {}
        for r in self.store.reactions([message.msg_id]):
            found.setdefault(r.emoji, []).append(r.user)
        return message.model_copy(update={"reactions": found}) if found else message

    def record_plugin_failure(self, plugin: str, hook: str, error: str) -> None:
        self._record_failure(PluginFailure(plugin, hook, error))

    # ------------------------------------------------------------------ refusals

    def _on_reject(self, sender: str, reason: str, raw: bytes) -> None:
        self.record_refusal(sender, reason, raw, None)

    def record_refusal(self, sender: str, reason: str, raw: bytes, msg_id: str | None) -> None:
        """Keep a refused request in ``failed_messages`` and tell plugins."""
        log.info("refused a message from %s: %s", sender, reason)
        failure = FailedRequest(
            sender, reason, raw[: self.settings.failed_raw_bytes], msg_id, utcnow()
        )
        try:
            self.store.record_failed(failure, keep=self.settings.failed_messages_kept)
        except StorageError as exc:
            log.error("could not record a refused message from %s: %s", sender, exc)
        self.after_commit(self.hooks.message_rejected, sender, reason, raw, self.client)

    @contextmanager
    def deferring(self) -> Iterator[list[tuple[Callable[..., Any], tuple[Any, ...]]]]:
        """Collect this thread's :meth:`after_commit` calls (the caller runs them once its
        transaction is committed, and drops them if it is not)."""
        calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._deferred.calls = calls
        try:
            yield calls
        finally:
            self._deferred.calls = None

    def after_commit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` now, or, inside :meth:`deferring`, once the change is durable
        (a notification must not tell of a change a rollback undid)."""
        calls = getattr(self._deferred, "calls", None)
        if calls is None:
            fn(*args)
        else:
            calls.append((fn, args))

    def failed_messages(self, limit: int) -> list[dict[str, Any]]:
        return [
            {
                "received_at": f.received_at,
                "sender": f.sender,
                "msg_id": f.msg_id,
                "reason": f.reason,
                "raw": f.raw,
            }
            for f in self.store.failed_messages(limit)
        ]
