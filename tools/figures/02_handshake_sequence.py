#!/usr/bin/env python3
"""Draw ``images/02_handshake_sequence.svg``: the life of one WebSocket connection.

A sequence diagram written as plain SVG text (no plotting library), so the
figure is small, sharp at any zoom, and diffs like code. It shows, top to bottom:

* the TCP connection (three-way handshake);
* the client's opening handshake, an HTTP/1.1 ``GET`` with ``Upgrade``,
  ``Connection``, ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version`` and ``Origin``
  (RFC 6455 section 4.1);
* the server's checks and its ``101 Switching Protocols`` with
  ``Sec-WebSocket-Accept`` (section 4.2.2);
* frames both ways over the *same* TCP connection (section 5): unmasked from
  the server, masked from the client, and a ping/pong heartbeat (section 5.5.2);
* the closing handshake, a Close frame each way and then the TCP close (section 7).

Run it from anywhere; the output is deterministic::

    .venv/bin/python tools/figures/02_handshake_sequence.py
"""

from __future__ import annotations

from _svg import BLUE, GREEN, INK, MUTED, ORANGE, Svg, save

WIDTH = 1020
CLIENT_X = 250
SERVER_X = 770
MID_X = (CLIENT_X + SERVER_X) // 2

MONO_CHAR = 7.3  # width of one 12 px monospace character, for sizing boxes

# One colour per layer: the legend at the bottom names them.
TCP = "#607d8b"
HTTP = BLUE
FRAMES = GREEN
CLOSE = ORANGE


def message(
    svg: Svg,
    y: float,
    *,
    to_server: bool,
    label: str,
    colour: str,
    detail: str = "",
    dash: str | None = None,
) -> None:
    """An arrow between the lifelines with a label above it (and an optional detail below)."""
    x1, x2 = (CLIENT_X + 6, SERVER_X - 6) if to_server else (SERVER_X - 6, CLIENT_X + 6)
    svg.line(x1, y, x2, y, colour, width=2, dash=dash, head=9)
    svg.text(MID_X, y - 8, label, anchor="middle", size=14, fill=colour, weight="bold")
    if detail:
        svg.text(MID_X, y + 17, detail, anchor="middle", size=12, fill=MUTED, mono=True, keep_spaces=True)


def header_box(svg: Svg, top: float, lines: list[str], colour: str, tint: str) -> float:
    """HTTP text in a monospace box centred between the lifelines; returns its bottom."""
    width = max(len(line) for line in lines) * MONO_CHAR + 28
    height = 18 * len(lines) + 14
    svg.rect(MID_X - width / 2, top, width, height, fill=tint, stroke=colour)
    for i, line in enumerate(lines):
        svg.text(MID_X - width / 2 + 14, top + 22 + 18 * i, line, size=12, anchor="start", mono=True, keep_spaces=True)
    return top + height


def side_note(svg: Svg, x: float, y: float, lines: list[str], *, anchor: str, colour: str = MUTED) -> None:
    for i, line in enumerate(lines):
        svg.text(x, y + 16 * i, line, size=12, anchor=anchor, fill=colour)


def phase(svg: Svg, top: float, bottom: float, label: str, colour: str) -> None:
    """A bracket in the left margin naming what the bytes on the wire are in this stretch."""
    x = 26
    svg.line(x, top, x, bottom, colour, width=3)
    svg.line(x, top, x + 8, top, colour, width=3)
    svg.line(x, bottom, x + 8, bottom, colour, width=3)
    for i, word in enumerate(label.split("\n")):
        svg.text(
            x + 16,
            (top + bottom) / 2 - 8 * label.count("\n") + 16 * i + 4,
            word,
            size=13,
            anchor="start",
            fill=colour,
            weight="bold",
        )


