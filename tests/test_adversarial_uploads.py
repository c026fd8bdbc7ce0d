"""Hostile uploads, beyond tests/test_rest.py (which covers over the limit by one byte, a huge
declared Content-Length, non-images, four path-trick filenames and traversal in GET paths):
chunked bodies with no Content-Length, junk fields, thousands of parts, filenames that try
header or path injection, polyglots, broken multipart, and uploads cut off halfway.
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labserver.course import LabServer

from .adversarial import (
    each_case_then_still_serves,  # noqa: F401 - autouse: a second client is served after each case
    fresh_account,
    hostport,
)

LIMIT = 5 * 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def part(
    name: str, body: bytes, filename: str | None = None, content_type: str | None = None, boundary: str = "XyZ"
) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body + b"\r\n"


def post(
    lab: LabServer,
    token: str | None,
    pieces: Iterable[bytes],
    *,
    boundary: str = "XyZ",
    chunked: bool = True,
    content_type: str | None = None,
    cut_after: int | None = None,
    answered_early: bool = False,
) -> tuple[int, dict[str, Any]]:
    """POST /api/uploads over a raw socket, body streamed from ``pieces`` (chunked by default).

    ``answered_early=True`` asserts that the server's answer arrived while the body was
    still being sent: it refused the upload as it streamed, not after reading it all."""
    pieces = list(pieces) if not chunked else pieces
    head = "POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    head += f"Content-Type: {content_type or f'multipart/form-data; boundary={boundary}'}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    else:
        head += f"Content-Length: {sum(map(len, pieces))}\r\n"
    with socket.create_connection(hostport(lab), timeout=20) as sock:
        sock.sendall((head + "\r\n").encode())
        sent = 0
        answered = False
        try:
            for piece in pieces:
                answered = answered or bool(select.select([sock], [], [], 0)[0])
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
                if cut_after is not None and sent >= cut_after:
                    return 0, {}  # the client vanishes halfway
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            answered = True  # the server answered early and hung up
        assert answered or not answered_early, "the server read the whole body before answering"
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ")[1])
    if b"chunked" in head_bytes.lower():
        body = b"".join(body.split(b"\r\n")[1::2])
    return status, json.loads(body) if body.startswith(b"{") else {"raw": body.decode(errors="replace")}


def stored(lab: LabServer) -> set[str]:
    return {p.name for p in (Path(lab.data_dir) / "uploads").iterdir()}


def test_a_chunked_file_over_the_limit_is_413_as_it_streams(lab: LabServer) -> None:
    before = stored(lab)
    rss = lab.health()["rss_bytes"]

    def pieces() -> Iterator[bytes]:
        yield part("file", PNG, "big.png", "image/png")[:-2]
        for _ in range(400):  # 50 MB if the server kept reading
            yield b"\0" * 131072
        yield b"\r\n--XyZ--\r\n"

    status, body = post(lab, fresh_account(lab).token, pieces(), answered_early=True)
    assert status == 413 and body["error"] == "too_large"
    assert stored(lab) == before
    assert lab.health()["rss_bytes"] - rss < 20 * 2**20


def test_junk_fields_streamed_before_the_file_count_against_the_limit(lab: LabServer) -> None:
    """Before the fix a chunked body could stream any amount of junk fields (here 20 MB) and
    still be accepted; the other fields are now counted."""

    def pieces() -> Iterator[bytes]:
        yield part("junk", b"")[:-2]
        for _ in range(160):
            yield b"j" * 131072
        yield b"\r\n" + part("file", PNG, "a.png", "image/png") + b"--XyZ--\r\n"

    status, body = post(lab, fresh_account(lab).token, pieces())
    assert status == 413 and body["error"] == "too_large"


def test_thousands_of_small_fields_before_the_file_are_fine(lab: LabServer) -> None:
    fields = [part(f"f{i}", b"v") for i in range(3000)]
    image = PNG + b"many-fields"
    status, body = post(
        lab, fresh_account(lab).token, [*fields, part("file", image, "a.png", "image/png"), b"--XyZ--\r\n"]
    )
    assert status == 201 and body["name"] == hashlib.sha256(image).hexdigest()[:32] + ".png"


@pytest.mark.parametrize(
    "filename",
    [
        "a\x00.png",
        "x" * 10_000 + ".png",
        "\u202egnp.exe",  # right-to-left override
        'a.png"; name="file',
        "a.png\r\nContent-Type: text/html",
        "../../../../../../tmp/evil.png",
        "C:\\Windows\\evil.png",
        "%2e%2e%2fevil.png",
        ".htaccess",
        "",
    ],
    ids=[
        "nul",
        "10k_chars",
        "rtl_override",
        "quote_injection",
        "crlf_injection",
        "deep_traversal",
        "windows_path",
        "encoded_traversal",
        "dotfile",
        "empty",
    ],
)
def test_filenames_never_reach_the_disk(lab: LabServer, filename: str, tmp_path: Path) -> None:
    image = PNG + filename.encode("utf-8", "surrogateescape")[:64]
    status, body = post(
        lab, fresh_account(lab).token, [part("file", image, filename, "image/png"), b"--XyZ--\r\n"], chunked=False
    )
    assert status in (201, 400), body  # 400 bad_upload: part headers aiohttp refuses (NUL, CRLF, too long)
    if status == 201:
        assert body["name"] == hashlib.sha256(image).hexdigest()[:32] + ".png"
    assert all(len(name) == 36 and name.endswith(".png") for name in stored(lab))
    assert not Path("/tmp/evil.png").exists()


def test_a_polyglot_is_stored_and_served_as_the_image_type_its_magic_says(lab: LabServer) -> None:
    polyglot = PNG + b"<html><script>alert(document.cookie)</script></html>"
    status, body = post(
        lab, fresh_account(lab).token, [part("file", polyglot, "page.html", "text/html"), b"--XyZ--\r\n"], chunked=False
    )
    assert status == 201 and body["content_type"] == "image/png" and body["name"].endswith(".png")
    with socket.create_connection(hostport(lab), timeout=10) as sock:
        sock.sendall(f"GET {body['url']} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    headers = answer.partition(b"\r\n\r\n")[0].decode().lower()
    assert "content-type: image/png" in headers and "x-content-type-options: nosniff" in headers


@pytest.mark.parametrize(
    "data",
    [b"\x89PN", b"\x89PNG\r\n\x1a", b"GIF8", b"RIFF\0\0\0\0WEB", b"\xff\xd8"],
    ids=["png_cut", "png_7_bytes", "gif_cut", "webp_cut", "jpeg_cut"],
)
def test_truncated_magic_is_415(lab: LabServer, data: bytes) -> None:
    status, body = post(
        lab, fresh_account(lab).token, [part("file", data, "x.png", "image/png"), b"--XyZ--\r\n"], chunked=False
    )
    assert status == 415 and body["error"] == "unsupported_type"


@pytest.mark.parametrize(
    ("content_type", "pieces"),
    [
        ("multipart/form-data", [part("file", PNG, "a.png")]),  # no boundary
        ("multipart/form-data; boundary=" + "b" * 5000, [part("file", PNG, "a.png", boundary="b" * 5000)]),
        ("multipart/form-data; boundary=XyZ", [b"no boundary line at all"]),
        (
            "multipart/form-data; boundary=XyZ",
            [b"--XyZ\r\nContent-Disposition: form-data\r\n\r\n" + PNG],
        ),  # unterminated
        ("text/plain", [PNG]),
    ],
    ids=["no_boundary", "huge_boundary", "garbage", "unterminated", "not_multipart"],
)
def test_broken_multipart_is_a_clean_4xx(lab: LabServer, content_type: str, pieces: list[bytes]) -> None:
    status, body = post(lab, fresh_account(lab).token, pieces, content_type=content_type, chunked=False)
    assert 400 <= status < 500, (status, body)
    assert status != 201


def test_an_upload_cut_off_halfway_leaves_nothing_behind(lab: LabServer) -> None:
    before = stored(lab)
    for _ in range(5):
        post(
            lab,
            fresh_account(lab).token,
            [part("file", PNG, "a.png", "image/png")[:-2], b"\0" * 500_000, b"\0" * 500_000],
            cut_after=600_000,
        )
    lab.health()  # the five sockets closed before this request: the server has seen them end
    time.sleep(0.3)  # not a wait for something: a cut-off upload stored by mistake would appear by now
    after = stored(lab)
    assert after == before and not any(name.endswith(".part") for name in after)


def test_without_a_token_a_huge_upload_is_refused_before_its_body(lab: LabServer) -> None:
    def pieces() -> Iterator[bytes]:
        for _ in range(400):
            yield b"\0" * 131072

    status, body = post(lab, None, pieces(), answered_early=True)
    assert status == 401 and body["error"] == "unauthorized"
