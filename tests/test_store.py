"""Tests for labserver.store: schema, seq allocation, atomic batches, social counters,
and AsyncStore's group commit."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from labserver.store import (
    SCHEMA_VERSION,
    AsyncStore,
    NewMessage,
    NotFound,
    Store,
    StoredMessage,
    StoreError,
    User,
    UsernameTaken,
)

from .conftest import until


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "lab.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


def msgs(room: str, sender_id: int, *texts: str) -> list[NewMessage]:
    return [NewMessage(room, sender_id, text, 100.0 + i) for i, text in enumerate(texts)]


class CountingStore(Store):
    """Records the size of every append_messages batch, i.e. every commit."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def append_messages(self, items: Sequence[NewMessage]) -> list[StoredMessage]:
        self.batches.append(len(items))
        return super().append_messages(items)


# --- schema and reopening -------------------------------------------------------------


def test_schema_and_pragmas(store: Store, db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    try:
        tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert {"users", "rooms", "messages", "posts", "likes", "comments", "notifications"} <= tables
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    finally:
        raw.close()
    # The rest are per-connection settings, so ask the store's own connection.
    conn = store._db
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_each_database_has_its_own_generation_kept_across_opens(tmp_path: Path) -> None:
    with Store(tmp_path / "a.sqlite3") as a, Store(tmp_path / "b.sqlite3") as b:
        first, other = a.generation(), b.generation()
    assert len(first) == 16 and first != other
    with Store(tmp_path / "a.sqlite3") as again:
        assert again.generation() == first


def test_reopen_keeps_data(db_path: Path) -> None:
    with Store(db_path) as s:
        alice = s.create_user("alice", "hash-a", 1.0)
        s.append_messages(msgs("lobby", alice.id, "hi", "there"))
        post = s.create_post(alice.id, "hello", "cat.png", 2.0)
        s.like(post.id, alice.id, 3.0)
    with Store(db_path) as s:
        assert s.user_by_id(alice.id) == alice
        assert [m.text for m in s.messages_after("lobby", 0, 10)] == ["hi", "there"]
        assert s.post(post.id) == post.__class__(post.id, alice.id, "alice", "hello", "cat.png", 2.0, 1, 0)


def test_unknown_schema_version_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA user_version = 4")
    raw.close()
    with pytest.raises(StoreError, match="schema version 4"):
        Store(db_path)


# --- users ------------------------------------------------------------------------------


def test_duplicate_username_is_case_insensitive(store: Store) -> None:
    alice = store.create_user("Alice", "h1", 1.0)
    with pytest.raises(UsernameTaken) as info:
        store.create_user("aLICE", "h2", 2.0)
    assert info.value.username == "aLICE"
    assert isinstance(info.value, StoreError)
    assert store.user_by_name("ALICE") == alice
    assert store.users() == [alice]


def test_users_lookup_and_token_cutoff(store: Store) -> None:
    a = store.create_user("a", "ha", 1.0)
    b = store.create_user("b", "hb", 2.0)
    assert store.users() == [a, b]
    assert store.user_by_id(b.id) == b
    assert store.user_by_id(999) is None
    assert store.user_by_name("nobody") is None
    store.set_tokens_valid_after(a.id, 50.0)
    assert store.user_by_id(a.id).tokens_valid_after == 50.0  # type: ignore[union-attr]
    assert store.user_by_id(b.id).tokens_valid_after == 0.0  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        store.set_tokens_valid_after(999, 1.0)


# --- chat seqs ---------------------------------------------------------------------------


def test_seq_gapless_per_room_and_in_input_order(store: Store) -> None:
    u = store.create_user("u", "h", 1.0)
    batch = [NewMessage(room, u.id, f"{room}{i}", float(i)) for i, room in enumerate("abaab")]
    stored = store.append_messages(batch)
    assert [(m.room, m.seq, m.text) for m in stored] == [
        ("a", 1, "a0"),
        ("b", 1, "b1"),
        ("a", 2, "a2"),
        ("a", 3, "a3"),
        ("b", 2, "b4"),
    ]
    assert all(m.sender_name == "u" for m in stored)
    stored = store.append_messages(msgs("b", u.id, "x"))
    assert stored[0].seq == 3
    assert store.last_seq("a") == 3
    assert store.last_seq("nowhere") == 0
    assert store.last_seqs() == {"a": 3, "b": 3}
    assert store.append_messages([]) == []


def test_seq_continues_after_reopen_and_is_never_reused(db_path: Path) -> None:
    with Store(db_path) as s:
        u = s.create_user("u", "h", 1.0)
        s.append_messages(msgs("lobby", u.id, "1", "2", "3"))
    # Even with the history gone, seq 1..3 must not be handed out again.
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("DELETE FROM messages")
    raw.close()
    with Store(db_path) as s:
        assert s.last_seq("lobby") == 3
        assert [m.seq for m in s.append_messages(msgs("lobby", u.id, "4", "5"))] == [4, 5]


def test_failed_batch_stores_nothing(store: Store) -> None:
    u = store.create_user("u", "h", 1.0)
    store.append_messages(msgs("lobby", u.id, "before"))
    bad = [
        NewMessage("lobby", u.id, "ok-1", 1.0),
        NewMessage("fresh", u.id, "ok-2", 1.0),
        NewMessage("lobby", 999, "unknown sender", 1.0),  # violates the users foreign key
        NewMessage("lobby", u.id, "ok-3", 1.0),
    ]
    with pytest.raises(sqlite3.IntegrityError):
        store.append_messages(bad)
    assert store.last_seqs() == {"lobby": 1}
    assert [m.text for m in store.messages_after("lobby", 0, 100)] == ["before"]
    assert store.messages_after("fresh", 0, 100) == []
    # The failed batch used up no seqs, and the connection is usable again.
    assert store.append_messages(msgs("lobby", u.id, "after"))[0].seq == 2


def test_messages_after_and_between(store: Store) -> None:
    u = store.create_user("u", "h", 1.0)
    store.append_messages(msgs("lobby", u.id, *(f"m{i}" for i in range(1, 11))))
    store.append_messages(msgs("other", u.id, "elsewhere"))
    assert [m.seq for m in store.messages_after("lobby", 0, 3)] == [1, 2, 3]
    assert [m.seq for m in store.messages_after("lobby", 7, 100)] == [8, 9, 10]
    assert store.messages_after("lobby", 10, 100) == []
    assert [m.seq for m in store.messages_between("lobby", 4, 6)] == [5, 6]
    assert [m.text for m in store.messages_after("other", 0, 100)] == ["elsewhere"]


def test_a_dm_room_is_just_a_room_to_the_store(store: Store) -> None:
    u = store.create_user("u", "h", 1.0)
    chat, dm = store.append_messages([NewMessage("lobby", u.id, "hi", 5.0), NewMessage("dm:1:2", u.id, "psst", 6.0)])
    assert (chat.room, chat.seq, chat.sender_name) == ("lobby", 1, "u")
    assert (dm.room, dm.seq) == ("dm:1:2", 1)  # its own numbering; messages.message_of makes it a "dm"


# --- posts, likes, comments, notifications -------------------------------------------


def test_likes_are_idempotent_and_counted(store: Store) -> None:
    a = store.create_user("a", "h", 1.0)
    b = store.create_user("b", "h", 1.0)
    post = store.create_post(a.id, "look", None, 1.0)
    assert post.likes == 0

    post1, added = store.like(post.id, b.id, 2.0)
    assert (post1.likes, added) == (1, True)
    post1, added = store.like(post.id, b.id, 3.0)
    assert (post1.likes, added) == (1, False)
    post1, added = store.like(post.id, a.id, 4.0)
    assert (post1.likes, added) == (2, True)

    post1, removed = store.unlike(post.id, b.id)
    assert (post1.likes, removed) == (1, True)
    post1, removed = store.unlike(post.id, b.id)
    assert (post1.likes, removed) == (1, False)
    assert store.post(post.id).likes == 1  # type: ignore[union-attr]

    with pytest.raises(NotFound):
        store.like(999, a.id, 5.0)
    with pytest.raises(NotFound):
        store.unlike(999, a.id)


def test_comments_are_counted(store: Store) -> None:
    a = store.create_user("a", "h", 1.0)
    b = store.create_user("b", "h", 1.0)
    post = store.create_post(a.id, "look", None, 1.0)
    first, post1 = store.add_comment(post.id, b.id, "nice", 2.0)
    assert post1.comments == 1
    second, post1 = store.add_comment(post.id, a.id, "thanks", 3.0)
    assert post1.comments == 2
    assert store.post(post.id).comments == 2  # type: ignore[union-attr]
    assert store.comments(post.id) == [first, second]
    assert (first.post_id, first.author_name, first.text, first.created_at) == (post.id, "b", "nice", 2.0)
    with pytest.raises(NotFound):
        store.add_comment(999, a.id, "into the void", 4.0)
    assert store.comments(999) == []


def test_posts_newest_first_with_paging(store: Store) -> None:
    a = store.create_user("a", "h", 1.0)
    ids = [store.create_post(a.id, f"p{i}", None, float(i)).id for i in range(5)]
    assert [p.id for p in store.posts()] == ids[::-1]
    page = store.posts(limit=2)
    assert [p.id for p in page] == [ids[4], ids[3]]
    assert [p.id for p in store.posts(limit=2, before=page[-1].id)] == [ids[2], ids[1]]
    assert store.post(999) is None
    newest = store.posts()[0]
    assert (newest.author_name, newest.text, newest.image, newest.likes, newest.comments) == ("a", "p4", None, 0, 0)


def test_notifications_newest_first(store: Store) -> None:
    a = store.create_user("a", "h", 1.0)
    b = store.create_user("b", "h", 1.0)
    post = store.create_post(a.id, "look", None, 1.0)
    n1 = store.add_notification(a.id, "like", b.id, post.id, "b liked your post", 2.0)
    n2 = store.add_notification(a.id, "comment", b.id, post.id, "b commented", 3.0)
    n3 = store.add_notification(a.id, "follow", b.id, None, "b says hi", 4.0)
    store.add_notification(b.id, "like", a.id, None, "for b only", 5.0)
    assert store.notifications(a.id) == [n3, n2, n1]
    assert store.notifications(a.id, limit=2) == [n3, n2]
    assert (n1.kind, n1.actor_name, n1.post_id, n1.text, n1.created_at) == (
        "like",
        "b",
        post.id,
        "b liked your post",
        2.0,
    )
    assert n3.post_id is None


# --- AsyncStore ----------------------------------------------------------------------------


async def test_group_commit_keeps_start_order(db_path: Path) -> None:
    store = CountingStore(db_path)
    db = AsyncStore(store)
    user = await db.create_user("u", "h", 1.0)
    results = await asyncio.gather(
        *(db.append_message(NewMessage("lobby", user.id, str(i), float(i))) for i in range(200))
    )
    assert [(m.seq, m.text) for m in results] == [(i + 1, str(i)) for i in range(200)]
    assert sum(store.batches) == 200
    assert len(store.batches) <= 5, store.batches  # group commit, not one commit per message
    assert await db.last_seq("lobby") == 200
    await db.close()


async def test_callers_resume_in_seq_order(db_path: Path) -> None:
    db = AsyncStore(Store(db_path))
    user = await db.create_user("u", "h", 1.0)
    resumed: list[int] = []

    async def send(i: int) -> None:
        message = await db.append_message(NewMessage("lobby", user.id, str(i), 0.0))
        resumed.append(message.seq)

    await asyncio.gather(*(send(i) for i in range(50)))
    assert resumed == list(range(1, 51))
    await db.close()


async def test_batches_are_capped(db_path: Path) -> None:
    store = CountingStore(db_path)
    db = AsyncStore(store)
    user = await db.create_user("u", "h", 1.0)
    results = await asyncio.gather(*(db.append_message(NewMessage("lobby", user.id, "x", 0.0)) for i in range(1100)))
    assert [m.seq for m in results] == list(range(1, 1101))
    assert store.batches == [512, 512, 76]
    await db.close()


async def test_callers_arriving_during_a_commit_share_the_next_one(db_path: Path) -> None:
    entered, gate = threading.Event(), threading.Event()

    class SlowStore(CountingStore):
        def append_messages(self, items: Sequence[NewMessage]) -> list[StoredMessage]:
            if not self.batches:
                entered.set()
                gate.wait(5)
            return super().append_messages(items)

    store = SlowStore(db_path)
    db = AsyncStore(store)
    user = await db.create_user("u", "h", 1.0)
    first = asyncio.create_task(db.append_message(NewMessage("lobby", user.id, "first", 0.0)))
    assert await asyncio.to_thread(entered.wait, 5)  # the first commit is now in flight
    rest = [asyncio.create_task(db.append_message(NewMessage("lobby", user.id, "x", 0.0))) for _ in range(50)]
    await until(lambda: len(db._pending) == 50, what="the 50 appends queued behind the commit")
    gate.set()
    assert (await first).seq == 1
    assert [(await t).seq for t in rest] == list(range(2, 52))
    assert store.batches == [1, 50]
    await db.close()


async def test_one_bad_message_fails_only_its_own_caller(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    db = AsyncStore(Store(db_path))
    user = await db.create_user("u", "h", 1.0)
    results = await asyncio.gather(
        db.append_message(NewMessage("lobby", user.id, "ok", 0.0)),
        db.append_message(NewMessage("lobby", 999, "unknown sender", 0.0)),
        db.append_message(NewMessage("lobby", user.id, "ok too", 0.0)),
        return_exceptions=True,
    )
    # The batch failed as a whole, then was retried one commit each: only the culprit fails,
    # and the others keep their order and gapless seqs.
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert [(r.seq, r.text) for r in (results[0], results[2])] == [(1, "ok"), (2, "ok too")]  # type: ignore[union-attr]
    assert await db.last_seq("lobby") == 2
    # The flusher survived the failure, and goes back to group commits.
    assert (await db.append_message(NewMessage("lobby", user.id, "later", 0.0))).seq == 3
    await db.close()
    gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no "never retrieved"


async def test_cancelled_caller_is_dropped_before_its_batch(db_path: Path) -> None:
    db = AsyncStore(Store(db_path))
    user = await db.create_user("u", "h", 1.0)
    tasks = [asyncio.create_task(db.append_message(NewMessage("lobby", user.id, t, 0.0))) for t in "abc"]
    await asyncio.sleep(0)  # all three are queued; the flusher has not run yet
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert [(m.seq, m.text) for m in (done[0], done[2])] == [(1, "a"), (2, "c")]  # type: ignore[union-attr]
    await db.close()


async def test_close_drains_pending_appends(db_path: Path) -> None:
    db = AsyncStore(Store(db_path))
    user = await db.create_user("u", "h", 1.0)
    tasks = [asyncio.create_task(db.append_message(NewMessage("lobby", user.id, str(i), 0.0))) for i in range(50)]
    await asyncio.sleep(0)  # let them queue up
    await db.close()
    assert [t.result().seq for t in tasks] == list(range(1, 51))
    with pytest.raises(StoreError):
        await db.append_message(NewMessage("lobby", user.id, "too late", 0.0))
    with pytest.raises(StoreError):
        await db.last_seq("lobby")
    await db.close()  # idempotent
    with Store(db_path) as s:
        assert s.last_seq("lobby") == 50


async def test_every_call_runs_on_the_one_db_thread(db_path: Path) -> None:
    threads: set[str] = set()

    class ThreadRecordingStore(Store):
        def user_by_id(self, user_id: int) -> User | None:
            threads.add(threading.current_thread().name)
            return super().user_by_id(user_id)

        def users(self) -> list[User]:
            threads.add(threading.current_thread().name)
            return super().users()

    db = AsyncStore(ThreadRecordingStore(db_path))
    user = await db.create_user("u", "h", 1.0)
    assert await db.user_by_id(user.id) == user
    assert await db.users() == [user]
    assert len(threads) == 1 and next(iter(threads)).startswith("labserver-db")
    await db.close()


# --- the write-behind (the lab's persist_after_broadcast switch) ------------------------------


async def test_write_behind_returns_before_the_disk_and_reads_see_it(db_path: Path) -> None:
    db = AsyncStore(Store(db_path), write_behind_interval=3600)  # never on its own in this test
    user = await db.create_user("u", "h", 1.0)
    await db.append_message(NewMessage("lobby", user.id, "durable", 1.0))
    later = [await db.append_message_later(NewMessage("lobby", user.id, f"later{i}", 2.0), "u") for i in range(3)]
    assert [m.seq for m in later] == [2, 3, 4] and later[0].sender_name == "u"
    assert db.unwritten == 3
    with Store(db_path) as other:  # what a SIGKILL now would leave on disk
        assert [m.text for m in other.messages_after("lobby", 0, 10)] == ["durable"]
    # Every read of the server sees them all the same, once each and in order.
    assert [m.seq for m in await db.messages_after("lobby", 0, 10)] == [1, 2, 3, 4]
    assert [m.seq for m in await db.messages_after("lobby", 1, 2)] == [2, 3]
    assert [m.seq for m in await db.messages_between("lobby", 2, 4)] == [3, 4]
    assert await db.last_seq("lobby") == 4
    await db.close()  # a graceful stop writes them
    with Store(db_path) as s:
        assert [m.text for m in s.messages_after("lobby", 0, 10)] == ["durable", "later0", "later1", "later2"]
        assert s.last_seq("lobby") == 4


async def test_write_behind_commits_on_its_timer(db_path: Path) -> None:
    db = AsyncStore(Store(db_path), write_behind_interval=0.01)
    user = await db.create_user("u", "h", 1.0)
    await db.append_message_later(NewMessage("lobby", user.id, "soon", 1.0), "u")
    await until(lambda: db.unwritten == 0, what="the write-behind commit")
    with Store(db_path) as other:
        assert other.last_seq("lobby") == 1
    await db.close()


async def test_both_orders_mixed_keep_seqs_gapless_and_unique(db_path: Path) -> None:
    """Switching the order back and forth under load: every seq is handed out once, none skipped."""
    db = AsyncStore(Store(db_path), write_behind_interval=0.005)
    user = await db.create_user("u", "h", 1.0)
    await db.last_seqs()  # as the lab does at start-up

    async def one(i: int) -> StoredMessage:
        new = NewMessage(f"room{i % 3}", user.id, str(i), float(i))
        if i % 7 < 3:
            return await db.append_message_later(new, "u")
        return await db.append_message(new)

    results = await asyncio.gather(*(one(i) for i in range(300)))
    for room in ("room0", "room1", "room2"):
        seqs = sorted(m.seq for m in results if m.room == room)
        assert seqs == list(range(1, len(seqs) + 1)), room
    await db.close()
    with Store(db_path) as s:
        for room in ("room0", "room1", "room2"):
            stored = s.messages_after(room, 0, 1000)
            assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
            assert {m.text for m in stored} == {m.text for m in results if m.room == room}


async def test_a_failed_write_behind_is_logged(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = AsyncStore(Store(db_path), write_behind_interval=3600)
    await db.append_message_later(NewMessage("lobby", 999, "from nobody", 1.0), "ghost")  # no such user
    await db.close()
    assert any("write-behind lost 1 acknowledged message(s)" in r.getMessage() for r in caplog.records)
    with Store(db_path) as s:
        assert s.messages_after("lobby", 0, 10) == []
