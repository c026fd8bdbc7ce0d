"""Unit tests of labserver.frames (RFC 6455 section 5), including a differential test
against the websockets library's own frame parser and serializer."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Close as WsClose
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

from labserver.frames import (
    ClientFrameGuard,
    Close,
    CloseCode,
    Frame,
    FrameError,
    FrameHeader,
    FrameReader,
    Message,
    MessageAssembler,
    Opcode,
    WireFrame,
    apply_mask,
    close_code_name,
    close_payload,
    decode_text,
    describe,
    is_valid_close_code,
    opcode_name,
    parse_close,
    parse_header,
    payload_preview,
    server_text_frame,
)

DATA_OPCODES = [Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY]
CONTROL_OPCODES = [Opcode.CLOSE, Opcode.PING, Opcode.PONG]
RESERVED_OPCODES = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]
BOUNDARY_SIZES = [0, 1, 124, 125, 126, 127, 65535, 65536, 65537]

masking_keys = st.none() | st.binary(min_size=4, max_size=4)


@st.composite
def payloads(draw: st.DrawFn, max_size: int) -> bytes:
    """Payloads whose lengths cluster around the 7/16/64-bit length encoding boundaries."""
    sizes = [s for s in BOUNDARY_SIZES if s <= max_size]
    size = draw(st.sampled_from(sizes) | st.integers(0, min(max_size, 300)))
    prefix = draw(st.binary(max_size=min(size, 16)))
    return (prefix + bytes(size))[:size] if size else b""


@st.composite
def frames(draw: st.DrawFn, *, rsv: bool = True, masked: bool | None = None) -> Frame:
    control = draw(st.booleans())
    if control:
        opcode = draw(st.sampled_from(CONTROL_OPCODES))
        payload = draw(payloads(125))
        fin = True
    else:
        opcode = draw(st.sampled_from(DATA_OPCODES))
        payload = draw(payloads(70_000))
        fin = draw(st.booleans())
    if masked is None:
        key = draw(masking_keys)
    elif masked:
        key = draw(st.binary(min_size=4, max_size=4))
    else:
        key = None
    bits = draw(st.tuples(st.booleans(), st.booleans(), st.booleans())) if rsv else (False, False, False)
    return Frame(opcode, payload, fin, *bits, masking_key=key)


def sends_a_forbidden_close_code(frame: Frame) -> bool:
    """A Close frame whose code no endpoint may send (RFC 6455 section 7.4): the guard refuses it."""
    code = int.from_bytes(frame.payload[:2], "big")
    return frame.opcode is Opcode.CLOSE and len(frame.payload) >= 2 and not is_valid_close_code(code)


def follows_the_rules(frame: Frame) -> bool:
    return not sends_a_forbidden_close_code(frame)


def header_length(frame: Frame) -> int:
    n = len(frame.payload)
    return 2 + (0 if n < 126 else 2 if n < 65536 else 8) + (4 if frame.masking_key is not None else 0)


# --- serialize / parse -----------------------------------------------------------------


@given(frames(), st.binary(max_size=8))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_round_trip(frame: Frame, trailing: bytes) -> None:
    wire = frame.serialize()
    assert len(wire) == header_length(frame) + len(frame.payload)
    parsed = Frame.parse(wire + trailing)
    assert parsed is not None
    assert parsed == (frame, len(wire))  # consumed exactly one frame, trailing bytes left alone


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
@pytest.mark.parametrize("key", [None, b"\x01\x02\x03\x04"])
def test_length_encoding_boundaries(size: int, key: bytes | None) -> None:
    frame = Frame(Opcode.BINARY, bytes(range(256)) * (size // 256) + bytes(range(size % 256)), masking_key=key)
    wire = frame.serialize()
    mask_bit = 0x80 if key else 0
    if size < 126:
        assert wire[1] == mask_bit | size
    elif size < 65536:
        assert wire[1] == mask_bit | 126 and struct.unpack("!H", wire[2:4])[0] == size
    else:
        assert wire[1] == mask_bit | 127 and struct.unpack("!Q", wire[2:10])[0] == size
    assert Frame.parse(wire) == (frame, len(wire))


def test_first_byte_bits() -> None:
    assert Frame(Opcode.TEXT, b"").serialize()[0] == 0x81
    assert Frame(Opcode.TEXT, b"", fin=False).serialize()[0] == 0x01
    assert Frame(Opcode.BINARY, b"", rsv1=True).serialize()[0] == 0xC2
    assert Frame(Opcode.BINARY, b"", rsv2=True).serialize()[0] == 0xA2
    assert Frame(Opcode.BINARY, b"", rsv3=True).serialize()[0] == 0x92
    assert Frame(Opcode.PING, b"").serialize()[0] == 0x89


def test_masked_payload_on_the_wire_is_xored() -> None:
    key = b"\x37\xfa\x21\x3d"
    wire = Frame(Opcode.TEXT, b"Hello", masking_key=key).serialize()
    # RFC 6455 section 5.7: a single-frame masked text message containing "Hello"
    assert wire == bytes.fromhex("818537fa213d7f9f4d5158")


def test_rfc_examples_unmasked() -> None:
    assert Frame.parse(bytes.fromhex("810548656c6c6f")) == (Frame(Opcode.TEXT, b"Hello"), 7)
    assert Frame.parse(bytes.fromhex("010348656c")) == (Frame(Opcode.TEXT, b"Hel", fin=False), 5)
    assert Frame.parse(bytes.fromhex("80026c6f")) == (Frame(Opcode.CONTINUATION, b"lo"), 4)
    assert Frame.parse(bytes.fromhex("890548656c6c6f")) == (Frame(Opcode.PING, b"Hello"), 7)


@given(frames())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_every_strict_prefix_is_incomplete(frame: Frame) -> None:
    wire = frame.serialize()
    cuts = range(len(wire)) if len(wire) < 300 else [*range(20), len(wire) // 2, len(wire) - 1]
    for cut in cuts:
        assert Frame.parse(wire[:cut]) is None, cut
        assert Frame.parse(memoryview(wire)[:cut]) is None, cut
        assert Frame.parse(bytearray(wire[:cut])) is None, cut


@pytest.mark.parametrize("opcode", RESERVED_OPCODES)
def test_reserved_opcodes_raise(opcode: int) -> None:
    with pytest.raises(FrameError, match="reserved opcode") as info:
        Frame.parse(bytes([0x80 | opcode, 0x00]))
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(FrameError):
        Frame.parse(bytes([opcode, 0x85]) + b"\x00" * 9)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_fragmented_control_frame_raises(opcode: Opcode) -> None:
    wire = bytes([int(opcode), 0x00])  # FIN clear
    with pytest.raises(FrameError, match="FIN") as info:
        Frame.parse(wire)
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
@pytest.mark.parametrize("size", [126, 127, 65536])
def test_oversized_control_frame_raises(opcode: Opcode, size: int) -> None:
    wire = Frame(Opcode.BINARY, bytes(size)).serialize()
    wire = bytes([0x80 | int(opcode)]) + wire[1:]
    with pytest.raises(FrameError, match="125") as info:
        Frame.parse(wire)
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(FrameError):
        Frame.parse(wire[:10])  # refused from the header alone, before the payload arrives


def test_control_frame_of_125_bytes_is_fine() -> None:
    frame = Frame(Opcode.PONG, bytes(125))
    assert Frame.parse(frame.serialize()) == (frame, 127)


def test_max_size_gives_1009() -> None:
    wire = Frame(Opcode.TEXT, b"x" * 100).serialize()
    assert Frame.parse(wire, max_size=100) is not None
    with pytest.raises(FrameError) as info:
        Frame.parse(wire, max_size=99)
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG == 1009
    big = Frame(Opcode.BINARY, bytes(70_000), masking_key=b"abcd").serialize()
    with pytest.raises(FrameError) as info:
        Frame.parse(big[:10], max_size=65536)  # known from the header alone
    assert info.value.close_code == 1009


def test_64_bit_length_with_msb_set_raises() -> None:
    wire = bytes([0x82, 127]) + struct.pack("!Q", 1 << 63)
    with pytest.raises(FrameError, match="most significant bit"):
        Frame.parse(wire)


# --- masking --------------------------------------------------------------------------


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
@settings(max_examples=200)
def test_apply_mask_is_an_involution(payload: bytes, key: bytes) -> None:
    masked = apply_mask(payload, key)
    assert len(masked) == len(payload)
    assert apply_mask(masked, key) == payload
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_apply_mask_preserves_leading_zero_bytes() -> None:
    assert apply_mask(b"\x00\x00\x01", b"\x00\x00\x00\x00") == b"\x00\x00\x01"
    assert apply_mask(b"abcd", b"abcd") == b"\x00\x00\x00\x00"
    assert apply_mask(b"", b"abcd") == b""


@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_apply_mask_needs_four_byte_key(key: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"data", key)


# --- server_text_frame ----------------------------------------------------------------


@given(st.text(max_size=300) | st.sampled_from(["x" * 125, "x" * 126, "\u00e9" * 63, "y" * 65535, "z" * 65536]))
@settings(max_examples=100)
def test_server_text_frame_equals_frame_serialize(text: str) -> None:
    expected = Frame(Opcode.TEXT, text.encode()).serialize()
    assert server_text_frame(text) == expected
    assert server_text_frame(text.encode()) == expected
    assert not server_text_frame(text)[1] & 0x80  # servers never mask


# --- ClientFrameGuard ----------------------------------------------------------------


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    st.lists(frames(masked=True).filter(follows_the_rules), min_size=1, max_size=6),
    st.lists(st.integers(0, 200_000), max_size=30),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_guard_accepts_masked_frames_split_anywhere(frame_list: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(f.serialize() for f in frame_list)
    guard = ClientFrameGuard()
    for chunk in split(stream, cuts):
        assert guard.feed(chunk) is None
    assert guard.violation is None
    # ended on a frame boundary: a fresh masked frame afterwards is still fine
    assert guard.feed(Frame(Opcode.PING, b"p", masking_key=b"kkkk").serialize()) is None


def test_guard_accepts_byte_by_byte() -> None:
    stream = b"".join(
        Frame(op, bytes(n), masking_key=b"\x01\x02\x03\x04").serialize()
        for op, n in [(Opcode.TEXT, 0), (Opcode.BINARY, 126), (Opcode.PING, 125), (Opcode.BINARY, 65536)]
    )
    guard = ClientFrameGuard()
    for i in range(len(stream)):
        assert guard.feed(stream[i : i + 1]) is None


@given(
    st.lists(frames(masked=True).filter(follows_the_rules), max_size=5),
    frames(masked=False),
    st.lists(st.integers(0, 200_000), max_size=30),
    st.lists(st.integers(-3, 12), max_size=3),
    st.binary(max_size=20),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_guard_reports_first_unmasked_frame(
    masked: list[Frame], bad: Frame, cuts: list[int], near_bad: list[int], tail: bytes
) -> None:
    prefix = b"".join(f.serialize() for f in masked)
    stream = prefix + bad.serialize() + tail
    cuts = cuts + [len(prefix) + d for d in near_bad]  # also split inside the bad frame's header
    guard = ClientFrameGuard()
    results = []
    fed = 0
    for chunk in split(stream, cuts):
        result = guard.feed(chunk)
        results.append(result)
        fed += len(chunk)
        if fed < len(prefix) + 2:
            assert result is None  # the MASK bit of the bad frame has not arrived yet
        else:
            assert result is not None and "not masked" in result
    assert guard.violation is not None and "5.1" in guard.violation
    assert guard.feed(b"anything") == guard.violation  # sticky


def test_guard_reports_unmasked_frame_split_between_its_two_header_bytes() -> None:
    good = b"".join(Frame(Opcode.TEXT, b"x" * n, masking_key=b"abcd").serialize() for n in (3, 200, 0))
    bad = Frame(Opcode.TEXT, b"hello").serialize()
    guard = ClientFrameGuard()
    assert guard.feed(good[:5]) is None
    assert guard.feed(good[5:] + bad[:1]) is None
    assert guard.feed(bad[1:]) is not None


def test_guard_first_frame_unmasked() -> None:
    guard = ClientFrameGuard()
    assert guard.feed(server_text_frame("hi")) is not None


# --- differential: labserver.frames vs websockets.frames -----------------------------


def ws_parse(data: bytes, *, mask: bool, max_size: int | None = None) -> tuple[WsFrame, int]:
    """Drive websockets' generator-based parser over ``data``; return the frame and bytes left."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = WsFrame.parse(reader.read_exact, mask=mask, max_size=max_size)
    try:
        next(parser)
    except StopIteration as stop:
        return stop.value, len(reader.buffer)
    raise AssertionError("websockets parser wanted more data than a complete frame")


