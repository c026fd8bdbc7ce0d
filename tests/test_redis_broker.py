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
import redis.asyncio as aioredis

from labserver.broker import Routed, TargetKind
from labserver.course import redis_server
from labserver.course.redis_server import RedisServer, find_redis_server
from labserver.redis_broker import (
    NODE_KEY_PREFIX,
    NODE_TTL_S,
    BrokerUnavailable,
    ClusterView,
    Departed,
    NodeState,
    RedisBroker,
    SeqTracker,
)

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


async def _no_tick() -> None:
    pass


def presence_node(url: str, name: str, state: NodeState, departed: list[Departed] | None = None) -> Node:
    """A node whose heartbeat says ``state``, noting in ``departed`` the nodes it sees go."""
    node = Node(url, name)
    node.broker.attach(lambda: state, (departed if departed is not None else []).append, lambda r: None, _no_tick)
    return node


async def crash(broker: RedisBroker) -> None:
    """What SIGKILL does to a node: it stops, without a goodbye (its key stays until it expires)."""
    await broker._stop_tasks()
    if broker._pub is not None:
        await broker._pub.aclose()
        broker._pub = None


@needs_redis
async def test_a_node_restarted_under_its_name_within_the_ttl_takes_its_old_users_with_it(redis: RedisServer) -> None:
    """The new process's hello tells the others at once (not after the TTL, and not never: its
    key replaces the old one's under the same name before that one expires)."""
    departed: list[Departed] = []
    a = await presence_node(redis.url, "a", NodeState(), departed).start()
    old = await presence_node(redis.url, "b", NodeState({7: "eve"}, {"lobby": {7: "eve"}})).start()
    await until(lambda: a.broker.cluster.online_elsewhere(7), what="a read b's key")
    await crash(old.broker)
    new = await presence_node(redis.url, "b", NodeState({8: "fay"}, {"lobby": {8: "fay"}})).start()
    (gone,) = await until(lambda: departed, timeout=NODE_TTL_S - 1, what="a saw b's old incarnation go")
    assert (gone.node, gone.users, gone.rooms) == ("b", {7: "eve"}, {"lobby": {7: "eve"}})
    await until(lambda: a.broker.cluster.online_elsewhere(8), what="a read the new b's key")
    assert not a.broker.cluster.online_elsewhere(7) and not a.broker.cluster.member_elsewhere("lobby", 7)
    await asyncio.sleep(NODE_TTL_S)  # the old key would have expired by now: nothing more departs
    assert len(departed) == 1 and a.broker.cluster.online_elsewhere(8)
    for node in (a, old, new):
        await node.broker.close()


@needs_redis
async def test_closing_leaves_a_newer_incarnations_key_alone(redis: RedisServer) -> None:
    old, new = await Node(redis.url, "c").start(), await Node(redis.url, "c").start()
    client = redis_client(redis)
    await new.broker._write_key()  # the newer process's key is the one in Redis
    await old.broker.close()
    value = await client.get(NODE_KEY_PREFIX + "c")
    assert value is not None and NodeState.from_json(value).incarnation == new.broker.incarnation
    await new.broker.close()
    assert await client.get(NODE_KEY_PREFIX + "c") is None  # its own key, it deletes
    await client.aclose()


@needs_redis
async def test_a_malformed_node_key_does_not_stop_the_heartbeat(redis: RedisServer) -> None:
    client = redis_client(redis)
    await client.set(NODE_KEY_PREFIX + "zz", "[]", px=int(NODE_TTL_S * 1000))
    a = await presence_node(redis.url, "a", NodeState()).start()
    b = await presence_node(redis.url, "b", NodeState({5: "dan"})).start()
    await until(lambda: a.broker.cluster.online_elsewhere(5), what="a read b's key past the bad one")
    await asyncio.sleep(1.5)  # more heartbeats, each reading the bad key
    assert not any(task.done() for task in a.broker._tasks)
    assert "zz" not in a.broker.cluster.others
    for node in (a, b):
        await node.broker.close()
    await client.aclose()


def redis_client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis.from_url(server.url)


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
    b = NodeState({1: "ann", 2: "bob"}, {"lobby": {1: "ann", 2: "bob"}})
    c = NodeState({2: "bob"}, {"lobby": {2: "bob"}})
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


