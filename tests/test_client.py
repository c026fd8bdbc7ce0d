"""LabClient against a real lab server: replies, errors, handlers, wait_for, reconnection and resume."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labserver.course import Account, LabServer
from labserver.course import client as client_module
from labserver.course.client import BACKOFF_CAP, LabClient, LabError, backoff_delay, reconnect_delay

from .conftest import until as _until

until = functools.partial(_until, timeout=10.0)  # this file's default wait


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """The conftest lab plus an admin token, so tests can drop connections server-side."""
    options = {"ping_interval": 1, "auth_timeout": 1, "typing_ttl": 1}
    with LabServer(tmp_path_factory.mktemp("lab"), admin_token="x", **options) as proc:
        yield proc


@pytest.fixture
async def clients() -> Any:
    """Clients to close at the end of the test, whatever happened."""
    made: list[LabClient] = []
    yield made
    for client in made:
        await client.close()


@pytest.fixture
def connect(lab: LabServer, clients: list[LabClient]) -> Callable[..., Any]:
    async def make(account: Account, **kwargs: Any) -> LabClient:
        client = await LabClient.connect(lab, account, **kwargs)
        clients.append(client)
        return client

    return make


def sockets_of(lab: LabServer, account: Account) -> list[str]:
    status, body = lab.request("GET", "/api/me", token=account.token)
    assert status == 200, body
    return list(body["sockets"])


# --- connecting ---------------------------------------------------------------------------


async def test_connect_receives_welcome(lab: LabServer, account: Any, connect: Any) -> None:
    alice = account()
    client = await connect(alice)
    assert client.connected
    assert client.socket_id is not None and client.socket_id.startswith("s_")
    assert client.user == {"id": alice.id, "username": alice.username}
    assert client.welcome["limits"]["rate_per_second"] == 20
    assert client.received["welcome"] == 1
    assert sockets_of(lab, alice) == [client.socket_id]
    assert repr(client) == f"<LabClient {alice.username} connected to 0 rooms>"


async def test_connect_to_a_url_and_async_with(lab: LabServer, account: Any) -> None:
    alice = account()
    async with LabClient.connect(lab.ws_url, alice, name="Alice") as client:
        assert client.connected and repr(client).startswith("<LabClient Alice connected")
        assert sockets_of(lab, alice) == [client.socket_id]
    assert client.closed and repr(client) == "<LabClient Alice closed>"
    await until(lambda: sockets_of(lab, alice) == [])


async def test_refused_token_raises_lab_error(lab: LabServer) -> None:
    with pytest.raises(LabError) as caught:
        await LabClient.connect(lab, Account("not-a-token", {"id": 1, "username": "nobody"}))
    assert caught.value.code == "unauthorized"
    assert "401" in str(caught.value)


# --- sending --------------------------------------------------------------------------------


async def test_send_returns_the_ack_with_seq(account: Any, connect: Any) -> None:
    client = await connect(account())
    joined = await client.join("acks")
    assert joined["type"] == "ack" and joined["room"] == "acks" and joined["last_seq"] == 0
    assert client.rooms == {"acks"}
    first = await client.chat("acks", "one")
    second = await client.send("chat", room="acks", text="two")
    assert (first["type"], first["seq"], second["seq"]) == ("ack", 1, 2)
    assert first["ref"] != second["ref"]
    await until(lambda: client.last_seq.get("acks") == 2)
    assert repr(client).endswith("connected to 1 room>")
    await client.leave("acks")
    assert client.rooms == set()


async def test_error_raises_lab_error_and_the_client_keeps_working(account: Any, connect: Any) -> None:
    client = await connect(account())
    with pytest.raises(LabError) as caught:
        await client.chat("never-joined", "hello?")
    assert caught.value.code == "not_in_room"
    assert caught.value.reply is not None and caught.value.reply["type"] == "error"
    with pytest.raises(LabError) as caught:
        await client.send("teleport", to="mars")
    assert caught.value.code == "unknown_type"
    assert client.connected
    await client.join("after-errors")
    assert (await client.chat("after-errors", "still here"))["seq"] == 1
    assert list(client.errors) == []  # answered errors raise; they are not background errors


async def test_send_nowait_and_dm(account: Any, connect: Any) -> None:
    alice, bob = account(), account()
    a, b = await connect(alice), await connect(bob)
    await b.join("nowait")
    b.send_nowait("chat", room="nowait", text="fire and forget")
    message = await b.wait_for("chat")
    assert message["text"] == "fire and forget" and "ref" not in message
    ack = await a.dm(bob.id, "psst")
    got = await b.wait_for("dm")
    assert (got["text"], got["seq"], got["room"]) == ("psst", ack["seq"], ack["room"])
    assert b.last_seq[ack["room"]] == ack["seq"]
    await a.join("nowait")
    assert (await a.typing("nowait"))["type"] == "ack"
    shown = await b.wait_for("typing")
    assert (shown["user"]["id"], shown["active"]) == (alice.id, True)


# --- receiving ------------------------------------------------------------------------------


async def test_handlers_sync_async_star_and_unsubscribe(account: Any, connect: Any) -> None:
    alice, bob = account(), account()
    a, b = await connect(alice), await connect(bob)
    await b.join("handlers")
    await a.join("handlers")
    sync_seen: list[str] = []
    async_seen: list[str] = []
    every: list[str] = []

    async def slow(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)
        async_seen.append(message["text"])

    def broken(message: dict[str, Any]) -> None:
        raise ZeroDivisionError("handler bug")

    off = b.on("chat", lambda m: sync_seen.append(m["text"]))
    b.on("chat", slow)
    b.on("chat", broken)
    b.on("*", lambda m: every.append(m["type"]))
    await a.chat("handlers", "one")
    await until(lambda: async_seen == ["one"])
    assert sync_seen == ["one"]
    assert "chat" in every
    assert isinstance(b.errors[-1], ZeroDivisionError)
    assert any("handler" in note for note in b.errors[-1].__notes__)

    off()
    off()  # unsubscribing twice is harmless
    await a.chat("handlers", "two")
    await until(lambda: async_seen == ["one", "two"])
    assert sync_seen == ["one"]
    assert every.count("chat") == 2
    assert b.connected  # a failing handler does not hurt the connection


async def test_async_handler_may_send(account: Any, connect: Any) -> None:
    alice, bob = account(), account()
    a, b = await connect(alice), await connect(bob)
    for c in (a, b):
        await c.join("echo")

    async def echo(message: dict[str, Any]) -> None:
        if message["from"]["id"] != bob.id:
            await b.chat("echo", "re: " + message["text"])

    b.on("chat", echo)
    await a.chat("echo", "ping")
    reply = await a.wait_for(lambda m: m.get("type") == "chat" and m["from"]["id"] == bob.id)
    assert reply["text"] == "re: ping"


async def test_wait_for_sees_what_arrived_before_the_call(account: Any, connect: Any) -> None:
    alice, bob = account(), account()
    a, b = await connect(alice), await connect(bob)
    await a.join("waiting")
    await b.join("waiting")
    for text in ("first", "second"):
        await b.chat("waiting", text)
    await until(lambda: a.received["chat"] == 2)
    assert (await a.wait_for("chat"))["text"] == "first"  # arrived before the call
    assert (await a.wait_for("chat"))["text"] == "second"  # the next one, not "first" again
    with pytest.raises(TimeoutError, match="'chat'"):
        await a.wait_for("chat", timeout=0.2)
    waiting = asyncio.create_task(a.wait_for(lambda m: m.get("text") == "third"))
    await b.chat("waiting", "third")
    assert (await waiting)["seq"] == 3


# --- reconnection ---------------------------------------------------------------------------


async def test_reconnects_after_a_drop_and_resumes_exactly_once_in_order(
    lab: LabServer, account: Any, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fixed 0.3 s before reconnecting: the chats below are surely sent while alice is away.
    monkeypatch.setattr(client_module, "reconnect_delay", lambda attempt, rng=None: 0.3)
    alice, bob = account(), account()
    a, b = await connect(alice), await connect(bob)
    room = "resume"
    await a.join(room)
    await b.join(room)
    seen: list[tuple[int, str]] = []
    events: list[str] = []
    a.on("chat", lambda m: seen.append((m["seq"], m["text"])))
    a.on("*", lambda m: events.append(m["type"]))
    for i in range(3):
        await b.chat(room, f"before {i}")
    await until(lambda: len(seen) == 3)

    old = a.socket_id
    lab.drop(old)
    await until(lambda: not a.connected)
    for i in range(5):
        await b.chat(room, f"while away {i}")
    await until(lambda: a.connected)
    for i in range(2):
        await b.chat(room, f"after {i}")
    await until(lambda: len(seen) >= 10 and "resumed" in events)
    await a.send("ping")  # a round trip: whatever the server sent alice before the pong has been handled

    assert a.socket_id != old and sockets_of(lab, alice) == [a.socket_id]
    assert a.reconnects == 1
    assert [seq for seq, _ in seen] == list(range(1, 11))
    assert [text for _, text in seen[3:8]] == [f"while away {i}" for i in range(5)]
    # The missed chats were replayed after the new welcome and before `resumed`.
    tail = events[events.index("welcome") :]
    assert tail[: tail.index("resumed")].count("chat") == 5
    assert a.rooms == {room} and a.last_seq[room] == 10 and not a.resyncs


async def test_a_live_dm_overtaking_the_replay_is_delivered_in_order(
    lab: LabServer, account: Any, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new socket gets direct messages at once, before its resume is answered."""
    monkeypatch.setattr(client_module, "reconnect_delay", lambda attempt, rng=None: 0.3)
    original = LabClient._resume

    async def late_resume(self: LabClient, ws: Any, rooms: list[str]) -> None:
        await asyncio.sleep(0.3)
        await original(self, ws, rooms)

    monkeypatch.setattr(LabClient, "_resume", late_resume)
    alice, bob = account(), account()
    a, b = await connect(alice), await connect(bob)
    texts: list[str] = []
    a.on("dm", lambda m: texts.append(m["text"]))
    await b.dm(alice.id, "one")
    await until(lambda: texts == ["one"])
    old = a.socket_id
    assert old is not None
    lab.drop(old)
    await until(lambda: not a.connected)
    await b.dm(alice.id, "two")  # while alice is away
    await until(lambda: a.socket_id != old)  # back, not resumed yet
    await b.dm(alice.id, "three")  # reaches the new socket live, before the replay of "two"
    await a.wait_connected()  # after `resumed`: what was missed has been delivered
    await a.send("ping")  # a round trip: nothing the server sent before the pong is still on its way
    assert texts == ["one", "two", "three"]
    assert a.last_seq[f"dm:{min(alice.id, bob.id)}:{max(alice.id, bob.id)}"] == 3


