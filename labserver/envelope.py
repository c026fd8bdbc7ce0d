"""The JSON message envelope spoken over ``/ws`` (sans-I/O).

Every WebSocket *text* message is one JSON object ``{"type": ..., "ref": ..., ...}``
(RFC 6455 section 5.6: a text message carries UTF-8; the JSON on top of it is
ours). :func:`parse_client_message` turns the text into one frozen dataclass per
message type, or raises :class:`EnvelopeError` naming the first bad field, so the
server can answer ``{"type": "error", "ref": ..., "code": ..., "message": ...}``
and keep the socket open.

Fields the client is not allowed to set (``from``, ``seq``, ``ts`` ...) are
ignored: the sender is always the authenticated user, never what the message
claims.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

MAX_TEXT_CHARS = 4000
MAX_REF_CHARS = 64
MAX_SIGNAL_BYTES = 16 * 1024
MAX_DEPTH = 32
"""Deepest nesting (arrays/objects) of a free-form value that is echoed or relayed: ping
``payload``, signal ``data``."""
ROOM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DM_ROOM = re.compile(r"dm:([1-9][0-9]{0,17}):([1-9][0-9]{0,17})")
TOPIC_NAME = re.compile(r"presence|post:[1-9][0-9]{0,17}")
SIGNAL_KINDS = frozenset({"offer", "answer", "ice", "hangup"})

Ref = str | int | None
"""A client's own id for a message, echoed unchanged in the ack or error."""


class ErrorCode(StrEnum):
    """Machine-readable ``code`` of an ``error`` message (see PROTOCOL.md)."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    BAD_FIELD = "bad_field"
    UNSUPPORTED_TYPE = "unsupported_type"  # a binary message (an upload) that is not a PNG, JPEG, GIF or WebP
    TOO_LARGE = "too_large"  # a binary message (an upload) over upload_max_bytes
    QUOTA_EXCEEDED = "quota_exceeded"  # an upload past the user's upload_quota_bytes
    NOT_AUTHENTICATED = "not_authenticated"
    ALREADY_AUTHENTICATED = "already_authenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    NOT_IN_ROOM = "not_in_room"
    RATE_LIMITED = "rate_limited"
    ROOM_PAUSED = "room_paused"  # the instructor paused the room (class mode): chats are refused


class EnvelopeError(ValueError):
    """A client message that cannot be accepted; carries what to answer."""

    def __init__(self, code: ErrorCode, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def to_message(self) -> dict[str, Any]:
        return error_message(self.code, self.message, self.ref)


def error_message(code: ErrorCode, message: str, ref: Ref = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if ref is not None:
        out["ref"] = ref
    return out


def encode(message: Mapping[str, Any]) -> str:
    """Serialize an outgoing message once; callers reuse the text for every recipient."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


# --- field readers: each names the field and what was wrong with it -----------------


def _field(raw: Mapping[str, Any], name: str, ref: Ref) -> Any:
    if name not in raw:
        raise EnvelopeError(ErrorCode.BAD_FIELD, f"missing field {name!r}", ref)
    return raw[name]


def _str(raw: Mapping[str, Any], name: str, ref: Ref, *, max_chars: int) -> str:
    value = _field(raw, name, ref)
    if not isinstance(value, str):
        raise EnvelopeError(ErrorCode.BAD_FIELD, f"field {name!r} must be a string, got {type(value).__name__}", ref)
    if len(value) > max_chars:
        raise EnvelopeError(
            ErrorCode.BAD_FIELD, f"field {name!r} is {len(value)} characters, limit is {max_chars}", ref
        )
    _check_unicode(value, name, ref)
    return value


def _check_unicode(value: Any, name: str, ref: Ref) -> int:
    """UTF-8 size of ``value`` as JSON. JSON escapes like "\\ud800" decode to lone
    surrogates, which no UTF-8 frame or database can carry: refused here, by name."""
    try:
        return len(encode(value).encode("utf-8"))
    except UnicodeEncodeError:
        raise EnvelopeError(
            ErrorCode.BAD_FIELD, f"field {name!r} contains an unpaired surrogate (invalid Unicode)", ref
        ) from None


