"""What stands between the page's routes and everyone else on the machine or in the browser.

:class:`Guard` is one ASGI middleware around the whole app; in order, each request must:

1. name this server in its ``Host`` header (``127.0.0.1:<port>`` or ``localhost:<port>``):
   a page on another site that rebinds its DNS name to 127.0.0.1 is refused (``421``);
2. carry the session cookie, or the per-run secret as ``?token=`` which is exchanged for
   that cookie (``HttpOnly``, ``SameSite=Strict``, named per port) and a redirect to the
   same address with the token moved into the fragment (``#token=``, never sent to a
   server: the page keeps it in ``sessionStorage`` and drops it from the address bar);
   otherwise ``401``;
3. if it is an API call (``/api/...``): carry the per-run secret in the
   :data:`TOKEN_HEADER` header, else ``401``. The cookie alone opens only the page shell
   (its HTML, script and styles, public anyway): cookies ignore ports, so the browser hands
   it to every other server on 127.0.0.1 too, and it must not be what guards the data;
4. if it changes something (any method but GET and HEAD): come from this server's own
   origin (``Origin`` header, else ``403``: no cross-site request forgery) and carry the
   ``X-Syft-Chat`` header, which no cross-site form or simple request can add;
5. send a body no larger than its route allows (``413``, read as it streams).

Every response gets the Content-Security-Policy (scripts only from this server, no inline
script, no framing), ``nosniff``, no referrer and no caching of API answers.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "CSP",
    "CSRF_HEADER",
    "JSON_LIMIT",
    "TOKEN_HEADER",
    "UPLOAD_LIMIT",
    "BodyTooLarge",
    "Guard",
    "Secrets",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
#: the header every state-changing request must carry (its value is not checked)
CSRF_HEADER = "x-syft-chat"
#: the header every ``/api`` request carries the per-run secret in
TOKEN_HEADER = "x-syft-chat-token"
#: bytes a JSON request body may have
JSON_LIMIT = 256 * 1024
#: bytes an uploaded attachment may have (paths under ``/api/upload``)
UPLOAD_LIMIT = 64 * 1024 * 1024

_SAFE_METHODS = frozenset({"GET", "HEAD"})
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class Secrets:
    """The per-run secret (in the printed URL) and the session value of the cookie."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self.session = secrets.token_urlsafe(32)

    def token_ok(self, value: str) -> bool:
        return hmac.compare_digest(value.encode(), self.token.encode())

    def session_ok(self, value: str) -> bool:
        return hmac.compare_digest(value.encode(), self.session.encode())


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, secrets_: Secrets, port: int) -> None:
        self.app = app
        self.secrets = secrets_
        self.port = port
        self.cookie = f"syft_chat_{port}"
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket (none is served): closed, never checked late
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = _headers(scope)
        method = scope["method"]
        send = _with_security_headers(send, api=scope["path"].startswith("/api/"))
        if headers.get("host", "") not in self.hosts:
            await _plain(send, 421, "unknown host: open the address syft-chat printed")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        token = query.get("token")
        if token is not None and method in _SAFE_METHODS:
            if not self.secrets.token_ok(token):
                await _plain(send, 401, "wrong or expired link: open the address syft-chat printed")
                return
            await self._exchange(scope, query, send)
            return
        if not self._has_session(headers):
            await _plain(send, 401, "not signed in: open the address syft-chat printed")
            return
        if scope["path"].startswith("/api/") and not self.secrets.token_ok(
            headers.get(TOKEN_HEADER, "")
        ):
            await _plain(send, 401, f"refused: an API call needs the {TOKEN_HEADER} header")
            return
        if method not in _SAFE_METHODS:
            if headers.get("origin") not in self.origins:
                await _plain(send, 403, "refused: request from another origin")
                return
            if CSRF_HEADER not in headers:
                await _plain(send, 403, f"refused: missing {CSRF_HEADER} header")
                return
        limit = UPLOAD_LIMIT if scope["path"].startswith("/api/upload") else JSON_LIMIT
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _plain(send, 413, f"request body over {limit} bytes")
            return
        await self.app(scope, _limited(receive, limit), send)

    def _has_session(self, headers: dict[str, str]) -> bool:
        raw = headers.get("cookie")
        if not raw:
            return False
        try:
            jar: SimpleCookie = SimpleCookie(raw)
        except Exception:  # a malformed cookie header is simply no session
            return False
        morsel = jar.get(self.cookie)
        return morsel is not None and self.secrets.session_ok(morsel.value)

    async def _exchange(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        rest = {k: v for k, v in query.items() if k != "token"}
        location = scope["path"] + (("?" + urlencode(rest)) if rest else "")
        location += "#" + urlencode({"token": self.secrets.token})
        cookie = (
            f"{self.cookie}={self.secrets.session}; HttpOnly; SameSite=Strict; Path=/"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode()),
                    (b"set-cookie", cookie),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


class BodyTooLarge(Exception):
    """A request body grew past its limit while streaming."""


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key in out:  # a repeated Host or Origin is not trusted
            out[key] = "\x00"
        else:
            out[key] = value.decode("latin-1")
    return out


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body over {limit} bytes")
        return message

    return wrapped


def _with_security_headers(send: Send, *, api: bool) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            headers += [(n, v) for n, v in _SECURITY_HEADERS if n not in names]
            if api and b"cache-control" not in names:
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
