"""Polling vs push, measured: one live room served four ways, every byte counted.

A producer posts chat messages to a room at a fixed rate (HTTP POST, one
account). Groups of simulated receivers, all in this process and all logged in
as one account (1,000 sign-ups would cost 1,000 scrypt hashes; the bytes on the
wire are the same), follow the room:

* ``"short"``: short polling, ``GET /api/rooms/{room}/messages?after=SEQ`` every
  ``interval`` seconds, the receivers evenly staggered over the interval (one
  aiohttp connector with keep-alive per group);
* ``"long"``: long polling, ``GET /api/rooms/{room}/poll?after=SEQ&timeout=S``,
  asked again as soon as it answers;
* ``"websocket"``: WebSocket push, one ``/ws`` connection per receiver, joined
  to the room;
* ``"sse"``: Server-Sent Events, one streaming ``GET /api/rooms/{room}/events``
  per receiver (``text/event-stream``), parsed event by event as it arrives.

For every group :func:`measure` counts, over a fixed window, the HTTP requests
per second, the bytes on the wire per delivered message (both directions:
request lines, headers, bodies, WebSocket frames, pings, SSE events and their
chunk framing), the share of useless requests (answered with no new message),
and the delivery latency of every message: the server's ``ts``, stamped when it
stored the message, against the moment the receiver parsed it (one machine, one
clock).

Bytes are counted at the socket: every receiver connects through a
:class:`CountingSocket`, a ``socket.socket`` whose ``send``/``recv`` add what
the kernel accepted or returned to a :class:`ByteMeter`. That is the TCP
payload, everything above TCP (the WebSocket handshake included, reported
apart as setup). TCP/IP headers and ACKs, 52-66 bytes per segment more, are
below it and not counted.

The lesson's experiments are :func:`quiet_room` (N users polling a quiet room),
:func:`compare` (the four approaches for N = 10, 100, 1,000) and
:func:`interval_sweep` (latency against the polling interval); each takes
``quick=True`` for CI (small N, 3 s windows). ::

    run = await measure(lab, Scenario((Group("short", 100, interval=1.0), Group("websocket", 100)),
                                      message_rate=0.5, window=6.0))
    print(run.summary())
    run.rows()                  # one tidy dict per group, ready to plot
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp

from ..launcher import Account

__all__ = [
    "APPROACHES",
    "ByteMeter",
    "CountingSocket",
    "Group",
    "GroupResult",
    "PollAnatomy",
    "RunResult",
    "Scenario",
    "Traffic",
    "anatomy_of_a_poll",
    "compare",
    "counting_session",
    "expected_latency",
    "expected_requests_per_s",
    "expected_useless_fraction",
    "interval_sweep",
    "measure",
    "quiet_room",
    "rows",
    "select",
    "table",
]

Approach = Literal["short", "long", "websocket", "sse"]
APPROACHES: tuple[Approach, ...] = ("short", "long", "websocket", "sse")
LABELS = {"short": "short polling", "long": "long polling", "websocket": "WebSocket push", "sse": "Server-Sent Events"}
COLORS = {"short": "#d62728", "long": "#ff7f0e", "websocket": "#2ca02c", "sse": "#1f77b4"}

PRODUCER = "poll_producer"
RECEIVER = "poll_receiver"
CONNECT_CHUNK = 100  # WebSocket handshakes in flight at once
END_TEXT = "[end of run]"  # posted after the run: wakes the long polls still parked on the server


# --- counting bytes at the socket -------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """Bytes sent and received, and TCP connections opened, at one moment (or between two)."""

    sent: int = 0
    received: int = 0
    connections: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.received

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(self.sent - other.sent, self.received - other.received, self.connections - other.connections)


class ByteMeter:
    """Running totals for every :class:`CountingSocket` made for it."""

    __slots__ = ("sent", "received", "connections")

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.connections = 0

    def snapshot(self) -> Traffic:
        return Traffic(self.sent, self.received, self.connections)

    def __repr__(self) -> str:
        return f"<ByteMeter sent={self.sent} received={self.received} connections={self.connections}>"


class CountingSocket(socket.socket):
    """A TCP socket that counts the bytes the kernel accepted (send) and returned (recv).

    asyncio's transports call exactly these methods on the socket they are given,
    so a connection made on one of these is counted whole: HTTP request and status
    lines, headers and bodies, the WebSocket handshake, frames, pings and pongs.
    """

    def __init__(self, meter: ByteMeter, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
                 proto: int = 0) -> None:
        super().__init__(family, type, proto)
        self.meter = meter
        meter.connections += 1

    def send(self, data: Any, flags: int = 0) -> int:
        n = super().send(data, flags)
        self.meter.sent += n
        return n

    def sendall(self, data: Any, flags: int = 0) -> None:
        super().sendall(data, flags)
        self.meter.sent += memoryview(data).nbytes

    def sendmsg(self, buffers: Iterable[Any], *args: Any) -> int:  # asyncio's writelines on Python 3.12+
        n = super().sendmsg(buffers, *args)
        self.meter.sent += n
        return n

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        self.meter.received += len(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        n = super().recv_into(buffer, nbytes, flags)
        self.meter.received += n
        return n


def counting_session(meter: ByteMeter, *, base_url: str | None = None, headers: dict[str, str] | None = None,
                     timeout: float = 60.0) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection is a :class:`CountingSocket` on ``meter``.

    One connector for the whole group, no connection limit, keep-alive on: a
    thousand pollers reuse their connections instead of opening one per request.
    """

    def make_socket(addr_info: Any) -> socket.socket:
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        return CountingSocket(meter, family, type_, proto)

    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, socket_factory=make_socket)
    return aiohttp.ClientSession(base_url=base_url, headers=headers, connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=timeout))


