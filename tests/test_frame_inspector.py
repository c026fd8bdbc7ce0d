"""The FrameInspector widget and its pure HTML helpers.

No Jupyter kernel: ipywidgets work without a frontend (their comm messages go nowhere),
so the tests read the widgets' values and count renders and comm messages. The helpers
are tested on bytes alone; the widget on a scripted tap and on a real one in front of
the real lab server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets

from labserver.course import LabServer
from labserver.course.frame_inspector import (
    FIELD_COLOURS,
    REPR,
    FrameInspector,
    frame_fields_html,
    frame_row_html,
    legend_html,
)
from labserver.frames import Frame, Opcode, close_payload
from labserver.tap import CapturedFrame, CaptureError, Direction, FrameTap

from .conftest import count_comm_messages, log_renders, until

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
KEY = bytes.fromhex("37fa213d")


def fields(markup: str) -> list[tuple[str, str]]:
    """``[(field, hex), ...]`` of the coloured spans, in order."""
    return re.findall(r'data-field="(\w+)"[^>]*>([0-9a-f ]+)</span>', markup)


def header_of(frame: Frame) -> bytes:
    n = len(frame.payload)
    size = 2 + (0 if n < 126 else 2 if n < 65536 else 8) + (4 if frame.masking_key else 0)
    return frame.serialize()[:size]


# --- frame_fields_html ------------------------------------------------------------------


def test_fields_of_an_unmasked_short_frame() -> None:
    frame = Frame(Opcode.TEXT, b"Hello")
    markup = frame_fields_html(header_of(frame), frame)
    assert fields(markup) == [("first", "81"), ("length", "05")]
    assert "10000001: FIN=1 RSV1=0 RSV2=0 RSV3=0 opcode=0x1 (TEXT)" in markup
    assert "00000101: MASK=0, payload length 5" in markup


def test_fields_of_the_rfc_masked_hello() -> None:
    frame = Frame(Opcode.TEXT, b"Hello", masking_key=KEY)  # RFC 6455 section 5.7
    markup = frame_fields_html(header_of(frame), frame)
    assert fields(markup) == [("first", "81"), ("length", "85"), ("key", "37 fa 21 3d")]
    assert "MASK=1, payload length 5" in markup
    assert "the first, 0x48, went as 0x7f" in markup  # 'H' XOR 0x37


@pytest.mark.parametrize(
    ("size", "code", "extended"),
    [(125, "fd", None), (126, "fe", "00 7e"), (65535, "fe", "ff ff"), (65536, "ff", "00 00 00 00 00 01 00 00")],
)
def test_fields_of_the_three_length_encodings(size: int, code: str, extended: str | None) -> None:
    frame = Frame(Opcode.BINARY, bytes(size), masking_key=b"\x01\x02\x03\x04")
    got = fields(frame_fields_html(header_of(frame), frame))
    expected = [("first", "82"), ("length", code)]
    if extended:
        expected.append(("extended", extended))
    assert got == expected + [("key", "01 02 03 04")]
    if extended:
        bits = 16 if len(extended.split()) == 2 else 64
        assert f"extended payload length: {size} ({bits}-bit, big-endian)" in frame_fields_html(header_of(frame))


def test_every_field_has_its_colour() -> None:
    markup = frame_fields_html(header_of(Frame(Opcode.TEXT, bytes(300), masking_key=KEY)))
    for field, (colour, background) in FIELD_COLOURS.items():
        assert f'data-field="{field}"' in markup
        assert f"color:{colour};background:{background}" in markup


def test_fields_of_bytes_the_codec_refuses() -> None:
    markup = frame_fields_html(bytes([0x83, 0x80]) + b"abcd")  # reserved opcode 0x3
    assert "opcode=0x3 (RESERVED_0x3)" in markup
    assert fields(markup) == [("first", "83"), ("length", "80"), ("key", "61 62 63 64")]
    cut = frame_fields_html(bytes([0x81, 0xFE, 0x01]))  # header cut short
    assert fields(cut) == [("first", "81"), ("length", "fe")] and "header cut short" in cut
    assert "no bytes" in frame_fields_html(b"")
    one = frame_fields_html(b"\x89")
    assert fields(one) == [("first", "89")] and "(PING)" in one


def test_fields_html_escapes_and_is_one_span() -> None:
    markup = frame_fields_html(header_of(Frame(Opcode.CLOSE, close_payload(1000, "<b>"))))
    assert markup.startswith('<span class="fi-hex">') and markup.endswith("</span>")
    assert "<b>" not in markup


def test_legend_names_the_four_fields() -> None:
    markup = legend_html()
    assert [f for f, _ in fields(markup)] == ["first", "length", "extended", "key"]
    assert "masking key" in markup and "FIN" in markup


# --- frame_row_html ---------------------------------------------------------------------------


def captured(direction: Direction, frame: Frame, cid: int = 1, t: float = 0.25) -> CapturedFrame:
    return CapturedFrame(direction, cid, frame, header_of(frame), t)


def test_row_of_a_client_frame() -> None:
    row = frame_row_html(captured(C2S, Frame(Opcode.TEXT, b'{"type":"ping"}', masking_key=KEY)), 7)
    assert 'data-opcode="TEXT"' in row and 'data-direction="CLIENT_TO_SERVER"' in row
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:3] == ["7", "0.250", "#1"] and "\u2192" in cells[3]
    assert "<b>TEXT</b>" in cells[4] and cells[5] == "1" and "000" in cells[6]
    assert cells[7] == "yes" and cells[8] == "15"
    assert "&#x27;{&quot;type&quot;:&quot;ping&quot;}&#x27;" in cells[10]  # the preview, escaped


def test_row_flags_masking_the_wrong_way_round() -> None:
    unmasked_client = frame_row_html(captured(C2S, Frame(Opcode.TEXT, b"x")), 1)
    masked_server = frame_row_html(captured(S2C, Frame(Opcode.TEXT, b"x", masking_key=KEY)), 2)
    fine = frame_row_html(captured(S2C, Frame(Opcode.TEXT, b"x")), 3)
    assert "no!" in unmasked_client and "yes!" in masked_server and "5.1" in unmasked_client
    assert "fi-bad" not in fine and "\u2190" in fine


def test_row_of_a_close_frame_and_of_an_error() -> None:
    row = frame_row_html(captured(S2C, Frame(Opcode.CLOSE, close_payload(1002))), 1)
    assert "1002 PROTOCOL_ERROR" in row and 'data-opcode="CLOSE"' in row
    error = frame_row_html(CaptureError(C2S, 2, "reserved opcode 0x3 (RFC 6455 section 5.2)", b"\x83\x80abcd", 1.5), 9)
    assert 'data-testid="frame-error"' in error and "reserved opcode 0x3" in error and "cannot read" in error
    assert fields(error)[0] == ("first", "83")


# --- the widget, on a scripted tap ------------------------------------------------------------


class ScriptedTap:
    """What FrameInspector needs of a tap: frames, errors, subscribe."""

    def __init__(self) -> None:
        self.frames: list[CapturedFrame] = []
        self.errors: list[CaptureError] = []
        self.subscribers: list[Callable[[Any], None]] = []
        self.t = 0.0

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def emit(self, direction: Direction, frame: Frame, cid: int = 1) -> CapturedFrame:
        self.t += 0.001
        event = captured(direction, frame, cid, self.t)
        self.frames.append(event)
        for callback in list(self.subscribers):
            callback(event)
        return event

    def emit_error(self, message: str = "reserved opcode 0x3", cid: int = 1) -> CaptureError:
        self.t += 0.001
        event = CaptureError(C2S, cid, message, b"\x83\x00", self.t)
        self.errors.append(event)
        for callback in list(self.subscribers):
            callback(event)
        return event


def test_without_a_loop_it_renders_on_demand() -> None:
    tap = ScriptedTap()
    early = tap.emit(S2C, Frame(Opcode.TEXT, b"before the inspector"))
    inspector = FrameInspector(tap, max_frames=3)
    assert not inspector.running and repr(inspector) == REPR == "FrameInspector(live view of captured frames)"
    assert inspector._repr_mimebundle_()["text/plain"] == REPR  # what nbval compares
    assert inspector.frames == [early]  # backfilled
    for i in range(4):
        tap.emit(C2S, Frame(Opcode.TEXT, f"m{i}".encode(), masking_key=KEY))
    tap.emit_error()
    assert len(inspector.frames) == 2 and [f.frame.payload for f in inspector.frames] == [b"m2", b"m3"]
    assert inspector.render() and not inspector.render()  # nothing new: no work
    table = inspector.table.value
    assert table.count('data-testid="frame-row"') == 2 and table.count('data-testid="frame-error"') == 1
    assert re.findall(r"<tr data-testid=\"frame-(?:row|error)\"[^>]*><td[^>]*>(\d+)</td>", table) == ["4", "5", "6"]
    assert "4 frames (32 B) to the server" in inspector.header.value
    assert "1 frame (22 B) to the client" in inspector.header.value
    assert 'inspector-status">live<' in inspector.header.value
    inspector.stop()
    assert tap.subscribers == [] and 'inspector-status">stopped<' in inspector.header.value
    tap.emit(C2S, Frame(Opcode.TEXT, b"after stop", masking_key=KEY))
    assert b"after stop" not in [f.frame.payload for f in inspector.frames]


def test_connection_filter_backfill_and_clear() -> None:
    tap = ScriptedTap()
    tap.emit(S2C, Frame(Opcode.TEXT, b"old"), cid=1)
    inspector = FrameInspector(tap, connection_id=2, backfill=False)
    assert inspector.frames == [] and "no frame captured yet" in inspector.table.value
    tap.emit(S2C, Frame(Opcode.TEXT, b"one"), cid=1)
    mine = tap.emit(S2C, Frame(Opcode.TEXT, b"two"), cid=2)
    assert inspector.frames == [mine] and "connection #2" in inspector.header.value
    inspector.clear()
    inspector.render()
    assert inspector.frames == [] and "no frame captured yet" in inspector.table.value
    inspector.close()
    assert tap.subscribers == []


async def test_a_flood_renders_at_most_ten_times_a_second_with_one_message_per_widget() -> None:
    tap = ScriptedTap()
    inspector = FrameInspector(tap, max_frames=25)
    log = log_renders(inspector, lambda: inspector._version)  # before the render loop's first turn
    assert inspector.running
    sent = count_comm_messages(inspector)
    renders = inspector.renders
    for i in range(5000):
        tap.emit(C2S if i % 2 else S2C, Frame(Opcode.TEXT, b"x" * (i % 300), masking_key=KEY if i % 2 else None))
        if i % 250 == 0:
            await asyncio.sleep(0.02)  # not a wait for something: the flood takes a while, the renderer gets turns
    await until(lambda: "2,500 frames" in inspector.header.value, what="the last frames drawn")
    done = inspector.renders - renders
    assert len(log.times) == done >= 2, (done, log.times)  # it rendered while the frames came
    assert log.min_gap() >= inspector.render_interval - 0.001, log.times  # at most ten renders a second
    assert log.shows(inspector._version)  # and the last render showed the last frame
    assert sent[0] <= done * len(inspector._synced)
    assert inspector.table.value.count('data-testid="frame-row"') == 25  # bounded, whatever came
    idle = inspector.renders
    assert not inspector._dirty.is_set()  # the renderer has nothing to wake up for
    assert not inspector.render() and inspector.renders == idle  # all drawn: nothing new, no work
    renderer = inspector._task
    assert renderer is not None
    inspector.stop()
    assert not inspector.running
    with contextlib.suppress(asyncio.CancelledError):
        await renderer
    assert not inspector.errors


# --- the widget, on a real tap in front of the lab ------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with LabServer(tmp_path_factory.mktemp("inspector")) as proc:
        yield proc


async def test_live_on_a_real_tap(lab: LabServer, tap: FrameTap) -> None:
    inspector = FrameInspector(tap)
    token = lab.account("inspected").token
    async with websockets.connect(f"{tap.ws_url}?token={token}") as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "join", "room": "seen", "ref": 1}))
        while json.loads(await ws.recv()).get("ref") != 1:
            pass
        await (await ws.ping(b"hi"))  # wait for the pong
    await tap.wait_for(lambda c: c.direction is S2C and c.frame.opcode is Opcode.CLOSE)
    await until(
        lambda: 'data-opcode="CLOSE" data-direction="SERVER_TO_CLIENT"' in inspector.table.value,
        what="the close frame drawn",
    )
    assert inspector.frames == tap.frames
    opcodes = re.findall(r'data-opcode="(\w+)" data-direction="(\w+)"', inspector.table.value)
    assert opcodes == [
        ("TEXT", "SERVER_TO_CLIENT"),  # welcome
        ("TEXT", "CLIENT_TO_SERVER"),  # join
        ("TEXT", "SERVER_TO_CLIENT"),  # member_joined
        ("TEXT", "SERVER_TO_CLIENT"),  # ack
        ("PING", "CLIENT_TO_SERVER"),
        ("PONG", "SERVER_TO_CLIENT"),
        ("CLOSE", "CLIENT_TO_SERVER"),
        ("CLOSE", "SERVER_TO_CLIENT"),
    ]
    assert inspector.table.value.count('data-field="key"') == 3  # the client's three frames, masked
    assert 'fi-bad" title="wrong way round' not in inspector.table.value
    inspector.stop()
    assert repr(inspector) == REPR and not inspector.errors
