#!/usr/bin/env python3
"""Draw ``images/07_one_loop.svg``: the turns one event loop takes, healthy, stalled, and offloaded.

Three timelines of the same loop thread serving five sockets (A to E). Top: every handler is
short and awaits; the turns are tiny and everyone is served at once. Middle: one chat handler
makes a blocking call on the loop (the lab's ``block_ms``): the others' messages arrive and
wait, and the wait is the loop lag. Bottom: the same call offloaded (``offload``): it waits in
a worker thread while the loop goes on taking turns; only that chat's own reply comes later.

Written element by element (no plotting library), so the file is small, diffs well and is the
same every time it is drawn.

    .venv/bin/python tools/figures/07_one_loop.py
"""

from __future__ import annotations

from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "images" / "07_one_loop.svg"

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
INK = "#222222"
MUTED = "#666666"
TURN = "#1565c0"
BLOCK = "#c62828"
WAIT = "#ffcdd2"
WORKER = "#6a1b9a"

WIDTH, HEIGHT = 960, 470
LEFT, RIGHT = 170, 930  # the time axis
SPAN = 10.0  # time units across the axis


def x(t: float) -> float:
    return LEFT + (RIGHT - LEFT) * t / SPAN


def text(
    px: float, py: float, s: str, *, size: int = 13, color: str = INK, anchor: str = "start", bold: bool = False
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{px:.1f}" y="{py:.1f}" font-family="{FONT}" font-size="{size}" fill="{color}" '
        f'text-anchor="{anchor}"{weight}>{escape(s)}</text>'
    )


def rect(t0: float, t1: float, py: float, h: float, fill: str, label: str = "") -> str:
    out = f'<rect x="{x(t0):.1f}" y="{py:.1f}" width="{x(t1) - x(t0):.1f}" height="{h}" fill="{fill}" rx="2"/>'
    if label:
        out += text((x(t0) + x(t1)) / 2, py + h / 2 + 4, label, size=11, color="white", anchor="middle")
    return out


def timeline(
    top: float,
    title: str,
    turns: list[tuple[float, float, str, str]],
    waits: list[tuple[float, float]],
    worker: tuple[float, float] | None,
    note: str,
) -> list[str]:
    """One loop lane (and a worker lane if ``worker``): turns are (start, end, label, colour)."""
    parts = [text(20, top + 4, title, bold=True), text(20, top + 22, note, size=12, color=MUTED)]
    lane = top + 38
    parts.append(text(LEFT - 10, lane + 15, "loop thread", size=12, color=MUTED, anchor="end"))
    parts.append(f'<line x1="{LEFT}" y1="{lane + 22}" x2="{RIGHT}" y2="{lane + 22}" stroke="#bbbbbb"/>')
    for t0, t1 in waits:
        parts.append(rect(t0, t1, lane - 6, 6, WAIT))
    for t0, t1, label, colour in turns:
        parts.append(rect(t0, t1, lane, 22, colour, label))
    if worker is not None:
        w = lane + 32
        parts.append(text(LEFT - 10, w + 15, "worker thread", size=12, color=MUTED, anchor="end"))
        parts.append(f'<line x1="{LEFT}" y1="{w + 22}" x2="{RIGHT}" y2="{w + 22}" stroke="#bbbbbb"/>')
        parts.append(rect(worker[0], worker[1], w, 22, WORKER, "time.sleep(0.1)"))
    return parts


def main() -> None:
    short = [
        (0.3, 0.6, "A", TURN),
        (1.0, 1.3, "B", TURN),
        (1.7, 2.0, "C", TURN),
        (2.6, 2.9, "D", TURN),
        (3.3, 3.6, "E", TURN),
        (4.4, 4.7, "A", TURN),
        (5.5, 5.8, "C", TURN),
        (6.6, 6.9, "B", TURN),
        (7.8, 8.1, "D", TURN),
        (8.9, 9.2, "E", TURN),
    ]
    stalled = [
        (0.3, 0.6, "A", TURN),
        (1.0, 7.0, "B: chat handler, time.sleep(0.1) on the loop", BLOCK),
        (7.0, 7.3, "C", TURN),
        (7.3, 7.6, "D", TURN),
        (7.6, 7.9, "E", TURN),
        (7.9, 8.2, "A", TURN),
        (8.9, 9.2, "E", TURN),
    ]
    offloaded = [
        (0.3, 0.6, "A", TURN),
        (1.0, 1.3, "B", TURN),
        (1.7, 2.0, "C", TURN),
        (2.6, 2.9, "D", TURN),
        (3.3, 3.6, "E", TURN),
        (4.4, 4.7, "A", TURN),
        (5.5, 5.8, "C", TURN),
        (7.0, 7.7, "B ack", TURN),
        (7.8, 8.1, "D", TURN),
        (8.9, 9.2, "E", TURN),
    ]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        *timeline(
            20,
            "Healthy: every handler awaits",
            short,
            [],
            None,
            "Five sockets, one thread: each message is a short turn; idle sockets take no turn at all.",
        ),
        *timeline(
            150,
            "A blocking call in a handler (block_ms)",
            stalled,
            [(1.7, 7.0), (2.6, 7.3), (3.3, 7.6)],
            None,
            "C, D and E's messages arrive during B's turn and wait (pink): that wait is the loop lag, for everyone.",
        ),
        *timeline(
            280,
            "The same call offloaded (offload)",
            offloaded,
            [],
            (1.3, 7.0),
            "B's handler awaits a thread; the loop keeps taking turns. Only B's own reply comes later.",
        ),
        text(LEFT, HEIGHT - 14, "time →", size=12, color=MUTED),
        "</svg>",
    ]
    OUT.write_text("\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
