"""Hostile frames over a raw TCP socket: each is answered with the RFC 6455 close code,
and the server keeps serving everyone else.

Cases already in tests/test_ws.py (unmasked, RSV2, reserved opcode 0x3, ping over 125
bytes, fragmented ping, invalid UTF-8, 1009, a gigabyte length header) are not repeated;
this file adds the rest of section 5 and 7.4.

Compression bombs: the server never negotiates permessage-deflate (RFC 7692), so no
client frame may have RSV1 set; one that does is a protocol error (1002) and is never
inflated. There is therefore nothing to decompress, and a small compressed frame can't
expand into a huge message in the server's memory.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labserver.course import LabServer
from labserver.frames import ClientFrameGuard, Frame, FrameError, Opcode, is_valid_close_code
from labserver.rawws import RawWebSocket, handshake_request

from .adversarial import (
    close_code_after,
    connection_ends,
    each_case_then_still_serves,  # noqa: F401 - autouse: a second client is served after each case
    fresh_account,
    health,
    hostport,
    raw_open,
    still_serves,
    wait_health,
)

K = b"\x11\x22\x33\x44"


def masked(opcode: Opcode, payload: bytes = b"", *, fin: bool = True, **rsv: bool) -> Frame:
    return Frame(opcode, payload, fin, masking_key=K, **rsv)


def close_frame(code: int, reason: bytes = b"") -> Frame:
    return masked(Opcode.CLOSE, code.to_bytes(2, "big") + reason)


# --- one bad frame (or sequence), one close code ---------------------------------------------

BAD_SEQUENCES = {
    # RSV bits (section 5.2): RSV2 is in test_ws.py
    "rsv1_without_deflate": ([masked(Opcode.TEXT, b"{}", rsv1=True)], 1002),
    "rsv3": ([masked(Opcode.TEXT, b"{}", rsv3=True)], 1002),
    "rsv1_on_a_continuation": (
        [masked(Opcode.TEXT, b"{", fin=False), masked(Opcode.CONTINUATION, b"}", rsv1=True)],
        1002,
    ),
    # fragmentation (section 5.4)
    "continuation_without_a_start": ([masked(Opcode.CONTINUATION, b"x")], 1002),
    "final_continuation_without_a_start": ([masked(Opcode.CONTINUATION, b"x", fin=False)], 1002),
    "new_text_while_fragmented": ([masked(Opcode.TEXT, b"ab", fin=False), masked(Opcode.TEXT, b"cd")], 1002),
    "new_binary_while_fragmented": (
        [masked(Opcode.TEXT, b"ab", fin=False), masked(Opcode.BINARY, b"cd", fin=False)],
        1002,
    ),
    "fragmented_close": ([masked(Opcode.CLOSE, b"\x03\xe8", fin=False)], 1002),
    "fragmented_pong": ([masked(Opcode.PONG, b"x", fin=False)], 1002),
    "pong_over_125": ([masked(Opcode.PONG, b"x" * 126)], 1002),
    "close_over_125": ([masked(Opcode.CLOSE, b"\x03\xe8" + b"x" * 124)], 1002),
    # UTF-8 (section 8.1): checked over the whole message, not per fragment
    "invalid_utf8_split_across_fragments": (
        [masked(Opcode.TEXT, b'{"type":"ping","payload":"\xe2\x82', fin=False), masked(Opcode.CONTINUATION, b'("}')],
        1007,
    ),
    "invalid_utf8_in_the_last_fragment": (
        [masked(Opcode.TEXT, b'{"type":"ping",', fin=False), masked(Opcode.CONTINUATION, b'"payload":"\xc0\xaf"}')],
        1007,
    ),
    "utf16_surrogate_encoded_in_utf8": ([masked(Opcode.TEXT, b'"\xed\xa0\x80"')], 1007),
    "truncated_utf8_at_the_end": ([masked(Opcode.TEXT, b'{"type":"ping"}\xe2\x82')], 1007),
    # size (1009): the limit is on the reassembled message, not per frame
    "fragments_summing_over_the_limit": (
        [masked(Opcode.TEXT, b"x" * 40_000, fin=False), masked(Opcode.CONTINUATION, b"x" * 30_000)],
        1009,
    ),
    "length_claiming_exabytes": ([], 1009),  # raw bytes below
    # close frames (section 5.5.1, 7.4)
    "close_with_a_one_byte_body": ([masked(Opcode.CLOSE, b"\x03")], 1002),
    "close_with_invalid_utf8_reason": ([close_frame(1000, b"\xff\xfe")], 1007),
}
for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
    BAD_SEQUENCES[f"close_code_{code}"] = ([close_frame(code)], 1002)


@pytest.mark.parametrize("name", sorted(BAD_SEQUENCES))
def test_bad_frame_sequences_get_the_rfc_close_code(lab: LabServer, name: str) -> None:
    frames, expected = BAD_SEQUENCES[name]
    ws = raw_open(lab)
    try:
        if name == "length_claiming_exabytes":
            ws.sock.sendall(bytes([0x82, 0x80 | 127]) + (2**62).to_bytes(8, "big") + K + b"x" * 64)
        else:
            ws.sock.sendall(b"".join(f.serialize() for f in frames))
        assert close_code_after(ws) == expected
        assert connection_ends(ws)
    finally:
        ws.close()


@pytest.mark.parametrize("opcode", [*range(0x3, 0x8), *range(0xB, 0x10)], ids=hex)
def test_every_reserved_opcode_is_1002(lab: LabServer, opcode: int) -> None:
    ws = raw_open(lab)
    try:
        ws.sock.sendall(bytes([0x80 | opcode, 0x80 | 2]) + K + b"hi")
        assert close_code_after(ws) == 1002
    finally:
        ws.close()


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_codes_are_echoed(lab: LabServer, code: int) -> None:
    """RFC 6455 section 5.5.1: the answer to a Close frame "typically echoes the status code it received"."""
    ws = raw_open(lab)
    try:
        ws.send_frame(close_frame(code, "au revoir \u2764".encode()))
        assert close_code_after(ws) == code
    finally:
        ws.close()


def test_an_empty_close_frame_is_answered_1000(lab: LabServer) -> None:
    ws = raw_open(lab)
    try:
        ws.send_frame(masked(Opcode.CLOSE))
        assert close_code_after(ws) == 1000
    finally:
        ws.close()


# --- well-formed but unusual frames are fine --------------------------------------------------


def test_valid_utf8_split_inside_a_character_and_pings_between_fragments(lab: LabServer) -> None:
    ws = raw_open(lab)
    try:
        ws.sock.sendall(
            b"".join(
                f.serialize()
                for f in [
                    masked(Opcode.TEXT, b'{"type":"ping","ref":1,"payload":"\xe2', fin=False),
                    masked(Opcode.PING, b"between"),  # control frames may come between fragments
                    masked(Opcode.CONTINUATION, b"\x82", fin=False),
                    masked(Opcode.PONG, b"unsolicited"),  # ignored
                    masked(Opcode.CONTINUATION, b'\xac"}'),
                ]
            )
        )
        ws.sock.settimeout(5)
        first, second = ws.recv_frame(), ws.recv_frame()
        assert first is not None and first.opcode is Opcode.PONG and first.payload == b"between"
        assert second is not None and second.opcode is Opcode.TEXT
        assert json.loads(second.payload) | {"server_time": 0} == {
            "type": "pong",
            "ref": 1,
            "payload": "\u20ac",
            "server_time": 0,
        }
    finally:
        ws.close()


# --- compression: never negotiated ------------------------------------------------------------


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "x-webkit-deflate-frame",
    ],
)
def test_compression_is_never_negotiated_and_rsv1_is_refused(lab: LabServer, offer: str) -> None:
    ws = raw_open(lab, extra={"Sec-WebSocket-Extensions": offer})
    try:
        assert "sec-websocket-extensions" not in ws.response.headers
        # A deflate "bomb": a few bytes that would inflate to 10 MB. With RSV1 it's a protocol error.
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = deflater.compress(b"[" * 10_000_000) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert len(bomb) < 20_000
        ws.send_frame(masked(Opcode.TEXT, bomb[:-4], rsv1=True))
        assert close_code_after(ws) == 1002
    finally:
        ws.close()


# --- endless fragments: bounded memory, then a close --------------------------------------------


def test_endless_tiny_continuation_frames_end_in_1009_with_bounded_memory(lab: LabServer) -> None:
    before = health(lab)["rss_bytes"]
    ws = raw_open(lab)
    result: list[int | None] = []
    reader = threading.Thread(target=lambda: result.append(close_code_after(ws, timeout=20)), daemon=True)
    reader.start()
    burst = masked(Opcode.CONTINUATION, b"x", fin=False).serialize() * 10_000
    sent = 0
    try:
        ws.sock.sendall(masked(Opcode.TEXT, b"x", fin=False).serialize())
        while sent < 10_000_000 and reader.is_alive():  # endless, until the server hangs up
            try:
                ws.sock.sendall(burst)
            except OSError:
                break
            sent += 10_000
        reader.join(20)
    finally:
        ws.close()
    assert result == [1009], (result, sent)
    assert sent < 10_000_000
    after = health(lab)["rss_bytes"]
    assert after - before < 16 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB"


def test_endless_empty_continuation_frames_are_closed_1009(lab: LabServer) -> None:
    """Empty fragments never grow the message, so no size limit stops them: the frame
    guard counts continuation frames and closes past the cap, with flat memory."""
    before = health(lab)["rss_bytes"]
    ws = raw_open(lab)
    empty = masked(Opcode.CONTINUATION, b"", fin=False).serialize() * 20_000
    try:
        ws.sock.sendall(masked(Opcode.TEXT, b'{"type":"ping"', fin=False).serialize())
        for _ in range(50):  # up to a million empty fragments, until the server hangs up
            try:
                ws.sock.sendall(empty)
            except OSError:
                break
        assert close_code_after(ws, timeout=10) == 1009
    finally:
        ws.close()
    after = health(lab)["rss_bytes"]
    assert after - before < 16 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB"


def test_a_message_in_many_small_fragments_under_the_cap_is_fine(lab: LabServer) -> None:
    ws = raw_open(lab)
    try:
        ws.sock.sendall(masked(Opcode.TEXT, b'{"type":"ping","ref":"late"', fin=False).serialize())
        ws.sock.sendall(masked(Opcode.CONTINUATION, b"", fin=False).serialize() * 1000)
        ws.sock.sendall(masked(Opcode.CONTINUATION, b"}").serialize())
        ws.sock.settimeout(10)
        reply = ws.recv_frame()
        assert reply is not None and json.loads(reply.payload)["ref"] == "late"
    finally:
        ws.close()


# --- a message split across TCP segments and handshake bytes -------------------------------------


def test_frames_in_the_same_packet_as_the_handshake_are_checked(lab: LabServer) -> None:
    host, port = hostport(lab)
    token = fresh_account(lab).token
    request = handshake_request(host, port, f"/ws?token={token}") + close_frame(1006).serialize()
    ws = RawWebSocket.connect(host, port, request)
    try:
        assert ws.response.status == 101
        assert close_code_after(ws) == 1002
    finally:
        ws.close()


def test_one_byte_at_a_time_is_fine(lab: LabServer) -> None:
    ws = raw_open(lab)
    try:
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in masked(Opcode.TEXT, b'{"type":"ping","ref":"slow"}').serialize():
            ws.sock.sendall(bytes([byte]))
            time.sleep(0.001)  # not a wait: it makes each byte its own TCP segment, as the test intends
        ws.sock.settimeout(5)
        reply = ws.recv_frame()
        assert reply is not None and json.loads(reply.payload)["ref"] == "slow"
    finally:
        ws.close()


async def test_the_server_still_serves_after_all_the_bad_frames(lab: LabServer) -> None:
    await still_serves(lab)
    body = health(lab)
    assert body["status"] == "ok"


# --- live frame fuzz ------------------------------------------------------------------------


def _random_frame(rng: random.Random) -> bytes:
    """One frame with random FIN, RSV1, opcode (reserved ones too), length and payload;
    masked 95% of the time."""
    opcode = rng.choice([0, 0, 1, 1, 2, 8, 9, 10, rng.randrange(16)])
    payload = b'{"type":"ping"}' if rng.random() < 0.3 else rng.randbytes(rng.choice([0, 1, 2, 5, 125, 126, 300]))
    first = (0x80 if rng.random() < 0.7 else 0) | (0x40 if rng.random() < 0.1 else 0) | opcode
    key = rng.randbytes(4) if rng.random() < 0.95 else None
    wire = Frame(Opcode.TEXT, payload, masking_key=key).serialize()
    return bytes([first]) + wire[1:]


async def test_random_frame_sequences_never_hurt_the_server(lab: LabServer) -> None:
    rng = random.Random(6455)
    codes: dict[int | None, int] = {}

    def one(i: int) -> None:
        ws = raw_open(lab)
        try:
            ws.sock.sendall(b"".join(_random_frame(rng) for _ in range(rng.randrange(1, 8))))
            ws.sock.sendall(close_frame(1000).serialize())
            try:
                code = close_code_after(ws, timeout=5)
            except Exception:  # any: the server may reset after its close frame
                code = -1
            codes[code] = codes.get(code, 0) + 1
        finally:
            ws.close()

    for i in range(60):
        await asyncio.to_thread(one, i)
    assert set(codes) <= {1000, 1002, 1007, 1009, -1}, codes
    await still_serves(lab)
    assert (await wait_health(lab, lambda h: h["connections"] == 0))["connections"] == 0


# --- property tests of the sans-I/O frame code --------------------------------------------------

header_bytes = st.builds(
    lambda first, second, ext: bytes([first, second]) + ext,
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=12),
)


@given(st.binary(max_size=400) | header_bytes, st.integers(0, 1 << 64))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_frame_parse_of_random_bytes_raises_only_frame_error(data: bytes, max_size: int) -> None:
    try:
        parsed = Frame.parse(data, max_size=max_size)
    except FrameError as exc:
        assert exc.close_code in (1002, 1009)
        return
    if parsed is not None:
        frame, used = parsed
        assert 2 <= used <= len(data)
        assert len(frame.payload) <= max_size


@given(st.lists(st.binary(max_size=64) | header_bytes, max_size=40))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_parsing_a_random_stream_frame_by_frame_raises_only_frame_error(chunks: list[bytes]) -> None:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while True:
            try:
                parsed = Frame.parse(buffer, max_size=1 << 20)
            except FrameError:
                return
            if parsed is None:
                break
            del buffer[: parsed[1]]


@given(st.lists(st.binary(max_size=300) | header_bytes, max_size=40))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_frame_guard_on_random_chunks_never_raises(chunks: list[bytes]) -> None:
    guard = ClientFrameGuard()
    results = [guard.feed(chunk) for chunk in chunks]
    first = next((r for r in results if r is not None), None)
    if first is not None:  # once a violation, always that violation
        assert results[results.index(first) :] == [first] * (len(results) - results.index(first))
        assert guard.violation == first


random_frames = st.builds(
    Frame,
    st.sampled_from(list(Opcode)),
    st.binary(max_size=140),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.none() | st.binary(min_size=4, max_size=4),
)


@given(st.lists(random_frames, max_size=10), st.lists(st.integers(0, 2000), max_size=10))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_random_frame_sequences_through_guard_and_parser(frames: list[Frame], cuts: list[int]) -> None:
    """Any sequence of frames (legal or not: control frames over 125 bytes, fragmented
    control frames, RSV bits, unmasked, close codes no endpoint may send) split anywhere: the
    guard flags exactly the first unmasked frame or forbidden close code, and the parser raises
    nothing but FrameError."""
    stream = b"".join(f.serialize() for f in frames)
    guard = ClientFrameGuard()
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    flagged = [guard.feed(p) for p in pieces]

    def breaks_a_rule(f: Frame) -> bool:
        if f.masking_key is None:
            return True
        return (
            f.opcode is Opcode.CLOSE
            and len(f.payload) >= 2
            and not is_valid_close_code(int.from_bytes(f.payload[:2], "big"))
        )

    first_bad = next((f for f in frames if breaks_a_rule(f)), None)
    assert (guard.violation is not None) == (first_bad is not None)
    if first_bad is not None:
        assert ("not masked" in (guard.violation or "")) == (first_bad.masking_key is None)
    assert all(r is None or r == guard.violation for r in flagged)
    buffer = bytearray(stream)
    while buffer:
        try:
            parsed = Frame.parse(buffer)
        except FrameError as exc:
            assert exc.close_code == 1002
            return
        assert parsed is not None  # a whole frame is always there
        del buffer[: parsed[1]]
