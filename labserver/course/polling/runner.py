"""Running a scenario against the live lab: the producer, the receivers, the clock.

:func:`measure` runs one :class:`~.scenario.Scenario` in a fresh room: it opens
what must be open before the clock starts (WebSockets joined to the room, event
streams), starts every receiver and the producer, snapshots each group's byte
meter when the window opens and when it closes, keeps receiving until every
message of the window has arrived everywhere (or the drain time is up), and
turns what each group saw into a :class:`~.results.GroupResult`. Latency is the
server's ``ts``, stamped when it stored the message, against the moment the
receiver parsed it (one machine, one clock).

The receivers themselves are the short, plain loops of :mod:`.receivers` (what
lesson 01 shows): the runner gives each one an inbox that stamps and records what
it delivers, counts bytes underneath them (:mod:`.meter`), and stops them by
cancelling their tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp

from ...wire import Traffic
from ..lab import LabLike
from ..rest_client import Account
from .meter import ByteMeter, counting_session
from .receivers import long_poller, open_websocket, short_poller, sse_receiver, websocket_receiver
from .results import GroupResult, RunResult
from .scenario import Group, Scenario

__all__ = ["PRODUCER", "RECEIVER", "measure"]

PRODUCER = "poll_producer"
RECEIVER = "poll_receiver"
CONNECT_CHUNK = 100  # WebSocket handshakes in flight at once
END_TEXT = "[end of run]"  # posted after the run: wakes the long polls still parked on the server


@dataclass
class _Recorder:
    """Everything one group saw, time-stamped (loop time for the window, wall time for latency)."""

    group: Group
    meter: ByteMeter = field(default_factory=ByteMeter)
    responses: list[tuple[float, bool]] = field(default_factory=list)  # (when, useless)
    received: list[tuple[int, int, float, float]] = field(default_factory=list)  # (receiver, seq, server ts, wall)
    received_at: list[float] = field(default_factory=list)  # loop time of each entry of ``received``
    errors: list[str] = field(default_factory=list)

    def inbox(self, receiver: int) -> _Inbox:
        """The inbox receiver number ``receiver`` of this group delivers to."""
        return _Inbox(self, receiver)

    def failed(self, exc: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:200])


class _Inbox:
    """One receiver's :class:`~.receivers.Inbox`: stamps each delivery with the time and records it."""

    __slots__ = ("polls", "receiver", "recorder")

    def __init__(self, recorder: _Recorder, receiver: int) -> None:
        self.recorder = recorder
        self.receiver = receiver
        self.polls = recorder.group.approach in ("short", "long")  # one delivery per HTTP response

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        loop_now, wall = asyncio.get_running_loop().time(), time.time()
        rec = self.recorder
        chat = [m for m in messages if m.get("text") != END_TEXT]  # the end-of-run wake-up is not a delivery
        if self.polls:
            rec.responses.append((loop_now, not chat))
        for message in chat:
            seq, ts = message.get("seq"), message.get("ts")
            if isinstance(seq, int) and isinstance(ts, int | float):
                rec.received.append((self.receiver, seq, float(ts), wall))
                rec.received_at.append(loop_now)

    def failed(self, error: BaseException) -> None:
        self.recorder.failed(error)


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
        self.start_at = 0.0  # loop time receivers start
        self.t0 = 0.0  # loop time the window opens
        self.produced: set[int] = set()  # seqs of every message the producer posted
        self.posted: set[int] = set()  # those posted in the window: the measured ones

    # --- receivers ---

    def _session(self, recorder: _Recorder, **kwargs: Any) -> aiohttp.ClientSession:
        session = counting_session(
            recorder.meter, base_url=self.lab.url, headers={"Authorization": f"Bearer {self.receiver.token}"}, **kwargs
        )
        self.sessions.append(session)
        return session

    async def _open_stream(self, session: aiohttp.ClientSession, gate: asyncio.Semaphore) -> aiohttp.ClientResponse:
        """One SSE request; returns once the response head is in (the body streams on)."""
        async with gate:
            resp = await session.get(
                f"/api/rooms/{self.room}/events", params={"after": 0}, headers={"Accept": "text/event-stream"}
            )
            if resp.status != 200 or resp.content_type != "text/event-stream":
                resp.release()
                raise RuntimeError(f"SSE refused: {resp.status} {resp.content_type}")
            self.streams.append(resp)
            return resp

    async def _open_websocket(
        self, session: aiohttp.ClientSession, gate: asyncio.Semaphore
    ) -> aiohttp.ClientWebSocketResponse:
        async with gate:
            return await open_websocket(session, self.receiver.token, self.room)

    async def _setup(self) -> list[tuple[Callable[[], Coroutine[Any, Any, None]], _Recorder]]:
        """Open what must be open before the clock starts; return the receivers to start."""
        starters: list[tuple[Callable[[], Coroutine[Any, Any, None]], _Recorder]] = []
        room = self.room
        for rec in self.recorders:
            g = rec.group
            if g.approach == "short":
                session = self._session(rec)
                starters += [
                    (
                        partial(
                            short_poller,
                            session,
                            room,
                            rec.inbox(i),
                            interval=g.interval,
                            delay=g.interval * i / g.receivers,
                        ),
                        rec,
                    )
                    for i in range(g.receivers)
                ]  # evenly staggered over the interval: real clients are not in step
            elif g.approach == "long":
                session = self._session(rec, timeout=g.timeout + 30)
                starters += [
                    (partial(long_poller, session, room, rec.inbox(i), timeout=g.timeout), rec)
                    for i in range(g.receivers)
                ]
            elif g.approach == "sse":
                session = self._session(rec, timeout=3600)
                gate = asyncio.Semaphore(CONNECT_CHUNK)
                streams = await asyncio.gather(*(self._open_stream(session, gate) for _ in range(g.receivers)))
                starters += [(partial(sse_receiver, r, room, rec.inbox(i)), rec) for i, r in enumerate(streams)]
            else:
                session = self._session(rec, timeout=3600)
                gate = asyncio.Semaphore(CONNECT_CHUNK)
                sockets = await asyncio.gather(*(self._open_websocket(session, gate) for _ in range(g.receivers)))
                self.sockets.extend(sockets)
                starters += [(partial(websocket_receiver, ws, room, rec.inbox(i)), rec) for i, ws in enumerate(sockets)]
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
        producer = aiohttp.ClientSession(
            base_url=self.lab.url,
            timeout=aiohttp.ClientTimeout(total=30),
            headers={"Authorization": f"Bearer {self.producer.token}"},
        )
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
        results = tuple(self._result(rec, b, a, t_end) for rec, b, a in zip(self.recorders, before, after, strict=True))
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
        for task, rec in self.tasks:
            if rec.group.approach != "websocket":
                task.cancel()  # a poll in flight is abandoned: aiohttp closes its connection
        for stream in self.streams:
            stream.close()  # hang up: the server's stream ends at its next write
        if any(g.approach in ("long", "sse") for g in self.scenario.groups):
            # Wake every long poll still parked on the server, or it would hold each one until its
            # timeout (and every hung-up event stream, which then finds its client gone).
            async with producer.post(f"/api/rooms/{self.room}/messages", json={"text": END_TEXT}) as resp:
                await resp.read()
        with contextlib.suppress(TimeoutError):  # a polite close for each socket, within reason
            async with asyncio.timeout(5):
                await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        await asyncio.gather(*(task for task, _ in self.tasks), return_exceptions=True)
        for task, rec in self.tasks:
            if not task.cancelled() and task.exception() is not None:
                rec.failed(task.exception())  # type: ignore[arg-type]

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
        for (receiver, seq, ts, wall), when in zip(rec.received, rec.received_at, strict=True):
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
    producer, receiver = await asyncio.gather(
        asyncio.to_thread(lab.account, PRODUCER), asyncio.to_thread(lab.account, RECEIVER)
    )
    return await _Run(lab, scenario, producer, receiver).execute()
