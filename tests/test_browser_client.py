"""The browser client (labserver/static) in a real headless Chromium, against a real lab server.

Each test opens one browser context per user (its own sessionStorage, so its own
token) and drives the page through its ``data-testid`` elements, the way a
student would: sign up or log in over HTTP, then chat, typing, presence and
notifications over the page's one WebSocket. Any JavaScript error, console error
(CSP violations included) or ``alert()`` in a page fails the test.

The last test takes the README's screenshot, images/browser_client.png: into ``tmp_path``, or into
images/ with ``LABSERVER_WRITE_FIGURES=1`` (what ``python3 course.py figures`` sets).

Skipped when /usr/bin/chromium is missing, except on CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import CHROMIUM, CHROMIUM_ARGS, figure_path, require_browser

require_browser()

from playwright.sync_api import Browser, Dialog, Locator, Page, expect, sync_playwright  # noqa: E402

from labserver.course import Account, LabServer  # noqa: E402

expect.set_options(timeout=5_000)  # "within 5 s" everywhere


# --- fixtures and helpers ---------------------------------------------------------------


@dataclass
class Tab:
    """One user's page, with what went wrong in it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def by(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    def message(self, text: str) -> Locator:
        """The chat line(s) whose text contains ``text``."""
        return self.by("log").locator("li.msg").filter(has=self.page.locator(".text", has_text=text))

    def frames(self, direction: str, kind: str) -> list[dict]:
        """Raw frames panel entries, parsed: ``direction`` "in" or "out", ``kind`` the type."""
        codes = self.by("frames").locator(f'li[data-dir="{direction}"][data-type="{kind}"] code')
        return [json.loads(text) for text in codes.all_text_contents()]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_tab(browser: Browser, lab: LabServer) -> Iterator[Callable[[], Tab]]:
    """``open_tab()``: a fresh browser context (a different user) on the client page."""
    tabs: list[Tab] = []
    contexts = []

    def make() -> Tab:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        contexts.append(context)
        tab = Tab(context.new_page())
        tab.page.on("pageerror", lambda exc: tab.errors.append(f"page error: {exc}"))
        tab.page.on("console", lambda msg: tab.errors.append(f"console: {msg.text}") if msg.type == "error" else None)

        def on_dialog(dialog: Dialog) -> None:
            tab.dialogs.append(dialog.message)
            dialog.dismiss()

        tab.page.on("dialog", on_dialog)
        tab.page.goto(lab.url)
        tabs.append(tab)
        return tab

    yield make
    for context in contexts:
        context.close()
    problems = [problem for tab in tabs for problem in tab.errors + [f"dialog: {d}" for d in tab.dialogs]]
    assert not problems, problems


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def in_room(tab: Tab, room: str = "general") -> None:
    expect(tab.by("status")).to_have_attribute("data-state", "open")
    expect(tab.by("room")).to_have_attribute("data-joined", "true")
    expect(tab.by("room")).to_have_text(f"#{room}")
    expect(tab.by("socket-id")).to_have_text(re.compile(r"^s_[\w-]+$"))


def sign_up(tab: Tab, username: str, password: str = "browser-secret") -> None:
    """Through the form: POST /api/signup, then the socket opens and joins general."""
    tab.by("username").fill(username)
    tab.by("password").fill(password)
    tab.by("signup").click()
    in_room(tab)
    expect(tab.by("me")).to_have_text(f"@{username}")


def log_in(tab: Tab, account: Account) -> None:
    tab.by("username").fill(account.username)
    tab.by("password").fill("lab-password")  # LabServer.account's default
    tab.by("login").click()
    in_room(tab)


def join(tab: Tab, room: str) -> None:
    """Switch rooms with the room bar: leave the old one, join the new one, reload its history."""
    tab.by("room-input").fill(room)
    tab.by("join").click()
    in_room(tab, room)


def say(tab: Tab, text: str) -> None:
    tab.by("composer-input").fill(text)
    tab.by("send").click()


# --- tests ----------------------------------------------------------------------------------


