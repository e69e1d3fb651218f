"""Attachments in the page: picked or dropped files arrive, images show inline through the
authenticated route, everything else is a download; nothing a peer named runs."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from syft_chat.testing import wait_for

from .test_security import Http

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"
HOSTILE = "<img src=x onerror=alert(1)>"


def _png(width: int = 160, height: int = 90) -> bytes:
    """A small valid PNG (a solid colour), written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\x2f\x6f\xdf" * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _received(client, name):
    for message in client.get_chat_history(limit=100):
        for item in getattr(message, "attachments", []) or []:
            if item.name == name and str(getattr(item.state, "value", item.state)) == "available":
                return message, item
    return None


@pytest.mark.browser
def test_a_picked_file_and_an_image_arrive(net, open_page, shot, tmp_path):
    net[ALICE].send_message(BOB, "files coming")
    alice, bob = open_page(ALICE), open_page(BOB)
    alice.open(BOB)
    bob.open(ALICE)
    bob.wait_for_text("files coming")

    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    alice.page.locator("#file").set_input_files(str(report))
    link = bob.page.locator("#messages a.file", has_text="report.csv")
    link.wait_for(timeout=5_000)
    message, item = wait_for(lambda: _received(net[BOB], "report.csv"), 5)
    assert Path(net[BOB].attachment_path(message.msg_id, item.id, sender=ALICE)).read_bytes() == (
        report.read_bytes()
    )
    # a download is an API call too: fetched with the secret's header, saved from a blob
    with bob.page.expect_download(timeout=5_000) as download:
        link.click()
    assert download.value.suggested_filename == "report.csv"
    assert Path(download.value.path()).read_bytes() == report.read_bytes()
    assert "token" not in bob.page.url  # the secret left the address bar

    picture = tmp_path / "picture.png"
    picture.write_bytes(_png())
    alice.page.locator("#file").set_input_files(str(picture))
    image = bob.page.locator("#messages img.inline-image")
    image.wait_for(timeout=5_000)
    wait_for(lambda: image.evaluate("(img) => img.complete && img.naturalWidth") == 160, 5)

    # dropped on the conversation: sent like a picked one
    drop = alice.page.evaluate_handle(
        """(text) => {
            const data = new DataTransfer();
            data.items.add(new File([text], "dropped.txt", { type: "text/plain" }));
            return data;
        }""",
        "dropped contents",
    )
    alice.page.dispatch_event("#chat", "drop", {"dataTransfer": drop})
    bob.page.locator("#messages a.file", has_text="dropped.txt").wait_for(timeout=5_000)
    message, item = wait_for(lambda: _received(net[BOB], "dropped.txt"), 5)
    path = net[BOB].attachment_path(message.msg_id, item.id, sender=ALICE)
    assert Path(path).read_text() == "dropped contents"
    shot(bob.page, "bob-attachments")


@pytest.mark.browser
def test_file_names_are_text(net, open_page, tmp_path):
    """A file name is put in the page as text: HTML in it shows literally (the attachments
    feature already turns < > into _), and so does an entity, which HTML would decode."""
    hostile = tmp_path / f"{HOSTILE}.txt"
    hostile.write_text("hello")
    entity = tmp_path / "a&amp;b.txt"
    entity.write_text("hello")
    net[ALICE].send_message(BOB, "strange names", attachments=[hostile, entity])
    bob = open_page(BOB)
    bob.open(ALICE)
    links = bob.page.locator("#messages a.file")
    links.nth(1).wait_for(timeout=5_000)
    names = [a.name for a in net[BOB].get_chat_history()[-1].attachments]
    assert names[1] == "a&amp;b.txt"
    shown = [links.nth(i).locator("bdi").inner_text() for i in range(2)]  # isolated
    assert shown == [f"\U0001f4ce {name}" for name in names]
    assert bob.page.locator("#messages img").count() == 0
    bob.page.wait_for_timeout(300)
    assert bob.dialogs == []


def test_the_route_serves_only_attachments_and_never_as_a_page(net, serve_page, tmp_path):
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    html = tmp_path / "page.html"
    html.write_text("<script>alert(1)</script>")
    png = tmp_path / "dot.png"
    png.write_bytes(_png())
    for path in (svg, html, png):
        net[ALICE].send_message(BOB, path.name, attachments=[path])
    server = serve_page(BOB)
    web = Http(server)
    cookie = {
        "Cookie": web.sign_in(server.secrets.token),
        "X-Syft-Chat-Token": server.secrets.token,
    }
    found = {}
    for path in (svg, html, png):
        message, item = wait_for(lambda p=path: _received(net[BOB], p.name), 5)
        found[path.name] = (message, item)
    for name, (message, item) in found.items():
        url = f"/api/attachments/{message.msg_id}/{item.id}?sender={ALICE}"
        status, headers, body = web.request("GET", url, headers=cookie)
        assert status == 200
        assert headers["x-content-type-options"] == "nosniff"
        if name == "dot.png":
            assert headers["content-type"] == "image/png"
            assert headers["content-disposition"].startswith("inline")
        else:
            assert headers["content-type"] == "application/octet-stream"
            assert headers["content-disposition"].startswith("attachment")
        status, _, _ = web.request("GET", url)  # without the cookie
        assert status == 401
    message, item = found["dot.png"]
    for url in (
        f"/api/attachments/{message.msg_id}/nope?sender={ALICE}",
        f"/api/attachments/nope/{item.id}?sender={ALICE}",
        f"/api/attachments/{message.msg_id}/..%2F..%2Fetc%2Fpasswd",
    ):
        status, _, body = web.request("GET", url, headers=cookie)
        assert status == 404, url


def test_uploads_are_limited_and_leave_nothing_behind(net, serve_page, tmp_path, monkeypatch):
    import tempfile

    from syft_chat.web import security

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(security, "UPLOAD_LIMIT", 1000)
    server = serve_page(ALICE)
    net[BOB]
    web = Http(server)
    ok = web.signed_in(server.secrets.token)
    url = f"/api/upload?conversation={BOB}&name=notes.txt"
    status, _, _ = web.request("POST", url, body=b"x" * 1001, headers=ok)
    assert status == 413  # declared too large: refused before reading
    chunked = {**ok, "Transfer-Encoding": "chunked"}
    body = b"".join(b"%x\r\n%s\r\n" % (200, b"y" * 200) for _ in range(6)) + b"0\r\n\r\n"
    status, _, _ = web.request("POST", url, body=body, headers=chunked)
    assert status == 413  # grew too large while streaming
    status, _, _ = web.request("POST", url, body=b"z" * 10, headers={**ok, "Origin": "http://x"})
    assert status == 403
    status, _, answer = web.request("POST", url, body=b"short notes", headers=ok)
    assert status == 200, answer
    assert json.loads(answer)["attachments"][0]["name"] == "notes.txt"
    assert list(tmp_path.glob("syft-chat-upload-*")) == []  # the temporary copies are gone
    message, item = wait_for(lambda: _received(net[BOB], "notes.txt"), 5)
    assert Path(net[BOB].attachment_path(message.msg_id, item.id)).read_bytes() == b"short notes"
