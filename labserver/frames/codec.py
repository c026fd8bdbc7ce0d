"""One frame, sans-I/O: its fields, its bytes, and the header read field by field.

Read this module next to RFC 6455 section 5.2 (base framing protocol, drawn in
:mod:`labserver.frames`). :class:`Frame` is a frame with its payload unmasked;
:meth:`Frame.serialize` writes it, :meth:`Frame.parse` reads one from the start
of some bytes and refuses what no endpoint may accept. :func:`parse_header` reads
a header exactly as the bytes say, before any check, for lesson 03 and the frame
tap to show; :meth:`FrameHeader.field_at` is the one place that names the field
each header byte belongs to. :func:`server_text_frame` is the lab server's
broadcast frame, encoded once for every recipient.

The payload length is read in one place, :func:`read_length`, whatever needs it:
:meth:`Frame.parse`, :func:`parse_header` and the server's
:class:`~labserver.frames.stream.ClientFrameGuard`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CloseCode",
    "Frame",
    "FrameError",
    "FrameHeader",
    "Opcode",
    "apply_mask",
    "header_size",
    "opcode_name",
    "parse_header",
    "read_length",
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
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never sent on the wire: "the TLS handshake failed"


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


# --- the payload length: 7 bits, or 126 + 16 bits, or 127 + 64 bits (section 5.2) ---------

# The 7-bit "Payload len" codes that announce an extended length, and its size in bytes.
_EXTENDED_LENGTH_BYTES = {126: 2, 127: 8}


def header_size(second_byte: int) -> int:
    """Header bytes of a frame, known from its second byte: 2, plus 2 or 8 of extended
    payload length, plus 4 of masking key if the MASK bit is set (section 5.2)."""
    return 2 + _EXTENDED_LENGTH_BYTES.get(second_byte & 0x7F, 0) + (4 if second_byte & 0x80 else 0)


def read_length(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """The payload length a header announces, and the offset where its length fields end
    (2, 4 or 10: where the masking key, or else the payload, begins).

    ``data`` starts at the frame's first byte and holds at least 2 bytes; ``None`` until
    the extended length has arrived. Section 5.2: "if 0-125, that is the payload length.
    If 126, the following 2 bytes interpreted as a 16-bit unsigned integer are the
    payload length. If 127, the following 8 bytes interpreted as a 64-bit unsigned
    integer ... are the payload length", in network byte order. The one place the
    length is read; no check here (the most significant bit, minimal encoding).
    """
    code = data[1] & 0x7F
    if code < 126:
        return code, 2
    end = 2 + _EXTENDED_LENGTH_BYTES[code]
    if len(data) < end:
        return None
    return int.from_bytes(data[2:end], "big"), end


def _length_header(first_byte: int, mask_bit: int, length: int) -> bytes:
    """The first bytes of a header up to the payload length, in the shortest encoding
    (section 5.2: "the minimal number of bytes MUST be used to encode the length")."""
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
        read = read_length(data)
        if read is None:
            return None
        length, offset = read
        if length >> 63:
            raise FrameError("64-bit payload length with the most significant bit set (section 5.2)")
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


# --- reading a frame's header, field by field (section 5.2) ----------------------------


def opcode_name(opcode: int) -> str:
    """``"TEXT"`` for 0x1, ..., ``"RESERVED_0x3"`` for an opcode RFC 6455 leaves unassigned."""
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"RESERVED_0x{opcode:X}"


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The header of a frame as it is on the wire, before any check (section 5.2).

    ``opcode`` is the raw 4-bit number, reserved ones included, so that a frame no
    endpoint accepts can still be read and shown. ``size`` is the number of header
    bytes: 2, plus 2 or 8 for an extended payload length, plus 4 for a masking key.
    """

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    length: int  # the payload length, wherever it was written
    length_code: int  # the 7-bit "Payload len" field: the length, or 126 / 127
    masking_key: bytes | None
    size: int

    @property
    def extended_length_bytes(self) -> int:
        """0 (length in the 7 bits), 2 (126: a 16-bit length follows) or 8 (127: a 64-bit one)."""
        return _EXTENDED_LENGTH_BYTES.get(self.length_code, 0)

    @property
    def opcode_name(self) -> str:
        return opcode_name(self.opcode)

    @property
    def frame_size(self) -> int:
        """Header plus payload: the bytes this frame takes on the wire."""
        return self.size + self.length

    def field_at(self, index: int) -> str:
        """Which field byte ``index`` of the frame belongs to: ``"first"`` (FIN, RSV,
        opcode), ``"length"`` (MASK and the 7-bit length), ``"extended"``, ``"key"`` or
        ``"payload"``. The one place the byte layout of section 5.2 is spelled out."""
        if index == 0:
            return "first"
        if index == 1:
            return "length"
        if index < 2 + self.extended_length_bytes:
            return "extended"
        if index < self.size:
            return "key"
        return "payload"


def parse_header(data: bytes | bytearray | memoryview) -> FrameHeader | None:
    """Read the header at the start of ``data``; ``None`` until all of it has arrived.

    Nothing is checked here (see :meth:`Frame.parse` for that): this is the header
    exactly as the bytes say, for reading and for showing.
    """
    if len(data) < 2:
        return None
    first, second = data[0], data[1]
    size = header_size(second)
    if len(data) < size:
        return None
    read = read_length(data)
    assert read is not None  # the whole header is in
    length, key_at = read
    masked = bool(second & 0x80)
    key = bytes(data[key_at:size]) if masked else None
    return FrameHeader(
        fin=bool(first & 0x80),
        rsv1=bool(first & 0x40),
        rsv2=bool(first & 0x20),
        rsv3=bool(first & 0x10),
        opcode=first & 0x0F,
        masked=masked,
        length=length,
        length_code=second & 0x7F,
        masking_key=key,
        size=size,
    )
