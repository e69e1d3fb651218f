"""Fixtures for the chat page: real clients in a local workspace, each serving its page on
its own port, and the system Chromium driven by Playwright (skipped, saying why, only when
``/usr/bin/chromium`` is missing; ``.ci/run`` installs it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syft_chat.testing import local_network
from syft_chat.web import WebServer

from .pages import ChatPage

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Any]:
    with local_network(tmp_path, 3) as network:
        yield network


@pytest.fixture
def serve_page(net: Any) -> Iterator[Callable[[str], WebServer]]:
    """``serve_page(email)``: that datasite's client serving its page on a free port."""
    servers: list[WebServer] = []

    def start(email: str) -> WebServer:
        server = WebServer(net[email], port=0)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def open_page(
    browser: Any, serve_page: Callable[[str], WebServer]
) -> Iterator[Callable[..., ChatPage]]:
    """``open_page(email)``: a fresh browser context (its own cookies) on that page. Every
    request the page makes to anything but its own server is aborted and recorded; the
    test fails if there was one, or if a JavaScript dialog opened."""
    opened: list[ChatPage] = []

    def factory(email: str, **context_options: Any) -> ChatPage:
        page = ChatPage(browser, serve_page(email), **context_options)
        opened.append(page)
        return page

    yield factory
    for page in opened:
        page.close()
    for page in opened:
        assert page.external == [], f"{page.email}'s page asked for {page.external}"
        assert page.dialogs == [], f"{page.email}'s page opened dialogs {page.dialogs}"
        assert page.errors == [], f"{page.email}'s page raised {page.errors}"


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    """``shot(page, name)`` saves a screenshot under test-artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)

    def save(page: Any, name: str) -> Path:
        page.wait_for_timeout(400)  # let debounced refreshes (and their requests) finish
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return save
