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

from _svg import AMBER, BLUE, BLUE_TINT, DARK_GREEN, DARK_RED, MUTED, NAVY, NOTE, PALE, PURPLE, RED_TINT, Svg, save

PATH = DARK_GREEN  # the numbered path of alice's chat
REDIS = (DARK_RED, RED_TINT)
STORE = (NAVY, BLUE_TINT)
USERS = {"alice": BLUE, "bob": AMBER, "carol": PURPLE, "dan": "#00838f"}

WIDTH, HEIGHT = 980, 600
NODES = [("n1", ["alice", "dan"]), ("n2", ["bob"]), ("n3", ["carol"])]
NODE_X = [60, 360, 660]
NODE_W = 260


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
        svg.line(x, 77, x, 99, width=1.3, head=7)
        svg.line(x, 141, x, 175, PATH if user in ("alice", "bob") else MUTED, width=1.3, head=7)
    return xs


def processes(svg: Svg, xs: dict[str, float]) -> None:
    for (name, users), x in zip(NODES, NODE_X, strict=True):
        svg.rect(x, 176, NODE_W, 120, "#ffffff")
        svg.text(x + 12, 198, f"lab process --node {name}", size=13, weight="bold", mono=True)
        svg.text(x + 12, 218, "its own sockets only:", size=11.5, fill=MUTED)
        for i, user in enumerate(users):
            svg.text(x + 24, 238 + i * 18, f"{user}'s socket", size=12, mono=True, fill=USERS[user])
        svg.text(x + 12, 284, "PUBLISH what it routes; SUBSCRIBE", size=11, fill=MUTED)
    svg.disc(xs["alice"] - 14, 160, 1, PATH)
    svg.disc(xs["bob"] + 14, 160, 5, PATH)


def redis_and_store(svg: Svg) -> None:
    ink, fill = REDIS
    svg.rect(60, 350, 520, 70, fill, stroke=ink)
    svg.text(76, 374, "Redis pub/sub: channel labserver:routed", size=13.5, weight="bold", fill=ink)
    svg.text(76, 394, "a pipe, not a store: each message goes to the processes subscribed", size=12)
    svg.text(76, 410, "at that moment, then is forgotten (at most once)", size=12)
    for x in NODE_X:
        mid = x + NODE_W / 2
        if mid < 580:
            svg.line(mid - 30, 297, mid - 30, 349, PATH if x == NODE_X[0] else MUTED, width=1.3, head=7)
            svg.line(mid + 30, 349, mid + 30, 298, PATH if x == NODE_X[1] else MUTED, width=1.3, head=7)
    svg.line(690, 298, 575, 351, width=1.3, head=7)  # n3 publishes and is subscribed too (above the store's box)
    svg.line(580, 364, 712, 299, width=1.3, head=7)
    svg.disc(NODE_X[0] + NODE_W / 2 - 48, 325, 3, PATH)
    svg.disc(NODE_X[1] + NODE_W / 2 + 48, 325, 4, PATH)

    ink, fill = STORE
    svg.rect(620, 350, 300, 70, fill, stroke=ink)
    svg.text(636, 374, "one SQLite file (shared --data-dir)", size=13.5, weight="bold", fill=ink)
    svg.text(636, 394, "every chat with its room's seq,", size=12)
    svg.text(636, 410, "written before the ack: the truth", size=12)
    svg.line(NODE_X[0] + 30, 297, 640, 349, PATH, width=1.3, head=7)
    svg.disc(NODE_X[0] + 250, 318, 2, PATH)


def legend(svg: Svg) -> None:
    steps = [
        "1  alice sends a chat to her process, n1",
        "2  n1 stores it with seq 42 (then acks it, and delivers it to its own sockets: dan)",
        "3  n1 PUBLISHes it on the channel",
        "4  Redis passes it to every subscribed process",
        "5  n2 delivers it to bob's socket; n3 has nobody in the room and drops it",
    ]
    svg.lines(60, 452, steps, step=18, size=12, fill=PATH)
    svg.rect(60, 548, 860, 40, NOTE[1], stroke=NOTE[0], dash="6 4")
    svg.text(76, 566, "Redis away, or a process cut from it: the PUBLISH is lost for good. Nothing acknowledged is:",
             size=12, weight="bold")  # fmt: skip
    svg.text(76, 582, "seq 43 after 41 is a gap; the process (or the client, with resume after=41) reads 42 from the "
             "database.", size=12)  # fmt: skip


def draw() -> str:
    svg = Svg(
        WIDTH, HEIGHT, label="Three lab processes behind a load balancer share one Redis channel and one database"
    )
    xs = clients_and_balancer(svg)
    processes(svg, xs)
    redis_and_store(svg)
    legend(svg)
    return svg.render()


def main() -> None:
    save("08_redis_fanout.svg", draw())


if __name__ == "__main__":
    main()