@given(frames(rsv=False), st.binary(max_size=4))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_ours_parse_identically_in_websockets(frame: Frame, trailing: bytes) -> None:
    # websockets refuses RSV bits without a negotiated extension, so they stay clear here.
    wire = frame.serialize()
    theirs, left = ws_parse(wire + trailing, mask=frame.masking_key is not None)
    assert left == len(trailing)
    assert int(theirs.opcode) == int(frame.opcode)
    assert theirs.fin == frame.fin
    assert bytes(theirs.data) == frame.payload
    assert (theirs.rsv1, theirs.rsv2, theirs.rsv3) == (False, False, False)


@pytest.mark.parametrize("text", ["", "hi", "x" * 125, "x" * 126, "\u2603" * 30_000])
def test_server_text_frame_parses_in_websockets(text: str) -> None:
    theirs, left = ws_parse(server_text_frame(text), mask=False)
    assert (theirs.opcode, theirs.fin, bytes(theirs.data).decode(), left) == (WsOpcode.TEXT, True, text, 0)


@given(
    st.sampled_from(list(WsOpcode)),
    payloads(70_000),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_websockets_frames_parse_identically_in_ours(opcode: WsOpcode, payload: bytes, fin: bool, mask: bool) -> None:
    if opcode in (WsOpcode.CLOSE, WsOpcode.PING, WsOpcode.PONG):
        payload, fin = payload[:125], True
    wire = WsFrame(opcode, payload, fin).serialize(mask=mask)
    parsed = Frame.parse(wire)
    assert parsed is not None
    ours, consumed = parsed
    assert consumed == len(wire)
    assert int(ours.opcode) == int(opcode)
    assert ours.fin == fin
    assert ours.payload == payload
    assert (ours.masking_key is not None) == mask
    if mask:
        assert wire[header_length(ours) - 4 : header_length(ours)] == ours.masking_key
    # and the guard agrees with the MASK bit websockets wrote (and refuses a forbidden close code)
    assert (ClientFrameGuard().feed(wire) is None) == (mask and not sends_a_forbidden_close_code(ours))


def test_both_refuse_the_same_bad_frames() -> None:
    cases = [
        bytes([0x83, 0x00]),  # reserved opcode
        bytes([0x09, 0x00]),  # fragmented ping
        bytes([0x89, 126, 0x00, 126]) + bytes(126),  # 126-byte ping
    ]
    for wire in cases:
        with pytest.raises(FrameError):
            Frame.parse(wire)
        with pytest.raises(ProtocolError):
            ws_parse(wire, mask=False)
    big = Frame(Opcode.BINARY, bytes(2000)).serialize()
    with pytest.raises(FrameError) as info:
        Frame.parse(big, max_size=1000)
    assert info.value.close_code == 1009
    with pytest.raises(PayloadTooBig):
        ws_parse(big, mask=False, max_size=1000)


# === lesson 03: headers, streams, fragments, close frames, descriptions ==================

# --- parse_header ------------------------------------------------------------------------


@given(frames())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_parse_header_reads_every_field(frame: Frame) -> None:
    wire = frame.serialize()
    header = parse_header(wire)
    assert header is not None
    assert (header.fin, header.rsv1, header.rsv2, header.rsv3) == (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3)
    assert header.opcode == int(frame.opcode) and header.opcode_name == frame.opcode.name
    assert header.masked == (frame.masking_key is not None) and header.masking_key == frame.masking_key
    assert header.length == len(frame.payload)
    assert header.size == header_length(frame)
    assert header.frame_size == len(wire)
    n = len(frame.payload)
    assert header.extended_length_bytes == (0 if n < 126 else 2 if n < 65536 else 8)
    assert header.length_code == (n if n < 126 else 126 if n < 65536 else 127)
    for cut in range(header.size):
        assert parse_header(wire[:cut]) is None, cut
    assert parse_header(wire[: header.size]) == header  # the payload is not needed


def test_parse_header_reads_what_parse_refuses() -> None:
    header = parse_header(bytes([0x83, 0x80]) + b"abcd")  # reserved opcode, masked, empty
    assert header == FrameHeader(True, False, False, False, 0x3, True, 0, 0, b"abcd", 6)
    assert header.opcode_name == "RESERVED_0x3"
    header = parse_header(bytes([0x09, 126, 0x01, 0x00]))  # a fragmented 256-byte ping
    assert header is not None and (header.fin, header.opcode, header.length) == (False, 0x9, 256)


def test_opcode_name() -> None:
    assert [opcode_name(n) for n in (0, 1, 2, 8, 9, 10)] == ["CONTINUATION", "TEXT", "BINARY", "CLOSE", "PING", "PONG"]
    assert opcode_name(0xB) == "RESERVED_0xB"


# --- FrameReader ------------------------------------------------------------------------


@given(st.lists(frames(), min_size=1, max_size=6), st.lists(st.integers(0, 200_000), max_size=30))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_reader_gives_every_frame_in_order_whatever_the_chunks(frame_list: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(f.serialize() for f in frame_list)
    reader = FrameReader()
    got: list[WireFrame] = []
    for chunk in split(stream, cuts):
        got += reader.feed_wire(chunk)
    assert [w.frame for w in got] == frame_list
    assert [w.header for w in got] == [f.serialize()[: header_length(f)] for f in frame_list]
    assert sum(w.size for w in got) == len(stream)
    assert reader.buffered == 0 and reader.error is None


def test_reader_byte_by_byte_and_partial_state() -> None:
    frame_list = [Frame(Opcode.TEXT, b"x" * n, masking_key=b"\x01\x02\x03\x04") for n in (0, 5, 125, 126, 70_000)]
    stream = b"".join(f.serialize() for f in frame_list)
    reader = FrameReader(expect_masked=True)
    got = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert got == frame_list
    assert reader.feed(stream[:3]) == [] and reader.buffered == 3


def test_reader_iterates_and_next_frame() -> None:
    reader = FrameReader()
    reader.receive_data(bytes.fromhex("010348656c") + bytes.fromhex("80026c6f") + b"\x81")
    assert reader.next_frame() == Frame(Opcode.TEXT, b"Hel", fin=False)
    assert list(reader) == [Frame(Opcode.CONTINUATION, b"lo")]
    assert reader.next_frame() is None and reader.buffered == 1


def test_reader_peek_shows_the_refused_header() -> None:
    reader = FrameReader(expect_masked=True)
    reader.receive_data(Frame(Opcode.PING, b"", masking_key=b"kkkk").serialize() + bytes([0x83, 0x80]) + b"abcdEXTRA")
    assert reader.next_frame() is not None
    with pytest.raises(FrameError, match="reserved opcode"):
        reader.next_frame()
    assert reader.peek(6) == bytes([0x83, 0x80]) + b"abcd" and reader.peek() == bytes([0x83, 0x80]) + b"abcdEXTRA"


def test_reader_keeps_a_non_minimal_length_header_as_sent() -> None:
    # RFC 6455 wants the shortest length encoding, but a reader shows what arrived.
    wire = bytes([0x81, 126, 0x00, 0x05]) + b"Hello"
    (got,) = FrameReader().feed_wire(wire)
    assert got.frame == Frame(Opcode.TEXT, b"Hello") and got.header == wire[:4] and got.size == 9


@pytest.mark.parametrize(
    ("expect_masked", "frame", "message"),
    [
        (True, Frame(Opcode.TEXT, b"hi"), "not masked"),
        (False, Frame(Opcode.TEXT, b"hi", masking_key=b"abcd"), "server frame is masked"),
    ],
)
def test_reader_checks_the_mask_bit_it_expects(expect_masked: bool, frame: Frame, message: str) -> None:
    good = Frame(Opcode.PING, b"p", masking_key=b"kkkk" if expect_masked else None)
    reader = FrameReader(expect_masked=expect_masked)
    reader.receive_data(good.serialize() + frame.serialize()[:2])  # the MASK bit is in byte 2
    assert reader.next_frame() == good
    with pytest.raises(FrameError, match=message) as info:
        reader.next_frame()
    assert info.value.close_code == 1002 and reader.error is info.value
    assert FrameReader().feed(frame.serialize()) == [frame]  # expect_masked=None takes both


def test_reader_errors_are_sticky_and_frames_before_them_are_kept() -> None:
    good = Frame(Opcode.TEXT, b"ok")
    reader = FrameReader()
    reader.receive_data(good.serialize() + bytes([0x83, 0x00]) + good.serialize())
    assert reader.next_frame() == good
    with pytest.raises(FrameError, match="reserved opcode") as first:
        reader.next_frame()
    with pytest.raises(FrameError) as again:
        reader.feed(good.serialize())
    assert again.value is first.value
    with pytest.raises(FrameError):  # feed() raises at the bad frame
        FrameReader().feed(good.serialize() + bytes([0x83, 0x00]))


def test_reader_max_size_refuses_from_the_header() -> None:
    big = Frame(Opcode.BINARY, bytes(70_000), masking_key=b"abcd").serialize()
    reader = FrameReader(max_size=1000)
    assert reader.feed(big[:9]) == []  # the 64-bit length is not complete yet
    with pytest.raises(FrameError) as info:
        reader.feed(big[9:10])  # now it is, and the masking key and payload need not come
    assert info.value.close_code == 1009
    assert FrameReader(max_size=1000).feed(Frame(Opcode.BINARY, bytes(1000)).serialize())[0].payload == bytes(1000)


@given(
    st.lists(st.tuples(st.sampled_from(list(WsOpcode)), payloads(70_000), st.booleans()), min_size=1, max_size=5),
    st.booleans(),
    st.lists(st.integers(0, 200_000), max_size=20),
)
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_reader_reads_a_stream_written_by_websockets(
    items: list[tuple[WsOpcode, bytes, bool]], mask: bool, cuts: list[int]
) -> None:
    sent = []
    for opcode, payload, fin in items:
        if opcode in (WsOpcode.CLOSE, WsOpcode.PING, WsOpcode.PONG):
            payload, fin = payload[:125], True
        sent.append(WsFrame(opcode, payload, fin))
    stream = b"".join(f.serialize(mask=mask) for f in sent)
    reader = FrameReader(expect_masked=mask)
    got = [f for chunk in split(stream, cuts) for f in reader.feed(chunk)]
    assert [(int(f.opcode), f.payload, f.fin) for f in got] == [(int(f.opcode), bytes(f.data), f.fin) for f in sent]
    assert all((f.masking_key is not None) == mask for f in got)


# --- MessageAssembler and decode_text -------------------------------------------------------


def test_assembler_puts_fragments_back_together_around_control_frames() -> None:
    snowman = "\u2603".encode()  # 3 bytes: split the character across two fragments
    assembler = MessageAssembler()
    assert assembler.add(Frame(Opcode.TEXT, b"snow " + snowman[:1], fin=False)) is None
    assert assembler.in_progress
    assert assembler.add(Frame(Opcode.PING, b"still there?")) is None  # control frames may interleave
    assert assembler.add(Frame(Opcode.CONTINUATION, snowman[1:], fin=False)) is None
    message = assembler.add(Frame(Opcode.CONTINUATION, b"!"))
    assert message == Message(Opcode.TEXT, "snow \u2603!".encode(), 3)
    assert message.text == "snow \u2603!" and not assembler.in_progress
    assert assembler.add(Frame(Opcode.BINARY, b"\xff")) == Message(Opcode.BINARY, b"\xff", 1)


@pytest.mark.parametrize(
    ("frame_list", "code", "match"),
    [
        ([Frame(Opcode.CONTINUATION, b"x")], 1002, "no message to continue"),
        ([Frame(Opcode.TEXT, b"a", fin=False), Frame(Opcode.TEXT, b"b")], 1002, "middle of a fragmented TEXT"),
        ([Frame(Opcode.BINARY, b"a", fin=False), Frame(Opcode.TEXT, b"b")], 1002, "middle"),
        ([Frame(Opcode.TEXT, b"\xff\xfe")], 1007, "UTF-8"),
        ([Frame(Opcode.TEXT, b"\xe2\x98", fin=False), Frame(Opcode.CONTINUATION, b"")], 1007, "UTF-8"),
        ([Frame(Opcode.BINARY, bytes(60), fin=False), Frame(Opcode.CONTINUATION, bytes(41))], 1009, "100"),
    ],
)
def test_assembler_refuses_what_the_rfc_refuses(frame_list: list[Frame], code: int, match: str) -> None:
    assembler = MessageAssembler(max_size=100)
    with pytest.raises(FrameError, match=match) as info:
        for frame in frame_list:
            assembler.add(frame)
    assert info.value.close_code == code


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"ok\x80"],
    ids=["ff", "overlong", "surrogate", "above_10ffff", "cut_off", "lone_continuation"],
)
def test_decode_text_refuses_invalid_utf8_with_1007(payload: bytes) -> None:
    with pytest.raises(FrameError, match="not valid UTF-8") as info:
        decode_text(payload)
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD == 1007


