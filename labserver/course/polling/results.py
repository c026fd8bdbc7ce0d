"""What a run measured: one result per group of receivers, the figures drawn from it, tables.

Pure data, no I/O: :class:`GroupResult` holds what a group cost (requests, bytes
both ways, connections) and got (every delivery's latency) in the measured window,
and computes the lesson's figures from them; :class:`RunResult` is a whole run;
:class:`PollAnatomy` one short poll taken apart byte by byte. :func:`table` and
:func:`rows` put results side by side.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ...wire import Traffic
from .scenario import Group, Scenario, expected_requests_per_s

__all__ = ["GroupResult", "PollAnatomy", "RunResult", "expectation", "prediction", "rows", "select", "table"]


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
        return expected_requests_per_s(
            g.approach, g.receivers, interval=g.interval, message_rate=self.message_rate, timeout=g.timeout
        )

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
        return (
            f"<GroupResult {self.group.label} N={self.receivers}: {self.requests_per_s:.1f} req/s, "
            f"{self.bytes_per_message:.0f} B/msg, median {self.latency_median * 1000:.1f} ms>"
        )


@dataclass(frozen=True)
class RunResult:
    """One run: its scenario, the room it used, and one result per group."""

    scenario: Scenario
    room: str
    messages: int
    groups: tuple[GroupResult, ...]

    def __iter__(self) -> Iterator[GroupResult]:
        return iter(self.groups)

    def rows(self) -> list[dict[str, Any]]:
        return [g.row() for g in self.groups]

    def summary(self) -> str:
        head = (
            f"room {self.room}: {self.messages} messages at {self.scenario.message_rate:g}/s, "
            f"window {self.scenario.window:g} s"
        )
        return "\n".join([head, *(g.summary() for g in self.groups)])


def select(results: Iterable[GroupResult], approach: str) -> list[GroupResult]:
    """The results of one approach, fewest receivers first."""
    return sorted((r for r in results if r.approach == approach), key=lambda r: r.receivers)


def table(results: Iterable[GroupResult]) -> str:
    """A fixed-width text table of group results, one line each."""
    lines = [
        f"{'approach':<24}{'N':>6}{'req/s':>9}{'useless':>9}{'B/msg':>8}{'median ms':>11}{'p95 ms':>9}{'conns':>7}"
    ]
    for r in results:
        lines.append(
            f"{r.group.label:<24}{r.receivers:>6,}{r.requests_per_s:>9,.1f}{r.useless_fraction:>9.0%}"
            f"{r.bytes_per_message:>8,.0f}{r.latency_median * 1000:>11,.1f}{r.latency_p95 * 1000:>9,.1f}"
            f"{r.connections:>7,}"
        )
    return "\n".join(lines)


def rows(results: Iterable[GroupResult | RunResult]) -> list[dict[str, Any]]:
    """Tidy rows (one dict per group) from group results and/or whole runs."""
    out: list[dict[str, Any]] = []
    for result in results:
        out.extend(result.rows() if isinstance(result, RunResult) else [result.row()])
    return out


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
        return Traffic(
            http_sent=len(self.request), http_received=len(self.response_head) + len(self.body), connections=1
        )

    @property
    def matches(self) -> bool:
        """True when the socket counted exactly the rebuilt request and response."""
        return self.counted == self.rebuilt

    @property
    def header_bytes(self) -> int:
        """Everything but the response body: request line and headers, status line and headers."""
        return len(self.request) + len(self.response_head)

    def summary(self) -> str:
        return (
            f"request {len(self.request)} B (all headers), response {len(self.response_head)} B of headers "
            f"+ {len(self.body)} B of body = {self.rebuilt.total} B; the socket counted "
            f"{self.counted.sent} B sent + {self.counted.received} B received"
        )


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def expectation(
    what: str,
    measured: float,
    expected: float,
    *,
    within: float,
    unit: str = "",
    digits: int = 0,
    relative: bool = False,
) -> str:
    """One line, the measurement next to what theory expects of it and how close it must be:
    ``"requests/s: measured 995, expected 1,000 +/- 20 %"``. ``within`` is a fraction of
    ``expected`` when ``relative``, else in the unit; a measurement outside it says so."""
    unit_text = f" {unit}" if unit else ""
    margin = within * abs(expected) if relative else within
    plus_minus = f"{within:.0%}".replace("%", " %") if relative else f"{_num(within, digits)}{unit_text}"
    line = (
        f"{what}: measured {_num(measured, digits)}{unit_text}, "
        f"expected {_num(expected, digits)}{unit_text} +/- {plus_minus}"
    )
    if math.isnan(measured) or abs(measured - expected) > margin:
        line += "  <- outside: a busy machine? run the cell again"
    return line


def prediction(what: str, measured: float, theory: float, predicted: Any, *, unit: str = "", digits: int = 0) -> str:
    """One line: the measurement, the theory, and the student's prediction (``...``: not made yet)."""
    unit_text = f" {unit}" if unit else ""
    if isinstance(predicted, int | float) and not isinstance(predicted, bool):
        off = f" ({(measured - predicted) / predicted:+.0%} off)" if predicted else ""
        yours = f"{_num(float(predicted), digits)}{unit_text}{off}"
    else:
        yours = "(not made yet: fill it in above)"
    return (
        f"{what}: measured {_num(measured, digits)}{unit_text}, theory {_num(theory, digits)}{unit_text}, "
        f"your prediction {yours}"
    )
