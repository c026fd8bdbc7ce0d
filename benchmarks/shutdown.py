#!/usr/bin/env python3
"""How long does the lab server take to shut down, with work still open?

For each way of stopping it (SIGTERM; EOF on its stdin, as when its parent dies)
and each kind of open work (nothing; WebSockets; a long poll and an event stream),
starts ``python -m labserver --exit-on-stdin-eof``, opens the work, stops it, and
prints the seconds from the stop to the process's exit and the close codes the
WebSockets got. The server ends every open exchange itself, so this should stay far
below its 5 s shutdown timeout: tests/test_cli.py checks *that* it does (a 1001 close,
an answered poll, a stream ended cleanly), this prints *how fast*.

    .venv/bin/python benchmarks/shutdown.py [--sockets 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import websockets

from labserver.course import RestClient

STOPS = ("SIGTERM", "stdin EOF")
WORK = ("nothing", "websockets", "long poll + event stream")


class Server:
    """``python -m labserver`` with its stdin a pipe we hold, and its URL read from the ready line."""

    def __init__(self, data_dir: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labserver", "--port", "0", "--data-dir", data_dir, "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().removeprefix("labserver listening on ").split()[0]
        self.rest = RestClient(self.url)

    def stop(self, how: str) -> None:
        if how == "stdin EOF":
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        else:
            self.proc.send_signal(signal.SIGTERM)


def _hold_http(server: Server, token: str) -> list[threading.Thread]:
    """A long poll and an event stream, each in a thread, each held open by the server."""

    def poll() -> None:
        server.rest.request("GET", "/api/rooms/quiet/poll?after=0&timeout=25", token=token)

    def stream() -> None:
        with urllib.request.urlopen(f"{server.url}/api/rooms/quiet/events?token={token}", timeout=30) as resp:
            resp.read()

    threads = [threading.Thread(target=target, daemon=True) for target in (poll, stream)]
    for thread in threads:
        thread.start()
    return threads


async def one_run(how: str, work: str, sockets: int) -> tuple[float, dict[int, int]]:
    """Seconds from the stop to the exit, and how many WebSockets got which close code."""
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as data_dir:
        server = Server(data_dir)
        token = (await asyncio.to_thread(server.rest.account, "bench")).token
        ws_url = "ws" + server.url.removeprefix("http") + f"/ws?token={token}"
        open_sockets = []
        if work == "websockets":
            open_sockets = await asyncio.gather(*(websockets.connect(ws_url) for _ in range(sockets)))
            await asyncio.gather(*(ws.recv() for ws in open_sockets))  # the welcomes
        elif work == "long poll + event stream":
            _hold_http(server, token)
            while (await asyncio.to_thread(server.rest.health))["long_polls"] < 2:
                await asyncio.sleep(0.01)
        started = time.monotonic()
        server.stop(how)
        await asyncio.to_thread(server.proc.wait, 30)
        elapsed = time.monotonic() - started
        await asyncio.gather(*(ws.wait_closed() for ws in open_sockets))
        codes = collections.Counter(ws.close_code for ws in open_sockets if ws.close_code is not None)
        if server.proc.stdout is not None:
            server.proc.stdout.close()
        if server.proc.stdin is not None and not server.proc.stdin.closed:
            server.proc.stdin.close()
        return elapsed, dict(codes)


async def run(sockets: int, repeat: int) -> None:
    for how in STOPS:
        for work in WORK:
            times: list[float] = []
            codes: collections.Counter[int] = collections.Counter()
            for _ in range(repeat):
                elapsed, seen = await one_run(how, work, sockets)
                times.append(elapsed)
                codes.update(seen)
            print(
                json.dumps(
                    {
                        "stop": how,
                        "open": work if work != "websockets" else f"{sockets} websockets",
                        "exit_s_median": round(statistics.median(times), 3),
                        "exit_s_max": round(max(times), 3),
                        "close_codes": {str(code): n for code, n in sorted(codes.items())},
                    }
                ),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100, help="WebSockets open when it stops")
    parser.add_argument("--repeat", type=int, default=3, help="runs per combination")
    args = parser.parse_args()
    asyncio.run(run(args.sockets, args.repeat))


if __name__ == "__main__":
    main()
