"""Announcing: what listeners, plugins and bots hear, off the delivery path.

:class:`Notifier` is the client's notification thread (status changes, reads: in
order); :class:`Announcer` tells listeners, plugins and bots about new incoming
messages and changes, and records that it did.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syft_chat.errors import StorageError, SyftChatError
from syft_chat.messaging.targets import find_target
from syft_chat.models import AUTO_REPLY_KEY, ChatMessage, claims_auto_reply, is_auto_reply

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = ["Announcer", "Notifier"]

log = logging.getLogger("syft_chat.messaging.announcing")

_STOP = object()


class Notifier:
    """One daemon thread that runs submitted calls in order.

    Calls are wrapped by the submitter's error policy (``dispatch.Hooks``);
    anything that still escapes is logged here and never stops the thread.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if not self._closed:
            self._queue.put((fn, args))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:  # pragma: no cover - dispatch already isolates plugins
                log.exception("notification failed")

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued (up to ``timeout`` seconds), then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class Announcer:
    """What listeners, plugins and bots hear of a stored incoming message.

    Runs on the ordering pool's threads (see :mod:`syft_chat.messaging.ordering`), once
    per stored message, in its sender's order. The recording that it was announced is
    retried here if the store refuses it (a locked database), so a message is never
    announced twice by one process; only a crash between announcing and recording can
    repeat it after a restart.
    """

    def __init__(
        self, core: MessagingCore, reply: Callable[[ChatMessage, str, dict[str, Any]], None]
    ) -> None:
        self._core = core
        self._reply = reply
        #: by ``(sender, msg_id)``: message ids are per sender
        self._unrecorded: dict[tuple[str, str], ChatMessage] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None  # the pending retry, if any

    def announce(self, message: ChatMessage) -> None:
        """Tell listeners and plugins about a new message, then let bots answer.

        Each message once per process (a follower that took over may find one it heard
        unrecorded). The serving process first tells its followers (its journal) and
        records that it announced; a follower only tells its own listeners and plugins:
        bots answer in the serving process, once.
        """
        core = self._core
        serving = core.role == "serving"
        if core.heard.first_time(message.msg_id, message.sender):
            journal = core.journal
            if serving and journal is not None:
                journal.write(message.msg_id, message.sender)
            rule = core.kinds.get(message.kind)
            how = rule.announce if rule is not None else None
            if how == "change" and rule is not None:
                self._announce_change(message, rule.describe(message))
            elif how == "message":
                core.hooks.message_received(message, core.client)
                if serving and not self._automatic(message) and not core.closed:
                    self._bots(message)  # bots never answer automatic replies: no loops
        if serving:
            self.record(message)

    def _automatic(self, message: ChatMessage) -> bool:
        """Whether bots must stay quiet: ``message`` is automatic by our judgement, answers
        one of our own bots' replies, or its sender claims it is automatic.

        A claim can only keep bots from answering the claimant (harmless); it never earns
        the bot label. Answering one of our own automatic replies is recognised from our
        own store, so two bots stop after one exchange even if a peer strips its label.
        """
        if is_auto_reply(message) or claims_auto_reply(message):
            return True
        if not message.reply_to:
            return False
        try:
            # one of our own messages (ids are per sender): did it answer our bot?
            parent = self._core.store.get(message.reply_to, sender=self._core.email)
        except StorageError:
            return True  # unsure: stay quiet rather than risk a loop
        return (
            parent is not None
            and parent.message.sender == self._core.email
            and is_auto_reply(parent.message)
        )

    def _bots(self, message: ChatMessage) -> None:
        core = self._core
        for plugin, answer in core.hooks.reply_to(message, core.client):
            if isinstance(answer, str):
                content, extra = answer, {}
            elif isinstance(answer, dict) and isinstance(answer.get("content"), str):
                content, extra = answer["content"], dict(answer.get("metadata") or {})
            else:
                core.record_plugin_failure(plugin, "chat_reply_to", f"unusable answer {answer!r}")
                continue
            extra.update({AUTO_REPLY_KEY: True, "syft_chat.bot": plugin})
            try:
                self._reply(message, content, extra)
            except SyftChatError as exc:
                log.warning("bot %s could not answer %s: %s", plugin, message.msg_id, exc)
                core.record_plugin_failure(plugin, "chat_reply_to", str(exc))

    def _announce_change(self, action: ChatMessage, change: str) -> None:
        store = self._core.store
        stored = store.get(action.msg_id, sender=action.sender)
        target = find_target(store, action)
        if stored is None or stored.message.error or target is None:
            return  # refused, changed nothing, or its message never arrived
        shown = self._core.with_reactions(target.message)
        self._core.hooks.message_changed(shown, change, action.sender, self._core.client)

    def record(self, message: ChatMessage) -> None:
        """Record that ``message`` was announced (and any whose recording failed before)."""
        with self._lock:
            self._unrecorded[(message.sender, message.msg_id)] = message
        self._record_pending()

    def _record_pending(self) -> None:
        with self._lock:
            pending = list(self._unrecorded)
        for sender, msg_id in pending:
            try:
                self._core.store.update(msg_id, {"notified": True}, sender=sender)
            except StorageError as exc:
                log.warning("could not record that %s was announced: %s (will retry)", msg_id, exc)
                self._retry_later()
                return
            with self._lock:
                self._unrecorded.pop((sender, msg_id), None)

    def _retry_later(self) -> None:
        """One retry timer for everything unrecorded (not one per failed recording)."""
        with self._lock:
            if self._timer is not None or self._core.closed:
                return
            self._timer = threading.Timer(0.5, self._retry)
            self._timer.daemon = True
            self._timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._timer = None
        if not self._core.closed:
            self._record_pending()

    def flush(self) -> None:
        """At close: one last try at recording what is unrecorded."""
        with self._lock:
            pending = list(self._unrecorded)
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        for sender, msg_id in pending:
            try:
                self._core.store.update(msg_id, {"notified": True}, sender=sender)
            except StorageError:
                log.error("message %s was announced but that could not be recorded", msg_id)
