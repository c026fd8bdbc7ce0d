"""The RFC 6455 rules aiohttp does not keep, added through its private names.

aiohttp (3.14) accepts unmasked client frames, never notices endless empty
continuation frames, and lets the close codes 1006 and 5000-65535 through. The
lab server teaches RFC 6455 and must keep it, so :class:`LabWebSocketResponse`
puts a :class:`~labserver.frames.ClientFrameGuard` in front of aiohttp's frame
parser, which sees every byte first:

* an unmasked client frame: 1002 (section 5.1: the server "MUST close the
  connection upon receiving a frame that is not masked");
* more continuation frames than a message may have: 1009 (section 5.4 allows
  fragmentation, not endless empty fragments);
* a close frame with a code no endpoint may send: 1002 (section 7.4).

It also keeps a slow HTTP client (slowloris) from taking every open file:
:class:`GuardedAppRunner` serves with :class:`GuardedRequestHandler`, which counts,
per client IP, the connections that are not inside a request (still sending their
headers, or idle) and refuses a new one over the limit with a 503 at once. The
header-read and idle timeout itself is aiohttp's ``keepalive_timeout``, which closes
a connection that has not sent a whole request head that long after it opened or
after its previous response.

And it deepens a started site's listen backlog without making asyncio accept more
connections in one go (:func:`deepen_backlog`): a crowd connecting at once is queued by
the kernel instead of being dropped and retried a second later.

This is the only module that names aiohttp's private attributes: they are listed
in :data:`PRIVATE_NAMES`, pyproject.toml pins aiohttp to the minor version they
were checked against, and ``tests/test_aiohttp_compat.py`` fails, naming the
installed version, if one of them moves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_websocket import WebSocketError
from aiohttp.web_protocol import RequestHandler

from .frames import ClientFrameGuard, is_valid_close_code

__all__ = [
    "PRIVATE_NAMES",
    "ConnectionGuard",
    "GuardedAppRunner",
    "GuardedRequestHandler",
    "LabWebSocketResponse",
    "deepen_backlog",
    "listen_deeper",
]

log = logging.getLogger("labserver")

PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    # owner -> the private names of it used below
    "aiohttp.web.WebSocketResponse": ("_post_start", "_reader", "_max_msg_size"),
    "aiohttp.web_protocol.RequestHandler": ("_message_tail", "_payload_parser", "_parser", "_handle_request"),
    "aiohttp.web.AppRunner": ("_make_server",),
    "aiohttp.web.TCPSite": ("_server",),
}


class LabWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocket response, keeping the RFC 6455 rules listed in the module docstring."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # aiohttp caps a message's fragments at max(1024, max_msg_size // 256), but counts
        # only non-empty ones; the guard counts every continuation frame.
        guard = ClientFrameGuard(max_fragments=max(1024, self._max_msg_size // 256))
        http_protocol = request.protocol
        # Bytes that came in with the handshake: aiohttp's reader parses them as soon as it is
        # set up (in super()._post_start), so the guard reads them first, and when they break a
        # rule aiohttp gets none of them (else a bad Close frame there would be answered first).
        refused = guard.feed(bytes(http_protocol._message_tail)) is not None
        if refused:
            http_protocol._message_tail = b""
        super()._post_start(request, protocol, writer)
        http_protocol._payload_parser = _GuardedParser(http_protocol._payload_parser, guard, self)
        # The connection speaks WebSocket until it closes: its HTTP request parser (about 1 KiB,
        # kept by aiohttp for the connection's life) is never fed again. aiohttp drops it the
        # same way when the connection is lost, and checks for None wherever it reads it.
        http_protocol._parser = None
        if refused:
            self._refuse(guard)

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        """Close; in answer to the peer's Close frame, with the peer's own code.

        RFC 6455 section 5.5.1: an endpoint that receives a Close frame sends one back, and
        "typically echoes the status code it received". aiohttp answers 1000 whatever the
        client said; a client leaving with 1001 (a closed tab) gets 1001 back here. An empty
        Close (no code) is answered 1000.
        """
        received = self.close_code  # set from the peer's Close frame before aiohttp answers it
        if received is not None and not self.closed and is_valid_close_code(received):
            code = received
        return await super().close(code=code, message=message, drain=drain)

    def _refuse(self, guard: ClientFrameGuard) -> None:
        """Hand aiohttp's reader the violation as a protocol error: aiohttp closes with its code."""
        assert self._reader is not None
        self._reader.set_exception(WebSocketError(guard.violation_code, guard.violation or ""))


class _GuardedParser:
    """Feeds every byte from the client to the guard before aiohttp's parser sees it."""

    __slots__ = ("_inner", "_guard", "_ws")

    def __init__(self, inner: Any, guard: ClientFrameGuard, ws: LabWebSocketResponse) -> None:
        self._inner = inner
        self._guard = guard
        self._ws = ws

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._guard.feed(data) is not None:
            self._ws._refuse(self._guard)
            return True, b""
        result: tuple[bool, bytes] = self._inner.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._inner.feed_eof()


