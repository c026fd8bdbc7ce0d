"""Unit tests of labserver.course.observed: the dashboard's model, fed crafted /observe messages."""

from __future__ import annotations

import time
from typing import Any

from labserver.course.observed import FLOW_LENGTH, HISTORY_LENGTH, ObservedState

ANN = {"id": 1, "username": "ann"}
BOB = {"id": 2, "username": "bob"}


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    return {"ev": kind, "t": round(time.time(), 4), **fields}


def batch(*events: dict[str, Any], dropped: int = 0) -> dict[str, Any]:
    return {"type": "events", "events": list(events), "dropped": dropped}


def snapshot(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "snapshot",
        "sockets": [],
        "online": [],
        "rooms": {},
        "stats": {
            "connections": 0,
            "users_online": 0,
            "rooms": 0,
            "topics": 0,
            "typing": 0,
            "messages_in": 0,
            "deliveries": 0,
            "dropped_slow": 0,
            "rss_bytes": 1,
        },
    }
    return {**base, **fields}


def routed(
    i: int = 0, sender: dict[str, Any] | None = ANN, room: str = "general", recipients: int = 3
) -> dict[str, Any]:
    return ev(
        "routed",
        type="chat",
        to={"kind": "room", "name": room},
        size=58,
        recipients=recipients,
        seq=i + 1,
        preview=f"hello {i}",
        **{"from": sender},
    )


def stats(connections: int, **more: Any) -> dict[str, Any]:
    return ev(
        "stats",
        connections=connections,
        users_online=more.pop("users_online", 0),
        rooms=0,
        topics=0,
        typing=0,
        messages_in=0,
        deliveries=0,
        dropped_slow=0,
        rss_bytes=1,
        messages_in_per_s=12.5,
        deliveries_per_s=40.0,
        loop_lag_ms=0.8,
        **more,
    )


def opened(sid: str, user: dict[str, Any] = ANN) -> dict[str, Any]:
    return ev("socket_opened", socket_id=sid, user=user)


def closed(sid: str, user: dict[str, Any] = ANN, code: int | None = 1000) -> dict[str, Any]:
    return ev("socket_closed", socket_id=sid, user=user, code=code, reason="closed")


def test_snapshot_builds_the_maps() -> None:
    m = ObservedState()
    m.apply(
        snapshot(
            sockets=[
                {"socket_id": "s_a1", "user": ANN, "rooms": ["general", "random"]},
                {"socket_id": "s_a2", "user": ANN, "rooms": ["general"]},
                {"socket_id": "s_b1", "user": BOB, "rooms": []},
            ],
            online=[1, 2],
            rooms={"general": [1], "random": [1]},  # the server's snapshot lists user ids per room
            stats={"connections": 3, "users_online": 2},
        )
    )
    assert m.sockets["s_a1"] == {"user": 1, "rooms": {"general", "random"}}
    assert m.user_sockets == {1: {"s_a1", "s_a2"}, 2: {"s_b1"}}
    assert m.usernames == {1: "ann", 2: "bob"}
    assert m.online == {1, 2}
    assert m.rooms == {"general": {"s_a1", "s_a2"}, "random": {"s_a1"}}  # socket ids, from the sockets
    assert m.stats["connections"] == 3
    assert m.totals["snapshots"] == 1


def test_two_tabs_of_one_user_are_one_row_with_two_sockets() -> None:
    m = ObservedState()
    m.apply(snapshot())
    m.apply(batch(opened("s_1"), ev("presence", user=ANN, online=True), opened("s_2")))
    assert m.user_sockets == {1: {"s_1", "s_2"}}
    rows = m.user_rows()
    assert rows == [{"id": 1, "username": "ann", "online": True, "sockets": ["s_1", "s_2"]}]
    assert len(m.sockets) == 2 and m.online == {1}


def test_closing_one_tab_keeps_the_user_online_closing_the_last_does_not() -> None:
    m = ObservedState()
    m.apply(snapshot())
    m.apply(batch(opened("s_1"), ev("presence", user=ANN, online=True), opened("s_2")))
    m.apply(batch(closed("s_1")))
    assert m.online == {1}
    assert m.user_sockets == {1: {"s_2"}}
    assert m.recent_closes[-1]["socket_id"] == "s_1" and m.recent_closes[-1]["code"] == 1000
    m.apply(batch(closed("s_2", code=1006), ev("presence", user=ANN, online=False)))
    assert m.online == set()
    assert m.user_sockets == {} and m.sockets == {}
    rows = m.user_rows()
    assert rows == [{"id": 1, "username": "ann", "online": False, "sockets": []}]  # recently offline


def test_presence_events_alone() -> None:
    m = ObservedState()
    m.apply(snapshot())
    m.apply(batch(ev("presence", user=BOB, online=True)))
    assert m.online == {2} and m.usernames[2] == "bob"
    v = m.version
    assert not m.apply(batch(ev("presence", user=BOB, online=True)))  # already online: no change
    assert m.version == v
    m.apply(batch(ev("presence", user=BOB, online=False)))
    assert m.online == set()


