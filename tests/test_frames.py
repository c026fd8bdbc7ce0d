"""Unit tests of labserver.frames (RFC 6455 section 5), including a differential test
against the websockets library's own frame parser and serializer."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

from labserver.frames import (
    ClientFrameGuard,
    CloseCode,
    Frame,
    FrameError,
    Opcode,
    apply_mask,
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
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@given(st.lists(frames(masked=True), min_size=1, max_size=6), st.lists(st.integers(0, 200_000), max_size=30))
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
    st.lists(frames(masked=True), max_size=5),
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
    # and the guard agrees with the MASK bit websockets wrote
    assert (ClientFrameGuard().feed(wire) is None) == mask


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
