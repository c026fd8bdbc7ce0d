"""``Crowd``: many simulated users in one notebook kernel.

::

    crowd = Crowd(lab, rooms=("general",), chat_rate=0.2)
    await crowd.grow(200, progress=lambda done, total: ...)
    crowd.pause(); crowd.resume()
    crowd.drop(5)          # five network failures; they reconnect by themselves
    await crowd.shrink(150)
    await crowd.stop()

How its users reconnect is :attr:`Crowd.backoff` (``backoff(attempt) -> seconds``;
default: exponential backoff with full jitter), and :meth:`Crowd.timeline` lists what
happened to their connections (lost, each reconnection attempt, reconnected), so a
lesson can plot a thundering herd against a spread-out crowd.

Every simulated user is a :class:`~labserver.course.client.LabClient` (one reader
task each, which also reconnects it). Their *activity* comes from a single
scheduler task that ticks every 0.1 s and, for each connected user and each kind
of activity, acts with probability ``rate * 0.1``: a chat (sent without waiting
for its ack), a typing indicator, or a like over REST. One task for a thousand
users keeps the kernel responsive, and one seeded random generator makes a run
repeatable.

Mind the fan-out: a message to a room of N bots is received, and parsed, N times
in this kernel. 500 bots chatting at 0.1/s in one room are 50 chats/s sent but
25,000 messages/s received.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any, Self

import aiohttp

from ..envelope import ROOM_NAME
from .client import LabClient, LabError, LifecycleEvent, reconnect_delay
from .lab import LabLike
from .rest_client import DEFAULT_PASSWORD, Account

__all__ = ["MAX_SOCKET_RATE", "Crowd"]

TICK = 0.1  # seconds between scheduler ticks
MAX_SOCKET_RATE = 10.0  # chat + typing per user per second: half the server's default limit (20/s)
MAX_LIKE_RATE = 10.0
CONNECT_CHUNK = 100  # WebSocket handshakes in flight at once while growing
CLIENT_BUFFER = 20  # a bot's wait_for() look-back: small, there may be a thousand of them
LIKES_IN_FLIGHT = 50  # concurrent like requests; more are skipped, not queued
SEED_POSTS = 3
PROGRESS_INTERVAL = 0.1  # seconds between progress() calls while growing
PREFIX = re.compile(r"[A-Za-z0-9_]{1,28}")  # + 4 digits: a valid username (3-32 characters)

WORDS = (  # a sentence reads better than 46 quoted words
    "hello everyone anyone seen the new lesson websockets are fun ping pong frames "
    "latency matters today I think we should try again later that works nice "
    "reconnect resume backoff jitter server client room chat typing like post "
    "really quick question about heartbeats and close codes thanks"
).split()


def sentence(rng: random.Random) -> str:
    """A short random chat line."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
    return " ".join(words).capitalize() + rng.choice(".!?")


def check_rates(chat_rate: float, typing_rate: float, like_rate: float) -> None:
    """Raise ValueError unless the rates (per user per second) are possible and polite."""
    for name, rate in (("chat_rate", chat_rate), ("typing_rate", typing_rate), ("like_rate", like_rate)):
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not math.isfinite(rate) or rate < 0:
            raise ValueError(f"{name} must be a number >= 0 (per user per second), got {rate!r}")
    if chat_rate + typing_rate > MAX_SOCKET_RATE:
        raise ValueError(
            f"chat_rate + typing_rate is {chat_rate + typing_rate:g} messages/s per user; keep it at most "
            f"{MAX_SOCKET_RATE:g}, well under the server's per-socket rate limit (20/s by default)"
        )
    if like_rate > MAX_LIKE_RATE:
        raise ValueError(f"like_rate must be at most {MAX_LIKE_RATE:g} per user per second, got {like_rate:g}")