def test_room_membership_follows_socket_joined_left_and_close() -> None:
    m = ObservedState()
    m.apply(snapshot())
    m.apply(
        batch(
            opened("s_1"),
            opened("s_2"),
            opened("s_3", BOB),
            ev("socket_joined", socket_id="s_1", user=ANN, room="general"),
            ev("joined", user=ANN, room="general"),  # per user: carries nothing new
            ev("socket_joined", socket_id="s_2", user=ANN, room="general"),
            ev("socket_joined", socket_id="s_3", user=BOB, room="general"),
            ev("socket_joined", socket_id="s_3", user=BOB, room="random"),
        )
    )
    assert m.rooms == {"general": {"s_1", "s_2", "s_3"}, "random": {"s_3"}}
    assert m.room_rows()[0] == {"room": "general", "sockets": 3, "members": [("ann", 2), ("bob", 1)]}
    m.apply(batch(ev("socket_left", socket_id="s_1", user=ANN, room="general")))
    assert m.rooms["general"] == {"s_2", "s_3"} and m.sockets["s_1"]["rooms"] == set()
    # a closed socket leaves every room (the server sends no socket_left for it)
    m.apply(batch(closed("s_3", BOB), ev("left", user=BOB, room="general")))
    assert m.rooms == {"general": {"s_2"}}  # "random" had only s_3: gone
    m.apply(batch(closed("s_2")))
    assert m.rooms == {}


def test_flow_is_bounded_and_keeps_the_newest() -> None:
    m = ObservedState()
    m.apply(snapshot())
    m.apply(batch(*(routed(i) for i in range(FLOW_LENGTH + 30))))
    assert len(m.flow) == FLOW_LENGTH == 50
    assert m.flow[-1]["seq"] == FLOW_LENGTH + 30  # newest last
    assert m.flow[0]["seq"] == 31
    entry = m.flow[-1]
    assert entry["from"] == "ann" and entry["to_kind"] == "room" and entry["to_name"] == "general"
    assert entry["size"] == 58 and entry["recipients"] == 3 and entry["type"] == "chat"
    assert m.totals["routed"] == FLOW_LENGTH + 30


def test_routed_from_the_server_has_no_sender() -> None:
    m = ObservedState()
    m.apply(batch(routed(0, sender=None)))
    assert m.flow[-1]["from"] is None


def test_history_is_one_sample_per_stats_event_and_bounded() -> None:
    m = ObservedState()
    m.apply(snapshot())
    assert list(m.history) == []
    for n in range(HISTORY_LENGTH + 10):
        m.apply(batch(stats(n)))
    assert len(m.history) == HISTORY_LENGTH == 120
    assert m.history[-1] == HISTORY_LENGTH + 9 and m.history[0] == 10
    assert m.stats["messages_in_per_s"] == 12.5 and m.stats["loop_lag_ms"] == 0.8
    assert "ev" not in m.stats and "t" not in m.stats


def test_server_cpu_is_the_cpu_time_between_two_stats_over_the_time_between_them() -> None:
    m = ObservedState()
    m.apply(snapshot(stats={"connections": 0, "rss_bytes": 50_000_000, "cpu_s": 3.0}))
    assert m.cpu_percent is None and m.stats["rss_bytes"] == 50_000_000
    m.apply(batch({**stats(0, cpu_s=3.0), "t": 1_800_000_000.0}))
    assert m.cpu_percent is None  # one sample is not yet a rate
    m.apply(batch({**stats(0, cpu_s=3.25), "t": 1_800_000_001.0}))
    assert m.cpu_percent == 25.0
    m.apply(batch({**stats(0, cpu_s=4.75), "t": 1_800_000_002.0}))
    assert m.cpu_percent == 150.0  # more than one core busy, as top counts
    assert m.stats["cpu_s"] == 4.75

    # A snapshot may come from a restarted server, whose CPU time starts again from zero.
    m.apply(snapshot(stats={"connections": 0, "cpu_s": 0.4}))
    m.apply(batch({**stats(0, cpu_s=0.5), "t": 1_800_000_010.0}))
    assert m.cpu_percent == 150.0  # the figure from before; no rate across the restart
    m.apply(batch({**stats(0, cpu_s=0.6), "t": 1_800_000_011.0}))
    assert m.cpu_percent == 10.0

    # A server that sends no cpu_s (an older one), and nonsense, leave the figure alone.
    m.apply(batch(stats(0)))
    m.apply(batch({**stats(0, cpu_s="lots"), "t": 1_800_000_012.0}))
    m.apply(batch({**stats(0, cpu_s=0.1), "t": 1_800_000_013.0}))  # CPU time went back: not a rate
    assert m.cpu_percent == 10.0


def test_version_increments_on_every_change() -> None:
    m = ObservedState()
    versions = [m.version]
    for message in (snapshot(), batch(opened("s_1")), batch(routed()), batch(stats(1)), batch(closed("s_1"))):
        assert m.apply(message)
        versions.append(m.version)
    assert versions == sorted(set(versions))  # strictly increasing
    v = m.version
    assert not m.apply(batch())  # an empty batch changes nothing
    assert m.version == v
    m.apply(batch(routed(1), routed(2), routed(3)))
    assert m.version == v + 3