def draw() -> str:
    svg = Svg(
        WIDTH,
        label="The WebSocket opening handshake, frames and closing handshake",
        desc="Sequence diagram: a TCP connection, an HTTP GET with Upgrade headers, 101 Switching Protocols with "
        "Sec-WebSocket-Accept, frames both ways over the same TCP connection, then a Close frame each way and the "
        "TCP close.",
    )
    svg.text(
        WIDTH / 2, 34, "One WebSocket connection, from TCP to close (RFC 6455)", anchor="middle", size=20, weight="bold"
    )
    svg.text(
        WIDTH / 2,
        56,
        "one TCP connection all the way down; the HTTP part is only the first exchange",
        anchor="middle",
        size=13,
        fill=MUTED,
        italic=True,
    )

    # Actors and lifelines.
    for x, name, sub in (
        (CLIENT_X, "Client", "browser tab or Python"),
        (SERVER_X, "Server", "lab server (aiohttp), one port"),
    ):
        svg.rect(x - 110, 74, 220, 50, fill="#eceff1", stroke=INK, rx=8)
        svg.text(x, 96, name, anchor="middle", size=16, weight="bold")
        svg.text(x, 115, sub, anchor="middle", size=12, fill=MUTED)

    y: float = 160
    # 1. TCP connection.
    tcp_top = y - 14
    message(svg, y, to_server=True, label="SYN", colour=TCP)
    message(svg, y + 34, to_server=False, label="SYN-ACK", colour=TCP)
    message(svg, y + 68, to_server=True, label="ACK", colour=TCP)
    side_note(svg, SERVER_X + 14, y + 26, ["TCP connection open:", "127.0.0.1:52144 ⇄ :8765"], anchor="start")
    y += 68
    tcp_bottom = y + 6

    # 2. The opening handshake: GET with Upgrade.
    y += 62
    http_top = y - 24
    message(svg, y, to_server=True, label="HTTP GET with Upgrade (section 4.1)", colour=HTTP)
    bottom = header_box(
        svg,
        y + 12,
        [
            "GET /ws?token=eyJhbGciOi… HTTP/1.1",
            "Host: 127.0.0.1:8765",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Origin: http://127.0.0.1:8765",
        ],
        HTTP,
        "#e3f2fd",
    )
    side_note(
        svg,
        CLIENT_X - 14,
        y + 40,
        ["key: 16 random bytes,", "base64-encoded,", "new for every connection"],
        anchor="end",
    )

    # The server's checks, beside its lifeline.
    check_top = y + 22
    svg.rect(SERVER_X - 5, check_top, 10, bottom - check_top + 96, fill="#bbdefb", stroke=HTTP, rx=2)
    svg.text(SERVER_X + 14, check_top + 10, "checks before upgrading:", size=12, anchor="start", weight="bold")
    for i, (check, refusal) in enumerate(
        (
            ("GET?", "else 405"),
            ("version 13?", "else 426"),
            ("key 16 bytes?", "else 400"),
            ("Origin allowed?", "else 403"),
            ("token valid?", "else 401"),
        )
    ):
        svg.text(SERVER_X + 14, check_top + 28 + 16 * i, check, size=12, anchor="start")
        svg.text(SERVER_X + 124, check_top + 28 + 16 * i, refusal, size=12, anchor="start", fill=MUTED)
    svg.text(SERVER_X + 14, check_top + 124, "then computes", size=12, anchor="start", weight="bold")
    for i, line in enumerate(
        (
            "Accept = base64(SHA-1(",
            "           key + GUID))",
            "GUID (section 1.3):",
            "  258EAFA5-E914-47DA-",
            "  95CA-C5AB0DC85B11",
        )
    ):
        svg.text(
            SERVER_X + 14,
            check_top + 142 + 16 * i,
            line,
            size=12,
            anchor="start",
            fill=HTTP,
            mono=True,
            keep_spaces=True,
        )

    # 3. 101 Switching Protocols.
    y = bottom + 56
    message(svg, y, to_server=False, label="101 Switching Protocols (section 4.2.2)", colour=HTTP)
    bottom = header_box(
        svg,
        y + 12,
        [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: upgrade",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        ],
        HTTP,
        "#e3f2fd",
    )
    side_note(
        svg,
        CLIENT_X - 14,
        y + 40,
        ["client checks the", "Accept value: proof", "the server speaks", "WebSocket"],
        anchor="end",
    )
    http_bottom = bottom + 4

    # The switch.
    y = bottom + 36
    svg.line(CLIENT_X - 120, y, SERVER_X + 150, y, FRAMES, width=1.2, dash="6 4")
    svg.text(
        MID_X,
        y - 8,
        "same TCP connection: no more HTTP, only RFC 6455 frames (section 5)",
        anchor="middle",
        size=13,
        fill=FRAMES,
        weight="bold",
    )

    # 4. Frames both ways.
    y += 46
    frames_top = y - 24
    message(
        svg,
        y,
        to_server=False,
        label="text frame, unmasked",
        colour=FRAMES,
        detail='{"type":"welcome","socket_id":"s_…"}',
    )
    y += 58
    message(
        svg,
        y,
        to_server=True,
        label="text frame, masked (clients always mask)",
        colour=FRAMES,
        detail='{"type":"join","room":"general"}',
    )
    y += 58
    message(
        svg,
        y,
        to_server=False,
        label="text frame: pushed whenever the server likes",
        colour=FRAMES,
        detail='{"type":"chat","room":"general","text":"hi",…}',
    )
    y += 58
    message(svg, y, to_server=False, label="ping (heartbeat)", colour=FRAMES, dash="5 4")
    y += 36
    message(svg, y, to_server=True, label="pong", colour=FRAMES, dash="5 4")
    side_note(svg, SERVER_X + 14, y - 22, ["no answer in time:", "the peer is dead"], anchor="start")
    frames_bottom = y + 10

    # 5. Closing handshake.
    y += 60
    close_top = y - 24
    message(svg, y, to_server=True, label="Close frame, code 1000 (section 7)", colour=CLOSE)
    y += 44
    message(svg, y, to_server=False, label="Close frame, code 1000 (echo)", colour=CLOSE)
    y += 44
    message(
        svg,
        y,
        to_server=False,
        label="TCP FIN: the server closes the connection first (section 7.1.1)",
        colour=TCP,
    )
    close_bottom = y + 8

    # Lifelines go first in the document, so that every arrow and box is drawn on top of them.
    lifeline_end = y + 40
    drawn = len(svg.parts)
    for x in (CLIENT_X, SERVER_X):
        svg.line(x, 124, x, lifeline_end, INK, width=1.2, dash="4 4")
    svg.to_back(drawn)

    phase(svg, tcp_top, tcp_bottom, "TCP", TCP)
    phase(svg, http_top, http_bottom, "HTTP/1.1\nopening\nhandshake", HTTP)
    phase(svg, frames_top, frames_bottom, "WebSocket\nframes,\nboth ways", FRAMES)
    phase(svg, close_top, close_bottom, "closing\nhandshake", CLOSE)

    # Legend.
    y = lifeline_end + 34
    x = 70
    for colour, name in (
        (TCP, "TCP segments"),
        (HTTP, "HTTP (text, once)"),
        (FRAMES, "WebSocket frames"),
        (CLOSE, "closing handshake"),
    ):
        svg.line(x, y - 5, x + 34, y - 5, colour, width=3)
        svg.text(x + 42, y, name, size=13, anchor="start")
        x += 215
    return svg.render(int(y + 26))


def main() -> None:
    save("02_handshake_sequence.svg", draw())


if __name__ == "__main__":
    main()
