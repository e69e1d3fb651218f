"""Contact policy: an allow-list, a block-list and a "contacts only" mode.

The policy is kept in the database (``contacts`` and ``chat_settings``) and
enforced twice:

* in the permission files the transport writes, where the SyftBox dialect
  can say it (the legacy ``syftperm.yaml`` can deny a user; the current
  ``syft.pub.yaml`` can only grant, so there a block is enforced in
  contacts-only mode, where only contacts are granted), so that a blocked
  sender cannot even write into your chat folder; every change rewrites the
  files atomically;
* at the receiver, by the built-in ``contacts`` plugin's
  ``chat_accept_message``: a blocked sender's message is refused into
  ``failed_messages``, never stored in ``messages``, never shown to
  listeners or bots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syft_chat.errors import InvalidMessageError
from syft_chat.identity import InvalidIdentityError, canonical_email
from syft_chat.models import ContactMode, ContactPolicy

if TYPE_CHECKING:
    from syft_chat.messaging.core import MessagingCore

__all__ = ["ContactMode", "ContactPolicy", "Contacts"]

_MODES = ("open", "contacts_only")


def _email(value: object) -> str:
    """The canonical form (lower case, IDNA domain) of an email a person typed."""
    return canonical_email(value.strip() if isinstance(value, str) else value)


def _canonical(emails: list[str]) -> frozenset[str]:
    """Stored contacts in canonical form (a row that has none can match no sender)."""
    found = set()
    for email in emails:
        try:
            found.add(canonical_email(email))
        except InvalidIdentityError:
            continue
    return frozenset(found)


class Contacts:
    """The contact policy: kept in the store, pushed to the transport's permission files."""

    def __init__(self, core: MessagingCore) -> None:
        self._core = core
        self._policy = self._load()
        core.transport.update_access(self._policy)  # permission files reflect it from the start

    def _load(self) -> ContactPolicy:
        store = self._core.store
        contacts = store.contacts()
        mode = store.setting("contact_mode")
        return ContactPolicy(
            mode=mode if mode in _MODES else "open",  # type: ignore[arg-type]
            allowed=_canonical([e for e, s in contacts.items() if s == "allowed"]),
            blocked=_canonical([e for e, s in contacts.items() if s == "blocked"]),
        )

    def _changed(self) -> ContactPolicy:
        """Reload the policy and push it to the transport (permission files)."""
        self._policy = self._load()
        self._core.transport.update_access(self._policy)
        return self._policy

    @property
    def policy(self) -> ContactPolicy:
        return self._policy

    def _set(self, email: str, status: str | None) -> ContactPolicy:
        self._core.check_open()
        self._core.store.set_contact(_email(email), status)
        return self._changed()

    def block(self, email: str) -> ContactPolicy:
        return self._set(email, "blocked")

    def allow(self, email: str) -> ContactPolicy:
        return self._set(email, "allowed")

    def forget_contact(self, email: str) -> ContactPolicy:
        return self._set(email, None)

    def set_contact_mode(self, mode: ContactMode) -> ContactPolicy:
        self._core.check_open()
        if mode not in _MODES:
            raise InvalidMessageError(f"mode must be 'open' or 'contacts_only', got {mode!r}")
        self._core.store.set_setting("contact_mode", mode)
        return self._changed()
