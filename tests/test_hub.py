"""Unit tests of labserver.hub: presence, rooms, topics, typing and routing (no sockets)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from labserver.hub import (
    Connection,
    Hub,
    MembershipChanged,
    PresenceChanged,
    TypingChanged,
    TypingDecision,
)
from labserver.messages import SnapshotMessage, UserRef
from labserver.outlet import Outlet
from labserver.ratelimit import TokenBucket

NOW = 1000.0
NO_OUTLET: Outlet = None  # type: ignore[assignment]  # the hub decides; it never writes
_ids = itertools.count(1)


def conn(user_id: int, username: str | None = None, *, expires_at: float = NOW + 3600, now: float = NOW) -> Connection:
    return Connection(
        socket_id=f"s{next(_ids)}",
        user_id=user_id,
        username=username or f"user{user_id}",
        expires_at=expires_at,
        bucket=TokenBucket(20, 40, now),
        sink=NO_OUTLET,
    )


def snapshot(hub: Hub) -> dict[str, Any]:
    """The hub's state as an /observe snapshot shows it, without the stats."""
    fields = SnapshotMessage.of(hub, {}, {}).to_json()
    return {key: fields[key] for key in ("sockets", "online", "rooms")}


def assert_empty(hub: Hub) -> None:
    assert hub.connections == {}
    assert hub.user_sockets == {}
    assert hub.rooms == {}
    assert hub.topics == {}
    assert hub.typing == {}
    assert hub.going_offline == {}
    assert hub.leaving == {}
    assert hub.counts() == {"connections": 0, "users_online": 0, "rooms": 0, "topics": 0, "typing": 0}


# --- connections and presence ------------------------------------------------------


def test_first_socket_brings_user_online() -> None:
    hub = Hub()
    a = conn(1, "ann")
    assert not hub.is_online(1)
    assert hub.connect(a) == [PresenceChanged(1, "ann", True)]
    assert hub.is_online(1)
    assert hub.connections == {a.socket_id: a}
    assert hub.user_sockets == {1: {a}}


def test_two_tabs_are_online_once_and_offline_once() -> None:
    hub = Hub()
    tab1, tab2 = conn(1, "ann"), conn(1, "ann")
    assert hub.connect(tab1) == [PresenceChanged(1, "ann", True)]
    assert hub.connect(tab2) == []  # already online
    assert hub.user_sockets[1] == {tab1, tab2}
    assert hub.counts()["connections"] == 2 and hub.counts()["users_online"] == 1
    assert hub.disconnect(tab1) == []  # closing one tab keeps the user online
    assert hub.is_online(1)
    assert hub.disconnect(tab2) == [PresenceChanged(1, "ann", False)]
    assert not hub.is_online(1)
    assert_empty(hub)


def test_connections_hash_by_identity() -> None:
    a = conn(1)
    b = Connection(a.socket_id, a.user_id, a.username, a.expires_at, a.bucket, NO_OUTLET)
    assert a != b and len({a, b}) == 2


def test_connect_same_socket_id_twice_is_refused() -> None:
    hub = Hub()
    a = conn(1)
    hub.connect(a)
    with pytest.raises(ValueError, match=a.socket_id):
        hub.connect(a)
    with pytest.raises(ValueError):
        hub.connect(Connection(a.socket_id, 2, "bob", NOW + 10, TokenBucket(20, 40, NOW), NO_OUTLET))
    assert hub.user_sockets == {1: {a}}


def test_disconnect_twice_is_a_noop() -> None:
    hub = Hub()
    a, b = conn(1), conn(2)
    hub.connect(a)
    hub.connect(b)
    hub.join(a, "lobby")
    hub.join(b, "lobby")
    first = hub.disconnect(a)
    assert PresenceChanged(1, "user1", False) in first
    before = snapshot(hub), hub.counts()
    assert hub.disconnect(a) == []
    assert (snapshot(hub), hub.counts()) == before
    assert hub.room_members("lobby") == [UserRef(2, "user2")]


