"""Lesson 08's exercises: the offline ones (q1 to q3) with their right answers and common mistakes,
and q4 against a real two-node cluster with a real redis-server: the check SIGKILLs the node the
student's follower is on; the right answer fails over and resumes, the usual wrong ones are told why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from labserver.course.cluster import Cluster, find_redis_server
from labserver.course.exercises import ChoiceProblem, LiveProblem, Status, ValueProblem, get_lesson
from labserver.course.exercises import lesson08 as ex

needs_redis = pytest.mark.skipif(find_redis_server() is None, reason="redis-server is not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(2) as nodes:
        yield nodes


@pytest.fixture
def live(cluster: Cluster) -> Iterator[Cluster]:
    ex.q4.lab = cluster
    yield cluster
    ex.q4.lab = None


def test_registry() -> None:
    assert get_lesson("lesson08") is ex.lesson
    assert list(ex.lesson.problems) == ["q1", "q2", "q3", "q4"]
    assert isinstance(ex.q1, ChoiceProblem) and isinstance(ex.q2, ChoiceProblem)
    assert isinstance(ex.q3, ValueProblem) and isinstance(ex.q4, LiveProblem)


@pytest.mark.parametrize("key", ["q1", "q2", "q3", "q4"])
def test_every_problem_teaches(key: str) -> None:
    q = ex.lesson[key]
    assert q.title and q.question and len(q._hints()) >= 2 and q.solution_text
    assert repr(q.hint()).startswith("Hint 1/2")
    assert repr(q.solution()).startswith("Solution:")


def test_q1_pubsub_stores_nothing() -> None:
    assert ex.q1.check("c")
    assert "most once" in ex.q1.check("a").message
    assert "before Alice's ack" in ex.q1.check("b").message
    assert ex.q1.check("d").status is Status.INCORRECT


def test_q2_sticky_for_polling_only() -> None:
    assert ex.q2.check("b")
    assert "one TCP connection" in ex.q2.check("a").message
    assert "Session ID unknown" in ex.q2.check("d").message
    assert ex.q2.check("c").status is Status.INCORRECT


def test_q3_hop_by_hop_headers() -> None:
    assert ex.q3.check({"Upgrade", "Connection"})
    assert ex.q3.check(["connection", "UPGRADE"])
    assert "should be a set" in ex.q3.check("Upgrade, Connection").message
    assert "pass by default" in ex.q3.check({"Host", "Origin"}).message
    assert "Connection: Upgrade" in ex.q3.check({"Upgrade"}).message
    assert "end-to-end" in ex.q3.check({"Sec-WebSocket-Key", "Sec-WebSocket-Version"}).message
    assert ex.q3.check({"Upgrade", "Host"}).status is Status.INCORRECT


async def test_q4_placeholder_never_reaches_the_lab() -> None:
    async def follow(ws_urls: list[str], token: str, room: str, last: int, deliver: Any) -> None: ...

    ex.q4.lab = object()  # anything but a cluster: a placeholder must not touch it
    try:
        assert (await ex.q4.check_async(...)).status is Status.NOT_ATTEMPTED
        assert (await ex.q4.check_async(follow)).status is Status.NOT_ATTEMPTED
    finally:
        ex.q4.lab = None


async def test_q4_without_a_cluster_says_what_to_start() -> None:
    async def follow(ws_urls: list[str], token: str, room: str, last: int, deliver: Any) -> None:
        deliver(None)

    verdict = await ex.q4.check_async(follow)
    assert verdict.status is Status.ERROR
    expected = "start_cluster(3)" if find_redis_server() else "needs redis-server"
    assert expected in verdict.message


async def test_q4_not_async() -> None:
    def blocking(ws_urls: list[str], token: str, room: str, last: int, deliver: Any) -> None:
        raise RuntimeError("never called")

    assert "`async def`" in (await ex.q4.check_async(blocking)).message


def _follower(failover: bool = True, first: str = "resume", from_zero: bool = False) -> Callable[..., Any]:
    """Variants of the answer: stays on its first URL; `join`s instead of resuming; resumes from 0 each time."""

    async def follow(ws_urls: list[str], token: str, room: str, last: int, deliver: Callable[[Any], Any]) -> None:
        seen, turn = 0, 0
        while seen < last:
            url = ws_urls[turn % len(ws_urls)]
            try:
                async with websockets.connect(f"{url}?token={token}") as ws:
                    await ws.recv()
                    after = 0 if from_zero else seen
                    request = {"type": "resume", "room": room, "after": after} if first == "resume" else None
                    await ws.send(json.dumps(request or {"type": "join", "room": room}))
                    async for raw in ws:
                        m = json.loads(raw)
                        if m.get("type") == "chat" and m.get("room") == room and (from_zero or m["seq"] > seen):
                            deliver(m)
                            seen = max(seen, m["seq"])
                            if seen >= last:
                                return
            except (ConnectionClosed, OSError):
                turn += 1 if failover else 0
                await asyncio.sleep(0.05)

    return follow


@needs_redis
async def test_q4_reference_fails_over(live: Cluster) -> None:
    verdict = await ex.q4.check_async(ex._follow_reference)
    assert verdict.status is Status.CORRECT, verdict
    assert "SIGKILLed under you" in verdict.message
    assert all(node.running for node in live.nodes)  # the check leaves the cluster whole


@needs_redis
async def test_q4_stays_on_the_dead_node(live: Cluster) -> None:
    verdict = await ex.q4.check_async(_follower(failover=False))
    assert verdict.status is Status.INCORRECT and "A dead node stays dead" in verdict.message


@needs_redis
async def test_q4_join_instead_of_resume(live: Cluster) -> None:
    verdict = await ex.q4.check_async(_follower(first="join"))
    assert verdict.status is Status.INCORRECT and "never delivered" in verdict.message


@needs_redis
async def test_q4_resume_from_zero(live: Cluster) -> None:
    verdict = await ex.q4.check_async(_follower(from_zero=True))
    assert verdict.status is Status.INCORRECT and "more than once" in verdict.message


@needs_redis
async def test_q4_crashes_on_the_kill(live: Cluster) -> None:
    async def naive(ws_urls: list[str], token: str, room: str, last: int, deliver: Callable[[Any], Any]) -> None:
        async with websockets.connect(f"{ws_urls[0]}?token={token}") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "resume", "room": room, "after": 0}))
            async for raw in ws:
                m = json.loads(raw)
                if m.get("type") == "chat":
                    deliver(m)

    verdict = await ex.q4.check_async(naive)
    assert verdict.status is Status.INCORRECT and "the node you were on died" in verdict.message
