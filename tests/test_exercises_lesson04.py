"""Lesson 04's exercises: the concept checks, and the live ones against a real lab server: a client
that tells close codes apart (q4) and a backoff ridden through a SIGKILL and restart (q5), each
with the right answer and the typical wrong ones."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, cast

import pytest

from labserver.course import LabServer
from labserver.course.exercises import ChoiceProblem, FunctionProblem, LiveProblem, Status, ValueProblem, get_lesson
from labserver.course.exercises import lesson04 as ex


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A lab with an admin token (switches, drops), as start_lab()'s lab has."""
    with LabServer(tmp_path_factory.mktemp("lab"), admin_token="x", ping_interval=1) as proc:
        yield proc


@pytest.fixture
def live(lab: LabServer) -> Iterator[None]:
    """Point the live problems at this module's lab (a notebook uses the one start_lab() started)."""
    ex.q4.lab = ex.q5.lab = ex.q6.lab = lab
    yield
    ex.q4.lab = ex.q5.lab = ex.q6.lab = None


def test_registry() -> None:
    assert get_lesson("lesson04") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert isinstance(ex.q1, ChoiceProblem) and isinstance(ex.q3, ChoiceProblem)
    assert isinstance(ex.q2, ValueProblem)
    assert all(isinstance(q, LiveProblem) for q in (ex.q4, ex.q5, ex.q6))
    assert isinstance(ex.PRESENCE_CASES, FunctionProblem)


@pytest.mark.parametrize("key", ["q1", "q2", "q3", "q4", "q5", "q6"])
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and len(q._hints()) >= 2 and q.solution_text
    assert repr(q.hint()).startswith("Hint 1/2")
    assert repr(q.solution()).startswith("Solution:")


def test_concept_checks() -> None:
    assert ex.q1.check("b")
    assert "1006 is never sent" in repr(ex.q1.check("c"))
    assert ex.q2.check((1, 3)) and ex.q2.check([1.0, 3.0])
    assert "worst case" in repr(ex.q2.check((3, 3)))
    assert "half an interval" in repr(ex.q2.check((0, 3)))
    assert ex.q3.check("a")
    assert "connectionStateRecovery" in repr(ex.q3.check("d"))


async def test_q6_presence_with_grace_live(lab: LabServer, live: None) -> None:
    assert ex.PRESENCE_CASES.self_test()
    verdict = await ex.q6.check_async(ex._announcements_reference)
    assert verdict.status is Status.CORRECT, verdict
    assert "on a live session" in verdict.message and "(0.00, True)" in verdict.message
    assert lab.switches()["presence_grace"] == 0  # put back
    namespace: dict[str, Any] = {}
    exec(ex.q6.solution_text.split("```python\n")[1].split("```")[0], namespace)
    assert (await ex.q6.check_async(namespace["announcements"])).status is Status.CORRECT


async def test_q6_wrong_answers(lab: LabServer, live: None) -> None:
    def no_grace(events: list[Any], grace: float) -> list[Any]:  # online while any socket is open, ignoring grace
        out: list[Any] = []
        open_: set[str] = set()
        for t, sid, what in events:
            was = bool(open_)
            (open_.add if what == "open" else open_.discard)(sid)
            if bool(open_) != was:
                out.append((t, bool(open_)))
        return out

    assert "a refresh" in repr(await ex.q6.check_async(no_grace))

    def per_socket(events: list[Any], grace: float) -> list[Any]:  # announces every socket, not the user
        return [(t + (grace if what == "close" else 0), what == "open") for t, _, what in events]

    assert (await ex.q6.check_async(per_socket)).status is Status.INCORRECT

    def live_only_wrong(events: list[Any], grace: float) -> list[Any]:  # right on the cases, not on real times
        if events and events[0][0] == 0 and isinstance(events[0][1], str) and len(events[0][1]) > 1:
            return [(0.0, True)]
        return ex._announcements_reference(events, grace)

    verdict = await ex.q6.check_async(live_only_wrong)
    assert verdict.status is Status.INCORRECT and "on a live session" in verdict.message, verdict

    async def async_one(events: list[Any], grace: float) -> list[Any]:
        return []

    assert "plain function" in repr(await ex.q6.check_async(async_one))


@pytest.mark.parametrize("key", ["q4", "q5", "q6"])
async def test_live_placeholders_never_reach_the_lab(key: str) -> None:
    def what_next(code: int) -> None: ...

    q = cast(LiveProblem, ex.lesson[key])
    q.lab = object()  # anything but a lab: a placeholder must not touch it
    try:
        assert (await q.check_async(...)).status is Status.NOT_ATTEMPTED
        assert (await q.check_async(what_next)).status is Status.NOT_ATTEMPTED
    finally:
        q.lab = None


