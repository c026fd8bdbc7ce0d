"""Lesson 07's toolkit: thousands of real sockets on one event loop, and what stalls that loop.

* :class:`SocketCrowd`: a helper **process** that opens many idle, authenticated WebSockets to
  the lab, cheaply (an ``asyncio.Protocol`` per socket that only answers the server's pings,
  RFC 6455 section 5.5.2), growing on command. A separate process so that the notebook's own
  event loop, the dashboard's, stays free, and so that the open-files limit of the server and
  of the crowd are two separate budgets.
* :func:`server_usage`: the server process's resident memory and thread count (psutil).
* :class:`LatencyProbe`: a few clients in one room; one chats every ``interval`` seconds, the
  others time each delivery (sent -> received, one clock: same process), while ``/observe``
  reports the server's event-loop lag every second.
* :func:`run_phases`: the probe through phases (switches flipped between them), then
  :func:`plot_phases` and :func:`plot_memory` draw them (inline; nothing is written to disk).

    python -m labserver.course.scale URL   # the crowd's own entry point (tokens on stdin)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped]  # ships no type information
import websockets

from ..frames import Frame, Opcode
from ..rawws import handshake_request
from ..resources import free_descriptors, raise_open_files_limit

__all__ = [
    "CHAOS_OFF",
    "LatencyProbe",
    "MemorySample",
    "PhaseResult",
    "SocketCrowd",
    "fit_line",
    "plot_memory",
    "plot_phases",
    "run_phases",
    "server_usage",
]

CHAOS_OFF: dict[str, Any] = {"block_ms": 0, "cpu_ms": 0, "offload": False, "max_message_bytes": 65536}
DESCRIPTORS_KEPT = 200  # open files the crowd leaves itself (its pipes, its Python) besides the sockets


# --- the crowd's process ------------------------------------------------------------------------------


class _IdleSocket(asyncio.Protocol):
    """One crowd socket: upgrades, then only answers pings; counts as open until it ends."""

    def __init__(self, opened: asyncio.Future[bool], closed: set[_IdleSocket]) -> None:
        self.buffer = bytearray()
        self.upgraded = False
        self.opened = opened
        self.closed = closed
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            self.upgraded = True
            self.buffer = bytearray(rest)
        while (parsed := Frame.parse(self.buffer)) is not None:
            frame, used = parsed
            del self.buffer[:used]
            if frame.opcode == Opcode.TEXT and not self.opened.done():
                self.opened.set_result(True)  # the welcome: authenticated and registered
            elif frame.opcode == Opcode.PING and self.transport is not None:
                # A client's frames are masked (RFC 6455 section 5.3); the pong echoes the ping's data.
                self.transport.write(Frame(Opcode.PONG, frame.payload, masking_key=os.urandom(4)).serialize())
            elif frame.opcode == Opcode.CLOSE and self.transport is not None:
                self.transport.close()

    def _fail(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("closed before its welcome")
        self.closed.add(self)


async def _crowd_main(url: str) -> None:
    """Read the tokens (a JSON list, one line), then ``grow N`` lines on stdin; answer each with
    ``open K`` or ``open K stopped: why``."""
    raise_open_files_limit()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    sockets: list[_IdleSocket] = []
    closed: set[_IdleSocket] = set()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tokens: list[str] = json.loads(await reader.readline())

    async def open_one(i: int) -> None:
        opened: asyncio.Future[bool] = loop.create_future()
        _, sock = await loop.create_connection(lambda: _IdleSocket(opened, closed), host, port)
        assert sock.transport is not None
        sock.transport.write(handshake_request(host, port, f"/ws?token={tokens[i % len(tokens)]}"))
        await asyncio.wait_for(opened, 30)
        sockets.append(sock)

    while line := (await reader.readline()).decode().split():
        if line[0] != "grow":
            break
        target, stopped = int(line[1]), ""
        free = free_descriptors()
        if free is not None and target - len(sockets) > free - DESCRIPTORS_KEPT:
            target = len(sockets) + max(0, free - DESCRIPTORS_KEPT)
            stopped = f"the crowd's open-files limit leaves room for {target} sockets"
        while len(sockets) < target:
            batch = [open_one(len(sockets) + i) for i in range(min(200, target - len(sockets)))]
            failures = [r for r in await asyncio.gather(*batch, return_exceptions=True) if isinstance(r, BaseException)]
            if failures:
                stopped = f"{len(failures)} sockets failed: {type(failures[0]).__name__}: {failures[0]}"
                break
        alive = len(sockets) - len(closed)
        print(f"open {alive}" + (f" stopped: {stopped}" if stopped else ""), flush=True)


@dataclass
class SocketCrowd:
    """The handle of the crowd process. ``await crowd.grow(n)`` opens sockets up to ``n``; the
    answer is how many are open and, when something stopped it short, why (one line)."""

    url: str
    tokens: Sequence[str]
    process: subprocess.Popen[str] | None = None
    open: int = 0
    stopped: str = ""

    def start(self) -> SocketCrowd:
        command = [sys.executable, "-m", "labserver.course.scale", self.url]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdin is not None
        # The tokens go through the pipe, not the command line: the process list shows no credentials.
        self.process.stdin.write(json.dumps(list(self.tokens)) + "\n")
        self.process.stdin.flush()
        return self

    def _grow(self, n: int) -> int:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"grow {n}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"the crowd process ended (exit code {self.process.poll()})")
        count, _, why = answer.removeprefix("open ").partition(" stopped: ")
        self.open, self.stopped = int(count), why
        return self.open

    async def grow(self, n: int) -> int:
        """Open sockets until ``n`` are open (fewer if a limit stops it: see :attr:`stopped`)."""
        return await asyncio.to_thread(self._grow, n)

    def close(self) -> None:
        """End the crowd: its sockets close with it (TCP FIN, no close frame: the server sees 1006)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()
            self.process = None
            self.open = 0

    def __enter__(self) -> SocketCrowd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SocketCrowd({self.open} sockets open)"


