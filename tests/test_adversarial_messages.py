"""Hostile application messages on an authenticated socket: every one gets a clean error
(and the socket stays open) or the documented close, never an internal error, a dropped
connection or a message that is not strict JSON; and a second client is served afterwards.

tests/test_ws.py already covers one case of each of bad_json, bad_message, unknown_type,
bad_field, not_in_room, already_authenticated and binary, a ping flood closed with 1008,
and a message over 64 KiB closed with 1009.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labserver.course import LabServer
from labserver.envelope import CLIENT_TYPES, EnvelopeError, Ping, Signal, encode, parse_client_message

from .adversarial import (
    each_case_then_still_serves,  # noqa: F401 - autouse: a second client is served after each case
    fresh_account,
    hostport,
    still_serves,
    wait_health,
)
from .conftest import Client


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """No practical rate limit and 1 MiB messages: for nesting, fuzzing and storms."""
    with LabServer(
        tmp_path_factory.mktemp("fast"),
        rate=100_000,
        burst=100_000,
        max_message_bytes=2**20,
        typing_ttl=1,
        ping_interval=1,
    ) as proc:
        yield proc


def strict_json(text: str | bytes) -> Any:
    """What a browser's JSON.parse accepts: no NaN, Infinity or -Infinity."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def answer_to(c: Client, text: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send raw text; return the next error/ack/pong it caused, read as strict JSON."""
    await c.ws.send(text)
    async with asyncio.timeout(timeout):
        while True:
            message = strict_json(await c.ws.recv())
            if message["type"] in ("error", "ack", "pong", "resumed", "resync"):
                return message
            c.inbox.append(message)


async def assert_open(c: Client) -> None:
    pong = await c.request("ping", payload="alive?")
    assert pong["type"] == "pong" and pong["payload"] == "alive?"


# --- malformed JSON, unknown types, wrong field types -------------------------------------------

MALFORMED = [
    "",
    " ",
    "{",
    "}",
    "nul",
    "{'type': 'ping'}",
    '{"type": "ping",}',
    '{"type": "ping"} {"type": "ping"}',
    '{"type": "ping"} trailing',
    '\ufeff{"type": "ping"}',
    '{"type": "ping", "payload": "\\x41"}',
    '{"type": "ping", "payload": "\\ud83d"',
    '"just a string',
    "[" * 32_000 + "]" * 32_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    "1" * 5000,
]


