"""Authentication and authorization: no one reads, joins or sends where they are not allowed,
and credentials never reach the logs.

Already elsewhere: query tokens that are forged / alg=none / expired / garbage / empty (401),
first-message auth failures (silence, join first, bad token, binary), a token expiring on a
query-token socket, logout of two tabs (tests/test_rest.py), a spoofed chat `from`, DM
resume and DM history / long poll by a third user, and the INFO access log.
"""

from __future__ import annotations

import asyncio
import collections
import json
import select
import sqlite3
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import websockets

from labserver.course import Account, LabServer
from labserver.store import SCHEMA_VERSION, NewMessage, Store

from .adversarial import (
    each_case_then_still_serves,  # noqa: F401 - autouse: a second client is served after each case
    fresh_account,
    hostport,
    raw_handshake,
    still_serves,
    still_serves_sync,
    wait_health,
)
from .conftest import Client, until

NO_KEY: Any = None  # alg none takes no key (PyJWT's types, with cryptography installed, say a key is required)


def secret_of(lab: LabServer) -> bytes:
    return bytes.fromhex((lab.data_dir / "jwt-secret").read_text())


def bad_token(lab: LabServer, kind: str, account: Account) -> str:
    claims = jwt.decode(account.token, options={"verify_signature": False})
    key = secret_of(lab)
    now = time.time()
    return {
        "forged": lambda: jwt.encode(claims, "x" * 32, algorithm="HS256"),
        "alg_none": lambda: jwt.encode(claims, NO_KEY, algorithm="none"),
        "alg_none_real_signature": lambda: ".".join(
            [jwt.encode(claims, NO_KEY, algorithm="none").split(".")[0], *account.token.split(".")[1:]]
        ),
        "hs512_real_key": lambda: jwt.encode(claims, key, algorithm="HS512"),
        "expired": lambda: jwt.encode({**claims, "exp": int(now) - 5}, key, algorithm="HS256"),
        "wrong_audience": lambda: jwt.encode({**claims, "aud": "another-service"}, key, algorithm="HS256"),
        "wrong_issuer": lambda: jwt.encode({**claims, "iss": "mallory"}, key, algorithm="HS256"),
        "no_expiry": lambda: jwt.encode({k: v for k, v in claims.items() if k != "exp"}, key, algorithm="HS256"),
        "unknown_user": lambda: jwt.encode({**claims, "sub": "987654"}, key, algorithm="HS256"),
        "sub_not_a_number": lambda: jwt.encode({**claims, "sub": "admin"}, key, algorithm="HS256"),
        "tampered_payload": lambda: ".".join(
            [
                account.token.split(".")[0],
                jwt.encode({**claims, "sub": "1"}, "k" * 32).split(".")[1],
                account.token.split(".")[2],
            ]
        ),
        "truncated": lambda: account.token[:-5],
        "garbage": lambda: "not.a.jwt",
        "huge": lambda: "a" * 4000,
    }[kind]()


pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

BAD_KINDS = [
    "forged",
    "alg_none",
    "alg_none_real_signature",
    "hs512_real_key",
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "no_expiry",
    "unknown_user",
    "sub_not_a_number",
    "tampered_payload",
    "truncated",
    "garbage",
    "huge",
]


# --- bad tokens, both paths ------------------------------------------------------------------


@pytest.mark.parametrize("kind", BAD_KINDS)
async def test_bad_tokens_in_the_query_get_401_before_the_upgrade(lab: LabServer, kind: str) -> None:
    token = bad_token(lab, kind, fresh_account(lab))
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{lab.ws_url}?token={token}")
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"] == "unauthorized"
    status, body = lab.request("GET", "/api/me", token=token)
    assert status == 401 and body["error"] == "unauthorized"


@pytest.mark.parametrize("kind", [*BAD_KINDS, "missing_field", "token_not_a_string"])
async def test_bad_tokens_in_the_auth_message_close_1008(lab: LabServer, kind: str) -> None:
    acct = fresh_account(lab)
    if kind == "missing_field":
        first: dict[str, Any] = {"type": "auth", "ref": "a"}
    elif kind == "token_not_a_string":
        first = {"type": "auth", "token": {"sub": acct.id}, "ref": "a"}
    else:
        first = {"type": "auth", "token": bad_token(lab, kind, acct), "ref": "a"}
    async with websockets.connect(lab.ws_url) as ws:
        await ws.send(json.dumps(first))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["type"] == "error" and error["code"] == "not_authenticated" and error["ref"] == "a"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008 and error["message"].startswith(ws.close_reason)


