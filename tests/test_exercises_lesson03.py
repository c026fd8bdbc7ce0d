"""Lesson 03's checked exercises, with right and wrong answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from labserver.course import LabServer
from labserver.course.exercises import (
    NOT_ANSWERED,
    ChoiceProblem,
    FunctionProblem,
    Status,
    ValueProblem,
    get_lesson,
)
from labserver.course.exercises import lesson03 as ex
from labserver.frames import Frame, Opcode, apply_mask, parse_header
from labserver.wire import Direction

KEY = bytes.fromhex("37fa213d")


def test_registry() -> None:
    assert get_lesson("lesson03") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4", "q5", "q6", "q7"]
    assert isinstance(ex.q1, ValueProblem) and isinstance(ex.q2, ValueProblem)
    assert isinstance(ex.q3, FunctionProblem)
    assert all(isinstance(q, ChoiceProblem) for q in (ex.q4, ex.q5, ex.q6))


@pytest.mark.parametrize("key", ["q1", "q2", "q3", "q4", "q5", "q6", "q7"])
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and q._hints() and q.solution_text
    assert f"`{q._check_call}`" in q._repr_markdown_()
    assert repr(q.hint()).startswith("Hint")
    assert repr(q.solution()).startswith("Solution:")


@pytest.mark.parametrize("key", ["q1", "q2", "q3", "q4", "q5", "q6"])
@pytest.mark.parametrize("placeholder", [NOT_ANSWERED, ..., None])
def test_not_attempted(key: str, placeholder: Any) -> None:
    verdict = ex.lesson[key].check(placeholder)
    assert verdict.status is Status.NOT_ATTEMPTED
    assert repr(verdict).startswith("Check: you have not answered yet.")


# --- q1: decode a captured frame ------------------------------------------------------------


def test_q1_the_frame_is_what_the_question_says() -> None:
    parsed = Frame.parse(ex.Q1_FRAME)
    assert parsed == (Frame(Opcode.TEXT, b'{"type":"pong"}'), len(ex.Q1_FRAME))
    assert ex.Q1_FRAME.hex(" ") in ex.q1.question


@pytest.mark.parametrize(
    "answer",
    [(0x1, 15, '{"type":"pong"}'), [1, 15, '{"type":"pong"}'], (Opcode.TEXT, 15, '{"type":"pong"}')],
)
def test_q1_right(answer: Any) -> None:
    verdict = ex.q1.check(answer)
    assert verdict.status is Status.CORRECT and "MASK 0" in verdict.message


def test_q1_computed_with_the_codec_is_right() -> None:
    frame, _ = Frame.parse(ex.Q1_FRAME)  # type: ignore[misc]
    assert ex.q1.check((frame.opcode, len(frame.payload), frame.payload.decode())).status is Status.CORRECT


@pytest.mark.parametrize(
    ("answer", "explanation"),
    [
        ((0x81, 15, '{"type":"pong"}'), "0x81 is the whole first byte"),
        ((129, 15, '{"type":"pong"}'), "0x81 is the whole first byte"),
        ((1, 17, '{"type":"pong"}'), "17 is the length of the whole frame"),
        ((0x81, 17, '{"type":"pong"}'), "two things"),
    ],
)
def test_q1_wrong_answers_are_explained(answer: Any, explanation: str) -> None:
    verdict = ex.q1.check(answer)
    assert verdict.status is Status.INCORRECT and explanation in verdict.message


def test_q1_other_wrong_answers() -> None:
    assert repr(ex.q1.check((1, 15, '{"type":"ping"}'))) == "Incorrect: that is not it. Stuck? `ex.q1.hint()`."
    assert repr(ex.q1.check(("TEXT", 15, '{"type":"pong"}'))).startswith(
        "Incorrect: item 1 should be a number, got 'TEXT'."
    )
    assert ex.q1.check((1, 15)).status is Status.INCORRECT


# --- q2: read a header ------------------------------------------------------------------------


def test_q2_the_header_is_what_the_question_says() -> None:
    header = parse_header(ex.Q2_HEADER)
    assert header is not None
    assert (header.fin, header.opcode, header.masked, header.length) == (False, 0x1, True, 300)
    assert header.size == len(ex.Q2_HEADER)


def test_q2_right() -> None:
    header = parse_header(ex.Q2_HEADER)
    assert header is not None
    verdict = ex.q2.check((header.fin, header.opcode, header.masked, header.length))
    assert verdict.status is Status.CORRECT and "0x012c = 300" in verdict.message
    assert ex.q2.check([False, 1, True, 300]).status is Status.CORRECT


@pytest.mark.parametrize(
    ("answer", "explanation"),
    [
        ((True, 1, True, 300), "more frames follow"),
        ((False, 1, True, 126), "126 in the 7-bit length field is not the length"),
        ((False, 1, True, 254), "0xfe is the MASK bit"),
        ((False, 1, False, 300), "A client always masks"),
        ((False, 0, True, 300), "0x0 would be a continuation"),
    ],
)
def test_q2_wrong_answers_are_explained(answer: Any, explanation: str) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.INCORRECT and explanation in verdict.message


def test_q2_bools_must_be_bools() -> None:
    verdict = ex.q2.check((0, 1, 1, 300))
    assert verdict.status is Status.INCORRECT and "item 1 should be a bool" in verdict.message


# --- q3: build a masked frame -------------------------------------------------------------------


def build_masked_text_frame(text: str, key: bytes) -> bytes:
    payload = text.encode("utf-8")
    n = len(payload)
    header = bytes([0x81])
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_q3_reference_and_a_hand_written_answer_pass() -> None:
    assert repr(ex.q3.self_test()) == "Correct: all 7 cases pass."
    assert repr(ex.q3.check(build_masked_text_frame)) == "Correct: all 7 cases pass."


def test_q3_the_rfc_example_is_a_case() -> None:
    assert build_masked_text_frame("Hello", KEY) == bytes.fromhex("818537fa213d7f9f4d5158")


def test_q3_answers_using_the_codec_pass() -> None:
    def with_codec(text: str, key: bytes) -> bytearray:
        return bytearray(Frame(Opcode.TEXT, text.encode(), masking_key=key).serialize())

    assert ex.q3.check(with_codec).status is Status.CORRECT


def test_q3_forgot_the_mask_bit() -> None:
    def no_mask_bit(text: str, key: bytes) -> bytes:
        wire = build_masked_text_frame(text, key)
        return wire[:1] + bytes([wire[1] & 0x7F]) + wire[2:]

    assert repr(ex.q3.check(no_mask_bit)) == (
        "Incorrect: `build_masked_text_frame('Hello', bytes.fromhex('37fa213d'))`: byte 1 (the MASK bit and "
        "the 7-bit length) should be 0x85, got 0x05. Hint: the example of RFC 6455 section 5.7: "
        "81 85 37 fa 21 3d 7f 9f 4d 51 58."
    )


def test_q3_did_not_mask_the_payload() -> None:
    def unmasked_payload(text: str, key: bytes) -> bytes:
        payload = text.encode()
        return bytes([0x81, 0x80 | len(payload)]) + key + payload

    verdict = ex.q3.check(unmasked_payload)
    assert verdict.status is Status.INCORRECT
    assert "byte 6 (payload byte 0, masked with key[0]) should be 0x7f, got 0x48" in verdict.message


def test_q3_counted_characters_instead_of_bytes() -> None:
    def characters(text: str, key: bytes) -> bytes:
        payload = text.encode()
        return (
            bytes([0x81, 0x80 | len(text)]) + key + apply_mask(payload, key)
            if len(text) < 126
            else build_masked_text_frame(text, key)
        )

    verdict = ex.q3.check(characters)
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith("`build_masked_text_frame('h\u00e9llo', bytes.fromhex('37fa213d'))`: byte 1")
    assert "'\u00e9' takes 2 bytes" in verdict.message


def test_q3_only_7_bit_lengths() -> None:
    def seven_bits_only(text: str, key: bytes) -> bytes:
        payload = text.encode()
        return bytes([0x81, 0x80 | (len(payload) & 0x7F)]) + key + apply_mask(payload, key)

    verdict = ex.q3.check(seven_bits_only)
    assert verdict.status is Status.INCORRECT
    # 126 & 0x7F is 126 by luck, so byte 1 is right; the 2 length bytes after it are missing
    assert verdict.message.startswith(
        "`build_masked_text_frame('x' * 126, bytes.fromhex('37fa213d'))`: byte 2 (the 16-bit extended length)"
    )
    assert "then the length in the next 2 bytes" in verdict.message


def test_q3_16_bit_lengths_only() -> None:
    def no_64_bit(text: str, key: bytes) -> bytes:
        payload = text.encode()
        n = len(payload)
        head = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + (n & 0xFFFF).to_bytes(2, "big")
        return bytes([0x81]) + head + key + apply_mask(payload, key)

    verdict = ex.q3.check(no_64_bit)
    assert verdict.status is Status.INCORRECT
    assert "'x' * 65536" in verdict.message and "the next 8 bytes" in verdict.message


def test_q3_forgot_the_key_or_returned_text() -> None:
    def no_key(text: str, key: bytes) -> bytes:
        return build_masked_text_frame(text, key)[:2]

    assert "returned 2 bytes, the frame is 11 bytes long (the first 2 are right)" in ex.q3.check(no_key).message
    assert "return the frame as `bytes`" in ex.q3.check(lambda text, key: "81 85").message


def test_q3_a_crash_is_an_error_and_a_stub_is_not_attempted() -> None:
    def crashes(text: str, key: bytes) -> bytes:
        return bytes([0x81, len(text) + 0x80 * 2])

    verdict = ex.q3.check(crashes)
    assert verdict.status is Status.ERROR and "ValueError" in verdict.message

    def build(text: str, key: bytes) -> bytes:  # type: ignore[empty-body]  # a student's unfinished stub
        ...

    assert ex.q3.check(build).status is Status.NOT_ATTEMPTED


# --- q4-q6: pick the close code ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "right", "says"),
    [("q4", "e", "section 8.1"), ("q5", "d", "never appears on the wire"), ("q6", "c", "at most 125 bytes")],
)
def test_close_codes_right(key: str, right: str, says: str) -> None:
    q = ex.lesson[key]
    for answer in (right, right.upper(), f"{right})", ex.CLOSE_CODES[right]):
        verdict = q.check(answer)
        assert verdict.status is Status.CORRECT, answer
        assert says in verdict.message


@pytest.mark.parametrize(
    ("key", "wrong", "explanation"),
    [
        ("q4", "c", "This frame is well formed"),
        ("q4", "d", "1006 is never sent in a close frame"),
        ("q4", "g", "far below any size limit"),
        ("q5", "a", "needs a closing handshake"),
        ("q5", "c", "No frame arrived at all"),
        ("q6", "g", "set by the RFC for every control frame"),
        ("q6", "e", "about the frame itself"),
        ("q6", "d", "1006 is never sent"),
    ],
)
def test_close_codes_wrong_are_explained(key: str, wrong: str, explanation: str) -> None:
    verdict = ex.lesson[key].check(wrong)
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith(f"{wrong}) {ex.CLOSE_CODES[wrong]}:") and explanation in verdict.message


@pytest.mark.parametrize("key", ["q4", "q5", "q6"])
def test_every_wrong_close_code_is_explained(key: str) -> None:
    q = ex.lesson[key]
    assert isinstance(q, ChoiceProblem)
    for letter in ex.CLOSE_CODES:
        if letter != q.correct:
            assert "not this one" not in q.check(letter).message, (key, letter)
    assert q.check("1007").status is Status.INCORRECT  # a bare number is not an option
    assert "- **e)** 1007 invalid payload data" in q._repr_markdown_()


# --- q7: a frame reader, run on traffic captured live through a tap ---------------------------


def read_frames(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:
    """A student's right answer, written independently of the reference."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            header = parse_header(buffer)
            if header is None or len(buffer) < header.frame_size:
                break
            payload = buffer[header.size : header.frame_size]
            if header.masking_key is not None:
                payload = apply_mask(payload, header.masking_key)
            buffer = buffer[header.frame_size :]
            yield header.fin, header.opcode, payload


