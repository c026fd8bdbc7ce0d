#!/usr/bin/env python3
"""Does the live dashboard keep the kernel responsive at 2,000 messages/s?

Starts a lab server, a load generator in a separate process (senders chatting
in one room at a fixed total rate), and a :class:`Dashboard` in this process,
as a notebook kernel would hold it. Prints what a student would feel: renders
per second (what reaches the browser), and how late a 10 ms ticker in this
event loop runs (the wait before a new cell starts).

    .venv/bin/python benchmarks/dashboard_load.py [--rate 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import textwrap
import time

from labserver.course import Dashboard, LabServer

LOAD = textwrap.dedent(
    """
    import asyncio, json, sys, time, websockets
    url, tokens, rate, seconds = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), float(sys.argv[4])
    async def sender(token, per_socket):
        async with websockets.connect(f"{url}?token={token}", max_queue=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "join", "room": "load"}))
            deadline = time.monotonic() + seconds
            n = 0
            start = time.monotonic()
            while time.monotonic() < deadline:
                await ws.send(json.dumps({"type": "chat", "room": "load", "text": f"m{n}"}))
                n += 1
                await asyncio.sleep(max(0.0, start + n / per_socket - time.monotonic()))
    async def main():
        await asyncio.gather(*(sender(t, rate / len(tokens)) for t in tokens))
    asyncio.run(main())
    """
)


async def run(rate: float, seconds: float, senders: int) -> None:
    with LabServer(admin_token="bench", rate=rate, burst=int(rate)) as lab:
        tokens = [lab.account(f"loader{i}").token for i in range(senders)]
        dash = Dashboard(lab)
        await dash.ready()
        load = subprocess.Popen([sys.executable, "-c", LOAD, lab.ws_url, ",".join(tokens), str(rate), str(seconds)])
        before = lab.health()
        renders_before = dash.renders
        lateness: list[float] = []
        started = time.monotonic()
        while load.poll() is None:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            lateness.append(time.monotonic() - t0 - 0.01)
        elapsed = time.monotonic() - started
        after = lab.health()
        renders = dash.renders - renders_before
        await dash.stop()
    messages = after["messages_in"] - before["messages_in"]
    lateness.sort()
    print(
        json.dumps(
            {
                "messages_per_s": round(messages / elapsed, 1),
                "deliveries_per_s": round((after["deliveries"] - before["deliveries"]) / elapsed, 1),
                "dashboard_renders_per_s": round(renders / elapsed, 2),
                "loop_delay_ms_p50": round(statistics.median(lateness) * 1000, 2),
                "loop_delay_ms_p99": round(lateness[int(len(lateness) * 0.99)] * 1000, 2),
                "loop_delay_ms_max": round(lateness[-1] * 1000, 2),
                "dashboard_errors": len(dash.errors),
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="total chat messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds, args.senders))


if __name__ == "__main__":
    main()
