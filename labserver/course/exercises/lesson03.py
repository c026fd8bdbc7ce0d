"""Exercises of lesson 03, frames on the wire (RFC 6455 section 5).

The ideas they practise: reading a frame's header byte by byte (FIN, opcode, MASK,
the 7/16/64-bit length), masking a client frame by hand (section 5.3), and which
close code answers which failure (section 7.4).

    from labserver.course.exercises import lesson03 as ex
    ex.q1.check((0x1, 15, '{"type":"pong"}'))
    ex.q3.check(build_masked_text_frame)
    ex.q4.check("e")
"""

from __future__ import annotations

from typing import Any

from ...frames import Frame, Opcode, parse_header
from .core import Case, ChoiceProblem, FunctionProblem, Incorrect, Lesson, ValueProblem, show

lesson = Lesson("lesson03", "Frames on the wire")

#: The frame of question 1: a server's text frame, as the tap captured it.
Q1_FRAME = bytes.fromhex("810f7b2274797065223a22706f6e67227d")
#: The first 8 bytes of the frame of question 2: a client's frame (its payload not shown).
Q2_HEADER = bytes.fromhex("01fe012ca1b2c3d4")


q1 = lesson.add(
    "q1",
    ValueProblem(
        (0x1, 15, '{"type":"pong"}'),
        title="Decode a captured frame",
        question=(
            "The tap captured this frame going from the server to a client:\n\n"
            f"`{Q1_FRAME.hex(' ')}`\n\n"
            "What are its opcode (a number), its payload length in bytes, and its payload as text? "
            "Answer with a tuple `(opcode, payload_length, payload_text)`. Try it by hand first "
            "(`bytes.fromhex(...)` and indexing help); then check with `Frame.parse`."
        ),
        answer_format="a tuple `(opcode, payload_length, payload_text)`, e.g. `(0x2, 3, 'abc')`",
        explanations=[
            (
                (0x81, 15, '{"type":"pong"}'),
                "0x81 is the whole first byte: the FIN bit (0x80) plus the opcode. The opcode is "
                "only its low 4 bits: `0x81 & 0x0F`.",
            ),
            (
                (0x1, 17, '{"type":"pong"}'),
                "17 is the length of the whole frame. The length field counts only the payload, "
                "without the 2 header bytes.",
            ),
            (
                (0x81, 17, '{"type":"pong"}'),
                "two things: the opcode is only the low 4 bits of the first byte (`0x81 & 0x0F`), "
                "and the length field counts the payload only, not the 2 header bytes.",
            ),
        ],
        correct_message=(
            "0x81 = FIN + opcode 0x1 (text); 0x0f = MASK 0 (a server never masks) and length 15, "
            "small enough for the 7 bits; then 15 bytes of UTF-8."
        ),
        hint=[
            "The first byte holds FIN (its top bit) and the opcode (its low 4 bits). The second "
            "holds MASK (its top bit) and the payload length (its low 7 bits), when that is under 126.",
            "`data = bytes.fromhex('810f7b...')`; `data[0] & 0x0F` is the opcode, `data[1] & 0x7F` "
            "the length, and the payload starts at `data[2]` (no masking key: MASK is 0).",
        ],
        solution=(
            '`(0x1, 15, \'{"type":"pong"}\')`.\n\n'
            "```python\n"
            "data = bytes.fromhex('810f7b2274797065223a22706f6e67227d')\n"
            "opcode = data[0] & 0x0F            # 0x81 -> FIN=1, opcode 0x1: text\n"
            "masked = bool(data[1] & 0x80)      # 0x0f -> MASK=0: from a server\n"
            "length = data[1] & 0x7F            # 15 (< 126: no extended length)\n"
            "payload = data[2:2 + length].decode()\n"
            "(opcode, length, payload)\n"
            "# or: frame, _ = Frame.parse(data)\n"
            "```"
        ),
    ),
)


