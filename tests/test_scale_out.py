"""Several real lab server processes sharing one data dir and one real Redis (``--redis``):
rooms, DMs, notifications, counters and presence across processes; global, gap-free seqs;
a process killed; Redis going away for a while; a wrong URL."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from labserver.course import LabServer
from labserver.course.crowd import Crowd
from labserver.course.redis_server import RedisServer, find_redis_server
from labserver.redis_broker import NODE_TTL_S

from .conftest import Client, until

FAST: dict[str, Any] = {"rate": 5000, "burst": 5000}  # these tests are about delivery, not the rate limit


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if find_redis_server() is None:
        pytest.skip("redis-server is not installed (apt install redis-server)")
    with RedisServer() as server:
        yield server


async def start_labs(data_dir: Path, redis: RedisServer, *names: str) -> list[LabServer]:
    labs = [LabServer(data_dir, redis=redis.url, node=name, **FAST) for name in names]
    await asyncio.gather(*(asyncio.to_thread(lab.start) for lab in labs))  # at once: shared files made once
    return labs


@pytest.fixture
async def labs(tmp_path: Path, redis: RedisServer) -> AsyncIterator[list[LabServer]]:
    started = await start_labs(tmp_path, redis, "a", "b")
    yield started
    for lab in started:
        lab.stop()


def online(lab: LabServer, token: str) -> dict[str, bool]:
    """GET /api/users: username -> online."""
    status, body = lab.request("GET", "/api/users", token=token)
    assert status == 200, body
    return {u["username"]: u["online"] for u in body["users"]}


def chats(client: Client, room: str) -> list[dict[str, Any]]:
    return [m for m in client.inbox if m.get("type") == "chat" and m.get("room") == room]


async def drain(client: Client, wait: float = 0.05) -> None:
    """Move what has arrived into ``client.inbox``."""
    try:
        while True:
            client.inbox.append(json.loads(await asyncio.wait_for(client.ws.recv(), wait)))
    except TimeoutError:
        pass


async def collect(client: Client, room: str, count: int, timeout: float = 10) -> list[int]:
    """Wait until ``client`` has ``count`` chats of ``room``; their seqs."""

    async def enough() -> bool:
        await drain(client)
        return len(chats(client, room)) >= count

    await until(enough, timeout=timeout, what=f"{count} chats of {room}")
    return [m["seq"] for m in chats(client, room)]


async def test_users_on_two_processes_share_rooms_dms_notifications_and_presence(labs: list[LabServer]) -> None:
    a, b = labs
    health_a, health_b = a.health(), b.health()
    assert (health_a["node"], health_a["broker"], health_b["node"]) == ("a", "redis", "b")
    await until(lambda: a.health()["broker_connected"] and b.health()["broker_connected"], what="both on Redis")
    ann_account, bob_account = a.account("ann"), b.account("bob")  # one shared database
    ann, bob = await Client.connect(a, ann_account), await Client.connect(b, bob_account)
    assert (ann.welcome["node"], bob.welcome["node"]) == ("a", "b")

    # Presence: each sees the other online, in /api/users of either process (as soon as the
    # presence message crossed Redis: milliseconds) and in the presence ack.
    await until(lambda: online(a, ann_account.token)["bob"], what="a knows bob is online")
    await until(lambda: online(b, bob_account.token)["ann"], what="b knows ann is online")
    await bob.request("subscribe", topic="presence")
    ack = await ann.request("subscribe", topic="presence")
    assert {u["username"] for u in ack["online"]} == {"ann", "bob"}

    # A room: bob's join ack lists ann, who is on the other process.
    await ann.request("join", room="lobby")
    ack = await until(lambda: bob_join_ack(bob), what="bob's join ack lists ann")
    assert {m["username"] for m in ack["members"]} == {"ann", "bob"}
    await ann.request("chat", room="lobby", text="hi from a")
    await bob.request("chat", room="lobby", text="hi from b")
    assert await collect(bob, "lobby", 2) == [1, 2]
    assert await collect(ann, "lobby", 2) == [1, 2]

    # A DM, a like's notification and the post's live counter.
    await ann.request("dm", to=bob.welcome["user"]["id"], text="psst")
    dm = await bob.expect("dm")
    assert dm["text"] == "psst" and dm["seq"] == 1
    status, body = a.request("POST", "/api/posts", {"text": "look"}, token=ann_account.token)
    assert status == 201
    post_id = body["post"]["id"]
    await ann.request("subscribe", topic=f"post:{post_id}")
    assert b.request("POST", f"/api/posts/{post_id}/like", token=bob_account.token)[0] == 200
    note = await ann.expect("notification")
    assert note["kind"] == "like" and note["from"]["username"] == "bob"
    updated = await ann.expect("post_updated")
    assert (updated["post_id"], updated["likes"]) == (post_id, 1)

    # Bob leaves: ann hears it once, from the other process.
    await bob.close()
    offline = await ann.expect(lambda m: m.get("type") == "presence" and not m["online"])
    assert offline["user"]["username"] == "bob"
    await ann.nothing_more(lambda m: m.get("type") == "presence", wait=0.3)
    await ann.close()


async def bob_join_ack(bob: Client) -> dict[str, Any] | None:
    ack = await bob.request("join", room="lobby")
    if len(ack["members"]) == 2:
        return ack
    await bob.request("leave", room="lobby")  # ann's member_joined not heard yet: again
    return None


async def test_a_big_rooms_count_and_members_are_the_clusters(labs: list[LabServer]) -> None:
    """Over ANNOUNCE_LIMIT users, 60 on each process: the join ack's ``member_count`` and
    GET /api/rooms/{room}/members count and list both processes' members, and a socket on
    the other process is told the new count (its process learns it from a heartbeat)."""
    a, b = labs
    watcher = await Client.connect(b, b.account("watcher"))
    await watcher.request("join", room="big")
    joiner_account = a.account("joiner")
    token = joiner_account.token
    async with Crowd(a, prefix="biga", rooms=("big",)) as on_a, Crowd(b, prefix="bigb", rooms=("big",)) as on_b:
        await asyncio.gather(on_a.grow(60), on_b.grow(59))

        def members() -> dict[str, Any] | None:
            status, body = a.request("GET", "/api/rooms/big/members?limit=1000", token=token)
            assert status == 200, body
            return body if len(body["members"]) == 120 else None

        body = await until(lambda: asyncio.to_thread(members), timeout=5, what="a lists b's members")
        assert body["member_count"] == 120
        ids = [m["id"] for m in body["members"]]
        assert ids == sorted(ids) and len(set(ids)) == 120
        joiner = await Client.connect(a, joiner_account)
        ack = await joiner.request("join", room="big")
        assert ack["member_count"] == 121 and len(ack["members"]) == 100  # the cap, not the room
        # b's sockets hear the count from b, once a heartbeat told b about a's new member.
        count = await watcher.expect(lambda m: m.get("type") == "member_count" and m["count"] == 121, timeout=5)
        assert count["room"] == "big"
        await joiner.close()
    await watcher.close()


async def test_a_process_restarted_under_its_name_announces_its_old_users_offline(labs: list[LabServer]) -> None:
    """b is SIGKILLed and started again as b before its key expires: the new b's key must not
    hide that bob (on the old b only) is gone."""
    a, b = labs
    ann_account = a.account("ann")
    ann, bob = await Client.connect(a, ann_account), await Client.connect(b, b.account("bob"))
    await ann.request("subscribe", topic="presence")
    await bob.request("join", room="lobby")
    await ann.request("join", room="lobby")
    await until(lambda: online(a, ann_account.token)["bob"], what="a knows bob is online")
    await asyncio.sleep(1.2)  # one heartbeat: bob is in b's key
    b.kill()
    killed_at = time.monotonic()
    await asyncio.to_thread(b.start)
    restarted = time.monotonic() - killed_at
    left = await ann.expect(lambda m: m.get("type") == "member_left" and m["user"]["username"] == "bob", timeout=10)
    offline = await ann.expect(lambda m: m.get("type") == "presence" and not m["online"], timeout=10)
    assert (left["room"], offline["user"]["username"]) == ("lobby", "bob")
    assert restarted < NODE_TTL_S, f"the restart took {restarted:.1f} s: the old key expired first, nothing tested"
    await ann.close()


async def test_a_user_leaving_two_processes_at_once_is_announced_to_a_third(tmp_path: Path, redis: RedisServer) -> None:
    """a and b each see bob still on the other, and hold his member_left and offline back; the
    one that then finds him gone everywhere publishes them, so c's sockets hear them too."""
    a, b, c = await start_labs(tmp_path, redis, "a", "b", "c")
    try:
        bob_account = a.account("bob")
        cat = await Client.connect(c, c.account("cat"))
        await cat.request("subscribe", topic="presence")
        await cat.request("join", room="lobby")
        tabs = [await Client.connect(lab, bob_account) for lab in (a, b)]
        for tab in tabs:
            await tab.request("join", room="lobby")
        await asyncio.sleep(1.5)  # a heartbeat: a's key and b's key both have bob in the lobby
        await asyncio.gather(*(tab.close() for tab in tabs))
        left = await cat.expect(lambda m: m.get("type") == "member_left" and m["user"]["username"] == "bob")
        offline = await cat.expect(lambda m: m.get("type") == "presence" and not m["online"])
        assert (left["room"], offline["user"]["username"]) == ("lobby", "bob")
        await cat.close()
    finally:
        for lab in (a, b, c):
            lab.stop()


