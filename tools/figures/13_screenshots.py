#!/usr/bin/env python3
"""Take lesson 13's two screenshots of class mode, in headless Chromium (not run by the tests):

* ``images/13_class.png``: the projector at the start of a class: the join URL and code in
  large type while the first students arrive;
* ``images/13_projector.png``: the projector during the class: a crowd of simulated
  students chatting in two rooms, the message flow, messages/s and loop lag.

A real class lab (a join code, an admin token) on loopback; the students sign up with the
code through a shared lab handle (``labserver.course.classroom.SharedLab``), as
``join_lab`` gives a student's notebook. Needs Chromium (``apt-get install chromium``).

    .venv/bin/python tools/figures/13_screenshots.py
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import ViewportSize, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labserver.course import Crowd, LabServer  # noqa: E402
from labserver.course.classroom import SharedLab  # noqa: E402
from tests.conftest import CHROMIUM, launch_chromium  # noqa: E402

CLASS_SHOT = ROOT / "images" / "13_class.png"
PROJECTOR_SHOT = ROOT / "images" / "13_projector.png"
VIEWPORT: ViewportSize = {"width": 1600, "height": 900}  # a classroom projector's 16:9


class Students:
    """Simulated students in a background event loop: ``grow(n)`` from the main thread."""

    def __init__(self, lab: SharedLab, prefix: str, rooms: tuple[str, ...], chat_rate: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.crowd = Crowd(lab, prefix=prefix, rooms=rooms, chat_rate=chat_rate, seed=13)

    def grow(self, n: int) -> None:
        asyncio.run_coroutine_threadsafe(self.crowd.grow(n), self.loop).result(60)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.crowd.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def main() -> None:
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with (
        tempfile.TemporaryDirectory() as data,
        LabServer(data, admin_token=secrets.token_urlsafe(16), join_code="K7P-Q2M") as lab,
    ):
        lab.start()
        shared = SharedLab(lab.url, "K7P-Q2M")
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(lab.live_url)
            expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "open")

            early = Students(shared, "student", ("lobby",), chat_rate=0.2)
            early.grow(5)
            expect(page.get_by_test_id("connections")).to_have_text("5")
            time.sleep(1.5)  # a stats tick and a few chats on screen
            page.screenshot(path=str(CLASS_SHOT))

            later = Students(shared, "pair", ("lobby", "exercise-3"), chat_rate=1.0)
            later.grow(25)
            expect(page.get_by_test_id("connections")).to_have_text("30")
            time.sleep(3)  # rates settle over a few stats intervals
            page.screenshot(path=str(PROJECTOR_SHOT))
            early.stop()
            later.stop()
            browser.close()
    for path in (CLASS_SHOT, PROJECTOR_SHOT):
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
