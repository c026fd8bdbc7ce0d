"""Unit tests of labserver.session: the protocol logic of one socket, with no server and no socket.

Each "socket" is a :class:`ListOutlet` that keeps the frames written to it; the lab
behind the sessions is real (hub, SQLite store in a temporary directory, in-memory
broker), so what a session stores and routes is what the server would.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from labserver.auth import TokenIssuer
from labserver.broker import InMemoryBroker
from labserver.config import Settings
from labserver.frames import CloseCode, Frame
from labserver.lab import Lab
from labserver.messages import UserRef
from labserver.session import Session
from labserver.store import AsyncStore, Store

Message = dict[str, Any]


class ListOutlet:
    """An outlet that keeps every frame written to it, decoded; ``closing`` once closed."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.queued = 0  # what `buffered` reports: set it to play a reader that is behind
        self.closed_with: tuple[int, str] | None = None

    @property
    def buffered(self) -> int:
        return self.queued

    @property
    def closing(self) -> bool:
        return self.closed_with is not None

    def write(self, frame: bytes) -> bool:
        if self.closing:
            return False
        self.frames.append(frame)
        return True

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def abort(self) -> None:
        self.closed_with = (CloseCode.ABNORMAL, "aborted")

    def messages(self) -> list[Message]:
        out = []
        for data in self.frames:
            parsed = Frame.parse(data)
            assert parsed is not None and parsed[1] == len(data), "one complete frame per write"
            out.append(json.loads(parsed[0].payload))
        return out

    def take(self) -> list[Message]:
        """The messages written since the last take()."""
        messages = self.messages()
        self.frames.clear()
        return messages

    def types(self) -> list[str]:
        return [m["type"] for m in self.take()]


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    settings = Settings(data_dir=tmp_path, rate_per_second=1000, rate_burst=1000, resume_limit=5)
    store = AsyncStore(Store(tmp_path / "lab.sqlite3"))
    lab = Lab(settings, store, InMemoryBroker(), TokenIssuer(b"k" * 32))
    await lab.start()
    yield lab
    await store.close()


async def user(lab: Lab, name: str) -> UserRef:
    return UserRef.of(await lab.db.create_user(name, "hash", time.time()))


async def connect(lab: Lab, who: UserRef) -> tuple[Session, ListOutlet]:
    outlet = ListOutlet()
    session = await Session.open(lab, who, time.time() + 3600, outlet)
    return session, outlet


async def send(session: Session, **message: Any) -> None:
    await session.on_text(json.dumps(message))


async def online(lab: Lab, *who: UserRef) -> list[tuple[Session, ListOutlet]]:
    """One socket for each of ``who`` (a user named twice has two tabs), welcomes taken."""
    sockets = [await connect(lab, user) for user in who]
    for _, outlet in sockets:
        outlet.take()
    return sockets


async def ann_and_bob_in(lab: Lab, room: str) -> tuple[Session, ListOutlet, Session, ListOutlet]:
    """Two users, one socket each, both joined to ``room``; their outlets emptied."""
    a, a_out = await connect(lab, await user(lab, "ann"))
    b, b_out = await connect(lab, await user(lab, "bob"))
    for session in (a, b):
        await send(session, type="join", room=room)
    a_out.take()
    b_out.take()
    return a, a_out, b, b_out


# --- opening, acks and errors ---------------------------------------------------------


async def test_a_session_starts_with_its_welcome_and_brings_the_user_online(lab: Lab) -> None:
    ann = await user(lab, "ann")
    session, outlet = await connect(lab, ann)
    [welcome] = outlet.take()
    assert welcome["type"] == "welcome"
    assert welcome["socket_id"] == session.conn.socket_id and welcome["socket_id"].startswith("s_")
    assert welcome["user"] == {"id": ann.id, "username": "ann"}
    assert welcome["limits"]["resume_limit"] == 5
    assert lab.hub.is_online(ann.id)
    await session.close(1000, "closed")
    assert not lab.hub.is_online(ann.id) and lab.hub.counts()["connections"] == 0


