"""A chat page in the browser, served by the process that serves the datasite.

``syft-chat web`` (or ``syft-chat serve --web``) runs :class:`WebServer`: Starlette routes
(:mod:`~syft_chat.web.app`) over the client's public API, behind one security middleware
(:mod:`~syft_chat.web.security`), with live updates as server-sent events fed by the
client's listeners (:mod:`~syft_chat.web.events`). The page itself is plain HTML, CSS and
JavaScript shipped in ``static/``: no CDN, no build step. Needs the ``web`` extra
(``pip install 'syft-chat[web]'``: Starlette and uvicorn).
"""

from __future__ import annotations

from syft_chat.web.server import HOST, PORT_ENV, WebServer, choose_port

__all__ = ["HOST", "PORT_ENV", "WebServer", "choose_port"]
