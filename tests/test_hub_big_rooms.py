"""Big rooms cost O(1) per join: the per-room user index, the capped join ack and the
coalesced member counts (labserver.hub, no sockets)."""

from __future__ import annotations

import random
from collections.abc import Iterator

from labserver.course import LabServer
from labserver.hub import Connection, Hub, MembershipChanged, PresenceChanged
from labserver.messages import UserRef
from tests.test_hub import NOW, assert_empty, conn


def assert_index_consistent(hub: Hub) -> None:
    """``room_users`` says exactly what walking every socket would say."""
    walked: dict[str, dict[int, int]] = {}
    for c in hub.connections.values():
        for room in c.rooms:
            per_user = walked.setdefault(room, {})
            per_user[c.user_id] = per_user.get(c.user_id, 0) + 1
    assert {room: {uid: e.sockets for uid, e in users.items()} for room, users in hub.room_users.items()} == walked
    for room in hub.room_users:
        assert hub.member_count(room) == len(walked[room]) + len(hub.leaving.get(room, {}))


def test_the_member_index_stays_consistent_under_random_joins_leaves_and_disconnects() -> None:
    rng = random.Random(12)
    hub = Hub(announce_limit=5, ack_member_cap=3)
    live: list[Connection] = []
    now = NOW
    for _ in range(4000):
        now += 0.1
        op = rng.random()
        if op < 0.3 or not live:
            c = conn(rng.randint(1, 15), now=now)
            hub.connect(c)
            live.append(c)
        elif op < 0.6:
            hub.join(rng.choice(live), rng.choice(["a", "b"]))
        elif op < 0.75:
            hub.leave(rng.choice(live), rng.choice(["a", "b"]))
        elif op < 0.8:
            hub.due(now)
        else:
            c = live.pop(rng.randrange(len(live)))
            hub.disconnect(c, now=now, grace=rng.choice([0.0, 0.5]))
        assert_index_consistent(hub)
        for room in ("a", "b"):
            assert len(hub.room_members(room, hub.ack_member_cap)) == min(hub.member_count(room), 3)
    for c in live:
        hub.disconnect(c)
    hub.due(now + 10)
    assert_empty(hub)
    assert hub.room_users == {}


def test_the_join_ack_lists_members_up_to_the_cap_and_the_count() -> None:
    hub = Hub(ack_member_cap=3)
    cs = [conn(u) for u in (9, 4, 7, 2, 5)]
    for c in cs:
        hub.connect(c)
        hub.join(c, "r")
    assert hub.member_count("r") == 5
    assert hub.room_members("r", 3) == [UserRef(4, "user4"), UserRef(7, "user7"), UserRef(9, "user9")]  # first three in
    assert [m.id for m in hub.room_members("r")] == [2, 4, 5, 7, 9]  # uncapped: all, by id
    assert [m.id for m in hub.room_members_page("r", after=0, limit=2)] == [2, 4]
    assert [m.id for m in hub.room_members_page("r", after=4, limit=2)] == [5, 7]
    assert [m.id for m in hub.room_members_page("r", after=9, limit=2)] == []


def test_a_second_tab_counts_once() -> None:
    hub = Hub()
    tab1, tab2 = conn(1, "ann"), conn(1, "ann")
    for c in (tab1, tab2):
        hub.connect(c)
        hub.join(c, "r")
    assert hub.member_count("r") == 1 and hub.room_users["r"][1].sockets == 2


def test_big_rooms_announce_counts_not_members() -> None:
    hub = Hub(announce_limit=2)
    a, b, c, d = (conn(u) for u in (1, 2, 3, 4))
    for x in (a, b, c, d):
        hub.connect(x)
    assert hub.join(a, "r") == [MembershipChanged("r", 1, "user1", True)]
    assert hub.join(b, "r") == [MembershipChanged("r", 2, "user2", True)]
    assert hub.take_member_counts() == []  # small room: member_joined as before
    assert hub.join(c, "r") == []  # the third member makes the room big
    assert hub.join(d, "r") == []
    assert hub.take_member_counts() == [("r", 4)]  # two joins, one count
    assert hub.take_member_counts() == []
    assert hub.leave(d, "r") == []
    assert hub.leave(c, "r") == []  # the room had 3 with c: still big when c leaves
    assert hub.take_member_counts() == [("r", 2)]
    assert hub.leave(b, "r") == [MembershipChanged("r", 2, "user2", False)]  # small again
    assert hub.take_member_counts() == []


def test_a_held_back_member_left_in_a_big_room_becomes_a_count() -> None:
    hub = Hub(announce_limit=1)
    a, b = conn(1), conn(2)
    for x in (a, b):
        hub.connect(x)
        hub.join(x, "r")
    hub.take_member_counts()
    assert hub.disconnect(b, now=NOW, grace=1.0) == []
    assert hub.member_count("r") == 2  # still counted during the grace
    assert hub.due(NOW + 2) == [PresenceChanged(2, "user2", False)]  # no member_left: a count instead
    assert hub.take_member_counts() == [("r", 1)]


def test_joining_a_big_room_does_not_walk_it() -> None:
    """Joins into a 20,000-user room: each join touches the index, never the member set."""
    hub = Hub()
    members = [conn(u) for u in range(1, 20_001)]
    for c in members:
        hub.connect(c)
        hub.join(c, "huge")
    assert hub.member_count("huge") == 20_000
    assert len(hub.room_members("huge", hub.ack_member_cap)) == hub.ack_member_cap
    hub.rooms["huge"] = _Unwalkable(hub.rooms["huge"])  # a join that iterated the room would raise
    late = conn(20_001)
    hub.connect(late)
    assert hub.join(late, "huge") == []
    assert hub.leave(late, "huge") == []
    assert hub.member_count("huge") == 20_000


class _Unwalkable(set[Connection]):
    def __iter__(self) -> Iterator[Connection]:
        raise AssertionError("the join walked the room's members")


def test_the_members_endpoint_pages_a_room(lab: LabServer) -> None:
    """``GET /api/rooms/{room}/members``: by id, ``after`` and ``limit``, with the count."""
    status, body = lab.request("GET", "/api/rooms/nobody-here/members", token=lab.account("pager_ann").token)
    assert status == 200 and body == {"room": "nobody-here", "member_count": 0, "members": []}
    assert lab.request("GET", "/api/rooms/r/members?limit=0", token=lab.account("pager_ann").token)[0] == 400
    assert lab.request("GET", "/api/rooms/r/members")[0] == 401