def _check_depth(value: Any, name: str, ref: Ref) -> None:
    """json.loads accepts nesting that json.dumps (ours when echoing, or the receiving
    client's parser) cannot write or read back: refuse it here, by name."""
    depth, level = 0, [value] if isinstance(value, dict | list) else []
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise EnvelopeError(ErrorCode.BAD_FIELD, f"field {name!r} is nested deeper than {MAX_DEPTH} levels", ref)
        level = [c for v in level for c in (v.values() if isinstance(v, dict) else v) if isinstance(c, dict | list)]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _text(raw: Mapping[str, Any], ref: Ref) -> str:
    text = _str(raw, "text", ref, max_chars=MAX_TEXT_CHARS)
    if not text.strip():
        raise EnvelopeError(ErrorCode.BAD_FIELD, "field 'text' must not be empty", ref)
    return text


def _room(raw: Mapping[str, Any], ref: Ref, *, allow_dm: bool = False) -> str:
    room = _str(raw, "room", ref, max_chars=64)
    if ROOM_NAME.fullmatch(room) or (allow_dm and is_dm_room(room)):
        # Interned: the sockets of a room share one string as their membership key, not a
        # copy each (an interned string is freed as usual once nothing uses it).
        return sys.intern(room)
    allowed = "letters, digits, '_', '.', '-' (1-64)"
    raise EnvelopeError(ErrorCode.BAD_FIELD, f"field 'room' must be {allowed}, got {room!r}", ref)


def _int(raw: Mapping[str, Any], name: str, ref: Ref, *, minimum: int) -> int:
    value = _field(raw, name, ref)
    # bool is an int subclass in Python; JSON true is not a number here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise EnvelopeError(ErrorCode.BAD_FIELD, f"field {name!r} must be an integer, got {type(value).__name__}", ref)
    if value < minimum:
        raise EnvelopeError(ErrorCode.BAD_FIELD, f"field {name!r} must be >= {minimum}, got {value}", ref)
    if value > 2**53:  # the bound it broke, not the other one
        raise EnvelopeError(ErrorCode.BAD_FIELD, f"field {name!r} must be <= 2^53, got {value}", ref)
    return value