def test_disconnect_of_unknown_or_stale_connection_is_a_noop() -> None:
    hub = Hub()
    assert hub.disconnect(conn(1)) == []
    a = conn(1)
    hub.connect(a)
    impostor = Connection(a.socket_id, 1, "user1", NOW + 10, TokenBucket(20, 40, NOW), NO_OUTLET)
    assert hub.disconnect(impostor) == []  # same id, different object: not this socket
    assert hub.connections == {a.socket_id: a}


def test_disconnect_cleans_every_map() -> None:
    hub = Hub()
    a = conn(1, "ann")
    hub.connect(a)
    hub.join(a, "lobby")
    hub.join(a, "games")
    hub.subscribe(a, "presence")
    hub.subscribe(a, "post:1")
    assert hub.start_typing(a, "lobby", NOW) is TypingDecision.BROADCAST
    events = hub.disconnect(a)
    assert set(events) == {
        MembershipChanged("lobby", 1, "ann", False),
        MembershipChanged("games", 1, "ann", False),
        TypingChanged("lobby", 1, "ann", False),
        PresenceChanged(1, "ann", False),
    }
    assert events[-1] == PresenceChanged(1, "ann", False)  # offline comes last
    # typing stops before the user is reported as having left the room
    assert events.index(TypingChanged("lobby", 1, "ann", False)) < events.index(
        MembershipChanged("lobby", 1, "ann", False)
    )
    assert_empty(hub)
    assert a.rooms == {} and a.topics == set()


def test_disconnect_one_tab_keeps_membership_and_typing() -> None:
    hub = Hub()
    tab1, tab2 = conn(1, "ann"), conn(1, "ann")
    hub.connect(tab1)
    hub.connect(tab2)
    hub.join(tab1, "lobby")
    hub.join(tab2, "lobby")
    hub.start_typing(tab1, "lobby", NOW)
    assert hub.disconnect(tab1) == []
    assert hub.rooms == {"lobby": {tab2}}
    assert ("lobby", 1) in hub.typing
    assert hub.disconnect(tab2) == [
        TypingChanged("lobby", 1, "ann", False),
        MembershipChanged("lobby", 1, "ann", False),
        PresenceChanged(1, "ann", False),
    ]
    assert_empty(hub)


def test_random_cycles_leave_every_map_empty() -> None:
    rng = random.Random(6455)
    hub = Hub(typing_ttl=2.0, typing_min_interval=0.5)
    live: list[Connection] = []
    rooms = ["r0", "r1", "r2", "r3"]
    topics = ["presence", "post:1", "post:2"]
    online_events = 0
    offline_events = 0
    now = NOW
    for _ in range(5000):
        now += rng.random() * 0.3
        op = rng.random()
        if op < 0.25 or not live:
            c = conn(rng.randint(1, 12), now=now)
            events = hub.connect(c)
            online_events += sum(isinstance(e, PresenceChanged) for e in events)
            live.append(c)
        elif op < 0.45:
            hub.join(rng.choice(live), rng.choice(rooms))
        elif op < 0.55:
            hub.leave(rng.choice(live), rng.choice(rooms))
        elif op < 0.65:
            hub.subscribe(rng.choice(live), rng.choice(topics))
        elif op < 0.7:
            hub.unsubscribe(rng.choice(live), rng.choice(topics))
        elif op < 0.8:
            hub.start_typing(rng.choice(live), rng.choice(rooms), now)
        elif op < 0.83:
            hub.expire(now)
        else:
            c = live.pop(rng.randrange(len(live)))
            events = hub.disconnect(c)
            offline_events += sum(isinstance(e, PresenceChanged) for e in events)
            if rng.random() < 0.1:
                assert hub.disconnect(c) == []
        # invariants: the maps agree with each other at every step
        assert set(hub.connections.values()) == set(live)
        assert {u: s for u, s in hub.user_sockets.items()} == {
            u: {c for c in live if c.user_id == u} for u in {c.user_id for c in live}
        }
        for room, members in hub.rooms.items():
            assert members and all(room in m.rooms for m in members)
        for topic, subs in hub.topics.items():
            assert subs and all(topic in s.topics for s in subs)
        for room, user_id in hub.typing:
            assert any(room in c.rooms for c in hub.user_sockets.get(user_id, ()))
    for c in live:
        events = hub.disconnect(c)
        offline_events += sum(isinstance(e, PresenceChanged) for e in events)
    assert_empty(hub)
    assert online_events == offline_events > 0