# --- what to run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """``receivers`` simulated clients following the room one way.

    ``interval`` is the short-polling period T (seconds); ``timeout`` how long a
    long poll may be held by the server (seconds, at most 30).
    """

    approach: Approach
    receivers: int
    interval: float = 1.0
    timeout: int = 25

    def __post_init__(self) -> None:
        if self.approach not in APPROACHES:
            raise ValueError(f"approach must be one of {APPROACHES}, got {self.approach!r}")
        if self.receivers < 1:
            raise ValueError(f"receivers must be >= 1, got {self.receivers}")
        if self.interval <= 0:
            raise ValueError(f"interval must be > 0, got {self.interval}")
        if not 1 <= self.timeout <= 30:
            raise ValueError(f"timeout must be 1-30 s, got {self.timeout}")

    @property
    def label(self) -> str:
        if self.approach == "short":
            return f"short polling, T={self.interval:g} s"
        return LABELS[self.approach]


@dataclass(frozen=True)
class Scenario:
    """One room, one producer posting ``message_rate`` messages/s, and groups of receivers.

    Measured: ``window`` seconds, after a warm-up that puts every group in its
    steady state (connections open, polls in rhythm; with short polling the
    producer starts one interval early). Afterwards the receivers keep going until every message
    of the window has reached every receiver, or for at most ``drain`` seconds
    (default: the longest interval + 5 s): the latencies of the last messages
    count, the requests and bytes after the window do not.
    """

    groups: tuple[Group, ...]
    message_rate: float = 0.5
    window: float = 6.0
    text_chars: int = 40
    warmup: float | None = None
    drain: float | None = None

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("a scenario needs at least one group of receivers")
        if self.message_rate < 0 or self.window <= 0:
            raise ValueError("message_rate must be >= 0 and window > 0")

    @property
    def warmup_s(self) -> float:
        if self.warmup is not None:
            return self.warmup
        return max([1.0] + [g.interval for g in self.groups if g.approach == "short"])

    @property
    def drain_s(self) -> float:
        if self.drain is not None:
            return self.drain
        return 5.0 + max([0.0] + [g.interval for g in self.groups if g.approach == "short"])

    @property
    def lead_s(self) -> float:
        """How long before the window the producer starts: one polling interval, so that every
        short poller is in rhythm with the messages when the window opens (0 without short polling)."""
        return min(self.warmup_s, max([0.0] + [g.interval for g in self.groups if g.approach == "short"]))

    def post_times(self) -> list[float]:
        """When the producer posts, in seconds from the start of the window: evenly spaced, mid-slot.

        Negative times fall in the last polling interval before the window (see :attr:`lead_s`);
        only the messages of the window are measured.
        """
        if self.message_rate == 0:
            return []
        step = 1.0 / self.message_rate
        first = -math.floor(self.lead_s * self.message_rate + 0.5)
        times = (step * (k + 0.5) for k in range(first, int(self.window * self.message_rate) + 1))
        return [t for t in times if -self.lead_s <= t < self.window]


# --- results --------------------------------------------------------------------------


def expected_requests_per_s(approach: str, receivers: int, *, interval: float = 1.0,
                            message_rate: float = 0.0, timeout: float = 25.0) -> float:
    """What theory says: N/T for short polling; about N per message (and per timeout) for long
    polling; no requests at all once WebSockets or event streams are open."""
    if approach == "short":
        return receivers / interval
    if approach == "long":
        return receivers * max(message_rate, 1.0 / timeout)
    return 0.0


def expected_useless_fraction(message_rate: float, interval: float) -> float:
    """Short polling, messages evenly spaced: a poll finds something new with probability
    ``rate * T`` (at most 1), so ``1 - rate * T`` of them come back empty."""
    return max(0.0, 1.0 - message_rate * interval)


def expected_latency(interval: float) -> float:
    """Short polling adds T/2 on average: a message waits for the next poll, anywhere in [0, T]."""
    return interval / 2


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


@dataclass(frozen=True)
class GroupResult:
    """What one group of receivers cost and got during the window.

    ``requests`` and ``useless_requests`` are HTTP responses received in the
    window (useless: no new message in it); ``deliveries`` the messages received
    in the window, one per receiver per message (what the window's bytes paid
    for); ``window_traffic`` the bytes both ways in the window; ``setup_traffic``
    what came before (TCP connects, WebSocket handshakes and joins, the SSE
    requests and response heads, the first polls). ``messages`` were posted in
    the window: ``latencies`` holds one value per receiver for each of them
    (seconds, sorted), ``missing`` counts the deliveries of them that never
    came, ``duplicates`` those that came twice.
    """

    group: Group
    window: float
    message_rate: float
    messages: int
    requests: int
    useless_requests: int
    deliveries: int
    window_traffic: Traffic
    setup_traffic: Traffic
    latencies: tuple[float, ...]
    missing: int
    duplicates: int
    errors: tuple[str, ...] = ()

    # --- the figures ---

    @property
    def approach(self) -> str:
        return self.group.approach

    @property
    def receivers(self) -> int:
        return self.group.receivers

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.window

    @property
    def useless_per_s(self) -> float:
        return self.useless_requests / self.window

    @property
    def useless_fraction(self) -> float:
        """Share of requests answered with nothing new (0 when there were no requests)."""
        return self.useless_requests / self.requests if self.requests else 0.0

    @property
    def bytes_per_message(self) -> float:
        """Bytes on the wire, both directions, per message delivered (NaN if none was)."""
        return self.window_traffic.total / self.deliveries if self.deliveries else math.nan

    @property
    def bytes_per_s(self) -> float:
        return self.window_traffic.total / self.window

    @property
    def connections(self) -> int:
        """TCP connections the group opened (setup and window)."""
        return self.setup_traffic.connections + self.window_traffic.connections

    @property
    def expected_requests_per_s(self) -> float:
        g = self.group
        return expected_requests_per_s(g.approach, g.receivers, interval=g.interval,
                                       message_rate=self.message_rate, timeout=g.timeout)

    def near_theory(self, tolerance: float) -> bool:
        """Requests/s within ``tolerance`` (a fraction, 0.1 = 10%) of the theory (exactly 0 for push)."""
        expected = self.expected_requests_per_s
        return abs(self.requests_per_s - expected) <= tolerance * expected

    @property
    def exactly_once(self) -> bool:
        """Every receiver got every measured message, none twice."""
        return self.missing == 0 and self.duplicates == 0

    def latency_quantile(self, q: float) -> float:
        return _quantile(self.latencies, q)

    @property
    def latency_median(self) -> float:
        return self.latency_quantile(0.5)

    @property
    def latency_mean(self) -> float:
        return statistics.fmean(self.latencies) if self.latencies else math.nan

    @property
    def latency_p95(self) -> float:
        return self.latency_quantile(0.95)

    def row(self) -> dict[str, Any]:
        """One tidy row: the group's settings and figures, plain numbers."""
        g = self.group
        return {
            "approach": g.approach,
            "label": g.label,
            "receivers": g.receivers,
            "interval_s": g.interval if g.approach == "short" else None,
            "message_rate": self.message_rate,
            "window_s": self.window,
            "messages": self.messages,
            "requests": self.requests,
            "requests_per_s": self.requests_per_s,
            "expected_requests_per_s": self.expected_requests_per_s,
            "useless_requests": self.useless_requests,
            "useless_fraction": self.useless_fraction,
            "deliveries": self.deliveries,
            "bytes_sent": self.window_traffic.sent,
            "bytes_received": self.window_traffic.received,
            "bytes_per_message": self.bytes_per_message,
            "setup_bytes": self.setup_traffic.total,
            "connections": self.connections,
            "latency_median_s": self.latency_median,
            "latency_mean_s": self.latency_mean,
            "latency_p95_s": self.latency_p95,
            "missing": self.missing,
            "duplicates": self.duplicates,
        }

    def summary(self) -> str:
        """A few readable lines."""
        g = self.group
        lines = [
            f"{g.label}, {g.receivers:,} receivers, {self.messages} message{'s' if self.messages != 1 else ''} "
            f"in {self.window:g} s:",
            f"  requests/s       {self.requests_per_s:10,.1f}   (theory {self.expected_requests_per_s:,.1f})",
            f"  useless          {self.useless_fraction:10.0%}   ({self.useless_per_s:,.1f}/s answered 'nothing new')",
            f"  bytes/message    {self.bytes_per_message:10,.0f}   ({self.deliveries:,} deliveries, "
            f"{self.window_traffic.total:,} B both ways)",
            f"  latency          median {self.latency_median * 1000:,.1f} ms, mean {self.latency_mean * 1000:,.1f} ms, "
            f"p95 {self.latency_p95 * 1000:,.1f} ms",
            f"  connections      {self.connections:,} (setup {self.setup_traffic.total:,} B)",
        ]
        if self.missing or self.duplicates:
            lines.append(f"  missing {self.missing}, duplicates {self.duplicates}")
        if self.errors:
            lines.append(f"  errors: {len(self.errors)} (first: {self.errors[0]})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<GroupResult {self.group.label} N={self.receivers}: {self.requests_per_s:.1f} req/s, "
                f"{self.bytes_per_message:.0f} B/msg, median {self.latency_median * 1000:.1f} ms>")


