"""syft-chat: persistent, asynchronous, plugin-based chat between SyftBox datasites.

>>> import syft_chat
>>> with syft_chat.client("~/.syftbox/config.json") as chat:   # doctest: +SKIP
...     chat.send_message("bob@example.org", "Hello!")
"""

from __future__ import annotations

from .client import SyftChatClient, client
from .errors import (
    ClientClosedError,
    ConfigError,
    DeliveryError,
    DeliveryTimeoutError,
    InvalidMessageError,
    MessageRejectedError,
    PluginError,
    StorageError,
    SyftChatError,
    UnknownRecipientError,
)
from .hookspecs import hookimpl
from .manager import PluginFailure
from .models import ChatMessage, ChatResponse, Direction, MessageStatus
from .settings import ChatSettings

__version__ = "0.1.0"

__all__ = [
    "ChatMessage",
    "ChatResponse",
    "ChatSettings",
    "ClientClosedError",
    "ConfigError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "Direction",
    "InvalidMessageError",
    "MessageRejectedError",
    "MessageStatus",
    "PluginError",
    "PluginFailure",
    "StorageError",
    "SyftChatClient",
    "SyftChatError",
    "UnknownRecipientError",
    "__version__",
    "client",
    "hookimpl",
]
