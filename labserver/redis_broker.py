"""A Redis broker: several lab server processes share rooms, DMs, notifications and presence.

:class:`RedisBroker` has the :class:`~labserver.broker.Broker` interface, on redis-py's
asyncio client. Every process PUBLISHes each :class:`~labserver.broker.Routed` (its
``serialize()`` bytes) on one channel, ``labserver:routed``, and SUBSCRIBEs to it; each
delivers what it receives to *its own* sockets, exactly as with the in-memory broker.

Own messages are delivered locally at once and skipped when Redis echoes them back
(``origin`` is this node's name). The other choice, delivering only what comes back
from Redis, would make a room on one process depend on Redis: while Redis is away
nobody would get anything, and every local delivery would pay a round trip. Delivering
at once keeps the order the process published in (one call, no await in between) and
never double-delivers, since the echo is dropped by origin. Messages go to Redis
through one queue and one connection, in publication order, so the other processes
also see this process's messages in the order it published them.

Redis pub/sub is *at most once*: a message published while a subscriber is
disconnected is lost for it. Nothing acknowledged is lost all the same: chat and DM
messages are in the shared SQLite file with their room's sequence number before they
are published, and a client that sees a gap (or reconnects) asks ``resume`` with its
last seq. Redis going away is logged once; local delivery goes on; the broker
reconnects with a capped exponential backoff and logs once when it is back.

Presence across processes (:class:`ClusterView`, pure, and the heartbeat in
:class:`RedisBroker`): each node writes ``labserver:node:<name>``, a JSON summary of its
online users and room members, with a TTL of a few seconds, renewed every second. A user
is online if any live node has them. When a node's key expires (it died), every other
node announces that node's users offline *to its own sockets* (so each socket hears it
once), unless they are online elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .broker import Routed

log = logging.getLogger("labserver")

CHANNEL = "labserver:routed"
NODE_KEY_PREFIX = "labserver:node:"
HEARTBEAT_S = 1.0  # how often a node renews its key (and reads the others')
NODE_TTL_S = 4.0  # a node whose key was not renewed this long is dead
SEND_QUEUE_LIMIT = 10_000  # messages waiting for Redis; beyond, dropped (clients resume)
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0


class BrokerUnavailable(Exception):
    """Redis cannot be reached (at start-up): the message is one line."""


# --- presence across nodes (pure: no I/O, the clock passed in) ----------------------------


@dataclass(frozen=True, slots=True)
class NodeState:
    """What one node says about itself: its online users and its rooms' members."""

    users: dict[int, str] = field(default_factory=dict)  # user id -> username
    rooms: dict[str, list[int]] = field(default_factory=dict)  # room -> member user ids

    def to_json(self) -> str:
        return json.dumps({"users": {str(k): v for k, v in self.users.items()}, "rooms": self.rooms})

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeState:
        data = json.loads(text)
        return cls(
            {int(k): str(v) for k, v in data["users"].items()}, {str(k): list(v) for k, v in data["rooms"].items()}
        )


@dataclass(frozen=True, slots=True)
class Departed:
    """Users (and room memberships) that only a dead node had: the others announce them gone."""

    node: str
    users: dict[int, str]
    rooms: dict[str, dict[int, str]]  # room -> user id -> username


