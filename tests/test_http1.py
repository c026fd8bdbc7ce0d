"""HTTP/1.1 message framing (labserver.http1, RFC 9112), on bytes alone: where each message
ends, whatever the chunks, and a differential test against h11's parser."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labserver.http1 import (
    EndOfMessage,
    HttpError,
    HttpEvent,
    HttpReader,
    HttpState,
    Peer,
    RequestHead,
    ResponseHead,
)


def read(reader: HttpReader, *chunks: bytes) -> list[HttpEvent]:
    events: list[HttpEvent] = []
    for chunk in chunks:
        reader.receive_data(chunk)
        while (event := reader.next_event()) is not None:
            events.append(event)
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


def shape(events: list[HttpEvent]) -> list[object]:
    """Heads as their start lines, ends as their sizes."""
    return [e.size if isinstance(e, EndOfMessage) else e.start_line for e in events]


def responses(*methods: str) -> HttpReader:
    reader = HttpReader(Peer.SERVER)
    for method in methods:
        reader.expect(method)
    return reader


def chunked(body: bytes, sizes: list[int], trailers: bytes = b"") -> bytes:
    """``body`` in the chunked transfer coding (RFC 9112 section 7.1), cut at ``sizes``."""
    out, pos = b"", 0
    for size in [*sizes, len(body)]:
        piece = body[pos : pos + size]
        if piece:
            out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            pos += len(piece)
    return out + b"0\r\n" + trailers + b"\r\n"


POST = b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
GET = b"GET /api/rooms/r/messages?after=0 HTTP/1.1\r\nHost: x\r\n\r\n"


# --- requests ------------------------------------------------------------------------------------


def test_pipelined_requests_each_end_where_their_length_says() -> None:
    events = read(HttpReader(Peer.CLIENT), POST + GET + POST)
    assert shape(events) == [
        "POST /api/rooms/r/messages HTTP/1.1",
        len(POST),
        "GET /api/rooms/r/messages?after=0 HTTP/1.1",
        len(GET),
        "POST /api/rooms/r/messages HTTP/1.1",
        len(POST),
    ]
    head = events[0]
    assert isinstance(head, RequestHead) and head.method == "POST" and head.raw == POST[:-5]
    assert head.header("content-length") == "5" and head.header("HOST") == "x" and head.header("Upgrade") is None


@given(st.lists(st.integers(0, 300), max_size=20))
def test_the_chunks_the_bytes_come_in_change_nothing(cuts: list[int]) -> None:
    body = b"x" * 40
    stream = (
        b"\r\n"
        + POST
        + b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(body, [7, 1, 16], b"Checksum: 1\r\n")
        + GET
    )
    whole = read(HttpReader(Peer.CLIENT), stream)
    assert shape(read(HttpReader(Peer.CLIENT), *split(stream, cuts))) == shape(whole)
    assert sum(e.size for e in whole if isinstance(e, EndOfMessage)) == len(stream) - 2  # the empty line before


def test_chunk_extensions_and_trailers_are_passed_over() -> None:
    head = b"POST /up HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    body = b"5;name=value\r\nhello\r\n0;last\r\nExpires: never\r\nX: y\r\n\r\n"
    assert shape(read(HttpReader(Peer.CLIENT), head + body + GET))[1:3] == [
        len(head + body),
        "GET /api/rooms/r/messages?after=0 HTTP/1.1",
    ]


def test_an_upgrade_request_pauses_the_reader_until_resumed() -> None:
    upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    reader = HttpReader(Peer.CLIENT)
    assert shape(read(reader, upgrade + b"\x81\x85" + GET)) == ["GET /ws HTTP/1.1", len(upgrade)]
    assert reader.state is HttpState.PAUSED and reader.next_event() is None
    assert reader.take_unread() == b"\x81\x85" + GET
    reader.resume()
    assert shape(read(reader, GET)) == ["GET /api/rooms/r/messages?after=0 HTTP/1.1", len(GET)]


# --- responses ------------------------------------------------------------------------------------


def test_response_framing_follows_the_request_and_the_status() -> None:
    """RFC 9112 section 6.3: HEAD, 1xx, 204 and 304 have no body, whatever the head says."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n"
    not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"
    stream = (
        interim
        + ok
        + b"abc"  # POST: an interim answer, then the final one and its body
        + ok
        + no_content
        + not_modified  # HEAD, then GET twice: no body
        + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"event", [2])
    )
    events = read(responses("POST", "HEAD", "GET", "GET", "GET"), stream)
    statuses = [e.status for e in events if isinstance(e, ResponseHead)]
    sizes = [e.size for e in events if isinstance(e, EndOfMessage)]
    assert statuses == [100, 200, 200, 204, 304, 200]
    assert sizes[:4] == [len(ok) + 3, len(ok), len(no_content), len(not_modified)]
    assert sum(sizes) == len(stream) - len(interim)  # an interim response is no message of its own
    assert isinstance(events[0], ResponseHead) and events[0].interim


