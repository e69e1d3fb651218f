"""Test the encryption plugin through its real entry point (install it first: pip install -e .)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syft_chat.testing import ChatNetwork, local_network

DIST = "syft-chat-encryption"


@pytest.fixture(autouse=True)
def _load_only_the_encryption_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load this distribution's entry point and no other installed plugin; fail loudly."""
    monkeypatch.setenv("SYFT_CHAT_LOAD_PLUGINS", DIST)
    monkeypatch.setenv("SYFT_CHAT_STRICT_PLUGINS", "1")
    monkeypatch.delenv("SYFT_CHAT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("SYFTBOX_CLIENT_CONFIG_PATH", raising=False)
    monkeypatch.delenv("SYFT_CHAT_ENCRYPTION_ALLOW_PLAINTEXT", raising=False)


@pytest.fixture
def crypto_network(tmp_path: Path) -> Iterator[ChatNetwork]:
    """alice and bob, each with a client and keys (bootstrapped when the clients started)."""
    with local_network(tmp_path, 2) as net:
        yield net