# --- slow HTTP clients: a per-IP cap on connections that are not inside a request ---------------


class ConnectionGuard:
    """Per client IP, how many connections are open but not inside a request (sending their
    request head, or idle between requests); a new connection over ``limit`` is refused.

    Those are what a slowloris attack holds open: each costs an open file and nothing to
    send. A connection inside a request (a long poll, a WebSocket) does not count: it
    authenticated or is being answered. ``limit`` 0: no limit."""

    __slots__ = ("limit", "waiting", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting: dict[str, int] = {}  # IP -> connections not inside a request
        self.refused = 0

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``, or say no (and count nothing)."""
        count = self.waiting.get(ip, 0)
        if self.limit and count >= self.limit:
            self.refused += 1
            return False
        self.waiting[ip] = count + 1
        return True

    def release(self, ip: str) -> None:
        count = self.waiting.get(ip, 0) - 1
        if count > 0:
            self.waiting[ip] = count
        else:
            self.waiting.pop(ip, None)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's HTTP connection, counted by a :class:`ConnectionGuard` while it is not
    inside a request, and closed with a 503 at once when its IP is over the limit."""

    __slots__ = ("_guard", "_ip", "_state")  # aiohttp's RequestHandler has slots: no __dict__ per connection

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._ip: str | None = None
        self._state = "new"  # -> "waiting" (counted) <-> "busy" (inside a request) -> "gone"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self._guard.admit(ip):
            self._state = "gone"
            if self._guard.refused % 100 == 1:  # one line per hundred refusals, not a flood of them
                log.warning("refusing connections from %s: %d unfinished requests (the limit)", ip, self._guard.limit)
            message = f"too many unfinished requests from {ip} (at most {self._guard.limit}); try again later"
            body = json.dumps({"error": "too_many_connections", "message": message}).encode()
            head = (
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(head.encode() + body)
            transport.close()  # the open file is given back at once
            return
        self._ip, self._state = ip, "waiting"

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._state == "waiting" and self._ip is not None:
            self._guard.release(self._ip)
        self._state = "gone"
        super().connection_lost(exc)

    async def _handle_request(
        self,
        request: web.BaseRequest,
        start_time: float | None,
        request_handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        if self._state == "waiting" and self._ip is not None:
            self._guard.release(self._ip)
            self._state = "busy"
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            # Back to waiting for the next request on a kept-alive connection (a lost one stays gone).
            if self._state == "busy" and self._ip is not None:
                self._guard.waiting[self._ip] = self._guard.waiting.get(self._ip, 0) + 1
                self._state = "waiting"


class _GuardedServer(web.Server):
    """aiohttp's connection factory, making :class:`GuardedRequestHandler` connections."""

    def __init__(self, inner: web.Server, guard: ConnectionGuard, loop: asyncio.AbstractEventLoop, **kwargs: Any):
        super().__init__(
            inner.request_handler,
            request_factory=inner.request_factory,
            handler_cancellation=inner.handler_cancellation,
            loop=loop,
            **kwargs,
        )
        self._guarded_by = guard
        self._handler_kwargs = kwargs

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, self._guarded_by, loop=asyncio.get_running_loop(), **self._handler_kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are counted by ``guard`` (see :class:`ConnectionGuard`)."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard
        self._handler_kwargs = kwargs

    async def _make_server(self) -> web.Server:
        inner = await super()._make_server()  # the application's start-up runs here
        kwargs = {k: v for k, v in self._handler_kwargs.items() if k not in ("handle_signals", "shutdown_timeout")}
        return _GuardedServer(inner, self.guard, asyncio.get_running_loop(), **kwargs)


# --- the listen backlog ----------------------------------------------------------------------


def deepen_backlog(site: web.TCPSite, backlog: int) -> None:
    """Let the kernel queue up to ``backlog`` connections the started ``site`` has not accepted yet.

    asyncio uses one number for two things: ``listen()``'s backlog, and how many connections
    it accepts in one go when the socket is ready. The second must stay small (aiohttp's 128):
    every connection accepted takes an open file before the loop can refuse one over a cap, so
    a batch of thousands could run out of files (EMFILE), and it would stall the loop. So the
    site starts with aiohttp's number and the socket is told ``listen(backlog)`` again, which
    only deepens the kernel's queue (POSIX allows calling ``listen`` on a listening socket).
    Elsewhere (Windows) the site keeps its backlog."""
    server = site._server
    if isinstance(server, asyncio.Server):  # else not started
        listen_deeper(server.sockets, backlog)


def listen_deeper(sockets: Iterable[socket.socket], backlog: int) -> None:
    """Call ``listen(backlog)`` again on an asyncio server's listening sockets (POSIX only)."""
    if os.name != "posix":
        return
    for listening in sockets:
        # A duplicate of the descriptor: the same socket, told its new backlog, then let go.
        with socket.fromfd(listening.fileno(), listening.family, listening.type) as same:
            same.listen(backlog)
