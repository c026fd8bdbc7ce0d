"""Lesson 09's exercises: Socket.IO spoken by hand against a real python-socketio server (q3) and a call
signaled through a real lab (q4), each with the reference answer and typical wrong ones; the choice
questions (q1, q2) with their answers and common mistakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
import websockets

from labserver.course import LabServer
from labserver.course.exercises import ChoiceProblem, LiveProblem, Status, get_lesson
from labserver.course.exercises import lesson09 as ex


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with LabServer(tmp_path_factory.mktemp("lab"), admin_token="x") as proc:
        yield proc


@pytest.fixture
def live(lab: LabServer) -> Iterator[None]:
    """Point the live problems at this module's lab (a notebook uses the one start_lab() started)."""
    ex.q3.lab = ex.q4.lab = lab
    yield
    ex.q3.lab = ex.q4.lab = None


def test_registry() -> None:
    assert get_lesson("lesson09") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4"]
    assert isinstance(ex.q1, ChoiceProblem) and isinstance(ex.q2, ChoiceProblem)
    assert isinstance(ex.q3, LiveProblem) and isinstance(ex.q4, LiveProblem)


@pytest.mark.parametrize("key", ["q1", "q2", "q3", "q4"])
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and len(q._hints()) >= 2 and q.solution_text
    assert repr(q.hint()).startswith("Hint 1/")
    assert repr(q.solution()).startswith("Solution:")


@pytest.mark.parametrize("key", ["q3", "q4"])
async def test_live_placeholders_never_run(key: str) -> None:
    async def chat_by_hand(url: str, username: str, room: str, text: str) -> int: ...  # type: ignore[empty-body]

    async def place_call(ws_url: str, caller_token: str, callee_token: str, callee_id: int) -> None: ...

    q = cast(LiveProblem, ex.lesson[key])
    q.lab = object()  # anything but a lab: a placeholder must not touch it
    try:
        assert (await q.check_async(...)).status is Status.NOT_ATTEMPTED
        stub = {"q3": chat_by_hand, "q4": place_call}[key]
        assert (await q.check_async(stub)).status is Status.NOT_ATTEMPTED
    finally:
        q.lab = None


# --- q1, q2 ------------------------------------------------------------------------------------------


def test_q1_the_websocket_opens_but_speaks_engineio() -> None:
    assert ex.q1.check("c")
    assert "after it" in ex.q1.check("a").message
    assert "text frames" in ex.q1.check("b").message
    assert "upgrades" in ex.q1.check("d").message


def test_q2_what_the_proxy_forwards() -> None:
    assert ex.q2.check("b")
    assert "hop-by-hop" in ex.q2.check("a").message
    assert ex.q2.check("d").status is Status.INCORRECT


# --- q3: Socket.IO by hand, live ---------------------------------------------------------------------


async def test_q3_reference_passes(live: None) -> None:
    verdict = await ex.q3.check_async(ex._chat_by_hand_reference)
    assert verdict.status is Status.CORRECT, verdict.message
    assert "seq 2" in verdict.message  # the check's own warm-up chat was seq 1


async def test_q3_plain_json_is_dropped(live: None) -> None:
    async def plain_json(url: str, username: str, room: str, text: str) -> int:
        ws_url = "ws" + url.removeprefix("http") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "chat", "room": room, "text": text}))
            await ws.recv()
        return 0

    verdict = await ex.q3.check_async(plain_json)
    assert verdict.status is Status.INCORRECT and "Engine.IO packet" in verdict.message


async def test_q3_wrong_path_is_refused(live: None) -> None:
    async def no_query(url: str, username: str, room: str, text: str) -> int:
        async with websockets.connect("ws" + url.removeprefix("http") + "/socket.io/"):
            return 0

    verdict = await ex.q3.check_async(no_query)
    assert verdict.status is Status.INCORRECT and "HTTP 400" in verdict.message


async def test_q3_chat_without_join_never_arrives(live: None) -> None:
    async def no_join(url: str, username: str, room: str, text: str) -> int:
        ws_url = "ws" + url.removeprefix("http") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            await ws.recv()
            await ws.send("40" + json.dumps({"username": username}))
            while not str(await ws.recv()).startswith("40"):
                pass
            await ws.send("421" + json.dumps(["chat", {"room": room, "text": text}]))
            while not (msg := str(await ws.recv())).startswith("431"):
                pass
            return int(json.loads(msg[3:])[0].get("seq", 0))

    verdict = await ex.q3.check_async(no_join)
    assert verdict.status is Status.INCORRECT and "did you join" in verdict.message


