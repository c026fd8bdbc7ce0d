"""Crowd against a real lab server: growing, shrinking, activity, pauses, drops and stopping."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from typing import Any

import pytest

from labserver.course import LabServer
from labserver.course.client import LabClient, reconnect_delay
from labserver.course.crowd import Crowd
from labserver.hub import ACK_MEMBER_CAP

from .conftest import until as _until

until = functools.partial(_until, timeout=10.0)  # this file's default wait


@pytest.fixture
async def crowds(lab: LabServer) -> Any:
    """A factory of crowds, all stopped at the end of the test."""
    made: list[Crowd] = []

    def make(**options: Any) -> Crowd:
        crowd = Crowd(lab, **options)
        made.append(crowd)
        return crowd

    yield make
    for crowd in made:
        await crowd.stop()


def connections(lab: LabServer) -> int:
    return int(lab.health()["connections"])


def messages_in(lab: LabServer) -> int:
    """How many WebSocket messages the server has received so far."""
    return int(lab.health()["messages_in"])


async def messages_flow(lab: LabServer, at_least: int) -> None:
    """Wait until the server has received ``at_least`` more messages."""
    target = messages_in(lab) + at_least
    await until(lambda: messages_in(lab) >= target, what=f"{at_least} more messages in")


async def quiet_window(lab: LabServer, crowd: Crowd, seconds: float = 1.0) -> int:
    """Messages the server receives in a window of ``seconds``, once the crowd's in-flight
    messages have landed (a ping round trip per user: each socket is read in order)."""
    await asyncio.gather(*(client.send("ping") for client in crowd.clients))
    before = messages_in(lab)
    await asyncio.sleep(seconds)  # an observation window: "nothing arrives" needs one
    return messages_in(lab) - before


async def test_grow_then_shrink_and_healthz_follows(lab: LabServer, crowds: Any) -> None:
    crowd = crowds(prefix="gs")
    calls: list[tuple[int, int]] = []
    added = await crowd.grow(30, progress=lambda done, total: calls.append((done, total)))
    assert len(added) == crowd.size == 30 and crowd.connected == 30
    assert connections(lab) == 30
    assert [c.name for c in crowd.clients] == [f"gs{i:04d}" for i in range(30)]
    assert all(c.rooms == {"general"} for c in crowd.clients)
    assert calls[0] == (0, 30) and calls[-1] == (30, 30)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert repr(crowd) == "<Crowd 30 users, active>"

    leaving = crowd.clients[10:]
    assert await crowd.shrink(20) == 20
    assert crowd.size == 10 and [c.name for c in crowd.clients] == [f"gs{i:04d}" for i in range(10)]
    assert all(c.closed and c.ws is not None and c.ws.close_code == 1000 for c in leaving)
    await until(lambda: connections(lab) == 10)

    # Growing again reuses the freed names: the same accounts log in again.
    await crowd.grow(5)
    assert [c.name for c in crowd.clients][-5:] == [f"gs{i:04d}" for i in range(10, 15)]
    assert connections(lab) == 15
    status, body = lab.request("GET", "/api/users", token=crowd.clients[0].account.token)
    assert status == 200
    assert sum(u["username"].startswith("gs") for u in body["users"]) == 30


async def test_chat_rate_makes_messages_flow_and_all_arrive(lab: LabServer, crowds: Any) -> None:
    crowd = crowds(prefix="flow", rooms=("flow",), chat_rate=2.0, typing_rate=1.0)
    listener = await LabClient.connect(lab, lab.account("flow_listener"))
    try:
        await listener.join("flow")
        await crowd.grow(10)
        await until(lambda: crowd.sent["chat"] > 10 and crowd.sent["typing"] > 0)  # 20 chats/s, 10 typing/s
        crowd.pause()  # from now on crowd.sent is final: the scheduler sends nothing more
        await until(lambda: listener.received["chat"] == crowd.sent["chat"])
        await until(lambda: listener.received["typing"] > 0)
        senders: set[str] = set()
        listener.on("chat", lambda m: senders.add(m["from"]["username"]))
        crowd.resume()
        await until(lambda: len(senders) >= 3)
        assert senders <= {c.name for c in crowd.clients}
        assert not crowd.errors and sum(c.dropped_sends for c in crowd.clients) == 0
    finally:
        await listener.close()


async def test_pause_stops_the_activity_but_not_the_connections(lab: LabServer, crowds: Any) -> None:
    crowd = crowds(prefix="pz", chat_rate=3.0)
    await crowd.grow(20)
    await messages_flow(lab, 15)  # about 20 users * 3/s = 60 a second
    crowd.pause()
    assert crowd.paused and repr(crowd) == "<Crowd 20 users, paused>"
    sent = crowd.sent.total()
    assert await quiet_window(lab, crowd) == 0
    assert crowd.sent.total() == sent
    assert connections(lab) == 20 and crowd.connected == 20
    crowd.resume()
    assert not crowd.paused and repr(crowd) == "<Crowd 20 users, active>"
    await messages_flow(lab, 15)


async def test_like_rate_likes_recent_posts(lab: LabServer, crowds: Any) -> None:
    crowd = crowds(prefix="lk", like_rate=3.0)
    await crowd.grow(5)
    token = crowd.clients[0].account.token
    status, body = lab.request("GET", "/api/posts", token=token)
    assert status == 200 and len(body["posts"]) >= 3  # written by the crowd, there were none
    await until(lambda: crowd.sent["like"] >= 5)
    crowd.pause()

    def likes() -> int:
        status, body = lab.request("GET", "/api/posts", token=token)
        assert status == 200, body
        return sum(post["likes"] for post in body["posts"])

    await until(lambda: likes() > 0)  # the likes are requests in flight: they land a little later
    assert not crowd.errors


async def test_drop_makes_clients_reconnect(lab: LabServer, crowds: Any) -> None:
    crowd = crowds(prefix="dr")
    await crowd.grow(20)
    before = {c.socket_id for c in crowd.clients}
    dropped = crowd.drop(5)
    assert len(set(dropped)) == 5 and set(dropped) <= before
    await until(lambda: crowd.connected == 20 and not set(dropped) & {c.socket_id for c in crowd.clients})
    assert sum(c.reconnects for c in crowd.clients) == 5
    await until(lambda: connections(lab) == 20)
    assert all(c.rooms == {"general"} for c in crowd.clients)


async def test_stop_leaves_no_connection(lab: LabServer, crowds: Any) -> None:
    crowd = crowds(prefix="st", chat_rate=1.0)
    await crowd.grow(10)
    clients = crowd.clients
    scheduler = crowd._scheduler
    assert scheduler is not None and not scheduler.done()
    await crowd.stop()
    assert crowd.size == 0 and repr(crowd) == "<Crowd 0 users, stopped>"
    assert all(c.closed for c in clients)
    assert scheduler.done()  # no more ticks
    await until(lambda: connections(lab) == 0)
    await crowd.stop()  # idempotent


@pytest.mark.parametrize(
    "rates",
    [
        {"chat_rate": -1},
        {"chat_rate": math.nan},
        {"typing_rate": math.inf},
        {"chat_rate": 11},
        {"chat_rate": 6, "typing_rate": 6},
        {"like_rate": 11},
        {"chat_rate": "fast"},
        {"chat_rate": True},
    ],
)
def test_invalid_rates_are_rejected(lab: LabServer, rates: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Crowd(lab, **rates)


def test_invalid_settings_are_rejected_and_rates_checked_on_change(lab: LabServer) -> None:
    for options in (
        {"prefix": "no spaces"},
        {"prefix": "x" * 29},
        {"rooms": ()},
        {"rooms": ("a b",)},
        {"signup_concurrency": 0},
    ):
        with pytest.raises(ValueError):
            Crowd(lab, **options)
    crowd = Crowd(lab, chat_rate=5, typing_rate=5)
    with pytest.raises(ValueError):
        crowd.chat_rate = 6
    assert crowd.chat_rate == 5
    crowd.typing_rate = 1
    crowd.chat_rate = 9
    assert (crowd.chat_rate, crowd.typing_rate) == (9, 1)


class FakeClient:
    """Stands in for a LabClient in the scheduler: records what it was asked to send."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_nowait(self, type: str, **fields: Any) -> None:
        self.sent.append((type, fields))