async def test_too_far_behind_resyncs_and_joins_again(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "reconnect_delay", lambda attempt, rng=None: 0.3)
    with LabServer(tmp_path, admin_token="x", resume_limit=3) as lab:
        a = await LabClient.connect(lab, lab.account("alice"))
        b = await LabClient.connect(lab, lab.account("bob"))
        try:
            await a.join("busy")
            await b.join("busy")
            assert a.socket_id is not None
            lab.drop(a.socket_id)
            await until(lambda: not a.connected)
            for i in range(5):  # more than the server replays
                await b.chat("busy", f"missed {i}")
            await a.wait_connected()
            assert [(r["room"], r["reason"], r["last_seq"]) for r in a.resyncs] == [("busy", "too_far_behind", 5)]
            assert a.last_seq["busy"] == 5 and a.rooms == {"busy"} and a.received["chat"] == 0
            await b.chat("busy", "back in the flow")
            assert (await a.wait_for("chat"))["text"] == "back in the flow"
        finally:
            await a.close()
            await b.close()


async def test_replayed_duplicates_are_not_delivered_twice(account: Any, connect: Any) -> None:
    alice = account()
    a = await connect(alice)
    await a.join("dups")
    texts: list[str] = []
    a.on("chat", lambda m: texts.append(m["text"]))
    for i in range(4):
        await a.chat("dups", f"m{i}")
    await until(lambda: len(texts) == 4)
    await a.leave("dups")
    resumed = await a.send("resume", room="dups", after=0)  # the server replays all four again
    assert (resumed["type"], resumed["count"]) == ("resumed", 4)
    assert texts == ["m0", "m1", "m2", "m3"]
    assert a.duplicates == 4 and a.received["chat"] == 4


