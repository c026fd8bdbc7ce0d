"""Lesson 04's experiments on the connection lifecycle: close codes, heartbeats, reconnection.

::

    log = await ObserveLog.start(lab)                 # what the server does, with its times
    ws, welcome = await connect_raw(lab, lab.account("ann"))
    code, reason = await closed_with(ws)              # the close code the client saw (1006: none)
    code, reason = await provoke_close(lab, "rate_limit")   # 1008, provoked on a fresh socket

    points = await measure_detection(lab, log, intervals=(0.5, 1, 2))   # heartbeat reaping
    plot_detection(points)

    run = await kill_and_restart(lab, crowd, down=1.0, label="full jitter")   # a thundering herd?
    plot_herd([run_without_jitter, run])

Nothing here prints: results are returned, and the plots are matplotlib figures.
Times are wall-clock seconds (``time.time()``), the clock of the server's ``/observe``
events, so a client's moment (going silent, reconnecting) and the server's (reaping a
socket) can be subtracted from one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import secrets
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .client import LabClient, LifecycleEvent
from .crowd import Crowd

__all__ = [
    "CLOSE_CODES",
    "Detection",
    "HerdRun",
    "ObserveLog",
    "Scenario",
    "close_name",
    "closed_with",
    "connect_raw",
    "ended",
    "kill_and_restart",
    "measure_detection",
    "plot_detection",
    "plot_herd",
    "provoke_close",
]

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())
log.propagate = False  # background tasks never print, not even through the last-resort handler

#: The close codes of RFC 6455 section 7.4.1 (and its IANA registry) that lesson 04 meets,
#: with what each means; 4000-4999 are the applications' own (section 7.4.2).
CLOSE_CODES: dict[int, str] = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1006: "abnormal closure (no close frame)",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
}


def close_name(code: int | None) -> str:
    """``1008`` -> ``"policy violation"``; 4000-4999 are application codes."""
    if code is None:
        return "still open"
    if 4000 <= code <= 4999:
        return "application code"
    return CLOSE_CODES.get(code, "unknown code")


# --- the server's side: /observe, recorded ---------------------------------------------------


class ObserveLog:
    """Every ``/observe`` event (``socket_opened``, ``socket_closed``, ``presence``, ``stats``...)
    with the server's time ``t``, kept while it runs; reconnects quietly when the lab restarts.

    ``await ObserveLog.start(lab)``; ``events(ev="socket_closed", since=t)``;
    ``await wait_for(lambda e: ..., timeout)``; ``await close()``.
    """

    def __init__(self, lab: Any, keep: int = 20_000) -> None:
        self.lab = lab
        self.keep = keep
        self.log: list[dict[str, Any]] = []
        self.snapshot: dict[str, Any] = {}
        self.errors: list[str] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @classmethod
    async def start(cls, lab: Any, timeout: float = 10.0) -> Self:
        """Start recording and wait for the first snapshot."""
        observer = cls(lab)
        observer._task = asyncio.create_task(observer._run(), name="ObserveLog reader")
        try:
            async with asyncio.timeout(timeout):
                await observer._connected.wait()
        except TimeoutError:
            await observer.close()
            last = observer.errors[-1] if observer.errors else "no error recorded"
            raise TimeoutError(f"/observe gave no snapshot within {timeout:g} s ({last})") from None
        return observer

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                async with websockets.connect(
                    self.lab.observe_url, open_timeout=5, max_size=None, compression=None, proxy=None, logger=log
                ) as ws:
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "snapshot":
                            self.snapshot = message
                            self._connected.set()
                            delay = 0.05
                        elif message.get("type") == "events":
                            self.log.extend(message.get("events", ()))
                            if len(self.log) > self.keep:
                                del self.log[: len(self.log) - self.keep]
                        self._changed.set()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                del self.errors[:-20]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def events(self, ev: str | None = None, since: float = 0.0) -> list[dict[str, Any]]:
        """The events recorded (of kind ``ev``, from server time ``since`` on), oldest first."""
        return [e for e in self.log if (ev is None or e.get("ev") == ev) and e.get("t", 0) >= since]

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first event recorded (already, or from now on) for which ``match`` is true."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for event in self.log[seen:]:
                    if match(event):
                        return event
                seen = len(self.log)
                self._changed.clear()
                await self._changed.wait()

    def closed(self, socket_id: str) -> dict[str, Any] | None:
        """The ``socket_closed`` event of ``socket_id``, if the server reported it."""
        return next((e for e in self.log if e.get("ev") == "socket_closed" and e.get("socket_id") == socket_id), None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def __repr__(self) -> str:
        return "ObserveLog(the server's /observe events, recorded)"


# --- the client's side: close codes ----------------------------------------------------------


async def connect_raw(lab: Any, account: Any, timeout: float = 10.0) -> tuple[ClientConnection, dict[str, Any]]:
    """A plain ``websockets`` connection to the lab, after its welcome (whose ``socket_id`` names it).

    Raises ``ConnectionClosed`` if the server closes it before the welcome (e.g. 1013)."""
    ws = await websockets.connect(
        f"{lab.ws_url}?token={account.token}", open_timeout=timeout, compression=None, logger=log
    )
    try:
        async with asyncio.timeout(timeout):
            welcome = json.loads(await ws.recv())
    except BaseException:
        ws.transport.abort()
        raise
    return ws, welcome


async def closed_with(ws: ClientConnection, timeout: float = 10.0) -> tuple[int, str]:
    """Read (and drop) messages until the connection ends; the close code and reason the client
    saw. 1006 is what a client reports when no close frame came (RFC 6455 section 7.1.5)."""
    try:
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    except ConnectionClosed:
        pass
    code = ws.close_code
    return (1006 if code is None else int(code)), ws.close_reason or ""


async def ended(client: LabClient, socket_id: str | None = None, timeout: float = 10.0) -> LifecycleEvent:
    """The ``lost`` event of ``client``'s connection ``socket_id`` (default: its current one), once
    it has ended: ``code`` and ``reason`` as the client saw them. A reconnecting client may be
    on a new socket already; pass the id it had before."""
    wanted = socket_id or client.socket_id
    async with asyncio.timeout(timeout):
        while True:
            for event in reversed(client.timeline):
                if event.kind == "lost" and event.socket_id == wanted:
                    return event
            await asyncio.sleep(0.01)


Scenario = Literal["normal", "abort", "rate_limit", "too_big", "bug", "full", "kicked"]
SCENARIOS: dict[str, str] = {
    "normal": "the instructor closes the socket (admin API, mode=close)",
    "abort": "the server aborts the TCP connection (admin API, mode=abort): no close frame",
    "rate_limit": "the client floods the server with 100 pings at once (rate limit)",
    "too_big": "the client sends a 70,000-byte message (max_message_bytes is 65,536)",
    "bug": "the client sends a chat that trips a bug in the server's handler (the bug_on_text switch)",
    "full": "a new client connects while the server is full (the max_connections switch)",
    "kicked": "the instructor closes the socket with the application code 4001 (admin API)",
}


async def provoke_close(lab: Any, scenario: Scenario, username: str = "close_probe") -> tuple[int, str]:
    """Open a fresh socket, make the lab close it in one of :data:`SCENARIOS`' ways, and
    return ``(code, reason)`` as the client saw them. Switches are restored afterwards."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    account = await asyncio.to_thread(lab.account, username)
    if scenario == "full":
        holder, _ = await connect_raw(lab, account)  # at least one peer: a limit of 1 is reached
        before = (await asyncio.to_thread(lab.switches))["max_connections"]
        await asyncio.to_thread(lab.set_switches, max_connections=1)
        try:
            ws = await websockets.connect(f"{lab.ws_url}?token={account.token}", compression=None, logger=log)
            return await closed_with(ws)
        finally:
            await asyncio.to_thread(lab.set_switches, max_connections=before)
            await holder.close()
    ws, welcome = await connect_raw(lab, account)
    try:
        socket_id = welcome["socket_id"]
        if scenario == "normal":
            await asyncio.to_thread(lab.drop, socket_id, "close")
        elif scenario == "abort":
            await asyncio.to_thread(lab.drop, socket_id, "abort")
        elif scenario == "kicked":
            await asyncio.to_thread(lab.drop, socket_id, "close", 4001, "kicked by the instructor")
        elif scenario == "rate_limit":
            with contextlib.suppress(ConnectionClosed):  # closed before the last ones went out
                for ref in range(100):
                    await ws.send(json.dumps({"type": "ping", "ref": ref}))
        elif scenario == "too_big":
            await ws.send(json.dumps({"type": "ping", "payload": "x" * 70_000}))
        elif scenario == "bug":
            trigger = f"boom-{secrets.token_hex(4)}"
            before = (await asyncio.to_thread(lab.switches))["bug_on_text"]
            await asyncio.to_thread(lab.set_switches, bug_on_text=trigger)
            try:
                room = f"bug-{secrets.token_hex(3)}"
                await ws.send(json.dumps({"type": "join", "room": room, "ref": "j"}))
                await ws.send(json.dumps({"type": "chat", "room": room, "text": trigger, "ref": "c"}))
                return await closed_with(ws)
            finally:
                await asyncio.to_thread(lab.set_switches, bug_on_text=before)
        return await closed_with(ws)
    finally:
        if ws.close_code is None:  # a scenario that failed half-way: leave nothing open
            ws.transport.abort()