@given(st.text(max_size=200))
def test_decode_text_accepts_every_str(text: str) -> None:
    try:
        data = text.encode()
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 form at all
        return
    assert decode_text(data) == text


# --- close frames --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_sendable_close_codes(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close(close_payload(code, "why")) == Close(code, "why")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_close_codes_that_may_not_be_sent(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(ValueError, match="7.4"):
        close_payload(code)
    with pytest.raises(FrameError, match="7.4") as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.close_code == 1002


def test_close_payload_bytes_and_limits() -> None:
    assert close_payload() == b"\x03\xe8"
    assert close_payload(1001, "bye") == b"\x03\xe9bye"
    assert close_payload(None) == b""
    with pytest.raises(ValueError, match="reason"):
        close_payload(None, "why")
    assert len(close_payload(1000, "x" * 123)) == 125
    with pytest.raises(ValueError, match="125"):
        close_payload(1000, "x" * 124)
    with pytest.raises(ValueError, match="125"):
        close_payload(1000, "\u00e9" * 62)  # 124 bytes of UTF-8 in 62 characters


def test_parse_close_edge_cases() -> None:
    assert parse_close(b"") == Close(1005, "") and parse_close(b"").code == CloseCode.NO_STATUS
    with pytest.raises(FrameError, match="1 byte") as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002
    with pytest.raises(FrameError, match="UTF-8") as info:
        parse_close(b"\x03\xe8\xff")
    assert info.value.close_code == 1007
    assert str(Close(1002)) == "1002 PROTOCOL_ERROR" and str(Close(4001, "kicked")) == "4001 application 'kicked'"


