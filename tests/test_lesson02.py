"""Lesson 02 (the Upgrade handshake, RFC 6455 section 4) against the real server.

What tests/test_ws.py does not already cover: the exercise's requests get the
statuses the lesson claims, the method and Connection/Upgrade header rules, one
port for HTTP and the upgrade, what happens to HTTP sent after the 101, and the
closing handshake over a raw socket, and the two RFC rules aiohttp does not
enforce and the lab server does (an HTTP/1.0 upgrade, a repeated key). Hostile
handshakes in general are tests/test_adversarial_handshake.py's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from urllib.parse import urlsplit

import pytest

from labserver.course import LabServer
from labserver.course.exercises import lesson02 as ex
from labserver.frames import Frame, Opcode
from labserver.rawws import HandshakeResponse, RawWebSocket, close_code, handshake_request

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _hostport(lab: LabServer) -> tuple[str, int]:
    parts = urlsplit(lab.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _send(lab: LabServer, request: bytes) -> RawWebSocket:
    host, port = _hostport(lab)
    return RawWebSocket.connect(host, port, request)


def _answer(lab: LabServer, request: bytes) -> HandshakeResponse:
    ws = _send(lab, request)
    ws.close()
    return ws.response


def _request(lab: LabServer, path: str = "/ws", **kwargs: object) -> bytes:
    host, port = _hostport(lab)
    return handshake_request(host, port, path, **kwargs)  # type: ignore[arg-type]


def _with_token(lab: LabServer, name: str) -> str:
    return f"/ws?token={lab.account(name).token}"


# --- the exercise's requests -------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(ex.REQUESTS)))
def test_exercise_requests_get_the_status_the_lesson_claims(lab: LabServer, index: int) -> None:
    host, port = _hostport(lab)
    text = ex.REQUESTS[index].replace("lab.example:8765", f"{host}:{port}")
    request = (text.replace("\n", "\r\n") + "\r\n").encode()
    response = _answer(lab, request)
    assert response.status == ex.REQUEST_STATUS[index], (response.raw, response.body)
    assert (response.status == 101) == (ex.REQUEST_DEFECTS[index] == "g")


def test_status_map_of_q3_matches_the_server(lab: LabServer) -> None:
    token_path = _with_token(lab, "q3user")
    forged_path = "/ws?token=" + ".".join(["eyJhbGciOiJIUzI1NiJ9", "eyJzdWIiOiIxIn0", "c2lnbmF0dXJl"])
    sent = {
        "a good handshake": _request(lab, token_path),
        "no Sec-WebSocket-Key": _request(lab, token_path, extra_headers={"Sec-WebSocket-Key": None}),
        "Sec-WebSocket-Version: 8": _request(lab, token_path, version="8"),
        "Origin: http://evil.example": _request(lab, token_path, extra_headers={"Origin": "http://evil.example"}),
        "?token= with a forged token": _request(lab, forged_path),
        "POST /ws": _request(lab, token_path, method="POST"),
    }
    assert {situation: _answer(lab, request).status for situation, request in sent.items()} == ex.SITUATIONS


# --- method, Connection and Upgrade ------------------------------------------------------------


def test_post_to_ws_gets_405_with_allow_get(lab: LabServer) -> None:
    response = _answer(lab, _request(lab, _with_token(lab, "poster"), method="POST"))
    assert response.status == 405
    assert "GET" in response.headers["allow"].split(",")
    assert "sec-websocket-accept" not in response.headers


@pytest.mark.parametrize("connection", ["close", "upgraded", "Upgrade-Insecure"])
def test_connection_needs_the_upgrade_token_itself(lab: LabServer, connection: str) -> None:
    """A token, not a substring (tests/test_adversarial_handshake.py covers a missing header and keep-alive)."""
    response = _answer(lab, _request(lab, _with_token(lab, "noconn"), extra_headers={"Connection": connection}))
    assert response.status == 400
    assert "sec-websocket-accept" not in response.headers


@pytest.mark.parametrize("connection", ["keep-alive, Upgrade", "upgrade", "UPGRADE", "Upgrade, keep-alive"])
def test_connection_is_a_case_insensitive_token_list(lab: LabServer, connection: str) -> None:
    response = _answer(lab, _request(lab, _with_token(lab, "listconn"), extra_headers={"Connection": connection}))
    assert response.status == 101


def test_upgrade_token_is_case_insensitive(lab: LabServer) -> None:
    response = _answer(lab, _request(lab, _with_token(lab, "caseup"), extra_headers={"Upgrade": "WebSocket"}))
    assert response.status == 101


def test_plain_get_ws_without_any_upgrade_header_is_400(lab: LabServer) -> None:
    host, port = _hostport(lab)
    response = _answer(lab, f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    assert response.status == 400


def test_every_refusal_before_the_upgrade_leaves_no_websocket(lab: LabServer) -> None:
    """A refused handshake is plain HTTP: no Accept header, and no frame follows the body."""
    response = _answer(lab, _request(lab, _with_token(lab, "refused"), version="8"))
    assert response.status == 426
    assert "sec-websocket-accept" not in response.headers
    assert "upgrade" not in response.headers
    assert json.loads(response.body)["error"] == "unsupported_version"


# --- the accept key, computed independently ---------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_accept_for_fresh_random_keys(lab: LabServer, seed: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    response = _answer(lab, _request(lab, _with_token(lab, "randkey"), key=key))
    assert response.status == 101
    expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    assert response.headers["sec-websocket-accept"] == expected


def test_hand_typed_request_with_origin_matches_the_helper_and_upgrades(lab: LabServer) -> None:
    host, port = _hostport(lab)
    token = lab.account("handtyped").token
    typed = (
        f"GET /ws?token={token} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {ex.RFC_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Origin: http://{host}:{port}\r\n"
        "\r\n"
    ).encode()
    helper = handshake_request(
        host, port, f"/ws?token={token}", key=ex.RFC_KEY, extra_headers={"Origin": f"http://{host}:{port}"}
    )
    assert typed == helper
    ws = _send(lab, typed)
    try:
        assert ws.response.status == 101
        assert ws.response.headers["sec-websocket-accept"] == ex.RFC_ACCEPT
        frame = ws.recv_frame()
        assert frame is not None and frame.fin and frame.opcode is Opcode.TEXT and frame.masking_key is None
        assert json.loads(frame.payload)["type"] == "welcome"
    finally:
        ws.close()


# --- one port, then frames only ---------------------------------------------------------------


def test_same_port_serves_http_and_the_upgrade_at_the_same_time(lab: LabServer) -> None:
    host, port = _hostport(lab)
    ws = _send(lab, _request(lab, _with_token(lab, "oneport")))
    try:
        assert ws.response.status == 101
        with socket.create_connection((host, port), timeout=5) as rest:
            rest.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := rest.recv(4096):
                data += chunk
            assert rest.getpeername() == ws.sock.getpeername()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert json.loads(body)["connections"] >= 1  # the upgraded socket, counted by the same server
        ws.send_text(json.dumps({"type": "ping", "ref": "p1"}))
        frames = [ws.recv_frame(), ws.recv_frame()]
        kinds = [json.loads(f.payload)["type"] for f in frames if f is not None]
        assert kinds == ["welcome", "pong"]
    finally:
        ws.close()


def test_http_sent_after_the_101_is_a_protocol_error(lab: LabServer) -> None:
    """'G' (0x47) read as a frame header: RSV1 set, reserved opcode 7: close 1002 (RFC 6455 section 5.2)."""
    host, port = _hostport(lab)
    ws = _send(lab, _request(lab, _with_token(lab, "httpafter")))
    try:
        assert ws.response.status == 101
        ws.recv_frame()  # welcome
        ws.sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        frame = ws.recv_frame()
        assert frame is not None and frame.opcode is Opcode.CLOSE
        assert close_code(frame) == 1002
    finally:
        ws.close()


def test_closing_handshake_over_a_raw_socket(lab: LabServer) -> None:
    """Section 7: our Close 1000 is echoed with a Close 1000, then the server closes TCP (section 7.1.1)."""
    ws = _send(lab, _request(lab, _with_token(lab, "closer")))
    try:
        ws.recv_frame()  # welcome
        ws.send_frame(Frame(Opcode.CLOSE, (1000).to_bytes(2, "big") + b"bye", masking_key=os.urandom(4)))
        echo = ws.recv_frame()
        assert echo is not None and echo.opcode is Opcode.CLOSE and close_code(echo) == 1000
        assert echo.masking_key is None
        assert ws.recv_frame() is None  # the TCP connection is gone
    finally:
        ws.close()


def test_no_token_upgrades_then_first_message_auth_over_a_raw_socket(lab: LabServer) -> None:
    acct = lab.account("lateauth")
    ws = _send(lab, _request(lab, "/ws"))
    try:
        assert ws.response.status == 101
        ws.send_text(json.dumps({"type": "auth", "token": acct.token, "ref": "a1"}))
        first, second = ws.recv_frame(), ws.recv_frame()
        assert first is not None and json.loads(first.payload) == {"type": "ack", "ref": "a1"}
        assert second is not None and json.loads(second.payload)["user"]["id"] == acct.id
    finally:
        ws.close()


# --- where the server is laxer than RFC 6455 ----------------------------------------------------


def test_http_1_0_upgrade_is_refused(lab: LabServer) -> None:
    request = _request(lab, _with_token(lab, "http10")).replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    assert _answer(lab, request).status != 101


def test_repeated_key_is_refused(lab: LabServer) -> None:
    request = _request(lab, _with_token(lab, "twokeys")).replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n"
    )
    assert _answer(lab, request).status == 400


# --- the claims of parts 6 to 8 -----------------------------------------------------------------


async def test_a_second_server_without_the_ws_route_answers_the_upgrade_404(lab: LabServer) -> None:
    """Part 8: the Socket.IO-on-the-wrong-server bug, in Python: the port that listens has no /ws."""
    import asyncio

    from aiohttp import web

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        other = runner.addresses[0][1]
        host, port = _hostport(lab)
        token = lab.account("secondserver").token
        answers = {}
        for p in (port, other):
            request = handshake_request(host, p, f"/ws?token={token}")
            ws = await asyncio.to_thread(RawWebSocket.connect, host, p, request)
            ws.close()
            answers[p] = ws.response.status
        assert answers == {port: 101, other: 404}
    finally:
        await runner.cleanup()


def test_every_subprotocol_and_extension_offer_of_part_6_upgrades(lab: LabServer) -> None:
    offers = [
        ("lab.v1", None, "lab.v1"),
        ("chat, lab.v1", None, "lab.v1"),
        ("chat, superchat", None, None),
        (None, "permessage-deflate; client_max_window_bits", None),
        ("lab.v1", "permessage-deflate, x-webkit-deflate-frame", "lab.v1"),
    ]
    for protocol, extensions, answered in offers:
        headers = {"Sec-WebSocket-Protocol": protocol, "Sec-WebSocket-Extensions": extensions}
        response = _answer(lab, _request(lab, _with_token(lab, "offers"), extra_headers=headers))
        assert response.status == 101
        assert response.headers.get("sec-websocket-protocol") == answered
        assert "sec-websocket-extensions" not in response.headers
