"""Class mode end to end: the instructor's ``course.py class`` lab, students joining it with the
code from another Python process (``join_lab``, then a lesson's unchanged ``start_lab()``) and from a
browser, the instructor's projector listing them, and what students may not do.

Also: the join code's checks (wrong, missing, case and dashes), the accounts-per-code cap, the
instructor's controls (announce, pause and resume a room), a shared lab's admin-only calls as one
line, and a crowd of simulated students through a shared lab (how many it held, printed).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labserver.course import Crowd, LabClient, LabError, LabServer, RestClient, start_lab, stop_lab
from labserver.course.classroom import InstructorOnly, JoinError, join_lab, joined_lab, leave_class, make_join_code

from .conftest import CHROMIUM, CHROMIUM_ARGS
from .test_course_py import load_course_py


@pytest.fixture
def class_lab(tmp_path: Path) -> Iterator[LabServer]:
    with LabServer(tmp_path / "data", admin_token=secrets.token_urlsafe(16), join_code="ABC-234") as lab:
        lab.start()
        yield lab
    leave_class()


def signup(lab: LabServer, username: str, code: object) -> tuple[int, dict]:
    body = {"username": username, "password": "secret123", **({"code": code} if code is not None else {})}
    return lab.request("POST", "/api/signup", body)


# --- the join code ----------------------------------------------------------------------------


def test_signup_needs_the_join_code_and_says_so(class_lab: LabServer) -> None:
    assert signup(class_lab, "nocode", None) == (
        403,
        {"error": "bad_join_code", "message": "this lab is a class: sign up with the join code the instructor shows"},
    )
    assert signup(class_lab, "wrong", "ABC-235") == (
        403,
        {"error": "bad_join_code", "message": "wrong join code: check the code the instructor shows"},
    )
    assert signup(class_lab, "wrongtype", 234)[1]["error"] == "bad_join_code"
    status, body = signup(class_lab, "typed_loosely", " abc 234 ")  # case, spaces and dashes don't matter
    assert status == 201 and body["user"]["username"] == "typed_loosely"
    assert class_lab.request("POST", "/api/login", {"username": "typed_loosely", "password": "secret123"})[0] == 200


def test_accounts_per_code_are_capped(tmp_path: Path) -> None:
    with LabServer(tmp_path / "d", admin_token="t0ken", join_code="CAP-222", accounts_per_code=2) as lab:
        lab.start()
        assert signup(lab, "first", "CAP-222")[0] == 201
        assert signup(lab, "first", "CAP-222")[0] == 409  # taken: does not use up the code
        assert signup(lab, "second", "CAP-222")[0] == 201
        assert signup(lab, "third", "CAP-222") == (
            403,
            {"error": "class_full", "message": "this class's join code has made its 2 accounts; ask the instructor"},
        )
        assert lab.class_info() == {"join_code": "CAP-222", "accounts": 2, "max_accounts": 2, "paused_rooms": []}


def test_the_server_refuses_a_bad_join_code_flag_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labserver", "--join-code", "a!", "--port", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr == (
        "labserver: error: --join-code must be 4-32 letters or digits (spaces and dashes ignored), got 'a!' "
        "(see --help)\n"
    )


def test_join_codes_are_short_and_unambiguous() -> None:
    codes = {make_join_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(re.fullmatch(r"[A-HJKMNP-Z2-9]{3}-[A-HJKMNP-Z2-9]{3}", code) for code in codes)


# --- a student's shared lab ------------------------------------------------------------------------


def test_after_join_lab_every_start_lab_is_the_class_lab(class_lab: LabServer, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(JoinError, match="wrong join code"):
        join_lab(class_lab.url, "ZZZ-999")
    with pytest.raises(JoinError, match="must look like http"):
        join_lab("192.168.1.20:8765", "ABC-234")
    assert joined_lab() is None
    shared = join_lab(class_lab.url + "/", "abc234")
    assert class_lab.class_info()["accounts"] == 0  # checking the code made no account
    assert start_lab() is shared and start_lab(ping_interval=5) is shared
    assert capsys.readouterr().err.count("the options ping_interval are the instructor's to set") == 1
    ann = shared.account("ann_student")
    assert shared.account("ann_student").token  # a second call logs in
    assert [u["username"] for u in shared.users()] == ["ann_student"]

    async def chat() -> str:
        client = await LabClient.connect(shared, ann)
        try:
            await client.join("lobby")
            ack = await client.chat("lobby", "hello class")
            return str(ack["type"])
        finally:
            await client.close()

    assert asyncio.run(chat()) == "ack"
    # What only the instructor may do: one line each, never a traceback storm.
    for call in (shared.switches, lambda: shared.set_switches(block_ms=5), lambda: shared.drop("s_x"), shared.restart):
        with pytest.raises(InstructorOnly, match="needs the instructor's admin token") as caught:
            call()
        assert caught.value._render_traceback_() == [f"InstructorOnly: {caught.value}"]
        assert "\n" not in str(caught.value)
    with pytest.raises(InstructorOnly):
        _ = shared.observe_url
    leave_class()
    private = start_lab()
    try:
        assert private is not shared and private.url != class_lab.url
    finally:
        stop_lab()


def test_a_student_cannot_act_as_the_instructor_or_read_others_dms(class_lab: LabServer) -> None:
    shared = join_lab(class_lab.url, "ABC-234")
    eve, ann, bob = (shared.account(name) for name in ("eve", "ann", "bob"))
    for method, path in [
        ("GET", "/api/admin/switches"),
        ("GET", "/api/admin/class"),
        ("POST", "/api/admin/announce"),
        ("POST", "/api/admin/rooms/lobby/pause"),
        ("POST", "/api/admin/sockets/s_x/close"),
    ]:
        body = {"text": "I am the teacher"} if path.endswith("announce") else None
        as_user = shared.request(method, path, body, token=eve.token)
        code_as_token = shared.request(method, path, body, headers={"X-Admin-Token": "ABC-234"})
        for status, answer in (as_user, code_as_token):
            assert (status, answer["error"]) == (403, "forbidden"), (method, path)
    low, high = sorted((ann.id, bob.id))
    status, answer = shared.request("GET", f"/api/rooms/dm:{low}:{high}/messages", token=eve.token)
    assert (status, answer["error"]) == (403, "forbidden")
    # /observe without the admin token: refused at the handshake.
    assert class_lab.request("GET", "/observe")[0] in (400, 403)


# --- the instructor's controls ---------------------------------------------------------------------


def test_announce_and_pause_a_room(class_lab: LabServer) -> None:
    shared = join_lab(class_lab.url, "ABC-234")
    ann = shared.account("ann")

    async def scenario() -> tuple[dict, dict, dict, dict]:
        client = await LabClient.connect(shared, ann)
        try:
            await client.join("lobby")
            await asyncio.to_thread(class_lab.announce, "Exercise 3 starts now")
            announcement = await client.wait_for("announcement")
            await asyncio.to_thread(class_lab.pause_room, "lobby")
            try:
                await client.send("chat", room="lobby", text="while paused")
                refused: dict = {}
            except LabError as exc:
                refused = dict(exc.reply or {})
            status, body = await asyncio.to_thread(
                shared.request, "POST", "/api/rooms/lobby/messages", {"text": "over http"}, ann.token
            )
            await asyncio.to_thread(class_lab.resume_room, "lobby")
            accepted = await client.chat("lobby", "after the pause")
            return dict(announcement), refused, {"status": status, **body}, dict(accepted)
        finally:
            await client.close()

    announcement, refused, over_http, accepted = asyncio.run(scenario())
    assert announcement["text"] == "Exercise 3 starts now" and announcement["type"] == "announcement"
    assert (refused["type"], refused["code"]) == ("error", "room_paused")
    assert refused["message"] == "room 'lobby' is paused by the instructor"
    assert over_http == {"status": 409, "error": "room_paused", "message": "room 'lobby' is paused by the instructor"}
    assert accepted["type"] == "ack"
    assert class_lab.class_info()["paused_rooms"] == []


def test_a_crowd_of_simulated_students_through_a_shared_lab(class_lab: LabServer) -> None:
    shared = join_lab(class_lab.url, "ABC-234")
    students = 40

    async def crowd() -> tuple[int, float]:
        started = time.monotonic()
        async with Crowd(shared, prefix="student", rooms=("lobby",)) as crowd:
            await crowd.grow(students)
            return crowd.connected, time.monotonic() - started

    connected, took = asyncio.run(crowd())
    assert connected == students
    assert class_lab.class_info()["accounts"] == students
    print(f"\n{students} simulated students signed up with the code and connected in {took:.1f} s")


# --- end to end: course.py class, a student process, a student browser, the projector -----------


STUDENT_PROCESS = """
import asyncio, sys
from labserver.course import LabClient, start_lab
from labserver.course.classroom import join_lab

