#!/usr/bin/env python3
"""Draw ``images/09_engineio.svg``: a plain WebSocket next to Socket.IO on the wire.

Two sequence diagrams, written as plain SVG text like the other lessons' figures:

* left, the lab: one HTTP Upgrade (RFC 6455 section 4), then JSON messages in text frames,
  and the heartbeat as RFC 6455 Ping/Pong control frames (section 5.5.2);
* right, Socket.IO (Engine.IO protocol 4): the session opened over HTTP long polling
  (``0{"sid":...}``), the upgrade to WebSocket on the same session, the probe (``2probe`` /
  ``3probe``), ``5`` (upgrade) and ``6`` (noop, which ends the pending poll), the Socket.IO
  CONNECT (``40``), events with ack ids (``421[...]`` / ``431[...]``), and the heartbeat as
  text packets ``2`` / ``3``, from the server.

A key at the bottom decodes the leading digits. Run it from anywhere; the output is deterministic::

    .venv/bin/python tools/figures/09_engineio.py
"""

from __future__ import annotations

from _svg import BLUE, GREEN, MUTED, PURPLE, Svg, save

WIDTH = 1060
HEIGHT = 720

HTTP_C = PURPLE  # plain HTTP requests and answers
WS_C = BLUE  # WebSocket frames
BEAT_C = GREEN  # heartbeats
LIFE = "#bdbdbd"

TOP = 115  # first arrow
STEP = 32  # between arrows

# (direction, label, kind): "→" client to server, "←" server to client
LAB = [
    ("→", "GET /ws?token=…  Upgrade: websocket", "http"),
    ("←", "101 Switching Protocols", "http"),
    ("←", '{"type":"welcome","socket_id":"s_…"}', "ws"),
    ("→", '{"type":"join","room":"lobby","ref":"j1"}', "ws"),
    ("←", '{"type":"ack","ref":"j1",…}', "ws"),
    ("→", '{"type":"chat","room":"lobby","text":"hi","ref":"c1"}', "ws"),
    ("←", '{"type":"ack","ref":"c1","seq":1}', "ws"),
    ("←", "Ping frame (opcode 0x9)", "beat"),
    ("→", "Pong frame (opcode 0xA)", "beat"),
]
SIO = [
    ("→", "GET /socket.io/?EIO=4&transport=polling", "http"),
    ("←", '200  0{"sid":"gRW…","upgrades":["websocket"],…}', "http"),
    ("→", "GET /socket.io/?EIO=4&transport=websocket&sid=gRW…", "http"),
    ("←", "101 Switching Protocols", "http"),
    ("→", "2probe", "ws"),
    ("←", "3probe", "ws"),
    ("→", "5", "ws"),
    ("←", "6", "ws"),
    ("→", '40{"username":"ann"}', "ws"),
    ("←", '40{"sid":"FV3…"}', "ws"),
    ("→", '421["join","lobby"]', "ws"),
    ("←", '431[{"room":"lobby",…}]', "ws"),
    ("→", '422["chat",{"room":"lobby","text":"hi"}]', "ws"),
    ("←", '432[{"seq":1}]', "ws"),
    ("←", "2   (ping, a text frame)", "beat"),
    ("→", "3   (pong)", "beat"),
]
COLOURS = {"http": HTTP_C, "ws": WS_C, "beat": BEAT_C}


def sequence(
    svg: Svg, x_client: float, x_server: float, title: str, server: str, rows: list[tuple[str, str, str]]
) -> None:
    """One sequence diagram: two lifelines and an arrow per row, labelled above the arrow."""
    bottom = TOP + STEP * len(rows) - 10
    svg.text((x_client + x_server) / 2, 40, title, size=17, anchor="middle", weight="bold")
    svg.text(x_client, 78, "client", size=14, anchor="middle", weight="bold")
    svg.text(x_server, 78, server, size=14, anchor="middle", weight="bold")
    svg.line(x_client, 88, x_client, bottom, LIFE, width=2)
    svg.line(x_server, 88, x_server, bottom, LIFE, width=2)
    for i, (direction, label, kind) in enumerate(rows):
        y = TOP + STEP * i
        colour = COLOURS[kind]
        start, end = (x_client, x_server) if direction == "→" else (x_server, x_client)
        tip = end - 8 if end > start else end + 8
        svg.line(start, y, tip, y, colour, width=1.6)
        svg.polygon([(end, y), (tip, y - 5), (tip, y + 5)], colour)
        svg.text((x_client + x_server) / 2, y - 6, label, size=11, anchor="middle", fill=colour, mono=True)


def key(svg: Svg) -> None:
    y = 672
    lines = [
        "Engine.IO packet (first digit): 0 open · 1 close · 2 ping · 3 pong · 4 message · 5 upgrade · 6 noop",
        "Socket.IO packet (second digit, inside a 4): 0 CONNECT · 1 DISCONNECT · 2 EVENT · 3 ACK · 4 CONNECT_ERROR;"
        " then an optional ack id, then JSON",
    ]
    svg.lines(WIDTH / 2, y, lines, step=22, size=12, anchor="middle", fill=MUTED)
    legend = [("HTTP", HTTP_C), ("WebSocket text frame", WS_C), ("heartbeat", BEAT_C)]
    x = 330.0
    for name, colour in legend:
        svg.rect(x, y - 42, 14, 10, colour, stroke=None, rx=0)
        svg.text(x + 20, y - 33, name, size=12, fill=colour)
        x += 150 if name != "WebSocket text frame" else 190


def draw() -> str:
    svg = Svg(WIDTH, HEIGHT, label="A plain WebSocket next to Socket.IO on the wire")
    sequence(svg, 40, 490, "The lab: a plain WebSocket", "lab /ws", LAB)
    svg.line(530, 20, 530, 610, LIFE, dash="4 4")
    sequence(svg, 570, 1000, "Socket.IO: Engine.IO, then its packets", "/socket.io/", SIO)
    key(svg)
    return svg.render()


def main() -> None:
    save("09_engineio.svg", draw())


if __name__ == "__main__":
    main()
