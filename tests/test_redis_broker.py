"""The Redis broker against a real redis-server: delivery, order, reconnection, a bad URL;
and its pure parts (:class:`ClusterView`, :class:`SeqTracker`) without one."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from labserver.broker import Routed, TargetKind
from labserver.course import redis_server
from labserver.course.redis_server import RedisServer, find_redis_server
from labserver.redis_broker import BrokerUnavailable, ClusterView, NodeState, RedisBroker, SeqTracker

from .conftest import until

needs_redis = pytest.mark.skipif(
    find_redis_server() is None, reason="redis-server is not installed (apt install redis-server)"
)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (apt install redis-server)")
    with RedisServer() as server:
        yield server


class Node:
    """A broker and what it delivered."""

    def __init__(self, url: str, name: str) -> None:
        self.broker = RedisBroker(url, name)
        self.got: list[Routed] = []

    async def start(self) -> Node:
        await self.broker.start(self.got.append)
        await until(lambda: self.broker.connected, what=f"{self.broker.node} subscribed")
        return self

    def texts(self) -> list[str]:
        return [r.payload for r in self.got]


@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    a, b = await Node(redis.url, "a").start(), await Node(redis.url, "b").start()
    yield a, b
    await a.broker.close()
    await b.broker.close()


def chat(i: int, origin: str) -> Routed:
    return Routed(TargetKind.ROOM, "lobby", f'{{"type":"chat","n":{i}}}', i, origin)


@needs_redis
async def test_each_message_reaches_every_process_once_in_publication_order(pair: tuple[Node, Node]) -> None:
    a, b = pair
    for i in range(1, 201):
        await a.broker.publish(chat(i, "a"))
    assert a.texts() == [chat(i, "a").payload for i in range(1, 201)]  # locally at once, in order
    await until(lambda: len(b.got) >= 200, what="b got a's 200 messages")
    assert b.got == [chat(i, "a") for i in range(1, 201)]  # same bytes, same order, once
    await asyncio.sleep(0.2)  # the echo of a's own messages has come back by now: it is dropped
    assert len(a.got) == 200 and len(b.got) == 200


@needs_redis
async def test_broker_reconnects_after_redis_restarts(redis: RedisServer, pair: tuple[Node, Node]) -> None:
    a, b = pair
    redis.stop()
    await until(lambda: not a.broker.connected and not b.broker.connected, what="both saw Redis go")
    await a.broker.publish(chat(1, "a"))
    assert a.texts() == [chat(1, "a").payload]  # local delivery goes on without Redis
    assert a.broker.lost == 1
    redis.start()
    await until(lambda: a.broker.connected and b.broker.connected, timeout=10, what="both reconnected")
    await a.broker.publish(chat(2, "a"))
    await until(lambda: b.got, what="b got a's message after the restart")
    assert b.got == [chat(2, "a")]  # the one published while Redis was away is lost for b (at most once)


async def test_bad_url_and_redis_down_are_one_line_errors() -> None:
    with pytest.raises(BrokerUnavailable, match="bad Redis URL"):
        await RedisBroker.probe("http://127.0.0.1:1/0")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis") as raised:
        await RedisBroker.probe(f"redis://127.0.0.1:{port}/0")
    assert "\n" not in str(raised.value)


@needs_redis
async def test_publish_before_start_is_refused(redis: RedisServer) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await RedisBroker(redis.url, "x").publish(chat(1, "x"))


# --- the pure parts ---------------------------------------------------------------------


def test_seq_tracker_finds_holes_and_drops_duplicates() -> None:
    seqs = SeqTracker()
    seqs.load({"lobby": 3})
    assert not seqs.saw("lobby", 2, now=0)  # history: delivered before we started
    assert seqs.saw("lobby", 4, now=0)
    assert seqs.saw("lobby", 6, now=1)  # 5 is missing (or still in flight from another process)
    assert seqs.stuck(now=1.5, patience=1.0) == []  # not for long enough
    assert seqs.stuck(now=2.0, patience=1.0) == [("lobby", 4)]
    assert seqs.saw("lobby", 5, now=2) and not seqs.saw("lobby", 6, now=2)
    assert seqs.contiguous["lobby"] == 6 and seqs.stuck(now=9, patience=1.0) == []
    seqs.note_stored({"lobby": 8, "dm:1:2": 1}, now=10)  # a lost tail: nothing after it came
    assert sorted(seqs.stuck(now=11, patience=1.0)) == [("dm:1:2", 0), ("lobby", 6)]
    seqs.skip_to("lobby", 8)
    assert seqs.stuck(now=11, patience=1.0) == [("dm:1:2", 0)]


def test_cluster_view_merges_other_nodes_and_reports_the_dead() -> None:
    view = ClusterView("a")
    b = NodeState({1: "ann", 2: "bob"}, {"lobby": [1, 2]})
    c = NodeState({2: "bob"}, {"lobby": [2]})
    assert view.replace({"a": NodeState({9: "me"}), "b": b, "c": c}, now=0) == []
    assert view.users() == {1: "ann", 2: "bob"} and view.online_elsewhere(2) and not view.online_elsewhere(9)
    assert view.room_members("lobby") == {1: "ann", 2: "bob"}
    (gone,) = view.replace({"c": c}, now=1)  # b's key expired
    assert gone.node == "b" and gone.users == {1: "ann", 2: "bob"} and gone.rooms == {"lobby": {1: "ann", 2: "bob"}}
    assert view.online_elsewhere(2) and not view.online_elsewhere(1)  # the lab skips bob: still on c
    view.hear("c", {"type": "presence", "user": {"id": 2, "username": "bob"}, "online": False}, now=1)
    assert not view.online_elsewhere(2)
    assert view.replace({"c": c}, now=1.5) == [] and not view.online_elsewhere(2)  # c's key is older than that
    view.settle(now=5)  # just reconnected: a missing key is not a dead node yet
    assert view.replace({}, now=6) == [] and "c" in view.others
    assert view.replace({}, now=60)[0].node == "c"


def test_a_user_heard_online_just_before_their_node_died_is_reported_gone() -> None:
    """The node never wrote them into its key (it died within a heartbeat of their coming online):
    what was heard live must outlast the key's last rewrite until the key expires."""
    view = ClusterView("a")
    assert view.replace({"b": NodeState()}, now=0) == []
    view.hear("b", {"type": "presence", "user": {"id": 7, "username": "eve"}, "online": True}, now=0.2)
    view.hear("b", {"type": "member_joined", "room": "lobby", "user": {"id": 7, "username": "eve"}}, now=0.3)
    for now in (1.0, 2.0, 3.0, 4.0):  # b's last key (without eve) read until it expires
        assert view.replace({"b": NodeState()}, now=now) == [] and view.online_elsewhere(7)
    (gone,) = view.replace({}, now=4.5)
    assert gone.users == {7: "eve"} and gone.rooms == {"lobby": {7: "eve"}}


# --- the toolkit's redis-server -----------------------------------------------------------


def test_redis_server_without_the_binary_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server, "find_redis_server", lambda: None)
    with pytest.raises(redis_server.RedisUnavailable, match="redis-server not found") as raised:
        RedisServer()
    assert "\n" not in str(raised.value)


@needs_redis
async def test_redis_server_dies_with_the_process_that_started_it() -> None:
    script = (
        "import os\nfrom labserver.course.redis_server import RedisServer\n"
        "print(RedisServer().start().pid, flush=True)\nos.kill(os.getpid(), 9)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    pid = int(done.stdout.split()[0])

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await until(gone, timeout=5, what="redis-server gone with its parent (SIGKILLed)")
