"""Plots of lesson 01's measurements (:mod:`labserver.course.polling`), with matplotlib."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .polling import APPROACHES, COLORS, LABELS, GroupResult, select


def _offset(k: int, count: int, width: float) -> float:
    """Where bar ``k`` of ``count`` sits around its group's centre."""
    return (k - (count - 1) / 2) * width


def _bars(
    ax: Any,
    results: Sequence[GroupResult],
    sizes: list[int],
    value: Callable[[GroupResult], float],
    text: Callable[[GroupResult], str],
    *,
    log: bool,
) -> None:
    """Grouped bars, one group per N, one colour per approach, each labelled with its value."""
    approaches = [a for a in APPROACHES if any(r.approach == a for r in results)]
    width = 0.8 / len(approaches)
    for k, a in enumerate(approaches):
        for r in select(results, a):
            x = sizes.index(r.receivers) + _offset(k, len(approaches), width)
            height = value(r)
            shown = height if height > 0 or not log else math.nan  # a bar of 0 has no place on a log scale
            ax.bar(x, shown, width, color=COLORS[a], label=LABELS[a] if r.receivers == sizes[0] else None)
            if math.isnan(shown):
                continue
            ax.annotate(
                text(r), (x, shown), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7
            )
    ax.set_xticks(range(len(sizes)), [f"N = {n:,}" for n in sizes])
    if log:
        ax.set_yscale("log")
        ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3, which="both")


def plot_comparison(results: Sequence[GroupResult], title: str | None = None) -> Any:
    """The lesson's key figure: requests/s, bytes per message, useless share and latency, per approach and N."""
    import matplotlib.pyplot as plt

    sizes = sorted({r.receivers for r in results})
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    (requests, sizes_ax), (useless, latency) = axes

    _bars(requests, results, sizes, lambda r: r.requests_per_s, lambda r: f"{r.requests_per_s:,.0f}", log=True)
    requests.set_title("HTTP requests hitting the server")
    requests.set_ylabel("requests per second (log)")
    pushed = [a for a in ("websocket", "sse") if any(r.approach == a for r in results)]
    if pushed:
        names = {"websocket": "WebSocket", "sse": "SSE"}
        requests.text(
            0.99,
            0.02,
            ", ".join(names[a] for a in pushed) + ": none once connected",
            transform=requests.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color=COLORS[pushed[0]],
        )
    requests.legend(loc="upper left", fontsize=8)

    _bars(sizes_ax, results, sizes, lambda r: r.bytes_per_message, lambda r: f"{r.bytes_per_message:,.0f}", log=True)
    sizes_ax.set_title("Bytes on the wire per delivered message (headers, frames)")
    sizes_ax.set_ylabel("bytes, both directions (log)")

    _bars(
        useless,
        results,
        sizes,
        lambda r: r.useless_fraction * 100,
        lambda r: f"{r.useless_fraction:.0%}" if r.requests else "none",
        log=False,
    )
    useless.set_title("Useless requests (answered 'nothing new'; none: no requests)")
    useless.set_ylabel("% of requests")
    useless.set_ylim(0, 100)

    approaches = [a for a in APPROACHES if any(r.approach == a for r in results)]
    width = 0.8 / len(approaches)
    boxes = [
        (r, sizes.index(r.receivers) + _offset(k, len(approaches), width))
        for k, a in enumerate(approaches)
        for r in select(results, a)
        if r.latencies
    ]
    if boxes:
        parts = latency.boxplot(
            [[v * 1000 for v in r.latencies] for r, _ in boxes],
            positions=[x for _, x in boxes],
            widths=width * 0.85,
            patch_artist=True,
            showfliers=False,
        )
        for patch, (r, _) in zip(parts["boxes"], boxes, strict=True):
            patch.set_facecolor(COLORS[r.approach])
            patch.set_alpha(0.75)
        for median in parts["medians"]:
            median.set_color("black")
    latency.set_xticks(range(len(sizes)), [f"N = {n:,}" for n in sizes])
    latency.set_yscale("log")
    latency.set_title("Delivery latency (server timestamp to receiver)")
    latency.set_ylabel("ms (log); box: quartiles, whiskers: 1.5 IQR")
    latency.grid(axis="y", alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    return fig


def plot_latency_vs_interval(results: Sequence[GroupResult]) -> Any:
    """Short polling's latency against its interval T, with the T/2 line and push as the floor."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    short = sorted((r for r in results if r.approach == "short"), key=lambda r: r.group.interval)
    push = [r for r in results if r.approach == "websocket"]
    fig, ax = plt.subplots(figsize=(8, 4.8), constrained_layout=True)
    ts = [r.group.interval for r in short]
    if short:
        ax.boxplot(
            [[v * 1000 for v in r.latencies] for r in short],
            positions=ts,
            widths=[t * 0.25 for t in ts],
            showfliers=False,
            medianprops={"color": "black"},
        )
        ax.plot(ts, [r.latency_mean * 1000 for r in short], "o", color=COLORS["short"], label="short polling: mean")
        for r in short:
            top = max(r.latencies, default=r.group.interval) * 1000
            ax.annotate(
                f"{r.requests_per_s:,.0f} req/s",
                (r.group.interval, top),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=COLORS["short"],
            )
        line = [min(ts) * 0.8, max(ts) * 1.25]
        ax.plot(line, [t / 2 * 1000 for t in line], "--", color="gray", label="T/2")
    for r in push:
        ax.axhline(
            r.latency_median * 1000,
            color=COLORS["websocket"],
            label=f"WebSocket push: median ({r.requests_per_s:,.0f} req/s)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ts, [f"{t:g}" for t in ts])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(y=0.1)
    ax.set_xlabel("polling interval T, seconds (log)")
    ax.set_ylabel("delivery latency, ms (log)")
    ax.set_title(
        f"Short polling, {short[0].receivers if short else 0} receivers: latency grows with T, requests with 1/T"
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return fig
