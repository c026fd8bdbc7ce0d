"""``LabClient``: a reconnecting asyncio client for the lab's WebSocket protocol.

It runs inside a notebook kernel's event loop, next to the cells::

    alice = await LabClient.connect(lab, lab.account("alice"))
    alice.on("chat", lambda m: print(m["from"]["username"], m["text"]))
    await alice.join("general")
    ack = await alice.chat("general", "hello")      # {"type": "ack", "seq": 1, ...}
    reply = await alice.wait_for("chat")

One reader task per client receives every message, keeps the counters, resolves
the replies awaited by :meth:`LabClient.send` and calls the handlers registered
with :meth:`LabClient.on`. When the connection drops (not after
:meth:`LabClient.close`) the same task reconnects with exponential backoff and
full jitter, then sends ``resume`` for every joined room: the server replays the
chats missed meanwhile, in order, and the client skips any chat it has already
seen (``seq <= last_seq[room]``), so handlers see each chat exactly once.

Nothing here ever prints: a background task's output would land in whichever
notebook cell happens to be running. Exceptions raised by handlers, failed
reconnection attempts and unsolicited ``error`` messages are kept in
:attr:`LabClient.errors` (the last 50) and logged at DEBUG level to the
``labserver.course.client`` logger, which has no handler unless you add one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from .lab import LabLike

__all__ = ["LabClient", "LabError", "LifecycleEvent", "backoff_delay", "reconnect_delay"]

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # quiet by default, even for warnings (no "last resort" handler)

Message = dict[str, Any]
Handler = Callable[[Message], Any]
"""A function or coroutine function taking one message."""
Match = str | Callable[[Message], bool]
"""A message type, or a predicate on the message."""

ACK_TIMEOUT = 10.0  # seconds send() waits for the ack or error carrying its ref
OPEN_TIMEOUT = 10.0  # seconds to open the connection and receive the welcome
BACKOFF_BASE = 0.1
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 5.0
ERRORS_KEPT = 50
RESYNCS_KEPT = 50
TIMELINE_KEPT = 200  # lifecycle events kept per client (a crowd of a thousand keeps 200 each)
SEQUENCED = frozenset({"chat", "dm"})  # message types carrying a per-room seq


class LabError(Exception):
    """The server answered ``{"type": "error", "code": ..., "message": ...}``.

    Also raised when a connection is refused: ``unauthorized`` for a refused handshake
    (401), ``closed`` when the server closed the socket before its ``welcome`` (then
    ``close_code`` and ``close_reason`` say why, e.g. 1013 "try again later" from a full server)."""

    def __init__(
        self,
        code: str,
        message: str,
        reply: Message | None = None,
        close_code: int | None = None,
        close_reason: str = "",
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.reply = reply
        self.close_code = close_code
        self.close_reason = close_reason

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class AccountLike(Protocol):
    """What the client needs of an account: :class:`labserver.course.rest_client.Account` fits."""

    @property
    def token(self) -> str: ...

    @property
    def user(self) -> dict[str, Any]: ...


EventKind = Literal["opened", "lost", "attempt", "failed", "reconnected", "closed"]


@dataclass(frozen=True)
class LifecycleEvent:
    """One step in a client's life, for timelines: ``t`` is wall-clock time (``time.time()``,
    the clock of the server's ``/observe`` events), ``kind`` one of

    * ``opened``: the first connection received its welcome (``socket_id``);
    * ``lost``: a connection ended without :meth:`LabClient.close` (``code``, ``reason``:
      what the client saw; 1006 when no close frame came);
    * ``attempt``: a reconnection attempt starts (``attempt``: 0, 1, 2... after its wait);
    * ``failed``: that attempt failed (``reason``; ``code`` if the server closed it);
    * ``reconnected``: it succeeded (``socket_id``: the new one);
    * ``closed``: :meth:`LabClient.close` (``code``: the one it sent).
    """

    t: float
    kind: EventKind
    socket_id: str | None = None
    code: int | None = None
    reason: str = ""
    attempt: int | None = None


def backoff_delay(
    attempt: int, *, base: float = BACKOFF_BASE, factor: float = BACKOFF_FACTOR, cap: float = BACKOFF_CAP
) -> float:
    """The longest wait before reconnection attempt ``attempt`` (0, 1, 2...): ``min(cap, base * factor**attempt)``."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    # Bound the exponent: a client retrying all night must not overflow a float.
    return min(cap, base * factor ** min(attempt, 64))