@dataclass(frozen=True)
class RunResult:
    """One run: its scenario, the room it used, and one result per group."""

    scenario: Scenario
    room: str
    messages: int
    groups: tuple[GroupResult, ...]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.groups)

    def rows(self) -> list[dict[str, Any]]:
        return [g.row() for g in self.groups]

    def summary(self) -> str:
        head = (f"room {self.room}: {self.messages} messages at {self.scenario.message_rate:g}/s, "
                f"window {self.scenario.window:g} s")
        return "\n".join([head, *(g.summary() for g in self.groups)])


def select(results: Iterable[GroupResult], approach: str) -> list[GroupResult]:
    """The results of one approach, fewest receivers first."""
    return sorted((r for r in results if r.approach == approach), key=lambda r: r.receivers)


def table(results: Iterable[GroupResult]) -> str:
    """A fixed-width text table of group results, one line each."""
    lines = [f"{'approach':<24}{'N':>6}{'req/s':>9}{'useless':>9}{'B/msg':>8}{'median ms':>11}"
             f"{'p95 ms':>9}{'conns':>7}"]
    for r in results:
        lines.append(f"{r.group.label:<24}{r.receivers:>6,}{r.requests_per_s:>9,.1f}{r.useless_fraction:>9.0%}"
                     f"{r.bytes_per_message:>8,.0f}{r.latency_median * 1000:>11,.1f}{r.latency_p95 * 1000:>9,.1f}"
                     f"{r.connections:>7,}")
    return "\n".join(lines)


