"""Attachments: files shared with a message, kept in the sender's own datasite.

Sending copies each file (never moves it) into
``datasites/<sender>/app_data/<app>/attachments/<msg_id>/<name>``, beside permission files
that grant read to exactly the recipients (:mod:`syft_chat.plugins.syft_rpc.shared_files`);
the message carries, per file, an :class:`~syft_chat.models.Attachment` (url, name, size,
media type, SHA-256). SyftBox's sync moves the bytes; the request stays small.

A receiver computes each attachment's state from its own synced copy, found *only* under
``datasites/<sender>/app_data/<app>/attachments/`` of its own SyftBox folder: missing or
another size is ``pending``, full size with another hash ``corrupt`` (never handed out),
a match ``available``; the sender's ``attachments`` control message (revoke, delete) makes
it ``revoked`` or ``deleted``. A checker thread looks at pending attachments every
``attachment_check_interval`` seconds and announces each once when it becomes available
(``chat_attachment_available``; remembered in the store, so also once across restarts).
See ``docs/attachments.md``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar
from urllib.parse import quote, unquote, urlsplit

from syft_chat.errors import AttachmentError, InvalidMessageError, StorageError
from syft_chat.filenames import safe_name, unique_name
from syft_chat.interfaces import GROUP_PREFIX, MessageQuery, StoredMessage
from syft_chat.messaging.kinds import Announce, Refusal
from syft_chat.models import (
    MAX_ATTACHMENTS,
    Attachment,
    AttachmentState,
    ChatMessage,
    ChatResponse,
    MessageKind,
    MessageStatus,
)
from syft_chat.plugins.syft_rpc.shared_files import (
    FileCheck,
    copy_hashing,
    remove_share,
    write_share_permissions,
)

if TYPE_CHECKING:
    from syft_chat.features.groups import Groups
    from syft_chat.messaging.core import MessagingCore

__all__ = [
    "AttachmentControlRule",
    "Attachments",
    "attachment_url",
]

log = logging.getLogger("syft_chat.attachments")

_KIND = MessageKind.ATTACHMENTS
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PENDING_KEY = "attachments.pending"
_TOTAL_KEY = "attachments.bytes:"


def attachment_url(sender: str, app: str, folder: str, name: str) -> str:
    """``syft://<sender>/app_data/<app>/attachments/<folder>/<name>`` (the name quoted)."""
    return f"syft://{sender}/app_data/{app}/attachments/{folder}/{quote(name, safe='')}"


def _url_parts(url: str) -> tuple[str, list[str]] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme != "syft" or parts.query or parts.fragment:
        return None
    return parts.netloc, [unquote(p) for p in parts.path.split("/")[1:]]


class AttachmentControlRule:
    """The receive-side rule of an ``attachments`` message: the sender of ``target``
    revokes (``op: revoke``) or deletes (``op: delete``) some of its attachments."""

    kind: ClassVar[MessageKind] = _KIND
    announce: ClassVar[Announce] = "change"

    def __init__(self, attachments: Attachments) -> None:
        self._attachments = attachments

    def normalise(self, message: ChatMessage) -> ChatMessage:
        return message

    def check(self, message: ChatMessage, actor: str) -> Refusal | None:
        ids = message.metadata.get("attachments")
        if message.metadata.get("op") not in ("revoke", "delete") or not isinstance(ids, list):
            return Refusal(400, "an attachments message names op (revoke, delete) and ids")
        if message.target_sender not in (None, actor) or not message.target:
            return Refusal(403, "only the sender of a message may withdraw its attachments")
        target = self._attachments.core.store.get(message.target, sender=actor)
        if target is None:
            return Refusal(409, "the message it names has not arrived yet", retry=True)
        return None

    def apply(self, record: StoredMessage) -> None:
        message = record.message
        state = (
            AttachmentState.DELETED
            if message.metadata.get("op") == "delete"
            else AttachmentState.REVOKED
        )
        ids = [str(i) for i in message.metadata.get("attachments", [])]
        self._attachments.withdraw(message.target or "", message.sender, ids, state)

    def after(self, record: StoredMessage) -> None:
        pass

    def describe(self, message: ChatMessage) -> str:
        return f"attachment_{'deleted' if message.metadata.get('op') == 'delete' else 'revoked'}"