class ClusterView:
    """The other live nodes' users and room members, as last read from Redis (or heard live).

    The lab asks it whether a user is online *elsewhere* (then a local offline is not
    announced) and merges it into the answers that list who is online or in a room."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.others: dict[str, NodeState] = {}
        # What was heard live lately, replayed over each read: a node's key can be up to a
        # heartbeat older than its last message, and must not undo what the message said.
        self.heard: list[tuple[float, str, dict[str, Any]]] = []
        self.settle_until = 0.0  # after a (re)connection: nodes may not have re-written their keys yet

    def online_elsewhere(self, user_id: int) -> bool:
        return any(user_id in state.users for state in self.others.values())

    def member_elsewhere(self, room: str, user_id: int) -> bool:
        return any(user_id in state.rooms.get(room, ()) for state in self.others.values())

    def users(self) -> dict[int, str]:
        found: dict[int, str] = {}
        for state in self.others.values():
            found.update(state.users)
        return found

    def room_members(self, room: str) -> dict[int, str]:
        found: dict[int, str] = {}
        for state in self.others.values():
            found.update((uid, state.users.get(uid, "")) for uid in state.rooms.get(room, ()))
        return found

    def settle(self, now: float) -> None:
        """A (re)connection to Redis at ``now``: for one TTL, a missing key does not mean a dead node."""
        self.settle_until = now + NODE_TTL_S

    def replace(self, states: dict[str, NodeState], now: float) -> list[Departed]:
        """The nodes read from Redis at ``now``; return what the nodes that vanished took with them."""
        states = {name: state for name, state in states.items() if name != self.node}
        departed: list[Departed] = []
        if now >= self.settle_until:
            for name in set(self.others) - set(states):
                gone = self.others[name]
                rooms = {room: {u: gone.users.get(u, "") for u in members} for room, members in gone.rooms.items()}
                departed.append(Departed(name, dict(gone.users), rooms))
        else:  # settling: keep what we knew of nodes not (yet) seen again
            states = {**{n: s for n, s in self.others.items() if n not in states}, **states}
        self.others = states
        # Kept until the origin's key has surely been rewritten after them, or has expired: a node
        # that dies less than a heartbeat after a user came online never writes that user into
        # its key, and what it takes with it (above) must still name them.
        self.heard = [h for h in self.heard if now - h[0] < NODE_TTL_S + 2 * HEARTBEAT_S]
        for _, origin, message in self.heard:
            if origin in states:
                self._apply(origin, message)
        return departed

    def hear(self, origin: str, message: dict[str, Any], now: float) -> None:
        """A presence or membership message another node published, at ``now``: update its state
        at once, before its next heartbeat (so an answer right after it is right)."""
        self.heard.append((now, origin, message))
        self._apply(origin, message)

    def _apply(self, origin: str, message: dict[str, Any]) -> None:
        state = self.others.get(origin)
        if state is None:
            state = self.others[origin] = NodeState()
        user = message.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            return
        uid, name = user["id"], str(user.get("username", ""))
        kind = message.get("type")
        if kind == "presence":
            if message.get("online"):
                state.users[uid] = name
            else:
                state.users.pop(uid, None)
        elif kind in ("member_joined", "member_left") and isinstance(message.get("room"), str):
            members = state.rooms.setdefault(message["room"], [])
            if kind == "member_joined" and uid not in members:
                members.append(uid)
                state.users.setdefault(uid, name)
            elif kind == "member_left" and uid in members:
                members.remove(uid)


# --- sequence numbers delivered, and the gaps Redis left (pure) ---------------------------


class SeqTracker:
    """Which seqs of each room this process has delivered, to find the ones Redis lost.

    Pub/sub is at most once: a message published while this process was cut from Redis
    (or by a process cut from it) never comes. Every chat and DM is in the shared store
    first, so the process can deliver it from there: :meth:`stuck` names the rooms whose
    delivered seqs have had a hole (or have lagged behind the store) for a while; the lab
    reads the missing rows and delivers them like live ones. :meth:`saw` drops a seq
    delivered already, so a repair racing the live message never sends it twice.

    Per room it keeps the *contiguous* mark (every seq up to it delivered) and the few seqs
    delivered above it (messages from two processes may arrive out of order)."""

    def __init__(self) -> None:
        self.contiguous: dict[str, int] = {}
        self.ahead: dict[str, set[int]] = {}
        self.behind_since: dict[str, float] = {}  # room -> when it was first seen with a hole or lagging

    def load(self, last_seqs: dict[str, int]) -> None:
        """At start-up: everything already stored counts as delivered (history, not live)."""
        for room, seq in last_seqs.items():
            self.contiguous[room] = max(self.contiguous.get(room, 0), seq)

    def saw(self, room: str, seq: int, now: float) -> bool:
        """Record ``seq`` of ``room`` delivered at ``now``; False if it was already (a duplicate)."""
        mark = self.contiguous.get(room, 0)
        ahead = self.ahead.get(room)
        if seq <= mark or (ahead is not None and seq in ahead):
            return False
        if seq != mark + 1:
            self.ahead.setdefault(room, set()).add(seq)
            self.behind_since.setdefault(room, now)
            return True
        mark = seq
        if ahead:
            while mark + 1 in ahead:
                mark += 1
                ahead.discard(mark)
            if not ahead:
                del self.ahead[room]
        self.contiguous[room] = mark
        if room not in self.ahead:
            self.behind_since.pop(room, None)
        return True

    def skip_to(self, room: str, seq: int) -> None:
        """Give up on the seqs of ``room`` up to ``seq`` (too many to repair: clients resync)."""
        self.contiguous[room] = max(self.contiguous.get(room, 0), seq)
        ahead = {s for s in self.ahead.pop(room, set()) if s > self.contiguous[room]}
        if ahead:
            self.ahead[room] = ahead
        else:
            self.behind_since.pop(room, None)

    def note_stored(self, last_seqs: dict[str, int], now: float) -> None:
        """The store's last seq per room at ``now``: a room whose mark is below it lags (a lost tail)."""
        for room, seq in last_seqs.items():
            if seq > self.contiguous.get(room, 0):
                self.behind_since.setdefault(room, now)
            elif room not in self.ahead:
                self.behind_since.pop(room, None)

    def stuck(self, now: float, patience: float) -> list[tuple[str, int]]:
        """Rooms behind for ``patience`` seconds (longer than any message in flight), with their mark."""
        return [(room, self.contiguous.get(room, 0)) for room, t in self.behind_since.items() if now - t >= patience]


