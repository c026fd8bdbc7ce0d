#!/usr/bin/env python3
"""How fast does the lab server fan one room's chat out to many sockets?

Starts a lab server (pinned to CPU 0 where ``taskset`` exists), connects N raw
WebSocket subscribers to one room from this process (pinned to CPU 1), then one
sender posts ``--messages`` chats as fast as the server acknowledges them, with up
to ``--window`` unacknowledged at a time. Prints deliveries per second (messages x
subscribers / time until every subscriber has every message) and the server's RSS.
The subscribers only count frames: the client side stays cheap, so the figure is
the server's.

    .venv/bin/python benchmarks/fanout.py [--subscribers 1000] [--messages 300] [--repeat 3]

``--server-source DIR`` runs the server from another checkout (e.g. a ``git worktree``
of an older commit), to compare two versions of the send path on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

from lean import LeanSubscriber, bench_text, masked_text

from labserver.course import RestClient
from labserver.frames import Frame, Opcode
from labserver.rawws import handshake_request

ROOM = "fanout"


def masked_json(message: dict[str, object]) -> bytes:
    return masked_text(json.dumps(message).encode())


async def run_once(lab: RestClient, subscribers: int, messages: int, window: int) -> float:
    url = urlsplit(lab.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 0
    loop = asyncio.get_running_loop()
    token = lab.account("fanout_sub").token
    join = masked_json({"type": "join", "room": ROOM, "ref": "j"})
    request = handshake_request(host, port, f"/ws?token={token}") + join
    subs: list[LeanSubscriber] = []
    for _ in range(subscribers):
        _, sub = await loop.create_connection(lambda: LeanSubscriber(request, b'"ref":"j"'), host, port)
        subs.append(sub)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(handshake_request(host, port, f"/ws?token={lab.account('fanout_sender').token}"))
    await reader.readuntil(b"\r\n\r\n")
    writer.write(masked_json({"type": "join", "room": ROOM}))
    await asyncio.gather(*(sub.ready for sub in subs))  # every join acknowledged
    for sub in subs:
        sub.target, sub.done = sub.hits + messages, loop.create_future()
    buffer = bytearray()
    sent = acks = 0
    start = time.perf_counter()
    while acks < messages:
        while sent < messages and sent - acks < window:
            writer.write(masked_json({"type": "chat", "room": ROOM, "text": bench_text(60), "ref": sent}))
            sent += 1
        buffer += await reader.read(65536)
        while (parsed := Frame.parse(buffer)) is not None:
            frame, used = parsed
            del buffer[:used]
            if frame.opcode is Opcode.TEXT and json.loads(frame.payload).get("type") == "ack":
                acks += 1
    await asyncio.gather(*(sub.done for sub in subs if sub.done))
    elapsed = time.perf_counter() - start
    writer.close()
    for sub in subs:
        sub.close()
    await asyncio.sleep(1)  # let the server clean up before the next round
    return messages * subscribers / elapsed


def start_server(data_dir: str, source: str | None) -> tuple[subprocess.Popen[str], str]:
    """``python -m labserver`` on a free port, without rate limits; returns it and its URL."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if source:
        env["PYTHONPATH"] = source
    cmd = [
        sys.executable,
        "-m",
        "labserver",
        "--port",
        "0",
        "--data-dir",
        data_dir,
        "--rate",
        "1e6",
        "--burst",
        "1000000",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("labserver listening on "):
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stdout.read()}")
    return proc, line.split()[3]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--window", type=int, default=20, help="unacknowledged chats in flight")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server-source", help="run the server from this checkout instead")
    args = parser.parse_args()
    pin = shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {1})  # this process on CPU 1, the server on CPU 0
    with tempfile.TemporaryDirectory() as data:
        proc, url = start_server(data, args.server_source)
        try:
            if pin:
                os.sched_setaffinity(proc.pid, {0})
            lab = RestClient(url)
            rates = [await run_once(lab, args.subscribers, args.messages, args.window) for _ in range(args.repeat)]
            health = lab.health()
        finally:
            proc.terminate()
            proc.wait(10)
    print(
        json.dumps(
            {
                "subscribers": args.subscribers,
                "messages": args.messages,
                "deliveries_per_s": [round(r) for r in rates],
                "best": round(max(rates)),
                "server_rss_mib": round(health["rss_bytes"] / 2**20, 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