@pytest.mark.parametrize("text", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_json_is_bad_json(lab: LabServer, text: str) -> None:
    c = await Client.connect(lab, fresh_account(lab))
    error = await answer_to(c, text)
    assert error["type"] == "error" and error["code"] == "bad_json", error
    assert len(error["message"]) < 300
    await assert_open(c)
    await c.close()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
async def test_non_json_numbers_are_refused_never_echoed(lab: LabServer, constant: str) -> None:
    """Python's json accepts NaN and Infinity; JSON (and a browser's JSON.parse) does not.
    A pong or a relayed signal carrying one would break the receiving client."""
    alice, bob = fresh_account(lab), fresh_account(lab)
    a, b = await Client.connect(lab, alice), await Client.connect(lab, bob)
    for text in (
        f'{{"type": "ping", "ref": 1, "payload": {constant}}}',
        f'{{"type": "signal", "ref": 2, "to": {bob.id}, "kind": "offer", "data": {{"x": [{constant}]}}}}',
    ):
        answer = await answer_to(a, text)
        assert answer["type"] == "error" and answer["code"] in ("bad_json", "bad_field"), answer
    await b.nothing_more("signal")
    await assert_open(a)
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": 7}, "bad_message"),
        ({"type": None}, "bad_message"),
        ({"type": ["ping"]}, "bad_message"),
        ({"ref": 1}, "bad_message"),
        ({"type": "PING", "ref": 1}, "unknown_type"),
        ({"type": "ping ", "ref": 1}, "unknown_type"),
        ({"type": "x" * 60_000, "ref": 1}, "unknown_type"),
        ({"type": "__class__", "ref": 1}, "unknown_type"),
        ({"type": "chat", "room": "r", "text": ["hi"], "ref": 1}, "bad_field"),
        ({"type": "chat", "room": "r", "text": "x" * 60_000, "ref": 1}, "bad_field"),
        ({"type": "chat", "room": "r" * 60_000, "text": "hi", "ref": 1}, "bad_field"),
        ({"type": "chat", "room": "dm:1:2", "text": "hi", "ref": 1}, "bad_field"),
        ({"type": "dm", "to": "2", "text": "hi", "ref": 1}, "bad_field"),
        ({"type": "dm", "to": True, "text": "hi", "ref": 1}, "bad_field"),
        ({"type": "dm", "to": 2.0, "text": "hi", "ref": 1}, "bad_field"),
        ({"type": "dm", "to": 2**60, "text": "hi", "ref": 1}, "bad_field"),
        ({"type": "dm", "to": -1, "text": "hi", "ref": 1}, "bad_field"),
        ({"type": "resume", "room": "r", "after": -1, "ref": 1}, "bad_field"),
        ({"type": "resume", "room": "r", "after": "0", "ref": 1}, "bad_field"),
        ({"type": "resume", "room": "dm:2:1", "after": 0, "ref": 1}, "bad_field"),
        ({"type": "typing", "room": "r", "active": "yes", "ref": 1}, "bad_field"),
        ({"type": "subscribe", "topic": "post:0", "ref": 1}, "bad_field"),
        ({"type": "subscribe", "topic": {"$ne": 1}, "ref": 1}, "bad_field"),
        ({"type": "signal", "to": 1, "kind": "offer", "data": "x" * 20_000, "ref": 1}, "bad_field"),
        ({"type": "signal", "to": 1, "kind": "offer", "data": {}, "to_socket": 5, "ref": 1}, "bad_field"),
        ({"type": "ping", "ref": "r" * 65}, "bad_field"),
        ({"type": "ping", "ref": {"a": 1}}, "bad_field"),
        ({"type": "ping", "ref": 1.5}, "bad_field"),
        ({"type": "ping", "ref": True}, "bad_field"),
        ({"type": "ping", "ref": 10**70}, "bad_field"),
        ({"type": "auth", "token": "x" * 60_000, "ref": 1}, "bad_field"),
    ],
    ids=lambda v: str(v)[:40],
)
async def test_wrong_types_and_sizes_get_a_named_error(lab: LabServer, message: dict[str, Any], code: str) -> None:
    c = await Client.connect(lab, fresh_account(lab))
    error = await answer_to(c, json.dumps(message))
    assert error["type"] == "error" and error["code"] == code, error
    assert len(json.dumps(error)) < 500  # a huge field is never echoed back
    if code != "bad_message" and type(message.get("ref")) is int and message["ref"] == 1:
        assert error.get("ref") == 1
    await assert_open(c)
    await c.close()


@pytest.mark.parametrize("ref", ["\\ud800", "a\\udfff", "\\udc00\\ud800"])
async def test_a_ref_with_a_lone_surrogate_is_refused_cleanly(lab: LabServer, ref: str) -> None:
    """It can't be echoed in UTF-8; before the fix the answer crashed and the socket dropped (1006)."""
    c = await Client.connect(lab, fresh_account(lab))
    error = await answer_to(c, f'{{"type": "ping", "ref": "{ref}"}}')
    assert error["type"] == "error" and error["code"] == "bad_field" and "ref" in error["message"]
    assert "ref" not in error
    await assert_open(c)
    await c.close()
    logs = "\n".join(lab.logs)
    assert "UnicodeEncodeError" not in logs and "Traceback" not in logs


async def test_a_lone_surrogate_ref_in_the_first_message_auth_is_refused_cleanly(lab: LabServer) -> None:
    acct = fresh_account(lab)
    async with websockets.connect(lab.ws_url) as ws:
        await ws.send(f'{{"type": "auth", "token": "{acct.token}", "ref": "\\ud800"}}')
        error = strict_json(await asyncio.wait_for(ws.recv(), 5))
        assert error["code"] == "not_authenticated"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008
    assert "Traceback" not in "\n".join(lab.logs)


