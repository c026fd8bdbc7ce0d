"""A WebSocket client you can see through: a plain TCP socket, a handshake typed as
text, and frames built by :mod:`labserver.frames`. For lessons and tests that need
to send what no well-behaved library would (an unmasked frame, a wrong version).
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from .frames import Frame, FrameError, Opcode


@dataclass(slots=True)
class HandshakeResponse:
    status: int
    reason: str
    headers: dict[str, str]
    raw: bytes
    body: bytes = b""


def handshake_request(
    host: str,
    port: int,
    path: str = "/ws",
    *,
    key: str | None = None,
    version: str | None = "13",
    extra_headers: Mapping[str, str | None] | None = None,
    method: str = "GET",
) -> bytes:
    """The client's opening handshake (RFC 6455 section 4.1) as bytes, ready to send.

    ``extra_headers`` add to or replace the standard ones; a ``None`` value leaves that
    header out (``{"Sec-WebSocket-Key": None}``: a handshake without a key), as does
    ``version=None`` for ``Sec-WebSocket-Version``."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Host": f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": version,
        **(extra_headers or {}),
    }
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items() if v is not None)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class RawWebSocket:
    """Blocking, deliberately simple: one socket, bytes you can print."""

    sock: socket.socket
    response: HandshakeResponse
    buffer: bytearray = field(default_factory=bytearray)

    @classmethod
    def connect(cls, host: str, port: int, request: bytes, timeout: float = 5.0) -> RawWebSocket:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.sendall(request)
        data = bytearray()
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        _, status, *reason = status_line.split(" ")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        response = HandshakeResponse(int(status), " ".join(reason), headers, head + b"\r\n\r\n")
        ws = cls(sock, response)
        if response.status == 101:
            ws.buffer += rest
        else:
            response.body = rest
        return ws

    def send_frame(self, frame: Frame) -> None:
        self.sock.sendall(frame.serialize())

    def send_text(self, text: str) -> None:
        """A well-formed client text frame: FIN set, masked with a fresh random key."""
        self.send_frame(Frame(Opcode.TEXT, text.encode(), masking_key=os.urandom(4)))

    def recv_frame(self) -> Frame | None:
        """The next frame from the server, or None if the connection closed first."""
        while True:
            try:
                parsed = Frame.parse(self.buffer)
            except FrameError:
                raise
            if parsed is not None:
                frame, used = parsed
                del self.buffer[:used]
                return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def close_code(frame: Frame) -> int | None:
    """The status code in a close frame's payload (RFC 6455 section 5.5.1)."""
    if frame.opcode is not Opcode.CLOSE or len(frame.payload) < 2:
        return None
    return int.from_bytes(frame.payload[:2], "big")
