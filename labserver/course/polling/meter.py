"""Counting bytes at the socket: every byte a group of receivers sent and received.

Every receiver connects through a :class:`CountingSocket`, a ``socket.socket``
whose ``send``/``recv`` hand what the kernel accepted or returned to a
:class:`labserver.wire.ConnectionReader`, the frame tap's own reader: it tells
HTTP/1.1 (RFC 9112: request and status lines, headers, bodies, chunk framing)
from WebSocket frames (RFC 6455 section 5, after the 101 of the handshake) and
counts both. That is the TCP payload, everything above TCP; TCP/IP headers and
ACKs, 52-66 bytes per segment more, are below it and not counted.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import aiohttp

from ...wire import ConnectionReader, Direction, Traffic

__all__ = ["ByteMeter", "CountingSocket", "counting_session"]


class ByteMeter:
    """Running totals over every :class:`CountingSocket` made for it (one per TCP connection)."""

    __slots__ = ("_connections",)

    def __init__(self) -> None:
        self._connections: list[ConnectionReader] = []

    def connection(self) -> ConnectionReader:
        """A reader for one more connection, counted from now on."""
        reader = ConnectionReader(len(self._connections) + 1)
        self._connections.append(reader)
        return reader

    def snapshot(self) -> Traffic:
        """The bytes both ways so far, HTTP and WebSocket apart, and the connections opened."""
        return sum((reader.traffic for reader in self._connections), Traffic())

    def __repr__(self) -> str:
        t = self.snapshot()
        return f"<ByteMeter sent={t.sent} received={t.received} connections={t.connections}>"


def _first(data: Any, n: int) -> bytes:
    """The first ``n`` bytes of a buffer (bytes, bytearray, memoryview of any format)."""
    return bytes(memoryview(data).cast("B")[:n])


class CountingSocket(socket.socket):
    """A TCP socket that counts the bytes the kernel accepted (send) and returned (recv).

    asyncio's transports call exactly these methods on the socket they are given,
    so a connection made on one of these is counted whole: HTTP request and status
    lines, headers and bodies, the WebSocket handshake, frames, pings and pongs.
    """

    def __init__(
        self, meter: ByteMeter, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0
    ) -> None:
        super().__init__(family, type, proto)
        self.wire = meter.connection()

    def _sent(self, data: bytes) -> None:
        self.wire.receive_data(Direction.CLIENT_TO_SERVER, data)

    def _received(self, data: bytes) -> None:
        self.wire.receive_data(Direction.SERVER_TO_CLIENT, data)

    def send(self, data: Any, flags: int = 0) -> int:
        n = super().send(data, flags)
        self._sent(_first(data, n))
        return n

    def sendall(self, data: Any, flags: int = 0) -> None:
        super().sendall(data, flags)
        self._sent(_first(data, memoryview(data).nbytes))

    def sendmsg(self, buffers: Iterable[Any], *args: Any) -> int:  # asyncio's writelines on Python 3.12+
        buffers = list(buffers)
        n = super().sendmsg(buffers, *args)
        self._sent(b"".join(_first(b, memoryview(b).nbytes) for b in buffers)[:n])
        return n

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        self._received(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        n = super().recv_into(buffer, nbytes, flags)
        self._received(_first(buffer, n))
        return n


def counting_session(
    meter: ByteMeter, *, base_url: str | None = None, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection is a :class:`CountingSocket` on ``meter``.

    One connector for the whole group, no connection limit, keep-alive on: a
    thousand pollers reuse their connections instead of opening one per request.
    """

    def make_socket(addr_info: Any) -> socket.socket:
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        return CountingSocket(meter, family, type_, proto)

    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, socket_factory=make_socket)
    return aiohttp.ClientSession(
        base_url=base_url, headers=headers, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    )