# --- deep nesting ---------------------------------------------------------------------------------


async def test_a_hundred_thousand_nested_arrays_is_bad_json(fast: LabServer) -> None:
    c = await Client.connect(fast, fresh_account(fast), max_size=None)
    for text in (
        "[" * 100_000 + "]" * 100_000,
        '{"type": "ping", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"type": "ping", "payload": ' + '{"a":' * 100_000 + "0" + "}" * 100_000 + "}",
    ):
        error = await answer_to(c, text)
        assert error["code"] == "bad_json" and "recursion" in error["message"], error
    await assert_open(c)
    await c.close()


async def test_nesting_just_under_the_parser_limit_never_fails_later(fast: LabServer) -> None:
    """Between what json.loads accepts and what json.dumps can write back lies a band of depths
    where the reply (pong, relayed signal) used to fail as an internal error. Every depth
    gets a clean answer: the payload echoed, or bad_json / bad_field."""
    alice, bob = fresh_account(fast), fresh_account(fast)
    a, b = await Client.connect(fast, alice, max_size=None), await Client.connect(fast, bob, max_size=None)
    seen: dict[str, int] = {}
    for depth in [*range(1, 40, 7), *range(60, 130, 10), *range(900, 1010)]:
        nested = "[" * depth + "]" * depth
        for text in (
            f'{{"type": "ping", "ref": 1, "payload": {nested}}}',
            f'{{"type": "signal", "ref": 2, "to": {bob.id}, "kind": "offer", "data": {nested}}}',
        ):
            answer = await answer_to(a, text)
            outcome = answer["type"] if answer["type"] != "error" else answer["code"]
            assert outcome in ("pong", "ack", "bad_json", "bad_field"), (depth, answer)
            seen[outcome] = seen.get(outcome, 0) + 1
    assert seen.get("pong") and seen.get("bad_field") or seen.get("bad_json")
    await assert_open(a)
    await a.close()
    await b.close()
    assert "handler failed" not in "\n".join(fast.logs)


# --- floods -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["malformed", "unknown_type", "bad_field", "chat"])
async def test_a_flood_of_any_kind_is_throttled_then_closed_1008(lab: LabServer, kind: str) -> None:
    """Every text message takes a token, valid or not; otherwise a flood of garbage is never limited
    (and each earns an error reply, written whether or not the client reads)."""
    acct = fresh_account(lab)
    flooder = await Client.connect(lab, acct, max_queue=None)
    await flooder.request("join", room="flooded")
    text = {
        "malformed": "{oops",
        "unknown_type": '{"type": "shout"}',
        "bad_field": '{"type": "join", "room": 5}',
        "chat": '{"type": "chat", "room": "flooded", "text": "spam", "ref": "c"}',
    }[kind]
    sent = 0
    for _ in range(500):
        try:
            await flooder.ws.send(text)
            sent += 1
        except websockets.ConnectionClosed:
            break
    replies: list[dict[str, Any]] = []
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            replies.append(strict_json(await asyncio.wait_for(flooder.ws.recv(), 5)))
    assert flooder.ws.close_code == 1008 and flooder.ws.close_reason == "rate limit exceeded"
    limited = [r for r in replies if r.get("code") == "rate_limited"]
    assert limited and len(replies) < 250  # tens of answers and refusals, then the close: not 500 answers
    if kind == "chat":  # only what was acknowledged was stored
        acks = [r for r in replies if r["type"] == "ack" and r.get("seq")]
        status, body = lab.request("GET", "/api/rooms/flooded/messages?limit=1000", token=acct.token)
        mine = [m for m in body["messages"] if m["from"]["id"] == acct.id]
        assert sorted(m["seq"] for m in mine) == sorted(r["seq"] for r in acks)
    await still_serves(lab)


