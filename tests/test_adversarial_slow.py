"""Slow consumers are isolated: one client that stops reading while a room of 500 others gets
a stream of broadcasts doesn't slow their delivery, is disconnected under the documented
policy (its unsent buffer passes send_buffer_limit: TCP aborted, presence updated), and the
server's memory stays bounded.

The 500 receivers run in a helper process (one asyncio loop, 500 sockets) that timestamps
every delivery; the same stream is measured without and with the slow client.
(tests/test_durability.py has a 5-reader version that checks completeness, not latency.)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from labserver.launcher import LabProcess

from .adversarial import hostport, percentile, still_serves
from .conftest import Client

RECEIVERS = 500
ROUNDS = 5  # baseline and slow segments alternate, so a change in machine load hits both alike
PER_SEGMENT = 30  # broadcasts per segment: 150 per run, 75,000 deliveries per run
PACE = 0.04  # seconds between two broadcasts: 25 a second, 12,500 deliveries a second

RECEIVER_SCRIPT = r"""
# 500 WebSocket receivers on one asyncio loop, as bare protocols (no client library: the
# helper must not be the bottleneck it measures). Each timestamps every delivery on arrival.
import asyncio, base64, json, os, sys, time
from urllib.parse import urlsplit
from labserver.frames import Frame, Opcode

LATENCIES = {}


class Receiver(asyncio.Protocol):
    def __init__(self, joined):
        self.buffer = bytearray()
        self.upgraded = False
        self.joined = joined

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        now = time.monotonic()
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            if not sep:
                return
            assert head.startswith(b"HTTP/1.1 101"), head
            self.upgraded, self.buffer = True, bytearray(rest)
            self.transport.write(Frame(Opcode.TEXT, b'{"type":"join","room":"wide","ref":"j"}', masking_key=os.urandom(4)).serialize())
        buf = self.buffer
        while len(buf) >= 2:
            n, start = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, start = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + n:
                return
            payload = bytes(buf[start:start + n])
            del buf[:start + n]
            if b'"lat|' in payload:
                _, phase, sent = json.loads(payload)["text"].split("|")
                LATENCIES.setdefault(phase, []).append(now - float(sent))
            elif b'"ref":"j"' in payload and not self.joined.done():
                self.joined.set_result(None)


async def main(url, tokens_path, count):
    tokens = json.load(open(tokens_path))
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()

    async def connect(i):
        joined = loop.create_future()
        transport, _ = await loop.create_connection(lambda: Receiver(joined), parts.hostname, parts.port)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /ws?token={tokens[i % len(tokens)]} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await asyncio.wait_for(joined, 20)
        return transport

    transports = []
    for start in range(0, count, 50):
        transports += await asyncio.gather(*(connect(i) for i in range(start, min(count, start + 50))))
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    print(json.dumps(LATENCIES), flush=True)
    for transport in transports:
        transport.abort()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def _segment(sender: Client, flooder: Client, target: int, phase: str,
                   until: asyncio.Future[None] | None = None) -> int:
    """Timestamped broadcasts to the 500 (PER_SEGMENT of them, and on until ``until`` is done),
    while the flooder sends 15 KB signals to ``target``: not stored, so the flood costs no disk
    time; they fill the slow client's buffers. Returns how many broadcasts were sent."""
    stop = asyncio.Event()

    async def flood() -> None:
        while not stop.is_set():
            for _ in range(4):
                await flooder.send("signal", to=target, kind="offer", data="x" * 15_000)  # not_found while offline
            await flooder.request("ping")
            await asyncio.sleep(0.005)

    flooding = asyncio.create_task(flood())
    sent = 0
    while sent < PER_SEGMENT or (until is not None and not until.done()):
        assert sent < 20 * PER_SEGMENT, "the slow client was never dropped"
        await sender.send("chat", room="wide", text=f"lat|{phase}|{time.monotonic()}")
        sent += 1
        await asyncio.sleep(PACE)
    stop.set()
    await flooding
    await sender.request("ping")
    return sent


async def test_a_slow_consumer_does_not_slow_a_broadcast_to_500_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with LabProcess(tmp_path, rate=5000, burst=5000, send_buffer_limit=256 * 1024, ping_interval=60) as lab:
        accounts = [lab.account(f"listener{i}") for i in range(20)]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump([a.token for a in accounts], f)
        helper = subprocess.Popen([sys.executable, "-c", RECEIVER_SCRIPT, lab.ws_url, f.name, str(RECEIVERS)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert (await asyncio.to_thread(helper.stdout.readline)).strip() == "ready"  # type: ignore[union-attr]
            sender = await Client.connect(lab, lab.account("announcer"), max_queue=None)
            await sender.request("join", room="wide")
            flooder = await Client.connect(lab, lab.account("flooder"), max_queue=None)
            watcher = await Client.connect(lab, lab.account("watcher"), max_queue=None)
            await watcher.request("subscribe", topic="presence")

            sloth = lab.account("sloth")
            await _segment(sender, flooder, sloth.id, "warmup")
            first = lab.health()
            counts = {"baseline": 0, "slow": 0}
            for _ in range(ROUNDS):
                counts["baseline"] += await _segment(sender, flooder, sloth.id, "baseline")
                tiny = socket.socket()
                tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                tiny.connect(hostport(lab))
                slow = await Client.connect(lab, sloth, sock=tiny, max_queue=1)
                await slow.request("join", room="wide")
                slow.ws.transport.pause_reading()  # from now on it reads nothing
                await watcher.expect(lambda m: m.get("type") == "presence" and m["user"]["id"] == sloth.id and m["online"])
                offline = asyncio.create_task(watcher.expect(
                    lambda m: m.get("type") == "presence" and m["user"]["id"] == sloth.id and not m["online"], timeout=30))
                counts["slow"] += await _segment(sender, flooder, sloth.id, "slow", until=offline)
                assert (await offline)["online"] is False  # aborted, and presence updated
                slow.ws.transport.abort()
            last = lab.health()
            assert last["dropped_slow"] == first["dropped_slow"] + ROUNDS
            assert last["connections"] == first["connections"]  # the 500, the sender, flooder and watcher

            helper.stdin.write("report\n")  # type: ignore[union-attr]
            helper.stdin.flush()  # type: ignore[union-attr]
            latencies = json.loads(await asyncio.to_thread(helper.stdout.readline))  # type: ignore[union-attr]
        finally:
            helper.kill()
            helper.wait(20)
            os.unlink(f.name)

        base, slow_run = latencies["baseline"], latencies["slow"]
        assert len(base) == RECEIVERS * counts["baseline"] and len(slow_run) == RECEIVERS * counts["slow"]  # all made
        stats = {name: (percentile(values, 50) * 1000, percentile(values, 95) * 1000)
                 for name, values in (("baseline", base), ("slow", slow_run))}
        growth = (last["rss_bytes"] - first["rss_bytes"]) / 2**20
        print(f"\nbroadcasts {counts}; latency ms (p50, p95): {stats}; RSS {first['rss_bytes'] / 2**20:.1f} -> "
              f"{last['rss_bytes'] / 2**20:.1f} MiB; {time.monotonic() - started:.1f} s")
        for p in (0, 1):  # p50 and p95 within 2x of the run without the slow client (+1 ms for timer noise)
            assert stats["slow"][p] <= 2 * stats["baseline"][p] + 1.0, stats
        assert growth < 32, f"RSS grew {growth:.1f} MiB"
        for c in (sender, flooder, watcher):
            await c.close()
        await still_serves(lab)
    assert time.monotonic() - started < 60
