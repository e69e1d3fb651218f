"""Files shared from one's own datasite: an atomic, hashed copy, the two permission files
that grant read to exactly the recipients, and the state of a synced copy.

Each message's attachments live in their own folder,
``datasites/<sender>/app_data/<app>/attachments/<msg_id>/``, beside two permission files:

* ``syft.pub.yaml`` (the Go server): ``terminal: true`` (nothing granted above the folder
  reaches into it) and, per file, one rule granting ``read`` to its recipients;
* ``syftperm.yaml`` (the legacy Python server): first a ``disallow`` of everything for
  everyone (the legacy format has no ``terminal``: a later matching rule wins, so this
  shuts out a grant of a folder above, e.g. a public-read ``app_data/``), then per file,
  one ``read`` rule per recipient.

Revoking rewrites both with no grant at all (only the owner keeps access). Both are
produced with ``yaml.safe_dump`` from data, so no email or name can inject a rule.

A synced copy is checked by :class:`FileCheck` and handed out by :func:`open_verified`:
the file is opened once (never through a symlink) and the bytes of *that* descriptor are
hashed, so what is handed out is what was checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from syft_chat.filenames import PERMISSION_FILES
from syft_chat.plugins.syft_rpc.files import atomic_write

__all__ = [
    "FileCheck",
    "copy_hashing",
    "open_verified",
    "remove_share",
    "write_share_permissions",
]

_HEADER = "# written by syft-chat: read access to these attachments for their recipients only\n"
_CHUNK = 1024 * 1024


def _grants(grants: Mapping[str, Iterable[str]]) -> list[tuple[str, list[str]]]:
    return [(name, sorted(set(grants[name]))) for name in sorted(grants) if grants[name]]


def _pub_rules(grants: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    rules = [{"pattern": name, "access": {"read": readers}} for name, readers in _grants(grants)]
    return {"terminal": True, "rules": rules}


#: the legacy file's first rule: nothing for anyone, whatever a folder above grants (the
#: owner keeps access: the server never applies rules to a datasite's owner)
_LEGACY_SHUT = {
    "path": "**",
    "user": "*",
    "permissions": ["read", "write", "create", "admin"],
    "type": "disallow",
}


def _legacy_rules(grants: Mapping[str, Iterable[str]]) -> list[dict[str, Any]]:
    return [_LEGACY_SHUT] + [
        {"path": name, "user": reader, "permissions": ["read"]}
        for name, readers in _grants(grants)
        for reader in readers
    ]


def write_share_permissions(
    folder: Path, grants: Mapping[str, Iterable[str]], *, durable: bool = False
) -> None:
    """(Re)write both permission files of ``folder``: read of each file named in ``grants``
    for exactly its readers, nothing else for anyone (``{}``: all revoked). Names are safe
    (:func:`~syft_chat.filenames.safe_name` leaves no glob character), so each rule matches
    one file. Atomic, so a sync client never uploads half a rule."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (
        ("syft.pub.yaml", _pub_rules(grants)),
        ("syftperm.yaml", _legacy_rules(grants)),
    ):
        text = _HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        atomic_write(folder / name, text.encode("utf-8"), durable=durable)


def copy_hashing(source: Path, dest: Path, *, limit: int, durable: bool = False) -> tuple[int, str]:
    """Copy ``source`` to ``dest`` (a temporary file beside it, then a rename), hashing
    while copying; ``(bytes copied, sha256 hex)``. Raises ``ValueError`` (nothing left
    behind) if the source grows past ``limit`` bytes while being read."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")  # ignored by sync
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ValueError(f"{source.name} grew past {limit} bytes while being copied")
                digest.update(chunk)
                out.write(chunk)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def remove_share(folder: Path) -> None:
    """Delete a shared folder: its shared files first (nothing is left to read), then its
    permission files and the folder. Nothing is written, so it works on a full disk. If a
    shared file cannot be deleted, its grant is withdrawn (best effort) and the error
    raised."""
    if not folder.is_dir():
        return
    failed: OSError | None = None
    for child in folder.iterdir():
        if child.name in PERMISSION_FILES:
            continue
        try:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink(missing_ok=True)
        except OSError as exc:
            failed = failed or exc
    if failed is not None:
        with contextlib.suppress(OSError):
            write_share_permissions(folder, {})
        raise failed
    shutil.rmtree(folder, ignore_errors=True)


class FileCheck:
    """Whether a local copy is whole and matches its hash, hashing each version once.

    ``check(path, size, sha256)`` is ``"missing"`` (absent, or no regular file),
    ``"partial"`` (another size: still syncing), ``"corrupt"`` (full size, other hash)
    or ``"ok"``. A result is remembered per (path, size, mtime, inode, ctime): reading a
    history does not hash a 100 MB file again until it changes. The ctime is in the key
    because a file's owner can put its mtime back after rewriting it (``os.utime``), never
    its ctime.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[tuple[int, int, int, int], str]] = {}

    def check(self, path: Path, size: int, sha256: str) -> str:
        try:
            info = os.lstat(path)
        except OSError:
            return "missing"
        if not stat.S_ISREG(info.st_mode):  # a symlink could point anywhere: never followed
            return "corrupt"
        if info.st_size != size:
            return "partial"
        key = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns)
        with self._lock:
            seen = self._seen.get(str(path))
        if seen is not None and seen[0] == key:
            return "ok" if seen[1] == sha256 else "corrupt"
        digest = _hash(path)
        if digest is None:
            return "missing"
        with self._lock:
            self._seen[str(path)] = (key, digest)
        return "ok" if digest == sha256 else "corrupt"


def open_verified(path: Path, size: int, sha256: str) -> BinaryIO | None:
    """``path`` opened for reading, if it is a regular file (not a symlink) of ``size``
    bytes whose SHA-256 is ``sha256``; else ``None``. The descriptor is opened once and
    its own bytes are hashed, then it is rewound and returned: a file swapped or replaced
    by a symlink after an earlier check is never handed out. (A writer of that very file,
    on this machine, could still change it while it is read.)"""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    fh = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            fh.close()
            return None
        digest = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            fh.close()
            return None
        fh.seek(0)
        os.set_blocking(fh.fileno(), True)
    except BaseException:
        fh.close()
        raise
    return fh


def _hash(path: Path) -> str | None:
    """The SHA-256 of the regular file at ``path`` (never through a symlink, never
    blocking on a FIFO swapped in); ``None`` if it is not one."""
    digest = hashlib.sha256()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
