#!/usr/bin/env python3
"""Draw ``images/03_frame_layout.svg``: the RFC 6455 section 5.2 frame layout, by hand.

The SVG is written element by element (no plotting library), so the file is small,
diffs well, and is the same every time it is drawn. Its field colours are the
frame inspector's (``labserver.course.frame_inspector.FIELD_COLOURS``), so the
figure and the live tool read alike.

    .venv/bin/python tools/figures/03_frame_layout.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from _svg import INK, MUTED, RULE, Svg, save

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labserver.course.frame_inspector import FIELD_COLOURS  # noqa: E402
from labserver.frames import Frame, Opcode, parse_header  # noqa: E402

PAYLOAD = ("#444444", "#ececec")  # text, fill of payload bytes

LEFT, TOP = 64, 92  # the grid's top-left corner
BIT = 30  # width of one bit
ROW = 50  # height of one 32-bit row
WIDTH = LEFT + 32 * BIT + 150


def field(
    svg: Svg,
    row: int,
    bit: int,
    bits: int,
    kind: str,
    lines: list[str],
    *,
    dashed: bool = False,
    open_right: bool = False,
) -> None:
    """A field ``bits`` wide starting at ``bit`` of 32-bit row ``row``."""
    ink, fill = PAYLOAD if kind == "payload" else FIELD_COLOURS[kind]
    x, y, w = LEFT + bit * BIT, TOP + row * ROW, bits * BIT
    svg.rect(x, y, w, ROW, fill, rx=0, dash="5 3" if dashed else None)
    if open_right:  # the payload goes on: a ragged, unframed right edge
        svg.rect(x + w - 1.5, y + 1, 3, ROW - 2, fill, stroke=fill, rx=0)
        svg.text(x + w + 14, y + ROW / 2 + 5, "\u2026", size=18, anchor="middle", fill=MUTED)
    narrow = bits == 1  # a one-bit field: a smaller, regular label
    top = y + ROW / 2 + (4 if len(lines) == 1 else -3)
    for i, line in enumerate(lines):
        svg.text(
            x + w / 2,
            top + i * 15,
            line,
            size=8.5 if narrow else 12 if i == 0 else 10.5,
            weight="bold" if i == 0 and not narrow else "normal",
            fill=ink,
            anchor="middle",
            italic=i > 0,
        )


def layout(svg: Svg) -> int:
    svg.text(LEFT, 28, "A WebSocket frame on the wire (RFC 6455, section 5.2)", size=18, anchor="start", weight="bold")
    svg.text(
        LEFT,
        48,
        "Four bytes per row, most significant bit first. Dashed fields are present only "
        "when the fields before them say so.",
        size=12,
        anchor="start",
        fill=MUTED,
    )
    for byte in range(4):  # byte and bit numbers above the grid
        x = LEFT + byte * 8 * BIT
        svg.text(x + 4 * BIT, TOP - 24, f"byte {byte}", size=11.5, anchor="middle", weight="bold", fill=MUTED)
        for bit in range(8):
            svg.text(x + bit * BIT + BIT / 2, TOP - 7, str(bit), size=9.5, anchor="middle", fill=MUTED)
        svg.line(x, TOP - 36, x, TOP - 2, RULE)
    svg.line(LEFT + 32 * BIT, TOP - 36, LEFT + 32 * BIT, TOP - 2, RULE)
    for row in range(5):  # byte offsets on the left
        svg.text(LEFT - 10, TOP + row * ROW + ROW / 2 + 4, f"+{row * 4}", size=11, anchor="end", fill=MUTED)

    field(svg, 0, 0, 1, "first", ["FIN"])
    for i in range(3):
        field(svg, 0, 1 + i, 1, "first", [f"RSV{i + 1}"])
    field(svg, 0, 4, 4, "first", ["opcode", "4 bits"])
    field(svg, 0, 8, 1, "length", ["MASK"])
    field(svg, 0, 9, 7, "length", ["payload len", "7 bits: 0-125, 126, 127"])
    field(svg, 0, 16, 16, "extended", ["extended payload length", "16 bits if payload len = 126"], dashed=True)
    field(
        svg,
        1,
        0,
        32,
        "extended",
        ["extended payload length, continued", "64 bits in all if payload len = 127"],
        dashed=True,
    )
    field(svg, 2, 0, 16, "extended", ["\u2026 extended length (64-bit)", "last 16 bits"], dashed=True)
    field(svg, 2, 16, 16, "key", ["masking key", "32 bits, if MASK = 1"], dashed=True)
    field(svg, 3, 0, 16, "key", ["masking key, continued"], dashed=True)
    field(svg, 3, 16, 16, "payload", ["payload data", "masked if MASK = 1"])
    field(
        svg,
        4,
        0,
        32,
        "payload",
        ["payload data, continued: payload len (or the extended length) bytes"],
        open_right=True,
    )

    # the header's extent on the right
    right = LEFT + 32 * BIT + 34
    top, bottom = TOP, TOP + 3 * ROW + ROW / 2
    svg.line(right, top, right, bottom, INK, width=1.4)
    svg.line(right - 6, top, right, top, INK, width=1.4)
    svg.line(right - 6, bottom, right, bottom, INK, width=1.4)
    svg.text(right + 8, (top + bottom) / 2 - 6, "header:", size=12, anchor="start", weight="bold")
    svg.text(right + 8, (top + bottom) / 2 + 10, "2 to 14 bytes", size=12, anchor="start")
    return TOP + 5 * ROW


def kind_of(index: int, wire: bytes) -> str:
    header = parse_header(wire)
    assert header is not None
    return header.field_at(index)


def example(svg: Svg, y: float, title: str, note: str, wire: bytes, shown: int) -> None:
    """One frame's first ``shown`` bytes, each in its field's colour."""
    svg.text(LEFT, y, title, size=13, anchor="start", weight="bold")
    svg.text(LEFT, y + 16, note, size=11.5, anchor="start", fill=MUTED)
    box, gap, top = 38, 4, y + 26
    for i, byte in enumerate(wire[:shown]):
        kind = kind_of(i, wire)
        ink, fill = PAYLOAD if kind == "payload" else FIELD_COLOURS[kind]
        x = LEFT + i * (box + gap)
        svg.rect(x, top, box, 28, fill, stroke=ink, rx=3)
        svg.text(x + box / 2, top + 19, f"{byte:02x}", size=13, anchor="middle", weight="bold", fill=ink, mono=True)
    if shown < len(wire):
        svg.text(
            LEFT + shown * (box + gap) + 10,
            top + 19,
            f"\u2026 {len(wire) - shown:,} more bytes",
            size=12,
            anchor="start",
            fill=MUTED,
        )


def legend(svg: Svg, y: float) -> None:
    items = [
        ("first", "FIN, RSV1-3, opcode"),
        ("length", "MASK, payload len"),
        ("extended", "extended length"),
        ("key", "masking key"),
        ("payload", "payload"),
    ]
    x: float = LEFT
    for kind, label in items:
        ink, fill = PAYLOAD if kind == "payload" else FIELD_COLOURS[kind]
        svg.rect(x, y - 11, 14, 14, fill, stroke=ink, rx=2)
        svg.text(x + 20, y, label, size=12, anchor="start")
        x += 34 + 7.2 * len(label)


def main() -> None:
    svg = Svg(WIDTH, label="The layout of a WebSocket frame, RFC 6455 section 5.2")
    y = layout(svg) + 44
    svg.text(LEFT, y, "Three frames, byte by byte", size=15, anchor="start", weight="bold")
    legend(svg, y + 24)
    hello = Frame(Opcode.TEXT, b"Hello", masking_key=bytes.fromhex("37fa213d")).serialize()
    example(
        svg,
        y + 56,
        "A client sends \u201cHello\u201d: 81 = FIN + text, 85 = MASK + length 5",
        "the example of section 5.7: 5 payload bytes, each XORed with the key, 4 bytes of key before them",
        hello,
        len(hello),
    )
    medium = Frame(Opcode.TEXT, b"x" * 300).serialize()
    example(
        svg,
        y + 132,
        "A server sends 300 bytes of text: 7e (126) = \u201cthe length is in the next 2 bytes\u201d",
        "01 2c = 300; no MASK bit, no key: servers never mask (section 5.1)",
        medium,
        10,
    )
    big = Frame(Opcode.BINARY, bytes(65536)).serialize()
    example(
        svg,
        y + 208,
        "A server sends 65,536 bytes of binary: 7f (127) = \u201cthe next 8 bytes\u201d",
        "00 00 00 00 00 01 00 00 = 65,536, in 64 bits; the most significant bit must be 0",
        big,
        14,
    )
    save("03_frame_layout.svg", svg.render(int(y + 280)))


if __name__ == "__main__":
    main()
