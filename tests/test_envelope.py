"""Unit tests of labserver.envelope: the JSON message envelope (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from labserver.envelope import (
    CLIENT_TYPES,
    MAX_REF_CHARS,
    MAX_SIGNAL_BYTES,
    MAX_TEXT_CHARS,
    Auth,
    Chat,
    DirectMessage,
    EnvelopeError,
    ErrorCode,
    Join,
    Leave,
    Ping,
    Resume,
    Signal,
    Subscribe,
    Typing,
    Unsubscribe,
    dm_parties,
    dm_room,
    encode,
    error_message,
    is_dm_room,
    parse_client_message,
)


def parse(**fields: Any) -> Any:
    """The message ``fields`` parse to, as ``Any``: each test reads the fields of the type it expects."""
    return parse_client_message(json.dumps(fields))


def fails(fields: Any, code: ErrorCode = ErrorCode.BAD_FIELD, *, raw: bool = False) -> EnvelopeError:
    text = fields if raw else json.dumps(fields)
    with pytest.raises(EnvelopeError) as info:
        parse_client_message(text)
    assert info.value.code is code, (info.value.code, info.value.message)
    return info.value


# --- every client type parses into its dataclass -------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "auth", "token": "abc.def.ghi", "ref": 1}, Auth(1, "abc.def.ghi")),
        ({"type": "join", "room": "lobby", "ref": "j1"}, Join("j1", "lobby")),
        ({"type": "leave", "room": "a.b-c_D9"}, Leave(None, "a.b-c_D9")),
        (
            {"type": "chat", "room": "lobby", "text": "hello \u00e9\u2603", "ref": "c"},
            Chat("c", "lobby", "hello \u00e9\u2603"),
        ),
        ({"type": "dm", "to": 7, "text": "psst"}, DirectMessage(None, 7, "psst")),
        ({"type": "typing", "room": "lobby"}, Typing(None, "lobby", True)),
        ({"type": "typing", "room": "lobby", "active": False}, Typing(None, "lobby", False)),
        ({"type": "subscribe", "topic": "presence"}, Subscribe(None, "presence")),
        ({"type": "subscribe", "topic": "post:42"}, Subscribe(None, "post:42")),
        ({"type": "unsubscribe", "topic": "post:1", "ref": 0}, Unsubscribe(0, "post:1")),
        (
            {"type": "signal", "to": 3, "kind": "offer", "data": {"sdp": "v=0"}},
            Signal(None, 3, "offer", {"sdp": "v=0"}, None),
        ),
        (
            {"type": "signal", "to": 3, "kind": "ice", "data": None, "to_socket": "s-1"},
            Signal(None, 3, "ice", None, "s-1"),
        ),
        ({"type": "signal", "to": 3, "kind": "hangup"}, Signal(None, 3, "hangup", None, None)),
        ({"type": "resume", "room": "lobby", "after": 0}, Resume(None, "lobby", 0)),
        ({"type": "resume", "room": "dm:1:2", "after": 5}, Resume(None, "dm:1:2", 5)),
        ({"type": "ping", "payload": [1, {"x": "y"}]}, Ping(None, [1, {"x": "y"}])),
        ({"type": "ping"}, Ping(None, None)),
    ],
)
def test_every_type_parses(fields: dict[str, Any], expected: Any) -> None:
    message = parse(**fields)
    assert type(message) is type(expected)
    assert message == expected
    assert message.type == fields["type"]


def test_every_client_type_is_covered() -> None:
    assert set(CLIENT_TYPES) == {
        "auth",
        "join",
        "leave",
        "chat",
        "dm",
        "typing",
        "subscribe",
        "unsubscribe",
        "signal",
        "resume",
        "ping",
    }


def test_messages_are_frozen() -> None:
    message = parse(type="join", room="lobby")
    with pytest.raises(AttributeError):
        message.room = "other"


def test_spoofed_fields_are_ignored() -> None:
    message = parse(
        type="chat", room="lobby", text="hi", **{"from": {"id": 1, "username": "admin"}}, seq=99, ts=1.0, user_id=1
    )
    assert message == Chat(None, "lobby", "hi")
    assert not hasattr(message, "seq")
    assert not hasattr(message, "from_")
    dm = parse(type="dm", to=2, text="x", **{"from": 1})
    assert dm == DirectMessage(None, 2, "x")


def test_text_at_the_limit_is_accepted_and_kept_verbatim() -> None:
    text = "  " + "x" * (MAX_TEXT_CHARS - 4) + "  "
    assert parse(type="chat", room="r", text=text).text == text


def test_max_integer_values_are_accepted() -> None:
    assert parse(type="dm", to=2**53, text="x").to == 2**53
    assert parse(type="resume", room="r", after=2**53).after == 2**53


# --- bad input: code and a message naming the field ----------------------------------


@pytest.mark.parametrize("text", ["", "{", "not json", '{"type": "ping",}', "{'type': 'ping'}", "[1, 2"])
def test_bad_json(text: str) -> None:
    err = fails(text, ErrorCode.BAD_JSON, raw=True)
    assert "JSON" in err.message
    assert err.ref is None


def test_deeply_nested_json_is_bad_json_not_recursion_error() -> None:
    fails("[" * 100_000 + "]" * 100_000, ErrorCode.BAD_JSON, raw=True)
    fails('{"type": "ping", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}", ErrorCode.BAD_JSON, raw=True)


def test_integer_beyond_the_str_conversion_limit_is_bad_json() -> None:
    # json.loads raises a plain ValueError (not JSONDecodeError) for ints over 4,300 digits.
    fails('{"type": "ping", "payload": 1' + "0" * 5000 + "}", ErrorCode.BAD_JSON, raw=True)
    fails('{"type": "dm", "to": 1' + "0" * 5000 + ', "text": "x"}', ErrorCode.BAD_JSON, raw=True)


@pytest.mark.parametrize("value", [[], [1, 2], "hello", 42, 1.5, None, True])
def test_non_object(value: Any) -> None:
    err = fails(value, ErrorCode.BAD_MESSAGE)
    assert "JSON object" in err.message
    assert type(value).__name__ in err.message


@pytest.mark.parametrize(
    "fields", [{}, {"ref": "r"}, {"type": 1, "ref": "r"}, {"type": None, "ref": "r"}, {"type": ["chat"], "ref": "r"}]
)
def test_missing_or_non_string_type(fields: dict[str, Any]) -> None:
    err = fails(fields, ErrorCode.BAD_MESSAGE)
    assert "'type'" in err.message
    assert err.ref == fields.get("ref")


@pytest.mark.parametrize("kind", ["hello", "Chat", "", "welcome", "error", "x" * 1000])
def test_unknown_type(kind: str) -> None:
    err = fails({"type": kind, "ref": 5}, ErrorCode.UNKNOWN_TYPE)
    assert err.ref == 5
    assert repr(kind[:40]) in err.message
    assert len(err.message) < 400  # a long type is truncated in the answer
    for known in CLIENT_TYPES:
        assert known in err.message


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"type": "auth"}, "token", "missing"),
        ({"type": "auth", "token": 5}, "token", "must be a string, got int"),
        ({"type": "auth", "token": "t" * 4097}, "token", "limit is 4096"),
        ({"type": "join"}, "room", "missing"),
        ({"type": "join", "room": 1}, "room", "must be a string, got int"),
        ({"type": "join", "room": None}, "room", "must be a string, got NoneType"),
        ({"type": "leave", "room": ["lobby"]}, "room", "got list"),
        ({"type": "chat", "room": "r"}, "text", "missing"),
        ({"type": "chat", "text": "hi"}, "room", "missing"),
        ({"type": "chat", "room": "r", "text": 5}, "text", "must be a string, got int"),
        ({"type": "chat", "room": "r", "text": {"t": 1}}, "text", "got dict"),
        ({"type": "dm", "text": "hi"}, "to", "missing"),
        ({"type": "dm", "to": "7", "text": "hi"}, "to", "must be an integer, got str"),
        ({"type": "dm", "to": 7.0, "text": "hi"}, "to", "must be an integer, got float"),
        ({"type": "dm", "to": True, "text": "hi"}, "to", "must be an integer, got bool"),
        ({"type": "dm", "to": False, "text": "hi"}, "to", "must be an integer, got bool"),
        ({"type": "dm", "to": 0, "text": "hi"}, "to", ">= 1"),
        ({"type": "dm", "to": -3, "text": "hi"}, "to", ">= 1"),
        ({"type": "dm", "to": 2**53 + 1, "text": "hi"}, "to", "to"),
        ({"type": "dm", "to": 2}, "text", "missing"),
        ({"type": "typing", "room": "r", "active": 1}, "active", "must be true or false, got int"),
        ({"type": "typing", "room": "r", "active": "yes"}, "active", "got str"),
        ({"type": "typing", "room": "r", "active": None}, "active", "got NoneType"),
        ({"type": "subscribe"}, "topic", "missing"),
        ({"type": "subscribe", "topic": 3}, "topic", "must be a string"),
        ({"type": "resume", "room": "r"}, "after", "missing"),
        ({"type": "resume", "room": "r", "after": -1}, "after", ">= 0"),
        ({"type": "resume", "room": "r", "after": True}, "after", "must be an integer, got bool"),
        ({"type": "resume", "room": "r", "after": "3"}, "after", "got str"),
        ({"type": "resume", "room": "r", "after": 1.5}, "after", "got float"),
        ({"type": "resume", "after": 1}, "room", "missing"),
        ({"type": "signal", "kind": "offer"}, "to", "missing"),
        ({"type": "signal", "to": True, "kind": "offer"}, "to", "got bool"),
        ({"type": "signal", "to": 2}, "kind", "missing"),
        ({"type": "signal", "to": 2, "kind": 1}, "kind", "must be a string"),
        ({"type": "signal", "to": 2, "kind": "offer", "to_socket": 5}, "to_socket", "must be a string, got int"),
        ({"type": "signal", "to": 2, "kind": "offer", "to_socket": "s" * 65}, "to_socket", "limit is 64"),
    ],
)
def test_bad_field_is_named(fields: dict[str, Any], field: str, fragment: str) -> None:
    err = fails({**fields, "ref": "R"})
    assert f"'{field}'" in err.message, err.message
    assert fragment in err.message, err.message
    assert err.ref == "R"


def test_too_long_text() -> None:
    err = fails({"type": "chat", "room": "r", "text": "x" * (MAX_TEXT_CHARS + 1), "ref": 1})
    assert "'text'" in err.message and f"limit is {MAX_TEXT_CHARS}" in err.message
    err = fails({"type": "dm", "to": 2, "text": "x" * (MAX_TEXT_CHARS + 1)})
    assert "'text'" in err.message


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", "\u3000"])
def test_empty_text(text: str) -> None:
    for fields in ({"type": "chat", "room": "r", "text": text}, {"type": "dm", "to": 2, "text": text}):
        err = fails({**fields, "ref": "e"})
        assert err.message == "field 'text' must not be empty"
        assert err.ref == "e"


@pytest.mark.parametrize(
    "room",
    [
        "",
        "has space",
        "slash/room",
        "x" * 65,
        "caf\u00e9",
        "dm:1:2",
        "dm:0:2",
        "lobby\n",
        "a:b",
        "\u0661\u0662",
        "#general",
    ],
)
def test_bad_room_names(room: str) -> None:
    for kind in ("join", "leave", "typing"):
        err = fails({"type": kind, "room": room, "ref": 9})
        assert "'room'" in err.message
        assert err.ref == 9
    err = fails({"type": "chat", "room": room, "text": "hi"})
    assert "'room'" in err.message


@pytest.mark.parametrize("room", ["a", "A-Z.0_9", "x" * 64, "...", "-"])
def test_good_room_names(room: str) -> None:
    assert parse(type="join", room=room).room == room


def test_dm_rooms_only_allowed_in_resume() -> None:
    for kind in ("join", "leave", "typing"):
        fails({"type": kind, "room": "dm:1:2"})
    fails({"type": "chat", "room": "dm:1:2", "text": "hi"})
    assert parse(type="resume", room="dm:1:2", after=0).room == "dm:1:2"
    assert parse(type="resume", room="dm:1:123456789012345678", after=0).room == "dm:1:123456789012345678"


@pytest.mark.parametrize("room", ["dm:2:1", "dm:5:5", "dm:123456789012345678:1"])
def test_dm_rooms_have_one_spelling(room: str) -> None:
    # dm:2:1 would name the same pair as dm:1:2 and always read empty: refused, not silently empty.
    assert not is_dm_room(room)
    assert "'room'" in fails({"type": "resume", "room": room, "after": 0}).message


@pytest.mark.parametrize(
    "room", ["dm:0:1", "dm:1:02", "dm:1", "dm:1:2:3", "dm:a:b", "dm:1234567890123456789:1", "dm:-1:2", "dm: 1:2"]
)
def test_malformed_dm_rooms_refused_in_resume(room: str) -> None:
    err = fails({"type": "resume", "room": room, "after": 0})
    assert "'room'" in err.message


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "post",
        "post:",
        "post:0",
        "post:01",
        "post:-1",
        "post:x",
        "presence ",
        "Presence",
        "presencex",
        "post:1x",
        "room:1",
        "post:1234567890123456789",
    ],
)
def test_bad_topics(topic: str) -> None:
    for kind in ("subscribe", "unsubscribe"):
        err = fails({"type": kind, "topic": topic, "ref": "t"})
        assert "'topic'" in err.message
        assert err.ref == "t"


def test_good_topics() -> None:
    assert parse(type="subscribe", topic="post:123456789012345678").topic == "post:123456789012345678"


@pytest.mark.parametrize("kind", ["", "OFFER", "call", "candidate", "media"])
def test_bad_signal_kind(kind: str) -> None:
    err = fails({"type": "signal", "to": 2, "kind": kind, "ref": "s"})
    assert "'kind'" in err.message
    assert err.ref == "s"


@pytest.mark.parametrize("kind", ["offer", "answer", "ice", "hangup"])
def test_signal_kinds(kind: str) -> None:
    assert parse(type="signal", to=2, kind=kind, data={"x": 1}).kind == kind


def test_signal_data_size_limit() -> None:
    overhead = len(encode({"d": ""}))  # {"d":""}
    fits = "x" * (MAX_SIGNAL_BYTES - overhead)
    assert parse(type="signal", to=2, kind="offer", data=fits).data == fits
    err = fails({"type": "signal", "to": 2, "kind": "offer", "data": fits + "x", "ref": "big"})
    assert "'data'" in err.message and str(MAX_SIGNAL_BYTES) in err.message
    assert err.ref == "big"
    fails({"type": "signal", "to": 2, "kind": "answer", "data": {"sdp": "v" * MAX_SIGNAL_BYTES}})
    fails({"type": "signal", "to": 2, "kind": "ice", "data": list(range(MAX_SIGNAL_BYTES))})


def test_signal_data_limit_counts_utf8_bytes_not_characters() -> None:
    # 6,000 two-byte characters: 6,000 characters but 12,000 bytes of UTF-8 ... fits
    assert parse(type="signal", to=2, kind="offer", data="\u00e9" * 6000).data == "\u00e9" * 6000
    # 9,000 two-byte characters = 18,000 bytes > 16 KiB, though only 9,000 characters.
    err = fails({"type": "signal", "to": 2, "kind": "offer", "data": "\u00e9" * 9000})
    assert "'data'" in err.message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"type": "signal", "to": 2, "kind": "ice", "data": "\\ud800", "ref": 1}', "data"),
        ('{"type": "chat", "room": "r", "text": "a\\udc00b", "ref": 1}', "text"),
        ('{"type": "ping", "payload": {"k": ["\\ud800"]}, "ref": 1}', "payload"),
    ],
)
def test_lone_surrogates_are_refused_by_field(text: str, field: str) -> None:
    # JSON may spell them ("\ud800"), but no UTF-8 frame or database can carry them.
    with pytest.raises(EnvelopeError) as info:
        parse_client_message(text)
    assert info.value.code is ErrorCode.BAD_FIELD and repr(field) in info.value.message and info.value.ref == 1


def test_surrogate_pairs_are_fine() -> None:
    message = parse_client_message('{"type": "chat", "room": "r", "text": "\\ud83d\\ude00"}')
    assert isinstance(message, Chat) and message.text == "\U0001f600"


# --- ref --------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["abc", "", 0, -5, 2**60, "x" * MAX_REF_CHARS, "\u2603"])
def test_ref_kept_as_given(ref: str | int) -> None:
    assert parse(type="join", room="r", ref=ref).ref == ref
    message = parse(type="join", room="r", ref=ref)
    assert type(message.ref) is type(ref)


@pytest.mark.parametrize("ref", ["r-1", 17, 0])
def test_ref_kept_as_given_in_errors(ref: str | int) -> None:
    cases: list[tuple[dict[str, Any], ErrorCode]] = [
        ({"type": "nope"}, ErrorCode.UNKNOWN_TYPE),
        ({"type": 1}, ErrorCode.BAD_MESSAGE),
        ({}, ErrorCode.BAD_MESSAGE),
        ({"type": "join", "room": "bad room"}, ErrorCode.BAD_FIELD),
        ({"type": "chat", "room": "r", "text": ""}, ErrorCode.BAD_FIELD),
        ({"type": "signal", "to": 2, "kind": "x"}, ErrorCode.BAD_FIELD),
    ]
    for fields, code in cases:
        err = fails({**fields, "ref": ref}, code)
        assert err.ref == ref and type(err.ref) is type(ref)
        assert err.to_message()["ref"] == ref


@pytest.mark.parametrize("ref", [True, False, 1.5, [1], {"a": 1}, "x" * (MAX_REF_CHARS + 1), 10**MAX_REF_CHARS])
def test_bad_ref(ref: Any) -> None:
    err = fails({"type": "join", "room": "r", "ref": ref})
    assert "'ref'" in err.message
    assert err.ref is None  # an unreadable ref is never echoed
    assert "ref" not in err.to_message()


def test_null_ref_is_no_ref() -> None:
    assert parse(type="ping", ref=None).ref is None


def test_error_message_shape() -> None:
    err = EnvelopeError(ErrorCode.NOT_IN_ROOM, "not in room 'x'", "r1")
    assert err.to_message() == {"type": "error", "code": "not_in_room", "message": "not in room 'x'", "ref": "r1"}
    assert error_message(ErrorCode.BAD_JSON, "m") == {"type": "error", "code": "bad_json", "message": "m"}
    assert error_message(ErrorCode.BAD_JSON, "m", 0)["ref"] == 0
    assert isinstance(err, ValueError)


def test_encode_is_compact_and_keeps_unicode() -> None:
    assert encode({"a": 1, "b": "\u00e9"}) == '{"a":1,"b":"\u00e9"}'


# --- DM room names -------------------------------------------------------------------


def test_dm_room_is_ordered() -> None:
    assert dm_room(2, 1) == dm_room(1, 2) == "dm:1:2"
    assert dm_room(10, 9) == "dm:9:10"  # numeric order, not string order
    assert dm_room(5, 5) == "dm:5:5"


@given(st.integers(1, 10**17), st.integers(1, 10**17))
@settings(max_examples=100)
def test_dm_room_parties_round_trip(a: int, b: int) -> None:
    assume(a != b)
    room = dm_room(a, b)
    assert dm_parties(room) == (min(a, b), max(a, b))
    assert parse(type="resume", room=room, after=0).room == room


@pytest.mark.parametrize("room", ["lobby", "dm:1", "dm:0:1", "dm:1:2x", "xdm:1:2", "dm:01:2", ""])
def test_dm_parties_of_ordinary_room(room: str) -> None:
    assert dm_parties(room) is None


# --- property tests: nothing but EnvelopeError escapes --------------------------------


def _parse_never_raises_other(text: str) -> None:
    try:
        message = parse_client_message(text)
    except EnvelopeError as err:
        assert isinstance(err.code, ErrorCode)
        assert err.message
        assert err.ref is None or (isinstance(err.ref, str | int) and not isinstance(err.ref, bool))
        json.dumps(err.to_message())  # the answer is always serializable
    else:
        assert message.type in CLIENT_TYPES


@given(st.text())
@settings(max_examples=200)
def test_arbitrary_text_only_raises_envelope_error(text: str) -> None:
    _parse_never_raises_other(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)

# Objects that look like real messages, so the field validators (not just the type check) run.
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(CLIENT_TYPES) | st.text(max_size=5)},
    optional={
        "ref": json_values,
        "room": st.sampled_from(["lobby", "dm:1:2", "bad room", ""]) | json_values,
        "text": st.text(max_size=20) | json_values,
        "to": st.integers(-2, 2**54) | json_values,
        "token": json_values,
        "topic": st.sampled_from(["presence", "post:1", "post:0"]) | json_values,
        "kind": st.sampled_from(["offer", "ice", "bogus"]) | json_values,
        "data": json_values,
        "to_socket": json_values,
        "after": st.integers(-2, 2**54) | json_values,
        "active": json_values,
        "payload": json_values,
    },
)


@given(json_values)
@settings(max_examples=200)
def test_arbitrary_json_only_raises_envelope_error(value: Any) -> None:
    _parse_never_raises_other(json.dumps(value))


@given(message_like)
@settings(max_examples=200)
def test_message_like_json_only_raises_envelope_error(value: dict[str, Any]) -> None:
    _parse_never_raises_other(json.dumps(value))