# --- rooms ---------------------------------------------------------------------------


def test_join_and_leave_emit_membership_per_user() -> None:
    hub = Hub()
    tab1, tab2 = conn(1, "ann"), conn(1, "ann")
    hub.connect(tab1)
    hub.connect(tab2)
    assert hub.join(tab1, "lobby") == [MembershipChanged("lobby", 1, "ann", True)]
    assert hub.join(tab1, "lobby") == []  # same socket again
    assert hub.join(tab2, "lobby") == []  # second tab of a user already in the room
    assert hub.rooms["lobby"] == {tab1, tab2}
    assert hub.room_members("lobby") == [UserRef(1, "ann")]
    assert hub.leave(tab1, "lobby") == []  # still in the room through tab2
    assert hub.leave(tab1, "lobby") == []  # not a member any more
    assert hub.leave(tab2, "lobby") == [MembershipChanged("lobby", 1, "ann", False)]
    assert "lobby" not in hub.rooms
    assert hub.leave(tab2, "nowhere") == []


def test_room_members_sorted_by_user_id() -> None:
    hub = Hub()
    cs = [conn(u) for u in (5, 3, 9, 3)]
    for c in cs:
        hub.connect(c)
        hub.join(c, "r")
    assert [m.id for m in hub.room_members("r")] == [3, 5, 9]
    assert hub.room_members("empty") == []


def test_note_delivered_keeps_the_highest_seq() -> None:
    hub = Hub()
    hub.note_delivered("r", 5)
    hub.note_delivered("r", 3)
    assert hub.last_seq == {"r": 5}
    hub.note_delivered("r", 6)
    assert hub.last_seq["r"] == 6


# --- topics --------------------------------------------------------------------------


def test_subscribe_unsubscribe() -> None:
    hub = Hub()
    a = conn(1)
    hub.connect(a)
    assert hub.subscribe(a, "presence") is True
    assert hub.subscribe(a, "presence") is False
    assert set(hub.topic_targets("presence")) == {a}
    assert hub.unsubscribe(a, "presence") is True
    assert hub.unsubscribe(a, "presence") is False
    assert hub.topics == {}
    assert list(hub.topic_targets("presence")) == []


# --- routing -------------------------------------------------------------------------


def test_room_targets_is_the_live_set() -> None:
    hub = Hub()
    a, b = conn(1), conn(2)
    hub.connect(a)
    hub.connect(b)
    hub.join(a, "r")
    targets = hub.room_targets("r")
    assert targets is hub.rooms["r"]
    hub.join(b, "r")
    assert set(targets) == {a, b}  # the same set object sees the new member
    assert list(hub.room_targets("missing")) == []


def test_user_targets() -> None:
    hub = Hub()
    a1, a2, b, c = conn(1), conn(1), conn(2), conn(3)
    for x in (a1, a2, b, c):
        hub.connect(x)
    assert set(hub.user_targets(1)) == {a1, a2}
    assert hub.user_targets(1) is hub.user_sockets[1]  # one user: the live set
    assert set(hub.user_targets(1, 2)) == {a1, a2, b}
    assert set(hub.user_targets(2, 1, 2)) == {a1, a2, b}
    assert set(hub.user_targets(1, 99)) == {a1, a2}
    assert list(hub.user_targets(99)) == []
    assert list(hub.user_targets()) == []
    union = hub.user_targets(1, 2)
    assert isinstance(union, set)
    union.clear()  # a copy: the hub is untouched
    assert hub.user_sockets[1] == {a1, a2}


