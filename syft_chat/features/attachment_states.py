"""The state of an attachment as this datasite sees it, from its own synced copy.

The copy is looked for only at ``datasites/<sender>/app_data/<app>/attachments/<folder>/<name>``
in this datasite's SyftBox folder (a url naming anything else has no local path: the sender's
claimed path is never trusted), and never through a symlink: a sender's synced datasite may
hold one anywhere from ``datasites/<sender>/`` down (e.g. ``attachments -> /home/me``),
which would make a local file pass for the sender's; see
:mod:`syft_chat.features.attachments`.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

from syft_chat.models import Attachment, AttachmentState, ChatMessage
from syft_chat.plugins.syft_rpc.shared_files import FileCheck, open_verified

__all__ = ["AttachmentStates", "attachment_url"]

_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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


class AttachmentStates:
    """Where attachments live here and what state each is in.

    :param datasites: this datasite's local ``datasites/`` folder (its own and the synced
        copies of the others').
    :param app: the app's folder name under ``app_data``.
    """

    def __init__(self, *, datasites: Path, app: str) -> None:
        self._datasites = datasites
        self.app = app
        self._files = FileCheck()

    def _root(self, sender: str) -> Path:
        return self._datasites / sender / "app_data" / self.app / "attachments"

    def folder(self, sender: str, msg_id: str) -> Path:
        """The folder of ``sender``'s message ``msg_id``'s attachments."""
        return self._root(sender) / msg_id

    def url_path(self, sender: str, attachment: Attachment) -> Path | None:
        """Where ``sender``'s attachment would be synced here, from its url alone;
        ``None`` if the url names a place outside
        ``datasites/<sender>/app_data/<app>/attachments/<folder>/``."""
        parts = _url_parts(attachment.url)
        if parts is None:
            return None
        host, path = parts
        expected = ["app_data", self.app, "attachments"]
        if host != sender or len(path) != 5 or path[:3] != expected:
            return None
        folder, name = path[3], path[4]
        if not _FOLDER.match(folder) or folder in (".", "..") or name != attachment.name:
            return None
        return self._root(sender) / folder / name

    def local_path(self, sender: str, attachment: Attachment) -> Path | None:
        """:meth:`url_path`, if no folder on the way from ``datasites/<sender>/`` down to
        the file's is a symlink (or not a folder); ``None`` otherwise. A folder not synced
        yet is no symlink."""
        candidate = self.url_path(sender, attachment)
        if candidate is None:
            return None
        here = self._datasites
        for part in candidate.parent.relative_to(here).parts:
            here = here / part
            try:
                mode = os.lstat(here).st_mode
            except FileNotFoundError:
                break  # not synced (yet): nothing below it either
            except OSError:
                return None
            if not stat.S_ISDIR(mode):  # a symlink, or a file where a folder belongs
                return None
        return candidate

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

    def open(self, message: ChatMessage, attachment: Attachment) -> BinaryIO | None:
        """The attachment's local copy opened for reading, if it is ``available`` in the
        very descriptor handed out (:func:`open_verified`); else ``None``."""
        if self.state(message, attachment) is not AttachmentState.AVAILABLE:
            return None
        path = self.local_path(message.sender, attachment)
        if path is None:
            return None
        return open_verified(path, attachment.size, attachment.sha256)

    def shown(self, message: ChatMessage, attachment: Attachment) -> Attachment:
        state = self.state(message, attachment)
        path = self.local_path(message.sender, attachment)
        where = str(path) if state is AttachmentState.AVAILABLE and path is not None else None
        return attachment.model_copy(update={"state": state, "local_path": where})

    def with_states(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` with each attachment's current state."""
        out = []
        for m in messages:
            if m.attachments:
                states = [self.shown(m, a) for a in m.attachments]
                m = m.model_copy(update={"attachments": states})
            out.append(m)
        return out
