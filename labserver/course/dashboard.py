"""``Dashboard``: the lab server, live, in a notebook cell.

    dash = Dashboard(lab, crowd)   # starts watching /observe on the kernel's event loop
    await dash.ready()             # the first snapshot has arrived
    dash                           # display it

Two background tasks run on the kernel's event loop:

* the *reader* keeps one WebSocket open on ``lab.observe_url`` and applies every
  message to an :class:`~labserver.course.observed.ObservedState` (O(events) per
  batch; the server sends at most ten batches a second). If the lab restarts it
  reconnects quietly and the next snapshot replaces the state;
* the *renderer* wakes at most ten times a second, does nothing unless the state
  changed, and then updates every widget inside ``hold_sync()``, so one render is
  at most one comm message per widget whose text actually changed. What it draws is
  bounded (15 flow lines, 30 user rows, 12 rooms, a 120-point sparkline), so neither
  the browser's nor the kernel's work grows with the message rate.

Background tasks never print or log: in a notebook that output would land in
whichever cell runs at the time. Failures are kept in :attr:`Dashboard.errors` and
the last one is shown in the status line.

``repr(dash)`` is always ``Dashboard(live view of the lab server)`` so that saved
notebook outputs (compared by nbval as text/plain) do not change with the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import inspect
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any

import ipywidgets as widgets
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..chaos import chaos_labels
from .observed import ObservedState
from .throttle import render_loop

__all__ = ["Dashboard", "flow_text", "sparkline_svg"]

REPR = "Dashboard(live view of the lab server)"
SEP = " \u00b7 "
RENDER_INTERVAL = 0.1  # at most 10 renders a second
IDLE_WAKE = 1.0  # the renderer also looks at the crowd's size this often
FLOW_SHOWN = 15
USERS_SHOWN = 30
ROOMS_SHOWN = 12
MEMBERS_SHOWN = 12
ERROR_SHOWN_FOR = 30.0  # seconds the status line shows the last error
DROP_OPTIONS_INTERVAL = 1.0  # the connection picker's options change at most once a second
MAX_OBSERVE_MESSAGE = 64 * 1024 * 1024  # a snapshot of many thousands of sockets is big

# websockets logs through this logger only: no handler that writes, no propagation to
# the root logger, so Python's last-resort handler never prints to stderr either.
_QUIET = logging.getLogger("labserver.course.dashboard.websocket")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

_TOKEN_IN_URL = re.compile(r"((?:admin_)?token=)[^&\s'\"]+")  # the admin's, or a student's (class mode)
_CONNECT_ERRORS = (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI, EOFError)

STYLE = """<style>
.lab-dash{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px;color:var(--jp-ui-font-color1,#222);line-height:1.35}
.lab-dash h4{margin:6px 0 4px;font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.04em;color:var(--jp-ui-font-color2,#666)}
.lab-dash-head{display:flex;align-items:center;gap:28px;flex-wrap:wrap}
.lab-dash-big{font-size:44px;font-weight:700;line-height:1;font-variant-numeric:tabular-nums}
.lab-dash-muted{color:var(--jp-ui-font-color2,#777)}
.lab-dash-rates{display:grid;grid-template-columns:auto auto;gap:2px 10px;align-items:baseline}
.lab-dash-rates b{font-size:16px;text-align:right;font-variant-numeric:tabular-nums}
.lab-dash table{border-collapse:collapse;width:100%}
.lab-dash th{text-align:left;font-weight:600;color:var(--jp-ui-font-color2,#666);border-bottom:1px solid var(--jp-border-color2,#ddd)}
.lab-dash td,.lab-dash th{padding:2px 8px 2px 0;vertical-align:top}
.lab-dash-dot{display:inline-block;width:9px;height:9px;border-radius:50%;background:#bbb;margin-right:6px}
.lab-dash-dot.on{background:#2ca02c}
.lab-dash-chip{display:inline-block;font-family:var(--jp-code-font-family,monospace);font-size:11px;padding:0 7px;margin:1px 4px 1px 0;border-radius:9px;background:var(--jp-layout-color2,#eef);border:1px solid var(--jp-border-color2,#ccd)}
.lab-dash-flow{list-style:none;margin:0;padding:0;font-family:var(--jp-code-font-family,monospace);font-size:12px;min-height:16em}
.lab-dash-flow li{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.lab-dash-flow li:first-child{font-weight:600}
.lab-dash-room{margin:2px 0}
.lab-dash-status .lab-dash-dot{margin-left:0}
</style>"""


# --- pure formatting helpers (tested without widgets) --------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def human_bytes(n: Any) -> str:
    n = n if isinstance(n, int | float) else 0
    if n < 1024:
        return f"{int(n)} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n / (1024 * 1024):.1f} MB"


def target_text(kind: Any, name: Any) -> str:
    """How a routed message's target reads: ``#general``, ``dm:1:2``, ``users 3,5``..."""
    if kind == "room":
        return f"#{name}"
    if kind == "dm":
        return str(name)
    if kind == "users":
        return f"user {name}" if "," not in str(name) else f"users {name}"
    if kind == "topic":
        return f"topic {name}"
    if kind == "socket":
        return f"socket {name}"
    return str(name)


def flow_text(entry: dict[str, Any]) -> str:
    """One flow line: ``alice → #general · chat · 58 B → 12 sockets``."""
    sender = entry.get("from") or "server"
    target = target_text(entry.get("to_kind"), entry.get("to_name"))
    recipients = entry.get("recipients") or 0
    return (
        f"{sender} \u2192 {target} \u00b7 {entry.get('type') or '?'} \u00b7 {human_bytes(entry.get('size'))}"
        f" \u2192 {_plural(recipients, 'socket')}"
    )


def sparkline_svg(values: Iterable[int | float], width: int = 180, height: int = 44, testid: str = "sparkline") -> str:
    """A small SVG line of ``values`` (oldest first), scaled from 0 to their maximum."""
    points = list(values)
    if not points:
        points = [0]
    if len(points) == 1:
        points = points * 2
    top = max(max(points), 1)
    pad = 2
    step = (width - 2 * pad) / (len(points) - 1)
    coords = [(pad + i * step, height - pad - (v / top) * (height - 2 * pad)) for i, v in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area = f"{pad:.1f},{height - pad:.1f} {line} {coords[-1][0]:.1f},{height - pad:.1f}"
    return (
        f'<svg data-testid="{testid}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="connections over time, max {top}">'
        f'<polygon points="{area}" fill="#1f77b4" fill-opacity="0.12" stroke="none"/>'
        f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.6" '
        f'stroke-linejoin="round" stroke-linecap="round"/>'
        f'<circle cx="{coords[-1][0]:.1f}" cy="{coords[-1][1]:.1f}" r="2.4" fill="#1f77b4"/>'
        f"</svg>"
    )


def _number(value: Any, unit: str = "", digits: int = 1) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "\u2013"
    return f"{value:,.{digits}f}{unit}"


# --- the widget -----------------------------------------------------------------------


class Dashboard(widgets.VBox):
    """A live view of the lab server: connections, users and their sockets, rooms,
    the message flow and the server's rates; with controls for a crowd and for
    dropping one connection.

    ``lab`` needs ``observe_url`` (and ``drop(socket_id)`` for the drop control); a class's
    shared lab shows the class's public traffic (no private room, DM pair or text) and no drop
    control, and :meth:`drop` raises its one-line ``InstructorOnly``;
    ``crowd`` (optional) needs ``grow(n, progress=...)``, ``shrink(n)``, ``pause()``,
    ``resume()``, ``paused`` and ``size``.
    """

    def __init__(self, lab: Any, crowd: Any = None, *, render_interval: float = RENDER_INTERVAL, **kwargs: Any) -> None:
        self.lab = lab
        self.crowd = crowd
        self.state = ObservedState()
        self.errors: deque[str] = deque(maxlen=50)
        self.renders = 0  # how many times the widgets were updated
        self.connected = False
        self.connections_made = 0  # successful /observe connections (1 + reconnects)
        self.resyncs = 0  # reconnections to get a fresh snapshot after lost events
        self.render_interval = render_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._actions: set[asyncio.Task[Any]] = set()
        self._ws: Any = None
        self._ready = asyncio.Event()
        self._dirty = asyncio.Event()
        self._stopped = False
        self._ui_version = 0
        self._rendered_key: Any = None
        self._busy: str | None = None  # "grow" / "shrink" while the crowd changes
        self._progress_state: tuple[int, int] | None = None
        self._dropping = False
        self._note = ""  # the last thing a control did
        self._syncing_pause = False
        self._options_at = (-1, -float("inf"))  # (sockets_version, time) of the picker's options
        self._options_later = False
        self._error_until = 0.0  # the status line shows the last error until then
        self._error_at = 0.0  # when the last error happened (monotonic)
        self._connected_at = 0.0  # when /observe last connected (monotonic)

        view = {"margin": "0 0 6px 0"}
        self.style_view = widgets.HTML(STYLE)
        self.header = widgets.HTML(layout=widgets.Layout(**view))
        self.status_view = widgets.HTML()
        self.users_view = widgets.HTML(layout=widgets.Layout(width="55%", min_width="280px", margin="0 16px 0 0"))
        self.rooms_view = widgets.HTML(layout=widgets.Layout(width="40%", min_width="200px"))
        self.flow_view = widgets.HTML(layout=widgets.Layout(**view))

        self.add_button = widgets.Button(description="add 10 users", icon="user-plus", tooltip="crowd.grow(10)")
        self.remove_button = widgets.Button(
            description="remove 10 users", icon="user-times", tooltip="crowd.shrink(10)"
        )
        self.pause_button = widgets.ToggleButton(
            value=False, description="pause crowd", icon="pause", tooltip="crowd.pause() / crowd.resume()"
        )
        self.crowd_label = widgets.HTML()
        self.progress = widgets.IntProgress(
            value=0, min=0, max=10, description="connecting", layout=widgets.Layout(display="none")
        )
        self.crowd_box = widgets.HBox(
            [self.add_button, self.remove_button, self.pause_button, self.crowd_label],
            layout=widgets.Layout(display="flex" if crowd is not None else "none", align_items="center"),
        )
        self.drop_choice = widgets.Dropdown(
            options=[], value=None, description="connection", layout=widgets.Layout(width="320px")
        )
        self.drop_button = widgets.Button(
            description="drop it",
            icon="unlink",
            button_style="danger",
            tooltip="lab.drop(socket_id): the server aborts the TCP connection",
            disabled=True,
        )
        self.drop_box = widgets.HBox([self.drop_choice, self.drop_button], layout=widgets.Layout(display="none"))

        self.add_button.on_click(lambda _: self._on_crowd_click("grow"))
        self.remove_button.on_click(lambda _: self._on_crowd_click("shrink"))
        self.pause_button.observe(self._on_pause_toggle, names="value")
        self.drop_button.on_click(self._on_drop_click)

        children = [
            self.style_view,
            self.header,
            self.status_view,
            widgets.HBox([self.users_view, self.rooms_view], layout=widgets.Layout(flex_flow="row wrap")),
            self.flow_view,
            self.crowd_box,
            self.progress,
            self.drop_box,
        ]
        super().__init__(children=children, **kwargs)
        self._synced = [
            self,
            self.header,
            self.status_view,
            self.users_view,
            self.rooms_view,
            self.flow_view,
            self.add_button,
            self.remove_button,
            self.pause_button,
            self.crowd_label,
            self.progress,
            self.progress.layout,
            self.drop_choice,
            self.drop_button,
            self.drop_box,
            self.drop_box.layout,
        ]
        self.render(force=True)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet (a plain script): start() or ready() starts it later
        self.start()

    # --- text representations ------------------------------------------------------

    def __repr__(self) -> str:
        return REPR

    def summary(self) -> str:
        """A short text summary of what the dashboard shows (stable for a given state)."""
        return self.state.describe()

    # --- lifecycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a background task is alive."""
        return any(not t.done() for t in self._tasks)

    def start(self) -> None:
        """Start watching on the running event loop (done by the constructor when there is one)."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopped = False
        self._tasks = {
            loop.create_task(self._read_loop(), name="dashboard-reader"),
            loop.create_task(self._render_loop(), name="dashboard-renderer"),
        }

    async def ready(self, timeout: float = 10.0) -> Dashboard:
        """Wait for the first snapshot from the lab (and draw it)."""
        if not self.running and not self._stopped:
            self.start()
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            last = self.errors[-1] if self.errors else "no error recorded"
            raise TimeoutError(f"no snapshot from {self._display_url()} within {timeout:g} s ({last})") from None
        self.render()
        return self

    def close(self) -> None:
        """Stop the background tasks (closing the WebSocket) and remove the widget."""
        self._cancel()
        with contextlib.suppress(Exception):
            for child in self._synced[1:] + [self.style_view, self.crowd_box]:
                child.close()
        super().close()

    async def stop(self) -> None:
        """Stop the background tasks and wait for them; the widget stays, marked stopped."""
        tasks = self._cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        self.render(force=True)

    def _cancel(self) -> list[asyncio.Task[Any]]:
        self._stopped = True
        self.connected = False
        tasks = [t for t in (*self._tasks, *self._actions) if not t.done()]
        for task in tasks:
            with contextlib.suppress(RuntimeError):  # its loop is closed already (interpreter exit)
                task.cancel()
        return tasks

    # --- feeding the model ----------------------------------------------------------------

    def _url(self) -> str:
        try:
            return str(self.lab.observe_url)
        except Exception:
            return "(lab has no observe_url)"

    def _display_url(self) -> str:
        """The /observe URL without its query string: it carries the admin token (a student's, in class)."""
        return self._url().split("?", 1)[0]

    def _scrub(self, text: str) -> str:
        """``text`` without the admin token, wherever an error message may have put it."""
        token = getattr(self.lab, "admin_token", None)
        if isinstance(token, str) and token:
            text = text.replace(token, "***")
        return _TOKEN_IN_URL.sub(r"\1***", text)

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply one /observe message to the model and wake the renderer."""
        changed = self.state.apply(message)
        if isinstance(message, dict) and message.get("type") == "snapshot":
            self._ready.set()
        if changed:
            self._dirty.set()
        return changed

    def _note_error(self, where: str, exc: BaseException) -> None:
        text = self._scrub(f"{where}: {type(exc).__name__}: {exc}")[:300]
        if not self.errors or self.errors[-1] != text:  # a restarting lab refuses many times alike
            self.errors.append(text)
        self._error_at = time.monotonic()
        self._error_until = self._error_at + ERROR_SHOWN_FOR
        self._touch()

    async def _read_loop(self) -> None:
        delay = 0.1
        while True:
            got_snapshot = False
            try:
                async with websockets.connect(
                    self._url(),
                    open_timeout=5,
                    close_timeout=1,
                    max_size=MAX_OBSERVE_MESSAGE,
                    compression=None,
                    proxy=None,
                    logger=_QUIET,
                ) as ws:
                    self._ws = ws
                    self.connected = True
                    self._connected_at = time.monotonic()
                    self.connections_made += 1
                    self._touch()
                    async for raw in ws:
                        try:
                            message = json.loads(raw)
                        except ValueError as exc:
                            self._note_error("observe message", exc)
                            continue
                        if not isinstance(message, dict):
                            continue
                        self.apply(message)
                        got_snapshot = got_snapshot or message.get("type") == "snapshot"
                        if self.state.needs_resync:  # events were lost: reconnect for a fresh snapshot
                            self.resyncs += 1
                            break
            except asyncio.CancelledError:
                raise
            except _CONNECT_ERRORS as exc:  # the lab is (re)starting or gone: try again quietly
                self._note_error("connect", exc)
            except Exception as exc:
                self._note_error("reader", exc)
            finally:
                self._ws = None
                self.connected = False
                self._touch()
            if got_snapshot:
                delay = 0.1
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)

    async def _render_loop(self) -> None:
        await render_loop(
            self._dirty,
            self.render,
            self.render_interval,
            lambda exc: self._note_error("render", exc),
            idle_wake=IDLE_WAKE,
        )

    def _touch(self) -> None:
        """Something outside the model changed (connection, a control): render again."""
        self._ui_version += 1
        self._dirty.set()

    # --- rendering --------------------------------------------------------------------

    def _crowd_key(self) -> tuple[Any, Any]:
        crowd = self.crowd
        if crowd is None:
            return (None, None)
        try:
            return (int(crowd.size), bool(crowd.paused))
        except Exception:
            return (None, None)

    def _can_drop(self) -> bool:
        """The lab can drop connections (a LabServer needs an admin token for it)."""
        return callable(getattr(self.lab, "drop", None)) and bool(getattr(self.lab, "admin_token", True))

    def render(self, force: bool = False) -> bool:
        """Update the widgets from the model if it changed since the last render."""
        crowd_key = self._crowd_key()
        key = (self.state.version, self._ui_version, self.connected, crowd_key)
        if not force and key == self._rendered_key:
            return False
        self._rendered_key = key
        updates: list[tuple[widgets.Widget, str, Any]] = [
            (self.header, "value", self._header_html()),
            (self.status_view, "value", self._status_html()),
            (self.users_view, "value", self._users_html()),
            (self.rooms_view, "value", self._rooms_html()),
            (self.flow_view, "value", self._flow_html()),
        ]
        updates += self._control_updates(crowd_key)
        with contextlib.ExitStack() as stack:
            for widget in self._synced:  # one comm message per widget that changed, sent on exit
                stack.enter_context(widget.hold_sync())
            for widget, name, value in updates:
                if getattr(widget, name) != value:
                    if widget is self.pause_button and name == "value":
                        self._syncing_pause = True
                        try:
                            setattr(widget, name, value)
                        finally:
                            self._syncing_pause = False
                    else:
                        setattr(widget, name, value)
            self._update_drop_options()
        self.renders += 1
        return True

    def _header_html(self) -> str:
        s = self.state
        stats = s.stats
        history = list(s.history) or [len(s.sockets)]
        rates = [
            ("messages-per-s", _number(stats.get("messages_in_per_s")), "messages/s in"),
            ("deliveries-per-s", _number(stats.get("deliveries_per_s")), "deliveries/s out"),
            ("loop-lag", _number(stats.get("loop_lag_ms"), " ms"), "event-loop lag"),
            ("users-online", str(len(s.online)), "users online"),
        ]
        rows = "".join(
            f'<b data-testid="{tid}">{_esc(value)}</b><span class="lab-dash-muted">{label}</span>'
            for tid, value, label in rates
        )
        rows += self._maps_html(stats)
        if chaos := chaos_labels(s.switches):  # the instructor's chaos switches (lesson 07), only when on
            rows += f'<b data-testid="chaos" style="color:#c62828">{_esc(" · ".join(chaos))}</b><span class="lab-dash-muted">chaos on</span>'
        rss, cpu = stats.get("rss_bytes"), s.cpu_percent
        server = [f"server RSS {human_bytes(rss)}"] if isinstance(rss, int) and rss else []
        server += [f"CPU {cpu:.0f}%"] if cpu is not None else []
        server_text = "".join(f" \u00b7 {part}" for part in server)
        return (
            '<div class="lab-dash lab-dash-head">'
            f'<div><div class="lab-dash-big" data-testid="connections">{len(s.sockets)}</div>'
            '<div class="lab-dash-muted">open connections</div></div>'
            f'<div>{sparkline_svg(history)}<div class="lab-dash-muted">last {len(s.history)} s'
            f"{_esc(server_text)}</div></div>"
            f'<div class="lab-dash-rates">{rows}</div>'
            "</div>"
        )

    @staticmethod
    def _maps_html(stats: dict[str, Any]) -> str:
        """The server's socket maps against its running handlers, when its stats carry both:
        more entries tracked than sockets open is a leak (a cleanup that did not run)."""
        tracked, open_ = stats.get("sockets_tracked"), stats.get("sockets_open")
        if not (isinstance(tracked, int) and isinstance(open_, int)):
            return ""
        leaked = tracked - open_
        style = ' style="color:#c62828"' if leaked > 0 else ""
        label = f"sockets in the maps, {open_:,} open" + (f" ({leaked:,} leaked)" if leaked > 0 else "")
        return (
            f'<b data-testid="sockets-tracked"{style}>{tracked:,}</b>'
            f'<span class="lab-dash-muted" data-testid="sockets-open" data-open="{open_}"{style}>{_esc(label)}</span>'
        )

    def _status_html(self) -> str:
        if self._stopped:
            state = '<span class="lab-dash-dot"></span><b data-testid="status">stopped</b>'
        elif self.connected and self._ready.is_set():
            state = '<span class="lab-dash-dot on"></span><b data-testid="status">live</b>'
        elif self.connections_made:
            state = '<span class="lab-dash-dot"></span><b data-testid="status">reconnecting\u2026</b>'
        else:
            state = '<span class="lab-dash-dot"></span><b data-testid="status">connecting\u2026</b>'
        parts = [state, f'<span class="lab-dash-muted">{_esc(self._display_url())}</span>']
        dropped = self.state.totals["dropped"]
        if dropped:
            parts.append(f'<span data-testid="dropped-events">{dropped:,} events not shown (server batch full)</span>')
        slow = self.state.totals["slow_consumers"]
        if slow:
            parts.append(f"{_plural(slow, 'slow reader')} dropped by the server")
        if self._note:
            parts.append(f'<span data-testid="note">{_esc(self._note)}</span>')
        recent = time.monotonic() < self._error_until
        # A failed connection attempt is over once one succeeded since (a lab that restarted).
        resolved = self.errors and self.errors[-1].startswith("connect:") and self._connected_at > self._error_at
        if self.errors and recent and not resolved:
            parts.append(f'<span class="lab-dash-muted" data-testid="error">{_esc(self.errors[-1][:160])}</span>')
        return '<div class="lab-dash lab-dash-status">' + SEP.join(parts) + "</div>"

    def _users_html(self) -> str:
        rows = self.state.user_rows()
        online = len(self.state.online)
        body = []
        for row in rows[:USERS_SHOWN]:
            chips = (
                "".join(
                    f'<span class="lab-dash-chip" data-testid="socket-chip">{_esc(sid)}</span>'
                    for sid in row["sockets"]
                )
                or '<span class="lab-dash-muted">offline</span>'
            )
            dot = "lab-dash-dot on" if row["online"] else "lab-dash-dot"
            body.append(
                f'<tr data-testid="user-row" data-user="{_esc(row["username"])}" data-sockets="{len(row["sockets"])}">'
                f'<td><span class="{dot}"></span>{_esc(row["username"])} '
                f'<span class="lab-dash-muted">#{_esc(row["id"])}</span></td><td>{chips}</td></tr>'
            )
        if len(rows) > USERS_SHOWN:
            body.append(
                f'<tr><td colspan="2" class="lab-dash-muted">\u2026 and {len(rows) - USERS_SHOWN} more</td></tr>'
            )
        if not rows:
            body.append('<tr><td colspan="2" class="lab-dash-muted">nobody connected yet</td></tr>')
        return (
            f'<div class="lab-dash"><h4>users \u2192 sockets ({online} online, {len(self.state.sockets)} sockets)</h4>'
            f'<table data-testid="users"><tr><th>user</th><th>open sockets</th></tr>{"".join(body)}</table></div>'
        )

    def _rooms_html(self) -> str:
        rooms = self.state.room_rows()
        body = []
        for row in rooms[:ROOMS_SHOWN]:
            members = [f"{_esc(name)}" + (f" ({n})" if n > 1 else "") for name, n in row["members"][:MEMBERS_SHOWN]]
            if len(row["members"]) > MEMBERS_SHOWN:
                members.append(f"+{len(row['members']) - MEMBERS_SHOWN}")
            body.append(
                f'<div class="lab-dash-room" data-testid="room" data-room="{_esc(row["room"])}">'
                f'<b>#{_esc(row["room"])}</b> <span class="lab-dash-muted">{_plural(row["sockets"], "socket")}</span>'
                f"<br>{', '.join(members)}</div>"
            )
        if len(rooms) > ROOMS_SHOWN:
            body.append(f'<div class="lab-dash-muted">\u2026 and {len(rooms) - ROOMS_SHOWN} more rooms</div>')
        if not rooms:
            body.append('<div class="lab-dash-muted">no room has members</div>')
        return (
            f'<div class="lab-dash"><h4>rooms ({len(rooms)})</h4><div data-testid="rooms">{"".join(body)}</div></div>'
        )

    def _flow_html(self) -> str:
        s = self.state
        entries = list(s.flow)[-FLOW_SHOWN:]
        items = []
        for entry in reversed(entries):  # newest on top
            preview = entry.get("preview")
            tail = f' <span class="lab-dash-muted">\u201c{_esc(preview)}\u201d</span>' if preview else ""
            items.append(f'<li data-testid="flow-item">{_esc(flow_text(entry))}{tail}</li>')
        if not items:
            items.append('<li class="lab-dash-muted">no message routed yet</li>')
        return (
            f'<div class="lab-dash"><h4>message flow (newest first; {s.totals["routed"]:,} routed since opened)</h4>'
            f'<ol class="lab-dash-flow" data-testid="flow">{"".join(items)}</ol></div>'
        )

    def _control_updates(self, crowd_key: tuple[Any, Any]) -> list[tuple[widgets.Widget, str, Any]]:
        updates: list[tuple[widgets.Widget, str, Any]] = []
        if self.crowd is not None:
            size, paused = crowd_key
            busy = self._busy is not None or self._stopped
            crowd_text = f"crowd: {size if size is not None else '?'} users"
            if paused:
                crowd_text += SEP + "paused"
            if self._busy:
                crowd_text += SEP + self._busy + "\u2026"
            updates += [
                (self.add_button, "disabled", busy),
                (self.remove_button, "disabled", busy or size == 0),
                (self.pause_button, "value", bool(paused)),
                (self.pause_button, "description", "resume crowd" if paused else "pause crowd"),
                (self.pause_button, "icon", "play" if paused else "pause"),
                (self.crowd_label, "value", f'<span class="lab-dash" data-testid="crowd">{_esc(crowd_text)}</span>'),
            ]
        progress = self._progress_state
        updates.append((self.progress.layout, "display", "flex" if progress is not None else "none"))
        if progress is not None:
            done, total = progress
            updates += [
                (self.progress, "max", max(total, 1)),
                (self.progress, "value", min(max(done, 0), max(total, 1))),
            ]
        show_drop = self._can_drop() and (bool(self.state.sockets) or self.drop_choice.value is not None)
        updates.append((self.drop_box.layout, "display", "flex" if show_drop else "none"))
        updates.append((self.drop_button, "disabled", self._dropping or self._stopped or not self.drop_choice.value))
        return updates

    def _update_drop_options(self) -> None:
        """The picker's options: every open socket, refreshed at most once a second
        (at once when the chosen socket disappears), so a growing crowd does not
        resend a long list ten times a second."""
        s = self.state
        version, at = self._options_at
        if version == s.sockets_version or not self._can_drop():
            return
        now = time.monotonic()
        chosen = self.drop_choice.value
        if now - at < DROP_OPTIONS_INTERVAL and (chosen is None or chosen in s.sockets):
            if not self._options_later and self._loop is not None and not self._stopped:
                self._options_later = True  # come back for it when the interval is over
                self._loop.call_later(DROP_OPTIONS_INTERVAL - (now - at), self._options_due)
            return
        self._options_at = (s.sockets_version, now)
        options = sorted(
            ((f"{s.username(entry['user'])} \u00b7 {sid}", sid) for sid, entry in s.sockets.items()),
            key=lambda o: o[0].lower(),
        )
        self.drop_choice.options = options
        self.drop_choice.value = chosen if chosen in s.sockets else None
        self.drop_button.disabled = self._dropping or self._stopped or self.drop_choice.value is None

    def _options_due(self) -> None:
        self._options_later = False
        self._touch()

    # --- controls -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a control's coroutine on the dashboard's loop, from a widget callback."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._stopped:
            coro.close()
            self._note_error("control", RuntimeError("the dashboard is not running"))
            return None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(coro)
            self._actions.add(task)
            task.add_done_callback(self._actions.discard)
            return task
        return asyncio.run_coroutine_threadsafe(coro, loop)  # a callback from another thread

    async def _guarded(self, where: str, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._note = f"{where} failed"
            self._note_error(where, exc)
            return None

    def _require_crowd(self) -> Any:
        if self.crowd is None:
            raise RuntimeError("this dashboard has no crowd: Dashboard(lab, crowd)")
        return self.crowd

    async def actions_done(self) -> None:
        """Wait for the controls' running actions (grow, shrink, drop) to finish."""
        while self._actions:
            await asyncio.gather(*list(self._actions), return_exceptions=True)

    def _on_progress(self, done: int, total: int) -> None:
        self._progress_state = (int(done), int(total))
        self._touch()

    async def grow(self, n: int = 10) -> None:
        """``crowd.grow(n)`` with a progress bar; the crowd buttons are disabled meanwhile."""
        await self._change_crowd("grow", n)

    async def shrink(self, n: int = 10) -> None:
        """``crowd.shrink(n)``; the crowd buttons are disabled meanwhile."""
        await self._change_crowd("shrink", n)

    async def _change_crowd(self, what: str, n: int) -> None:
        crowd = self._require_crowd()
        if self._busy is not None:
            raise RuntimeError(f"the crowd is busy ({self._busy})")
        self._busy = what
        self.add_button.disabled = self.remove_button.disabled = True  # at once, before the next render
        if what == "grow":
            self._progress_state = (0, n)
        self._note = ""
        self._touch()
        try:
            if what == "grow":
                await crowd.grow(n, progress=self._on_progress)
                self._note = f"added {_plural(n, 'user')}"
            else:
                await crowd.shrink(n)
                self._note = f"removed {_plural(n, 'user')}"
        finally:
            self._busy = None
            self._progress_state = None
            self._touch()

    def _on_crowd_click(self, what: str) -> None:
        if self._busy is not None or self.crowd is None:  # a second click while it runs
            return
        self._spawn(self._guarded(what, self.grow(10) if what == "grow" else self.shrink(10)))

    def _on_pause_toggle(self, change: dict[str, Any]) -> None:
        if self._syncing_pause or self.crowd is None:
            return
        try:
            result = self.crowd.pause() if change["new"] else self.crowd.resume()
            if inspect.isawaitable(result):
                self._spawn(self._guarded("pause", result))
            self._note = "crowd paused" if change["new"] else "crowd resumed"
        except Exception as exc:
            self._note_error("pause", exc)
        self._touch()

    def _on_drop_click(self, _: Any) -> None:
        socket_id = self.drop_choice.value
        if not socket_id:
            return
        self._dropping = True
        self.drop_button.disabled = True
        self._spawn(self._guarded("drop", self.drop(socket_id)))

    async def drop(self, socket_id: str) -> Any:
        """``lab.drop(socket_id)`` (in a thread when it blocks): the server aborts that connection."""
        self._dropping = True
        try:
            fn = self.lab.drop
            if inspect.iscoroutinefunction(fn):
                result = await fn(socket_id)
            else:
                result = await asyncio.get_running_loop().run_in_executor(None, fn, socket_id)
            user = self.state.sockets.get(socket_id, {}).get("user")
            who = f" ({self.state.username(user)})" if user is not None else ""
            self._note = f"dropped {socket_id}{who}"
            return result
        finally:
            self._dropping = False
            self._touch()
