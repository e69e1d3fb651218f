"""Test the echo bot through its real entry point (install it first: pip install -e .)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syft_chat.testing import ChatNetwork, local_network

DIST = "syft-chat-echo-bot"


@pytest.fixture(autouse=True)
def _load_only_the_echo_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load this distribution's entry point and no other installed plugin; fail loudly."""
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", DIST)
    monkeypatch.setenv("SYFT_CHAT_STRICT_PLUGINS", "1")
    monkeypatch.delenv("SYFT_CHAT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("SYFTBOX_CLIENT_CONFIG_PATH", raising=False)


@pytest.fixture
def echo_network(tmp_path: Path) -> Iterator[ChatNetwork]:
    """alice and bob, each with a client; the echo bot is loaded on both."""
    with local_network(tmp_path, 2) as net:
        yield net
