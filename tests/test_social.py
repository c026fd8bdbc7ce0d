"""Lesson 05's tools (labserver.course.social): row counts, the noise PNG, the typing rule, uploads both ways."""

from __future__ import annotations

import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from labserver.course import LabClient, LabServer
from labserver.course.social import (
    TABLES,
    noise_png,
    row_counts,
    typing_broadcasts,
    upload_over_http,
    upload_over_websocket,
)

from .conftest import until


def test_row_counts_reads_the_lab_without_writing(lab: LabServer) -> None:
    before = row_counts(lab.data_dir)
    assert set(before) == set(TABLES) and all(isinstance(n, int) for n in before.values())
    lab.account("rows_reader")
    assert row_counts(lab.data_dir, ["users"]) == {"users": before["users"] + 1}
    database = lab.data_dir / "lab.sqlite3"
    connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        connection.execute("DELETE FROM users")
    connection.close()


def test_row_counts_refuses_bad_input(lab: LabServer, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no lab database"):
        row_counts(tmp_path)
    with pytest.raises(ValueError, match="unknown table 'users; DROP TABLE users'"):
        row_counts(lab.data_dir, ["users; DROP TABLE users"])


@pytest.mark.parametrize("size", [0, 100, 300_000])
def test_noise_png_is_a_real_png_of_about_the_size(size: int) -> None:
    png = noise_png(size)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    length = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT"
    rows = zlib.decompress(png[41 : 41 + length])
    assert len(rows) == height * (3 * width + 1)
    if size > 10_000:
        assert abs(len(png) - size) < 0.01 * size  # random pixels do not compress
    assert noise_png(size) == png  # the same picture every time, for a stable upload name
    assert noise_png(size, seed=1) != png
    with pytest.raises(ValueError, match="size must be >= 0"):
        noise_png(-1)


def test_typing_broadcasts_rule_and_bad_input() -> None:
    assert typing_broadcasts([0.0, 0.5, 1.0], min_interval=1.0, ttl=2.0) == [(0.0, True), (1.0, True), (3.0, False)]
    assert typing_broadcasts([0.0, 0.1], min_interval=0.0, ttl=1.0) == [(0.0, True), (0.1, True), (1.1, False)]
    with pytest.raises(ValueError, match="sorted"):
        typing_broadcasts([1.0, 0.5])
    with pytest.raises(ValueError, match="ttl > 0"):
        typing_broadcasts([0.0], ttl=0)


async def test_upload_over_http_stores_the_image(lab: LabServer) -> None:
    seconds, answer = await upload_over_http(lab.url, lab.account("uploader").token, noise_png(50_000))
    assert seconds > 0 and answer["content_type"] == "image/png" and answer["url"].startswith("/uploads/")
    assert (lab.data_dir / "uploads" / answer["name"]).stat().st_size == answer["size"]


async def test_upload_over_websocket_gets_an_answer(lab: LabServer) -> None:
    image = noise_png(20_000)  # under the test lab's 64 KiB message limit
    async with LabClient.connect(lab, lab.account("ws_uploader")) as client:
        seconds, answer = await upload_over_websocket(client, image)
        assert seconds > 0
        assert answer["type"] == "uploaded" and answer["size"] == len(image), answer
        _, over_http = await upload_over_http(lab.url, client.account.token, image)
        assert over_http["url"] == answer["url"]  # the same bytes, the same name, either way
        _, refused = await upload_over_websocket(client, b"not an image")
        assert refused["type"] == "error" and refused["code"] == "unsupported_type"
        await until(lambda: client.connected)
    with pytest.raises(ConnectionError, match="not connected"):
        await upload_over_websocket(client, image)
