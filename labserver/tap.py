"""A frame tap: a TCP proxy that shows every WebSocket frame passing through it.

Put it between a client and the lab server and point the client at the tap::

    async with FrameTap.for_lab(lab) as tap:          # or FrameTap("127.0.0.1", 8765)
        async with websockets.connect(f"{tap.ws_url}?token={token}") as ws:
            await ws.send('{"type": "ping"}')
            await ws.recv()
        for captured in tap.frames:
            print(captured.describe())                 # → #1 TEXT · FIN · masked (key ...) ...
        tap.totals()                                   # bytes each way, HTTP and WebSocket apart

The tap only moves bytes. It relays them both ways unchanged, as they arrive:
every chunk is written on before it is looked at, and the relay waits for nothing
but the receiving socket (``drain``), exactly as a direct connection would. What
the bytes are is the job of a sans-I/O :class:`labserver.wire.ConnectionReader`
per connection, fed each chunk after it was relayed: HTTP/1.1 heads until the
``101 Switching Protocols`` (RFC 6455 section 4), frames after it (section 5),
everything counted. The reader never raises, so looking at a chunk cannot fail
the relay: what it cannot read it reports (:attr:`FrameTap.errors`) and from then
on only counts.

Captured frames (:class:`CapturedFrame`) are kept in a bounded deque and go to
every subscriber; HTTP heads (:class:`labserver.wire.CapturedHead`) are kept in
:attr:`FrameTap.heads`. Byte counts are per connection (:meth:`FrameTap.connections`)
and in total (:meth:`FrameTap.totals`), always from the client's side: ``sent`` is
what the client wrote, ``received`` what it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .frames import apply_mask
from .wire import C2S, S2C, CapturedFrame, CapturedHead, CaptureError, ConnectionReader, Direction, Traffic, WireEvent

__all__ = [
    "CaptureError",
    "CapturedFrame",
    "CapturedHead",
    "ConnectionInfo",
    "Direction",
    "FrameTap",
    "Traffic",
]

MAX_FRAMES = 5_000  # captured frames kept (the oldest go first)
MAX_HEADS = 1_000  # captured HTTP heads kept
MAX_ERRORS = 200
MAX_CLOSED_CONNECTIONS = 10_000  # closed connections kept for per-connection counts
READ_SIZE = 64 * 1024
PACING_SLICE = 0.005  # seconds of link time per write when a bandwidth limit is set

Event = CapturedFrame | CaptureError  # what subscribers are given


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


class _Connection:
    """A relayed connection: what reads its bytes, and the sockets to abort at the end."""

    __slots__ = ("closed", "opened", "reader", "writers")

    def __init__(self, reader: ConnectionReader, opened: float, writers: tuple[asyncio.StreamWriter, ...]) -> None:
        self.reader = reader
        self.opened = opened
        self.closed: float | None = None
        self.writers = writers

    def info(self) -> ConnectionInfo:
        r = self.reader
        return ConnectionInfo(
            r.connection_id,
            self.opened,
            self.closed,
            r.upgraded,
            r.requests,
            r.responses,
            r.frames_sent,
            r.frames_received,
            r.traffic,
        )

    def abort(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FrameTap:
    """An asyncio TCP proxy on ``127.0.0.1`` (a free port) in front of ``upstream_host:upstream_port``.

    ``async with FrameTap(host, port) as tap`` starts it (or ``await tap.start()``)
    and closes it at the end, aborting the connections still open. With
    ``bytes_per_second``, each direction of each connection is a link of that
    capacity (a slow network, for lesson 03's head-of-line blocking): bytes leave
    the tap no faster, in order, as TCP would deliver them. Read
    :attr:`frames`, :attr:`heads` and :attr:`errors`, :meth:`connections` and
    :meth:`totals`, or :meth:`subscribe` to every frame as it is captured.
    Subscribers are called on the event loop, from inside the relay: they must be
    quick and must not block; an exception in one is kept in
    :attr:`subscriber_errors`, never raised.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_frames: int = MAX_FRAMES,
        bytes_per_second: float | None = None,
    ) -> None:
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"bytes_per_second must be positive, got {bytes_per_second!r}")
        self.bytes_per_second = bytes_per_second
        self.upstream_host = upstream_host
        self.upstream_port = int(upstream_port)
        self.host = host
        self.port = int(port)
        self._frames: deque[CapturedFrame] = deque(maxlen=max_frames)
        self._heads: deque[CapturedHead] = deque(maxlen=MAX_HEADS)
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
    def heads(self) -> list[CapturedHead]:
        """The HTTP request and response heads still kept (the last 1,000), oldest first."""
        return list(self._heads)

    @property
    def errors(self) -> list[CaptureError]:
        """What could not be read (the relay went on)."""
        return list(self._errors)

    def frame_bytes(self, connection_id: int, direction: Direction) -> bytes:
        """The kept frames of one direction of one connection, as they were on the wire:
        each frame's header, then its payload masked again with its key (section 5.3).

        This is the byte stream a reader on that side was given after the 101, when no
        frame of it has been dropped from :attr:`frames` (the last ``max_frames``)."""
        parts: list[bytes] = []
        for captured in self._frames:
            if captured.connection_id == connection_id and captured.direction is direction:
                frame = captured.frame
                key = frame.masking_key
                parts.append(captured.raw_header)
                parts.append(frame.payload if key is None else apply_mask(frame.payload, key))
        return b"".join(parts)

    def connections(self) -> list[ConnectionInfo]:
        """Every connection kept (all open ones and the last closed ones), oldest first."""
        return [conn.info() for conn in self._connections.values()]

    def connection(self, connection_id: int) -> ConnectionInfo:
        return self._connections[connection_id].info()

    def totals(self) -> Traffic:
        """Bytes through the tap since it started (or since :meth:`reset`), over every connection."""
        total = self._forgotten
        for conn in self._connections.values():
            total = total + conn.reader.traffic
        return total

    def reset(self) -> None:
        """Forget captured frames, heads, errors, closed connections and every count; the relay goes on."""
        self._frames.clear()
        self._heads.clear()
        self._errors.clear()
        self.captured = 0
        self._forgotten = Traffic()
        for cid, conn in list(self._connections.items()):
            if conn.closed is not None:
                del self._connections[cid]
            else:
                conn.reader.reset_counts()

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

    def _record(self, events: list[WireEvent]) -> None:
        for event in events:
            if isinstance(event, CapturedHead):
                self._heads.append(event)
                continue
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
                except Exception as exc:  # a subscriber must never break the relay
                    self.subscriber_errors.append(
                        f"{getattr(callback, '__qualname__', callback)!s}: {type(exc).__name__}: {exc}"[:300]
                    )

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
                message = f"cannot reach {self.upstream_host}:{self.upstream_port}: {exc}"
                self._record([CaptureError(C2S, conn.reader.connection_id, message, b"", self._now())])
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
        conn = _Connection(ConnectionReader(next(self._ids)), self._now(), writers)
        self._connections[conn.reader.connection_id] = conn
        if len(self._connections) > MAX_CLOSED_CONNECTIONS:
            for cid, old in list(self._connections.items()):
                if len(self._connections) <= MAX_CLOSED_CONNECTIONS:
                    break
                if old.closed is not None:
                    self._forgotten = self._forgotten + old.reader.traffic
                    del self._connections[cid]
        return conn

    async def _pump(
        self, conn: _Connection, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Relay one direction until EOF; pass a reset on to the other side."""
        try:
            if self.bytes_per_second is not None:
                await self._pump_paced(conn, direction, reader, writer, self.bytes_per_second)
            while data := await reader.read(READ_SIZE):
                writer.write(data)  # relayed first: looking at it cannot delay it
                self._record(conn.reader.receive_data(direction, data, self._now()))
                await writer.drain()
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()  # half-close, as the sender did
        except (ConnectionError, OSError):
            conn.abort()

    async def _pump_paced(
        self,
        conn: _Connection,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rate: float,
    ) -> None:
        """Relay one direction until EOF through a link of ``rate`` bytes/s.

        Bytes go on in slices of ``PACING_SLICE`` seconds of link time, each when the
        link has finished the one before: what waits behind a large message waits as
        long as the link needs to carry it (head-of-line blocking). While the tap
        waits it reads no more, so TCP's flow control slows the sender, as a real
        slow link would."""
        loop = asyncio.get_running_loop()
        step = max(256, int(rate * PACING_SLICE))
        free_at = loop.time()  # when the link has carried everything written so far
        while data := await reader.read(READ_SIZE):
            for start in range(0, len(data), step):
                piece = data[start : start + step]
                free_at = max(free_at, loop.time()) + len(piece) / rate
                writer.write(piece)
                self._record(conn.reader.receive_data(direction, piece, self._now()))
                await writer.drain()
                delay = free_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
