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

from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "images" / "05_hybrid.svg"

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
INK = "#222222"
MUTED = "#777777"
HTTP = ("#1565c0", "#e3f2fd")  # line, fill
WS = ("#2e7d32", "#e8f5e9")
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


class Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, colours: tuple[str, str], *, dashed: bool = False) -> None:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        self.parts.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="7" fill="{colours[1]}" '
            f'stroke="{colours[0]}" stroke-width="1.4"{dash}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        s: str,
        *,
        size: float = 12,
        anchor: str = "start",
        weight: str = "normal",
        fill: str = INK,
        mono: bool = False,
    ) -> None:
        family = MONO if mono else FONT
        self.parts.append(
            f'<text x="{x:g}" y="{y:g}" font-family="{family}" font-size="{size:g}" font-weight="{weight}" '
            f'text-anchor="{anchor}" fill="{fill}">{escape(s)}</text>'
        )

    def arrow(self, x1: float, y1: float, x2: float, y2: float, colour: str, *, dashed: bool = False) -> None:
        marker = {HTTP[0]: "http", WS[0]: "ws", DISK[0]: "disk"}[colour]
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.parts.append(
            f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="{colour}" stroke-width="2"{dash} '
            f'marker-end="url(#{marker})"/>'
        )

    def render(self) -> str:
        markers = "".join(
            f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
            for name, colour in (("http", HTTP[0]), ("ws", WS[0]), ("disk", DISK[0]))
        )
        body = "\n  ".join(self.parts)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}">\n  <defs>{markers}</defs>\n'
            f'  <rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>\n  {body}\n</svg>\n'
        )


def halves(svg: Svg) -> None:
    """The two columns: what each half of the hybrid carries."""
    svg.text(WIDTH / 2, 28, "One server, one port, two halves", size=18, anchor="middle", weight="bold")
    for x, title, rows, colours in (
        (30, "HTTP: a request, one answer", OVER_HTTP, HTTP),
        (515, "WebSocket /ws: pushed as it happens", OVER_WS, WS),
    ):
        svg.rect(x, 44, 455, 196, colours)
        svg.text(x + 14, 68, title, size=14, weight="bold", fill=colours[0])
        for i, (what, how) in enumerate(rows):
            y = 94 + i * 24
            svg.text(x + 14, y, what, size=12.5, weight="bold")
            svg.text(x + 172, y, how, size=11, mono=True, fill=MUTED if colours is HTTP else INK)


def one_like(svg: Svg) -> None:
    """Bob likes Ann's post over HTTP; the lab stores it, pushes, then answers."""
    svg.text(30, 275, "A REST action becomes pushes: Bob likes Ann's post 7", size=14, weight="bold")

    # Bob on the left, the server in the middle, the receivers on the right.
    svg.rect(30, 345, 165, 62, HTTP)
    svg.text(112, 370, "Bob's browser", size=13, anchor="middle", weight="bold")
    svg.text(112, 390, "taps \u2665 on post 7", size=11.5, anchor="middle")

    svg.rect(265, 290, 445, 330, SERVER, dashed=True)
    svg.text(487, 310, "lab server: one process, one port", size=12, anchor="middle", fill=MUTED)
    svg.rect(285, 330, 175, 88, HTTP)
    svg.text(372, 354, "REST handler", size=13, anchor="middle", weight="bold")
    svg.text(372, 374, "like(request)", size=11.5, anchor="middle", mono=True)
    svg.text(372, 394, "labserver/rest.py", size=10.5, anchor="middle", fill=MUTED)
    svg.rect(515, 330, 175, 88, WS)
    svg.text(602, 354, "hub + broker", size=13, anchor="middle", weight="bold")
    svg.text(602, 374, "user:ann \u2192 her sockets", size=10.5, anchor="middle", mono=True)
    svg.text(602, 392, "post:7 \u2192 its watchers", size=10.5, anchor="middle", mono=True)
    svg.rect(285, 520, 175, 76, DISK)
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
        svg.rect(790, y, 180, 52, colours)
        svg.text(880, y + 22, who, size=12.5, anchor="middle", weight="bold")
        svg.text(880, y + 40, gets, size=11, anchor="middle", mono=True, fill=colours[0])

    # 1: the request; 2: the store; 3: publish; 4, 5: pushes; 6: the answer, last.
    svg.arrow(195, 362, 283, 362, HTTP[0])
    svg.text(239, 354, "\u2460 POST", size=11, anchor="middle", fill=HTTP[0])
    svg.arrow(372, 420, 372, 518, DISK[0])
    svg.text(380, 474, "\u2461 store", size=11, fill=DISK[0])
    svg.arrow(462, 374, 513, 374, WS[0])
    svg.text(487, 366, "\u2462", size=12, anchor="middle", fill=WS[0])
    svg.arrow(692, 350, 788, 356, WS[0])
    svg.arrow(692, 365, 788, 424, WS[0])
    svg.text(742, 336, "\u2463 user:ann", size=11, anchor="middle", fill=WS[0])
    svg.arrow(692, 405, 788, 494, WS[0])
    svg.text(662, 462, "\u2464 post:7", size=11, fill=WS[0])
    svg.arrow(283, 398, 197, 398, HTTP[0])
    svg.text(239, 418, "\u2465 200", size=11, anchor="middle", fill=HTTP[0])
    svg.text(30, 460, "\u2465 comes after \u2463 and \u2464:", size=11.5, fill=MUTED)
    svg.text(30, 477, "when Bob's 200 arrives, the pushes", size=11.5, fill=MUTED)
    svg.text(30, 494, "have been written to every socket.", size=11.5, fill=MUTED)
    svg.text(30, 520, "The like is stored; the counter", size=11.5, fill=MUTED)
    svg.text(30, 537, "push is not (a reconnecting page", size=11.5, fill=MUTED)
    svg.text(30, 554, "fetches the post over HTTP).", size=11.5, fill=MUTED)


def main() -> None:
    svg = Svg()
    halves(svg)
    one_like(svg)
    OUT.write_text(svg.render(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
