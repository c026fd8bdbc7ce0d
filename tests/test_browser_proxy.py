"""The browser client behind jupyter-server-proxy, as on a JupyterHub or Binder.

A real Jupyter server with jupyter-server-proxy forwards ``/proxy/<port>/`` to a lab server
on that port: the page, its ES modules, its HTTP calls, its uploaded images and its
WebSocket must all work under that prefix, which only relative URLs do (the page builds
``ws://…/proxy/<port>/ws`` from its own location). The Jupyter login is the token in the
first URL, kept by Jupyter as a cookie that every later request, the handshake included, sends.

Skipped when /usr/bin/chromium is missing, except on CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import launch_chromium, require_browser

require_browser()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from labserver.course import LabServer  # noqa: E402
from labserver.course.social import noise_png  # noqa: E402

expect.set_options(timeout=10_000)  # two hops of proxy on a shared 2-core box


@pytest.fixture(scope="module")
def proxied_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    # Behind the proxy the page's Origin is Jupyter's, not the lab's: what --origin is for
    # (labserver.course.proxy starts the lab the same way).
    with LabServer(tmp_path_factory.mktemp("lab"), origin="*") as lab:
        yield lab


def test_the_client_works_through_jupyter_server_proxy(
    jupyter_server: tuple[str, str], proxied_lab: LabServer, tmp_path: Path
) -> None:
    base, token = jupyter_server
    prefix = f"{base}/proxy/{proxied_lab.port}/"
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context().new_page()
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{prefix}?token={token}")

            page.get_by_test_id("username").fill(f"proxied_{uuid.uuid4().hex[:6]}")
            page.get_by_test_id("password").fill("browser-secret")
            page.get_by_test_id("signup").click()
            expect(page.get_by_test_id("status")).to_have_attribute("data-state", "open")
            expect(page.get_by_test_id("room")).to_have_attribute("data-joined", "true")
            page.get_by_test_id("composer-input").fill("hello through the proxy")
            page.get_by_test_id("send").click()
            expect(page.locator('[data-testid="log"] li.msg[data-state="acked"]')).to_contain_text("through the proxy")

            page.get_by_test_id("post-text").fill("an image through the proxy")
            page.get_by_test_id("post-file").set_input_files(
                {"name": "p.png", "mimeType": "image/png", "buffer": noise_png(1_000, seed=3)}
            )
            page.get_by_test_id("post-submit").click()
            image = page.get_by_test_id("feed").get_by_test_id("post-image")
            expect(image).to_be_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")

            # Everything the page asked for, the socket included, went through the prefix.
            assert requests, "the page made requests"
            outside = [url for url in requests if not url.startswith(prefix)]
            assert outside == [], outside
            loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
            assert any(re.match(rf"{re.escape(prefix)}static/feed\.js$", url) for url in loaded), loaded
            opened = page.get_by_test_id("frames").locator('li[data-dir="event"]', has_text="connect ")
            expect(opened.first).to_contain_text(f"/proxy/{proxied_lab.port}/ws?token=")
        finally:
            browser.close()
    assert errors == [], errors