async def test_disconnect_while_waiting_raises_connection_error(lab: LabServer, account: Any, connect: Any) -> None:
    a = await connect(account())
    assert a.ws is not None
    a.ws.transport.pause_reading()  # the ack will come, but will not be read...
    received = lab.health()["messages_in"]
    pending = asyncio.create_task(a.send("ping", payload=1))
    await until(lambda: lab.health()["messages_in"] > received)  # the server has it and answers
    a.ws.transport.abort()  # ...before the connection is lost
    with pytest.raises(ConnectionError, match="'ping'"):
        await pending
    with pytest.raises(ConnectionError):
        await a.send("ping")  # not connected yet
    a.send_nowait("ping")
    assert a.dropped_sends == 1
    await a.wait_connected()
    assert (await a.send("ping", payload=2))["payload"] == 2


async def test_reconnects_after_sigkill_and_restart_on_the_same_port(tmp_path: Any) -> None:
    with LabServer(tmp_path, ping_interval=1) as lab:
        alice, bob = lab.account("alice"), lab.account("bob")
        a = await LabClient.connect(lab, alice)
        b = await LabClient.connect(lab, bob)
        try:
            await a.join("durable")
            await b.join("durable")
            texts: list[str] = []
            a.on("chat", lambda m: texts.append(m["text"]))
            await b.chat("durable", "before the crash")
            await until(lambda: texts == ["before the crash"])
            port, old = lab.port, a.socket_id

            lab.kill()
            await until(lambda: not a.connected and not b.connected)
            await until(lambda: any(isinstance(e, ConnectionRefusedError) for e in a.errors))  # tried while down
            await asyncio.to_thread(lab.start)
            assert lab.port == port
            await a.wait_connected()
            await b.wait_connected()

            assert a.socket_id != old and a.reconnects == 1
            await b.chat("durable", "after the restart")
            await until(lambda: texts == ["before the crash", "after the restart"])
            assert a.last_seq["durable"] == 2 and a.duplicates == 0
        finally:
            await a.close()
            await b.close()


