#!/usr/bin/env python3
"""Draw ``images/08_redis_fanout.svg``: three lab processes, one Redis channel, one database.

Top: clients behind a round-robin load balancer, each WebSocket on the process that accepted it.
Middle: the three processes (``--node n1/n2/n3``), each with its own sockets. Bottom: Redis
pub/sub (one channel, ``labserver:routed``) that carries every routed message to every process,
and the shared SQLite file that stores every chat with its room's seq *before* the ack. The
numbered path is alice's chat reaching bob on another process; the dashed box is what happens
when Redis is away: pub/sub drops, the store and the seq bring it back.

Written element by element (no plotting library), so the file is small, diffs well and is the
same every time it is drawn.

    .venv/bin/python tools/figures/08_redis_fanout.py
"""

from __future__ import annotations

from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "images" / "08_redis_fanout.svg"

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
INK = "#222222"
MUTED = "#666666"
PALE = "#f4f4f4"
PATH = "#1b5e20"  # the numbered path of alice's chat
REDIS = ("#b71c1c", "#ffebee")
STORE = ("#0d47a1", "#e3f2fd")
USERS = {"alice": "#1565c0", "bob": "#ef6c00", "carol": "#6a1b9a", "dan": "#00838f"}

WIDTH, HEIGHT = 980, 600
NODES = [("n1", ["alice", "dan"]), ("n2", ["bob"]), ("n3", ["carol"])]
NODE_X = [60, 360, 660]
NODE_W = 260


class Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str, stroke: str = INK, *, dashed: bool = False,
             rx: float = 6) -> None:  # fmt: skip
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        self.parts.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="{rx:g}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.2"{dash}/>'
        )

    def text(self, x: float, y: float, s: str, *, size: float = 12, anchor: str = "start", weight: str = "normal",
             fill: str = INK, mono: bool = False) -> None:  # fmt: skip
        family = MONO if mono else FONT
        self.parts.append(
            f'<text x="{x:g}" y="{y:g}" font-family="{family}" font-size="{size:g}" font-weight="{weight}" '
            f'text-anchor="{anchor}" fill="{fill}">{escape(s)}</text>'
        )

    def arrow(self, x1: float, y1: float, x2: float, y2: float, colour: str = MUTED, *, width: float = 1.3) -> None:
        marker = "hit" if colour == PATH else "head"
        self.parts.append(
            f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="{colour}" stroke-width="{width:g}" '
            f'marker-end="url(#{marker})"/>'
        )

    def step(self, x: float, y: float, n: int) -> None:
        """A numbered disc on the path of alice's chat."""
        self.parts.append(f'<circle cx="{x:g}" cy="{y:g}" r="9" fill="{PATH}"/>')
        self.text(x, y + 4, str(n), size=11, anchor="middle", weight="bold", fill="#ffffff")

    def render(self) -> str:
        body = "\n  ".join(self.parts)
        heads = "".join(
            f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{colour}"/></marker>'
            for name, colour in (("head", MUTED), ("hit", PATH))
        )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            'aria-label="Three lab processes behind a load balancer share one Redis channel and one database">\n'
            f"  <defs>{heads}</defs>\n"
            f'  <rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>\n  {body}\n</svg>\n'
        )


def clients_and_balancer(svg: Svg) -> dict[str, float]:
    """The clients on top, the load balancer under them; returns each client's x."""
    svg.text(24, 30, "Scaling out: three lab processes, one Redis channel, one database", size=16, weight="bold")
    xs: dict[str, float] = {}
    for node_x, (_, users) in zip(NODE_X, NODES, strict=True):
        for i, user in enumerate(users):
            x = node_x + NODE_W / 2 + (i - (len(users) - 1) / 2) * 110
            xs[user] = x
            svg.rect(x - 45, 46, 90, 30, "#ffffff", stroke=USERS[user], rx=15)
            svg.text(x, 66, user, size=13, anchor="middle", weight="bold", fill=USERS[user])
    svg.rect(60, 100, 860, 40, PALE, stroke=MUTED)
    svg.text(490, 118, "load balancer (round-robin; forwards Upgrade + Connection, adds X-Forwarded-For)",
             size=12.5, anchor="middle", weight="bold")  # fmt: skip
    svg.text(490, 133, "a WebSocket is one TCP connection: it stays on the process that accepted it, no sticky "
             "sessions needed", size=11, anchor="middle", fill=MUTED)  # fmt: skip
    for user, x in xs.items():
        svg.arrow(x, 77, x, 99)
        svg.arrow(x, 141, x, 175, colour=PATH if user in ("alice", "bob") else MUTED)
    return xs