async def test_seqs_are_global_and_gap_free_under_concurrent_chat(labs: list[LabServer]) -> None:
    a, b = labs
    clients = [await Client.connect(lab, lab.account(f"talker{i}")) for i, lab in enumerate((a, b, a, b))]
    for c in clients:
        await c.request("join", room="busy")
    per_client = 40

    async def talk(i: int, c: Client) -> list[int]:
        return [(await c.request("chat", room="busy", text=f"{i}-{n}"))["seq"] for n in range(per_client)]

    acked = await asyncio.gather(*(talk(i, c) for i, c in enumerate(clients)))
    total = per_client * len(clients)
    assert sorted(s for seqs in acked for s in seqs) == list(range(1, total + 1))  # global, no gap, no twice
    for c in clients:
        seqs = await collect(c, "busy", total)
        assert sorted(seqs) == list(range(1, total + 1))  # every message reached every process's sockets
        assert len(seqs) == total  # and once
        await c.close()


async def test_a_killed_process_users_go_offline_and_reconnect_elsewhere(labs: list[LabServer]) -> None:
    a, b = labs
    ann_account = a.account("ann")
    ann, bob = await Client.connect(a, ann_account), await Client.connect(b, b.account("bob"))
    await bob.request("subscribe", topic="presence")
    await bob.request("join", room="lobby")
    await ann.request("join", room="lobby")
    acked = [(await ann.request("chat", room="lobby", text=f"m{n}"))["seq"] for n in range(20)]
    await until(lambda: online(b, ann_account.token)["ann"], what="b knows ann is online")

    a.kill()  # SIGKILL: no goodbye, its Redis key expires
    offline = await bob.expect(lambda m: m.get("type") == "presence" and not m["online"], timeout=10)
    assert offline["user"]["username"] == "ann"
    assert not online(b, ann_account.token)["ann"]

    ann = await Client.connect(b, ann_account)  # the same token works on the other process
    await ann.send("resume", room="lobby", after=0, ref="R1")
    resumed = await ann.expect("resumed")
    assert resumed["count"] == 20
    assert [m["seq"] for m in chats(ann, "lobby")] == acked  # nothing acknowledged is lost
    await ann.close()
    await bob.close()


