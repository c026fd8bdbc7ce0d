"""Exercises of lesson 03, frames on the wire (RFC 6455 section 5).

The ideas they practise: reading a frame's header byte by byte (FIN, opcode, MASK,
the 7/16/64-bit length), masking a client frame by hand (section 5.3), which close
code answers which failure (section 7.4), and reading frames out of a TCP byte stream
(q7: the student's reader runs on traffic captured live through a tap, cut in awkward
reads, and is compared with :mod:`labserver.frames`).

    from labserver.course.exercises import lesson03 as ex
    ex.q1.check((0x1, 15, '{"type":"pong"}'))
    ex.q3.check(build_masked_text_frame)
    ex.q4.check("e")
    await ex.q7.check_async(read_frames)
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import random
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import websockets

from ...frames import Frame, FrameReader, Opcode, WireFrame, apply_mask, parse_header
from ...tap import FrameTap
from ...wire import C2S, S2C, Direction
from .core import (
    Case,
    CheckError,
    ChoiceProblem,
    FunctionProblem,
    Incorrect,
    Lesson,
    LiveProblem,
    Status,
    ValueProblem,
    Verdict,
    show,
)

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


# --- q7: a frame reader, fed with frames captured live ------------------------------------------

#: RFC 6455 section 5.7's last example: "A single binary 64KiB message (unmasked)",
#: ``0x82 0x7F 0x0000000000010000 [65536 bytes of binary data]``. Added to the server's
#: stream when the lab's message limit is too small for a live 64-bit length.
RFC_64K_FRAME = Frame(Opcode.BINARY, bytes(65536)).serialize()
BIG = 65536  # the smallest payload written with a 64-bit length (section 5.2)
_ROOM = "frame-reader"
CAPTURE_TIMEOUT = 20.0  # seconds for the whole live conversation


@dataclass(frozen=True)
class CapturedStream:
    """One direction of one connection after the 101: its bytes and the reference frames in them."""

    direction: Direction
    data: bytes
    frames: tuple[WireFrame, ...]  # labserver.frames' parsing of ``data``

    @property
    def boundaries(self) -> list[int]:
        """Where each frame ends in ``data``."""
        ends, at = [], 0
        for wire in self.frames:
            at += wire.size
            ends.append(at)
        return ends


@dataclass(frozen=True)
class LiveCapture:
    """What :func:`capture_live_traffic` captured: the server's stream, then the client's."""

    streams: tuple[CapturedStream, ...]
    max_message_bytes: int
    constructed_64bit: bool  # the lab's limit was too small: the RFC's 64 KiB frame was added


def _reference(direction: Direction, data: bytes) -> CapturedStream:
    reader = FrameReader()
    return CapturedStream(direction, data, tuple(reader.feed_wire(data)))


async def _request(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    """Send ``message`` (it has a ``ref``) and return the answer carrying that ref."""
    await ws.send(json.dumps(message, separators=(",", ":")))
    while True:
        answer = json.loads(await ws.recv())
        if answer.get("ref") == message["ref"]:
            return cast(dict[str, Any], answer)


def big_ping(size: int = BIG - 1) -> str:
    """An application-level ``ping`` of exactly ``size`` bytes of JSON; the lab echoes its payload."""
    empty = json.dumps({"type": "ping", "ref": "big", "payload": ""}, separators=(",", ":"))
    return empty[:-2] + "x" * (size - len(empty)) + '"}'


async def capture_live_traffic(lab: Any, username: str = "frame_reader") -> LiveCapture:
    """Fresh traffic through a new tap: join, a short and a long chat, a fragmented chat, a
    ping frame, a 65,535-byte application ping (the most a 16-bit length holds) whose answer
    needs a 64-bit length, and a close."""
    account = await asyncio.to_thread(lab.account, username)
    try:
        async with asyncio.timeout(CAPTURE_TIMEOUT):
            return await _capture(lab, account.token)
    except TimeoutError:
        raise CheckError(
            f"the lab did not finish the conversation within {CAPTURE_TIMEOUT:g} s: is it running? "
            "(`lab` shows its state)"
        ) from None


async def _capture(lab: Any, token: str) -> LiveCapture:
    async with FrameTap.for_lab(lab) as tap:
        url = f"{tap.ws_url}?token={token}"
        async with websockets.connect(url, compression=None, max_size=None) as ws:
            welcome = json.loads(await ws.recv())
            limit = int(welcome["limits"]["max_message_bytes"])
            await _request(ws, {"type": "join", "room": _ROOM, "ref": "j"})
            await _request(ws, {"type": "chat", "room": _ROOM, "text": "hi!", "ref": "c1"})
            long_text = "A message over 125 bytes needs the 16-bit length. " * 4
            await _request(ws, {"type": "chat", "room": _ROOM, "text": long_text, "ref": "c2"})
            fragmented = json.dumps({"type": "chat", "room": _ROOM, "text": "in three frames", "ref": "c3"})
            # A text frame without FIN, two continuations, then websockets' empty last one with FIN.
            await ws.send([fragmented[:20], fragmented[20:40], fragmented[40:]])
            while json.loads(await ws.recv()).get("ref") != "c3":
                pass
            await (await ws.ping(b"are you there?"))
            if limit >= BIG:  # the lab refuses a message of exactly its limit: 65,535 bytes is the most
                await ws.send(big_ping())
                while json.loads(await ws.recv()).get("ref") != "big":
                    pass
        await tap.wait_for(lambda c: c.direction is S2C and c.frame.opcode is Opcode.CLOSE)
        connection = tap.connections()[-1].id
        s2c, c2s = tap.frame_bytes(connection, S2C), tap.frame_bytes(connection, C2S)
    if limit < BIG:
        s2c += RFC_64K_FRAME
    return LiveCapture((_reference(S2C, s2c), _reference(C2S, c2s)), limit, limit < BIG)


def chunkings(stream: CapturedStream, seed: int) -> list[tuple[str, list[bytes]]]:
    """The reads a reader is fed, from kind to awkward: one frame per read, everything in one
    read, 1 byte at a time, and random splits that also cut inside every header."""
    data = stream.data
    ends = stream.boundaries
    per_frame = [data[a:b] for a, b in zip([0, *ends], ends, strict=False)]
    rng = random.Random(seed)
    out = [
        ("one frame per read", per_frame),
        ("the whole stream in one read", [data]),
        (f"1 byte per read ({len(data):,} reads)", [data[i : i + 1] for i in range(len(data))]),
    ]
    for n in (1, 2):
        cuts = set(rng.sample(range(1, len(data)), min(len(data) - 1, 40)))
        cuts |= {min(len(data) - 1, b + rng.randint(1, 9)) for b in [0, *ends[:-1]]}  # inside headers
        points = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
        out.append((f"random split {n} ({len(points) - 1} reads)", [data[a:b] for a, b in itertools.pairwise(points)]))
    return out


def _label(wire: WireFrame) -> str:
    """``TEXT, FIN, masked, 300-byte payload (16-bit length)``."""
    header = parse_header(wire.header)
    assert header is not None
    bits = {0: "7-bit", 2: "16-bit", 8: "64-bit"}[header.extended_length_bytes]
    parts = [wire.frame.opcode.name, "FIN" if wire.frame.fin else "no FIN"]
    if header.masked:
        parts.append("masked")
    return f"{', '.join(parts)}, {header.length:,}-byte payload ({bits} length)"


def _as_frame(item: Any) -> tuple[bool, int, bytes]:
    """A yielded frame as ``(fin, opcode, payload)``: a 3-tuple, or anything with those attributes."""
    if all(hasattr(item, name) for name in ("fin", "opcode", "payload")):
        fin, opcode, payload = item.fin, item.opcode, item.payload
    elif isinstance(item, tuple | list) and len(item) == 3:
        fin, opcode, payload = item
    else:
        raise Incorrect(f"yield one `(fin, opcode, payload)` tuple per frame; your reader yielded {show(item, 60)}.")
    if isinstance(payload, str):
        raise Incorrect("yield the payload as `bytes` (the frame's bytes, unmasked), not decoded text.")
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise Incorrect(f"the payload should be `bytes`, got {type(payload).__name__}: {show(payload, 40)}.")
    if not isinstance(opcode, int) or isinstance(opcode, bool):
        raise Incorrect(f"the opcode should be a number (0x1 for text), got {show(opcode, 40)}.")
    return bool(fin), int(opcode), bytes(payload)


def _run(reader: Any, chunks: list[bytes], most: int) -> tuple[list[tuple[bool, int, bytes]], Exception | None]:
    """The frames ``reader`` yields for ``chunks`` (at most ``most``) and the exception it raised, if any."""
    got: list[tuple[bool, int, bytes]] = []
    try:
        frames = reader(iter(chunks))
        if frames is None or not hasattr(frames, "__iter__"):
            raise Incorrect(
                f"`{_name(reader)}(chunks)` returned {show(frames, 40)}: make it a generator, "
                "`yield` each frame as it is complete."
            )
        for item in frames:
            got.append(_as_frame(item))
            if len(got) >= most:
                break
    except Incorrect:
        raise
    except Exception as exc:
        return got, exc
    return got, None


def _name(fn: Any) -> str:
    name = getattr(fn, "__name__", "read_frames")
    return name if isinstance(name, str) and name.isidentifier() else "read_frames"


def _hex(data: bytes, n: int = 8) -> str:
    """The first ``n`` bytes in hex: ``7b 22 74 ...``; ``b''`` when empty."""
    return data[:n].hex(" ") + (" ..." if len(data) > n else "") if data else "b''"


def _frames_count(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _diagnose(
    stream: CapturedStream, index: int, got: tuple[bool, int, bytes] | None, how: str, kind_chunkings_pass: bool
) -> str:
    """What is wrong with frame ``index`` as the reader yielded it (``None``: it did not)."""
    wire = stream.frames[index]
    frame = wire.frame
    header = parse_header(wire.header)
    assert header is not None
    where = (
        f"Fed {how}, frame {index + 1} of {len(stream.frames)} "
        f"{'from the server' if stream.direction is S2C else 'from the client'} "
        f"({_label(wire)}, header `{wire.header.hex(' ')}`)"
    )
    little = int.from_bytes(wire.header[2:4], "little") if header.length_code == 126 else None
    if got is None:
        if how.startswith("the whole stream"):
            return (
                f"{where}: your reader yielded nothing for it (it stopped after {_frames_count(index)}). One read can "
                "hold several frames: after yielding one, go on with the bytes left in the buffer (a `while` "
                "loop), and keep what is left over for the next read."
            )
        if kind_chunkings_pass:
            return (
                f"{where}: your reader yielded nothing for it, although it reads every frame when each read holds "
                "exactly one. A read can end in the middle of a frame, even in the middle of its header: keep "
                "the bytes of an unfinished frame and add the next read to them (`buffer += chunk`)."
            )
        if little is not None and little != header.length:
            return (
                f"{where}: your reader yielded nothing for it. 126 in the 7-bit field means the length is in "
                f"the next 2 bytes, in network byte order (big-endian, section 5.2): "
                f"`{wire.header[2:4].hex(' ')}` is {header.length:,}; read little-endian it would be "
                f"{little:,}, and the reader would wait for bytes that are not there."
            )
        if header.length_code == 127:
            return (
                f"{where}: your reader yielded nothing for it. 127 in the 7-bit field means the length is in "
                f"the next 8 bytes (a 64-bit big-endian number, section 5.2): "
                f"`{wire.header[2:10].hex(' ')}` is {header.length:,}."
            )
        return f"{where}: your reader yielded nothing for it (it stopped after {_frames_count(index)})."
    fin, opcode, payload = got
    expected = (frame.fin, int(frame.opcode), frame.payload)
    yours = f"you yielded `({fin}, 0x{opcode:x}, {_hex(payload)!s})`"
    if opcode != frame.opcode:
        if opcode == wire.header[0]:
            return (
                f"{where}: {yours}. The opcode is the low 4 bits of the first byte (`first & 0x0F`): "
                f"0x{opcode:02x} also holds FIN (0x80) and the RSV bits."
            )
        return f"{where}: {yours}, the opcode is 0x{frame.opcode:x}, the low 4 bits of the first byte."
    if fin != frame.fin:
        return f"{where}: {yours}. FIN is the top bit of the first byte (`bool(first & 0x80)`): {frame.fin} here."
    if wire.frame.masking_key is not None and payload == apply_mask(frame.payload, wire.frame.masking_key):
        return (
            f"{where}: {yours}, still masked. A client's payload is XORed with the 4-byte key "
            f"`{wire.frame.masking_key.hex(' ')}` that follows the length (section 5.3): unmask it, "
            "`bytes(b ^ key[i % 4] for i, b in enumerate(payload))`."
        )
    if little is not None and len(payload) == little:
        return (
            f"{where}: {yours}, a {len(payload):,}-byte payload. The 16-bit length `{wire.header[2:4].hex(' ')}` "
            f"is big-endian (network byte order, section 5.2): {header.length:,}, not {little:,}. "
            "Use `int.from_bytes(..., 'big')`."
        )
    if header.length_code == 127 and len(payload) != header.length:
        return (
            f"{where}: {yours}, a {len(payload):,}-byte payload. 127 in the 7-bit field means the length is in "
            f"the next 8 bytes (section 5.2): `{wire.header[2:10].hex(' ')}` is {header.length:,}, and the "
            "masking key (if any) and the payload come after those 8 bytes."
        )
    if header.length_code in (126, 127) and len(payload) == header.length_code:
        size = "2" if header.length_code == 126 else "8"
        return (
            f"{where}: {yours}, a {len(payload)}-byte payload. {header.length_code} in the 7-bit field is not the "
            f"length: it says the length is in the next {size} bytes (section 5.2), here {header.length:,}."
        )
    if len(payload) != len(frame.payload):
        return f"{where}: {yours}, a {len(payload):,}-byte payload; the header says {header.length:,} bytes."
    first = next(i for i, (a, b) in enumerate(zip(payload, frame.payload, strict=True)) if a != b)
    return (
        f"{where}: {yours}; the payload is right up to byte {first}, then differs "
        f"(expected `{_hex(frame.payload[first:])}`, got `{_hex(payload[first:])}`): "
        f"expected `({expected[0]}, 0x{expected[1]:x}, {_hex(expected[2])})`."
    )


class _FrameReaderProblem(LiveProblem):
    """The student's frame reader, run on traffic captured live through a tap, fed in awkward pieces."""

    answer_format = "your function itself, `read_frames`"
    call_with = "read_frames"
    answer_kind = "sync"
    why_sync = "it parses bytes it is given; it awaits nothing"

    def _not_attempted(self) -> Verdict:
        return Verdict(
            Status.NOT_ATTEMPTED,
            f"you have not answered yet. Write the body of `read_frames`, then run "
            f"`await {self.ref}.check_async(read_frames)`.",
        )

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        capture = await capture_live_traffic(lab)
        seed = random.randrange(1 << 30)
        total = 0
        for stream in capture.streams:
            kind_pass = False
            for how, chunks in chunkings(stream, seed):
                got, error = _run(answer, chunks, len(stream.frames) + 5)
                for index, wire in enumerate(stream.frames):
                    mine = got[index] if index < len(got) else None
                    ref = (wire.frame.fin, int(wire.frame.opcode), wire.frame.payload)
                    if mine == ref:
                        continue
                    if mine is None and error is not None:
                        raise Incorrect(
                            _diagnose(stream, index, None, how, kind_pass).replace(
                                "your reader yielded nothing for it",
                                f"your reader raised {type(error).__name__}: {error}",
                                1,
                            )
                        )
                    raise Incorrect(_diagnose(stream, index, mine, how, kind_pass))
                if error is not None:
                    raise Incorrect(
                        f"Fed {how}, your reader yielded all {len(stream.frames)} frames, then raised "
                        f"{type(error).__name__}: {error}. At the end of the stream, stop without error."
                    )
                if len(got) > len(stream.frames):
                    raise Incorrect(
                        f"Fed {how}, your reader yielded {len(got) - len(stream.frames)} frame(s) more than the "
                        f"{len(stream.frames)} in the stream: yield a frame only once all its bytes are in."
                    )
                if how == "one frame per read":
                    kind_pass = True
            total += len(stream.frames)
        s2c, c2s = capture.streams
        biggest = max(len(w.frame.payload) for w in s2c.frames)
        sizes = (
            f"the lab answered a {len(big_ping()):,}-byte ping of yours, the most a 16-bit length holds, "
            f"with a {biggest:,}-byte pong: a 64-bit length"
            if not capture.constructed_64bit
            else f"the lab's message limit ({capture.max_message_bytes:,} bytes) is too small for an answer "
            "over 65,535 bytes, so RFC 6455 section 5.7's 64 KiB binary frame "
            "(`82 7f 00 00 00 00 00 01 00 00`) was added to the server's stream"
        )
        return (
            f"your reader read all {total} frames captured live ({len(s2c.frames)} from the server, unmasked; "
            f"{len(c2s.frames)} from the client, masked) exactly as `labserver.frames` does, fed 5 ways: one frame "
            f"per read, all in one read, 1 byte per read, and 2 random splits that cut inside headers. Lengths: "
            f"7-bit, 16-bit and 64-bit ({sizes})."
        )


