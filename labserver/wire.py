"""What travels on one TCP connection, sans-I/O: bytes in, HTTP heads and WebSocket frames out.

A :class:`ConnectionReader` is given the bytes of both directions of one
connection, in pieces of any size, as they pass, and tells what they are::

    reader = ConnectionReader(connection_id=1)
    for event in reader.receive_data(Direction.CLIENT_TO_SERVER, chunk, t=0.25):
        print(event.describe())          # → #1 GET /ws?token=... HTTP/1.1
    reader.traffic                       # bytes each way, HTTP and WebSocket apart

Each direction is a stream with a state (:class:`StreamState`):

* **HTTP** first: HTTP/1.1 messages, read by :class:`labserver.http1.HttpReader`
  (RFC 9112): every head becomes a :class:`CapturedHead`; bodies, chunked or not,
  are passed over and counted. Plain requests (short and long polling, Server-Sent
  Events, lesson 01) are followed for as long as the connection lasts.
* **AWAITING_UPGRADE**, client side only: after a request asking for an
  ``Upgrade`` the client's next bytes are frames if the server agrees and HTTP if it
  does not, so they are held until its answer (RFC 6455 section 4.1, RFC 9110
  section 7.8). They count as WebSocket bytes meanwhile, as the client meant them.
* **WEBSOCKET** after a ``101 Switching Protocols`` to a WebSocket upgrade (RFC 6455
  section 4.2.2), both ways: frames, read with :class:`labserver.frames.FrameReader`,
  each one a :class:`CapturedFrame`. A client should mask, a server should not
  (section 5.1); the reader records what is there, so a misbehaving peer shows.
* **HTTP_UNREAD** / **WEBSOCKET_UNREAD**: bytes no longer followed, only counted,
  after bytes that could not be read (reported once, as a :class:`CaptureError`)
  or a switch to a protocol other than WebSocket.

``receive_data`` never raises: the reader sits under live connections (the frame
tap's relay, lesson 01's counting sockets), so even a bug in it only ends the
reading of that direction, reported as a :class:`CaptureError`.

Counts are from the client's side: ``sent`` is what the client wrote, ``received``
what it was given. The bytes up to and including the 101's head are HTTP, the
frames after it WebSocket: :class:`Traffic`.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .frames import Frame, FrameError, FrameReader, Opcode, describe
from .http1 import EndOfMessage, HttpError, HttpReader, HttpState, Peer, RequestHead, ResponseHead

__all__ = [
    "MAX_CAPTURED_PAYLOAD",
    "CaptureError",
    "CapturedFrame",
    "CapturedHead",
    "ConnectionReader",
    "Direction",
    "StreamState",
    "Traffic",
    "WireEvent",
    "json_objects",
]

MAX_CAPTURED_PAYLOAD = 1 << 20  # a larger frame is counted but no longer read
MAX_AWAITING_UPGRADE = 1 << 20  # client bytes held for the server's answer to an upgrade


class Direction(enum.Enum):
    """Which way bytes went on a connection."""

    CLIENT_TO_SERVER = "client->server"
    SERVER_TO_CLIENT = "server->client"

    @property
    def arrow(self) -> str:
        """``→`` towards the server, ``←`` towards the client."""
        return "\u2192" if self is Direction.CLIENT_TO_SERVER else "\u2190"


C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


# --- what comes out ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One frame read off a connection; ``t`` is the time given with its last byte."""

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


def json_objects(frames: Iterable[CapturedFrame], direction: Direction) -> list[tuple[float, dict[str, Any]]]:
    """The JSON objects sent one way, each in one whole text frame (FIN set, RFC 6455 section 5.4),
    in order, with the time ``t`` of each frame; other frames, and text that is not a JSON object,
    are skipped."""
    out = []
    for captured in frames:
        if captured.direction is direction and captured.frame.opcode is Opcode.TEXT and captured.frame.fin:
            try:
                message = json.loads(captured.frame.payload)
            except ValueError:
                continue
            if isinstance(message, dict):
                out.append((captured.t, message))
    return out