q2 = lesson.add(
    "q2",
    ValueProblem(
        (False, 0x1, True, 300),
        title="Read a header",
        question=(
            "A client sent a frame that begins with these 8 bytes (its payload follows):\n\n"
            f"`{Q2_HEADER.hex(' ')}`\n\n"
            "Is FIN set, what is the opcode, is the payload masked, and how many bytes of payload "
            "follow? Answer with a tuple `(fin, opcode, masked, payload_length)`."
        ),
        answer_format="a tuple `(fin, opcode, masked, payload_length)`, e.g. `(True, 0x2, False, 70)`",
        explanations=[
            (
                (True, 0x1, True, 300),
                "FIN is the top bit of the first byte, and 0x01 = 0000 0001 has it clear: this is the "
                "first fragment of a message, and more frames follow.",
            ),
            (
                (False, 0x1, True, 126),
                '126 in the 7-bit length field is not the length: it says "the length is in the next '
                '2 bytes" (section 5.2). Read them as one big-endian number.',
            ),
            (
                (False, 0x1, True, 254),
                '0xfe is the MASK bit (0x80) plus the 7-bit field 126 (0x7e); and 126 means "the '
                'length is in the next 2 bytes".',
            ),
            (
                (False, 0x1, False, 300),
                "the MASK bit is the top bit of the second byte: 0xfe has it set. A client always masks.",
            ),
            (
                (False, 0x0, True, 300),
                "0x0 would be a continuation; the low 4 bits of 0x01 are 0x1: this fragment starts a text message.",
            ),
        ],
        correct_message=(
            "0x01: FIN 0, opcode 0x1 (the first fragment of a text message); 0xfe: MASK 1 and 126, so "
            "the length is the next 2 bytes, 0x012c = 300; then the masking key a1 b2 c3 d4."
        ),
        hint=[
            "Write the first two bytes in binary: 0x01 = 0000 0001, 0xfe = 1111 1110. Which bits are "
            "FIN, the opcode, MASK and the 7-bit length?",
            "A 7-bit length of 126 means: the real length is the next 2 bytes, big-endian "
            "(`int.from_bytes(data[2:4], 'big')`).",
        ],
        solution=(
            "`(False, 0x1, True, 300)`.\n\n"
            "```python\n"
            "data = bytes.fromhex('01fe012ca1b2c3d4')\n"
            "fin = bool(data[0] & 0x80)                   # False: more fragments follow\n"
            "opcode = data[0] & 0x0F                      # 0x1: text (this is its first fragment)\n"
            "masked = bool(data[1] & 0x80)                # True: a client's frame\n"
            "code = data[1] & 0x7F                        # 126: a 16-bit length follows\n"
            "length = int.from_bytes(data[2:4], 'big')    # 0x012c = 300\n"
            "key = data[4:8]                              # a1 b2 c3 d4\n"
            "# or: parse_header(data)\n"
            "```"
        ),
    ),
)


def _build_masked_text_frame_reference(text: str, key: bytes) -> bytes:
    return Frame(Opcode.TEXT, text.encode("utf-8"), masking_key=key).serialize()


def _arg_text(value: Any) -> str:
    """Arguments as a student would type them: ``'x' * 126``, ``bytes.fromhex('37fa213d')``."""
    if isinstance(value, str) and len(value) > 20 and len(set(value)) == 1:
        return f"{value[0]!r} * {len(value)}"
    if isinstance(value, bytes):
        return f"bytes.fromhex({value.hex()!r})"
    return show(value)


def _field_of(index: int, frame: bytes) -> str:
    """Which part of ``frame`` byte ``index`` belongs to."""
    header = parse_header(frame)
    assert header is not None
    field = header.field_at(index)
    if field == "payload":
        return f"payload byte {index - header.size}, masked with key[{(index - header.size) % 4}]"
    return {
        "first": "FIN, RSV and the opcode",
        "length": "the MASK bit and the 7-bit length",
        "extended": f"the {header.extended_length_bytes * 8}-bit extended length",
        "key": "the masking key",
    }[field]


class _FrameBytesProblem(FunctionProblem):
    """A FunctionProblem whose wrong answers are explained byte by byte."""

    def _call_text(self, fn: Any, case: Case) -> str:
        return f"{self.name}({', '.join(_arg_text(a) for a in case.args)})"

    def _judge(self, fn: Any, case: Case, got: Any) -> None:
        expected: bytes = case.expected
        call = self._call_text(fn, case)
        if not isinstance(got, bytes | bytearray):
            raise Incorrect(f"`{call}` returned {show(got, 60)}: return the frame as `bytes`.")
        got = bytes(got)
        if got == expected:
            return
        where = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
        if where is None:
            message = (
                f"`{call}` returned {len(got)} bytes, the frame is {len(expected)} bytes long "
                f"(the first {min(len(got), len(expected))} are right)"
            )
        else:
            message = (
                f"`{call}`: byte {where} ({_field_of(where, expected)}) should be "
                f"0x{expected[where]:02x}, got 0x{got[where]:02x}"
            )
        raise Incorrect(f"{message}. Hint: {case.note}." if case.note else message + ".")


_KEY = bytes.fromhex("37fa213d")

