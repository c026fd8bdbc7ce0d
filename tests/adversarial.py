"""Shared helpers of the adversarial suites (``tests/test_adversarial_*.py``).

Every adversarial test ends by checking that a second, well-behaved client is
still fully served (:func:`still_serves`): one client's bad input must never
cost anyone else their service.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from labserver.course import Account, LabServer
from labserver.frames import Opcode
from labserver.rawws import RawWebSocket, close_code, handshake_request

from .conftest import Client

_names = itertools.count()


def hostport(lab: LabServer) -> tuple[str, int]:
    parts = urlsplit(lab.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def fresh_account(lab: LabServer, prefix: str = "adv") -> Account:
    """A new user on ``lab`` (names are 3-32 of [A-Za-z0-9_])."""
    return lab.account(f"{prefix}{next(_names)}_{os.getpid() % 10000}"[:32])


def health(lab: LabServer) -> dict[str, Any]:
    return lab.health()


async def wait_health(lab: LabServer, ok: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
    """Poll ``/healthz`` until ``ok(body)``; return the last body either way (callers assert)."""
    deadline = time.monotonic() + timeout
    while True:
        body = await asyncio.to_thread(lab.health)
        if ok(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


MAPS = ("connections", "users_online", "rooms", "topics", "typing", "peers", "long_polls")
"""The /healthz counters of every per-connection map: all 0 on an idle server."""


def maps_empty(body: dict[str, Any]) -> bool:
    return all(body[key] == 0 for key in MAPS)


async def still_serves(lab: LabServer, room: str = "sanity") -> None:
    """A second, well-behaved pair of clients still gets full service: join, chat, ack, delivery, HTTP."""
    pair: tuple[Account, Account] | None = getattr(lab, "_sanity_pair", None)  # one pair per lab: signups are slow
    if pair is None:
        pair = (fresh_account(lab, "ok"), fresh_account(lab, "ok"))
        lab._sanity_pair = pair  # type: ignore[attr-defined]
    a, b = pair
    ca, cb = await Client.connect(lab, a), await Client.connect(lab, b)
    try:
        assert (await ca.request("join", room=room))["type"] == "ack"
        assert (await cb.request("join", room=room))["type"] == "ack"
        ack = await ca.request("chat", room=room, text="still here?")
        assert ack["type"] == "ack", ack
        got = await cb.expect(lambda m: m.get("type") == "chat" and m["text"] == "still here?")
        assert got["seq"] == ack["seq"] and got["from"] == a.user
        pong = await cb.request("ping", payload="ok")
        assert pong["type"] == "pong" and pong["payload"] == "ok"
    finally:
        await ca.close()
        await cb.close()
    status, body = await asyncio.to_thread(
        lab.request, "GET", f"/api/rooms/{room}/messages?after={ack['seq'] - 1}", None, b.token
    )
    assert status == 200 and [m["text"] for m in body["messages"]] == ["still here?"], body


def still_serves_sync(lab: LabServer) -> None:
    """:func:`still_serves` from synchronous code (on its own thread and event loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(still_serves(lab))
        except BaseException as exc:  # any: re-raised below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]
    assert not thread.is_alive(), "still_serves hung"


@pytest.fixture(autouse=True)
def each_case_then_still_serves(request: pytest.FixtureRequest) -> Iterator[None]:
    """Import into a test module: after every test, each running lab it used still serves a
    second, well-behaved client."""
    yield
    for value in request.node.funcargs.values():
        if isinstance(value, LabServer) and value.running:
            still_serves_sync(value)


def raw_open(
    lab: LabServer, account: Account | None = None, *, extra: dict[str, str | None] | None = None, timeout: float = 5.0
) -> RawWebSocket:
    """A raw socket past the handshake and the welcome, ready for hand-made frames."""
    host, port = hostport(lab)
    account = account or fresh_account(lab, "raw")
    ws = RawWebSocket.connect(
        host, port, handshake_request(host, port, f"/ws?token={account.token}", extra_headers=extra), timeout=timeout
    )
    assert ws.response.status == 101, ws.response
    welcome = ws.recv_frame()
    assert welcome is not None and json.loads(welcome.payload)["type"] == "welcome"
    return ws


def raw_handshake(lab: LabServer, request: bytes) -> RawWebSocket:
    host, port = hostport(lab)
    return RawWebSocket.connect(host, port, request)


def close_code_after(ws: RawWebSocket, timeout: float = 5.0) -> int | None:
    """The code of the server's close frame, skipping what comes before it; None if the TCP
    connection ended without one."""
    ws.sock.settimeout(timeout)
    while (frame := ws.recv_frame()) is not None:
        if frame.opcode is Opcode.CLOSE:
            return close_code(frame)
    return None


def connection_ends(ws: RawWebSocket, timeout: float = 5.0) -> bool:
    """True once the server ends the TCP connection (FIN, or RST over unread input) with
    no further frame."""
    ws.sock.settimeout(timeout)
    try:
        return ws.recv_frame() is None
    except ConnectionResetError:
        return True


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- a TCP proxy whose network can vanish -------------------------------------------------


@dataclass(eq=False)
class _Link:
    client_port: int
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    blackholed: bool = False


class BlackholeProxy:
    """Forwards TCP both ways until told to blackhole a connection; from then on it keeps
    reading from both ends and drops every byte, and closes nothing: for the server, the
    peer's network has vanished (no FIN, no RST, no pong)."""

    def __init__(self, lab: LabServer) -> None:
        self.target = hostport(lab)
        self.links: dict[int, _Link] = {}  # by the client's local port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> BlackholeProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _accept(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        link = _Link(down_w.get_extra_info("peername")[1])
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            down_w.transport.abort()
            return
        link.writers = [down_w, up_w]
        self.links[link.client_port] = link
        for src, dst in ((down_r, up_w), (up_r, down_w)):
            task = asyncio.create_task(self._pipe(link, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not link.blackholed:
                    dst.write(data)
                    await dst.drain()
        except (ConnectionError, OSError):
            pass
        if not link.blackholed:  # a real end of one side: pass it on
            dst.transport.abort()
            self.links.pop(link.client_port, None)

    def blackhole(self, client_port: int) -> None:
        self.links[client_port].blackholed = True

    def drop(self, client_port: int) -> None:
        """Forget a blackholed link for good (abort both sockets, quietly)."""
        link = self.links.pop(client_port, None)
        if link is not None:
            for w in link.writers:
                w.transport.abort()

    async def close(self) -> None:
        for port in list(self.links):
            self.drop(port)
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def local_port(ws: Any) -> int:
    """The local TCP port of a ``websockets`` client connection."""
    return int(ws.transport.get_extra_info("sockname")[1])
