"""The lesson's experiments, each one call: a poll taken apart, a quiet room, the four
approaches side by side, and latency against the polling interval.

:func:`anatomy_of_a_poll` (one short poll, byte by byte), :func:`quiet_room` (N
users polling a room where little happens), :func:`compare` (the four approaches
for N = 10, 100, 1,000) and :func:`interval_sweep` (latency against the polling
interval); each of the last three takes ``quick=True`` for CI (small N, 3 s windows).

Each of those three first fits its numbers of receivers to the open files this
process has left (:mod:`.capacity`), and says in one line when it had to scale them down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from ...resources import free_descriptors
from ..lab import LabLike
from .capacity import fit_sizes, scaling_note
from .meter import ByteMeter, counting_session
from .results import GroupResult, PollAnatomy
from .runner import RECEIVER, measure
from .scenario import APPROACHES, Group, Scenario

__all__ = ["anatomy_of_a_poll", "compare", "interval_sweep", "quiet_room", "short_polling"]


def _request_bytes(info: aiohttp.RequestInfo) -> bytes:
    lines = [f"{info.method} {info.real_url.raw_path_qs} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in info.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _response_head(resp: aiohttp.ClientResponse) -> bytes:
    version = resp.version or aiohttp.HttpVersion11  # set once the response head was read
    head = f"HTTP/{version.major}.{version.minor} {resp.status} {resp.reason}\r\n".encode("latin-1")
    head += b"".join(name + b": " + value + b"\r\n" for name, value in resp.raw_headers)
    return head + b"\r\n"


def _fit(sizes: Sequence[int], at_once: int | Sequence[int] = 1) -> tuple[int, ...]:
    """``sizes`` fitted to the open files left (printing one line if they had to shrink)."""
    free = free_descriptors()
    fitted = fit_sizes(sizes, free, at_once=at_once)
    note = scaling_note(sizes, fitted, free)
    if note is not None:
        print(note)
    return fitted


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


async def quiet_room(
    lab: LabLike,
    *,
    receivers: int = 1000,
    interval: float = 1.0,
    message_rate: float = 0.2,
    window: float = 5.0,
    quick: bool = False,
) -> GroupResult:
    """The notes' claim: N users polling every T seconds in a room where little happens."""
    if quick:
        receivers, window = min(receivers, 50), min(window, 3.0)
    return await short_polling(lab, receivers=receivers, interval=interval, message_rate=message_rate, window=window)


async def short_polling(
    lab: LabLike, *, receivers: int, interval: float, message_rate: float = 1.0, window: float = 3.0
) -> GroupResult:
    """``receivers`` short pollers, every ``interval`` seconds, on a room with ``message_rate`` messages/s."""
    (receivers,) = _fit([receivers])
    run = await measure(
        lab, Scenario((Group("short", receivers, interval=interval),), message_rate=message_rate, window=window)
    )
    return run.groups[0]


async def compare(
    lab: LabLike,
    sizes: Sequence[int] = (10, 100, 1000),
    *,
    interval: float = 1.0,
    message_rate: float = 0.5,
    window: float = 6.0,
    shared_below: int = 1000,
    quick: bool = False,
) -> list[GroupResult]:
    """The four approaches for each number of receivers.

    Below ``shared_below`` receivers, the four groups follow the same room in one
    run (the same messages, served four ways at once); at ``shared_below`` and
    above, each approach gets a run of its own, so that a thousand short pollers
    do not slow down the measurement of the others (client and server share the
    machine's cores).
    """
    if quick:
        sizes, window = [n for n in sizes if n <= 20] or [10], min(window, 3.0)
    together = [n < shared_below for n in sizes]  # decided on the sizes asked for, before any fitting
    fitted = _fit(sizes, at_once=[len(APPROACHES) if shared else 1 for shared in together])
    results: list[GroupResult] = []
    for n, shared in dict.fromkeys(zip(fitted, together, strict=True)):  # a tiny limit may make two alike
        groups = tuple(Group(a, n, interval=interval) for a in APPROACHES)
        batches = [groups] if shared else [(g,) for g in groups]
        for batch in batches:
            run = await measure(lab, Scenario(batch, message_rate=message_rate, window=window))
            results.extend(run.groups)
    return results


async def interval_sweep(
    lab: LabLike,
    intervals: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    *,
    receivers: int = 10,
    message_rate: float = 1.0,
    window: float = 8.0,
    quick: bool = False,
) -> list[GroupResult]:
    """Short polling at several intervals on the same room at once, plus WebSocket push as the floor."""
    if quick:
        intervals, window = [t for t in intervals if t <= 1.0] or [0.5], min(window, 3.0)
    (receivers,) = _fit([receivers], at_once=len(intervals) + 1)
    groups = tuple(Group("short", receivers, interval=t) for t in intervals) + (Group("websocket", receivers),)
    run = await measure(lab, Scenario(groups, message_rate=message_rate, window=window))
    return list(run.groups)