def rows(results: Iterable[GroupResult | RunResult]) -> list[dict[str, Any]]:
    """Tidy rows (one dict per group) from group results and/or whole runs."""
    out: list[dict[str, Any]] = []
    for result in results:
        out.extend(result.rows() if isinstance(result, RunResult) else [result.row()])
    return out


# --- running it -------------------------------------------------------------------------


class LabLike(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...

    def account(self, username: str, password: str = ...) -> Account: ...


@dataclass
class _Recorder:
    """Everything one group saw, time-stamped (loop time for the window, wall time for latency)."""

    group: Group
    meter: ByteMeter = field(default_factory=ByteMeter)
    responses: list[tuple[float, bool]] = field(default_factory=list)  # (when, useless)
    received: list[tuple[int, int, float, float]] = field(default_factory=list)  # (receiver, seq, server ts, wall)
    received_at: list[float] = field(default_factory=list)  # loop time of each entry of ``received``
    errors: list[str] = field(default_factory=list)

    def response(self, when: float, messages: list[dict[str, Any]]) -> None:
        self.responses.append((when, not messages))

    def message(self, receiver: int, message: dict[str, Any], when: float, wall: float) -> None:
        seq, ts = message.get("seq"), message.get("ts")
        if isinstance(seq, int) and isinstance(ts, int | float):
            self.received.append((receiver, seq, float(ts), wall))
            self.received_at.append(when)

    def error(self, exc: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:200])


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