async def test_q3_wrong_seq_and_wrong_name(live: None) -> None:
    async def off_by_one(url: str, username: str, room: str, text: str) -> int:
        return await ex._chat_by_hand_reference(url, username, room, text) + 1

    verdict = await ex.q3.check_async(off_by_one)
    assert verdict.status is Status.INCORRECT and "return the `seq`" in verdict.message

    async def anonymous(url: str, username: str, room: str, text: str) -> int:
        return await ex._chat_by_hand_reference(url, "someone", room, text)

    verdict = await ex.q3.check_async(anonymous)
    assert verdict.status is Status.INCORRECT and "'someone'" in verdict.message


async def test_q3_an_event_without_ack_id_times_out(live: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "CHECK_TIMEOUT", 2.0)

    async def no_ack_id(url: str, username: str, room: str, text: str) -> int:
        ws_url = "ws" + url.removeprefix("http") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            await ws.recv()
            await ws.send("40" + json.dumps({"username": username}))
            await ws.send("42" + json.dumps(["join", room]))  # no ack id: no ACK will come
            while not str(await ws.recv()).startswith("43"):
                pass
        return 0

    verdict = await ex.q3.check_async(no_ack_id)
    assert verdict.status is Status.INCORRECT and "had not returned" in verdict.message


# --- q4: a call signaled through the lab, live -----------------------------------------------------------


async def test_q4_reference_passes(live: None) -> None:
    verdict = await ex.q4.check_async(ex._place_call_reference)
    assert verdict.status is Status.CORRECT, verdict.message
    assert "signals relayed" in verdict.message


def _signal(to: int, kind: str, data: Any = None, to_socket: str | None = None) -> str:
    message: dict[str, Any] = {"type": "signal", "to": to, "kind": kind, "data": data or {"sdp": "v=0"}}
    if to_socket is not None:
        message["to_socket"] = to_socket
    return json.dumps(message)


async def _next_signal(ws: Any, kind: str) -> dict[str, Any]:
    while (msg := json.loads(await ws.recv())).get("type") != "signal" or msg.get("kind") != kind:
        pass
    return dict(msg)


def partial_call(*, answer: bool, to_caller_socket: bool, ice: bool) -> Any:
    """A ``place_call`` that stops early or answers every tab: the wrong answers q4 must catch."""

    async def place_call(ws_url: str, caller_token: str, callee_token: str, callee_id: int) -> None:
        async with (
            websockets.connect(f"{ws_url}?token={caller_token}") as caller,
            websockets.connect(f"{ws_url}?token={callee_token}") as callee,
        ):
            await caller.recv()
            await callee.recv()
            await caller.send(_signal(callee_id, "offer"))
            offer = await _next_signal(callee, "offer")
            if not answer:
                return
            caller_id = offer["from"]["id"]
            to_socket = offer["from_socket"] if to_caller_socket else None  # None: every tab of the caller rings
            await callee.send(_signal(caller_id, "answer", to_socket=to_socket))
            await _next_signal(caller, "answer")
            if not ice:
                return
            await caller.send(_signal(callee_id, "ice"))
            await callee.send(_signal(caller_id, "ice"))
            await _next_signal(callee, "ice")
            await _next_signal(caller, "ice")

    return place_call


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (partial_call(answer=True, to_caller_socket=False, ice=True), "`to_socket`"),
        (partial_call(answer=True, to_caller_socket=True, ice=False), "ICE candidate"),
        (partial_call(answer=False, to_caller_socket=False, ice=False), "never answered"),
    ],
    ids=["answer to every tab", "no ICE", "no answer"],
)
async def test_q4_wrong_calls_are_told_what_is_missing(live: None, wrong: Any, says: str) -> None:
    verdict = await ex.q4.check_async(wrong)
    assert verdict.status is Status.INCORRECT and says in verdict.message, verdict


async def test_q4_one_socket_only(live: None) -> None:
    async def alone(ws_url: str, caller_token: str, callee_token: str, callee_id: int) -> None:
        async with websockets.connect(f"{ws_url}?token={caller_token}") as caller:
            await caller.recv()

    verdict = await ex.q4.check_async(alone)
    assert verdict.status is Status.INCORRECT and "one with each token" in verdict.message