@given(st.integers(0, 65535), st.text(max_size=40))
@settings(max_examples=300)
def test_close_payloads_agree_with_websockets(code: int, reason: str) -> None:
    try:
        reason.encode()
    except UnicodeEncodeError:
        return
    valid = is_valid_close_code(code)
    assert valid == _ws_accepts(code)
    if not valid or len(reason.encode()) > 123:
        return
    ours = close_payload(code, reason)
    assert ours == WsClose(code, reason).serialize()
    theirs = WsClose.parse(ours)
    assert parse_close(ours) == Close(theirs.code, theirs.reason)


def _ws_accepts(code: int) -> bool:
    try:
        WsClose(code, "").check()
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1000, "NORMAL"),
        (1006, "ABNORMAL"),
        (1014, "BAD_GATEWAY"),
        (3001, "library"),
        (4000, "application"),
        (1004, "reserved"),
        (2000, "reserved"),
        (999, "invalid"),
        (None, "no code"),
    ],
)
def test_close_code_name(code: int | None, name: str) -> None:
    assert close_code_name(code) == name


# --- describe and payload_preview ---------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "line"),
    [
        (
            Frame(Opcode.TEXT, b"Hello", masking_key=bytes.fromhex("37fa213d")),
            "TEXT \u00b7 FIN \u00b7 masked (key 37fa213d) \u00b7 5 bytes \u00b7 'Hello'",
        ),
        (
            Frame(Opcode.TEXT, b"Hel", fin=False),
            "TEXT \u00b7 no FIN (more fragments follow) \u00b7 unmasked \u00b7 3 bytes \u00b7 'Hel'",
        ),
        (
            Frame(Opcode.CLOSE, b"\x03\xea"),
            "CLOSE \u00b7 FIN \u00b7 unmasked \u00b7 2 bytes \u00b7 1002 PROTOCOL_ERROR",
        ),
        (Frame(Opcode.CLOSE, b""), "CLOSE \u00b7 FIN \u00b7 unmasked \u00b7 0 bytes \u00b7 1005 NO_STATUS"),
        (
            Frame(Opcode.PING, b"", masking_key=b"\x01\x02\x03\x04"),
            "PING \u00b7 FIN \u00b7 masked (key 01020304) \u00b7 0 bytes",
        ),
        (
            Frame(Opcode.BINARY, b"\x00\x01", rsv1=True),
            "BINARY \u00b7 FIN \u00b7 RSV1 \u00b7 unmasked \u00b7 2 bytes \u00b7 00 01",
        ),
        (Frame(Opcode.PONG, b"x"), "PONG \u00b7 FIN \u00b7 unmasked \u00b7 1 byte \u00b7 'x'"),
    ],
)
def test_describe(frame: Frame, line: str) -> None:
    assert describe(frame) == line