def test_chat_between_two_users_is_sequenced_and_acknowledged(open_tab: Callable[[], Tab]) -> None:
    ann, bob = open_tab(), open_tab()
    sign_up(ann, unique("ann"))
    sign_up(bob, unique("bob"))
    assert ann.by("socket-id").text_content() != bob.by("socket-id").text_content()

    text = f"hello bob {uuid.uuid4().hex[:8]}"
    say(ann, text)

    seen = bob.message(text)
    expect(seen).to_have_count(1)
    expect(seen.locator(".seq")).to_have_text(re.compile(r"^#\d+$"))
    me = ann.by("me").text_content()
    assert me is not None
    expect(seen.locator(".from")).to_have_text(me.removeprefix("@"))
    seq = seen.get_attribute("data-seq")
    assert seq is not None and seq.isdigit()

    mine = ann.message(text)
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-state", "acked")
    expect(mine).to_have_attribute("data-seq", seq)  # the ack's seq is the one bob got
    sent = [f for f in ann.frames("out", "chat") if f["text"] == text]
    assert len(sent) == 1 and sent[0]["room"] == "general"
    assert any(a.get("ref") == sent[0]["ref"] and a.get("seq") == int(seq) for a in ann.frames("in", "ack"))

    # The token survives a reload (sessionStorage); history comes back over HTTP.
    bob.page.reload()
    in_room(bob)
    expect(bob.message(text)).to_have_attribute("data-seq", seq)


def test_presence_shows_who_is_online(open_tab: Callable[[], Tab], lab: LabServer) -> None:
    ann, bob = lab.account(unique("ann")), lab.account(unique("bob"))
    ann_tab = open_tab()
    log_in(ann_tab, ann)
    online = ann_tab.by("online")
    expect(online.locator(f'li[data-user-id="{ann.id}"]')).to_contain_text(ann.username)

    bob_tab = open_tab()
    log_in(bob_tab, bob)
    bob_entry = online.locator(f'li[data-user-id="{bob.id}"]')
    expect(bob_entry).to_have_text(bob.username)
    expect(bob_tab.by("online").locator(f'li[data-user-id="{ann.id}"]')).to_contain_text(ann.username)

    bob_tab.page.context.close()  # the tab goes away: the socket closes, presence says offline
    expect(bob_entry).to_have_count(0)
    expect(online.locator(f'li[data-user-id="{ann.id}"]')).to_have_count(1)


def test_typing_indicator(open_tab: Callable[[], Tab]) -> None:
    ann, bob = open_tab(), open_tab()
    sign_up(ann, unique("ann"))
    bob_name = unique("bob")
    sign_up(bob, bob_name)

    composer = bob.by("composer-input")
    # When each "typing" frame leaves bob's page, on the clock its once-a-second throttle reads.
    bob.page.evaluate("""() => {
        window.typingSentAt = [];
        const send = WebSocket.prototype.send;
        WebSocket.prototype.send = function (data) {
            const message = typeof data === "string" ? JSON.parse(data) : null;
            if (message?.type === "typing" && message.active) window.typingSentAt.push(Date.now());
            return send.call(this, data);
        };
    }""")
    composer.press_sequentially("I am", delay=50)
    expect(ann.by("typing")).to_have_text(f"{bob_name} is typing…")  # seen while bob types
    expect(ann.by("typing")).to_have_attribute("data-active", "true")
    keys = "I am still typing, a long sentence"
    composer.press_sequentially(keys[4:], delay=50)
    expect(bob.by("typing")).to_have_text("")  # nobody sees their own indicator

    started = [f for f in bob.frames("out", "typing") if f["active"]]
    sent_at = bob.page.evaluate("window.typingSentAt")
    assert len(started) == len(sent_at) >= 1, (started, sent_at)
    # At most once a second (less 10 ms: the clock may tick between the throttle's read and ours)...
    assert all(b - a >= 990 for a, b in itertools.pairwise(sent_at)), sent_at
    assert len(started) < len(keys) // 4, started  # ...not once a key

    # No more keys: the indicator goes away (the lab fixture's typing_ttl is 1 s).
    expect(ann.by("typing")).to_have_attribute("data-active", "false")
    expect(ann.by("typing")).to_have_text("")


