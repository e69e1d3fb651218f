"""The page's server refuses whoever does not hold the secret, a foreign Host (DNS
rebinding) and a foreign Origin (CSRF), with a plain HTTP client: no browser rules help."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from support import RawHttp

from syft_chat import hookimpl
from syft_chat.testing import register_plugin, wait_for
from syft_chat.web import WebServer, choose_port
from syft_chat.web.security import CSP, JSON_LIMIT

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"


class Http(RawHttp):
    """Raw requests to one page server, with full control of every header."""

    def __init__(self, server: WebServer) -> None:
        super().__init__(server.port)

    def sign_in(self, token: str) -> str:
        status, headers, _ = self.request("GET", f"/?token={token}")
        assert status == 303
        return headers["set-cookie"].split(";", 1)[0]

    def signed_in(self, token: str) -> dict[str, str]:
        """The headers of a state change the page itself would send: its session cookie,
        the token header, the custom header and the page's Origin."""
        return {
            "Cookie": self.sign_in(token),
            "X-Syft-Chat-Token": token,
            "X-Syft-Chat": "1",
            "Origin": self.origin,
        }


@pytest.fixture
def served(pair: Any) -> Iterator[tuple[WebServer, Http, Any]]:
    ws, alice, bob = pair
    server = WebServer(alice, port=0)
    server.start()
    try:
        yield server, Http(server), alice
    finally:
        server.stop()


PROTECTED = [
    "/",
    "/static/app.js",
    "/static/app.css",
    "/api/me",
    "/api/conversations",
    "/api/events",
]


@pytest.mark.parametrize("path", PROTECTED)
def test_every_route_needs_the_secret(served, path):
    server, web, _ = served
    status, headers, body = web.request("GET", path)
    assert status == 401
    assert b"conversation" not in body and b"alice" not in body
    status, _, _ = web.request("GET", path, headers={"Cookie": f"syft_chat_{web.port}=guess"})
    assert status == 401
    status, _, _ = web.request("GET", path + ("&" if "?" in path else "?") + "token=wrong")
    assert status == 401


def test_the_token_becomes_a_strict_http_only_cookie_and_leaves_the_url(served):
    server, web, _ = served
    status, headers, _ = web.request("GET", f"/?token={server.secrets.token}&x=1")
    assert status == 303
    # the secret moves to the fragment, which the browser never sends to any server
    assert headers["location"] == f"/?x=1#token={server.secrets.token}"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"syft_chat_{web.port}=")
    assert server.secrets.token not in cookie  # the cookie is another secret than the link
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    status, headers, body = web.request("GET", "/", headers={"Cookie": cookie.split(";")[0]})
    assert status == 200 and b"/static/app.js" in body
    assert headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert "frame-ancestors 'none'" in CSP and "object-src 'none'" in CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert b"<script>" not in body and b"onclick" not in body  # no inline script at all


def test_the_cookie_alone_opens_the_shell_but_no_data(served):
    """Cookies ignore ports: every server on 127.0.0.1 may get this one from the browser.
    It opens the page's HTML and script, public anyway; every API call also needs the
    per-run secret in a header, which only the page (and the printed link) holds."""
    server, web, alice = served
    cookie = web.sign_in(server.secrets.token)
    status, _, _ = web.request("GET", "/", headers={"Cookie": cookie})
    assert status == 200
    for path in ("/api/me", "/api/conversations", "/api/events"):
        status, _, _ = web.request("GET", path, headers={"Cookie": cookie})
        assert status == 401, path
        wrong = {"Cookie": cookie, "X-Syft-Chat-Token": server.secrets.token[:-1] + "x"}
        status, _, _ = web.request("GET", path, headers=wrong)
        assert status == 401, path
    status, _, _ = web.request(
        "POST",
        "/api/send",
        body=b'{"conversation": "bob@openmined.org", "content": "x"}',
        headers={"Cookie": cookie, "Origin": web.origin, "X-Syft-Chat": "1"},
    )
    assert status == 401
    assert alice.list_conversations() == []
    status, _, _ = web.request(
        "GET", "/api/me", headers={"Cookie": cookie, "X-Syft-Chat-Token": server.secrets.token}
    )
    assert status == 200


@pytest.mark.parametrize(
    "host", ["evil.example:80", "evil.example", "127.0.0.1", "127.0.0.1:1", "localhost.evil:1"]
)
def test_a_foreign_host_is_refused_even_with_the_cookie(served, host):
    server, web, _ = served
    cookie = web.sign_in(server.secrets.token)
    status, _, body = web.request(
        "GET",
        "/api/conversations",
        headers={"Host": host, "Cookie": cookie, "X-Syft-Chat-Token": server.secrets.token},
    )
    assert status == 421
    status, _, _ = web.request("GET", f"/?token={server.secrets.token}", headers={"Host": host})
    assert status == 421  # and the secret is not exchanged for a cookie on it
    status, _, _ = web.request(
        "GET",
        "/api/me",
        headers={
            "Host": f"localhost:{web.port}",
            "Cookie": cookie,
            "X-Syft-Chat-Token": server.secrets.token,
        },
    )
    assert status == 200


