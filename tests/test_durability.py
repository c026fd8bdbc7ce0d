"""Faults: maps return to empty; a slow reader hurts no one.

SIGKILL at random moments (10 trials) is tests/test_adversarial_faults.py's.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from labserver.course import LabServer

from .adversarial import MAPS, maps_empty, wait_health
from .conftest import Client

FAST: dict[str, Any] = {"rate": 5000, "burst": 5000}  # these tests measure durability, not the rate limit


async def test_maps_return_to_empty_after_many_connections(tmp_path: Path) -> None:
    with LabServer(tmp_path, ping_interval=1, typing_ttl=30, **FAST) as lab:
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
        after = await wait_health(lab, maps_empty, timeout=5)
        for key in MAPS:
            assert after[key] == 0, (key, after)
        growth = after["rss_bytes"] - before["rss_bytes"]
        assert growth < 30 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB over 1,500 cycles"


async def test_slow_reader_is_dropped_and_others_get_everything(tmp_path: Path) -> None:
    with LabServer(tmp_path, send_buffer_limit=256 * 1024, **FAST) as lab:
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
