"""Unit tests of labserver.broker: the Routed wire format and the in-memory broker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labserver.broker import InMemoryBroker, Routed, TargetKind

names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Z", "Cc")), min_size=1, max_size=40)


@pytest.mark.parametrize(
    "routed",
    [
        Routed(TargetKind.ROOM, "lobby", '{"type":"chat","text":"hi"}', 17, "proc-1"),
        Routed(TargetKind.DM, "dm:1:2", '{"type":"dm"}', 3),
        Routed(TargetKind.USERS, "1,2,3", "{}"),
        Routed(TargetKind.TOPIC, "post:9", '{"type":"post_stats"}', 0, "p"),
        Routed(TargetKind.SOCKET, "s-abc", ""),
        Routed(TargetKind.ROOM, "lobby", '{"text":"caf\u00e9 \u2603 \U0001f600 \u0645\u0631\u062d\u0628\u0627"}'),
        Routed(TargetKind.ROOM, "lobby", '{"text":"line one\nline two\n\n"}\n', 5, "o"),
        Routed(TargetKind.ROOM, "lobby", "\n"),
        Routed(TargetKind.ROOM, "lobby", "a b c 1 2"),  # spaces in the payload do not confuse the header
    ],
)
def test_round_trip(routed: Routed) -> None:
    data = routed.serialize()
    assert isinstance(data, bytes)
    assert Routed.parse(data) == routed


def test_wire_format() -> None:
    assert Routed(TargetKind.ROOM, "lobby", '{"a":1}', 7, "p1").serialize() == b'room lobby 7 p1\n{"a":1}'
    assert Routed(TargetKind.USERS, "1,2", "x").serialize() == b"users 1,2 0 \nx"


@given(
    st.sampled_from(list(TargetKind)),
    names,
    st.text(),
    st.integers(0, 2**63),
    names | st.just(""),
)
@settings(max_examples=200)
def test_round_trip_property(kind: TargetKind, name: str, payload: str, seq: int, origin: str) -> None:
    routed = Routed(kind, name, payload, seq, origin)
    assert Routed.parse(routed.serialize()) == routed


def test_parse_of_unknown_kind_raises() -> None:
    with pytest.raises(ValueError):
        Routed.parse(b"planet mars 0 \n{}")


async def test_publish_before_start_raises() -> None:
    broker = InMemoryBroker()
    with pytest.raises(RuntimeError, match="start"):
        await broker.publish(Routed(TargetKind.ROOM, "r", "{}"))
    assert broker.published == 0


async def test_delivers_in_order() -> None:
    broker = InMemoryBroker()
    got: list[Routed] = []
    await broker.start(got.append)
    sent = [Routed(TargetKind.ROOM, "r", f'{{"n":{i}}}', i) for i in range(100)]
    for message in sent:
        await broker.publish(message)
        assert got[-1] is message  # delivered at once, before publish returns
    assert got == sent
    assert broker.published == 100


async def test_publish_after_close_raises() -> None:
    broker = InMemoryBroker()
    got: list[Routed] = []
    await broker.start(got.append)
    await broker.publish(Routed(TargetKind.TOPIC, "presence", "{}"))
    await broker.close()
    with pytest.raises(RuntimeError):
        await broker.publish(Routed(TargetKind.TOPIC, "presence", "{}"))
    assert len(got) == 1