# --- typing storms ------------------------------------------------------------------------------------


async def test_typing_storm_is_never_stored_and_the_typing_map_stays_bounded(fast: LabServer) -> None:
    users = [fresh_account(fast, "typist") for _ in range(8)]
    clients = [await Client.connect(fast, u, max_queue=None) for u in users]
    rooms = [f"storm{i}" for i in range(25)]
    for c in clients:
        for room in rooms:
            await c.send("join", room=room)
    await clients[-1].request("ping")
    peak = 0
    for _burst in range(4):
        for c in clients:
            for room in rooms:
                for _ in range(5):
                    await c.send("typing", room=room)
        await clients[0].request("ping")
        peak = max(peak, (await asyncio.to_thread(fast.health))["typing"])
    assert 0 < peak <= len(users) * len(rooms)  # one entry per (room, user), whatever the storm
    status, body = fast.request("GET", f"/api/rooms/{rooms[0]}/messages", token=users[0].token)
    assert status == 200 and body["messages"] == [] and body["last_seq"] == 0  # never stored
    body = await wait_health(fast, lambda h: h["typing"] == 0, timeout=5)  # typing_ttl is 1 s
    assert body["typing"] == 0
    for c in clients:
        await c.close()
    body = await wait_health(fast, lambda h: h["connections"] == 0 and h["rooms"] == 0)
    assert body["connections"] == 0 and body["rooms"] == 0
    await still_serves(fast)


# --- live fuzz ------------------------------------------------------------------------------------------

_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    2**53,
    2**53 + 1,
    10**30,
    1.5,
    -0.0,
    "",
    " ",
    "lobby",
    "dm:1:2",
    "dm:2:1",
    "post:1",
    "presence",
    "x" * 70,
    "\u2603",
    "\U0001f600",
    "\u0000",
    "<script>",
    [],
    {},
    [1, [2, [3]]],
    {"a": {"b": None}},
    "r" * 5000,
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.1:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if depth < 3 and roll < 0.2:
        return {
            rng.choice(["type", "ref", "room", "x"]): _random_value(rng, depth + 1) for _ in range(rng.randrange(3))
        }
    if roll < 0.3:
        return rng.randrange(-5, 50)
    return rng.choice(_VALUES)


_RAW = [
    '{"type": "ping", "ref": "\\ud800"}',
    '{"type": "ping", "payload": NaN}',
    '{"type": "ping", "payload": 1e999}',
    "{",
    "[]",
    "null",
    '"x"',
    '{"type": "chat", "room": "fuzz", "text": "\\udc00"}',
    "\ufeff{}",
    '{"type": "ping", "payload": ' + "[" * 995 + "]" * 995 + "}",
]


def _random_message(rng: random.Random, user_ids: list[int]) -> str:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(_RAW)
    if roll < 0.15:
        return "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD7FF)])) for _ in range(rng.randrange(40))
        )
    message: dict[str, Any] = {"type": rng.choice([*CLIENT_TYPES, *CLIENT_TYPES, "", "nope", 3, None])}
    for name in rng.sample(
        [
            "ref",
            "room",
            "text",
            "to",
            "token",
            "topic",
            "kind",
            "data",
            "to_socket",
            "after",
            "active",
            "payload",
            "from",
            "seq",
        ],
        rng.randrange(0, 6),
    ):
        message[name] = _random_value(rng)
    if rng.random() < 0.5:
        message["room"] = rng.choice(["fuzz", "fuzz2", "lobby"])
        message["to"] = rng.choice(user_ids)
        message["text"] = rng.choice(["hi", "x" * 4000, "\u2603 ok", " "])
    return json.dumps(message)