async def test_two_sockets_of_one_user_get_different_socket_ids(lab: Lab) -> None:
    ann = await user(lab, "ann")
    first, _ = await connect(lab, ann)
    second, _ = await connect(lab, ann)
    assert first.conn.socket_id != second.conn.socket_id
    assert len(lab.hub.user_sockets[ann.id]) == 2


async def test_a_message_with_a_ref_is_acked_and_one_without_is_not(lab: Lab) -> None:
    session, outlet = await connect(lab, await user(lab, "ann"))
    outlet.take()
    await send(session, type="join", room="lobby")
    assert outlet.types() == ["member_joined"]  # the effect, no ack
    await send(session, type="leave", room="lobby", ref=7)
    assert outlet.take() == [{"type": "ack", "ref": 7, "room": "lobby"}]


@pytest.mark.parametrize(
    ("text", "code", "ref"),
    [
        ("{not json", "bad_json", None),
        ("[1, 2]", "bad_message", None),
        ('{"type": "shout", "ref": "x"}', "unknown_type", "x"),
        ('{"type": "chat", "room": "lobby", "ref": 3}', "bad_field", 3),
        ('{"type": "chat", "room": "lobby", "text": "hi", "ref": 4}', "not_in_room", 4),
        ('{"type": "auth", "token": "t", "ref": 5}', "already_authenticated", 5),
        ('{"type": "leave", "room": "nowhere", "ref": 6}', "not_in_room", 6),
        ('{"type": "typing", "room": "nowhere", "active": false, "ref": 8}', "not_in_room", 8),
    ],
)
async def test_refused_messages_get_one_error_carrying_the_ref(lab: Lab, text: str, code: str, ref: Any) -> None:
    session, outlet = await connect(lab, await user(lab, "ann"))
    outlet.take()
    await session.on_text(text)
    [error] = outlet.take()
    assert error["type"] == "error" and error["code"] == code and error.get("ref") == ref
    assert not outlet.closing  # after an error the socket stays open


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


async def test_a_binary_message_is_an_image_upload(lab: Lab) -> None:
    session, outlet = await connect(lab, await user(lab, "ann"))
    outlet.take()
    await session.on_binary(PNG)
    [answer] = outlet.take()
    name = answer["name"]
    assert answer == {"type": "uploaded", "url": f"/uploads/{name}", "name": name, "size": len(PNG),
                      "content_type": "image/png"}  # fmt: skip
    assert name.endswith(".png") and (lab.settings.uploads_dir / name).read_bytes() == PNG
    await session.on_binary(PNG)  # the same bytes: the same name, stored once
    assert outlet.take()[0]["name"] == name


async def test_a_binary_message_that_is_no_image_or_too_large_is_refused_without_closing(lab: Lab) -> None:
    session, outlet = await connect(lab, await user(lab, "ann"))
    outlet.take()
    await session.on_binary(b"<html>not an image</html>")
    await session.on_binary(b"")
    await session.on_binary(PNG + bytes(lab.settings.upload_max_bytes))
    assert [(m["type"], m["code"]) for m in outlet.take()] == [
        ("error", "unsupported_type"),
        ("error", "unsupported_type"),
        ("error", "too_large"),
    ]
    assert not outlet.closing
    assert list(lab.settings.uploads_dir.glob("*")) == []


