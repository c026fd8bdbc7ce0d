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

from _svg import BLUE, MUTED, PURPLE, RED, RULE, WHITE, Svg, save

TURN = BLUE
BLOCK = RED
WAIT = "#ffcdd2"
WORKER = PURPLE

WIDTH, HEIGHT = 960, 470
LEFT, RIGHT = 170, 930  # the time axis
SPAN = 10.0  # time units across the axis


def x(t: float) -> float:
    return LEFT + (RIGHT - LEFT) * t / SPAN


def bar(svg: Svg, t0: float, t1: float, py: float, h: float, fill: str, label: str = "") -> None:
    """A stretch of time from ``t0`` to ``t1`` on a lane, labelled inside."""
    svg.rect(x(t0), py, x(t1) - x(t0), h, fill, stroke=None, rx=2)
    if label:
        svg.text((x(t0) + x(t1)) / 2, py + h / 2 + 4, label, size=11, anchor="middle", fill=WHITE)


def thread(svg: Svg, y: float, name: str) -> None:
    """A thread's lane: its name on the left, its time axis under where its turns go."""
    svg.text(LEFT - 10, y + 15, name, size=12, anchor="end", fill=MUTED)
    svg.line(LEFT, y + 22, RIGHT, y + 22, RULE)


def timeline(
    svg: Svg,
    top: float,
    title: str,
    turns: list[tuple[float, float, str, str]],
    waits: list[tuple[float, float]],
    worker: tuple[float, float] | None,
    note: str,
) -> None:
    """One loop lane (and a worker lane if ``worker``): turns are (start, end, label, colour)."""
    svg.text(20, top + 4, title, size=13, weight="bold")
    svg.text(20, top + 22, note, size=12, fill=MUTED)
    lane = top + 38
    thread(svg, lane, "loop thread")
    for t0, t1 in waits:
        bar(svg, t0, t1, lane - 6, 6, WAIT)
    for t0, t1, label, colour in turns:
        bar(svg, t0, t1, lane, 22, colour, label)
    if worker is not None:
        w = lane + 32
        thread(svg, w, "worker thread")
        bar(svg, worker[0], worker[1], w, 22, WORKER, "time.sleep(0.1)")


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
    svg = Svg(
        WIDTH,
        HEIGHT,
        label="One event loop's turns: every handler awaiting, one blocking call stalling everyone, "
        "and the same call offloaded to a worker thread",
    )
    timeline(
        svg,
        20,
        "Healthy: every handler awaits",
        short,
        [],
        None,
        "Five sockets, one thread: each message is a short turn; idle sockets take no turn at all.",
    )
    timeline(
        svg,
        150,
        "A blocking call in a handler (block_ms)",
        stalled,
        [(1.7, 7.0), (2.6, 7.3), (3.3, 7.6)],
        None,
        "C, D and E's messages arrive during B's turn and wait (pink): that wait is the loop lag, for everyone.",
    )
    timeline(
        svg,
        280,
        "The same call offloaded (offload)",
        offloaded,
        [],
        (1.3, 7.0),
        "B's handler awaits a thread; the loop keeps taking turns. Only B's own reply comes later.",
    )
    svg.text(LEFT, HEIGHT - 14, "time →", size=12, fill=MUTED)
    save("07_one_loop.svg", svg.render())


if __name__ == "__main__":
    main()
