"""HTTP/1.1 message framing, sans-I/O: one direction's bytes in, message heads and ends out.

Read this module next to RFC 9112. It answers the one question an observer of a
connection must answer to follow it: where does each message begin and end? A
message is a head (a start line and header fields, ending with an empty line,
section 2.1) and maybe a body, whose length the head decides (section 6.3)::

    reader = HttpReader(Peer.CLIENT)          # what a client sends: requests
    reader.receive_data(chunk)
    while (event := reader.next_event()) is not None:
        ...                                    # RequestHead, then EndOfMessage

Bodies are passed over, never kept: a body of ``Content-Length`` bytes (section
6.2), a chunked one (section 7.1: chunk-size lines, chunk data, the last chunk and
the trailer section), or a response body that lasts until the connection closes
(section 6.3, rule 8). A response's framing also depends on the request it
answers (a response to HEAD has no body, a 2xx to CONNECT opens a tunnel), so
the reader of responses is told each request's method with :meth:`HttpReader.expect`.

After a request asking for an ``Upgrade`` (RFC 9110 section 7.8) the reader of
requests stops, :attr:`HttpState.PAUSED`: what the client sends next is HTTP only
if the server refuses. The reader of responses stops after a ``101 Switching
Protocols`` head or a 2xx to CONNECT, since the next byte belongs to another
protocol. :meth:`HttpReader.take_unread` hands over the bytes it did not read,
:meth:`HttpReader.resume` goes on with HTTP.

Nothing is checked that framing does not need: this reads what an endpoint
would, to follow it, and refuses (:class:`HttpError`) only what leaves the end of
a message unknown, which is what RFC 9112 tells an endpoint to refuse as well.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "EndOfMessage",
    "HttpError",
    "HttpEvent",
    "HttpReader",
    "HttpState",
    "Peer",
    "RequestHead",
    "ResponseHead",
]

MAX_HEAD_SIZE = 64 * 1024  # a head (or a chunk-size or trailer line) longer than this is refused
_CRLF = b"\r\n"


class HttpError(ValueError):
    """Bytes that are not an HTTP/1.1 message whose end can be known."""


class Peer(enum.Enum):
    """Who sent the bytes a reader reads: a client sends requests, a server responses."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Head:
    """What requests and responses share: header fields and the head's bytes."""

    version: str  # "HTTP/1.1"
    headers: tuple[tuple[str, str], ...]  # (name, value) as sent, in order
    raw: bytes  # the whole head, start line to the empty line included
    _by_name: dict[str, str] = field(init=False, repr=False, compare=False)  # lower-case name -> value

    def __post_init__(self) -> None:
        by_name: dict[str, str] = {}
        for name, value in self.headers:  # several lines of a field join with ", " (RFC 9110 section 5.3)
            key = name.lower()
            by_name[key] = f"{by_name[key]}, {value}" if key in by_name else value
        object.__setattr__(self, "_by_name", by_name)  # frozen: set once, here

    def header(self, name: str) -> str | None:
        """The value of field ``name`` (any case), its lines joined with ", "; ``None`` if absent."""
        return self._by_name.get(name.lower())

    def has_token(self, name: str, token: str) -> bool:
        """Does the comma-separated list in field ``name`` hold ``token`` (any case)?"""
        value = self.header(name) or ""
        return token.lower() in (item.strip().lower() for item in value.split(","))


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHead(_Head):
    """A request line and its header fields (RFC 9112 section 3)."""

    method: str
    target: str

    @property
    def start_line(self) -> str:
        return f"{self.method} {self.target} {self.version}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHead(_Head):
    """A status line and its header fields (RFC 9112 section 4)."""

    status: int
    reason: str

    @property
    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}".rstrip()

    @property
    def interim(self) -> bool:
        """1xx (RFC 9110 section 15.2): another response follows, except after a 101."""
        return 100 <= self.status < 200


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The end of a message: ``size`` bytes on the wire, head and body framing included."""

    size: int


HttpEvent = RequestHead | ResponseHead | EndOfMessage


class HttpState(enum.Enum):
    """Where a reader is in the message it reads."""

    HEAD = "head"  # before or inside a start line and header section (section 2.1)
    FIXED_BODY = "fixed-body"  # a body of Content-Length bytes (section 6.2)
    CHUNK_SIZE = "chunk-size"  # a chunk-size line, maybe with extensions (section 7.1)
    CHUNK_DATA = "chunk-data"  # chunk data
    CHUNK_END = "chunk-end"  # the CRLF after chunk data
    TRAILERS = "trailers"  # the trailer section after the last chunk (section 7.1.2)
    UNTIL_CLOSE = "until-close"  # a response body the closing connection ends (section 6.3, rule 8)
    PAUSED = "paused"  # no longer reading: the bytes may belong to another protocol


class HttpReader:
    """One direction of an HTTP/1.1 connection, read message by message.

    ``receive_data`` adds bytes, ``next_event`` returns what they completed, one
    event at a time, or ``None`` until more arrive: a :class:`RequestHead` or
    :class:`ResponseHead`, then an :class:`EndOfMessage` once its body is over.
    After an :class:`HttpError` every call raises the same error (:attr:`error`).
    """

    __slots__ = (
        "_buffer",
        "_left",
        "_methods",
        "_pause_after",
        "_pos",
        "_searched",
        "_size",
        "error",
        "max_head_size",
        "peer",
        "state",
    )

    def __init__(self, peer: Peer, *, max_head_size: int = MAX_HEAD_SIZE) -> None:
        self.peer = peer
        self.max_head_size = max_head_size
        self.state = HttpState.HEAD
        self.error: HttpError | None = None
        self._buffer = bytearray()
        self._pos = 0  # bytes of the buffer already read
        self._searched = 0  # bytes past _pos known to hold no line end yet
        self._left = 0  # body or chunk bytes still to pass over
        self._size = 0  # bytes of the current message so far
        self._pause_after = False  # the current message ends this reader's HTTP
        self._methods: deque[str] = deque()  # methods of the requests whose responses are due

    # --- feeding -------------------------------------------------------------------------------

    def expect(self, method: str) -> None:
        """A request with ``method`` went the other way; its response comes in turn (section 9.3.2)."""
        self._methods.append(method.upper())

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the stream (they are read by :meth:`next_event`)."""
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def take_unread(self) -> bytes:
        """The bytes received and not read (after a pause: the other protocol's first bytes)."""
        unread = bytes(self._buffer[self._pos :])
        self._buffer.clear()
        self._pos = self._searched = 0
        return unread

    def resume(self) -> None:
        """Read HTTP again after a pause (the server refused the upgrade: RFC 9110 section 7.8)."""
        if self.state is HttpState.PAUSED:
            self.state = HttpState.HEAD

    # --- reading -------------------------------------------------------------------------------

    def next_event(self) -> HttpEvent | None:
        """The next head or end of message, or ``None`` until more bytes arrive."""
        if self.error is not None:
            raise self.error
        try:
            return self._next()
        except HttpError as exc:
            self.error = exc
            raise

    def _next(self) -> HttpEvent | None:
        while True:
            state = self.state
            if state is HttpState.HEAD:
                return self._read_head()
            if state is HttpState.PAUSED:
                return None
            available = len(self._buffer) - self._pos
            if state is HttpState.UNTIL_CLOSE:
                self._skip(available)
                return None
            if state is HttpState.FIXED_BODY or state is HttpState.CHUNK_DATA:
                self._skip(min(self._left, available))
                if self._left:
                    return None
                if state is HttpState.FIXED_BODY:
                    return self._end_of_message()
                self.state = HttpState.CHUNK_END
                continue
            line = self._line()
            if line is None:
                return None
            if state is HttpState.CHUNK_SIZE:
                size = _chunk_size(line)
                self.state, self._left = (HttpState.TRAILERS, 0) if size == 0 else (HttpState.CHUNK_DATA, size)
            elif state is HttpState.CHUNK_END:
                if line:
                    raise HttpError(f"chunk data longer than its size, {line[:20]!r}... (RFC 9112 section 7.1)")
                self.state = HttpState.CHUNK_SIZE
            elif not line:  # TRAILERS: the empty line ends the message (section 7.1)
                return self._end_of_message()

    def _skip(self, n: int) -> None:
        self._pos += n
        self._left -= n
        self._size += n

    def _line(self) -> bytes | None:
        """The next CRLF-terminated line (without its CRLF), or ``None`` until it is complete."""
        end = self._buffer.find(_CRLF, self._pos + self._searched)
        if (end if end >= 0 else len(self._buffer)) - self._pos > self.max_head_size:
            raise HttpError(f"a line of more than {self.max_head_size} bytes")
        if end < 0:
            self._searched = max(0, len(self._buffer) - self._pos - 1)
            return None
        line = bytes(self._buffer[self._pos : end])
        self._size += end + 2 - self._pos
        self._pos, self._searched = end + 2, 0
        return line

    def _read_head(self) -> RequestHead | ResponseHead | None:
        buffer = self._buffer
        while buffer.startswith(_CRLF, self._pos):
            self._pos += 2  # section 2.2: empty lines before a start line are ignored
        end = buffer.find(b"\r\n\r\n", self._pos + self._searched)
        if (end + 4 if end >= 0 else len(buffer)) - self._pos > self.max_head_size:
            raise HttpError(f"HTTP head longer than {self.max_head_size} bytes")
        if end < 0:
            self._searched = max(0, len(buffer) - self._pos - 3)
            return None
        raw = bytes(buffer[self._pos : end + 4])
        self._pos, self._searched = end + 4, 0
        self._size = len(raw)
        if self.peer is Peer.CLIENT:
            request = _parse_request(raw)
            self._frame_request(request)
            return request
        response = _parse_response(raw)
        self._frame_response(response)
        return response

    def _end_of_message(self) -> EndOfMessage:
        event = EndOfMessage(self._size)
        self._size = 0
        self.state = HttpState.PAUSED if self._pause_after else HttpState.HEAD
        self._pause_after = False
        return event

    # --- how long is the body? (RFC 9112 section 6.3) ------------------------------------------

    def _frame_request(self, head: RequestHead) -> None:
        """Rules 4, 6 and 7: chunked, or Content-Length, or no body at all."""
        self._pause_after = head.header("upgrade") is not None
        if head.header("transfer-encoding") is not None:
            if not _chunked_last(head):
                raise HttpError("a request whose Transfer-Encoding does not end with chunked (RFC 9112 section 6.3)")
            self.state = HttpState.CHUNK_SIZE
        else:
            self._fixed(_content_length(head))

    def _frame_response(self, head: ResponseHead) -> None:
        if head.interim and head.status != 101:
            self.state, self._size = HttpState.HEAD, 0  # rule 1: no body; the final response follows
            return
        method = self._methods.popleft() if self._methods else "GET"
        if head.status == 101 or (method == "CONNECT" and 200 <= head.status < 300):
            self._pause_after = True  # rule 2, and RFC 9110 section 15.2.2: the next byte is not HTTP
            self._fixed(0)
        elif method == "HEAD" or head.status in (204, 304):
            self._fixed(0)  # rule 1: whatever Content-Length says
        elif head.header("transfer-encoding") is not None:
            self.state = HttpState.CHUNK_SIZE if _chunked_last(head) else HttpState.UNTIL_CLOSE  # rule 4
        elif head.header("content-length") is not None:
            self._fixed(_content_length(head))  # rule 6
        else:
            self.state = HttpState.UNTIL_CLOSE  # rule 8

    def _fixed(self, length: int) -> None:
        self.state, self._left = HttpState.FIXED_BODY, length


