"""Watching incoming attachments until they are whole, and announcing each once.

A checker thread looks at the pending ones every ``attachment_check_interval`` seconds (a
``stat`` each; a file is hashed once, when its size is right) and calls
``chat_attachment_available`` once per attachment. What it watches and what it announced are
kept in the store, so both survive a restart; two processes sharing a store announce each
attachment once (it is claimed in one transaction).

What it watches is bounded: a message is watched for ``attachment_watch_seconds`` at most,
and at most ``attachment_watch_max`` messages at once (the oldest dropped first), so a peer
announcing files that never come costs nothing for long. Before its first look, the thread
runs the one-off work it was started with (the sender's orphan sweep).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
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
        self._dated = False
        # nothing pending at the last look (then the store is read again only every
        # _RECHECK_SECONDS, for what another process may have left: an idle client does
        # not query its store every second)
        self._empty_since: float | None = None
        self._tracked = 0  # how many track() calls so far (an empty look is only trusted
        # if none came while it looked)

    def track(self, message: ChatMessage) -> None:
        """An incoming message with attachments was stored (inside its transaction):
        watch it until each is available or withdrawn, or its time runs out."""
        if message.attachments and message.sender != self.core.email:
            pending = self._pending()
            if not any(k[:2] == (message.sender, message.msg_id) for k in pending):
                pending.append((message.sender, message.msg_id, time.time()))
                del pending[: max(0, len(pending) - self.core.settings.attachment_watch_max)]
                self.core.store.set_setting(_PENDING_KEY, _dump(pending))
                self._tracked += 1
                self._empty_since = None

    def _pending(self) -> list[tuple[str, str, float]]:
        """``[sender, msg_id, since]`` of each watched message, oldest first (an entry
        written before ``since`` existed is watched from now)."""
        try:
            loaded = json.loads(self.core.store.setting(_PENDING_KEY) or "[]")
        except ValueError:
            return []
        now, found = time.time(), []
        for k in loaded if isinstance(loaded, list) else []:
            if isinstance(k, list) and len(k) in (2, 3):
                since = k[2] if len(k) == 3 and isinstance(k[2], (int, float)) else now
                found.append((str(k[0]), str(k[1]), float(since)))
        return found

    def start(self, first: Callable[[], object] | None = None) -> None:
        """Start the checker thread (it announces each pending attachment once whole);
        it runs ``first`` once before its first look (an error there is logged)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run,
                args=(first,),
                name=f"syft-chat-attachments[{self.core.email}]",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self, first: Callable[[], object] | None) -> None:
        if first is not None:
            try:
                first()
            except Exception:
                log.exception("attachment start-up work failed")
        while not self._stop.wait(self.core.settings.attachment_check_interval):
            empty_since = self._empty_since
            if empty_since is not None and time.monotonic() - empty_since < _RECHECK_SECONDS:
                continue
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
            if not self._dated:  # entries of an older version get their time, once
                self._dated = True
                with store.transaction():
                    store.set_setting(_PENDING_KEY, _dump(self._pending()))
            cutoff = time.time() - self.core.settings.attachment_watch_seconds
            tracked = self._tracked
            pending = self._pending()
            if not pending and self._empty_since is None and tracked == self._tracked:
                self._empty_since = time.monotonic()
            for sender, msg_id, since in pending:
                fresh: list[Attachment] = []
                message: ChatMessage | None = None
                if since < cutoff:  # it never came whole: no longer watched
                    done = True
                else:
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
                        left = [k for k in self._pending() if k[:2] != (sender, msg_id)]
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


#: how often (seconds) an idle checker reads the store anyway (see ``_empty_since``)
_RECHECK_SECONDS = 30.0


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