class _Run:
    """One scenario against one lab: set up, warm up, measure, drain, tear down."""

    def __init__(self, lab: LabLike, scenario: Scenario, producer: Account, receiver: Account) -> None:
        self.lab = lab
        self.scenario = scenario
        self.producer = producer
        self.receiver = receiver
        self.room = f"lesson01-{secrets.token_hex(4)}"
        self.loop = asyncio.get_running_loop()
        self.recorders = [_Recorder(g) for g in scenario.groups]
        self.sessions: list[aiohttp.ClientSession] = []
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.streams: list[aiohttp.ClientResponse] = []  # the open SSE responses
        self.tasks: list[tuple[asyncio.Task[None], _Recorder]] = []
        self.producing: asyncio.Task[None] | None = None
        self.stopping = False
        self.start_at = 0.0  # loop time receivers start
        self.t0 = 0.0  # loop time the window opens
        self.produced: set[int] = set()  # seqs of every message the producer posted
        self.posted: set[int] = set()  # those posted in the window: the measured ones

    # --- receivers ---

    def _session(self, recorder: _Recorder, **kwargs: Any) -> aiohttp.ClientSession:
        session = counting_session(recorder.meter, base_url=self.lab.url,
                                   headers={"Authorization": f"Bearer {self.receiver.token}"}, **kwargs)
        self.sessions.append(session)
        return session

    async def _short(self, rec: _Recorder, session: aiohttp.ClientSession, i: int) -> None:
        g = rec.group
        path = f"/api/rooms/{self.room}/messages"
        after = 0
        next_at = self.start_at + g.interval * i / g.receivers  # evenly staggered: clients are not in sync
        while not self.stopping:
            await _sleep_until(self.loop, next_at)
            if self.stopping:
                return
            try:
                async with session.get(path, params={"after": after}) as resp:
                    resp.raise_for_status()
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                rec.error(exc)
            else:
                now, wall = self.loop.time(), time.time()
                rec.response(now, body["messages"])
                for message in body["messages"]:
                    rec.message(i, message, now, wall)
                after = max(after, int(body["last_seq"]))
            next_at += g.interval  # a fixed schedule: late (a busy machine) means the next poll at once

    async def _long(self, rec: _Recorder, session: aiohttp.ClientSession, i: int) -> None:
        g = rec.group
        path = f"/api/rooms/{self.room}/poll"
        after = 0
        while not self.stopping:
            try:
                async with session.get(path, params={"after": after, "timeout": g.timeout}) as resp:
                    resp.raise_for_status()
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                rec.error(exc)
                await asyncio.sleep(0.1)
                continue
            now, wall = self.loop.time(), time.time()
            messages = [m for m in body["messages"] if m.get("text") != END_TEXT]
            if self.stopping and len(messages) < len(body["messages"]):
                return  # the end-of-run message: not a delivery, not a request of the window
            rec.response(now, messages)
            for message in messages:
                rec.message(i, message, now, wall)
            after = max(after, int(body["last_seq"]))

    async def _open_websocket(self, rec: _Recorder, session: aiohttp.ClientSession,
                              gate: asyncio.Semaphore) -> aiohttp.ClientWebSocketResponse:
        async with gate:
            ws = await session.ws_connect("/ws", params={"token": self.receiver.token}, autoping=True)
            welcome = await ws.receive_json(timeout=10)
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"expected a welcome, got {welcome!r:.200}")
            await ws.send_json({"type": "join", "room": self.room, "ref": "join"})
            while True:  # the ack of the join (a member_joined may come first)
                reply = await ws.receive_json(timeout=10)
                if reply.get("ref") == "join":
                    if reply.get("type") != "ack":
                        raise RuntimeError(f"join refused: {reply!r:.200}")
                    return ws

    async def _websocket(self, rec: _Recorder, ws: aiohttp.ClientWebSocketResponse, i: int) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now, wall = self.loop.time(), time.time()
            try:
                message = msg.json()
            except ValueError as exc:
                rec.error(exc)
                continue
            if message.get("type") == "chat" and message.get("room") == self.room:
                rec.message(i, message, now, wall)

    async def _open_stream(self, session: aiohttp.ClientSession, gate: asyncio.Semaphore) -> aiohttp.ClientResponse:
        """One SSE request; returns once the response head is in (the body streams on)."""
        async with gate:
            resp = await session.get(f"/api/rooms/{self.room}/events", params={"after": 0},
                                     headers={"Accept": "text/event-stream"})
            if resp.status != 200 or resp.content_type != "text/event-stream":
                resp.release()
                raise RuntimeError(f"SSE refused: {resp.status} {resp.content_type}")
            self.streams.append(resp)
            return resp

    async def _sse(self, rec: _Recorder, resp: aiohttp.ClientResponse, i: int) -> None:
        """Parse the event stream line by line, as a browser's EventSource does (data, id, comments)."""
        data: list[str] = []
        async for raw in resp.content:  # one line at a time, as the bytes arrive
            line = raw.decode("utf-8").rstrip("\r\n")
            if line:
                if line.startswith(":"):
                    continue  # a comment: ": keep-alive"
                name, _, value = line.partition(":")
                if name == "data":
                    data.append(value.removeprefix(" "))
                continue  # "id:" (what a reconnect would send as Last-Event-ID), "event:", "retry:"
            if not data:
                continue
            now, wall = self.loop.time(), time.time()  # a blank line: the event is complete
            payload, data = "\n".join(data), []
            try:
                message = json.loads(payload)
            except ValueError as exc:
                rec.error(exc)
                continue
            if message.get("text") == END_TEXT:
                continue
            if message.get("type") == "chat" and message.get("room") == self.room:
                rec.message(i, message, now, wall)
        if not self.stopping:
            raise ConnectionError("the event stream ended")

    async def _setup(self) -> list[tuple[Callable[[], Awaitable[None]], _Recorder]]:
        """Open what must be open before the clock starts; return the receivers to start."""
        starters: list[tuple[Callable[[], Awaitable[None]], _Recorder]] = []
        for rec in self.recorders:
            g = rec.group
            if g.approach == "short":
                session = self._session(rec)
                starters += [(lambda rec=rec, s=session, i=i: self._short(rec, s, i), rec) for i in range(g.receivers)]
            elif g.approach == "long":
                session = self._session(rec, timeout=g.timeout + 30)
                starters += [(lambda rec=rec, s=session, i=i: self._long(rec, s, i), rec) for i in range(g.receivers)]
            elif g.approach == "sse":
                session = self._session(rec, timeout=3600)
                gate = asyncio.Semaphore(CONNECT_CHUNK)
                streams = await asyncio.gather(*(self._open_stream(session, gate) for _ in range(g.receivers)))
                starters += [(lambda rec=rec, r=r, i=i: self._sse(rec, r, i), rec) for i, r in enumerate(streams)]
            else:
                session = self._session(rec, timeout=3600)
                gate = asyncio.Semaphore(CONNECT_CHUNK)
                sockets = await asyncio.gather(*(self._open_websocket(rec, session, gate) for _ in range(g.receivers)))
                self.sockets.extend(sockets)
                starters += [(lambda rec=rec, ws=ws, i=i: self._websocket(rec, ws, i), rec)
                             for i, ws in enumerate(sockets)]
        return starters

    # --- the producer ---

    async def _produce(self, session: aiohttp.ClientSession) -> None:
        s = self.scenario
        path = f"/api/rooms/{self.room}/messages"
        for k, offset in enumerate(s.post_times()):
            await _sleep_until(self.loop, self.t0 + offset)
            text = f"message {k + 1:04d} ".ljust(s.text_chars, ".")
            async with session.post(path, json={"text": text}) as resp:
                resp.raise_for_status()
                body = await resp.json()
            self.produced.add(int(body["seq"]))
            if offset >= 0:
                self.posted.add(int(body["seq"]))

    # --- the whole run ---

    async def execute(self) -> RunResult:
        s = self.scenario
        producer = aiohttp.ClientSession(base_url=self.lab.url, timeout=aiohttp.ClientTimeout(total=30),
                                         headers={"Authorization": f"Bearer {self.producer.token}"})
        try:
            starters = await self._setup()
            self.start_at = self.loop.time()
            self.t0 = self.start_at + s.warmup_s
            t_end = self.t0 + s.window
            self.producing = producing = asyncio.create_task(self._produce(producer))
            self.tasks = [(asyncio.create_task(start()), rec) for start, rec in starters]
            await _sleep_until(self.loop, self.t0)
            before = [rec.meter.snapshot() for rec in self.recorders]
            await _sleep_until(self.loop, t_end)
            after = [rec.meter.snapshot() for rec in self.recorders]
            await producing
            await self._drain(t_end + s.drain_s)
            await self._stop(producer)
        finally:
            await self._close(producer)
        results = tuple(self._result(rec, b, a, t_end) for rec, b, a in zip(self.recorders, before, after))
        return RunResult(s, self.room, len(self.posted), results)

    def _complete(self) -> bool:
        """Has every receiver received every measured message?"""
        want = len(self.posted)
        for rec in self.recorders:
            got = {(receiver, seq) for receiver, seq, _, _ in rec.received if seq in self.posted}
            if len(got) < want * rec.group.receivers:
                return False
        return True

    async def _drain(self, deadline: float) -> None:
        """Keep receiving until every measured message has arrived everywhere, or ``deadline``."""
        while self.loop.time() < deadline and not self._complete():
            await asyncio.sleep(min(0.05, max(0.0, deadline - self.loop.time())))

    async def _stop(self, producer: aiohttp.ClientSession) -> None:
        """Stop every receiver; keep what their tasks failed with."""
        self.stopping = True
        for task, rec in self.tasks:
            if rec.group.approach == "sse":
                task.cancel()
        for stream in self.streams:
            stream.close()  # hang up: the server's stream ends at its next write
        if any(g.approach in ("long", "sse") for g in self.scenario.groups):
            # Wake every parked long poll, or the server would hold each one until its timeout
            # (and every hung-up event stream, which then finds its client gone).
            async with producer.post(f"/api/rooms/{self.room}/messages", json={"text": END_TEXT}) as resp:
                await resp.read()
        for task, rec in self.tasks:
            if rec.group.approach != "websocket":
                task.cancel()
        with contextlib.suppress(TimeoutError):  # a polite close for each socket, within reason
            async with asyncio.timeout(5):
                await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        await asyncio.gather(*(task for task, _ in self.tasks), return_exceptions=True)
        for task, rec in self.tasks:
            if not task.cancelled() and task.exception() is not None:
                rec.error(task.exception())  # type: ignore[arg-type]

    async def _close(self, producer: aiohttp.ClientSession) -> None:
        for task in [*(task for task, _ in self.tasks), *([self.producing] if self.producing else [])]:
            task.cancel()
        await asyncio.gather(*(s.close() for s in self.sessions), producer.close(), return_exceptions=True)

    def _result(self, rec: _Recorder, before: Traffic, after: Traffic, t_end: float) -> GroupResult:
        g, s = rec.group, self.scenario
        in_window = [useless for when, useless in rec.responses if self.t0 <= when <= t_end]
        posted = self.posted
        seen: set[tuple[int, int]] = set()
        latencies: list[float] = []
        duplicates = deliveries = 0
        delivered: set[tuple[int, int]] = set()
        for (receiver, seq, ts, wall), when in zip(rec.received, rec.received_at):
            if seq not in self.produced or (receiver, seq) in delivered:
                duplicates += (receiver, seq) in delivered
                continue
            delivered.add((receiver, seq))
            if self.t0 <= when <= t_end:
                deliveries += 1  # what the window's bytes paid for (messages of the lead-in too)
            if seq in posted:
                seen.add((receiver, seq))
                latencies.append(max(0.0, wall - ts))
        return GroupResult(
            group=g,
            window=s.window,
            message_rate=s.message_rate,
            messages=len(posted),
            requests=len(in_window),
            useless_requests=sum(in_window),
            deliveries=deliveries,
            window_traffic=after - before,
            setup_traffic=before,
            latencies=tuple(sorted(latencies)),
            missing=len(posted) * g.receivers - len(seen),
            duplicates=duplicates,
            errors=tuple(rec.errors),
        )