async def test_redis_away_local_delivery_goes_on_and_others_catch_up(labs: list[LabServer], redis: RedisServer) -> None:
    a, b = labs
    ann, cat = await Client.connect(a, a.account("ann")), await Client.connect(a, a.account("cat"))
    bob = await Client.connect(b, b.account("bob"))
    for c in (ann, cat, bob):
        await c.request("join", room="lobby")
    await ann.request("chat", room="lobby", text="before")
    await collect(bob, "lobby", 1)

    redis.stop()
    await until(lambda: not a.health()["broker_connected"] and not b.health()["broker_connected"], what="Redis gone")
    for n in range(5):
        await ann.request("chat", room="lobby", text=f"during {n}")
    assert await collect(cat, "lobby", 6, timeout=2) == [1, 2, 3, 4, 5, 6]  # same process: at once
    # A client of A that moves to B at once, having seen seq 6: B is not behind it.
    mover = await Client.connect(b, a.account("cat"))
    await mover.send("resume", room="lobby", after=6, ref="R0")
    assert (await mover.expect(lambda m: m.get("ref") == "R0"))["type"] == "resumed"
    await mover.close()
    # Another process: Redis lost them for it; it delivers them from the shared store.
    assert await collect(bob, "lobby", 6) == [1, 2, 3, 4, 5, 6]

    redis.start()
    await until(lambda: a.health()["broker_connected"] and b.health()["broker_connected"], timeout=10)
    await bob.request("chat", room="lobby", text="after")
    assert await collect(ann, "lobby", 7) == [1, 2, 3, 4, 5, 6, 7]  # cross-process live again
    late = await Client.connect(b, b.account("dan"))  # a client that missed it all resumes
    await late.send("resume", room="lobby", after=0, ref="R1")
    assert (await late.expect("resumed"))["count"] == 7
    for lab in (a, b):
        logs = "\n".join(lab.logs)
        assert logs.count("redis broker: lost") == 1 and logs.count("redis broker: reconnected") == 1, logs
    for c in (ann, cat, bob, late):
        await c.close()


def test_a_wrong_redis_url_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for url in (f"redis://127.0.0.1:{port}/0", "http://nowhere/0"):
        done = subprocess.run(
            [sys.executable, "-m", "labserver", "--port", "0", "--data-dir", str(tmp_path), "--redis", url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1, done
        assert done.stderr.startswith("labserver: error: --redis:") and done.stderr.count("\n") == 1, done.stderr
