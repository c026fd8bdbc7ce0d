#!/usr/bin/env python3
"""Draw ``images/10_reactions.svg``: the capstone's "live reactions on a post", end to end.

Left: the users (viewers of post 7, a viewer of post 9, one that never reads). Top right:
the lab, which keeps accounts, JWTs and posts over REST. Bottom right: the reactions
service the student finishes, running in the notebook's event loop: the token checked
by the lab (cached), the maps, one writer per connection, the store with a seq per post,
the token bucket. The numbered steps are the order of a reaction's life: react, rate,
store (commit, seq), fan out one frame to the post's viewers, ack.

Written element by element (no plotting library), so the file is small, diffs well and
is the same every time it is drawn.

    .venv/bin/python tools/figures/10_reactions.py
"""

from __future__ import annotations

from _svg import BLUE_TINT, DARK_GREEN, DARK_RED, GREEN_TINT, INK, MUTED, NAVY, PALE, RED_TINT, Svg, save

LAB = (NAVY, BLUE_TINT)  # text, fill: the lab
SERVICE = (DARK_GREEN, GREEN_TINT)  # the student's service
BAD = (DARK_RED, RED_TINT)  # the reader that never reads
WIDTH, HEIGHT = 980, 640


def box(svg: Svg, x: float, y: float, w: float, title: str, lines: list[str], colors: tuple[str, str]) -> float:
    """A titled box of monospace lines; returns its height."""
    h = 34 + 17 * len(lines)
    svg.rect(x, y, w, h, colors[1], stroke=colors[0])
    svg.text(x + 10, y + 20, title, size=12.5, weight="bold", fill=colors[0])
    svg.lines(x + 10, y + 40, lines, step=17, size=11.5, mono=True)
    return h


def users(svg: Svg) -> None:
    svg.text(24, 32, "Live reactions on a post", size=16, weight="bold")
    svg.text(24, 52, "REST for the post, a WebSocket for the reactions", size=12, fill=MUTED)
    rows = [
        ("ann  views post 7", PALE, INK),
        ("bob  views post 7 (2 tabs)", PALE, INK),
        ("cat  reacts to post 7", PALE, INK),
        ("dan  views post 9", PALE, INK),
        ("eve  views 7, never reads", BAD[1], BAD[0]),
    ]
    for i, (label, fill, ink) in enumerate(rows):
        y = 180 + i * 58
        svg.rect(24, y, 210, 38, fill, stroke=ink, rx=19)
        svg.text(40, y + 24, label, size=12, mono=True, fill=ink)


LAB_LINES = [
    "POST /api/login     -> a JWT",
    "POST /api/posts     -> post 7",
    "GET  /api/posts/7   (exists?)",
    "GET  /api/me        (whose token?)",
]

# (column, row offset, title, lines, handler box?): the service's parts
PARTS: list[tuple[int, int, str, list[str], bool]] = [
    (0, 0, "handle_socket (q1)",
     ["authenticate -> 401 or user", "accept (101), register", "async for: dispatch", "finally: unregister"], True),
    (0, 124, "on_react (q2)",
     ["allow(user)?  else rate_limited", "append -> seq (committed)", "push one frame to viewers[7]",
      "ack {ref, seq}"], True),
    (0, 248, "on_view (q3)", ["since(post, after) -> missed", "replay, add_viewer: no await"], True),
    (1, 0, "maps", ["conns: {c1 ann, c2 bob, c3 bob, ...}", "viewers: 7 -> {c1, c2, c3, c5}", "viewers: 9 -> {c4}"],
     False),
    (1, 110, "one writer per connection",
     ["conn.push(frame): queue, never wait", "queue > send_limit: dropped", "(eve is dropped, nobody waits)"], False),
    (1, 220, "store (SQLite) + token bucket",
     ["reactions(post, seq, user, emoji)", "seq 1, 2, 3... per post, no gaps", "allow(user): rate 5/s, burst 10"],
     False),
]  # fmt: skip


def lab(svg: Svg) -> None:
    box(svg, 330, 70, 300, "the lab (labserver, its own port)", LAB_LINES, LAB)
    svg.line(234, 110, 328, 110, LAB[0], width=1.4, head=7)
    svg.text(240, 100, "log in, post", size=11, fill=LAB[0])


def service(svg: Svg) -> None:
    x, y = 330, 250
    svg.rect(x - 12, y - 34, 640, 370, "#fbfffb", stroke=SERVICE[0], dash="6 4")
    svg.text(x, y - 14, "the reactions service (aiohttp, in the notebook's event loop, its own port)", size=13,
             weight="bold", fill=SERVICE[0])  # fmt: skip
    for column, offset, title, lines, handler in PARTS:
        box(svg, x + 320 * column, y + offset, 290, title, lines, SERVICE if handler else PALE_BOX)
    # The token check goes to the lab, once per token (cached).
    svg.line(480, y - 34, 480, 150, LAB[0], width=1.4, head=7, dash="5 4")
    svg.text(488, 200, "token check, cached", size=11, fill=LAB[0])
    # A reaction's life.
    svg.line(234, 316, x - 2, y + 150, SERVICE[0], width=1.4, head=7)
    svg.disc(270, 320, 1, SERVICE[0])
    svg.text(250, 342, "react", size=11, fill=SERVICE[0])
    svg.line(x + 290, y + 170, x + 318, y + 250, SERVICE[0], width=1.4, head=7)
    svg.disc(x + 304, y + 196, 2, SERVICE[0])
    svg.line(x + 290, y + 186, x + 318, y + 140, SERVICE[0], width=1.4, head=7)
    svg.disc(x + 304, y + 160, 3, SERVICE[0])
    # The fan-out goes to the viewers of post 7 only.
    for row in (0, 1, 4):
        svg.line(x - 14, y + 140 + row * 2, 236, 200 + row * 58, SERVICE[0], width=1.4, head=7, dash="5 4")
    svg.disc(262, 160, 4, SERVICE[0])
    svg.text(276, 164, "fan-out", size=11, fill=SERVICE[0])


PALE_BOX = ("#424242", PALE)


def legend(svg: Svg) -> None:
    svg.text(
        24,
        HEIGHT - 14,
        "1 react  2 rate, then store: committed with its seq  3 one encoded frame pushed to each viewer of the "
        "post  4 delivered; the ack goes last",
        size=11.5,
        fill=MUTED,
    )


def draw() -> str:
    svg = Svg(
        WIDTH,
        HEIGHT,
        label="Live reactions on a post: the lab for accounts and posts, the reactions service for the WebSocket, "
        "the store and the fan-out",
    )
    users(svg)
    lab(svg)
    service(svg)
    legend(svg)
    return svg.render()


def main() -> None:
    save("10_reactions.svg", draw())


if __name__ == "__main__":
    main()
