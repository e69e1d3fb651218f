"""syft-chat: persistent, asynchronous, plugin-based chat between SyftBox datasites.

>>> import syft_chat
>>> with syft_chat.client("~/.syftbox/config.json") as chat:   # doctest: +SKIP
...     chat.send_message("bob@example.org", "Hello!")
"""

from __future__ import annotations

from syft_chat.client import SyftChatClient, client
from syft_chat.errors import (
    AlreadyServedError,
    AttachmentError,
    ClientClosedError,
    ConfigError,
    DeliveryError,
    DeliveryTimeoutError,
    InvalidMessageError,
    MessageRejectedError,
    PluginError,
    RefuseMessage,
    StorageError,
    SyftChatError,
    UnknownRecipientError,
)
from syft_chat.features.views import Conversation, HistoryPage, SearchHit
from syft_chat.hookspecs import hookimpl
from syft_chat.manager import PluginFailure
from syft_chat.models import (
    Attachment,
    AttachmentState,
    ChatMessage,
    ChatResponse,
    Direction,
    MessageStatus,
)
from syft_chat.settings import ChatSettings

__version__ = "0.1.0"

__all__ = [
    "AlreadyServedError",
    "Attachment",
    "AttachmentError",
    "AttachmentState",
    "ChatMessage",
    "ChatResponse",
    "ChatSettings",
    "ClientClosedError",
    "ConfigError",
    "Conversation",
    "DeliveryError",
    "DeliveryTimeoutError",
    "Direction",
    "HistoryPage",
    "InvalidMessageError",
    "MessageRejectedError",
    "MessageStatus",
    "PluginError",
    "PluginFailure",
    "RefuseMessage",
    "SearchHit",
    "StorageError",
    "SyftChatClient",
    "SyftChatError",
    "UnknownRecipientError",
    "__version__",
    "client",
    "hookimpl",
]