# --- q4: what next after each close code, live ---------------------------------------------------


def right_what_next(code: int) -> str:
    if code == 1013:
        return "wait"
    if code in (1000, 1008) or 4000 <= code <= 4999:
        return "stop"
    return "reconnect"


async def test_q4_right_answer(lab: LabServer, live: None) -> None:
    verdict = await ex.q4.check_async(right_what_next)
    assert verdict.status is Status.CORRECT, verdict
    assert "1000, 1006, 1008, 1011, 1013, 4001" in verdict.message
    switches = lab.switches()
    assert switches["max_connections"] == 0 and switches["bug_on_text"] is None  # restored


async def test_q4_the_solution_passes(lab: LabServer, live: None) -> None:
    namespace: dict[str, Any] = {}
    exec(ex.q4.solution_text.split("```python\n")[1].split("```")[0], namespace)
    assert (await ex.q4.check_async(namespace["what_next"])).status is Status.CORRECT


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda code: "reconnect", "`what_next(1000)` returned 'reconnect', expected 'stop'"),
        (
            lambda code: "stop" if code == 1000 or code >= 4000 else "reconnect",
            "rate limit exceeded",  # 1008 treated like a network failure
        ),
        (lambda code: "stop" if code in (1000, 1008) or code >= 4000 else "reconnect", "expected 'wait'"),
        (lambda code: "stop" if code != 1006 else "reconnect", "expected 'reconnect'"),
        (lambda code: {1000: "stop"}[code], "raised KeyError"),
        (lambda code: True, "return one of 'reconnect', 'wait', 'stop'"),
    ],
)
async def test_q4_wrong_answers(lab: LabServer, live: None, wrong: Any, says: str) -> None:
    verdict = await ex.q4.check_async(wrong)
    assert verdict.status in (Status.INCORRECT, Status.ERROR), verdict
    assert says in verdict.message, verdict


async def test_q4_refuses_an_async_function(live: None) -> None:
    async def what_next(code: int) -> str:
        return "stop"

    assert "plain function" in repr(await ex.q4.check_async(what_next))


# --- q5: a backoff, against a killed and restarted lab ------------------------------------------


def full_jitter(attempt: int) -> float:
    return random.uniform(0, min(5.0, 0.1 * 2 ** min(attempt, 64)))


async def test_q5_full_jitter_rides_out_a_restart(lab: LabServer, live: None) -> None:
    verdict = await ex.q5.check_async(full_jitter)
    assert verdict.status is Status.CORRECT, verdict
    assert "were all back" in verdict.message
    assert lab.running and lab.health()["status"] == "ok"


async def test_q5_the_solution_passes(lab: LabServer, live: None) -> None:
    namespace: dict[str, Any] = {}
    exec(ex.q5.solution_text.split("```python\n")[1].split("```")[0], namespace)
    assert (await ex.q5.check_async(namespace["backoff"])).status is Status.CORRECT


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda attempt: min(5.0, 0.1 * 2**attempt), "no jitter"),
        (lambda attempt: random.uniform(0, 0.1 * 2**attempt), "over min(5, 0.1 * 2**6) = 5 (the cap"),
        (lambda attempt: random.uniform(0, 1), "over min(5, 0.1 * 2**0) = 0.1"),
        (  # equal jitter: never less than half the ceiling
            lambda attempt: (c := min(5.0, 0.1 * 2**attempt)) / 2 + random.uniform(0, c / 2),
            "full jitter draws uniformly from 0",
        ),
        (lambda attempt: -random.uniform(0, 0.1), "cannot be negative"),
        (lambda attempt: "0.1", "return a number of seconds"),
        (lambda attempt: 1 / 0, "raised ZeroDivisionError"),
    ],
)
async def test_q5_wrong_answers_never_reach_the_restart(lab: LabServer, live: None, wrong: Any, says: str) -> None:
    pid = lab.pid
    verdict = await ex.q5.check_async(wrong)
    assert verdict.status in (Status.INCORRECT, Status.ERROR), verdict
    assert says in verdict.message, verdict
    assert lab.pid == pid  # refused before the live part: the lab was not restarted


async def test_q5_refuses_an_async_function(live: None) -> None:
    async def backoff(attempt: int) -> float:
        return 0.1

    assert "plain function" in repr(await ex.q5.check_async(backoff))
