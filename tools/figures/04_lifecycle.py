#!/usr/bin/env python3
"""Draw ``images/04_lifecycle.svg``: the states of one WebSocket connection and the ways out.

A state diagram written as plain SVG text (no plotting library), like the handshake
sequence of lesson 02, so it is small, sharp at any zoom and diffs like code. It shows:

* the four states of RFC 6455 (and of the browser's ``WebSocket.readyState``):
  CONNECTING (section 4, the opening handshake), OPEN (section 5: frames both ways),
  CLOSING (section 7.1.2: a Close frame sent or received) and CLOSED (section 7.1.4);
* the clean close: a Close frame each way, with the code that says why (section 7.4);
* the abnormal one: the TCP connection ends with no Close frame (a vanished network,
  an abort, a killed server) and the client reports 1006 (section 7.1.5);
* the heartbeat: ping and pong in OPEN (sections 5.5.2 and 5.5.3), and the reap of a
  peer that stops answering;
* the reconnection loop, which is not in the RFC but in every client that lasts: wait
  ``backoff(attempt)`` (exponential, full jitter), then a new connection (a new socket id)
  that resumes what it missed.

Run it from anywhere; the output is deterministic::

    .venv/bin/python tools/figures/04_lifecycle.py
"""

from __future__ import annotations

from _svg import BLUE, GREEN, INK, MUTED, ORANGE, RED, Svg, save

WIDTH = 1040
HEIGHT = 750

OPEN_C = GREEN  # the happy path
CLOSE_C = ORANGE  # the closing handshake
ABORT_C = RED  # no close frame: 1006
RETRY_C = BLUE  # reconnection
STATE_FILL = "#f5f5f5"

BOX_W, BOX_H = 164, 72
STATE_Y = 310  # the states' centre line
STATES = {  # name -> (centre x, RFC section, what holds in it)
    "CONNECTING": (110, "section 4", "opening handshake"),
    "OPEN": (380, "section 5", "frames both ways"),
    "CLOSING": (650, "section 7.1.2", "a Close frame sent"),
    "CLOSED": (925, "section 7.1.4", "TCP connection gone"),
}


def left(name: str) -> float:
    return STATES[name][0] - BOX_W / 2


def right(name: str) -> float:
    return STATES[name][0] + BOX_W / 2


