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
online users and room members and its *incarnation* (random per process start), with a
TTL of a few seconds, renewed every second. A user is online if any live node has them;
a room's members and member count are the sum of every live node's (a big room's count
without walking it: see :meth:`ClusterView.count_elsewhere`). When a node's key expires
(it died), or another incarnation of it appears (it was restarted under the same name
before its key expired; it says hello on ``labserver:nodes`` before anything else), every
other node announces the old one's users offline *to its own sockets* (so each socket
hears it once), unless they are online elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .broker import Routed

log = logging.getLogger("labserver")

CHANNEL = "labserver:routed"
# A node's hello, {"node": ..., "incarnation": ...}, published on each (re)connection before
# anything else: the others learn of a restart before they hear the new process speak.
NODES_CHANNEL = "labserver:nodes"
NODE_KEY_PREFIX = "labserver:node:"
HEARTBEAT_S = 1.0  # how often a node renews its key (and reads the others')
NODE_TTL_S = 4.0  # a node whose key was not renewed this long is dead
_IN_FLIGHT_S = 0.1  # a message published before a key was written may be heard this much later
SEND_QUEUE_LIMIT = 10_000  # messages waiting for Redis; beyond, dropped (clients resume)
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0


# close(): delete this node's key only if it is still this incarnation's (a process restarted
# under the same name may have written its own already).
_DELETE_IF_OURS = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['incarnation'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BrokerUnavailable(Exception):
    """Redis cannot be reached (at start-up): the message is one line."""


# --- presence across nodes (pure: no I/O, the clock passed in) ----------------------------


@dataclass(frozen=True, slots=True)
class NodeState:
    """What one node says about itself: its online users, its rooms' members, and which start of
    its process it is (``incarnation``: random per start, so that a process restarted under the
    same ``--node`` name is seen as the old one leaving, then a new one arriving)."""

    users: dict[int, str] = field(default_factory=dict)  # user id -> username
    rooms: dict[str, dict[int, str]] = field(default_factory=dict)  # room -> member id -> username, join order
    incarnation: str = ""
    # When the key was written, on the *reader's* monotonic clock (from its remaining TTL; not
    # in the JSON): what was heard from the node before then is in it already. None: unknown.
    written: float | None = None

    def to_json(self) -> str:
        # Members by id only: their names are in ``users`` (a member is online on its node).
        rooms = {room: list(members) for room, members in self.rooms.items()}
        users = {str(k): v for k, v in self.users.items()}
        return json.dumps({"incarnation": self.incarnation, "users": users, "rooms": rooms})

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeState:
        """Raise ValueError (or TypeError, AttributeError) on anything but what :meth:`to_json` writes."""
        data = json.loads(text)
        users = {int(k): str(v) for k, v in data["users"].items()}
        rooms = {str(room): {int(u): users.get(int(u), "") for u in ids} for room, ids in data["rooms"].items()}
        return cls(users, rooms, str(data.get("incarnation", "")))


@dataclass(frozen=True, slots=True)
class Departed:
    """Users (and room memberships) that only a dead node had: the others announce them gone."""

    node: str
    users: dict[int, str]
    rooms: dict[str, dict[int, str]]  # room -> user id -> username


class ClusterView:
    """The other live nodes' users and room members, as last read from Redis (or heard live).

    The lab asks it whether a user is online *elsewhere* (then a local offline is not
    announced), merges it into the answers that list who is online or in a room, and adds
    :meth:`count_elsewhere` to a room's member count. A node leaves the view when its key
    expires, or when another incarnation of it says hello (:meth:`arrived`) or is read:
    either way what it had is returned as a :class:`Departed`, once."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.others: dict[str, NodeState] = {}
        # room -> user id -> on how many other nodes the user is in the room: membership elsewhere
        # in O(1), kept live by what is heard and rebuilt at each read.
        self.members: dict[str, dict[int, int]] = {}
        # room -> how many of those were in the room here too at the last read: a big room's count
        # without walking it on each join (see count_elsewhere).
        self.also_here: dict[str, int] = {}
        # Rooms whose members elsewhere changed at a read: a big room's member_count is due (the
        # others send no member_joined/member_left for it, so a read is how a change is learnt).
        self.recounted: set[str] = set()
        # What was heard live lately, replayed over each read: a node's key can be up to a
        # heartbeat older than its last message, and must not undo what the message said.
        self.heard: list[tuple[float, str, dict[str, Any]]] = []
        self.settle_until = 0.0  # after a (re)connection: nodes may not have re-written their keys yet
        # Incarnations replaced by a newer one, and when: a stale read of the old key (issued
        # before the hello) is not the old process coming back. Kept one TTL past the key.
        self.gone: dict[tuple[str, str], float] = {}
        self.hello_at: dict[str, float] = {}  # node -> its last hello: its key may not be read yet

    def online_elsewhere(self, user_id: int) -> bool:
        return any(user_id in state.users for state in self.others.values())

    def member_elsewhere(self, room: str, user_id: int) -> bool:
        return user_id in self.members.get(room, ())

    def users(self) -> dict[int, str]:
        found: dict[int, str] = {}
        for state in self.others.values():
            found.update(state.users)
        return found

    def room_members(self, room: str, limit: int | None = None) -> dict[int, str]:
        """The room's members on the other nodes; with ``limit``, at most that many per node
        (the first to join there): O(nodes x limit), for the join ack."""
        found: dict[int, str] = {}
        for state in self.others.values():
            members = state.rooms.get(room, {})
            found.update(members.items() if limit is None else islice(members.items(), limit))
        return found

    def count_elsewhere(self, room: str, here: Callable[[int], bool], exact_up_to: int) -> int:
        """Users in ``room`` on other nodes and not ``here``: what a room's member count adds.

        Exact while at most ``exact_up_to`` users are in it elsewhere (O(that), a bounded cost per
        join). Above, O(1): those elsewhere minus those also here at the last read, so a user
        with sockets on two nodes may count twice for up to a heartbeat."""
        members = self.members.get(room)
        if not members:
            return 0
        if len(members) <= exact_up_to:
            return sum(1 for uid in members if not here(uid))
        return max(0, len(members) - self.also_here.get(room, 0))

    def settle(self, now: float) -> None:
        """A (re)connection to Redis at ``now``: for one TTL, a missing key does not mean a dead node."""
        self.settle_until = now + NODE_TTL_S

    def replace(self, states: dict[str, NodeState], now: float, local: NodeState | None = None) -> list[Departed]:
        """The nodes read from Redis at ``now`` (``local``: what this node wrote just before);
        return what the nodes that vanished, or restarted, took with them."""
        self.gone = {k: t for k, t in self.gone.items() if now - t < 2 * NODE_TTL_S}
        states = {n: s for n, s in states.items() if n != self.node and (n, s.incarnation) not in self.gone}
        departed: list[Departed] = []
        for name, old in self.others.items():
            new = states.get(name)
            if new is None:
                # Settling, or its hello came before its key could be read: keep what we knew.
                if now < self.settle_until or now - self.hello_at.get(name, -NODE_TTL_S) < NODE_TTL_S:
                    states[name] = old
                else:
                    departed.append(self._departed(name, old, now))
            elif old.incarnation and new.incarnation != old.incarnation:  # restarted, hello missed
                departed.append(self._departed(name, old, now))
        self.others = states
        # Kept until the origin's key has surely been rewritten after them, or has expired: a node
        # that dies less than a heartbeat after a user came online never writes that user into
        # its key, and what it takes with it (above) must still name them. Replayed only over a
        # key written before they were heard: a newer key says already what they said, and
        # what came after (a join heard, then the user gone from the key: the join must not
        # bring them back).
        self.heard = [h for h in self.heard if now - h[0] < NODE_TTL_S + 2 * HEARTBEAT_S]
        for heard_at, origin, message in self.heard:
            state = states.get(origin)
            if state is not None and (state.written is None or heard_at > state.written - _IN_FLIGHT_S):
                self._apply(origin, message)
        self._reindex(local)
        return departed

    def arrived(self, node: str, incarnation: str, now: float) -> list[Departed]:
        """``node`` said hello at ``now`` (it (re)connected to Redis): if it is another incarnation
        than the one we knew, the old one is gone. Heard before any message of the new one (one
        connection, in order), so nothing the new one says is mistaken for the old one's."""
        if node == self.node:
            return []
        self.hello_at[node] = now
        old = self.others.get(node)
        if old is not None and old.incarnation in ("", incarnation):  # known (or not yet read): the same
            self.others[node] = NodeState(old.users, old.rooms, incarnation, old.written)
            return []
        departed = [self._departed(node, old, now)] if old is not None else []
        self.others[node] = NodeState(incarnation=incarnation)
        self._reindex(None)
        return departed

    def hear(self, origin: str, message: dict[str, Any], now: float) -> None:
        """A presence or membership message another node published, at ``now``: update its state
        at once, before its next heartbeat (so an answer right after it is right)."""
        self.heard.append((now, origin, message))
        self._apply(origin, message)

    def _departed(self, name: str, old: NodeState, now: float) -> Departed:
        """``name`` (as ``old``) is gone: what it said live went with it, and a stale key of it is ignored."""
        self.heard = [h for h in self.heard if h[1] != name]
        if old.incarnation:
            self.gone[(name, old.incarnation)] = now
        return Departed(name, dict(old.users), {room: dict(members) for room, members in old.rooms.items() if members})

    def _reindex(self, local: NodeState | None) -> None:
        """Rebuild :attr:`members` from the states, and :attr:`also_here` from ``local`` (kept if None);
        note in :attr:`recounted` the rooms whose count elsewhere changed."""
        before = {room: len(users) - self.also_here.get(room, 0) for room, users in self.members.items()}
        members: dict[str, dict[int, int]] = {}
        for state in self.others.values():
            for room, users in state.rooms.items():
                counts = members.setdefault(room, {})
                for uid in users:
                    counts[uid] = counts.get(uid, 0) + 1
        self.members = members
        if local is not None:
            self.also_here = {
                room: sum(1 for uid in local.rooms[room] if uid in users)
                for room, users in members.items()
                if room in local.rooms
            }
        after = {room: len(users) - self.also_here.get(room, 0) for room, users in members.items()}
        self.recounted.update(room for room in before.keys() | after.keys() if before.get(room) != after.get(room))

    def _apply(self, origin: str, message: dict[str, Any]) -> None:
        state = self.others.get(origin)
        if state is None:
            state = self.others[origin] = NodeState()
        user = message.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            return
        uid, name = user["id"], str(user.get("username", ""))
        kind = message.get("type")
        room = message.get("room")
        if kind == "presence":
            if message.get("online"):
                state.users[uid] = name
            else:
                state.users.pop(uid, None)
        elif kind == "member_joined" and isinstance(room, str):
            members = state.rooms.setdefault(room, {})
            if uid not in members:
                members[uid] = name
                state.users.setdefault(uid, name)
                counts = self.members.setdefault(room, {})
                counts[uid] = counts.get(uid, 0) + 1
        elif kind == "member_left" and isinstance(room, str):
            members = state.rooms.get(room, {})
            if members.pop(uid, None) is not None:
                if not members:
                    del state.rooms[room]
                counts = self.members.get(room, {})
                if counts.get(uid, 0) > 1:
                    counts[uid] -= 1
                else:
                    counts.pop(uid, None)
                    if not counts:
                        self.members.pop(room, None)


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

    ``node`` names this process (``origin`` of what it publishes); ``incarnation`` tells this
    start of it from any other under the same name. :meth:`attach` connects the presence
    heartbeat to the lab."""

    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = node
        self.incarnation = secrets.token_hex(8)
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
        self._malformed: set[str] = set()  # nodes whose key we could not read (logged once each)

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
        await self._stop_tasks()
        if self._pub is not None:
            with contextlib.suppress(RedisError, OSError):  # the others announce our users at their next read
                await self._pub.eval(_DELETE_IF_OURS, 1, NODE_KEY_PREFIX + self.node, self.incarnation)
            await self._pub.aclose()
            self._pub = None
        self._deliver = None

    # --- background tasks -------------------------------------------------------------

    async def _stop_tasks(self) -> None:
        """Cancel the background tasks and wait for them to end. A cancellation can be lost
        (it lands as a timeout inside redis-py fires, and comes out as a TimeoutError, which
        the receive loop takes for Redis going away): cancel again until each one is done."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)

    async def _receive(self) -> None:
        """Subscribe, deliver what the others publish, and reconnect with backoff when Redis goes."""
        backoff = _BACKOFF_FIRST_S
        ever_connected = False
        while True:
            client = _client(self.url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL, NODES_CHANNEL)
                # Our key, then our hello, before anything we publish (queued only once connected):
                # whoever hears the hello can read the key, and hears it before our first message.
                await self._write_key()
                hello = json.dumps({"node": self.node, "incarnation": self.incarnation})
                await self._publisher().publish(NODES_CHANNEL, hello)
                self.connected = True
                self.cluster.settle(time.monotonic())
                if ever_connected:
                    log.warning("redis broker: reconnected to %s; cross-process delivery resumes", self.url)
                ever_connected, backoff = True, _BACKOFF_FIRST_S
                while True:
                    # timeout=None would block in a read with no way to notice a half-open socket;
                    # a periodic wake-up costs nothing.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    if message["channel"] == NODES_CHANNEL.encode():
                        self._hello(message["data"])
                    else:
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

    def _hello(self, data: bytes) -> None:
        """A node (re)connected: if it is a new incarnation, the old one's users are gone."""
        try:
            hello = json.loads(data)
            node, incarnation = str(hello["node"]), str(hello["incarnation"])
        except (ValueError, KeyError, TypeError):
            log.warning("redis broker: dropped a malformed hello (%d bytes)", len(data))
            return
        if node == self.node and incarnation != self.incarnation:
            log.warning("redis broker: another process also calls itself node %r: give each its own --node", node)
        for departed in self.cluster.arrived(node, incarnation, time.monotonic()):
            self._on_departed(departed)

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
        while True:
            if self.connected:
                try:
                    local = await self._write_key()
                    states = await self._read_nodes()
                except (RedisError, OSError):
                    pass  # _receive logs the loss; stale states stay until we read again
                else:
                    for departed in self.cluster.replace(states, time.monotonic(), local):
                        self._on_departed(departed)
            if self._on_tick is not None:
                try:
                    await self._on_tick()
                except Exception:  # a bug in the repair must not stop the heartbeat
                    log.exception("redis broker: the heartbeat's tick failed")
            await asyncio.sleep(HEARTBEAT_S)

    def _publisher(self) -> aioredis.Redis:
        if self._pub is None:
            raise RuntimeError("broker is not started")
        return self._pub

    async def _write_key(self) -> NodeState:
        """Renew this node's key (its users and rooms, this incarnation) for one TTL; what it wrote."""
        state = self._local_state()
        state = NodeState(state.users, state.rooms, self.incarnation)
        await self._publisher().set(NODE_KEY_PREFIX + self.node, state.to_json(), px=int(NODE_TTL_S * 1000))
        return state

    async def _read_nodes(self) -> dict[str, NodeState]:
        """Every node's key, and when it was written (its TTL left, on our clock)."""
        pub = self._publisher()
        keys = [key async for key in pub.scan_iter(match=NODE_KEY_PREFIX + "*", count=100)]
        if not keys:
            return {}
        pipe = pub.pipeline(transaction=True)  # MULTI: each value with its own TTL
        pipe.mget(keys)
        for key in keys:
            pipe.pttl(key)
        values, *ttls = await pipe.execute()
        now = time.monotonic()
        states: dict[str, NodeState] = {}
        for key, value, ttl in zip(keys, values, ttls, strict=True):
            if value is None:  # expired between SCAN and MGET
                continue
            name = key.decode()[len(NODE_KEY_PREFIX) :]
            try:
                state = NodeState.from_json(value)
                written = now - (NODE_TTL_S - ttl / 1000) if ttl > 0 else None
                states[name] = NodeState(state.users, state.rooms, state.incarnation, written)
            except (ValueError, TypeError, KeyError, AttributeError):
                # Not ours (another version?): skipped, so it is not a live node. Raising here
                # would end the heartbeat, and then the others would take *us* for dead.
                if name not in self._malformed:
                    self._malformed.add(name)
                    log.warning("redis broker: ignoring the malformed key of node %r", name)
        return states


def merge_users(local: Iterable[tuple[int, str]], cluster: ClusterView | None) -> dict[int, str]:
    """Local users (id, name) and, with a Redis broker, every other live node's."""
    merged = dict(cluster.users()) if cluster is not None else {}
    merged.update(local)
    return merged