def test_a_body_without_a_length_lasts_until_the_connection_closes() -> None:
    reader = responses("GET")
    events = read(reader, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"and so on", b"...")
    assert [type(e) for e in events] == [ResponseHead] and reader.state is HttpState.UNTIL_CLOSE
    reader = responses("GET")
    read(reader, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")  # chunked is not last: rule 4
    assert reader.state is HttpState.UNTIL_CLOSE


@pytest.mark.parametrize(("method", "status"), [("GET", 101), ("CONNECT", 200)])
def test_after_a_101_or_a_tunnel_the_bytes_are_not_http(method: str, status: int) -> None:
    head = f"HTTP/1.1 {status} Whatever\r\nContent-Length: 9\r\n\r\n".encode()
    reader = responses(method)
    assert shape(read(reader, head + b"\x81\x02hi")) == [f"HTTP/1.1 {status} Whatever", len(head)]
    assert reader.state is HttpState.PAUSED and reader.take_unread() == b"\x81\x02hi"


def test_a_response_with_no_request_pending_is_read_as_an_answer_to_get() -> None:
    assert shape(read(HttpReader(Peer.SERVER), b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!")) == [
        "HTTP/1.1 200 OK",
        39,
    ]


# --- what cannot be framed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "data", "match"),
    [
        (Peer.CLIENT, b"GET /\r\n\r\n", "not a request line"),
        (Peer.CLIENT, b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "not a header field"),
        (Peer.CLIENT, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", "not a header field"),  # section 5.1
        (Peer.CLIENT, b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n", "invalid Content-Length"),
        (Peer.CLIENT, b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (Peer.CLIENT, b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "does not end with chunked"),
        (Peer.CLIENT, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a chunk size"),
        (Peer.CLIENT, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its size"),
        (Peer.SERVER, b"HTTP/1.1 20 OK\r\n\r\n", "not a status line"),
        (Peer.SERVER, b"ICY 200 OK\r\n\r\n", "not a status line"),
    ],
)
def test_bytes_whose_end_cannot_be_known_are_refused(peer: Peer, data: bytes, match: str) -> None:
    reader = HttpReader(peer)
    with pytest.raises(HttpError, match=match) as first:
        read(reader, data)
    with pytest.raises(HttpError) as again:  # sticky: the stream has no known boundary any more
        read(reader, GET)
    assert again.value is first.value


def test_a_head_or_a_line_too_long_is_refused() -> None:
    with pytest.raises(HttpError, match="longer than 100 bytes"):
        read(HttpReader(Peer.CLIENT, max_head_size=100), b"GET / HTTP/1.1\r\n", b"X: " + b"y" * 100)
    with pytest.raises(HttpError, match="more than 100 bytes"):
        read(
            HttpReader(Peer.SERVER, max_head_size=100),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1" * 101,
        )
    assert shape(read(HttpReader(Peer.CLIENT, max_head_size=len(GET)), GET))[-1] == len(GET)  # just fits


def test_folded_and_repeated_fields() -> None:
    wire = b"GET / HTTP/1.1\r\nX: a\r\n  b\r\nx: c\r\nConnection: keep-alive, Upgrade\r\n\r\n"
    (head, _) = read(HttpReader(Peer.CLIENT), wire)
    assert isinstance(head, RequestHead)
    assert head.header("X") == "a b, c"  # obs-fold joined with a space (section 5.2), lines with ", "
    assert head.has_token("connection", "upgrade") and not head.has_token("connection", "close")


# --- differential: labserver.http1 against h11 ---------------------------------------------------

try:
    import h11  # the oracle: installed with JupyterLab (httpx), not a dependency of the lab server

    HAVE_H11 = True
except ImportError:  # pragma: no cover - only the differential tests need it
    HAVE_H11 = False
needs_h11 = pytest.mark.skipif(not HAVE_H11, reason="h11 is not installed")

methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
bodies = st.binary(max_size=300)
framings = st.none() | st.lists(st.integers(1, 64), max_size=5)  # Content-Length, or chunk sizes


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, tuple[str, str, int]]:
    """A request on the wire, and what it is: method, target, body length."""
    method, body, framing = draw(methods), draw(bodies), draw(framings)
    target = "/" + draw(st.text("abcdefghij/?=&", max_size=20))
    head = f"{method} {target} HTTP/1.1\r\nHost: lab\r\n"
    if framing is None:
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body, (method, target, len(body))
    trailers = draw(st.sampled_from([b"", b"Digest: x\r\n"]))
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked(body, framing, trailers), (
        method,
        target,
        len(body),
    )


def h11_requests(stream: bytes) -> list[tuple[str, str, int]]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(stream)
    seen: list[tuple[str, str, int]] = []
    while True:
        event = server.next_event()
        if event is h11.NEED_DATA:
            return seen
        if isinstance(event, h11.Request):
            seen.append((event.method.decode(), event.target.decode(), 0))
        elif isinstance(event, h11.Data):
            method, target, n = seen[-1]
            seen[-1] = (method, target, n + len(event.data))
        elif isinstance(event, h11.EndOfMessage):  # answer it, so that h11 reads the next one
            server.send(h11.Response(status_code=204, headers=[]))
            server.send(h11.EndOfMessage())
            server.start_next_cycle()


@needs_h11
@given(st.lists(requests(), min_size=1, max_size=5), st.lists(st.integers(0, 2000), max_size=20))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_requests_frame_as_in_h11(items: list[tuple[bytes, tuple[str, str, int]]], cuts: list[int]) -> None:
    stream = b"".join(wire for wire, _ in items)
    assert h11_requests(stream) == [what for _, what in items]  # the oracle agrees with the test's bytes
    events = read(HttpReader(Peer.CLIENT), *split(stream, cuts))
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [(h.method, h.target) for h in heads] == [(m, t) for _, (m, t, _) in items]
    assert [e.size for e in events if isinstance(e, EndOfMessage)] == [len(wire) for wire, _ in items]


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[str, bytes]:
    """A request method and a response to it on the wire."""
    method = draw(st.sampled_from(["GET", "HEAD", "POST"]))
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500]))
    body, framing = draw(bodies), draw(framings)
    head = f"HTTP/1.1 {status} Reason\r\n"
    if status in (204, 304) or method == "HEAD":
        return method, (head + f"Content-Length: {len(body)}\r\n\r\n").encode()  # no body follows
    if framing is None:
        return method, (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return method, (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked(body, framing)


def h11_responses(items: list[tuple[str, bytes]]) -> list[tuple[int, int]]:
    client = h11.Connection(h11.CLIENT)
    seen: list[tuple[int, int]] = []
    for method, wire in items:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "lab"), ("Content-Length", "0")]))
        client.send(h11.EndOfMessage())
        client.receive_data(wire)
        while (event := client.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.Response):
                seen.append((event.status_code, 0))
            elif isinstance(event, h11.Data):
                seen[-1] = (seen[-1][0], seen[-1][1] + len(event.data))
            elif isinstance(event, h11.EndOfMessage):
                client.start_next_cycle()
                break
    return seen


@needs_h11
@given(st.lists(exchanges(), min_size=1, max_size=5), st.lists(st.integers(0, 2000), max_size=20))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_responses_frame_as_in_h11(items: list[tuple[str, bytes]], cuts: list[int]) -> None:
    expected = h11_responses(items)
    assert len(expected) == len(items)
    reader = responses(*(method for method, _ in items))
    events = read(reader, *split(b"".join(wire for _, wire in items), cuts))
    assert [e.status for e in events if isinstance(e, ResponseHead)] == [status for status, _ in expected]
    assert [e.size for e in events if isinstance(e, EndOfMessage)] == [len(wire) for _, wire in items]
