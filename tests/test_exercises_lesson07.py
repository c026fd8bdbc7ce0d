"""Lesson 07's exercises: the offline ones (q1, q2) with the reference answer and common mistakes, q3 in
this process's own event loop, q4 live against a real lab with an admin token (the chaos switches)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labserver.course import LabServer
from labserver.course.exercises import ChoiceProblem, LiveProblem, Status, ValueProblem, get_lesson
from labserver.course.exercises import lesson07 as ex


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with LabServer(tmp_path_factory.mktemp("lab"), admin_token="x") as proc:
        yield proc


@pytest.fixture
def live(lab: LabServer) -> Iterator[LabServer]:
    ex.q4.lab = lab
    yield lab
    ex.q4.lab = None


def test_registry() -> None:
    assert get_lesson("lesson07") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4"]
    assert isinstance(ex.q1, ChoiceProblem) and isinstance(ex.q2, ValueProblem)
    assert isinstance(ex.q3, LiveProblem) and isinstance(ex.q4, LiveProblem)


@pytest.mark.parametrize("key", ["q1", "q2", "q3", "q4"])
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and len(q._hints()) >= 2 and q.solution_text
    assert repr(q.solution()).startswith("Solution:")


@pytest.mark.parametrize(
    ("answer", "status", "says"),
    [
        ("b", Status.CORRECT, "own GIL"),
        ("a", Status.INCORRECT, "no `await` in it"),
        ("c", Status.INCORRECT, "holds the GIL"),
        ("d", Status.INCORRECT, "per message"),
    ],
)
def test_q1(answer: str, status: Status, says: str) -> None:
    verdict = ex.q1.check(answer)
    assert verdict.status is status and says in verdict.message, verdict.message


@pytest.mark.parametrize(
    ("answer", "status", "says"),
    [
        (19.5, Status.CORRECT, "19.5 KiB"),
        (19.46, Status.CORRECT, ""),
        (31.0, Status.INCORRECT, "60 MiB"),
        (0.019, Status.INCORRECT, "1024"),
        (19.0, Status.INCORRECT, "95 x 1024"),
        (3.0, Status.INCORRECT, "slope"),
    ],
)
def test_q2(answer: float, status: Status, says: str) -> None:
    verdict = ex.q2.check(answer)
    assert verdict.status is status and says in verdict.message, verdict.message


async def right_off_the_loop(blocking: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(blocking, *args)


async def on_the_loop(blocking: Callable[..., Any], *args: Any) -> Any:
    return blocking(*args)  # async def, but the call blocks the loop all the same


async def forgets_the_result(blocking: Callable[..., Any], *args: Any) -> Any:
    await asyncio.to_thread(blocking, *args)


async def never_calls(blocking: Callable[..., Any], *args: Any) -> Any:
    return 42


def sync_version(blocking: Callable[..., Any], *args: Any) -> Any:
    return blocking(*args)


async def test_q3_right() -> None:
    verdict = await ex.q3.check_async(right_off_the_loop)
    assert verdict.status is Status.CORRECT, verdict.message


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (on_the_loop, "the loop stopped"),
        (forgets_the_result, "must return what"),
        (never_calls, "`blocking` did not run"),
        (sync_version, "must be an `async def`"),
    ],
)
async def test_q3_wrong(answer: Any, says: str) -> None:
    verdict = await ex.q3.check_async(answer)
    assert verdict.status is Status.INCORRECT and says in verdict.message, verdict.message


async def test_q3_stub_is_not_attempted() -> None:
    async def off_the_loop(blocking: Callable[..., Any], *args: Any) -> Any: ...

    assert (await ex.q3.check_async(off_the_loop)).status is Status.NOT_ATTEMPTED


def calm(lab: LabServer) -> None:
    lab.set_switches(offload=True)


def removes_the_work(lab: LabServer) -> None:
    lab.set_switches(block_ms=0)


def fixes_and_removes(lab: LabServer) -> None:
    lab.set_switches(offload=True, block_ms=0)


def does_nothing(lab: LabServer) -> None:
    time.sleep(0)


async def test_q4_right(live: LabServer) -> None:
    verdict = await ex.q4.check_async(calm)
    assert verdict.status is Status.CORRECT, verdict.message
    assert live.switches()["block_ms"] == 0 and not live.switches()["offload"]  # put back


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (removes_the_work, "you removed the slow work"),
        (fixes_and_removes, "you removed the slow work"),
        (does_nothing, "`offload` is still off"),
    ],
)
async def test_q4_wrong(live: LabServer, answer: Any, says: str) -> None:
    verdict = await ex.q4.check_async(answer)
    assert verdict.status is Status.INCORRECT and says in verdict.message, verdict.message
    assert live.switches()["block_ms"] == 0


async def test_q4_async_answer_is_refused_before_the_lab(live: LabServer) -> None:
    async def calm_async(lab: LabServer) -> None:
        lab.set_switches(offload=True)

    verdict = await ex.q4.check_async(calm_async)
    assert verdict.status is Status.INCORRECT and "plain function" in verdict.message
