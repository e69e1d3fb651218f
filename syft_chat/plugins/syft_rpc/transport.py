"""The built-in "syft-rpc" transport: syft-rpc request files out, a syft-event endpoint in.

Layout (syft-rpc's): alice sends to bob by writing
``datasites/bob/app_data/<app>/rpc/chat/alice/<request-id>.request``; bob's
server answers with ``<request-id>.response`` beside it.

What this module does differently from calling ``syft_rpc.rpc.send`` and
``SyftEvents.on_request`` directly, and why (each was measured on a shared SyftBox folder):

* every request and response file is written atomically (temp file + rename);
  syft-rpc and syft-event write in place, and readers then see half files;
* request ids are random, never syft-rpc's content hash (``cache=True`` makes
  two identical messages collapse into one);
* the sender is the folder the request sits in (which the SyftBox server
  protects), never the ``sender`` field of the request;
* responses are picked up by one watchdog observer (syft-event's own), with a
  watch per peer folder, instead of a future polling every 0.1 s per message;
* nothing ever raises into syft-event's dispatcher thread (an escaping
  exception kills it and the endpoint silently stops answering);
* a request the SyftBox server refused to take is noticed: the sync client
  renames it (legacy client ``<id>.syftrejected.request``, the current Go
  client ``<id>.rejected.request``, ``<id>.rejected.<YYYYmmddHHMMSS>.request``
  when rotating), and the same watcher reports it as a final refusal (``403``,
  ``retry: false``), then removes the marker;
* a request still waiting in the peer folder (unanswered, not refused, not
  expired) is kept rather than written again (:meth:`RpcTransport.pending`):
  the peer is offline or sync is slow, and another copy would only add upload
  traffic and one more file to clean up.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, ClassVar, cast

from loguru import logger as _loguru
from syft_core import Client as SyftClient
from syft_event import SyftEvents
from syft_rpc.protocol import SyftMethod, SyftRequest, SyftResponse, SyftStatus
from syft_rpc.rpc import make_url
from watchdog.events import (
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from syft_chat.errors import SyftChatError
from syft_chat.features.contacts import ContactPolicy
from syft_chat.hookspecs import hookimpl
from syft_chat.identity import InvalidIdentityError, canonical_email, is_canonical
from syft_chat.interfaces import (
    BackendContext,
    IncomingHandler,
    IncomingRequest,
    RejectHandler,
    Reply,
    ReplyHandler,
)
from syft_chat.models import describe_error
from syft_chat.plugins.syft_rpc.cleanup import HeldCleanup
from syft_chat.plugins.syft_rpc.files import atomic_write, folder_id, sweep_temp_files
from syft_chat.plugins.syft_rpc.peers import PeerDirectory
from syft_chat.plugins.syft_rpc.permissions import write_permission_files
from syft_chat.plugins.syft_rpc.replies import ReplyWatches

__all__ = [
    "ENDPOINT",
    "RpcTransport",
    "endpoint_dir",
    "refusal_reason",
    "rejected_request_id",
    "serves_chat",
]

log = logging.getLogger("syft_chat.transport")

# syft-event logs every request at DEBUG through loguru's default stderr sink.
# A library must not reconfigure loguru for its host, but it may silence its
# own dependencies: `logger.enable("syft_event")` turns them back on.
_loguru.disable("syft_event")
_loguru.disable("syft_rpc")

#: Name of the chat endpoint (a folder under the app's ``rpc/``).
ENDPOINT = "chat"
#: an unreadable file younger than this may still be being written: look again
#: (from a timer, never by sleeping on the serving thread) up to _REREADS times
_FRESH_SECONDS = 2.0
_REREAD_DELAY = 0.25
_REREADS = 4
#: how much of a refused file is kept in ``failed_messages``
_KEPT_RAW_BYTES = 4096
#: files waiting for another look at once; beyond that they are answered at once
_MAX_PENDING_REREADS = 64
#: what a sync client renames a request to when the server refused the upload:
#: legacy Python client ``<id>.syftrejected.request``; Go client (v0.8)
#: ``<id>.rejected.request`` and, rotating an older one, ``<id>.rejected.<14 digits>.request``
#: how often (seconds) a serving transport checks that its endpoint folder is still the one
#: it watches (one ``stat``); a deleted one is re-created and published again
_ENDPOINT_CHECK_SECONDS = 1.0
#: a temporary file (``data_dir/.syft-chat/tmp``) older than this was left by a write that a
#: crash or a full disk interrupted (each takes milliseconds): removed once the backlog is done
_STALE_TEMP_SECONDS = 3600.0
_REJECTION_MARKER = re.compile(r"^(?P<id>[^.]+)\.(?:syftrejected|rejected)(?:\.\d+)?\.request$")


def rejected_request_id(name: str) -> str | None:
    """The request id a sync client's rejection marker file name stands for, else ``None``."""
    match = _REJECTION_MARKER.match(name)
    return match.group("id") if match else None


