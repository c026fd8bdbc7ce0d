"""A frame tap: a TCP proxy that shows every WebSocket frame passing through it.

Put it between a client and the lab server and point the client at the tap::

    async with FrameTap.for_lab(lab) as tap:          # or FrameTap("127.0.0.1", 8765)
        async with websockets.connect(f"{tap.ws_url}?token={token}") as ws:
            await ws.send('{"type": "ping"}')
            await ws.recv()
        for captured in tap.frames:
            print(captured.describe())                 # → #1 TEXT · FIN · masked (key ...) ...
        tap.totals()                                   # bytes each way, HTTP and WebSocket apart

The tap relays bytes both ways unchanged, as they arrive: every chunk is written on
before it is looked at, and the relay waits for nothing but the receiving socket
(``drain``), exactly as a direct connection would. Looking at a chunk is
synchronous and cannot fail the relay: a parse error is recorded
(:attr:`FrameTap.errors`) and that direction is then only counted.

What it sees on each connection:

* **HTTP** until the handshake is over. Request and response heads are read to find
  the ``Upgrade: websocket`` request and its ``101 Switching Protocols`` answer
  (RFC 6455 section 4); bodies are skipped by ``Content-Length``. Every byte up to
  and including the 101's head counts as ``http``, so plain requests (short and long
  polling, lesson 01) are measured too.
* **Frames** after the 101, in both directions, read with the sans-I/O codec
  (:class:`labserver.frames.FrameReader`): client to server should be masked, server
  to client not (section 5.1); the tap records what is there, mask or not, so a
  misbehaving client can be watched being refused. Each frame becomes a
  :class:`CapturedFrame` in a bounded deque and goes to every subscriber.

Byte counts are per connection (:meth:`FrameTap.connections`) and in total
(:meth:`FrameTap.totals`), always from the client's side: ``sent`` is what the
client wrote, ``received`` what it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .frames import Frame, FrameError, FrameReader, describe

__all__ = [
    "CaptureError",
    "CapturedFrame",
    "ConnectionInfo",
    "Direction",
    "FrameTap",
    "Traffic",
]

MAX_FRAMES = 5_000  # captured frames kept (the oldest go first)
MAX_ERRORS = 200
MAX_CLOSED_CONNECTIONS = 10_000  # closed connections kept for per-connection counts
MAX_CAPTURED_PAYLOAD = 1 << 20  # a larger frame is relayed but no longer parsed
MAX_HTTP_HEAD = 64 * 1024
READ_SIZE = 64 * 1024


class Direction(enum.Enum):
    """Which way bytes went through the tap."""

    CLIENT_TO_SERVER = "client->server"
    SERVER_TO_CLIENT = "server->client"

    @property
    def arrow(self) -> str:
        """``→`` towards the server, ``←`` towards the client."""
        return "\u2192" if self is Direction.CLIENT_TO_SERVER else "\u2190"


C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One frame seen by the tap; ``t`` is in seconds since the tap started."""

    direction: Direction
    connection_id: int
    frame: Frame
    raw_header: bytes
    t: float

    @property
    def size(self) -> int:
        """Bytes on the wire: header plus payload."""
        return len(self.raw_header) + len(self.frame.payload)

    def describe(self, limit: int = 40) -> str:
        """``→ #1 TEXT · FIN · masked (key 37fa213d) · 5 bytes · 'Hello'``."""
        return f"{self.direction.arrow} #{self.connection_id} {describe(self.frame, limit)}"


@dataclass(frozen=True, slots=True)
class CaptureError:
    """Bytes the tap could not read as frames (relayed all the same).

    ``raw`` holds up to 14 bytes from where reading stopped: the bad frame's header.
    """

    direction: Direction
    connection_id: int
    message: str
    raw: bytes
    t: float

    def describe(self) -> str:
        return f"{self.direction.arrow} #{self.connection_id} cannot read: {self.message}"


