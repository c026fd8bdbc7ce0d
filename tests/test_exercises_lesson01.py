"""Lesson 01's exercises: requests per minute, the T/2 wait, and which feature needs what."""

from __future__ import annotations

from typing import Any

import pytest

from labserver.course.exercises import NOT_ANSWERED, FunctionProblem, Status, ValueProblem, get_lesson
from labserver.course.exercises import lesson01 as ex
from labserver.course.polling import expected_latency, expected_requests_per_s

from .conftest import answer_cells

RIGHT = {name: expected for name, (expected, _) in ex.FEATURES.items()}


def test_registry() -> None:
    assert get_lesson("lesson01") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3"]
    assert isinstance(ex.q1, FunctionProblem)
    assert isinstance(ex.q2, ValueProblem)
    assert isinstance(ex.q3, ValueProblem)


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
