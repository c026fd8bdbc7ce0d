"""A smoke test of the course on any machine: the lab starts, answers, and carries a chat.

    .venv/bin/python tools/smoke.py                (Windows: .venv\\Scripts\\python tools\\smoke.py)

What every lesson does first, outside Jupyter: ``start_lab()`` (the lab server as a child
process), ``GET /healthz``, one ``LabClient`` logs in, joins a room, chats and receives its
own chat back, then the lab stops and its process is gone. One line per step; the exit
code is 0 only if every step worked. CI runs it on Windows and macOS, where the whole
suite does not run (it needs Linux: Chromium at /usr/bin/chromium, /proc).
"""

from __future__ import annotations

import asyncio
import platform
import sys
import time

from labserver.course import LabClient, LabServer, start_lab, stop_lab

ROOM = "general"
TEXT = "hello from the smoke test"
TIMEOUT = 30.0  # seconds for the whole client part; generous for a cold CI runner


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


class SmokeFailure(Exception):
    pass


def check(ok: bool, what: str) -> None:
    """An assert that `python -O` keeps."""
    if not ok:
        raise SmokeFailure(what)


async def chat_round_trip(lab: LabServer) -> None:
    """One client joins ROOM, chats, and receives its own chat (the room's broadcast includes the sender)."""
    async with asyncio.timeout(TIMEOUT):
        async with LabClient.connect(lab, lab.account("smoke")) as client:
            step(f"client connected as socket {client.socket_id}")
            await client.join(ROOM)
            ack = await client.chat(ROOM, TEXT)
            step(f"chat acknowledged: seq {ack['seq']}")
            echo = await client.wait_for(lambda m: m.get("type") == "chat" and m.get("text") == TEXT, timeout=TIMEOUT)
            check(echo["room"] == ROOM and echo["seq"] == ack["seq"], f"the chat came back changed: {echo}")
            step(f"own chat received back in {echo['room']!r}")


def wait_gone(lab: LabServer, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while lab.proc is not None and lab.proc.poll() is None:
        if time.monotonic() > deadline:
            raise SmokeFailure(f"lab server pid {lab.pid} still running {timeout:g} s after stop")
        time.sleep(0.05)


def main() -> int:
    step(f"Python {platform.python_version()} on {platform.system()} {platform.release()}")
    lab = start_lab()
    step(f"lab server running at {lab.url} (pid {lab.pid})")
    try:
        health = lab.health()
        check(health.get("status") == "ok", f"GET /healthz answered {health}")
        step(f"GET /healthz: {health['status']}")
        asyncio.run(chat_round_trip(lab))
    finally:
        stop_lab()
    wait_gone(lab)
    step("lab server stopped")
    step("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
