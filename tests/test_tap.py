"""The frame tap against the real lab server, with real clients (and a fake upstream for
what the lab never does): frames both ways, masking, exact byte counts, plain HTTP,
close codes, concurrent connections, and a relay that survives anything it cannot read."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame as WsFrame
from websockets.http11 import Response
from websockets.uri import parse_uri

from labserver.course import Account, LabServer
from labserver.frames import Frame, FrameReader, Opcode, close_payload, parse_close, parse_header
from labserver.rawws import handshake_request
from labserver.tap import (
    CapturedFrame,
    CaptureError,
    ConnectionInfo,
    Direction,
    FrameTap,
    Traffic,
)
from labserver.wire import ConnectionReader

from .conftest import until

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
KEY = b"\x0a\x0b\x0c\x0d"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """The default heartbeat (20 s): no server pings in the middle of these captures."""
    with LabServer(tmp_path_factory.mktemp("tap")) as proc:
        yield proc


_names = iter(range(10**9))


@pytest.fixture
def account(lab: LabServer) -> Callable[[], Account]:
    return lambda: lab.account(f"tap{next(_names)}")


async def request(ws: Any, type: str, **fields: Any) -> dict[str, Any]:
    ref = f"r{next(_names)}"
    await ws.send(json.dumps({"type": type, "ref": ref, **fields}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message.get("ref") == ref:
            return message


def of(tap: FrameTap, cid: int, direction: Direction | None = None) -> list[CapturedFrame]:
    return [c for c in tap.frames if c.connection_id == cid and (direction is None or c.direction is direction)]


def only_connection(tap: FrameTap) -> ConnectionInfo:
    (conn,) = tap.connections()
    return conn


# --- counting clients: every byte they write and read -------------------------------------


class SansIOClient:
    """websockets' own client protocol (sans-I/O) over a plain asyncio connection, so that
    the test knows exactly how many bytes the client socket sent and received."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol) -> None:
        self.reader, self.writer, self.protocol = reader, writer, protocol
        self.sent = self.received = 0
        self.messages: list[str] = []

    @classmethod
    async def connect(cls, tap: FrameTap, token: str) -> SansIOClient:
        protocol = ClientProtocol(parse_uri(f"{tap.ws_url}?token={token}"))
        reader, writer = await asyncio.open_connection(tap.host, tap.port)
        client = cls(reader, writer, protocol)
        protocol.send_request(protocol.connect())
        await client.flush()
        response = await client.next_event()
        assert isinstance(response, Response) and response.status_code == 101
        return client

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
                self.sent += len(data)
            elif self.writer.can_write_eof():
                self.writer.write_eof()
        await self.writer.drain()

    async def next_event(self) -> Any:
        while True:
            events = self.protocol.events_received()
            if events:
                self._pending = events[1:]
                return events[0]
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            self.received += len(data)
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
                if not self.protocol.events_received():
                    return None
            await self.flush()  # pongs and the close reply

    async def recv_json(self) -> dict[str, Any]:
        while True:
            event = self._pending.pop(0) if getattr(self, "_pending", None) else await self.next_event()
            if isinstance(event, WsFrame) and event.opcode.name == "TEXT":
                return json.loads(bytes(event.data))

    async def send_json(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        await self.flush()

    async def close(self) -> None:
        self.protocol.send_close(1000, "done")
        await self.flush()
        while await self.next_event() is not None:  # the server's close, then EOF
            pass
        self.writer.close()


# --- frames both ways ----------------------------------------------------------------------


async def test_frames_both_ways_match_what_was_sent_and_received(tap: FrameTap, account: Any) -> None:
    acct = account()
    sent: list[str] = []
    received: list[str | bytes] = []
    async with websockets.connect(f"{tap.ws_url}?token={acct.token}", compression=None) as ws:
        received.append(await ws.recv())  # welcome
        for message in (
            {"type": "join", "room": "tapped", "ref": 1},
            {"type": "chat", "room": "tapped", "text": "héllo through the tap", "ref": 2},
            {"type": "ping", "ref": 3},
        ):
            sent.append(json.dumps(message))
            await ws.send(sent[-1])
            while True:
                received.append(await ws.recv())
                if json.loads(received[-1]).get("ref") == message["ref"]:
                    break
    await tap.wait_for(lambda c: c.direction is S2C and c.frame.opcode is Opcode.CLOSE)
    cid = only_connection(tap).id
    up = [c.frame for c in of(tap, cid, C2S) if c.frame.opcode is Opcode.TEXT]
    down = [c.frame for c in of(tap, cid, S2C) if c.frame.opcode is Opcode.TEXT]
    assert [f.payload.decode() for f in up] == sent
    assert [f.payload.decode() for f in down] == received
    assert [c.frame.opcode for c in of(tap, cid)][-2:] == [Opcode.CLOSE, Opcode.CLOSE]
    assert tap.errors == []


async def test_client_frames_are_masked_server_frames_are_not(tap: FrameTap, account: Any) -> None:
    async with websockets.connect(f"{tap.ws_url}?token={account().token}", compression=None) as ws:
        await ws.recv()
        await request(ws, "join", room="masks")
        await ws.send("x" * 200)  # a 16-bit length, masked
        await ws.ping(b"are you there?")
        await request(ws, "ping")
    await tap.wait_for(lambda c: c.direction is S2C and c.frame.opcode is Opcode.CLOSE)
    captured = tap.frames
    assert {c.direction for c in captured} == {C2S, S2C}
    for c in captured:
        header = parse_header(c.raw_header)
        assert header is not None and header.size == len(c.raw_header)
        assert c.raw_header == c.frame.serialize()[: header.size]  # the header exactly as on the wire
        assert c.size == len(c.frame.serialize())
        if c.direction is C2S:
            assert c.raw_header[1] & 0x80 and len(c.frame.masking_key or b"") == 4, c.describe()
            assert c.raw_header[-4:] == c.frame.masking_key
        else:
            assert not c.raw_header[1] & 0x80 and c.frame.masking_key is None, c.describe()
    keys = [c.frame.masking_key for c in captured if c.direction is C2S]
    assert len(set(keys)) == len(keys)  # a fresh key for every frame (section 5.3)
    long = next(c for c in captured if c.frame.payload == b"x" * 200)
    assert long.raw_header[1] & 0x7F == 126 and len(long.raw_header) == 8
    pong = next(c for c in captured if c.frame.opcode is Opcode.PONG)
    assert pong.direction is S2C and pong.frame.payload == b"are you there?"


async def test_byte_counts_equal_what_the_client_socket_sent_and_received(tap: FrameTap, account: Any) -> None:
    client = await SansIOClient.connect(tap, account().token)
    http_sent, http_received_min = client.sent, client.received
    welcome = await client.recv_json()
    assert welcome["type"] == "welcome"
    await client.send_json({"type": "join", "room": "counted", "ref": "j"})
    while (await client.recv_json()).get("ref") != "j":
        pass
    for i in range(20):
        await client.send_json({"type": "chat", "room": "counted", "text": f"message {i} " + "z" * (i * 20), "ref": i})
    while (await client.recv_json()).get("ref") != 19:
        pass
    await client.close()
    await until(lambda: not only_connection(tap).open, what="connection closed")
    conn = only_connection(tap)
    assert conn.upgraded and conn.requests == 1 and conn.responses == 1
    assert conn.traffic.sent == client.sent
    assert conn.traffic.received == client.received
    assert conn.traffic.http_sent == http_sent  # the handshake request, and nothing else
    assert conn.traffic.http_received <= http_received_min  # the 101 head (the welcome may share its read)
    # the WebSocket bytes are exactly the frames the tap captured
    assert conn.traffic.ws_sent == sum(c.size for c in of(tap, conn.id, C2S))
    assert conn.traffic.ws_received == sum(c.size for c in of(tap, conn.id, S2C))
    assert conn.frames_sent == len(of(tap, conn.id, C2S)) == 1 + 20 + 1  # join, chats, close
    assert tap.totals() == conn.traffic


async def test_plain_http_requests_are_counted(tap: FrameTap, lab: LabServer, account: Any) -> None:
    acct = account()
    reader, writer = await asyncio.open_connection(tap.host, tap.port)
    body = json.dumps({"text": "over http"}).encode()
    requests = [
        f"POST /api/rooms/polled/messages HTTP/1.1\r\nHost: {tap.host}:{tap.port}\r\n"
        f"Authorization: Bearer {acct.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
        f"GET /api/rooms/polled/messages?after=0 HTTP/1.1\r\nHost: {tap.host}:{tap.port}\r\n"
        f"Authorization: Bearer {acct.token}\r\n\r\n".encode(),
        f"HEAD /healthz HTTP/1.1\r\nHost: {tap.host}:{tap.port}\r\n\r\n".encode(),
        f"GET /api/rooms/polled/messages?after=1 HTTP/1.1\r\nHost: {tap.host}:{tap.port}\r\n"
        f"Authorization: Bearer {acct.token}\r\n\r\n".encode(),
    ]
    sent = received = 0
    answers = []
    for raw in requests:  # one keep-alive connection, one request at a time
        writer.write(raw)
        sent += len(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0 if raw.startswith(b"HEAD") else int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body_bytes = await reader.readexactly(length)
        received += len(head) + length
        answers.append((head.split(b" ")[1], body_bytes))
    writer.close()
    assert [status for status, _ in answers] == [b"201", b"200", b"200", b"200"]
    assert json.loads(answers[3][1])["messages"] == []  # a short poll that found nothing
    await until(lambda: not only_connection(tap).open)
    conn = only_connection(tap)
    assert (conn.upgraded, conn.requests, conn.responses) == (False, 4, 4)
    assert conn.traffic == Traffic(http_sent=sent, http_received=received, connections=1)
    assert tap.frames == [] and tap.errors == []
    assert [h.describe().split(" ", 2)[2] for h in tap.heads] == [
        "POST /api/rooms/polled/messages HTTP/1.1",
        "HTTP/1.1 201 Created",
        "GET /api/rooms/polled/messages?after=0 HTTP/1.1",
        "HTTP/1.1 200 OK",
        "HEAD /healthz HTTP/1.1",
        "HTTP/1.1 200 OK",
        "GET /api/rooms/polled/messages?after=1 HTTP/1.1",
        "HTTP/1.1 200 OK",
    ]
    assert sum(h.size for h in tap.heads) + len(body) + sum(len(b) for _, b in answers) == conn.traffic.total


async def test_refused_upgrade_is_all_http(tap: FrameTap, lab: LabServer) -> None:
    reader, writer = await asyncio.open_connection(tap.host, tap.port)
    raw = handshake_request(tap.host, tap.port, "/ws?token=forged")
    writer.write(raw)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    received = head + await asyncio.wait_for(reader.readexactly(length), 5)
    writer.close()
    assert b" 401 " in received.split(b"\r\n")[0]
    await until(lambda: not only_connection(tap).open)
    conn = only_connection(tap)
    assert not conn.upgraded and conn.traffic == Traffic(http_sent=len(raw), http_received=len(received), connections=1)
    assert tap.frames == []


async def test_frames_sent_with_the_handshake_are_captured_after_the_101(tap: FrameTap, account: Any) -> None:
    raw = handshake_request(tap.host, tap.port, f"/ws?token={account().token}")
    ping = Frame(Opcode.TEXT, b'{"type":"ping","ref":"early"}', masking_key=KEY).serialize()
    reader, writer = await asyncio.open_connection(tap.host, tap.port)
    writer.write(raw + ping)  # in the same write: the tap holds it until the server says 101
    captured = await tap.wait_for(lambda c: c.direction is S2C and b'"early"' in c.frame.payload)
    writer.close()
    assert json.loads(captured.frame.payload)["type"] == "pong"
    (early,) = of(tap, captured.connection_id, C2S)
    assert early.frame.payload == b'{"type":"ping","ref":"early"}' and early.frame.masking_key == KEY
    conn = tap.connection(captured.connection_id)
    assert conn.traffic.http_sent == len(raw) and conn.traffic.ws_sent == len(ping)


# --- close frames and bad frames --------------------------------------------------------------


async def test_close_frames_are_captured_with_their_codes(tap: FrameTap, account: Any) -> None:
    ws = await websockets.connect(f"{tap.ws_url}?token={account().token}")
    await ws.recv()
    await ws.close(code=4001, reason="see you")
    mine = await tap.wait_for(lambda c: c.direction is C2S and c.frame.opcode is Opcode.CLOSE)
    theirs = await tap.wait_for(lambda c: c.direction is S2C and c.frame.opcode is Opcode.CLOSE)
    assert parse_close(mine.frame.payload).code == 4001 and parse_close(mine.frame.payload).reason == "see you"
    # Section 5.5.1: the answer "typically echos" the code; aiohttp answers 1000 whatever it got.
    assert parse_close(theirs.frame.payload).code in (4001, 1000)
    assert mine.describe().startswith("\u2192 #") and "4001 application 'see you'" in mine.describe()


@pytest.mark.parametrize(
    ("wire", "code", "tap_error"),
    [
        (Frame(Opcode.TEXT, b'{"type":"ping"}').serialize(), 1002, None),  # unmasked: the tap shows it
        (bytes([0x83, 0x80]) + KEY, 1002, "reserved opcode 0x3"),  # the tap cannot read it either
        (Frame(Opcode.TEXT, b"\xff\xfe", masking_key=KEY).serialize(), 1007, None),
        (Frame(Opcode.TEXT, b"x" * (64 * 1024 + 1), masking_key=KEY).serialize(), 1009, None),
    ],
    ids=["unmasked", "reserved_opcode", "bad_utf8", "too_big"],
)
async def test_bad_frames_and_the_servers_close_code(
    tap: FrameTap, account: Any, wire: bytes, code: int, tap_error: str | None
) -> None:
    reader, writer = await asyncio.open_connection(tap.host, tap.port)
    writer.write(handshake_request(tap.host, tap.port, f"/ws?token={account().token}"))
    await reader.readuntil(b"\r\n\r\n")
    welcome = await tap.wait_for(lambda c: c.direction is S2C)
    writer.write(wire)
    close = await tap.wait_for(lambda c: c.direction is S2C and c.frame.opcode is Opcode.CLOSE)
    rest = await asyncio.wait_for(reader.read(), 5)  # the client still gets every byte
    writer.close()
    assert parse_close(close.frame.payload).code == code
    assert rest.endswith(close.frame.serialize())
    assert welcome.connection_id == close.connection_id
    up = of(tap, close.connection_id, C2S)
    if tap_error is None:
        assert [c.raw_header + c.frame.serialize()[len(c.raw_header) :] for c in up] == [wire]
        assert tap.errors == []
    else:
        assert up == []
        (error,) = tap.errors
        assert tap_error in error.message and error.direction is C2S and error.raw == wire[:14]
        assert "cannot read" in error.describe()


async def test_a_subscriber_that_raises_does_not_break_the_relay(tap: FrameTap, account: Any) -> None:
    seen: list[Any] = []

    def broken(event: Any) -> None:
        raise RuntimeError("subscriber bug")

    tap.subscribe(broken)
    unsubscribe = tap.subscribe(seen.append)
    async with websockets.connect(f"{tap.ws_url}?token={account().token}") as ws:
        await ws.recv()
        assert (await request(ws, "ping"))["type"] == "pong"
        n = len(seen)
        unsubscribe()
        assert (await request(ws, "ping"))["type"] == "pong"
    assert n == 3 and len(seen) == 3 and all(isinstance(e, CapturedFrame) for e in seen)
    assert tap.subscriber_errors and "subscriber bug" in tap.subscriber_errors[0]


async def test_a_reading_bug_does_not_break_the_relay(
    tap: FrameTap, account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*args: Any) -> None:
        raise ZeroDivisionError("tap bug")

    monkeypatch.setattr(ConnectionReader, "_read_frames", bug)
    async with websockets.connect(f"{tap.ws_url}?token={account().token}") as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        assert (await request(ws, "ping"))["type"] == "pong"
    await until(lambda: len(tap.errors) == 2)
    assert {e.direction for e in tap.errors} == {C2S, S2C}
    assert all("ZeroDivisionError: tap bug" in e.message for e in tap.errors)
    assert only_connection(tap).traffic.ws_received > 0


# --- a fake upstream, for what the lab server never sends --------------------------------------


@pytest.fixture
async def fake_upstream() -> AsyncIterator[Callable[[Callable[..., Awaitable[None]]], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def serve(handler: Callable[..., Awaitable[None]]) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield serve
    for server in servers:
        server.close()


UPGRADE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
)


async def test_unreadable_server_bytes_are_relayed_unchanged(
    fake_upstream: Callable[[Callable[..., Awaitable[None]]], Awaitable[int]],
) -> None:
    garbage = os.urandom(5000)
    good = Frame(Opcode.TEXT, b"before the garbage").serialize()
    big = Frame(Opcode.BINARY, os.urandom(2 << 20)).serialize()  # over the tap's capture limit

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(UPGRADE_101 + good + bytes([0x8F, 0x00]) + garbage)  # reserved opcode 0xF
        await writer.drain()
        data = await reader.readexactly(len(big))
        writer.write(data[::-1])  # prove the other direction still flows, both ways
        await writer.drain()
        writer.close()

    port = await fake_upstream(upstream)
    async with FrameTap("127.0.0.1", port) as tap:
        reader, writer = await asyncio.open_connection(tap.host, tap.port)
        request_bytes = handshake_request("127.0.0.1", port)
        writer.write(request_bytes)
        expected = UPGRADE_101 + good + bytes([0x8F, 0x00]) + garbage
        assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
        writer.write(big)
        assert await asyncio.wait_for(reader.readexactly(len(big)), 5) == big[::-1]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await until(lambda: not only_connection(tap).open)
        conn = only_connection(tap)
        assert conn.upgraded
        relayed_down = len(expected) - len(UPGRADE_101) + len(big)
        assert conn.traffic == Traffic(len(request_bytes), len(UPGRADE_101), len(big), relayed_down, connections=1)
        [captured] = tap.frames
        assert captured.frame.payload == b"before the garbage"
        errors = sorted(tap.errors, key=lambda e: e.direction.value)
        assert [e.direction for e in errors] == [C2S, S2C]
        assert "exceeds limit" in errors[0].message and errors[0].raw == big[:14]
        assert "reserved opcode 0xF" in errors[1].message


async def test_a_refused_upgrade_turns_pipelined_bytes_back_into_http(
    fake_upstream: Callable[[Callable[..., Awaitable[None]]], Awaitable[int]],
) -> None:
    refusal = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno!"
    second = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(refusal)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    port = await fake_upstream(upstream)
    async with FrameTap("127.0.0.1", port) as tap:
        reader, writer = await asyncio.open_connection(tap.host, tap.port)
        first = handshake_request("127.0.0.1", port)
        writer.write(first + second)  # the client did not wait for the 101 it hoped for
        got = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert got.endswith(b"ok")
        await until(lambda: not only_connection(tap).open)
        conn = only_connection(tap)
        assert (conn.upgraded, conn.requests, conn.responses) == (False, 2, 2)
        assert conn.traffic == Traffic(http_sent=len(first + second), http_received=len(got), connections=1)
        assert tap.frames == [] and tap.errors == []


async def test_unreachable_upstream_is_an_error_not_a_crash() -> None:
    async with FrameTap("127.0.0.1", 1) as tap:  # nothing listens on port 1
        reader, writer = await asyncio.open_connection(tap.host, tap.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await until(lambda: tap.errors)
        assert "cannot reach 127.0.0.1:1" in tap.errors[0].message


# --- many connections --------------------------------------------------------------------------


async def test_concurrent_connections_are_kept_apart(tap: FrameTap, account: Any) -> None:
    async def talk(name: str, n: int) -> str:
        async with websockets.connect(f"{tap.ws_url}?token={account().token}") as ws:
            welcome = json.loads(await ws.recv())
            await asyncio.gather(*(ws.send(json.dumps({"type": "ping", "payload": f"{name}-{i}"})) for i in range(n)))
            for _ in range(n):
                await ws.recv()
            return welcome["socket_id"]

    names = [f"client{i}" for i in range(8)]
    socket_ids = await asyncio.gather(*(talk(name, 10 + i) for i, name in enumerate(names)))
    await until(lambda: all(not c.open for c in tap.connections()) and len(tap.connections()) == 8)
    by_socket: dict[str, int] = {}
    for conn in tap.connections():
        welcome = json.loads(of(tap, conn.id, S2C)[0].frame.payload)
        by_socket[welcome["socket_id"]] = conn.id
    for i, (name, socket_id) in enumerate(zip(names, socket_ids, strict=True)):
        cid = by_socket[socket_id]
        pings = [json.loads(c.frame.payload)["payload"] for c in of(tap, cid, C2S) if c.frame.opcode is Opcode.TEXT]
        pongs = [json.loads(c.frame.payload)["payload"] for c in of(tap, cid, S2C) if b'"pong"' in c.frame.payload]
        assert pings == pongs == [f"{name}-{j}" for j in range(10 + i)]
    assert tap.totals() == sum((c.traffic for c in tap.connections()), Traffic())


# --- the API around it ---------------------------------------------------------------------------


async def test_bounded_deque_reset_and_repr(lab: LabServer, account: Any) -> None:
    tap = FrameTap.for_lab(lab, max_frames=5)
    assert repr(tap).startswith("FrameTap(stopped")
    async with tap:
        assert repr(tap) == f"FrameTap(127.0.0.1:{tap.port} \u2192 127.0.0.1:{lab.port})"
        assert tap.url == f"http://127.0.0.1:{tap.port}" and tap.ws_url == f"ws://127.0.0.1:{tap.port}/ws"
        async with websockets.connect(f"{tap.ws_url}?token={account().token}") as ws:
            await ws.recv()
            for _ in range(5):
                await request(ws, "ping")
            assert len(tap.frames) == 5 and tap.captured == 11
            assert tap.frames[-1].t >= tap.frames[0].t > 0
            tap.reset()
            assert tap.frames == [] and tap.heads == [] and tap.captured == 0 and tap.totals() == Traffic()
            await request(ws, "ping")
            assert tap.totals().ws_sent > 0 and tap.totals().http == 0
    assert not tap.running and repr(tap).startswith("FrameTap(stopped")


async def test_close_aborts_open_connections(lab: LabServer, account: Any) -> None:
    tap = await FrameTap.for_lab(lab).start()
    ws = await websockets.connect(f"{tap.ws_url}?token={account().token}")
    await ws.recv()
    await asyncio.wait_for(tap.close(), 5)
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1006  # no close frame: the TCP connection just ended


def test_for_lab_needs_a_url() -> None:
    class NotStarted:
        url = ""

    with pytest.raises(ValueError, match="is the lab running"):
        FrameTap.for_lab(NotStarted())


def test_capture_error_and_frame_describe() -> None:
    frame = Frame(Opcode.CLOSE, close_payload(1000), masking_key=KEY)
    wire = frame.serialize()
    captured = CapturedFrame(C2S, 3, frame, wire[:6], 0.5)
    assert captured.size == len(wire)
    assert captured.describe() == (
        "\u2192 #3 CLOSE \u00b7 FIN \u00b7 masked (key 0a0b0c0d) \u00b7 2 bytes \u00b7 1000 NORMAL"
    )
    error = CaptureError(S2C, 4, "reserved opcode 0x3", b"\x83\x00", 1.0)
    assert error.describe() == "\u2190 #4 cannot read: reserved opcode 0x3"


# --- capture access and a bandwidth limit (lesson 03) ------------------------------------------


async def test_frame_bytes_are_the_bytes_each_side_was_given(tap: FrameTap, account: Any) -> None:
    async with websockets.connect(f"{tap.ws_url}?token={account().token}", compression=None) as ws:
        await ws.recv()
        await request(ws, "join", room="bytes")
        await ws.send("x" * 300)  # a 16-bit length, masked; answered with an error
        await ws.ping(b"are you there?")
        await request(ws, "ping")
    await tap.wait_for(lambda c: c.direction is S2C and c.frame.opcode is Opcode.CLOSE)
    conn = only_connection(tap)
    up, down = tap.frame_bytes(conn.id, C2S), tap.frame_bytes(conn.id, S2C)
    assert (len(up), len(down)) == (conn.traffic.ws_sent, conn.traffic.ws_received)
    for data, direction in ((up, C2S), (down, S2C)):
        assert data == b"".join(c.frame.serialize() for c in of(tap, conn.id, direction))
        assert FrameReader().feed(data) == [c.frame for c in of(tap, conn.id, direction)]
    assert tap.frame_bytes(conn.id + 1, C2S) == b""


async def test_a_bandwidth_limit_paces_bytes_in_order_and_unchanged(lab: LabServer, account: Any) -> None:
    rate = 400_000
    big = json.dumps({"type": "ping", "ref": "big", "payload": "y" * 40_000})
    async with FrameTap.for_lab(lab, bytes_per_second=rate) as slow:
        assert slow.bytes_per_second == rate
        async with websockets.connect(f"{slow.ws_url}?token={account().token}", compression=None) as ws:
            await ws.recv()
            await ws.send(big)
            await ws.send(json.dumps({"type": "ping", "ref": "small"}))
            answers = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
        assert [a["ref"] for a in answers] == ["big", "small"]  # in order: the small one waited
        assert answers[0]["payload"] == "y" * 40_000
        sent = [c for c in slow.frames if c.direction is C2S and c.frame.opcode is Opcode.TEXT]
        big_up = next(c for c in sent if c.size > 40_000)
        # A lower bound only (a loaded machine can only be slower): the big frame's last byte left
        # the tap no sooner than the link could carry it after the handshake's first byte.
        assert big_up.t - slow.connections()[0].opened >= 0.9 * big_up.size / rate
        assert slow.errors == []


def test_a_bandwidth_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bytes_per_second must be positive"):
        FrameTap("127.0.0.1", 1, bytes_per_second=0)