def _buggy(
    *,
    unmask: bool = True,
    endian: str = "big",
    long_code: int = 8,
    keep_leftover: bool = True,
    whole_byte: bool = False,
) -> Any:
    """The reader with one typical bug switched on."""

    def reader(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= 2:
                code = buffer[1] & 0x7F
                at, length = 2, code
                if code == 126:
                    length, at = int.from_bytes(buffer[2:4], endian), 4  # type: ignore[arg-type]
                elif code == 127:
                    length, at = int.from_bytes(buffer[2 : 2 + long_code], "big"), 2 + long_code
                masked = bool(buffer[1] & 0x80)
                key = bytes(buffer[at : at + 4]) if masked else b""
                at += len(key)
                if len(buffer) < at + length or len(buffer) < at:
                    break
                payload = bytes(buffer[at : at + length])
                if masked and unmask:
                    payload = apply_mask(payload, key)
                opcode = buffer[0] if whole_byte else buffer[0] & 0x0F
                fin = bool(buffer[0] & 0x80)
                if keep_leftover:
                    del buffer[: at + length]
                else:
                    buffer.clear()  # the bug: the rest of the read is thrown away
                yield fin, opcode, payload

    return reader


def one_read_one_frame(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:
    """Every read is taken for exactly one whole frame."""
    for chunk in chunks:
        parsed = Frame.parse(chunk)
        if parsed is not None:
            yield parsed[0].fin, parsed[0].opcode, parsed[0].payload


def one_frame_per_read_no_while(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:
    """Buffers, but parses one frame at most per read, by hand, with no length checks."""
    buffer = b""
    for chunk in chunks:
        buffer = chunk  # the bug: forgets what the last read left
        length = buffer[1] & 0x7F
        yield bool(buffer[0] & 0x80), buffer[0] & 0x0F, buffer[2 : 2 + length]


@pytest.fixture
def live_q7(lab: LabServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(ex.q7, "lab", lab)
    return ex.q7


async def test_q7_the_capture_has_every_length_both_ways(lab: LabServer) -> None:
    capture = await ex.capture_live_traffic(lab)
    s2c, c2s = capture.streams
    assert not capture.constructed_64bit and capture.max_message_bytes == 65536
    codes = {
        stream.direction: {parse_header(w.header).length_code for w in stream.frames}  # type: ignore[union-attr]
        for stream in capture.streams
    }
    assert 127 in codes[Direction.SERVER_TO_CLIENT] and 126 in codes[Direction.SERVER_TO_CLIENT]
    assert 126 in codes[Direction.CLIENT_TO_SERVER]
    assert all(w.frame.masking_key is not None for w in c2s.frames)
    assert all(w.frame.masking_key is None for w in s2c.frames)
    assert any(not w.frame.fin for w in c2s.frames)  # the fragmented chat
    assert s2c.frames[-1].frame.opcode is Opcode.CLOSE and c2s.frames[-1].frame.opcode is Opcode.CLOSE
    for stream in capture.streams:
        for how, chunks in ex.chunkings(stream, seed=1):
            assert b"".join(chunks) == stream.data, how


async def test_q7_rfc_frame_is_added_when_the_lab_limit_is_small(tmp_path: Any) -> None:
    with LabServer(tmp_path, max_message_bytes=4096) as small:
        capture = await ex.capture_live_traffic(small)
        assert capture.constructed_64bit
        assert capture.streams[0].data.endswith(ex.RFC_64K_FRAME)
        ex.q7.lab = small
        try:
            verdict = await ex.q7.check_async(read_frames)
        finally:
            ex.q7.lab = None
    assert verdict.status is Status.CORRECT and "RFC 6455 section 5.7's 64 KiB binary frame" in verdict.message


@pytest.mark.parametrize("answer", [read_frames, ex._read_frames_reference])
async def test_q7_right_answers_pass_live(live_q7: Any, answer: Any) -> None:
    verdict = await live_q7.check_async(answer)
    assert verdict.status is Status.CORRECT, verdict
    assert "64-bit length" in verdict.message and "1 byte per read" in verdict.message


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_buggy(unmask=False), "still masked"),
        (_buggy(endian="little"), "big-endian"),
        (_buggy(long_code=2), "127 in the 7-bit field means the length is in the next 8 bytes"),
        (_buggy(keep_leftover=False), "One read can hold several frames"),
        (_buggy(whole_byte=True), "The opcode is the low 4 bits of the first byte"),
        (one_read_one_frame, "One read can hold several frames"),
        (one_frame_per_read_no_while, "126 in the 7-bit field is not the length"),
    ],
    ids=[
        "no-unmask",
        "little-endian",
        "127-as-16-bit",
        "drops-leftover",
        "whole-first-byte",
        "recv-is-frame",
        "7-bit-only",
    ],
)
async def test_q7_typical_bugs_are_explained(live_q7: Any, answer: Any, says: str) -> None:
    verdict = await live_q7.check_async(answer)
    assert verdict.status is Status.INCORRECT, verdict
    assert says in verdict.message, verdict.message


async def test_q7_a_reader_that_loses_partial_frames(live_q7: Any) -> None:
    def forgets_partial_frames(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:
        for chunk in chunks:  # handles several frames per read, but not a frame cut in two
            yield from ex._read_frames_reference([chunk])

    verdict = await live_q7.check_async(forgets_partial_frames)
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith("Fed 1 byte per read")
    assert "keep the bytes of an unfinished frame" in verdict.message


async def test_q7_wrong_shapes(live_q7: Any) -> None:
    def returns_nothing(chunks: Iterable[bytes]) -> None:
        for _ in chunks:
            pass

    def text_payloads(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, str]]:
        for fin, opcode, payload in read_frames(chunks):
            yield fin, opcode, payload.decode(errors="replace")

    def frames(chunks: Iterable[bytes]) -> Iterator[Frame]:
        for fin, opcode, payload in read_frames(chunks):
            yield Frame(Opcode(opcode), payload, fin)

    assert "make it a generator" in (await live_q7.check_async(returns_nothing)).message
    assert "not decoded text" in (await live_q7.check_async(text_payloads)).message
    assert (await live_q7.check_async(frames)).status is Status.CORRECT  # objects with fin/opcode/payload
    assert "pass your function itself" in (await live_q7.check_async(b"\x81\x00")).message


async def test_q7_a_crash_and_a_stub(live_q7: Any) -> None:
    def crashes_at_the_end(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:
        yield from read_frames(chunks)
        raise ValueError("no more bytes")

    verdict = await live_q7.check_async(crashes_at_the_end)
    assert verdict.status is Status.INCORRECT and "then raised ValueError: no more bytes" in verdict.message

    def stub(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:  # type: ignore[empty-body]
        ...

    assert (await live_q7.check_async(stub)).status is Status.NOT_ATTEMPTED


async def test_q7_a_silent_lab_is_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers the handshake

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    class SilentLab:
        url = f"http://127.0.0.1:{port}"

        def account(self, name: str) -> Any:
            return SimpleNamespace(token="t")

    monkeypatch.setattr(ex, "CAPTURE_TIMEOUT", 0.5)
    monkeypatch.setattr(ex.q7, "lab", SilentLab())
    try:
        verdict = await ex.q7.check_async(read_frames)
    finally:
        server.close()
    assert verdict.status is Status.ERROR and "did not finish the conversation within" in verdict.message


@pytest.mark.parametrize("reader", [read_frames, ex._read_frames_reference])
def test_q7_readers_agree_with_the_codec_on_every_cut(reader: Any) -> None:
    """No lab needed: RFC 6455 section 5.7's examples plus an empty masked frame, cut at every byte."""
    frames = [
        Frame(Opcode.TEXT, b"Hello"),
        Frame(Opcode.TEXT, b"Hello", masking_key=KEY),
        Frame(Opcode.CONTINUATION, b"", masking_key=KEY),
        Frame(Opcode.BINARY, bytes(256)),
        Frame(Opcode.PING, b"Hello", masking_key=KEY),
    ]
    data = b"".join(f.serialize() for f in frames) + ex.RFC_64K_FRAME
    expected = [(f.fin, int(f.opcode), f.payload) for f in frames] + [(True, 2, bytes(65536))]
    for cut in range(1, 600):
        assert list(reader([data[:cut], data[cut:]])) == expected, cut
