"""RFC 6455 frames, sans-I/O: bytes in, frames out, and frames in, bytes out.

Read this module next to RFC 6455 section 5.2 (base framing protocol)::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +-+-+-+-+-------+-+-------------+-------------------------------+
     |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
     |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
     |N|V|V|V|       |S|             |   (if payload len==126/127)   |
     | |1|2|3|       |K|             |                               |
     +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
     |     Extended payload length continued, if payload len == 127  |
     + - - - - - - - - - - - - - - - +-------------------------------+
     |                               |Masking-key, if MASK set to 1  |
     +-------------------------------+-------------------------------+
     | Masking-key (continued)       |          Payload Data         |
     +-------------------------------- - - - - - - - - - - - - - - - +

The lab server uses two things from here on its hot paths:
:func:`server_text_frame` (one unmasked frame, built once and written to every
recipient of a broadcast) and :class:`ClientFrameGuard` (enforces section 5.1,
"a server MUST close the connection upon receiving a frame that is not masked",
which aiohttp does not).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CloseCode",
    "ClientFrameGuard",
    "Frame",
    "FrameError",
    "Opcode",
    "apply_mask",
    "server_text_frame",
]


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 section 5.2); 0x3-0x7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Control frames (section 5.5) have the high opcode bit set."""
        return self >= 0x8


class CloseCode(IntEnum):
    """Close status codes (RFC 6455 section 7.4.1, plus 1012-1014 from the IANA registry)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never sent on the wire: "no code was present"
    ABNORMAL = 1006  # never sent on the wire: "the TCP connection just dropped"
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


class FrameError(ValueError):
    """Bytes that are not a valid frame; ``close_code`` is what a peer answers with."""

    def __init__(self, message: str, close_code: CloseCode = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking key (section 5.3); masking twice unmasks."""
    if len(key) != 4:
        raise ValueError(f"masking key must be 4 bytes, got {len(key)}")
    n = len(payload)
    # Whole-buffer XOR via big integers: exact, and far faster than a byte loop.
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def _length_header(first_byte: int, mask_bit: int, length: int) -> bytes:
    if length < 126:
        return struct.pack("!BB", first_byte, mask_bit | length)
    if length < 1 << 16:
        return struct.pack("!BBH", first_byte, mask_bit | 126, length)
    return struct.pack("!BBQ", first_byte, mask_bit | 127, length)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``payload`` is always the unmasked application data."""

    opcode: Opcode
    payload: bytes = b""
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    masking_key: bytes | None = None  # set on frames sent by a client (section 5.3)

    def serialize(self) -> bytes:
        """The bytes of this frame on the wire (masked if ``masking_key`` is set)."""
        first = (
            (0x80 if self.fin else 0)
            | (0x40 if self.rsv1 else 0)
            | (0x20 if self.rsv2 else 0)
            | (0x10 if self.rsv3 else 0)
            | int(self.opcode)
        )
        if self.masking_key is None:
            return _length_header(first, 0, len(self.payload)) + self.payload
        header = _length_header(first, 0x80, len(self.payload)) + self.masking_key
        return header + apply_mask(self.payload, self.masking_key)

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, *, max_size: int = 1 << 63) -> tuple[Frame, int] | None:
        """Parse one frame from the start of ``data``.

        Returns ``(frame, bytes_consumed)``, or ``None`` when ``data`` holds only part of
        a frame. Raises :class:`FrameError` for a frame no endpoint may accept: a reserved
        opcode, a fragmented or oversized control frame (section 5.5), or a payload
        longer than ``max_size`` (answered with 1009).
        """
        data = bytes(data[:14]) if len(data) < 14 else data
        if len(data) < 2:
            return None
        first, second = data[0], data[1]
        try:
            opcode = Opcode(first & 0x0F)
        except ValueError:
            raise FrameError(f"reserved opcode 0x{first & 0x0F:X} (RFC 6455 section 5.2)") from None
        fin = bool(first & 0x80)
        masked = bool(second & 0x80)
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(data) < 4:
                return None
            (length,) = struct.unpack_from("!H", data, 2)
            offset = 4
        elif length == 127:
            if len(data) < 10:
                return None
            (length,) = struct.unpack_from("!Q", data, 2)
            if length >> 63:
                raise FrameError("64-bit payload length with the most significant bit set (section 5.2)")
            offset = 10
        if opcode.is_control and (not fin or length > 125):
            raise FrameError(
                f"control frame {opcode.name} must have FIN set and at most 125 bytes, "
                f"got fin={fin} length={length} (section 5.5)"
            )
        if length > max_size:
            raise FrameError(f"frame payload of {length} bytes exceeds limit {max_size}", CloseCode.MESSAGE_TOO_BIG)
        key = None
        if masked:
            if len(data) < offset + 4:
                return None
            key = bytes(data[offset : offset + 4])
            offset += 4
        end = offset + length
        if len(data) < end:
            return None
        payload = bytes(data[offset:end])
        if key is not None:
            payload = apply_mask(payload, key)
        frame = cls(opcode, payload, fin, bool(first & 0x40), bool(first & 0x20), bool(first & 0x10), key)
        return frame, end


def server_text_frame(text: str | bytes) -> bytes:
    """One complete, unmasked text frame from a server (FIN=1, opcode 0x1).

    Servers never mask (section 5.1), so a broadcast encodes this once and writes
    the same bytes to every recipient.
    """
    payload = text.encode() if isinstance(text, str) else text
    return _length_header(0x81, 0, len(payload)) + payload


class ClientFrameGuard:
    """Follows frame boundaries in the client-to-server byte stream and checks the MASK bit.

    RFC 6455 section 5.1: "The server MUST close the connection upon receiving a frame
    that is not masked ... with a status code of 1002 (protocol error)". Only headers
    are read; payload bytes are skipped, so the cost is a few operations per frame.
    ``feed`` returns an error message once the first unmasked frame is seen, else None.
    """

    __slots__ = ("_header", "_skip", "violation")

    def __init__(self) -> None:
        self._header = bytearray()
        self._skip = 0  # payload bytes of the current frame still to pass over
        self.violation: str | None = None

    def feed(self, data: bytes) -> str | None:
        if self.violation is not None:
            return self.violation
        pos, end = 0, len(data)
        header = self._header
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if len(header) < 2:
                take = 2 - len(header)
                header += data[pos : pos + take]
                pos += take
                if len(header) < 2:
                    break
                if not header[1] & 0x80:
                    self.violation = "client frame is not masked (RFC 6455 section 5.1)"
                    return self.violation
            code = header[1] & 0x7F
            size = 2 + (2 if code == 126 else 8 if code == 127 else 0) + 4
            take = size - len(header)
            header += data[pos : pos + take]
            pos += take
            if len(header) < size:
                break
            if code == 126:
                (self._skip,) = struct.unpack_from("!H", header, 2)
            elif code == 127:
                (self._skip,) = struct.unpack_from("!Q", header, 2)
            else:
                self._skip = code
            header.clear()
        return None
