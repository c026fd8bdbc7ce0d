"""The render loop shared by the live widgets (dashboard, frame inspector).

A background task may be woken by thousands of events a second; the browser
should see at most ``1 / interval`` updates a second, and none while nothing
changes. Nothing here prints: a render that fails is handed to ``on_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


async def render_loop(
    dirty: asyncio.Event,
    render: Callable[[], bool],
    interval: float,
    on_error: Callable[[Exception], None],
    *,
    idle_wake: float | None = None,
) -> None:
    """Call ``render()`` after ``dirty`` is set, at most once per ``interval`` seconds.

    ``render`` returns whether it changed anything; ``idle_wake`` also wakes the loop
    that often without ``dirty``, for state the widget polls rather than hears about.
    """
    loop = asyncio.get_running_loop()
    last = -float("inf")
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle_wake):
                await dirty.wait()
        dirty.clear()
        pause = last + interval - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
        try:
            if render():
                last = loop.time()
        except Exception as exc:  # nothing may escape a background task
            on_error(exc)
            last = loop.time()
