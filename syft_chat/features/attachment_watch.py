"""Watching incoming attachments until they are whole, and announcing each once.

A checker thread looks at the pending ones every ``attachment_check_interval`` seconds (a
``stat`` each; a file is hashed once, when its size is right) and calls
``chat_attachment_available`` once per attachment. What it watches and what it announced are
kept in the store, so both survive a restart; two processes sharing a store announce each
attachment once (it is claimed in one transaction).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING

from syft_chat.errors import StorageError
from syft_chat.features.attachment_states import AttachmentStates
from syft_chat.models import Attachment, AttachmentState, ChatMessage

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = ["AttachmentWatch"]

log = logging.getLogger("syft_chat.attachments")

_PENDING_KEY = "attachments.pending"


class AttachmentWatch:
    """The incoming attachments still to announce, and the thread that looks at them."""

    def __init__(self, core: MessagingCore, states: AttachmentStates) -> None:
        self.core = core
        self._states = states
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
                        shown = self._states.with_states([stored.message if stored else message])[0]
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
            state = self._states.state(message, a)
            if state is AttachmentState.AVAILABLE:
                fresh.append(a)
            elif state in (AttachmentState.PENDING, AttachmentState.CORRUPT):
                waiting = True  # a corrupt copy may still be replaced by the right one
        return not waiting, fresh


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