def processes(svg: Svg, xs: dict[str, float]) -> None:
    for (name, users), x in zip(NODES, NODE_X, strict=True):
        svg.rect(x, 176, NODE_W, 120, "#ffffff")
        svg.text(x + 12, 198, f"lab process --node {name}", size=13, weight="bold", mono=True)
        svg.text(x + 12, 218, "its own sockets only:", size=11.5, fill=MUTED)
        for i, user in enumerate(users):
            svg.text(x + 24, 238 + i * 18, f"{user}'s socket", size=12, mono=True, fill=USERS[user])
        svg.text(x + 12, 284, "PUBLISH what it routes; SUBSCRIBE", size=11, fill=MUTED)
    svg.step(xs["alice"] - 14, 160, 1)
    svg.step(xs["bob"] + 14, 160, 5)


def redis_and_store(svg: Svg) -> None:
    ink, fill = REDIS
    svg.rect(60, 350, 520, 70, fill, stroke=ink)
    svg.text(76, 374, "Redis pub/sub: channel labserver:routed", size=13.5, weight="bold", fill=ink)
    svg.text(76, 394, "a pipe, not a store: each message goes to the processes subscribed", size=12)
    svg.text(76, 410, "at that moment, then is forgotten (at most once)", size=12)
    for x in NODE_X:
        mid = x + NODE_W / 2
        if mid < 580:
            svg.arrow(mid - 30, 297, mid - 30, 349, colour=PATH if x == NODE_X[0] else MUTED)
            svg.arrow(mid + 30, 349, mid + 30, 298, colour=PATH if x == NODE_X[1] else MUTED)
    svg.arrow(690, 298, 575, 351)  # n3 publishes and is subscribed too (above the store's box)
    svg.arrow(580, 364, 712, 299)
    svg.step(NODE_X[0] + NODE_W / 2 - 48, 325, 3)
    svg.step(NODE_X[1] + NODE_W / 2 + 48, 325, 4)

    ink, fill = STORE
    svg.rect(620, 350, 300, 70, fill, stroke=ink)
    svg.text(636, 374, "one SQLite file (shared --data-dir)", size=13.5, weight="bold", fill=ink)
    svg.text(636, 394, "every chat with its room's seq,", size=12)
    svg.text(636, 410, "written before the ack: the truth", size=12)
    svg.arrow(NODE_X[0] + 30, 297, 640, 349, colour=PATH)
    svg.step(NODE_X[0] + 250, 318, 2)


def legend(svg: Svg) -> None:
    steps = [
        "1  alice sends a chat to her process, n1",
        "2  n1 stores it with seq 42 (then acks it, and delivers it to its own sockets: dan)",
        "3  n1 PUBLISHes it on the channel",
        "4  Redis passes it to every subscribed process",
        "5  n2 delivers it to bob's socket; n3 has nobody in the room and drops it",
    ]
    for i, line in enumerate(steps):
        svg.text(60, 452 + i * 18, line, size=12, fill=PATH)
    svg.rect(60, 548, 860, 40, "#fff8e1", stroke="#b28704", dashed=True)
    svg.text(76, 566, "Redis away, or a process cut from it: the PUBLISH is lost for good. Nothing acknowledged is:",
             size=12, weight="bold")  # fmt: skip
    svg.text(76, 582, "seq 43 after 41 is a gap; the process (or the client, with resume after=41) reads 42 from the "
             "database.", size=12)  # fmt: skip


def draw() -> str:
    svg = Svg()
    xs = clients_and_balancer(svg)
    processes(svg, xs)
    redis_and_store(svg)
    legend(svg)
    return svg.render()


def main() -> None:
    OUT.write_text(draw(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
