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

import re
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from syft_chat.errors import InvalidMessageError

if TYPE_CHECKING:
    from syft_chat.interfaces import MessageStore, Transport

__all__ = ["ClientContacts", "ContactMode", "ContactPolicy"]

ContactMode = Literal["open", "contacts_only"]
# a datasite email as SyftBox folder names allow it (no quotes, colons, slashes, wildcards)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")


class ContactPolicy(BaseModel):
    """Who may write to this datasite."""

    model_config = ConfigDict(frozen=True)

    mode: ContactMode = "open"
    allowed: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()

    def refuses(self, sender: str) -> str | None:
        """Why a message from ``sender`` is refused, or ``None`` to let it through."""
        sender = sender.lower()
        if sender in self.blocked:
            return "the sender is blocked"
        if self.mode == "contacts_only" and sender not in self.allowed:
            return "the recipient accepts messages from contacts only"
        return None


class _Host(Protocol):
    store: MessageStore
    transport: Transport
    _policy: ContactPolicy

    def _check_open(self) -> None: ...


def _email(value: object) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip()):
        raise InvalidMessageError(f"expected a datasite email, got {value!r}")
    return value.strip().lower()  # emails compare case-insensitively


def _changed(client: _Host) -> ContactPolicy:
    """Reload the policy and push it to the transport (permission files)."""
    client._policy = client.store.contact_policy()
    update = getattr(client.transport, "update_access", None)
    if update is not None:
        update(client._policy)
    return client._policy


class ClientContacts:
    """The client's contact-policy API (mixed into :class:`SyftChatClient`)."""

    @property
    def contact_policy(self: _Host) -> ContactPolicy:
        """The current policy (mode, allowed and blocked datasites)."""
        return self._policy

    def block(self: _Host, email: str) -> ContactPolicy:
        """Refuse everything from ``email`` (and deny it in the permission files)."""
        self._check_open()
        self.store.set_contact(_email(email), "blocked")
        return _changed(self)

    def allow(self: _Host, email: str) -> ContactPolicy:
        """Add ``email`` to your contacts (lifting a block)."""
        self._check_open()
        self.store.set_contact(_email(email), "allowed")
        return _changed(self)

    def forget_contact(self: _Host, email: str) -> ContactPolicy:
        """Neither allowed nor blocked any more."""
        self._check_open()
        self.store.set_contact(_email(email), None)
        return _changed(self)

    def unblock(self: _Host, email: str) -> ContactPolicy:
        """Lift a block (the datasite is then neither allowed nor blocked)."""
        return ClientContacts.forget_contact(self, email)

    def set_contact_mode(self: _Host, mode: ContactMode) -> ContactPolicy:
        """``"open"`` (anyone not blocked) or ``"contacts_only"`` (only allowed datasites)."""
        self._check_open()
        if mode not in ("open", "contacts_only"):
            raise InvalidMessageError(f"mode must be 'open' or 'contacts_only', got {mode!r}")
        self.store.set_setting("contact_mode", mode)
        return _changed(self)
