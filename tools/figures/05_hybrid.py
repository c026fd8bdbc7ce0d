#!/usr/bin/env python3
"""Draw ``images/05_hybrid.svg``: the hybrid design, and how a REST action becomes pushes.

Top: what goes over HTTP (a request and one answer: sign-up, log-in, profile, uploads,
cacheable downloads, the actions themselves) and what over the WebSocket (pushed as it
happens: chat, typing, presence, notifications, live counters). Bottom: one like, end to
end, as the lab does it (``labserver/rest.py``, ``like``): Bob's ``POST`` reaches the
REST handler, which stores the like, publishes ``post_updated`` to the post's topic and
a notification to every socket of the author, and only then answers Bob's request.

Written element by element (no plotting library), so the file is small, diffs well and
is the same every time it is drawn.

    .venv/bin/python tools/figures/05_hybrid.py
"""

from __future__ import annotations

from _svg import BLUE, BLUE_TINT, GREEN, GREEN_TINT, INK, MUTED, Svg, save

HTTP = (BLUE, BLUE_TINT)  # line, fill
WS = (GREEN, GREEN_TINT)
DISK = ("#6d4c41", "#efebe9")
SERVER = ("#455a64", "#fafafa")

WIDTH, HEIGHT = 1000, 640

OVER_HTTP = [
    ("sign-up, log-in", "POST /api/signup, /api/login"),
    ("profile", "GET /api/me"),
    ("image upload", "POST /api/uploads (multipart)"),
    ("image download", "GET /uploads/\u2026: ETag \u2192 304"),
    ("likes, comments", "POST /api/posts/7/like, \u2026"),
    ("history", "GET /api/rooms/{room}/messages"),
]
OVER_WS = [
    ("chat in rooms", "to every socket in the room, seq, ack"),
    ("typing", "throttled 1/s, expires, never stored"),
    ("presence", "topic presence: online / offline"),
    ("notifications", "user:<id> \u2192 every tab of that user"),
    ("live counters", "topic post:<id> \u2192 post_updated"),
    ("after a reconnect", "resume: the missed chats, in order"),
]


def box(svg: Svg, x: float, y: float, w: float, h: float, colours: tuple[str, str], *, dashed: bool = False) -> None:
    """A box outlined in ``colours[0]`` and filled with ``colours[1]``."""
    svg.rect(x, y, w, h, colours[1], colours[0], width=1.4, rx=7, dash="6 4" if dashed else None)


def halves(svg: Svg) -> None:
    """The two columns: what each half of the hybrid carries."""
    svg.text(WIDTH / 2, 28, "One server, one port, two halves", size=18, anchor="middle", weight="bold")
    for x, title, rows, colours in (
        (30, "HTTP: a request, one answer", OVER_HTTP, HTTP),
        (515, "WebSocket /ws: pushed as it happens", OVER_WS, WS),
    ):
        box(svg, x, 44, 455, 196, colours)
        svg.text(x + 14, 68, title, size=14, weight="bold", fill=colours[0])
        for i, (what, how) in enumerate(rows):
            y = 94 + i * 24
            svg.text(x + 14, y, what, size=12.5, weight="bold")
            svg.text(x + 172, y, how, size=11, mono=True, fill=MUTED if colours is HTTP else INK)