# --- reading heads (RFC 9112 sections 3-5) -------------------------------------------------------


def _fields(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """Field lines, ``name: value`` (section 5); a line folded onto the next (obs-fold,
    section 5.2) is joined to it with a space, as a recipient may do."""
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(f"not a header field line: {line[:60]!r} (RFC 9112 section 5)")
        fields.append((name, value.strip(" \t")))
    return tuple(fields)


def _split_head(raw: bytes) -> tuple[str, tuple[tuple[str, str], ...]]:
    start, *lines = raw[:-4].decode("latin-1").split("\r\n")
    return start, _fields(lines)


def _parse_request(raw: bytes) -> RequestHead:
    start, headers = _split_head(raw)
    parts = start.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HttpError(f"not a request line: {start[:60]!r} (RFC 9112 section 3)")
    method, target, version = parts
    return RequestHead(version=version, headers=headers, raw=raw, method=method, target=target)


def _parse_response(raw: bytes) -> ResponseHead:
    start, headers = _split_head(raw)
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise HttpError(f"not a status line: {start[:60]!r} (RFC 9112 section 4)")
    return ResponseHead(version=version, headers=headers, raw=raw, status=int(code), reason=reason)


def _chunked_last(head: _Head) -> bool:
    """Is chunked the final transfer coding (section 6.3, rule 4)?"""
    codings = [c.strip().lower() for c in (head.header("transfer-encoding") or "").split(",")]
    return codings[-1] == "chunked"


def _content_length(head: _Head) -> int:
    """The body length a Content-Length gives (section 6.2); 0 without one. A list of equal
    values counts as one; different or non-numeric values leave the length unknown."""
    value = head.header("content-length")
    if value is None:
        return 0
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (length := values.pop()).isdigit():
        raise HttpError(f"invalid Content-Length {value[:40]!r} (RFC 9112 section 6.3, rule 5)")
    return int(length)


def _chunk_size(line: bytes) -> int:
    """The size a chunk-size line gives, in hex, before any chunk extension (section 7.1)."""
    size = line.split(b";", 1)[0].strip(b" \t")
    if not size or any(c not in b"0123456789abcdefABCDEF" for c in size):
        raise HttpError(f"not a chunk size: {line[:40]!r} (RFC 9112 section 7.1)")
    return int(size, 16)
