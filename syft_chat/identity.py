"""Datasite identities: the one definition of a canonical datasite email.

A datasite is named by its email, and on the syft-rpc transport the sender of a request
*is* the name of the folder it sits in. Folder names are case-sensitive paths that can
hold anything, so two names a person cannot tell apart (``alice@openmined.org`` and
``alice@openmined.org.``, or one with a Cyrillic look-alike letter or a zero-width space) would be
two senders. syft-chat therefore accepts one spelling of each identity, the
**canonical form**:

* exactly one ``@``, at most 254 characters;
* no control, format (zero-width, bidi), private-use, unassigned or space character
  anywhere;
* the local part is lower-case ASCII letters, digits and ``. _ % + -`` (at most 64; no
  leading, trailing or doubled dot);
* the domain is lower-case ASCII after IDNA (``str.encode("idna")``, so a Unicode
  domain is written as its ``xn--`` form): dot-separated labels of letters, digits and
  hyphens, no empty label, no trailing dot.

:func:`canonical_email` turns what a person typed into the canonical form (it lower-cases
ASCII and IDNA-encodes a Unicode domain; everything else that is not canonical raises
:class:`InvalidIdentityError`). :func:`is_canonical` says whether a name already *is*
canonical: that is the test a sender folder must pass. A folder name with upper case is
refused, not folded: SyftBox folder names are case-sensitive, so ``Alice@…`` is a
different folder from ``alice@…`` and folding would merge two writers into one sender.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from syft_chat.errors import InvalidMessageError

__all__ = ["InvalidIdentityError", "canonical_email", "is_canonical"]

_LOCAL = re.compile(r"^[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# control, format (zero-width, bidi), surrogate, private-use, unassigned, separators
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


class InvalidIdentityError(InvalidMessageError):
    """A value that is not a datasite email (see :mod:`syft_chat.identity`)."""


def canonical_email(value: object) -> str:
    """The canonical form of the datasite email ``value``.

    (Answers for the few thousand addresses seen last are remembered: it runs several
    times per message. A refusal is never remembered; it raises again each time.)

    Lower-cases ASCII letters and IDNA-encodes a Unicode domain; raises
    :class:`InvalidIdentityError` (saying why, with ``value`` escaped) for anything
    else that is not canonical: control or invisible characters, surrounding spaces,
    no ``@``, a non-ASCII local part, a trailing dot, characters outside the allowed set.
    """
    if not isinstance(value, str):
        raise InvalidIdentityError(f"expected a datasite email, got {type(value).__name__}")
    return _canonical(value)


@functools.lru_cache(maxsize=4096)
def _canonical(value: str) -> str:
    shown = ascii(value)
    if not value or len(value) > 254:
        raise InvalidIdentityError(f"{shown} is not a datasite email: empty or too long")
    for char in value:
        if unicodedata.category(char) in _INVISIBLE:
            raise InvalidIdentityError(
                f"{shown} is not a datasite email: it contains the control, invisible "
                f"or space character U+{ord(char):04X}"
            )
    local, at, domain = value.rpartition("@")
    if not at or not local or "@" in local:
        raise InvalidIdentityError(f"{shown} is not a datasite email: it needs exactly one '@'")
    if not local.isascii():
        raise InvalidIdentityError(f"{shown} is not a datasite email: non-ASCII local part")
    local = local.lower()
    if len(local) > 64 or not _LOCAL.match(local):
        raise InvalidIdentityError(
            f"{shown} is not a datasite email: the local part may hold a-z 0-9 . _ % + - "
            "(no leading, trailing or doubled dot)"
        )
    if domain.endswith(".") or domain.startswith("."):
        raise InvalidIdentityError(f"{shown} is not a datasite email: a leading or trailing dot")
    try:
        domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidIdentityError(f"{shown} is not a datasite email: invalid domain") from None
    if not all(_LABEL.match(label) for label in domain.split(".")):
        raise InvalidIdentityError(
            f"{shown} is not a datasite email: domain labels may hold a-z 0-9 and inner hyphens"
        )
    return f"{local}@{domain}"


def is_canonical(value: object) -> bool:
    """Whether ``value`` is a datasite email already in canonical form (see the module)."""
    try:
        return canonical_email(value) == value
    except InvalidIdentityError:
        return False
