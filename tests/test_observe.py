"""Unit tests of labserver.observe: the bounded, batched observation stream."""

from __future__ import annotations

import json
import time

from labserver.observe import Observatory


def test_inactive_without_observers_and_emit_is_a_noop() -> None:
    obs = Observatory()
    assert not obs.active
    for _ in range(5000):
        obs.emit("routed", type="chat")
    assert obs.flush() == (None, False)
    assert obs.dropped == 0


def test_active_with_an_observer() -> None:
    obs = Observatory()
    obs.observers.add(object())
    assert obs.active
    obs.observers.clear()
    assert not obs.active


def test_flush_returns_events_and_resets() -> None:
    obs = Observatory()
    obs.observers.add("dashboard")
    before = time.time()
    obs.emit("joined", socket_id="s1", user={"id": 1, "username": "ann"}, room="lobby")
    obs.emit("presence", user={"id": 1, "username": "ann"}, online=True)
    text, stale = obs.flush()
    assert not stale
    assert text is not None
    message = json.loads(text)
    assert message["type"] == "events"
    assert message["dropped"] == 0
    assert [e["ev"] for e in message["events"]] == ["joined", "presence"]
    first = message["events"][0]
    assert first["socket_id"] == "s1" and first["room"] == "lobby" and first["user"]["username"] == "ann"
    assert before - 1 <= first["t"] <= time.time() + 1
    assert obs.flush() == (None, False)  # reset: nothing more to say


def test_bounded_batch_counts_dropped() -> None:
    obs = Observatory(max_batch=10)
    obs.observers.add("dashboard")
    for i in range(25):
        obs.emit("routed", n=i)
    assert obs.dropped == 15
    message = json.loads(obs.flush()[0] or "")
    assert [e["n"] for e in message["events"]] == list(range(10))  # the first ones are kept
    assert message["dropped"] == 15
    assert obs.dropped == 0
    obs.emit("routed", n=99)  # room again after the flush
    message = json.loads(obs.flush()[0] or "")
    assert message == {"type": "events", "events": [message["events"][0]], "dropped": 0}
    assert message["events"][0]["n"] == 99


def test_only_dropped_still_flushes() -> None:
    obs = Observatory(max_batch=0)
    obs.observers.add("dashboard")
    obs.emit("routed")
    obs.emit("routed")
    assert json.loads(obs.flush()[0] or "") == {"type": "events", "events": [], "dropped": 2}
    assert obs.flush() == (None, False)


def test_flush_is_compact_json_with_unicode() -> None:
    obs = Observatory()
    obs.observers.add("dashboard")
    obs.emit("routed", preview="caf\u00e9")
    text = obs.flush()[0] or ""
    assert "caf\u00e9" in text and ", " not in text


def test_preview() -> None:
    obs = Observatory(preview_chars=5)
    assert obs.preview("abcde") == "abcde"
    assert obs.preview("abcdef") == "abcd\u2026"
    assert len(obs.preview("x" * 1000)) == 5
    assert obs.preview("") == ""


def test_state_events_are_not_capped_by_the_flow_bound() -> None:
    obs = Observatory(max_batch=2)
    obs.observers.add("dashboard")
    for i in range(5):
        obs.emit("routed", n=i)
        obs.emit("socket_opened", socket_id=f"s{i}")
    text, stale = obs.flush()
    events = json.loads(text or "")["events"]
    assert [e["socket_id"] for e in events if e["ev"] == "socket_opened"] == [f"s{i}" for i in range(5)]
    assert sum(e["ev"] == "routed" for e in events) == 2 and not stale


def test_too_many_state_events_mark_the_batch_stale_for_a_snapshot() -> None:
    obs = Observatory(max_state=3)
    obs.observers.add("dashboard")
    for i in range(5):
        obs.emit("socket_opened", socket_id=f"s{i}")
    text, stale = obs.flush()
    assert stale and len(json.loads(text or "")["events"]) == 3
    assert obs.flush() == (None, False)  # reset
