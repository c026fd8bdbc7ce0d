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

Lesson 03 reads frames with the rest: :func:`parse_header` (the header's fields,
before any check), :class:`FrameReader` (frames out of a byte stream that arrives
in arbitrary pieces), :class:`MessageAssembler` (fragments back into messages,
section 5.4), :func:`close_payload` / :func:`parse_close` (section 5.5.1 and 7.4),
:func:`decode_text` (section 8.1) and :func:`describe` (one line per frame).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "Close",
    "CloseCode",
    "ClientFrameGuard",
    "Frame",
    "FrameError",
    "FrameHeader",
    "FrameReader",
    "Message",
    "MessageAssembler",
    "Opcode",
    "WireFrame",
    "apply_mask",
    "close_code_name",
    "close_payload",
    "decode_text",
    "describe",
    "is_valid_close_code",
    "opcode_name",
    "parse_close",
    "parse_header",
    "payload_preview",
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
    """Follows frame boundaries in the client-to-server byte stream; checks what aiohttp does not.

    RFC 6455 section 5.1: "The server MUST close the connection upon receiving a frame
    that is not masked ... with a status code of 1002 (protocol error)". And a message
    may be fragmented (section 5.4), but not into endless empty continuation frames,
    which cost CPU without ever growing the message: past ``max_fragments`` continuation
    frames in one message the connection is closed with 1009. Only headers are read;
    payload bytes are skipped, so the cost is a few operations per frame. ``feed``
    returns an error message once a violation is seen (its code in ``violation_code``),
    else None.
    """

    __slots__ = ("_header", "_skip", "_fragments", "max_fragments", "violation", "violation_code")

    def __init__(self, max_fragments: int = 4096) -> None:
        self._header = bytearray()
        self._skip = 0  # payload bytes of the current frame still to pass over
        self._fragments = 0  # continuation frames in the message being received
        self.max_fragments = max_fragments
        self.violation: str | None = None
        self.violation_code = CloseCode.PROTOCOL_ERROR

    def _refuse(self, reason: str, code: CloseCode = CloseCode.PROTOCOL_ERROR) -> str:
        self.violation, self.violation_code = reason, code
        return reason

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
                    return self._refuse("client frame is not masked (RFC 6455 section 5.1)")
                opcode = header[0] & 0x0F
                if opcode == Opcode.CONTINUATION:
                    self._fragments += 1
                    if self._fragments > self.max_fragments:
                        return self._refuse(
                            f"message in more than {self.max_fragments} fragments", CloseCode.MESSAGE_TOO_BIG
                        )
                elif opcode < 0x8:  # a new data message starts (control frames may interleave)
                    self._fragments = 0
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
        return {126: 2, 127: 8}.get(self.length_code, 0)

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
    code = second & 0x7F
    masked = bool(second & 0x80)
    extended = {126: 2, 127: 8}.get(code, 0)
    size = 2 + extended + (4 if masked else 0)
    if len(data) < size:
        return None
    if code == 126:
        (length,) = struct.unpack_from("!H", data, 2)
    elif code == 127:
        (length,) = struct.unpack_from("!Q", data, 2)
    else:
        length = code
    key = bytes(data[2 + extended : size]) if masked else None
    return FrameHeader(
        fin=bool(first & 0x80), rsv1=bool(first & 0x40), rsv2=bool(first & 0x20), rsv3=bool(first & 0x10),
        opcode=first & 0x0F, masked=masked, length=length, length_code=code, masking_key=key, size=size,
    )


# --- a stream of bytes in, frames out ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireFrame:
    """A frame as it was read off the wire: the parsed frame and its header's bytes."""

    frame: Frame
    header: bytes

    @property
    def size(self) -> int:
        """Header plus payload: the bytes the frame took on the wire."""
        return len(self.header) + len(self.frame.payload)


