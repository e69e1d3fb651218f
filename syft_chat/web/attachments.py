"""Attachments in the page: downloading what a message carries, uploading a file to send.

Both routes exist only when the client offers attachments (``attachment_path`` and
``send_message(..., attachments=...)``); without them the page hides its file button.

* ``GET /api/attachments/{msg_id}/{attachment_id}?sender=`` serves only what
  ``client.attachment_path`` returns for that message's attachment, never a path from the
  request. Raster images in :data:`INLINE_TYPES` are served as themselves (``inline``);
  everything else, SVG and HTML included, as ``application/octet-stream`` with
  ``Content-Disposition: attachment``, so a peer's file can never run as a page here.
* ``POST /api/upload?conversation=&name=&reply_to=`` takes the raw file as the body
  (at most :data:`~syft_chat.web.security.UPLOAD_LIMIT` bytes), writes it to a private
  temporary folder under its (sanitised) name, and sends it with ``send_message`` or
  ``send_to_group``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syft_chat.errors import DeliveryError, InvalidMessageError
from syft_chat.web.payloads import message_json

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient

__all__ = ["INLINE_TYPES", "attachment_routes", "safe_filename", "supported"]

#: media types shown inline (raster images only: no SVG, no HTML)
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

_UNSAFE = re.compile(r"[^\w.\- ()\[\]+,@]", re.UNICODE)


def supported(client: SyftChatClient) -> bool:
    """Whether this client offers attachments."""
    return callable(getattr(client, "attachment_path", None))


def safe_filename(name: str) -> str:
    """A file name without folders, control characters or leading dots (``file`` if none)."""
    base = os.path.basename(name.replace("\\", "/")).strip()
    base = _UNSAFE.sub("_", base).lstrip(".")
    return base[:200] or "file"


def _disposition(kind: str, name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def attachment_routes(client: SyftChatClient) -> list[BaseRoute]:
    """The routes above, or none when the client has no attachments."""
    if not supported(client):
        return []
    me = client.email
    upload_dir = Path(tempfile.mkdtemp(prefix="syft-chat-upload-"))

    def find(msg_id: str, attachment_id: str, sender: str | None) -> tuple[Path, Any]:
        message = client.get_message(msg_id, sender=sender)
        items = getattr(message, "attachments", None) or [] if message is not None else []
        item = next((a for a in items if str(getattr(a, "id", "")) == attachment_id), None)
        if message is None or item is None:
            raise LookupError(f"no attachment {attachment_id} on message {msg_id}")
        path = client.attachment_path(  # type: ignore[attr-defined]
            msg_id, attachment_id, sender=message.sender
        )
        return Path(path), item

    async def download(request: Request) -> Response:
        msg_id = request.path_params["msg_id"]
        attachment_id = request.path_params["attachment_id"]
        sender = request.query_params.get("sender") or None
        try:
            path, item = await run_in_threadpool(find, msg_id, attachment_id, sender)
        except (LookupError, FileNotFoundError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        if not path.is_file():
            return JSONResponse({"error": "the attachment's file is not here"}, status_code=404)
        media_type = str(getattr(item, "media_type", "") or "").lower()
        name = safe_filename(str(getattr(item, "name", "") or "file"))
        inline = media_type in INLINE_TYPES
        return FileResponse(
            str(path),
            media_type=media_type if inline else "application/octet-stream",
            headers={
                "content-disposition": _disposition("inline" if inline else "attachment", name),
                "x-content-type-options": "nosniff",
                "cache-control": "private, no-store",
            },
        )

    async def upload(request: Request) -> Response:
        conversation = (request.query_params.get("conversation") or "").strip()
        name = safe_filename(request.query_params.get("name") or "file")
        reply_to = request.query_params.get("reply_to") or None
        content = request.query_params.get("content") or ""
        if not conversation:
            raise InvalidMessageError("give a conversation")
        folder = Path(tempfile.mkdtemp(dir=upload_dir))
        path = folder / name
        try:
            with path.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
        except BaseException:  # too large, or the browser went away: keep nothing
            path.unlink(missing_ok=True)
            folder.rmdir()
            raise

        def send() -> dict[str, Any]:
            try:
                if conversation.startswith("group:"):
                    response = client.send_to_group(  # type: ignore[call-arg]
                        conversation[len("group:") :],
                        content,
                        reply_to=reply_to,
                        attachments=[path],
                    )
                else:
                    response = client.send_message(  # type: ignore[call-arg]
                        conversation, content, reply_to=reply_to, timeout=0, attachments=[path]
                    )
                msg_id = response.message_id
            except DeliveryError as exc:  # stored, then refused: shown with its status
                if exc.msg_id is None:
                    raise
                msg_id = exc.msg_id
            stored = client.get_message(msg_id, sender=me)
            return message_json(stored, me) if stored is not None else {}

        return JSONResponse(await run_in_threadpool(send))

    return [
        Route("/api/attachments/{msg_id}/{attachment_id}", download),
        Route("/api/upload", upload, methods=["POST"]),
    ]
