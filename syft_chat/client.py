"""The seed's API: :func:`client` and :class:`SyftChatClient`."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from syft_core import Client as SyftClient

from syft_chat.dispatch import Hooks
from syft_chat.display import ChatHistory
from syft_chat.errors import (
    ConfigError,
    DeliveryTimeoutError,
    InvalidMessageError,
    PluginError,
    UnknownRecipientError,
)
from syft_chat.features.actions import ACTION_KINDS, ActionRule, Actions
from syft_chat.features.attachments import AttachmentControlRule, Attachments
from syft_chat.features.contacts import Contacts
from syft_chat.features.groups import GroupChangeRule, Groups
from syft_chat.features.views import (
    Conversation,
    HistoryPage,
    SearchHit,
    SearchOrder,
    Views,
    history_query,
    thread_conversation,
    with_reactions,
)
from syft_chat.identity import canonical_email, is_canonical
from syft_chat.interfaces import (
    BackendContext,
    MessageQuery,
    MessageStore,
    Transport,
    find_messages,
)
from syft_chat.manager import PluginFailure, make_plugin_manager, register_plugin
from syft_chat.messaging.core import MessagingCore
from syft_chat.messaging.kinds import ChatMessageRule, Refusal
from syft_chat.messaging.serving import Site
from syft_chat.models import (
    Attachment,
    ChatMessage,
    ChatResponse,
    ContactMode,
    ContactPolicy,
    Direction,
    Group,
    MessageKind,
    MessageStatus,
    to_utc,
)
from syft_chat.plugins.listeners import (
    AttachmentListener,
    ChangeListener,
    Listeners,
    MessageListener,
    StatusListener,
)
from syft_chat.settings import ChatSettings, default_db_path

__all__ = ["SyftChatClient", "client"]

log = logging.getLogger("syft_chat")

_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _load_syft_client(config_path: str | os.PathLike[str] | None) -> SyftClient:
    path = Path(config_path).expanduser() if config_path is not None else None
    try:
        return SyftClient.load(path)
    except Exception as exc:
        where = (
            str(path)
            if path is not None
            else os.environ.get("SYFTBOX_CLIENT_CONFIG_PATH", "~/.syftbox/config.json")
        )
        raise ConfigError(
            f"could not load the SyftBox config from {where}: {exc}. Pass config_path=, set "
            "SYFTBOX_CLIENT_CONFIG_PATH, or run the SyftBox client once to create "
            "~/.syftbox/config.json (or try `python -m syft_chat demo`, which needs none)."
        ) from exc


def _db_path(db_path: str | os.PathLike[str] | None, email: str, app_name: str) -> Path:
    if db_path is not None:
        return Path(db_path).expanduser()
    path = default_db_path(email, app_name)
    old = Path("chat_messages.db")
    if old.is_file() and not path.exists():  # the default of syft-chat 0.1 and the seed
        log.warning(
            "using %s for the messages (the default); ./chat_messages.db here is not used: "
            "pass db_path=%r to keep using it",
            path,
            str(old.resolve()),
        )
    return path


class SyftChatClient:
    """A chat participant: sends, receives, stores and serves for one datasite.

    :param config_path: SyftBox config file; ``None`` looks where syft-core
        does (``$SYFTBOX_CLIENT_CONFIG_PATH``, then ``~/.syftbox/config.json``).
    :param app_name: the app folder used on both the sending and serving side.
    :param db_path: the SQLite file holding the ``messages`` table; ``None`` (the
        default, the command line's too): ``$SYFT_CHAT_DB``, else
        ``~/.syft-chat/<email>/chat_messages.db`` (see :func:`~syft_chat.settings.default_db_path`).
    :param transport: name of a registered transport (default ``"syft-rpc"``).
    :param store: name of a registered store (default ``"sqlite"``; ``"memory"`` keeps
        history in memory only, lost on close).
    :param settings: a :class:`ChatSettings` or a dict of its fields.
    :param plugins: extra plugin objects registered for this client only.
    :param load_entry_points: load plugins installed in the ``syft_chat``
        entry-point group (subject to ``SYFT_CHAT_LOAD_PLUGINS``).

    The client starts serving as soon as it is constructed; use it as a
    context manager or call :meth:`close`. It composes the messaging core
    (:mod:`syft_chat.messaging`) and the features (:mod:`syft_chat.features`);
    every method below is a thin, documented entry into one of them.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        app_name: str = "syft_chat",
        db_path: str | os.PathLike[str] | None = None,
        *,
        transport: str = "syft-rpc",
        store: str = "sqlite",
        settings: ChatSettings | dict[str, Any] | None = None,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
    ) -> None:
        if not isinstance(app_name, str) or not _APP_NAME.match(app_name):
            raise InvalidMessageError(
                f"app_name must be a simple folder name (letters, digits, . _ -), got {app_name!r}"
            )
        self._closed = True  # until fully started
        self._close_lock = threading.Lock()
        self.app_name = app_name
        self.settings = (
            settings if isinstance(settings, ChatSettings) else ChatSettings(**(settings or {}))
        )
        self.syft = _load_syft_client(config_path)
        self.email = str(self.syft.email)
        if not is_canonical(self.email):  # peers refuse requests from any other spelling
            raise ConfigError(
                f"the SyftBox config's email {self.email!r} is not a canonical datasite email "
                "(lower-case ASCII, IDNA domain, no trailing dot; see syft_chat.identity)"
            )
        self.db_path = _db_path(db_path, self.email, app_name)
        self.plugin_failures: list[PluginFailure] = []
        self._failures_lock = threading.Lock()
        pm, failures = make_plugin_manager(load_entry_points=load_entry_points)
        self.plugin_failures.extend(failures)
        self._pm = pm
        self.hooks = Hooks(pm, self._record_failure)
        self._listeners = Listeners(pm)
        self._core: MessagingCore | None = None
        for plugin in plugins:
            self.register_plugin(plugin)

        context = BackendContext(
            email=self.email,
            syft=self.syft,
            app_name=app_name,
            db_path=self.db_path,
            settings=self.settings,
        )
        self.store: MessageStore = self._make_backend(
            "store", store, self.hooks.register_stores(), context
        )
        try:
            self.transport: Transport = self._make_backend(
                "transport", transport, self.hooks.register_transports(), context
            )
            core = MessagingCore(
                client=self,
                email=self.email,
                settings=self.settings,
                store=self.store,
                transport=self.transport,
                hooks=self.hooks,
                record_failure=self._record_failure,
                reply=self._bot_reply,
                site=Site(
                    folder=Path(self.syft.workspace.data_dir) / ".syft-chat" / app_name,
                    email=self.email,
                    app=app_name,
                    store=store,
                    db_path=self.db_path,
                ),
            )
            self._core = core
            self._closed = False
            self._contacts = Contacts(core)
            self._groups = Groups(core)
            self._actions = Actions(core, self._groups)
            self._views = Views(core)
            self._attachments = Attachments(
                core,
                self._groups,
                datasites=Path(self.syft.workspace.datasites),
                app=app_name,
            )
            self._declare_kinds(core)
            self._listeners.add("status", self._attachments.on_status)
            core.start(hold=self.settings.startup_hold)
            self._attachments.watch.start(first=self._attachments.shares.sweep_orphans)
        except BaseException:
            self._shutdown()
            raise
        self.hooks.client_started(self)

    def _declare_kinds(self, core: MessagingCore) -> None:
        """Every kind that may arrive, with its rule (see :mod:`syft_chat.messaging.kinds`)."""
        rules = {
            kind: ActionRule.for_kind(kind)(core, self._groups, lambda: self._contacts.policy)
            for kind in ACTION_KINDS
        }
        attachments = self._attachments

        def check(message: ChatMessage, actor: str) -> Refusal | None:
            return self._groups.check_message(message, actor) or attachments.check_incoming(
                message, actor
            )

        def apply_waiting(message: ChatMessage) -> None:
            rules[MessageKind.EDIT].apply_waiting(message)
            attachments.watch.track(message)

        core.kinds.register(ChatMessageRule(conversation_check=check, apply_waiting=apply_waiting))
        for rule in rules.values():
            core.kinds.register(rule)
        core.kinds.register(GroupChangeRule(self._groups))
        core.kinds.register(AttachmentControlRule(attachments))

    @property
    def role(self) -> str:
        """``"serving"``: this client serves the datasite's chat endpoint (it stores and
        confirms incoming messages, bots answer here); ``"following"``: another process on
        this datasite serves, with the same database, and this client hears every message
        through it, sends its own, and takes over serving when that process stops.

        See "Several processes on one datasite" in the README.
        """
        core = self._core
        return core.role if core is not None else "serving"

    @property
    def _started(self) -> bool:
        return self._core is not None and not self._closed

    # ------------------------------------------------------------------ plugins

    def _record_failure(self, failure: PluginFailure) -> None:
        with self._failures_lock:
            self.plugin_failures.append(failure)

    def _make_backend(
        self, kind: str, name: str, registry: dict[str, list[tuple[Any, str]]], ctx: BackendContext
    ) -> Any:
        providers = registry.get(name)
        if not providers:
            known = ", ".join(sorted(registry)) or "none"
            raise PluginError(f"no {kind} named {name!r} is registered (available: {known})")
        if len(providers) > 1:
            names = " and ".join(repr(p) for _, p in providers)
            raise PluginError(
                f"two plugins register the {kind} {name!r}: {names}; uninstall one, or set "
                "SYFT_CHAT_DISABLE_PLUGINS to skip it"
            )
        factory, _plugin = providers[0]
        return factory(ctx)

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin (module or object with ``@hookimpl`` methods) for this client only.

        Raises :class:`PluginError` if it does not validate against the hookspecs.
        """
        failure = register_plugin(self._pm, plugin, name=name)
        if failure is not None:
            raise PluginError(f"invalid plugin {failure.plugin}: {failure.error}")
        if self._started:
            self.hooks.client_started(self, plugin=plugin)
            self._live().start_announcing()

    def unregister_plugin(self, plugin: object) -> None:
        """Remove a plugin registered with :meth:`register_plugin`."""
        if self._pm.is_registered(plugin):
            self._pm.unregister(plugin)

    def list_plugins(self) -> list[str]:
        """Names of the plugins registered in this client."""
        return sorted(name for name, _ in self._pm.list_name_plugin())

    # ------------------------------------------------------------------ listeners

    def add_message_listener(self, listener: MessageListener) -> None:
        """Call ``listener(message)`` once for every new incoming message.

        Listeners run on the client's listener thread, never on the delivery
        path; one that raises is logged and does not affect delivery or other
        listeners. Adding the same function twice has no further effect.
        """
        self._listeners.add("message", listener)
        if self._core is not None:
            self._core.start_announcing()

    def remove_message_listener(self, listener: MessageListener) -> None:
        """Stop calling ``listener``. Unknown listeners are ignored."""
        self._listeners.remove("message", listener)

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener(msg_id, status, error)`` after each status change of a sent message.

        Runs on the client's notification thread, in order; use it to show ticks.
        A group message is one message: its status changes once every member's copy
        is settled (:meth:`group_delivery` shows each member's).
        """
        self._listeners.add("status", listener)

    def remove_status_listener(self, listener: StatusListener) -> None:
        """Stop calling a status listener. Unknown listeners are ignored."""
        self._listeners.remove("status", listener)

    def add_change_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(change, message, actor)`` when another datasite edits, deletes or
        reacts to a message (``change`` is ``edited``, ``deleted``, ``reaction_added`` or
        ``reaction_removed``; ``message`` is as stored now)."""
        self._listeners.add("change", listener)
        if self._core is not None:
            self._core.start_announcing()

    def remove_change_listener(self, listener: ChangeListener) -> None:
        """Stop calling a change listener. Unknown listeners are ignored."""
        self._listeners.remove("change", listener)

    def add_attachment_listener(self, listener: AttachmentListener) -> None:
        """Call ``listener(message, attachment)`` once for each incoming attachment when it
        becomes available (whole, hash checked), on the notification thread; also once
        across restarts. ``chat_attachment_available`` is the hook behind it."""
        self._listeners.add("attachment", listener)

    def remove_attachment_listener(self, listener: AttachmentListener) -> None:
        """Stop calling an attachment listener. Unknown listeners are ignored."""
        self._listeners.remove("attachment", listener)

    # ------------------------------------------------------------------ sending

    def _live(self) -> MessagingCore:
        core = self._core
        if core is None:
            raise InvalidMessageError("this SyftChatClient did not start")
        core.check_open()
        return core

    def _validate_recipient(self, to_email: Any) -> str:
        if not isinstance(to_email, str):
            raise InvalidMessageError(f"to_email must be a datasite email, got {to_email!r}")
        recipient = canonical_email(to_email.strip())  # the one spelling peers accept
        if recipient == self.email:
            raise InvalidMessageError("cannot send a message to yourself")
        if not self.transport.can_reach(recipient):
            raise UnknownRecipientError(
                f"{recipient} does not serve syft-chat (app {self.app_name!r}) in this workspace; "
                "see list_available_users()"
            )
        return recipient

    def send_message(
        self,
        to_email: str,
        content: str,
        thread_id: str | None = None,
        reply_to: str | None = None,
        *,
        attachments: Sequence[str | os.PathLike[str]] = (),
        metadata: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ChatResponse:
        """Send ``content`` to ``to_email``; return where the message is.

        The message is stored (status ``queued``) before anything is written
        for the transport, then delivered; ``send_message`` waits up to
        ``timeout`` seconds (default ``settings.send_timeout``; ``0`` returns
        at once) for the recipient's confirmation. The returned
        :class:`ChatResponse` has ``status`` ``"delivered"`` (the recipient
        stored it) or ``"sent"`` (not confirmed yet: an offline recipient
        gets it later, across restarts of either side, with the same
        ``msg_id``). A reply inherits the thread of the message it answers,
        which must be a message of this conversation; a message starting a
        conversation starts a thread named by its own ``msg_id``.

        ``attachments`` are local files shared with the message: each is copied into your
        datasite, readable by the recipient only (see ``docs/attachments.md``).

        :raises InvalidMessageError: bad arguments (nothing is stored), e.g. a
            ``reply_to`` naming a message of another conversation.
        :raises AttachmentError: an attachment is missing, over a limit of
            :class:`ChatSettings` or refused by a plugin (nothing is copied or stored).
        :raises UnknownRecipientError: the recipient does not serve chat here.
        :raises MessageRejectedError: the recipient refused it (status ``failed``).
        :raises DeliveryError: a plugin refused to encode it (``failed``), or the
            request could not be written (it stays queued and is retried).
        """
        core = self._live()
        recipient = self._validate_recipient(to_email)
        content = core.validate_content(content)
        meta = core.validate_metadata(metadata)
        thread_id, reply_to = core.resolve_thread(thread_id, reply_to, conversation=recipient)
        core.validate_timeout(timeout)
        draft = ChatMessage(sender=self.email, content=content, metadata=meta, reply_to=reply_to)
        shared = self._attachments.shares.prepare(attachments, [recipient], recipient, draft.msg_id)
        threaded = {
            "thread_id": thread_id or draft.msg_id,
            "recipient": recipient,
            "attachments": shared,
        }
        try:
            message = core.queue(draft.model_copy(update=threaded), recipient)
        except BaseException:
            if shared:
                self._attachments.shares.discard(draft.msg_id, recipient, shared)
            raise
        return core.deliver(message, recipient, timeout)

    def _bot_reply(self, message: ChatMessage, content: str, metadata: dict[str, Any]) -> None:
        """How a bot's answer goes out: a reply to ``message``, without waiting."""
        if message.group_id:
            self.send_to_group(
                message.group_id, content, reply_to=message.msg_id, metadata=metadata
            )
        else:
            self.send_message(
                message.sender, content, reply_to=message.msg_id, metadata=metadata, timeout=0
            )

    def wait_for_delivery(self, msg_id: str, timeout: float | None = None) -> ChatResponse:
        """Wait until an outgoing message is confirmed (or refused), up to ``timeout`` s.

        Returns a :class:`ChatResponse` whose ``status`` says where it is;
        raises :class:`MessageRejectedError` if it was refused and
        :class:`DeliveryTimeoutError` if it is still unconfirmed at the end.
        """
        core = self._live()
        message = core.get(msg_id)
        if message is None or message.sender != self.email:
            raise InvalidMessageError(f"no outgoing message {msg_id!r}")
        wait = self.settings.send_timeout if timeout is None else float(timeout)
        response = core.outcome(msg_id, message.recipient or "", core.wait(msg_id, wait))
        if response.status in (MessageStatus.QUEUED.value, MessageStatus.SENT.value):
            raise DeliveryTimeoutError(
                f"message {msg_id} is not confirmed after {wait:g}s (status {response.status}); "
                "it stays in the outbox and is retried",
                msg_id=msg_id,
            )
        return response

    def mark_read(self, msg_id: str) -> bool:
        """Mark an incoming message read (locally); plugins hear ``chat_message_read``.

        Returns whether it was unread. A read-receipt plugin can send the
        receipt from that hook; the sender's side records it with
        :meth:`record_read`.
        """
        core = self._live()
        incoming = MessageQuery(msg_ids=(msg_id,), direction=Direction.INCOMING)
        found = next(iter(self.store.find(incoming)), None) if isinstance(msg_id, str) else None
        if found is None or found.message.sender == self.email:
            raise InvalidMessageError(f"no incoming message {msg_id!r}")
        sender = found.message.sender  # the earliest stored incoming message of that id
        with self.store.transaction():
            current = self.store.get(msg_id, sender=sender)
            unread = current is not None and current.read_at is None
            if unread:
                self.store.update(msg_id, {"read_at": datetime.now().astimezone()}, sender=sender)
        if unread:
            core.notify_read(found.message)
        return unread

    def record_read(self, msg_id: str) -> bool:
        """Record that the recipient read a delivered outgoing message (status ``read``)."""
        core = self._live()
        message = core.get(msg_id)
        if message is None or message.sender != self.email:
            raise InvalidMessageError(f"no outgoing message {msg_id!r}")
        return core.set_status(msg_id, MessageStatus.READ)

    def failed_messages(self, limit: int = 100) -> list[dict[str, Any]]:
        """Incoming requests that were refused (newest first): sender, reason, raw body."""
        core = self._live()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidMessageError(f"limit must be a non-negative int, got {limit!r}")
        return core.failed_messages(limit)

    def pending_messages(self) -> list[ChatMessage]:
        """Outgoing messages not yet confirmed (the outbox), oldest first."""
        return self._live().outgoing.pending()

    # ------------------------------------------------------------------ edits, deletions, reactions

    def edit_message(
        self, msg_id: str, content: str, *, timeout: float | None = None
    ) -> ChatResponse:
        """Replace the text of a message you sent, here and at its recipient.

        The earlier text stays queryable (:meth:`get_edits`). Returns where
        the edit is (``delivered`` / ``sent``), like :meth:`send_message`.
        """
        return self._actions.edit_message(msg_id, content, timeout=timeout)

    def delete_message(self, msg_id: str, *, timeout: float | None = None) -> ChatResponse:
        """Delete a message you sent, on both sides.

        Its row stays as a tombstone (``deleted=True``) with its text, its
        earlier versions and its reactions erased; search never finds it. Its
        attachments' files are deleted from your datasite (read revoked first) and
        show ``deleted`` on both sides.
        """
        before = self._live().get(msg_id, sender=self.email) if isinstance(msg_id, str) else None
        response = self._actions.delete_message(msg_id, timeout=timeout)
        if before is not None:
            self._attachments.deleted(before)
        return response

    # ------------------------------------------------------------------ attachments

    def attachment_path(
        self, msg_id: str, attachment_id: str, *, sender: str | None = None
    ) -> Path:
        """Where an attachment's synced copy is, checked now (``sender`` as for
        :meth:`get_message`).

        It is the sender's file in this SyftBox folder, not a private copy: it may change
        (or be replaced) after this returns. To read or copy the bytes, use
        :meth:`open_attachment`, which hands out only the bytes it verified.

        :raises AttachmentError: no such attachment, or it is not ``available`` (the error's
            ``state`` says which: ``pending``, ``corrupt``, ``revoked``, ``deleted``).
        """
        return self._attachments.path(msg_id, attachment_id, sender)

    def open_attachment(
        self, msg_id: str, attachment_id: str, *, sender: str | None = None
    ) -> BinaryIO:
        """An attachment opened for reading in binary (close it): the file is opened
        once, never through a symlink, and that descriptor's bytes are checked against the
        SHA-256 before it is returned. Raises as :meth:`attachment_path` (``corrupt`` if the
        file changed since it was last checked)."""
        return self._attachments.open(msg_id, attachment_id, sender)

    def revoke_attachment(
        self, msg_id: str, attachment_id: str | None = None, *, timeout: float | None = None
    ) -> ChatResponse:
        """Withdraw the recipients' read access to an attachment of a message you sent (to
        all of its attachments without ``attachment_id``): the permission files are
        rewritten at once and the recipients are told (their copy shows ``revoked``).
        Returns where that notice is, like :meth:`send_message` (by default without
        waiting). What a recipient already synced stays on its disk."""
        return self._attachments.revoke(msg_id, attachment_id, timeout=timeout)

    def list_attachments(
        self, with_user: str | None = None, group_id: str | None = None
    ) -> list[tuple[ChatMessage, Attachment]]:
        """Every attachment of the stored messages (both directions), oldest message first,
        as ``(message, attachment)`` with its current state; ``with_user`` / ``group_id``
        narrow it to one conversation."""
        return self._attachments.listing(with_user=with_user, group_id=group_id)

    def check_attachments(self) -> int:
        """Look at the pending incoming attachments now (the checker thread does it every
        ``attachment_check_interval`` seconds); how many became available."""
        self._live()
        return self._attachments.watch.check_pending()

    def react(
        self,
        msg_id: str,
        emoji: str,
        *,
        remove: bool = False,
        timeout: float | None = None,
        sender: str | None = None,
    ) -> ChatResponse:
        """Add (or with ``remove=True`` take back) your reaction to a message of a conversation.

        Message ids are per sender: ``sender`` picks the message when two senders' messages
        share ``msg_id`` (by default, your own, else the earliest stored).
        """
        return self._actions.react(msg_id, emoji, remove=remove, timeout=timeout, sender=sender)

    def get_edits(self, msg_id: str, *, sender: str | None = None) -> list[dict[str, Any]]:
        """Earlier versions of a message, oldest first (``content``, ``replaced_at``);
        ``sender`` as for :meth:`get_message`."""
        return self._actions.get_edits(msg_id, sender=sender)

    # ------------------------------------------------------------------ groups

    def create_group(self, name: str, members: Iterable[str]) -> Group:
        """Create a group with you and ``members``; each member is told."""
        return self._groups.create_group(name, members)

    def get_group(self, group_id: str) -> Group:
        """A group you know, by id."""
        return self._groups.get_group(group_id)

    def list_groups(self) -> list[Group]:
        """Every group you are (or were) in."""
        return self._groups.list_groups()

    def add_group_members(self, group_id: str, members: Iterable[str]) -> Group:
        """Add members (the owner and admins may); everyone, old and new, is told."""
        return self._groups.add_group_members(group_id, members)

    def remove_group_members(self, group_id: str, members: Iterable[str]) -> Group:
        """Remove members (the owner and admins may; the owner cannot be removed); everyone,
        the removed included, is told."""
        return self._groups.remove_group_members(group_id, members)

    def set_group_admins(self, group_id: str, admins: Iterable[str]) -> Group:
        """Name the admins of a group you own (they may add and remove members); every
        member is told. Members not listed stop being admins."""
        return self._groups.set_group_admins(group_id, admins)

    def leave_group(self, group_id: str) -> Group:
        """Leave a group; the others are told."""
        return self._groups.leave_group(group_id)

    def send_to_group(
        self,
        group_id: str,
        content: str,
        thread_id: str | None = None,
        reply_to: str | None = None,
        *,
        attachments: Sequence[str | os.PathLike[str]] = (),
        metadata: dict[str, Any] | None = None,
    ) -> ChatResponse:
        """Send a message to every member of a group (one delivery per member).

        Returns at once with status ``sent``; :meth:`group_delivery` shows
        each member's status, and the message becomes ``delivered`` when every
        member has confirmed it. ``attachments`` are shared with the members at send
        time (as for :meth:`send_message`).
        """
        if not attachments:
            return self._groups.send_to_group(
                group_id, content, thread_id, reply_to, metadata=metadata
            )
        made: list[tuple[str, str, list[Attachment]]] = []

        def attach(msg_id: str, readers: list[str], conversation: str) -> list[Attachment]:
            shared = self._attachments.shares.prepare(attachments, readers, conversation, msg_id)
            made.append((msg_id, conversation, shared))
            return shared

        try:
            return self._groups.send_to_group(
                group_id, content, thread_id, reply_to, metadata=metadata, attach=attach
            )
        except BaseException:
            for msg_id, conversation, shared in made:
                if self._live().get(msg_id, sender=self.email) is None:
                    self._attachments.shares.discard(msg_id, conversation, shared)
            raise

    def group_delivery(self, msg_id: str) -> dict[str, MessageStatus]:
        """Each member's delivery status of a group message you sent."""
        return self._groups.group_delivery(msg_id)

    # ------------------------------------------------------------------ contact policy

    @property
    def contact_policy(self) -> ContactPolicy:
        """The current policy (mode, allowed and blocked datasites)."""
        return self._contacts.policy

    def block(self, email: str) -> ContactPolicy:
        """Refuse everything from ``email`` (and deny it in the permission files)."""
        return self._contacts.block(email)

    def allow(self, email: str) -> ContactPolicy:
        """Add ``email`` to your contacts (lifting a block)."""
        return self._contacts.allow(email)

    def forget_contact(self, email: str) -> ContactPolicy:
        """Neither allowed nor blocked any more."""
        return self._contacts.forget_contact(email)

    def unblock(self, email: str) -> ContactPolicy:
        """Lift a block (the datasite is then neither allowed nor blocked)."""
        return self._contacts.forget_contact(email)

    def set_contact_mode(self, mode: ContactMode) -> ContactPolicy:
        """``"open"`` (anyone not blocked) or ``"contacts_only"`` (only allowed datasites)."""
        return self._contacts.set_contact_mode(mode)

    # ------------------------------------------------------------------ reading

    def get_chat_history(
        self,
        with_user: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        thread_id: str | None = None,
        *,
        group_id: str | None = None,
    ) -> list[ChatMessage]:
        """Messages from the local database, newest ``limit`` returned oldest first.

        :param with_user: only the conversation with this datasite, both directions.
        :param limit: at most this many (the newest).
        :param since: only messages at or after this time (naive = local time).
        :param thread_id: only this thread. A thread belongs to one conversation: without
            ``with_user`` or ``group_id`` it is the thread of the conversation its root
            (else its first stored message) belongs to, never messages of other
            conversations that name the same thread id (a stranger can name any id).
        :param group_id: only this group's conversation (``with_user`` is one-to-one).
        """
        self._live()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidMessageError(f"limit must be a non-negative int, got {limit!r}")
        if since is not None and not isinstance(since, datetime):
            raise InvalidMessageError(f"since must be a datetime, got {type(since).__name__}")
        if with_user is not None and (not isinstance(with_user, str) or not with_user.strip()):
            raise InvalidMessageError(f"with_user must be a datasite email, got {with_user!r}")
        if thread_id is not None and not isinstance(thread_id, str):
            raise InvalidMessageError("thread_id must be a string")
        try:
            since = to_utc(since) if since is not None else None
        except (ValueError, OverflowError) as exc:
            raise InvalidMessageError(f"since is out of range: {exc}") from exc
        if limit == 0:
            return ChatHistory([], me=self.email)
        conversation = with_user.strip() if with_user else None
        if group_id is not None:
            conversation = None if conversation is not None else f"group:{group_id}"
            if conversation is None:
                return ChatHistory([], me=self.email)
        conversation = thread_conversation(self.store.find, thread_id, conversation)
        query = history_query(
            conversation=conversation, limit=limit, since=since, thread_id=thread_id
        )
        messages = with_reactions(find_messages(self.store, query), self.store.reactions)
        messages = self._attachments.states.with_states(messages)
        return ChatHistory(messages, me=self.email)  # a list that renders in Jupyter

    def get_message(self, msg_id: str, *, sender: str | None = None) -> ChatMessage | None:
        """One stored message (sent or received) by id, with its status.

        Message ids are per sender (two senders' messages may share one): with ``sender``,
        that sender's message; without, your own message of that id if there is one, else
        the earliest stored.
        """
        found = self._live().get(msg_id, sender=sender)
        return self._attachments.states.with_states([found])[0] if found is not None else None

    def search(
        self,
        query: str,
        *,
        with_user: str | None = None,
        thread_id: str | None = None,
        since: datetime | None = None,
        limit: int = 20,
        raw: bool = False,
        conversation: str | None = None,
        order: SearchOrder = "newest",
    ) -> list[SearchHit]:
        """Full-text search of the local history, the newest matches first.

        ``query`` is plain words that must all occur in a message (any order, case and
        accents ignored); ``word*`` matches words starting with ``word``. ``raw=True``
        takes FTS5 query syntax instead (``"exact phrase"``, ``a OR b``, ``a NOT b``,
        ``NEAR(a b)``). Deleted messages are never found; an edited one is found by its
        current text. The filters are those of :meth:`get_chat_history`
        (``conversation`` names a group's conversation instead of ``with_user``).
        ``order="relevance"`` returns the best matches first (``rank``) among the newest
        500 that match: ranking every match of an everyday word would take the better
        part of a second on a large history.

        :raises InvalidMessageError: an empty or malformed query, or a bad filter.
        """
        return self._views.search(
            query,
            with_user=with_user,
            thread_id=thread_id,
            since=since,
            limit=limit,
            raw=raw,
            conversation=conversation,
            order=order,
        )

    def get_history_page(
        self,
        *,
        with_user: str | None = None,
        thread_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
        conversation: str | None = None,
    ) -> HistoryPage:
        """One page of history, oldest first, for walking a conversation page by page.

        Without a cursor it is the newest ``limit`` messages; ``before=page.before``
        gives the page just older, ``after=page.after`` the page just newer. Following
        the cursors (until ``None``) visits every matching message exactly once, in
        order. Filters as in :meth:`get_chat_history`.

        :raises InvalidMessageError: a cursor not made by this method, both cursors,
            or a bad filter or limit.
        """
        return self._views.get_history_page(
            with_user=with_user,
            thread_id=thread_id,
            since=since,
            limit=limit,
            before=before,
            after=after,
            conversation=conversation,
        )

    def list_conversations(
        self, *, limit: int | None = None, before: Conversation | None = None
    ) -> list[Conversation]:
        """The conversations (one-to-one and group) with their last message and unread
        count, the most recently active first. Read state is local (:meth:`mark_read`).

        Without arguments, every conversation; ``limit=50`` the 50 most recent, and
        ``before=page[-1]`` the page after the one that ended with that conversation.

        :raises InvalidMessageError: a bad ``limit`` or ``before``.
        """
        return self._views.list_conversations(limit=limit, before=before)

    def mark_conversation_read(self, with_user: str) -> int:
        """Mark every unread incoming message of a conversation read; return how many.

        ``with_user`` is the peer's email (or a group's conversation id). Plugins hear
        ``chat_message_read`` once for each message marked, as with :meth:`mark_read`
        (a read-receipt plugin sends its receipts from there).
        """
        return self._views.mark_conversation_read(with_user)

    def list_available_users(self) -> list[str]:
        """Datasites that serve syft-chat (this app), excluding yourself, sorted."""
        self._live()
        users = self.hooks.discover_users(self)
        users.discard(self.email)
        return sorted(users)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop serving, run queued notifications, close the database. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self.hooks.client_closing(self)
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        attachments = getattr(self, "_attachments", None)
        if attachments is not None:
            attachments.watch.stop()
        if self._core is not None:
            self._core.stop_following()  # a follower must not take over while closing
        try:
            transport = getattr(self, "transport", None)
            if transport is not None:
                transport.stop()
        finally:
            if self._core is not None:
                self._core.close()
            self.store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SyftChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"open, {self.role}"
        return (
            f"<SyftChatClient {self.email} app={self.app_name!r} db={str(self.db_path)!r} {state}>"
        )


def client(
    config_path: str | os.PathLike[str] | None = None,
    db_path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> SyftChatClient:
    """Create a started :class:`SyftChatClient` (the seed's factory).

    Extra keyword arguments (``app_name``, ``settings``, ``plugins``...) are
    passed to :class:`SyftChatClient`.
    """
    return SyftChatClient(config_path, db_path=db_path, **kwargs)
