"""The exceptions syft-chat raises.

Every error the library raises on purpose is a :class:`SyftChatError`, so
``except syft_chat.SyftChatError`` catches them all. Where a builtin exception
describes the same situation the error also derives from it (an invalid
argument is a ``ValueError``, a timeout is a ``TimeoutError``), so code written
against the builtins keeps working.
"""

from __future__ import annotations

__all__ = [
    "AlreadyServedError",
    "AttachmentError",
    "ClientClosedError",
    "ConfigError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "InvalidMessageError",
    "MessageRejectedError",
    "PluginError",
    "RefuseMessage",
    "StorageError",
    "SyftChatError",
    "UnknownRecipientError",
]


class SyftChatError(Exception):
    """Base class of every error raised by syft-chat."""


class ConfigError(SyftChatError):
    """The SyftBox configuration could not be found or read."""


class AlreadyServedError(SyftChatError):
    """Another process serves this datasite's chat with a store this client cannot share.

    A second client for the same datasite and app follows the serving process when both
    use the same database (see :mod:`syft_chat.messaging.serving`); with another database
    (or an in-memory store) it would miss the messages that process stores, so it is
    refused. The message names the serving process and its database; ``note`` is what
    that process published (``pid``, ``host``, ``store``, ``db_path``, ``started``).
    """

    def __init__(self, message: str, *, note: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.note = dict(note or {})


class InvalidMessageError(SyftChatError, ValueError):
    """An argument or a message is not acceptable (empty, too large, wrong type...)."""


class AttachmentError(SyftChatError, ValueError):
    """An attachment cannot be sent, or is not available here.

    On send: a file is missing, unreadable, over a limit of ``ChatSettings``, or refused by
    a plugin (nothing was copied or stored). On receive: ``state`` says why the file is
    not handed out (``pending``, ``corrupt``, ``revoked``, ``deleted``), or it is ``None``
    when no such attachment exists.
    """

    def __init__(self, message: str, *, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class UnknownRecipientError(SyftChatError, LookupError):
    """The recipient is not a datasite in this workspace, or does not serve chat."""


class DeliveryError(SyftChatError):
    """A message was stored locally but could not be delivered.

    ``msg_id`` names the stored message; its ``status`` column says where it is.
    """

    def __init__(self, message: str, *, msg_id: str | None = None) -> None:
        super().__init__(message)
        self.msg_id = msg_id


class DeliveryTimeoutError(DeliveryError, TimeoutError):
    """The recipient did not confirm the message within the timeout.

    The message stays recorded (status ``sent``); a confirmation that arrives
    later still updates it.
    """


class MessageRejectedError(DeliveryError):
    """The recipient answered, refusing the message. ``reason`` says why."""

    def __init__(self, message: str, *, msg_id: str | None = None, reason: str = "") -> None:
        super().__init__(message, msg_id=msg_id)
        self.reason = reason


class StorageError(SyftChatError):
    """The message database could not be opened, read or written.

    ``logged`` is true when the store already logged the condition (e.g. its file was
    deleted): callers that would log it again on every call need not.
    """

    logged: bool = False


class RefuseMessage(SyftChatError):
    """Raise from a decision hook (``chat_decode_body``, ``chat_accept_message``) to refuse
    a message with a reason the sender may read.

    Any other exception from a plugin also refuses the message (decisions fail
    closed), but the sender is told only that a plugin refused it: exception
    texts can hold local paths or data.

    ``retry=True`` (from ``chat_decode_body``) means "not now": the message is
    not stored and not recorded as refused, and the sender is answered
    ``503`` with ``retry: true``, so it encodes the message anew and sends it
    again (e.g. it was encrypted for keys that have since changed).
    """

    def __init__(self, message: str = "", *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class PluginError(SyftChatError):
    """A plugin could not be loaded or registered (raised only where that is fatal:
    strict mode, or two plugins claiming the same backend name)."""


class ClientClosedError(SyftChatError, RuntimeError):
    """The client was used after :meth:`SyftChatClient.close`."""