def draw() -> str:
    svg = Svg(
        WIDTH,
        HEIGHT,
        label="The lifecycle of a WebSocket connection",
        desc="State diagram: CONNECTING, OPEN, CLOSING, CLOSED (RFC 6455). A clean close goes through CLOSING with "
        "a close code; a vanished network, an abort or a heartbeat reap goes straight from OPEN to CLOSED and the "
        "client reports 1006; a reconnecting client goes from CLOSED back to CONNECTING after a backoff with full "
        "jitter, with a new socket id.",
    )
    svg.text(WIDTH / 2, 34, "The life of one WebSocket connection (RFC 6455)", anchor="middle", size=20, weight="bold")
    svg.text(
        WIDTH / 2,
        56,
        "four states; two ways to end (with a Close frame, or without one); and a client that comes back",
        anchor="middle",
        size=13,
        fill=MUTED,
        italic=True,
    )

    for name, (x, section, what) in STATES.items():
        stroke = {"OPEN": OPEN_C, "CLOSING": CLOSE_C}.get(name, INK)
        svg.rect(x - BOX_W / 2, STATE_Y - BOX_H / 2, BOX_W, BOX_H, STATE_FILL, stroke, width=1.6, rx=10)
        svg.text(x, STATE_Y - 10, name, anchor="middle", size=16, weight="bold", mono=True)
        svg.text(x, STATE_Y + 10, what, anchor="middle", size=11, fill=MUTED)
        svg.text(x, STATE_Y + 25, section, anchor="middle", size=11, fill=MUTED)

    y = STATE_Y
    # CONNECTING -> OPEN
    svg.path(f"M {right('CONNECTING') + 4} {y} L {left('OPEN') - 4} {y}", OPEN_C, head=8)
    label_y = y + BOX_H / 2 + 20
    svg.lines(
        245,
        label_y,
        ["101 Switching Protocols", "+ welcome: authenticated,", "a new socket id"],
        anchor="middle",
        size=12,
        fill=OPEN_C,
        step=15,
    )
    # OPEN -> CLOSING
    svg.path(f"M {right('OPEN') + 4} {y} L {left('CLOSING') - 4} {y}", CLOSE_C, head=8)
    svg.lines(
        515,
        label_y,
        ["a Close frame sent or received,", "with a code: 1000, 1001, 1008,", "1009, 1011-1013, 4000-4999"],
        anchor="middle",
        size=12,
        fill=CLOSE_C,
        step=15,
    )
    # CLOSING -> CLOSED
    svg.path(f"M {right('CLOSING') + 4} {y} L {left('CLOSED') - 4} {y}", CLOSE_C, head=8)
    svg.lines(
        788,
        label_y,
        ["the other side's Close", "comes back; TCP", "closes (7.1.1)"],
        anchor="middle",
        size=12,
        fill=CLOSE_C,
        step=15,
    )

    # OPEN: heartbeat self-loop above.
    ox = STATES["OPEN"][0]
    top = y - BOX_H / 2
    svg.path(
        f"M {ox - 40} {top - 2} C {ox - 60} {top - 70}, {ox + 60} {top - 70}, {ox + 40} {top - 4}",
        OPEN_C,
        head=8,
    )
    svg.lines(
        ox - 52,
        top - 58,
        [
            "heartbeat: after ping_interval of silence,",
            "a ping; the peer's pong keeps it OPEN",
            "(sections 5.5.2, 5.5.3)",
        ],
        size=12,
        fill=OPEN_C,
        step=15,
        anchor="end",
    )

    # OPEN -> CLOSED with no close frame: a dashed arc above CLOSING.
    cx = STATES["CLOSED"][0]
    svg.path(
        f"M {ox + 60} {top - 2} C {ox + 200} {top - 140}, {cx - 120} {top - 140}, {cx - 20} {top - 4}",
        ABORT_C,
        width=2.2,
        dash="7 5",
        head=8,
    )
    svg.lines(
        (ox + cx) / 2 + 40,
        top - 166,
        [
            "no Close frame: the client reports 1006 (7.1.5)",
            "network vanished, TCP reset, admin abort, server killed;",
            "heartbeat reap: no pong within ping_interval / 2",
        ],
        anchor="middle",
        size=12,
        fill=ABORT_C,
        step=15,
    )

    # CONNECTING -> CLOSED: refused (below the row, short).
    bottom = y + BOX_H / 2
    # CLOSED -> CONNECTING: the reconnection loop underneath everything.
    kx = STATES["CONNECTING"][0]
    svg.path(
        f"M {cx} {bottom + 4} C {cx} {bottom + 250}, {kx} {bottom + 250}, {kx} {bottom + 6}",
        RETRY_C,
        width=2.2,
        head=8,
    )
    svg.lines(
        (kx + cx) / 2,
        bottom + 118,
        [
            "reconnect: wait backoff(attempt) = uniform(0, min(cap, base x 2^attempt))  (full jitter)",
            "then a new connection: a new socket id, the same user; resume each room after its last seq",
        ],
        anchor="middle",
        size=12,
        fill=RETRY_C,
        step=16,
    )
    svg.lines(
        (kx + cx) / 2,
        bottom + 218,
        [
            "not after 1000 (done), 1008 (refused: log in again) or 4000-4999 (the app said stop)",
            "a handshake refused (401, 403, 426) or a connection refused fails the attempt: wait longer, try again",
        ],
        anchor="middle",
        size=11,
        fill=MUTED,
        step=15,
        italic=True,
    )

    # The close codes, as the client sees them.
    rows = [
        ("1000", "normal closure", "the other side is done (the instructor closed it)"),
        ("1001", "going away", "a tab closing; a server shutting down"),
        ("1006", "abnormal closure", "never sent: no Close frame came"),
        ("1008", "policy violation", "rate limit, token expired, logged out"),
        ("1009", "message too big", "over max_message_bytes"),
        ("1011", "internal error", "a bug in the server's handler"),
        ("1012", "service restart", "the server will be back: reconnect"),
        ("1013", "try again later", "the server is full: reconnect after a longer wait"),
        ("4000-4999", "application codes", "the app's own meanings (section 7.4.2)"),
    ]
    table_top = 620
    svg.text(60, table_top, "Close codes a client sees (section 7.4)", size=13, anchor="start", weight="bold")
    for i, (code, name, why) in enumerate(rows):
        col, row = divmod(i, 5)
        x = 60 + col * 500
        ty = table_top + 24 + row * 19
        colour = ABORT_C if code == "1006" else CLOSE_C
        svg.text(x, ty, code, size=12, anchor="start", mono=True, fill=colour, weight="bold")
        svg.text(x + 80, ty, name, size=12, anchor="start", weight="bold")
        svg.text(x + 215, ty, why, size=11, anchor="start", fill=MUTED)
    return svg.render()


def main() -> None:
    save("04_lifecycle.svg", draw())


if __name__ == "__main__":
    main()