async def test_refused_token_on_reconnect_stops_reconnecting(lab: LabServer, account: Any, connect: Any) -> None:
    alice = account()
    a = await connect(alice)
    status, body = lab.request("POST", "/api/logout", token=alice.token)  # revokes the token, closes 1008
    assert status == 200 and body["closed_sockets"] == 1
    await until(lambda: a.closed)
    assert a.closed_reason is not None and "unauthorized" in a.closed_reason
    assert not a.connected and a.reconnects == 0
    assert isinstance(a.errors[-1], LabError) and a.errors[-1].code == "unauthorized"
    with pytest.raises(ConnectionError):
        await a.wait_for("chat", timeout=1)
    assert repr(a) == f"<LabClient {alice.username} closed>"


async def test_close_is_clean_idempotent_and_stops_reconnecting(lab: LabServer, account: Any) -> None:
    alice = account()
    a = await LabClient.connect(lab, alice)
    await a.join("closing")
    ws = a.ws
    assert ws is not None
    await a.close()
    assert ws.close_code == 1000  # echoed by the server: a clean closing handshake
    assert a.closed and not a.connected and a.closed_reason == "closed by the client"
    await a.close()  # idempotent
    await until(lambda: sockets_of(lab, alice) == [])
    assert a.reconnects == 0 and a._reader is not None and a._reader.done()  # nothing left to reconnect
    with pytest.raises(ConnectionError):
        await a.chat("closing", "too late")
    a.send_nowait("chat", room="closing", text="too late")
    assert a.dropped_sends == 1
    assert list(a.errors) == []


async def test_no_reconnect_when_disabled(lab: LabServer, account: Any, connect: Any) -> None:
    a = await connect(account(), reconnect=False)
    assert a.socket_id is not None
    lab.drop(a.socket_id)
    await until(lambda: a.closed)
    assert a.reconnects == 0 and "reconnect=False" in (a.closed_reason or "")


# --- a vanished network ----------------------------------------------------------------------


async def test_go_silent_is_noticed_only_by_the_heartbeat(lab: LabServer, account: Any, connect: Any) -> None:
    """A pulled cable: no close frame, so the server finds out by its ping (1 s here) going unanswered."""
    alice, bob = account(), account()
    watcher = await connect(alice)
    await watcher.send("subscribe", topic="presence")
    b = await connect(bob)
    await b.join("cable")
    b.go_silent()
    assert b.silent and b.connected  # the client itself notices nothing
    offline = await watcher.wait_for(
        lambda m: m["type"] == "presence" and m["user"]["id"] == b.user["id"] and not m["online"], timeout=10
    )
    assert offline["online"] is False
    assert sockets_of(lab, bob) == []
    assert b.connected and b.reconnects == 0  # still unaware: it never read the server's side going away
    b.send_nowait("chat", room="cable", text="into the void")
    assert b.dropped_sends == 1
    await b.close()  # aborts: no close frame can get through a pulled cable
    assert b.closed and b.reconnects == 0
    with pytest.raises(ConnectionError):
        b.go_silent()


