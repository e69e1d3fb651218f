"""The sender's side of attachments: sharing files from one's own datasite.

:meth:`Shares.prepare` checks the files against the limits and the plugins, reserves their
bytes in the conversation's total, and copies them (hashed, atomically) into
``datasites/<me>/app_data/<app>/attachments/<msg_id>/`` beside permission files that grant
read to exactly the recipients (:mod:`syft_chat.plugins.syft_rpc.shared_files`); a failure
leaves nothing behind. :meth:`Shares.sweep_orphans` removes the folders a killed send left.
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
from typing import TYPE_CHECKING

from syft_chat.dispatch import HookDecisionError
from syft_chat.errors import AttachmentError
from syft_chat.features.attachment_states import AttachmentStates, attachment_url
from syft_chat.filenames import safe_name, unique_name
from syft_chat.models import MAX_ATTACHMENTS, Attachment, AttachmentState
from syft_chat.plugins.syft_rpc.shared_files import (
    copy_hashing,
    remove_share,
    write_share_permissions,
)

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = ["Shares"]

log = logging.getLogger("syft_chat.attachments")

_TOTAL_KEY = "attachments.bytes:"
#: a folder without a stored message is an orphan once untouched this long (seconds)
_ORPHAN_AGE = 3600.0


class Shares:
    """This datasite's shared attachment folders and its per-conversation totals."""

    def __init__(self, core: MessagingCore, states: AttachmentStates, app: str) -> None:
        self.core = core
        self._states = states
        self._app = app
        self._reserving = threading.Lock()

    def folder(self, msg_id: str) -> Path:
        """This datasite's folder of its message ``msg_id``'s attachments."""
        return self._states.folder(self.core.email, msg_id)

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
        root = self._states.folder(self.core.email, "x").parent
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
