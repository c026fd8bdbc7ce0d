"""The running lab: the hub, the store, the broker and the send path, wired together.

:class:`Lab` is the one object a request handler reaches (``request.app[LAB]``)
and the only one that routes. It imports nothing from aiohttp: sockets reach it
as :class:`~labserver.outlet.Outlet` objects, so the session logic built on it
runs in unit tests with no server. A broadcast is encoded to one frame once and
:meth:`Lab.write_all` writes it to every target in a plain loop, with no await,
no task and no JSON per recipient; each write goes through the target's outlet,
which drops a reader that fell too far behind (it reconnects and resumes what
it missed), so one slow reader never holds up the others.

The lab also holds the live :class:`~labserver.config.Switches` (read where they
act: the presence grace in :meth:`Lab.unregister`, the unsafe order in
:meth:`Lab.post_chat`...) and stores uploaded images (:meth:`Lab.save_upload`)
for both halves, REST and ``/ws``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .auth import AuthError, Claims, TokenIssuer
from .broker import Broker, Routed, TargetKind
from .chaos import Chaos
from .config import Settings, Switches
from .envelope import dm_parties, dm_room
from .frames import CloseCode, server_text_frame
from .hub import Connection, Hub, HubEvent, MembershipChanged, PresenceChanged, TypingChanged
from .messages import (
    EventsMessage,
    MemberCountMessage,
    MemberJoinedMessage,
    MemberLeftMessage,
    NotificationMessage,
    ObserveEvent,
    PostUpdatedMessage,
    PresenceMessage,
    ServerMessage,
    SnapshotMessage,
    TypingMessage,
    UserRef,
    message_of,
)
from .observe import Observatory
from .outlet import Outlet
from .ratelimit import Backoff, TokenBucket
from .redis_broker import ClusterView, Departed, NodeState, RedisBroker, SeqTracker
from .resources import cpu_seconds, rss_bytes
from .store import AsyncStore, NewMessage, Post, RoomTaken, StoredMessage, User

log = logging.getLogger("labserver")

# "@ana.alice" names a student's lesson account (rest.py STUDENT_SEPARATOR), not the student "ana".
MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,32}(?:\.[A-Za-z0-9_]{3,32})?)\b")
IMAGE_TYPES = {  # magic bytes -> (extension, content type); the client's Content-Type is not trusted
    b"\x89PNG\r\n\x1a\n": ("png", "image/png"),
    b"\xff\xd8\xff": ("jpg", "image/jpeg"),
    b"GIF87a": ("gif", "image/gif"),
    b"GIF89a": ("gif", "image/gif"),
}
PUBLIC_ROOMS = frozenset({"general", "lobby"})
"""Rooms no one may make private (see :meth:`Lab.create_private_room`)."""
UPLOAD_NAME = re.compile(r"[0-9a-f]{32}\.(png|jpg|gif|webp)")


def sniff_image(head: bytes) -> tuple[str, str] | None:
    """(extension, content type) of an image from its first bytes, or None: PNG, JPEG, GIF, WebP."""
    for magic, kind in IMAGE_TYPES.items():
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp", "image/webp"
    return None


class UploadRefused(Exception):
    """An upload that is not a supported image (``unsupported_type``) or is too large (``too_large``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Upload:
    """A stored image: its name is its content hash, so the same bytes are stored once."""

    name: str
    size: int
    content_type: str

    @property
    def url(self) -> str:
        return f"/uploads/{self.name}"


class UploadWriter:
    """One upload on its way to disk, a chunk at a time: hashed and sniffed as it streams, kept
    in a temporary file, never whole in memory. :meth:`Lab.save_upload_stream` drives it."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f".part-{os.urandom(8).hex()}"
        self._file = open(self.path, "xb")  # closed in finish() or discard()
        self._hash = hashlib.sha256()
        self.head = b""
        self.size = 0

    def write(self, chunk: bytes) -> None:
        if len(self.head) < 16:
            self.head += chunk[: 16 - len(self.head)]
        self._hash.update(chunk)
        self._file.write(chunk)  # to the page cache: microseconds for a 64 KiB chunk
        self.size += len(chunk)

    def finish(self, directory: Path, ext: str) -> tuple[str, bool]:
        """Move the file to its content-addressed name; return the name and whether it is new
        (the same bytes uploaded before are kept once)."""
        self._file.close()
        name = f"{self._hash.hexdigest()[:32]}.{ext}"
        if (directory / name).exists():
            self.path.unlink()
            return name, False
        self.path.replace(directory / name)
        return name, True

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(eq=False, slots=True)
class LongRead:
    """An open Server-Sent Events stream or a waiting long poll: a read that outlives its
    request's token check. Logout and the token's expiry end it, as they close a socket:
    ``ended`` then holds the reason (``logged out`` or ``token expired``)."""

    user_id: int
    expires_at: float  # the token's exp, Unix time
    ended: asyncio.Future[str]


@dataclass(eq=False, slots=True)
class EventStream:
    """One open Server-Sent Events stream, fed by :meth:`Lab.deliver_everywhere` like a socket: each message
    of its room is encoded as an event once, for every stream, and queued here for the stream's
    own task to write. No database query per stream per message."""

    room: str
    user_id: int
    on_overflow: Callable[[], None]  # the stream fell ``send_buffer_limit`` behind: cut it
    events: collections.deque[tuple[int, bytes]] = dataclasses.field(default_factory=collections.deque)
    queued: int = 0  # bytes in ``events``
    overflowed: bool = False
    waiter: asyncio.Future[None] | None = None  # set while the stream's task waits for an event

    def push(self, seq: int, event: bytes, limit: int) -> None:
        if self.overflowed:
            return
        if self.queued + len(event) > limit:  # a reader this far behind reconnects with Last-Event-ID
            self.overflowed = True
            self.events.clear()
            self.on_overflow()
        else:
            self.events.append((seq, event))
            self.queued += len(event)
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def pop(self) -> tuple[int, bytes]:
        seq, event = self.events.popleft()
        self.queued -= len(event)
        return seq, event


class Lab:
    def __init__(self, settings: Settings, store: AsyncStore, broker: Broker, issuer: TokenIssuer) -> None:
        self.settings = settings
        self.switches = Switches.of(settings)  # live: changed by PATCH /api/admin/switches
        self.chaos = Chaos()  # what the block_ms, cpu_ms and offload switches do to a chat
        self.db = store
        self.broker = broker
        self.issuer = issuer
        self.hub = Hub(typing_ttl=settings.typing_ttl, typing_min_interval=settings.typing_min_interval)
        self.observatory = Observatory(clock=time.time)
        if not settings.admin_token:
            # Anyone may observe a server without an admin token (on loopback only: beyond it the
            # server always has one): they see no private room, DM pair, signal target or text.
            self.observatory.hidden_room = self.hidden_from_observers
        # Observers let in by a user's token though the server has an admin token (a student's
        # Dashboard in class mode), each with its user's id: they get that same hidden view, the
        # admin token the whole one.
        self.hidden_observers: dict[Any, int] = {}
        # This process's name (--node): the origin of what it publishes, shown in /healthz and welcome.
        self.process_id = settings.node or f"p{os.getpid()}"
        # Clients are told the name only where it means something: several processes, one address.
        self.welcome_node = self.process_id if settings.node or settings.redis_url else None
        # With a Redis broker, the other processes' online users and room members (else None),
        # and the seqs delivered here, to deliver from the store what Redis lost (else None).
        self.cluster: ClusterView | None = None
        self.delivered_seqs: SeqTracker | None = None
        # Offlines (and member_lefts) not announced because another process had the user (in the
        # room): re-checked every heartbeat, in case that process let them go at the same moment
        # (then no one would say it), and then published, for every process's sockets.
        self.offline_held: dict[int, str] = {}
        self.left_held: dict[tuple[str, int], str] = {}  # (room, user id) -> username
        self.started_at = time.time()
        self.peers: set[Outlet] = set()  # every upgraded /ws socket, authenticated or not
        self.sockets_open = 0  # authenticated /ws sockets whose handler still runs (leak or not)
        self.room_waiters: dict[str, set[asyncio.Future[None]]] = {}  # long polls parked on a room
        self.event_streams: dict[str, set[EventStream]] = {}  # room -> its open SSE streams
        self.streams_per_user: dict[int, int] = {}  # user id -> how many SSE streams they have open
        self.long_reads: dict[int, set[LongRead]] = {}  # user id -> their open SSE streams and long polls
        self.closing = False  # set at shutdown: long polls answer at once
        # How shutdown closes every socket: 1001, or 1012 when the parent said it will restart us.
        self.shutdown_close: tuple[int, str] = (CloseCode.GOING_AWAY, "server shutting down")
        self.private_rooms: dict[str, frozenset[int]] = {}  # private room -> its members' ids
        self.generation = ""  # the database's (Store.generation), read at start: tokens carry it
        self.rest_buckets: dict[int, TokenBucket] = {}  # user id -> their REST writes' bucket
        self.signup_buckets: dict[str, TokenBucket] = {}  # client IP -> its sign-ups' bucket
        self.login_failures = Backoff(free=5)  # by username: guessing one account's password
        self.login_failures_by_ip = Backoff(free=20)  # by client IP: guessing many accounts' passwords
        self.uploading: dict[int, int] = {}  # user id -> uploads in progress
        self.uploaded_bytes: dict[int, int] = {}  # user id -> bytes of new images stored since start-up
        # Class mode: rooms the instructor paused (chats refused), and accounts made with the join code.
        self.paused_rooms: set[str] = set()
        self.signups_with_code = 0
        self.student_accounts: dict[int, int] = {}  # student's user id -> lesson accounts made this run
        # counters for /observe stats and /healthz
        self.messages_in = 0
        self.deliveries = 0
        self.dropped_slow = 0

    async def start(self) -> None:
        self.generation = await self.db.generation()
        self.hub.last_seq.update(await self.db.last_seqs())
        self.private_rooms.update(await self.db.private_rooms())
        if isinstance(self.broker, RedisBroker):
            self.cluster = self.broker.cluster
            self.delivered_seqs = SeqTracker()
            self.delivered_seqs.load(self.hub.last_seq)
            self.hub.members_elsewhere = self.members_elsewhere  # member counts are the cluster's
            self.broker.attach(self.node_state, self.announce_departed, self.hear_remote, self.heartbeat)
        await self.broker.start(self.deliver_everywhere)
        # What exists now (modules, the app, the settings: some 60,000 objects) lives as long as the
        # process. Frozen out of the cycle collector's sight, a full collection, which stops the loop,
        # walks only what came later (the sockets): a shorter pause. Collected first: no garbage frozen.
        gc.collect()
        gc.freeze()

    # --- the send path ---------------------------------------------------------------

    def write_all(self, targets: Iterable[Connection], frame: bytes) -> int:
        """Write one frame to every target; return how many took it."""
        written = 0
        for conn in targets:
            written += conn.sink.write(frame)
        return written

    def send(self, outlet: Outlet, message: ServerMessage) -> None:
        """Send one message to one socket (welcome, ack, error...), bounded like a broadcast."""
        outlet.write(server_text_frame(message.encode()))

    def note_dropped(self, who: str, user: UserRef | None, queued: int) -> None:
        """Account for a socket its outlet aborted as too slow (``user``: if authenticated)."""
        self.dropped_slow += 1
        log.info("dropping slow reader %s (%d bytes queued)", who, queued)
        if user is not None:
            self.observatory.emit(ObserveEvent.slow_consumer(who, user))

    def deliver_everywhere(self, routed: Routed) -> None:
        """What the broker calls for every routed message: :meth:`deliver` to the sockets, then
        the same message to the room's event streams (SSE)."""
        seqs = self.delivered_seqs
        if routed.seq and seqs is not None and not seqs.saw(routed.name, routed.seq, time.monotonic()):
            return  # delivered already: a repair from the store came first (Redis broker only)
        self.deliver(routed)
        streams = self.event_streams.get(routed.name) if routed.seq else None
        if streams:  # one encoding for every stream, as one frame for every socket
            event = f"id: {routed.seq}\ndata: {routed.payload}\n\n".encode()
            limit = self.settings.send_buffer_limit
            for stream in streams:
                stream.push(routed.seq, event, limit)

    def deliver(self, routed: Routed) -> None:
        """Deliver a routed message (from this process or another) to local sockets."""
        hub = self.hub
        kind, name = routed.kind, routed.name
        targets: Iterable[Connection]
        if kind is TargetKind.ROOM:
            targets = hub.room_targets(name)
        elif kind is TargetKind.DM:
            parties = dm_parties(name)
            targets = hub.user_targets(*parties) if parties else ()
            for conn in targets:  # two users' sockets: cheap, and resume needs it
                if conn.dm_live_from is None:
                    conn.dm_live_from = {}
                conn.dm_live_from.setdefault(name, routed.seq - 1)
        elif kind is TargetKind.USERS:
            targets = hub.user_targets(*(int(u) for u in name.split(",")))
        elif kind is TargetKind.TOPIC:
            targets = hub.topic_targets(name)
        else:
            targets = hub.socket_target(name)
        written = self.write_all(targets, server_text_frame(routed.payload))
        self.deliveries += written
        if routed.seq:
            hub.note_delivered(name, routed.seq)
            for waiter in self.room_waiters.pop(name, ()):
                if not waiter.done():
                    waiter.set_result(None)
        if self.observatory.active:
            self._observe_routed(routed, written)

    def _observe_routed(self, routed: Routed, written: int) -> None:
        # Decoded again only while someone watches, and from the payload: it may come from another process.
        message = json.loads(routed.payload)
        text = message.get("text")
        private = routed.kind is TargetKind.DM or message.get("type") == "signal" or routed.name in self.private_rooms
        self.observatory.emit(
            ObserveEvent.routed(
                message_type=message.get("type"),
                sender=message.get("from") or message.get("user"),
                to={"kind": str(routed.kind), "name": routed.name},
                size=len(routed.payload.encode()),
                recipients=written,
                seq=routed.seq or None,
                preview=None if private or not isinstance(text, str) else self.observatory.preview(text),
            )
        )

    async def publish(self, kind: TargetKind, name: str, message: ServerMessage, seq: int = 0) -> None:
        """Route ``message`` through the broker to every process's matching sockets."""
        await self.broker.publish(Routed(kind, name, message.encode(), seq, self.process_id))

    # --- authentication -------------------------------------------------------------

    def issue_token(self, user: User) -> str:
        """A new token for ``user``, carrying the database's generation."""
        return self.issuer.issue(user.id, user.username, now=time.time(), generation=self.generation)

    async def authenticate(self, token: str) -> tuple[User, Claims]:
        claims = self.issuer.verify(token, now=time.time())
        user = await self.db.user_by_id(claims.user_id)
        if user is None:
            raise AuthError("token names a user that does not exist")
        if claims.generation != self.generation:
            # Issued by another database (a reset, the key kept): its id may now be someone else's.
            raise AuthError("token is from before the database was reset")
        if claims.issued_at < user.tokens_valid_after:
            raise AuthError("token was revoked by a logout")
        return user, claims

    # --- lifecycle of an authenticated socket ----------------------------------------

    async def register(self, conn: Connection) -> None:
        self.sockets_open += 1
        self.observatory.emit(ObserveEvent.socket_opened(conn.socket_id, conn.user, self.process_id))
        await self.publish_hub_events(self.hub.connect(conn))

    async def unregister(self, conn: Connection, code: int | None, reason: str) -> None:
        """The socket's handler is ending: forget the socket everywhere (its ``finally``)."""
        self.sockets_open -= 1
        if self.switches.leaky_cleanup:
            # The deliberate bug of the leaky_cleanup switch: the cleanup is skipped, so the hub's
            # maps keep the dead socket, its user stays online and every broadcast still visits it.
            return
        events = self.hub.disconnect(conn, now=time.monotonic(), grace=self.switches.presence_grace)
        self.observatory.emit(ObserveEvent.socket_closed(conn.socket_id, conn.user, code, reason))
        await self.publish_hub_events(events)

    async def publish_due(self, now: float) -> None:
        """Announce the offlines and member_lefts whose presence grace is over (``now``: monotonic)."""
        await self.publish_hub_events(self.hub.due(now))
        for room, count in self.hub.take_member_counts():  # big rooms: one count per tick, not one per join
            message = MemberCountMessage(room, count)
            if self.cluster is None:
                await self.publish(TargetKind.ROOM, room, message)
            else:
                # With Redis, each process tells its own sockets the cluster's count as it knows it,
                # and again when a heartbeat changes what it knows of the others (see heartbeat):
                # published, each process's count would reach every socket, and the last one wins.
                self.deliver_everywhere(Routed(TargetKind.ROOM, room, message.encode(), 0, self.process_id))

    def set_switches(self, changes: dict[str, Any]) -> Switches:
        """Change some switches, all or none (:class:`~labserver.config.SwitchError` names a bad one)."""
        self.switches.apply(changes)
        if self.switches.offload:
            self.chaos.warm_up()  # its worker processes start now, not during the first offloaded chat
        self.observatory.emit(ObserveEvent.switches(self.switches.to_json()))
        return self.switches

    async def publish_hub_events(self, events: Iterable[HubEvent]) -> None:
        """Turn the hub's decisions into messages and route them.

        With Redis, a user's presence and membership are the whole cluster's: a change on this
        process is not announced while another live process has the user (or them in the room)."""
        cluster = self.cluster
        for event in events:
            user = UserRef(event.user_id, event.username)
            if isinstance(event, PresenceChanged):
                self.observatory.emit(ObserveEvent.presence(user, event.online))
                if cluster is not None and cluster.online_elsewhere(event.user_id):
                    if event.online:
                        self.offline_held.pop(event.user_id, None)
                    else:
                        self.offline_held[event.user_id] = event.username
                    continue
                await self.publish(TargetKind.TOPIC, "presence", PresenceMessage(user, event.online))
            elif isinstance(event, MembershipChanged):
                self.observatory.emit(ObserveEvent.membership(user, event.room, joined=event.joined))
                if cluster is not None and cluster.member_elsewhere(event.room, event.user_id):
                    if not event.joined:
                        self.left_held[(event.room, event.user_id)] = event.username
                    continue
                message = (MemberJoinedMessage if event.joined else MemberLeftMessage)(event.room, user)
                await self.publish(TargetKind.ROOM, event.room, message)
            elif isinstance(event, TypingChanged):
                await self.publish(TargetKind.ROOM, event.room, TypingMessage(event.room, user, event.active))

    # --- presence across processes (a Redis broker) ------------------------------------

    def is_online(self, user_id: int) -> bool:
        """Online here (see :meth:`Hub.is_online`) or, with Redis, on another live process."""
        return self.hub.is_online(user_id) or (self.cluster is not None and self.cluster.online_elsewhere(user_id))

    def online_users(self) -> list[UserRef]:
        """Every online user, by id: this process's and, with Redis, every live process's."""
        users = self.cluster.users() if self.cluster is not None else {}
        users.update((u.id, u.username) for u in self.hub.online_users())
        return [UserRef(uid, users[uid]) for uid in sorted(users)]

    def room_members(self, room: str, limit: int | None = None) -> list[UserRef]:
        """The users in ``room`` (at most ``limit``, by id): here and, with Redis, on every live process."""
        local = self.hub.room_members(room, limit)
        if self.cluster is None:
            return local
        users = self.cluster.room_members(room, limit)  # at most limit per process: O(processes x limit)
        users.update((u.id, u.username) for u in local)
        ids = sorted(users)[:limit] if limit is not None else sorted(users)
        return [UserRef(uid, users[uid]) for uid in ids]

    def room_members_page(self, room: str, after: int, limit: int) -> list[UserRef]:
        """Members with a user id above ``after``, by id, at most ``limit`` (REST paging): here and,
        with Redis, on every live process (O(room), as the page of one process is)."""
        if self.cluster is None:
            return self.hub.room_members_page(room, after, limit)
        users = self.cluster.room_members(room)
        users.update((u.id, u.username) for u in self.hub.room_members(room))
        return [UserRef(uid, users[uid]) for uid in sorted(uid for uid in users if uid > after)[:limit]]

    def members_elsewhere(self, room: str) -> int:
        """Users in ``room`` on other live processes and not here (Redis broker): what the hub adds
        to its own count. Exact for rooms not big elsewhere; O(1) for big ones (ClusterView.count_elsewhere)."""
        if self.cluster is None:
            return 0
        users, leaving = self.hub.room_users.get(room, {}), self.hub.leaving.get(room, {})
        return self.cluster.count_elsewhere(room, lambda uid: uid in users or uid in leaving, self.hub.announce_limit)

    def node_state(self) -> NodeState:
        """What this process's heartbeat tells the others: its online users and its rooms' members."""
        hub = self.hub
        users = {u.id: u.username for u in hub.online_users()}
        rooms = {room: {u.id: u.username for u in hub.room_members(room)} for room in {*hub.rooms, *hub.leaving}}
        return NodeState(users, rooms)

    def hear_remote(self, routed: Routed) -> None:
        """A message from another process, before delivery: its presence and membership changes
        update :attr:`cluster` at once. Only those are decoded (a cheap prefix test skips chat)."""
        if self.cluster is not None and routed.payload.startswith(('{"type":"presence"', '{"type":"member_')):
            message = json.loads(routed.payload)
            self.cluster.hear(routed.origin, message, time.monotonic())
            if message["type"] == "presence":  # another process said it: no need to say it here
                self.offline_held.pop(message["user"]["id"], None)
            elif message["type"] == "member_left":
                self.left_held.pop((message["room"], message["user"]["id"]), None)

    async def heartbeat(self) -> None:
        """Every second (Redis broker), Redis there or not: publish the held-back member_lefts and
        offlines no process said (:attr:`offline_held`), and deliver from the store the chat and DM messages that
        Redis lost for this process (published while it, or their publisher, was cut from Redis),
        once a room has been behind longer than a message takes in flight. They reach sockets
        out of order, as a resume's older messages do; a seq is still delivered once."""
        hub, cluster = self.hub, self.cluster
        for (room, uid), name in list(self.left_held.items()):  # see offline_held
            if uid in hub.room_users.get(room, {}) or uid in hub.leaving.get(room, {}):
                del self.left_held[(room, uid)]  # back here: nothing to say
            elif cluster is None or not cluster.member_elsewhere(room, uid):
                del self.left_held[(room, uid)]
                await self.publish(TargetKind.ROOM, room, MemberLeftMessage(room, UserRef(uid, name)))
        for uid, name in list(self.offline_held.items()):
            if not self.is_online(uid):
                del self.offline_held[uid]
                await self.publish(TargetKind.TOPIC, "presence", PresenceMessage(UserRef(uid, name), False))
        if cluster is not None:  # big rooms whose members elsewhere changed: a member_count at the next tick
            for room in cluster.recounted:
                if room in hub.rooms and hub.member_count(room) > hub.announce_limit:
                    hub.member_counts_changed.add(room)
            cluster.recounted.clear()
        seqs = self.delivered_seqs
        if seqs is None:
            return
        seqs.note_stored(await self.db.last_seqs(), time.monotonic())
        for room, _ in seqs.stuck(time.monotonic(), patience=1.0):
            await self.catch_up(room)

    async def catch_up(self, room: str) -> None:
        """Deliver the messages of ``room`` that are in the store but were not delivered here yet
        (Redis broker; nothing without it). A ``resume`` calls it first, so that a client coming
        from another process is never "ahead" of this one."""
        seqs = self.delivered_seqs
        if seqs is None:
            return
        rows = await self.db.messages_after(room, seqs.contiguous.get(room, 0), self.settings.resume_limit)
        kind = TargetKind.DM if dm_parties(room) is not None else TargetKind.ROOM
        for row in rows:  # no await in this loop: a live copy arriving meanwhile is dropped by saw()
            self.deliver_everywhere(Routed(kind, room, message_of(row).encode(), row.seq, "store"))
        if len(rows) >= self.settings.resume_limit:  # too far behind: skip the rest, clients resync
            seqs.skip_to(room, await self.db.last_seq(room))
        if rows:
            log.info("delivered %d message(s) of %s from the store: Redis lost them", len(rows), room)

    def announce_departed(self, departed: Departed) -> None:
        """Another process died (its heartbeat expired, or another incarnation of it appeared): tell
        *this* process's sockets that its
        users left their rooms and went offline, unless they are here or on another live process.
        Each process tells only its own sockets, so every socket hears it once."""
        cluster, hub = self.cluster, self.hub
        for room, users in departed.rooms.items():
            if hub.member_count(room) + len(users) > hub.announce_limit:
                # A big room (it was, with them): one member_count at the next tick, not a
                # member_left per user to every member, O(room) each.
                if room in hub.rooms:
                    hub.member_counts_changed.add(room)
                continue
            here = hub.room_users.get(room, {}).keys() | hub.leaving.get(room, {}).keys()
            for uid, name in users.items():
                if uid in here:
                    continue
                if cluster is not None and cluster.member_elsewhere(room, uid):
                    continue
                self.left_held.pop((room, uid), None)  # every process tells its own sockets: not to publish
                message = MemberLeftMessage(room, UserRef(uid, name))
                self.deliver_everywhere(Routed(TargetKind.ROOM, room, message.encode(), 0, departed.node))
        for uid, name in departed.users.items():
            if self.is_online(uid):
                continue
            self.offline_held.pop(uid, None)
            user = UserRef(uid, name)
            self.observatory.emit(ObserveEvent.presence(user, False))
            self.deliver_everywhere(
                Routed(TargetKind.TOPIC, "presence", PresenceMessage(user, False).encode(), 0, departed.node)
            )
        log.warning("node %s is gone: announced %d of its users offline here", departed.node, len(departed.users))

    # --- features shared by WebSocket and REST ---------------------------------------

    async def _store(self, sender: UserRef, room: str, text: str) -> StoredMessage:
        new = NewMessage(room, sender.id, text, time.time())
        if self.switches.persist_after_broadcast:
            # The unsafe order: the caller broadcasts and acks a message that is still only in
            # memory; a write-behind task puts it on disk up to a second later (lost on SIGKILL).
            return await self.db.append_message_later(new, sender.username)
        return await self.db.append_message(new)

    async def post_chat(self, sender: UserRef, room: str, text: str) -> StoredMessage:
        """Persist, then broadcast: a message is acknowledged only once it is on disk
        (unless the ``persist_after_broadcast`` switch asks for the unsafe order)."""
        stored = await self._store(sender, room, text)
        await self.publish(TargetKind.ROOM, room, message_of(stored), stored.seq)
        stopped = self.hub.stop_typing(room, sender.id, sender.username)
        await self.publish_hub_events([stopped] if stopped else [])
        return stored

    async def post_dm(self, sender: UserRef, to: int, text: str) -> StoredMessage:
        stored = await self._store(sender, dm_room(sender.id, to), text)
        await self.publish(TargetKind.DM, stored.room, message_of(stored), stored.seq)
        return stored

    async def notify(self, user_id: int, kind: str, actor: User, post_id: int | None, text: str) -> None:
        """Store a notification for ``user_id``, then push it to all their sockets."""
        note = await self.db.add_notification(user_id, kind, actor.id, post_id, text, time.time())
        await self.publish(TargetKind.USERS, str(note.user_id), NotificationMessage.of(note))

    async def post_updated(self, post: Post) -> None:
        await self.publish(TargetKind.TOPIC, f"post:{post.id}", PostUpdatedMessage.of(post))

    async def notify_mentions(self, actor: User, text: str, post_id: int, kind_text: str) -> None:
        for name in dict.fromkeys(n.lower() for n in MENTION.findall(text)):  # names are case-insensitive
            user = await self.db.user_by_name(name)
            if user is not None and user.id != actor.id:
                await self.notify(user.id, "mention", actor, post_id, kind_text)

    async def save_upload(self, data: bytes, user_id: int) -> Upload:
        """Check and store one image that is in memory already (a binary message on ``/ws``, at
        most ``max_message_bytes``), as :meth:`save_upload_stream` does with a streamed one."""

        async def one_chunk() -> AsyncIterator[bytes]:
            yield data

        return await self.save_upload_stream(one_chunk(), user_id)

    async def save_upload_stream(self, chunks: AsyncIterator[bytes], user_id: int) -> Upload:
        """Check and store one image as its bytes arrive: its type sniffed from its first bytes, at
        most ``upload_max_bytes``, within the user's ``upload_quota_bytes``, named by its hash.

        At most ``uploads_per_user`` at once per user (``too_many_uploads``). The bytes go to a
        temporary file as they come: an upload never sits whole in memory, and one refused or
        cut off midway is deleted at once (the caller's exception passes through)."""
        settings = self.settings
        if self.uploading.get(user_id, 0) >= settings.uploads_per_user:
            raise UploadRefused(
                "too_many_uploads", f"at most {settings.uploads_per_user} uploads at once per user; wait for one to end"
            )
        self.uploading[user_id] = self.uploading.get(user_id, 0) + 1
        writer = UploadWriter(settings.uploads_dir)
        try:
            room = settings.upload_quota_bytes - self.uploaded_bytes.get(user_id, 0)
            async for chunk in chunks:
                writer.write(chunk)
                if writer.size > settings.upload_max_bytes:
                    raise UploadRefused("too_large", f"upload over {settings.upload_max_bytes} bytes")
                if writer.size > room:
                    raise UploadRefused(
                        "quota_exceeded",
                        f"your uploads would pass the {settings.upload_quota_bytes} bytes one user may store",
                    )
                if len(writer.head) >= 12 and sniff_image(writer.head) is None:  # refused before the rest comes
                    break
            kind = sniff_image(writer.head)
            if kind is None:
                raise UploadRefused("unsupported_type", "only PNG, JPEG, GIF and WebP images are accepted")
            ext, content_type = kind
            name, new = writer.finish(settings.uploads_dir, ext)
            if new:  # the same bytes again cost no disk, and count once
                self.uploaded_bytes[user_id] = self.uploaded_bytes.get(user_id, 0) + writer.size
            return Upload(name, writer.size, content_type)
        except BaseException:
            writer.discard()
            raise
        finally:
            left = self.uploading.get(user_id, 1) - 1
            if left:
                self.uploading[user_id] = left
            else:
                self.uploading.pop(user_id, None)

    def can_read_room(self, user_id: int, room: str) -> bool:
        return self.read_refusal(user_id, room) is None

    def read_refusal(self, user_id: int, room: str) -> str | None:
        """Why ``user_id`` may not join, read or post in ``room``, or None. A DM room is its two
        parties', a private room its members'; every other room is public."""
        members = self.private_rooms.get(room)
        if members is not None:
            return None if user_id in members else f"room {room!r} is private"
        parties = dm_parties(room)
        return None if parties is None or user_id in parties else f"room {room!r} is another pair's direct messages"

    async def create_private_room(self, owner: User, name: str, member_ids: list[int]) -> list[int]:
        # The rooms the lab's own clients meet in are never private: whoever claimed one first
        # would lock everyone else out of it (the browser client and the toolkit join "general").
        if name in PUBLIC_ROOMS or name in self.private_rooms or self.hub.rooms.get(name):
            raise RoomTaken(name)
        self.private_rooms[name] = frozenset()  # reserved: no one joins while the store writes
        try:
            members = await self.db.create_private_room(name, owner.id, member_ids, time.time())
        except BaseException:
            del self.private_rooms[name]
            raise
        self.private_rooms[name] = frozenset(members)
        return members

    async def wait_for_room(self, room: str, timeout: float, read: LongRead | None = None) -> None:
        """Park a long poll until the next message in ``room``, ``timeout`` seconds, or the end
        of ``read`` (a logout or its token's expiry).

        Each poll parks its own future and removes it when it returns (or its client goes
        away), so polls on rooms that never get a message leave nothing behind."""
        waiter = asyncio.get_running_loop().create_future()
        waiters = self.room_waiters.setdefault(room, set())
        waiters.add(waiter)
        try:
            if read is None:
                await asyncio.wait_for(waiter, timeout)
            else:  # wait() neither raises on timeout nor cancels the futures it watches
                await asyncio.wait((waiter, read.ended), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            pass
        finally:
            waiters.discard(waiter)
            if not waiters and self.room_waiters.get(room) is waiters:
                del self.room_waiters[room]

    # --- limits of HTTP clients --------------------------------------------------------------

    def rest_write_wait(self, user_id: int, now: float) -> float:
        """0 if ``user_id`` may make a REST write at ``now`` (monotonic; it takes a token), else the
        seconds until they may."""
        rate = self.settings.rest_rate_limit
        if not rate:
            return 0.0
        bucket = self.rest_buckets.get(user_id)
        if bucket is None:
            bucket = self.rest_buckets[user_id] = TokenBucket(rate, self.settings.rest_burst, now)
        return 0.0 if bucket.allow(now) else bucket.wait(now)

    def signup_wait(self, ip: str, now: float) -> float:
        """0 if ``ip`` may sign up at ``now`` (monotonic), else the seconds until it may."""
        per_minute = self.settings.signup_rate_limit
        if not per_minute:
            return 0.0
        bucket = self.signup_buckets.get(ip)
        if bucket is None:
            if len(self.signup_buckets) >= 10_000:  # a bound: the oldest IP is forgotten
                del self.signup_buckets[next(iter(self.signup_buckets))]
            bucket = self.signup_buckets[ip] = TokenBucket(per_minute / 60, 10, now)
        return 0.0 if bucket.allow(now) else bucket.wait(now)

    # --- long-lived reads: SSE streams and long polls ------------------------------------

    def open_event_stream(self, room: str, user_id: int, on_overflow: Callable[[], None]) -> EventStream:
        """Register an SSE stream on ``room``: from now on :meth:`deliver` queues the room's messages
        on it. :meth:`close_event_stream` when it ends."""
        stream = EventStream(room, user_id, on_overflow)
        self.event_streams.setdefault(room, set()).add(stream)
        self.streams_per_user[user_id] = self.streams_per_user.get(user_id, 0) + 1
        return stream

    def close_event_stream(self, stream: EventStream) -> None:
        streams = self.event_streams.get(stream.room)
        if streams is None or stream not in streams:
            return  # closed already: counted down once
        streams.discard(stream)
        if not streams:
            del self.event_streams[stream.room]
        left = self.streams_per_user[stream.user_id] - 1
        if left:
            self.streams_per_user[stream.user_id] = left
        else:
            del self.streams_per_user[stream.user_id]

    def user_streams(self, user_id: int) -> int:
        """How many SSE streams ``user_id`` has open (a count kept as they open and close: the
        per-user cap is checked at every stream's start, and walking them all would cost O(streams))."""
        return self.streams_per_user.get(user_id, 0)

    def open_long_read(self, user_id: int, claims: Claims) -> LongRead:
        """Register a read that stays open past its token check; :meth:`close_long_read` when it ends."""
        read = LongRead(user_id, claims.expires_at, asyncio.get_running_loop().create_future())
        self.long_reads.setdefault(user_id, set()).add(read)
        return read

    def close_long_read(self, read: LongRead) -> None:
        reads = self.long_reads.get(read.user_id)
        if reads is not None:
            reads.discard(read)
            if not reads:
                del self.long_reads[read.user_id]

    def end_long_reads(self, user_id: int, reason: str) -> int:
        """End every open SSE stream and long poll of ``user_id`` (a logout); return how many."""
        ended = 0
        for read in self.long_reads.get(user_id, ()):
            if not read.ended.done():
                read.ended.set_result(reason)
                ended += 1
        return ended

    def expire_long_reads(self, now: float) -> None:
        """End the reads whose token has expired at ``now`` (Unix time), as sockets are closed 1008."""
        for reads in self.long_reads.values():
            for read in reads:
                if read.expires_at <= now and not read.ended.done():
                    read.ended.set_result("token expired")

    # --- numbers for /healthz and /observe -----------------------------------------------

    def broker_status(self) -> dict[str, Any]:
        """This process's name and its broker's: ``memory`` (alone) or ``redis`` (and whether it is connected)."""
        redis = isinstance(self.broker, RedisBroker)
        connected = self.broker.connected if isinstance(self.broker, RedisBroker) else True
        return {"node": self.process_id, "broker": "redis" if redis else "memory", "broker_connected": connected}

    def stats(self) -> dict[str, Any]:
        return {
            **self.hub.counts(),
            "sockets_open": self.sockets_open,
            "sockets_tracked": self.hub.tracked_sockets(),  # > sockets_open: the cleanup leaks
            "peers": len(self.peers),  # upgraded /ws sockets, authenticated or not
            # Long polls and SSE streams waiting for a message.
            "long_polls": sum(len(waiters) for waiters in self.room_waiters.values())
            + sum(s.waiter is not None and not s.waiter.done() for ss in self.event_streams.values() for s in ss),
            "messages_in": self.messages_in,
            "deliveries": self.deliveries,
            "dropped_slow": self.dropped_slow,
            "rss_bytes": rss_bytes(),
            "cpu_s": round(cpu_seconds(), 3),  # since the process started; a rate is two samples apart
        }

    def hidden_from_observers(self, room: str) -> bool:
        """A room whose name an observer without the admin token does not see: private or DM."""
        return room in self.private_rooms or dm_parties(room) is not None

    def snapshot(self, hidden: bool = False) -> SnapshotMessage:
        """The state for ``/observe``; ``hidden``: as an observer without the admin token sees it."""
        snapshot = dataclasses.replace(
            SnapshotMessage.of(self.hub, self.stats(), self.switches.to_json()), node=self.process_id
        )
        hide = self.observatory.hidden_room or (self.hidden_from_observers if hidden else None)
        return snapshot if hide is None else snapshot.without_rooms(hide)

    def hidden_batch(self, batch: EventsMessage) -> EventsMessage:
        """``batch`` as an observer without the admin token sees it (the events are copied, not changed)."""
        events = []
        for event in batch.events:
            fields = dict(event)
            if Observatory._redact(fields, self.hidden_from_observers):
                events.append(fields)
        return EventsMessage(tuple(events), batch.dropped)

    def flush_observers(self) -> None:
        """Send the pending observation batch to every observer; a snapshot where one was missed or lost.

        An observer that cannot keep up misses batches rather than queueing them (it is not
        dropped like a slow chat reader), and catches up from a snapshot once it drains."""
        observatory = self.observatory
        batch, stale = observatory.flush()
        if batch is None and not stale and not observatory.behind:
            return
        # Each frame is encoded once for all the observers of its view (full, hidden), and only if one needs it.
        frames: dict[bool, bytes] = {}
        snapshots: dict[bool, bytes] = {}
        limit = self.settings.send_buffer_limit
        for outlet in list(observatory.observers):
            if outlet.closing:
                continue
            if outlet.buffered > limit:
                observatory.behind.add(outlet)
                continue
            behind = outlet in observatory.behind
            hidden = outlet in self.hidden_observers
            if batch is not None and not behind:
                if hidden not in frames:
                    frames[hidden] = server_text_frame((self.hidden_batch(batch) if hidden else batch).encode())
                outlet.write(frames[hidden])
            if stale or behind:
                if hidden not in snapshots:
                    snapshots[hidden] = server_text_frame(self.snapshot(hidden).encode())
                outlet.write(snapshots[hidden])
                observatory.behind.discard(outlet)

    # --- shutdown -----------------------------------------------------------------------

    def stopping_for_restart(self) -> None:
        """The coming shutdown is a restart: sockets are closed with 1012 (service restart)."""
        self.shutdown_close = (CloseCode.SERVICE_RESTART, "service restart")

    async def close_all(self, code: int, reason: str) -> None:
        self.closing = True
        outlets = list(self.peers) + list(self.observatory.observers)
        await asyncio.gather(*(outlet.close(code, reason) for outlet in outlets), return_exceptions=True)
        for waiters in self.room_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        for streams in self.event_streams.values():
            for stream in streams:
                stream.wake()
