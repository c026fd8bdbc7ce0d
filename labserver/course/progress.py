"""A progress bar for lesson cells that run longer than a few seconds.

A cell that measures for ten seconds and shows nothing looks hung. ``Progress`` is
one line: a bar and a short text, updated at most ``1 / RENDER_INTERVAL`` times a
second (never printing), whose ``repr`` (what nbval compares) is the description
alone, so a committed notebook stays stable whatever the timing was::

    result = await Progress.track(quiet_room(lab, ...), "1,000 pollers for 10 s", seconds=10)

    bar = Progress("200 users connecting", total=200)
    bar.show()
    await crowd.grow(200, progress=bar.update)
    bar.finish()

``track`` advances the bar with the clock against the expected duration (for work
that cannot report how far it got) and fills it when the work ends; ``update`` takes
counts from the work itself (it has the ``progress(done, total)`` shape that
:meth:`Crowd.grow` calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import ipywidgets as widgets

__all__ = ["RENDER_INTERVAL", "Progress"]

RENDER_INTERVAL = 0.1  # seconds: at most ten updates a second reach the browser
_T = TypeVar("_T")


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


class Progress(widgets.HBox):
    """A bar with one line of text after it: how far a long cell has got."""

    def __init__(self, description: str, total: float = 1.0, *, unit: str = "", clock: Any = time.monotonic) -> None:
        if total <= 0:
            raise ValueError(f"total must be positive, got {total!r}")
        self.description = description
        self.total = float(total)
        self.unit = unit
        self._clock = clock
        self._started = clock()
        self._last_render = -float("inf")
        self._pending: tuple[float, float] | None = None
        self.done = 0.0
        self.finished = False
        self._bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=self.total, layout=widgets.Layout(width="240px"), bar_style="info"
        )
        self._text = widgets.Label(value=description)
        super().__init__([self._bar, self._text], layout=widgets.Layout(align_items="center"))

    def __repr__(self) -> str:
        return f"Progress: {self.description}"

    def show(self) -> Progress:
        """Display the bar in the running cell (and return it)."""
        from IPython.display import display

        display(self)
        return self

    @property
    def elapsed(self) -> float:
        return float(self._clock() - self._started)

    def update(self, done: float, total: float | None = None) -> None:
        """Record how far the work got; the widget follows at most every ``RENDER_INTERVAL`` s."""
        if self.finished:
            return
        self._pending = (float(done), self.total if total is None else float(total))
        now = self._clock()
        if now - self._last_render >= RENDER_INTERVAL:
            self._render(now)

    def _render(self, now: float) -> None:
        if self._pending is None:
            return
        done, total = self._pending
        self._pending = None
        self.done, self.total = min(max(done, 0.0), total), total
        with self.hold_sync():
            self._bar.max = total
            self._bar.value = self.done
            suffix = f" {self.unit}" if self.unit else ""
            self._text.value = (
                f"{self.description}: {_number(self.done)} of {_number(total)}{suffix} ({now - self._started:.1f} s)"
            )
        self._last_render = now

    def finish(self, note: str = "") -> None:
        """Fill the bar and say how long the work took (and ``note``, if given)."""
        if self.finished:
            return
        self.finished = True
        self.done = self.total
        with self.hold_sync():
            self._bar.value = self.total
            self._bar.bar_style = "success"
            text = f"{self.description}: done in {self.elapsed:.1f} s"
            self._text.value = f"{text}; {note}" if note else text

    def fail(self, error: BaseException) -> None:
        """Mark the bar as stopped by ``error``."""
        self.finished = True
        with self.hold_sync():
            self._bar.bar_style = "danger"
            self._text.value = f"{self.description}: stopped after {self.elapsed:.1f} s ({type(error).__name__})"

    @classmethod
    async def track(cls, work: Awaitable[_T], description: str, *, seconds: float) -> _T:
        """Show a bar, run ``work``, and advance the bar with the clock against ``seconds``.

        The bar stops just short of full until ``work`` ends, then fills; the result
        (or the exception) of ``work`` is passed on.
        """
        bar = cls(description, total=seconds, unit="s").show()
        ticker = asyncio.ensure_future(bar._tick(seconds))
        try:
            result = await work
        except BaseException as exc:
            bar.fail(exc)
            raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        bar.finish()
        return result

    async def _tick(self, seconds: float) -> None:
        while True:
            self.update(min(self.elapsed, seconds * 0.99))
            await asyncio.sleep(RENDER_INTERVAL)
