"""syft-event's periodic cleanup of old request files, as the chat transport runs it.

syft-event deletes the requests (and their answers) older than 30 days in the app's
folder, once at start and then every hour, by loading each request file whole to read its
``created`` field. :class:`HeldCleanup` changes two things:

* its first pass waits until the requests that waited for us are answered (it competed
  with that backlog for the interpreter: 10,000 waiting drained at ~390 msg/s with it,
  ~480 without);
* a file over the transport's request limit, or anything but a plain file (a symlink to
  ``/dev/zero``...), is never loaded (a peer could otherwise make every pass read
  gigabytes): it was refused unread when it came;
* a file whose own modification time is past the cutoff is deleted, with its answer,
  whatever ``created`` it carries (a sender's future date no longer keeps it forever), and
  without being loaded.
"""

from __future__ import annotations

import stat
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["HeldCleanup"]


class HeldCleanup:
    """Stands in for syft-event's ``PeriodicCleanup`` (``start``/``stop``/``is_running``),
    starting it only once :meth:`release` is called too."""

    def __init__(self, cleanup: Any, *, max_bytes: int) -> None:
        self._cleanup = cleanup
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._wanted = self._released = self._stopped = False
        one = getattr(cleanup, "_cleanup_single_request", None)
        if one is not None:  # syft-event's per-file step, guarded by the size limit
            self._one = one
            cleanup._cleanup_single_request = self._cleanup_one

    # under the lock throughout: a start racing a stop must not leave a cleanup thread
    # running after it (starting one only spawns its thread)
    def start(self) -> None:  # syft-event's start()
        with self._lock:
            self._wanted = True
            if self._released and not self._stopped:
                self._cleanup.start()

    def release(self) -> None:
        """The backlog is answered: start the cleanup if syft-event asked for it."""
        with self._lock:
            self._released = True
            if self._wanted and not self._stopped:
                self._cleanup.start()

    def hold(self) -> None:
        """The server is stopping: no start from now on (a backlog that ends meanwhile
        must not begin a first pass that :meth:`stop` would then wait for)."""
        with self._lock:
            self._stopped = True

    def stop(self) -> None:  # syft-event's stop()
        with self._lock:
            self._stopped = True
            self._cleanup.stop()

    def is_running(self) -> bool:
        return bool(self._cleanup.is_running())

    def _cleanup_one(self, request_path: Path, cutoff_date: datetime) -> None:
        try:
            st = request_path.lstat()
        except OSError:
            return  # gone meanwhile
        if st.st_mtime >= cutoff_date.timestamp():
            if stat.S_ISREG(st.st_mode) and st.st_size <= self._max_bytes:
                self._one(request_path, cutoff_date)  # judged by the created inside it
        else:  # landed here over 30 days ago, whatever it says (or too large, a symlink...)
            request_path.unlink(missing_ok=True)
            request_path.with_suffix(".response").unlink(missing_ok=True)