# --- measuring the server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemorySample:
    connections: int
    rss_bytes: int
    threads: int


def server_usage(pid: int) -> tuple[int, int]:
    """Resident memory (bytes) and thread count of process ``pid``."""
    process = psutil.Process(pid)
    return int(process.memory_info().rss), process.num_threads()


async def measure_memory(pid: int, crowd: SocketCrowd, steps: Sequence[int]) -> list[MemorySample]:
    """Grow the crowd through ``steps`` and sample the server after each (a settle of 0.3 s first)."""
    samples = []
    for n in steps:
        reached = await crowd.grow(n)
        await asyncio.sleep(0.3)
        rss, threads = server_usage(pid)
        samples.append(MemorySample(reached, rss, threads))
        if reached < n:
            break
    return samples


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through the points: ``(slope, intercept)``."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, mean_y - slope * mean_x


# --- the latency probe -----------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """What the probe saw, each as (seconds since the probe started, value, phase): ``pings``, the
    round trips (s) of the listeners' pings (everyone else's service); ``deliveries``, the sent ->
    received latency (s) of the probe's chats (the chats that do the chaos work themselves); ``lags``,
    the server's ``loop_lag_ms`` from ``/observe``, one a second."""

    phases: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end
    pings: list[tuple[float, float, str]] = field(default_factory=list)
    deliveries: list[tuple[float, float, str]] = field(default_factory=list)
    lags: list[tuple[float, float, str]] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per phase, in ms: median and worst ping round trip, median chat delivery, worst loop lag
        (leaving out the first second of a phase: that stats period began in the phase before)."""
        table = {}
        for name, start, _ in self.phases:
            pings = [v for _, v, p in self.pings if p == name]
            chats = [v for _, v, p in self.deliveries if p == name]
            lags = [v for t, v, p in self.lags if p == name and t > start + 1.05]
            table[name] = {
                "ping_median_ms": _ms(statistics.median(pings)) if pings else float("nan"),
                "ping_worst_ms": _ms(max(pings)) if pings else float("nan"),
                "chat_median_ms": _ms(statistics.median(chats)) if chats else float("nan"),
                "loop_lag_ms": round(max(lags), 1) if lags else float("nan"),
            }
        return table

    def table(self) -> str:
        """:meth:`summary` as aligned text, one phase a line."""
        lines = [f"{'phase':<22}{'ping median':>12}{'ping worst':>12}{'chat median':>13}{'loop lag':>10}  (ms)"]
        for name, row in self.summary().items():
            values = "".join(f"{row[k]:>{w}.1f}" for k, w in zip(row, (12, 12, 13, 10), strict=True))
            lines.append(f"{name:<22}{values}")
        return "\n".join(lines)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


_tokens: dict[tuple[str, str], str] = {}


def _token(lab: Any, username: str) -> str:
    """A token of ``username`` on ``lab``, signed up (or logged in) once per lab: hashing a password is slow."""
    key = (lab.url, username)
    if key not in _tokens:
        _tokens[key] = lab.account(username).token
    return _tokens[key]


class LatencyProbe:
    """A sender and ``listeners`` receivers in room ``room``; ``/observe`` for the loop lag."""

    def __init__(self, lab: Any, *, listeners: int = 3, interval: float = 0.2, room: str = "probe") -> None:
        self.lab, self.listeners, self.interval, self.room = lab, listeners, interval, room
        self.phase = ""
        self.t0 = time.perf_counter()
        self.result = PhaseResult()

    async def _listen(self, token: str, ready: asyncio.Event, offset: float) -> None:
        async with websockets.connect(f"{self.lab.ws_url}?token={token}", max_size=None, close_timeout=1) as ws:
            await ws.recv()  # welcome
            await ws.send(json.dumps({"type": "join", "room": self.room, "ref": "j"}))
            ready.set()

            async def ping() -> None:
                await asyncio.sleep(offset)  # the listeners ping at staggered times
                while True:
                    await ws.send(json.dumps({"type": "ping", "payload": time.perf_counter()}))
                    # Jittered, so that the pings do not fall into step with the chats' stalls or gaps.
                    await asyncio.sleep(self.interval * random.uniform(0.5, 1.5))

            pinger = asyncio.create_task(ping())
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    now = time.perf_counter()
                    if message.get("type") == "pong" and isinstance(message.get("payload"), float):
                        self.result.pings.append((now - self.t0, now - message["payload"], self.phase))
                    elif message.get("type") == "chat" and message.get("text", "").startswith("probe "):
                        sent = float(message["text"].split()[1])
                        self.result.deliveries.append((now - self.t0, now - sent, self.phase))
            finally:
                pinger.cancel()

    async def _send(self, token: str, stop: asyncio.Event) -> None:
        async with websockets.connect(f"{self.lab.ws_url}?token={token}", close_timeout=1) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "join", "room": self.room}))
            while not stop.is_set():
                await ws.send(json.dumps({"type": "chat", "room": self.room, "text": f"probe {time.perf_counter()}"}))
                await asyncio.sleep(self.interval)

    async def _observe(self) -> None:
        async with websockets.connect(self.lab.observe_url, max_size=None, close_timeout=1) as ws:
            async for raw in ws:
                message = json.loads(raw)
                for event in message.get("events", ()):
                    if event.get("ev") == "stats":
                        self.result.lags.append((time.perf_counter() - self.t0, event["loop_lag_ms"], self.phase))

    async def run(self, phases: Sequence[tuple[str, Mapping[str, Any]]], seconds: float) -> PhaseResult:
        """Each phase: set its switches, then measure for ``seconds``. Switches are put back after."""
        tokens = [_token(self.lab, f"probe{i}") for i in range(self.listeners + 1)]
        ready = [asyncio.Event() for _ in range(self.listeners)]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self._listen(t, r, self.interval * (i + 0.5) / self.listeners))
            for i, (t, r) in enumerate(zip(tokens[1:], ready, strict=True))
        ]
        tasks.append(asyncio.create_task(self._observe()))
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
            sender = asyncio.create_task(self._send(tokens[0], stop))
            tasks.append(sender)
            for name, switches in phases:
                if switches:
                    await asyncio.to_thread(self.lab.set_switches, **switches)
                self.phase = name
                start = time.perf_counter() - self.t0
                await asyncio.sleep(seconds)
                self.result.phases.append((name, start, time.perf_counter() - self.t0))
            stop.set()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.lab.set_switches, **CHAOS_OFF)
        return self.result


async def run_phases(
    lab: Any, phases: Sequence[tuple[str, Mapping[str, Any]]], seconds: float = 2.0, **probe: Any
) -> PhaseResult:
    """A fresh :class:`LatencyProbe` through ``phases``; its result."""
    return await LatencyProbe(lab, **probe).run(phases, seconds)


class Hog:
    """One client that keeps sending ``size``-byte chats: very large payloads. It opens a new
    connection every ``per_connection`` messages and whenever one is closed (the server's 1009), so
    the ``max_message_bytes`` switch in force (for new sockets) reaches it within a few messages."""

    def __init__(self, lab: Any, size: int = 16 * 1024 * 1024, per_connection: int = 3) -> None:
        self.lab, self.size, self.per_connection = lab, size, per_connection
        self.sent = 0
        self.closed_1009 = 0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        token = _token(self.lab, "hog")
        huge = json.dumps({"type": "chat", "room": "probe", "text": "x" * self.size})
        while True:
            try:
                async with websockets.connect(f"{self.lab.ws_url}?token={token}", max_size=None, close_timeout=1) as ws:
                    await ws.recv()
                    for _ in range(self.per_connection):  # then a new connection: the limit now in force
                        await ws.send(huge)
                        self.sent += 1
                        await ws.recv()  # the refusal (text over 4000 characters): one at a time
            except websockets.ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code == 1009:
                    self.closed_1009 += 1
            except OSError:
                pass
            await asyncio.sleep(0.1)

    def start(self) -> Hog:
        self.task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


# --- plots ------------------------------------------------------------------------------------------------


def plot_memory(samples: Sequence[MemorySample]) -> tuple[Any, float]:
    """Server RSS (MiB) and threads against open connections, with the fitted line; the figure and KiB/socket."""
    import matplotlib.pyplot as plt

    xs = [s.connections for s in samples]
    rss = [s.rss_bytes / 2**20 for s in samples]
    slope, intercept = fit_line(xs, rss)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(xs, rss, "o", label="measured")
    left.plot(xs, [intercept + slope * x for x in xs], "-", label=f"fit: {slope * 1024:.1f} KiB per socket")
    left.set(xlabel="open WebSocket connections", ylabel="server RSS (MiB)", title="Memory grows per socket")
    left.legend()
    right.plot(xs, [s.threads for s in samples], "s-", color="tab:green")
    right.set(xlabel="open WebSocket connections", ylabel="server threads", title="Threads stay flat")
    right.set_ylim(0, max(s.threads for s in samples) * 2 + 1)
    fig.tight_layout()
    plt.close(fig)
    return fig, slope * 1024


def plot_phases(result: PhaseResult, title: str) -> Any:
    """Delivery latency of every probe chat (top) and the loop lag (bottom), phases shaded."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True)
    colors = ["#e8f5e9", "#ffebee", "#e3f2fd", "#fff8e1"]
    for i, (name, start, end) in enumerate(result.phases):
        for axis in (top, bottom):
            axis.axvspan(start, end, color=colors[i % len(colors)])
        top.text((start + end) / 2, 1.0, name, ha="center", va="bottom", transform=top.get_xaxis_transform())
    top.plot(
        [t for t, _, _ in result.pings],
        [v * 1000 for _, v, _ in result.pings],
        ".",
        markersize=4,
        label="everyone else: ping round trip",
    )
    top.plot(
        [t for t, _, _ in result.deliveries],
        [v * 1000 for _, v, _ in result.deliveries],
        "x",
        markersize=4,
        color="tab:purple",
        label="the probe's own chats: delivery",
    )
    top.set(ylabel="latency (ms)", yscale="log")
    top.legend(loc="upper left", fontsize=8)
    bottom.step([t for t, _, _ in result.lags], [v for _, v, _ in result.lags], where="pre", color="tab:red")
    bottom.set(xlabel="seconds", ylabel="loop lag (ms)")
    fig.suptitle(title, y=1.04)
    fig.tight_layout()
    plt.close(fig)
    return fig


if __name__ == "__main__":
    asyncio.run(_crowd_main(sys.argv[1]))