def test_socket_target() -> None:
    hub = Hub()
    a = conn(1)
    hub.connect(a)
    assert tuple(hub.socket_target(a.socket_id)) == (a,)
    assert tuple(hub.socket_target("nope")) == ()


# --- typing --------------------------------------------------------------------------


def test_typing_requires_membership() -> None:
    hub = Hub()
    a = conn(1)
    hub.connect(a)
    assert hub.start_typing(a, "lobby", NOW) is TypingDecision.NOT_IN_ROOM
    assert hub.typing == {}


def test_typing_broadcast_then_refreshed_within_min_interval() -> None:
    hub = Hub(typing_ttl=5.0, typing_min_interval=1.0)
    a = conn(1, "ann")
    hub.connect(a)
    hub.join(a, "lobby")
    assert hub.start_typing(a, "lobby", NOW) is TypingDecision.BROADCAST
    assert hub.typing[("lobby", 1)].expires_at == NOW + 5.0
    assert hub.start_typing(a, "lobby", NOW + 0.5) is TypingDecision.REFRESHED
    assert hub.typing[("lobby", 1)].expires_at == NOW + 5.5  # expiry pushed back
    assert hub.start_typing(a, "lobby", NOW + 0.99) is TypingDecision.REFRESHED
    assert hub.start_typing(a, "lobby", NOW + 1.0) is TypingDecision.BROADCAST  # min interval passed
    assert hub.start_typing(a, "lobby", NOW + 1.5) is TypingDecision.REFRESHED
    assert hub.counts()["typing"] == 1


def test_typing_refresh_keeps_it_alive_past_the_first_ttl() -> None:
    hub = Hub(typing_ttl=2.0, typing_min_interval=1.0)
    a = conn(1)
    hub.connect(a)
    hub.join(a, "r")
    hub.start_typing(a, "r", NOW)
    hub.start_typing(a, "r", NOW + 0.9)
    assert hub.expire(NOW + 2.5) == ([], [])
    stopped, _ = hub.expire(NOW + 2.9)
    assert stopped == [TypingChanged("r", 1, "user1", False)]


def test_typing_two_tabs_share_one_indicator() -> None:
    hub = Hub(typing_min_interval=1.0)
    tab1, tab2 = conn(1), conn(1)
    for t in (tab1, tab2):
        hub.connect(t)
        hub.join(t, "r")
    assert hub.start_typing(tab1, "r", NOW) is TypingDecision.BROADCAST
    assert hub.start_typing(tab2, "r", NOW + 0.1) is TypingDecision.REFRESHED
    assert len(hub.typing) == 1


def test_typing_expires_once() -> None:
    hub = Hub(typing_ttl=5.0)
    a, b = conn(1, "ann"), conn(2, "bob")
    for c in (a, b):
        hub.connect(c)
        hub.join(c, "lobby")
    hub.start_typing(a, "lobby", NOW)
    hub.start_typing(b, "lobby", NOW + 3)
    assert hub.expire(NOW + 4.99) == ([], [])
    stopped, expired = hub.expire(NOW + 5.0)
    assert stopped == [TypingChanged("lobby", 1, "ann", False)]
    assert expired == []
    assert hub.expire(NOW + 6) == ([], [])  # only once
    stopped, _ = hub.expire(NOW + 100)
    assert stopped == [TypingChanged("lobby", 2, "bob", False)]
    assert hub.typing == {}
    # after expiry, typing again is a fresh broadcast
    assert hub.start_typing(a, "lobby", NOW + 101) is TypingDecision.BROADCAST


def test_leave_stops_typing() -> None:
    hub = Hub()
    a = conn(1, "ann")
    hub.connect(a)
    hub.join(a, "lobby")
    hub.start_typing(a, "lobby", NOW)
    assert hub.leave(a, "lobby") == [
        TypingChanged("lobby", 1, "ann", False),
        MembershipChanged("lobby", 1, "ann", False),
    ]
    assert hub.typing == {}
    assert hub.expire(NOW + 100) == ([], [])  # nothing left to expire


