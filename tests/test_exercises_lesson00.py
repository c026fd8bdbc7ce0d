"""Lesson 00's live exercises against a real lab server: your two tabs (q4), your own websockets
client (q5, with the right answer and the typical wrong ones), and the heartbeat arithmetic (q6).

q1-q3 are tested in tests/test_exercises.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
import websockets

from labserver.course import LabServer
from labserver.course.client import LabClient
from labserver.course.exercises import LiveProblem, Status, ValueProblem, get_lesson
from labserver.course.exercises import lesson00 as ex


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A lab with an admin token: q4 reads ``lab.users()``, as start_lab()'s lab allows."""
    with LabServer(tmp_path_factory.mktemp("lab"), admin_token="x", ping_interval=1) as proc:
        yield proc


@pytest.fixture
def live(lab: LabServer) -> Iterator[None]:
    """Point the live problems at this module's lab (a notebook uses the one start_lab() started)."""
    ex.q4.lab = ex.q5.lab = lab
    yield
    ex.q4.lab = ex.q5.lab = None


def test_registry() -> None:
    assert get_lesson("lesson00") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert isinstance(ex.q4, LiveProblem) and isinstance(ex.q5, LiveProblem)
    assert isinstance(ex.q6, ValueProblem)


@pytest.mark.parametrize("key", ["q4", "q5", "q6"])
def test_every_new_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and len(q._hints()) >= 2 and q.solution_text
    assert repr(q.hint()).startswith("Hint 1/2")
    assert repr(q.solution()).startswith("Solution:")


@pytest.mark.parametrize("key", ["q4", "q5"])
async def test_live_placeholders_never_reach_the_lab(key: str) -> None:
    async def say_hello(ws_url: str, token: str, room: str, text: str) -> None: ...

    q = cast(LiveProblem, ex.lesson[key])
    q.lab = object()  # anything but a lab: a placeholder must not touch it
    try:
        assert (await q.check_async(...)).status is Status.NOT_ATTEMPTED
        assert (await q.check_async(say_hello)).status is Status.NOT_ATTEMPTED
    finally:
        q.lab = None


# --- q4: your two tabs -------------------------------------------------------------------------


async def test_q4_two_sockets_of_one_user(lab: LabServer, live: None) -> None:
    account = lab.account("ada")
    async with LabClient.connect(lab, account), LabClient.connect(lab, account):
        verdict = await ex.q4.check_async("Ada")  # usernames compare as the server does: case-insensitively
        assert verdict.status is Status.CORRECT, verdict
        assert "`Ada` has 2 open sockets" in verdict.message


async def test_q4_one_tab_is_not_enough(lab: LabServer, live: None) -> None:
    account = lab.account("bea")
    assert repr(await ex.q4.check_async("bea")) == (
        "Incorrect: `bea` exists but has no open socket: log in to the browser client in a tab and keep it open."
    )
    async with LabClient.connect(lab, account):
        verdict = await ex.q4.check_async("bea")
    assert verdict.status is Status.INCORRECT and "has 1 open socket: open the browser client in a second tab" in (
        verdict.message
    )


async def test_q4_unknown_user_and_bad_answers(lab: LabServer, live: None) -> None:
    verdict = await ex.q4.check_async("nobody_here")
    assert verdict.status is Status.INCORRECT and "no user `nobody_here` yet" in verdict.message
    assert (await ex.q4.check_async(42)).status is Status.INCORRECT


# --- q5: your own websockets client ---------------------------------------------------------------


async def _recv(ws: Any) -> dict[str, Any]:
    message = json.loads(await ws.recv())
    assert isinstance(message, dict)
    return message


async def _until_ref(ws: Any, ref: str) -> dict[str, Any]:
    while True:
        message = await _recv(ws)
        if message.get("ref") == ref:
            return message


