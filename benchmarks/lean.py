"""A lean WebSocket subscriber for benchmarks: an ``asyncio.Protocol`` that parses the
server's frames by hand and does almost nothing per frame, so the load generator stays
cheaper than the server it measures.

It sends its own opening handshake (RFC 6455 section 4.1) plus whatever the server
needs next (a lab ``join``, a Socket.IO ``40`` connect), waits for the ``101`` and then
for a *ready* frame (the lab's join ack, Socket.IO's ``40{...}``; none for a bare
server). After that it counts the frames that carry :data:`MARK` and, when asked,
records each one's delivery latency from the send time the sender put in the payload
(``BENCH|<perf_counter>|``: sender and subscribers share this process and its clock).

Server frames are never masked (section 5.1), so the parser only reads the length
(section 5.2). Pings are answered: a WebSocket ping with a pong (section 5.5.3),
an Engine.IO ``2`` with ``3``.
"""

from __future__ import annotations

import asyncio
import os
import time

from labserver.frames import Frame, Opcode

MARK = b"BENCH|"


def masked_text(payload: bytes) -> bytes:
    """One client text frame (masked, RFC 6455 section 5.3)."""
    return Frame(Opcode.TEXT, payload, masking_key=os.urandom(4)).serialize()


def masked_pong(payload: bytes) -> bytes:
    return Frame(Opcode.PONG, payload, masking_key=os.urandom(4)).serialize()


def bench_text(width: int) -> str:
    """A payload carrying its send time, padded to ``width`` characters."""
    stamp = f"BENCH|{time.perf_counter():.6f}|"
    return stamp + "x" * max(0, width - len(stamp))


class LeanSubscriber(asyncio.Protocol):
    """One benchmark socket. ``ready_marker``: bytes that the ready frame contains (None: the 101)."""

    __slots__ = (
        "request",
        "ready_marker",
        "engineio",
        "transport",
        "buffer",
        "upgraded",
        "ready",
        "welcomed_at",
        "ready_at",
        "hits",
        "target",
        "done",
        "latencies",
        "closed",
    )

    def __init__(self, request: bytes, ready_marker: bytes | None, *, engineio: bool = False) -> None:
        self.request = request
        self.ready_marker = ready_marker
        self.engineio = engineio
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.welcomed_at = 0.0  # the first frame after the 101 (the lab's welcome)
        self.ready_at = 0.0
        self.hits = 0  # frames carrying MARK
        self.target = 0
        self.done: asyncio.Future[None] | None = None
        self.latencies: list[float] | None = None  # set to a list to record
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before ready"))

    def _set_ready(self) -> None:
        self.ready_at = time.perf_counter()
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.buffer:  # the rest of a frame that came in pieces: join, then parse as one
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer += data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(data[: data.find(b"\r\n")].decode()))
                return
            self.upgraded = True
            data = data[end + 4 :]
            if self.ready_marker is None:
                self._set_ready()
        # Parse in place: no copy per frame (the common case is one whole frame per read).
        pos, size = 0, len(data)
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = (data[pos + 2] << 8) | data[pos + 3], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 10]), 10
            start, end = pos + head, pos + head + length
            if end > size:
                break
            at = data.find(MARK, start, end)
            if at >= 0:
                self.hits += 1
                if self.welcomed_at == 0.0:
                    self.welcomed_at = time.perf_counter()
                if self.latencies is not None:
                    stop = data.find(b"|", at + 6, end)
                    self.latencies.append(time.perf_counter() - float(data[at + 6 : stop]))
                if self.done is not None and self.hits >= self.target and not self.done.done():
                    self.done.set_result(None)
            else:
                self._other_frame(data[pos] & 0x0F, data[start:end])
            pos = end
        if pos < size:
            self.buffer += data[pos:]

    def _other_frame(self, opcode: int, payload: bytes) -> None:
        """Anything but a benchmark message: a ping, the welcome, the ready frame."""
        if opcode == 0x9 and self.transport is not None:  # ping: pong (section 5.5.3)
            self.transport.write(masked_pong(payload))
            return
        if self.welcomed_at == 0.0:
            self.welcomed_at = time.perf_counter()
        if not self.ready.done() and self.ready_marker is not None and self.ready_marker in payload:
            self._set_ready()
        elif self.engineio and payload == b"2" and self.transport is not None:
            self.transport.write(masked_text(b"3"))  # Engine.IO ping -> pong

    def send_text(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(masked_text(payload))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # no closing handshake: the benchmark measures fan-out, not goodbyes