def test_stop_typing() -> None:
    hub = Hub()
    a = conn(1, "ann")
    hub.connect(a)
    hub.join(a, "lobby")
    assert hub.stop_typing("lobby", 1, "ann") is None
    hub.start_typing(a, "lobby", NOW)
    assert hub.stop_typing("lobby", 1, "ann") == TypingChanged("lobby", 1, "ann", False)
    assert hub.stop_typing("lobby", 1, "ann") is None


def test_expire_returns_connections_with_expired_tokens() -> None:
    hub = Hub()
    early, late, exact = conn(1, expires_at=NOW + 10), conn(2, expires_at=NOW + 100), conn(3, expires_at=NOW + 50)
    for c in (early, late, exact):
        hub.connect(c)
    assert hub.expire(NOW) == ([], [])
    assert hub.expire(NOW + 10) == ([], [early])
    assert set(hub.expire(NOW + 50)[1]) == {early, exact}
    # the hub reports; the adapter closes and disconnects
    assert len(hub.connections) == 3
    hub.disconnect(early)
    assert set(hub.expire(NOW + 1000)[1]) == {late, exact}


# --- observation -------------------------------------------------------------------


def test_snapshot_and_counts_shape() -> None:
    hub = Hub()
    a1, a2, b = conn(1, "ann"), conn(1, "ann"), conn(2, "bob")
    for c in (a1, a2, b):
        hub.connect(c)
    hub.join(a1, "zeta")
    hub.join(a1, "alpha")
    hub.join(b, "alpha")
    hub.subscribe(b, "presence")
    hub.start_typing(b, "alpha", NOW)
    snap = snapshot(hub)
    assert set(snap) == {"sockets", "online", "rooms"}
    assert snap["online"] == [1, 2]
    assert snap["rooms"] == {"alpha": [1, 2], "zeta": [1]}
    assert list(snap["rooms"]) == ["alpha", "zeta"]
    by_id = {s["socket_id"]: s for s in snap["sockets"]}
    assert by_id == {
        a1.socket_id: {"socket_id": a1.socket_id, "user": {"id": 1, "username": "ann"}, "rooms": ["alpha", "zeta"]},
        a2.socket_id: {"socket_id": a2.socket_id, "user": {"id": 1, "username": "ann"}, "rooms": []},
        b.socket_id: {"socket_id": b.socket_id, "user": {"id": 2, "username": "bob"}, "rooms": ["alpha"]},
    }
    assert hub.counts() == {"connections": 3, "users_online": 2, "rooms": 2, "topics": 1, "typing": 1}


def test_empty_snapshot() -> None:
    assert snapshot(Hub()) == {"sockets": [], "online": [], "rooms": {}}


# --- presence grace: offline and member_left held back, cancelled by a quick return ---------


def test_grace_holds_offline_and_member_left_until_due() -> None:
    hub = Hub()
    ann = conn(1, "ann")
    hub.connect(ann)
    hub.join(ann, "lobby")
    assert hub.disconnect(ann, now=NOW, grace=2.0) == []
    assert hub.is_online(1)
    assert hub.online_users() == [UserRef(1, "ann")]
    assert hub.room_members("lobby") == [UserRef(1, "ann")]
    assert hub.counts()["users_online"] == 1 and hub.tracked_sockets() == 0
    assert snapshot(hub)["rooms"] == {"lobby": [1]}
    assert hub.due(NOW + 1.999) == []
    assert hub.due(NOW + 2.0) == [MembershipChanged("lobby", 1, "ann", False), PresenceChanged(1, "ann", False)]
    assert hub.due(NOW + 10) == []  # once
    assert not hub.is_online(1)
    assert_empty(hub)