class FrameReader:
    """Frames out of a byte stream that arrives in pieces of any size (section 5.2).

    TCP delivers bytes, not frames: one ``recv`` may hold half a header, or three
    frames and the start of a fourth. The reader keeps what it has not used yet::

        reader = FrameReader()
        for frame in reader.feed(chunk):      # the frames this chunk completed
            print(describe(frame))

    ``expect_masked=True`` reads what a client sends (an unmasked frame is a
    protocol error, section 5.1), ``False`` what a server sends (a masked frame is
    one), ``None`` accepts both. ``max_size`` bounds a frame's payload (1009 above
    it). After a :class:`FrameError` the stream has no known frame boundary any
    more, so every later call raises the same error (:attr:`error`).

    ``feed`` raises at a bad frame, losing the good frames of the same chunk that
    came before it; :meth:`receive_data` plus :meth:`next_frame` (or
    :meth:`next_wire_frame`) get every frame up to the bad one.
    """

    __slots__ = ("_buffer", "_pos", "error", "expect_masked", "max_size")

    def __init__(self, *, max_size: int = 1 << 63, expect_masked: bool | None = None) -> None:
        self._buffer = bytearray()
        self._pos = 0  # bytes of the buffer already used
        self.max_size = max_size
        self.expect_masked = expect_masked
        self.error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer) - self._pos

    def peek(self, n: int = 14) -> bytes:
        """The next ``n`` unused bytes, e.g. the header of a frame that was refused."""
        return bytes(self._buffer[self._pos : self._pos + n])

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the stream (no parsing yet)."""
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next_wire_frame(self) -> WireFrame | None:
        """The next complete frame with its header bytes, or ``None`` until more data arrives."""
        if self.error is not None:
            raise self.error
        buffer, pos = self._buffer, self._pos
        if len(buffer) - pos < 2:
            return None
        head = bytes(buffer[pos : pos + 14])
        try:
            masked = bool(head[1] & 0x80)  # known from the second byte on
            if self.expect_masked is True and not masked:
                raise FrameError("client frame is not masked (RFC 6455 section 5.1)")
            if self.expect_masked is False and masked:
                raise FrameError("server frame is masked (RFC 6455 section 5.1)")
            Frame.parse(head, max_size=self.max_size)  # what the header alone can refuse
        except FrameError as exc:
            self.error = exc
            raise
        header = parse_header(head)
        if header is None:
            return None
        end = pos + header.frame_size
        if len(buffer) < end:
            return None
        parsed = Frame.parse(bytes(buffer[pos:end]), max_size=self.max_size)
        assert parsed is not None and parsed[1] == header.frame_size
        self._pos = end
        return WireFrame(parsed[0], head[: header.size])

    def next_frame(self) -> Frame | None:
        """The next complete frame, or ``None`` until more data arrives."""
        wire = self.next_wire_frame()
        return None if wire is None else wire.frame

    def __iter__(self) -> Iterator[Frame]:
        """The complete frames buffered now, in order."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add ``data`` and return every frame it completed, in order."""
        self.receive_data(data)
        return list(self)

    def feed_wire(self, data: bytes | bytearray | memoryview) -> list[WireFrame]:
        """Like :meth:`feed`, with each frame's header bytes."""
        self.receive_data(data)
        frames = []
        while (wire := self.next_wire_frame()) is not None:
            frames.append(wire)
        return frames


# --- text, fragmentation, close frames ----------------------------------------------------


def decode_text(payload: bytes) -> str:
    """A text message's payload as ``str``; invalid UTF-8 is refused with 1007 (section 8.1).

    Python's strict UTF-8 decoder refuses what RFC 3629 refuses: overlong forms,
    surrogates (``ED A0 80``), code points above U+10FFFF and cut-off sequences.
    """
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(
            f"text is not valid UTF-8: byte {exc.start} ({payload[exc.start]:#04x}) {exc.reason} "
            "(RFC 6455 section 8.1)",
            CloseCode.INVALID_PAYLOAD,
        ) from None


@dataclass(frozen=True, slots=True)
class Message:
    """A whole message, put back together from one or more data frames (section 5.4)."""

    opcode: Opcode  # TEXT or BINARY: what the first frame said
    data: bytes
    frames: int = 1

    @property
    def text(self) -> str:
        return decode_text(self.data)


class MessageAssembler:
    """Data frames in, whole messages out: fragmentation, section 5.4.

    A message is a TEXT or BINARY frame with FIN clear, then CONTINUATION frames,
    the last with FIN set (or a single frame with FIN set). Control frames may
    come between the fragments; they are no part of the message, so :meth:`add`
    ignores them. A CONTINUATION with no message started, or a new message
    before the last one finished, is a protocol error (1002); a text message
    that is not UTF-8 gives 1007, one over ``max_size`` bytes 1009.
    """

    __slots__ = ("_opcode", "_parts", "_size", "max_size")

    def __init__(self, *, max_size: int = 1 << 63) -> None:
        self.max_size = max_size
        self._opcode: Opcode | None = None
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def in_progress(self) -> bool:
        """True between the first fragment of a message and its last."""
        return self._opcode is not None

    def add(self, frame: Frame) -> Message | None:
        """The message ``frame`` completes, or ``None`` (more fragments to come, or a control frame)."""
        if frame.opcode.is_control:
            return None
        if frame.opcode is Opcode.CONTINUATION:
            if self._opcode is None:
                raise FrameError("continuation frame with no message to continue (RFC 6455 section 5.4)")
        elif self._opcode is not None:
            raise FrameError(
                f"{frame.opcode.name} frame in the middle of a fragmented {self._opcode.name} message "
                "(RFC 6455 section 5.4)"
            )
        else:
            self._opcode = frame.opcode
        self._size += len(frame.payload)
        if self._size > self.max_size:
            self._reset()
            raise FrameError(f"message of more than {self.max_size} bytes", CloseCode.MESSAGE_TOO_BIG)
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        opcode, parts = self._opcode, self._parts
        self._reset()
        message = Message(opcode, b"".join(parts), len(parts))
        if opcode is Opcode.TEXT:
            decode_text(message.data)
        return message

    def _reset(self) -> None:
        self._opcode, self._parts, self._size = None, [], 0