class _Throttled:
    """Calls ``progress(done, total)`` at the start, at the end, and at most every 0.1 s between:
    a widget redrawn a thousand times would slow the kernel down more than the work itself."""

    def __init__(self, progress: Callable[[int, int], Any] | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.last = -math.inf
        self(0)

    def __call__(self, done: int) -> None:
        if self.progress is None:
            return
        now = asyncio.get_running_loop().time()
        if done in (0, self.total) or now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            self.progress(done, self.total)


class Crowd:
    """A crowd of simulated users named ``{prefix}0000``, ``{prefix}0001``...

    Rates are per user per second and may be changed while the crowd runs
    (``crowd.chat_rate = 1``). ``sent`` counts what the crowd sent by kind;
    ``errors`` keeps the last 50 failures of its background work. ``backoff``
    (``attempt -> seconds``, None for the client's default, full jitter) is how every
    user waits before reconnecting; it too may be changed while the crowd runs.
    """

    def __init__(
        self,
        lab: LabLike,
        *,
        prefix: str = "bot",
        rooms: Iterable[str] = ("general",),
        chat_rate: float = 0.0,
        typing_rate: float = 0.0,
        like_rate: float = 0.0,
        seed: int = 0,
        signup_concurrency: int = 8,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        if not PREFIX.fullmatch(prefix):
            raise ValueError(f"prefix must be 1-28 letters, digits or '_', got {prefix!r}")
        self.rooms = tuple(rooms)
        if not self.rooms:
            raise ValueError("a crowd needs at least one room")
        for room in self.rooms:
            if not ROOM_NAME.fullmatch(room):
                raise ValueError(f"invalid room name {room!r}: letters, digits, '_', '.', '-' (1-64)")
        if signup_concurrency < 1:
            raise ValueError(f"signup_concurrency must be >= 1, got {signup_concurrency}")
        check_rates(chat_rate, typing_rate, like_rate)
        self.lab = lab
        self.prefix = prefix
        self._backoff = backoff
        self.seed = seed
        self.signup_concurrency = signup_concurrency
        self._chat_rate, self._typing_rate, self._like_rate = float(chat_rate), float(typing_rate), float(like_rate)
        self.sent: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()  # activity not sent (likes over the cap)
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=50)
        self.ticks = 0
        self._rng = random.Random(seed)  # activity
        self._drop_rng = random.Random(f"{seed}/drop")  # drop() must not shift the activity stream
        self._clients: list[LabClient] = []
        self._index: dict[LabClient, int] = {}
        self._taken: set[int] = set()  # indices connected or being connected
        self._accounts: dict[str, Account] = {}
        self._post_ids: list[int] = []
        self._seeding_posts: asyncio.Task[None] | None = None
        self._likes: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._paused = False
        self._stopped = False

    # --- rates ----------------------------------------------------------------------------

    @property
    def chat_rate(self) -> float:
        return self._chat_rate

    @chat_rate.setter
    def chat_rate(self, rate: float) -> None:
        check_rates(rate, self._typing_rate, self._like_rate)
        self._chat_rate = float(rate)

    @property
    def typing_rate(self) -> float:
        return self._typing_rate

    @typing_rate.setter
    def typing_rate(self, rate: float) -> None:
        check_rates(self._chat_rate, rate, self._like_rate)
        self._typing_rate = float(rate)

    @property
    def like_rate(self) -> float:
        return self._like_rate

    @like_rate.setter
    def like_rate(self, rate: float) -> None:
        check_rates(self._chat_rate, self._typing_rate, rate)
        self._like_rate = float(rate)

    @property
    def backoff(self) -> Callable[[int], float] | None:
        """The reconnection policy of every user: ``backoff(attempt) -> seconds`` (None: the default)."""
        return self._backoff

    @backoff.setter
    def backoff(self, policy: Callable[[int], float] | None) -> None:
        if policy is not None and not callable(policy):
            raise ValueError(f"backoff must be a function attempt -> seconds (or None), got {policy!r}")
        self._backoff = policy
        for client in self._clients:
            client.backoff = policy or reconnect_delay

    # --- who is in the crowd --------------------------------------------------------------

    @property
    def clients(self) -> list[LabClient]:
        return list(self._clients)

    @property
    def size(self) -> int:
        return len(self._clients)

    @property
    def connected(self) -> int:
        """How many of the crowd's clients are connected right now."""
        return sum(client.connected for client in self._clients)

    @property
    def paused(self) -> bool:
        return self._paused

    def username(self, index: int) -> str:
        return f"{self.prefix}{index:04d}"

    # --- growing and shrinking ------------------------------------------------------------

    async def grow(self, n: int, progress: Callable[[int, int], Any] | None = None) -> list[LabClient]:
        """Add ``n`` users: sign up (or log in) over HTTP, connect, join the rooms.

        ``progress(done, total)`` is called as users come up (a progress bar's
        update, say). Users that came up stay in the crowd even if others fail;
        then a RuntimeError names the first failure (all are in ``errors``).
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._stopped = False
        self._start_scheduler()
        indices = self._reserve(n)
        signups = asyncio.Semaphore(self.signup_concurrency)
        handshakes = asyncio.Semaphore(CONNECT_CHUNK)
        tasks = [asyncio.create_task(self._bring_up(i, signups, handshakes)) for i in indices]
        added: list[LabClient] = []
        failures: list[BaseException] = []
        report = _Throttled(progress, n)
        try:
            for next_done in asyncio.as_completed(tasks):
                try:
                    added.append(await next_done)
                except Exception as exc:  # one user failing to join must not stop the others
                    failures.append(exc)
                    self._record(exc, "growing")
                report(len(added) + len(failures))
        finally:
            for task in tasks:
                task.cancel()  # only those still running: a failed progress() or a cancelled grow()
            await asyncio.gather(*tasks, return_exceptions=True)
            for index, task in zip(indices, tasks, strict=True):
                if task.cancelled():  # perhaps before it even started: free its name
                    self._taken.discard(index)
            # Keep the crowd in index order: shrink() takes from the end, the scheduler walks it in order.
            self._clients.sort(key=self._index.__getitem__)
        if self._like_rate > 0:
            try:
                await self._seed_posts()
            except Exception as exc:  # likes will try again; the users are up, which is what grow() is for
                self._record(exc, "writing posts to like")
        if failures:
            raise RuntimeError(f"{len(failures)} of {n} users could not join: {failures[0]}") from failures[0]
        return added

    def _reserve(self, n: int) -> list[int]:
        """The n lowest free indices: a crowd that shrank and grows again reuses its accounts."""
        indices: list[int] = []
        i = 0
        while len(indices) < n:
            if i not in self._taken:
                indices.append(i)
            i += 1
        self._taken.update(indices)
        return indices

    async def _bring_up(self, index: int, signups: asyncio.Semaphore, handshakes: asyncio.Semaphore) -> LabClient:
        name = self.username(index)
        try:
            async with signups:
                account = await self._account(name)
            async with handshakes:
                try:
                    client = await LabClient.connect(
                        self.lab, account, name=name, buffer=CLIENT_BUFFER, backoff=self._backoff
                    )
                except LabError as exc:
                    if exc.code != "unauthorized":
                        raise
                    self._accounts.pop(name, None)  # an old token (expired, or another server): log in again
                    async with signups:
                        account = await self._account(name)
                    client = await LabClient.connect(
                        self.lab, account, name=name, buffer=CLIENT_BUFFER, backoff=self._backoff
                    )
                try:
                    for room in self.rooms:
                        await client.join(room)
                except BaseException:
                    await client.close()
                    raise
        except BaseException:
            self._taken.discard(index)
            raise
        self._index[client] = index
        self._clients.append(client)
        return client

    async def shrink(self, n: int) -> int:
        """Close the ``n`` most recently added users cleanly (code 1000); returns how many."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        leaving = self._clients[len(self._clients) - min(n, len(self._clients)) :]
        del self._clients[len(self._clients) - len(leaving) :]
        await asyncio.gather(*(client.close() for client in leaving))
        for client in leaving:
            self._taken.discard(self._index.pop(client))
        return len(leaving)

    # --- HTTP -----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(base_url=self.lab.url, timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def _account(self, username: str) -> Account:
        """Sign ``username`` up, or log in if it exists (the server hashes with scrypt either way)."""
        account = self._accounts.get(username)
        if account is not None:
            return account
        if getattr(self.lab, "student", None) is not None:
            # A class's shared lab (classroom.py): the student's own "<student>.<username>", made with
            # their token, not with the join code (a crowd must not use up the class's accounts).
            account = self._accounts[username] = await asyncio.to_thread(self.lab.account, username)
            return account
        credentials = {"username": username, "password": DEFAULT_PASSWORD}  # so lab.account("bot0001") logs a bot in
        session = self._http()
        code = getattr(self.lab, "join_code", None)  # a class's shared lab (labserver.course.classroom)
        async with session.post("/api/signup", json={**credentials, **({"code": code} if code else {})}) as response:
            status, body = response.status, await response.json(content_type=None)
        if status == 409:
            async with session.post("/api/login", json=credentials) as response:
                status, body = response.status, await response.json(content_type=None)
        if status not in (200, 201):
            raise RuntimeError(f"could not sign up or log in {username!r}: HTTP {status} {body}")
        account = self._accounts[username] = Account(body["token"], body["user"])
        return account

    async def _seed_posts(self) -> None:
        """Find recent posts to like; write a few first if there are none."""
        if self._post_ids or not self._clients:
            return
        session = self._http()
        authors = self._clients[:SEED_POSTS]
        headers = {"Authorization": f"Bearer {authors[0].account.token}"}
        async with session.get("/api/posts", params={"limit": "20"}, headers=headers) as response:
            response.raise_for_status()
            posts = (await response.json())["posts"]
        if not posts:
            for i in range(SEED_POSTS):
                author = authors[i % len(authors)]
                text = f"Post {i + 1} by {author.name}: {sentence(self._rng)}"
                headers = {"Authorization": f"Bearer {author.account.token}"}
                async with session.post("/api/posts", json={"text": text}, headers=headers) as response:
                    response.raise_for_status()
                    posts.append((await response.json())["post"])
        self._post_ids = [int(post["id"]) for post in posts]

    # --- activity -------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop the activity; connections stay open."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def _start_scheduler(self) -> None:
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = asyncio.create_task(self._schedule(), name=f"Crowd {self.prefix} scheduler")

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += TICK
            now = loop.time()
            if next_tick < now - TICK:  # the loop was busy: skip missed ticks rather than burst
                next_tick = now
            await asyncio.sleep(max(0.0, next_tick - now))
            if self._paused:
                continue
            try:
                self._tick()
            except Exception as exc:  # a bug in one tick must not stop the crowd for good
                self._record(exc, "scheduler tick")

    def _tick(self) -> None:
        """One scheduler step: each connected user acts with probability ``rate * TICK`` per kind."""
        self.ticks += 1
        p_chat, p_typing, p_like = self._chat_rate * TICK, self._typing_rate * TICK, self._like_rate * TICK
        if not (p_chat or p_typing or p_like):
            return
        rng, rooms = self._rng, self.rooms
        for client in self._clients:
            # Draw the same numbers whether or not the client is connected: same seed, same run.
            if p_typing and rng.random() < p_typing:
                room = rng.choice(rooms)
                if client.connected:
                    client.send_nowait("typing", room=room, active=True)
                    self.sent["typing"] += 1
            if p_chat and rng.random() < p_chat:
                room, text = rng.choice(rooms), sentence(rng)
                if client.connected:
                    client.send_nowait("chat", room=room, text=text)
                    self.sent["chat"] += 1
            if p_like and rng.random() < p_like:
                draw = rng.random()
                if client.connected:
                    self._like(client, draw)

    def _like(self, client: LabClient, draw: float) -> None:
        if not self._post_ids:
            if self._seeding_posts is None or self._seeding_posts.done():
                self._seeding_posts = self._background(self._seed_posts(), "finding posts to like")
            self.skipped["like"] += 1
            return
        if len(self._likes) >= LIKES_IN_FLIGHT:
            self.skipped["like"] += 1
            return
        post_id = self._post_ids[int(draw * len(self._post_ids))]
        task = self._background(self._post_like(client.account.token, post_id), f"liking post {post_id}")
        self._likes.add(task)
        task.add_done_callback(self._likes.discard)
        self.sent["like"] += 1

    async def _post_like(self, token: str, post_id: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with self._http().post(f"/api/posts/{post_id}/like", headers=headers) as response:
            response.raise_for_status()

    def _background(self, coro: Any, where: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)

        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                self._record(task.exception(), where)  # type: ignore[arg-type]

        task.add_done_callback(done)
        return task

    def _record(self, exc: BaseException, where: str) -> None:
        exc.add_note(f"Crowd {self.prefix}: {where}")
        self.errors.append(exc)

    # --- faults ---------------------------------------------------------------------------

    def drop(self, n: int = 1) -> list[str]:
        """Abort the TCP connection of ``n`` random connected users, as a network failure
        would (no close frame). Returns their socket ids; they reconnect by themselves."""
        candidates = [c for c in self._clients if c.connected and c.ws is not None]
        chosen = self._drop_rng.sample(candidates, min(n, len(candidates)))
        dropped: list[str] = []
        for client in chosen:
            assert client.ws is not None and client.socket_id is not None
            dropped.append(client.socket_id)
            client.ws.transport.abort()
        return dropped

    def timeline(self, since: float = 0.0, kinds: Collection[str] | None = None) -> list[tuple[str, LifecycleEvent]]:
        """What happened to the users' connections from ``since`` on (wall-clock time, as
        :class:`~labserver.course.client.LifecycleEvent`'s ``t``), oldest first, as
        ``(username, event)``; ``kinds`` keeps only those (e.g. ``{"attempt", "reconnected"}``)."""
        events = [
            (client.name, event)
            for client in self._clients
            for event in client.timeline
            if event.t >= since and (kinds is None or event.kind in kinds)
        ]
        events.sort(key=lambda item: item[1].t)
        return events

    # --- stopping -------------------------------------------------------------------------

    async def stop(self) -> None:
        """Close every user (1000), stop the scheduler and the HTTP session. Idempotent;
        ``grow()`` starts the crowd again."""
        self._stopped = True
        tasks = [t for t in (self._scheduler, self._seeding_posts, *self._likes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._scheduler = None
        await self.shrink(len(self._clients))
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        n = len(self._clients)
        users = "1 user" if n == 1 else f"{n} users"
        state = "stopped" if self._stopped else "paused" if self._paused else "active"
        return f"<Crowd {users}, {state}>"