class Attachments:
    """Sharing files with messages, and the states of the ones received.

    :param datasites: this datasite's local ``datasites/`` folder (its own and the synced
        copies of the others').
    :param app: the app's folder name under ``app_data``.
    """

    def __init__(self, core: MessagingCore, groups: Groups, *, datasites: Path, app: str) -> None:
        self.core = core
        self._groups = groups
        self._datasites = datasites
        self._app = app
        self._files = FileCheck()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ layout

    def _root(self, sender: str) -> Path:
        return self._datasites / sender / "app_data" / self._app / "attachments"

    def folder(self, msg_id: str) -> Path:
        """This datasite's folder of its message ``msg_id``'s attachments."""
        return self._root(self.core.email) / msg_id

    def local_path(self, sender: str, attachment: Attachment) -> Path | None:
        """Where ``sender``'s attachment is synced here; ``None`` if its url names a place
        outside ``datasites/<sender>/app_data/<app>/attachments/<folder>/``."""
        parts = _url_parts(attachment.url)
        if parts is None:
            return None
        host, path = parts
        expected = ["app_data", self._app, "attachments"]
        if host != sender or len(path) != 5 or path[:3] != expected:
            return None
        folder, name = path[3], path[4]
        if not _FOLDER.match(folder) or folder in (".", "..") or name != attachment.name:
            return None
        root = self._root(sender)
        candidate = root / folder / name
        try:  # a synced folder may be a symlink: the file must still be under the root
            if not candidate.parent.resolve().is_relative_to(root.resolve()):
                return None
        except (OSError, RuntimeError):
            return None
        return candidate

    # ------------------------------------------------------------------ sending

    def prepare(
        self,
        files: Sequence[str | os.PathLike[str]],
        readers: Sequence[str],
        conversation: str,
        msg_id: str,
    ) -> list[Attachment]:
        """Check ``files`` against the limits (and the plugins), then copy them into
        ``msg_id``'s folder with read for ``readers``; the attachments to send.

        Raises :class:`AttachmentError` before anything is copied if a file is missing,
        unreadable or over a limit; a failure while copying removes what was copied.
        """
        core = self.core
        if isinstance(files, (str, Path)):
            raise AttachmentError("attachments must be a list of paths, not one path")
        paths = [Path(f).expanduser() for f in files]
        if not paths:
            return []
        if len(paths) > MAX_ATTACHMENTS:
            raise AttachmentError(f"at most {MAX_ATTACHMENTS} attachments per message")
        limits = core.settings
        sizes = []
        for path in paths:
            try:
                if not path.is_file():
                    raise AttachmentError(f"cannot attach {path}: no such file")
                size = path.stat().st_size
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise AttachmentError(f"cannot attach {path}: {exc.strerror or exc}") from exc
            if size > limits.max_attachment_bytes:
                raise AttachmentError(
                    f"{path.name} is {size} bytes; the limit is {limits.max_attachment_bytes} "
                    "per file (ChatSettings.max_attachment_bytes)"
                )
            sizes.append(size)
        total = sum(sizes)
        if total > limits.max_message_attachment_bytes:
            raise AttachmentError(
                f"the attachments are {total} bytes; the limit is "
                f"{limits.max_message_attachment_bytes} per message "
                "(ChatSettings.max_message_attachment_bytes)"
            )
        sent = self._sent_bytes(conversation)
        if sent + total > limits.max_conversation_attachment_bytes:
            raise AttachmentError(
                f"this conversation already holds {sent} bytes of your attachments; "
                f"{total} more would pass the limit of "
                f"{limits.max_conversation_attachment_bytes} "
                "(ChatSettings.max_conversation_attachment_bytes)"
            )
        refusal = core.hooks.accept_attachments(paths, list(readers), core.client)
        if refusal:
            raise AttachmentError(f"attachments refused: {refusal}")
        folder = self.folder(msg_id)
        taken: set[str] = set()
        shared: list[Attachment] = []
        try:
            folder.mkdir(parents=True, exist_ok=False)
            write_share_permissions(folder, {}, durable=limits.durable)  # nothing readable yet
            for n, (path, size) in enumerate(zip(paths, sizes, strict=True), start=1):
                name = unique_name(safe_name(path.name), taken)
                taken.add(name.lower())
                copied, digest = copy_hashing(
                    path, folder / name, limit=size, durable=limits.durable
                )
                media = mimetypes.guess_type(name)[0] or "application/octet-stream"
                shared.append(
                    Attachment(
                        id=f"a{n}",
                        name=name,
                        size=copied,
                        media_type=media,
                        sha256=digest,
                        url=attachment_url(core.email, self._app, msg_id, name),
                        state=AttachmentState.AVAILABLE,
                    )
                )
            grants = {a.name: list(readers) for a in shared}
            write_share_permissions(folder, grants, durable=limits.durable)
        except FileExistsError as exc:
            raise AttachmentError(f"{folder} exists already") from exc
        except (OSError, ValueError) as exc:
            remove_share(folder)
            raise AttachmentError(f"could not copy the attachments: {exc}") from exc
        except BaseException:
            remove_share(folder)
            raise
        return shared

    def discard(self, msg_id: str) -> None:
        """Remove a folder :meth:`prepare` made for a message that was not stored."""
        remove_share(self.folder(msg_id))

    def _sent_bytes(self, conversation: str) -> int:
        value = self.core.store.setting(_TOTAL_KEY + conversation)
        try:
            return int(value) if value else 0
        except ValueError:
            return 0

    def count(self, conversation: str, delta: int) -> None:
        """Add ``delta`` bytes to what this datasite shares in ``conversation``."""
        store = self.core.store
        with store.transaction():
            total = max(0, self._sent_bytes(conversation) + delta)
            store.set_setting(_TOTAL_KEY + conversation, str(total))

    # ------------------------------------------------------------------ receiving

    def check_incoming(self, message: ChatMessage, actor: str) -> Refusal | None:
        """Refuse a message whose attachments name a place outside the sender's own app
        folder, or repeat an id or name (the reason lands in ``failed_messages``)."""
        ids, names = set(), set()
        for a in message.attachments:
            if self.local_path(actor, a) is None:
                return Refusal(
                    400,
                    f"attachment {a.id} has a url outside the sender's datasite folder "
                    f"app_data/{self._app}/attachments/<message>/<name>",
                )
            if a.id in ids or a.name.lower() in names:
                return Refusal(400, f"attachment {a.id} repeats an id or a name")
            ids.add(a.id)
            names.add(a.name.lower())
        return None

    def track(self, message: ChatMessage) -> None:
        """An incoming message with attachments was stored (inside its transaction):
        watch it until each is available or withdrawn."""
        if message.attachments and message.sender != self.core.email:
            pending = self._pending()
            key = [message.sender, message.msg_id]
            if key not in pending:
                pending.append(key)
                self.core.store.set_setting(_PENDING_KEY, _dump(pending))

    def _pending(self) -> list[list[str]]:
        try:
            loaded = json.loads(self.core.store.setting(_PENDING_KEY) or "[]")
        except ValueError:
            return []
        return [list(map(str, k)) for k in loaded if isinstance(k, list) and len(k) == 2]

    def withdraw(
        self, msg_id: str, sender: str, ids: Sequence[str], state: AttachmentState
    ) -> None:
        """Mark attachments of ``sender``'s message revoked or deleted (all with no ids)."""
        store = self.core.store
        found = store.get(msg_id, sender=sender)
        if found is None or not found.message.attachments:
            return
        changed = [
            a.model_copy(update={"state": state})
            if (not ids or a.id in ids) and a.state is not AttachmentState.DELETED
            else a
            for a in found.message.attachments
        ]
        store.update(msg_id, {"attachments": changed}, sender=sender)

    # ------------------------------------------------------------------ states

    def state(self, message: ChatMessage, attachment: Attachment) -> AttachmentState:
        """The state of one attachment of ``message`` as this datasite sees it now."""
        if attachment.state in (AttachmentState.REVOKED, AttachmentState.DELETED):
            return attachment.state
        if message.deleted:
            return AttachmentState.DELETED
        path = self.local_path(message.sender, attachment)
        if path is None:
            return AttachmentState.CORRUPT
        seen = self._files.check(path, attachment.size, attachment.sha256)
        if seen == "ok":
            return AttachmentState.AVAILABLE
        if seen == "corrupt":
            return AttachmentState.CORRUPT
        return AttachmentState.PENDING

    def _shown(self, message: ChatMessage, attachment: Attachment) -> Attachment:
        state = self.state(message, attachment)
        path = self.local_path(message.sender, attachment)
        where = str(path) if state is AttachmentState.AVAILABLE and path is not None else None
        return attachment.model_copy(update={"state": state, "local_path": where})

    def with_states(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` with each attachment's current state."""
        out = []
        for m in messages:
            if m.attachments:
                states = [self._shown(m, a) for a in m.attachments]
                m = m.model_copy(update={"attachments": states})
            out.append(m)
        return out

    def _find(
        self, msg_id: str, attachment_id: str, sender: str | None
    ) -> tuple[ChatMessage, Attachment]:
        self.core.check_open()
        message = self.core.get(msg_id, sender=sender) if isinstance(msg_id, str) else None
        if message is None:
            raise AttachmentError(f"no message {msg_id!r}")
        for a in message.attachments:
            if a.id == attachment_id:
                return message, self._shown(message, a)
        raise AttachmentError(f"message {msg_id!r} has no attachment {attachment_id!r}")

    def path(self, msg_id: str, attachment_id: str, sender: str | None = None) -> Path:
        message, attachment = self._find(msg_id, attachment_id, sender)
        if attachment.state is not AttachmentState.AVAILABLE:
            raise AttachmentError(
                f"attachment {attachment_id} ({attachment.name}) of {msg_id} is "
                f"{attachment.state}: {_WHY[attachment.state]}",
                state=attachment.state.value,
            )
        path = self.local_path(message.sender, attachment)
        assert path is not None  # available implies a path
        return path

    def open(self, msg_id: str, attachment_id: str, sender: str | None = None) -> BinaryIO:
        path = self.path(msg_id, attachment_id, sender)
        return open(path, "rb")

    def listing(
        self, with_user: str | None = None, group_id: str | None = None
    ) -> list[tuple[ChatMessage, Attachment]]:
        self.core.check_open()
        if with_user is not None and group_id is not None:
            raise InvalidMessageError("pass with_user or group_id, not both")
        conversation = f"{GROUP_PREFIX}{group_id}" if group_id else with_user
        query = MessageQuery(
            conversation=conversation, kinds=frozenset({MessageKind.MESSAGE}), order="time"
        )
        messages = [r.message for r in self.core.store.find(query) if r.message.attachments]
        return [(m, a) for m in self.with_states(messages) for a in m.attachments]

    # ------------------------------------------------------------------ withdrawing

    def revoke(
        self, msg_id: str, attachment_id: str | None = None, *, timeout: float | None = None
    ) -> ChatResponse:
        """Withdraw read access to one attachment (all, without an id) of a message you
        sent: its permission files are rewritten and the recipients are told."""
        core = self.core
        core.check_open()
        found = core.store.get(msg_id, sender=core.email) if isinstance(msg_id, str) else None
        message = found.message if found is not None else None
        if message is None or message.kind is not MessageKind.MESSAGE:
            raise AttachmentError(f"no message {msg_id!r} of yours")
        ids = [a.id for a in message.attachments if attachment_id in (None, a.id)]
        if not ids:
            raise AttachmentError(f"message {msg_id!r} has no attachment {attachment_id!r}")
        with core.store.transaction():
            self.withdraw(msg_id, core.email, ids, AttachmentState.REVOKED)
        self._rewrite_grants(msg_id)
        return self._tell(message, "revoke", ids, timeout)

    def _rewrite_grants(self, msg_id: str) -> None:
        found = self.core.store.get(msg_id, sender=self.core.email)
        if found is None:
            return
        message = found.message
        readers = self._readers(message)
        grants = {
            a.name: readers
            for a in message.attachments
            if a.state not in (AttachmentState.REVOKED, AttachmentState.DELETED)
        }
        write_share_permissions(self.folder(msg_id), grants, durable=self.core.settings.durable)

    def _readers(self, message: ChatMessage) -> list[str]:
        if message.group_id:  # the members it was sent to (its per-member copies)
            copies = MessageQuery(target=message.msg_id, kinds=frozenset({MessageKind.COPY}))
            return sorted({r.peer for r in self.core.store.find(copies) if r.peer})
        return [message.recipient] if message.recipient else []

    def deleted(self, message: ChatMessage) -> None:
        """The sender deleted ``message``: its files go (the grants first); the recipients
        learn it from the deletion itself."""
        if message.sender != self.core.email or not message.attachments:
            return
        remove_share(self.folder(message.msg_id))
        conversation = f"{GROUP_PREFIX}{message.group_id}" if message.group_id else None
        self.count(
            conversation or message.recipient or "", -sum(a.size for a in message.attachments)
        )

    def _tell(
        self, message: ChatMessage, op: str, ids: list[str], timeout: float | None
    ) -> ChatResponse:
        core = self.core
        meta = {"op": op, "attachments": ids}
        if message.group_id:
            group = self._groups.my_group(message.group_id)
            record = ChatMessage(
                sender=core.email,
                content="",
                kind=_KIND,
                target=message.msg_id,
                target_sender=message.sender,
                metadata={**meta, **self._groups.based_on(group)},
                group_id=message.group_id,
            )
            self._groups.fan_out(record, self._readers(message))
            return ChatResponse(status=MessageStatus.SENT.value, message_id=record.msg_id)
        peer = message.recipient or ""
        control = ChatMessage(
            sender=core.email,
            content="",
            recipient=peer,
            kind=_KIND,
            target=message.msg_id,
            target_sender=message.sender,
            metadata=meta,
        )
        queued = core.queue(control, peer)
        return core.deliver(queued, peer, 0 if timeout is None else timeout)

    # ------------------------------------------------------------------ the checker

    def start(self) -> None:
        """Start the checker thread (it announces each pending attachment once whole)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"syft-chat-attachments[{self.core.email}]", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.core.settings.attachment_check_interval):
            try:
                self.check_pending()
            except StorageError as exc:
                log.debug("attachment check skipped: %s", exc)
            except Exception:
                log.exception("attachment check failed")

    def check_pending(self) -> int:
        """Look at every pending incoming attachment once; how many became available."""
        with self._lock:
            became = 0
            store = self.core.store
            for sender, msg_id in self._pending():
                found = store.get(msg_id, sender=sender)
                message = found.message if found is not None else None
                done, fresh = self._look(message)
                if fresh and message is not None:
                    fresh = self._claim(msg_id, sender, fresh)
                    if fresh:
                        stored = store.get(msg_id, sender=sender)
                        shown = self.with_states([stored.message if stored else message])[0]
                        for a in fresh:
                            became += 1
                            now = next(x for x in shown.attachments if x.id == a.id)
                            self.core.notify_attachment(shown, now)
                if done:
                    with store.transaction():
                        left = [k for k in self._pending() if k != [sender, msg_id]]
                        store.set_setting(_PENDING_KEY, _dump(left))
            return became

    def _claim(self, msg_id: str, sender: str, fresh: list[Attachment]) -> list[Attachment]:
        """Mark ``fresh`` announced, in one transaction; the ones this call marked (another
        process of this datasite, sharing the store, may have marked some first)."""
        store = self.core.store
        with store.transaction():
            current = store.get(msg_id, sender=sender)
            if current is None:
                return []
            wanted = {f.id for f in fresh}
            claimed = [
                a
                for a in current.message.attachments
                if a.id in wanted and not a.announced and a.state is AttachmentState.PENDING
            ]
            ids = {a.id for a in claimed}
            marked = [
                a.model_copy(update={"announced": True}) if a.id in ids else a
                for a in current.message.attachments
            ]
            if claimed:
                store.update(msg_id, {"attachments": marked}, sender=sender)
        return claimed

    def _look(self, message: ChatMessage | None) -> tuple[bool, list[Attachment]]:
        """(whether nothing is left to watch, the attachments that just became available)."""
        if message is None:
            return True, []
        fresh, waiting = [], False
        for a in message.attachments:
            if a.announced:
                continue
            state = self.state(message, a)
            if state is AttachmentState.AVAILABLE:
                fresh.append(a)
            elif state in (AttachmentState.PENDING, AttachmentState.CORRUPT):
                waiting = True  # a corrupt copy may still be replaced by the right one
        return not waiting, fresh


_WHY = {
    AttachmentState.PENDING: "not (fully) synced here yet",
    AttachmentState.CORRUPT: "its content does not match the SHA-256 the sender sent",
    AttachmentState.REVOKED: "the sender revoked access",
    AttachmentState.DELETED: "the sender deleted it",
    AttachmentState.AVAILABLE: "",
}


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