@pytest.mark.parametrize(
    "first",
    [
        {"type": "ping", "ref": 1},
        {"type": "chat", "room": "general", "text": "let me in"},
        {"type": "resume", "room": "general", "after": 0},
        {"type": "dm", "to": 1, "text": "hi"},
        {"type": "subscribe", "topic": "presence"},
        "not json",
        ["auth"],
        {"type": "\u20ac" * 40},  # the close reason is cut at 120 bytes: never inside a character
    ],
    ids=lambda v: str(v)[:25],
)
async def test_any_message_before_auth_closes_1008(lab: LabServer, first: Any) -> None:
    async with websockets.connect(lab.ws_url) as ws:
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["code"] == "not_authenticated"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008
        reason = ws.close_reason
        assert reason is not None and error["message"].startswith(reason) and len(reason.encode()) <= 123


async def test_auth_timeout_is_one_deadline_pings_do_not_extend_it(lab: LabServer) -> None:
    """receive(timeout=) restarts after each control frame: a client that only pings used to
    stay unauthenticated forever. auth_timeout is 1 s on the test server: with a ping every
    0.2 s, a deadline that restarted on each ping would never pass, and we would give up
    pinging (after 10 s, far beyond any scheduling delay) with the socket still open."""
    ws = await websockets.connect(lab.ws_url, ping_interval=None)
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        while time.monotonic() - started < 10:
            await ws.ping()
            await asyncio.sleep(0.2)  # the pings must keep coming: the sleep paces them
    assert ws.close_code == 1008 and ws.close_reason == "authentication timeout"


async def test_auth_timeout_with_a_frame_trickled_byte_by_byte(lab: LabServer) -> None:
    host, port = hostport(lab)
    from labserver.frames import Frame, Opcode
    from labserver.rawws import handshake_request

    ws = raw_handshake(lab, handshake_request(host, port, "/ws"))
    frame = Frame(
        Opcode.TEXT, json.dumps({"type": "auth", "token": "x" * 200}).encode(), masking_key=b"abcd"
    ).serialize()
    try:
        for byte in frame:  # one byte every 50 ms (the trickle is the attack): 12 s for the whole frame
            if select.select([ws.sock], [], [], 0)[0]:
                break  # the server answered
            try:
                ws.sock.sendall(bytes([byte]))
            except OSError:
                break
            await asyncio.sleep(0.05)
        ws.sock.settimeout(5)
        # A server that waited for the whole frame would answer it (an error about the bad
        # token) instead: its first frame would not be this close.
        closing = ws.recv_frame()
        assert closing is not None and closing.opcode == Opcode.CLOSE, closing
        assert closing.payload == (1008).to_bytes(2, "big") + b"authentication timeout"
    finally:
        ws.close()


