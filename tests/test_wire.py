"""labserver.wire's ConnectionReader on bytes alone, no sockets: a connection's two byte
streams classified as HTTP/1.1 messages and WebSocket frames, and every byte counted."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labserver.frames import Frame, Opcode, close_payload
from labserver.http1 import RequestHead, ResponseHead
from labserver.wire import (
    CapturedFrame,
    CapturedHead,
    CaptureError,
    ConnectionReader,
    Direction,
    StreamState,
    Traffic,
    WireEvent,
    json_objects,
)

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
KEY = b"\x0a\x0b\x0c\x0d"

UPGRADE = (
    b"GET /ws?token=t HTTP/1.1\r\nHost: lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
REFUSED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nno!"
GET = b"GET /api/rooms/r/messages?after=0 HTTP/1.1\r\nHost: lab\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

WELCOME = Frame(Opcode.TEXT, b'{"type":"welcome"}').serialize()
PING = Frame(Opcode.TEXT, b'{"type":"ping"}', masking_key=KEY).serialize()
PONG = Frame(Opcode.TEXT, b'{"type":"pong"}').serialize()
CLOSE = Frame(Opcode.CLOSE, close_payload(1000), masking_key=KEY).serialize()


def feed(reader: ConnectionReader, *steps: tuple[Direction, bytes]) -> list[WireEvent]:
    events: list[WireEvent] = []
    for t, (direction, data) in enumerate(steps):
        events += reader.receive_data(direction, data, float(t))
    return events


def frames(events: list[WireEvent], direction: Direction | None = None) -> list[Frame]:
    return [e.frame for e in events if isinstance(e, CapturedFrame) and direction in (None, e.direction)]


def heads(events: list[WireEvent]) -> list[str]:
    return [e.describe() for e in events if isinstance(e, CapturedHead)]


def errors(events: list[WireEvent]) -> list[CaptureError]:
    return [e for e in events if isinstance(e, CaptureError)]


# --- a WebSocket connection -------------------------------------------------------------------------


def test_handshake_then_frames_both_ways() -> None:
    reader = ConnectionReader(7)
    events = feed(reader, (C2S, UPGRADE), (S2C, SWITCHED + WELCOME), (C2S, PING), (S2C, PONG), (C2S, CLOSE))
    assert heads(events) == ["\u2192 #7 GET /ws?token=t HTTP/1.1", "\u2190 #7 HTTP/1.1 101 Switching Protocols"]
    assert frames(events, C2S) == [Frame.parse(PING)[0], Frame.parse(CLOSE)[0]]  # type: ignore[index]
    assert [f.payload for f in frames(events, S2C)] == [b'{"type":"welcome"}', b'{"type":"pong"}']
    captured = [e for e in events if isinstance(e, CapturedFrame)]
    assert [e.t for e in captured] == [1.0, 2.0, 3.0, 4.0] and {e.connection_id for e in captured} == {7}
    assert [e.raw_header for e in captured][:2] == [WELCOME[:2], PING[:6]]  # the header as on the wire
    assert reader.upgraded and (reader.requests, reader.responses) == (1, 1)
    assert (reader.frames_sent, reader.frames_received) == (2, 2)
    assert reader.state(C2S) is reader.state(S2C) is StreamState.WEBSOCKET
    assert reader.traffic == Traffic(len(UPGRADE), len(SWITCHED), len(PING + CLOSE), len(WELCOME + PONG), 1)
    assert errors(events) == []


def test_frames_sent_with_the_handshake_wait_for_the_101() -> None:
    reader = ConnectionReader()
    events = feed(reader, (C2S, UPGRADE + PING), (C2S, PING[:3]))
    assert frames(events) == [] and reader.state(C2S) is StreamState.AWAITING_UPGRADE
    assert reader.traffic.ws_sent == len(PING) + 3  # meant as frames: counted as such meanwhile
    events = feed(reader, (S2C, SWITCHED), (C2S, PING[3:]))
    assert [f.payload for f in frames(events, C2S)] == [b'{"type":"ping"}'] * 2
    assert reader.traffic == Traffic(len(UPGRADE), len(SWITCHED), 2 * len(PING), 0, 1)


def test_a_refused_upgrade_turns_what_followed_back_into_http() -> None:
    reader = ConnectionReader()
    events = feed(reader, (C2S, UPGRADE + GET), (S2C, REFUSED + OK))
    assert heads(events) == [
        "\u2192 #0 GET /ws?token=t HTTP/1.1",
        "\u2190 #0 HTTP/1.1 401 Unauthorized",
        "\u2192 #0 GET /api/rooms/r/messages?after=0 HTTP/1.1",
        "\u2190 #0 HTTP/1.1 200 OK",
    ]
    assert not reader.upgraded and (reader.requests, reader.responses) == (2, 2)
    assert reader.state(C2S) is reader.state(S2C) is StreamState.HTTP
    assert reader.traffic == Traffic(http_sent=len(UPGRADE + GET), http_received=len(REFUSED + OK), connections=1)


def test_a_switch_to_another_protocol_is_counted_as_http_and_not_read() -> None:
    h2c = b"GET / HTTP/1.1\r\nHost: lab\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"
    switched = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"
    reader = ConnectionReader()
    events = feed(reader, (C2S, h2c + b"PRI * HTTP/2.0"), (S2C, switched + b"\x00\x00\x12\x04"), (C2S, b"SM"))
    assert not reader.upgraded and frames(events) == [] and errors(events) == []
    assert reader.state(C2S) is reader.state(S2C) is StreamState.HTTP_UNREAD
    assert reader.traffic == Traffic(len(h2c) + 16, len(switched) + 4, connections=1)


# --- plain HTTP: polling, long polling, event streams ---------------------------------------------------


def test_polls_on_one_keep_alive_connection_are_all_http() -> None:
    reader = ConnectionReader()
    events = feed(reader, *[(C2S, GET), (S2C, OK)] * 3)
    assert len(heads(events)) == 6 and (reader.requests, reader.responses) == (3, 3)
    assert reader.traffic == Traffic(http_sent=3 * len(GET), http_received=3 * len(OK), connections=1)
    (head, *_) = [e.head for e in events if isinstance(e, CapturedHead)]
    assert isinstance(head, RequestHead) and head.target == "/api/rooms/r/messages?after=0"


def test_a_chunked_event_stream_is_followed_chunk_by_chunk() -> None:
    """Server-Sent Events (lesson 01): one response whose chunked body never ends."""
    stream_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    event = b'id: 1\ndata: {"type":"chat"}\n\n'
    chunk = f"{len(event):x}\r\n".encode() + event + b"\r\n"
    reader = ConnectionReader()
    events = feed(reader, (C2S, GET), (S2C, stream_head + chunk[:5]), (S2C, chunk[5:] + chunk), (S2C, b"0\r\n\r\n"))
    (response,) = [e.head for e in events if isinstance(e, CapturedHead) and e.direction is S2C]
    assert isinstance(response, ResponseHead) and response.header("content-type") == "text/event-stream"
    events = feed(reader, (C2S, GET), (S2C, OK))  # the stream ended: the connection is reused
    assert len(heads(events)) == 2 and errors(events) == []
    assert reader.traffic.received == len(stream_head) + 2 * len(chunk) + 5 + len(OK)
    assert reader.traffic.websocket == 0


def test_a_head_response_and_an_interim_response() -> None:
    reader = ConnectionReader()
    post = b"POST /api/upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    events = feed(
        reader,
        (C2S, b"HEAD /healthz HTTP/1.1\r\n\r\n" + post),
        (S2C, OK[:-2]),
        (S2C, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (C2S, b"abc"),
        (S2C, OK),
    )
    assert [h.split(" ", 2)[2] for h in heads(events)] == [
        "HEAD /healthz HTTP/1.1",
        "POST /api/upload HTTP/1.1",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 100 Continue",
        "HTTP/1.1 200 OK",
    ]
    assert (reader.requests, reader.responses) == (2, 3) and errors(events) == []


# --- what cannot be read is reported once, then only counted ------------------------------------------


def test_a_bad_frame_is_reported_with_its_header_and_the_rest_counted() -> None:
    reserved = bytes([0x83, 0x80]) + KEY
    reader = ConnectionReader()
    events = feed(reader, (C2S, UPGRADE), (S2C, SWITCHED), (C2S, PING + reserved + b"garbage"), (C2S, PING))
    (error,) = errors(events)
    assert error.direction is C2S and "reserved opcode 0x3" in error.message and error.raw == reserved + b"garbage"[:8]
    assert error.describe() == f"\u2192 #0 cannot read: {error.message}"
    assert len(frames(events, C2S)) == 1 and reader.state(C2S) is StreamState.WEBSOCKET_UNREAD
    assert reader.traffic.ws_sent == 2 * len(PING) + len(reserved) + 7


def test_a_frame_over_the_size_limit_is_counted_not_read() -> None:
    big = Frame(Opcode.BINARY, bytes(2000), masking_key=KEY).serialize()
    reader = ConnectionReader(max_frame_size=1000)
    events = feed(reader, (C2S, UPGRADE), (S2C, SWITCHED), (C2S, big), (S2C, PONG))
    (error,) = errors(events)
    assert "exceeds limit 1000" in error.message and error.raw == big[:14]
    assert frames(events, S2C) == [Frame(Opcode.TEXT, b'{"type":"pong"}')]  # the other way is still read
    assert reader.traffic.ws_sent == len(big)


def test_bytes_that_are_not_http_are_reported_and_counted_as_http() -> None:
    hello = b"\x16\x03\x01\x02\x00 a TLS hello\r\n\r\n"
    reader = ConnectionReader()
    events = feed(reader, (C2S, hello), (C2S, GET))
    (error,) = errors(events)
    assert "not a request line" in error.message and reader.state(C2S) is StreamState.HTTP_UNREAD
    assert heads(events) == [] and reader.traffic.http_sent == len(hello + GET)


def test_too_much_held_for_an_upgrade_answer() -> None:
    reader = ConnectionReader()
    events = feed(reader, (C2S, UPGRADE + bytes(1 << 20)), (C2S, b"x"), (S2C, SWITCHED + PONG))
    (error,) = errors(events)
    assert "before the server answered" in error.message
    assert reader.state(C2S) is StreamState.WEBSOCKET_UNREAD and reader.traffic.ws_sent == (1 << 20) + 1
    assert frames(events, S2C) == [Frame(Opcode.TEXT, b'{"type":"pong"}')]


def test_a_bug_in_reading_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: Any) -> None:
        raise ZeroDivisionError("reader bug")

    monkeypatch.setattr(ConnectionReader, "_read_frames", bug)
    reader = ConnectionReader()
    events = feed(reader, (C2S, UPGRADE), (S2C, SWITCHED + WELCOME), (C2S, PING), (S2C, PONG), (C2S, PING))
    assert [(e.direction, e.message) for e in errors(events)] == [
        (S2C, "failed to read the stream: ZeroDivisionError: reader bug"),
        (C2S, "failed to read the stream: ZeroDivisionError: reader bug"),
    ]  # once each way
    assert reader.traffic.ws_received == len(WELCOME + PONG) and reader.traffic.ws_sent == 2 * len(PING)


# --- counting ------------------------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 600), max_size=12), st.lists(st.integers(0, 600), max_size=12))
def test_the_pieces_the_bytes_come_in_change_nothing(up_cuts: list[int], down_cuts: list[int]) -> None:
    up = UPGRADE + PING + CLOSE
    down = SWITCHED + WELCOME + PONG

    def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
        points = sorted({min(c, len(data)) for c in cuts})
        return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)]) if b > a]

    whole = ConnectionReader()
    expected = [(type(e), e.direction) for e in feed(whole, (C2S, up), (S2C, down))]
    reader = ConnectionReader()  # the server answers once the whole request is in
    got = feed(reader, *[(C2S, p) for p in pieces(up, up_cuts)], *[(S2C, p) for p in pieces(down, down_cuts)])
    assert sorted((type(e).__name__, e.direction.value) for e in got) == sorted(
        (cls.__name__, direction.value) for cls, direction in expected
    )
    assert (
        reader.traffic
        == whole.traffic
        == Traffic(len(UPGRADE), len(SWITCHED), len(PING + CLOSE), len(WELCOME + PONG), 1)
    )


def test_reset_counts_and_traffic_arithmetic() -> None:
    reader = ConnectionReader()
    feed(reader, (C2S, UPGRADE), (S2C, SWITCHED))
    before = reader.traffic
    feed(reader, (C2S, PING))
    assert reader.traffic - before == Traffic(ws_sent=len(PING))
    reader.reset_counts()
    assert reader.traffic == Traffic() and (reader.requests, reader.frames_sent) == (0, 0)
    feed(reader, (S2C, PONG))  # reading goes on where it was
    assert reader.traffic == Traffic(ws_received=len(PONG)) and reader.frames_received == 1
    t = Traffic(1, 2, 3, 4, 1) + Traffic(10, 20, 30, 40, 2)
    assert t == Traffic(11, 22, 33, 44, 3) and t - Traffic(1, 2, 3, 4, 1) == Traffic(10, 20, 30, 40, 2)
    assert (t.sent, t.received, t.http, t.websocket, t.total) == (44, 66, 33, 77, 110)


def test_a_reset_while_bytes_wait_for_the_upgrade_answer_keeps_counts_whole() -> None:
    reader = ConnectionReader()
    feed(reader, (C2S, UPGRADE + GET))
    reader.reset_counts()
    assert reader.traffic == Traffic(ws_sent=len(GET))  # still held, still counted
    feed(reader, (S2C, REFUSED))
    assert reader.traffic == Traffic(http_sent=len(GET), http_received=len(REFUSED))


def test_json_objects_are_the_whole_text_frames_of_one_direction_that_hold_an_object() -> None:
    def captured(direction: Direction, frame: Frame, t: float) -> CapturedFrame:
        return CapturedFrame(direction, 1, frame, b"", t)

    frames = [
        captured(C2S, Frame(Opcode.TEXT, b'{"type": "join"}'), 1.0),
        captured(S2C, Frame(Opcode.TEXT, b'{"type": "welcome"}'), 2.0),  # the other direction
        captured(C2S, Frame(Opcode.TEXT, b'{"type": "ch', fin=False), 3.0),  # a fragment, not a message
        captured(C2S, Frame(Opcode.TEXT, b"[1, 2]"), 4.0),  # JSON, not an object
        captured(C2S, Frame(Opcode.TEXT, b"not json"), 5.0),
        captured(C2S, Frame(Opcode.BINARY, b'{"type": "binary"}'), 6.0),
        captured(C2S, Frame(Opcode.TEXT, b'{"type": "chat"}'), 7.0),
    ]
    assert json_objects(frames, C2S) == [(1.0, {"type": "join"}), (7.0, {"type": "chat"})]
    assert json_objects(frames, S2C) == [(2.0, {"type": "welcome"})]
