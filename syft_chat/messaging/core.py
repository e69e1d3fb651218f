"""The public face of the messaging core: what the client and its features build on.

:class:`MessagingCore` owns the outgoing and incoming paths, the announcer and the
registry of message kinds for one client. Features (edits, groups, contacts, views)
receive it and use only the methods below; none of them touches the client.
"""

from __future__ import annotations

import errno
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from syft_chat.dispatch import HookClient, Hooks
from syft_chat.errors import (
    AlreadyServedError,
    ClientClosedError,
    InvalidMessageError,
    MessageRejectedError,
    StorageError,
    SyftChatError,
)
from syft_chat.interfaces import (
    FailedRequest,
    MessageQuery,
    MessageStore,
    Transport,
    with_reactions,
)
from syft_chat.manager import PluginFailure
from syft_chat.messaging.announcing import Announcer, Notifier
from syft_chat.messaging.incoming import Incoming
from syft_chat.messaging.kinds import Kinds
from syft_chat.messaging.outgoing import Outgoing
from syft_chat.messaging.serving import (
    FOLLOWING,
    SERVING,
    Follower,
    Heard,
    Journal,
    ServingLock,
    Site,
    journal_path,
    make_note,
)
from syft_chat.messaging.status import may_become
from syft_chat.models import (
    Attachment,
    ChatMessage,
    ChatResponse,
    Direction,
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
        site: Site | None = None,
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
        # serving or following (see :mod:`syft_chat.messaging.serving`)
        self._site = site
        self.role = SERVING
        self.heard = Heard()  # what this process announced: each message once
        self.journal: Journal | None = None
        self._lock: ServingLock | None = None
        self._follower: Follower | None = None
        self._role_lock = threading.Lock()
        self._stopping = False
        self._resuming: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, hold: float) -> None:
        """Serve, or follow the process that serves this datasite (see
        :mod:`~syft_chat.messaging.serving`); announcing starts after ``hold`` seconds
        (or when a listener is added).

        :raises AlreadyServedError: another process serves with a store this one cannot
            share.
        """
        site = self._site
        if site is None or getattr(self.transport, "follow", None) is None:
            self._serve()  # a transport that cannot follow: no lock (e.g. in-memory tests)
        else:
            lock = ServingLock(site.folder, site.email)
            try:
                acquired = lock.try_acquire()
                if acquired:
                    self._lock = lock
                    self._serve_locked()
            except OSError as exc:  # the lock, its note or the journal could not be written
                full = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
                raise SyftChatError(
                    f"could not start serving {site.email} in {site.folder}: {exc}{full}"
                ) from exc
            if not acquired:
                self._follow(lock, site)
        self.incoming.ordering.start(after=hold)

    def _serve(self) -> None:
        """Start the transport; announce what a crash left unannounced, collect answers
        that came meanwhile and resend the rest.

        With a transport that can collect answers later (``collect_replies``, as
        syft-rpc's), the backlogs (unannounced messages, unconfirmed ones, requests that
        waited) are taken up on a background thread, so that start-up never waits for
        them: announcements still come in each sender's order (``seq``: a newer message
        waits for the older ones the thread submits) and once (``Heard``); an answer that
        comes before its message is tracked again is left for the retry that follows.
        """
        self.incoming.forget_strays()
        collect = getattr(self.transport, "collect_replies", None)
        if collect is None:  # a transport that takes the awaiting peers at start only
            self.incoming.resume()
            awaiting = self.outgoing.resume()
            self.transport.start(
                self.incoming.on_request, self.outgoing.on_reply, self._on_reject, awaiting=awaiting
            )
            return
        self.outgoing.resumed.clear()  # (wait() waits for it before it says "not tracked")
        self.transport.start(self.incoming.on_request, self.outgoing.on_reply, self._on_reject)
        self._resuming = threading.Thread(
            target=self._resume,
            args=(collect,),
            name=f"syft-chat-resume[{self.email}]",
            daemon=True,
        )
        self._resuming.start()

    def _resume(self, collect: Callable[[list[str]], None]) -> None:
        """Resume thread: the backlogs a restart found (see :meth:`_serve`)."""
        try:
            try:
                self.incoming.resume()
            finally:  # whatever happened there, the outbox is tracked again
                awaiting = self.outgoing.resume()
            if awaiting and not self.closed:
                collect(awaiting)
        except Exception as exc:
            self.outgoing.resumed.set()
            if self.closed:  # closed meanwhile: the next start resumes from the store
                log.debug("resuming stopped by close: %s", exc)
            else:
                log.exception("could not resume the backlog of %s", self.email)

    def _serve_locked(self) -> None:
        """Holding the lock: open a journal for followers, say so, then serve."""
        site, lock = self._site, self._lock
        assert site is not None and lock is not None
        path = journal_path(site.folder, site.email)
        self.journal = Journal(path)
        lock.clean_journals(keep=path)
        lock.publish(
            make_note(
                email=site.email,
                app=site.app,
                store=site.store,
                db_path=site.db_path,
                journal=path,
            )
        )
        self.role = SERVING
        self._serve()

    def _follow(self, lock: ServingLock, site: Site) -> None:
        note = lock.wait_for_note()
        if note is None:
            raise AlreadyServedError(
                f"{site.email} (app {site.app!r}) is served by another process that holds "
                f"{lock.path} but does not say which database it uses ({lock.note_path}); "
                "stop it first"
            )
        if not site.can_follow(note):
            raise site.refused(note)
        follow = self.transport.follow  # type: ignore[attr-defined]
        follow(self.outgoing.on_reply, self._on_reject)
        self.role = FOLLOWING
        self._lock = lock
        self._follower = Follower(
            lock,
            note,
            hear=self._hear,
            take_over=self._take_over,
            compatible=site.can_follow,
            name=f"syft-chat-follower[{self.email}]",
        )
        self._follower.start()
        log.info(
            "%s is served by process %s (database %s): following it",
            self.email,
            note.get("pid"),
            note.get("db_path"),
        )

    def _hear(self, msg_id: str, sender: str) -> None:
        """Follower thread: the serving process announced ``sender``'s ``msg_id`` (the
        journal's ``peer`` is the message's sender); announce it here."""
        found = self.store.get(msg_id, sender=sender)
        if found is None or found.direction is not Direction.INCOMING:
            return  # gone meanwhile (a deletion erases every copy)
        self.incoming.ordering.submit_ready(found.peer or sender, found.message)

    def _take_over(self) -> None:
        """Follower thread: the serving process stopped and this one holds the lock."""
        with self._role_lock:
            if self._stopping or self.closed:
                return
            self._follower = None
            try:
                self._serve_locked()
            except Exception:
                log.exception("could not take over serving %s", self.email)
                return
        log.info("%s: the serving process stopped; this one serves now", self.email)

    def stop_following(self) -> None:
        """Before the transport stops: no more taking over."""
        with self._role_lock:
            self._stopping = True
            follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()

    def _release(self) -> None:
        journal, self.journal = self.journal, None
        if journal is not None:
            journal.close()
        if self._lock is not None:
            self._lock.release(journal.path if journal is not None else None)

    def start_announcing(self) -> None:
        """A listener or plugin is there: stop holding announcements back."""
        self.incoming.ordering.start()

    def close(self) -> None:
        """Stop the paths and run queued notifications (the store and transport are the
        caller's to close)."""
        self.closed = True
        self.stop_following()
        self.outgoing.close()
        self.incoming.close()
        self.announcer.flush()
        self._notifier.close()
        self._release()  # last: a follower taking over finds everything announced

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
        self, thread_id: str | None, reply_to: str | None, *, conversation: str
    ) -> tuple[str | None, str | None]:
        """The thread of a new message of ``conversation`` (a peer or ``group:<id>``): a
        reply inherits its parent's, which must be a message of the same conversation
        (message ids are per sender: one's own of that id first, else the earliest)."""
        for name, value in (("thread_id", thread_id), ("reply_to", reply_to)):
            if value is not None and (not isinstance(value, str) or not value or len(value) > 128):
                raise InvalidMessageError(f"{name} must be a non-empty str of at most 128 chars")
        if reply_to is None:
            return thread_id, None
        parent = self._parent(reply_to, conversation)
        if parent is None:
            if self.get(reply_to) is not None:  # a thread never spans conversations
                raise InvalidMessageError(
                    f"reply_to names a message of another conversation: {reply_to!r}"
                )
            raise InvalidMessageError(f"reply_to names no known message: {reply_to!r}")
        return thread_id or parent.thread_id or parent.msg_id, reply_to

    def _parent(self, msg_id: str, conversation: str) -> ChatMessage | None:
        query = MessageQuery(
            msg_ids=(msg_id,), conversation=conversation, kinds=frozenset({MessageKind.MESSAGE})
        )
        found = [r.message for r in self.store.find(query)]
        own = [m for m in found if m.sender == self.email]
        return (own or found)[0] if found else None

    # ------------------------------------------------------------------ sending

    def get(self, msg_id: str, *, sender: str | None = None) -> ChatMessage | None:
        """A stored message users may see (a group message's per-member copies are not):
        ``sender``'s, or without it one's own of that id, else the earliest stored."""
        found = self.store.get(msg_id, sender=sender)
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

    def send_later(self, msg_ids: Iterable[str]) -> None:
        """Send these queued messages from the outbox thread, in this order, soon (a
        failure there is retried like any other)."""
        self.outgoing.send_later(msg_ids)

    def deliver(self, message: ChatMessage, peer: str, timeout: float | None) -> ChatResponse:
        """Send a queued message and wait up to ``timeout`` s for its confirmation."""
        wait = self.validate_timeout(timeout)
        self.outgoing.attempt(message.msg_id, message)
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
            msg_id,
            {"status": status, "error": error},
            sender=self.email,  # statuses are of one's own messages
            if_status=may_become(status),
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

    def notify_attachment(self, message: ChatMessage, attachment: Attachment) -> None:
        """Tell plugins (on the notification thread) an attachment became available."""
        self._notifier.submit(self.hooks.attachment_available, message, attachment, self.client)

    def with_reactions(self, message: ChatMessage) -> ChatMessage:
        """``message`` with its reactions (:func:`~syft_chat.interfaces.with_reactions`)."""
        return with_reactions([message], self.store.reactions)[0]

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
