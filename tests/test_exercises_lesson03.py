"""Lesson 03's checked exercises, with right and wrong answers."""

from __future__ import annotations

from typing import Any

import pytest

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

KEY = bytes.fromhex("37fa213d")


def test_registry() -> None:
    assert get_lesson("lesson03") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert isinstance(ex.q1, ValueProblem) and isinstance(ex.q2, ValueProblem)
    assert isinstance(ex.q3, FunctionProblem)
    assert all(isinstance(q, ChoiceProblem) for q in (ex.q4, ex.q5, ex.q6))


@pytest.mark.parametrize("key", ["q1", "q2", "q3", "q4", "q5", "q6"])
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and q._hints() and q.solution_text
    assert f"`ex.{key}.check(...)`" in q._repr_markdown_()
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
