"""A reconnect storm: every client of a room resumes with the same history rows, and each row
is encoded once for all of them (labserver.session.ReplayFrames), the frames unchanged."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labserver import session as session_module
from labserver.auth import TokenIssuer
from labserver.broker import InMemoryBroker
from labserver.config import Settings
from labserver.frames import server_text_frame
from labserver.lab import Lab
from labserver.messages import UserRef, message_of
from labserver.session import ReplayFrames, Session
from labserver.store import AsyncStore, Store, StoredMessage

from .test_session import ListOutlet


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    settings = Settings(data_dir=tmp_path, rate_per_second=1000, rate_burst=1000)
    store = AsyncStore(Store(tmp_path / "lab.sqlite3"))
    lab = Lab(settings, store, InMemoryBroker(), TokenIssuer(b"k" * 32))
    await lab.start()
    yield lab
    await store.close()


async def test_a_crowd_resuming_gets_the_same_frames_each_row_encoded_once(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "_REPLAYED", ReplayFrames(budget=1 << 20))
    ann = UserRef.of(await lab.db.create_user("ann", "hash", time.time()))
    for n in range(3):
        await lab.post_chat(ann, "hall", f"m{n}")
    encoded: list[StoredMessage] = []

    def counting_message_of(row: StoredMessage) -> object:
        encoded.append(row)
        return message_of(row)

    monkeypatch.setattr(session_module, "message_of", counting_message_of)
    outlets = []
    for _ in range(20):
        outlet = ListOutlet()
        crowd_member = await Session.open(lab, ann, time.time() + 3600, outlet)
        outlet.take()
        await crowd_member.on_text(json.dumps({"type": "resume", "room": "hall", "after": 0}))
        outlets.append(outlet)
    replays = [[m for m in outlet.take() if m["type"] == "chat"] for outlet in outlets]
    assert all(replay == replays[0] for replay in replays) and [m["text"] for m in replays[0]] == ["m0", "m1", "m2"]
    assert len(encoded) == 3  # once per row, not once per row and client


def test_a_frame_is_the_row_s_own_and_the_cache_stays_within_its_budget() -> None:
    rows = [StoredMessage("hall", seq, 1, "ann", "x" * 100, 1.0) for seq in range(1, 50)]
    cache = ReplayFrames(budget=1000)
    for row in rows + rows:
        assert cache.frame(row) == server_text_frame(message_of(row).encode())
        assert cache.size <= 1000
    edited = StoredMessage("hall", 1, 1, "ann", "another text", 1.0)  # same room and seq, another row
    assert cache.frame(edited) == server_text_frame(message_of(edited).encode())
