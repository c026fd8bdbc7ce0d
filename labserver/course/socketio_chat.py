"""Lesson 09's Socket.IO chat: the lab's small chat again, built with python-socketio on aiohttp.

It is a second server, in a process of its own (``python -m labserver.course.socketio_chat``),
so a lesson can start it, look at it through a tap, and stop it without touching the lab::

    with SocketIOChat(ping_interval=1) as chat:        # a child process on a free port
        sio = socketio.AsyncClient(handle_sigint=False)
        await sio.connect(chat.url, auth={"username": "ann"})
        await sio.call("join", "lobby")                # an event with an acknowledgement
        await sio.call("chat", {"room": "lobby", "text": "hi"})   # -> {"seq": 1}

One port serves plain HTTP (``GET /``) and Socket.IO (``/socket.io/``): ``AsyncServer.attach(app)``
adds Socket.IO's routes to the aiohttp application, as Node's ``new Server(httpServer)`` hooks
the ``http.Server`` that serves the Express ``app``. The child exits when its stdin reaches
EOF, so it dies with the kernel that started it (as the lab does, see :mod:`labserver.launcher`).

:func:`engineio_by_hand` speaks Engine.IO's HTTP long-polling with nothing but aiohttp, one
request at a time, and :func:`plain_websocket_attempts` shows what a plain WebSocket client
gets from a Socket.IO server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
import socketio  # type: ignore[import-untyped]  # python-socketio ships no type information
import websockets
from aiohttp import web
from websockets.exceptions import ConnectionClosed, InvalidStatus

__all__ = ["Exchange", "SocketIOChat", "engineio_by_hand", "make_app", "plain_websocket_attempts"]

READY_PREFIX = "socketio-chat listening on "


def make_app(ping_interval: float = 25.0, ping_timeout: float = 20.0) -> web.Application:
    """The chat: ``connect`` (``auth={"username": ...}``), ``join`` (a room), ``chat`` (acked with its seq).

    A chat is sent to the room's other members as the event ``chat``; the sender gets the
    acknowledgement instead, as in the lab (where the ack carries the seq too)."""
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=ping_interval, ping_timeout=ping_timeout)
    app = web.Application()
    sio.attach(app)  # adds GET/POST /socket.io/ (polling) and its WebSocket upgrade to this app
    seqs: collections.Counter[str] = collections.Counter()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text="plain HTTP, on the same port as Socket.IO\n")

    app.router.add_get("/", index)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        username = auth.get("username") if isinstance(auth, dict) else None
        if not isinstance(username, str) or not username:
            raise socketio.exceptions.ConnectionRefusedError("auth needs a username")
        await sio.save_session(sid, {"username": username})

    async def join(sid: str, room: Any) -> dict[str, Any]:
        if not isinstance(room, str) or not room:
            return {"error": "room must be a non-empty string"}
        await sio.enter_room(sid, room)
        return {"room": room, "sid": sid}

    async def chat(sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("room"), str) or "text" not in data:
            return {"error": 'expected {"room": ..., "text": ...}'}
        room = data["room"]
        if room not in sio.rooms(sid):
            return {"error": f"join {room!r} first"}
        session = await sio.get_session(sid)
        seqs[room] += 1
        message = {"room": room, "from": session["username"], "text": str(data["text"]), "seq": seqs[room]}
        await sio.emit("chat", message, room=room, skip_sid=sid)
        return {"seq": seqs[room]}

    for handler in (connect, join, chat):  # sio.on, not @sio.event: the decorator is untyped
        sio.on(handler.__name__, handler)
    return app


async def _serve(port: int, ping_interval: float, ping_timeout: float) -> None:
    runner = web.AppRunner(make_app(ping_interval, ping_timeout), handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin() -> None:  # EOF: the parent is gone (or stopping us)
        with contextlib.suppress(OSError, ValueError):
            while os.read(sys.stdin.fileno(), 4096):
                pass
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"{READY_PREFIX}http://{host}:{bound}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labserver.course.socketio_chat")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--ping-timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.ping_interval, args.ping_timeout))


class SocketIOChat:
    """The Socket.IO chat as a child process on a free port: ``start()``/``stop()`` or ``with``."""

    def __init__(self, *, ping_interval: float = 25.0, ping_timeout: float = 20.0) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.logs: collections.deque[str] = collections.deque(maxlen=200)  # its stdout and stderr lines

    def start(self, timeout: float = 20.0) -> Self:
        if self.running:
            return self
        port = str(self.port) if self.url else "0"  # a restart comes back where clients look
        cmd = [sys.executable, "-m", "labserver.course.socketio_chat", "--port", port]
        cmd += ["--ping-interval", str(self.ping_interval), "--ping-timeout", str(self.ping_timeout)]
        # stdin=PIPE held only by us: its EOF stops the child, even if we are SIGKILLed.
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            tail = "\n".join(self.logs) or "no output"
            raise RuntimeError(f"the Socket.IO chat did not start: {tail}")
        return self

    def _pump(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        """Keep the child's output (its log: a refused packet's traceback, for one) and spot the ready line."""
        assert proc.stdout is not None
        for line in proc.stdout:
            self.logs.append(line.rstrip("\n"))
            if not ready.is_set() and line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].strip()
                ready.set()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 10.0) -> int | None:
        """Close the child's stdin (it stops as on EOF), wait, and return its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode

    def restart(self, timeout: float = 20.0) -> Self:
        """Stop (every client is disconnected) and start again on the same port, as after a deploy."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SocketIOChat {'running at ' + self.url if self.running else 'stopped'}>"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP request of Engine.IO's long-polling and its answer, bodies as text."""

    request: str  # e.g. 'POST /socket.io/?EIO=4&transport=polling&sid=...'
    sent: str  # the request body ('' for a GET)
    status: int
    received: str

    def describe(self) -> str:
        body = f"  body {self.sent!r}" if self.sent else ""
        return f"→ {self.request}{body}\n← {self.status} {self.received!r}"