# --- the broker ---------------------------------------------------------------------------


def _client(url: str) -> aioredis.Redis:
    # Short timeouts: a Redis that went away must not hold a publish or a heartbeat for long.
    return aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0, retry_on_timeout=False)


class RedisBroker:
    """The :class:`~labserver.broker.Broker` of several processes, over Redis pub/sub.

    ``node`` names this process (``origin`` of what it publishes). ``local_state`` and
    ``on_departed`` connect the presence heartbeat to the lab (see :meth:`track_presence`)."""

    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = node
        self.cluster = ClusterView(node)
        self.connected = False
        self.published = 0
        self.lost = 0  # messages not sent to Redis (it was away, or the queue overflowed)
        self._deliver: Callable[[Routed], None] | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._pub: aioredis.Redis | None = None
        self._local_state: Callable[[], NodeState] = NodeState
        self._on_departed: Callable[[Departed], None] = lambda departed: None
        self._on_heard: Callable[[Routed], None] = lambda routed: None
        self._on_tick: Callable[[], Awaitable[None]] | None = None

    @staticmethod
    async def probe(url: str) -> None:
        """Raise :class:`BrokerUnavailable` (one line) unless ``url`` is a Redis that answers PING."""
        try:
            client = _client(url)
        except ValueError as exc:
            raise BrokerUnavailable(f"bad Redis URL {url!r}: {exc}") from None
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"cannot reach Redis at {url}: {exc}") from None
        finally:
            await client.aclose()

    def attach(
        self,
        local_state: Callable[[], NodeState],
        on_departed: Callable[[Departed], None],
        on_heard: Callable[[Routed], None],
        on_tick: Callable[[], Awaitable[None]],
    ) -> None:
        """What the heartbeat writes (this node's users and rooms), what to do when a node dies,
        what to do with a message another node published (before it is delivered), and what to
        run every heartbeat, Redis there or not (the lab repairs the gaps Redis left)."""
        self._local_state, self._on_departed, self._on_heard = local_state, on_departed, on_heard
        self._on_tick = on_tick

    async def start(self, deliver: Callable[[Routed], None]) -> None:
        await self.probe(self.url)  # at start-up, Redis must be there: a typo is not a retry loop
        self._deliver = deliver
        self._pub = _client(self.url)
        self._tasks = [
            asyncio.create_task(self._receive(), name="redis-receive"),
            asyncio.create_task(self._send(), name="redis-send"),
            asyncio.create_task(self._heartbeat(), name="redis-heartbeat"),
        ]

    async def publish(self, message: Routed) -> None:
        """Deliver to this process's sockets at once, then queue for the others (never waits on Redis)."""
        if self._deliver is None:
            raise RuntimeError("broker is not started: call start() before publish()")
        self.published += 1
        self._deliver(message)
        if not self.connected:
            self.lost += 1  # the others resume it from the store once Redis is back
            return
        try:
            self._queue.put_nowait(message.serialize())
        except asyncio.QueueFull:
            self.lost += 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._pub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pub.delete(NODE_KEY_PREFIX + self.node)  # the others announce our users at once
            await self._pub.aclose()
            self._pub = None
        self._deliver = None

    # --- background tasks -------------------------------------------------------------

    async def _receive(self) -> None:
        """Subscribe, deliver what the others publish, and reconnect with backoff when Redis goes."""
        backoff = _BACKOFF_FIRST_S
        ever_connected = False
        while True:
            client = _client(self.url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self.connected = True
                self.cluster.settle(time.monotonic())
                if ever_connected:
                    log.warning("redis broker: reconnected to %s; cross-process delivery resumes", self.url)
                ever_connected, backoff = True, _BACKOFF_FIRST_S
                while True:
                    # timeout=None would block in a read with no way to notice a half-open socket;
                    # a periodic wake-up costs nothing.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._received(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("redis broker: lost %s (%s); local delivery continues, reconnecting", self.url, exc)
                self.connected = False
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    def _received(self, data: bytes) -> None:
        try:
            routed = Routed.parse(data)
        except (ValueError, UnicodeDecodeError):
            log.warning("redis broker: dropped a malformed message (%d bytes)", len(data))
            return
        if routed.origin == self.node or self._deliver is None:
            return  # our own: delivered locally when we published it
        self._on_heard(routed)
        self._deliver(routed)

    async def _send(self) -> None:
        """Send queued messages in publication order, in pipelined batches, on one connection."""
        assert self._pub is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            if not self.connected:
                self.lost += len(batch)
                continue
            try:
                pipe = self._pub.pipeline(transaction=False)
                for data in batch:
                    pipe.publish(CHANNEL, data)
                await pipe.execute()
            except (RedisError, OSError):
                self.lost += len(batch)  # _receive notices Redis is gone and logs it

    async def _heartbeat(self) -> None:
        """Renew this node's key and read the others', every :data:`HEARTBEAT_S`."""
        assert self._pub is not None
        key = NODE_KEY_PREFIX + self.node
        while True:
            if self.connected:
                try:
                    await self._pub.set(key, self._local_state().to_json(), px=int(NODE_TTL_S * 1000))
                    states = await self._read_nodes()
                except (RedisError, OSError, ValueError):
                    pass  # _receive logs the loss; stale states stay until we read again
                else:
                    for departed in self.cluster.replace(states, time.monotonic()):
                        self._on_departed(departed)
            if self._on_tick is not None:
                try:
                    await self._on_tick()
                except Exception:  # a bug in the repair must not stop the heartbeat
                    log.exception("redis broker: the heartbeat's tick failed")
            await asyncio.sleep(HEARTBEAT_S)

    async def _read_nodes(self) -> dict[str, NodeState]:
        assert self._pub is not None
        keys = [key async for key in self._pub.scan_iter(match=NODE_KEY_PREFIX + "*", count=100)]
        if not keys:
            return {}
        values = await self._pub.mget(keys)
        states: dict[str, NodeState] = {}
        for key, value in zip(keys, values, strict=True):
            if value is not None:  # expired between SCAN and MGET
                name = key.decode()[len(NODE_KEY_PREFIX) :]
                states[name] = NodeState.from_json(value)
        return states


def merge_users(local: Iterable[tuple[int, str]], cluster: ClusterView | None) -> dict[int, str]:
    """Local users (id, name) and, with a Redis broker, every other live node's."""
    merged = dict(cluster.users()) if cluster is not None else {}
    merged.update(local)
    return merged
