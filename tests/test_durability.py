"""Faults: SIGKILL loses nothing acknowledged; maps return to empty; a slow reader hurts no one."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from urllib.parse import urlsplit

import websockets

from labserver.launcher import LabProcess

from .conftest import Client

FAST = {"rate": 5000, "burst": 5000}  # these tests measure durability, not the rate limit


async def _write_until_killed(lab: LabProcess, room: str, writers: int, kill_after: float) -> dict[int, str]:
    """Writers send chats and record every ack, until the server is SIGKILLed under them."""
    acked: dict[int, str] = {}
    clients = [await Client.connect(lab, lab.account(f"writer{i}")) for i in range(writers)]
    for c in clients:
        await c.request("join", room=room)

    async def write(c: Client, w: int) -> None:
        n = 0
        try:
            while True:
                text = f"w{w}-{n}"
                ack = await c.request("chat", room=room, text=text)
                acked[ack["seq"]] = text
                n += 1
        except (websockets.ConnectionClosed, TimeoutError, OSError):
            return

    tasks = [asyncio.create_task(write(c, w)) for w, c in enumerate(clients)]
    await asyncio.sleep(kill_after)
    await asyncio.to_thread(lab.kill)
    await asyncio.gather(*tasks)
    return acked


def _history(lab: LabProcess, room: str) -> list[dict]:
    token = lab.account("auditor").token
    messages: list[dict] = []
    while True:
        after = messages[-1]["seq"] if messages else 0
        status, body = lab.request("GET", f"/api/rooms/{room}/messages?after={after}&limit=1000", token=token)
        assert status == 200, body
        if not body["messages"]:
            return messages
        messages += body["messages"]


async def test_sigkill_loses_no_acknowledged_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(6455)
    with LabProcess(tmp_path, **FAST) as lab:
        total = 0
        for trial in range(3):
            acked = await _write_until_killed(lab, "durable", writers=4, kill_after=rng.uniform(0.3, 1.0))
            assert acked, "nothing was acknowledged before the kill"
            total += len(acked)
            lab.start()
            history = _history(lab, "durable")
            stored = {m["seq"]: m["text"] for m in history}
            missing = {seq: text for seq, text in acked.items() if stored.get(seq) != text}
            assert not missing, f"trial {trial}: acknowledged but lost after SIGKILL: {sorted(missing)[:10]}"
            seqs = [m["seq"] for m in history]
            assert seqs == list(range(1, len(seqs) + 1)), "history has a gap or a duplicate"
        assert total > 50


async def test_maps_return_to_empty_after_many_connections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with LabProcess(tmp_path, ping_interval=1, typing_ttl=30, **FAST) as lab:
        accounts = [lab.account(f"cycler{i}") for i in range(20)]
        _, before = lab.request("GET", "/healthz")

        async def cycle(i: int) -> None:
            c = await Client.connect(lab, accounts[i % len(accounts)], max_queue=None)  # never stalls on close
            await c.request("join", room=f"room{i % 7}")
            await c.request("subscribe", topic="presence")
            await c.send("typing", room=f"room{i % 7}")
            if i % 3 == 0:
                await c.ws.close()
            else:  # abrupt: TCP reset without a close frame
                c.ws.transport.abort()

        for start in range(0, 1500, 50):
            await asyncio.gather(*(cycle(i) for i in range(start, start + 50)))
        for _ in range(50):
            _, after = lab.request("GET", "/healthz")
            if after["connections"] == 0 and after["typing"] == 0:
                break
            await asyncio.sleep(0.1)
        for key in ("connections", "users_online", "rooms", "topics", "typing"):
            assert after[key] == 0, (key, after)
        growth = after["rss_bytes"] - before["rss_bytes"]
        assert growth < 30 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB over 1,500 cycles"


async def test_slow_reader_is_dropped_and_others_get_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with LabProcess(tmp_path, send_buffer_limit=256 * 1024, **FAST) as lab:
        sender = await Client.connect(lab, lab.account("loud"))
        await sender.request("join", room="wide")
        readers = [await Client.connect(lab, lab.account(f"reader{i}")) for i in range(5)]
        for r in readers:
            await r.request("join", room="wide")
        tiny = socket.create_connection((urlsplit(lab.url).hostname, urlsplit(lab.url).port))
        tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow = await Client.connect(lab, lab.account("sloth"), max_queue=1, sock=tiny)
        await slow.request("join", room="wide")
        slow.ws.transport.pause_reading()  # stops reading: the server's buffer to it grows

        # Enough to overflow the kernel's socket buffers too (up to 4 MiB on loopback).
        text = "x" * 4000
        count = 1500
        received = [0] * len(readers)

        async def read(i: int, r: Client) -> None:
            while received[i] < count:
                m = json.loads(await asyncio.wait_for(r.ws.recv(), 10))
                if m.get("type") == "chat" and m["from"]["username"] == "loud":
                    received[i] += 1

        reading = [asyncio.create_task(read(i, r)) for i, r in enumerate(readers)]
        for _ in range(count):  # paced by acks, as a real sender is
            await sender.request("chat", room="wide", text=text)
        await asyncio.gather(*reading)
        assert received == [count] * len(readers)
        _, health = lab.request("GET", "/healthz")
        assert health["dropped_slow"] == 1
        slow.ws.transport.abort()