@dataclass(frozen=True, slots=True)
class Traffic:
    """Bytes through the tap, seen from the client: ``sent`` to the server, ``received`` from it.

    ``http_*`` are the bytes before the WebSocket began (handshake heads, or whole
    plain HTTP requests and responses), ``ws_*`` the frames after the 101.
    """

    http_sent: int = 0
    http_received: int = 0
    ws_sent: int = 0
    ws_received: int = 0

    @property
    def sent(self) -> int:
        return self.http_sent + self.ws_sent

    @property
    def received(self) -> int:
        return self.http_received + self.ws_received

    @property
    def http(self) -> int:
        return self.http_sent + self.http_received

    @property
    def websocket(self) -> int:
        return self.ws_sent + self.ws_received

    @property
    def total(self) -> int:
        return self.sent + self.received

    def __add__(self, other: Traffic) -> Traffic:
        if not isinstance(other, Traffic):
            return NotImplemented
        return Traffic(self.http_sent + other.http_sent, self.http_received + other.http_received,
                       self.ws_sent + other.ws_sent, self.ws_received + other.ws_received)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One TCP connection through the tap, as it was when asked (times since the tap started)."""

    id: int
    opened: float
    closed: float | None
    upgraded: bool  # the server answered 101: the connection became a WebSocket
    requests: int  # HTTP request heads from the client
    responses: int  # HTTP response heads from the server
    frames_sent: int
    frames_received: int
    traffic: Traffic

    @property
    def open(self) -> bool:
        return self.closed is None


# --- one direction of one connection ------------------------------------------------------


class _Mode(enum.Enum):
    HTTP = "http"  # reading HTTP heads (and skipping bodies)
    PENDING = "pending"  # client bytes after an upgrade request, before the server's answer
    WEBSOCKET = "websocket"  # reading frames
    HTTP_UNREAD = "http-unread"  # still HTTP, but no longer followed (chunked, unbounded body)
    WEBSOCKET_UNREAD = "websocket-unread"  # frames no longer followed (after a parse error)


class _Side:
    __slots__ = ("body_left", "frames", "head", "http_bytes", "mode", "pending", "reader", "ws_bytes")

    def __init__(self) -> None:
        self.mode = _Mode.HTTP
        self.http_bytes = 0
        self.ws_bytes = 0
        self.frames = 0
        self.head = bytearray()
        self.body_left = 0
        self.pending = bytearray()
        self.reader: FrameReader | None = None

    def start_frames(self) -> None:
        self.mode = _Mode.WEBSOCKET
        self.reader = FrameReader(max_size=MAX_CAPTURED_PAYLOAD)


class _Connection:
    __slots__ = ("closed", "id", "methods", "opened", "requests", "responses", "sides", "upgraded", "writers")

    def __init__(self, connection_id: int, opened: float, writers: tuple[asyncio.StreamWriter, ...]) -> None:
        self.id = connection_id
        self.opened = opened
        self.closed: float | None = None
        self.upgraded = False
        self.requests = 0
        self.responses = 0
        self.methods: deque[str] = deque()  # request methods awaiting their response (HEAD has no body)
        self.sides = {C2S: _Side(), S2C: _Side()}
        self.writers = writers

    def info(self) -> ConnectionInfo:
        c, s = self.sides[C2S], self.sides[S2C]
        return ConnectionInfo(
            self.id, self.opened, self.closed, self.upgraded, self.requests, self.responses, c.frames, s.frames,
            Traffic(c.http_bytes, s.http_bytes, c.ws_bytes, s.ws_bytes),
        )

    def reset_counts(self) -> None:
        for side in self.sides.values():
            side.http_bytes = side.ws_bytes = side.frames = 0
        self.requests = self.responses = 0

    def abort(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()


def _head_fields(head: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the headers (names lower-cased) of an HTTP head."""
    start, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return start, headers