async def test_a_failing_handler_closes_its_socket_with_1011_and_no_other(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a handler (not bad input) ends that socket with 1011, in one log line; the others go on."""
    a, a_out, b, b_out = await ann_and_bob_in(lab, "lobby")

    async def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patched:
        patched.setattr(lab, "post_chat", broken)
        await send(a, type="chat", room="lobby", text="hi", ref="c1")
    assert a_out.closed_with == (CloseCode.INTERNAL_ERROR, "internal error")
    assert a_out.take() == []  # no error message, and nothing after the close
    [line] = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert line.exc_info is None and "RuntimeError: disk on fire" in line.getMessage()
    await send(b, type="chat", room="lobby", text="still here", ref="c2")
    assert [m["type"] for m in b_out.take()] == ["chat", "ack"]


async def test_bug_on_text_raises_in_the_chat_handler_only_for_that_text(lab: Lab) -> None:
    a, a_out, b, b_out = await ann_and_bob_in(lab, "lobby")
    lab.set_switches({"bug_on_text": "boom"})
    await send(a, type="chat", room="lobby", text="not boom", ref="c1")
    assert [m["type"] for m in a_out.take()] == ["chat", "ack"]
    await send(a, type="chat", room="lobby", text="boom", ref="c2")
    assert a_out.closed_with == (CloseCode.INTERNAL_ERROR, "internal error")
    assert [m["text"] for m in b_out.take()] == ["not boom"]  # the bug struck before anything was stored
    assert await lab.db.last_seq("lobby") == 1


async def test_the_welcome_tells_the_ping_interval_switch(lab: Lab) -> None:
    lab.set_switches({"ping_interval": 2.5})
    _, outlet = await connect(lab, await user(lab, "ann"))
    assert outlet.take()[0]["limits"]["ping_interval"] == 2.5


async def test_leaky_cleanup_keeps_the_closed_socket_in_every_map(lab: Lab) -> None:
    a, a_out, b, b_out = await ann_and_bob_in(lab, "lobby")
    lab.set_switches({"leaky_cleanup": True})
    await a.close(1000, "closed")
    stats = lab.stats()
    assert (stats["sockets_open"], stats["sockets_tracked"]) == (1, 2)
    assert lab.hub.is_online(a.conn.user_id) and a.conn in lab.hub.rooms["lobby"]
    a_out.closed_with = (1000, "closed")  # its writer now refuses, as a closed socket's does
    await send(b, type="chat", room="lobby", text="to a ghost", ref="c")
    assert [m["type"] for m in b_out.take()] == ["chat", "ack"]
    assert a_out.take() == []
    lab.set_switches({"leaky_cleanup": False})  # does not heal what leaked
    assert lab.hub.tracked_sockets() == 2
    await b.close(1000, "closed")
    assert (lab.stats()["sockets_open"], lab.stats()["sockets_tracked"]) == (0, 1)


async def test_presence_grace_announces_offline_once_due(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    watcher, w_out = await connect(lab, bob)
    await send(watcher, type="subscribe", topic="presence")
    await send(watcher, type="join", room="lobby")
    lab.set_switches({"presence_grace": 30})
    first, _ = await connect(lab, ann)
    await send(first, type="join", room="lobby")
    w_out.take()
    await first.close(1000, "closed")
    second, _ = await connect(lab, ann)  # a refresh: back within the grace
    await send(second, type="join", room="lobby")
    assert w_out.take() == []  # no offline, no online, no member_left, no member_joined
    await second.close(1000, "closed")
    assert w_out.take() == []
    await lab.publish_due(time.monotonic() + 31)
    assert [(m["type"], m.get("online")) for m in w_out.take()] == [("member_left", None), ("presence", False)]


async def test_ping_is_always_answered_with_pong_echoing_payload_and_ref(lab: Lab) -> None:
    session, outlet = await connect(lab, await user(lab, "ann"))
    outlet.take()
    await send(session, type="ping", payload={"n": [1, 2]})
    await send(session, type="ping", payload="x", ref="r")
    first, second = outlet.take()
    assert first["type"] == "pong" and first["payload"] == {"n": [1, 2]} and "ref" not in first
    assert second["ref"] == "r" and abs(second["server_time"] - time.time()) < 60


# --- rate limit -------------------------------------------------------------------------


async def test_the_rate_limit_answers_rate_limited_then_closes_1008(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, rate_per_second=0.001, rate_burst=2, rate_strikes_before_close=3)
    store = AsyncStore(Store(tmp_path / "lab.sqlite3"))
    lab = Lab(settings, store, InMemoryBroker(), TokenIssuer(b"k" * 32))
    await lab.start()
    try:
        session, outlet = await connect(lab, await user(lab, "ann"))
        outlet.take()
        for ref in range(4):
            await send(session, type="ping", ref=ref)
        answers = outlet.take()
        assert [m["type"] for m in answers] == ["pong", "pong", "error", "error"]
        assert [m.get("code") for m in answers[2:]] == ["rate_limited", "rate_limited"]
        assert answers[3]["ref"] == 3  # parsed before the limit is checked, so the ref comes back
        await session.on_text("garbage")  # invalid messages take tokens too: third strike
        assert outlet.closed_with == (CloseCode.POLICY_VIOLATION, "rate limit exceeded")
    finally:
        await store.close()


# --- rooms and chat ---------------------------------------------------------------------


async def test_join_answers_members_and_last_seq_after_member_joined(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    a, a_out = await connect(lab, ann)
    b, b_out = await connect(lab, bob)
    await send(a, type="join", room="lobby", ref=1)
    await send(a, type="chat", room="lobby", text="first", ref=2)
    a_out.take()
    b_out.take()
    await send(b, type="join", room="lobby", ref="j")
    joined, ack = b_out.take()
    assert joined == {"type": "member_joined", "room": "lobby", "user": {"id": bob.id, "username": "bob"}}
    assert ack == {
        "type": "ack",
        "ref": "j",
        "room": "lobby",
        "last_seq": 1,
        "members": [{"id": ann.id, "username": "ann"}, {"id": bob.id, "username": "bob"}],
    }
    assert a_out.types() == ["member_joined"]


async def test_a_second_tab_joining_is_not_announced_again(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    b, b_out = await connect(lab, bob)
    await send(b, type="join", room="lobby")
    tab1, _ = await connect(lab, ann)
    tab2, _ = await connect(lab, ann)
    b_out.take()
    await send(tab1, type="join", room="lobby")
    await send(tab2, type="join", room="lobby")
    assert b_out.types() == ["member_joined"]
    await send(tab1, type="leave", room="lobby")
    assert b_out.types() == []  # ann is still in the room through her other tab
    await tab2.close(1001, "closed")
    assert b_out.types() == ["member_left"]


async def test_chat_is_stored_then_delivered_to_every_member_and_acked_with_its_seq(lab: Lab) -> None:
    a, a_out, _, b_out = await ann_and_bob_in(lab, "lobby")
    _, o_out = await connect(lab, await user(lab, "cat"))
    o_out.take()
    await send(a, type="chat", room="lobby", text="hello", ref="c")
    chat, ack = a_out.take()
    assert chat["type"] == "chat" and chat["seq"] == 1 and chat["from"] == a.conn.user.to_json()
    assert ack == {"type": "ack", "ref": "c", "room": "lobby", "seq": 1}
    assert b_out.take() == [chat]
    assert o_out.take() == []
    [stored] = await lab.db.messages_after("lobby", 0, 10)
    assert (stored.seq, stored.text, stored.sender_id) == (1, "hello", a.conn.user_id)


async def test_typing_is_broadcast_once_per_interval_and_stops(lab: Lab) -> None:
    a, _, _, b_out = await ann_and_bob_in(lab, "lobby")
    await send(a, type="typing", room="lobby")
    await send(a, type="typing", room="lobby")  # within typing_min_interval: refreshed, not re-sent
    await send(a, type="typing", room="lobby", active=False)
    assert [(m["type"], m["active"]) for m in b_out.take()] == [("typing", True), ("typing", False)]


async def test_a_chat_ends_its_senders_typing_indicator(lab: Lab) -> None:
    a, _, _, b_out = await ann_and_bob_in(lab, "lobby")
    await send(a, type="typing", room="lobby")
    b_out.take()
    await send(a, type="chat", room="lobby", text="done")
    assert [m["type"] for m in b_out.take()] == ["chat", "typing"]
    assert not lab.hub.typing


# --- direct messages and presence -------------------------------------------------------


async def test_dms_reach_every_socket_of_both_users_with_the_recipient_named(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    (a, a_out), (b1, b1_out), (_, b2_out) = await online(lab, ann, bob, bob)
    await send(a, type="dm", to=bob.id, text="psst", ref="d")
    dm, ack = a_out.take()
    room = f"dm:{min(ann.id, bob.id)}:{max(ann.id, bob.id)}"
    assert dm["type"] == "dm" and dm["room"] == room and dm["to"] == bob.id and dm["seq"] == 1
    assert ack == {"type": "ack", "ref": "d", "room": room, "seq": 1, "to": bob.id}
    assert b1_out.take() == [dm] and b2_out.take() == [dm]
    await send(b1, type="dm", to=ann.id, text="hi back")
    assert a_out.take()[0]["to"] == ann.id


async def test_dms_to_yourself_or_to_nobody_are_refused(lab: Lab) -> None:
    ann = await user(lab, "ann")
    a, out = await connect(lab, ann)
    out.take()
    await send(a, type="dm", to=ann.id, text="me", ref=1)
    await send(a, type="dm", to=999, text="anyone?", ref=2)
    assert [(m["code"], m["ref"]) for m in out.take()] == [("bad_field", 1), ("not_found", 2)]


async def test_presence_subscribers_see_users_come_and_go(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    a, a_out = await connect(lab, ann)
    a_out.take()
    await send(a, type="subscribe", topic="presence", ref="s")
    assert a_out.take() == [
        {"type": "ack", "ref": "s", "topic": "presence", "online": [{"id": ann.id, "username": "ann"}]}
    ]
    b, _ = await connect(lab, bob)
    await b.close(1000, "closed")
    assert [(m["user"]["username"], m["online"]) for m in a_out.take()] == [("bob", True), ("bob", False)]


# --- signaling -------------------------------------------------------------------------


async def test_a_signal_goes_to_every_socket_of_the_user_or_to_the_one_named(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    (a, a_out), (b1, b1_out), (_, b2_out) = await online(lab, ann, bob, bob)
    await send(a, type="signal", to=bob.id, kind="offer", data={"sdp": "v=0"}, ref=1)
    [signal] = b1_out.take()
    assert signal == {
        "type": "signal",
        "from": {"id": ann.id, "username": "ann"},
        "from_socket": a.conn.socket_id,
        "kind": "offer",
        "data": {"sdp": "v=0"},
    }
    assert b2_out.take() == [signal]
    assert a_out.take() == [{"type": "ack", "ref": 1, "to": bob.id}]
    await send(a, type="signal", to=bob.id, to_socket=b1.conn.socket_id, kind="ice", data=None)
    assert [m["kind"] for m in b1_out.take()] == ["ice"]
    assert b2_out.take() == []


async def test_signals_to_offline_users_or_unknown_sockets_are_not_found(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    a, out = await connect(lab, ann)
    out.take()
    await send(a, type="signal", to=bob.id, kind="offer", ref=1)
    await connect(lab, bob)
    await send(a, type="signal", to=bob.id, to_socket="s_nope", kind="offer", ref=2)
    errors = out.take()
    assert [(m["code"], m["ref"]) for m in errors] == [("not_found", 1), ("not_found", 2)]
    assert errors[0]["message"] == f"user {bob.id} is not online"


# --- resume -------------------------------------------------------------------------------


async def _chat(lab: Lab, who: UserRef, room: str, n: int) -> None:
    for i in range(n):
        await lab.post_chat(who, room, f"m{i}")


async def test_resume_replays_what_came_after_then_resumed_then_member_joined(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    await _chat(lab, ann, "lobby", 4)
    b, out = await connect(lab, bob)
    out.take()
    await send(b, type="resume", room="lobby", after=1, ref="r")
    messages = out.take()
    assert [(m["type"], m.get("seq")) for m in messages] == [
        ("chat", 2),
        ("chat", 3),
        ("chat", 4),
        ("resumed", None),
        ("member_joined", None),
    ]
    assert messages[3] == {"type": "resumed", "room": "lobby", "count": 3, "last_seq": 4, "ref": "r"}
    assert "lobby" in b.conn.rooms  # resume joins: what comes next arrives live
    await lab.post_chat(ann, "lobby", "live")
    assert [(m["type"], m["seq"]) for m in out.take()] == [("chat", 5)]


async def test_a_member_resuming_is_not_replayed_what_it_got_live(lab: Lab) -> None:
    ann = await user(lab, "ann")
    await _chat(lab, ann, "lobby", 2)
    a, out = await connect(lab, ann)
    await send(a, type="join", room="lobby")  # joined at seq 2
    await _chat(lab, ann, "lobby", 2)  # seq 3 and 4 arrive live
    assert [m.get("seq") for m in out.take() if m["type"] == "chat"] == [3, 4]
    await send(a, type="resume", room="lobby", after=0)
    messages = out.take()
    assert [m["seq"] for m in messages if m["type"] == "chat"] == [1, 2]
    assert messages[-1] == {"type": "resumed", "room": "lobby", "count": 2, "last_seq": 4}


async def test_resume_past_the_servers_last_seq_or_too_far_behind_is_a_resync(lab: Lab) -> None:
    ann = await user(lab, "ann")
    await _chat(lab, ann, "lobby", 8)  # resume_limit is 5
    a, out = await connect(lab, ann)
    out.take()
    await send(a, type="resume", room="lobby", after=9, ref=1)
    await send(a, type="resume", room="lobby", after=0, ref=2)
    await send(a, type="resume", room="lobby", after=3, ref=3)  # 5 to replay: fits
    messages = out.take()
    assert messages[0] == {"type": "resync", "room": "lobby", "reason": "ahead_of_server", "last_seq": 8, "ref": 1}
    assert messages[1] == {"type": "resync", "room": "lobby", "reason": "too_far_behind", "last_seq": 8, "ref": 2}
    assert [m["seq"] for m in messages[2:7]] == [4, 5, 6, 7, 8] and messages[7]["type"] == "resumed"


async def test_a_replay_that_would_not_fit_the_send_buffer_is_a_resync_and_nothing_is_sent(lab: Lab) -> None:
    ann = await user(lab, "ann")
    await _chat(lab, ann, "lobby", 3)
    a, out = await connect(lab, ann)
    out.take()
    out.queued = lab.settings.send_buffer_limit - 100  # a reader already far behind
    await send(a, type="resume", room="lobby", after=0, ref="r")
    assert out.take() == [{"type": "resync", "room": "lobby", "reason": "too_far_behind", "last_seq": 3, "ref": "r"}]
    assert "lobby" not in a.conn.rooms


async def test_a_dm_resume_replays_only_what_came_before_the_first_live_dm(lab: Lab) -> None:
    ann, bob = await user(lab, "ann"), await user(lab, "bob")
    room = f"dm:{min(ann.id, bob.id)}:{max(ann.id, bob.id)}"
    await lab.post_dm(ann, bob.id, "while you were away")  # seq 1
    b, out = await connect(lab, bob)
    await lab.post_dm(ann, bob.id, "live")  # seq 2, reaches b live
    out.take()
    await send(b, type="resume", room=room, after=0)
    messages = out.take()
    assert [(m["type"], m.get("seq")) for m in messages] == [("dm", 1), ("resumed", None)]
    assert room not in b.conn.rooms  # a DM room is never joined


async def test_resume_of_another_pairs_dm_room_is_forbidden(lab: Lab) -> None:
    ann, bob, cat = await user(lab, "ann"), await user(lab, "bob"), await user(lab, "cat")
    c, out = await connect(lab, cat)
    out.take()
    low, high = sorted((ann.id, bob.id))
    await send(c, type="resume", room=f"dm:{low}:{high}", after=0, ref=1)
    [error] = out.take()
    assert error["code"] == "forbidden" and error["ref"] == 1


# --- the send rule -------------------------------------------------------------------------


async def test_nothing_is_written_to_a_socket_once_it_is_closing(lab: Lab) -> None:
    a, a_out, _, b_out = await ann_and_bob_in(lab, "lobby")
    await b_out.close(CloseCode.GOING_AWAY, "bye")
    await send(a, type="chat", room="lobby", text="anyone?")
    assert b_out.frames == []
    assert [m["type"] for m in a_out.take()][-1] == "chat"


async def test_a_users_open_event_streams_are_counted_as_they_open_and_close(lab: Lab) -> None:
    # The per-user stream cap reads this count at every stream's start (rest.py room_events).
    first, second, other = (
        lab.open_event_stream(room, uid, lambda: None) for room, uid in [("a", 1), ("b", 1), ("a", 2)]
    )
    assert (lab.user_streams(1), lab.user_streams(2), lab.user_streams(3)) == (2, 1, 0)
    lab.close_event_stream(first)
    lab.close_event_stream(first)  # closed twice (logout, then the handler's finally): counted down once
    assert (lab.user_streams(1), lab.user_streams(2)) == (1, 1)
    lab.close_event_stream(second)
    lab.close_event_stream(other)
    assert (lab.user_streams(1), lab.user_streams(2), lab.streams_per_user, lab.event_streams) == (0, 0, {}, {})
