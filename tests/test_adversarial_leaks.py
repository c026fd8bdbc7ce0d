"""No leaks: every map and the server's memory return to baseline after any number of
connections come and go, however they go (clean close, TCP reset, heartbeat timeout of a
peer whose network vanished, authentication timeout), and after long polls on rooms that
never get a message.

1,000 cycles run by default; LABSERVER_SOAK=1 runs 5,000.
(tests/test_durability.py has 1,500 cycles of clean close and reset only.)
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from labserver.course import LabServer

from .adversarial import MAPS, BlackholeProxy, hostport, local_port, maps_empty, still_serves, wait_health
from .conftest import SOAK, Client

CYCLES = 5000 if SOAK else 1000
FAST: dict[str, Any] = {"rate": 5000, "burst": 5000}


@pytest.mark.parametrize(
    "cycles", [pytest.param(CYCLES, marks=[pytest.mark.slow] if SOAK else [])], ids=lambda n: f"{n}_cycles"
)
async def test_connect_disconnect_cycles_leave_every_map_empty(tmp_path: Path, cycles: int) -> None:
    rng = random.Random(1006)
    with LabServer(tmp_path, ping_interval=1, auth_timeout=1, typing_ttl=30, **FAST) as lab:
        proxy = await BlackholeProxy(lab).start()
        accounts = [lab.account(f"cycler{i}") for i in range(25)]
        warm = await Client.connect(lab, accounts[0])  # warm the allocator before the baseline
        await warm.close()
        before = await wait_health(lab, maps_empty)
        assert maps_empty(before), before
        ways = {"close": 0, "reset": 0, "blackhole": 0, "unauthenticated": 0, "handshake_only": 0}
        blackholed: list[int] = []

        async def cycle(i: int) -> None:
            way = rng.choices(list(ways), weights=[40, 35, 15, 5, 5])[0]
            ways[way] += 1
            account = accounts[i % len(accounts)]
            if way == "unauthenticated":  # opened, never authenticates: reaped by auth_timeout
                ws = await websockets.connect(lab.ws_url, ping_interval=None)
                await asyncio.sleep(0)
                return
            if way == "handshake_only":
                ws = await websockets.connect(f"{lab.ws_url}?token={account.token}", max_queue=None)
                ws.transport.abort()
                return
            url = proxy.ws_url if way == "blackhole" else lab.ws_url
            ws = await websockets.connect(f"{url}?token={account.token}", ping_interval=None, max_queue=None)
            c = Client(ws, {})
            await c.request("join", room=f"room{i % 9}")
            await c.request("subscribe", topic=rng.choice(["presence", f"post:{i % 5 + 1}"]))
            await c.send("typing", room=f"room{i % 9}")
            if way == "close":
                await ws.close()
            elif way == "reset":
                ws.transport.abort()
            else:  # the network vanishes: no FIN, no RST, no pong; the heartbeat must reap it
                port = local_port(ws)
                proxy.blackhole(port)
                blackholed.append(port)

        started = time.monotonic()
        for start in range(0, cycles, 50):
            await asyncio.gather(*(cycle(i) for i in range(start, start + 50)))
        after = await wait_health(lab, maps_empty, timeout=15)  # reaping takes ping_interval x 1.5
        elapsed = time.monotonic() - started
        for port in blackholed:
            proxy.drop(port)
        await proxy.close()
        for key in MAPS:
            assert after[key] == 0, (key, after, ways)
        growth = after["rss_bytes"] - before["rss_bytes"]
        print(
            f"\n{cycles} cycles {ways} in {elapsed:.1f} s; RSS {before['rss_bytes'] / 2**20:.1f} -> "
            f"{after['rss_bytes'] / 2**20:.1f} MiB"
        )
        assert growth < 25 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB over {cycles} cycles"
        await still_serves(lab)


async def until_long_polls(lab: LabServer, count: int) -> None:
    body = await wait_health(lab, lambda h: h.get("long_polls") == count, timeout=3)
    assert body["long_polls"] == count, body


async def test_long_polls_on_rooms_that_stay_silent_leave_nothing_behind(lab: LabServer) -> None:
    token = lab.account("poller").token
    rooms = [f"silent{i}" for i in range(12)]

    def poll(room: str) -> int:
        return lab.request("GET", f"/api/rooms/{room}/poll?after=0&timeout=1", token=token)[0]

    statuses = await asyncio.gather(*(asyncio.to_thread(poll, room) for room in rooms))
    assert set(statuses) == {200}
    body = await wait_health(lab, lambda h: h.get("long_polls") == 0, timeout=3)
    assert body["long_polls"] == 0, body
    # A poll whose client goes away is not cancelled (aiohttp leaves handlers running), but
    # it is bounded: it ends at its timeout and leaves nothing behind.
    host, port = hostport(lab)
    for i in range(10):
        with socket.create_connection((host, port)) as sock:
            sock.sendall(
                f"GET /api/rooms/abandoned{i}/poll?after=0&timeout=3 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            await until_long_polls(lab, i + 1)  # parked before its client goes away
    body = await wait_health(lab, lambda h: h.get("long_polls") == 0, timeout=10)
    assert body["long_polls"] == 0, body
    await still_serves(lab)