def test_activity_is_random_per_rate_and_repeatable_by_seed(lab: LabServer) -> None:
    def run(seed: int, ticks: int = 100) -> list[list[tuple[str, dict[str, Any]]]]:
        crowd = Crowd(lab, rooms=("a", "b"), chat_rate=2.0, typing_rate=0.5, seed=seed)
        fakes = [FakeClient() for _ in range(50)]
        fakes[0].connected = False
        crowd._clients = fakes  # type: ignore[assignment]
        for _ in range(ticks):
            crowd._tick()
        assert crowd.sent["chat"] == sum(t == "chat" for f in fakes for t, _ in f.sent)
        return [f.sent for f in fakes]

    first = run(1)
    assert first == run(1) and first != run(2)
    chats = sum(kind == "chat" for sent in first for kind, _ in sent)
    typings = sum(kind == "typing" for sent in first for kind, _ in sent)
    # 49 connected users for 10 s: 2/s -> about 980 chats, 0.5/s -> about 245 typing
    assert 850 < chats < 1110 and 180 < typings < 310
    assert first[0] == []  # a disconnected user sends nothing
    rooms = {fields["room"] for sent in first for _, fields in sent}
    assert rooms == {"a", "b"}


@pytest.mark.timeout(60)
async def test_grow_to_300_users(lab: LabServer, crowds: Any) -> None:
    crowd = crowds(prefix="big")
    await crowd.grow(300)
    assert crowd.size == crowd.connected == 300
    assert connections(lab) == 300
    last = crowd.clients[-1]
    ack = await last.send("join", room="general")  # joined already: the ack lists the room's members
    assert ack["member_count"] == 300  # a big room: the ack lists only the first ACK_MEMBER_CAP of them
    assert len(ack["members"]) == ACK_MEMBER_CAP
    await crowd.stop()
    await until(lambda: connections(lab) == 0)


async def test_the_backoff_policy_reaches_every_client_and_the_timeline_shows_reconnections(
    lab: LabServer, crowds: Any
) -> None:
    asked: list[int] = []

    def policy(attempt: int) -> float:
        asked.append(attempt)
        return 0.01

    crowd = crowds(prefix="bk", backoff=policy)
    await crowd.grow(4)
    assert crowd.backoff is policy and all(c.backoff is policy for c in crowd.clients)
    since = time.time()
    dropped = crowd.drop(2)
    await until(lambda: crowd.connected == 4 and not set(dropped) & {c.socket_id for c in crowd.clients})
    assert asked == [0, 0]
    events = crowd.timeline(since=since)
    assert [e.kind for _, e in events].count("lost") == 2
    assert [e.kind for _, e in crowd.timeline(since=since, kinds={"reconnected"})] == ["reconnected"] * 2
    assert all(a.t <= b.t for (_, a), (_, b) in zip(events, events[1:], strict=False))

    crowd.backoff = None  # back to the client's default
    assert all(c.backoff is reconnect_delay for c in crowd.clients)
    with pytest.raises(ValueError, match="backoff must be a function"):
        crowd.backoff = 0.5
