"""Coalesced reads of labserver.store.AsyncStore: the user and history reads asked for in one
loop turn reach the database thread as one job, and each caller still gets what it asked for,
never older than an uncoalesced read would have seen (a logout's revocation above all)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labserver.store import AsyncStore, NewMessage, Store, StoreError, User


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "lab.sqlite3") as s:
        yield s


class Counting:
    """Counts the calls of some Store methods (made on the database thread)."""

    def __init__(self, store: Store, *names: str) -> None:
        self.calls: dict[str, int] = dict.fromkeys(names, 0)
        for name in names:
            method = getattr(store, name)

            def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
                self.calls[_name] += 1
                return _method(*args)

            setattr(store, name, counted)


async def test_a_crowd_s_user_reads_are_one_query_and_each_gets_its_own_user(store: Store) -> None:
    ann = store.create_user("ann", "h", 1.0)
    bob = store.create_user("bob", "h", 2.0)
    counting = Counting(store, "users_by_ids", "user_by_id")
    db = AsyncStore(store)
    try:
        asked = [ann.id, bob.id, ann.id, 999] * 50  # 200 sockets, two users and a stranger
        found = await asyncio.gather(*(db.user_by_id(user_id) for user_id in asked))
        assert found == [ann, bob, ann, None] * 50
        assert counting.calls == {"users_by_ids": 1, "user_by_id": 0}  # one read for the whole turn
        assert await db.user_by_id(bob.id) == bob  # the next turn: a read of its own
        assert counting.calls["users_by_ids"] == 2
    finally:
        await db.close()


async def test_a_revocation_asked_for_earlier_in_the_turn_is_always_seen(store: Store) -> None:
    ann = store.create_user("ann", "h", 1.0)
    db = AsyncStore(store)
    try:
        revoke = asyncio.ensure_future(db.set_tokens_valid_after(ann.id, 50.0))
        await asyncio.sleep(0)  # the revocation is queued first, as a logout's is
        user = await db.user_by_id(ann.id)
        await revoke
        assert user is not None and user.tokens_valid_after == 50.0
    finally:
        await db.close()


async def test_identical_history_reads_share_one_query_and_each_gets_its_own_list(store: Store) -> None:
    ann = store.create_user("ann", "h", 1.0)
    store.append_messages([NewMessage("lobby", ann.id, f"m{n}", 10.0 + n) for n in range(5)])
    counting = Counting(store, "messages_after")
    db = AsyncStore(store)
    try:
        reads = [db.messages_after("lobby", 2, 100) for _ in range(100)] + [db.messages_after("lobby", 0, 2)]
        *storm, first_two = await asyncio.gather(*reads)
        assert [m.seq for m in storm[0]] == [3, 4, 5] and all(rows == storm[0] for rows in storm)
        assert [m.seq for m in first_two] == [1, 2]
        assert counting.calls["messages_after"] == 2  # one per distinct read, not one per caller
        storm[0].clear()  # a caller may keep or change its list: the others' are their own
        assert [m.seq for m in storm[1]] == [3, 4, 5]
    finally:
        await db.close()


async def test_a_cancelled_reader_does_not_disturb_the_others(store: Store) -> None:
    ann = store.create_user("ann", "h", 1.0)
    db = AsyncStore(store)
    try:
        gone = asyncio.ensure_future(db.user_by_id(ann.id))
        stays = asyncio.ensure_future(db.user_by_id(ann.id))
        await asyncio.sleep(0)
        gone.cancel()
        assert await stays == ann
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        await db.close()


async def test_reads_asked_for_before_a_close_are_answered_and_later_ones_refused(store: Store) -> None:
    ann = store.create_user("ann", "h", 1.0)
    db = AsyncStore(store)
    pending = asyncio.ensure_future(db.user_by_id(ann.id))
    await asyncio.sleep(0)  # asked for; the turn's reads are not sent yet
    await db.close()
    assert await asyncio.wait_for(pending, 5) == ann
    with pytest.raises(StoreError, match="closed"):
        await db.user_by_id(ann.id)


def test_users_by_ids_reads_more_ids_than_one_statement_may_name(store: Store) -> None:
    users = [store.create_user(f"u{n}", "h", float(n)) for n in range(1200)]
    found: dict[int, User] = store.users_by_ids([u.id for u in users] + [10_000])
    assert found == {u.id: u for u in users}