# Codes an endpoint may put in a close frame (section 7.4.1 and 7.4.2, and the IANA
# registry for 1012-1014). 1004 is reserved; 1005, 1006 and 1015 only ever describe a
# close that had no such frame; 3000-3999 are registered for libraries and
# frameworks, 4000-4999 are for applications to agree on privately.
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def is_valid_close_code(code: int) -> bool:
    """May ``code`` be sent in a close frame? (RFC 6455 section 7.4)"""
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


def close_code_name(code: int | None) -> str:
    """``"NORMAL"`` for 1000 ...; ``"application"`` for 4000-4999, ``"library"`` for 3000-3999."""
    if code is None:
        return "no code"
    try:
        return CloseCode(code).name
    except ValueError:
        pass
    if 4000 <= code <= 4999:
        return "application"
    if 3000 <= code <= 3999:
        return "library"
    return "reserved" if 1000 <= code <= 2999 else "invalid"


@dataclass(frozen=True, slots=True)
class Close:
    """What a close frame says: a status code and a UTF-8 reason (section 5.5.1)."""

    code: int = CloseCode.NORMAL
    reason: str = ""

    def __str__(self) -> str:
        text = f"{self.code} {close_code_name(self.code)}"
        return f"{text} {self.reason!r}" if self.reason else text


def close_payload(code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
    """The payload of a close frame: the code as 2 bytes, big-endian, then the reason in UTF-8.

    ``code=None`` gives the empty payload (a close "with no status", seen as 1005),
    which can carry no reason. Raises ``ValueError`` for a code that may not be sent
    (section 7.4) or a payload over the 125 bytes of a control frame (section 5.5).
    """
    if code is None:
        if reason:
            raise ValueError("a close frame without a status code cannot carry a reason (section 5.5.1)")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent in a close frame (RFC 6455 section 7.4)")
    payload = int(code).to_bytes(2, "big") + reason.encode("utf-8")
    if len(payload) > 125:
        raise ValueError(f"close payload of {len(payload)} bytes: a control frame holds at most 125 (section 5.5)")
    return payload


def parse_close(payload: bytes) -> Close:
    """Read a close frame's payload; an empty one is ``Close(1005)``: "no status received".

    Raises :class:`FrameError`: 1002 for a 1-byte payload or a code that may not be
    sent (section 7.4), 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return Close(CloseCode.NO_STATUS)
    if len(payload) == 1:
        raise FrameError("close payload of 1 byte: a status code takes 2 (RFC 6455 section 5.5.1)")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise FrameError(f"close code {code} may not be sent in a close frame (RFC 6455 section 7.4)")
    return Close(code, decode_text(payload[2:]))


# --- one line per frame ------------------------------------------------------------------


def _shorten_text(text: str, limit: int) -> str:
    """``repr(text)``, cut so that its characters between the quotes are at most ``limit``."""
    shown = repr(text)
    if len(shown) <= limit + 2:
        return shown
    cut = text[:limit]
    while cut and len(repr(cut)) > limit + 2:  # escapes (\x00, \u2028...) take several characters
        cut = cut[:-1]
    return repr(cut) + "\u2026"


def _shorten_hex(data: bytes, limit: int) -> str:
    shown = data[: max(limit // 3, 1)]
    return shown.hex(" ") + (" \u2026" if len(shown) < len(data) else "")


def payload_preview(frame: Frame, limit: int = 40) -> str:
    """A short view of the payload: text quoted, binary in hex, a close frame's code and reason."""
    payload = frame.payload
    if frame.opcode is Opcode.CLOSE:
        try:
            close = parse_close(payload)
        except FrameError:
            return "invalid close payload: " + _shorten_hex(payload, limit)
        text = f"{close.code} {close_code_name(close.code)}"
        return f"{text} {_shorten_text(close.reason, limit)}" if close.reason else text
    if not payload:
        return ""
    if frame.opcode is Opcode.BINARY:
        return _shorten_hex(payload, limit)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        # not UTF-8: binary data, or a text fragment cut inside a character, or bad text
        return _shorten_hex(payload, limit)
    return _shorten_text(text, limit)


def describe(frame: Frame, limit: int = 40) -> str:
    """One line for a frame: ``TEXT · FIN · masked (key 37fa213d) · 5 bytes · 'Hello'``."""
    parts = [frame.opcode.name, "FIN" if frame.fin else "no FIN (more fragments follow)"]
    rsv = [name for name, bit in (("RSV1", frame.rsv1), ("RSV2", frame.rsv2), ("RSV3", frame.rsv3)) if bit]
    parts += rsv
    parts.append("unmasked" if frame.masking_key is None else f"masked (key {frame.masking_key.hex()})")
    n = len(frame.payload)
    parts.append(f"{n} byte" if n == 1 else f"{n} bytes")
    preview = payload_preview(frame, limit)
    if preview:
        parts.append(preview)
    return " \u00b7 ".join(parts)
