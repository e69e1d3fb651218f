"""Attachments in the page: picked or dropped files arrive, images show inline through the
authenticated route, everything else is a download; nothing a peer named runs.

Skipped (saying so) while the client has no attachments (``attachment_path``)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from syft_chat.testing import wait_for
from syft_chat.web.attachments import supported

from .test_security import Http

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"
HOSTILE = "<img src=x onerror=alert(1)>"


def _png(width: int = 24, height: int = 16) -> bytes:
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


@pytest.fixture(autouse=True)
def _needs_attachments(net):
    if not supported(net[ALICE]):
        pytest.skip("this syft-chat has no attachments yet (client.attachment_path)")


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

    picture = tmp_path / "picture.png"
    picture.write_bytes(_png())
    alice.page.locator("#file").set_input_files(str(picture))
    image = bob.page.locator("#messages img.inline-image")
    image.wait_for(timeout=5_000)
    wait_for(lambda: image.evaluate("(img) => img.complete && img.naturalWidth") == 24, 5)
    shot(bob.page, "bob-attachments")


@pytest.mark.browser
def test_a_hostile_file_name_is_text(net, open_page, tmp_path):
    named = tmp_path / f"{HOSTILE}.txt"
    named.write_text("hello")
    net[ALICE].send_message(BOB, "with a strange file", attachments=[named])
    bob = open_page(BOB)
    bob.open(ALICE)
    link = bob.page.locator("#messages a.file")
    link.wait_for(timeout=5_000)
    assert HOSTILE in link.inner_text()
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
    cookie = {"Cookie": web.sign_in(server.secrets.token)}
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
