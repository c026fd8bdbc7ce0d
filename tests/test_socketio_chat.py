"""Lesson 09's Socket.IO chat: a child process that starts, restarts on its port and stops; Engine.IO
spoken by hand over long polling; what a plain WebSocket client gets from it; a refused connect."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import socketio  # type: ignore[import-untyped]  # python-socketio ships no type information

from labserver.course.socketio_chat import SocketIOChat, engineio_by_hand, plain_websocket_attempts


@pytest.fixture(scope="module")
def chat() -> Iterator[SocketIOChat]:
    with SocketIOChat(ping_interval=1, ping_timeout=1) as running:
        yield running


async def test_engineio_by_hand_walks_through_the_packets(chat: SocketIOChat) -> None:
    exchanges = await engineio_by_hand(chat.url, username="bob", room="by_hand")
    assert [e.request.split()[0] for e in exchanges] == ["GET", "POST", "GET", "POST", "GET", "POST", "GET", "POST"]
    assert all(e.status == 200 for e in exchanges)
    opened = json.loads(exchanges[0].received[1:])
    assert exchanges[0].received.startswith("0") and "websocket" in opened["upgrades"]
    assert exchanges[2].received.startswith('40{"sid":')
    assert exchanges[4].received.startswith("431[")
    assert exchanges[6].received == '432[{"seq":1}]'
    assert "→ GET /socket.io/?EIO=4&transport=polling\n← 200 '0{" in exchanges[0].describe()


async def test_a_plain_websocket_client_fails_and_the_log_says_why(chat: SocketIOChat) -> None:
    outcomes = dict(await plain_websocket_attempts(chat.url))
    assert list(outcomes.values())[:2] == ["refused: HTTP 200", "refused: HTTP 400"]
    assert list(outcomes.values())[2].startswith('0{"sid":')
    assert outcomes["then a plain JSON message is sent"] == "closed: code 1006"
    assert any(line.startswith("ValueError: invalid literal for int()") for line in chat.logs)


async def test_a_connect_without_username_is_refused(chat: SocketIOChat) -> None:
    client = socketio.AsyncClient(handle_sigint=False, reconnection=False)
    errors: list[object] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(chat.url, auth={}, transports=["websocket"])
    assert errors == [{"message": "auth needs a username"}]  # the CONNECT_ERROR packet, 44{"message": ...}


async def test_chats_reach_the_room_but_not_the_sender() -> None:
    with SocketIOChat() as chat:
        ann = socketio.AsyncClient(handle_sigint=False, reconnection=False)
        bob = socketio.AsyncClient(handle_sigint=False, reconnection=False)
        got: dict[str, list[object]] = {"ann": [], "bob": []}
        ann.on("chat", lambda data: got["ann"].append(data))
        bob.on("chat", lambda data: got["bob"].append(data))
        for name, client in (("ann", ann), ("bob", bob)):
            await client.connect(chat.url, auth={"username": name}, transports=["websocket"])
            await client.call("join", "lobby")
        assert await ann.call("chat", {"room": "lobby", "text": "hi"}) == {"seq": 1}
        assert await ann.call("chat", {"room": "elsewhere", "text": "hi"}) == {"error": "join 'elsewhere' first"}
        await bob.call("join", "lobby")  # a round trip: the chat was emitted before this ack
        assert got == {"ann": [], "bob": [{"room": "lobby", "from": "ann", "text": "hi", "seq": 1}]}
        await ann.disconnect()
        await bob.disconnect()


def test_restart_keeps_the_port_and_stop_ends_the_process() -> None:
    chat = SocketIOChat().start()
    port, proc = chat.port, chat.proc
    assert proc is not None
    chat.restart()
    assert chat.running and chat.port == port and chat.proc is not proc
    assert chat.stop() == 0
    assert not chat.running and proc.poll() is not None
    assert "stopped" in repr(chat)
