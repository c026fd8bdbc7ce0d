"""The projector view (``/live``, labserver/static/live.*) in a real headless Chromium.

The page is fed by ``/observe`` only: the tests open and close real WebSockets to ``/ws``
(the ``websockets`` client, as any student program would) and watch the page count
connections, list people with their sockets, show rooms and the message flow, and mark
presence as it changes. The admin token reaches the page in the ``#fragment`` of the link
``course.py class`` prints; the page removes it from the address bar. Without it the page
says so in one line. Last, the same page and ``/ws`` through a real Jupyter server's
jupyter-server-proxy, at ``/proxy/<port>/live``, as on JupyterHub and Binder.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .conftest import require_browser

require_browser()

from playwright.sync_api import Browser, Locator, Page, expect  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from labserver.course import LabServer  # noqa: E402

expect.set_options(timeout=8_000)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    with LabServer(tmp_path / "data", admin_token=secrets.token_urlsafe(16), join_code="TST-123") as server:
        server.start()
        yield server


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A fresh page at ``url``, and the list its JavaScript and console errors go to."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    return page, errors


def student_socket(stack: ExitStack, lab: LabServer, username: str, room: str | None = None) -> ClientConnection:
    """A student program's /ws socket, authenticated (``?token=``), in ``room`` if given; ``stack``
    closes it at the end of the test at the latest."""
    account = lab.account(username)
    ws = stack.enter_context(connect(f"{lab.ws_url}?token={account.token}"))
    assert json.loads(ws.recv(5))["type"] == "welcome"
    if room is not None:
        ws.send(json.dumps({"type": "join", "room": room, "ref": "j"}))
        while json.loads(ws.recv(5)).get("ref") != "j":
            pass
    return ws


def person(page: Page, username: str) -> Locator:
    return page.locator(f'li.person[data-user="{username}"]')


def test_the_projector_counts_connections_and_shows_presence_as_it_changes(
    browser: Browser, lab: LabServer, request: pytest.FixtureRequest
) -> None:
    stack = ExitStack()
    request.addfinalizer(stack.close)
    page, errors = open_page(browser, lab.live_url)
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "open")
    # The token left the address bar at once (and the page still works: it kept it for this tab).
    assert "#" not in page.url and "token" not in page.url
    expect(page.get_by_test_id("join-code")).to_have_text("TST-123")
    expect(page.get_by_test_id("join-url")).to_have_text(lab.student_url)
    expect(page.get_by_test_id("connections")).to_have_text("0")

    ann = student_socket(stack, lab, "ann")
    expect(page.get_by_test_id("connections")).to_have_text("1")
    expect(person(page, "ann")).to_have_attribute("data-online", "true")
    ann_again = student_socket(stack, lab, "ann", "lobby")  # a second tab of ann's: one person, two sockets
    bob = student_socket(stack, lab, "bob", "lobby")
    expect(page.get_by_test_id("connections")).to_have_text("3")
    expect(page.get_by_test_id("users-online")).to_have_text("2")
    expect(person(page, "ann").locator(".chip")).to_have_count(2)
    expect(page.locator('li.room[data-room="lobby"] .members')).to_have_text("ann · bob")

    bob.send(json.dumps({"type": "chat", "room": "lobby", "text": "hello projector"}))
    expect(page.get_by_test_id("flow").locator("li.hop", has_text="hello projector")).to_have_count(1)

    ann.close()
    ann_again.close()
    expect(page.get_by_test_id("connections")).to_have_text("1")
    expect(person(page, "ann")).to_have_count(0)  # offline: gone from the people on screen
    expect(page.get_by_test_id("users-online")).to_have_text("1")
    expect(page.locator('li.room[data-room="lobby"] .members')).to_have_text("bob")
    bob.close()
    expect(page.get_by_test_id("connections")).to_have_text("0")
    assert errors == []


def test_without_the_admin_token_the_page_says_what_to_open(browser: Browser, lab: LabServer) -> None:
    page, errors = open_page(browser, lab.url + "/live")
    status = page.get_by_test_id("live-status")
    expect(status).to_have_attribute("data-state", "denied")
    expect(status).to_contain_text("admin token")
    expect(page.get_by_test_id("join")).to_be_hidden()  # no code for whoever lacks the token
    # The refused WebSocket handshake is the one console error (403), and it is expected.
    assert all("WebSocket" in e or "403" in e for e in errors)


def test_a_paused_room_shows_on_the_projector(browser: Browser, lab: LabServer) -> None:
    lab.pause_room("lobby")
    page, errors = open_page(browser, lab.live_url)
    expect(page.get_by_test_id("notice")).to_have_text("Paused: #lobby")
    assert errors == []


# --- through jupyter-server-proxy (JupyterHub, Binder) -------------------------------------------


def test_the_projector_and_ws_work_through_jupyter_server_proxy(
    browser: Browser, jupyter_server: tuple[str, str], tmp_path: Path
) -> None:
    base, jupyter_token = jupyter_server
    # Behind the proxy the browser's Origin is Jupyter's, as start_lab() allows behind a hub.
    with LabServer(tmp_path / "data", admin_token="proxy-admin-token", join_code="PRX-456", origin=[base]) as lab:
        lab.start()
        page, errors = open_page(browser, f"{base}/?token={jupyter_token}")  # the Jupyter login cookie
        proxied = f"{base}/proxy/{lab.port}/"
        page.goto(f"{proxied}live#token=proxy-admin-token")
        expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "open")
        expect(page.get_by_test_id("join-code")).to_have_text("PRX-456")
        # The students' link the page shows is the proxied root, relative to where it was opened.
        expect(page.get_by_test_id("join-url")).to_have_text(proxied)

        # A student page's WebSocket through the same proxy: sign up with the code, then /ws.
        opened = page.evaluate(
            """async (root) => {
                const r = await fetch(new URL("api/signup", root), {method: "POST",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({username: "proxied_student", password: "secret123", code: "prx-456"})});
                const {token} = await r.json();
                const url = new URL("ws", root); url.protocol = "ws:"; url.searchParams.set("token", token);
                const ws = new WebSocket(url);
                window.keep = ws;
                return await new Promise((ok) => { ws.onmessage = (m) => ok(JSON.parse(m.data).type); });
            }""",
            proxied,
        )
        assert opened == "welcome"
        expect(page.get_by_test_id("connections")).to_have_text("1")
        expect(person(page, "proxied_student")).to_have_attribute("data-online", "true")
        assert errors == []