q3 = lesson.add(
    "q3",
    _FrameBytesProblem(
        [
            (
                ("Hello", _KEY),
                _build_masked_text_frame_reference("Hello", _KEY),
                "the example of RFC 6455 section 5.7: 81 85 37 fa 21 3d 7f 9f 4d 51 58",
            ),
            (
                ("", b"\x00\x00\x00\x00"),
                _build_masked_text_frame_reference("", b"\x00\x00\x00\x00"),
                "an empty message still has its 2 header bytes and the 4-byte masking key",
            ),
            (
                ('{"type":"ping","ref":1}', b"\x01\x02\x03\x04"),
                _build_masked_text_frame_reference('{"type":"ping","ref":1}', b"\x01\x02\x03\x04"),
                "the key repeats every 4 bytes: payload byte i is XORed with key[i % 4]",
            ),
            (
                ("h\u00e9llo", _KEY),
                _build_masked_text_frame_reference("h\u00e9llo", _KEY),
                "the length counts UTF-8 bytes, not characters: '\u00e9' takes 2 bytes",
            ),
            (
                ("x" * 125, _KEY),
                _build_masked_text_frame_reference("x" * 125, _KEY),
                "125 bytes is the most the 7-bit length field holds",
            ),
            (
                ("x" * 126, _KEY),
                _build_masked_text_frame_reference("x" * 126, _KEY),
                "from 126 bytes on: 126 in the 7 bits, then the length in the next 2 bytes",
            ),
            (
                ("x" * 65536, _KEY),
                _build_masked_text_frame_reference("x" * 65536, _KEY),
                "from 65,536 bytes on: 127 in the 7 bits, then the length in the next 8 bytes",
            ),
        ],
        reference=_build_masked_text_frame_reference,
        name="build_masked_text_frame",
        title="Build a masked frame",
        question=(
            "Write `build_masked_text_frame(text: str, key: bytes) -> bytes`: the bytes a client "
            "sends for the text message `text`, in one frame (FIN set), masked with the 4-byte "
            "`key`. Build the header yourself (7, 16 or 64-bit length, section 5.2) and mask the "
            "payload yourself (section 5.3), then check it with `ex.q3.check(build_masked_text_frame)`: "
            "it is compared with `Frame(Opcode.TEXT, ..., masking_key=key).serialize()`."
        ),
        hint=[
            "Four parts, in order: the first byte (FIN and the text opcode: 0x81); the MASK bit "
            "with the length (0x80 | length, while the length is under 126); the key; the payload, masked.",
            "Encode first (`text.encode()`): the length is in bytes. Masking: "
            "`bytes(b ^ key[i % 4] for i, b in enumerate(payload))`. From 126 bytes on, the second "
            "byte is `0x80 | 126` followed by `length.to_bytes(2, 'big')`; from 65,536 on, "
            "`0x80 | 127` and `length.to_bytes(8, 'big')`.",
        ],
        solution=(
            "```python\n"
            "def build_masked_text_frame(text: str, key: bytes) -> bytes:\n"
            "    payload = text.encode('utf-8')\n"
            "    n = len(payload)\n"
            "    header = bytes([0x81])                      # FIN=1, opcode 0x1 (text)\n"
            "    if n < 126:\n"
            "        header += bytes([0x80 | n])             # MASK=1, 7-bit length\n"
            "    elif n < 65536:\n"
            "        header += bytes([0x80 | 126]) + n.to_bytes(2, 'big')\n"
            "    else:\n"
            "        header += bytes([0x80 | 127]) + n.to_bytes(8, 'big')\n"
            "    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))\n"
            "    return header + key + masked\n"
            "```\n\n"
            "Masking is an XOR with the key repeated over the payload, so doing it twice gives the "
            "payload back: that is how the server unmasks. `labserver.frames.apply_mask` does the same "
            "on the whole buffer at once."
        ),
    ),
)


CLOSE_CODES = {
    "a": "1000 normal closure",
    "b": "1001 going away",
    "c": "1002 protocol error",
    "d": "1006 abnormal closure",
    "e": "1007 invalid payload data",
    "f": "1008 policy violation",
    "g": "1009 message too big",
}

_NEVER_SENT = (
    "1006 is never sent in a close frame: a client reports it when the TCP connection ended "
    "without one. Here the server is still there and does send a close frame."
)