def test_a_refresh_within_the_grace_announces_nothing() -> None:
    hub = Hub()
    old = conn(1, "ann")
    hub.connect(old)
    hub.join(old, "lobby")
    hub.disconnect(old, now=NOW, grace=2.0)
    new = conn(1, "ann")
    assert hub.connect(new) == []  # no presence online: the offline was never announced
    assert hub.join(new, "lobby") == []  # no member_joined: the member_left was never announced
    assert hub.due(NOW + 100) == []
    assert_empty_after_disconnect(hub, new)


def assert_empty_after_disconnect(hub: Hub, last: Connection) -> None:
    assert hub.disconnect(last) == [
        MembershipChanged("lobby", last.user_id, last.username, False),
        PresenceChanged(last.user_id, last.username, False),
    ]
    assert_empty(hub)


def test_back_within_the_grace_but_not_in_the_room_leaves_it_when_due() -> None:
    hub = Hub()
    old = conn(1, "ann")
    hub.connect(old)
    hub.join(old, "lobby")
    hub.join(old, "games")
    hub.disconnect(old, now=NOW, grace=2.0)
    new = conn(1, "ann")
    assert hub.connect(new) == []
    assert hub.join(new, "games") == []
    assert hub.due(NOW + 2) == [MembershipChanged("lobby", 1, "ann", False)]  # online all along
    assert hub.is_online(1) and hub.room_members("lobby") == []


def test_grace_applies_to_the_last_socket_only_and_typing_stops_at_once() -> None:
    hub = Hub()
    tab1, tab2 = conn(1, "ann"), conn(1, "ann")
    hub.connect(tab1)
    hub.connect(tab2)
    hub.join(tab1, "lobby")
    hub.start_typing(tab1, "lobby", NOW)
    # Another tab is still open: the room is left at once, as without a grace.
    assert hub.disconnect(tab1, now=NOW, grace=5.0) == [
        TypingChanged("lobby", 1, "ann", False),
        MembershipChanged("lobby", 1, "ann", False),
    ]
    hub.join(tab2, "lobby")
    hub.start_typing(tab2, "lobby", NOW)
    assert hub.disconnect(tab2, now=NOW, grace=5.0) == [TypingChanged("lobby", 1, "ann", False)]
    assert hub.due(NOW + 5) == [MembershipChanged("lobby", 1, "ann", False), PresenceChanged(1, "ann", False)]


def test_grace_needs_the_time() -> None:
    hub = Hub()
    ann = conn(1)
    hub.connect(ann)
    with pytest.raises(ValueError, match="now="):
        hub.disconnect(ann, grace=1.0)


def test_zero_grace_is_todays_behaviour() -> None:
    hub = Hub()
    ann = conn(1, "ann")
    hub.connect(ann)
    hub.join(ann, "lobby")
    assert hub.disconnect(ann, now=NOW, grace=0.0) == [
        MembershipChanged("lobby", 1, "ann", False),
        PresenceChanged(1, "ann", False),
    ]
    assert_empty(hub)


def test_random_cycles_with_a_grace_leave_every_map_empty_once_due() -> None:
    rng = random.Random(11)
    hub = Hub()
    open_: list[Connection] = []
    announced: dict[int, bool] = {}  # user -> online as last announced
    now = NOW
    for _ in range(2000):
        now += rng.random() * 0.5
        for event in hub.due(now):
            if isinstance(event, PresenceChanged):
                announced[event.user_id] = event.online
        if open_ and rng.random() < 0.5:
            c = open_.pop(rng.randrange(len(open_)))
            for event in hub.disconnect(c, now=now, grace=1.0):
                if isinstance(event, PresenceChanged):
                    announced[event.user_id] = event.online
        else:
            c = conn(rng.randrange(1, 6))
            for event in hub.connect(c):
                assert isinstance(event, PresenceChanged) and event.online
                assert not announced.get(c.user_id), "online announced twice without an offline"
                announced[c.user_id] = True
            hub.join(c, f"room{rng.randrange(3)}")
            open_.append(c)
    for c in open_:
        hub.disconnect(c, now=now, grace=1.0)
    hub.due(now + 1)
    assert_empty(hub)
