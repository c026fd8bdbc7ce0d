"""The browser client (labserver/static) in a real headless Chromium, against a real lab server.

Each test opens one browser context per user (its own sessionStorage, so its own
token) and drives the page through its ``data-testid`` elements, the way a
student would: sign up or log in over HTTP, then chat, typing, presence and
notifications over the page's one WebSocket; then the feed (posts, likes, comments, an
image upload), messages typed during a server restart, the wire panel and a WebRTC data
channel signaled through the lab. Any JavaScript error, console error (CSP violations
included) or ``alert()`` in a page fails the test, except the connection errors a test
expects (a restart) and names.

WebRTC between two pages of one headless Chromium needs no flag: with ``iceServers: []`` the
only ICE candidates are host candidates, which Chromium hides behind random ``<uuid>.local``
mDNS names, and the two pages connect anyway: the names are the browser's own, so it
resolves them (``getStats()`` shows a host-to-host pair; Chromium 156, Debian 12).
``--disable-features=WebRtcHideLocalIpsWithMdns`` (plain addresses in the candidates, also
checked) is the fallback for two different browsers where mDNS is blocked. Chromium ignores
the loopback interface for ICE, so the machine needs one other interface up (any private
address; no traffic leaves it).

``test_notifications_and_readme_screenshot`` takes the README's screenshot,
images/browser_client.png: into ``tmp_path``, or into images/ with ``LABSERVER_WRITE_FIGURES=1``
(what ``python3 course.py figures`` sets).

Skipped when /usr/bin/chromium is missing, except on CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
import tomllib
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import ROOT, figure_path, require_browser

require_browser()

from playwright.sync_api import Browser, Dialog, Locator, Page, expect  # noqa: E402

from labserver.course import Account, LabServer  # noqa: E402
from labserver.course.social import noise_png  # noqa: E402

expect.set_options(timeout=5_000)  # "within 5 s" everywhere


# --- fixtures and helpers ---------------------------------------------------------------


@dataclass
class Tab:
    """One user's page, with what went wrong in it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    expected: re.Pattern[str] | None = None  # console errors a test causes on purpose

    def problems(self) -> list[str]:
        errors = [e for e in self.errors if not (self.expected and self.expected.search(e))]
        return errors + [f"dialog: {d}" for d in self.dialogs]

    def by(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    def message(self, text: str) -> Locator:
        """The chat line(s) whose text contains ``text``."""
        return self.by("log").locator("li.msg").filter(has=self.page.locator(".text", has_text=text))

    def frames(self, direction: str, kind: str) -> list[dict]:
        """Raw frames panel entries, parsed: ``direction`` "in" or "out", ``kind`` the type."""
        codes = self.by("frames").locator(f'li[data-dir="{direction}"][data-type="{kind}"] code')
        return [json.loads(text) for text in codes.all_text_contents()]


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
    problems = [problem for tab in tabs for problem in tab.problems()]
    assert not problems, problems


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def in_room(tab: Tab, room: str = "general") -> None:
    expect(tab.by("status")).to_have_attribute("data-state", "open")
    expect(tab.by("room")).to_have_attribute("data-joined", "true")
    expect(tab.by("room")).to_have_text(f"#{room}")
    expect(tab.by("socket-id")).to_have_text(re.compile(r"^s_[\w-]+$"))


def sign_up(tab: Tab, username: str, password: str = "browser-secret", code: str = "") -> None:
    """Through the form: POST /api/signup, then the socket opens and joins general."""
    tab.by("username").fill(username)
    tab.by("password").fill(password)
    tab.by("join-code").fill(code)
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


def post(tab: Tab, text: str) -> Locator:
    """The feed entry whose text is ``text``."""
    return tab.by("feed").locator("li.post").filter(has=tab.page.locator(".post-text", has_text=text))


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
    say(grace, "Hi Ada! Press 'Drop connection' and watch the resume in the wire panel.")
    expect(ada.message("Hi Ada!")).to_have_count(1)
    say(ada, "Hello <b>Grace</b>: tags stay text, no XSS here.")
    expect(grace.message("tags stay text")).to_have_count(1)

    # A post made over HTTP mentions ada: the notification arrives over her socket.
    token = lab.account("grace", "browser-secret").token
    status, _ = lab.request("POST", "/api/posts", {"text": "Pairing on the lab with @ada today"}, token=token)
    assert status == 201
    expect(ada.by("notifications").locator('li[data-kind="mention"]')).to_contain_text("grace mentioned you")

    # The feed: ada posts a picture (uploaded over HTTP), grace likes it, ada's counter moves live.
    ada.by("post-text").fill("Polling vs push, measured in lesson 01")
    ada.by("post-file").set_input_files(
        {
            "name": "plot.png",
            "mimeType": "image/png",
            "buffer": (ROOT / "images" / "01_polling_vs_push.png").read_bytes(),
        }
    )
    ada.by("post-submit").click()
    expect(post(grace, "Polling vs push")).to_have_count(0)  # no push for new posts: Refresh
    grace.by("feed-refresh").click()
    post(grace, "Polling vs push").get_by_test_id("like").click()
    expect(post(ada, "Polling vs push").get_by_test_id("likes")).to_have_text("1")
    expect(ada.by("notifications").locator('li[data-kind="like"]')).to_contain_text("grace liked your post")

    grace.by("composer-input").fill("On my way")
    expect(ada.by("typing")).to_have_text("grace is typing…")
    screenshot = figure_path("browser_client.png", tmp_path)
    ada.page.screenshot(path=str(screenshot), full_page=True)  # chat, feed, WebRTC and the wire panel
    assert screenshot.stat().st_size > 10_000


def test_modules_are_served_as_javascript_and_packaged(lab: LabServer) -> None:
    # <script type="module"> refuses a module whose Content-Type is not JavaScript (and the
    # server says nosniff); pip installs only what pyproject's package-data names.
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["labserver"]
    static = ROOT / "labserver" / "static"
    for path in sorted(static.iterdir()):
        relative = path.relative_to(static.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), f"{relative} is not package data"
        if path.suffix == ".js":
            with urllib.request.urlopen(f"{lab.url}/static/{path.name}") as response:
                assert response.headers.get_content_type() in {"text/javascript", "application/javascript"}
                assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Every module the page's entry point imports, directly or not, is there (a typo is a blank page).
    loaded, todo = set(), ["client.js"]
    while todo:
        name = todo.pop()
        loaded.add(name)
        todo += [m for m in re.findall(r'from "\./([\w.]+)"', (static / name).read_text()) if m not in loaded]
    assert loaded == {"client.js", "dom.js", "feed.js", "queue.js", "rtc.js", "wire.js"}, loaded


# --- the feed, the wire panel, the offline queue, WebRTC --------------------------------------


def test_signup_sends_the_join_code_only_when_filled(open_tab: Callable[[], Tab], lab: LabServer) -> None:
    # Outside class mode the server takes no code and ignores one: an extra field is harmless.
    status, _ = lab.request("POST", "/api/signup", {"username": unique("x"), "password": "secret1", "code": "ABC"})
    assert status == 201
    with_code, without = open_tab(), open_tab()
    bodies: list[dict] = []  # what each page posted to /api/signup
    for tab in (with_code, without):
        tab.page.on(
            "request",
            lambda r: bodies.append(json.loads(r.post_data or "{}")) if r.url.endswith("/api/signup") else None,
        )
    sign_up(with_code, unique("coded"), code=" K7-Q2 ")
    sign_up(without, unique("plain"))
    assert [b.get("code") for b in bodies] == ["K7-Q2", None], bodies


def test_feed_image_upload_like_and_comment_are_live(open_tab: Callable[[], Tab], lab: LabServer) -> None:
    ann, bob = open_tab(), open_tab()
    ann_name = unique("ann")
    sign_up(ann, ann_name)
    text = f"our lab photo {uuid.uuid4().hex[:6]}"
    ann.by("post-text").fill(text)
    ann.by("post-file").set_input_files(
        {"name": "photo.png", "mimeType": "image/png", "buffer": noise_png(2_000, seed=7)}
    )
    ann.by("post-submit").click()
    mine = post(ann, text)
    image = mine.get_by_test_id("post-image")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the uploaded image was served back"
    src = image.get_attribute("src") or ""
    assert re.fullmatch(r"http://[^/]+/uploads/[0-9a-f]{32}\.png", src), src
    post_id = mine.get_attribute("data-post-id")
    expect(mine.get_by_test_id("likes")).to_have_text("0")
    # ann follows her post's counters over the socket
    expect(
        ann.by("frames").locator('li[data-dir="out"][data-type="subscribe"]', has_text=f"post:{post_id}")
    ).to_have_count(1)

    sign_up(bob, unique("bob"))
    seen = post(bob, text)
    expect(seen.get_by_test_id("post-image")).to_be_visible()
    seen.get_by_test_id("like").click()
    expect(seen.get_by_test_id("like")).to_have_attribute("aria-pressed", "true")
    expect(mine.get_by_test_id("likes")).to_have_text("1")  # live: post_updated over ann's socket
    like_note = ann.by("notifications").locator('li[data-kind="like"]')
    expect(like_note).to_contain_text("liked your post")
    assert any(f["post_id"] == int(post_id or 0) and f["likes"] == 1 for f in ann.frames("in", "post_updated"))

    seen.get_by_test_id("comment").click()
    bob.by("comment-input").fill(f"nice one @{ann_name}")
    bob.by("comment-send").click()
    expect(seen.get_by_test_id("comment-list")).to_contain_text("nice one")
    expect(mine.get_by_test_id("comments")).to_have_text("1")
    expect(ann.by("notifications").locator('li[data-kind="comment"]')).to_have_count(1)
    expect(ann.by("notifications").locator('li[data-kind="mention"]')).to_have_count(1)

    seen.get_by_test_id("like").press("Enter")  # unlike, from the keyboard: the counter goes down for both
    expect(mine.get_by_test_id("likes")).to_have_text("0")
    expect(seen.get_by_test_id("likes")).to_have_text("0")


def test_wire_panel_lists_every_message_with_its_size(open_tab: Callable[[], Tab]) -> None:
    tab = open_tab()
    sign_up(tab, unique("wire"))
    say(tab, "héllo wire ✓")  # multi-byte characters: the size is UTF-8 bytes, not characters
    expect(tab.message("héllo wire ✓")).to_have_attribute("data-state", "acked")
    rows = (
        tab.by("frames")
        .locator('li[data-dir="in"], li[data-dir="out"]')
        .evaluate_all(
            """rows => rows.map(r => ({
                dir: r.dataset.dir, type: r.dataset.type, size: Number(r.dataset.size),
                shown: r.querySelector('.size').textContent, text: r.querySelector('code').textContent,
                time: r.querySelector('time').textContent}))"""
        )
    )
    kinds = {(row["dir"], row["type"]) for row in rows}
    assert {("in", "welcome"), ("out", "join"), ("in", "ack"), ("out", "chat"), ("in", "chat")} <= kinds, kinds
    for row in rows:
        assert row["size"] == len(row["text"].encode()), row
        assert row["shown"] == f"{row['size']} B"
        assert re.fullmatch(r"\d\d:\d\d:\d\d", row["time"]), row
    (chat_out,) = [r for r in rows if r["dir"] == "out" and r["type"] == "chat"]
    assert chat_out["size"] > len("héllo wire ✓") + 30  # the envelope, and 3-byte ✓, 2-byte é
    sent = sum(r["size"] for r in rows if r["dir"] == "out")
    count = sum(1 for r in rows if r["dir"] == "out")
    expect(tab.by("wire-out")).to_have_text(f"{count} · {sent:,} B")
    expect(tab.page.get_by_text("DevTools (F12)")).to_be_visible()  # the pointer to the browser's own view


RESTART_ERRORS = re.compile(r"ERR_CONNECTION_REFUSED|WebSocket connection to .* failed")


def test_messages_typed_during_a_restart_are_sent_after_it(open_tab: Callable[[], Tab], lab: LabServer) -> None:
    ann, bob = open_tab(), open_tab()
    sign_up(ann, unique("ann"))
    sign_up(bob, unique("bob"))
    for tab in (ann, bob):
        join(tab, "restart")
        tab.expected = RESTART_ERRORS  # the browser logs each refused reconnect attempt
    say(bob, "before the restart")
    expect(ann.message("before the restart")).to_have_attribute("data-seq", re.compile(r"\d+"))

    lab.stop(restarting=True)  # 1012: the server says it will be back
    try:
        # In the wire panel for good (the status badge moves on to the refused retries, 1006).
        expect(ann.by("frames").locator('li[data-dir="event"]', has_text="closed 1012")).to_have_count(1)
        expect(ann.by("send")).to_have_text("Queue")
        queued = [f"typed offline {n}" for n in range(10)]
        for text in queued:
            say(ann, text)
            expect(ann.message(text)).to_have_attribute("data-state", "queued")
        say(ann, "one too many")  # the queue holds 10: refused where she sees it, and kept in the box
        expect(ann.by("notice")).to_contain_text("was not sent")
        expect(ann.by("composer-input")).to_have_value("one too many")
        expect(ann.message("one too many")).to_have_count(0)
    finally:
        lab.start()

    for tab in (ann, bob):
        expect(tab.by("room")).to_have_attribute("data-joined", "true", timeout=20_000)
    for text in queued:
        expect(ann.message(text)).to_have_attribute("data-state", "acked")
        expect(bob.message(text)).to_have_count(1)
    seqs = [int(bob.message(text).get_attribute("data-seq") or 0) for text in queued]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs  # in the order typed
    for tab in (ann, bob):
        expect(tab.message("before the restart")).to_have_count(1)  # nothing lost, nothing doubled
    expect(ann.by("notice")).to_contain_text("10 queued message(s) sent")


def test_webrtc_data_channel_signaled_through_the_lab(open_tab: Callable[[], Tab]) -> None:
    ann, bob = open_tab(), open_tab()
    sign_up(ann, unique("ann"))
    bob_name = unique("bob")
    sign_up(bob, bob_name)
    ann.by("rtc-peer").select_option(label=bob_name)
    ann.by("rtc-call").click()
    for tab in (ann, bob):
        expect(tab.by("rtc-channel")).to_have_text("open", timeout=15_000)
        expect(tab.by("rtc-connection")).to_have_text("connected")

    secret = f"peer to peer {uuid.uuid4().hex[:6]}"
    ann.by("rtc-input").fill(secret)
    ann.by("rtc-send").click()
    expect(bob.by("rtc-log").locator('li[data-dir="in"]')).to_contain_text(secret)
    bob.by("rtc-input").fill("and back")
    bob.by("rtc-input").press("Enter")
    expect(ann.by("rtc-log").locator('li[data-dir="in"]')).to_contain_text("and back")

    # The signaling went through the lab; the data did not.
    expect(ann.by("rtc-signals").locator('li[data-dir="out"][data-kind="offer"]')).to_have_count(1)
    expect(ann.by("rtc-signals").locator('li[data-dir="in"][data-kind="answer"]')).to_have_count(1)
    expect(bob.by("rtc-signals").locator('li[data-dir="in"][data-kind="offer"]')).to_have_count(1)
    assert [f["kind"] for f in bob.frames("in", "signal")][-1:] != [], "bob got signals over his socket"
    assert {f["kind"] for f in ann.frames("out", "signal")} >= {"offer", "ice"}
    (answer,) = [f for f in bob.frames("out", "signal") if f["kind"] == "answer"]
    assert answer["to_socket"] == ann.by("socket-id").text_content()  # the reply goes to the tab that called
    for tab in (ann, bob):
        assert secret not in (tab.by("frames").text_content() or "")

    ann.by("rtc-hangup").click()
    expect(bob.by("rtc-channel")).to_have_text(re.compile("none|closed"))


def test_class_mode_sign_up_takes_the_join_code_from_the_form(browser: Browser, tmp_path: Path) -> None:
    with LabServer(tmp_path / "class", join_code="ABC-234") as class_lab:
        context = browser.new_context()
        try:
            tab = Tab(context.new_page())
            tab.page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
            tab.page.goto(class_lab.url)
            tab.by("username").fill(unique("student"))
            tab.by("password").fill("browser-secret")
            tab.by("signup").click()  # no code: refused, and the page says why
            expect(tab.by("login-error")).to_have_text(
                "this lab is a class: sign up with the join code the instructor shows"
            )
            tab.by("join-code").fill("abc 234")  # as read off the projector: case and spaces do not matter
            tab.by("signup").click()
            in_room(tab)
            # The refused sign-up is the browser's logged 403; nothing else went wrong.
            assert [e for e in tab.errors if "403" not in e] == [], tab.errors
        finally:
            context.close()


def test_the_instructors_announcement_is_shown_in_a_live_region(browser: Browser, tmp_path: Path) -> None:
    with LabServer(tmp_path / "class", admin_token="t0ken-for-the-test", join_code="ANN-234") as class_lab:
        context = browser.new_context()
        try:
            tab = Tab(context.new_page())
            tab.page.on("pageerror", lambda exc: tab.errors.append(f"page error: {exc}"))
            tab.page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
            tab.page.goto(class_lab.url)
            region = tab.by("announcement")
            # There before anything is said (a screen reader only reads changes of a region it knows), and empty.
            expect(region).to_have_attribute("aria-live", "polite")
            expect(region).to_have_attribute("role", "status")
            expect(region).to_be_hidden()
            sign_up(tab, unique("student"), code="ANN-234")
            assert class_lab.announce("Exercise 3 starts now") == 1
            expect(region).to_be_visible()
            expect(tab.by("announcement-text")).to_have_text("Exercise 3 starts now")
            expect(region).to_contain_text("Instructor:")
            # The next one replaces it (the region reads out just the new one), and is text, never HTML.
            class_lab.announce("<b>Break</b> until 10:15")
            expect(tab.by("announcement-text")).to_have_text("<b>Break</b> until 10:15")
            assert region.locator("b").count() == 0
            tab.by("announcement-dismiss").click()
            expect(region).to_be_hidden()
            assert tab.errors == [], tab.errors
        finally:
            context.close()