join_lab(sys.argv[1], sys.argv[2])

async def main():
    lab = start_lab()  # a lesson's own first line: now the class's lab
    client = await LabClient.connect(lab, lab.account("notebook_student"))
    await client.join("lobby")
    await client.chat("lobby", "hello from a notebook")
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # stay connected until the test closes our stdin
    await client.close()

asyncio.run(main())
"""


def test_course_py_class_with_a_notebook_student_and_a_browser_student(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import expect, sync_playwright

    # What `python3 course.py class -- FLAGS` runs after its (idempotent) setup, with the venv's python.
    course = load_course_py()
    monkeypatch.setattr(course, "setup", lambda kind, system=True: None)
    commands: list[list[str]] = []
    monkeypatch.setattr(course, "exec_venv", commands.append)
    course.main(["class", "--", "--port", "0", "--data-dir", str(tmp_path / "d")])
    (command,) = commands
    instructor = subprocess.Popen(
        [sys.executable, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    student = None
    try:
        assert instructor.stdout is not None
        banner = ""
        while "Ctrl+C" not in banner:
            line = instructor.stdout.readline()
            assert line, f"course.py class ended: {instructor.stderr.read() if instructor.stderr else ''}"
            banner += line
        found = re.search(r"Students join at  (\S+)  with the code  (\S+)", banner)
        live = re.search(r"Projector view .*: (\S+/live#token=\S+)", banner)
        assert found and live, banner
        url, code = found.groups()
        assert f'join_lab("{url}", "{code}")' in banner

        student = subprocess.Popen(
            [sys.executable, "-c", STUDENT_PROCESS, url, code],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        assert student.stdout is not None and student.stdout.readline().strip() == "ready"

        rest = RestClient(url.rstrip("/"))
        wrong = rest.request("POST", "/api/signup", {"username": "gatecrasher", "password": "secret123", "code": "X"})
        assert wrong == (
            403,
            {"error": "bad_join_code", "message": "wrong join code: check the code the instructor shows"},
        )

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            # The browser student: the page's origin, sign-up with the code, then its /ws.
            page = browser.new_page()
            page.goto(url)
            welcome = page.evaluate(
                """async (code) => {
                    const r = await fetch("api/signup", {method: "POST", headers: {"Content-Type": "application/json"},
                        body: JSON.stringify({username: "browser_student", password: "secret123", code})});
                    if (r.status !== 201) return `signup ${r.status}`;
                    const {token} = await r.json();
                    const ws = new WebSocket(`ws://${location.host}/ws?token=${token}`);
                    window.keep = ws;
                    return await new Promise((ok) => { ws.onmessage = (m) => ok(JSON.parse(m.data).type); });
                }""",
                code,
            )
            assert welcome == "welcome"
            # The instructor's projector lists both students, with their sockets.
            projector = browser.new_page(viewport={"width": 1600, "height": 900})
            projector.goto(live.group(1))
            for name in ("notebook_student", "browser_student"):
                expect(projector.locator(f'li.person[data-user="{name}"]')).to_have_attribute("data-online", "true")
            expect(projector.get_by_test_id("connections")).to_have_text("2")
            expect(projector.get_by_test_id("join-code")).to_have_text(code)
            expect(projector.get_by_test_id("join-count")).to_have_text("2 of 100 accounts")
            browser.close()
    finally:
        if student is not None:
            student.communicate(timeout=15)  # EOF on its stdin: it closes its socket and exits
        instructor.terminate()
        instructor.wait(15)
    assert student.returncode == 0
    assert json.dumps(banner).count("token=") == 1  # the admin token is printed once, in the projector link
