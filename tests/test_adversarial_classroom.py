"""A classroom LAN, attacked by a student (issue 15): what a stolen token, a slow client or a
hostile page can no longer do. Real requests against the real server process.

* Long-lived reads re-check their token: a logout or the token's expiry ends Server-Sent
  Events streams and waiting long polls, as it closes sockets, with a clear last word.
* Slow HTTP clients (slowloris): a connection that sends no whole request head within
  ``--header-timeout`` is closed, and one IP's unfinished connections are capped, so
  1,100 of them under a 1,024 open-files limit leave the server serving everyone else.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.client
import json
import re
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from labserver.course import LabServer

from .adversarial import (
    each_case_then_still_serves,  # noqa: F401 - autouse: a second client is served after each case
    fresh_account,
    hostport,
    still_serves,
    still_serves_sync,
    wait_health,
)
from .conftest import Client, until


async def sse_events(session: aiohttp.ClientSession, url: str, **params: str) -> AsyncIterator[dict[str, Any]]:
    """The events of one Server-Sent Events stream as dicts (``id``, ``event``, ``data``), until it
    ends; a refused stream yields one ``{"status": ..., "body": ...}``."""
    async with session.get(url, params=params) as resp:
        if resp.status != 200:
            yield {"status": resp.status, "body": await resp.json()}
            return
        event: dict[str, Any] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and event:
                yield event
                event = {}


async def collect(stream: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    async for event in stream:
        into.append(event)


async def parked(lab: LabServer, count: int) -> bool:
    """At least ``count`` long polls and SSE streams wait for a message."""
    return int((await wait_health(lab, lambda b: b["long_polls"] >= count, 0))["long_polls"]) >= count


async def api(lab: LabServer, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    return await asyncio.to_thread(lab.request, method, path, body, token)


# --- 1. long-lived reads end with their token ----------------------------------------------------


async def test_logout_ends_event_streams_and_long_polls_and_counts_them(lab: LabServer) -> None:
    victim, writer = fresh_account(lab, "victim"), fresh_account(lab, "writer")
    room = f"stolen{victim.id}"
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        # What a thief holding the victim's token keeps open: a stream and a long poll.
        reading = asyncio.create_task(
            collect(sse_events(session, f"{lab.url}/api/rooms/{room}/events", token=victim.token), events)
        )
        poll = asyncio.create_task(api(lab, "GET", f"/api/rooms/{room}/poll?after=0&timeout=30", victim.token))
        await until(lambda: parked(lab, 2), what="the stream and the long poll parked")

        status, body = await api(lab, "POST", "/api/logout", victim.token)
        assert status == 200 and body == {"closed_sockets": 0, "closed_streams": 2}, body

        # The long poll is answered at once, with a 401 that says why, not with messages.
        status, answer = await asyncio.wait_for(poll, 10)
        assert status == 401 and answer["error"] == "unauthorized", answer
        assert answer["message"] == "the long poll ended: logged out"
        # The stream's last event says why; then it ends.
        await asyncio.wait_for(reading, 10)
        assert events == [{"event": "end", "data": {"type": "end", "reason": "logged out"}}], events

        # Nothing posted afterwards reaches the old token, and a reconnect is refused.
        assert (await api(lab, "POST", f"/api/rooms/{room}/messages", writer.token, {"text": "secret"}))[0] == 201
        again = [e async for e in sse_events(session, f"{lab.url}/api/rooms/{room}/events", token=victim.token)]
        assert again == [
            {"status": 401, "body": {"error": "unauthorized", "message": "token was revoked by a logout"}}
        ], again
    await until(lambda: wait_health(lab, lambda b: b["long_polls"] == 0, 0), what="no long read left")


async def test_token_expiry_ends_event_streams_and_long_polls(tmp_path: Path) -> None:
    with LabServer(tmp_path, token_ttl=3) as short:
        reader, writer = fresh_account(short, "expiring"), fresh_account(short, "writer")
        events: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            reading = asyncio.create_task(
                collect(sse_events(session, f"{short.url}/api/rooms/ttl/events", token=reader.token), events)
            )
            poll = asyncio.create_task(api(short, "GET", "/api/rooms/ttl/poll?after=0&timeout=30", reader.token))
            await until(lambda: parked(short, 2), what="the stream and the long poll parked")
            # Before the expiry the stream delivers...
            status, sent = await api(short, "POST", "/api/rooms/ttl/messages", writer.token, {"text": "before"})
            assert status == 201
            status, answer = await asyncio.wait_for(poll, 10)
            assert status == 200 and [m["text"] for m in answer["messages"]] == ["before"]
            poll = asyncio.create_task(
                api(short, "GET", f"/api/rooms/ttl/poll?after={sent['seq']}&timeout=30", reader.token)
            )
            # ... and at the expiry (3 s) both end, within the sweep's quarter second.
            await asyncio.wait_for(reading, 15)
            assert events[0]["data"]["text"] == "before"
            assert events[1:] == [{"event": "end", "data": {"type": "end", "reason": "token expired"}}], events
            status, answer = await asyncio.wait_for(poll, 15)
            assert status == 401 and answer["message"] == "the long poll ended: token expired", answer
        await still_serves(short)


# --- 2. slow HTTP clients -------------------------------------------------------------------------


def ended(sock: socket.socket) -> bool:
    """The server closed this connection: what is left to read ends (EOF or RST). Non-blocking
    reads, not select(): it cannot watch a descriptor over 1,023."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False  # data, but no end yet
    except OSError:
        return True  # reset
    return True