@dataclass(frozen=True, slots=True)
class CapturedHead:
    """One HTTP request or response head read off a connection (RFC 9112 sections 3-4)."""

    direction: Direction
    connection_id: int
    head: RequestHead | ResponseHead
    t: float

    @property
    def size(self) -> int:
        """Bytes on the wire: start line, header fields and the empty line."""
        return len(self.head.raw)

    def describe(self) -> str:
        """``→ #1 GET /ws HTTP/1.1`` or ``← #1 HTTP/1.1 101 Switching Protocols``."""
        return f"{self.direction.arrow} #{self.connection_id} {self.head.start_line}"


@dataclass(frozen=True, slots=True)
class CaptureError:
    """Bytes that could not be read (they are counted all the same).

    ``raw`` holds up to 14 bytes from where reading stopped: a bad frame's header.
    """

    direction: Direction
    connection_id: int
    message: str
    raw: bytes
    t: float

    def describe(self) -> str:
        return f"{self.direction.arrow} #{self.connection_id} cannot read: {self.message}"


WireEvent = CapturedHead | CapturedFrame | CaptureError


@dataclass(frozen=True, slots=True)
class Traffic:
    """Bytes through TCP connections, seen from the client: ``sent`` to the server, ``received`` from it.

    ``http_*`` are the bytes of HTTP/1.1 messages (heads and bodies of plain
    requests and responses, and the WebSocket handshake), ``ws_*`` the frames after
    the 101. ``connections`` counts the TCP connections they went through. Bytes
    are TCP payload: TCP/IP headers and ACKs are below them. Traffic adds up and
    subtracts field by field (the bytes between two moments: ``later - earlier``).
    """

    http_sent: int = 0
    http_received: int = 0
    ws_sent: int = 0
    ws_received: int = 0
    connections: int = 0

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

    def _counts(self) -> tuple[int, int, int, int, int]:
        return self.http_sent, self.http_received, self.ws_sent, self.ws_received, self.connections

    def __add__(self, other: Traffic) -> Traffic:
        if not isinstance(other, Traffic):
            return NotImplemented
        return Traffic(*(a + b for a, b in zip(self._counts(), other._counts(), strict=True)))

    def __sub__(self, other: Traffic) -> Traffic:
        if not isinstance(other, Traffic):
            return NotImplemented
        return Traffic(*(a - b for a, b in zip(self._counts(), other._counts(), strict=True)))


# --- one direction of one connection -----------------------------------------------------------


class StreamState(enum.Enum):
    """What one direction of a connection carries now (see the module's docstring)."""

    HTTP = "http"
    AWAITING_UPGRADE = "awaiting-upgrade"
    WEBSOCKET = "websocket"
    HTTP_UNREAD = "http-unread"
    WEBSOCKET_UNREAD = "websocket-unread"


class _Stream:
    """One direction: its state, its readers and its counts."""

    __slots__ = ("direction", "frame_count", "frames", "held", "http", "http_bytes", "state", "ws_bytes")

    def __init__(self, direction: Direction, http: HttpReader) -> None:
        self.direction = direction
        self.state = StreamState.HTTP
        self.http = http
        self.frames: FrameReader | None = None
        self.held = bytearray()  # AWAITING_UPGRADE: the bytes after the upgrade request
        self.http_bytes = 0
        self.ws_bytes = 0
        self.frame_count = 0

    def as_websocket(self, data: bytes) -> bytes:
        """``data``, the last bytes counted as HTTP, are WebSocket bytes after all."""
        self.http_bytes -= len(data)
        self.ws_bytes += len(data)
        return data

    def release(self, *, websocket: bool) -> bytes:
        """The bytes held while AWAITING_UPGRADE, counted as HTTP again unless ``websocket``."""
        held, self.held = bytes(self.held), bytearray()
        if not websocket:
            self.ws_bytes -= len(held)
            self.http_bytes += len(held)
        return held

    def give_up(self) -> None:
        """Stop reading; count what follows as the kind of bytes it was."""
        websocket = self.state in (StreamState.WEBSOCKET, StreamState.AWAITING_UPGRADE, StreamState.WEBSOCKET_UNREAD)
        self.state = StreamState.WEBSOCKET_UNREAD if websocket else StreamState.HTTP_UNREAD
        self.frames = None
        self.held = bytearray()


