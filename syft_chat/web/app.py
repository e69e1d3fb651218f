"""The page's routes: a thin JSON layer over :class:`~syft_chat.SyftChatClient`'s public API.

Every route is behind :class:`~syft_chat.web.security.Guard`. Reads are ``GET``;
everything that changes something is ``POST`` with a JSON body. A
:class:`~syft_chat.errors.SyftChatError` becomes ``{"error": "..."}`` with status 400
(404 for an unknown recipient, 503 for a closed client or a storage failure); nothing
is lost on a bad request, because the client validates before it stores.
Client calls block (SQLite, files), so they run in Starlette's thread pool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from syft_chat.errors import (
    ClientClosedError,
    DeliveryError,
    InvalidMessageError,
    StorageError,
    SyftChatError,
    UnknownRecipientError,
)
from syft_chat.interfaces import with_reactions
from syft_chat.web.attachments import attachment_routes, with_states
from syft_chat.web.events import EventHub
from syft_chat.web.payloads import conversation_json, group_json, hit_json, message_json
from syft_chat.web.security import UPLOAD_LIMIT, BodyTooLarge

if TYPE_CHECKING:
    from syft_chat.client import SyftChatClient

__all__ = ["PAGE_SIZE", "make_app"]

T = TypeVar("T")

#: conversations and messages per page, unless the request asks for fewer
PAGE_SIZE = 50
_MAX_PAGE = 200
_NUMBER = re.compile(r"[0-9]{1,9}")

STATIC = resources.files("syft_chat.web") / "static"


def _error(exc: Exception) -> JSONResponse:
    status = 400
    if isinstance(exc, UnknownRecipientError):
        status = 404
    elif isinstance(exc, (ClientClosedError, StorageError)):
        status = 503
    elif isinstance(exc, BodyTooLarge):
        status = 413
    elif isinstance(exc, LookupError):
        status = 404
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessageError(f"the request body is not JSON: {exc}") from exc
    except RecursionError as exc:  # thousands of nested [ or {
        raise InvalidMessageError("the request body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise InvalidMessageError("the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidMessageError(f"{key!r} must be a string")
    return value


def _emails(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidMessageError(f"{key!r} must be a list of emails")
    return [v.strip() for v in value if v.strip()]


def _int(request: Request, key: str, default: int, *, high: int = _MAX_PAGE) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    if not _NUMBER.fullmatch(raw):  # ASCII digits only, and few: int() refuses neither
        raise InvalidMessageError(f"{key} must be a non-negative integer of at most 9 digits")
    return min(int(raw), high)


def _group_id(conversation: str) -> str | None:
    return conversation[len("group:") :] if conversation.startswith("group:") else None


def make_app(client: SyftChatClient, hub: EventHub) -> Starlette:
    """The Starlette app of one client's page (wrap it in a ``Guard`` before serving)."""
    me = client.email

    def conversations(offset: int, limit: int) -> dict[str, Any]:
        # newest first, from the store's summary: only as many as this page reaches (one
        # more says whether there is a next page)
        reach = offset + limit + 1
        items = client.list_conversations(limit=reach) if reach <= 10_000 else None
        if items is None:  # a page that deep: the whole list
            items = client.list_conversations()
        names = {f"group:{g.group_id}": g.name for g in client.list_groups()}
        blocked = client.contact_policy.blocked
        page = [conversation_json(c, me, names) for c in items[offset : offset + limit]]
        for row in page:
            row["blocked"] = row["peer"] in blocked
        more = offset + limit < len(items)
        return {"items": page, "next_offset": offset + limit if more else None}

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    async def me_route(request: Request) -> Response:
        policy = client.contact_policy
        return JSONResponse(
            {
                "email": me,
                "role": client.role,
                "blocked": sorted(policy.blocked),
                "mode": policy.mode,
                "upload_limit": UPLOAD_LIMIT,
            }
        )

    async def list_route(request: Request) -> Response:
        offset = _int(request, "offset", 0, high=10**9)
        limit = _int(request, "limit", PAGE_SIZE) or PAGE_SIZE
        return JSONResponse(await _call(conversations, offset, limit))

    async def history(request: Request) -> Response:
        conversation = request.query_params.get("conversation", "").strip()
        if not conversation:
            raise InvalidMessageError("give a conversation")
        page = await _call(
            client.get_history_page,
            conversation=conversation,
            thread_id=request.query_params.get("thread_id") or None,
            limit=_int(request, "limit", PAGE_SIZE) or PAGE_SIZE,
            before=request.query_params.get("before") or None,
        )
        messages = await _call(with_states, client, page.messages)
        return JSONResponse(
            {"messages": [message_json(m, me) for m in messages], "before": page.before}
        )

    async def mark_read(request: Request) -> Response:
        body = await _body(request)
        conversation = _text(body, "conversation") or ""
        return JSONResponse({"marked": await _call(client.mark_conversation_read, conversation)})

    async def send(request: Request) -> Response:
        body = await _body(request)
        conversation = (_text(body, "conversation") or "").strip()
        content = _text(body, "content") or ""
        reply_to = _text(body, "reply_to", required=False) or None
        group = _group_id(conversation)
        try:
            if group is not None:
                response = await _call(client.send_to_group, group, content, reply_to=reply_to)
            else:
                response = await _call(
                    client.send_message, conversation, content, reply_to=reply_to, timeout=0
                )
        except DeliveryError as exc:
            # stored, then refused (or not written yet): the page shows it with its status
            if exc.msg_id is None:
                raise
            return JSONResponse(await _call(_stored, exc.msg_id))
        return JSONResponse(await _call(_stored, response.message_id))

    def _stored(msg_id: str, sender: str | None = me) -> dict[str, Any]:
        message = client.get_message(msg_id, sender=sender)
        if message is None:
            raise LookupError(f"no message {msg_id}")
        [full] = with_reactions([message], client.store.reactions)  # states: get_message
        return message_json(full, me)

    async def get_message(request: Request) -> Response:
        msg_id = request.path_params["msg_id"]
        sender = request.query_params.get("sender") or None
        return JSONResponse(await _call(_stored, msg_id, sender))

    async def edit(request: Request) -> Response:
        body = await _body(request)
        msg_id = request.path_params["msg_id"]
        await _call(client.edit_message, msg_id, _text(body, "content") or "", timeout=0)
        return JSONResponse(await _call(_stored, msg_id))

    async def delete(request: Request) -> Response:
        msg_id = request.path_params["msg_id"]
        await _call(client.delete_message, msg_id, timeout=0)
        return JSONResponse(await _call(_stored, msg_id))

    async def react(request: Request) -> Response:
        body = await _body(request)
        msg_id = request.path_params["msg_id"]
        sender = _text(body, "sender", required=False)
        remove = body.get("remove", False)
        if not isinstance(remove, bool):
            raise InvalidMessageError("'remove' must be true or false")
        emoji = _text(body, "emoji") or ""
        await _call(client.react, msg_id, emoji, remove=remove, timeout=0, sender=sender)
        return JSONResponse(await _call(_stored, msg_id, sender))

    async def delivery(request: Request) -> Response:
        statuses = await _call(client.group_delivery, request.path_params["msg_id"])
        return JSONResponse({member: str(status) for member, status in statuses.items()})

    async def search(request: Request) -> Response:
        query = request.query_params.get("q", "")
        conversation = request.query_params.get("conversation") or None
        hits = await _call(
            client.search, query, conversation=conversation, limit=_int(request, "limit", 30)
        )
        return JSONResponse({"hits": [hit_json(h, me) for h in hits]})

    async def users(request: Request) -> Response:
        return JSONResponse({"users": await _call(client.list_available_users)})

    async def get_group(request: Request) -> Response:
        group = await _call(client.get_group, request.path_params["group_id"])
        return JSONResponse(group_json(group, me))

    async def create_group(request: Request) -> Response:
        body = await _body(request)
        name = _text(body, "name") or ""
        group = await _call(client.create_group, name, _emails(body, "members"))
        return JSONResponse(group_json(group, me))

    async def members(request: Request) -> Response:
        body = await _body(request)
        group_id = request.path_params["group_id"]
        add, remove = _emails(body, "add"), _emails(body, "remove")
        group = None
        if add:
            group = await _call(client.add_group_members, group_id, add)
        if remove:
            group = await _call(client.remove_group_members, group_id, remove)
        if group is None:
            group = await _call(client.get_group, group_id)
        return JSONResponse(group_json(group, me))

    async def leave(request: Request) -> Response:
        group = await _call(client.leave_group, request.path_params["group_id"])
        return JSONResponse(group_json(group, me))

    async def contact(request: Request) -> Response:
        body = await _body(request)
        email = _text(body, "email") or ""
        action = request.path_params["action"]
        if action not in ("block", "unblock"):
            return JSONResponse({"error": f"no contact action {action!r}"}, status_code=404)
        policy = await _call(getattr(client, action), email)
        return JSONResponse({"blocked": sorted(policy.blocked), "mode": policy.mode})

    async def events(request: Request) -> Response:
        return StreamingResponse(
            hub.stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # the page has no icon; the browser asks anyway

    routes = [
        Route("/", index),
        Route("/favicon.ico", no_icon),
        Route("/api/me", me_route),
        Route("/api/conversations", list_route),
        Route("/api/history", history),
        Route("/api/read", mark_read, methods=["POST"]),
        Route("/api/send", send, methods=["POST"]),
        Route("/api/messages/{msg_id}", get_message),
        Route("/api/messages/{msg_id}/edit", edit, methods=["POST"]),
        Route("/api/messages/{msg_id}/delete", delete, methods=["POST"]),
        Route("/api/messages/{msg_id}/react", react, methods=["POST"]),
        Route("/api/messages/{msg_id}/delivery", delivery),
        Route("/api/search", search),
        Route("/api/users", users),
        Route("/api/groups", create_group, methods=["POST"]),
        Route("/api/groups/{group_id}", get_group),
        Route("/api/groups/{group_id}/members", members, methods=["POST"]),
        Route("/api/groups/{group_id}/leave", leave, methods=["POST"]),
        Route("/api/contacts/{action}", contact, methods=["POST"]),
        Route("/api/events", events),
        *attachment_routes(client),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
        return _error(exc)

    return Starlette(
        routes=routes,
        exception_handlers={SyftChatError: on_error, BodyTooLarge: on_error, LookupError: on_error},
    )