def test_what_was_heard_is_not_replayed_over_a_newer_key() -> None:
    """bob joined on b (heard), then left b while on another node too (so b said nothing): once
    b's key is newer than the join, the join must not put him back in b's room."""
    view = ClusterView("a")
    view.replace({"b": NodeState(written=0)}, now=0)
    view.hear("b", {"type": "member_joined", "room": "lobby", "user": {"id": 2, "username": "bob"}}, now=0.5)
    assert view.replace({"b": NodeState(written=0.2)}, now=1) == [] and view.member_elsewhere("lobby", 2)
    assert view.replace({"b": NodeState(written=1.5)}, now=2) == [] and not view.member_elsewhere("lobby", 2)


def test_a_restart_under_the_same_name_is_the_old_incarnation_departing() -> None:
    view = ClusterView("a")
    old = NodeState({7: "eve"}, {"lobby": {7: "eve"}}, "one")
    assert view.replace({"b": old}, now=0) == []
    assert view.online_elsewhere(7) and view.member_elsewhere("lobby", 7)
    (gone,) = view.arrived("b", "two", now=1)  # b restarted within the TTL and said hello
    assert (gone.node, gone.users, gone.rooms) == ("b", {7: "eve"}, {"lobby": {7: "eve"}})
    assert not view.online_elsewhere(7) and not view.member_elsewhere("lobby", 7)
    view.hear("b", {"type": "presence", "user": {"id": 8, "username": "fay"}, "online": True}, now=1.1)
    # A read issued before the hello returns the old key: it is not the old process coming back,
    # nor is the new one (whose key is not read yet) gone.
    assert view.replace({"b": old}, now=1.2) == []
    assert view.online_elsewhere(8) and not view.online_elsewhere(7)
    assert view.replace({"b": NodeState({8: "fay"}, {}, "two")}, now=2) == [] and view.online_elsewhere(8)
    assert view.arrived("b", "two", now=3) == []  # the same process, reconnected to Redis
    # A hello missed (we were cut from Redis): the key of another incarnation says it all the same.
    (gone,) = view.replace({"b": NodeState({}, {}, "three")}, now=4)
    assert gone.users == {8: "fay"} and not view.online_elsewhere(8)


def test_cluster_view_counts_a_room_across_nodes() -> None:
    view = ClusterView("a")
    here = {1}  # ann is in the room on this node
    b = NodeState({1: "ann", 2: "bob"}, {"lobby": {1: "ann", 2: "bob"}}, "x")
    c = NodeState({2: "bob", 3: "cat"}, {"lobby": {2: "bob", 3: "cat"}}, "y")
    view.replace({"b": b, "c": c}, now=0, local=NodeState({1: "ann"}, {"lobby": {1: "ann"}}))
    assert view.recounted == {"lobby"}
    # Exact while small (bob on two nodes counts once, ann is here); for a big room, the same in O(1).
    assert view.count_elsewhere("lobby", here.__contains__, exact_up_to=10) == 2
    assert view.count_elsewhere("lobby", here.__contains__, exact_up_to=2) == 2
    here.add(3)  # cat opens a tab here too: exact at once, a big room's count at the next read
    assert view.count_elsewhere("lobby", here.__contains__, exact_up_to=10) == 1
    assert view.count_elsewhere("lobby", here.__contains__, exact_up_to=2) == 2
    assert view.room_members("lobby", limit=1) == {1: "ann", 2: "bob"}  # at most 1 per node: O(nodes x limit)
    view.hear("c", {"type": "member_left", "room": "lobby", "user": {"id": 2, "username": "bob"}}, now=0.5)
    assert view.member_elsewhere("lobby", 2)  # still on b
    view.hear("b", {"type": "member_left", "room": "lobby", "user": {"id": 2, "username": "bob"}}, now=0.6)
    assert not view.member_elsewhere("lobby", 2) and view.room_members("lobby") == {1: "ann", 3: "cat"}
    view.recounted.clear()
    view.replace({"b": b, "c": c}, now=1, local=NodeState({1: "ann", 3: "cat"}, {"lobby": {1: "ann", 3: "cat"}}))
    assert view.count_elsewhere("lobby", here.__contains__, exact_up_to=1) == 0  # the heard lefts replayed
    assert view.recounted == {"lobby"}


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
