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

from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "images" / "09_engineio.svg"

WIDTH = 1060
HEIGHT = 720
SANS = "'Helvetica Neue', Helvetica, Arial, sans-serif"
MONO = "'DejaVu Sans Mono', Menlo, Consolas, monospace"

INK = "#212121"
MUTED = "#616161"
HTTP_C = "#6a1b9a"  # plain HTTP requests and answers
WS_C = "#1565c0"  # WebSocket frames
BEAT_C = "#2e7d32"  # heartbeats
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


def text(
    x: float,
    y: float,
    content: str,
    *,
    size: int = 13,
    anchor: str = "middle",
    colour: str = INK,
    weight: str = "normal",
    font: str = SANS,
) -> str:
    return (
        f'<text x="{x:g}" y="{y:g}" font-family="{font}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{colour}" font-weight="{weight}">{escape(content)}</text>'
    )


def sequence(x_client: float, x_server: float, title: str, server: str, rows: list[tuple[str, str, str]]) -> list[str]:
    """One sequence diagram: two lifelines and an arrow per row, labelled above the arrow."""
    bottom = TOP + STEP * len(rows) - 10
    out = [
        text((x_client + x_server) / 2, 40, title, size=17, weight="bold"),
        text(x_client, 78, "client", size=14, weight="bold"),
        text(x_server, 78, server, size=14, weight="bold"),
        f'<line x1="{x_client:g}" y1="88" x2="{x_client:g}" y2="{bottom:g}" stroke="{LIFE}" stroke-width="2"/>',
        f'<line x1="{x_server:g}" y1="88" x2="{x_server:g}" y2="{bottom:g}" stroke="{LIFE}" stroke-width="2"/>',
    ]
    for i, (direction, label, kind) in enumerate(rows):
        y = TOP + STEP * i
        colour = COLOURS[kind]
        start, end = (x_client, x_server) if direction == "→" else (x_server, x_client)
        tip = end - 8 if end > start else end + 8
        out.append(f'<line x1="{start:g}" y1="{y:g}" x2="{tip:g}" y2="{y:g}" stroke="{colour}" stroke-width="1.6"/>')
        head = f"{end:g},{y:g} {tip:g},{y - 5:g} {tip:g},{y + 5:g}"
        out.append(f'<polygon points="{head}" fill="{colour}"/>')
        out.append(text((x_client + x_server) / 2, y - 6, label, size=11, colour=colour, font=MONO))
    return out


def key() -> list[str]:
    y = 672
    lines = [
        "Engine.IO packet (first digit): 0 open · 1 close · 2 ping · 3 pong · 4 message · 5 upgrade · 6 noop",
        "Socket.IO packet (second digit, inside a 4): 0 CONNECT · 1 DISCONNECT · 2 EVENT · 3 ACK · 4 CONNECT_ERROR;"
        " then an optional ack id, then JSON",
    ]
    out = [text(WIDTH / 2, y + 22 * i, line, size=12, colour=MUTED) for i, line in enumerate(lines)]
    legend = [("HTTP", HTTP_C), ("WebSocket text frame", WS_C), ("heartbeat", BEAT_C)]
    x = 330.0
    for name, colour in legend:
        out.append(f'<rect x="{x:g}" y="{y - 42:g}" width="14" height="10" fill="{colour}"/>')
        out.append(text(x + 20, y - 33, name, size=12, anchor="start", colour=colour))
        x += 150 if name != "WebSocket text frame" else 190
    return out


def draw() -> str:
    body = [
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        *sequence(40, 490, "The lab: a plain WebSocket", "lab /ws", LAB),
        f'<line x1="530" y1="20" x2="530" y2="610" stroke="{LIFE}" stroke-dasharray="4 4"/>',
        *sequence(570, 1000, "Socket.IO: Engine.IO, then its packets", "/socket.io/", SIO),
        *key(),
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="A plain WebSocket next to Socket.IO on the wire">\n'
        + "\n".join("  " + part for part in body)
        + "\n</svg>\n"
    )


def main() -> None:
    OUTPUT.write_text(draw(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
