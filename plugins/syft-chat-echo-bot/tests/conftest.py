"""Test the echo bot through its real entry point (install it first: pip install -e .)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syft_chat.testing import ChatNetwork, isolate_plugins, local_network

DIST = "syft-chat-echo-bot"


@pytest.fixture(autouse=True)
def _load_only_the_echo_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load this distribution's entry point and no other installed plugin; fail loudly."""
    isolate_plugins(monkeypatch, DIST, strict=True)


@pytest.fixture
def echo_network(tmp_path: Path) -> Iterator[ChatNetwork]:
    """alice and bob, each with a client; the echo bot is loaded on both."""
    with local_network(tmp_path, 2) as net:
        yield net