def test_unknown_and_malformed_events_are_ignored() -> None:
    m = ObservedState()
    m.apply(snapshot())
    v = m.version
    assert not m.apply(
        batch(
            {"ev": "future_kind", "x": 1},
            {"no_ev": True},
            "not a dict",  # type: ignore[arg-type]
            {"ev": "socket_opened"},
            {"ev": "socket_joined", "socket_id": "nope", "room": "r"},
        )
    )
    assert m.version == v
    assert m.totals["ignored"] == 4  # the unknown kind, the missing ev, the string, the opened without fields
    assert m.sockets == {} and m.rooms == {}
    assert not m.apply({"type": "something_else"})
    assert not m.apply("garbage")  # type: ignore[arg-type]


def test_dropped_events_are_counted() -> None:
    m = ObservedState()
    m.apply(batch(routed(), dropped=120))
    m.apply(batch(dropped=5))
    assert m.totals["dropped"] == 125


def test_a_new_snapshot_replaces_the_maps_but_keeps_flow_and_history() -> None:
    m = ObservedState()
    m.apply(snapshot())
    m.apply(batch(opened("s_old"), routed(), stats(1)))
    m.apply(snapshot(sockets=[{"socket_id": "s_new", "user": BOB, "rooms": ["x"]}], online=[2]))
    assert set(m.sockets) == {"s_new"} and m.user_sockets == {2: {"s_new"}} and m.online == {2}
    assert m.rooms == {"x": {"s_new"}}
    assert len(m.flow) == 1 and list(m.history) == [1]


def test_needs_resync_when_stats_disagree_twice() -> None:
    m = ObservedState()
    m.apply(snapshot())
    m.apply(batch(opened("s_1"), stats(1)))
    assert not m.needs_resync
    m.apply(batch(stats(3)))  # two socket_opened were lost (e.g. a full server batch)
    assert not m.needs_resync  # once may be a race
    m.apply(batch(stats(3)))
    assert m.needs_resync
    m.apply(snapshot(sockets=[{"socket_id": f"s_{i}", "user": ANN, "rooms": []} for i in range(3)], online=[1]))
    assert not m.needs_resync


def test_describe() -> None:
    m = ObservedState()
    assert m.describe() == "0 connections, 0 users online, rooms: none"
    m.apply(snapshot())
    m.apply(
        batch(
            opened("s_1"),
            opened("s_2"),
            opened("s_3", BOB),
            *(ev("socket_joined", socket_id=s, user=ANN, room="general") for s in ("s_1", "s_2", "s_3")),
            ev("socket_joined", socket_id="s_3", user=BOB, room="beta"),
        )
    )
    assert m.describe() == "3 connections, 2 users online, rooms: beta(1), general(3)"
    m.apply(batch(closed("s_3", BOB), closed("s_2")))
    assert m.describe() == "1 connection, 1 user online, rooms: general(1)"
    assert repr(m) == "<ObservedState 1 connection, 1 user online, rooms: general(1)>"
    m.apply(batch(*(ev("socket_joined", socket_id="s_1", user=ANN, room=f"r{i}") for i in range(7))))
    assert m.describe().endswith("rooms: general(1), r0(1), r1(1), r2(1), r3(1), +3 more")


def crowd_arrives(users: int) -> list[dict[str, Any]]:
    """Each user opens a socket, joins #general and says something: 3 events a user.
    (benchmarks/observed_apply.py times applying these.)"""
    events = []
    for i in range(users):
        user = {"id": i, "username": f"u{i}"}
        events += [
            opened(f"s_{i}", user),
            ev("socket_joined", socket_id=f"s_{i}", user=user, room="general"),
            routed(i),
        ]
    return events


def test_applying_a_batch_of_6000_events() -> None:
    """How fast that is (O(events), ~10 ms here) is printed by benchmarks/observed_apply.py."""
    m = ObservedState()
    m.apply(snapshot())
    m.apply(batch(*crowd_arrives(2000)))
    assert len(m.sockets) == 2000 and len(m.rooms["general"]) == 2000 and len(m.flow) == 50


def test_switches_come_with_the_snapshot_and_follow_each_change() -> None:
    m = ObservedState()
    m.apply(snapshot(switches={"leaky_cleanup": False, "presence_grace": 0.0}))
    assert m.switches == {"leaky_cleanup": False, "presence_grace": 0.0}
    v = m.version
    assert m.apply(batch(ev("switches", switches={"leaky_cleanup": True, "presence_grace": 0.0})))
    assert m.switches["leaky_cleanup"] is True and m.version == v + 1
    assert not m.apply(batch(ev("switches", switches={"leaky_cleanup": True, "presence_grace": 0.0})))
    assert not m.apply(batch(ev("switches", switches="on")))  # malformed: ignored, state kept
    assert m.switches["leaky_cleanup"] is True and m.totals["ignored"] == 1