def refusal_reason(recipient: str) -> str:
    """Why a request carrying a rejection marker never reached ``recipient``."""
    return f"refused by the SyftBox server: no permission to write to {recipient}'s chat folder"


def endpoint_dir(syft: SyftClient, app_name: str, datasite: str) -> Path:
    """``datasites/<datasite>/app_data/<app_name>/rpc/chat``."""
    return Path(syft.app_data(app_name, datasite=datasite)) / "rpc" / ENDPOINT


def serves_chat(syft: SyftClient, app_name: str, datasite: str) -> bool:
    """Whether ``datasite`` publishes the chat endpoint of ``app_name``.

    Over a real SyftBox network only world-readable files sync, so the sign
    is the published ``rpc.schema.json`` naming the endpoint; on a shared
    folder the endpoint folder itself is visible too.
    """
    endpoint = endpoint_dir(syft, app_name, datasite)
    if endpoint.is_dir():
        return True
    try:
        schema = (endpoint.parent / "rpc.schema.json").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return f'"/{ENDPOINT}"' in schema


def _is_request_id(name: str) -> bool:
    try:
        uuid.UUID(name)
    except ValueError:
        return False
    return True


def _json_reply(status_code: int, **fields: Any) -> Reply:
    return Reply(status_code, json.dumps(fields).encode())