class ConnectionReader:
    """Both directions of one TCP connection: HTTP/1.1 until a 101, then WebSocket frames.

    ``receive_data(direction, data, t)`` reads the next bytes of one direction and
    returns the events they completed, stamped with ``t`` (any clock: the reader
    keeps none). ``max_frame_size`` bounds the payload of a frame that is read; a
    larger one is reported and its direction only counted from then on.
    """

    def __init__(self, connection_id: int = 0, *, max_frame_size: int = MAX_CAPTURED_PAYLOAD) -> None:
        self.connection_id = connection_id
        self.max_frame_size = max_frame_size
        self.upgraded = False  # the server answered a WebSocket upgrade with 101
        self.requests = 0  # request heads from the client
        self.responses = 0  # response heads from the server, interim ones (1xx) included
        self._opened = 1  # this connection, in Traffic.connections (0 once the counts are reset)
        self._client = _Stream(C2S, HttpReader(Peer.CLIENT))
        self._server = _Stream(S2C, HttpReader(Peer.SERVER))
        self._due: deque[RequestHead] = deque()  # requests whose final response has not come yet
        self._switch_to_websocket = False  # the 101 that paused the server's stream was to a WebSocket upgrade

    # --- counts ---------------------------------------------------------------------------------

    @property
    def traffic(self) -> Traffic:
        c, s = self._client, self._server
        return Traffic(c.http_bytes, s.http_bytes, c.ws_bytes, s.ws_bytes, self._opened)

    @property
    def frames_sent(self) -> int:
        return self._client.frame_count

    @property
    def frames_received(self) -> int:
        return self._server.frame_count

    def state(self, direction: Direction) -> StreamState:
        return self._stream(direction).state

    def reset_counts(self) -> None:
        """Start counting again from zero (the reading goes on where it was). Bytes held for the
        answer to an upgrade stay counted: they may yet move from WebSocket to HTTP."""
        for stream in (self._client, self._server):
            stream.http_bytes = stream.frame_count = 0
            stream.ws_bytes = len(stream.held)
        self.requests = self.responses = self._opened = 0

    # --- reading ---------------------------------------------------------------------------------

    def receive_data(self, direction: Direction, data: bytes, t: float = 0.0) -> list[WireEvent]:
        """Read the next ``data`` of ``direction``; the heads, frames and errors it completed."""
        stream = self._stream(direction)
        events: list[WireEvent] = []
        try:
            self._receive(stream, data, t, events)
        except Exception as exc:  # a bug here must not break the connection it reads
            stream.give_up()
            self._error(stream, f"failed to read the stream: {type(exc).__name__}: {exc}", t, events)
        return events

    def _stream(self, direction: Direction) -> _Stream:
        return self._client if direction is C2S else self._server

    def _error(self, stream: _Stream, message: str, t: float, events: list[WireEvent], raw: bytes = b"") -> None:
        events.append(CaptureError(stream.direction, self.connection_id, message, raw[:14], t))

    def _receive(self, stream: _Stream, data: bytes, t: float, events: list[WireEvent]) -> None:
        state = stream.state
        if state is StreamState.HTTP:
            stream.http_bytes += len(data)
            stream.http.receive_data(data)
            self._read_http(stream, t, events)
        elif state is StreamState.WEBSOCKET:
            stream.ws_bytes += len(data)
            self._read_frames(stream, data, t, events)
        elif state is StreamState.AWAITING_UPGRADE:
            stream.ws_bytes += len(data)  # what the client means as frames; HTTP again if refused
            stream.held += data
            if len(stream.held) > MAX_AWAITING_UPGRADE:
                stream.give_up()
                self._error(stream, "too many bytes before the server answered the upgrade", t, events)
        elif state is StreamState.HTTP_UNREAD:
            stream.http_bytes += len(data)
        else:
            stream.ws_bytes += len(data)

    def _read_http(self, stream: _Stream, t: float, events: list[WireEvent]) -> None:
        while True:
            try:
                event = stream.http.next_event()
            except HttpError as exc:
                stream.give_up()
                self._error(stream, str(exc), t, events)
                return
            if event is None:
                if stream.http.state is HttpState.PAUSED:
                    self._paused(stream, t, events)
                return
            if isinstance(event, EndOfMessage):
                continue
            events.append(CapturedHead(stream.direction, self.connection_id, event, t))
            if isinstance(event, RequestHead):
                self.requests += 1
                self._due.append(event)
                self._server.http.expect(event.method)
            else:
                self.responses += 1
                if not event.interim or event.status == 101:
                    self._answered(event, t, events)

    def _answered(self, response: ResponseHead, t: float, events: list[WireEvent]) -> None:
        """The final response to the oldest request due (RFC 9112 section 9.3.2: in order)."""
        request = self._due.popleft() if self._due else None
        if request is None or request.header("upgrade") is None:
            return
        if response.status == 101:  # the server's stream pauses after this head: see _paused
            self._switch_to_websocket = request.has_token("upgrade", "websocket") and response.has_token(
                "upgrade", "websocket"
            )
            return
        # Refused (RFC 6455 section 4.1: any status but 101 means no WebSocket): what the
        # client sent after its request was HTTP after all.
        client = self._client
        if client.state is StreamState.AWAITING_UPGRADE:
            client.state = StreamState.HTTP
            client.http.resume()
            client.http.receive_data(client.release(websocket=False))
            self._read_http(client, t, events)

    def _paused(self, stream: _Stream, t: float, events: list[WireEvent]) -> None:
        """The HTTP reader of ``stream`` stopped: after an upgrade request (client), after a
        101 or a CONNECT tunnel's 2xx (server). The bytes it holds are not HTTP, or not yet."""
        unread = stream.http.take_unread()
        if stream is self._client:
            stream.state = StreamState.AWAITING_UPGRADE
            stream.held += stream.as_websocket(unread)
            return
        client, websocket = self._client, self._switch_to_websocket
        awaiting = client.state is StreamState.AWAITING_UPGRADE
        if not websocket:  # another protocol, or a tunnel: counted as HTTP, read no further
            stream.state = StreamState.HTTP_UNREAD
            if awaiting:
                client.state = StreamState.HTTP_UNREAD
                client.release(websocket=False)
            return
        self.upgraded = True
        stream.state = StreamState.WEBSOCKET
        held = b""
        if awaiting:  # both sides switch before either is read: a failure on one leaves the other
            client.state = StreamState.WEBSOCKET
            held = client.release(websocket=True)
        self._read_frames(stream, stream.as_websocket(unread), t, events)
        if awaiting:
            self._read_frames(client, held, t, events)

    def _read_frames(self, stream: _Stream, data: bytes, t: float, events: list[WireEvent]) -> None:
        if stream.frames is None:
            stream.frames = FrameReader(max_size=self.max_frame_size)
        reader = stream.frames
        reader.receive_data(data)
        while True:
            try:
                wire = reader.next_wire_frame()
            except FrameError as exc:
                stream.give_up()
                self._error(stream, str(exc), t, events, reader.peek(14))
                return
            if wire is None:
                return
            stream.frame_count += 1
            events.append(CapturedFrame(stream.direction, self.connection_id, wire.frame, wire.header, t))
