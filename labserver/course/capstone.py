"""Lesson 10's toolkit: a small "live reactions on a post" service the student finishes.

The service is an aiohttp app that runs *inside the notebook's event loop* on a free
loopback port, next to the lab. The lab keeps what it is good at (accounts, JWTs, posts
over REST); the service adds one real-time feature on top: reactions (👍 ❤️ 😂 ...) that
every viewer of a post sees live. The toolkit supplies the skeleton, and the student
writes the three handlers that make it correct::

    async def handle_socket(svc, request): ...          # q1: authenticate, register, read, clean up
    async def on_react(svc, conn, post, emoji, ref): ...  # q2: rate, persist with a seq, fan out, ack
    async def on_view(svc, conn, post, after): ...        # q3: replay what was missed, then live

    async with ReactionsService(lab, handle_socket=..., on_view=..., on_react=...) as svc:
        client = await ReactionClient.connect(svc.ws_url, alice.token)
        await client.view(post_id, after=0)
        await client.react(post_id, "👍")                 # {"type": "ack", "ref": ..., "seq": 1}

What the skeleton does, so that the handlers stay small:

* ``authenticate(request)``: the ``?token=`` is a lab JWT, verified by the lab itself
  (``GET /api/me``), and cached for ``auth_ttl`` seconds: users are the lab's users.
* ``accept(request)``: the WebSocket upgrade, with small socket buffers, so that a reader
  that stops reading fills them after a few KB instead of a few MB (the same thing, sooner).
* ``register`` / ``unregister``: the maps (``conns``; ``viewers``, post id -> set of :class:`Conn`).
* ``dispatch(conn, text)``: parses a message, checks the post exists (lab REST, cached) and
  calls ``on_view`` / ``on_react``; a message that breaks the protocol raises :class:`BadMessage`,
  which ends the connection with 1008.
* :class:`Conn` ``.push(frame)``: never waits. The frame goes to the connection's own writer
  task; a connection whose queue passes ``send_limit`` bytes is dropped as a slow reader.
* ``store``: SQLite, one row per reaction with its per-post ``seq``, written on one thread
  and committed before ``append`` returns.
* ``allow(user_id)``: a per-user token bucket.

:class:`ReactionClient` is a simulated user (the checks' and the crowd's), and
:class:`ReactionsBoard` the live widget. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import itertools
import json
import os
import random
import socket
import sqlite3
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import websockets
from aiohttp import web

__all__ = [
    "REACTIONS",
    "BadMessage",
    "Conn",
    "ReactionClient",
    "ReactionCrowd",
    "ReactionStore",
    "ReactionsBoard",
    "ReactionsService",
    "StuckReader",
    "TokenBucket",
]

REACTIONS = ("👍", "❤️", "😂", "😮", "😢", "🎉")
"""The reactions the service accepts."""

_TOKEN = web.RequestKey("reactions_token", str)  # the token a request authenticated with
SMALL_BUFFER = 4096  # bytes: socket and transport buffers of each connection (see ``accept``)

HandleSocket = Callable[["ReactionsService", web.Request], Awaitable[web.StreamResponse]]
OnView = Callable[["ReactionsService", "Conn", int, int | None], Awaitable[None]]
OnReact = Callable[["ReactionsService", "Conn", int, str, str], Awaitable[None]]


class BadMessage(Exception):
    """A message that breaks the service's protocol: the connection is closed with 1008 and this text."""


# --- storage ------------------------------------------------------------------------------