def test_state_changes_need_this_origin_and_the_custom_header(served, pair):
    server, web, alice = served
    cookie = web.sign_in(server.secrets.token)
    body = json.dumps({"conversation": BOB, "content": "forged?"}).encode()
    json_type = {
        "Content-Type": "application/json",
        "Cookie": cookie,
        "X-Syft-Chat-Token": server.secrets.token,
    }
    for headers in (
        {**json_type, "X-Syft-Chat": "1"},  # no Origin
        {**json_type, "X-Syft-Chat": "1", "Origin": "http://evil.example"},
        {**json_type, "X-Syft-Chat": "1", "Origin": "null"},
        {**json_type, "X-Syft-Chat": "1", "Origin": "http://127.0.0.1:1"},
        {**json_type, "Origin": web.origin},  # no custom header
        {
            "Content-Type": "text/plain",
            "Cookie": cookie,
            "X-Syft-Chat-Token": server.secrets.token,
            "Origin": "http://evil.example",
        },
    ):
        status, _, _ = web.request("POST", "/api/send", body=body, headers=headers)
        assert status == 403, headers
    status, _, _ = web.request(
        "POST", "/api/send", body=body, headers={"Origin": web.origin, "X-Syft-Chat": "1"}
    )
    assert status == 401  # no cookie
    assert alice.get_chat_history() == []  # nothing was sent by any of them
    status, _, answer = web.request(
        "POST",
        "/api/send",
        body=body,
        headers={**json_type, "X-Syft-Chat": "1", "Origin": web.origin},
    )
    assert status == 200, answer
    assert json.loads(answer)["content"] == "forged?"
    wait_for(lambda: [m.content for m in alice.get_chat_history()] == ["forged?"], 3)


def test_bad_and_oversized_bodies_are_refused_and_lose_nothing(served):
    server, web, alice = served
    ok = web.signed_in(server.secrets.token)
    big = json.dumps({"conversation": BOB, "content": "x" * (JSON_LIMIT + 1)}).encode()
    status, _, _ = web.request("POST", "/api/send", body=big, headers=ok)
    assert status == 413
    status, _, answer = web.request("POST", "/api/send", body=b"{not json", headers=ok)
    assert status == 400 and b"not JSON" in answer
    status, _, answer = web.request("POST", "/api/send", body=b"[1]", headers=ok)
    assert status == 400
    body = json.dumps({"conversation": "nobody@nowhere.org", "content": "hi"}).encode()
    status, _, answer = web.request("POST", "/api/send", body=body, headers=ok)
    assert status == 404 and b"does not serve syft-chat" in answer
    assert alice.get_chat_history() == []


def test_listens_on_loopback_only_and_takes_the_assigned_port(pair, monkeypatch):
    ws, alice, bob = pair
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    monkeypatch.setenv("SYFTBOX_ASSIGNED_PORT", str(free))
    assert choose_port() == free
    assert choose_port(0) == 0  # --port wins
    server = WebServer(alice)
    server.start()
    try:
        assert server.port == free
        assert server.url.startswith(f"http://127.0.0.1:{free}/?token=")
        assert server.address == ("127.0.0.1", free)
        assert server.url_file is not None
        assert server.url_file.read_text().strip() == server.url
        assert server.url_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    finally:
        server.stop()
    assert not server.url_file.exists()
    monkeypatch.setenv("SYFTBOX_ASSIGNED_PORT", "eighty")
    with pytest.raises(Exception, match="must be a port number"):
        choose_port()


class _BrokenEncoder:
    @hookimpl
    def chat_encode_body(self, envelope, client):
        raise RuntimeError("the encoder is broken")


def test_a_send_that_fails_at_once_comes_back_as_a_failed_message(served):
    """send_message raises DeliveryError for a message it stored and could not send: the
    route answers with that stored message (status failed, its reason), not an error."""
    server, web, alice = served
    ok = web.signed_in(server.secrets.token)
    body = json.dumps({"conversation": BOB, "content": "never leaves"}).encode()
    with register_plugin(alice, _BrokenEncoder()):
        status, _, answer = web.request("POST", "/api/send", body=body, headers=ok)
    assert status == 200, answer
    shown = json.loads(answer)
    assert shown["content"] == "never leaves" and shown["status"] == "failed"
    assert "broken" in shown["error"]


def test_the_conversation_list_comes_in_pages_newest_first(served, pair):
    """(Not security: the same raw client walks the list's pages.)"""
    server, web, alice = served
    ws, _, bob = pair
    cookie = {
        "Cookie": web.sign_in(server.secrets.token),
        "X-Syft-Chat-Token": server.secrets.token,
    }
    alice.send_message(BOB, "direct")
    groups = [alice.create_group(f"group {i}", [BOB]) for i in range(4)]
    for group in groups:
        alice.send_to_group(group.group_id, f"hello {group.name}")
    expected = [c.conversation_id for c in alice.list_conversations()]
    assert len(expected) == 5
    seen, offset = [], 0
    while offset is not None:
        status, _, answer = web.request(
            "GET", f"/api/conversations?offset={offset}&limit=2", headers=cookie
        )
        assert status == 200
        page = json.loads(answer)
        assert len(page["items"]) <= 2
        seen += [row["id"] for row in page["items"]]
        offset = page["next_offset"]
    assert seen == expected
    assert seen[0] == f"group:{groups[-1].group_id}"  # the newest first
    status, _, answer = web.request("GET", "/api/conversations", headers=cookie)
    rows = json.loads(answer)["items"]
    assert rows[0]["title"] == "group 3" and rows[0]["last_message"]["content"] == "hello group 3"


def test_the_file_open_hands_the_browser_is_private_and_goes_on_stop(pair):
    """``--open`` gives the browser a file's path, not the secret (a command line is public):
    the file is 0600, sends the browser on to the address, and is removed on stop."""
    ws, alice, bob = pair
    server = WebServer(alice, port=0, write_url_file=False)
    server.start()
    try:
        path = server.write_open_file()
        assert server.secrets.token not in str(path)
        assert path.stat().st_mode & 0o777 == 0o600
        text = path.read_text(encoding="utf-8")
        assert f'content="0;url={server.url}"' in text
    finally:
        server.stop()
    assert not path.exists()
