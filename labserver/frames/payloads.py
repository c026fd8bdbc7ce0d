"""What the payload of a frame means, sans-I/O: text, messages, and close frames.

A text frame's payload must be UTF-8 (RFC 6455 section 8.1: :func:`decode_text`);
data frames make up messages, one frame or several fragments (section 5.4:
:class:`MessageAssembler`); a close frame carries a status code and a reason
(sections 5.5.1 and 7.4: :func:`close_payload`, :func:`parse_close`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import CloseCode, Frame, FrameError, Opcode

__all__ = [
    "Close",
    "Message",
    "MessageAssembler",
    "close_code_name",
    "close_payload",
    "decode_text",
    "is_valid_close_code",
    "parse_close",
]


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