async def test_go_silent_sends_nothing(lab: LabServer, account: Any, connect: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(client_module, "ACK_TIMEOUT", 0.3)
    a = await connect(account())
    await a.join("quiet")
    a.go_silent()
    with pytest.raises(TimeoutError):
        await a.chat("quiet", "lost on the way")
    status, body = lab.request("GET", "/api/rooms/quiet/messages", token=a.account.token)
    assert status == 200 and body["messages"] == []


# --- backoff --------------------------------------------------------------------------------


def test_backoff_delays_grow_then_cap() -> None:
    delays = [backoff_delay(attempt) for attempt in range(10)]
    assert delays[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    assert delays[6:] == [BACKOFF_CAP] * 4 == [5.0] * 4
    assert backoff_delay(10**9) == 5.0  # retrying all night does not overflow
    with pytest.raises(ValueError):
        backoff_delay(-1)


@given(st.integers(min_value=0, max_value=10**6), st.integers())
def test_backoff_is_monotonic_and_jitter_stays_within_it(attempt: int, seed: int) -> None:
    assert 0 < backoff_delay(attempt) <= backoff_delay(attempt + 1) <= BACKOFF_CAP
    assert 0 <= reconnect_delay(attempt, random.Random(seed)) <= backoff_delay(attempt)


def test_full_jitter_spreads_the_waits() -> None:
    rng = random.Random(1)
    waits = [reconnect_delay(8, rng) for _ in range(1000)]
    assert max(waits) <= 5.0 and min(waits) < 0.5 and max(waits) > 4.5  # uniform over [0, 5]


# --- lifecycle: close codes, the backoff policy, the timeline --------------------------------------


async def test_close_sends_its_code_and_the_timeline_records_the_life(lab: LabServer, account: Any) -> None:
    client = await LabClient.connect(lab, account())
    first = client.socket_id
    assert first is not None and client.close_code is None and [e.kind for e in client.timeline] == ["opened"]
    lab.drop(first)  # abort: no close frame
    await until(lambda: client.connected and client.socket_id != first)
    lost = next(e for e in client.timeline if e.kind == "lost")
    assert (lost.socket_id, lost.code, client.close_code) == (first, 1006, 1006)
    kinds = [e.kind for e in client.timeline]
    assert kinds[:3] == ["opened", "lost", "attempt"] and kinds[-1] == "reconnected"
    assert client.timeline[-1].socket_id == client.socket_id
    assert all(a.t <= b.t for a, b in zip(client.timeline, list(client.timeline)[1:], strict=False))
    status, me = lab.request("GET", "/api/me", token=client.account.token)
    with pytest.raises(ValueError, match="close code 1006 cannot be sent"):
        await client.close(1006)  # only ever reported, never sent (RFC 6455 section 7.4.1)
    await client.close(1001, "tab closed")
    assert client.timeline[-1].kind == "closed" and client.timeline[-1].code == 1001
    assert status == 200 and me["sockets"] == [client.socket_id]


async def test_a_server_close_code_is_what_the_client_reports(lab: LabServer, account: Any, connect: Any) -> None:
    client = await connect(account())
    sid = client.socket_id
    lab.drop(sid, mode="close", code=4001, reason="kicked")
    await until(lambda: any(e.kind == "lost" for e in client.timeline))
    lost = next(e for e in client.timeline if e.kind == "lost")
    assert (lost.socket_id, lost.code, lost.reason) == (sid, 4001, "kicked")
    await until(lambda: client.connected and client.socket_id != sid)  # it still comes back by itself


async def test_the_backoff_policy_is_the_clients_and_a_broken_one_falls_back(
    lab: LabServer, account: Any, connect: Any
) -> None:
    asked: list[int] = []

    def policy(attempt: int) -> float:
        asked.append(attempt)
        return 0.05

    client = await connect(account(), backoff=policy)
    old = client.socket_id
    lab.drop(old)
    await until(lambda: client.connected and client.socket_id != old)
    assert asked == [0]

    client.backoff = lambda attempt: -1.0  # nonsense: the default policy waits instead, the error is kept
    old = client.socket_id
    lab.drop(old)
    await until(lambda: client.connected and client.socket_id != old)
    assert any("the backoff policy" in " ".join(getattr(e, "__notes__", ())) for e in client.errors)


async def test_a_full_server_refuses_with_1013_as_a_lab_error(lab: LabServer, account: Any, connect: Any) -> None:
    holder = await connect(account())
    lab.set_switches(max_connections=1)
    try:
        with pytest.raises(LabError) as refused:
            await LabClient.connect(lab, account())
    finally:
        lab.set_switches(max_connections=0)
    assert (refused.value.code, refused.value.close_code, refused.value.close_reason) == (
        "closed",
        1013,
        "try again later",
    )
    assert "before the welcome" in str(refused.value)
    assert holder.connected
