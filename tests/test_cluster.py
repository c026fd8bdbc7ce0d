"""Lesson 08's toolkit against the real thing: a redis-server and three lab processes sharing a data
dir (labserver.course.cluster). Users on different processes chat, see each other's presence and get
each other's notifications; the round-robin proxy forwards the Upgrade; a SIGKILLed node's users go
offline for the others and its clients resume elsewhere with nothing lost; what Redis pub/sub loses
while Redis is away still reaches everyone, from the database, by seq."""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from labserver.course.client import LabClient
from labserver.course.cluster import (
    ChannelSpy,
    Cluster,
    ClusterBoard,
    RoundRobinProxy,
    find_redis_server,
    start_cluster,
    stop_cluster,
    where,
)

from .conftest import until as _until

pytestmark = pytest.mark.skipif(find_redis_server() is None, reason="redis-server is not installed")
until = functools.partial(_until, timeout=10.0)  # a dead node is noticed after its heartbeat's TTL (4 s)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(3, log_level="INFO") as nodes:
        yield nodes


@pytest.fixture
def whole(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with every node and Redis up, before and after a test that kills some."""
    yield cluster
    if not cluster.redis.running:
        cluster.redis.start()
    for name in cluster.names:
        if not cluster.node(name).running:
            cluster.restart(name)


def test_every_node_says_who_it_is(cluster: Cluster) -> None:
    for name, node in zip(cluster.names, cluster.nodes, strict=True):
        health = node.health()
        assert (health["node"], health["broker"], health["broker_connected"]) == (name, "redis", True)
    assert cluster.names == ["n1", "n2", "n3"]
    assert cluster.node(1) is cluster.node("n2")
    with pytest.raises(KeyError, match="the nodes are n1, n2, n3"):
        cluster.node("n9")
    assert "n1=up, n2=up, n3=up" in repr(cluster)


def test_one_database_one_admin_token(cluster: Cluster) -> None:
    account = cluster.nodes[0].account("shared_login")
    status, me = cluster.nodes[2].request("GET", "/api/me", token=account.token)  # signed by n1, read on n3
    assert status == 200 and me["user"]["username"] == "shared_login"
    assert all(node.switches()["ping_interval"] for node in cluster.nodes)  # the one token opens every node


async def test_chat_presence_and_notifications_cross_processes(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    ann = await LabClient.connect(n1, n1.account("x_ann"))
    bob = await LabClient.connect(n2, n2.account("x_bob"))
    try:
        assert (ann.welcome["node"], bob.welcome["node"]) == ("n1", "n2")
        await bob.send("subscribe", topic="presence")
        await ann.join("xroom")
        await bob.join("xroom")
        await ann.chat("xroom", "across")
        chat = await bob.wait_for("chat")
        assert (chat["text"], chat["seq"], chat["from"]["username"]) == ("across", 1, "x_ann")
        # presence: cyd comes online on n3, bob (n2) hears it
        cyd = await LabClient.connect(n3, n3.account("x_cyd"))
        await bob.wait_for(lambda m: m["type"] == "presence" and m["user"]["username"] == "x_cyd" and m["online"])
        await cyd.close()
        await bob.wait_for(lambda m: m["type"] == "presence" and m["user"]["username"] == "x_cyd" and not m["online"])
        # a notification: bob posts (through n2), ann likes it (through n1), bob is told on n2
        status, body = n2.request("POST", "/api/posts", {"text": "hi"}, bob.account.token)
        assert status == 201
        status, _ = n1.request("POST", f"/api/posts/{body['post']['id']}/like", None, ann.account.token)
        assert status == 200
        note = await bob.wait_for("notification")
        assert "x_ann" in json.dumps(note)
    finally:
        await ann.close()
        await bob.close()


async def test_where_shows_the_node_of_each_socket(cluster: Cluster) -> None:
    clients = [await LabClient.connect(node, node.account(f"w_{i}")) for i, node in enumerate(cluster.nodes)]
    try:
        await clients[2].join("wroom")
        placement = await where(cluster)
        assert [placement.nodes_of(f"w_{i}") for i in range(3)] == [["n1"], ["n2"], ["n3"]]
        assert "wroom" in repr(placement) and "<table>" in placement._repr_html_()
    finally:
        for client in clients:
            await client.close()


async def test_proxy_round_robin_forwards_the_upgrade(cluster: Cluster) -> None:
    proxy = await RoundRobinProxy(cluster).start()
    try:
        nodes = []
        for i in range(3):
            client = await LabClient.connect(proxy, proxy.account(f"p_{i}"))
            nodes.append(client.welcome["node"])
            await client.close()
        assert sorted(nodes) == ["n1", "n2", "n3"]  # one connection each, in turn
        shown = dict(proxy.forwarded[-1].headers)
        assert shown["Upgrade"].lower() == "websocket" and "upgrade" in shown["Connection"].lower()
        assert shown["Host"] == f"127.0.0.1:{proxy.port}" and shown["X-Forwarded-For"] == "127.0.0.1"
        assert shown["X-Forwarded-Proto"] == "http"
        assert "token=…" in proxy.forwarded[-1].request_line  # the credential is not kept
        # plain HTTP goes through too
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(proxy.url + "/healthz", timeout=5).read())
        assert json.loads(body)["node"] in {"n1", "n2", "n3"}
    finally:
        await proxy.stop()


async def test_a_killed_node_its_users_go_offline_its_clients_resume_elsewhere(whole: Cluster) -> None:
    proxy = await RoundRobinProxy(whole).start()
    n1 = whole.node("n1")
    watcher = await LabClient.connect(n1, n1.account("k_watch"))
    writer = await LabClient.connect(n1, n1.account("k_write"))
    reader = await LabClient.connect(proxy, proxy.account("k_read"))  # on whichever node the proxy chose
    seen: list[int] = []
    reader.on("chat", lambda m: seen.append(m["seq"]))
    try:
        await watcher.send("subscribe", topic="presence")
        for client in (writer, reader):
            await client.join("kroom")
        victim = reader.welcome["node"]
        if victim == "n1":  # keep the writer and the watcher alive: move the reader on
            await reader.close()
            reader = await LabClient.connect(proxy, proxy.account("k_read"))
            reader.on("chat", lambda m: seen.append(m["seq"]))
            await reader.join("kroom")
            victim = reader.welcome["node"]
        stranded = await LabClient.connect(whole.node(victim), whole.account("k_stranded"), reconnect=False)
        # Killed as soon as n1 knows k_stranded is online, before the victim's next heartbeat can name
        # them: the others must still announce them offline when the victim's key expires.
        await watcher.wait_for(
            lambda m: m["type"] == "presence" and m["user"]["username"] == "k_stranded" and m["online"], timeout=10
        )
        for i in range(5):
            await writer.chat("kroom", f"a{i}")
        await until(lambda: len(seen) == 5, what="the first five chats")
        whole.kill(victim)
        for i in range(5, 10):
            await writer.chat("kroom", f"a{i}")
        await until(lambda: reader.connected and reader.welcome["node"] != victim, what="a reconnect elsewhere")
        await until(lambda: len(seen) == 10, what="the chats sent while the node was dead")
        assert seen == list(range(1, 11)) and reader.duplicates == 0
        try:
            await watcher.wait_for(
                lambda m: m["type"] == "presence" and m["user"]["username"] == "k_stranded" and not m["online"],
                timeout=10,
            )
        except TimeoutError:
            raise AssertionError(f"{victim} died; n1's log ends: {list(n1.logs)[-6:]}; {n1.users()}") from None
        assert stranded.closed or not stranded.connected
    finally:
        for client in (watcher, writer, reader):
            await client.close()
        await proxy.stop()


async def test_redis_away_pubsub_loses_the_store_repairs(whole: Cluster) -> None:
    n1, n2 = whole.nodes[:2]
    ann = await LabClient.connect(n1, n1.account("r_ann"))
    bob = await LabClient.connect(n2, n2.account("r_bob"))
    seen: list[int] = []
    bob.on("chat", lambda m: seen.append(m["seq"]))
    spy = await ChannelSpy(whole.redis.url).start()
    try:
        await ann.join("rroom")
        await bob.join("rroom")
        await ann.chat("rroom", "before")
        await until(lambda: seen == [1], what="the first chat")
        whole.redis.stop()
        await until(lambda: not n1.health()["broker_connected"], what="n1 noticing Redis is gone")
        for i in range(5):
            ack = await ann.chat("rroom", f"during {i}")  # acknowledged: stored with its seq
            assert ack["seq"] == i + 2
        await until(lambda: seen == [1, 2, 3, 4, 5, 6], what="the five chats, from the store")
        whole.redis.start()
        await until(lambda: all(n.health()["broker_connected"] for n in (n1, n2)), what="Redis back")
        await spy.wait_subscribed()
        await ann.chat("rroom", "after")
        await until(lambda: seen == [1, 2, 3, 4, 5, 6, 7], what="live again")
        await until(lambda: spy.seqs("rroom") == [1, 7], what="the spy seeing 7")  # 2-6 were never on the channel
        assert spy.outages >= 1 and "outage" in repr(spy)
        assert any("from the store" in line for line in n2.logs)
        # and a client's own resume by seq replays exactly what it asks for
        replay = await bob.send("resume", room="rroom", after=3)
        assert replay["type"] == "resumed"
    finally:
        await spy.stop()
        await ann.close()
        await bob.close()


def test_start_cluster_reuses_and_stops() -> None:
    first = start_cluster(2)
    try:
        assert start_cluster(2) is first
        assert [n.running for n in first.nodes] == [True, True]
    finally:
        stop_cluster()
    assert not any(n.running for n in first.nodes) and not first.redis.running


async def test_raw_upgrade_through_proxy(cluster: Cluster) -> None:
    """websockets (not our client) through the proxy: the 101 and frames pass untouched."""
    proxy = await RoundRobinProxy(cluster).start()
    try:
        token = proxy.account("raw_user").token
        async with websockets.connect(f"{proxy.ws_url}?token={token}") as ws:
            welcome: dict[str, Any] = json.loads(await ws.recv())
            assert welcome["type"] == "welcome" and welcome["node"] in cluster.names
            await ws.send(json.dumps({"type": "ping", "ref": "p"}))
            assert json.loads(await ws.recv())["type"] == "pong"
    finally:
        await proxy.stop()


async def test_board_shows_each_node_its_sockets_and_a_dead_one(whole: Cluster) -> None:
    board = ClusterBoard(whole)
    await board.ready()
    clients = [await LabClient.connect(node, node.account(f"b_{i}")) for i, node in enumerate(whole.nodes)]
    try:
        await clients[1].join("broom")
        await board.settle()
        assert repr(board) == "ClusterBoard(live view of which node each socket is on)"
        assert all(name in board.value for name in ("b_0", "b_1", "b_2", "broom", "n1 (", "n2 (", "n3 ("))
        whole.kill("n3")
        await until(lambda: "n3" not in board.states, what="the board noticing n3 is gone")
        await until(lambda: "down" in board.value, what="n3 drawn down")
        whole.restart("n3")
        await until(lambda: "n3" in board.states, what="the board back on n3")
    finally:
        await board.stop()
        for client in clients:
            await client.close()
    assert "down" not in board.value  # the last picture stays after stop()
