"""How much of the process the page's connections may hold: a few, and not for long.

Anyone on the machine can connect to 127.0.0.1, secret or not. Left alone, uvicorn keeps
every connection it accepts, and a request whose headers never end, for ever: another
local user could open hundreds and leave the whole process (the datasite's chat service
too) without file descriptors. :class:`LimitedH11` is uvicorn's h11 protocol with two
limits on top:

* at most :data:`MAX_CONNECTIONS` connections at once; one past that is dropped as soon as
  it is accepted (the page itself needs a handful: requests and one event stream a tab);
* a connection must finish a request's headers within :data:`HEADER_TIMEOUT` seconds of
  connecting, or of starting the next request on a kept-alive connection, else it is
  closed. An idle kept-alive connection is closed by uvicorn after ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["BACKLOG", "HEADER_TIMEOUT", "KEEP_ALIVE", "MAX_CONNECTIONS", "LimitedH11"]

#: connections served at once
MAX_CONNECTIONS = 64
#: seconds a connection has to send a whole request line and headers
HEADER_TIMEOUT = 5.0
#: seconds an idle kept-alive connection stays open
KEEP_ALIVE = 5
#: connections the kernel queues (and the server accepts in one go)
BACKLOG = 64


class LimitedH11(H11Protocol):
    """uvicorn's h11 protocol, with the connection cap and header timeout above."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            transport.abort()  # connection_lost then forgets it
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.header_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection starts now
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # its headers are in
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self.header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _too_slow(self) -> None:
        self.header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