def reconnect_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Full jitter: a uniform random wait in ``[0, backoff_delay(attempt)]``.

    Spreading the waits keeps a thousand clients cut off together from all
    knocking again at the same instant when the server comes back.
    """
    return (rng or random).uniform(0, backoff_delay(attempt))


def _url_with_token(url: str, token: str) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{urlencode({'token': token})}"


def _matcher(match: Match) -> Callable[[Message], bool]:
    if callable(match):
        return match
    return lambda message: message.get("type") == match


def _describe(match: Match) -> str:
    return repr(match) if isinstance(match, str) else getattr(match, "__name__", "matching")


def _refusal(exc: InvalidStatus) -> LabError:
    """A refused handshake (401...) as a :class:`LabError` with the server's JSON reason."""
    response = exc.response
    try:
        body = json.loads(response.body or b"")
        code, message = str(body["error"]), str(body["message"])
    except (ValueError, TypeError, KeyError):
        code, message = f"http_{response.status_code}", str(exc)
    return LabError(code, f"{message} (HTTP {response.status_code})")


class _Connecting:
    """What :meth:`LabClient.connect` returns: await it, or use it with ``async with``."""

    def __init__(self, opening: Callable[[], Awaitable[LabClient]]) -> None:
        self._opening = opening
        self._client: LabClient | None = None

    def __await__(self) -> Generator[Any, None, LabClient]:
        return self._opening().__await__()

    async def __aenter__(self) -> LabClient:
        self._client = await self._opening()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        assert self._client is not None
        await self._client.close()


