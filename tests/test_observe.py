"""Unit tests of labserver.observe: the bounded, batched observation stream (clock passed in)."""

from __future__ import annotations

import json
from typing import Any

from labserver.messages import EventsMessage, ObserveEvent, UserRef
from labserver.observe import HIDDEN, Observatory

ANN = UserRef(1, "ann")


def observatory(**kwargs: Any) -> Observatory:
    obs = Observatory(clock=lambda: 1234.56789, **kwargs)
    obs.observers.add("dashboard")
    return obs


def routed(n: int = 0, preview: str | None = None) -> ObserveEvent:
    return ObserveEvent.routed(
        message_type="chat",
        sender=None,
        to={"kind": "room", "name": "r"},
        size=n,
        recipients=0,
        seq=None,
        preview=preview,
    )


def flushed(obs: Observatory) -> tuple[dict[str, Any] | None, bool]:
    batch, stale = obs.flush()
    return (None if batch is None else json.loads(batch.encode())), stale


def test_inactive_without_observers_and_emit_is_a_noop() -> None:
    obs = Observatory(clock=lambda: 0.0)
    assert not obs.active
    for _ in range(5000):
        obs.emit(routed())
    assert obs.flush() == (None, False)
    assert obs.dropped == 0


def test_active_with_an_observer() -> None:
    obs = observatory()
    assert obs.active
    obs.observers.clear()
    assert not obs.active


def test_flush_returns_events_stamped_by_the_clock_and_resets() -> None:
    obs = observatory()
    obs.emit(ObserveEvent.socket_joined("s1", ANN, "lobby"))
    obs.emit(ObserveEvent.presence(ANN, True))
    batch, stale = obs.flush()
    assert isinstance(batch, EventsMessage) and not stale
    message = json.loads(batch.encode())
    assert message["type"] == "events" and message["dropped"] == 0
    assert message["events"] == [
        {
            "socket_id": "s1",
            "user": {"id": 1, "username": "ann"},
            "room": "lobby",
            "ev": "socket_joined",
            "t": 1234.5679,
        },
        {"user": {"id": 1, "username": "ann"}, "online": True, "ev": "presence", "t": 1234.5679},
    ]
    assert obs.flush() == (None, False)  # reset: nothing more to say


def test_bounded_batch_counts_dropped() -> None:
    obs = observatory(max_batch=10)
    for i in range(25):
        obs.emit(routed(i))
    assert obs.dropped == 15
    message, _ = flushed(obs)
    assert message is not None
    assert [e["size"] for e in message["events"]] == list(range(10))  # the first ones are kept
    assert message["dropped"] == 15
    assert obs.dropped == 0
    obs.emit(routed(99))  # room again after the flush
    message, _ = flushed(obs)
    assert message is not None and message["dropped"] == 0
    assert [e["size"] for e in message["events"]] == [99]


def test_only_dropped_still_flushes() -> None:
    obs = observatory(max_batch=0)
    obs.emit(routed())
    obs.emit(routed())
    assert flushed(obs) == ({"type": "events", "events": [], "dropped": 2}, False)
    assert obs.flush() == (None, False)


def test_flush_is_compact_json_with_unicode() -> None:
    obs = observatory()
    obs.emit(routed(preview="caf\u00e9"))
    batch, _ = obs.flush()
    assert batch is not None
    text = batch.encode()
    assert "caf\u00e9" in text and ", " not in text


def test_preview() -> None:
    obs = Observatory(clock=lambda: 0.0, preview_chars=5)
    assert obs.preview("abcde") == "abcde"
    assert obs.preview("abcdef") == "abcd\u2026"
    assert len(obs.preview("x" * 1000)) == 5
    assert obs.preview("") == ""


def test_state_events_are_not_capped_by_the_flow_bound() -> None:
    obs = observatory(max_batch=2)
    for i in range(5):
        obs.emit(routed(i))
        obs.emit(ObserveEvent.socket_opened(f"s{i}", ANN))
    message, stale = flushed(obs)
    assert message is not None and not stale
    events = message["events"]
    assert [e["socket_id"] for e in events if e["ev"] == "socket_opened"] == [f"s{i}" for i in range(5)]
    assert sum(e["ev"] == "routed" for e in events) == 2


def test_too_many_state_events_mark_the_batch_stale_for_a_snapshot() -> None:
    obs = observatory(max_state=3)
    for i in range(5):
        obs.emit(ObserveEvent.socket_opened(f"s{i}", ANN))
    message, stale = flushed(obs)
    assert stale and message is not None and len(message["events"]) == 3
    assert obs.flush() == (None, False)  # reset


def test_the_hidden_view_of_a_batch_is_a_copy_and_the_full_one_stays_whole() -> None:
    # With an admin token, one batch feeds two views (labserver.lab.Lab.flush_observers): the admin's
    # as recorded, a user token's redacted from a copy of each event, never from the event itself.
    obs = observatory()
    obs.emit(ObserveEvent.membership(ANN, "club", joined=True))
    obs.emit(ObserveEvent.membership(ANN, "lobby", joined=True))
    for kind, name in (("dm", "dm:1:2"), ("room", "club"), ("room", "lobby")):
        obs.emit(
            ObserveEvent.routed(
                message_type=kind if kind == "dm" else "chat",
                sender=ANN,
                to={"kind": kind, "name": name},
                size=10,
                recipients=1,
                seq=1,
                preview="a secret",
            )
        )
    batch, _ = obs.flush()
    assert batch is not None
    full = json.loads(batch.encode())["events"]
    hidden = [
        copy for copy in (dict(event) for event in batch.events) if Observatory._redact(copy, {"club"}.__contains__)
    ]
    assert json.loads(batch.encode())["events"] == full  # redacting the copies changed nothing
    assert [e.get("room") for e in hidden if e["ev"] == "joined"] == ["lobby"]  # the private room's join left out
    assert [e["to"]["name"] for e in hidden if e["ev"] == "routed"] == [HIDDEN, HIDDEN, "lobby"]
    assert all(e["preview"] is None for e in hidden if e["ev"] == "routed")
    assert [e["to"]["name"] for e in full if e["ev"] == "routed"] == ["dm:1:2", "club", "lobby"]
