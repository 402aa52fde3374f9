"""HTTP/1.1 limits uvicorn does not enforce: header size, header/body time limits, a connection cap.

uvicorn's ``httptools`` protocol (``uvicorn[standard]``) reads header blocks of any size and
waits forever for headers and bodies; its keep-alive timer only starts after a first response.
:class:`GuardedHttpToolsProtocol` is that protocol with, per connection:

- **header size**: more than ``max_header_bytes`` received before the headers are complete, or
  a complete header block (request line and every header) larger than that, answers ``431``
  and closes, before the app sees anything;
- **header time**: headers not complete ``header_timeout`` seconds after the connection opened
  or the previous response ended (idle keep-alive included) closes the connection (``408`` if
  part of a request had arrived);
- **body time**: the whole body not received ``body_timeout`` seconds after the headers closes
  the connection (the app sees a disconnect: a body at 1 byte/s cannot hold a connection);
- **connection cap**: at ``max_connections`` open connections, a new one evicts the connection
  that has waited longest for its request headers (an idle or stalled one); when every
  connection is busy with a request, the new one is closed at once. A flood of stalled sockets
  therefore holds at most ``max_connections`` file descriptors and cannot lock out a client
  that sends its request promptly.

The service always runs this protocol (``app.server.run``), so the limits do not depend on
which parser happens to be installed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

Phase = Literal["headers", "body", "app", "closed"]


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int


@dataclass(kw_only=True, slots=True)
class ConnectionGuard:
    """State shared by the connections of one server: which ones wait for request headers,
    oldest first, and counters of what the limits refused."""

    limits: HttpLimits
    waiting: OrderedDict[GuardedHttpToolsProtocol, None] = field(default_factory=OrderedDict)
    open: set[GuardedHttpToolsProtocol] = field(default_factory=set)
    refused: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.refused[what] = self.refused.get(what, 0) + 1

    def admit(self, newcomer: GuardedHttpToolsProtocol) -> bool:
        """Make room for ``newcomer``; ``False`` when every open connection is mid-request."""
        while len(self.open) >= self.limits.max_connections:
            if not self.waiting:
                self.count("connection_cap")
                return False
            oldest, _ = self.waiting.popitem(last=False)
            self.count("evicted")
            oldest.close_now()
        self.open.add(newcomer)
        return True


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _Refused(Exception):
    """Raised in a parser callback to stop httptools once the connection is refused."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`HttpLimits` (module doc)."""

    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._limits = guard.limits
        self._phase: Phase = "headers"
        self._pending_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    # -- connection lifetime ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._guard.admit(self):
            self.close_now()
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        super().connection_lost(exc)

    def close_now(self) -> None:
        self._leave()
        self.transport.close()

    def _leave(self) -> None:
        self._phase = "closed"
        self._cancel_deadline()
        self._guard.waiting.pop(self, None)
        self._guard.open.discard(self)

    # -- phases ---------------------------------------------------------------------------------

    def _await_headers(self) -> None:
        self._phase = "headers"
        self._pending_bytes = 0
        self._guard.waiting[self] = None
        self._set_deadline(self._limits.header_timeout)

    def _set_deadline(self, seconds: float) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._on_deadline)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self._phase == "headers":
            self._guard.count("header_timeout")
            if self._pending_bytes:
                self._refuse(408, "request headers not received in time")
            else:  # idle: nothing to answer
                self.close_now()
        elif self._phase == "body":
            # The app is (or will be) waiting on the body: closing tells it the client is gone.
            self._guard.count("body_timeout")
            self.close_now()

    def _refuse(self, status: int, error: str) -> None:
        body = b'{"accepted":false,"error":"' + error.encode() + b'"}'
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        self.transport.write(
            head
            + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self.close_now()

    # -- data and parser callbacks --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._phase == "closed":
            return
        if self._phase == "headers":
            self._pending_bytes += len(data)
        super().data_received(data)
        if self._phase == "headers" and self._pending_bytes > self._limits.max_header_bytes:
            self._guard.count("header_size")
            self._refuse(431, "request headers too large")

    def send_400_response(self, msg: str) -> None:
        if self._phase != "closed":  # not after our own refusal stopped the parser
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        if self._phase == "app":  # a pipelined request after one in progress
            self._phase = "headers"
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self._limits.max_header_bytes:
            self._guard.count("header_size")
            self._refuse(431, "request headers too large")
            raise _Refused
        self._guard.waiting.pop(self, None)
        self._phase = "body"
        self._set_deadline(self._limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._phase == "body":
            self._phase = "app"
            self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == "app" and not self.transport.is_closing():
            self._await_headers()
