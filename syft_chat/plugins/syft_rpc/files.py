"""Atomic file writes (readers see the old file or the whole new one, never a part), and
which folder is at a path (to notice one deleted and re-created)."""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "folder_id", "replacing", "sweep_temp_files", "temp_name"]


def atomic_write(
    path: Path,
    data: bytes,
    *,
    tmp_dir: Path | None = None,
    durable: bool = False,
    sync_folder: bool = True,
) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    ``durable``: ``fsync`` the file before the rename and ``path``'s folder after it, so
    that the new file survives a power cut once this returns (not only a crash of the
    process); for files that carry a confirmation. ``sync_folder=False`` syncs only the
    file: after a power cut ``path`` is then either whole or (the rename lost) absent,
    never empty or torn; for a file that is written again when found missing.

    ``tmp_dir`` should be an *unwatched* folder on the same filesystem: a
    rename within a watched folder makes watchdog hold the event for up to
    0.5 s while it pairs the move's two halves, and a sync client may see the
    temporary file. Without it (or across filesystems) the temporary file goes
    beside ``path``, named with a leading dot and a ``.tmp`` suffix, which
    watchers matching ``*.request`` / ``*.response`` and SyftBox's sync ignore.
    """
    name = temp_name(path)
    if tmp_dir is not None:
        tmp = tmp_dir / name
        try:
            _write_and_rename(tmp, path, data, durable, sync_folder)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOENT):
                raise
            # another filesystem, or the temp folder is gone: fall back below
    _write_and_rename(path.with_name(name), path, data, durable, sync_folder)


def temp_name(path: Path) -> str:
    """A temporary file's name for ``path``: a dot name ending in ``.tmp`` (sync ignores it)."""
    return f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"


@contextmanager
def replacing(
    path: Path, *, tmp: Path | None = None, durable: bool = False, sync_folder: bool = True
) -> Iterator[BinaryIO]:
    """Write ``path`` through the temporary file ``tmp`` (default: beside it) opened for the
    block: renamed over ``path`` when the block ends, removed if it raises. ``durable``:
    the file, then (``sync_folder``) ``path``'s folder, are ``fsync``-ed (see
    :func:`atomic_write`)."""
    tmp = tmp if tmp is not None else path.with_name(temp_name(path))
    try:
        with open(tmp, "wb") as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and sync_folder:
        _fsync_dir(path.parent)


def _write_and_rename(tmp: Path, path: Path, data: bytes, durable: bool, sync_folder: bool) -> None:
    with replacing(path, tmp=tmp, durable=durable, sync_folder=sync_folder) as fh:
        fh.write(data)


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


def sweep_temp_files(folder: Path, older_than: float) -> int:
    """Remove the temporary files (:func:`temp_name`) in ``folder`` last written more than
    ``older_than`` seconds ago: a write that a crash (or a full disk) interrupted left them;
    a write under way takes milliseconds. Returns how many were removed."""
    removed = 0
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def folder_id(path: Path) -> tuple[int, int] | None:
    """Which folder is at ``path`` (device and inode), ``None`` if none is."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
