"""What to run, and what theory expects of it: receivers, scenarios and the formulas.

Pure data, no I/O. A :class:`Group` is some receivers following a room one way
(:data:`APPROACHES`), a :class:`Scenario` one room, one producer and its groups,
timed to the second (:meth:`Scenario.post_times`). The ``expected_*`` functions
are the lesson's back-of-the-envelope figures that the measurements are held
against: N/T requests per second for short polling, ``1 - rate * T`` of them
useless, and T/2 of added latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "APPROACHES",
    "COLORS",
    "LABELS",
    "Approach",
    "Group",
    "Scenario",
    "expected_latency",
    "expected_requests_per_s",
    "expected_useless_fraction",
]

Approach = Literal["short", "long", "websocket", "sse"]
APPROACHES: tuple[Approach, ...] = ("short", "long", "websocket", "sse")
LABELS = {"short": "short polling", "long": "long polling", "websocket": "WebSocket push", "sse": "Server-Sent Events"}
COLORS = {"short": "#d62728", "long": "#ff7f0e", "websocket": "#2ca02c", "sse": "#1f77b4"}


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


# --- what theory says -------------------------------------------------------------------


def expected_requests_per_s(
    approach: str, receivers: int, *, interval: float = 1.0, message_rate: float = 0.0, timeout: float = 25.0
) -> float:
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
