"""Hostile opening handshakes (RFC 6455 section 4): each is refused before any upgrade, with
the right status, and the server keeps serving everyone else.

tests/test_ws.py already covers version 12, a non-base64 key, a missing key, and the
evil.example / example.com.evil.com Origins against a server with no allowlist.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from labserver.course import LabServer
from labserver.rawws import handshake_request

from .adversarial import (
    each_case_then_still_serves,  # noqa: F401 - autouse: a second client is served after each case
    fresh_account,
    hostport,
    raw_handshake,
    still_serves,
    wait_health,
)


def _attempt(
    lab: LabServer, *, path: str = "/ws", token: bool = True, **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    host, port = hostport(lab)
    if token:
        path = f"{path}?token={fresh_account(lab, 'hs').token}"
    ws = raw_handshake(lab, handshake_request(host, port, path, **kwargs))
    ws.close()
    return ws.response.status, ws.response.headers, ws.response.body


def _raw_status(lab: LabServer, request: bytes) -> int:
    host, port = hostport(lab)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ")[1])


# --- key and version ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "   ",
        base64.b64encode(b"x" * 15).decode(),  # 15 bytes
        base64.b64encode(b"x" * 17).decode(),  # 17 bytes
        base64.b64encode(b"x" * 16).decode()[:-2],  # padding cut off
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==",
    ],
    ids=["empty", "blank", "15_bytes", "17_bytes", "no_padding", "not_base64", "two_keys"],
)
def test_garbled_keys_are_400(lab: LabServer, key: str) -> None:
    status, _, body = _attempt(lab, key=key)
    assert status == 400 and b"bad_key" in body


@pytest.mark.parametrize("version", [None, "", "0", "8", "14", "13, 8", "thirteen", "13" * 100])
def test_wrong_versions_are_426_naming_13(lab: LabServer, version: str | None) -> None:
    status, headers, body = _attempt(lab, version=version)
    assert status == 426 and headers["sec-websocket-version"] == "13"
    assert b"unsupported_version" in body


# --- size and number of headers ---------------------------------------------------------------


def test_a_64_kib_header_value_is_refused(lab: LabServer) -> None:
    status, _, _ = _attempt(lab, extra_headers={"X-Padding": "a" * 64 * 1024})
    assert status in (400, 431)


def test_a_64_kib_url_is_refused(lab: LabServer) -> None:
    status, _, _ = _attempt(lab, path="/ws?pad=" + "a" * 64 * 1024, token=False)
    assert status in (400, 414)


def test_a_thousand_headers_are_refused(lab: LabServer) -> None:
    status, _, _ = _attempt(lab, extra_headers={f"X-Header-{i}": "v" for i in range(1000)})
    assert status in (400, 431)


def test_header_lines_that_never_end_are_cut_off(lab: LabServer) -> None:
    """100,000 short header lines, none too long on its own: the header-count limit ends it."""
    host, port = hostport(lab)
    request = f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
    request += b"".join(b"X-A%d: b\r\n" % i for i in range(100_000))
    answer = b""
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass  # the server already answered and hung up
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.split(b"\r\n")[0].split(b" ")[1:2] == [b"400"] or answer == b"", answer[:100]


# --- method and other malformed requests ----------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_a_websocket_handshake_must_be_a_get(lab: LabServer, method: str) -> None:
    status, _, _ = _attempt(lab, method=method)
    assert status in (400, 405), status


@pytest.mark.parametrize("method", ["POST", "HEAD"])
def test_observe_handshake_must_be_a_get(lab: LabServer, method: str) -> None:
    status, _, _ = _attempt(lab, path="/observe", token=False, method=method)
    assert status in (400, 405), status


@pytest.mark.parametrize(
    "headers",
    [
        {"Upgrade": None},
        {"Upgrade": "h2c"},
        {"Connection": None},
        {"Connection": "keep-alive"},
    ],
    ids=["no_upgrade", "upgrade_h2c", "no_connection", "connection_keep_alive"],
)
def test_missing_upgrade_headers_are_400(lab: LabServer, headers: dict[str, str | None]) -> None:
    status, _, _ = _attempt(lab, extra_headers=headers)
    assert status == 400


def test_garbage_request_lines_are_400(lab: LabServer) -> None:
    host, port = hostport(lab)
    for request in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",  # a TLS hello
        b"GET /ws HTTP/9.9\r\n\r\n",
        b"GET /ws\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    ):
        assert _raw_status(lab, request) in (400, 505), request


# --- Origin --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def allowlisted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A lab that allows browser pages from http://example.com only (besides its own origin)."""
    with LabServer(tmp_path_factory.mktemp("origins"), origin=["http://example.com"]) as proc:
        yield proc


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://example.com", 101),
        ("HTTP://EXAMPLE.COM", 101),  # scheme and host are case-insensitive
        ("http://evil.example", 403),
        ("http://example.com.evil.com", 403),  # lookalike: suffix
        ("http://evil.com/http://example.com", 403),
        ("http://evilexample.com", 403),
        ("http://sub.example.com", 403),
        ("http://example.co", 403),
        ("null", 403),  # sandboxed iframes, file:// pages
        ("https://example.com", 403),  # scheme mismatch
        ("ws://example.com", 403),
        ("http://example.com:8080", 403),  # different port
        ("http://example.com:80x", 403),
        ("http://user:pass@example.com", 403),
        ("", 403),
    ],
    ids=lambda v: str(v),
)
def test_origin_against_an_allowlist(allowlisted: LabServer, origin: str, status: int) -> None:
    got, _, body = _attempt(allowlisted, extra_headers={"Origin": origin})
    assert got == status, (origin, got, body)
    if status == 403:
        assert b"forbidden_origin" in body


def test_origin_of_the_server_itself_but_another_port_is_refused(allowlisted: LabServer) -> None:
    host, port = hostport(allowlisted)
    assert _attempt(allowlisted, extra_headers={"Origin": f"http://{host}:{port}"})[0] == 101
    assert _attempt(allowlisted, extra_headers={"Origin": f"http://{host}:{port + 1}"})[0] == 403
    assert _attempt(allowlisted, extra_headers={"Origin": f"http://{host}"})[0] == 403
    assert _attempt(allowlisted, extra_headers={"Origin": f"http://localhost:{port}"})[0] == 403


def test_observe_checks_the_origin_too(allowlisted: LabServer) -> None:
    assert (
        _attempt(allowlisted, path="/observe", token=False, extra_headers={"Origin": "http://evil.example"})[0] == 403
    )
    assert _attempt(allowlisted, path="/observe", token=False, extra_headers={"Origin": "http://example.com"})[0] == 101


def test_a_refused_origin_is_refused_before_the_token_is_looked_at(allowlisted: LabServer) -> None:
    status, _, body = _attempt(
        allowlisted, path="/ws?token=forged", token=False, extra_headers={"Origin": "http://evil.example"}
    )
    assert status == 403 and b"forbidden_origin" in body


async def test_still_serves_after_the_bad_handshakes(lab: LabServer, allowlisted: LabServer) -> None:
    await still_serves(lab)
    await still_serves(allowlisted)
    for proc in (lab, allowlisted):
        assert (await wait_health(proc, lambda h: h["connections"] == 0))["connections"] == 0