def _content_length(headers: dict[str, str]) -> int | None:
    """The body length, or ``None`` if it cannot be known from the head (chunked, or bad)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    value = headers.get("content-length")
    if value is None:
        return 0
    try:
        n = int(value.split(",")[0])
    except ValueError:
        return None
    return n if n >= 0 else None


# --- the tap -----------------------------------------------------------------------------


Event = CapturedFrame | CaptureError


class FrameTap:
    """An asyncio TCP proxy on ``127.0.0.1`` (a free port) in front of ``upstream_host:upstream_port``.

    ``async with FrameTap(host, port) as tap`` starts it (or ``await tap.start()``)
    and closes it at the end, aborting the connections still open. Read
    :attr:`frames` and :attr:`errors`, :meth:`connections` and :meth:`totals`, or
    :meth:`subscribe` to every frame as it is captured. Subscribers are called on
    the event loop, from inside the relay: they must be quick and must not block;
    an exception in one is kept in :attr:`subscriber_errors`, never raised.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0,
        max_frames: int = MAX_FRAMES,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = int(upstream_port)
        self.host = host
        self.port = int(port)
        self._frames: deque[CapturedFrame] = deque(maxlen=max_frames)
        self._errors: deque[CaptureError] = deque(maxlen=MAX_ERRORS)
        self.subscriber_errors: deque[str] = deque(maxlen=50)
        self.captured = 0  # frames captured since the start (or the last reset), kept or not
        self._subscribers: list[Callable[[Event], Any]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._connections: dict[int, _Connection] = {}
        self._forgotten = Traffic()  # the counts of closed connections no longer kept
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._started = time.monotonic()

    @classmethod
    def for_lab(cls, lab: Any, **kwargs: Any) -> FrameTap:
        """A tap in front of a running lab server (anything with an ``http://host:port`` ``url``)."""
        parts = urlsplit(lab.url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"cannot tell host and port from {lab.url!r}: is the lab running?")
        return cls(parts.hostname, parts.port, **kwargs)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> FrameTap:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            self._started = time.monotonic()
        return self

    async def close(self) -> None:
        """Stop listening and abort every connection still open through the tap."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections.values()):
            if conn.closed is None:
                conn.abort()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=2)
        for task in handlers:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()

    async def __aenter__(self) -> FrameTap:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: where plain HTTP requests go through the tap."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/ws``: the lab's WebSocket endpoint, through the tap."""
        return f"ws://{self.host}:{self.port}/ws"

    def __repr__(self) -> str:
        if not self.running:
            return f"FrameTap(stopped, in front of {self.upstream_host}:{self.upstream_port})"
        return f"FrameTap({self.host}:{self.port} \u2192 {self.upstream_host}:{self.upstream_port})"

    # --- what it saw ------------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() - self._started

    @property
    def frames(self) -> list[CapturedFrame]:
        """The captured frames still kept (the last ``max_frames``), oldest first."""
        return list(self._frames)

    @property
    def errors(self) -> list[CaptureError]:
        """What could not be read as frames (the relay went on)."""
        return list(self._errors)

    def connections(self) -> list[ConnectionInfo]:
        """Every connection kept (all open ones and the last closed ones), oldest first."""
        return [conn.info() for conn in self._connections.values()]

    def connection(self, connection_id: int) -> ConnectionInfo:
        return self._connections[connection_id].info()

    def totals(self) -> Traffic:
        """Bytes through the tap since it started (or since :meth:`reset`), over every connection."""
        total = self._forgotten
        for conn in self._connections.values():
            total = total + conn.info().traffic
        return total

    def reset(self) -> None:
        """Forget captured frames, errors, closed connections and every count; the relay goes on."""
        self._frames.clear()
        self._errors.clear()
        self.captured = 0
        self._forgotten = Traffic()
        for cid, conn in list(self._connections.items()):
            if conn.closed is not None:
                del self._connections[cid]
            else:
                conn.reset_counts()

    def subscribe(self, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every :class:`CapturedFrame` and :class:`CaptureError`
        from now on; returns the function that unsubscribes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    async def wait_for(self, match: Callable[[CapturedFrame], Any], timeout: float = 5.0) -> CapturedFrame:
        """The first kept frame for which ``match`` is true, waiting for it up to ``timeout`` s."""
        seen = self.captured
        for captured in self._frames:
            if match(captured):
                return captured
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                waiter = loop.create_future()
                self._waiters.append(waiter)
                await waiter
                new = min(self.captured - seen, len(self._frames))
                seen = self.captured
                for captured in list(self._frames)[len(self._frames) - new :]:
                    if match(captured):
                        return captured

    # --- recording --------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if isinstance(event, CapturedFrame):
            self._frames.append(event)
            self.captured += 1
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        else:
            self._errors.append(event)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception as exc:  # noqa: BLE001 - a subscriber must never break the relay
                self.subscriber_errors.append(f"{getattr(callback, '__qualname__', callback)!s}: "
                                              f"{type(exc).__name__}: {exc}"[:300])

    def _error(self, conn: _Connection, direction: Direction, message: str, raw: bytes = b"") -> None:
        self._emit(CaptureError(direction, conn.id, message, raw[:14], self._now()))

    # --- relaying -----------------------------------------------------------------------------

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            except OSError as exc:
                conn = self._open(client_writer)
                self._error(conn, C2S, f"cannot reach {self.upstream_host}:{self.upstream_port}: {exc}")
                conn.closed = self._now()
                client_writer.transport.abort()
                return
            conn = self._open(client_writer, upstream_writer)
            try:
                await asyncio.gather(
                    self._pump(conn, C2S, client_reader, upstream_writer),
                    self._pump(conn, S2C, upstream_reader, client_writer),
                )
            except asyncio.CancelledError:
                # Only a shutdown cancels a relay (the loop closing, or close() giving up
                # waiting). End quietly: Python 3.11's stream server calls exception() on a
                # cancelled handler task and logs the CancelledError that raises.
                conn.abort()
            finally:
                conn.closed = self._now()
                for writer in (client_writer, upstream_writer):
                    with contextlib.suppress(Exception):
                        writer.close()
        finally:
            if task is not None:
                self._handlers.discard(task)

    def _open(self, *writers: asyncio.StreamWriter) -> _Connection:
        conn = _Connection(next(self._ids), self._now(), writers)
        self._connections[conn.id] = conn
        if len(self._connections) > MAX_CLOSED_CONNECTIONS:
            for cid, old in list(self._connections.items()):
                if len(self._connections) <= MAX_CLOSED_CONNECTIONS:
                    break
                if old.closed is not None:
                    self._forgotten = self._forgotten + old.info().traffic
                    del self._connections[cid]
        return conn

    async def _pump(
        self, conn: _Connection, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Relay one direction until EOF; pass a reset on to the other side."""
        try:
            while data := await reader.read(READ_SIZE):
                writer.write(data)  # relayed first: looking at it cannot delay it
                self._observe(conn, direction, data)
                await writer.drain()
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()  # half-close, as the sender did
        except (ConnectionError, OSError):
            conn.abort()

    def _observe(self, conn: _Connection, direction: Direction, data: bytes) -> None:
        try:
            self._take(conn, direction, data)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the relay
            side = conn.sides[direction]
            side.mode = _Mode.WEBSOCKET_UNREAD if side.mode is _Mode.WEBSOCKET else _Mode.HTTP_UNREAD
            self._error(conn, direction, f"tap failed to read the stream: {type(exc).__name__}: {exc}")

    # --- reading ------------------------------------------------------------------------------

    def _take(self, conn: _Connection, direction: Direction, data: bytes) -> None:
        side = conn.sides[direction]
        mode = side.mode
        if mode is _Mode.HTTP:
            self._read_http(conn, direction, data)
        elif mode is _Mode.WEBSOCKET:
            side.ws_bytes += len(data)
            assert side.reader is not None
            side.reader.receive_data(data)
            self._read_frames(conn, direction)
        elif mode is _Mode.PENDING:
            side.ws_bytes += len(data)  # the client means them as frames; moved to HTTP if refused
            side.pending += data
            if len(side.pending) > MAX_CAPTURED_PAYLOAD:
                side.mode = _Mode.WEBSOCKET_UNREAD
                side.pending = bytearray()
                self._error(conn, direction, "too many bytes before the server answered the upgrade")
        elif mode is _Mode.HTTP_UNREAD:
            side.http_bytes += len(data)
        else:
            side.ws_bytes += len(data)

    def _read_http(self, conn: _Connection, direction: Direction, data: bytes) -> None:
        side = conn.sides[direction]
        pos, end = 0, len(data)
        while pos < end:
            if side.mode is not _Mode.HTTP:  # the head just read switched this side
                self._take(conn, direction, data[pos:])
                return
            if side.body_left:
                step = min(side.body_left, end - pos)
                side.body_left -= step
                side.http_bytes += step
                pos += step
                continue
            before = len(side.head)
            side.head += data[pos:]
            found = side.head.find(b"\r\n\r\n", max(0, before - 3))
            if found < 0:
                side.http_bytes += end - pos
                if len(side.head) > MAX_HTTP_HEAD:
                    side.head.clear()
                    side.mode = _Mode.HTTP_UNREAD
                    self._error(conn, direction, f"HTTP head longer than {MAX_HTTP_HEAD} bytes")
                return
            used = found + 4 - before
            side.http_bytes += used
            pos += used
            head = bytes(side.head[: found + 4])
            side.head.clear()
            if direction is C2S:
                self._on_request(conn, head)
            else:
                self._on_response(conn, head)

    def _on_request(self, conn: _Connection, head: bytes) -> None:
        side = conn.sides[C2S]
        start, headers = _head_fields(head)
        conn.requests += 1
        conn.methods.append(start.split(" ", 1)[0].upper())
        if "websocket" in headers.get("upgrade", "").lower():
            side.mode = _Mode.PENDING  # frames may follow only once the server says 101
            return
        length = _content_length(headers)
        if length is None:
            side.mode = _Mode.HTTP_UNREAD
        else:
            side.body_left = length

    def _on_response(self, conn: _Connection, head: bytes) -> None:
        side, client = conn.sides[S2C], conn.sides[C2S]
        start, headers = _head_fields(head)
        conn.responses += 1
        try:
            status = int(start.split(" ", 2)[1])
        except (IndexError, ValueError):
            side.mode = _Mode.HTTP_UNREAD
            self._error(conn, S2C, f"not an HTTP status line: {start[:60]!r}")
            return
        if status == 101 and client.mode is _Mode.PENDING:
            conn.upgraded = True
            if conn.methods:
                conn.methods.popleft()
            side.start_frames()
            pending, client.pending = bytes(client.pending), bytearray()
            client.start_frames()
            if pending:
                assert client.reader is not None
                client.reader.receive_data(pending)
                self._read_frames(conn, C2S)
            return
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the final one follows
        method = conn.methods.popleft() if conn.methods else "GET"
        if client.mode is _Mode.PENDING:  # the upgrade was refused: what followed was HTTP after all
            pending, client.pending = bytes(client.pending), bytearray()
            client.ws_bytes -= len(pending)
            client.mode = _Mode.HTTP
            if pending:
                self._read_http(conn, C2S, pending)
        if method == "HEAD" or status in (204, 304):
            return  # no body, whatever the head says
        length = _content_length(headers) if "content-length" in headers else None
        if length is None:  # chunked, or a body that lasts until the connection closes
            side.mode = _Mode.HTTP_UNREAD
        else:
            side.body_left = length

    def _read_frames(self, conn: _Connection, direction: Direction) -> None:
        side = conn.sides[direction]
        reader = side.reader
        assert reader is not None
        while True:
            try:
                wire = reader.next_wire_frame()
            except FrameError as exc:
                side.mode = _Mode.WEBSOCKET_UNREAD
                side.reader = None
                self._error(conn, direction, str(exc), reader.peek(14))
                return
            if wire is None:
                return
            side.frames += 1
            self._emit(CapturedFrame(direction, conn.id, wire.frame, wire.header, self._now()))
