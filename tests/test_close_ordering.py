"""After its Close frame, the server sends no data frame on that socket (RFC 6455 section 5.5.1).

Read as raw bytes: each victim is a bare TCP client that joins a room while others
flood it, answers pings so the heartbeat keeps it, and never answers the server's
Close, so the server stays in its closing handshake (aiohttp waits for the reply)
while the flood goes on. Every frame that reaches the victim is recorded; none after
the Close may carry data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from labserver.course import Account, LabServer
from labserver.frames import CloseCode, Frame, Opcode
from labserver.rawws import close_code, handshake_request

from .conftest import Client

DATA_OPCODES = {Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION}
AFTER_CLOSE = 1.5  # seconds the victim keeps listening after the server's Close frame


class RawVictim:
    """A bare WebSocket client that records every frame it receives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames: list[Frame] = []
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, lab: LabServer, token: str) -> RawVictim:
        url = urlsplit(lab.url)
        assert url.hostname is not None and url.port is not None
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(handshake_request(url.hostname, url.port, f"/ws?token={token}"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        self.writer.write(Frame(Opcode.TEXT, text.encode(), masking_key=os.urandom(4)).serialize())

    async def next_frame(self, timeout: float) -> Frame | None:
        """The next frame, or None at EOF or after ``timeout`` seconds. Pings are answered
        until the server's Close arrives; after it, the victim says nothing at all."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = Frame.parse(self._buffer)
            if parsed is not None:
                frame, used = parsed
                del self._buffer[:used]
                self.frames.append(frame)
                if frame.opcode is Opcode.PING and not self.closed:
                    self.writer.write(Frame(Opcode.PONG, frame.payload, masking_key=os.urandom(4)).serialize())
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self._buffer += chunk

    @property
    def closed(self) -> bool:
        return any(f.opcode is Opcode.CLOSE for f in self.frames)

    async def join(self, room: str) -> None:
        self.send_text(json.dumps({"type": "join", "room": room, "ref": "join"}))
        while (frame := await self.next_frame(5)) is not None:
            if frame.opcode is Opcode.TEXT and json.loads(frame.payload).get("ref") == "join":
                return
        raise AssertionError("no ack to join")

    async def listen_past_close(self, timeout: float = 15) -> None:
        """Read until EOF, or until AFTER_CLOSE seconds after the server's Close frame."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline or await self.next_frame(deadline - time.monotonic()) is None:
                raise AssertionError("the server never sent a Close frame")
        close_at = time.monotonic()
        while time.monotonic() - close_at < AFTER_CLOSE:
            if await self.next_frame(AFTER_CLOSE - (time.monotonic() - close_at)) is None:
                break

    def check(self, expected_code: int) -> None:
        [close_index] = [i for i, f in enumerate(self.frames) if f.opcode is Opcode.CLOSE][:1]
        assert close_code(self.frames[close_index]) == expected_code
        before = [f for f in self.frames[:close_index] if f.opcode is Opcode.TEXT]
        assert any(json.loads(f.payload)["type"] == "chat" for f in before), "the flood never reached the victim"
        after = [f for f in self.frames[close_index + 1 :] if f.opcode in DATA_OPCODES]
        assert after == [], f"{len(after)} data frame(s) after the Close frame, first: {after[0].payload[:80]!r}"

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def flooding(lab: LabServer, accounts: list[Account], room: str) -> AsyncIterator[None]:
    """Chat into ``room`` from every account, ~15 messages/s each (under the rate limit)."""
    clients = [await Client.connect(lab, account) for account in accounts]
    for client in clients:
        assert (await client.request("join", room=room))["type"] == "ack"

    async def flood(client: Client) -> None:
        n = 0
        with contextlib.suppress(Exception):  # the server may go away under it (shutdown case)
            while True:
                n += 1
                await client.send("chat", room=room, text=f"flood {n}")
                await asyncio.sleep(1 / 15)

    tasks = [asyncio.create_task(flood(c)) for c in clients]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


async def _victim_closed_by(
    lab: LabServer, room: str, cause: Callable[[RawVictim, Account], Awaitable[None]], expected_code: int
) -> None:
    victim_account = lab.account(f"victim_{room}")
    victim = await RawVictim.connect(lab, victim_account.token)
    try:
        await victim.join(room)
        flooders = [lab.account(f"flooder{i}_{room}") for i in range(2)]
        async with flooding(lab, flooders, room):
            while sum(f.opcode is Opcode.TEXT for f in victim.frames) < 10:  # the flood is flowing
                assert await victim.next_frame(5) is not None
            await cause(victim, victim_account)
            await victim.listen_past_close()
        victim.check(expected_code)
    finally:
        victim.close()


async def test_no_data_after_a_logout_close(lab: LabServer) -> None:
    async def logout(victim: RawVictim, account: Account) -> None:
        status, _ = await asyncio.to_thread(lab.request, "POST", "/api/logout", None, account.token)
        assert status == 200

    await _victim_closed_by(lab, "logout_room", logout, CloseCode.POLICY_VIOLATION)


async def test_no_data_after_a_rate_limit_close(lab: LabServer) -> None:
    async def misbehave(victim: RawVictim, account: Account) -> None:
        for _ in range(200):  # garbage takes rate-limit tokens too; the last strike closes
            victim.send_text("not json")

    await _victim_closed_by(lab, "ratelimit_room", misbehave, CloseCode.POLICY_VIOLATION)


@pytest.mark.timeout(60)
async def test_no_data_after_a_shutdown_close(tmp_path: Path) -> None:
    with LabServer(tmp_path, ping_interval=1) as own_lab:

        async def shut_down(victim: RawVictim, account: Account) -> None:
            asyncio.get_running_loop().run_in_executor(None, own_lab.stop)

        await _victim_closed_by(own_lab, "shutdown_room", shut_down, CloseCode.GOING_AWAY)
