"""Class mode end to end: the instructor's ``course.py class`` lab, students joining it with the
code from another Python process (``join_lab``, then a lesson's unchanged ``start_lab()``) and from a
browser, the instructor's projector listing them, and what students may not do.

Also: the join code's checks (wrong, missing, case and dashes), the accounts-per-code cap, the
instructor's controls (announce, pause and resume a room), a shared lab's admin-only calls as one
line; students' names (asked for, kept in a 0600 file, refused when taken) and their own lesson
accounts (``ann.alice``: two students' ``alice`` are two accounts, neither opens the other's, capped
and rate-limited per student, not per code); a crowd of 40 of one student's users in a class of 5
accounts per code (how long it took, printed); a student's /observe and Dashboard (the class's
public traffic, no private room, DM pair or text; the admin's sees it all); and every lesson run top
to bottom in a kernel that joined the class (on the class's lab, or a private one where it says so).
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
from typing import Any

import pytest
import websockets

from labserver.course import Crowd, Dashboard, LabClient, LabError, LabServer, RestClient, start_lab, stop_lab
from labserver.course.classroom import (
    SEPARATOR,
    InstructorOnly,
    JoinError,
    join_lab,
    joined_lab,
    leave_class,
    make_join_code,
    private_lab,
)

from .conftest import CHROMIUM, SOAK, launch_chromium, until
from .test_course_py import load_course_py


@pytest.fixture(autouse=True)
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where join_lab keeps the students' passwords: this test's own file, not ~/.labserver."""
    path = tmp_path / "home" / ".labserver" / "class-credentials.json"
    monkeypatch.setenv("LABSERVER_CLASS_CREDENTIALS", str(path))
    return path


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
        join_lab(class_lab.url, "ZZZ-999", name="ann")
    with pytest.raises(JoinError, match="must look like http"):
        join_lab("192.168.1.20:8765", "ABC-234", name="ann")
    assert joined_lab() is None
    assert class_lab.class_info()["accounts"] == 0  # checking the code made no account
    shared = join_lab(class_lab.url + "/", "abc234", name="ann")
    assert class_lab.class_info()["accounts"] == 1  # the student's own
    assert start_lab() is shared and start_lab(ping_interval=5) is shared
    assert capsys.readouterr().err.count("the options ping_interval are the instructor's to set") == 1
    ann = shared.account("ann_student")
    assert ann.username == "ann.ann_student"
    assert shared.account("ann_student").id == ann.id  # a second call opens it again
    assert [u["username"] for u in shared.users()] == ["ann", "ann.ann_student"]
    assert shared.user("ann_student")["id"] == ann.id
    assert class_lab.class_info()["accounts"] == 1  # lesson accounts don't use up the code

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
    assert shared.me is not None and shared.observe_url.endswith(f"/observe?token={shared.me.token}")  # not the admin's
    leave_class()
    private = start_lab()
    try:
        assert private is not shared and private.url != class_lab.url
    finally:
        stop_lab()


def test_a_student_cannot_act_as_the_instructor_or_read_others_dms(class_lab: LabServer) -> None:
    shared = join_lab(class_lab.url, "ABC-234", name="eve")
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


# --- a student's /observe: the class's public traffic --------------------------------------------


