"""Atomic file writes: readers see the old file or the whole new one, never a part."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(
    path: Path, data: bytes, *, tmp_dir: Path | None = None, durable: bool = False
) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    ``durable``: ``fsync`` the file before the rename and ``path``'s folder after it, so
    that the new file survives a power cut once this returns (not only a crash of the
    process); for files that carry a confirmation.

    ``tmp_dir`` should be an *unwatched* folder on the same filesystem: a
    rename within a watched folder makes watchdog hold the event for up to
    0.5 s while it pairs the move's two halves, and a sync client may see the
    temporary file. Without it (or across filesystems) the temporary file goes
    beside ``path``, named with a leading dot and a ``.tmp`` suffix, which
    watchers matching ``*.request`` / ``*.response`` and SyftBox's sync ignore.
    """
    name = f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    if tmp_dir is not None:
        tmp = tmp_dir / name
        try:
            _write_and_rename(tmp, path, data, durable)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOENT):
                raise
            # another filesystem, or the temp folder is gone: fall back below
    _write_and_rename(path.with_name(name), path, data, durable)


def _write_and_rename(tmp: Path, path: Path, data: bytes, durable: bool) -> None:
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename into ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