class ReactionStore:
    """Reactions in SQLite, each with its post's sequence number (1, 2, 3... per post, no gaps).

    Every call runs on one thread, in order, so two appends never take the same seq.
    ``append`` returns once the row is committed (WAL, ``synchronous=NORMAL``: on disk for
    the operating system, which survives the process being killed). ``disk_delay`` adds a
    pause before each commit, like a slow disk (the checks use it to catch an ack sent
    before the write). ``committed(post)`` is the last seq committed, readable from any thread.
    """

    def __init__(self, path: str | Path, *, disk_delay: float = 0.0) -> None:
        self.path = Path(path)
        self.disk_delay = disk_delay
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reactions-store")
        self._db: sqlite3.Connection | None = None
        self._committed: dict[int, int] = {}
        self._lock = threading.Lock()
        self.appends = 0

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS reactions (post INTEGER NOT NULL, seq INTEGER NOT NULL, "
                "user_id INTEGER NOT NULL, username TEXT NOT NULL, emoji TEXT NOT NULL, ts REAL NOT NULL, "
                "PRIMARY KEY (post, seq)) WITHOUT ROWID"
            )
            self._db.commit()
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._open()))

    async def append(self, post: int, user: dict[str, Any], emoji: str) -> dict[str, Any]:
        """Store one reaction; return it, with its seq, once it is committed."""

        def write(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM reactions WHERE post = ?", (post,)).fetchone()
            seq = int(row[0]) + 1
            ts = round(time.time(), 3)
            db.execute(
                "INSERT INTO reactions VALUES (?, ?, ?, ?, ?, ?)",
                (post, seq, int(user["id"]), str(user["username"]), emoji, ts),
            )
            if self.disk_delay:
                time.sleep(self.disk_delay)
            db.commit()
            with self._lock:
                self._committed[post] = seq
                self.appends += 1
            return _record(post, seq, int(user["id"]), str(user["username"]), emoji, ts)

        result: dict[str, Any] = await self._run(write)
        return result

    async def since(self, post: int, after: int | None) -> tuple[list[dict[str, Any]], int]:
        """The reactions of ``post`` with ``seq > after``, oldest first (none when ``after`` is None),
        and the post's last seq, read together."""

        def read(db: sqlite3.Connection) -> tuple[list[dict[str, Any]], int]:
            rows = (
                db.execute(
                    "SELECT post, seq, user_id, username, emoji, ts FROM reactions WHERE post = ? AND seq > ? "
                    "ORDER BY seq",
                    (post, after),
                ).fetchall()
                if after is not None
                else []
            )
            last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM reactions WHERE post = ?", (post,)).fetchone()
            return [_record(*row) for row in rows], int(last[0])

        result: tuple[list[dict[str, Any]], int] = await self._run(read)
        return result

    async def counts(self, post: int) -> dict[str, int]:
        """How many of each reaction ``post`` has."""

        def read(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT emoji, COUNT(*) FROM reactions WHERE post = ? GROUP BY emoji", (post,))
            return {str(emoji): int(n) for emoji, n in rows}

        result: dict[str, int] = await self._run(read)
        return result

    def committed(self, post: int) -> int:
        """The last seq of ``post`` committed to disk (0: none yet)."""
        with self._lock:
            return self._committed.get(post, 0)

    def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._executor.submit(shut).result()
        self._executor.shutdown(wait=True)


def _record(post: int, seq: int, user_id: int, username: str, emoji: str, ts: float) -> dict[str, Any]:
    return {"post": post, "seq": seq, "user": {"id": user_id, "username": username}, "emoji": emoji, "ts": ts}


# --- throttling -----------------------------------------------------------------------------


class TokenBucket:
    """Per-key token buckets: ``rate`` tokens a second, at most ``burst`` saved up. The clock is passed in."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate!r}, burst={burst!r}")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[Any, tuple[float, float]] = {}  # key -> (tokens, when)

    def allow(self, key: Any) -> bool:
        """Take one token for ``key``; False when it has none left."""
        now = self.clock()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def reset(self, rate: float | None = None, burst: float | None = None) -> None:
        """Forget every bucket (and change the rate or burst)."""
        self.rate = self.rate if rate is None else rate
        self.burst = self.burst if burst is None else burst
        self._buckets.clear()


# --- one connection -------------------------------------------------------------------------

_conn_ids = itertools.count(1)


class Conn:
    """One WebSocket connection to the service: its user, the posts it views, and its writer.

    ``push(frame)`` never waits: the frame joins this connection's queue, and the connection's
    own writer task sends the queue in order. A reader too slow to keep its queue under
    ``send_limit`` bytes is dropped (its TCP connection aborted), so it never holds up a
    fan-out, and its memory stays bounded. This is the lab's ``SocketWriter`` in small.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        user: dict[str, Any],
        token: str,
        transport: asyncio.Transport | None,
        send_limit: int,
        on_drop: Callable[[Conn], None],
    ) -> None:
        self.id = f"c{next(_conn_ids)}"
        self.ws = ws
        self.user = user
        self.token = token
        self.posts: set[int] = set()
        self.send_limit = send_limit
        self.dropped = False
        self.closed = False
        self.sent = 0
        self._transport = transport
        self._on_drop = on_drop
        self._queue: deque[str] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._write())

    def __repr__(self) -> str:
        return f"<Conn {self.id} {self.user.get('username')} posts={sorted(self.posts)}>"

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def push(self, frame: str) -> bool:
        """Queue ``frame`` for this connection; False if it is closed or was just dropped as too slow."""
        if self.closed or self.dropped:
            return False
        size = len(frame.encode())
        if self._queued_bytes + size > self.send_limit:
            self.drop()
            return False
        self._queue.append(frame)
        self._queued_bytes += size
        self._wake.set()
        return True

    def drop(self) -> None:
        """Abort the connection as a slow reader: no close frame (its buffers are full anyway)."""
        if self.dropped or self.closed:
            return
        self.dropped = True
        self._queue.clear()
        self._queued_bytes = 0
        if self._transport is not None:
            self._transport.abort()
        self._on_drop(self)

    async def _write(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            frame = self._queue[0]
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):  # the connection is gone: the handler's finally cleans up
                self._queue.clear()
                self._queued_bytes = 0
                return
            if self._queue and self._queue[0] is frame:
                self._queue.popleft()
                self._queued_bytes -= len(frame.encode())
            self.sent += 1

    def close(self) -> None:
        """Stop the writer (``unregister`` calls this)."""
        self.closed = True
        self._queue.clear()
        self._queued_bytes = 0
        self._task.cancel()