def one_like(svg: Svg) -> None:
    """Bob likes Ann's post over HTTP; the lab stores it, pushes, then answers."""
    svg.text(30, 275, "A REST action becomes pushes: Bob likes Ann's post 7", size=14, weight="bold")

    # Bob on the left, the server in the middle, the receivers on the right.
    box(svg, 30, 345, 165, 62, HTTP)
    svg.text(112, 370, "Bob's browser", size=13, anchor="middle", weight="bold")
    svg.text(112, 390, "taps \u2665 on post 7", size=11.5, anchor="middle")

    box(svg, 265, 290, 445, 330, SERVER, dashed=True)
    svg.text(487, 310, "lab server: one process, one port", size=12, anchor="middle", fill=MUTED)
    box(svg, 285, 330, 175, 88, HTTP)
    svg.text(372, 354, "REST handler", size=13, anchor="middle", weight="bold")
    svg.text(372, 374, "like(request)", size=11.5, anchor="middle", mono=True)
    svg.text(372, 394, "labserver/rest.py", size=10.5, anchor="middle", fill=MUTED)
    box(svg, 515, 330, 175, 88, WS)
    svg.text(602, 354, "hub + broker", size=13, anchor="middle", weight="bold")
    svg.text(602, 374, "user:ann \u2192 her sockets", size=10.5, anchor="middle", mono=True)
    svg.text(602, 392, "post:7 \u2192 its watchers", size=10.5, anchor="middle", mono=True)
    box(svg, 285, 520, 175, 76, DISK)
    svg.text(372, 544, "SQLite (WAL)", size=13, anchor="middle", weight="bold")
    svg.text(372, 564, "likes, posts.like_count,", size=10.5, anchor="middle", mono=True)
    svg.text(372, 580, "notifications", size=10.5, anchor="middle", mono=True)

    receivers = [
        (330, "Ann, laptop tab", "notification", WS),
        (400, "Ann, phone", "notification", WS),
        (470, "Cat, viewing post 7", "post_updated", WS),
        (540, "Dan, elsewhere", "nothing", (MUTED, "#f5f5f5")),
    ]
    for y, who, gets, colours in receivers:
        box(svg, 790, y, 180, 52, colours)
        svg.text(880, y + 22, who, size=12.5, anchor="middle", weight="bold")
        svg.text(880, y + 40, gets, size=11, anchor="middle", mono=True, fill=colours[0])

    # 1: the request; 2: the store; 3: publish; 4, 5: pushes; 6: the answer, last.
    svg.line(195, 362, 283, 362, HTTP[0], width=2, head=7)
    svg.text(239, 354, "\u2460 POST", size=11, anchor="middle", fill=HTTP[0])
    svg.line(372, 420, 372, 518, DISK[0], width=2, head=7)
    svg.text(380, 474, "\u2461 store", size=11, fill=DISK[0])
    svg.line(462, 374, 513, 374, WS[0], width=2, head=7)
    svg.text(487, 366, "\u2462", size=12, anchor="middle", fill=WS[0])
    svg.line(692, 350, 788, 356, WS[0], width=2, head=7)
    svg.line(692, 365, 788, 424, WS[0], width=2, head=7)
    svg.text(742, 336, "\u2463 user:ann", size=11, anchor="middle", fill=WS[0])
    svg.line(692, 405, 788, 494, WS[0], width=2, head=7)
    svg.text(662, 462, "\u2464 post:7", size=11, fill=WS[0])
    svg.line(283, 398, 197, 398, HTTP[0], width=2, head=7)
    svg.text(239, 418, "\u2465 200", size=11, anchor="middle", fill=HTTP[0])
    svg.text(30, 460, "\u2465 comes after \u2463 and \u2464:", size=11.5, fill=MUTED)
    svg.text(30, 477, "when Bob's 200 arrives, the pushes", size=11.5, fill=MUTED)
    svg.text(30, 494, "have been written to every socket.", size=11.5, fill=MUTED)
    svg.text(30, 520, "The like is stored; the counter", size=11.5, fill=MUTED)
    svg.text(30, 537, "push is not (a reconnecting page", size=11.5, fill=MUTED)
    svg.text(30, 554, "fetches the post over HTTP).", size=11.5, fill=MUTED)


def main() -> None:
    svg = Svg(
        WIDTH,
        HEIGHT,
        label="The hybrid design: what goes over HTTP and what over the WebSocket, and one like over HTTP "
        "becoming pushes over WebSockets",
    )
    halves(svg)
    one_like(svg)
    save("05_hybrid.svg", svg.render())


if __name__ == "__main__":
    main()
