"""Safe file names: what a shared file is called in a folder, a permission rule and a url.

A kernel helper: :class:`~syft_chat.models.Attachment` sanitises every name with it, on
send and on receive, so a name from a peer never escapes the folder it is put in.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["PERMISSION_FILES", "safe_name", "unique_name"]

#: the permission files of a SyftBox folder (never a shared file's name)
PERMISSION_FILES = ("syft.pub.yaml", "syftperm.yaml")
_MAX_NAME_BYTES = 120
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|\[\]{}]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def safe_name(name: str) -> str:
    """A file name that is safe in any folder, on any system, and in a permission rule.

    Only the last path component is kept (``../../etc/passwd`` is ``passwd``); control
    and format characters, path separators and glob / Windows-reserved characters
    become ``_``; leading and trailing dots and spaces go; a Windows device name, a
    permission file's name, a hidden or temporary name gets a ``_`` in front / behind;
    at most 120 UTF-8 bytes (the extension kept); an empty result is ``file``.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = re.split(r"[/\\]", text)[-1]
    text = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    text = _UNSAFE.sub("_", text).strip(" .")
    if not text or text in (".", ".."):
        text = "file"
    if _WINDOWS_RESERVED.match(text) or text.lower() in PERMISSION_FILES:
        text = f"_{text}"
    if text.lower().endswith(".tmp"):  # sync clients ignore temporary files
        text = f"{text}_"
    if len(text.encode("utf-8")) > _MAX_NAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        ext = f".{ext}" if dot and 0 < len(ext.encode()) <= 16 else ""
        stem = stem if ext else text
        room = _MAX_NAME_BYTES - len(ext.encode("utf-8"))
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
        text = (stem or "file") + ext
    return text


def _split_ext(name: str) -> tuple[str, str]:
    """``(stem, ".ext")`` as :func:`safe_name` keeps an extension (at most 16 bytes)."""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext.encode("utf-8")) <= 16:
        return stem, f".{ext}"
    return name, ""


def unique_name(name: str, taken: set[str]) -> str:
    """``name`` (a :func:`safe_name`), or ``<stem> (n)<ext>`` with the smallest ``n >= 2``
    whose lower case is not in ``taken`` (lower-case names). The stem is cut first where
    needed, so the result stays within :func:`safe_name`'s 120 bytes: it is its own
    ``safe_name``, and what the file, its url, its grant and the peer call it agree."""
    if name.lower() not in taken:
        return name
    stem, ext = _split_ext(name)
    n = 2
    while True:
        suffix = f" ({n}){ext}"
        room = _MAX_NAME_BYTES - len(suffix.encode("utf-8"))
        cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
        candidate = (cut or "file") + suffix
        if candidate.lower() not in taken:
            return candidate
        n += 1
