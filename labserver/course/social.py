"""Lesson 05's tools: the social features of the lab, and the hybrid REST + WebSocket design, measured.

::

    row_counts(lab.data_dir)                   # {"users": 3, "messages": 12, ...}: read-only, from SQLite
    image = noise_png(2 * 2**20)               # a real PNG of about 2 MiB that does not compress
    seconds, answer = await upload_over_http(url, token, image)
    seconds, answer = await upload_over_websocket(client, image)    # one binary message on /ws
    typing_broadcasts([0, 0.25, 0.5], min_interval=1.0, ttl=5.0)    # what the room is told

Everything here is small on purpose: a lesson shows these functions with
``show_source`` next to what they measure. Nothing prints.
"""

from __future__ import annotations

import random
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from .client import LabClient

__all__ = [
    "TABLES",
    "noise_png",
    "row_counts",
    "typing_broadcasts",
    "upload_over_http",
    "upload_over_websocket",
]

TABLES = ("users", "messages", "posts", "likes", "comments", "notifications")
"""The lab's tables that the social features could write to."""


def row_counts(data_dir: str | Path, tables: Iterable[str] = TABLES) -> dict[str, int]:
    """How many rows each of ``tables`` holds in the lab's database, read without writing anything.

    The database is opened read-only (``mode=ro``), beside the server that writes it:
    SQLite's WAL mode lets a reader see the last commit while the server goes on writing.
    """
    path = Path(data_dir) / "lab.sqlite3"
    if not path.is_file():
        raise FileNotFoundError(f"no lab database at {path}: is this the lab's data_dir, and has it started?")
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        counts = {}
        for table in tables:
            if table not in TABLES:  # a name goes into SQL text: only known tables
                raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
            counts[table] = int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return counts
    finally:
        connection.close()


def noise_png(size: int, seed: int = 0) -> bytes:
    """A valid PNG of random pixels, about ``size`` bytes long (at least a 1x1 image).

    Random pixels do not compress, so the file is as big as it says, like a photo;
    the lab checks an upload's first bytes (the PNG signature), and this is a real PNG.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0 bytes, got {size}")
    width = 512
    height = max(1, size // (3 * width + 1))  # 3 bytes a pixel, plus a filter byte a row
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + rng.randbytes(3 * width) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


async def upload_over_http(
    url: str, token: str, image: bytes, session: aiohttp.ClientSession | None = None
) -> tuple[float, dict[str, Any]]:
    """``POST /api/uploads`` (multipart, part ``file``): seconds until the answer, and the answer."""
    own = session is None
    http = aiohttp.ClientSession() if session is None else session
    try:
        form = aiohttp.FormData()
        form.add_field("file", image, filename="photo.png", content_type="image/png")
        started = time.perf_counter()
        async with http.post(f"{url}/api/uploads", data=form, headers={"Authorization": f"Bearer {token}"}) as resp:
            answer = await resp.json()
        return time.perf_counter() - started, dict(answer)
    finally:
        if own:
            await http.close()


async def upload_over_websocket(client: LabClient, image: bytes, timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
    """The same image as one binary message on the client's ``/ws`` socket (PROTOCOL.md section 4).

    A binary message has no ``ref``: the answer is the next ``uploaded`` or ``error`` message.
    Returns the seconds until it came, and the answer.
    """
    ws = client.ws
    if ws is None or not client.connected:
        raise ConnectionError(f"{client.name} is not connected")
    started = time.perf_counter()
    await ws.send(image)
    answer = await client.wait_for(lambda m: m.get("type") in ("uploaded", "error"), timeout=timeout)
    return time.perf_counter() - started, answer


def typing_broadcasts(
    keystrokes: Iterable[float], min_interval: float = 1.0, ttl: float = 5.0
) -> list[tuple[float, bool]]:
    """What a room is told when a user sends ``typing`` at each of ``keystrokes`` (seconds, sorted).

    The lab's rule (``Hub.start_typing`` and ``Hub.expire``): a ``typing`` broadcasts
    ``active: true`` unless the last broadcast was less than ``min_interval`` ago, in
    which case it only pushes the expiry back; ``ttl`` seconds after the last ``typing``
    the indicator expires and ``active: false`` is broadcast.
    """
    if min_interval < 0 or ttl <= 0:
        raise ValueError(f"need min_interval >= 0 and ttl > 0 (seconds), got {min_interval!r} and {ttl!r}")
    times = list(keystrokes)
    if any(later < earlier for earlier, later in zip(times, times[1:], strict=False)):
        raise ValueError(f"keystrokes must be sorted in time, got {times!r:.80}")
    told: list[tuple[float, bool]] = []
    expires_at: float | None = None
    broadcast_at = 0.0
    for t in times:
        if expires_at is not None and expires_at <= t:
            told.append((expires_at, False))  # ran out before this keystroke
            expires_at = None
        if expires_at is not None and t - broadcast_at < min_interval:
            expires_at = t + ttl  # still typing: later expiry, nothing sent
            continue
        told.append((t, True))
        broadcast_at, expires_at = t, t + ttl
    if expires_at is not None:
        told.append((expires_at, False))
    return told