def _bool(raw: Mapping[str, Any], name: str, ref: Ref, *, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise EnvelopeError(
            ErrorCode.BAD_FIELD, f"field {name!r} must be true or false, got {type(value).__name__}", ref
        )
    return value


# --- client messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """Base of every message a client may send. ``ref`` is echoed in the ack or error."""

    type: ClassVar[str] = ""
    ref: Ref


@dataclass(frozen=True, slots=True)
class Auth(ClientMessage):
    type: ClassVar[str] = "auth"
    token: str


@dataclass(frozen=True, slots=True)
class Join(ClientMessage):
    type: ClassVar[str] = "join"
    room: str


@dataclass(frozen=True, slots=True)
class Leave(ClientMessage):
    type: ClassVar[str] = "leave"
    room: str


@dataclass(frozen=True, slots=True)
class Chat(ClientMessage):
    type: ClassVar[str] = "chat"
    room: str
    text: str


@dataclass(frozen=True, slots=True)
class DirectMessage(ClientMessage):
    type: ClassVar[str] = "dm"
    to: int
    text: str


@dataclass(frozen=True, slots=True)
class Typing(ClientMessage):
    type: ClassVar[str] = "typing"
    room: str
    active: bool


@dataclass(frozen=True, slots=True)
class Subscribe(ClientMessage):
    type: ClassVar[str] = "subscribe"
    topic: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(ClientMessage):
    type: ClassVar[str] = "unsubscribe"
    topic: str


@dataclass(frozen=True, slots=True)
class Signal(ClientMessage):
    """WebRTC signaling relay: offer/answer/ICE travel here, media never does."""

    type: ClassVar[str] = "signal"
    to: int
    kind: str
    data: Any
    to_socket: str | None


@dataclass(frozen=True, slots=True)
class Resume(ClientMessage):
    type: ClassVar[str] = "resume"
    room: str
    after: int


@dataclass(frozen=True, slots=True)
class Ping(ClientMessage):
    """Application-level ping, answered with ``pong`` (distinct from RFC 6455 ping frames)."""

    type: ClassVar[str] = "ping"
    payload: Any


def _topic(raw: Mapping[str, Any], ref: Ref) -> str:
    topic = _str(raw, "topic", ref, max_chars=64)
    if not TOPIC_NAME.fullmatch(topic):
        raise EnvelopeError(ErrorCode.BAD_FIELD, f"field 'topic' must be 'presence' or 'post:<id>', got {topic!r}", ref)
    return topic


def _signal(raw: Mapping[str, Any], ref: Ref) -> Signal:
    kind = _str(raw, "kind", ref, max_chars=16)
    if kind not in SIGNAL_KINDS:
        raise EnvelopeError(
            ErrorCode.BAD_FIELD, f"field 'kind' must be one of {sorted(SIGNAL_KINDS)}, got {kind!r}", ref
        )
    data = raw.get("data")
    _check_depth(data, "data", ref)
    if _check_unicode({"d": data}, "data", ref) > MAX_SIGNAL_BYTES:
        raise EnvelopeError(ErrorCode.BAD_FIELD, f"field 'data' is larger than {MAX_SIGNAL_BYTES} bytes", ref)
    to_socket = raw.get("to_socket")
    if to_socket is not None:
        to_socket = _str(raw, "to_socket", ref, max_chars=64)
    return Signal(ref, _int(raw, "to", ref, minimum=1), kind, data, to_socket)


def _ping(raw: Mapping[str, Any], ref: Ref) -> Ping:
    payload = raw.get("payload")
    _check_depth(payload, "payload", ref)
    _check_unicode(payload, "payload", ref)
    return Ping(ref, payload)


_PARSERS: dict[str, Callable[[Mapping[str, Any], Ref], ClientMessage]] = {
    "auth": lambda raw, ref: Auth(ref, _str(raw, "token", ref, max_chars=4096)),
    "join": lambda raw, ref: Join(ref, _room(raw, ref)),
    "leave": lambda raw, ref: Leave(ref, _room(raw, ref)),
    "chat": lambda raw, ref: Chat(ref, _room(raw, ref), _text(raw, ref)),
    "dm": lambda raw, ref: DirectMessage(ref, _int(raw, "to", ref, minimum=1), _text(raw, ref)),
    "typing": lambda raw, ref: Typing(ref, _room(raw, ref), _bool(raw, "active", ref, default=True)),
    "subscribe": lambda raw, ref: Subscribe(ref, _topic(raw, ref)),
    "unsubscribe": lambda raw, ref: Unsubscribe(ref, _topic(raw, ref)),
    "signal": _signal,
    "resume": lambda raw, ref: Resume(ref, _room(raw, ref, allow_dm=True), _int(raw, "after", ref, minimum=0)),
    "ping": lambda raw, ref: _ping(raw, ref),
}

CLIENT_TYPES = tuple(_PARSERS)


def parse_client_message(text: str) -> ClientMessage:
    """Parse one WebSocket text message into a typed client message.

    Raises :class:`EnvelopeError` with a code and a message naming what is wrong;
    the ``ref`` is kept whenever it could be read, so the client can match the error.
    """
    try:
        # Strict JSON: NaN, Infinity and 1e999 would be echoed or relayed as text that
        # JSON.parse (a browser, another client) refuses.
        raw = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # ValueError: also ints over the 4300-digit limit
        raise EnvelopeError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise EnvelopeError(ErrorCode.BAD_MESSAGE, f"message must be a JSON object, got {type(raw).__name__}")
    ref = raw.get("ref")
    if ref is not None and (not isinstance(ref, str | int) or isinstance(ref, bool) or len(str(ref)) > MAX_REF_CHARS):
        raise EnvelopeError(
            ErrorCode.BAD_FIELD, f"field 'ref' must be a string or integer of at most {MAX_REF_CHARS} characters"
        )
    if isinstance(ref, str):
        _check_unicode(ref, "ref", None)  # the ref is echoed: it must be sendable
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise EnvelopeError(ErrorCode.BAD_MESSAGE, "field 'type' is missing or not a string", ref)
    parser = _PARSERS.get(kind)
    if parser is None:
        raise EnvelopeError(
            ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:40]!r}; expected one of {', '.join(CLIENT_TYPES)}", ref
        )
    return parser(raw, ref)


def dm_room(a: int, b: int) -> str:
    """The persistent room holding the direct messages between two users."""
    low, high = sorted((a, b))
    return f"dm:{low}:{high}"


def dm_parties(room: str) -> tuple[int, int] | None:
    """The two user ids of a DM room name, or None for an ordinary room."""
    match = DM_ROOM.fullmatch(room)
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_dm_room(room: str) -> bool:
    """A DM room in its one spelling, ``dm:<low id>:<high id>`` (``dm:2:1`` is not one)."""
    parties = dm_parties(room)
    return parties is not None and parties[0] < parties[1]
