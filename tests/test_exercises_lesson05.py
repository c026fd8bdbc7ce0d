"""Lesson 05's checked exercises, with right and wrong answers; q2-q4 against the real lab."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import websockets

from labserver.course import LabServer
from labserver.course.exercises import NOT_ANSWERED, FunctionProblem, LiveProblem, Status, get_lesson
from labserver.course.exercises import lesson05 as ex
from labserver.course.social import row_counts, typing_broadcasts

KEYS = ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_registry() -> None:
    assert get_lesson("lesson05") is ex.lesson
    assert list(ex.lesson.problems) == KEYS
    assert isinstance(ex.q1, FunctionProblem)
    assert all(isinstance(q, LiveProblem) for q in (ex.q2, ex.q3, ex.q4))


@pytest.mark.parametrize("key", KEYS)
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and len(q._hints()) >= 2 and q.solution_text
    assert f"`{q._check_call}`" in q._repr_markdown_()
    assert repr(q.hint()).startswith("Hint")
    assert repr(q.solution()).startswith("Solution:")


@pytest.mark.parametrize("key", ["q1", "q5", "q6"])
@pytest.mark.parametrize("placeholder", [NOT_ANSWERED, ..., None])
def test_not_attempted(key: str, placeholder: Any) -> None:
    assert ex.lesson[key].check(placeholder).status is Status.NOT_ATTEMPTED


@pytest.mark.parametrize("key", ["q2", "q3", "q4"])
async def test_live_stubs_are_not_attempted_without_a_lab(key: str) -> None:
    async def stub(*args: Any) -> None: ...

    def sync_stub(event: Any) -> None: ...

    for answer in (..., stub, sync_stub):
        verdict = await ex.lesson[key].check_async(answer)
        assert verdict.status is Status.NOT_ATTEMPTED, (key, answer)


# --- q1: the typing rule ----------------------------------------------------------------------------


def test_q1_reference_passes() -> None:
    assert repr(ex.q1.self_test()) == "Correct: all 6 cases pass."


def test_q1_the_docstring_example() -> None:
    assert typing_broadcasts([0.0, 0.25], 1.0, 5.0) == [(0.0, True), (5.25, False)]


def test_q1_a_hand_written_answer_passes() -> None:
    def mine(keystrokes: list[float], min_interval: float, ttl: float) -> list[list[Any]]:
        out: list[list[Any]] = []
        last_told = None
        last_key = None
        for t in keystrokes:
            if last_key is not None and t >= last_key + ttl:
                out.append([last_key + ttl, False])
                last_told = None
            if last_told is None or t - last_told >= min_interval:
                out.append([t, True])
                last_told = t
            last_key = t
        if last_key is not None:
            out.append([last_key + ttl, False])
        return out

    assert ex.q1.check(mine).status is Status.CORRECT


def test_q1_broadcasting_every_keystroke() -> None:
    def every(keystrokes: list[float], min_interval: float, ttl: float) -> list[tuple[float, bool]]:
        told = [(t, True) for t in keystrokes]
        return told + ([(keystrokes[-1] + ttl, False)] if keystrokes else [])

    verdict = ex.q1.check(every)
    assert verdict.status is Status.INCORRECT and "only push the expiry back" in verdict.message


def test_q1_expiry_from_the_first_keystroke() -> None:
    def from_first(keystrokes: list[float], min_interval: float, ttl: float) -> list[tuple[float, bool]]:
        told: list[tuple[float, bool]] = []
        last = None
        for t in keystrokes:
            if last is None or t - last >= min_interval:
                told.append((t, True))
                last = t
        return told + ([(keystrokes[0] + ttl, False)] if keystrokes else [])

    verdict = ex.q1.check(from_first)
    assert verdict.status is Status.INCORRECT and "*last* keystroke" in verdict.message


def test_q1_never_rebroadcasts_while_typing() -> None:
    def once(keystrokes: list[float], min_interval: float, ttl: float) -> list[tuple[float, bool]]:
        told: list[tuple[float, bool]] = []
        expires = None
        for t in keystrokes:
            if expires is not None and expires <= t:
                told.append((expires, False))
                expires = None
            if expires is None:
                told.append((t, True))
            expires = t + ttl
        return told + ([(expires, False)] if expires is not None else [])

    verdict = ex.q1.check(once)
    assert verdict.status is Status.INCORRECT and "told again once min_interval" in verdict.message


# --- q5 and q6 --------------------------------------------------------------------------------------------


def test_q5_right_and_spellings() -> None:
    assert ex.q5.check(dict(ex.FEATURES)).status is Status.CORRECT
    spelled = {k: ("HTTP" if v == "http" else "WebSocket") for k, v in ex.FEATURES.items()}
    assert ex.q5.check(spelled).status is Status.CORRECT


def test_q5_the_template_is_not_attempted() -> None:
    assert ex.q5.check(dict.fromkeys(ex.FEATURES, ...)).status is Status.NOT_ATTEMPTED


@pytest.mark.parametrize(
    ("feature", "side", "says"),
    [
        ("like a post", "ws", "Its consequences for *others*"),
        ("upload a profile picture", "ws", "hold up every message behind them"),
        ("load a post's image", "ws", "cacheable"),
        ("show that Bob is typing", "http", "ephemeral"),
    ],
)
def test_q5_wrong_items_are_explained(feature: str, side: str, says: str) -> None:
    answer = {**ex.FEATURES, feature: side}
    verdict = ex.q5.check(answer)
    assert verdict.status is Status.INCORRECT and says in verdict.message and feature in verdict.message


def test_q5_shapes() -> None:
    assert "still `...`" in ex.q5.check({**ex.FEATURES, "sign up": ...}).message
    assert "neither" in ex.q5.check({**ex.FEATURES, "sign up": "carrier pigeon"}).message
    assert "no entry" in ex.q5.check({"sign up": "http"}).message


def test_q6() -> None:
    assert ex.q6.check(1.07).status is Status.CORRECT
    assert ex.q6.check(1.0).status is Status.CORRECT  # MB for MiB is not the point
    assert "half a second of it was already sent" in ex.q6.check(1.57).message
    assert "its own HTTP connection" in ex.q6.check(0).message


# --- q2: a typing indicator that reaches only the room, live ---------------------------------------------


@pytest.fixture
def live(lab: LabServer, monkeypatch: pytest.MonkeyPatch) -> LabServer:
    for key in ("q2", "q3", "q4"):
        monkeypatch.setattr(ex.lesson[key], "lab", lab)
    return lab


async def _join(ws: Any, room: str) -> None:
    await ws.recv()  # the welcome
    await ws.send(json.dumps({"type": "join", "room": room, "ref": "j"}))
    while json.loads(await ws.recv()).get("ref") != "j":
        pass


async def announce_typing(ws_url: str, token: str, room: str) -> None:
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        await _join(ws, room)
        await ws.send(json.dumps({"type": "typing", "room": room, "ref": "t"}))
        while json.loads(await ws.recv()).get("ref") != "t":
            pass


async def test_q2_right(live: LabServer) -> None:
    verdict = await ex.q2.check_async(announce_typing)
    assert verdict.status is Status.CORRECT, verdict
    assert "the database still holds" in verdict.message


async def test_q2_without_waiting_for_the_ack_is_right_too(live: LabServer) -> None:
    async def quick(ws_url: str, token: str, room: str) -> None:
        async with websockets.connect(f"{ws_url}?token={token}") as ws:
            await _join(ws, room)
            await ws.send(json.dumps({"type": "typing", "room": room}))

    assert (await ex.q2.check_async(quick)).status is Status.CORRECT


async def test_q2_a_chat_saying_typing_is_stored(live: LabServer) -> None:
    async def chat(ws_url: str, token: str, room: str) -> None:
        async with websockets.connect(f"{ws_url}?token={token}") as ws:
            await _join(ws, room)
            await ws.send(json.dumps({"type": "chat", "room": room, "text": "typing...", "ref": "c"}))
            while json.loads(await ws.recv()).get("ref") != "c":
                pass

    verdict = await ex.q2.check_async(chat)
    assert verdict.status is Status.INCORRECT
    assert "1 row(s) in `messages`" in verdict.message and "never stored" in verdict.message


async def test_q2_typing_without_joining(live: LabServer) -> None:
    async def no_join(ws_url: str, token: str, room: str) -> None:
        async with websockets.connect(f"{ws_url}?token={token}") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "typing", "room": room, "ref": "t"}))
            await ws.recv()

    verdict = await ex.q2.check_async(no_join)
    assert verdict.status is Status.INCORRECT
    assert "without joining" in verdict.message and "not_in_room" in verdict.message


async def test_q2_active_false(live: LabServer) -> None:
    async def stopped(ws_url: str, token: str, room: str) -> None:
        async with websockets.connect(f"{ws_url}?token={token}") as ws:
            await _join(ws, room)
            await ws.send(json.dumps({"type": "typing", "room": room, "active": False, "ref": "t"}))
            while json.loads(await ws.recv()).get("ref") != "t":
                pass

    verdict = await ex.q2.check_async(stopped)
    assert verdict.status is Status.INCORRECT and "*stopped* typing" in verdict.message


async def test_q2_a_dm_to_the_reader_is_stored(live: LabServer) -> None:
    async def dm_everyone(ws_url: str, token: str, room: str) -> None:
        async with websockets.connect(f"{ws_url}?token={token}") as ws:
            await _join(ws, room)  # member_joined came before the ack: who else is there?
            await ws.send(json.dumps({"type": "join", "room": room, "ref": "again"}))
            ack: dict[str, Any] = {}
            while ack.get("ref") != "again":
                ack = json.loads(await ws.recv())
            for member in ack["members"]:
                await ws.send(json.dumps({"type": "dm", "to": member["id"], "text": "typing...", "ref": member["id"]}))
            await asyncio.sleep(0.3)

    verdict = await ex.q2.check_async(dm_everyone)
    assert verdict.status is Status.INCORRECT and "row(s) in `messages`" in verdict.message


async def test_q2_wrong_shapes(live: LabServer) -> None:
    def blocking(ws_url: str, token: str, room: str) -> None:
        websockets.connect(f"{ws_url}?token={token}")  # a sync function: never awaited

    assert "async def" in (await ex.q2.check_async(blocking)).message

    async def nothing(ws_url: str, token: str, room: str) -> None:
        await asyncio.sleep(0)

    assert "no WebSocket was opened" in (await ex.q2.check_async(nothing)).message

    async def crashes(ws_url: str, token: str, room: str) -> None:
        raise ValueError("oops")

    verdict = await ex.q2.check_async(crashes)
    assert verdict.status is Status.ERROR and "ValueError: oops" in verdict.message

    async def bad_url(ws_url: str, token: str, room: str) -> None:
        async with websockets.connect(ws_url):
            pass

    # no token: the socket opens unauthenticated and never gets a welcome
    assert (await ex.q2.check_async(bad_url)).status is Status.INCORRECT


async def test_q2_nothing_was_stored(live: LabServer) -> None:
    before = row_counts(live.data_dir)
    await ex.q2.check_async(announce_typing)
    after = row_counts(live.data_dir)
    assert after["messages"] == before["messages"] and after["users"] == before["users"] + 3


# --- q3: like over REST, catch the notification ---------------------------------------------------------------


async def _like(http_url: str, token: str, post_id: int) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{http_url}/api/posts/{post_id}/like", headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        resp.raise_for_status()


async def like_and_catch(http_url: str, token: str, post_id: int, author_ws: Any) -> dict[str, Any]:
    await _like(http_url, token, post_id)
    while True:
        message = json.loads(await author_ws.recv())
        if message["type"] == "notification":
            return dict(message)


async def test_q3_right(live: LabServer) -> None:
    verdict = await ex.q3.check_async(like_and_catch)
    assert verdict.status is Status.CORRECT, verdict
    assert "liked your post" in verdict.message


async def test_q3_with_urllib_in_a_thread(live: LabServer) -> None:
    import urllib.request

    async def threaded(http_url: str, token: str, post_id: int, author_ws: Any) -> Any:
        req = urllib.request.Request(
            f"{http_url}/api/posts/{post_id}/like", method="POST", headers={"Authorization": f"Bearer {token}"}
        )
        await asyncio.to_thread(urllib.request.urlopen, req)
        while (message := json.loads(await author_ws.recv()))["type"] != "notification":
            pass
        return message

    assert (await ex.q3.check_async(threaded)).status is Status.CORRECT


async def test_q3_returns_the_first_message(live: LabServer) -> None:
    async def first(http_url: str, token: str, post_id: int, author_ws: Any) -> Any:
        await _like(http_url, token, post_id)
        return json.loads(await author_ws.recv())

    verdict = await ex.q3.check_async(first)
    assert verdict.status is Status.INCORRECT and "`post_updated`" in verdict.message


async def test_q3_likes_but_does_not_read(live: LabServer) -> None:
    async def no_read(http_url: str, token: str, post_id: int, author_ws: Any) -> Any:
        await _like(http_url, token, post_id)
        return None

    verdict = await ex.q3.check_async(no_read)
    assert verdict.status is Status.INCORRECT and "read messages from `author_ws`" in verdict.message


async def test_q3_text_not_dict(live: LabServer) -> None:
    async def raw(http_url: str, token: str, post_id: int, author_ws: Any) -> Any:
        await _like(http_url, token, post_id)
        await author_ws.recv()
        return await author_ws.recv()

    assert "as text" in (await ex.q3.check_async(raw)).message


async def test_q3_waits_without_liking(live: LabServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "STUDENT_TIMEOUT", 1.0)

    async def waits(http_url: str, token: str, post_id: int, author_ws: Any) -> Any:
        return json.loads(await author_ws.recv())

    verdict = await ex.q3.check_async(waits)
    assert verdict.status is Status.INCORRECT and "had not finished after 1 s" in verdict.message


async def test_q3_made_up(live: LabServer) -> None:
    async def made_up(http_url: str, token: str, post_id: int, author_ws: Any) -> Any:
        await _like(http_url, token, post_id)
        return {"type": "notification", "kind": "like", "id": -1, "post_id": post_id}

    assert "not one the lab stored" in (await ex.q3.check_async(made_up)).message


# --- q4: the REST -> push handler -------------------------------------------------------------------------------


def pushes_for(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    post, actor = event["post"], event["actor"]
    if not event["changed"]:
        return []
    pushes = [
        (
            f"topic:post:{post['id']}",
            {"type": "post_updated", "post_id": post["id"], "likes": post["likes"], "comments": post["comments"]},
        )
    ]
    if event["action"] != "unlike" and actor["id"] != post["author"]["id"]:
        verb = {"like": "liked", "comment": "commented on"}[event["action"]]
        pushes.append(
            (
                f"user:{post['author']['id']}",
                {
                    "type": "notification",
                    "kind": event["action"],
                    "from": actor,
                    "post_id": post["id"],
                    "text": f"{actor['username']} {verb} your post",
                },
            )
        )
    return pushes


async def test_q4_right(live: LabServer) -> None:
    verdict = await ex.q4.check_async(pushes_for)
    assert verdict.status is Status.CORRECT, verdict
    assert "2 notifications" in verdict.message and "5 `post_updated`" in verdict.message
    assert "nothing for the 2 actions" in verdict.message


async def test_q4_reference_and_async_answers_pass(live: LabServer) -> None:
    assert (await ex.q4.check_async(ex._pushes_for_reference)).status is Status.CORRECT

    async def async_pushes(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        return pushes_for(event)

    assert (await ex.q4.check_async(async_pushes)).status is Status.CORRECT


def _variant(**bugs: bool) -> Any:
    def handler(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if bugs.get("ignore_changed"):
            event = {**event, "changed": True}
        pushes = pushes_for(event)
        if bugs.get("self_notify") and event["changed"] and event["action"] != "unlike":
            if event["actor"]["id"] == event["post"]["author"]["id"]:
                pushes.append((f"user:{event['actor']['id']}", {"type": "notification", "kind": event["action"]}))
        if bugs.get("to_actor"):
            pushes = [(f"user:{event['actor']['id']}" if t.startswith("user:") else t, m) for t, m in pushes]
        if bugs.get("no_counter"):
            pushes = [p for p in pushes if p[1]["type"] != "post_updated"]
        if bugs.get("broadcast_counter"):
            pushes = [("everyone", m) if m["type"] == "post_updated" else (t, m) for t, m in pushes]
        return pushes

    return handler


@pytest.mark.parametrize(
    ("bugs", "says"),
    [
        ({"ignore_changed"}, "nothing changed, so there is nothing to tell"),
        ({"self_notify"}, "nobody is notified of their own action"),
        ({"to_actor"}, "not the user who acted"),
        ({"no_counter"}, "so everyone watching it is told"),
        ({"broadcast_counter"}, "the sockets watching this post"),
    ],
)
async def test_q4_wrong_handlers_are_explained(live: LabServer, bugs: set[str], says: str) -> None:
    verdict = await ex.q4.check_async(_variant(**dict.fromkeys(bugs, True)))
    assert verdict.status is Status.INCORRECT and says in verdict.message, verdict
    assert verdict.message.startswith("after `")


async def test_q4_wrong_shapes_and_text(live: LabServer) -> None:
    def wrong_text(event: dict[str, Any]) -> Any:
        return [
            (t, {**m, "text": "you got a like"} if m["type"] == "notification" else m) for t, m in pushes_for(event)
        ]

    verdict = await ex.q4.check_async(wrong_text)
    assert "`text`" in verdict.message and "bob_" in verdict.message

    assert "a pair `(target, message)`" in (await ex.q4.check_async(lambda event: ["post_updated"])).message
    assert "return a list" in (await ex.q4.check_async(lambda event: "nothing")).message

    def crashes(event: dict[str, Any]) -> Any:
        return event["missing"]

    verdict = await ex.q4.check_async(crashes)
    assert verdict.status is Status.ERROR and "KeyError" in verdict.message