async def test_token_expiring_on_a_first_message_socket_closes_1008(lab: LabServer) -> None:
    acct = fresh_account(lab)
    claims = jwt.decode(acct.token, options={"verify_signature": False})
    short = jwt.encode({**claims, "iat": time.time(), "exp": int(time.time()) + 2}, secret_of(lab), algorithm="HS256")
    async with websockets.connect(lab.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": short}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 6)
        assert ws.close_code == 1008 and ws.close_reason == "token expired"


# --- logout ----------------------------------------------------------------------------------------


async def test_logout_closes_every_socket_of_the_user_on_both_paths(lab: LabServer) -> None:
    user, other = fresh_account(lab), fresh_account(lab)
    watcher = await Client.connect(lab, other)
    await watcher.request("subscribe", topic="presence")
    second = lab.request("POST", "/api/login", {"username": user.username, "password": "lab-password"})[1]["token"]
    by_query = await Client.connect(lab, user)
    by_message = await websockets.connect(lab.ws_url)
    await by_message.send(json.dumps({"type": "auth", "token": second}))
    assert json.loads(await by_message.recv())["type"] == "welcome"
    await by_query.request("join", room="logout-room")
    pending = await websockets.connect(lab.ws_url)  # not authenticated yet: it will be, too late
    await watcher.expect(lambda m: m.get("type") == "presence" and m["user"]["id"] == user.id and m["online"])

    status, body = lab.request("POST", "/api/logout", token=user.token)
    assert status == 200 and body == {"closed_sockets": 2}
    for ws in (by_query.ws, by_message):
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1008 and ws.close_reason == "logged out"
    offline = await watcher.expect(lambda m: m.get("type") == "presence" and m["user"]["id"] == user.id)
    assert offline["online"] is False
    for token in (user.token, second):  # every token issued before the logout
        await pending.send(json.dumps({"type": "auth", "token": token}))
        refused = json.loads(await pending.recv())
        assert refused["code"] == "not_authenticated" and "revoked" in refused["message"]
        await asyncio.wait_for(pending.wait_closed(), 5)
        pending = await websockets.connect(lab.ws_url)
    await pending.close()
    pong = await watcher.request("ping")
    assert pong["type"] == "pong"
    await watcher.close()


async def test_sockets_authenticating_during_a_logout_do_not_survive_it(lab: LabServer) -> None:
    """A socket whose token was checked just before the logout, but registered just after
    its close loop, must not stay open with a revoked token."""
    observer = fresh_account(lab).token

    def open_sockets(user: Account) -> int:
        users = lab.request("GET", "/api/users", token=observer)[1]["users"]
        return int(next(u["sockets"] for u in users if u["id"] == user.id))

    async def until_all_closed(user: Account, attempt: int) -> None:
        async def all_closed() -> bool:  # off the event loop: it keeps serving our sockets meanwhile
            return await asyncio.to_thread(open_sockets, user) == 0

        await until(all_closed, what=f"attempt {attempt}: every socket of the logged-out user closed")

    for attempt in range(10):
        user = fresh_account(lab, "race")

        async def connect(token: str) -> websockets.ClientConnection | None:
            try:
                return await websockets.connect(f"{lab.ws_url}?token={token}", open_timeout=5)
            except (websockets.InvalidStatus, OSError):
                return None

        tasks = [asyncio.create_task(connect(user.token)) for _ in range(6)]
        await asyncio.sleep(attempt % 5 * 0.002)  # not a wait: it moves the logout across the handshakes
        await asyncio.to_thread(lab.request, "POST", "/api/logout", None, user.token)
        sockets = [s for s in await asyncio.gather(*tasks) if s is not None]
        await until_all_closed(user, attempt)
        for s in sockets:
            await s.close()


# --- spoofing ------------------------------------------------------------------------------------------


async def test_spoofed_sender_fields_are_ignored_everywhere(lab: LabServer) -> None:
    alice, bob, carol = fresh_account(lab), fresh_account(lab), fresh_account(lab)
    a, b, c = await Client.connect(lab, alice), await Client.connect(lab, bob), await Client.connect(lab, carol)
    fake = {
        "from": carol.user,
        "user": carol.user,
        "sender_id": carol.id,
        "seq": 10**6,
        "ts": 1.0,
        "from_socket": c.welcome["socket_id"],
        "socket_id": c.welcome["socket_id"],
        "id": 1,
    }
    await a.request("join", room="spoofed")
    await b.request("join", room="spoofed")
    await a.send("chat", room="spoofed", text="chat", **fake)
    got = await b.expect("chat")
    assert got["from"] == alice.user and got["seq"] != 10**6 and got["ts"] > 1.0
    await a.send("dm", to=bob.id, text="dm", **fake)
    got = await b.expect("dm")
    assert got["from"] == alice.user and got["to"] == bob.id
    await a.send("signal", to=bob.id, kind="offer", data={}, **{k: v for k, v in fake.items() if k != "to_socket"})
    got = await b.expect("signal")
    assert got["from"] == alice.user and got["from_socket"] == a.welcome["socket_id"]
    await a.send("typing", room="spoofed", **fake)
    got = await b.expect("typing")
    assert got["user"] == alice.user
    status, body = lab.request("POST", "/api/rooms/spoofed/messages", {"text": "http", **fake}, alice.token)
    assert status == 201
    got = await b.expect(lambda m: m.get("type") == "chat" and m["text"] == "http")
    assert got["from"] == alice.user and got["seq"] == body["seq"]
    status, post = lab.request("POST", "/api/posts", {"text": "post", "author": carol.user, "likes": 99}, alice.token)
    assert status == 201 and post["post"]["author"] == alice.user and post["post"]["likes"] == 0
    await c.nothing_more(lambda m: m.get("type") in ("chat", "dm", "signal"))
    for client in (a, b, c):
        await client.close()


async def test_signal_to_a_socket_of_another_user_is_refused(lab: LabServer) -> None:
    alice, bob, carol = fresh_account(lab), fresh_account(lab), fresh_account(lab)
    a, b, c = await Client.connect(lab, alice), await Client.connect(lab, bob), await Client.connect(lab, carol)
    refused = await a.request("signal", to=bob.id, kind="offer", data={}, to_socket=c.welcome["socket_id"])
    assert refused["type"] == "error" and refused["code"] == "not_found"
    await c.nothing_more("signal")
    await b.nothing_more("signal")
    for client in (a, b, c):
        await client.close()


# --- other pairs' direct messages ------------------------------------------------------------------------


async def test_another_pairs_dms_cannot_be_read_resumed_or_spelled_differently(lab: LabServer) -> None:
    ann, bob, eve = fresh_account(lab), fresh_account(lab), fresh_account(lab)
    a, e = await Client.connect(lab, ann), await Client.connect(lab, eve)
    ack = await a.request("dm", to=bob.id, text="for bob only")
    room = ack["room"]
    low, high = sorted((ann.id, bob.id))
    for after in (0, ack["seq"] - 1, 10**9):
        assert (await e.request("resume", room=room, after=after))["code"] == "forbidden"
    for spelling in (f"dm:{high}:{low}", f"dm:{low}:{low}", f"dm:0{low}:{high}", f"DM:{low}:{high}", f" {room}"):
        assert (await e.request("resume", room=spelling, after=0))["code"] == "bad_field", spelling
        assert (await e.request("join", room=spelling))["code"] == "bad_field", spelling
        status, _ = lab.request("GET", f"/api/rooms/{spelling.replace(' ', '%20')}/messages", token=eve.token)
        assert status == 400, spelling
    for path in (
        f"/api/rooms/{room}/messages",
        f"/api/rooms/{room}/messages?after=0&limit=1000",
        f"/api/rooms/{room}/poll?after=0&timeout=0",
        f"/api/rooms/{room}/poll?after=0&timeout=1",
    ):
        status, body = lab.request("GET", path, token=eve.token)
        assert status == 403 and body["error"] == "forbidden", path
    status, _ = lab.request("POST", f"/api/rooms/{room}/messages", {"text": "injected"}, eve.token)
    assert status == 403
    assert (await e.request("join", room=room))["code"] == "bad_field"  # DM rooms are never joined
    assert (await e.request("chat", room=room, text="x"))["code"] == "bad_field"
    assert (await e.request("typing", room=room))["code"] == "bad_field"
    await e.nothing_more("dm")
    status, body = lab.request("GET", f"/api/rooms/{room}/messages", token=bob.token)
    assert [m["text"] for m in body["messages"]] == ["for bob only"]
    await a.close()
    await e.close()


# --- private rooms ------------------------------------------------------------------------------------------


def create_room(lab: LabServer, owner: Account, name: str, members: list[int]) -> tuple[int, Any]:
    return lab.request("POST", "/api/rooms", {"name": name, "members": members}, owner.token)


async def test_private_room_is_for_its_members_only(lab: LabServer) -> None:
    owner, member, outsider = fresh_account(lab), fresh_account(lab), fresh_account(lab)
    status, body = create_room(lab, owner, "secret-club", [member.id])
    assert status == 201 and body == {"room": "secret-club", "members": sorted([owner.id, member.id])}
    o, m, x = (await Client.connect(lab, owner), await Client.connect(lab, member), await Client.connect(lab, outsider))
    assert (await o.request("join", room="secret-club"))["type"] == "ack"
    assert (await m.request("join", room="secret-club"))["type"] == "ack"
    refused = await x.request("join", room="secret-club")
    assert refused["type"] == "error" and refused["code"] == "forbidden" and "private" in refused["message"]
    assert (await x.request("chat", room="secret-club", text="let me in"))["code"] == "not_in_room"
    assert (await x.request("typing", room="secret-club"))["code"] == "not_in_room"
    assert (await x.request("resume", room="secret-club", after=0))["code"] == "forbidden"
    ack = await o.request("chat", room="secret-club", text="members only")
    assert (await m.expect("chat"))["seq"] == ack["seq"]
    for path in ("/api/rooms/secret-club/messages", "/api/rooms/secret-club/poll?after=0&timeout=1"):
        status, body = lab.request("GET", path, token=outsider.token)
        assert status == 403 and body["error"] == "forbidden", path
    status, _ = lab.request("POST", "/api/rooms/secret-club/messages", {"text": "injected"}, outsider.token)
    assert status == 403
    status, body = lab.request("GET", "/api/rooms/secret-club/messages", token=member.token)
    assert status == 200 and [msg["text"] for msg in body["messages"]] == ["members only"]
    status, body = lab.request("POST", "/api/rooms/secret-club/messages", {"text": "over http"}, member.token)
    assert status == 201
    resumer = await Client.connect(lab, member)
    await resumer.send("resume", room="secret-club", after=0)
    assert [(await resumer.expect("chat"))["text"] for _ in range(2)] == ["members only", "over http"]
    assert (await resumer.expect("resumed"))["count"] == 2
    await x.nothing_more("chat")
    for client in (o, m, x, resumer):
        await client.close()


async def test_private_room_chat_is_not_previewed_on_observe(lab: LabServer) -> None:
    owner = fresh_account(lab)
    assert create_room(lab, owner, "hush", [])[0] == 201
    o = await Client.connect(lab, owner)
    await o.request("join", room="hush")
    async with websockets.connect(lab.observe_url) as watcher:
        assert json.loads(await watcher.recv())["type"] == "snapshot"
        await o.request("chat", room="hush", text="confidential")
        routed = None
        async with asyncio.timeout(5):
            while routed is None:
                batch = json.loads(await watcher.recv())
                routed = next(
                    (ev for ev in batch.get("events", []) if ev["ev"] == "routed" and ev["type"] == "chat"), None
                )
        assert routed["preview"] is None
    await o.close()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"name": "bad name!", "members": []}, 400, "bad_field"),
        ({"name": "dm:1:2", "members": []}, 400, "bad_field"),
        ({"name": "x" * 65, "members": []}, 400, "bad_field"),
        ({"name": "", "members": []}, 400, "bad_field"),
        ({"name": 5, "members": []}, 400, "bad_field"),
        ({"name": "okname", "members": "1,2"}, 400, "bad_field"),
        ({"name": "okname", "members": [1, "2"]}, 400, "bad_field"),
        ({"name": "okname", "members": [True]}, 400, "bad_field"),
        ({"name": "okname", "members": [0]}, 400, "bad_field"),
        ({"name": "okname", "members": [987654321]}, 400, "bad_field"),
        ({"name": "okname", "members": list(range(1, 1200))}, 400, "bad_field"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_bad_private_room_requests_are_refused(lab: LabServer, body: Any, status: int, error: str) -> None:
    owner = fresh_account(lab)
    got, answer = lab.request("POST", "/api/rooms", body, owner.token)
    assert (got, answer["error"]) == (status, error), answer
    assert lab.request("POST", "/api/rooms", {"name": "nobody", "members": []})[0] == 401


async def test_a_private_room_cannot_take_over_a_public_one(lab: LabServer) -> None:
    owner, squatter = fresh_account(lab), fresh_account(lab)
    assert lab.request("POST", "/api/rooms/public-hist/messages", {"text": "public"}, owner.token)[0] == 201
    status, body = create_room(lab, squatter, "public-hist", [])
    assert status == 409 and body["error"] == "room_taken"
    sitter = await Client.connect(lab, owner)
    await sitter.request("join", room="public-live")  # no history, but someone is in it
    status, body = create_room(lab, squatter, "public-live", [])
    assert status == 409
    assert create_room(lab, squatter, "fresh-private", [])[0] == 201
    status, body = create_room(lab, owner, "fresh-private", [owner.id])
    assert status == 409  # and it stays the squatter's
    assert (await sitter.request("join", room="fresh-private"))["code"] == "forbidden"
    await sitter.close()


async def test_a_long_poll_parked_on_a_room_that_turns_private_gets_403(lab: LabServer) -> None:
    owner, outsider = fresh_account(lab), fresh_account(lab)
    parked = (await asyncio.to_thread(lab.health))["long_polls"]
    poll = asyncio.create_task(
        asyncio.to_thread(lab.request, "GET", "/api/rooms/turncoat/poll?after=0&timeout=5", None, outsider.token)
    )
    body = await wait_health(lab, lambda h: h["long_polls"] > parked, timeout=4)
    assert body["long_polls"] > parked, body  # it is parked: the room is still public
    assert create_room(lab, owner, "turncoat", [])[0] == 201
    assert lab.request("POST", "/api/rooms/turncoat/messages", {"text": "private now"}, owner.token)[0] == 201
    status, body = await asyncio.wait_for(poll, 6)
    assert status == 403, body


def test_private_rooms_survive_a_restart(tmp_path: Path) -> None:
    with LabServer(tmp_path) as proc:
        owner, outsider = proc.account("owner"), proc.account("outsider")
        assert create_room(proc, owner, "kept", [])[0] == 201
        proc.stop()
        proc.start()
        assert proc.request("GET", "/api/rooms/kept/messages", token=outsider.token)[0] == 403
        assert proc.request("GET", "/api/rooms/kept/messages", token=owner.token)[0] == 200
        still_serves_sync(proc)


def test_a_version_1_database_is_migrated_to_version_3(tmp_path: Path) -> None:
    db = tmp_path / "lab.sqlite3"
    with Store(db) as store:
        alice = store.create_user("alice", "h", 1.0)
        store.append_messages([NewMessage("lobby", alice.id, "before the migration", 2.0)])
    raw = sqlite3.connect(db)  # back to what version 1 looked like
    raw.executescript("DROP TABLE room_members; DROP TABLE private_rooms; DROP TABLE meta; PRAGMA user_version = 1;")
    raw.close()
    with Store(db) as store:
        assert len(store.generation()) == 16
        assert [m.text for m in store.messages_after("lobby", 0, 10)] == ["before the migration"]
        assert store.create_private_room("club", alice.id, [], 3.0) == [alice.id]
        assert store.private_rooms() == {"club": frozenset({alice.id})}
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    raw.close()


# --- credentials never reach the logs ---------------------------------------------------------------------


async def test_tokens_never_reach_the_logs_even_at_debug(tmp_path: Path) -> None:
    """Everything that carries a credential, including malformed requests that aiohttp logs
    with their raw request line and headers."""
    import socket

    proc = LabServer(tmp_path, log_level="DEBUG", admin_token="instructor-secret-123")
    proc.logs = collections.deque(maxlen=100_000)
    with proc:
        acct = proc.account("logged")
        token, signature = acct.token, acct.token.split(".")[2]
        host, port = hostport(proc)

        def raw(request: bytes) -> None:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(request)
                try:
                    sock.recv(4096)
                except OSError:
                    pass

        raw(f"FOO /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        raw(f"GET /ws?token={token}&pad={'a' * 9000} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        raw(f"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\x00\r\n\r\n".encode())
        pad = "b" * 9000
        raw(
            f"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nX-Pad: {pad}\r\n\r\n".encode()
        )
        raw(b"GET /api/users HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Admin-Token: instructor-secret-123\x01\r\n\r\n")
        raw(b"GET /observe?admin_token=instructor-secret-123 HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")
        proc.request("GET", f"/api/me?token={token}", token=token)
        proc.request("GET", "/api/users", headers={"X-Admin-Token": "instructor-secret-123"})
        async with websockets.connect(f"{proc.ws_url}?token={token}") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth", "token": token, "ref": 1}))
            await ws.send(json.dumps({"type": "chat", "room": "x", "text": token}))
            await ws.send("{" + token)
        async with websockets.connect(proc.ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token + "x"}))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()
        async with websockets.connect(proc.observe_url) as ws:
            await ws.recv()
        proc.request("POST", "/api/logout", token=token)
        await still_serves(proc)
    logs = "\n".join(proc.logs)  # complete: the server has exited and its log pipe is read to the end
    assert "DEBUG" in logs and "Error handling request" in logs  # the noisy paths did run
    for secret in (token, signature, "instructor-secret-123", token[:60]):
        assert secret not in logs, [line[:200] for line in logs.splitlines() if secret in line]


async def test_healthz_shows_no_leftover_unauthenticated_sockets(lab: LabServer) -> None:
    sockets = [await websockets.connect(lab.ws_url) for _ in range(5)]
    assert (await asyncio.to_thread(lab.health))["peers"] >= 5
    body = await wait_health(lab, lambda h: h["peers"] == 0, timeout=4)  # auth_timeout is 1 s
    assert body["peers"] == 0, body
    for ws in sockets:
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1008