class _TooLarge(ValueError):
    pass


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of ``path``; a larger file is refused without being read."""
    size = path.stat().st_size
    if size > max_bytes:
        raise _TooLarge(f"file is {size} bytes, over the {max_bytes}-byte limit")
    with open(path, "rb") as fh:
        return fh.read(max_bytes + 1)[: max_bytes + 1]


def _read_model(path: Path, model: type[Any], max_bytes: int) -> Any:
    """Parse ``path`` as ``model`` (one attempt; the caller decides about retrying)."""
    data = _read_bytes(path, max_bytes)
    if len(data) > max_bytes:
        raise _TooLarge(f"file is over the {max_bytes}-byte limit")
    return model.model_validate_json(data)


def _may_be_partial(path: Path, exc: Exception) -> bool:
    """Whether an unreadable file may still be being written (synced in place)."""
    if isinstance(exc, _TooLarge):
        return False
    try:
        return time.time() - path.stat().st_mtime < _FRESH_SECONDS
    except OSError:
        return False


class _ChatEvents(SyftEvents):
    """SyftEvents whose per-request step is ours (atomic, authenticated, never raising).

    syft-event's ``__handle_rpc`` writes responses in place and lets
    exceptions escape; it is the one method we replace. Everything else
    (watchdog observer, start-up scan of pending requests, schema, cleanup) is
    syft-event's own; its cleanup runs through :class:`HeldCleanup` (cleanup.py).
    """

    def __init__(self, transport: RpcTransport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._chat_transport = transport
        self.held_cleanup = HeldCleanup(
            self._periodic_cleanup, max_bytes=transport.settings.max_request_bytes
        )
        self._periodic_cleanup = cast(Any, self.held_cleanup)  # what start()/stop() call

    def init(self) -> None:
        super().init()
        # syft-event's init() writes a broad syft.pub.yaml; replace it with ours.
        write_permission_files(self.app_rpc_dir, ENDPOINT, self._chat_transport.access)

    def _SyftEvents__handle_rpc(self, path: Path, func: Any) -> None:
        self._chat_transport._handle_request_file(Path(path))


if not hasattr(SyftEvents, "_SyftEvents__handle_rpc"):  # pragma: no cover
    raise ImportError(
        "syft-chat's syft-rpc transport needs syft-event's SyftEvents.__handle_rpc; "
        "install a supported syft-event (>=0.4.3,<0.5)"
    )


class _RequestWatcher(FileSystemEventHandler):
    """The watch on our endpoint folder once it had to be re-created (syft-event's own
    watch died with the folder it watched)."""

    def __init__(self, transport: RpcTransport) -> None:
        self.transport = transport

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = getattr(event, "dest_path", "") or event.src_path
        path = Path(path.decode() if isinstance(path, bytes) else path)
        if path.name.endswith(".request"):
            self.transport._handle_request_file(path)


class RpcTransport:
    """Chat over syft-rpc files, served by syft-event."""

    name: ClassVar[str] = "syft-rpc"

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.syft = context.syft
        self.email = context.email
        self.app_name = context.app_name
        self.settings = context.settings
        self.my_endpoint = endpoint_dir(self.syft, self.app_name, self.email)
        # temporary files live outside datasites/: unwatched, unsynced, same filesystem
        self._tmp_dir = Path(self.syft.workspace.data_dir) / ".syft-chat" / "tmp"
        self._on_request: IncomingHandler | None = None
        self._on_reply: ReplyHandler | None = None
        self._on_reject: RejectHandler | None = None
        self._events: _ChatEvents | None = None
        self._observer: BaseObserver | None = None  # a follower's (it runs no syft-event)
        self._lock = threading.Lock()
        self._in_flight: set[Path] = set()
        self._rereads: dict[Path, int] = {}
        self._replies_seen: set[str] = set()
        self._peers = PeerDirectory(
            Path(self.syft.datasites),
            admits=is_canonical,
            serves=lambda name: serves_chat(self.syft, self.app_name, name),
            refresh_seconds=self.settings.discovery_refresh_seconds,
            name=self.email,
        )
        self._outboxes: dict[str, Path] = {}
        self._collected: set[str] = set()  # peers whose folder was collected since start
        self._replies = ReplyWatches(
            folder_of=self.outbox_dir,
            seen=self._reply_file_seen,
            limit=self.settings.reply_watches,
            sweep_seconds=self.settings.reply_sweep_seconds,
            name=self.email,
        )
        self._started = False
        self._stopped = False
        self._stop_guard = threading.Event()
        self._endpoint_id: tuple[int, int] | None = None
        self.access = ContactPolicy()

    @classmethod
    def from_context(cls, context: BackendContext) -> RpcTransport:
        return cls(context)

    # ------------------------------------------------------------------ lifecycle

    def start(
        self,
        on_request: IncomingHandler,
        on_reply: ReplyHandler,
        on_reject: RejectHandler,
        *,
        awaiting: Collection[str] = (),
    ) -> None:
        self._on_request, self._on_reply, self._on_reject = on_request, on_reply, on_reject
        with self._lock:
            if self._stopped:
                return
        events = _ChatEvents(
            self,
            app_name=self.app_name,
            client=self.syft,
            publish_schema=True,
        )

        def chat(request: dict) -> dict:  # type: ignore[type-arg]
            """Deliver one chat message (body: a syft-chat envelope)."""
            return request  # pragma: no cover - only its signature is used, for the schema

        try:
            events.on_request("/" + ENDPOINT)(chat)
            self._tmp_dir.mkdir(parents=True, exist_ok=True)
            self._events = events
            # permissions and the observer; the requests that waited are answered by the
            # backlog thread below, so that start-up never waits for them
            events.start(process_pending_requests=False)
            self._replies.attach(events.obs)
        except OSError as exc:  # e.g. a full disk or a read-only data_dir
            if events.obs.is_alive():
                events.stop()
            full = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
            raise SyftChatError(
                f"could not start serving chat in {self.my_endpoint}: {exc}{full}"
            ) from exc
        self._started = True
        self._endpoint_id = folder_id(self.my_endpoint)
        guard = threading.Thread(
            target=self._guard_endpoint, name=f"syft-chat-endpoint[{self.email}]", daemon=True
        )
        guard.start()
        backlog = threading.Thread(
            target=self._take_up_backlog,
            args=(events, sorted(set(awaiting))),
            name=f"syft-chat-backlog[{self.email}]",
            daemon=True,
        )
        backlog.start()

    def _take_up_backlog(self, events: _ChatEvents, awaiting: list[str]) -> None:
        """Backlog thread: answer the requests that waited for us (the observer, already
        running, answers the new ones; a request both see is answered once) and collect
        the answers that came for ``awaiting`` meanwhile."""
        try:
            self._move_legacy_requests(events)
            self._answer_waiting()
            swept = sweep_temp_files(self._tmp_dir, _STALE_TEMP_SECONDS)
            if swept:
                log.info("removed %d temporary files left by interrupted writes", swept)
            if awaiting and not self._stopped:
                self._collect_replies(awaiting)
        except Exception:
            if not self._stopped:
                log.exception("could not answer the requests that waited in %s", self.my_endpoint)
        finally:
            events.held_cleanup.release()

    def _move_legacy_requests(self, events: _ChatEvents) -> None:
        """syft-event's move of requests left directly in the endpoint folder (its old
        layout) into their sender's folder. It stops at the first file it cannot read: that
        is logged, and the requests that waited are answered all the same."""
        move = getattr(events, "_SyftEvents__move_legacy_requests", None)
        if move is None:  # pragma: no cover - a syft-event without the old layout
            return
        try:
            move()
        except Exception as exc:
            log.warning(
                "could not move the requests left in %s's top folder into their senders' "
                "folders (%s); answering the others",
                self.my_endpoint,
                describe_error(exc),
            )

    def _answer_waiting(self) -> None:
        """Answer every request waiting in our endpoint, oldest first: each sender's
        earlier messages then come first, so announcing (in each sender's order) need not
        wait for the end of the backlog."""

        def written(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except OSError:
                return 0.0

        waiting = sorted(self.my_endpoint.glob("*/*.request"), key=written)
        for path in waiting:
            if self._stopped:
                return
            self._handle_request_file(path)

    def collect_replies(self, recipients: Collection[str]) -> None:
        """Collect the answers (and refusals) that came from ``recipients`` while this
        process was not running, and watch for theirs again (the messaging core calls it
        once it tracks its unconfirmed messages again, after :meth:`start`)."""
        if not self._stopped:
            self._collect_replies(sorted(set(recipients)))

    def follow(
        self, on_reply: ReplyHandler, on_reject: RejectHandler, *, awaiting: Collection[str] = ()
    ) -> None:
        """Send and collect answers without serving (another process serves this
        datasite's endpoint); :meth:`start` later serves too (taking over)."""
        self._on_reply, self._on_reject = on_reply, on_reject
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.daemon = True
        observer.start()
        with self._lock:
            stopped = self._stopped
            if not stopped:
                self._observer = observer
        if stopped:
            observer.stop()
            return
        self._replies.attach(observer)
        self._collect_replies(sorted(set(awaiting)))

    def update_access(self, policy: ContactPolicy) -> None:
        """Who may write requests to us: rewrites the permission files (atomically) if serving."""
        self.access = policy
        if self._started and not self._stopped:
            write_permission_files(self.my_endpoint.parent, ENDPOINT, policy)

    def _guard_endpoint(self) -> None:
        """Guard thread: re-create and re-publish the endpoint if its folder is deleted."""
        while not self._stop_guard.wait(_ENDPOINT_CHECK_SECONDS):
            try:
                if not self._endpoint_intact():
                    self._republish()
            except Exception:
                log.exception("could not re-create the chat endpoint %s", self.my_endpoint)

    def _endpoint_intact(self) -> bool:
        """The folder we watch is still there (same inode, the watch on it alive: a folder
        re-created at once may get the old inode number back) and so is the schema."""
        events = self._events
        if events is None or folder_id(self.my_endpoint) != self._endpoint_id:
            return False
        if not (self.my_endpoint.parent / "rpc.schema.json").is_file():
            return False
        return any(
            Path(emitter.watch.path) == self.my_endpoint and emitter.is_alive()
            for emitter in list(events.obs.emitters)
        )

    def _republish(self) -> None:
        """The endpoint folder (or the app folder) was deleted or replaced: nobody could
        write to us and the watch on it is dead. Re-create it, its permission files and
        schema, watch it again, and answer what arrived meanwhile."""
        events = self._events
        with self._lock:
            if events is None or self._stopped:
                return
        log.warning(
            "the chat endpoint %s was deleted or replaced while serving; re-creating it and "
            "publishing it again",
            self.my_endpoint,
        )
        for emitter in list(events.obs.emitters):  # the dead watches on the old folder
            watched = Path(emitter.watch.path)
            if watched == self.my_endpoint or self.my_endpoint in watched.parents:
                with contextlib.suppress(KeyError):
                    events.obs.unschedule(emitter.watch)
        events.init()  # app and rpc folders, our permission files, the schema
        self.my_endpoint.mkdir(parents=True, exist_ok=True)
        (self.my_endpoint / ".syftkeep").touch()
        events.obs.schedule(
            _RequestWatcher(self),
            path=str(self.my_endpoint),
            recursive=True,
            event_filter=[FileCreatedEvent, FileMovedEvent],
        )
        self._endpoint_id = folder_id(self.my_endpoint)
        events.process_pending_requests()

    def stop(self) -> None:
        self._stop_guard.set()
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            events, observer = self._events, self._observer
        if events is not None:  # before the backlog thread, seeing the stop, releases it
            events.held_cleanup.hold()
        self._replies.close()
        self._peers.close()
        try:
            if events is not None:
                events.stop()
            if observer is not None:
                observer.stop()
                observer.join(5)
        except Exception:  # pragma: no cover - stopping must not fail close()
            log.exception("error while stopping the syft-event server")

    # ------------------------------------------------------------------ sending

    def can_reach(self, recipient: str) -> bool:
        return serves_chat(self.syft, self.app_name, recipient)

    def list_peers(self) -> list[str]:
        """Datasites in the workspace that publish this app's chat endpoint (kept by a
        :class:`PeerDirectory`: a new datasite shows at once, one that starts serving
        within ``discovery_refresh_seconds``)."""
        return self._peers.list()

    def outbox_dir(self, recipient: str) -> Path:
        """Where our requests to ``recipient`` (and its answers) live (remembered: it is
        asked several times per message, and building the path is most of its cost)."""
        folder = self._outboxes.get(recipient)
        if folder is None:
            if len(self._outboxes) >= 4096:
                self._outboxes.clear()
            folder = endpoint_dir(self.syft, self.app_name, recipient) / self.email
            self._outboxes[recipient] = folder
        return folder

    def send(
        self,
        recipient: str,
        body: bytes,
        *,
        request_id: str,
        expires: datetime,
        replaces: str | None = None,
    ) -> None:
        if replaces is not None:
            self._withdraw(recipient, replaces)
        folder = self.outbox_dir(recipient)
        folder.mkdir(parents=True, exist_ok=True)
        self._replies.sent(recipient, request_id)
        request = SyftRequest(
            id=uuid.UUID(request_id),
            sender=self.email,
            method=SyftMethod.POST,
            url=make_url(recipient, self.app_name, ENDPOINT),
            headers={"content-type": "application/json"},
            body=body,
            expires=expires,
        )
        atomic_write(
            folder / f"{request_id}.request",
            request.model_dump_json().encode(),
            tmp_dir=self._tmp_dir,
        )

    def _reply_file_seen(self, path: Path, peer: str) -> None:
        """A file appeared in ``peer``'s answer folder (watch or sweeper thread)."""
        if path.name.endswith(".response"):
            self._handle_response_file(path, peer)
        else:
            request_id = rejected_request_id(path.name)
            if request_id is not None:
                self._handle_rejection(request_id, peer)

    def collect_reply(self, recipient: str, request_id: str) -> None:
        """Check for a reply, or a refusal by the server, directly (a safety net for a
        missed file event)."""
        path = self.outbox_dir(recipient) / f"{request_id}.response"
        if path.exists():
            self._handle_response_file(path, recipient)
        elif self._refused(recipient, request_id):
            self._handle_rejection(request_id, recipient)

    def pending(self, recipient: str, request_id: str, *, until: datetime) -> bool:
        """Whether the request file is still waiting in ``recipient``'s folder: there,
        unanswered, not refused by the server, readable and not expiring before ``until``.

        Anything unexpected (unreadable, half written, no expiry) is ``False``: the
        caller then writes a fresh request, which is always safe.
        """
        folder = self.outbox_dir(recipient)
        path = folder / f"{request_id}.request"
        try:
            if not path.is_file() or path.with_suffix(".response").exists():
                return False
            if self._refused(recipient, request_id):
                return False
            request: SyftRequest = _read_model(path, SyftRequest, self.settings.max_request_bytes)
        except Exception:
            return False
        expires = request.expires
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        if until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
        return bool(request.id == uuid.UUID(request_id) and expires > until)

    def _refused(self, recipient: str, request_id: str) -> bool:
        """Whether a sync client left a refusal marker for ``request_id``: two ``stat``
        calls, whatever the size of the folder, for a request written by this process or
        to a peer whose folder was collected since start-up (any marker that comes later
        is reported by the watch or the sweeper). Only a request left from before, to a
        folder not collected yet, costs a listing: it may have a rotated marker alone."""
        folder = self.outbox_dir(recipient)
        if any(
            (folder / f"{request_id}.{kind}.request").exists()
            for kind in ("rejected", "syftrejected")
        ):
            return True
        with self._lock:
            known = recipient in self._collected
        if known or self._replies.expects(recipient, request_id):
            return False
        return bool(self._rejection_markers(recipient, request_id))

    def _rejection_markers(self, recipient: str, request_id: str) -> list[Path]:
        """The marker files a sync client left for a refused upload of ``request_id``."""
        folder = self.outbox_dir(recipient)
        try:
            candidates = list(folder.glob(f"{glob_escape(request_id)}.*rejected*.request"))
        except OSError:
            return []
        return [p for p in candidates if rejected_request_id(p.name) == request_id]

    def _handle_rejection(self, request_id: str, peer: str) -> None:
        """The server refused our upload of ``request_id``: report it as a final refusal,
        then remove the marker(s). Runs on the observer thread: must never raise."""
        try:
            with self._lock:
                if request_id in self._replies_seen:
                    return
                self._replies_seen.add(request_id)
            try:
                reason = refusal_reason(peer)
                log.warning("request %s to %s: %s", request_id, peer, reason)
                refused = _json_reply(403, status="rejected", retry=False, error=reason)
                if self._on_reply is not None and (
                    self._on_reply(request_id, peer, refused) is False
                ):
                    return  # another process's request: the marker stays for it
                for marker in self._rejection_markers(peer, request_id):
                    marker.unlink(missing_ok=True)
                (self.outbox_dir(peer) / f"{request_id}.request").unlink(missing_ok=True)
                self._replies.answered(peer, request_id)
            finally:
                with self._lock:  # the markers are gone: a late duplicate event finds nothing
                    self._replies_seen.discard(request_id)
        except Exception:
            log.exception("error handling the refusal of request %s", request_id)

    def _withdraw(self, recipient: str, request_id: str) -> None:
        """Remove an unanswered request before writing its replacement."""
        request = self.outbox_dir(recipient) / f"{request_id}.request"
        if not request.with_suffix(".response").exists():
            request.unlink(missing_ok=True)
            self._replies.answered(recipient, request_id)

    def _collect_replies(self, recipients: list[str]) -> None:
        """After a restart: collect the answers (and refusals) that arrived for these
        peers and look out for the rest again (one listing of each peer's folder)."""
        for peer in recipients:
            folder = self.outbox_dir(peer)
            try:
                names = sorted(os.listdir(folder))
            except OSError:  # no folder: nothing came
                with self._lock:
                    self._collected.add(peer)
                continue
            answered = {name[: -len(".response")] for name in names if name.endswith(".response")}
            for name in names:
                request_id = name[: -len(".request")] if name.endswith(".request") else ""
                if _is_request_id(request_id) and request_id not in answered:
                    self._replies.sent(peer, request_id)
            for request_id in sorted(answered):
                self._handle_response_file(folder / f"{request_id}.response", peer)
            refused = {rejected_request_id(name) for name in names}
            for request_id in sorted(r for r in refused if r is not None):
                self._handle_rejection(request_id, peer)
            with self._lock:
                self._collected.add(peer)

    def _handle_response_file(self, path: Path, peer: str) -> None:
        """Runs on the observer thread: must never raise."""
        request_id = path.stem
        try:
            with self._lock:
                if request_id in self._replies_seen:
                    return
                self._replies_seen.add(request_id)
            try:
                response: SyftResponse = _read_model(
                    path, SyftResponse, self.settings.max_request_bytes
                )
            except Exception as exc:
                # gone, or still being written in place by a sync client: look
                # again shortly (and the waiting sender's poll and the outbox's
                # next retry read it again anyway)
                with self._lock:
                    self._replies_seen.discard(request_id)
                if not isinstance(exc, FileNotFoundError):
                    log.info("response %s not readable yet: %s", path, describe_error(exc))
                    self._reread_later(path, lambda: self._handle_response_file(path, peer), exc)
                return
            else:
                with self._lock:
                    self._rereads.pop(path, None)
                if response.sender != peer:
                    reply = _json_reply(
                        502,
                        status="error",
                        retry=True,
                        error=f"response signed by {response.sender}, not {peer}",
                    )
                else:
                    reply = Reply(int(response.status_code), response.body or b"")
            if self._on_reply is not None and self._on_reply(request_id, peer, reply) is False:
                with self._lock:  # another process's request: its answer stays for it
                    self._replies_seen.discard(request_id)
                return
            path.with_suffix(".request").unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            self._replies.answered(peer, request_id)
            with self._lock:  # the files are gone: a late duplicate event finds nothing
                self._replies_seen.discard(request_id)
        except Exception:
            log.exception("error handling response %s", path)

    # ------------------------------------------------------------------ serving

    def _handle_request_file(self, path: Path) -> None:
        """Runs on syft-event's dispatcher thread: must never raise."""
        try:
            if self._stopped or path.suffix != ".request" or path.parent.parent != self.my_endpoint:
                return
            response_path = path.with_suffix(".response")
            with self._lock:
                if path in self._in_flight or response_path.exists() or not path.exists():
                    return
                self._in_flight.add(path)
            try:
                self._serve(path, response_path)
            finally:
                with self._lock:
                    self._in_flight.discard(path)
        except Exception:
            log.exception("error handling request %s", path)

    def _serve(self, path: Path, response_path: Path) -> None:
        sender = path.parent.name
        if path.is_symlink() or path.parent.is_symlink():
            log.warning("ignoring %s: request files must not be symlinks", path)
            path.rename(path.with_name(path.name + ".invalid"))
            return
        try:
            request_uuid = uuid.UUID(path.stem)
        except ValueError:
            log.warning("ignoring %s: its name is not a request id", path)
            path.rename(path.with_name(path.name + ".invalid"))
            return
        request: SyftRequest | None = None
        try:
            request = _read_model(path, SyftRequest, self.settings.max_request_bytes)
        except FileNotFoundError:
            return
        except Exception as exc:
            if self._reread_later(path, lambda: self._handle_request_file(path), exc):
                return  # probably still arriving: answer once it is whole, or given up
            # a correct sender writes whole files: this one is probably still
            # being synced in place, so the sender is told to send it again
            reason = f"malformed request file: {describe_error(exc)}"
            reply = _json_reply(400, status="rejected", retry=True, error=reason)
            self._reject(sender, reason, path)
        else:
            with self._lock:
                self._rereads.pop(path, None)
            reply = self._check_and_dispatch(request, request_uuid, sender, path)
        self._write_response(path, response_path, request, request_uuid, reply)

    def _reread_later(self, path: Path, again: Callable[[], None], exc: Exception) -> bool:
        """Schedule another look at a file that may still be being written.

        Returns ``False`` when it is not worth waiting (too large, too old, or
        looked at too often): the caller then answers now.
        """
        with self._lock:
            count = self._rereads.get(path, 0)
            crowded = count == 0 and len(self._rereads) >= _MAX_PENDING_REREADS
            if self._stopped or crowded or count >= _REREADS or not _may_be_partial(path, exc):
                self._rereads.pop(path, None)
                return False
            self._rereads[path] = count + 1
        timer = threading.Timer(_REREAD_DELAY, again)
        timer.daemon = True
        timer.start()
        return True

    def _reject(self, sender: str, reason: str, path: Path) -> None:
        if self._on_reject is None:  # pragma: no cover - start() sets it first
            return
        try:
            with open(path, "rb") as fh:
                raw = fh.read(_KEPT_RAW_BYTES)
        except OSError:
            raw = b""
        self._on_reject(sender, reason, raw)

    def _check_and_dispatch(
        self, request: SyftRequest, request_uuid: uuid.UUID, sender: str, path: Path
    ) -> Reply:
        if not is_canonical(sender):
            # the folder name is the sender: only one spelling of an identity is accepted
            try:
                problem = f"use {canonical_email(sender)}"
            except InvalidIdentityError as exc:
                problem = str(exc)
            reason = f"sender folder {sender!a} is not a canonical datasite email ({problem})"
            self._reject(sender, reason, path)
            return _json_reply(400, status="rejected", error=reason)
        if request.id != request_uuid:
            reason = "request id does not match its file name"
            self._reject(sender, reason, path)
            return _json_reply(400, status="rejected", error=reason)
        if request.sender != sender:
            reason = (
                f"sender mismatch: request in {sender}'s folder claims to be from {request.sender}"
            )
            self._reject(sender, reason, path)
            return _json_reply(403, status="rejected", error=reason)
        if request.is_expired:
            # not a fault of the message: the sender renews it by sending again
            return _json_reply(419, status="rejected", retry=True, error="request expired")
        if self._on_request is None:  # pragma: no cover - start() sets it first
            return _json_reply(503, status="error", error="not serving")
        try:
            return self._on_request(IncomingRequest(sender, str(request.id), request.body or b""))
        except Exception as exc:
            log.exception("chat handler failed for a request from %s", sender)
            return _json_reply(
                500, status="error", retry=True, error=f"handler failed: {type(exc).__name__}"
            )

    def _write_response(
        self,
        path: Path,
        response_path: Path,
        request: SyftRequest | None,
        request_uuid: uuid.UUID,
        reply: Reply,
    ) -> None:
        try:
            status = SyftStatus(reply.status_code)
        except ValueError:
            status = SyftStatus(500)
        url = request.url if request is not None else make_url(self.email, self.app_name, ENDPOINT)
        fields: dict[str, Any] = {
            "id": request_uuid,
            "sender": self.email,
            "url": url,
            "body": reply.body,
            "status_code": status,
        }
        if request is not None:
            fields["expires"] = request.expires
        response = SyftResponse(**fields)
        if path.exists():  # the sender may have withdrawn it meanwhile
            atomic_write(
                response_path,
                response.model_dump_json().encode(),
                tmp_dir=self._tmp_dir,
                # a confirmation is never found empty or torn after a power cut; a refusal
                # or "send again" is cheap to lose (the sender sends again), so a flood of
                # them costs no fsync. The folder is not synced: a rename lost to a power cut
                # leaves the request unanswered, and it is answered again at start from the
                # message already committed (one fsync less per message)
                durable=self.settings.durable and reply.ok,
                sync_folder=False,
            )


@hookimpl
def chat_register_transports(register: Any) -> None:
    register(RpcTransport.name, RpcTransport.from_context)