async def measure(lab: LabLike, scenario: Scenario) -> RunResult:
    """Run ``scenario`` against ``lab`` in a fresh room; all receivers share one account."""
    producer, receiver = await asyncio.gather(asyncio.to_thread(lab.account, PRODUCER),
                                              asyncio.to_thread(lab.account, RECEIVER))
    return await _Run(lab, scenario, producer, receiver).execute()


@dataclass(frozen=True)
class PollAnatomy:
    """One short poll taken apart: the exact bytes of the request and of the response,
    rebuilt from what aiohttp sent and parsed, next to what the socket counted."""

    request: bytes
    response_head: bytes
    body: bytes
    counted: Traffic

    @property
    def rebuilt(self) -> Traffic:
        return Traffic(len(self.request), len(self.response_head) + len(self.body), 1)

    @property
    def matches(self) -> bool:
        """True when the socket counted exactly the rebuilt request and response."""
        return self.counted == self.rebuilt

    @property
    def header_bytes(self) -> int:
        """Everything but the response body: request line and headers, status line and headers."""
        return len(self.request) + len(self.response_head)

    def summary(self) -> str:
        return (f"request {len(self.request)} B (all headers), response {len(self.response_head)} B of headers "
                f"+ {len(self.body)} B of body = {self.rebuilt.total} B; the socket counted "
                f"{self.counted.sent} B sent + {self.counted.received} B received")


