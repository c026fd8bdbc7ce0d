"""The Progress bar of long lesson cells: throttled, stable repr, honest end states."""

from __future__ import annotations

import asyncio

import pytest

from labserver.course.progress import RENDER_INTERVAL, Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_repr_is_the_description_alone_whatever_the_state() -> None:
    clock = FakeClock()
    bar = Progress("200 users connecting", total=200, clock=clock)
    before = repr(bar)
    clock.now += 3
    bar.update(150)
    bar.finish()
    assert repr(bar) == before == "Progress: 200 users connecting"


def test_updates_reach_the_widget_at_most_once_per_interval() -> None:
    clock = FakeClock()
    bar = Progress("work", total=100, clock=clock)
    bar.update(10)
    assert bar._bar.value == 10
    clock.now += RENDER_INTERVAL / 10
    bar.update(20)
    assert bar._bar.value == 10  # too soon: kept for later
    clock.now += RENDER_INTERVAL
    bar.update(30)
    assert bar._bar.value == 30
    assert bar._text.value.startswith("work: 30 of 100")


def test_update_clamps_and_can_change_the_total() -> None:
    clock = FakeClock()
    bar = Progress("work", total=10, clock=clock)
    bar.update(50, total=40)
    assert (bar._bar.value, bar._bar.max) == (40, 40)
    clock.now += 1
    bar.update(-3)
    assert bar._bar.value == 0


def test_finish_fills_the_bar_and_ignores_later_updates() -> None:
    clock = FakeClock()
    bar = Progress("work", total=10, clock=clock)
    clock.now += 2.5
    bar.finish("3 cells skipped")
    assert bar._bar.value == 10 and bar._bar.bar_style == "success"
    assert bar._text.value == "work: done in 2.5 s; 3 cells skipped"
    clock.now += 1
    bar.update(1)
    assert bar._bar.value == 10


def test_a_non_positive_total_is_refused() -> None:
    with pytest.raises(ValueError, match="total must be positive"):
        Progress("work", total=0)


def shown_bars(monkeypatch: pytest.MonkeyPatch) -> list[Progress]:
    """Record the bars ``track`` shows instead of displaying them."""
    shown: list[Progress] = []

    def show(self: Progress) -> Progress:
        shown.append(self)
        return self

    monkeypatch.setattr(Progress, "show", show)
    return shown


async def test_track_passes_the_result_on_and_fills_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = shown_bars(monkeypatch)

    async def work() -> str:
        await asyncio.sleep(0.35)
        return "measured"

    assert await Progress.track(work(), "a short run", seconds=0.3) == "measured"
    (bar,) = shown
    assert bar.finished and bar._bar.value == bar._bar.max == 0.3
    assert bar._text.value.startswith("a short run: done in ")


async def test_track_marks_the_bar_failed_and_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = shown_bars(monkeypatch)

    async def work() -> None:
        await asyncio.sleep(0.05)
        raise ConnectionResetError("lab went away")

    with pytest.raises(ConnectionResetError):
        await Progress.track(work(), "doomed", seconds=5)
    (bar,) = shown
    assert bar._bar.bar_style == "danger"
    assert "stopped after" in bar._text.value and "ConnectionResetError" in bar._text.value
    assert bar._bar.value < bar._bar.max