def _read_frames_reference(chunks: Iterable[bytes]) -> Iterator[tuple[bool, int, bytes]]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk  # what an earlier read left over comes first
        while len(buffer) >= 2:  # one frame per turn, while a whole one is in
            fin = bool(buffer[0] & 0x80)
            opcode = buffer[0] & 0x0F
            masked = bool(buffer[1] & 0x80)
            length = buffer[1] & 0x7F
            at = 2
            if length == 126:  # the length is in the next 2 bytes, big-endian
                if len(buffer) < 4:
                    break
                length, at = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:  # the length is in the next 8 bytes
                if len(buffer) < 10:
                    break
                length, at = int.from_bytes(buffer[2:10], "big"), 10
            key = b""
            if masked:  # the 4-byte masking key comes after the length
                key, at = bytes(buffer[at : at + 4]), at + 4
            if len(buffer) < at + length:
                break  # not all here yet (the key included): wait for the next read
            payload = bytes(buffer[at : at + length])
            if masked:
                payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            del buffer[: at + length]  # keep the rest: the start of the next frame
            yield fin, opcode, payload


q7 = lesson.add(
    "q7",
    _FrameReaderProblem(
        title="Write a frame reader, run it on live traffic",
        question=(
            "Write `read_frames(chunks)`: `chunks` is what successive reads of a TCP socket returned "
            "after the `101` (an iterable of `bytes`, each of any size, even 1 byte); yield "
            "`(fin, opcode, payload)` for every frame, in order, with the payload **unmasked**. Handle the "
            "7-, 16- and 64-bit lengths (section 5.2), masked and unmasked frames (section 5.3), and frames "
            "split across reads, or several in one read.\n\n"
            "`await ex.q7.check_async(read_frames)` captures fresh traffic through a new tap (a join, a short "
            "and a 200-byte chat, a chat in three fragments, a ping frame, a 65,535-byte message and its longer "
            "answer, "
            "the close), feeds both directions to your reader in five ways (one frame per read, all in one read, "
            "1 byte per read, two random splits) and compares what it yields with `labserver.frames`. Write it "
            "by hand, without `labserver.frames`."
        ),
        hint=[
            "Keep a `buffer = bytearray()`. For each chunk: `buffer += chunk`, then, in a `while` loop, read "
            "the header from the buffer; if the whole frame (header, key, payload) is not there yet, `break` "
            "and wait for the next chunk; else yield it and `del buffer[:frame_size]`, keeping the rest. "
            "TCP is a byte stream: a read can hold half a header or three frames. You can try your function "
            "on what the tap saw for Bob (part 14): "
            "`list(read_frames([tap.frame_bytes(bob_id, Direction.SERVER_TO_CLIENT)]))`.",
            "The header: `fin = bool(b0 & 0x80)`, `opcode = b0 & 0x0F`, `masked = bool(b1 & 0x80)`, "
            "`length = b1 & 0x7F`; if it is 126, the length is `int.from_bytes(buffer[2:4], 'big')` and the key "
            "(if masked) starts at 4; if 127, `int.from_bytes(buffer[2:10], 'big')` and 10. Network byte order "
            "is big-endian. Unmask with `bytes(b ^ key[i % 4] for i, b in enumerate(payload))`.",
        ],
        solution=(
            "```python\n"
            + textwrap.dedent(inspect.getsource(_read_frames_reference)).replace(
                "_read_frames_reference", "read_frames"
            )
            + "```\n\n"
            "Every branch that finds too few bytes `break`s out of the `while` and waits for the next read, "
            "without touching the buffer; only a whole frame is cut off its front. That one rule handles a "
            "header split across reads, a payload split across reads, and several frames in one read. "
            "`labserver.frames.FrameReader` does the same, and also refuses what no endpoint may accept "
            "(reserved opcodes, control frames over 125 bytes, an unmasked client frame)."
        ),
    ),
)


__all__ = [
    "CLOSE_CODES",
    "Q1_FRAME",
    "Q2_HEADER",
    "LiveCapture",
    "capture_live_traffic",
    "chunkings",
    "lesson",
    "q1",
    "q2",
    "q3",
    "q4",
    "q5",
    "q6",
    "q7",
]