# --- heartbeats: how long until the server notices a vanished client --------------------------


@dataclass(frozen=True)
class Detection:
    """One vanished client: the heartbeat ``interval`` of its socket, and the seconds from the
    moment it went silent to the server's ``socket_closed`` (with the server's ``reason``)."""

    interval: float
    seconds: float
    reason: str


async def measure_detection(
    lab: Any,
    observer: ObserveLog,
    intervals: Iterable[float] = (0.5, 1.0, 2.0),
    per_interval: int = 4,
    seed: int = 4,
    username: str = "vanishing",
    timeout: float = 15.0,
) -> list[Detection]:
    """For each ping interval, open ``per_interval`` sockets with it (the ``ping_interval``
    switch applies to sockets opened from then on), let each go silent at a random moment
    (``LabClient.go_silent()``: no pong, no close frame) and time how long the server takes to
    reap it. All run at once, so the whole takes about 1.5 x the longest interval."""
    rng = random.Random(seed)
    intervals = [float(i) for i in intervals]
    before = (await asyncio.to_thread(lab.switches))["ping_interval"]
    account = await asyncio.to_thread(lab.account, username)
    clients: list[tuple[float, LabClient]] = []
    try:
        for interval in intervals:
            await asyncio.to_thread(lab.set_switches, ping_interval=interval)
            for _ in range(per_interval):
                client = await LabClient.connect(lab, account, reconnect=False, name=f"{username}@{interval:g}")
                clients.append((interval, client))
    finally:
        await asyncio.to_thread(lab.set_switches, ping_interval=before)

    async def vanish(interval: float, client: LabClient) -> Detection:
        await asyncio.sleep(rng.uniform(0, interval))  # anywhere between two heartbeats
        socket_id = client.socket_id
        assert socket_id is not None
        client.go_silent()
        silent_at = time.time()
        event = await observer.wait_for(
            lambda e: e.get("ev") == "socket_closed" and e.get("socket_id") == socket_id, timeout
        )
        return Detection(interval, round(float(event["t"]) - silent_at, 3), str(event.get("reason", "")))

    try:
        return list(await asyncio.gather(*(vanish(interval, client) for interval, client in clients)))
    finally:
        await asyncio.gather(*(client.close() for _, client in clients), return_exceptions=True)


