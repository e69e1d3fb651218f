"""Helpers shared by the test modules: datasite names, a workspace with a client factory,
hand-written request files (for playing an attacker), raw HTTP requests to a local page
server (every header under the test's control) and waiting for a condition.

Imported as ``from support import ...`` (not from conftest: every suite's conftest.py is
imported under the same module name when several suites run in one pytest invocation).
"""

from __future__ import annotations

import http.client
import json
import uuid
from pathlib import Path
from typing import Any

import syft_chat
from syft_chat.testing import make_workspace, wait_for

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"
CAROL = "carol@openmined.org"
MALLORY = "mallory@evil.org"


class Workspace:
    """A local SyftBox workspace with one config per datasite and a client factory."""

    def __init__(self, root: Path, emails: list[str]) -> None:
        self.root = root
        self.configs = make_workspace(root, emails)
        self.clients: list[syft_chat.SyftChatClient] = []

    def db(self, email: str) -> Path:
        return self.root / "dbs" / f"{email}.db"

    def client(self, email: str, **kwargs: Any) -> syft_chat.SyftChatClient:
        kwargs.setdefault("db_path", self.db(email))
        c = syft_chat.client(self.configs[email], **kwargs)
        self.clients.append(c)
        return c

    def endpoint(self, email: str, app: str = "syft_chat") -> Path:
        return self.root / "datasites" / email / "app_data" / app / "rpc" / "chat"

    def close(self) -> None:
        for c in self.clients:
            c.close()


def write_raw_request(
    ws: Workspace,
    *,
    to: str,
    folder: str,
    claimed_sender: str | None = None,
    body: bytes | None = None,
    raw: bytes | None = None,
    name: str | None = None,
) -> Path:
    """Write a request file by hand into ``to``'s endpoint, in ``folder``'s sender folder."""
    from datetime import datetime, timedelta, timezone

    from syft_rpc.protocol import SyftRequest
    from syft_rpc.rpc import make_url

    request_id = uuid.uuid4()
    target = ws.endpoint(to) / folder
    target.mkdir(parents=True, exist_ok=True)
    path = target / (name or f"{request_id}.request")
    if raw is None:
        request = SyftRequest(
            id=request_id,
            sender=claimed_sender or folder,
            method="POST",
            url=make_url(to, "syft_chat", "chat"),
            body=body,
            expires=datetime.now(timezone.utc) + timedelta(minutes=5),
        )
        raw = request.model_dump_json().encode()
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(raw)
    tmp.rename(path)
    return path


def dated_request(
    folder: Path, created: Any, *, sender: str = ALICE, to: str = BOB, pad: int = 0
) -> Path:
    """A request file from ``sender`` in ``folder`` (its sender folder in ``to``'s endpoint)
    whose ``created`` field says ``created`` (a datetime); ``pad`` spaces make it larger and
    keep it valid JSON. For syft-event's cleanup, which judges a request by that field."""
    from datetime import timedelta

    from syft_rpc.protocol import SyftRequest
    from syft_rpc.rpc import make_url

    request = SyftRequest(
        sender=sender,
        method="POST",
        url=make_url(to, "syft_chat", "chat"),
        body=b"{}",
        created=created,
        expires=created + timedelta(minutes=5),
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{request.id}.request"
    path.write_text(request.model_dump_json() + " " * pad)
    return path


def command_env(config: Path, db: Path) -> dict[str, str]:
    """The environment of a ``syft-chat`` child process for one datasite: its SyftBox
    config and database, no installed plugins, this checkout first on the path."""
    import os

    return {
        **os.environ,
        "SYFTBOX_CLIENT_CONFIG_PATH": str(config),
        "SYFT_CHAT_DB": str(db),
        "SYFT_CHAT_LOAD_PLUGINS": "",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }


def envelope_body(sender: str, recipient: str, content: str, **extra: Any) -> bytes:
    env = {
        "v": 1,
        "kind": "message",
        "msg_id": str(uuid.uuid4()),
        "sender": sender,
        "recipient": recipient,
        "content": content,
        "timestamp": "2026-01-01T00:00:00+00:00",
        "metadata": {},
    }
    env.update(extra)
    return json.dumps(env).encode()


def read_response(path: Path, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """Wait for the response beside request ``path``; return (status, JSON body)."""
    import base64

    resp = path.with_suffix(".response")
    wait_for(resp.exists, timeout)
    data = json.loads(resp.read_text())
    body = base64.b64decode(data["body"]) if data.get("body") else b"{}"
    return int(data["status_code"]), json.loads(body)


# --------------------------------------------------------------------------- groups


def group_members(client: Any, gid: str) -> list[str] | None:
    """``client``'s sorted member list of group ``gid``, or ``None`` if it does not know it."""
    try:
        return sorted(client.get_group(gid).members)
    except syft_chat.InvalidMessageError:
        return None


def group_change(group: Any, op: str, targets: dict[str, dict[str, Any]], **extra: Any) -> str:
    """A membership change as a peer would write it by hand, from ``group``'s roster."""
    roster = {e: r.model_dump() for e, r in group.roster.items()}
    roster.update(targets)
    body = {
        "op": op,
        "name": group.name,
        "created_by": group.created_by,
        "targets": list(targets),
        "roster": roster,
        "members": [e for e, r in roster.items() if r["member"]],
    }
    body.update(extra)
    return json.dumps(body)


def send_group_change(
    ws: Workspace, sender: str, to: str, content: str, gid: str, **extra: Any
) -> tuple[int, dict[str, Any]]:
    """Write a ``group`` request by hand from ``sender``'s folder; its (status, answer)."""
    body = envelope_body(sender, to, content, kind="group", group_id=gid, **extra)
    return read_response(write_raw_request(ws, to=to, folder=sender, body=body))


#: the system Chromium the page's browser tests drive (Debian's package)
CHROMIUM = "/usr/bin/chromium"


class RawHttp:
    """Raw HTTP requests to one server on 127.0.0.1, with full control of every header
    (``Host`` included): what a browser's rules would forbid, a local process can send."""

    def __init__(self, port: int, *, timeout: float = 5) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.origin = f"http://127.0.0.1:{port}"
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers with lower-case names, body)``; ``headers`` may replace Host."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            sent = {"Host": self.host, **(headers or {})}
            if body is not None and "Transfer-Encoding" not in sent:
                sent.setdefault("Content-Length", str(len(body)))
            for name, value in sent.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()
