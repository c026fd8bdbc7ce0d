"""What an idle socket keeps, and that keeping less changes nothing it does.

The lab holds thousands of idle WebSockets (lesson 07), so each costs what it must and no
more: no mutable set for topics it never subscribed to, no HTTP parser once it speaks
WebSocket, no parsed Content-Type on its 101 response, no ``request.query`` multidict
(token included) cached on its URL. These tests check the behaviour around each cut,
not sizes: sizes depend on the interpreter and are measured by ``benchmarks/peers.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import make_mocked_request

from labserver.aiohttp_compat import LabWebSocketResponse
from labserver.app import _security_headers
from labserver.hub import Connection, Hub
from labserver.ratelimit import TokenBucket
from labserver.ws import _query_param


def _conn(socket_id: str, user_id: int) -> Connection:
    return Connection(socket_id, user_id, f"user{user_id}", float("inf"), TokenBucket(1, 1, 0.0), sink=None)  # type: ignore[arg-type]


def test_sockets_that_never_subscribe_share_nothing_they_could_change() -> None:
    hub = Hub()
    a, b = _conn("s_a", 1), _conn("s_b", 2)
    hub.connect(a)
    hub.connect(b)
    assert hub.subscribe(a, "presence")
    assert "presence" in a.topics and "presence" not in b.topics  # b's (shared, empty) topics untouched
    assert not hub.subscribe(a, "presence")
    assert hub.subscribe(b, "post:1")
    assert a.topics == {"presence"} and b.topics == {"post:1"}
    assert not hub.unsubscribe(b, "presence")
    assert hub.unsubscribe(a, "presence") and a.topics == set()
    assert hub.subscribe(a, "presence")  # again, after its set emptied
    hub.disconnect(a)
    hub.disconnect(b)
    assert hub.topics == {} and a.topics == set() and b.topics == set()


def test_an_unsubscribed_socket_is_refused_an_unsubscribe() -> None:
    hub = Hub()
    a = _conn("s_a", 1)
    hub.connect(a)
    assert not hub.unsubscribe(a, "presence")
    assert hub.topic_targets("presence") == frozenset()


@pytest.mark.parametrize(
    "query",
    ["token=abc.def-ghi_jkl", "x=1&token=a%2Bb+c&token=second", "token=", "token", "x=1", "", "token=%ZZ&y=2"],
)
def test_the_token_is_read_from_the_query_as_request_query_reads_it(query: str) -> None:
    request = make_mocked_request("GET", f"/ws?{query}" if query else "/ws")
    assert _query_param(request, "token") == request.query.get("token")


async def test_an_open_socket_drops_its_http_parser_and_still_talks_and_closes() -> None:
    """After the upgrade the connection's HTTP request parser is gone; frames still flow
    both ways, a client close is echoed (RFC 6455 section 5.5.1), and the lab's security
    headers hook (``on_response_prepare``) leaves no parsed content type on the 101 response."""
    opened: list[tuple[LabWebSocketResponse, Any]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = LabWebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        opened.append((ws, request.protocol))
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
        return ws

    app = web.Application()
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/ws") as client:
            await client.send_str("hello")
            assert (await asyncio.wait_for(client.receive(), 5)).data == "HELLO"
            ws, protocol = opened[0]
            assert protocol._parser is None
            assert "_stored_content_type" not in vars(ws)
            await client.send_str("again")
            assert (await asyncio.wait_for(client.receive(), 5)).data == "AGAIN"
            await client.close(code=4000)
            assert client.close_code == 4000  # echoed (LabWebSocketResponse.close)
    finally:
        await runner.cleanup()
