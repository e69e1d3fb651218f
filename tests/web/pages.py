"""A driver for one datasite's chat page in Chromium, in the words of the page."""

from __future__ import annotations

import time
from typing import Any

from syft_chat.web import WebServer


class ChatPage:
    """One browser context (its own cookie jar) showing one datasite's page."""

    def __init__(self, browser: Any, server: WebServer, **context_options: Any) -> None:
        self.server = server
        self.email = server.client.email
        self.origin = f"http://127.0.0.1:{server.port}"
        self.external: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(**context_options)
        self.context.route("**/*", self._only_own_server)
        self.page = self.context.new_page()
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(server.url)
        # (no wait_for_function: the page's CSP forbids the eval it needs)
        self.page.locator("#me", has_text=self.email).wait_for(timeout=10_000)

    def _only_own_server(self, route: Any) -> None:
        # runs in this (test) thread, only while a Playwright call waits: a test that must
        # let the page work meanwhile waits with page.wait_for_timeout, never time.sleep
        url = route.request.url
        if url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()

    # ---------------------------------------------------------------- actions

    def open(self, conversation_id: str, timeout: float = 5_000) -> None:
        """Click a conversation in the list (waiting for it to appear)."""
        button = self.page.locator(f'#conversations .conv[data-id="{conversation_id}"]')
        button.wait_for(timeout=timeout)
        button.click()
        self.page.wait_for_selector("#messages:not([hidden])")

    def type_and_send(self, text: str) -> float:
        """Type ``text`` in the composer and press Enter; returns the time of the press."""
        box = self.page.locator("#input")
        box.fill(text)
        started = time.monotonic()
        box.press("Enter")
        return started

    def message(self, text: str) -> Any:
        """The message element whose text is ``text`` (exactly)."""
        return self.page.locator("#messages .msg").filter(
            has=self.page.locator(".text", has_text=text)
        )

    def wait_for_text(self, text: str, timeout: float = 2_000) -> float:
        """Wait until a message with ``text`` shows; return when it did (monotonic).
        (Playwright compares text with runs of white space made one space.)"""
        shown = " ".join(text.split())
        self.page.locator("#messages .msg .text").get_by_text(shown, exact=True).first.wait_for(
            timeout=timeout
        )
        return time.monotonic()
