"""Attachments in the page: downloading what a message carries, uploading a file to send.

The attachments feature computes each attachment's state from the local synced copy;
:func:`with_states` gives the page messages with those states.

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

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syft_chat.errors import AttachmentError, DeliveryError, InvalidMessageError
from syft_chat.filenames import safe_name
from syft_chat.models import Attachment, ChatMessage
from syft_chat.web.payloads import message_json

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient

__all__ = ["INLINE_TYPES", "attachment_routes", "with_states"]

#: media types shown inline (raster images only: no SVG, no HTML)
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def with_states(client: SyftChatClient, messages: list[ChatMessage]) -> list[ChatMessage]:
    """``messages`` whose attachments carry the state computed now (``get_message`` computes
    it; a history page and a listener's message may hold the stored one)."""
    out = []
    for message in messages:
        if message.attachments:
            current = client.get_message(message.msg_id, sender=message.sender)
            if current is not None:
                message = message.model_copy(update={"attachments": current.attachments})
        out.append(message)
    return out


def _disposition(kind: str, name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def attachment_routes(client: SyftChatClient) -> list[BaseRoute]:
    """The two routes above, for one client."""
    me = client.email

    def find(msg_id: str, attachment_id: str, sender: str | None) -> tuple[Path, Attachment]:
        message = client.get_message(msg_id, sender=sender)
        item = (
            next((a for a in message.attachments if a.id == attachment_id), None)
            if (message is not None)
            else None
        )
        if message is None or item is None:
            raise LookupError(f"no attachment {attachment_id} on message {msg_id}")
        # only what the attachments feature hands out: verified, and available
        return client.attachment_path(msg_id, attachment_id, sender=message.sender), item

    async def download(request: Request) -> Response:
        msg_id = request.path_params["msg_id"]
        attachment_id = request.path_params["attachment_id"]
        sender = request.query_params.get("sender") or None
        try:
            path, item = await run_in_threadpool(find, msg_id, attachment_id, sender)
        except (LookupError, AttachmentError, OSError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        media_type = item.media_type.lower()
        name = item.name  # sanitised by the model, on send and on receive
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

    def send(conversation: str, content: str, reply_to: str | None, path: Path) -> dict[str, Any]:
        try:
            if conversation.startswith("group:"):
                response = client.send_to_group(
                    conversation[len("group:") :], content, reply_to=reply_to, attachments=[path]
                )
            else:
                response = client.send_message(
                    conversation, content, reply_to=reply_to, timeout=0, attachments=[path]
                )
            msg_id = response.message_id
        except DeliveryError as exc:  # stored, then refused: shown with its status
            if exc.msg_id is None:
                raise
            msg_id = exc.msg_id
        stored = client.get_message(msg_id, sender=me)
        return message_json(stored, me) if stored is not None else {}

    async def upload(request: Request) -> Response:
        conversation = (request.query_params.get("conversation") or "").strip()
        name = safe_name(request.query_params.get("name") or "file")
        reply_to = request.query_params.get("reply_to") or None
        # a message needs text: a file sent alone says its name (the page then shows it once)
        content = request.query_params.get("content") or name
        if not conversation:
            raise InvalidMessageError("give a conversation")
        # the file keeps its name (what the recipient sees) in a private folder of its own;
        # send_message copies it into the datasite, so the folder goes in every case
        folder = Path(tempfile.mkdtemp(prefix="syft-chat-upload-"))
        path = folder / name
        try:
            with path.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
            sent = await run_in_threadpool(send, conversation, content, reply_to, path)
            return JSONResponse(sent)
        finally:  # too large, the browser went away, sent or refused: keep nothing here
            shutil.rmtree(folder, ignore_errors=True)

    return [
        Route("/api/attachments/{msg_id}/{attachment_id}", download),
        Route("/api/upload", upload, methods=["POST"]),
    ]