async def test_live_fuzz_300_random_messages_on_one_socket(fast: LabServer) -> None:
    rng = random.Random(20240611)
    victim, other = fresh_account(fast, "fuzz"), fresh_account(fast, "fuzz")
    c = await Client.connect(fast, victim, max_queue=None, max_size=None)
    bystander = await Client.connect(fast, other, max_queue=None)
    await bystander.request("join", room="fuzz")
    answers: list[dict[str, Any]] = []
    for _ in range(300):
        await c.ws.send(_random_message(rng, [victim.id, other.id, 10**6]))
    await c.send("ping", ref="last")
    async with asyncio.timeout(20):
        while True:
            message = strict_json(await c.ws.recv())  # every answer is strict JSON
            answers.append(message)
            if message.get("ref") == "last" and message["type"] == "pong":
                break
    codes = {a.get("code") for a in answers if a["type"] == "error"}
    assert "internal" not in codes and "rate_limited" not in codes, codes
    assert {"bad_json", "bad_field", "unknown_type"} <= codes
    await assert_open(c)
    await c.close()
    await bystander.close()
    logs = "\n".join(fast.logs)
    assert "Traceback" not in logs and "ERROR" not in logs, logs[-3000:]
    await still_serves(fast)


# --- HTTP JSON bodies: the same clean refusals ------------------------------------------------------

HTTP_BODIES = [
    b"[" * 30_000 + b"]" * 30_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b"1" * 5000,
    b"\xff\xfe{}",
    b'{"text": "\\ud800"}',
    b'{"text": NaN}',
    b"",
    b"null",
    b'{"text": "a"}{"text": "b"}',
]


@pytest.mark.parametrize(
    "path", ["/api/signup", "/api/login", "/api/posts", "/api/posts/1/comments", "/api/rooms/r1/messages", "/api/rooms"]
)
def test_hostile_http_json_bodies_are_4xx_never_5xx(lab: LabServer, path: str) -> None:
    """Deep nesting and 5,000-digit numbers used to escape read_json as a 500 with a traceback."""
    token = fresh_account(lab).token
    for body in HTTP_BODIES:
        conn = http.client.HTTPConnection(*hostport(lab), timeout=10)
        try:
            conn.request(
                "POST",
                path,
                body=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            answer = json.loads(response.read())
        finally:
            conn.close()
        assert 400 <= response.status < 500 and answer["error"] in ("bad_json", "bad_field", "not_found"), (
            body[:20],
            answer,
        )
    assert "Traceback" not in "\n".join(lab.logs)


# --- the envelope itself (sans-I/O) --------------------------------------------------------------


def test_every_nesting_depth_of_a_free_form_field_parses_or_is_refused_by_name() -> None:
    for depth in range(1, 1200):
        nested = "[" * depth + "]" * depth
        for text in (
            f'{{"type": "ping", "payload": {nested}}}',
            f'{{"type": "signal", "to": 2, "kind": "ice", "data": {nested}}}',
        ):
            try:
                message = parse_client_message(text)
            except EnvelopeError as exc:
                assert exc.code in ("bad_json", "bad_field"), (depth, exc)
                continue
            assert isinstance(message, Ping | Signal)
            value = message.payload if isinstance(message, Ping) else message.data
            json.loads(encode({"type": "x", "wrapped": [[[value]]]}))  # can be written and read back


json_with_floats = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),  # NaN and infinities included
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


@given(
    st.fixed_dictionaries(
        {"type": st.sampled_from(CLIENT_TYPES)},
        optional={
            "ref": json_with_floats,
            "payload": json_with_floats,
            "data": json_with_floats,
            "to": json_with_floats,
            "kind": st.sampled_from(["offer", "ice"]),
            "room": st.sampled_from(["r", "dm:1:2"]) | json_with_floats,
            "text": json_with_floats,
            "after": json_with_floats,
        },
    )
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_messages_with_any_floats_parse_to_strict_json_or_envelope_error(raw: dict[str, Any]) -> None:
    text = json.dumps(raw)  # Python writes NaN / Infinity: exactly what a hostile client may send
    try:
        message = parse_client_message(text)
    except EnvelopeError:
        return
    for field in ("payload", "data", "ref"):
        value = getattr(message, field, None)
        json.dumps(value, allow_nan=False)  # whatever is echoed or relayed is strict JSON
