"""Lesson 01's exercises: requests per minute, the T/2 wait, and which feature needs what."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from labserver.course import LabServer
from labserver.course.exercises import NOT_ANSWERED, FunctionProblem, LiveProblem, Status, ValueProblem, get_lesson
from labserver.course.exercises import lesson01 as ex
from labserver.course.polling import expected_latency, expected_requests_per_s

from .conftest import answer_cells

RIGHT = {name: expected for name, (expected, _) in ex.FEATURES.items()}


def test_registry() -> None:
    assert get_lesson("lesson01") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4"]
    assert isinstance(ex.q1, FunctionProblem)
    assert isinstance(ex.q2, ValueProblem)
    assert isinstance(ex.q3, ValueProblem)
    assert isinstance(ex.q4, LiveProblem)


@pytest.mark.parametrize("key", ["q1", "q2", "q3"])
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and len(q._hints()) == 2 and q.solution_text
    assert f"`ex.{key}.check(...)`" in q._repr_markdown_()
    assert repr(q.hint()).startswith("Hint 1/2")
    assert repr(q.solution()).startswith("Solution:")


@pytest.mark.parametrize("key", ["q1", "q2", "q3"])
@pytest.mark.parametrize("placeholder", [NOT_ANSWERED, ..., None])
def test_placeholders_are_not_attempted(key: str, placeholder: Any) -> None:
    verdict = ex.lesson[key].check(placeholder)
    assert verdict.status is Status.NOT_ATTEMPTED
    assert f"`ex.{key}.check(...)`" in verdict.message


# --- q1 ----------------------------------------------------------------------------------


def test_q1_reference_agrees_with_the_harness() -> None:
    assert ex.q1.self_test() == ex.q1.check(lambda users, interval_s: users * 60 / interval_s)
    assert ex.q1.self_test().status is Status.CORRECT
    for users, interval in [(1000, 1.0), (10, 0.5), (100, 5.0)]:
        assert ex._requests_per_minute_reference(users, interval) == pytest.approx(
            60 * expected_requests_per_s("short", users, interval=interval)
        )


def test_q1_right_answers() -> None:
    def requests_per_minute(users: int, interval_s: float) -> float:
        return 60 * users / interval_s

    def as_int(users: int, interval_s: float) -> int:
        return round(users * (60 / interval_s))

    assert repr(ex.q1.check(requests_per_minute)) == "Correct: all 6 cases pass."
    assert ex.q1.check(as_int).status is Status.CORRECT


def test_q1_stub_is_not_attempted() -> None:
    def requests_per_minute(users: int, interval_s: float) -> float: ...  # type: ignore[empty-body]  # a student's unfinished stub

    assert ex.q1.check(requests_per_minute).status is Status.NOT_ATTEMPTED


def test_q1_per_second_instead_of_per_minute() -> None:
    def requests_per_minute(users: int, interval_s: float) -> float:
        return users / interval_s

    assert repr(ex.q1.check(requests_per_minute)) == (
        "Incorrect: for input `requests_per_minute(1000, 1)` expected `60000`, got `1000.0`: "
        "1,000 users, one request a second each, and a minute has 60 seconds"
    )


def test_q1_multiplied_by_the_interval() -> None:
    def requests_per_minute(users: int, interval_s: float) -> float:
        return users * 60 * interval_s

    verdict = ex.q1.check(requests_per_minute)
    assert verdict.status is Status.INCORRECT
    assert "requests_per_minute(1000, 2)` expected `30000`, got `120000`" in verdict.message


def test_q1_zero_users_crash_is_an_error_and_a_string_is_wrong() -> None:
    def divides_by_users(users: int, interval_s: float) -> float:
        return 60 / (interval_s / users)

    verdict = ex.q1.check(divides_by_users)
    assert verdict.status is Status.ERROR and "ZeroDivisionError" in verdict.message
    assert ex.q1.check(lambda u, t: str(u * 60 / t)).status is Status.INCORRECT
    assert ex.q1.check(lambda u, t: True).status is Status.INCORRECT


# --- q2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [2, 2.0, 1.98, 2.04])
def test_q2_right(answer: float) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.CORRECT
    assert "T/2 = 2 s on average" in verdict.message
    assert expected_latency(4.0) == 2.0


@pytest.mark.parametrize(
    ("answer", "explanation"),
    [
        (4, "4 s is the worst case"),
        (4.0, "4 s is the worst case"),
        (0, "only a message that lands exactly at a poll waits 0 s"),
        (8, "a poll comes every 4 s, so no message waits longer than 4 s"),
    ],
)
def test_q2_wrong_answers_are_explained(answer: float, explanation: str) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith(explanation)


def test_q2_other_wrong_answers() -> None:
    assert repr(ex.q2.check(1)) == (
        "Incorrect: not quite: the wait is anywhere between 0 and T, equally likely. Stuck? `ex.q2.hint()`."
    )
    assert ex.q2.check(2.2).status is Status.INCORRECT  # outside the tolerance
    assert repr(ex.q2.check("2")) == (
        "Incorrect: your answer should be a number, got '2'. Pass a number of seconds, e.g. `1.5`."
    )


# --- q3 ----------------------------------------------------------------------------------


def test_q3_right() -> None:
    verdict = ex.q3.check(dict(RIGHT))
    assert verdict.status is Status.CORRECT
    assert "WebSocket does not replace REST" in verdict.message


def test_q3_accepts_aliases_and_any_case() -> None:
    spelled = {name.upper(): ("WS" if expected == "websocket" else " REST ") for name, expected in RIGHT.items()}
    assert ex.q3.check(spelled).status is Status.CORRECT
    assert ex.q3.check({k: ("push" if v == "websocket" else "HTTPS") for k, v in RIGHT.items()})


def test_q3_template_of_ellipses_is_not_attempted() -> None:
    template = dict.fromkeys(RIGHT, ...)
    assert ex.q3.check(template).status is Status.NOT_ATTEMPTED
    assert "answer = {\n    'new chat messages': ...," in ex.q3.question


def test_q3_websocket_for_everything_is_the_misconception() -> None:
    verdict = ex.q3.check(dict.fromkeys(RIGHT, "websocket"))
    assert verdict.status is Status.INCORRECT
    assert verdict.message.startswith("4 of 9 features need another answer.")
    assert "'like a post (the click)' needs http: the click is an action that needs an answer" in verdict.message
    assert "'upload a photo' needs http" in verdict.message


def test_q3_one_wrong_feature_is_named_with_why() -> None:
    answer = dict(RIGHT, **{"typing indicator": "http"})
    assert repr(ex.q3.check(answer)) == (
        "Incorrect: 1 of 9 features need another answer. 'typing indicator' needs websocket: many tiny, "
        "short-lived updates, useless a second late and never stored: only push fits."
    )


def test_q3_partly_filled_names_what_is_left() -> None:
    answer = dict(RIGHT, **{"who is online": ..., "upload a photo": ...})
    assert repr(ex.q3.check(answer)) == "Incorrect: still to answer: 'who is online', 'upload a photo'."
    missing = {k: v for k, v in RIGHT.items() if k != "load older messages"}
    assert repr(ex.q3.check(missing)) == "Incorrect: still to answer: 'load older messages'."


def test_q3_shape_errors() -> None:
    assert ex.q3.check(["websocket"]).status is Status.INCORRECT
    assert "unknown feature 'video calls'" in ex.q3.check(dict(RIGHT, **{"video calls": "websocket"})).message
    assert repr(ex.q3.check(dict(RIGHT, **{"typing indicator": "polling"}))) == (
        "Incorrect: 'polling' for 'typing indicator': answer 'websocket' or 'http'."
    )


# --- the committed notebook's answer cells -------------------------------------------------


def test_notebook_q3_template_has_exactly_the_features() -> None:
    source = next(s for s in answer_cells("01_polling_vs_push.ipynb") if "ex.q3" in s)
    namespace: dict[str, Any] = {"ex": ex}
    exec(source, namespace)
    assert list(namespace["answer"]) == list(ex.FEATURES)


# --- q4: the student's poller, run against the live lab ----------------------------------------------
# Each answer below is a poller a student could write; the check runs it on a fresh room of the real lab
# while it posts 7 messages. The wrong ones carry one typical bug each. They run concurrently (each on
# its own room), so the whole set takes one check's time.

AUTH = "Authorization"


async def right_short(http: Any, room: str, token: str, deliver: Any) -> None:
    """Short polling, ``after`` moved on with ``last_seq`` (allowed: the room's newest seq)."""
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": after}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
        after = body["last_seq"]
        await asyncio.sleep(0.3)


async def right_long(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/poll", params={"after": after, "timeout": 25}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
            after = message["seq"]


async def no_token(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(f"/api/rooms/{room}/messages", params={"after": after}) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
            after = message["seq"]
        await asyncio.sleep(0.5)


async def token_in_the_query(http: Any, room: str, token: str, deliver: Any) -> None:
    """Handles the error itself (no crash): the check still names the 401."""
    while True:
        async with http.get(f"/api/rooms/{room}/messages", params={"after": 0, "token": token}) as resp:
            if resp.status == 200:
                for message in (await resp.json())["messages"]:
                    deliver(message)
        await asyncio.sleep(0.5)


async def never_advances(http: Any, room: str, token: str, deliver: Any) -> None:
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": 0}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
        await asyncio.sleep(0.5)


async def never_advances_but_dedups(http: Any, room: str, token: str, deliver: Any) -> None:
    seen: set[int] = set()
    while True:
        async with http.get(f"/api/rooms/{room}/messages", headers={AUTH: f"Bearer {token}"}) as resp:
            body = await resp.json()
        for message in body["messages"]:
            if message["seq"] not in seen:
                seen.add(message["seq"])
                deliver(message)
        await asyncio.sleep(0.5)


async def no_wait(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": after}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
            after = message["seq"]


async def long_poll_timeout_zero(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/poll", params={"after": after, "timeout": 0}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
            after = message["seq"]


async def first_only(http: Any, room: str, token: str, deliver: Any) -> None:
    """Delivers one message per answer but moves ``after`` past all of them: the bursts lose messages."""
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": after}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        if body["messages"]:
            deliver(body["messages"][0])
        after = body["last_seq"]
        await asyncio.sleep(0.5)


async def off_by_one(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": after}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
            after = message["seq"] - 1
        await asyncio.sleep(0.5)


async def too_slow(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": after}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
            after = message["seq"]
        await asyncio.sleep(4)


async def polls_once(http: Any, room: str, token: str, deliver: Any) -> None:
    async with http.get(f"/api/rooms/{room}/messages", headers={AUTH: f"Bearer {token}"}) as resp:
        for message in (await resp.json())["messages"]:
            deliver(message)


async def delivers_lists(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": after}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        if body["messages"]:
            deliver(body["messages"])
        after = body["last_seq"]
        await asyncio.sleep(0.5)


async def newest_first(http: Any, room: str, token: str, deliver: Any) -> None:
    after = 0
    while True:
        async with http.get(
            f"/api/rooms/{room}/messages", params={"after": after}, headers={AUTH: f"Bearer {token}"}
        ) as resp:
            body = await resp.json()
        for message in reversed(body["messages"]):
            deliver(message)
        after = body["last_seq"]
        await asyncio.sleep(0.5)


async def crashes(http: Any, room: str, token: str, deliver: Any) -> None:
    async with http.get(f"/api/rooms/{room}/messages", headers={AUTH: f"Bearer {token}"}) as resp:
        body = await resp.json()
    deliver(body["message"])  # a typo: the key is "messages"


async def wrong_path(http: Any, room: str, token: str, deliver: Any) -> None:
    while True:
        async with http.get(f"/api/room/{room}/messages", headers={AUTH: f"Bearer {token}"}) as resp:
            await resp.read()
        await asyncio.sleep(0.5)


async def own_session(http: Any, room: str, token: str, deliver: Any) -> None:
    await asyncio.sleep(10)  # never uses the session it was given


def sync_poller(http: Any, room: str, token: str, deliver: Any) -> None:
    deliver({})  # a plain def: it cannot await a request


async def three_arguments(http: Any, room: str, token: str) -> None:
    await asyncio.sleep(0)


WRONG: dict[Any, tuple[Status, str]] = {  # answer -> the verdict's status and a phrase its message must hold
    no_token: (Status.INCORRECT, "401 unauthorized"),
    token_in_the_query: (Status.INCORRECT, "Authorization: Bearer"),
    never_advances: (Status.INCORRECT, "sent `after=0`"),
    never_advances_but_dedups: (Status.INCORRECT, "sent no `after`"),
    no_wait: (Status.INCORRECT, "hammering the server"),
    long_poll_timeout_zero: (Status.INCORRECT, "give it a `timeout` above 0"),
    first_only: (Status.INCORRECT, "deliver every message"),
    off_by_one: (Status.INCORRECT, "was delivered 2 times"),
    too_slow: (Status.INCORRECT, "too slow"),
    polls_once: (Status.INCORRECT, "`while True:`"),
    delivers_lists: (Status.INCORRECT, "call it once per message"),
    newest_first: (Status.INCORRECT, "out of order"),
    crashes: (Status.ERROR, "`crashes` raised KeyError: 'message' after 1 request(s)"),
    wrong_path: (Status.INCORRECT, "`404`"),
    own_session: (Status.INCORRECT, "no request reached the lab"),
    sync_poller: (Status.INCORRECT, "`sync_poller` must be an `async def` function"),
    three_arguments: (Status.INCORRECT, "must take four arguments"),
}


def test_q4_teaches() -> None:
    assert ex.q4.title and ex.q4.question and len(ex.q4._hints()) == 2
    assert "async def poll_room(http, room, token, deliver):" in ex.q4.solution_text
    assert "def _solution_source" not in ex.q4.solution_text and '"""' not in ex.q4.solution_text
    assert "`await ex.q4.check_async(poll_room)`" in ex.q4._repr_markdown_()
    assert repr(ex.q4.hint()).startswith("Hint 1/2") and repr(ex.q4.solution()).startswith("Solution:")


async def test_q4_stub_is_not_attempted_without_touching_the_lab() -> None:
    async def poll_room(http: Any, room: str, token: str, deliver: Any) -> None: ...

    ex.q4.lab = object()  # not a lab: a stub must never get as far as using it
    try:
        for answer in (poll_room, ..., None):
            verdict = await ex.q4.check_async(answer)
            assert verdict.status is Status.NOT_ATTEMPTED
            assert "await ex.q4.check_async(poll_room)" in verdict.message
    finally:
        ex.q4.lab = None


@pytest.fixture
def q4(lab: LabServer) -> Iterator[Any]:
    lab.account(ex.Q4_PRODUCER), lab.account(ex.Q4_POLLER)  # signed up once, before the checks run at once
    ex.q4.lab = lab
    yield ex.q4
    ex.q4.lab = None


async def test_q4_the_model_answer_and_other_right_ones_pass(q4: Any) -> None:
    verdicts = await asyncio.gather(*(q4.check_async(a) for a in (ex.poll_room, right_short, right_long)))
    for verdict in verdicts:
        assert verdict.status is Status.CORRECT, verdict
        assert "every message arrived once and in order" in verdict.message
    assert "Short polling" in verdicts[0].message and "Long polling" in verdicts[2].message


async def test_q4_typical_bugs_get_a_message_that_names_them(q4: Any) -> None:
    answers = list(WRONG)
    verdicts = await asyncio.gather(*(q4.check_async(a) for a in answers))
    wrong = {
        a.__name__: v
        for a, v in zip(answers, verdicts, strict=True)
        if (v.status, True) != (WRONG[a][0], WRONG[a][1] in v.message)
    }
    assert not wrong, wrong