def test_a_students_observe_shows_the_public_traffic_and_the_admins_shows_it_all(class_lab: LabServer) -> None:
    shared = join_lab(class_lab.url, "ABC-234", name="ann")
    owner, member, other = (shared.account(name) for name in ("owner", "member", "other"))
    secret = "hideout"
    assert shared.request("POST", "/api/rooms", {"name": secret, "members": [member.id]}, owner.token)[0] == 201
    dm_pair = f"dm:{min(owner.id, other.id)}:{max(owner.id, other.id)}"

    async def watch() -> tuple[list[dict], list[list[dict]]]:
        a, b = await LabClient.connect(shared, owner), await LabClient.connect(shared, member)
        try:
            await a.join(secret)
            async with (
                websockets.connect(shared.observe_url) as student,
                websockets.connect(class_lab.observe_url) as admin,
            ):
                watchers = (student, admin)
                snapshots = [json.loads(await asyncio.wait_for(w.recv(), 5)) for w in watchers]
                await b.join(secret)
                await a.chat(secret, "the plan")
                await a.dm(other.id, "psst")
                await a.join("open-hall")
                await a.chat("open-hall", "public words")
                seen: list[list[dict]] = []
                for watcher in watchers:
                    events: list[dict] = []
                    while not any(e.get("type") == "chat" and e["to"]["name"] == "open-hall" for e in events):
                        events.extend(json.loads(await asyncio.wait_for(watcher.recv(), 5)).get("events", []))
                    seen.append(events)
                return snapshots, seen
        finally:
            await a.close()
            await b.close()

    (as_student, as_admin), (students, admins) = asyncio.run(watch())
    assert as_student["type"] == as_admin["type"] == "snapshot"
    assert secret in as_admin["rooms"] and secret not in as_student["rooms"]
    assert all(secret not in s["rooms"] for s in as_student["sockets"])
    assert {s["user"]["username"] for s in as_student["sockets"]} == {"ann.owner", "ann.member"}  # who is on: public
    student_text, admin_text = json.dumps(students), json.dumps(admins)
    # The student: no private room's name, no DM pair, no text at all (not even the public room's).
    assert secret not in student_text and dm_pair not in student_text
    assert not [text for text in ("the plan", "psst", "public words") if text in student_text]
    routed = {e["type"] + ":" + str(e["to"]["name"]) for e in students if e["ev"] == "routed"}
    assert {"chat:(hidden)", "dm:(hidden)", "chat:open-hall"} <= routed, routed
    assert all(e["preview"] is None for e in students if e["ev"] == "routed")
    assert not [e for e in students if e.get("room") == secret]  # no joins or leaves of it
    # The instructor, at the same time: the private room, the DM pair, the public room's text.
    assert secret in admin_text and dm_pair in admin_text and "public words" in admin_text

    async def without_a_token() -> int:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(shared.observe_url.split("?")[0])
        return refused.value.response.status_code

    assert asyncio.run(without_a_token()) == 403  # a class lab has an admin token, even on loopback


async def test_observe_beyond_loopback_wants_a_token_and_a_user_gets_the_hidden_view_8_times(tmp_path: Path) -> None:
    with LabServer(tmp_path, host="0.0.0.0", admin_token="t0ken-of-the-instructor") as exposed:
        exposed.url = exposed.url.replace("//0.0.0.0:", "//127.0.0.1:")
        plain = exposed.observe_url.split("?")[0]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(plain)
        assert refused.value.response.status_code == 403
        assert b"/observe needs the admin token or a user's ?token=" in refused.value.response.body
        with pytest.raises(websockets.InvalidStatus) as forged:
            await websockets.connect(plain + "?token=not.a.token")
        assert forged.value.response.status_code == 401
        user = await asyncio.to_thread(exposed.account, "watcher")
        mine = f"{plain}?token={user.token}"
        # Every observer is sent every event: a user may hold 8 (as event streams), even in a burst.
        watchers = await asyncio.gather(*(websockets.connect(mine) for _ in range(12)), return_exceptions=True)
        try:
            opened = [w for w in watchers if not isinstance(w, BaseException)]
            refused_ones = [w for w in watchers if isinstance(w, websockets.InvalidStatus)]
            assert len(opened) == 8 and len(refused_ones) == 4, watchers
            assert b"at most 8 open /observe streams per user" in refused_ones[0].response.body
            assert [json.loads(await asyncio.wait_for(w.recv(), 5))["type"] for w in opened] == ["snapshot"] * 8
            async with websockets.connect(exposed.observe_url) as admin:  # the instructor's is not counted
                assert json.loads(await asyncio.wait_for(admin.recv(), 5))["type"] == "snapshot"
            await opened[0].close()
            async with websockets.connect(mine) as again:  # one closed: one may open
                assert json.loads(await asyncio.wait_for(again.recv(), 5))["type"] == "snapshot"
        finally:
            for w in watchers:
                if not isinstance(w, BaseException):
                    await w.close()


def test_a_students_observe_url_logs_in_again_before_the_token_expires(tmp_path: Path) -> None:
    with LabServer(tmp_path / "data", admin_token="t0ken", join_code="TTL-234", token_ttl=30) as lab:
        lab.start()
        ann = join_lab(lab.url, "TTL-234", name="ann")
        assert ann.me is not None
        first = ann.me.token  # 30 s to live: under the minute observe_url keeps in hand
        url = ann.observe_url
        assert ann.me.token != first and url.endswith(f"?token={ann.me.token}")


async def test_a_students_dashboard_shows_the_class_and_cannot_drop(class_lab: LabServer) -> None:
    shared = await asyncio.to_thread(join_lab, class_lab.url, "ABC-234", name="ann")
    alice = await asyncio.to_thread(shared.account, "alice")
    client = await LabClient.connect(shared, alice)
    dash = Dashboard(shared)
    try:
        await client.join("lobby")
        await dash.ready()
        await until(lambda: "ann.alice" in dash.users_view.value)
        assert dash.drop_box.layout.display == "none"
        with pytest.raises(InstructorOnly, match=r"lab.drop\(\) needs the instructor's admin token"):
            await dash.drop(client.socket_id)
        assert client.connected
        assert not [e for e in dash.errors if shared.me is not None and shared.me.token in e]
    finally:
        await dash.stop()
        await client.close()