def _request_bytes(info: aiohttp.RequestInfo) -> bytes:
    lines = [f"{info.method} {info.real_url.raw_path_qs} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in info.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _response_head(resp: aiohttp.ClientResponse) -> bytes:
    head = f"HTTP/{resp.version.major}.{resp.version.minor} {resp.status} {resp.reason}\r\n".encode("latin-1")
    head += b"".join(name + b": " + value + b"\r\n" for name, value in resp.raw_headers)
    return head + b"\r\n"


async def anatomy_of_a_poll(lab: LabLike, room: str = "general", after: int = 0) -> PollAnatomy:
    """Make one short poll on a fresh connection and take it apart, byte by byte."""
    account = await asyncio.to_thread(lab.account, RECEIVER)
    meter = ByteMeter()
    async with counting_session(meter, base_url=lab.url, headers={"Authorization": f"Bearer {account.token}"}) as s:
        async with s.get(f"/api/rooms/{room}/messages", params={"after": after}) as resp:
            body = await resp.read()
            request, head = _request_bytes(resp.request_info), _response_head(resp)
        counted = meter.snapshot()
    return PollAnatomy(request, head, body, counted)


# --- the lesson's experiments -----------------------------------------------------------


async def quiet_room(lab: LabLike, *, receivers: int = 1000, interval: float = 1.0, message_rate: float = 0.2,
                     window: float = 5.0, quick: bool = False) -> GroupResult:
    """The notes' claim: N users polling every T seconds in a room where little happens."""
    if quick:
        receivers, window = min(receivers, 50), min(window, 3.0)
    run = await measure(lab, Scenario((Group("short", receivers, interval=interval),),
                                      message_rate=message_rate, window=window))
    return run.groups[0]


async def compare(lab: LabLike, sizes: Sequence[int] = (10, 100, 1000), *, interval: float = 1.0,
                  message_rate: float = 0.5, window: float = 6.0, shared_below: int = 1000,
                  quick: bool = False) -> list[GroupResult]:
    """The four approaches for each number of receivers.

    Below ``shared_below`` receivers, the four groups follow the same room in one
    run (the same messages, served four ways at once); at ``shared_below`` and
    above, each approach gets a run of its own, so that a thousand short pollers
    do not slow down the measurement of the others (client and server share the
    machine's cores).
    """
    if quick:
        sizes, window = [n for n in sizes if n <= 20] or [10], min(window, 3.0)
    results: list[GroupResult] = []
    for n in sizes:
        groups = tuple(Group(a, n, interval=interval) for a in APPROACHES)
        batches = [groups] if n < shared_below else [(g,) for g in groups]
        for batch in batches:
            run = await measure(lab, Scenario(batch, message_rate=message_rate, window=window))
            results.extend(run.groups)
    return results


async def interval_sweep(lab: LabLike, intervals: Sequence[float] = (0.25, 0.5, 1.0, 2.0), *,
                         receivers: int = 10, message_rate: float = 1.0, window: float = 8.0,
                         quick: bool = False) -> list[GroupResult]:
    """Short polling at several intervals on the same room at once, plus WebSocket push as the floor."""
    if quick:
        intervals, window = [t for t in intervals if t <= 1.0] or [0.5], min(window, 3.0)
    groups = tuple(Group("short", receivers, interval=t) for t in intervals) + (Group("websocket", receivers),)
    run = await measure(lab, Scenario(groups, message_rate=message_rate, window=window))
    return list(run.groups)

