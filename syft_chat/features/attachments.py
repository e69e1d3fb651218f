"""Attachments: files shared with a message, kept in the sender's own datasite.

Sending copies each file (never moves it) into
``datasites/<sender>/app_data/<app>/attachments/<msg_id>/<name>``, beside permission files
that grant read to exactly the recipients (:mod:`syft_chat.features.attachment_shares`);
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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from syft_chat.errors import AttachmentError, InvalidMessageError
from syft_chat.features.attachment_shares import Shares
from syft_chat.features.attachment_states import AttachmentStates
from syft_chat.features.attachment_watch import AttachmentWatch
from syft_chat.interfaces import GROUP_PREFIX, MessageQuery, StoredMessage
from syft_chat.messaging.kinds import Announce, Refusal
from syft_chat.models import (
    Attachment,
    AttachmentState,
    ChatMessage,
    ChatResponse,
    MessageKind,
    MessageStatus,
)
from syft_chat.plugins.syft_rpc.shared_files import remove_share, write_share_permissions

if TYPE_CHECKING:
    from syft_chat.features.groups import Groups
    from syft_chat.messaging.core import MessagingCore

__all__ = [
    "AttachmentControlRule",
    "Attachments",
]

log = logging.getLogger("syft_chat.attachments")

_KIND = MessageKind.ATTACHMENTS


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
        self.shares = Shares(core, self.states, app)
        self._app = app

    def folder(self, msg_id: str) -> Path:
        """This datasite's folder of its message ``msg_id``'s attachments."""
        return self.shares.folder(msg_id)

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
        self.shares.count(
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
