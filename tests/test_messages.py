"""Unit tests of labserver.messages: every server-to-client message, as it goes on the wire."""

from __future__ import annotations

import json

import pytest

from labserver.config import Settings
from labserver.envelope import ErrorCode
from labserver.messages import (
    AckMessage,
    ErrorMessage,
    EventsMessage,
    Limits,
    MemberJoinedMessage,
    MemberLeftMessage,
    NotificationMessage,
    ObserveEvent,
    PongMessage,
    PostUpdatedMessage,
    PresenceMessage,
    ResumedMessage,
    ResyncMessage,
    ServerMessage,
    SignalMessage,
    TypingMessage,
    UserRef,
    WelcomeMessage,
    comment_json,
    message_of,
    post_json,
)
from labserver.store import Comment, Notification, Post, StoredMessage

ANN = UserRef(1, "ann")
ANN_JSON = {"id": 1, "username": "ann"}


def wire(message: ServerMessage) -> dict[str, object]:
    text = message.encode()
    assert ", " not in text and ": " not in text  # compact: the same bytes for every recipient
    decoded: dict[str, object] = json.loads(text)
    assert decoded == message.to_json()
    return decoded


def test_a_room_message_is_a_chat_and_a_dm_room_message_a_dm_naming_the_recipient() -> None:
    chat = message_of(StoredMessage("lobby", 4, 1, "ann", "hello all", 5.5))
    assert wire(chat) == {"type": "chat", "room": "lobby", "seq": 4, "from": ANN_JSON, "text": "hello all", "ts": 5.5}
    to_high = message_of(StoredMessage("dm:1:2", 1, 1, "ann", "psst", 6.0))
    to_low = message_of(StoredMessage("dm:1:2", 2, 2, "bob", "hi", 7.0))
    assert wire(to_high) == {
        "type": "dm",
        "room": "dm:1:2",
        "seq": 1,
        "from": ANN_JSON,
        "text": "psst",
        "ts": 6.0,
        "to": 2,
    }
    assert wire(to_low)["to"] == 1


def test_an_ack_carries_only_the_fields_of_its_request() -> None:
    assert wire(AckMessage("a1")) == {"type": "ack", "ref": "a1"}
    assert wire(AckMessage(2, room="lobby", seq=0)) == {"type": "ack", "ref": 2, "room": "lobby", "seq": 0}
    joined = AckMessage("j", room="lobby", last_seq=3, members=(ANN,))
    assert wire(joined) == {"type": "ack", "ref": "j", "room": "lobby", "last_seq": 3, "members": [ANN_JSON]}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (ErrorMessage(ErrorCode.BAD_JSON, "nope"), {"type": "error", "code": "bad_json", "message": "nope"}),
        (
            ErrorMessage(ErrorCode.NOT_IN_ROOM, "x", 0),
            {"type": "error", "code": "not_in_room", "message": "x", "ref": 0},
        ),
        (PongMessage(None, 1.5), {"type": "pong", "payload": None, "server_time": 1.5}),
        (PongMessage([1], 1.5, "p"), {"type": "pong", "payload": [1], "server_time": 1.5, "ref": "p"}),
        (ResumedMessage("r1", 2, 5, "R1"), {"type": "resumed", "room": "r1", "count": 2, "last_seq": 5, "ref": "R1"}),
        (
            ResyncMessage("r1", "too_far_behind", 5),
            {"type": "resync", "room": "r1", "reason": "too_far_behind", "last_seq": 5},
        ),
        (MemberJoinedMessage("lobby", ANN), {"type": "member_joined", "room": "lobby", "user": ANN_JSON}),
        (MemberLeftMessage("lobby", ANN), {"type": "member_left", "room": "lobby", "user": ANN_JSON}),
        (TypingMessage("lobby", ANN, False), {"type": "typing", "room": "lobby", "user": ANN_JSON, "active": False}),
        (PresenceMessage(ANN, True), {"type": "presence", "user": ANN_JSON, "online": True}),
        (
            SignalMessage(ANN, "s_1", "offer", {"sdp": "v=0"}),
            {"type": "signal", "from": ANN_JSON, "from_socket": "s_1", "kind": "offer", "data": {"sdp": "v=0"}},
        ),
    ],
)
def test_answers_and_broadcasts_match_the_protocol(message: ServerMessage, expected: dict[str, object]) -> None:
    assert wire(message) == expected
    assert list(wire(message)) == list(expected)  # and in the documented order


def test_records_from_the_store_in_messages_and_rest_bodies() -> None:
    post = Post(7, 1, "ann", "look", None, 2.0, 3, 1)
    assert wire(PostUpdatedMessage.of(post)) == {"type": "post_updated", "post_id": 7, "likes": 3, "comments": 1}
    assert post_json(post) == {
        "id": 7,
        "author": ANN_JSON,
        "text": "look",
        "image": None,
        "created_at": 2.0,
        "likes": 3,
        "comments": 1,
    }
    comment = Comment(9, 7, 1, "ann", "nice", 3.0)
    assert comment_json(comment) == {"id": 9, "post_id": 7, "author": ANN_JSON, "text": "nice", "created_at": 3.0}
    note = Notification(4, 2, "like", 1, "ann", None, "ann liked your post", 8.0)
    assert wire(NotificationMessage.of(note)) == {
        "type": "notification",
        "id": 4,
        "kind": "like",
        "from": ANN_JSON,
        "post_id": None,
        "text": "ann liked your post",
        "ts": 8.0,
    }


def test_welcome_tells_the_client_its_socket_and_limits() -> None:
    settings = Settings(rate_per_second=5, rate_burst=9)
    welcome = wire(WelcomeMessage("s_x", ANN, Limits.of(settings), "p1"))
    assert welcome == {
        "type": "welcome",
        "socket_id": "s_x",
        "user": ANN_JSON,
        "limits": {
            "max_message_bytes": settings.max_message_bytes,
            "rate_per_second": 5,
            "rate_burst": 9,
            "ping_interval": settings.ping_interval,
            "typing_ttl": settings.typing_ttl,
            "resume_limit": settings.resume_limit,
        },
        "node": "p1",
    }


def test_a_lone_process_leaves_its_name_out_of_welcome() -> None:
    # Without --redis or --node there is one process: a lesson's welcome reads the same every run.
    welcome = wire(WelcomeMessage("s_x", ANN, Limits.of(Settings()), None))
    assert "node" not in welcome


def test_observe_events_write_their_fields_then_ev() -> None:
    event = ObserveEvent.socket_closed("s_1", ANN, 1006, "connection lost")
    assert list(event.to_json().items()) == [
        ("socket_id", "s_1"),
        ("user", ANN_JSON),
        ("code", 1006),
        ("reason", "connection lost"),
        ("ev", "socket_closed"),
    ]
    routed = ObserveEvent.routed(
        message_type="chat",
        sender=ANN_JSON,
        to={"kind": "room", "name": "lobby"},
        size=10,
        recipients=2,
        seq=4,
        preview="hi",
    )
    assert routed.to_json()["from"] == ANN_JSON and routed.ev == "routed"
    assert ObserveEvent.membership(ANN, "lobby", joined=False).ev == "left"
    batch = wire(EventsMessage(({"ev": "x", "t": 1.0},), 3))
    assert batch == {"type": "events", "events": [{"ev": "x", "t": 1.0}], "dropped": 3}