# --- the instructor's controls ---------------------------------------------------------------------


def test_announce_and_pause_a_room(class_lab: LabServer) -> None:
    shared = join_lab(class_lab.url, "ABC-234", name="ann")
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


# --- students' own accounts: a name each, and lesson accounts namespaced to it ---------------------

CLASS_LIMITS = {"max_sockets_per_user": 16, "signups_per_minute": 30, "rest_rate": 20}
"""The caps a lab beyond loopback has by itself (PROTOCOL.md section 2), set here on a loopback lab."""


def test_join_lab_asks_for_a_name_and_refuses_one_taken(
    class_lab: LabServer, credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for missing in (None, "", "ann lee", "an"):
        with pytest.raises(JoinError, match=r"join_lab needs your name, 3-32 letters, digits or _") as caught:
            join_lab(class_lab.url, "ABC-234", name=missing)
        assert "\n" not in str(caught.value) and 'name="ana")' in str(caught.value)
    ann = join_lab(class_lab.url, "ABC-234", name="ann")
    assert ann.student == "ann" and joined_lab() is ann
    assert credentials.stat().st_mode & 0o777 == 0o600 and credentials.parent.stat().st_mode & 0o777 == 0o700
    assert "ann" in json.loads(credentials.read_text())[ann.url]
    # The same cell in a new kernel: the kept password logs ann back in (no second account).
    leave_class()
    again = join_lab(class_lab.url, "ABC-234", name="ANN")
    assert again.me is not None and ann.me is not None and again.me.id == ann.me.id
    with pytest.raises(JoinError, match=r"you joined this lab before as 'ann'"):
        join_lab(class_lab.url, "ABC-234")
    # Another student (another computer: no kept password) who types the same name is told.
    monkeypatch.setenv("LABSERVER_CLASS_CREDENTIALS", str(credentials.with_name("other.json")))
    with pytest.raises(JoinError, match=r"the name 'ann' is taken in this class: pick another"):
        join_lab(class_lab.url, "ABC-234", name="ann")
    assert class_lab.class_info()["accounts"] == 1


def test_two_students_alice_are_two_accounts_and_neither_can_open_the_others(class_lab: LabServer) -> None:
    ann, ben = join_lab(class_lab.url, "ABC-234", name="ann"), join_lab(class_lab.url, "ABC-234", name="ben")
    anns, bens = ann.account("alice"), ben.account("alice")
    assert (anns.username, bens.username) == ("ann.alice", "ben.alice") and anns.id != bens.id
    assert ann.account("ann.alice").id == anns.id  # the full name is the same account
    assert ben.user("alice")["id"] == bens.id and ann.user("alice")["id"] == anns.id
    assert ben.me is not None
    # Ben cannot make or open Ann's: the endpoint takes a plain name, and the name has no password.
    status, body = ben.request("POST", "/api/class/accounts", {"name": "ann.alice"}, token=ben.me.token)
    assert (status, body["error"]) == (400, "bad_field")
    with pytest.raises(JoinError):
        ben.account("../ann.alice")
    for password in ("lab-password", "secret123", ""):
        status, _ = class_lab.request("POST", "/api/login", {"username": "ann.alice", "password": password})
        assert status in (400, 401)
    status, body = signup(class_lab, "ann.mallory", "ABC-234")  # no one signs up a dotted name
    assert (status, body["error"]) == (400, "bad_field")
    # A lesson account cannot make accounts of its own (no "ann.alice.x"), nor can anyone without a token.
    status, body = ben.request("POST", "/api/class/accounts", {"name": "x_y"}, token=bens.token)
    assert (status, body["error"]) == (403, "forbidden")
    assert ben.request("POST", "/api/class/accounts", {"name": "x_y"})[0] == 401

    async def dm() -> tuple[dict, list]:
        anns_alice, anns_bob = await LabClient.connect(ann, anns), await LabClient.connect(ann, ann.account("bob"))
        bens_alice = await LabClient.connect(ben, bens)
        try:
            got: list = []
            bens_alice.on("dm", got.append)
            await anns_bob.send("dm", to=anns.id, text="for ann's alice only")
            received = await anns_alice.wait_for("dm")
            await asyncio.sleep(0.3)
            return dict(received), got
        finally:
            for client in (anns_alice, anns_bob, bens_alice):
                await client.close()

    received, seen_by_bens_alice = asyncio.run(dm())
    assert received["text"] == "for ann's alice only" and received["from"]["username"] == "ann.bob"
    assert seen_by_bens_alice == []  # before, both "alice" were one account: Ben read Ann's DMs
    assert class_lab.class_info()["accounts"] == 2


def test_a_crowd_of_40_from_one_student_fits_a_class_of_5_accounts(tmp_path: Path) -> None:
    with LabServer(
        tmp_path / "data", admin_token="t0ken", join_code="CRW-234", accounts_per_code=5, **CLASS_LIMITS
    ) as lab:
        lab.start()
        shared = join_lab(lab.url, "CRW-234", name="ann")
        students = 40

        async def crowd() -> tuple[int, float, list[str]]:
            started = time.monotonic()
            async with Crowd(shared, prefix="bot", rooms=("lobby",), chat_rate=1, seed=1) as crowd:
                await crowd.grow(students)
                await asyncio.sleep(1.0)
                names = sorted(c.account.username for c in crowd._clients)
                return crowd.connected, time.monotonic() - started, names[:2]

        connected, took, names = asyncio.run(crowd())
        assert connected == students and names == ["ann.bot0000", "ann.bot0001"]
        assert lab.class_info()["accounts"] == 1  # the student; the crowd's 40 are theirs
        assert len([u for u in lab.users() if u["username"].startswith("ann.bot")]) == students
        print(f"\n{students} simulated users of one student made and connected in {took:.1f} s (5 accounts per code)")


def test_a_student_has_at_most_accounts_per_student_and_is_told_in_one_line(tmp_path: Path) -> None:
    with LabServer(tmp_path / "data", admin_token="t0ken", join_code="CAP-234", accounts_per_student=3) as lab:
        lab.start()
        ann = join_lab(lab.url, "CAP-234", name="ann")
        made = [ann.account(name).id for name in ("one", "two", "three")]
        with pytest.raises(JoinError) as caught:
            ann.account("four")
        assert str(caught.value) == (
            "could not make or open 'four' on the class's lab: 403 ann has made 3 lesson accounts, "
            "the most per student: reuse their names, or ask the instructor"
        )
        assert caught.value._render_traceback_() == [f"JoinError: {caught.value}"]
        assert [ann.account(name).id for name in ("one", "two", "three")] == made  # opening again is free
        ben = join_lab(lab.url, "CAP-234", name="ben")
        assert ben.account("four").username == "ben.four"  # per student, not per class


def test_a_students_account_making_is_rate_limited(tmp_path: Path) -> None:
    with LabServer(tmp_path / "data", admin_token="t0ken", join_code="RAT-234", rest_rate=1, rest_burst=3) as lab:
        lab.start()
        ann = join_lab(lab.url, "RAT-234", name="ann")
        assert ann.me is not None
        answers = [
            ann.request("POST", "/api/class/accounts", {"name": f"quick{i}"}, token=ann.me.token) for i in range(5)
        ]
        assert [status for status, _ in answers[:3]] == [201] * 3
        status, body = answers[3]
        assert status == 429 and body["error"] == "too_many_requests", body
        assert ann.account("patient").username == "ann.patient"  # account() waits and retries


# --- end to end: course.py class, a student process, a student browser, the projector -----------


STUDENT_PROCESS = """
import asyncio, sys
from labserver.course import LabClient, start_lab
from labserver.course.classroom import join_lab

join_lab(sys.argv[1], sys.argv[2], name="notebook_student")

async def main():
    lab = start_lab()  # a lesson's own first line: now the class's lab
    client = await LabClient.connect(lab, lab.account("laptop"))
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
        assert f'join_lab("{url}", "{code}", name="your_name")' in banner

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
            browser = launch_chromium(pw)
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
            for name in ("notebook_student.laptop", "browser_student"):
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


# --- every lesson, unchanged, in a student's kernel that joined the class ----------------------------

SOURCES = Path(__file__).resolve().parent.parent / "notebooks" / "src"


# Lessons that run whole on a private lab in class and take as long there as in their build (which
# nbval checks): only with LABSERVER_SOAK=1, so that the default set stays near 1.5 minutes on 2 cores.
SLOW = {"01": "a thousand pollers: 58 s", "04": "kills and restarts: 33 s", "07": "thousands of sockets: 53 s"}


def lesson_param(source: Path) -> Any:
    slow = SLOW.get(source.name[:2])
    marks = [pytest.mark.slow, pytest.mark.skipif(not SOAK, reason=f"{slow}; LABSERVER_SOAK=1 runs it")]
    return pytest.param(source.name, marks=marks if slow else [], id=source.stem)


LESSONS = [lesson_param(path) for path in sorted(SOURCES.glob("[0-9][0-9]_*.py"))]
LESSON_ACCOUNTS = {"alice", "bob", "carol", "dora", "dave", "eve", "mallory"}


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """One class's lab for every lesson, as in a room: what a lesson leaves there, the next one meets."""
    data = tmp_path_factory.mktemp("classroom") / "data"
    # --ping-interval 2, as lessons.md suggests for a class: lesson 00 waits for a heartbeat to
    # notice a vanished client (3 s, not 30).
    with LabServer(data, admin_token="t0ken", join_code="NBK-234", ping_interval=2, **CLASS_LIMITS) as lab:
        lab.start()
        yield lab


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_lesson_runs_top_to_bottom_in_a_kernel_that_joined_the_class(lesson: str, classroom: LabServer) -> None:
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    student = f"nb{lesson[:2]}"
    notebook = jupytext.read(SOURCES / lesson)
    join = f"from labserver.course.classroom import join_lab\njoin_lab({classroom.url!r}, 'NBK-234', name={student!r})"
    notebook.cells.insert(0, nbformat.v4.new_code_cell(join))
    started = time.monotonic()
    NotebookClient(
        notebook,
        timeout=90,
        kernel_name="python3",
        allow_errors=True,  # every error of the lesson, not the first only
        resources={"metadata": {"path": str(SOURCES.parent)}},
    ).execute()
    took = time.monotonic() - started
    errors = [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(notebook.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == [], "\n".join(errors)
    # A lesson that runs on a lab of its own in class says so in its first lab cell, by itself.
    first = next((cell for cell in notebook.cells if "start_lab(" in cell.source and "import" in cell.source), None)
    if first is not None:  # lesson 08 starts a cluster of its own, no lab
        said = "".join(out.get("text", "") for out in first.get("outputs", []) if out.get("name") == "stderr")
        whole = 'start_lab(private="this lesson' in first.source
        assert ("runs on a private lab of this kernel" in said) == whole, said
    names = {str(u["username"]) for u in classroom.users()}
    assert student in names
    # Every account a lesson made on the class's lab is a student's own ("nb03.alice"): no plain
    # "alice", no sign-up that skipped the code.
    assert not LESSON_ACCOUNTS & names
    assert all(SEPARATOR in name or re.fullmatch(r"nb\d\d", name) for name in names), sorted(names)
    print(f"\nlesson {lesson} ran in a class in {took:.1f} s")


async def test_a_live_exercise_is_checked_on_the_class_lab_a_kernel_joined(class_lab: LabServer) -> None:
    # A shared lesson's check runs against the lab its cells use: the class's, not "no lab running".
    from labserver.course.exercises import core
    from labserver.course.exercises import lesson00 as ex
    from labserver.course.exercises.core import Status

    stop_lab()  # no private lab in this kernel
    await asyncio.to_thread(join_lab, class_lab.url, "ABC-234", name="ann")
    try:
        assert core.LiveProblem._find_lab(ex.q5) is joined_lab()
        verdict = await ex.q5.check_async(ex._say_hello_reference)
        assert verdict.status is Status.CORRECT, verdict
        names = {str(u["username"]) for u in await asyncio.to_thread(class_lab.users)}
        assert f"ann{SEPARATOR}hello_checker" in names  # the checker's account is the student's own
    finally:
        leave_class()


def test_a_part_that_cannot_share_the_class_lab_runs_on_a_private_one(
    class_lab: LabServer, capsys: pytest.CaptureFixture
) -> None:
    shared = join_lab(class_lab.url, "ABC-234", name="ann")
    try:
        own = start_lab(private="part 2 (thousands of sockets)")
        assert isinstance(own, LabServer) and own.url != class_lab.url and own.admin_token
        assert private_lab("part 2 (thousands of sockets)") is own  # one mechanism: the same options, the same lab
        err = capsys.readouterr().err
        assert (
            err.count(f"In class: part 2 (thousands of sockets) runs on a private lab of this kernel at {own.url}") == 1
        )
        assert start_lab() is shared and joined_lab() is shared  # still in class
        # Outside a class, private= changes nothing: the lesson's own lab, with no note.
        leave_class()
        assert start_lab(private="part 2 (thousands of sockets)") is own is start_lab()
        assert capsys.readouterr().err == ""
    finally:
        stop_lab()
