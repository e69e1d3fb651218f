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

import logging
import mimetypes
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from syft_chat.dispatch import HookDecisionError
from syft_chat.errors import AttachmentError, InvalidMessageError
from syft_chat.features.attachment_states import AttachmentStates, attachment_url
from syft_chat.features.attachment_watch import AttachmentWatch
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
]

log = logging.getLogger("syft_chat.attachments")

_KIND = MessageKind.ATTACHMENTS
_TOTAL_KEY = "attachments.bytes:"
#: a folder without a stored message is an orphan once untouched this long (seconds)
_ORPHAN_AGE = 3600.0


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
        self.states = AttachmentStates(datasites=datasites, app=app)
        self.watch = AttachmentWatch(core, self.states)
        self._app = app
        self._reserving = threading.Lock()

    def folder(self, msg_id: str) -> Path:
        """This datasite's folder of its message ``msg_id``'s attachments."""
        return self.states.folder(self.core.email, msg_id)

    # ------------------------------------------------------------------ sending

    def prepare(
        self,
        files: Sequence[str | os.PathLike[str]],
        readers: Sequence[str],
        conversation: str,
        msg_id: str,
    ) -> list[Attachment]:
        """Check ``files`` against the limits (and the plugins), reserve their bytes in
        ``conversation``'s total, then copy them into ``msg_id``'s folder with read for
        ``readers``; the attachments to send. A caller that does not store the message
        gives both back with :meth:`discard`.

        Raises :class:`AttachmentError` before anything is copied if a file is missing, not
        a regular file, unreadable or over a limit; a failure while copying removes what
        was copied and gives the reservation back.
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
        sizes = [_checked_size(path, limits.max_attachment_bytes) for path in paths]
        total = sum(sizes)
        if total > limits.max_message_attachment_bytes:
            raise AttachmentError(
                f"the attachments are {total} bytes; the limit is "
                f"{limits.max_message_attachment_bytes} per message "
                "(ChatSettings.max_message_attachment_bytes)"
            )
        self._check_total(self._sent_bytes(conversation), total)  # early: before the plugins
        try:
            refusal = core.hooks.accept_attachments(paths, list(readers), core.client)
        except HookDecisionError as exc:  # fails closed
            raise AttachmentError(f"attachments refused: {exc}") from exc
        if refusal:
            raise AttachmentError(f"attachments refused: {refusal}")
        self._reserve(conversation, total)
        try:
            return self._copy(paths, sizes, readers, msg_id)
        except BaseException:
            self.count(conversation, -total)
            raise

    def _copy(
        self, paths: list[Path], sizes: list[int], readers: Sequence[str], msg_id: str
    ) -> list[Attachment]:
        """Copy ``paths`` into ``msg_id``'s folder, readable by ``readers`` once all are
        there; on any failure nothing is left (a cleanup error never hides the failure)."""
        core, durable = self.core, self.core.settings.durable
        folder = self.folder(msg_id)
        taken: set[str] = set()
        shared: list[Attachment] = []
        try:
            folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError as exc:
            raise AttachmentError(f"{folder} exists already") from exc
        except OSError as exc:
            raise AttachmentError(f"could not copy the attachments: {exc}") from exc
        try:
            write_share_permissions(folder, {}, durable=durable)  # nothing readable yet
            for n, (path, size) in enumerate(zip(paths, sizes, strict=True), start=1):
                name = unique_name(safe_name(path.name), taken)
                if safe_name(name) != name:  # what the Attachment (and the peer) would call it
                    raise ValueError(f"no safe unique name for {path.name!r}")
                taken.add(name.lower())
                copied, digest = copy_hashing(path, folder / name, limit=size, durable=durable)
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
            write_share_permissions(folder, grants, durable=durable)
        except (OSError, ValueError) as exc:
            self._clean_up(folder)
            raise AttachmentError(f"could not copy the attachments: {exc}") from exc
        except BaseException:
            self._clean_up(folder)
            raise
        return shared

    @staticmethod
    def _clean_up(folder: Path) -> None:
        try:
            remove_share(folder)
        except OSError as exc:  # logged: the failure that led here is what is raised
            log.warning("could not remove %s after a failed send: %s", folder, exc)

    def discard(self, msg_id: str, conversation: str, attachments: Sequence[Attachment]) -> None:
        """Undo :meth:`prepare` for a message that was not stored: its folder goes and its
        bytes are given back to ``conversation``'s total."""
        self._clean_up(self.folder(msg_id))
        self.count(conversation, -sum(a.size for a in attachments))

    def sweep_orphans(self, min_age: float = _ORPHAN_AGE) -> int:
        """Remove this datasite's attachment folders that no stored message owns (a send
        killed between the copy and the store), or whose message was deleted; only
        folders untouched for ``min_age`` seconds (a send under way in another process
        sharing the store is not swept). How many were removed. The client runs it once
        at start, on the checker thread."""
        root = self.states.folder(self.core.email, "x").parent
        try:
            folders = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
        except OSError:  # no attachments folder (yet)
            return 0
        cutoff, store, removed = time.time() - min_age, self.core.store, 0
        for folder in folders:
            try:
                if folder.stat().st_mtime > cutoff:
                    continue
            except OSError:
                continue
            found = store.get(folder.name, sender=self.core.email)
            if found is not None and not found.message.deleted:
                continue
            try:
                remove_share(folder)
            except OSError as exc:
                log.warning("could not remove the orphan attachment folder %s: %s", folder, exc)
                continue
            removed += 1
        if removed:
            log.info("removed %d attachment folder(s) no stored message owns", removed)
        return removed

    def _sent_bytes(self, conversation: str) -> int:
        value = self.core.store.setting(_TOTAL_KEY + conversation)
        try:
            return int(value) if value else 0
        except ValueError:
            return 0

    def _check_total(self, sent: int, total: int) -> None:
        limit = self.core.settings.max_conversation_attachment_bytes
        if sent + total > limit:
            raise AttachmentError(
                f"this conversation already holds {sent} bytes of your attachments; "
                f"{total} more would pass the limit of {limit} "
                "(ChatSettings.max_conversation_attachment_bytes)"
            )

    def _reserve(self, conversation: str, total: int) -> None:
        """Check ``conversation``'s total and add ``total`` to it at once (under a lock and
        in one store transaction, so two sends, of this process or another sharing the
        store, never pass the limit together)."""
        store = self.core.store
        with self._reserving, store.transaction():
            sent = self._sent_bytes(conversation)
            self._check_total(sent, total)
            store.set_setting(_TOTAL_KEY + conversation, str(sent + total))

    def count(self, conversation: str, delta: int) -> None:
        """Add ``delta`` bytes to what this datasite shares in ``conversation``."""
        store = self.core.store
        with self._reserving, store.transaction():
            total = max(0, self._sent_bytes(conversation) + delta)
            store.set_setting(_TOTAL_KEY + conversation, str(total))

    # ------------------------------------------------------------------ receiving

    def check_incoming(self, message: ChatMessage, actor: str) -> Refusal | None:
        """Refuse a message whose attachments name a place outside the sender's own app
        folder, or repeat an id or name (the reason lands in ``failed_messages``)."""
        ids, names = set(), set()
        for a in message.attachments:
            if self.states.url_path(actor, a) is None:
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

    def _find(
        self, msg_id: str, attachment_id: str, sender: str | None
    ) -> tuple[ChatMessage, Attachment]:
        self.core.check_open()
        message = self.core.get(msg_id, sender=sender) if isinstance(msg_id, str) else None
        if message is None:
            raise AttachmentError(f"no message {msg_id!r}")
        for a in message.attachments:
            if a.id == attachment_id:
                return message, self.states.shown(message, a)
        raise AttachmentError(f"message {msg_id!r} has no attachment {attachment_id!r}")

    @staticmethod
    def _require_available(msg_id: str, attachment: Attachment) -> None:
        if attachment.state is not AttachmentState.AVAILABLE:
            raise AttachmentError(
                f"attachment {attachment.id} ({attachment.name}) of {msg_id} is "
                f"{attachment.state}: {_WHY[attachment.state]}",
                state=attachment.state.value,
            )

    def path(self, msg_id: str, attachment_id: str, sender: str | None = None) -> Path:
        message, attachment = self._find(msg_id, attachment_id, sender)
        self._require_available(msg_id, attachment)
        path = self.states.local_path(message.sender, attachment)
        assert path is not None  # available implies a path
        return path

    def open(self, msg_id: str, attachment_id: str, sender: str | None = None) -> BinaryIO:
        message, attachment = self._find(msg_id, attachment_id, sender)
        self._require_available(msg_id, attachment)
        opened = self.states.open(message, attachment)
        if opened is None:  # changed since it was looked at
            state = self.states.state(message, attachment)
            if state is AttachmentState.AVAILABLE:
                state = AttachmentState.CORRUPT
            raise AttachmentError(
                f"attachment {attachment_id} ({attachment.name}) of {msg_id} is {state}: "
                f"{_WHY[state]}",
                state=state.value,
            )
        return opened

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
        return [(m, a) for m in self.states.with_states(messages) for a in m.attachments]

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

    def on_status(self, msg_id: str, status: MessageStatus, error: str | None) -> None:
        """A status listener: when the recipient refused a one-to-one message, it keeps
        no read of its attachments (they are marked revoked here; the files stay)."""
        if status is not MessageStatus.FAILED:
            return
        core = self.core
        found = core.store.get(msg_id, sender=core.email)
        message = found.message if found is not None else None
        if message is None or not message.attachments or message.group_id:
            return
        with core.store.transaction():
            self.withdraw(msg_id, core.email, [], AttachmentState.REVOKED)
        self._rewrite_grants(msg_id)

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
        """The sender deleted ``message``: its files go (:func:`remove_share`); the
        recipients learn it from the deletion itself."""
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


_WHY = {
    AttachmentState.PENDING: "not (fully) synced here yet",
    AttachmentState.CORRUPT: "its content does not match the SHA-256 the sender sent",
    AttachmentState.REVOKED: "the sender revoked access",
    AttachmentState.DELETED: "the sender deleted it",
    AttachmentState.AVAILABLE: "",
}


def _checked_size(path: Path, limit: int) -> int:
    """The size of the regular file ``path``, readable and at most ``limit`` bytes; else
    :class:`AttachmentError` saying what is wrong."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise AttachmentError(f"cannot attach {path}: no such file") from exc
    except OSError as exc:
        raise AttachmentError(f"cannot attach {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise AttachmentError(f"cannot attach {path}: not a regular file ({what})")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AttachmentError(f"cannot attach {path}: {exc.strerror or exc}") from exc
    if info.st_size > limit:
        raise AttachmentError(
            f"{path.name} is {info.st_size} bytes; the limit is {limit} "
            "per file (ChatSettings.max_attachment_bytes)"
        )
    return info.st_size
