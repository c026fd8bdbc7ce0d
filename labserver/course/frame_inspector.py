"""``FrameInspector``: the frames a :class:`~labserver.tap.FrameTap` captures, live in a cell.

    tap = await FrameTap.for_lab(lab).start()
    inspector = FrameInspector(tap)     # subscribes to the tap on the kernel's event loop
    inspector                           # display it; run clients through tap.ws_url

One row per frame: which way it went, opcode, FIN, RSV, MASK, payload length, a
preview of the payload, and the header's bytes in hex with each field in its own
colour (the same colours as the frame layout figure of lesson 03):

* the first byte: FIN, RSV1-3 and the opcode (RFC 6455 section 5.2),
* the second byte: the MASK bit and the 7-bit payload length,
* the extended payload length: 2 bytes after 126, 8 after 127,
* the masking key: 4 bytes, present when MASK is 1 (section 5.3).

As with the dashboard, the tap's callback only records the frame and marks the view
dirty; a renderer task wakes at most ten times a second and updates the widgets
inside ``hold_sync()``. Only the last ``max_frames`` rows are kept and drawn, so the
work per render is bounded whatever the traffic. Nothing here prints.
``repr(inspector)`` is always ``FrameInspector(live view of captured frames)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections import deque
from typing import Any

import ipywidgets as widgets

from ..frames import Frame, Opcode, opcode_name, parse_header, payload_preview
from ..wire import CapturedFrame, CaptureError, Direction
from .throttle import render_loop

__all__ = ["FIELD_COLOURS", "FrameInspector", "frame_fields_html", "frame_row_html", "legend_html"]

REPR = "FrameInspector(live view of captured frames)"
RENDER_INTERVAL = 0.1  # at most 10 renders a second
MAX_FRAMES = 40
PREVIEW_CHARS = 60

#: field -> (text colour, background), shared with tools/figures/03_frame_layout.py
FIELD_COLOURS: dict[str, tuple[str, str]] = {
    "first": ("#1f4e79", "#d6e6f5"),  # FIN, RSV1-3, opcode
    "length": ("#8a4b00", "#fde3c4"),  # MASK bit and 7-bit payload length
    "extended": ("#1e6b1e", "#d4f0d4"),  # extended payload length (16 or 64 bits)
    "key": ("#8b1a1a", "#f8d4d4"),  # masking key
}

STYLE = """<style>
.frame-insp{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px;color:var(--jp-ui-font-color1,#222)}
.frame-insp table{border-collapse:collapse;width:100%}
.frame-insp th{text-align:left;font-weight:600;color:var(--jp-ui-font-color2,#666);border-bottom:1px solid var(--jp-border-color2,#ddd);padding:2px 8px 2px 0}
.frame-insp td{padding:1px 8px 1px 0;vertical-align:top;white-space:nowrap}
.frame-insp code,.frame-insp .fi-hex{font-family:var(--jp-code-font-family,monospace);font-size:12px}
.frame-insp .fi-muted{color:var(--jp-ui-font-color2,#777)}
.frame-insp .fi-up{color:#1f77b4;font-weight:700}
.frame-insp .fi-down{color:#2ca02c;font-weight:700}
.frame-insp .fi-bad{color:#c62828;font-weight:600}
.frame-insp .fi-preview{max-width:32em;overflow:hidden;text-overflow:ellipsis}
.frame-insp td.fi-wrap{white-space:normal;max-width:32em}
.frame-insp .fi-field{border-radius:3px;padding:0 2px}
</style>"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _span(field: str, data: bytes, title: str) -> str:
    colour, background = FIELD_COLOURS[field]
    return (
        f'<span class="fi-field fi-{field}" data-field="{field}" title="{_esc(title)}" '
        f'style="color:{colour};background:{background}">{data.hex(" ")}</span>'
    )


def frame_fields_html(raw_header: bytes, frame: Frame | None = None) -> str:
    """The header bytes in hex, each field in its colour, with what it says as a tooltip.

    ``raw_header`` is the header as captured (2 to 14 bytes): the bytes decide what is
    shown, so a header the codec refuses (a reserved opcode) is shown too. ``frame``,
    if given, adds to the masking key's tooltip how its first payload byte was masked.
    """
    raw = bytes(raw_header)
    if not raw:
        return '<span class="fi-hex fi-muted">(no bytes)</span>'
    first = raw[0]
    name = opcode_name(first & 0x0F)
    parts = [
        _span(
            "first",
            raw[:1],
            f"{first:08b}: FIN={first >> 7} RSV1={first >> 6 & 1} RSV2={first >> 5 & 1} RSV3={first >> 4 & 1} "
            f"opcode=0x{first & 0x0F:X} ({name})",
        )
    ]
    if len(raw) >= 2:
        second = raw[1]
        code = second & 0x7F
        meaning = {126: "126: a 16-bit length follows", 127: "127: a 64-bit length follows"}.get(
            code, f"payload length {code}"
        )
        parts.append(_span("length", raw[1:2], f"{second:08b}: MASK={second >> 7}, {meaning}"))
    header = parse_header(raw)
    if header is None:
        rest = raw[2:]
        if rest:
            parts.append(f'<span class="fi-muted" title="header cut short">{rest.hex(" ")}</span>')
        return f'<span class="fi-hex">{" ".join(parts)}</span>'
    extended = header.extended_length_bytes
    if extended:
        parts.append(
            _span(
                "extended",
                raw[2 : 2 + extended],
                f"extended payload length: {header.length} ({extended * 8}-bit, big-endian)",
            )
        )
    if header.masking_key is not None:
        key = header.masking_key
        title = f"masking key {key.hex(' ')}: payload byte i is sent XORed with key[i % 4]"
        if frame is not None and frame.payload:
            title += f" (the first, 0x{frame.payload[0]:02x}, went as 0x{frame.payload[0] ^ key[0]:02x})"
        parts.append(_span("key", key, title))
    extra = raw[header.size :]
    if extra:
        parts.append(f'<span class="fi-muted">{extra.hex(" ")}</span>')
    return f'<span class="fi-hex">{" ".join(parts)}</span>'


def legend_html() -> str:
    """What the colours of :func:`frame_fields_html` mean."""
    items = [
        ("first", b"\x81", "FIN · RSV1-3 · opcode"),
        ("length", b"\x85", "MASK · payload len (7 bits)"),
        ("extended", b"\x01\x2c", "extended length (16/64 bits)"),
        ("key", b"\x37\xfa\x21\x3d", "masking key"),
    ]
    return (
        '<div class="frame-insp fi-muted">'
        + " &nbsp; ".join(f"{_span(field, data, label)} {_esc(label)}" for field, data, label in items)
        + "</div>"
    )


def _frames(n: int) -> str:
    return "1 frame" if n == 1 else f"{n:,} frames"


def _flag(value: bool) -> str:
    return "1" if value else '<span class="fi-muted">0</span>'


def frame_row_html(captured: CapturedFrame | CaptureError, number: int) -> str:
    """One table row for a captured frame (or for bytes the tap could not read)."""
    upward = captured.direction is Direction.CLIENT_TO_SERVER
    arrow = (
        f'<span class="{"fi-up" if upward else "fi-down"}" title="{_esc(captured.direction.value)}">'
        f"{captured.direction.arrow}</span>"
    )
    lead = (
        f'<td class="fi-muted">{number}</td><td class="fi-muted">{captured.t:.3f}</td>'
        f'<td class="fi-muted">#{captured.connection_id}</td><td>{arrow}</td>'
    )
    if isinstance(captured, CaptureError):
        return (
            f'<tr data-testid="frame-error">{lead}<td class="fi-bad" colspan="5">cannot read</td>'
            f"<td>{frame_fields_html(captured.raw)}</td>"
            f'<td class="fi-bad fi-wrap">{_esc(captured.message)}</td></tr>'
        )
    frame = captured.frame
    rsv = "".join("1" if bit else "0" for bit in (frame.rsv1, frame.rsv2, frame.rsv3))
    masked = frame.masking_key is not None
    mask_cell = "yes" if masked else "no"
    if masked != upward:  # RFC 6455 section 5.1: clients mask, servers do not
        mask_cell = f'<span class="fi-bad" title="wrong way round (RFC 6455 section 5.1)">{mask_cell}!</span>'
    opcode_class = ' class="fi-bad"' if frame.opcode is Opcode.CLOSE else ""
    preview = payload_preview(frame, PREVIEW_CHARS)
    return (
        f'<tr data-testid="frame-row" data-opcode="{frame.opcode.name}" data-direction="{captured.direction.name}">'
        f"{lead}<td{opcode_class}><b>{frame.opcode.name}</b></td><td>{_flag(frame.fin)}</td>"
        f"<td>{rsv if rsv != '000' else '<span class=fi-muted>000</span>'}</td><td>{mask_cell}</td>"
        f'<td style="text-align:right">{len(frame.payload):,}</td>'
        f"<td>{frame_fields_html(captured.raw_header, frame)}</td>"
        f'<td class="fi-preview"><code>{_esc(preview)}</code></td></tr>'
    )


class FrameInspector(widgets.VBox):
    """A live table of the frames ``tap`` captures (the last ``max_frames`` of them).

    ``connection_id`` shows one connection only. Frames the tap captured before the
    inspector existed are shown too (``backfill=False`` starts empty).
    """

    def __init__(
        self,
        tap: Any,
        *,
        max_frames: int = MAX_FRAMES,
        connection_id: int | None = None,
        backfill: bool = True,
        render_interval: float = RENDER_INTERVAL,
        **kwargs: Any,
    ) -> None:
        self.tap = tap
        self.max_frames = max_frames
        self.connection_id = connection_id
        self.render_interval = render_interval
        self.renders = 0
        self.errors: deque[str] = deque(maxlen=20)  # failures of the renderer, never printed
        self._events: deque[CapturedFrame | CaptureError] = deque(maxlen=max_frames)
        self._seen = 0  # events received (the row number of the last one)
        self._counts = {Direction.CLIENT_TO_SERVER: [0, 0], Direction.SERVER_TO_CLIENT: [0, 0]}  # frames, bytes
        self._version = 0
        self._rendered = -1
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._unsubscribe: Any = None

        self.style_view = widgets.HTML(STYLE)
        self.header = widgets.HTML()
        self.legend = widgets.HTML(legend_html())
        self.table = widgets.HTML()
        super().__init__(children=[self.style_view, self.header, self.legend, self.table], **kwargs)
        self._synced = [self.header, self.table]

        if backfill:
            history: list[CapturedFrame | CaptureError] = [*tap.frames, *tap.errors]
            history.sort(key=lambda event: event.t)
            for event in history:
                self._record(event)
        self._unsubscribe = tap.subscribe(self._on_event)
        self.render(force=True)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a plain script): call render() to draw
        self._task = loop.create_task(self._render_loop(), name="frame-inspector-renderer")

    # --- text representations ---------------------------------------------------------

    def __repr__(self) -> str:
        return REPR

    @property
    def frames(self) -> list[CapturedFrame]:
        """The captured frames shown (the last ``max_frames`` events, errors left out), oldest first."""
        return [e for e in self._events if isinstance(e, CapturedFrame)]

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- feeding ---------------------------------------------------------------------------

    def _on_event(self, event: CapturedFrame | CaptureError) -> None:
        """Called by the tap for every event: record it, wake the renderer. Nothing more."""
        if self._record(event):
            self._dirty.set()

    def _record(self, event: CapturedFrame | CaptureError) -> bool:
        if self.connection_id is not None and event.connection_id != self.connection_id:
            return False
        self._events.append(event)
        self._seen += 1
        if isinstance(event, CapturedFrame):
            counts = self._counts[event.direction]
            counts[0] += 1
            counts[1] += event.size
        self._version += 1
        return True

    def clear(self) -> None:
        """Forget the rows shown so far (the tap keeps its own record)."""
        self._events.clear()
        self._seen = 0
        for counts in self._counts.values():
            counts[0] = counts[1] = 0
        self._version += 1
        self._dirty.set()

    # --- rendering ---------------------------------------------------------------------------

    async def _render_loop(self) -> None:
        def note(exc: Exception) -> None:
            self.errors.append(f"render: {type(exc).__name__}: {exc}"[:300])

        await render_loop(self._dirty, self.render, self.render_interval, note)

    def render(self, force: bool = False) -> bool:
        """Update the widgets if something changed since the last render."""
        if not force and self._rendered == self._version:
            return False
        self._rendered = self._version
        header, table = self._header_html(), self._table_html()
        with contextlib.ExitStack() as stack:
            for widget in self._synced:  # one comm message per widget that changed, sent on exit
                stack.enter_context(widget.hold_sync())
            if self.header.value != header:
                self.header.value = header
            if self.table.value != table:
                self.table.value = table
        self.renders += 1
        return True

    def _header_html(self) -> str:
        up, down = self._counts[Direction.CLIENT_TO_SERVER], self._counts[Direction.SERVER_TO_CLIENT]
        state = "stopped" if self._stopped else "live"
        where = f"connection #{self.connection_id}" if self.connection_id is not None else "every connection"
        return (
            f'<div class="frame-insp"><b data-testid="inspector-status">{state}</b> \u00b7 '
            f'<span class="fi-up">\u2192</span> {_frames(up[0])} ({up[1]:,} B) to the server \u00b7 '
            f'<span class="fi-down">\u2190</span> {_frames(down[0])} ({down[1]:,} B) to the client \u00b7 '
            f'<span class="fi-muted">{where}, last {self.max_frames} shown</span></div>'
        )

    def _table_html(self) -> str:
        first = self._seen - len(self._events) + 1
        rows = [frame_row_html(event, first + i) for i, event in enumerate(self._events)]
        if not rows:
            rows.append(
                '<tr><td colspan="11" class="fi-muted">no frame captured yet: '
                "connect a client to the tap's ws_url</td></tr>"
            )
        return (
            '<div class="frame-insp"><table data-testid="frames"><tr><th>#</th><th>t (s)</th><th>conn</th><th></th>'
            "<th>opcode</th><th>FIN</th><th>RSV</th><th>MASK</th><th>length</th><th>header</th><th>payload</th></tr>"
            f"{''.join(rows)}</table></div>"
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop following the tap: unsubscribe, stop the renderer, draw a last time."""
        self._stopped = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed already (interpreter exit)
                task.cancel()
        self._version += 1
        self.render(force=True)

    def close(self) -> None:
        """Stop, and remove the widget."""
        self.stop()
        with contextlib.suppress(Exception):
            for child in (self.style_view, self.header, self.legend, self.table):
                child.close()
        super().close()