def test_payload_preview_shortens() -> None:
    assert payload_preview(Frame(Opcode.TEXT, b"x" * 100), 10) == "'xxxxxxxxxx'\u2026"
    assert payload_preview(Frame(Opcode.BINARY, bytes(100)), 12) == "00 00 00 00 \u2026"
    assert payload_preview(Frame(Opcode.TEXT, b"\xff\xfe")) == "ff fe"  # not UTF-8: shown as bytes
    assert payload_preview(Frame(Opcode.CLOSE, b"\x03")) == "invalid close payload: 03"
    assert payload_preview(Frame(Opcode.TEXT, b"")) == ""
    assert payload_preview(Frame(Opcode.TEXT, b"\x00" * 10), 8) == "'\\x00\\x00'\u2026"  # escapes count
    assert payload_preview(Frame(Opcode.CLOSE, close_payload(4000, "r" * 50)), 5) == "4000 application 'rrrrr'\u2026"


@given(frames(), st.integers(1, 80))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_describe_is_one_short_line(frame: Frame, limit: int) -> None:
    line = describe(frame, limit)
    assert "\n" not in line and line.startswith(frame.opcode.name)
    assert len(line) <= 120 + max(limit, 4)  # at most ~115 characters of fields, then the preview


def test_guard_closes_a_message_in_too_many_fragments_1009() -> None:
    guard = ClientFrameGuard(max_fragments=3)
    start = Frame(Opcode.TEXT, b"a", fin=False, masking_key=b"abcd").serialize()
    piece = Frame(Opcode.CONTINUATION, b"", fin=False, masking_key=b"abcd").serialize()
    ping = Frame(Opcode.PING, b"", masking_key=b"abcd").serialize()
    assert guard.feed(start + piece * 3 + ping) is None  # control frames do not count
    assert guard.feed(piece) is not None and guard.violation_code == CloseCode.MESSAGE_TOO_BIG
    fresh = ClientFrameGuard(max_fragments=3)
    assert fresh.feed((start + piece * 3) * 5) is None  # the count restarts with each message


