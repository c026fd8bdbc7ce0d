"""/ws against the real server process: every feature, and bad input that must not hurt anyone else."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import websockets

from labserver.course import LabServer
from labserver.frames import Frame, Opcode
from labserver.handshake import accept_key
from labserver.rawws import RawWebSocket, close_code, handshake_request

from .conftest import Client, until

NO_KEY: Any = None  # alg none takes no key (PyJWT's types, with cryptography installed, say a key is required)


def _hostport(lab: LabServer) -> tuple[str, int]:
    parts = urlsplit(lab.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def _still_serves(lab: LabServer, account: Any, connect: Any) -> None:
    """A second, well-behaved client still gets full service."""
    a, b = account(), account()
    ca, cb = await connect(a), await connect(b)
    await ca.request("join", room="sanity")
    await cb.request("join", room="sanity")
    ack = await ca.request("chat", room="sanity", text="still here?")
    assert ack["type"] == "ack"
    got = await cb.expect(lambda m: m.get("type") == "chat" and m["text"] == "still here?")
    assert got["seq"] == ack["seq"]


# --- handshake -----------------------------------------------------------------------


def test_raw_handshake_returns_101_with_correct_accept(lab: LabServer) -> None:
    host, port = _hostport(lab)
    token = lab.account("rawhand").token
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws = RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={token}", key=key))
    try:
        assert ws.response.status == 101
        assert ws.response.headers["upgrade"].lower() == "websocket"
        assert ws.response.headers["sec-websocket-accept"] == accept_key(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert "sec-websocket-extensions" not in ws.response.headers  # no permessage-deflate
        welcome = ws.recv_frame()
        assert welcome is not None and welcome.opcode is Opcode.TEXT and welcome.masking_key is None
        assert json.loads(welcome.payload)["type"] == "welcome"
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-WebSocket-Version": "12"}, 426),
        ({"Sec-WebSocket-Key": "not-base64!"}, 400),
        ({"Sec-WebSocket-Key": None}, 400),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "http://example.com.evil.com"}, 403),
    ],
)
def test_bad_handshakes_are_refused(lab: LabServer, headers: dict[str, str | None], status: int) -> None:
    host, port = _hostport(lab)
    token = lab.account("badhand").token
    extra = {k: v for k, v in headers.items() if k != "Sec-WebSocket-Version"}
    request = handshake_request(
        host, port, f"/ws?token={token}", version=headers.get("Sec-WebSocket-Version", "13"), extra_headers=extra
    )
    ws = RawWebSocket.connect(host, port, request)
    ws.close()
    assert ws.response.status == status
    if status == 426:
        assert ws.response.headers["sec-websocket-version"] == "13"


def test_same_host_origin_is_allowed(lab: LabServer) -> None:
    host, port = _hostport(lab)
    token = lab.account("samehost").token
    request = handshake_request(host, port, f"/ws?token={token}", extra_headers={"Origin": f"http://{host}:{port}"})
    ws = RawWebSocket.connect(host, port, request)
    ws.close()
    assert ws.response.status == 101


@pytest.mark.parametrize("kind", ["missing_param_value", "forged", "alg_none", "expired", "garbage"])
def test_bad_query_tokens_get_401_before_upgrade(lab: LabServer, kind: str) -> None:
    good = lab.account("tokuser").token
    claims = jwt.decode(good, options={"verify_signature": False})
    token = {
        "missing_param_value": "",
        "forged": jwt.encode(claims, "x" * 32, algorithm="HS256"),
        "alg_none": jwt.encode(claims, NO_KEY, algorithm="none"),
        "expired": jwt.encode({**claims, "exp": int(time.time()) - 10}, "k" * 32, algorithm="HS256"),
        "garbage": "abc.def.ghi",
    }[kind]
    host, port = _hostport(lab)
    ws = RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={token}"))
    ws.close()
    assert ws.response.status == 401
    assert json.loads(ws.response.body)["error"] == "unauthorized"


async def test_first_message_auth(lab: LabServer, account: Any) -> None:
    acct = account()
    async with websockets.connect(lab.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": acct.token, "ref": "a"}))
        assert json.loads(await ws.recv()) == {"type": "ack", "ref": "a"}
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["user"]["id"] == acct.id


@pytest.mark.parametrize("first", ["silence", "not_auth", "bad_token", "binary"])
async def test_first_message_auth_failures_close_1008(lab: LabServer, account: Any, connect: Any, first: str) -> None:
    async with websockets.connect(lab.ws_url) as ws:
        if first == "not_auth":
            await ws.send(json.dumps({"type": "join", "room": "general"}))
        elif first == "bad_token":
            await ws.send(json.dumps({"type": "auth", "token": "nope"}))
        elif first == "binary":
            await ws.send(b"\x00\x01")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008
    await _still_serves(lab, account, connect)


# --- frames ------------------------------------------------------------------------------


def _raw_open(lab: LabServer, name: str) -> RawWebSocket:
    host, port = _hostport(lab)
    ws = RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={lab.account(name).token}"))
    assert ws.response.status == 101
    welcome = ws.recv_frame()
    assert welcome is not None and json.loads(welcome.payload)["type"] == "welcome"
    return ws


def _close_code_after(ws: RawWebSocket) -> int | None:
    while (frame := ws.recv_frame()) is not None:
        if frame.opcode is Opcode.CLOSE:
            return close_code(frame)
    return None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (Frame(Opcode.TEXT, b'{"type":"ping"}'), 1002),  # unmasked: RFC 6455 section 5.1
        (Frame(Opcode.TEXT, b"{}", rsv2=True, masking_key=b"abcd"), 1002),
        (Frame.__new__(Frame), 1002),  # placeholder replaced below: reserved opcode
        (Frame(Opcode.PING, b"x" * 126, masking_key=b"abcd"), 1002),
        (Frame(Opcode.PING, b"x", fin=False, masking_key=b"abcd"), 1002),
        (Frame(Opcode.TEXT, b"\xff\xfe", masking_key=b"abcd"), 1007),
        (Frame(Opcode.TEXT, b"x" * (64 * 1024 + 1), masking_key=b"abcd"), 1009),
    ],
    ids=["unmasked", "rsv2", "reserved_opcode", "ping_over_125", "fragmented_ping", "bad_utf8", "too_big"],
)
def test_bad_frames_get_the_rfc_close_code(lab: LabServer, frame: Frame, code: int) -> None:
    ws = _raw_open(lab, f"frames{code}")
    try:
        if not hasattr(frame, "opcode"):
            # Opcode 0x3 is reserved; Frame only holds valid opcodes, so write the bytes.
            ws.sock.sendall(bytes([0x83, 0x80]) + b"abcd")
        else:
            ws.send_frame(frame)
        assert _close_code_after(ws) == code
    finally:
        ws.close()


def test_length_header_claiming_gigabytes_is_refused_at_once(lab: LabServer) -> None:
    ws = _raw_open(lab, "gigabytes")
    try:
        header = bytes([0x81, 0x80 | 127]) + (4 * 2**30).to_bytes(8, "big") + b"abcd"
        ws.sock.sendall(header + b"x" * 100)
        assert _close_code_after(ws) == 1009
    finally:
        ws.close()


def test_unmasked_frame_does_not_stop_the_others(lab: LabServer) -> None:
    good = _raw_open(lab, "goodraw")
    bad = _raw_open(lab, "badraw")
    try:
        bad.send_frame(Frame(Opcode.TEXT, b'{"type":"ping"}'))
        assert _close_code_after(bad) == 1002
        good.send_text(json.dumps({"type": "ping", "ref": 1}))
        answer = good.recv_frame()
        assert answer is not None
        reply = json.loads(answer.payload)
        assert reply["type"] == "pong" and reply["ref"] == 1
    finally:
        good.close()
        bad.close()


# --- envelope errors keep the socket open -------------------------------------------------


async def test_bad_messages_get_errors_and_the_socket_stays_open(lab: LabServer, account: Any, connect: Any) -> None:
    c = await connect(account())
    cases = [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        (json.dumps({"type": "teleport", "ref": 1}), "unknown_type"),
        (json.dumps({"type": "join", "room": 42, "ref": 2}), "bad_field"),
        (json.dumps({"type": "chat", "room": "x", "text": "y" * 5000, "ref": 3}), "bad_field"),
        (json.dumps({"type": "chat", "room": "never-joined", "text": "hi", "ref": 4}), "not_in_room"),
        (json.dumps({"type": "auth", "token": "t", "ref": 5}), "already_authenticated"),
    ]
    for text, code in cases:
        await c.ws.send(text)
        error = await c.expect("error")
        assert error["code"] == code, (text, error)
    await c.ws.send(b"binary")  # a binary message is an upload: this one is no image
    assert (await c.expect("error"))["code"] == "unsupported_type"
    ack = await c.request("join", room="after-errors")
    assert ack["type"] == "ack" and ack["room"] == "after-errors"


async def test_error_echoes_the_ref(lab: LabServer, account: Any, connect: Any) -> None:
    c = await connect(account())
    reply = await c.request("join", room="bad room!")
    assert reply["type"] == "error" and reply["code"] == "bad_field" and "room" in reply["message"]


# --- rooms, chat, persistence order ---------------------------------------------------------


async def test_chat_is_broadcast_with_monotonic_seq_and_acked(lab: LabServer, account: Any, connect: Any) -> None:
    a, b, outsider = await connect(account()), await connect(account()), await connect(account())
    await a.request("join", room="seqroom")
    await b.request("join", room="seqroom")
    seqs = []
    for i in range(20):
        ack = await a.request("chat", room="seqroom", text=f"m{i}")
        seqs.append(ack["seq"])
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    got = [await b.expect(lambda m, i=i: m.get("type") == "chat" and m["text"] == f"m{i}") for i in range(20)]
    assert [m["seq"] for m in got] == seqs
    assert got[0]["from"] == a.welcome["user"]
    await outsider.nothing_more("chat")
    status, history = lab.request("GET", f"/api/rooms/seqroom/messages?after={seqs[9]}", token=None)
    assert status == 401


async def test_spoofed_sender_is_ignored(lab: LabServer, account: Any, connect: Any) -> None:
    a, b = await connect(account()), await connect(account())
    await a.request("join", room="spoof")
    await b.request("join", room="spoof")
    await a.send("chat", room="spoof", text="I am bob", **{"from": b.welcome["user"], "seq": 999})
    got = await b.expect("chat")
    assert got["from"] == a.welcome["user"] and got["seq"] != 999


async def test_leave_stops_delivery(lab: LabServer, account: Any, connect: Any) -> None:
    a, b = await connect(account()), await connect(account())
    for c in (a, b):
        await c.request("join", room="leaving")
    assert (await b.request("leave", room="leaving"))["type"] == "ack"
    await a.expect("member_left")
    await a.request("chat", room="leaving", text="gone?")
    await b.nothing_more("chat")
    assert (await b.request("leave", room="leaving"))["code"] == "not_in_room"


# --- direct messages, signaling --------------------------------------------------------------


async def test_dm_reaches_every_socket_of_both_users_only(lab: LabServer, account: Any, connect: Any) -> None:
    alice, bob, eve = account(), account(), account()
    a1, a2 = await connect(alice), await connect(alice)
    b1 = await connect(bob)
    e1 = await connect(eve)
    ack = await b1.request("dm", to=alice.id, text="psst")
    assert ack["type"] == "ack" and ack["room"] == f"dm:{min(alice.id, bob.id)}:{max(alice.id, bob.id)}"
    for c in (a1, a2, b1):
        got = await c.expect("dm")
        assert got["text"] == "psst" and got["seq"] == ack["seq"] and got["to"] == alice.id
    await e1.nothing_more("dm")
    refused = await e1.request("resume", room=ack["room"], after=0)
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert (await b1.request("dm", to=10**9, text="x"))["code"] == "not_found"
    assert (await b1.request("dm", to=bob.id, text="x"))["code"] == "bad_field"


async def test_signal_relays_offer_and_answer(lab: LabServer, account: Any, connect: Any) -> None:
    alice, bob = account(), account()
    a, b = await connect(alice), await connect(bob)
    offer = {"sdp": "v=0 fake offer", "type": "offer"}
    assert (await a.request("signal", to=bob.id, kind="offer", data=offer))["type"] == "ack"
    got = await b.expect("signal")
    assert got["data"] == offer and got["from"]["id"] == alice.id
    await b.request("signal", to=alice.id, kind="answer", data={"sdp": "v=0 answer"}, to_socket=got["from_socket"])
    assert (await a.expect("signal"))["kind"] == "answer"
    await b.close()

    async def bob_is_offline() -> bool:
        status, body = await asyncio.to_thread(lab.request, "GET", "/api/users", token=alice.token)
        assert status == 200, body
        return next(u["sockets"] for u in body["users"] if u["id"] == bob.id) == 0

    await until(bob_is_offline, what="the server to drop bob's socket")
    assert (await a.request("signal", to=bob.id, kind="ice", data={}))["code"] == "not_found"


# --- typing ------------------------------------------------------------------------------------


async def test_typing_is_ephemeral_throttled_and_expires(lab: LabServer, account: Any, connect: Any) -> None:
    a, b, outside = await connect(account()), await connect(account()), await connect(account())
    await a.request("join", room="typers")
    await b.request("join", room="typers")
    for _ in range(10):  # a storm inside the throttle interval: one broadcast
        await a.send("typing", room="typers")
    started = await b.expect(lambda m: m.get("type") == "typing" and m["active"])
    assert started["user"]["id"] == a.welcome["user"]["id"]
    await b.nothing_more(lambda m: m.get("type") == "typing" and m["active"], wait=0.3)
    # typing_ttl is 1 s in the test server: it stops by itself
    stopped = await b.expect(lambda m: m.get("type") == "typing" and not m["active"], timeout=3)
    assert stopped["user"]["id"] == a.welcome["user"]["id"]
    await outside.nothing_more("typing")
    status, body = lab.request("GET", "/api/rooms/typers/messages", token=lab.account("typereader").token)
    assert status == 200 and body["messages"] == []  # never stored


# --- presence -----------------------------------------------------------------------------------


async def test_two_tab_presence(lab: LabServer, account: Any, connect: Any) -> None:
    watcher = await connect(account())
    await watcher.request("subscribe", topic="presence")
    user = account()
    tab1 = await connect(user)
    online = await watcher.expect("presence")
    assert online == {"type": "presence", "user": user.user, "online": True}
    tab2 = await connect(user)
    assert tab1.welcome["socket_id"] != tab2.welcome["socket_id"]
    assert tab1.welcome["socket_id"] != str(user.id)
    await tab1.close()
    await watcher.nothing_more("presence", wait=0.5)  # still online through tab 2
    await tab2.close()
    offline = await watcher.expect("presence")
    assert offline == {"type": "presence", "user": user.user, "online": False}
    await watcher.nothing_more("presence", wait=0.3)


# --- resume ----------------------------------------------------------------------------------------


async def test_resume_replays_exactly_the_missed_messages(lab: LabServer, account: Any, connect: Any) -> None:
    writer, reader_acct = account(), account()
    w = await connect(writer)
    r = await connect(reader_acct)
    await w.request("join", room="resumable")
    await r.request("join", room="resumable")
    first = await w.request("chat", room="resumable", text="seen")
    await r.expect("chat")
    await r.close()
    missed = [(await w.request("chat", room="resumable", text=f"missed {i}"))["seq"] for i in range(5)]
    r2 = await connect(reader_acct)
    await r2.send("resume", room="resumable", after=first["seq"], ref="again")
    replay = [await r2.expect("chat") for _ in range(5)]
    assert [m["seq"] for m in replay] == missed
    done = await r2.expect("resumed")
    assert done == {"type": "resumed", "room": "resumable", "count": 5, "last_seq": missed[-1], "ref": "again"}
    live = await w.request("chat", room="resumable", text="live again")
    assert (await r2.expect("chat"))["seq"] == live["seq"]
    await r2.nothing_more("chat")


async def test_resume_while_messages_keep_coming_has_no_gap_and_no_duplicate(
    lab: LabServer, account: Any, connect: Any
) -> None:
    w, r = await connect(account()), await connect(account())
    await w.request("join", room="busy")
    # Over HTTP, from two users: the socket's rate limit (burst 40) is kept for the race below,
    # and each user stays within the REST write burst (40).
    tokens = [lab.account("busywriter").token, lab.account("busywriter2").token]
    for i in range(50):
        assert lab.request("POST", "/api/rooms/busy/messages", {"text": f"before {i}"}, token=tokens[i % 2])[0] == 201

    during: list[int] = []  # the seqs of the acks the writer got so far

    async def keep_writing() -> None:
        for i in range(30):
            during.append((await w.request("chat", room="busy", text=f"during {i}"))["seq"])

    writing = asyncio.create_task(keep_writing())
    await until(lambda: during, what="the writer's first ack")  # the resume races the writes
    await r.send("resume", room="busy", after=0)
    await writing
    last = during[-1]
    seqs: list[int] = []
    while not seqs or seqs[-1] < last:
        seqs.append((await r.expect("chat"))["seq"])
    assert seqs == list(range(1, last + 1))
    await r.nothing_more("chat")


async def test_resume_beyond_retention_says_resync(tmp_path: Path, account: Any) -> None:
    with LabServer(tmp_path, resume_limit=5) as small:
        acct = small.account("resyncer")
        c = await Client.connect(small, acct)
        await c.request("join", room="r")
        for i in range(8):
            await c.request("chat", room="r", text=str(i))
        # A member got those live, so its resume replays nothing...
        member = await c.request("resume", room="r", after=2)
        assert member["type"] == "resumed" and member["count"] == 0 and member["last_seq"] == 8
        await c.close()
        # ...while a fresh socket (say, after a reconnect) gets what it missed.
        c = await Client.connect(small, acct)
        too_far = await c.request("resume", room="r", after=0)
        assert too_far["type"] == "resync" and too_far["reason"] == "too_far_behind" and too_far["last_seq"] == 8
        ahead = await c.request("resume", room="r", after=100)
        assert ahead["type"] == "resync" and ahead["reason"] == "ahead_of_server"
        fine = await c.request("resume", room="r", after=4)
        assert fine["type"] == "resumed" and fine["count"] == 4
        await c.close()


# --- limits ------------------------------------------------------------------------------------------


async def test_flood_is_throttled_then_closed_1008(lab: LabServer, account: Any, connect: Any) -> None:
    flooder = await connect(account())
    for i in range(200):
        try:
            await flooder.send("ping", payload=i)
        except websockets.ConnectionClosed:
            break
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            message = json.loads(await asyncio.wait_for(flooder.ws.recv(), 5))
            flooder.inbox.append(message)
    assert any(m.get("code") == "rate_limited" for m in flooder.inbox)
    assert flooder.ws.close_code == 1008
    await _still_serves(lab, account, connect)


async def test_oversized_message_closes_1009_and_others_continue(lab: LabServer, account: Any, connect: Any) -> None:
    big = await connect(account(), max_size=None)
    await big.ws.send(json.dumps({"type": "ping", "payload": "x" * 70_000}))
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(big.ws.recv(), 5)
    assert big.ws.close_code == 1009
    await _still_serves(lab, account, connect)


# --- a binary message is an image upload (for comparison with POST /api/uploads) ----------------------

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(20_000)


async def test_a_binary_message_uploads_an_image_served_like_a_rest_upload(
    lab: LabServer, account: Any, connect: Any
) -> None:
    owner = account()
    c = await connect(owner)
    await c.ws.send(PNG)
    answer = await c.expect(lambda m: m.get("type") in ("uploaded", "error"))
    assert answer["type"] == "uploaded" and answer["size"] == len(PNG) and answer["content_type"] == "image/png"
    assert answer["url"] == "/uploads/" + answer["name"]
    with urllib.request.urlopen(lab.url + answer["url"], timeout=10) as resp:
        assert resp.read() == PNG and resp.headers["Content-Type"] == "image/png"
    # The same bytes over REST get the same name: one store, one set of checks.
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=x.png\r\n\r\n".encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {owner.token}"}
    request = urllib.request.Request(lab.url + "/api/uploads", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert json.loads(resp.read())["name"] == answer["name"]
    ack = await c.request("join", room="after-upload")  # the socket goes on
    assert ack["type"] == "ack"


async def test_a_binary_upload_over_max_message_bytes_closes_1009(lab: LabServer, account: Any, connect: Any) -> None:
    big = await connect(account(), max_size=None)
    await big.ws.send(b"\x89PNG\r\n\x1a\n" + bytes(70_000))
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(big.ws.recv(), 5)
    assert big.ws.close_code == 1009
    await _still_serves(lab, account, connect)


# --- keepalive and token expiry -----------------------------------------------------------------------


async def test_dead_peer_is_reaped_and_goes_offline(lab: LabServer, account: Any, connect: Any) -> None:
    watcher = await connect(account())
    await watcher.request("subscribe", topic="presence")
    silent = account()
    # A client that never answers pings: websockets' own keepalive off, and it never reads.
    ws = await websockets.connect(f"{lab.ws_url}?token={silent.token}", ping_interval=None)
    await watcher.expect(lambda m: m.get("type") == "presence" and m["online"] and m["user"]["id"] == silent.id)
    ws.transport.pause_reading()  # pongs are sent only by reading: now it is a dead peer
    # ping_interval=1 in the test server: reaped within seconds. Without the reaping, the
    # socket would stay open (and online) for as long as the test lasts.
    offline = await watcher.expect(
        lambda m: m.get("type") == "presence" and not m["online"] and m["user"]["id"] == silent.id, timeout=10
    )
    assert offline
    ws.transport.abort()


async def test_token_expiring_during_the_connection_closes_1008(lab: LabServer, account: Any) -> None:
    acct = account()
    claims = jwt.decode(acct.token, options={"verify_signature": False})
    secret = bytes.fromhex((lab.data_dir / "jwt-secret").read_text())
    short = jwt.encode({**claims, "iat": time.time(), "exp": int(time.time()) + 2}, secret, algorithm="HS256")
    async with websockets.connect(f"{lab.ws_url}?token={short}") as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 6)
        assert ws.close_code == 1008 and "expired" in (ws.close_reason or "")


def test_secret_file_is_private(lab: LabServer) -> None:
    assert os.stat(lab.data_dir / "jwt-secret").st_mode & 0o077 == 0


async def test_rate_limited_error_carries_the_ref(lab: LabServer, account: Any, connect: Any) -> None:
    c = await connect(account())
    for i in range(45):  # burst is 40
        await c.send("ping", ref=f"p{i}")
    limited = await c.expect(lambda m: m.get("code") == "rate_limited")
    assert limited["ref"].startswith("p")


async def test_typing_stop_outside_the_room_is_refused(lab: LabServer, account: Any, connect: Any) -> None:
    c = await connect(account())
    assert (await c.request("typing", room="nowhere", active=False))["code"] == "not_in_room"


async def test_replayed_dm_names_its_recipient(lab: LabServer, account: Any, connect: Any) -> None:
    alice, bob = account(), account()
    a = await connect(alice)
    ack = await a.request("dm", to=bob.id, text="hello bob")
    b = await connect(bob)
    await b.send("resume", room=ack["room"], after=0)
    replayed = await b.expect("dm")
    assert replayed["to"] == bob.id and replayed["from"]["id"] == alice.id
    assert (await b.expect("resumed"))["count"] == 1


async def test_observe_needs_the_admin_token_when_the_server_has_one(tmp_path: Path) -> None:
    with LabServer(tmp_path, admin_token="instructor") as guarded:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(guarded.observe_url.split("?")[0])
        assert refused.value.response.status_code == 403
        async with websockets.connect(guarded.observe_url) as watcher:
            assert json.loads(await watcher.recv())["type"] == "snapshot"


def test_tokens_never_reach_the_access_log(tmp_path: Path) -> None:
    with LabServer(tmp_path, log_level="INFO") as verbose:
        token = verbose.account("logged").token
        verbose.request("GET", f"/api/me?token={token}", token=token)
        host, port = _hostport(verbose)
        RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={token}")).close()
    # Read once the server has exited: its log is then complete (no sleep to guess when).
    logs = "\n".join(verbose.logs)
    assert '"GET /api/me"' in logs and '"GET /ws"' in logs  # both requests were logged...
    assert token not in logs and token.split(".")[2] not in logs  # ...without their tokens


async def test_resume_of_a_dm_room_skips_what_the_socket_got_live(lab: LabServer, account: Any, connect: Any) -> None:
    alice, bob = account(), account()
    a = await connect(alice)
    first = await a.request("dm", to=bob.id, text="before bob connects")
    b = await connect(bob)
    live = await a.request("dm", to=bob.id, text="while bob is here")
    assert (await b.expect("dm"))["seq"] == live["seq"]
    await b.send("resume", room=first["room"], after=0)
    replayed = await b.expect("dm")
    assert replayed["seq"] == first["seq"]  # only the one it missed
    assert (await b.expect("resumed"))["count"] == 1
    await b.nothing_more("dm")


async def test_garbage_floods_are_rate_limited_too(lab: LabServer, account: Any, connect: Any) -> None:
    flooder = await connect(account())
    for _ in range(200):
        try:
            await flooder.ws.send("not json")
        except websockets.ConnectionClosed:
            break
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            flooder.inbox.append(json.loads(await asyncio.wait_for(flooder.ws.recv(), 5)))
    codes = [m.get("code") for m in flooder.inbox]
    assert "bad_json" in codes and "rate_limited" in codes and flooder.ws.close_code == 1008
    await _still_serves(lab, account, connect)


async def test_a_ref_that_cannot_be_echoed_is_refused_cleanly(lab: LabServer, account: Any, connect: Any) -> None:
    c = await connect(account())
    await c.ws.send('{"type": "ping", "ref": "\\ud800"}')
    error = await c.expect("error")
    assert error["code"] == "bad_field" and "'ref'" in error["message"]
    assert (await c.request("ping"))["type"] == "pong"


def test_http_text_with_a_lone_surrogate_is_a_400_and_does_not_fail_other_chats(lab: LabServer) -> None:
    token = lab.account("surrogate").token
    req = urllib.request.Request(
        lab.url + "/api/rooms/surr/messages",
        data=b'{"text": "bad \\ud800"}',
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 400 and b"surrogate" in refused.value.read()
    assert lab.request("POST", "/api/rooms/surr/messages", {"text": "fine"}, token=token)[0] == 201


# --- subprotocol and extensions (RFC 6455 sections 1.9, 4.2.2 and 9) -------------------------


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("lab.v1", "lab.v1"), ("chat, lab.v1", "lab.v1"), ("chat, superchat", None), (None, None)],
)
def test_subprotocol_is_answered_only_when_offered(lab: LabServer, offered: str | None, answered: str | None) -> None:
    host, port = _hostport(lab)
    token = lab.account("subproto").token
    request = handshake_request(
        host,
        port,
        f"/ws?token={token}",
        extra_headers={"Sec-WebSocket-Protocol": offered, "Sec-WebSocket-Extensions": "permessage-deflate"},
    )
    ws = RawWebSocket.connect(host, port, request)
    try:
        assert ws.response.status == 101
        assert ws.response.headers.get("sec-websocket-protocol") == answered
        assert "sec-websocket-extensions" not in ws.response.headers  # deflate offered, declined
        welcome = ws.recv_frame()
        assert welcome is not None and json.loads(welcome.payload)["type"] == "welcome"
    finally:
        ws.close()


async def test_a_library_client_asking_for_lab_v1_gets_it(lab: LabServer) -> None:
    token = lab.account("subproto_lib").token
    async with websockets.connect(f"{lab.ws_url}?token={token}", subprotocols=["lab.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "lab.v1"
        assert json.loads(await ws.recv())["type"] == "welcome"


# --- the session cookie at the handshake -----------------------------------------------------


def _login_cookie(lab: LabServer, username: str) -> tuple[str, str]:
    """(token, value of the lab_session cookie) from a real login."""
    lab.account(username)
    host, port = _hostport(lab)
    body = json.dumps({"username": username, "password": "lab-password"}).encode()
    req = urllib.request.Request(
        f"http://{host}:{port}/api/login", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        set_cookie = resp.headers["Set-Cookie"]
        token = json.loads(resp.read())["token"]
    name, _, rest = set_cookie.partition("=")
    assert name == "lab_session"
    return token, rest.partition(";")[0]


def _cookie_handshake(lab: LabServer, cookie: str, origin: str | None, path: str = "/ws") -> RawWebSocket:
    host, port = _hostport(lab)
    headers = {"Cookie": f"lab_session={cookie}", "Origin": origin}
    return RawWebSocket.connect(host, port, handshake_request(host, port, path, extra_headers=headers))


def test_cookie_from_login_opens_a_socket_from_the_labs_own_origin(lab: LabServer) -> None:
    token, cookie = _login_cookie(lab, "cookie_own")
    assert cookie == token
    host, port = _hostport(lab)
    ws = _cookie_handshake(lab, cookie, f"http://{host}:{port}")
    try:
        assert ws.response.status == 101
        welcome = ws.recv_frame()
        assert welcome is not None
        assert json.loads(welcome.payload)["user"]["username"] == "cookie_own"  # no auth message needed
    finally:
        ws.close()


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "http://sub.127.0.0.1.nip.io"])
def test_cookie_with_a_foreign_origin_is_403(lab: LabServer, origin: str) -> None:
    """Cross-site WebSocket hijacking: the browser would attach the cookie; Origin gives the page away."""
    _, cookie = _login_cookie(lab, "cookie_foreign")
    ws = _cookie_handshake(lab, cookie, origin)
    ws.close()
    assert ws.response.status == 403
    assert json.loads(ws.response.body)["error"] == "forbidden_origin"


def test_bad_cookie_is_401_and_names_the_cookie(lab: LabServer) -> None:
    ws = _cookie_handshake(lab, "not-a-token", None)
    ws.close()
    assert ws.response.status == 401
    assert json.loads(ws.response.body)["message"].startswith("lab_session cookie: malformed token")


def test_query_token_wins_over_the_cookie(lab: LabServer) -> None:
    """The token path is unchanged: ?token= decides, whatever cookie comes along."""
    _, cookie = _login_cookie(lab, "cookie_and_token")
    other = lab.account("token_wins")
    ws = _cookie_handshake(lab, cookie, None, f"/ws?token={other.token}")
    try:
        assert ws.response.status == 101
        welcome = ws.recv_frame()
        assert welcome is not None and json.loads(welcome.payload)["user"]["username"] == "token_wins"
    finally:
        ws.close()
    bad = _cookie_handshake(lab, cookie, None, "/ws?token=")
    bad.close()
    assert bad.response.status == 401 and json.loads(bad.response.body)["message"] == "missing token"


def test_empty_cookie_falls_back_to_first_message_auth(lab: LabServer) -> None:
    ws = _cookie_handshake(lab, "", None)
    try:
        assert ws.response.status == 101
        ws.send_text(json.dumps({"type": "join", "room": "x", "ref": "j"}))
        error = ws.recv_frame()
        assert error is not None and json.loads(error.payload)["code"] == "not_authenticated"
    finally:
        ws.close()


def test_logout_invalidates_the_cookie(lab: LabServer) -> None:
    token, cookie = _login_cookie(lab, "cookie_logout")
    status, body = lab.request("POST", "/api/logout", None, token)
    assert status == 200, body
    ws = _cookie_handshake(lab, cookie, None)
    ws.close()
    assert ws.response.status == 401
    assert json.loads(ws.response.body)["message"] == "lab_session cookie: token was revoked by a logout"