def open_slow(host: str, port: int, count: int, source: str = "127.0.0.1", head: bytes = b"") -> list[socket.socket]:
    """``count`` connections from ``source`` that send ``head`` (a request head cut short) and stall."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(10)
        try:
            sock.connect((host, port))
            if head:
                sock.sendall(head)
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        socks.append(sock)
    return socks


async def test_a_connection_that_never_finishes_its_request_head_is_closed(tmp_path: Path) -> None:
    with LabServer(tmp_path, header_timeout=1) as quick:
        host, port = hostport(quick)
        [silent] = open_slow(host, port, 1)
        [trickling] = open_slow(host, port, 1, head=b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def trickle() -> None:  # a header byte every 0.2 s: data keeps coming, the head never ends
            while not ended(trickling):
                try:
                    trickling.send(b"X")
                except OSError:
                    return
                await asyncio.sleep(0.2)

        task = asyncio.create_task(trickle())
        await until(lambda: ended(silent), 15, "the silent connection closed")
        await until(lambda: task.done(), 15, "the trickling connection closed")
        for sock in (silent, trickling):
            sock.close()
        await still_serves(quick)


@pytest.fixture
def ulimit_server(tmp_path: Path) -> Iterator[tuple[LabServer, list[str]]]:
    """A lab server started under a 1,024 open-files limit (soft and hard, so it cannot raise
    it), with a 256 cap on one IP's unfinished connections and a long header timeout (the
    cap, not the timeout, is under test). Its log lines are collected."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    cmd = [sys.executable, "-m", "labserver", "--port", "0", "--data-dir", str(tmp_path), "--exit-on-stdin-eof"]
    cmd += ["--max-unfinished-per-ip", "256", "--header-timeout", "120"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True, preexec_fn=limit_files
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("labserver listening on "), first
    logs: list[str] = []
    pump = threading.Thread(target=lambda: logs.extend(proc.stdout or ()), daemon=True)
    pump.start()
    # A handle on the running process for the helpers (accounts, requests, sockets); not started by it.
    handle = LabServer(tmp_path)
    handle.url = first.split()[3]
    try:
        yield handle, logs
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(20) == 0
        pump.join(5)


async def test_1100_slow_connections_under_a_1024_file_limit_leave_the_server_serving(
    ulimit_server: tuple[LabServer, list[str]],
) -> None:
    lab, logs = ulimit_server
    host, port = hostport(lab)
    # The attacker: another loopback address (127.0.0.2, one "student"), 1,100 request heads cut short.
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    slow = await asyncio.to_thread(open_slow, host, port, 1100, "127.0.0.2", head)
    try:
        # The server keeps 256 of them (the cap) and answers the others 503 at once, closing them.
        await until(lambda: sum(ended(s) for s in slow) >= len(slow) - 256, 30, "the rest refused")
        refused = sum(ended(s) for s in slow)
        assert len(slow) - refused == 256, refused  # the cap, exactly: the 256 kept are still open
        started = time.monotonic()
        health = await asyncio.to_thread(lab.health)
        elapsed_ms = (time.monotonic() - started) * 1000
        assert health["status"] == "ok"
        figure = f"{len(slow)} slow connections at ulimit 1,024: {refused} refused at once"
        print(f"\n{figure}, /healthz answered in {elapsed_ms:.0f} ms")
        await still_serves(lab)  # sign-ups, sockets, chat and history, all while the 256 stall
        assert any("refusing connections from 127.0.0.2: 256 unfinished requests" in line for line in logs), logs
        assert not any("Traceback" in line or "Errno 24" in line for line in logs), logs
    finally:
        for sock in slow:
            sock.close()


# --- 6. /observe without the admin token; the admin token beyond loopback -----------------------


def raw_request(
    lab: LabServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request sent exactly as given (``Host`` included, when ``headers`` names one)."""
    host, port = hostport(lab)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


async def test_observe_without_an_admin_token_hides_private_rooms_dm_pairs_and_texts(lab: LabServer) -> None:
    assert lab.admin_token is None  # the suite's lab, on loopback: anyone may observe, but not everything
    owner, member, other = (fresh_account(lab, p) for p in ("owner", "member", "other"))
    secret = f"hideout{owner.id}"
    assert lab.request("POST", "/api/rooms", {"name": secret, "members": [member.id]}, owner.token)[0] == 201
    a, b = await Client.connect(lab, owner), await Client.connect(lab, member)
    try:
        assert (await a.request("join", room=secret))["type"] == "ack"
        async with websockets.connect(lab.observe_url) as watcher:
            snapshot = json.loads(await asyncio.wait_for(watcher.recv(), 5))
            assert snapshot["type"] == "snapshot"
            assert secret not in snapshot["rooms"] and all(secret not in s["rooms"] for s in snapshot["sockets"])
            assert (await b.request("join", room=secret))["type"] == "ack"
            assert (await a.request("chat", room=secret, text="the plan"))["type"] == "ack"
            assert (await a.request("dm", to=other.id, text="psst"))["type"] == "ack"
            assert (await a.request("join", room="open-hall"))["type"] == "ack"
            assert (await a.request("chat", room="open-hall", text="public words"))["type"] == "ack"
            events: list[dict[str, Any]] = []

            async def seen_public_chat() -> bool:
                batch = json.loads(await asyncio.wait_for(watcher.recv(), 5))
                events.extend(batch.get("events", []))
                return any(e.get("type") == "chat" and e["to"]["name"] == "open-hall" for e in events)

            await until(seen_public_chat, 10, "the public chat observed")
        text = json.dumps(events)
        assert secret not in text and f"dm:{min(owner.id, other.id)}:{max(owner.id, other.id)}" not in text
        assert "the plan" not in text and "public words" not in text and "psst" not in text
        routed = {e["type"] + ":" + str(e["to"]["name"]) for e in events if e["ev"] == "routed"}
        assert {"chat:(hidden)", "dm:(hidden)", "chat:open-hall"} <= routed, routed
        assert all(e["preview"] is None for e in events if e["ev"] == "routed")
        assert not [e for e in events if e.get("room") == secret]  # no joins or leaves of it
    finally:
        await a.close()
        await b.close()


async def test_a_lab_beyond_loopback_always_has_an_admin_token(tmp_path: Path) -> None:
    # Listening on every interface (class mode) with no LABSERVER_ADMIN_TOKEN: the lab makes one.
    with LabServer(tmp_path, host="0.0.0.0") as exposed:
        token_file = tmp_path / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 30
        assert any(f"/observe and the admin API need the admin token in {token_file}" in line for line in exposed.logs)
        assert token not in "\n".join(exposed.logs)  # where it is, not what it is
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(exposed.observe_url)
        assert refused.value.response.status_code == 403
        assert exposed.request("GET", "/api/admin/switches")[0] == 403
        status, body = exposed.request("GET", "/api/admin/switches", headers={"X-Admin-Token": token})
        assert status == 200 and "switches" in body
        async with websockets.connect(f"{exposed.observe_url}?admin_token={token}") as watcher:
            assert json.loads(await asyncio.wait_for(watcher.recv(), 5))["type"] == "snapshot"


# --- 7. DNS rebinding: the Host header --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/", "/static/client.js", "/api/me", "/ws", "/observe"])
def test_a_foreign_host_header_is_refused_on_every_path(lab: LabServer, path: str) -> None:
    host, port = hostport(lab)
    headers = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    if path in ("/ws", "/observe"):  # a handshake whose Origin matches its Host: what a rebound page sends
        headers |= {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
        headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    status, _, body = raw_request(lab, "GET", path, headers=headers)
    assert status == 403, (status, body)
    answer = json.loads(body)
    assert answer["error"] == "forbidden_host" and "evil.example" in answer["message"], answer


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST", "localhost."])
def test_the_lab_answers_its_own_names(lab: LabServer, name: str) -> None:
    port = hostport(lab)[1]
    for host in (name, f"{name}:{port}"):
        status, _, body = raw_request(lab, "GET", "/healthz", headers={"Host": host})
        assert status == 200, (host, status, body)


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.20:8765", "lab.example", "127.0.0.1.nip.io", "[::1"])
def test_a_lab_on_loopback_refuses_other_hosts(lab: LabServer, host: str) -> None:
    assert raw_request(lab, "GET", "/healthz", headers={"Host": host})[0] == 403


def test_allowed_host_names_more_hosts(tmp_path: Path) -> None:
    with LabServer(tmp_path, allowed_host=["lab.example", "Teacher.Local"]) as named:
        for host in ("lab.example", "lab.example:8765", "teacher.local"):
            assert raw_request(named, "GET", "/healthz", headers={"Host": host})[0] == 200, host
        assert raw_request(named, "GET", "/healthz", headers={"Host": "evil.example"})[0] == 403


# --- 8. JSON bodies only as application/json --------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
    ids=["text", "form", "multipart", "none"],
)
def test_a_json_endpoint_refuses_bodies_a_cross_site_form_can_send(lab: LabServer, content_type: str | None) -> None:
    body = json.dumps({"username": f"csrf{abs(hash(content_type)) % 10**6}", "password": "secret123"}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/api/signup", "/api/login"):
        status, _, answer = raw_request(lab, "POST", path, body, headers)
        assert status == 415, (path, status, answer)
        error = json.loads(answer)
        assert error["error"] == "unsupported_media_type" and "application/json" in error["message"], error
    status, _, _ = raw_request(lab, "POST", "/api/signup", body, {"Content-Type": "application/json; charset=utf-8"})
    assert status == 201


# --- 10. files readable by the owner only -----------------------------------------------------------


def test_the_data_directory_and_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "lab-data"
    with LabServer(data) as fresh:
        fresh.account("filesowner")
        fresh.request("POST", "/api/rooms/x/messages", {"text": "on disk"}, fresh.account("filesowner").token)
        modes = {p.name: p.stat().st_mode & 0o777 for p in [data, *data.iterdir()]}
    assert modes["lab-data"] == 0o700 and modes["uploads"] == 0o700, modes
    for name in ("lab.sqlite3", "jwt-secret"):
        assert modes[name] == 0o600, modes
    assert all(mode == 0o600 for name, mode in modes.items() if name.startswith("lab.sqlite3")), modes


def test_a_data_directory_others_can_read_gets_a_warning(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    with LabServer(tmp_path) as shared:
        shared.health()
        assert any("is readable by other users (mode 755)" in line for line in shared.logs), list(shared.logs)


# --- 12. smaller holes --------------------------------------------------------------------------------


def test_the_page_has_security_headers_and_no_inline_script(lab: LabServer) -> None:
    status, headers, body = raw_request(lab, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    # The policy forbids inline script: the page must have none (no <script> body, no on...= handler).
    page = body.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "an inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", page, re.IGNORECASE), "an inline event handler"
    for asset in ("/static/client.js", "/static/style.css"):
        assert raw_request(lab, "GET", asset)[1]["x-content-type-options"] == "nosniff", asset


def test_a_webp_upload_is_served_as_image_webp(lab: LabServer) -> None:
    webp = b"RIFF" + (30).to_bytes(4, "little") + b"WEBPVP8 " + bytes(22)
    token = fresh_account(lab, "webp").token
    boundary = "webpboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.webp"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + webp
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {token}"}
    status, _, answer = raw_request(lab, "POST", "/api/uploads", body, headers)
    assert status == 201, answer
    stored = json.loads(answer)
    assert stored["content_type"] == "image/webp" and stored["url"].endswith(".webp")
    status, served, _ = raw_request(lab, "GET", stored["url"])
    assert status == 200 and served["content-type"] == "image/webp", served


async def test_resume_out_of_range_says_the_bound(lab: LabServer) -> None:
    client = await Client.connect(lab, fresh_account(lab, "resumer"))
    try:
        for after, bound in ((2**53 + 1, "<= 2^53"), (-1, ">= 0")):
            error = await client.request("resume", room="anywhere", after=after)
            assert error["code"] == "bad_field", error
            assert error["message"] == f"field 'after' must be {bound}, got {after}", error
    finally:
        await client.close()


async def test_credentials_in_malformed_headers_never_reach_the_logs(tmp_path: Path) -> None:
    """aiohttp logs a malformed request with its raw headers: every spelling of the admin token's
    header, and of a bearer token, is redacted."""
    secret = "instructor-secret-4567"
    proc = LabServer(tmp_path, log_level="DEBUG", admin_token=secret)
    proc.logs = collections.deque(maxlen=100_000)
    with proc:
        token = proc.account("spelled").token
        for header in (
            f"X-Admin-Token:{secret}",
            f"X-Admin-Token :{secret}",
            f"X-Admin-Token:\t{secret}",
            f"x-admin-token:  {secret}",
            f"Authorization: Bearer\t{token}",
            f"Authorization: bearer  {token}",
        ):
            for extra in ("", "\r\nBad Header"):  # well-formed, and malformed (logged raw)
                raw = f"GET /api/users HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}{extra}\r\n\r\n".encode()
                with socket.create_connection(hostport(proc), timeout=5) as sock:
                    sock.sendall(raw)
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
        await still_serves(proc)
    logs = "\n".join(proc.logs)
    assert "Error handling request" in logs or "Bad Header" in logs or "400" in logs
    for leaked in (secret, token, token.split(".")[2]):
        assert leaked not in logs, [line[:200] for line in logs.splitlines() if leaked in line]


# --- 11. a reset database never maps an old token to a new account ------------------------------------


async def test_after_a_database_reset_an_old_token_names_no_one(tmp_path: Path) -> None:
    with LabServer(tmp_path) as first:
        old = first.account("ann")
        assert first.request("GET", "/api/me", token=old.token)[0] == 200
    for path in tmp_path.glob("lab.sqlite3*"):  # the database reset, the signing key kept
        path.unlink()
    with LabServer(tmp_path) as second:
        status, body = second.request("GET", "/api/me", token=old.token)  # no user 1 yet
        assert status == 401 and body["message"] == "token names a user that does not exist", body
        new = second.account("mallory")  # the same id again, another account
        assert new.id == old.id
        status, body = second.request("GET", "/api/me", token=old.token)
        assert status == 401, body
        assert body["message"] == "token is from before the database was reset"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{second.ws_url}?token={old.token}")
        assert refused.value.response.status_code == 401
        await still_serves(second)


# --- 3. uploads: streamed to disk, a few at once per user, a quota ----------------------------------------

BOUNDARY = "stallboundary"


def stalled_upload(lab: LabServer, token: str, sent: int, total: int = 5 * 2**20, seed: int = 0) -> socket.socket:
    """An upload of ``total`` bytes of PNG whose client sends ``sent`` of them, then stalls."""
    png_head = b"\x89PNG\r\n\x1a\n"
    data = png_head + bytes([seed % 256]) * (total - len(png_head))
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (
        "POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(part) + len(data) + len(tail)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(hostport(lab), timeout=10)
    sock.sendall(head + part + data[:sent])
    return sock


def abort(sock: socket.socket) -> None:
    """Close with a TCP reset, as a client that crashes or loses its network mid-upload."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def upload_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    sock.settimeout(10)
    raw = b""
    while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def parts_on_disk(lab: LabServer) -> list[Path]:
    return list((lab.data_dir / "uploads").glob(".part-*"))


async def test_uploads_stream_to_disk_and_an_aborted_one_is_freed_with_one_line(tmp_path: Path) -> None:
    with LabServer(tmp_path, log_level="INFO") as lab:
        accounts = [fresh_account(lab, "uploader") for _ in range(15)]
        base = lab.health()["rss_bytes"]
        # 30 uploads of 5 MiB, each stalled 64 KiB before its end: in memory they would be 150 MiB.
        socks = [stalled_upload(lab, a.token, 5 * 2**20 - 2**16, seed=i) for a in accounts for i in range(2)]
        try:
            await until(lambda: len(parts_on_disk(lab)) == 30, 20, "30 uploads streaming to disk")
            await until(lambda: sum(p.stat().st_size for p in parts_on_disk(lab)) >= 30 * (5 * 2**20 - 2**17), 30)
            grown = lab.health()["rss_bytes"] - base
            print(f"\n30 stalled 5 MiB uploads: the server grew {grown / 2**20:.1f} MiB (in memory: 150 MiB)")
            assert grown < 40 * 2**20, grown
        finally:
            for sock in socks:
                abort(sock)
        # Each aborted upload's file is deleted at once, and each says so in one line.
        await until(lambda: not parts_on_disk(lab), 20, "every partial file deleted")
        await until(lambda: sum("aborted after" in line for line in lab.logs) >= 30, 10, "30 log lines")
        assert not [line for line in lab.logs if "Traceback" in line or "Error handling request" in line]
        await still_serves(lab)


async def test_one_user_sends_at_most_two_uploads_at_once(lab: LabServer) -> None:
    hoarder, other = fresh_account(lab, "hoarder"), fresh_account(lab, "patient")
    first, second = (stalled_upload(lab, hoarder.token, 2**20, seed=i) for i in range(2))
    try:
        await until(lambda: len(parts_on_disk(lab)) >= 2, 10, "two uploads streaming")
        third = stalled_upload(lab, hoarder.token, 2**16, seed=3)
        status, body = upload_answer(third)
        third.close()
        assert status == 429 and body["error"] == "too_many_uploads", body
        assert "at most 2 uploads at once" in body["message"]
        # Someone else is not held up by it.
        small = stalled_upload(lab, other.token, 2**16, total=2**16, seed=4)
        small.sendall(f"\r\n--{BOUNDARY}--\r\n".encode())
        assert upload_answer(small)[0] == 201
        small.close()
    finally:
        abort(first)
        abort(second)
    # The hoarder's slots come back when its uploads end.
    await until(lambda: not parts_on_disk(lab), 10, "the aborted uploads gone")
    again = stalled_upload(lab, hoarder.token, 2**16, total=2**16, seed=5)
    again.sendall(f"\r\n--{BOUNDARY}--\r\n".encode())
    assert upload_answer(again)[0] == 201
    again.close()


def test_one_user_stores_at_most_the_upload_quota(tmp_path: Path) -> None:
    with LabServer(tmp_path, upload_quota_bytes=3 * 2**20) as lab:
        filler, other = lab.account("filler"), lab.account("bystander")

        def upload(token: str, seed: int) -> tuple[int, dict[str, Any]]:
            sock = stalled_upload(lab, token, 2**20, total=2**20, seed=seed)
            sock.sendall(f"\r\n--{BOUNDARY}--\r\n".encode())
            try:
                return upload_answer(sock)
            finally:
                sock.close()

        # Four uploads of 1 MiB under a 3 MiB quota: the same bytes twice are stored once, counted once.
        assert [upload(filler.token, seed)[0] for seed in (0, 0, 1, 2)] == [201, 201, 201, 201]
        status, body = upload(filler.token, 9)
        assert status == 413 and body["error"] == "quota_exceeded", body
        assert body["message"] == f"your uploads would pass the {3 * 2**20} bytes one user may store"
        assert not parts_on_disk(lab)
        assert upload(other.token, 9)[0] == 201  # a quota per user
        still_serves_sync(lab)


# --- 4. per-user and per-address limits --------------------------------------------------------------------


async def test_rest_writes_per_user_are_limited_with_retry_after(tmp_path: Path) -> None:
    with LabServer(tmp_path, rest_rate=1, rest_burst=5) as lab:
        flooder, other = lab.account("flooder"), lab.account("calm")
        statuses: list[int] = []
        async with aiohttp.ClientSession(lab.url, headers={"Authorization": f"Bearer {flooder.token}"}) as http:
            for i in range(20):
                async with http.post("/api/rooms/flood/messages", json={"text": f"m{i}"}) as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        refusal, retry = await resp.json(), resp.headers["Retry-After"]
                        break
        assert statuses[:5] == [201] * 5 and statuses[-1] == 429, statuses
        assert refusal["error"] == "too_many_requests" and "over 1 REST writes per second" in refusal["message"]
        assert retry.isdigit() and int(retry) >= 1
        # Someone else writes on; the flooder again after waiting.
        assert lab.request("POST", "/api/rooms/flood/messages", {"text": "calm"}, other.token)[0] == 201
        await until(
            lambda: asyncio.to_thread(lab.request, "POST", "/api/posts", {"text": "later"}, flooder.token),
            10,
            "a write accepted after the wait",
        )
        assert lab.request("GET", "/api/me", token=flooder.token)[0] == 200  # reads are not limited
        await still_serves(lab)


async def test_one_user_has_at_most_the_sockets_allowed(tmp_path: Path) -> None:
    with LabServer(tmp_path, max_sockets_per_user=3) as lab:
        tabs = lab.account("tabs")
        open_ = [await Client.connect(lab, tabs) for _ in range(3)]
        try:
            async with websockets.connect(f"{lab.ws_url}?token={tabs.token}") as fourth:
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(fourth.recv(), 5)
            assert fourth.close_code == 1008 and fourth.close_reason == "too many sockets for this user (at most 3)"
            assert (await open_[0].request("ping"))["type"] == "pong"  # the three stay open
        finally:
            for client in open_:
                await client.close()
        await until(lambda: wait_health(lab, lambda b: b["connections"] == 0, 0), 10, "the tabs closed")
        async with websockets.connect(f"{lab.ws_url}?token={tabs.token}") as again:
            assert json.loads(await asyncio.wait_for(again.recv(), 5))["type"] == "welcome"
        await still_serves(lab)


def login(lab: LabServer, username: str, password: str) -> tuple[int, Any]:
    return lab.request("POST", "/api/login", {"username": username, "password": password})


async def test_failed_logins_for_one_username_back_off(lab: LabServer) -> None:
    victim, bystander = fresh_account(lab, "target"), fresh_account(lab, "bystander")
    assert [login(lab, victim.username, f"guess{i}")[0] for i in range(6)] == [401] * 6
    status, body = login(lab, victim.username, "lab-password")  # even the right password waits now
    assert status == 429 and body["error"] == "too_many_attempts", body
    assert body["message"].startswith("too many failed logins; retry in ")
    assert login(lab, bystander.username, "lab-password")[0] == 200  # other names are not held up
    await until(
        lambda: asyncio.to_thread(lambda: login(lab, victim.username, "lab-password")[0] == 200),
        10,
        "the right password accepted after the back-off",
    )
    assert login(lab, victim.username, "guess-again")[0] == 401  # a success starts the count again


def test_failed_logins_from_one_address_back_off_beyond_loopback(tmp_path: Path) -> None:
    with LabServer(tmp_path, host="0.0.0.0") as exposed:
        names = [exposed.account(f"spray{i}").username for i in range(2)]
        # 21 wrong passwords spread over names (never 6 on one): the address is shut out.
        statuses = [login(exposed, f"nobody{i}", "guess")[0] for i in range(21)]
        assert statuses == [401] * 21, statuses
        status, body = login(exposed, names[0], "lab-password")
        assert status == 429 and body["error"] == "too_many_attempts", body


def test_signups_per_address_are_limited(tmp_path: Path) -> None:
    with LabServer(tmp_path, signups_per_minute=6) as lab:
        made = [lab.request("POST", "/api/signup", {"username": f"bulk{i}", "password": "secret1"}) for i in range(11)]
        assert [status for status, _ in made[:10]] == [201] * 10
        status, body = made[10]
        assert status == 429 and body["error"] == "too_many_attempts", body
        assert "over 6 sign-ups a minute from this address" in body["message"]
        assert lab.request("POST", "/api/login", {"username": "bulk0", "password": "secret1"})[0] == 200


# --- 5. Server-Sent Events from the broadcast path -----------------------------------------------------------


async def test_streams_are_fed_by_the_broadcast_and_skip_what_they_asked_to_skip(lab: LabServer) -> None:
    reader, writer = fresh_account(lab, "sse"), fresh_account(lab, "ssew")
    room = f"fanout{reader.id}"
    first = lab.request("POST", f"/api/rooms/{room}/messages", {"text": "history"}, writer.token)[1]["seq"]
    ahead: list[dict[str, Any]] = []
    everything: list[dict[str, Any]] = []
    url = f"{lab.url}/api/rooms/{room}/events"
    async with aiohttp.ClientSession() as session:
        tasks = [
            asyncio.create_task(collect(sse_events(session, url, token=reader.token, after=str(10**6)), ahead)),
            asyncio.create_task(collect(sse_events(session, url, token=reader.token, after="0"), everything)),
        ]
        await until(lambda: parked(lab, 2), what="both streams parked")
        for i in range(5):
            assert (await api(lab, "POST", f"/api/rooms/{room}/messages", writer.token, {"text": f"live {i}"}))[
                0
            ] == 201
        await until(lambda: len(everything) == 6, 10, "six events")
        await until(lambda: parked(lab, 2), what="both streams parked again")
        # The history and the live messages, once each and in order; nothing at all (not even a
        # keep-alive per message) to the stream that asked for what comes after seq 1,000,000.
        assert [e["id"] for e in everything] == list(range(first, first + 6))
        assert [e["data"]["text"] for e in everything] == ["history", *(f"live {i}" for i in range(5))]
        assert ahead == []
        for task in tasks:
            task.cancel()


async def test_one_user_has_at_most_the_streams_allowed(tmp_path: Path) -> None:
    with LabServer(tmp_path, max_streams_per_user=2) as lab:
        greedy, other = lab.account("greedy"), lab.account("modest")
        url = f"{lab.url}/api/rooms/capped/events"
        async with aiohttp.ClientSession() as session:
            held = [await session.get(url, params={"token": greedy.token}) for _ in range(2)]
            assert [r.status for r in held] == [200, 200]
            async with session.get(url, params={"token": greedy.token}) as third:
                assert third.status == 429
                body = await third.json()
                assert body == {
                    "error": "too_many_streams",
                    "message": "at most 2 open event streams per user; close one",
                }
            async with session.get(url, params={"token": other.token}) as theirs:
                assert theirs.status == 200
            for resp in held:
                resp.close()
        await still_serves(lab)


async def test_a_thousand_streams_of_one_user_cost_others_little(lab: LabServer) -> None:
    """1,000 streams of one user on one room (a figure, printed: another user's chat ack)."""
    hog, chatter = fresh_account(lab, "hog"), fresh_account(lab, "chatter")
    room = f"crowded{hog.id}"
    counts = [0] * 1000
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def listen(i: int) -> None:
            async with session.get(f"{lab.url}/api/rooms/{room}/events", params={"token": hog.token}) as resp:
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        counts[i] += 1

        tasks = [asyncio.create_task(listen(i)) for i in range(1000)]
        await until(lambda: parked(lab, 1000), 60, "1,000 streams parked")
        client = await Client.connect(lab, chatter)
        try:
            await client.request("join", room=room)
            acks = []
            for i in range(20):
                started = time.monotonic()
                assert (await client.request("chat", room=room, text=f"m{i}"))["type"] == "ack"
                acks.append((time.monotonic() - started) * 1000)
                sent = i + 1
                await until(lambda: min(counts) == sent, 30, "every stream got it")  # noqa: B023 - awaited here
        finally:
            await client.close()
        print(f"\n1,000 streams of one user: another user's chat ack median {sorted(acks)[10]:.1f} ms")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_the_rooms_everyone_meets_in_cannot_be_made_private(lab: LabServer) -> None:
    squatter = fresh_account(lab, "squatter")
    for name in ("general", "lobby"):
        status, body = lab.request("POST", "/api/rooms", {"name": name, "members": []}, squatter.token)
        assert status == 409 and body["error"] == "room_taken", body