class LabClient:
    """One user's WebSocket connection to the lab server, kept open until :meth:`close`.

    Create it with ``await LabClient.connect(lab, account)``. Its attributes are
    meant to be looked at from a notebook:

    * ``user``, ``socket_id`` (new on every reconnection), ``connected``;
    * ``rooms``: the rooms joined (resumed after a reconnection);
    * ``last_seq``: the highest chat/dm ``seq`` seen per room;
    * ``received``: a :class:`~collections.Counter` of message types;
    * ``reconnects``, ``duplicates`` (replayed chats skipped), ``dropped_sends``;
    * ``errors``: the last 50 exceptions from handlers, reconnection attempts
      and unsolicited server errors; ``resyncs``: ``resync`` answers to resume;
    * ``closed_reason``: why the client stopped for good, else None;
    * ``silent``: :meth:`go_silent` was called (a pulled cable: see there);
    * ``close_code``, ``close_reason``: how the last connection ended as this client
      saw it (1006: no close frame), None while the first one is open;
    * ``timeline``: the last 200 :class:`LifecycleEvent` (lost, attempt, reconnected...);
    * ``backoff``: the reconnection policy, ``backoff(attempt) -> seconds`` to wait before
      attempt 0, 1, 2... (default :func:`reconnect_delay`: exponential, full jitter).
    """

    def __init__(
        self,
        target: LabLike | str,
        account: AccountLike,
        *,
        reconnect: bool = True,
        name: str | None = None,
        max_queue: int | None = None,
        buffer: int = 1000,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        self.target = target
        self.account = account
        self.reconnect = reconnect
        self.name = name or str(account.user.get("username", "?"))
        self.max_queue = max_queue
        self.user: dict[str, Any] = dict(account.user)
        self.ws: ClientConnection | None = None
        self.socket_id: str | None = None
        self.welcome: Message = {}
        self.connected = False
        self.rooms: set[str] = set()
        self.last_seq: dict[str, int] = {}
        self.received: collections.Counter[str] = collections.Counter()
        self.reconnects = 0
        self.duplicates = 0
        self.dropped_sends = 0
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=ERRORS_KEPT)
        self.resyncs: collections.deque[Message] = collections.deque(maxlen=RESYNCS_KEPT)
        self.closed_reason: str | None = None
        self.silent = False  # go_silent() was called: nothing goes in or out any more
        self.backoff: Callable[[int], float] = backoff or reconnect_delay
        self.close_code: int | None = None  # how the last connection ended, as this client saw it
        self.close_reason: str | None = None
        self.timeline: collections.deque[LifecycleEvent] = collections.deque(maxlen=TIMELINE_KEPT)

        self._handlers: dict[str, list[Handler]] = {}
        self._pending: dict[str, tuple[str, asyncio.Future[Message]]] = {}  # ref -> (type, reply)
        self._held: dict[str, list[Message]] = {}  # room being resumed -> its chats/dms, until the reply
        self._refs = itertools.count(1)
        # wait_for(): recent messages numbered in arrival order, and where the last match was.
        self._recent: collections.deque[tuple[int, Message]] = collections.deque(maxlen=buffer)
        self._arrivals = itertools.count()
        self._cursor = 0
        self._waiters: list[tuple[Callable[[Message], bool], asyncio.Future[tuple[int, Message]]]] = []
        self._ready = asyncio.Event()  # set while connected, and once closed (to wake waiters)
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()  # async handlers, fire-and-forget sends, resume
        self._closing = False
        self._done = False

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        lab_or_ws_url: LabLike | str,
        account: AccountLike,
        *,
        reconnect: bool = True,
        name: str | None = None,
        max_queue: int | None = None,
        buffer: int = 1000,
        backoff: Callable[[int], float] | None = None,
    ) -> _Connecting:
        """Connect ``account`` to a lab (a :class:`~labserver.course.lab.LabServer` or a ``ws://`` URL).

        Await it for a client that has received its ``welcome``, or use it as
        ``async with LabClient.connect(lab, account) as client:``. The token
        travels in ``?token=``; a refused token raises :class:`LabError`
        (``unauthorized``). ``max_queue`` is passed to :func:`websockets.connect`
        (None: its default); ``buffer`` is how many recent messages
        :meth:`wait_for` can look back on; ``backoff(attempt) -> seconds`` is the
        reconnection policy (default :func:`reconnect_delay`).
        """

        async def opening() -> LabClient:
            client = cls(
                lab_or_ws_url,
                account,
                reconnect=reconnect,
                name=name,
                max_queue=max_queue,
                buffer=buffer,
                backoff=backoff,
            )
            await client._start()
            return client

        return _Connecting(opening)

    @property
    def ws_url(self) -> str:
        """Where to connect, asked of the lab each time (its port may change on restart)."""
        return self.target if isinstance(self.target, str) else self.target.ws_url

    async def _start(self) -> None:
        ws, welcome = await self._open()
        self._attach(ws, welcome)
        self._note("opened", socket_id=self.socket_id)
        self._set_connected()
        self._reader = asyncio.create_task(self._run(), name=f"LabClient {self.name} reader")

    async def _open(self) -> tuple[ClientConnection, Message]:
        """Open a connection and read its ``welcome``."""
        options: dict[str, Any] = {"open_timeout": OPEN_TIMEOUT, "logger": log.getChild("websockets")}
        if self.max_queue is not None:
            options["max_queue"] = self.max_queue
        trust = getattr(self.target, "ssl_context", None)  # a lab serving wss:// on a lesson's own CA
        if trust is not None:
            options["ssl"] = trust
        try:
            ws = await ws_connect(_url_with_token(self.ws_url, self.account.token), **options)
        except InvalidStatus as exc:
            raise _refusal(exc) from exc
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                try:
                    welcome = json.loads(await ws.recv())
                except ConnectionClosed as exc:  # e.g. 1013 from a full server: the 101 came, no welcome
                    raise LabError(
                        "closed",
                        f"closed with {self._close_text(ws)} before the welcome",
                        close_code=1006 if ws.close_code is None else int(ws.close_code),
                        close_reason=ws.close_reason or "",
                    ) from exc
            if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
                raise LabError("no_welcome", f"expected a welcome message first, got {welcome!r:.200}")
        except BaseException:
            ws.transport.abort()
            raise
        return ws, welcome

    def _attach(self, ws: ClientConnection, welcome: Message) -> None:
        self.ws = ws
        self.welcome = welcome
        self.socket_id = welcome.get("socket_id")
        self.user = welcome.get("user", self.user)
        self._receive(welcome)

    def _set_connected(self) -> None:
        self.connected = True
        self._ready.set()

    # --- the reader task ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                ws = self.ws
                assert ws is not None
                try:
                    async for raw in ws:
                        self._receive(raw)
                except ConnectionClosed:
                    pass
                self._lost(ws)
                if self._closing:
                    return
                if not self.reconnect:
                    self.closed_reason = f"connection lost ({self._close_text(ws)}); reconnect=False"
                    return
                if not await self._reconnect():
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not end up as "Task exception was never retrieved"
            self._record(exc, "reader task failed")
            self.closed_reason = f"reader task failed: {exc!r}"
        finally:
            self._finish()

    @staticmethod
    def _close_text(ws: ClientConnection) -> str:
        code = ws.close_code
        if code is None or code == 1006:
            return "no close frame"
        return f"code {code}" + (f" {ws.close_reason!r}" if ws.close_reason else "")

    def _note(self, kind: EventKind, **fields: Any) -> None:
        self.timeline.append(LifecycleEvent(time.time(), kind, **fields))

    def _lost(self, ws: ClientConnection) -> None:
        """The connection ended: whatever awaited a reply on it will not get one."""
        self.connected = False
        self._ready.clear()
        self.close_code = 1006 if ws.close_code is None else int(ws.close_code)
        self.close_reason = ws.close_reason or ""
        if not self._closing:
            self._note("lost", socket_id=self.socket_id, code=self.close_code, reason=self.close_reason)
        self._held.clear()  # last_seq did not move: the next resume asks for them again
        log.debug("%s: connection %s lost (%s)", self.name, self.socket_id, self._close_text(ws))
        reason = f"connection lost ({self._close_text(ws)})"
        for kind, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{reason} while waiting for the reply to {kind!r}"))

    async def _reconnect(self) -> bool:
        """Try again forever (until :meth:`close`), backing off; False if the token is refused."""
        for attempt in itertools.count():
            await asyncio.sleep(self._wait_before(attempt))
            self._note("attempt", attempt=attempt)
            try:
                ws, welcome = await self._open()
            except LabError as exc:
                self._note("failed", attempt=attempt, code=exc.close_code, reason=str(exc))
                if exc.code == "unauthorized":
                    self.closed_reason = f"reconnection refused: {exc}"
                    self._record(exc, "reconnection refused; not trying again")
                    return False
                self._record(exc, f"reconnection attempt {attempt + 1}")
            except Exception as exc:  # refused, reset, timed out, 503...: try again later
                self._note("failed", attempt=attempt, reason=f"{type(exc).__name__}: {exc}")
                self._record(exc, f"reconnection attempt {attempt + 1}")
            else:
                self.reconnects += 1
                rooms = sorted(self.rooms | {room for room in self.last_seq if room.startswith("dm:")})
                # Direct messages reach a new socket at once, so a live dm can overtake the replay of
                # older ones: hold each room's messages until its resume is answered, then deliver
                # them sorted (see _receive). From now on, before the reader reads anything more.
                self._held = {room: [] for room in rooms}
                self._attach(ws, welcome)
                self._note("reconnected", socket_id=self.socket_id, attempt=attempt)
                log.debug("%s: reconnected as %s after %d attempt(s)", self.name, self.socket_id, attempt + 1)
                self._spawn(self._resume(ws, rooms), "resume after reconnection")
                return True
        raise AssertionError("unreachable")

    def _wait_before(self, attempt: int) -> float:
        """Seconds to wait before reconnection attempt ``attempt``, from :attr:`backoff`.

        A policy that fails or returns nonsense (negative, NaN, not a number) must not kill
        the reader task: the failure is kept in :attr:`errors` and the default policy used."""
        try:
            delay = float(self.backoff(attempt))
            if not 0 <= delay < float("inf"):
                raise ValueError(f"backoff({attempt}) returned {delay!r}; expected seconds >= 0")
        except Exception as exc:
            self._record(exc, "the backoff policy")
            delay = reconnect_delay(attempt)
        return delay

    async def _resume(self, ws: ClientConnection, rooms: list[str]) -> None:
        """Ask for what was missed in every room (joined, or with direct messages), then mark the
        client connected."""
        results = await asyncio.gather(*(self._resume_room(ws, room) for room in rooms), return_exceptions=True)
        if ws is not self.ws or ws.state is not State.OPEN:
            return  # lost again meanwhile: the reader takes it from here
        for room, result in zip(rooms, results, strict=True):
            if isinstance(result, BaseException):
                self._record(result, f"resuming room {room!r}")
        self._set_connected()

    async def _resume_room(self, ws: ClientConnection, room: str) -> None:
        try:
            reply = await self._request(ws, "resume", {"room": room, "after": self.last_seq.get(room, 0)})
        finally:
            if room in self._held and ws is self.ws:  # an error reply, or none: stop holding
                self._release(room)
        if reply.get("type") != "resync":
            return
        # Too far behind (or the server knows less than we do): start again from the server's last seq.
        self.resyncs.append(reply)
        self.last_seq[room] = int(reply.get("last_seq", 0))
        if room in self.rooms:
            ack = await self._request(ws, "join", {"room": room})
            self._joined(room, ack)

    def _receive(self, raw: str | bytes | Message) -> None:
        """Account for one message, resolve the reply it answers, wake waiters, call handlers."""
        if self._closing:
            return  # close() was called: what still arrives during the closing handshake is not wanted
        if isinstance(raw, dict):
            message = raw
        else:
            try:
                message = json.loads(raw)
            except ValueError as exc:
                self._record(exc, f"server sent a message that is not JSON: {raw[:80]!r}")
                return
            if not isinstance(message, dict):
                self._record(ValueError(f"server sent a non-object message: {raw[:80]!r}"), "receiving")
                return
        kind = str(message.get("type"))
        if kind in SEQUENCED:
            room, seq = message.get("room"), message.get("seq")
            if isinstance(room, str) and isinstance(seq, int):
                held = self._held.get(room)
                if held is not None:
                    held.append(message)
                    return
                if seq <= self.last_seq.get(room, 0):
                    self.duplicates += 1  # replayed by a resume, already delivered live
                    return
                self.last_seq[room] = seq
        self.received[kind] += 1
        ref = message.get("ref")
        if ref is not None and ref in self._pending:
            if kind in ("resumed", "resync") and message.get("room") in self._held:
                self._release(message["room"])  # the replayed messages come before the reply
            future = self._pending[ref][1]
            if not future.done():
                future.set_result(message)
        elif kind == "error":
            self._record(LabError(str(message.get("code")), str(message.get("message")), message), "server error")

        index = next(self._arrivals)
        self._recent.append((index, message))
        for match, waiter in self._waiters:
            if waiter.done():
                continue
            try:
                if match(message):
                    waiter.set_result((index, message))
            except Exception as exc:  # the caller's predicate failed: its wait_for() raises it
                waiter.set_exception(exc)

        handlers = (*self._handlers.get(kind, ()), *self._handlers.get("*", ())) if self._handlers else ()
        for handler in handlers:
            try:
                result = handler(message)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    self._spawn(result, f"{kind!r} handler {getattr(handler, '__qualname__', handler)!s}")
            except Exception as exc:  # a handler's bug is kept in .errors, not raised in the reader
                self._record(exc, f"{kind!r} handler {getattr(handler, '__qualname__', handler)!s}")

    def _release(self, room: str) -> None:
        """Deliver what was held while ``room`` was being resumed: in seq order, each once."""
        for message in sorted(self._held.pop(room), key=lambda m: int(m["seq"])):
            self._receive(message)

    # --- background bookkeeping -----------------------------------------------------------

    def _record(self, exc: BaseException, where: str) -> None:
        exc.add_note(f"LabClient {self.name}: {where}")
        self.errors.append(exc)
        log.debug("%s: %s: %r", self.name, where, exc)

    def _spawn(self, awaitable: Awaitable[Any], where: str, *, is_send: bool = False) -> None:
        """Run ``awaitable`` in the background; its exception, if any, goes to :attr:`errors`."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(task: asyncio.Future[Any]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                return
            exc = task.exception()  # retrieved: asyncio will not print it
            if is_send and isinstance(exc, ConnectionClosed | ConnectionError):
                self.dropped_sends += 1
            elif exc is not None:
                self._record(exc, where)

        task.add_done_callback(done)

    def _finish(self) -> None:
        """Stopped for good: fail whatever still waits."""
        self._done = True
        self.connected = False
        reason = self.closed_reason or "client closed"
        for kind, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{reason} while waiting for the reply to {kind!r}"))
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"{reason}; no more messages will arrive"))
        self._ready.set()

    # --- faults ---------------------------------------------------------------------------

    def go_silent(self) -> None:
        """Behave like a client whose network vanished (a pulled cable, a laptop lid shut):
        stop reading and writing on the connection, without closing it.

        No close frame is sent and the TCP connection stays open, so nothing tells the
        server that this client is gone; only its heartbeat finds out (PROTOCOL.md
        section 8): after ``ping_interval`` seconds of silence it sends a ping, and
        with no pong within half of that it drops the connection. The websockets
        library answers a ping only while it reads, so pausing the transport's
        reading is enough to stop the pongs; its own keepalive pings stop too.

        The client does not notice either (nothing arrives, nothing fails): it stays
        ``connected`` in its own eyes and never reconnects. What it sends is lost
        (:meth:`send` times out without a reply, :meth:`send_nowait` counts a dropped
        send). :meth:`close` then aborts the TCP connection instead of closing it.
        """
        ws = self.ws
        if ws is None or self.closed:
            raise ConnectionError(f"{self.name} is {self._state()}: nothing to silence")
        self.silent = True
        keepalive = ws.keepalive_task
        if keepalive is not None:
            keepalive.cancel()  # the client's own pings would be traffic the server hears
        ws.transport.pause_reading()  # no reads: no pong, no close frame, no EOF noticed

    # --- handlers -------------------------------------------------------------------------

    def on(self, type: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(message)`` for every message of ``type`` (``"*"``: every message).

        ``handler`` may be a coroutine function: it then runs as its own task,
        so it may ``await client.send(...)``. Exceptions are kept in
        :attr:`errors`. Returns a function that unsubscribes the handler.
        """
        handlers = self._handlers.setdefault(type, [])
        handlers.append(handler)

        def off() -> None:
            with contextlib.suppress(ValueError):
                handlers.remove(handler)

        return off

    # --- sending --------------------------------------------------------------------------

    async def send(self, type: str, **fields: Any) -> Message:
        """Send ``{"type": type, **fields, "ref": ...}`` and return the reply carrying that ref.

        The reply is an ``ack`` for most types (``resumed``/``resync`` for
        ``resume``, ``pong`` for ``ping``). Raises :class:`LabError` when the
        server answers ``error``, :class:`ConnectionError` when the client is
        not connected or the connection drops before the reply, and
        :class:`TimeoutError` after 10 seconds without a reply.
        """
        if not self.connected or self.ws is None:
            raise ConnectionError(f"{self.name} is {self._state()}: cannot send {type!r} now")
        return await self._request(self.ws, type, fields)

    async def _request(self, ws: ClientConnection, type: str, fields: dict[str, Any]) -> Message:
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (type, future)
        try:
            try:
                if not self.silent:  # silent: the bytes vanish on the way, as over a pulled cable
                    await ws.send(json.dumps({"type": type, **fields, "ref": ref}, separators=(",", ":")))
            except ConnectionClosed as exc:
                raise ConnectionError(f"connection lost before {type!r} could be sent") from exc
            try:
                async with asyncio.timeout(ACK_TIMEOUT):
                    reply = await future
            except TimeoutError:
                raise TimeoutError(f"no reply to {type!r} (ref {ref}) within {ACK_TIMEOUT:g} s") from None
        finally:
            del self._pending[ref]
        if reply.get("type") == "error":
            raise LabError(str(reply.get("code")), str(reply.get("message")), reply)
        return reply

    def send_nowait(self, type: str, **fields: Any) -> None:
        """Send without a ref and without waiting. Dropped (and counted in
        :attr:`dropped_sends`) while the client is not connected."""
        ws = self.ws
        if not self.connected or ws is None or self.silent:
            self.dropped_sends += 1
            return
        self._spawn(ws.send(json.dumps({"type": type, **fields}, separators=(",", ":"))), "send_nowait", is_send=True)

    async def join(self, room: str) -> Message:
        """Join ``room``; from now on its chats arrive, and are resumed after a reconnection."""
        ack = await self.send("join", room=room)
        self._joined(room, ack)
        return ack

    def _joined(self, room: str, ack: Message) -> None:
        self.rooms.add(room)
        # Earlier chats are not ours to receive: a later resume starts from here, not from 0.
        last = ack.get("last_seq")
        if isinstance(last, int):
            self.last_seq[room] = max(self.last_seq.get(room, 0), last)

    async def leave(self, room: str) -> Message:
        ack = await self.send("leave", room=room)
        self.rooms.discard(room)
        return ack

    async def chat(self, room: str, text: str) -> Message:
        """Post to ``room``; the ack carries the message's ``seq``."""
        return await self.send("chat", room=room, text=text)

    async def dm(self, user_id: int, text: str) -> Message:
        return await self.send("dm", to=user_id, text=text)

    async def typing(self, room: str, active: bool = True) -> Message:
        return await self.send("typing", room=room, active=active)

    # --- receiving ------------------------------------------------------------------------

    async def wait_for(self, type_or_predicate: Match, timeout: float = 5) -> Message:
        """The next message of a type (or for which a predicate is true).

        Messages that arrived since the previous match of ``wait_for`` count
        too, so ``await bob.chat(...)`` then ``await alice.wait_for("chat")``
        cannot miss a reply that came quickly. Raises :class:`TimeoutError`.
        """
        match = _matcher(type_or_predicate)
        for index, message in self._recent:
            if index >= self._cursor and match(message):
                self._cursor = index + 1
                return message
        if self._done:
            raise ConnectionError(f"{self.name} is closed ({self.closed_reason}); no more messages will arrive")
        waiter: asyncio.Future[tuple[int, Message]] = asyncio.get_running_loop().create_future()
        entry = (match, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                index, message = await waiter
        except TimeoutError:
            raise TimeoutError(f"no {_describe(type_or_predicate)} message within {timeout:g} s") from None
        finally:
            self._waiters.remove(entry)
        self._cursor = max(self._cursor, index + 1)
        return message

    async def wait_connected(self, timeout: float = 10) -> None:
        """Wait until connected (after a reconnection: once every room is resumed)."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        if self._done:
            raise ConnectionError(f"{self.name} is closed ({self.closed_reason})")

    # --- closing --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closing or self._done

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` (1000 normal; 1001 "going away", what a browser sends when
        its tab closes or navigates away) and stop reconnecting. Idempotent."""
        if not (code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            # RFC 6455 section 7.4: 1004-1006 and 1015 must never be sent, and nothing else is defined.
            raise ValueError(f"close code {code} cannot be sent: use 1000, 1001, 1002, 1003, 1007-1014 or 3000-4999")
        if self._closing:
            return
        self._closing = True
        self.closed_reason = self.closed_reason or "closed by the client"
        current = asyncio.current_task()
        ws = self.ws
        self._note("closed", socket_id=self.socket_id, code=code, reason=reason)
        if ws is not None and self.silent:
            ws.transport.abort()  # the cable is out: no close frame could get through
        elif ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(code, reason)
        reader = self._reader
        if reader is not None and reader is not current:
            reader.cancel()  # if it is waiting to reconnect; otherwise it has ended already
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self.ws is not None and self.ws is not ws:  # opened by a reconnection meanwhile
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._finish()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _state(self) -> str:
        if self.closed:
            return "closed"
        return "connected" if self.connected else "reconnecting"

    def __repr__(self) -> str:
        state = self._state()
        if state == "closed":
            return f"<LabClient {self.name} closed>"
        n = len(self.rooms)
        rooms = f"{n} room" if n == 1 else f"{n} rooms"
        return f"<LabClient {self.name} {state} to {rooms}>"