def test_message_text_is_shown_literally_not_as_html(open_tab: Callable[[], Tab]) -> None:
    ann, bob = open_tab(), open_tab()
    sign_up(ann, unique("ann"))
    sign_up(bob, unique("bob"))

    payload = f"<img src=x onerror=alert(1)> <b>not bold</b> {uuid.uuid4().hex[:6]}"
    say(ann, payload)
    for tab in (bob, ann):
        line = tab.message(payload)
        expect(line.locator(".text")).to_have_text(payload)
        assert tab.by("log").locator("img, b").count() == 0
    expect(ann.message(payload)).to_have_attribute("data-state", "acked")
    assert ann.dialogs == [] and bob.dialogs == []


def test_reconnect_resumes_after_the_last_seq(open_tab: Callable[[], Tab], lab: LabServer) -> None:
    ann, bob = open_tab(), open_tab()
    sign_up(ann, unique("ann"))
    sign_up(bob, unique("bob"))
    say(bob, "before the drop")
    expect(ann.message("before the drop")).to_have_count(1)
    last_seq = int(ann.message("before the drop").get_attribute("data-seq") or 0)
    first_socket = ann.by("socket-id").text_content()
    carol = lab.account(unique("carol"))

    ann.by("drop").click()
    expect(ann.by("frames").locator('li[data-dir="event"]', has_text="closed")).to_have_count(1)
    # Sent while ann is away (her first retry waits 0.25-0.5 s), it comes back through
    # the resume; sent after, it comes live. Either way she sees it exactly once.
    status, _ = lab.request("POST", "/api/rooms/general/messages", {"text": "while you were away"}, token=carol.token)
    assert status == 201

    in_room(ann)
    expect(ann.by("socket-id")).not_to_have_text(first_socket or "")
    expect(ann.message("while you were away")).to_have_count(1)
    resumes = ann.frames("out", "resume")
    assert resumes and resumes[0] == {"type": "resume", "room": "general", "after": last_seq, "ref": resumes[0]["ref"]}
    assert ann.frames("in", "resumed"), "the server answered the resume"


def test_logout_revokes_the_token_and_shows_the_close(open_tab: Callable[[], Tab], lab: LabServer) -> None:
    tab = open_tab()
    sign_up(tab, unique("dan"))
    token = tab.page.evaluate("sessionStorage.getItem('labserver.token')")
    assert lab.request("GET", "/api/me", token=token)[0] == 200

    tab.by("logout").click()
    expect(tab.by("status")).to_have_attribute("data-state", "closed")
    expect(tab.by("status")).to_have_text("closed 1008 · logged out")  # the server's close code and reason
    expect(tab.by("login-form")).to_be_visible()
    assert tab.page.evaluate("sessionStorage.getItem('labserver.token')") is None
    assert lab.request("GET", "/api/me", token=token)[0] == 401  # revoked, not just forgotten
    tab.page.reload()
    expect(tab.by("login-form")).to_be_visible()  # no token: no socket
    expect(tab.by("status")).to_have_attribute("data-state", "idle")


def test_notifications_and_readme_screenshot(open_tab: Callable[[], Tab], lab: LabServer, tmp_path: Path) -> None:
    ada, grace = open_tab(), open_tab()
    sign_up(ada, "ada")
    sign_up(grace, "grace")
    for tab in (ada, grace):  # a room of their own, away from the other tests' messages
        join(tab, "course")
        expect(tab.by("log").locator("li.msg")).to_have_count(0)
    say(grace, "Hi Ada! Press 'Drop connection' and watch the resume in the raw frames.")
    expect(ada.message("Hi Ada!")).to_have_count(1)
    say(ada, "Hello <b>Grace</b>: tags stay text, no XSS here.")
    expect(grace.message("tags stay text")).to_have_count(1)

    # A post made over HTTP mentions ada: the notification arrives over her socket.
    token = lab.account("grace", "browser-secret").token
    status, _ = lab.request("POST", "/api/posts", {"text": "Pairing on the lab with @ada today"}, token=token)
    assert status == 201
    expect(ada.by("notifications").locator('li[data-kind="mention"]')).to_contain_text("grace mentioned you")

    grace.by("composer-input").fill("On my way")
    expect(ada.by("typing")).to_have_text("grace is typing…")
    screenshot = figure_path("browser_client.png", tmp_path)
    ada.page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000
