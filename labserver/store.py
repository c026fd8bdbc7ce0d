"""SQLite persistence for users, chat history, posts and notifications.

:class:`Store` is a small synchronous layer over one :mod:`sqlite3` connection.
It returns frozen dataclasses, never ``sqlite3.Row``, so nothing outside this
module knows about SQL.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so once
:meth:`Store.append_messages` returns, the messages survive a SIGKILL or a power
loss, and they are never reordered behind a later commit. The server acks a chat
message only after that point.

Sequence numbers: every room has its own ``seq``, starting at 1 and growing by
exactly 1 per message with no gaps. The counter lives in ``rooms.last_seq``, not
in ``MAX(messages.seq)``, so a seq is never handed out twice, even if old
history is deleted some day.

:class:`AsyncStore` runs the Store on one dedicated thread for asyncio code and
does *group commit*: chat messages that arrive together share one transaction
(and one fsync), which is what lets a single SQLite file keep up with a busy
room. For the lab's ``persist_after_broadcast`` switch it also has the unsafe
order, on purpose: :meth:`AsyncStore.append_message_later` hands out the seq at
once and leaves the write to a *write-behind* task that commits at most once a
second; until then the message lives only in memory (reads see it), and a SIGKILL
loses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

__all__ = [
    "AsyncStore",
    "Comment",
    "MAX_BATCH",
    "NewMessage",
    "NotFound",
    "Notification",
    "Post",
    "RoomTaken",
    "SCHEMA_VERSION",
    "Store",
    "StoreError",
    "StoredMessage",
    "User",
    "UsernameTaken",
]

SCHEMA_VERSION = 3
MAX_BATCH = 512
"""Most messages :class:`AsyncStore` commits in one transaction."""
WRITE_BEHIND_INTERVAL = 1.0
"""Seconds between two commits of the write-behind (``append_message_later``)."""

log = logging.getLogger("labserver")

T = TypeVar("T")

_MAX_VARIABLES = 500
"""Most ``?`` put in one statement: under the 999 that SQLite builds before 3.32 allow."""
_HistoryKey = tuple[str, int, int]  # the arguments of one messages_after read: room, after, limit
_Answers = tuple[dict[int, "User"], dict[_HistoryKey, list["StoredMessage"]]]  # what one coalesced job reads


class StoreError(Exception):
    """Base of the errors the store raises on purpose."""


class UsernameTaken(StoreError):
    """``create_user`` with a name that exists already (case-insensitively)."""

    def __init__(self, username: str) -> None:
        super().__init__(f"username {username!r} is taken")
        self.username = username


class RoomTaken(StoreError):
    """``create_private_room`` with a name that is private already or has public history."""

    def __init__(self, room: str) -> None:
        super().__init__(f"room {room!r} exists already")
        self.room = room


class NotFound(StoreError):
    """The row an operation refers to does not exist."""

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


# --- records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    password_hash: str
    created_at: float
    tokens_valid_after: float
    """Tokens issued before this instant are rejected ("log out everywhere")."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A chat or DM message to store; the store assigns its ``seq``."""

    room: str
    sender_id: int
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A chat message, or a direct message when ``room`` is a DM room (``dm:<low>:<high>``)."""

    room: str
    seq: int
    sender_id: int
    sender_name: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class Post:
    id: int
    author_id: int
    author_name: str
    text: str
    image: str | None
    created_at: float
    likes: int
    comments: int


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    post_id: int
    author_id: int
    author_name: str
    text: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    user_id: int
    kind: str
    actor_id: int
    actor_name: str
    post_id: int | None
    text: str
    created_at: float


# --- schema -----------------------------------------------------------------------

# Child-key indexes on sender_id / author_id / actor_id are left out on purpose:
# users and posts are never deleted, so SQLite never has to look children up.
_SCHEMA = (
    """CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        tokens_valid_after REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE rooms (
        name TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # Clustered on (room, seq): history reads are one range scan of the table itself.
    """CREATE TABLE messages (
        room TEXT NOT NULL REFERENCES rooms(name),
        seq INTEGER NOT NULL,
        sender_id INTEGER NOT NULL REFERENCES users(id),
        text TEXT NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE posts (
        id INTEGER PRIMARY KEY,
        author_id INTEGER NOT NULL REFERENCES users(id),
        text TEXT NOT NULL,
        image TEXT,
        created_at REAL NOT NULL,
        like_count INTEGER NOT NULL DEFAULT 0,
        comment_count INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE likes (
        post_id INTEGER NOT NULL REFERENCES posts(id),
        user_id INTEGER NOT NULL REFERENCES users(id),
        created_at REAL NOT NULL,
        PRIMARY KEY (post_id, user_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE comments (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts(id),
        author_id INTEGER NOT NULL REFERENCES users(id),
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX comments_by_post ON comments(post_id, id)",
    """CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        kind TEXT NOT NULL,
        actor_id INTEGER NOT NULL REFERENCES users(id),
        post_id INTEGER REFERENCES posts(id),
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX notifications_by_user ON notifications(user_id, id)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Version 2: private rooms. Only the members of a room named here may join, read or post in it.
_SCHEMA_V2 = (
    """CREATE TABLE private_rooms (
        name TEXT PRIMARY KEY,
        owner_id INTEGER NOT NULL REFERENCES users(id),
        created_at REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE room_members (
        room TEXT NOT NULL REFERENCES private_rooms(name),
        user_id INTEGER NOT NULL REFERENCES users(id),
        PRIMARY KEY (room, user_id)
    ) WITHOUT ROWID""",
)

# Version 3: the database's generation, a random value made with it. Tokens carry it (the "gen"
# claim): after a reset (a new database, the signing key kept) ids are handed out again, and
# an old token must not name whoever got its id.
_SCHEMA_V3 = ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",)

# Column order matches the dataclass fields, so rows unpack straight into them.
_USER = "SELECT id, username, password_hash, created_at, tokens_valid_after FROM users"
_MESSAGE = (
    "SELECT m.room, m.seq, m.sender_id, u.username, m.text, m.ts"
    " FROM messages AS m JOIN users AS u ON u.id = m.sender_id"
)
_POST = (
    "SELECT p.id, p.author_id, u.username, p.text, p.image, p.created_at,"
    " p.like_count, p.comment_count FROM posts AS p JOIN users AS u ON u.id = p.author_id"
)
_COMMENT = (
    "SELECT c.id, c.post_id, c.author_id, u.username, c.text, c.created_at"
    " FROM comments AS c JOIN users AS u ON u.id = c.author_id"
)
_NOTIFICATION = (
    "SELECT n.id, n.user_id, n.kind, n.actor_id, u.username, n.post_id, n.text, n.created_at"
    " FROM notifications AS n JOIN users AS u ON u.id = n.actor_id"
)


# --- the synchronous store ----------------------------------------------------------


class Store:
    """One SQLite database file. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if str(path) != ":memory:" and not os.path.exists(path):
            # Created readable by the owner only: it holds password hashes and every DM. SQLite
            # gives its -wal and -shm files the database file's mode, so they are 0600 too.
            with suppress(FileExistsError):  # another process sharing the data dir made it first
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # isolation_level=None: the sqlite3 module never opens transactions behind
        # our back; every write below says BEGIN and COMMIT itself.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            # First: processes sharing the file (--redis) wait for each other's locks, from the
            # journal mode switch and the migration on; every seq is taken under BEGIN IMMEDIATE.
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL also fsyncs the WAL on every commit: an acked message survives power loss.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        with self._tx():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            statements: tuple[str, ...]
            if version == 0:  # a new database (_SCHEMA sets the current version)
                statements = _SCHEMA + _SCHEMA_V2 + _SCHEMA_V3
            else:  # 1 -> 2: add private rooms; 2 -> 3: add the generation; nothing else changes
                statements = {1: _SCHEMA_V2 + _SCHEMA_V3, 2: _SCHEMA_V3}.get(version, ())
                if statements:
                    statements += (f"PRAGMA user_version = {SCHEMA_VERSION}",)
            for statement in statements:
                self._db.execute(statement)
            if statements:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('generation', ?)", (os.urandom(8).hex(),))
            elif version != SCHEMA_VERSION:
                raise StoreError(f"database schema version {version} is not {SCHEMA_VERSION}; wrong labserver version?")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction
        # cannot hit SQLITE_BUSY halfway when it upgrades its lock.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full ...) can leave the transaction open.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _one(self, sql: str, *args: Any) -> Any:
        return self._db.execute(sql, args).fetchone()

    def _insert(self, sql: str, *args: Any) -> int:
        """Run an INSERT into a rowid table and return the new row's id."""
        rowid = self._db.execute(sql, args).lastrowid
        assert rowid is not None  # always set after a successful INSERT
        return rowid

    # --- users -------------------------------------------------------------------------

    def create_user(self, username: str, password_hash: str, now: float) -> User:
        try:
            user_id = self._insert(
                "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                username,
                password_hash,
                now,
            )
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
                raise UsernameTaken(username) from None
            raise
        # tokens_valid_after = 0: no token of this user has been revoked yet.
        return User(user_id, username, password_hash, now, 0.0)

    def user_by_name(self, username: str) -> User | None:
        row = self._one(f"{_USER} WHERE username = ?", username)  # NOCASE: column collation
        return User(*row) if row else None

    def user_by_id(self, user_id: int) -> User | None:
        row = self._one(f"{_USER} WHERE id = ?", user_id)
        return User(*row) if row else None

    def users_by_ids(self, user_ids: Sequence[int]) -> dict[int, User]:
        """The users among ``user_ids`` (ids that name no one are left out), in one read."""
        found: dict[int, User] = {}
        for start in range(0, len(user_ids), _MAX_VARIABLES):
            chunk = user_ids[start : start + _MAX_VARIABLES]
            marks = ",".join("?" * len(chunk))
            found.update((row[0], User(*row)) for row in self._db.execute(f"{_USER} WHERE id IN ({marks})", chunk))
        return found

    def users(self) -> list[User]:
        return [User(*row) for row in self._db.execute(f"{_USER} ORDER BY id")]

    def set_tokens_valid_after(self, user_id: int, ts: float) -> None:
        cursor = self._db.execute("UPDATE users SET tokens_valid_after = ? WHERE id = ?", (ts, user_id))
        if cursor.rowcount == 0:
            raise NotFound("user", user_id)

    # --- chat history ------------------------------------------------------------------

    def append_messages(self, items: Sequence[NewMessage]) -> list[StoredMessage]:
        """Store a batch in ONE transaction and return it, in input order, with seqs.

        All or nothing: if any message fails (an unknown ``sender_id`` raises
        :class:`sqlite3.IntegrityError`), no message of the batch is stored and
        no seq is used up.
        """
        if not items:
            return []
        last: dict[str, int] = {}
        names: dict[int, str] = {}
        stored: list[StoredMessage] = []
        with self._tx():
            for item in items:
                if item.room not in last:
                    row = self._one("SELECT last_seq FROM rooms WHERE name = ?", item.room)
                    if row is None:
                        self._db.execute("INSERT INTO rooms (name, last_seq) VALUES (?, 0)", (item.room,))
                    last[item.room] = row[0] if row else 0
                seq = last[item.room] = last[item.room] + 1
                self._db.execute(
                    "INSERT INTO messages (room, seq, sender_id, text, ts) VALUES (?, ?, ?, ?, ?)",
                    (item.room, seq, item.sender_id, item.text, item.ts),
                )
                if item.sender_id not in names:
                    # The insert passed the foreign key check, so the user exists.
                    names[item.sender_id] = self._one("SELECT username FROM users WHERE id = ?", item.sender_id)[0]
                stored.append(StoredMessage(item.room, seq, item.sender_id, names[item.sender_id], item.text, item.ts))
            self._db.executemany(
                "UPDATE rooms SET last_seq = ? WHERE name = ?", [(seq, room) for room, seq in last.items()]
            )
        return stored

    def insert_messages(self, items: Sequence[StoredMessage]) -> None:
        """Store, in one transaction, messages whose seqs were handed out already (the write-behind).

        Each room's counter becomes the highest seq it has seen, so later :meth:`append_messages`
        continue after them."""
        if not items:
            return
        last: dict[str, int] = {}
        for item in items:
            last[item.room] = max(last.get(item.room, 0), item.seq)
        with self._tx():
            self._db.executemany(
                "INSERT INTO rooms (name, last_seq) VALUES (?, 0) ON CONFLICT DO NOTHING", [(r,) for r in last]
            )
            self._db.executemany(
                "INSERT INTO messages (room, seq, sender_id, text, ts) VALUES (?, ?, ?, ?, ?)",
                [(i.room, i.seq, i.sender_id, i.text, i.ts) for i in items],
            )
            self._db.executemany(
                "UPDATE rooms SET last_seq = MAX(last_seq, ?) WHERE name = ?", [(seq, r) for r, seq in last.items()]
            )

    def messages_after(self, room: str, after: int, limit: int) -> list[StoredMessage]:
        """At most ``limit`` messages with ``seq > after``, oldest first (resume/backfill)."""
        rows = self._db.execute(
            f"{_MESSAGE} WHERE m.room = ? AND m.seq > ? ORDER BY m.seq LIMIT ?", (room, after, limit)
        )
        return [StoredMessage(*row) for row in rows]

    def messages_between(self, room: str, after: int, upto: int) -> list[StoredMessage]:
        """Messages with ``after < seq <= upto``, oldest first (fills a gap a client saw)."""
        rows = self._db.execute(
            f"{_MESSAGE} WHERE m.room = ? AND m.seq > ? AND m.seq <= ? ORDER BY m.seq", (room, after, upto)
        )
        return [StoredMessage(*row) for row in rows]

    def last_seq(self, room: str) -> int:
        row = self._one("SELECT last_seq FROM rooms WHERE name = ?", room)
        return row[0] if row else 0

    def last_seqs(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, last_seq FROM rooms").fetchall())

    # --- private rooms ------------------------------------------------------------------

    def create_private_room(self, name: str, owner_id: int, member_ids: Sequence[int], now: float) -> list[int]:
        """Make ``name`` a private room of its owner and ``member_ids``; return the member ids.

        Raises :class:`RoomTaken` if ``name`` is private already or has (public) history,
        and :class:`NotFound` for an unknown user; then nothing is stored.
        """
        members = sorted({owner_id, *member_ids})
        with self._tx():
            if self._one(
                "SELECT 1 FROM private_rooms WHERE name = ? UNION SELECT 1 FROM rooms WHERE name = ?", name, name
            ):
                raise RoomTaken(name)
            for user_id in members:
                if self._one("SELECT 1 FROM users WHERE id = ?", user_id) is None:
                    raise NotFound("user", user_id)
            self._db.execute(
                "INSERT INTO private_rooms (name, owner_id, created_at) VALUES (?, ?, ?)", (name, owner_id, now)
            )
            self._db.executemany("INSERT INTO room_members (room, user_id) VALUES (?, ?)", [(name, u) for u in members])
        return members

    def generation(self) -> str:
        """This database's generation: random, made with it (schema version 3)."""
        return str(self._one("SELECT value FROM meta WHERE key = 'generation'")[0])

    def private_rooms(self) -> dict[str, frozenset[int]]:
        """Every private room and its member ids."""
        rooms: dict[str, set[int]] = {}
        for room, user_id in self._db.execute("SELECT room, user_id FROM room_members"):
            rooms.setdefault(room, set()).add(user_id)
        return {room: frozenset(members) for room, members in rooms.items()}

    # --- posts, likes, comments --------------------------------------------------------

    def _post_or_raise(self, post_id: int) -> Post:
        row = self._one(f"{_POST} WHERE p.id = ?", post_id)
        if row is None:
            raise NotFound("post", post_id)
        return Post(*row)

    def create_post(self, author_id: int, text: str, image: str | None, now: float) -> Post:
        with self._tx():
            post_id = self._insert(
                "INSERT INTO posts (author_id, text, image, created_at) VALUES (?, ?, ?, ?)",
                author_id,
                text,
                image,
                now,
            )
            return self._post_or_raise(post_id)

    def post(self, post_id: int) -> Post | None:
        row = self._one(f"{_POST} WHERE p.id = ?", post_id)
        return Post(*row) if row else None

    def posts(self, limit: int = 50, before: int | None = None) -> list[Post]:
        """Newest first; pass the last id you got as ``before`` for the next page."""
        # Ordered by id, not created_at: ids follow commit order even if the clock jumps.
        if before is None:
            rows = self._db.execute(f"{_POST} ORDER BY p.id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(f"{_POST} WHERE p.id < ? ORDER BY p.id DESC LIMIT ?", (before, limit))
        return [Post(*row) for row in rows]

    def like(self, post_id: int, user_id: int, now: float) -> tuple[Post, bool]:
        """Like a post; returns the post and whether this call added the like."""
        with self._tx():
            self._post_or_raise(post_id)
            added = (
                self._db.execute(
                    "INSERT INTO likes (post_id, user_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (post_id, user_id, now),
                ).rowcount
                == 1
            )
            if added:
                self._db.execute("UPDATE posts SET like_count = like_count + 1 WHERE id = ?", (post_id,))
            return self._post_or_raise(post_id), added

    def unlike(self, post_id: int, user_id: int) -> tuple[Post, bool]:
        """Remove a like; returns the post and whether there was a like to remove."""
        with self._tx():
            self._post_or_raise(post_id)
            removed = (
                self._db.execute("DELETE FROM likes WHERE post_id = ? AND user_id = ?", (post_id, user_id)).rowcount
                == 1
            )
            if removed:
                self._db.execute("UPDATE posts SET like_count = like_count - 1 WHERE id = ?", (post_id,))
            return self._post_or_raise(post_id), removed

    def add_comment(self, post_id: int, author_id: int, text: str, now: float) -> tuple[Comment, Post]:
        with self._tx():
            self._post_or_raise(post_id)
            comment_id = self._insert(
                "INSERT INTO comments (post_id, author_id, text, created_at) VALUES (?, ?, ?, ?)",
                post_id,
                author_id,
                text,
                now,
            )
            self._db.execute("UPDATE posts SET comment_count = comment_count + 1 WHERE id = ?", (post_id,))
            comment = Comment(*self._one(f"{_COMMENT} WHERE c.id = ?", comment_id))
            return comment, self._post_or_raise(post_id)

    def comments(self, post_id: int) -> list[Comment]:
        """Comments on a post, oldest first ([] for an unknown post)."""
        rows = self._db.execute(f"{_COMMENT} WHERE c.post_id = ? ORDER BY c.id", (post_id,))
        return [Comment(*row) for row in rows]

    # --- notifications -----------------------------------------------------------------

    def add_notification(
        self, user_id: int, kind: str, actor_id: int, post_id: int | None, text: str, now: float
    ) -> Notification:
        with self._tx():
            notification_id = self._insert(
                "INSERT INTO notifications (user_id, kind, actor_id, post_id, text, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                user_id,
                kind,
                actor_id,
                post_id,
                text,
                now,
            )
            return Notification(*self._one(f"{_NOTIFICATION} WHERE n.id = ?", notification_id))

    def notifications(self, user_id: int, limit: int = 50) -> list[Notification]:
        """A user's notifications, newest first."""
        rows = self._db.execute(f"{_NOTIFICATION} WHERE n.user_id = ? ORDER BY n.id DESC LIMIT ?", (user_id, limit))
        return [Notification(*row) for row in rows]


# --- asyncio wrapper ------------------------------------------------------------------


def _settle(
    waiting: Mapping[Any, list[asyncio.Future[Any]]], result_of: Callable[[Any], Any], error: BaseException | None
) -> None:
    """Answer coalesced readers: the futures waiting on each key get ``result_of(key)``, or ``error``."""
    for key, futures in waiting.items():
        for future in futures:
            if future.done():  # its caller was cancelled meanwhile
                continue
            if error is None:
                future.set_result(result_of(key))
            else:
                future.set_exception(error)


class AsyncStore:
    """Runs a :class:`Store` on one dedicated thread, with group commit for chat.

    Every call goes through the same single-worker executor, so the Store is only
    ever used by one thread, and calls run in the order they were made. Each Store
    method the server needs has a typed ``async`` twin here.

    The reads every connection makes (its user, by :meth:`user_by_id`; a resume's history,
    by :meth:`messages_after`) are *coalesced*: those asked for in one turn of the event
    loop go to the thread as one job (one query for all the users; one query for identical
    history reads), at the end of that turn. A crowd connecting at once then costs one
    thread hop per loop turn, not one per socket. Such a read may run after a call made
    later in the same turn, never before one made earlier: it never sees older data than
    an uncoalesced read would (a logout's revocation, committed before, is always seen).
    """

    def __init__(
        self, store: Store, *, max_batch: int = MAX_BATCH, write_behind_interval: float = WRITE_BEHIND_INTERVAL
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labserver-db")
        self._pending: list[tuple[NewMessage, asyncio.Future[StoredMessage]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        # The write-behind: the highest seq handed out per room (known once _seqs_loaded), the
        # messages not yet committed (reads merge them in), those not yet handed to the thread.
        self._write_behind_interval = write_behind_interval
        self._seqs: dict[str, int] = {}
        self._seqs_loaded = False
        self._unwritten: dict[tuple[str, int], StoredMessage] = {}
        self._behind: list[StoredMessage] = []
        self._behind_task: asyncio.Task[None] | None = None
        # Coalesced reads waiting for the end of this loop turn (see the class docstring).
        self._user_reads: dict[int, list[asyncio.Future[User | None]]] = {}
        self._history_reads: dict[_HistoryKey, list[asyncio.Future[list[StoredMessage]]]] = {}
        self._reads_scheduled = False

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the database thread, after every call made before it."""
        if self._closed:
            raise StoreError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # One typed method per Store method the server uses; each runs on the database thread.

    async def create_user(self, username: str, password_hash: str, now: float) -> User:
        return await self._run(self._store.create_user, username, password_hash, now)

    async def user_by_name(self, username: str) -> User | None:
        return await self._run(self._store.user_by_name, username)

    async def user_by_id(self, user_id: int) -> User | None:
        """The user, read with every other user asked for in this loop turn (one query)."""
        future: asyncio.Future[User | None] = self._coalesce()
        self._user_reads.setdefault(user_id, []).append(future)
        return await future

    async def users(self) -> list[User]:
        return await self._run(self._store.users)

    async def set_tokens_valid_after(self, user_id: int, ts: float) -> None:
        await self._run(self._store.set_tokens_valid_after, user_id, ts)

    # History reads also see the write-behind's messages not yet on disk. The snapshot is taken
    # before the read is queued: a message committed meanwhile is in both, and counted once.

    def _unwritten_in(self, room: str, after: int, upto: float) -> list[StoredMessage]:
        return [m for m in self._unwritten.values() if m.room == room and after < m.seq <= upto]

    @staticmethod
    def _merged(rows: list[StoredMessage], extra: list[StoredMessage]) -> list[StoredMessage]:
        if not extra:
            return rows
        return sorted({m.seq: m for m in rows + extra}.values(), key=lambda m: m.seq)

    async def messages_after(self, room: str, after: int, limit: int) -> list[StoredMessage]:
        """Read once for every caller asking the same in this loop turn (a reconnect storm)."""
        extra = self._unwritten_in(room, after, float("inf"))
        future: asyncio.Future[list[StoredMessage]] = self._coalesce()
        self._history_reads.setdefault((room, after, limit), []).append(future)
        return self._merged(await future, extra)[:limit]  # a list of its own: the rows are shared

    def _coalesce(self) -> asyncio.Future[Any]:
        """A future for a coalesced read, which :meth:`_read_coalesced` answers at the end of this loop turn."""
        if self._closed:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        if not self._reads_scheduled:
            self._reads_scheduled = True
            loop.call_soon(self._read_coalesced)  # after every callback already due: the whole turn's reads
        return loop.create_future()

    def _read_coalesced(self) -> None:
        """Hand this turn's reads to the database thread as one job; answer every waiter when it is done."""
        self._reads_scheduled = False
        users, self._user_reads = self._user_reads, {}
        histories, self._history_reads = self._history_reads, {}
        if not users and not histories:  # close() sent them already
            return
        store = self._store

        def read() -> _Answers:  # on the database thread
            return (store.users_by_ids(list(users)) if users else {}), {k: store.messages_after(*k) for k in histories}

        def answer(job: asyncio.Future[_Answers]) -> None:
            error = StoreError("read cancelled") if job.cancelled() else job.exception()
            found, rows = job.result() if error is None else ({}, {})
            _settle(users, found.get, error)
            _settle(histories, rows.get, error)

        asyncio.get_running_loop().run_in_executor(self._executor, read).add_done_callback(answer)

    async def messages_between(self, room: str, after: int, upto: int) -> list[StoredMessage]:
        extra = self._unwritten_in(room, after, upto)
        return self._merged(await self._run(self._store.messages_between, room, after, upto), extra)

    async def last_seq(self, room: str) -> int:
        extra = max((m.seq for m in self._unwritten_in(room, 0, float("inf"))), default=0)
        return max(await self._run(self._store.last_seq, room), extra)

    async def last_seqs(self) -> dict[str, int]:
        """Every room's last seq; this also tells the write-behind where each room is."""
        seqs = await self._run(self._store.last_seqs)
        for room, seq in seqs.items():
            self._seqs[room] = max(self._seqs.get(room, 0), seq)
        self._seqs_loaded = True
        return {**seqs, **{room: seq for room, seq in self._seqs.items() if seq > seqs.get(room, 0)}}

    async def create_private_room(self, name: str, owner_id: int, member_ids: Sequence[int], now: float) -> list[int]:
        return await self._run(self._store.create_private_room, name, owner_id, member_ids, now)

    async def generation(self) -> str:
        return await self._run(self._store.generation)

    async def private_rooms(self) -> dict[str, frozenset[int]]:
        return await self._run(self._store.private_rooms)

    async def create_post(self, author_id: int, text: str, image: str | None, now: float) -> Post:
        return await self._run(self._store.create_post, author_id, text, image, now)

    async def post(self, post_id: int) -> Post | None:
        return await self._run(self._store.post, post_id)

    async def posts(self, limit: int = 50, before: int | None = None) -> list[Post]:
        return await self._run(self._store.posts, limit, before)

    async def like(self, post_id: int, user_id: int, now: float) -> tuple[Post, bool]:
        return await self._run(self._store.like, post_id, user_id, now)

    async def unlike(self, post_id: int, user_id: int) -> tuple[Post, bool]:
        return await self._run(self._store.unlike, post_id, user_id)

    async def add_comment(self, post_id: int, author_id: int, text: str, now: float) -> tuple[Comment, Post]:
        return await self._run(self._store.add_comment, post_id, author_id, text, now)

    async def comments(self, post_id: int) -> list[Comment]:
        return await self._run(self._store.comments, post_id)

    async def add_notification(
        self, user_id: int, kind: str, actor_id: int, post_id: int | None, text: str, now: float
    ) -> Notification:
        return await self._run(self._store.add_notification, user_id, kind, actor_id, post_id, text, now)

    async def notifications(self, user_id: int, limit: int = 50) -> list[Notification]:
        return await self._run(self._store.notifications, user_id, limit)

    async def append_message(self, msg: NewMessage) -> StoredMessage:
        """Store one message, sharing the commit with every message queued meanwhile.

        Returns once the message is durable. A caller cancelled before its batch
        starts is dropped from it; after that, its message is stored anyway.
        """
        if self._closed:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredMessage] = loop.create_future()
        self._pending.append((msg, future))
        if self._flusher is None:
            # The task first runs on the next loop turn, so every caller of this turn
            # is in the batch; a running flusher picks up later callers itself.
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        singly = 0  # after a failed batch: how many messages to retry one commit each
        try:
            while self._pending:
                size = 1 if singly else self._max_batch
                singly = max(0, singly - 1)
                batch = [item for item in self._pending[:size] if not item[1].cancelled()]
                del self._pending[:size]
                if not batch:
                    continue
                # Write-behind messages not yet on disk go first (one thread, FIFO): the store
                # must see their seqs before it numbers these.
                self._write_behind_now()
                try:
                    stored = await loop.run_in_executor(
                        self._executor, self._store.append_messages, [msg for msg, _ in batch]
                    )
                except asyncio.CancelledError:
                    self._cancel_all(batch)
                    raise
                except Exception as exc:
                    if len(batch) > 1:
                        # One bad message must not fail the others it shared a commit with:
                        # retry them one by one, in order, so only the culprit gets the error.
                        self._pending[:0] = batch
                        singly = len(batch)
                    elif not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # Batch order is seq order per room, so callers learn their seqs in order.
                for (_, future), message in zip(batch, stored, strict=True):
                    self._seqs[message.room] = max(self._seqs.get(message.room, 0), message.seq)
                    if not future.done():
                        future.set_result(message)
        except asyncio.CancelledError:
            self._cancel_all(self._pending)
            self._pending.clear()
            raise
        finally:
            self._flusher = None

    @staticmethod
    def _cancel_all(items: list[tuple[NewMessage, asyncio.Future[StoredMessage]]]) -> None:
        for _, future in items:
            future.cancel()

    # --- the write-behind (the unsafe order of the lab's persist_after_broadcast switch) ---------

    async def append_message_later(self, msg: NewMessage, sender_name: str) -> StoredMessage:
        """Number a message and return it at once; it reaches the disk up to a second later.

        Not durable: a SIGKILL before the next write-behind commit loses it, though it was
        returned (and broadcast and acknowledged by the caller). Seqs stay gapless and unique
        alongside :meth:`append_message`: this waits for that one's commits in flight."""
        if self._closed:
            raise StoreError("store is closed")
        if not self._seqs_loaded:
            await self.last_seqs()
        while self._flusher is not None:  # their seqs are not known yet: wait for them
            await asyncio.shield(self._flusher)
        # No await from here on: the seq is handed out and the message queued in one step.
        seq = self._seqs[msg.room] = self._seqs.get(msg.room, 0) + 1
        stored = StoredMessage(msg.room, seq, msg.sender_id, sender_name, msg.text, msg.ts)
        self._unwritten[(msg.room, seq)] = stored
        self._behind.append(stored)
        if self._behind_task is None:
            self._behind_task = asyncio.get_running_loop().create_task(self._write_behind())
        return stored

    async def _write_behind(self) -> None:
        try:
            while self._behind:
                await asyncio.sleep(self._write_behind_interval)
                self._write_behind_now()
        finally:
            self._behind_task = None

    def _write_behind_now(self) -> None:
        """Hand the queued write-behind messages to the database thread (in order, one commit)."""
        rows, self._behind = self._behind, []
        if rows:
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._store.insert_messages, rows)
            future.add_done_callback(partial(self._written, rows))

    def _written(self, rows: list[StoredMessage], future: asyncio.Future[None]) -> None:
        for row in rows:
            self._unwritten.pop((row.room, row.seq), None)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("write-behind lost %d acknowledged message(s): %s", len(rows), exc)

    @property
    def unwritten(self) -> int:
        """Messages handed out by :meth:`append_message_later` and not yet committed."""
        return len(self._unwritten)

    async def close(self) -> None:
        """Refuse new work, wait for queued appends to commit, then close the database."""
        if self._closed:
            return
        self._closed = True
        if self._behind_task is not None:
            self._behind_task.cancel()
        self._write_behind_now()  # a graceful stop loses nothing
        self._read_coalesced()  # reads asked for before the close are answered, not left waiting
        if self._flusher is not None:
            # Shielded: cancelling close() must not cancel commits others wait for.
            await asyncio.shield(self._flusher)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._store.close)
        self._executor.shutdown(wait=True)