q4 = lesson.add(
    "q4",
    ChoiceProblem(
        CLOSE_CODES,
        "e",
        title="Pick the close code: bad text",
        question=(
            "A client sends a masked text frame, FIN set, whose payload is the two bytes `ff fe`. "
            "Which close code does the server send?"
        ),
        explanations={
            "a": '1000 means "done, all is well". The server is ending the connection because of '
            "something wrong the client sent.",
            "b": "1001 is for an endpoint that leaves (a server shutting down, a page closed). "
            "Here the server stays; it refuses what it received.",
            "c": "1002 is for breaking the framing rules (an unmasked client frame, a reserved opcode, "
            "a fragmented control frame). This frame is well formed: it is its *content* that is wrong.",
            "d": _NEVER_SENT,
            "e": "a text message must be valid UTF-8 (section 8.1), and `ff` can never appear in UTF-8. "
            "Data that does not match its message type gets 1007.",
            "f": '1008 is the generic "against our policy" (the lab uses it for a bad token or the rate '
            "limit). A more precise code exists for this case.",
            "g": "two bytes are far below any size limit.",
        },
        hint="The frame is fine; look at its payload. Can `b'\\xff\\xfe'.decode('utf-8')` succeed?",
        solution=(
            "**e) 1007 invalid payload data.** RFC 6455 section 8.1: when an endpoint finds that a "
            "text message is not valid UTF-8, it *MUST Fail the WebSocket Connection*, and section "
            '7.4.1 gives 1007 for "data within a message that was not consistent with the type of '
            'the message". You saw the lab do exactly this in the live section.'
        ),
    ),
)

q5 = lesson.add(
    "q5",
    ChoiceProblem(
        CLOSE_CODES,
        "d",
        title="Pick the close code: a tunnel",
        question=(
            "A phone on a train goes into a tunnel and loses its network. No close frame is sent "
            "or received; after a while the TCP connection is given up. Which close code does the "
            "chat app's WebSocket report?"
        ),
        explanations={
            "a": "1000 needs a closing handshake: a close frame each way. None was exchanged here.",
            "b": "1001 is sent on purpose by an endpoint that leaves. Nobody sent anything here.",
            "c": "1002 is sent by an endpoint that received a frame breaking the rules. No frame arrived at all.",
            "d": "1006 is reserved for exactly this: the connection closed without a close frame. "
            "It never appears on the wire (section 7.4.1); the WebSocket API reports it locally.",
            "e": "1007 answers bad data in a message; no message arrived here.",
            "f": "1008 is sent by an endpoint refusing something on policy grounds; no one sent anything.",
            "g": "1009 answers a message over the size limit; no message arrived here.",
        },
        hint="Every code but one is carried by a close frame. Was a close frame exchanged here?",
        solution=(
            "**d) 1006 abnormal closure.** It is never sent: the RFC reserves it for an endpoint to "
            "*report* that the connection closed without a close frame (section 7.1.5 and 7.4.1). "
            "That is what a network failure, a killed process or the lab's heartbeat reaping a "
            "dead peer look like. Lesson 04 reconnects after one."
        ),
    ),
)

q6 = lesson.add(
    "q6",
    ChoiceProblem(
        CLOSE_CODES,
        "c",
        title="Pick the close code: a big ping",
        question=(
            "A client sends a masked ping frame with 200 bytes of payload. The server's message "
            "limit is 64 KiB. Which close code does the server send?"
        ),
        explanations={
            "a": "a normal closure is not an answer to a frame that breaks the rules.",
            "b": "1001 is for an endpoint that leaves; the server is refusing a frame.",
            "c": "control frames (close, ping, pong) may carry at most 125 bytes and must not be "
            "fragmented (section 5.5). A 200-byte ping breaks the framing rules: 1002.",
            "d": _NEVER_SENT,
            "e": "1007 is about the content of a message (text that is not UTF-8). This is about the frame itself.",
            "f": "1008 is the generic policy refusal; there is a more precise code.",
            "g": "200 bytes is far below the 64 KiB message limit. The limit broken here is a different "
            "one, set by the RFC for every control frame.",
        },
        hint="Which frames may carry at most 125 bytes, whatever the server's message limit (section 5.5)?",
        solution=(
            '**c) 1002 protocol error.** Section 5.5: "All control frames MUST have a payload length '
            'of 125 bytes or less and MUST NOT be fragmented." The limit keeps control frames small '
            "enough to fit between the fragments of a long message. Breaking it is a protocol error, "
            "whatever the message size limit is; `Frame.parse` refuses such a frame from its header alone."
        ),
    ),
)


__all__ = ["CLOSE_CODES", "Q1_FRAME", "Q2_HEADER", "lesson", "q1", "q2", "q3", "q4", "q5", "q6"]
