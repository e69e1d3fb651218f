"""Atomic file writes: readers see the old file or the whole new one, never a part."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

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
            _write_and_rename(tmp, path, data)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOENT):
                raise
            # another filesystem, or the temp folder is gone: fall back below
    _write_and_rename(path.with_name(name), path, data)


def _write_and_rename(tmp: Path, path: Path, data: bytes) -> None:
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
