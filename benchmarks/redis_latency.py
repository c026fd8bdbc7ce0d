#!/usr/bin/env python3
"""How much does Redis add to a chat's delivery? Two lab processes on one Redis.

Starts a throwaway redis-server and two lab server processes (``--redis``, one data dir).
A sender on process A chats in a room, one message at a time (each waits for its ack); a
reader on A and a reader on B take every message. Prints the p50/p90/p99 time from send
to receipt: within one process (A to A: the store's commit and a local delivery) and
across processes (A to B: the same plus Redis pub/sub). Figures only: a shared box's load
shows in them.

    .venv/bin/python benchmarks/redis_latency.py [--messages 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

import websockets

from labserver.course import LabServer
from labserver.course.redis_server import RedisServer


async def reader(url: str, token: str, count: int, received: dict[str, float], ready: asyncio.Event) -> None:
    async with websockets.connect(f"{url}?token={token}", max_queue=None) as ws:
        await ws.recv()  # welcome
        await ws.send(json.dumps({"type": "join", "room": "bench", "ref": "j"}))
        while json.loads(await ws.recv()).get("ref") != "j":
            pass
        ready.set()
        while len(received) < count:
            message = json.loads(await ws.recv())
            if message.get("type") == "chat":
                received[message["text"]] = time.perf_counter()


async def measure(a: LabServer, b: LabServer, count: int) -> tuple[list[float], list[float]]:
    sent: dict[str, float] = {}
    local: dict[str, float] = {}
    remote: dict[str, float] = {}
    ready = [asyncio.Event(), asyncio.Event()]
    readers = [
        asyncio.create_task(reader(a.ws_url, a.account("near").token, count, local, ready[0])),
        asyncio.create_task(reader(b.ws_url, b.account("far").token, count, remote, ready[1])),
    ]
    await asyncio.gather(*(event.wait() for event in ready))
    await asyncio.sleep(1.5)  # the join crossed Redis; the heartbeats ran once
    async with websockets.connect(f"{a.ws_url}?token={a.account('talker').token}", max_queue=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "join", "room": "bench", "ref": "j"}))
        for n in range(count):
            text = f"m{n}"
            sent[text] = time.perf_counter()
            await ws.send(json.dumps({"type": "chat", "room": "bench", "text": text, "ref": text}))
            while json.loads(await ws.recv()).get("ref") != text:  # paced by acks, as a person is
                pass
    await asyncio.wait_for(asyncio.gather(*readers), 30)
    return [local[t] - sent[t] for t in sent], [remote[t] - sent[t] for t in sent]


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"{name:<28} p50 {statistics.median(ms):6.2f} ms   p90 {pick(0.9):6.2f} ms   p99 {pick(0.99):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    with RedisServer() as redis, tempfile.TemporaryDirectory() as data_dir:
        options: dict[str, Any] = {"redis": redis.url, "rate": 5000, "burst": 5000}
        with LabServer(data_dir, node="a", **options) as a, LabServer(data_dir, node="b", **options) as b:
            local, remote = asyncio.run(measure(a, b, args.messages))
    print(f"{args.messages} chats, one at a time, send -> receipt (2 lab processes, 1 redis-server, shared SQLite)")
    print(summary("same process (A -> A)", local))
    print(summary("across processes (A -> B)", remote))
    print(f"Redis adds about {statistics.median(remote) * 1000 - statistics.median(local) * 1000:.2f} ms at p50")


if __name__ == "__main__":
    main()
