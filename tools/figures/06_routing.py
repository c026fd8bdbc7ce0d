#!/usr/bin/env python3
"""Draw ``images/06_routing.svg``: the hub's maps, and three ways a message finds its sockets.

Top: the maps the lab's hub keeps (``labserver/hub.py``): user id -> the *set* of that
user's sockets, room -> member sockets, socket id -> the connection. Middle: the same
six sockets three times, with the recipients of a room chat, a direct message and a
one-socket signal filled in, and the lookup each one makes. Bottom: a second server
process has maps of its own, which is where lesson 08's broker (Redis pub/sub) comes in.

Written element by element (no plotting library), so the file is small, diffs well and
is the same every time it is drawn.

    .venv/bin/python tools/figures/06_routing.py
"""

from __future__ import annotations

from _svg import AMBER, BLUE, DARK_GREEN, INK, MUTED, NOTE, PALE, PURPLE, RULE, Svg, save

HIT = (DARK_GREEN, "#c8e6c9")  # text, fill of a socket that receives the message
USERS = {"alice": BLUE, "bob": AMBER, "carol": PURPLE}

WIDTH, HEIGHT = 980, 640

# (user, socket id, what it is, rooms it joined)
SOCKETS = [
    ("alice", "s_A1", "laptop", {"general"}),
    ("alice", "s_A2", "phone", set()),
    ("bob", "s_B1", "tab 1", set()),
    ("bob", "s_B2", "tab 2", {"general"}),
    ("bob", "s_B3", "phone", set()),
    ("carol", "s_C1", "laptop", {"general"}),
]

PANELS = [
    ("chat to #general", 'rooms["general"]', lambda user, sid, rooms: "general" in rooms),
    ("dm bob \u2192 alice", "user_sockets[bob] \u222a user_sockets[alice]", lambda u, s, r: u in ("alice", "bob")),
    ("signal to_socket s_A2", 'connections["s_A2"]', lambda user, sid, rooms: sid == "s_A2"),
]


def maps(svg: Svg) -> None:
    """The three maps of one server process, as the hub keeps them."""
    svg.text(24, 32, "One server process keeps three maps (labserver/hub.py)", size=16, weight="bold")
    boxes: list[tuple[str, list[tuple[str | None, str]]]] = [
        ("user_sockets: user id \u2192 set of sockets", [
            ("alice", "1 alice \u2192 {s_A1, s_A2}"),
            ("bob", "2 bob \u2192 {s_B1, s_B2, s_B3}"),
            ("carol", "3 carol \u2192 {s_C1}"),
        ]),
        ("rooms: room \u2192 member sockets", [
            (None, "general \u2192 {s_A1, s_B2, s_C1}"),
            (None, ""),
            (None, "(a DM room has no members:"),
            (None, " it is its two users' sockets)"),
        ]),
        ("connections: socket id \u2192 one socket", [
            (None, "s_A1 \u2192 alice's laptop"),
            (None, "s_A2 \u2192 alice's phone"),
            (None, "... one entry per open socket"),
        ]),
    ]  # fmt: skip
    x = 24
    for title, rows in boxes:
        svg.rect(x, 48, 300, 122, PALE)
        svg.text(x + 12, 70, title, size=12.5, weight="bold")
        for i, (user, row) in enumerate(rows):
            svg.text(x + 12, 96 + i * 19, row, size=12, mono=True, fill=USERS.get(user or "", INK))
        x += 316


def panel(svg: Svg, x: float, y: float, title: str, lookup: str, hit: object) -> int:
    """One routing example: the six sockets by user, the recipients filled in; returns how many."""
    w = 300
    svg.rect(x, y, w, 318, "#ffffff", stroke=MUTED)
    svg.text(x + w / 2, y + 24, title, size=14, weight="bold", anchor="middle")
    svg.text(x + w / 2, y + 44, lookup, size=11, mono=True, anchor="middle", fill=MUTED)
    count, row_y, last_user = 0, y + 60, None
    for user, sid, what, rooms in SOCKETS:
        if user != last_user:
            row_y += 0 if last_user is None else 10  # a gap between users
            svg.text(x + 16, row_y + 23, user, size=13, weight="bold", fill=USERS[user])
            last_user = user
        receives = hit(user, sid, rooms)  # type: ignore[operator]
        count += bool(receives)
        ink, fill = HIT if receives else (MUTED, PALE)
        svg.rect(x + 84, row_y + 4, 196, 28, fill, stroke=ink if receives else RULE, rx=14)
        label = f"{sid}  {what}" + ("  \u2714" if receives else "")
        svg.text(x + 100, row_y + 23, label, size=12, mono=True, fill=ink, weight="bold" if receives else "normal")
        row_y += 34
    svg.text(x + w / 2, y + 306, f"{count} socket{'s' if count != 1 else ''} written to", size=12,
             anchor="middle", fill=HIT[0], weight="bold")  # fmt: skip
    return count


def cross_process(svg: Svg, y: float) -> None:
    svg.rect(24, y, 932, 58, NOTE[1], stroke=NOTE[0], dash="6 4")
    svg.text(40, y + 24, "A second server process has maps of its own.", size=13, weight="bold")
    svg.text(
        40,
        y + 44,
        "If bob's phone is connected there, no lookup here finds it: every process publishes what it routes to a "
        "broker (lesson 08: Redis pub/sub).",
        size=12,
    )


def draw() -> str:
    svg = Svg(
        WIDTH,
        HEIGHT,
        label="The user id to sockets map, and routing to a room, to every tab of a user, to one socket",
    )
    maps(svg)
    top = 196
    for i, (title, lookup, hit) in enumerate(PANELS):
        panel(svg, 24 + i * 316, top, title, lookup, hit)
    cross_process(svg, top + 336 + 32)
    return svg.render()


def main() -> None:
    save("06_routing.svg", draw())


if __name__ == "__main__":
    main()