def test_header_field_at_names_each_byte() -> None:
    wire = Frame(Opcode.TEXT, b"x" * 300, masking_key=b"abcd").serialize()
    header = parse_header(wire)
    assert header is not None
    fields = [header.field_at(i) for i in range(10)]
    assert fields == ["first", "length", "extended", "extended", "key", "key", "key", "key", "payload", "payload"]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_guard_refuses_a_close_code_no_endpoint_may_send_split_anywhere(code: int) -> None:
    # RFC 6455 section 7.4: aiohttp lets 1006 and 5000-65535 through; the guard reads the two
    # (masked) code bytes, however the frame is cut, and refuses with 1002.
    before = Frame(Opcode.TEXT, b"hi", masking_key=b"abcd").serialize()
    close = Frame(Opcode.CLOSE, code.to_bytes(2, "big") + b"bye", masking_key=b"\x9f\x00\xff\x42").serialize()
    stream = before + close
    for cut in range(len(before), len(stream)):
        guard = ClientFrameGuard()
        results = [guard.feed(stream[:cut]), guard.feed(stream[cut:])]
        assert results[-1] == f"invalid close code {code} (RFC 6455 section 7.4)"
        assert guard.violation_code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 1012, 1014, 3000, 4999])
def test_guard_lets_valid_close_codes_and_codeless_closes_through(code: int) -> None:
    key = b"\x01\x02\x03\x04"
    for payload in (code.to_bytes(2, "big") + b"reason", code.to_bytes(2, "big"), b""):
        stream = Frame(Opcode.CLOSE, payload, masking_key=key).serialize()
        guard = ClientFrameGuard()
        assert [guard.feed(stream[i : i + 1]) for i in range(len(stream))] == [None] * len(stream)
    # A code-like payload in a data frame is not a close code.
    guard = ClientFrameGuard()
    assert guard.feed(Frame(Opcode.BINARY, (5000).to_bytes(2, "big"), masking_key=key).serialize()) is None