# --- the service ----------------------------------------------------------------------------


class LabLike(Protocol):
    @property
    def url(self) -> str: ...


@dataclass
class ServiceStats:
    """What the service did, for the board and the checks."""

    reactions: int = 0
    deliveries: int = 0
    dropped_slow: int = 0
    refused: int = 0
    bad_messages: int = 0
    auth_lab_calls: int = 0
    auth_cache_hits: int = 0
    post_lab_calls: int = 0
    rate_limited: int = 0
    errors: list[str] = field(default_factory=list)


class ReactionsService:
    """The reactions service: the skeleton, running the handlers it is given.

    ``handle_socket(svc, request)`` serves ``GET /reactions``; ``on_view(svc, conn, post, after)``
    and ``on_react(svc, conn, post, emoji, ref)`` are called by :meth:`dispatch`. ``rate`` and
    ``burst`` are the per-user reaction limit (:meth:`allow`); ``send_limit`` the bytes a
    connection may have queued before it is dropped; ``disk_delay`` slows each commit.
    """

    def __init__(
        self,
        lab: LabLike,
        *,
        handle_socket: HandleSocket,
        on_view: OnView,
        on_react: OnReact,
        data_dir: str | Path | None = None,
        rate: float = 5.0,
        burst: float = 10.0,
        send_limit: int = 64 * 1024,
        disk_delay: float = 0.0,
        auth_ttl: float = 60.0,
    ) -> None:
        self.lab = lab
        self.handle_socket = handle_socket
        self.on_view = on_view
        self.on_react = on_react
        self._tmp = None if data_dir is not None else tempfile.TemporaryDirectory(prefix="reactions-")
        self.data_dir = Path(data_dir if data_dir is not None else self._tmp.name)  # type: ignore[union-attr]
        self.store = ReactionStore(self.data_dir / "reactions.sqlite3", disk_delay=disk_delay)
        self.limiter = TokenBucket(rate, burst)
        self.send_limit = send_limit
        self.auth_ttl = auth_ttl
        self.conns: set[Conn] = set()
        self.viewers: dict[int, set[Conn]] = {}
        self.stats = ServiceStats()
        self.port = 0
        self._auth_cache: dict[str, tuple[dict[str, Any], float]] = {}
        self._posts: dict[int, bool] = {}
        self._transports: dict[int, asyncio.Transport] = {}  # id(ws) -> its TCP transport
        self._tokens: dict[int, str] = {}  # id(ws) -> the token it authenticated with
        self._ws_of: dict[int, web.WebSocketResponse] = {}  # id(request) -> its WebSocket, while it runs
        self._every_conn: list[Conn] = []
        self._watchers: list[Callable[[], None]] = []
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    # --- start and stop ---

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/reactions"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> ReactionsService:
        """Listen on a free loopback port, in this event loop."""
        if self._runner is not None:
            return self
        app = web.Application()
        app.router.add_get("/reactions", self._route)
        self._http = aiohttp.ClientSession()
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Close every connection (aborted), stop listening, close the database."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        for transport in list(self._transports.values()):
            transport.abort()
        for conn in self._every_conn:
            conn.close()
        await runner.cleanup()
        if self._http is not None:
            await self._http.close()
        await asyncio.to_thread(self.store.close)
        if self._tmp is not None:
            self._tmp.cleanup()
        self._changed()

    async def __aenter__(self) -> ReactionsService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = f"on {self.ws_url}" if self.running else "stopped"
        return f"<ReactionsService {state}: {len(self.conns)} connections, {self.stats.reactions} reactions>"

    # --- what the handlers use ---

    async def authenticate(self, request: web.Request) -> dict[str, Any] | None:
        """The lab user whose JWT is in ``?token=``, or None. The lab verifies it (``GET /api/me``);
        the answer is cached for ``auth_ttl`` seconds, so a reconnecting user costs the lab nothing."""
        token = request.query.get("token", "")
        if not token:
            return None
        cached = self._auth_cache.get(token)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            self.stats.auth_cache_hits += 1
            request[_TOKEN] = token
            return dict(cached[0])
        self.stats.auth_lab_calls += 1
        assert self._http is not None, "the service is not started"
        async with self._http.get(f"{self.lab.url}/api/me", headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                return None
            user = dict((await response.json())["user"])
        self._auth_cache[token] = (user, now + self.auth_ttl)
        request[_TOKEN] = token
        return user

    async def accept(self, request: web.Request) -> web.WebSocketResponse:
        """Complete the WebSocket upgrade (101), with small buffers (see the module's docstring)."""
        ws = web.WebSocketResponse(writer_limit=1024, max_msg_size=4096, heartbeat=None)
        await ws.prepare(request)
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
            if isinstance(transport, asyncio.Transport):
                transport.set_write_buffer_limits(high=SMALL_BUFFER)
                self._transports[id(ws)] = transport
        self._tokens[id(ws)] = request.get(_TOKEN, "")
        self._ws_of[id(request)] = ws
        return ws

    def register(self, ws: web.WebSocketResponse, user: dict[str, Any]) -> Conn:
        """A new connection of ``user``: added to ``conns``, with its writer started."""
        conn = Conn(
            ws, user, self._tokens.get(id(ws), ""), self._transports.get(id(ws)), self.send_limit, self._dropped
        )
        self.conns.add(conn)
        self._every_conn.append(conn)
        self._changed()
        return conn

    def unregister(self, conn: Conn) -> None:
        """Forget ``conn`` everywhere: ``conns``, every post's viewers; stop its writer."""
        self.conns.discard(conn)
        for post in list(conn.posts):
            self.remove_viewer(conn, post)
        conn.close()
        self._transports.pop(id(conn.ws), None)
        self._tokens.pop(id(conn.ws), None)
        self._changed()

    def add_viewer(self, conn: Conn, post: int) -> None:
        """``conn`` now views ``post``: reactions to it are pushed to ``conn``."""
        self.viewers.setdefault(post, set()).add(conn)
        conn.posts.add(post)
        self._changed()

    def remove_viewer(self, conn: Conn, post: int) -> None:
        watching = self.viewers.get(post)
        if watching is not None:
            watching.discard(conn)
            if not watching:
                del self.viewers[post]
        conn.posts.discard(post)
        self._changed()

    def allow(self, user_id: int) -> bool:
        """One reaction of ``user_id`` within the rate (``rate`` a second, ``burst`` at once)?"""
        allowed = self.limiter.allow(user_id)
        if not allowed:
            self.stats.rate_limited += 1
        return allowed

    @staticmethod
    def encode(message: dict[str, Any]) -> str:
        """A message as the text of one frame (encode once, push to many)."""
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    async def post_exists(self, post: int, token: str) -> bool:
        """Does the lab have this post? (``GET /api/posts/{id}``, remembered once known)."""
        if post in self._posts:
            return self._posts[post]
        self.stats.post_lab_calls += 1
        assert self._http is not None, "the service is not started"
        async with self._http.get(
            f"{self.lab.url}/api/posts/{post}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            if response.status == 404:
                self._posts[post] = False
            elif response.status == 200:
                self._posts[post] = True
            else:
                return False  # a token problem, not an answer about the post: not remembered
        return self._posts[post]

    async def dispatch(self, conn: Conn, text: str) -> None:
        """One message from ``conn``: ``view``, ``unview``, ``react`` or ``ping``. Bad input raises
        :class:`BadMessage`; an unknown post or reaction is answered with an ``error``."""
        try:
            message = json.loads(text)
        except ValueError:
            raise BadMessage("message is not JSON") from None
        if not isinstance(message, dict):
            raise BadMessage("message must be a JSON object")
        kind = message.get("type")
        ref = message.get("ref", "")
        if kind == "ping":
            conn.push(self.encode({"type": "pong", "ref": ref}))
            return
        post = message.get("post")
        if kind not in ("view", "unview", "react"):
            raise BadMessage(f"unknown message type {kind!r}")
        if not isinstance(post, int) or isinstance(post, bool) or post < 1:
            raise BadMessage("'post' must be a post id (a positive integer)")
        if kind == "unview":
            self.remove_viewer(conn, post)
            conn.push(self.encode({"type": "unviewed", "post": post}))
            return
        if not await self.post_exists(post, conn.token):
            conn.push(self.encode({"type": "error", "code": "not_found", "ref": ref, "message": f"no post {post}"}))
            return
        if kind == "view":
            after = message.get("after")
            if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
                raise BadMessage("'after' must be a seq (an integer >= 0) or absent")
            await self.on_view(self, conn, post, after)
            return
        emoji = message.get("emoji")
        if emoji not in REACTIONS:
            conn.push(
                self.encode(
                    {"type": "error", "code": "bad_emoji", "ref": ref, "message": f"one of {' '.join(REACTIONS)}"}
                )
            )
            return
        reactions_before = self.store.appends
        await self.on_react(self, conn, post, str(emoji), str(ref))
        self.stats.reactions += self.store.appends - reactions_before
        self.stats.deliveries = sum(c.sent for c in self._every_conn)
        self._changed()

    # --- internals ---

    async def _route(self, request: web.Request) -> web.StreamResponse:
        """Run the student's ``handle_socket``; turn what escapes it into a close code, never a traceback."""
        try:
            response = await self.handle_socket(self, request)
        except BadMessage as exc:
            self.stats.bad_messages += 1
            return await self._close_after(request, 1008, str(exc))
        except ConnectionError:  # the connection went away under a send: nothing left to answer
            ws = self._ws_of.pop(id(request), None)
            return ws if ws is not None else web.Response(status=499)
        except asyncio.CancelledError:
            self._ws_of.pop(id(request), None)
            raise
        except Exception as exc:  # a bug in a handler: recorded, and the socket closed with 1011
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            return await self._close_after(request, 1011, "internal error")
        self._ws_of.pop(id(request), None)
        if isinstance(response, web.WebSocketResponse):
            self._transports.pop(id(response), None)
        elif response.status == 401:
            self.stats.refused += 1
        return response

    async def _close_after(self, request: web.Request, code: int, reason: str) -> web.StreamResponse:
        ws = self._ws_of.pop(id(request), None)
        if ws is not None:
            self._transports.pop(id(ws), None)
            with contextlib.suppress(Exception):
                await ws.close(code=code, message=reason[:120].encode())
            return ws
        return web.Response(status=500 if code == 1011 else 400, text=reason)

    def _dropped(self, conn: Conn) -> None:
        self.stats.dropped_slow += 1
        self._changed()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (synchronously, it must be quick) whenever the service's state changes."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def _changed(self) -> None:
        for callback in list(self._watchers):
            callback()


# --- a simulated user -----------------------------------------------------------------------


class ReactionClient:
    """One user's connection to the reactions service (a websockets client).

    ``reactions[post]`` lists the ``reaction`` messages received, in order; ``on_message``
    (if set) sees every message as it arrives. ``stuck=True`` makes a client that never
    reads: its receive buffer is tiny and nothing drains it.
    """

    def __init__(self, ws: websockets.ClientConnection, name: str, *, stuck: bool = False) -> None:
        self.ws = ws
        self.name = name
        self.stuck = stuck
        self.reactions: dict[int, list[dict[str, Any]]] = {}
        self.messages: list[dict[str, Any]] = []
        self.on_message: Callable[[dict[str, Any]], None] | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._reader = None if stuck else asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, token: str | None, *, name: str = "", stuck: bool = False) -> ReactionClient:
        """Open the service's WebSocket with ``?token=`` (none when ``token`` is None)."""
        full = url if token is None else f"{url}?token={token}"
        if not stuck:
            return cls(await websockets.connect(full, open_timeout=5), name)
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        ws = await websockets.connect(full, sock=sock, max_queue=1, open_timeout=5)
        return cls(ws, name, stuck=True)

    def __repr__(self) -> str:
        return f"<ReactionClient {self.name}>"

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed, asyncio.CancelledError):
            async for raw in self.ws:
                message = json.loads(raw)
                self.messages.append(message)
                if self.on_message is not None:
                    self.on_message(message)
                kind = message.get("type")
                if kind == "reaction":
                    self.reactions.setdefault(int(message["post"]), []).append(message)
                key = str(message.get("ref", "")) if kind in ("ack", "error", "pong") else ""
                if kind in ("viewing", "unviewed"):
                    key = f"{kind}:{message.get('post')}"
                waiter = self._waiting.pop(key, None) if key else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"{self.name}: the connection closed"))

    async def _request(self, message: dict[str, Any], key: str, timeout: float) -> dict[str, Any]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        await self.ws.send(json.dumps(message))
        async with asyncio.timeout(timeout):
            return await waiter

    async def view(self, post: int, after: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """View ``post`` (replaying what came after seq ``after``); returns the ``viewing`` message."""
        message: dict[str, Any] = {"type": "view", "post": post}
        if after is not None:
            message["after"] = after
        return await self._request(message, f"viewing:{post}", timeout)

    async def react(self, post: int, emoji: str = "👍", timeout: float = 5.0) -> dict[str, Any]:
        """React to ``post``; returns the ``ack`` (with the reaction's seq) or the ``error``."""
        ref = f"{self.name}-{next(self._refs)}"
        return await self._request({"type": "react", "post": post, "emoji": emoji, "ref": ref}, ref, timeout)

    async def ping(self, timeout: float = 5.0) -> dict[str, Any]:
        """A fence: the pong comes after everything pushed to this connection before it."""
        ref = f"{self.name}-p{next(self._refs)}"
        return await self._request({"type": "ping", "ref": ref}, ref, timeout)

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    def abort(self) -> None:
        """Vanish: the TCP connection is aborted, no close frame (a pulled cable, a killed tab)."""
        self.ws.transport.abort()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def seqs(self, post: int) -> list[int]:
        return [int(m["seq"]) for m in self.reactions.get(post, [])]


class StuckReader:
    """A viewer that never reads: it opens the WebSocket by hand, then stops reading its socket.

    Its receive buffer is tiny and no library drains it into memory (a client library would
    read ahead, hiding the problem for a few hundred KB): after a few KB the server's sends to
    it can only wait. A phone in a tunnel, a frozen tab, a client under a debugger.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    @classmethod
    async def connect(cls, url: str, token: str) -> StuckReader:
        hostport, _, path = url.split("//", 1)[1].partition("/")
        host, port = hostport.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /{path}?token={token} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.transport.abort()
            status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
            raise ConnectionError(f"the handshake was refused: {status_line}")
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # from now on nothing reads this socket
        return cls(writer)

    async def send_text(self, text: str) -> None:
        """One masked text frame (RFC 6455 section 5.3: a client masks everything it sends)."""
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        self._writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        await self._writer.drain()

    def abort(self) -> None:
        self._writer.transport.abort()


# --- a crowd of viewers ---------------------------------------------------------------------


class ReactionCrowd:
    """Lab users who view posts on the service and react now and then (``rate`` reactions a second
    each, at random). ``reconnect(n)`` drops and brings back ``n`` of them, each resuming after the
    last seq it saw."""

    def __init__(
        self,
        svc: ReactionsService,
        lab: Any,
        posts: list[int],
        *,
        prefix: str = "fan",
        rate: float = 1.0,
        seed: int = 10,
    ) -> None:
        self.svc, self.lab, self.posts = svc, lab, posts
        self.prefix, self.rate = prefix, rate
        self.rng = random.Random(seed)
        self.clients: list[ReactionClient] = []
        self.accounts: list[Any] = []
        self.watching: dict[str, int] = {}
        self.acked = 0
        self.refused = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.paused = False

    async def grow(self, n: int) -> None:
        """Add ``n`` viewers, each viewing one post (round robin) and reacting at random."""
        for _ in range(n):
            i = len(self.clients)
            account = await asyncio.to_thread(self.lab.account, f"{self.prefix}{i}")
            client = await ReactionClient.connect(self.svc.ws_url, account.token, name=account.username)
            post = self.posts[i % len(self.posts)]
            await client.view(post, after=0)
            self.clients.append(client)
            self.accounts.append(account)
            self.watching[client.name] = post
            self._tasks.append(asyncio.get_running_loop().create_task(self._react(i)))

    async def _react(self, i: int) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.rng.expovariate(self.rate))
                client = self.clients[i]
                if self.paused or client.ws.state is not websockets.State.OPEN:
                    continue
                try:
                    answer = await client.react(self.watching[client.name], self.rng.choice(REACTIONS))
                except (ConnectionError, TimeoutError, websockets.ConnectionClosed):
                    continue
                if answer.get("type") == "ack":
                    self.acked += 1
                else:
                    self.refused += 1

    async def reconnect(self, n: int, away: float = 1.0) -> list[tuple[str, int, int]]:
        """Abort ``n`` viewers' connections (a network failure), wait ``away`` seconds while the others
        go on reacting, then reconnect each, resuming after the last seq it saw.
        Returns (name, last seq seen before, how many it got replayed) for each."""
        gone = []
        for i in range(min(n, len(self.clients))):
            old = self.clients[i]
            post = self.watching[old.name]
            seen = old.seqs(post)
            old.abort()
            await old.close()
            gone.append((i, old, post, seen[-1] if seen else 0))
        await asyncio.sleep(away)
        out = []
        for i, old, post, last in gone:
            fresh = await ReactionClient.connect(self.svc.ws_url, self.accounts[i].token, name=old.name)
            fresh.reactions[post] = list(old.reactions.get(post, []))
            viewing = await fresh.view(post, after=last)
            self.clients[i] = fresh
            out.append((old.name, last, int(viewing["last_seq"]) - last))
        return out

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self.clients:
            await client.close()


# --- the live widget ------------------------------------------------------------------------


class ReactionsBoard:
    """A live view of a reactions service: per post, its viewers, last seq and counts; totals below.

    Re-rendered at most ten times a second (one shared render loop, ``hold_sync``), only when
    something changed; its ``repr`` is one stable line."""

    def __init__(self, svc: ReactionsService, posts: Iterable[int] = (), interval: float = 0.1) -> None:
        import ipywidgets as widgets

        from .throttle import render_loop

        self.svc = svc
        self.posts = list(posts)
        self.interval = interval
        self.renders = 0
        self.errors: list[str] = []
        self._html = widgets.HTML(value="")
        self.widget = widgets.VBox([self._html])
        self._dirty = asyncio.Event()
        self._counts: dict[int, dict[str, int]] = {}
        self._unwatch = svc.watch(self._dirty.set)
        self._last = ""
        self._task = asyncio.get_running_loop().create_task(
            render_loop(self._dirty, self.render, interval, lambda e: self.errors.append(repr(e)), idle_wake=1.0)
        )
        self._dirty.set()

    def __repr__(self) -> str:
        return "ReactionsBoard: each post's viewers, last seq and reaction counts, and the service's totals (live)"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = repr(self)
        return bundle

    def count(self, message: dict[str, Any]) -> None:
        """Count one reaction (the board learns counts from a viewer's feed: see ``follow``)."""
        post = int(message["post"])
        counts = self._counts.setdefault(post, {})
        counts[message["emoji"]] = counts.get(message["emoji"], 0) + 1
        self._dirty.set()

    def follow(self, client: ReactionClient) -> None:
        """Count the reactions ``client`` receives (a viewer of every post on the board)."""
        client.on_message = lambda m: self.count(m) if m.get("type") == "reaction" else None

    def text(self) -> str:
        """The board as plain text (what the HTML shows)."""
        svc, s = self.svc, self.svc.stats
        lines = []
        for post in sorted(set(self.posts) | set(svc.viewers)):
            counts = self._counts.get(post, {})
            shown = "  ".join(f"{e} {counts.get(e, 0)}" for e in REACTIONS)
            lines.append(
                f"post {post}: {len(svc.viewers.get(post, ())):>3} viewers, last seq "
                f"{svc.store.committed(post):>5}   {shown}"
            )
        lines.append(
            f"{len(svc.conns)} connections, {s.reactions} reactions stored, {s.deliveries} frames pushed, "
            f"{s.rate_limited} rate-limited, {s.dropped_slow} dropped as slow readers; "
            f"tokens: {s.auth_lab_calls} checked by the lab, {s.auth_cache_hits} from the cache"
        )
        return "\n".join(lines)

    def render(self, force: bool = False) -> bool:
        text = self.text()
        if text == self._last and not force:
            return False
        self._last = text
        with self.widget.hold_sync():
            self._html.value = f"<pre style='margin:0;font-size:13px;line-height:1.35'>{html.escape(text)}</pre>"
        self.renders += 1
        return True

    async def stop(self) -> None:
        """Stop updating; keep the last picture."""
        self.render()
        self._unwatch()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