def plot_detection(points: Sequence[Detection], title: str | None = None) -> Any:
    """Detection time against the ping interval: each vanished client a dot, with the band the
    heartbeat allows (from half an interval to one and a half)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    top = max((p.interval for p in points), default=1.0) * 1.1
    xs = [0.0, top]
    ax.fill_between(
        xs,
        [0.5 * x for x in xs],
        [1.5 * x for x in xs],
        color="#1f77b4",
        alpha=0.12,
        label="expected: between 0.5 and 1.5 x the interval",
    )
    ax.plot(xs, [1.5 * x for x in xs], color="#1f77b4", lw=1, ls="--", label="worst case: interval + interval / 2")
    jitter = random.Random(0)
    ax.scatter(
        [p.interval * (1 + jitter.uniform(-0.03, 0.03)) for p in points],
        [p.seconds for p in points],
        color="#d62728",
        zorder=3,
        label="a vanished client (measured)",
    )
    for interval in sorted({p.interval for p in points}):
        mean = statistics.mean(p.seconds for p in points if p.interval == interval)
        ax.plot([interval * 0.93, interval * 1.07], [mean, mean], color="#d62728", lw=2)
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.6 * top)
    ax.set_xlabel("server ping interval (s)")
    ax.set_ylabel("seconds until the server reaps it")
    ax.set_title(title or "A vanished client is noticed only by the heartbeat")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return fig


# --- reconnection: a thundering herd, or a spread-out crowd ------------------------------------


@dataclass
class HerdRun:
    """One kill-and-restart of the lab with a crowd connected, from the clients' timelines.

    Times are seconds after the kill: ``back`` (the server answers again), each reconnection
    ``attempts`` (failed or not), ``failures`` and ``reconnected``."""

    label: str
    clients: int
    back: float
    attempts: list[float] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    reconnected: list[float] = field(default_factory=list)

    def peak(self, window: float = 0.1) -> int:
        """The most reconnection attempts that reached the running server within ``window`` seconds:
        the size of the herd the server had to take at once."""
        times = sorted(t for t in self.attempts if t >= self.back)
        most = 0
        start = 0
        for end, t in enumerate(times):
            while t - times[start] > window:
                start += 1
            most = max(most, end - start + 1)
        return most

    @property
    def all_back(self) -> float | None:
        """Seconds after the kill when the last client was back (None if some never came back)."""
        if len(self.reconnected) < self.clients:
            return None
        return max(self.reconnected, default=0.0)

    def summary(self) -> str:
        back = self.all_back
        last = (
            f"all {self.clients} back {back:.1f} s after the kill"
            if back is not None
            else (f"{len(self.reconnected)} of {self.clients} back")
        )
        return (
            f"{self.label}: server back after {self.back:.1f} s; {len(self.attempts)} attempts "
            f"({len(self.failures)} refused); {last}; at most {self.peak()} attempts in 0.1 s on the running server"
        )


async def kill_and_restart(
    lab: Any, crowd: Crowd, down: float = 1.0, label: str = "", timeout: float = 30.0
) -> HerdRun:
    """SIGKILL the lab (every client sees 1006 at once), keep it down ``down`` seconds, start
    it again on the same port, and wait until the whole crowd is back; the crowd's timelines
    tell when each client tried and when it got in. The blocking kill and start run in a thread
    so the clients keep running meanwhile, as real ones would."""
    if not crowd.size:
        raise ValueError("the crowd is empty: grow it first")
    killed_at = time.time()
    await asyncio.to_thread(lab.kill)
    await asyncio.sleep(down)
    await asyncio.to_thread(lab.start)
    back_at = time.time()
    deadline = time.monotonic() + timeout
    while crowd.connected < crowd.size and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    run = HerdRun(label or "restart", crowd.size, back_at - killed_at)
    for _, event in crowd.timeline(since=killed_at, kinds={"attempt", "failed", "reconnected"}):
        at = event.t - killed_at
        {"attempt": run.attempts, "failed": run.failures, "reconnected": run.reconnected}[event.kind].append(at)
    return run


def plot_herd(runs: Sequence[HerdRun], bin_seconds: float = 0.05, title: str | None = None) -> Any:
    """One timeline per run: reconnection attempts per ``bin_seconds`` (refused ones, while the
    server is down, in grey; those that got in, in colour), with the downtime shaded."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(runs), 1, figsize=(9, 2.4 * len(runs) + 0.6), sharex=True, squeeze=False, constrained_layout=True
    )
    end = max([t for run in runs for t in (*run.attempts, run.back)] + [1.0]) + 0.3
    edges = [i * bin_seconds for i in range(int(end / bin_seconds) + 2)]
    colours = itertools.cycle(["#d62728", "#2ca02c", "#1f77b4", "#9467bd"])
    top = 0
    for ax, run, colour in zip(axes[:, 0], runs, colours, strict=False):
        ax.axvspan(0, run.back, color="#9e9e9e", alpha=0.15, lw=0)
        ax.hist(run.failures, bins=edges, color="#9e9e9e", label="attempt refused (server down)")
        ax.hist(run.reconnected, bins=edges, color=colour, label="attempt that got in")
        ax.axvline(run.back, color="#424242", lw=1, ls="--")
        ax.text(run.back, 0.93, " server back", transform=ax.get_xaxis_transform(), fontsize=8, color="#424242")
        ax.set_title(
            f"{run.label}: {run.clients} clients, at most {run.peak()} attempts in 0.1 s after the restart",
            fontsize=10,
            loc="left",
        )
        ax.set_ylabel(f"attempts / {bin_seconds * 1000:.0f} ms")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        top = max(top, int(ax.get_ylim()[1]))
    for ax in axes[:, 0]:
        ax.set_ylim(0, top)
    axes[-1, 0].set_xlabel("seconds after the server was killed")
    axes[-1, 0].set_xlim(0, end)
    if title:
        fig.suptitle(title)
    return fig
