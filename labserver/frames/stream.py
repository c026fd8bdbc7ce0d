"""Frames in a byte stream, sans-I/O: TCP delivers bytes, not frames.

One ``recv`` may hold half a header, or three frames and the start of a fourth
(RFC 6455 section 5.2 defines frames, not reads). :class:`FrameReader` keeps what
it has not used yet and hands out whole frames, each with its header's bytes
(:class:`WireFrame`); lesson 03 and the frame tap read with it.
:class:`ClientFrameGuard` only follows frame boundaries in what a client sends,
reading headers and skipping payloads, to enforce on the lab server's hot path
what aiohttp does not: section 5.1, "a server MUST close the connection upon
receiving a frame that is not masked", and the close codes of section 7.4.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .codec import CloseCode, Frame, FrameError, Opcode, header_size, parse_header, read_length
from .payloads import is_valid_close_code

__all__ = ["ClientFrameGuard", "FrameReader", "WireFrame"]


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


class ClientFrameGuard:
    """Follows frame boundaries in the client-to-server byte stream; checks what aiohttp does not.

    RFC 6455 section 5.1: "The server MUST close the connection upon receiving a frame
    that is not masked ... with a status code of 1002 (protocol error)". And a message
    may be fragmented (section 5.4), but not into endless empty continuation frames,
    which cost CPU without ever growing the message: past ``max_fragments`` continuation
    frames in one message the connection is closed with 1009. A Close frame whose code no
    endpoint may send (section 7.4: 1004-1006, 1015, 1016-2999...) is a protocol error too.
    Only headers (and a Close frame's two code bytes) are read; payload bytes are skipped,
    so the cost is a few operations per frame. ``feed``
    returns an error message once a violation is seen (its code in ``violation_code``),
    else None.
    """

    __slots__ = (
        "_header",
        "_skip",
        "_fragments",
        "_close_code",
        "_close_key",
        "max_fragments",
        "violation",
        "violation_code",
    )

    def __init__(self, max_fragments: int = 4096) -> None:
        self._header = bytearray()
        self._skip = 0  # payload bytes of the current frame still to pass over
        self._fragments = 0  # continuation frames in the message being received
        self._close_code: bytearray | None = None  # a Close frame's code bytes as they arrive (masked)
        self._close_key = b""  # that frame's masking key
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
                if self._close_code is not None and (code := self._read_close_code(data[pos : pos + step])) is not None:
                    return self._refuse(f"invalid close code {code} (RFC 6455 section 7.4)")
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
            size = header_size(header[1])  # masked: the key is part of it
            take = size - len(header)
            header += data[pos : pos + take]
            pos += take
            if len(header) < size:
                break
            read = read_length(header)
            assert read is not None  # the whole header is in
            self._skip = read[0]
            if header[0] & 0x0F == Opcode.CLOSE and self._skip >= 2:  # a code: its first two bytes
                self._close_code, self._close_key = bytearray(), bytes(header[-4:])
            header.clear()
        return None

    def _read_close_code(self, payload: bytes) -> int | None:
        """Take a Close frame's code bytes from the start of ``payload``; once both are in, the
        code if no endpoint may send it (else None, as while they are still arriving)."""
        assert self._close_code is not None
        self._close_code += payload[: 2 - len(self._close_code)]
        if len(self._close_code) < 2:
            return None
        key, masked = self._close_key, self._close_code
        code = ((masked[0] ^ key[0]) << 8) | (masked[1] ^ key[1])  # unmasked (section 5.3)
        self._close_code = None
        return None if is_valid_close_code(code) else code