async def _send(ws: Any, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def right(ws_url: str, token: str, room: str, text: str) -> None:
    """As a student would write it."""
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _recv(ws)
        await _send(ws, type="join", room=room, ref="j1")
        await _until_ref(ws, "j1")
        await _send(ws, type="chat", room=room, text=text, ref="c1")
        assert (await _until_ref(ws, "c1"))["type"] == "ack"


async def never_joined(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _recv(ws)
        await _send(ws, type="chat", room=room, text=text, ref="c1")
        await _until_ref(ws, "c1")


async def wrong_room(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _recv(ws)
        await _send(ws, type="join", room="general", ref="j1")
        await _send(ws, type="chat", room="general", text=text, ref="c1")
        await _until_ref(ws, "c1")


async def chat_elsewhere(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _recv(ws)
        await _send(ws, type="join", room=room, ref="j1")
        await _send(ws, type="chat", room="general", text=text, ref="c1")
        await _until_ref(ws, "c1")


async def before_the_welcome(ws_url: str, token: str, room: str, text: str) -> None:
    """Sends at once, then reads replies in order: its first recv() gets the welcome."""
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _send(ws, type="join", room=room, ref="j1")
        await _send(ws, type="chat", room=room, text=text, ref="c1")
        await _recv(ws)
        await _recv(ws)


async def no_wait_for_the_ack(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _recv(ws)
        await _send(ws, type="join", room=room, ref="j1")
        await _send(ws, type="chat", room=room, text=text, ref="c1")


async def no_ref(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _recv(ws)
        await _send(ws, type="join", room=room, ref="j1")
        await _until_ref(ws, "j1")
        await _send(ws, type="chat", room=room, text=text)


async def never_closed(ws_url: str, token: str, room: str, text: str) -> None:
    ws = await websockets.connect(f"{ws_url}?token={token}")
    await _recv(ws)
    await _send(ws, type="join", room=room, ref="j1")
    await _send(ws, type="chat", room=room, text=text, ref="c1")
    await _until_ref(ws, "c1")


async def aborted(ws_url: str, token: str, room: str, text: str) -> None:
    ws = await websockets.connect(f"{ws_url}?token={token}")
    await _recv(ws)
    await _send(ws, type="join", room=room, ref="j1")
    await _send(ws, type="chat", room=room, text=text, ref="c1")
    await _until_ref(ws, "c1")
    ws.transport.abort()


async def no_token(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(ws_url) as ws:
        await _recv(ws)


async def bad_token(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(f"{ws_url}?token=not-a-jwt") as ws:
        await _recv(ws)


async def wrong_text(ws_url: str, token: str, room: str, text: str) -> None:
    await right(ws_url, token, room, "hello world")


async def waits_forever(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _recv(ws)
        await _send(ws, type="join", room=room, ref="j1")
        await _send(ws, type="chat", room=room, text=text)
        await _until_ref(ws, "c1")  # never comes: the chat had no ref


async def crashes(ws_url: str, token: str, room: str, text: str) -> None:
    raise KeyError("type")


def blocking(ws_url: str, token: str, room: str, text: str) -> None:
    """websockets' sync client: it would freeze the event loop the check (and its tap) runs on."""
    from websockets.sync.client import connect

    with connect(f"{ws_url}?token={token}") as ws:
        ws.recv()


async def test_q5_right_answers(lab: LabServer, live: None) -> None:
    verdict = await ex.q5.check_async(right)
    assert verdict.status is Status.CORRECT, verdict
    assert "in the lab's history" in verdict.message and "closed cleanly" in verdict.message
    verdict = await ex.q5.check_async(ex._say_hello_reference)  # the solution's code
    assert verdict.status is Status.CORRECT, verdict


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (never_joined, "never sent `join` (the server answered `not_in_room`"),
        (wrong_room, "joined `general`, but the room to say hello in is `hello-"),
        (chat_elsewhere, "your chat went to `general`, but the room to say hello in is `hello-"),
        (before_the_welcome, "sent `join` before it had read the server's `welcome`"),
        (no_wait_for_the_ack, "closed the connection before the server's ack of your chat reached it"),
        (no_ref, "your chat had no `ref`"),
        (never_closed, "returned with its WebSocket still open"),
        (aborted, "without a close frame"),
        (no_token, "must send an `auth` message first. Put the token in the URL"),
        (bad_token, "refused the handshake with HTTP 401"),
        (wrong_text, "your chat said 'hello world'"),
        (blocking, "must be an `async def` function"),
    ],
)
async def test_q5_typical_mistakes(lab: LabServer, live: None, answer: Any, says: str) -> None:
    verdict = await ex.q5.check_async(answer)
    assert verdict.status is Status.INCORRECT, verdict
    assert says in verdict.message, verdict


async def test_q5_a_client_that_waits_forever_is_stopped(
    lab: LabServer, live: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ex, "HELLO_TIMEOUT", 0.5)
    verdict = await ex.q5.check_async(waits_forever)
    assert verdict.status is Status.INCORRECT and "had not finished after 0.5 s" in verdict.message


async def test_q5_a_crash_is_an_error_naming_it(lab: LabServer, live: None) -> None:
    verdict = await ex.q5.check_async(crashes)
    assert verdict.status is Status.ERROR and "raised KeyError: 'type'" in verdict.message


async def test_q5_leaves_no_socket_open(lab: LabServer, live: None) -> None:
    """The tap aborts what a wrong answer left open: the checker's user ends offline."""
    await ex.q5.check_async(never_closed)
    assert lab.user(ex.q5.username)["sockets"] == 0 or await _eventually_offline(lab)


async def _eventually_offline(lab: LabServer) -> bool:
    from .conftest import until

    await until(lambda: lab.user(ex.q5.username)["sockets"] == 0, timeout=5, what="checker offline")
    return True


# --- q6: the heartbeat's arithmetic -------------------------------------------------------------


def test_q6() -> None:
    assert ex.q6.check(30).status is Status.CORRECT
    assert ex.q6.check(30.0).status is Status.CORRECT
    assert repr(ex.q6.check(20)).startswith("Incorrect: after 20 s of silence the server only *sends a ping*")
    assert repr(ex.q6.check(0)).startswith("Incorrect: that is a clean close")
    assert ex.q6.check(25).status is Status.INCORRECT
    assert ex.q6.check(...).status is Status.NOT_ATTEMPTED
