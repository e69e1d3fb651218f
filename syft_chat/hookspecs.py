"""Every hook a syft-chat plugin can implement. These docstrings are the hook reference.

Implement a hook with the :data:`syft_chat.hookimpl` marker on a module or
object registered as a plugin (from the ``syft_chat`` entry-point group, or
with :meth:`SyftChatClient.register_plugin`)::

    from syft_chat import hookimpl

    @hookimpl
    def chat_message_received(message, client):
        print(message.sender, message.content)

Three kinds of hook, with three error policies (enforced in ``dispatch.py``):

* **registries** (``chat_register_*``) are called once per client while it is
  built. A raising implementation is recorded in ``client.plugin_failures``
  and the others still register.
* **notifications** (``chat_<noun>_<past participle>``) tell plugins what
  happened. Every implementation is called even if an earlier one raised; the
  failure is logged and recorded in ``client.plugin_failures``.
* **decisions** (``chat_<verb>_<noun>``) change what happens to a message.
  They *fail closed*: if an implementation raises, the message is refused
  (never sent in plain text, never stored), with a reason naming the plugin.

Hooks are synchronous. The thread each one runs on is given below; none of
them runs on the transport's serving thread except the decisions on the
receive path, which must therefore be quick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient
    from syft_chat.interfaces import IncomingRequest, StoreFactory, TransportFactory
    from syft_chat.models import Attachment, ChatMessage, ChatResponse, Envelope, MessageStatus

__all__ = ["hookimpl", "hookspec"]

#: Marker for hook specifications (used only in this module).
hookspec = pluggy.HookspecMarker("syft_chat")
#: Marker for hook implementations; re-exported as ``syft_chat.hookimpl``.
hookimpl = pluggy.HookimplMarker("syft_chat")


# --------------------------------------------------------------------------- lifecycle


@hookspec(historic=True)
def chat_client_started(client: SyftChatClient) -> None:
    """The client has started and is ready to send and receive.

    :param client: the :class:`~syft_chat.SyftChatClient` that started.

    Called once per client, on the thread that created the client, after the
    transport is serving. Historic: a plugin registered later with
    ``client.register_plugin`` is called at registration. Use it to keep
    per-client state. Return value ignored. Notification: a raising
    implementation is recorded and the client starts anyway.
    """


@hookspec
def chat_client_closing(client: SyftChatClient) -> None:
    """The client is about to close.

    :param client: the closing client.

    Called once, on the thread that called ``close()``, before the transport
    stops and the database closes (both are still usable). Return value
    ignored. Notification: a raising implementation is recorded and closing
    continues.
    """


# --------------------------------------------------------------------------- registries


@hookspec
def chat_register_transports(register: Callable[[str, TransportFactory], None]) -> None:
    """Offer transports, chosen by name with ``SyftChatClient(transport=name)``.

    :param register: call ``register(name, factory)`` once per transport;
        ``factory(context)`` receives a :class:`~syft_chat.interfaces.BackendContext`
        and returns an object satisfying :class:`~syft_chat.interfaces.Transport`.

    Called once per client, on the thread creating it, before anything is
    sent. Two plugins registering the same name is an error naming both
    (installing a plugin never silently swaps a backend). Return value
    ignored. A raising implementation is recorded; the others still register.
    """


@hookspec
def chat_register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    """Offer message stores, chosen by name with ``SyftChatClient(store=name)``.

    :param register: call ``register(name, factory)`` once per store;
        ``factory(context)`` receives a :class:`~syft_chat.interfaces.BackendContext`
        and returns an object satisfying :class:`~syft_chat.interfaces.MessageStore`.

    Called once per client, on the thread creating it, before the database
    is opened. Two plugins registering the same name is an error naming both
    (installing a plugin never silently swaps the database behind someone's
    history). Return value ignored. A raising implementation is recorded; the
    others still register.
    """


# --------------------------------------------------------------------------- discovery


@hookspec
def chat_discover_users(client: SyftChatClient) -> Iterable[str] | None:
    """Name the datasites this client can chat with.

    :param client: the asking client.
    :return: an iterable of datasite emails, or ``None`` for no opinion.

    Called on the thread calling ``list_available_users()``. The results of
    all implementations are merged, de-duplicated and sorted; the client's own
    email is removed. A raising implementation is recorded and contributes
    nothing.
    """


# --------------------------------------------------------------------------- decisions


@hookspec(firstresult=True)
def chat_encode_body(envelope: Envelope, client: SyftChatClient) -> bytes | None:
    """Turn an outgoing envelope into the bytes the transport sends.

    :param envelope: the :class:`~syft_chat.models.Envelope` about to be sent.
    :param client: the sending client.
    :return: the request body, or ``None`` to let the next implementation
        (ultimately the built-in JSON encoding) do it.

    Called on the thread calling ``send_message``, after the message is
    stored. Stops at the first non-``None`` result: an encryption plugin
    returns the ciphertext here. Decision, fails closed: if an implementation
    raises, nothing is sent and ``send_message`` raises ``DeliveryError``.
    """


@hookspec(firstresult=True)
def chat_decode_body(request: IncomingRequest, client: SyftChatClient) -> Envelope | None:
    """Turn an incoming request body into an envelope.

    :param request: the :class:`~syft_chat.interfaces.IncomingRequest`, whose
        ``sender`` the transport authenticated.
    :param client: the receiving client.
    :return: the decoded :class:`~syft_chat.models.Envelope`, or ``None`` to
        let the next implementation (ultimately the built-in JSON decoding)
        try.

    Called on the transport's serving thread for every request, so keep it
    quick. Stops at the first non-``None`` result. Decision, fails closed: if
    an implementation raises, the message is refused (the sender gets an
    error reply) and it is never stored. ``raise RefuseMessage(reason,
    retry=True)`` asks the sender to encode the message anew and send it
    again (answer ``503``, ``retry: true``; nothing is stored or recorded).
    """


@hookspec(firstresult=True)
def chat_accept_message(message: ChatMessage, sender: str, client: SyftChatClient) -> str | None:
    """Decide whether to accept an incoming message.

    :param message: the decoded message (its ``sender`` already matches
        ``sender``: spoofed messages never reach this hook).
    :param sender: the transport-authenticated sender.
    :param client: the receiving client.
    :return: ``None`` to accept, or a non-empty reason string to refuse.

    Called on the transport's serving thread before the message is stored.
    Stops at the first refusal. Decision, fails closed: a raising
    implementation refuses the message, with a reason naming the plugin.
    A refused resend of a message stored earlier (its answer was lost) is
    confirmed all the same: it was accepted, stored and announced then.
    """


@hookspec(firstresult=True)
def chat_accept_attachments(
    files: list[Path], recipients: list[str], client: SyftChatClient
) -> str | None:
    """Decide whether files may be shared with a message, before anything is copied.

    :param files: the local files the user attaches (they exist and are within the
        size limits of ``ChatSettings``).
    :param recipients: who would be granted read (a group's members at send time).
    :param client: the sending client.
    :return: ``None`` to allow, or a non-empty reason: ``send_message`` /
        ``send_to_group`` then raise :class:`~syft_chat.AttachmentError` with it and
        nothing is copied or stored.

    Called on the caller's thread, once per send with attachments. Stops at the first
    refusal. Decision, fails closed: a raising implementation refuses the attachments
    (e.g. the encryption plugin refuses them: it does not encrypt files).
    """


# --------------------------------------------------------------------------- notifications


@hookspec
def chat_message_received(message: ChatMessage, client: SyftChatClient) -> None:
    """A new incoming message was stored.

    :param message: the stored :class:`~syft_chat.ChatMessage`.
    :param client: the receiving client.

    Called exactly once per stored message (a re-delivered duplicate is not
    announced again), on the client's listener thread, never on the serving
    thread: a slow implementation delays other listeners, not delivery.
    ``add_message_listener(fn)`` registers a plugin implementing this hook.
    Notification: a raising implementation is logged and recorded; the others
    are still called and the message stays stored.
    """


@hookspec
def chat_message_changed(
    message: ChatMessage, change: str, actor: str, client: SyftChatClient
) -> None:
    """A stored message was edited, deleted, or its reactions changed.

    :param message: the message as it is stored now (a deleted one has empty
        ``content`` and ``deleted=True``; ``reactions`` is filled in).
    :param change: ``"edited"``, ``"deleted"``, ``"reaction_added"`` or
        ``"reaction_removed"``.
    :param actor: the transport-authenticated datasite that made the change.
    :param client: the receiving client.

    Called once per change made by another datasite, in that datasite's
    order, on the client's listener thread for the conversation (like
    ``chat_message_received``, which is never called for changes, so a
    seed-style listener keeps seeing only new messages). Notification: a
    raising implementation is recorded and the others are still called.
    """


@hookspec
def chat_message_sent(message: ChatMessage, response: ChatResponse, client: SyftChatClient) -> None:
    """An outgoing message was confirmed by its recipient.

    :param message: the message as stored.
    :param response: the recipient's :class:`~syft_chat.ChatResponse`.
    :param client: the sending client.

    Called once per confirmed message, after ``delivered`` is committed, on
    the client's listener thread (also for a confirmation that arrives after
    ``send_message`` timed out). Notification: raising implementations are
    recorded and skipped.
    """


@hookspec
def chat_message_status_changed(
    msg_id: str, status: MessageStatus, error: str | None, client: SyftChatClient
) -> None:
    """The stored status of an outgoing message changed.

    :param msg_id: the message's id.
    :param status: the new :class:`~syft_chat.models.MessageStatus`.
    :param error: the reason, when ``status`` is ``failed``; else ``None``.
    :param client: the sending client.

    Called after the change is committed to the database, in order, on the
    client's listener thread; use it to show delivery ticks. Notification:
    raising implementations are recorded and skipped.
    """


@hookspec
def chat_message_read(message: ChatMessage, client: SyftChatClient) -> None:
    """The user marked an incoming message read (``client.mark_read``).

    :param message: the message that was read.
    :param client: the reading client.

    Called once per message, on the client's notification thread. A
    read-receipt plugin sends the receipt from here; the sender records it
    with ``client.record_read(msg_id)`` (status ``read``). Notification:
    raising implementations are recorded and skipped.
    """


@hookspec
def chat_message_rejected(sender: str, reason: str, raw: bytes, client: SyftChatClient) -> None:
    """An incoming request was refused and not stored.

    :param sender: the transport-authenticated sender.
    :param reason: why it was refused (spoofed sender, malformed, too large,
        refused by a plugin...).
    :param raw: the request body as received (possibly truncated to the size limit).
    :param client: the receiving client.

    Called on the transport's serving thread, after the error reply is
    decided. Notification: raising implementations are recorded and skipped.
    """


# --------------------------------------------------------------------------- bots


@hookspec
def chat_reply_to(message: ChatMessage, client: SyftChatClient) -> str | dict[str, Any] | None:
    """Answer an incoming message automatically (the bot hook).

    :param message: the new incoming message (never an automatic one, so bots
        never answer bots in a loop). The bot label is the receiver's judgement,
        never a peer's claim: a peer-sent ``"syft_chat.auto_reply"`` (and
        ``"syft_chat.bot"``) is moved under ``"syft_chat.claimed_auto_reply"``
        on receipt. Not offered to bots: messages this datasite marked
        automatic, replies to one of its own bots' answers (recognised from
        its own store, whatever the peer says), and messages whose sender
        claims they are automatic (a claim can only keep bots from answering
        the claimant; it never shows as a bot answer).
    :param client: the receiving client.
    :return: ``None`` for no reply; a string, sent as the reply's content;
        or a dict with ``content`` and optionally ``metadata``.

    Called once per stored incoming message, after ``chat_message_received``,
    on the client's listener thread for that conversation (a slow bot delays
    its own conversation only). Every implementation may answer; each answer
    is sent back to the sender, in the same thread, as a reply to
    ``message``, marked as automatic. A raising implementation is recorded
    and sends nothing; the other bots still answer.
    """


@hookspec
def chat_attachment_available(
    message: ChatMessage, attachment: Attachment, client: SyftChatClient
) -> None:
    """An incoming attachment became available: its synced copy is whole and its
    SHA-256 matches.

    :param message: the message that carries it (as stored, states computed).
    :param attachment: the attachment (``state`` is ``available``);
        ``client.open_attachment(message.msg_id, attachment.id, sender=message.sender)``
        hands out its verified bytes.
    :param client: the receiving client.

    Called once per attachment (also across restarts: the store remembers it), on the
    client's notification thread, after the attachment checker (every
    ``ChatSettings.attachment_check_interval`` seconds) found it whole.
    ``add_attachment_listener(fn)`` registers a plugin implementing this hook.
    Notification: a raising implementation is logged and recorded; the others are
    still called.
    """