async def engineio_by_hand(url: str, username: str = "ann", room: str = "lobby") -> list[Exchange]:
    """Open an Engine.IO session over HTTP long-polling, connect to Socket.IO, join, chat: by hand.

    Every packet is a character (the Engine.IO type: 0 open, 2 ping, 3 pong, 4 message...)
    and a message's payload starts with a Socket.IO type (0 CONNECT, 2 EVENT, 3 ACK...) and an
    optional ack id; packets in one body are separated by the byte 0x1e."""
    exchanges: list[Exchange] = []
    async with aiohttp.ClientSession() as http:

        async def call(method: str, query: str, body: str = "") -> str:
            path = f"/socket.io/?EIO=4&transport=polling{query}"
            async with http.request(method, url + path, data=body.encode() if body else None) as resp:
                text = await resp.text()
                exchanges.append(Exchange(f"{method} {path}", body, resp.status, text))
                return text

        opened = await call("GET", "")  # 0{"sid": ...}: the Engine.IO session
        sid = json.loads(opened[1:])["sid"]
        query = f"&sid={sid}"
        await call("POST", query, "40" + json.dumps({"username": username}))  # Socket.IO CONNECT with auth
        await call("GET", query)  # 40{"sid": ...}: connected (a Socket.IO sid, not the Engine.IO one)
        await call("POST", query, "421" + json.dumps(["join", room]))  # EVENT with ack id 1
        await call("GET", query)  # 431[...]: the ACK for id 1
        await call("POST", query, "422" + json.dumps(["chat", {"room": room, "text": "typed by hand"}]))
        await call("GET", query)  # 432[{"seq": ...}]
        await call("POST", query, "1")  # Engine.IO CLOSE
    return exchanges


async def plain_websocket_attempts(url: str) -> list[tuple[str, str]]:
    """What a plain WebSocket client (``websockets``) gets from a Socket.IO server: ``(what, outcome)``."""
    ws_base = "ws" + url.removeprefix("http")
    outcomes: list[tuple[str, str]] = []
    for label, target in (
        ("ws://…/ (a path that is not Socket.IO's)", ws_base + "/"),
        ("ws://…/socket.io/ (the right path, no Engine.IO query)", ws_base + "/socket.io/"),
    ):
        try:
            async with websockets.connect(target, open_timeout=5):
                outcomes.append((label, "opened (unexpected)"))
        except InvalidStatus as exc:
            outcomes.append((label, f"refused: HTTP {exc.response.status_code}"))
    target = ws_base + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(target, open_timeout=5) as ws:
        first = str(await ws.recv())
        outcomes.append(("ws://…/socket.io/?EIO=4&transport=websocket: first message", first))
        await ws.send(json.dumps({"type": "chat", "room": "lobby", "text": "hi"}))
        try:
            reply = await asyncio.wait_for(ws.recv(), 3)
            outcomes.append(("then a plain JSON message is sent", f"answered {str(reply)!r}"))
        except ConnectionClosed as exc:
            outcomes.append(
                ("then a plain JSON message is sent", f"closed: code {exc.rcvd.code if exc.rcvd else 1006}")
            )
        except TimeoutError:
            outcomes.append(("then a plain JSON message is sent", "no answer in 3 s"))
    return outcomes


if __name__ == "__main__":
    main()
