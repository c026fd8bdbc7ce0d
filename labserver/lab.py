"""The running lab: the hub, the store, the broker and the send path, wired together.

:class:`Lab` is the one object a request handler reaches (``request.app[LAB]``).
It owns the only way bytes reach a WebSocket: :meth:`Lab.write_all`, which writes
one pre-encoded frame to each target in a plain loop, with no await, no task and
no JSON per recipient. A reader whose send buffer passes
``Settings.send_buffer_limit`` is dropped there (its TCP connection aborted), so
one slow reader never holds up the others and never grows the server's memory;
it reconnects and resumes what it missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from .auth import AuthError, Claims, TokenIssuer
from .broker import Broker, Routed, TargetKind
from .config import Settings
from .envelope import dm_parties, dm_room, encode
from .frames import server_text_frame
from .hub import Connection, Hub, HubEvent, MembershipChanged, PresenceChanged, TypingChanged
from .observe import Observatory
from .store import AsyncStore, NewMessage, Notification, Post, RoomTaken, StoredMessage, User

log = logging.getLogger("labserver")

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,32})\b")


class Peer:
    """The adapter's handle on one WebSocket: the aiohttp response and its transport."""

    __slots__ = ("ws", "transport")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self.ws = ws
        self.transport = transport


def rss_bytes() -> int:
    """Resident memory of this process (Linux), 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def new_socket_id() -> str:
    """Per-connection id: random, so it differs on every reconnect and never equals a user id."""
    return "s_" + secrets.token_urlsafe(9)


class Lab:
    def __init__(self, settings: Settings, store: AsyncStore, broker: Broker, issuer: TokenIssuer) -> None:
        self.settings = settings
        self.db = store
        self.broker = broker
        self.issuer = issuer
        self.hub = Hub(typing_ttl=settings.typing_ttl, typing_min_interval=settings.typing_min_interval)
        self.observatory = Observatory()
        self.process_id = f"p{os.getpid()}"
        self.started_at = time.time()
        self.peers: set[Peer] = set()  # every upgraded /ws socket, authenticated or not
        self.room_waiters: dict[str, set[asyncio.Future[None]]] = {}  # long polls parked on a room
        self.closing = False  # set at shutdown: long polls answer at once
        self.private_rooms: dict[str, frozenset[int]] = {}  # private room -> its members' ids
        # counters for /observe stats and /healthz
        self.messages_in = 0
        self.deliveries = 0
        self.dropped_slow = 0

    async def start(self) -> None:
        self.hub.last_seq.update(await self.db.call("last_seqs"))
        self.private_rooms.update(await self.db.call("private_rooms"))
        await self.broker.start(self.deliver)

    # --- the send path ---------------------------------------------------------------

    def write_all(self, targets: Iterable[Connection], frame: bytes) -> int:
        """Write one frame to every target; return how many were written."""
        limit = self.settings.send_buffer_limit
        written = 0
        for conn in targets:
            transport = conn.sink.transport
            if transport.is_closing():  # lost or closing: its handler will unregister it
                continue
            if transport.get_write_buffer_size() > limit:
                self.drop_slow(conn.sink, conn)
                continue
            transport.write(frame)
            written += 1
        return written

    def send(self, peer: Peer, message: dict[str, Any]) -> None:
        """Send one message to one socket (welcome, ack, error...), bounded like a broadcast."""
        transport = peer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.settings.send_buffer_limit:
            # A client that sends but never reads would otherwise grow our buffer forever.
            self.drop_slow(peer)
            return
        transport.write(server_text_frame(encode(message)))

    def drop_slow(self, peer: Peer, conn: Connection | None = None) -> None:
        """Abort a socket whose unsent data passed ``send_buffer_limit`` (``conn``: if authenticated)."""
        transport = peer.transport
        if transport.is_closing():
            return
        self.dropped_slow += 1
        who = conn.socket_id if conn is not None else transport.get_extra_info("peername")
        log.info("dropping slow reader %s (%d bytes queued)", who, transport.get_write_buffer_size())
        if conn is not None:
            self.observatory.emit("slow_consumer", socket_id=conn.socket_id, user=conn.user)
        transport.abort()  # its handler's finally unregisters it on the next loop turn

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
        message = json.loads(routed.payload)  # only while someone watches
        sender = message.get("from") or message.get("user")
        text = message.get("text")
        private = routed.kind is TargetKind.DM or message.get("type") == "signal" or routed.name in self.private_rooms
        self.observatory.emit(
            "routed",
            type=message.get("type"),
            to={"kind": str(routed.kind), "name": routed.name},
            size=len(routed.payload.encode()),
            recipients=written,
            seq=routed.seq or None,
            preview=None if private or not isinstance(text, str) else self.observatory.preview(text),
            **{"from": sender},
        )

    async def publish(self, kind: TargetKind, name: str, message: dict[str, Any], seq: int = 0) -> None:
        await self.broker.publish(Routed(kind, name, encode(message), seq, self.process_id))

    # --- authentication -------------------------------------------------------------

    async def authenticate(self, token: str) -> tuple[User, Claims]:
        claims = self.issuer.verify(token)
        user = await self.db.call("user_by_id", claims.user_id)
        if user is None:
            raise AuthError("token names a user that does not exist")
        if claims.issued_at < user.tokens_valid_after:
            raise AuthError("token was revoked by a logout")
        return user, claims

    # --- lifecycle of an authenticated socket ----------------------------------------

    async def register(self, conn: Connection) -> None:
        self.observatory.emit("socket_opened", socket_id=conn.socket_id, user=conn.user)
        await self.publish_hub_events(self.hub.connect(conn))

    async def unregister(self, conn: Connection, code: int | None, reason: str) -> None:
        events = self.hub.disconnect(conn)
        self.observatory.emit("socket_closed", socket_id=conn.socket_id, user=conn.user, code=code, reason=reason)
        await self.publish_hub_events(events)

    async def publish_hub_events(self, events: list[HubEvent]) -> None:
        for event in events:
            user = {"id": event.user_id, "username": event.username}
            if isinstance(event, PresenceChanged):
                self.observatory.emit("presence", user=user, online=event.online)
                await self.publish(TargetKind.TOPIC, "presence", {"type": "presence", "user": user, "online": event.online})
            elif isinstance(event, MembershipChanged):
                kind = "member_joined" if event.joined else "member_left"
                self.observatory.emit("joined" if event.joined else "left", user=user, room=event.room)
                await self.publish(TargetKind.ROOM, event.room, {"type": kind, "room": event.room, "user": user})
            elif isinstance(event, TypingChanged):
                message = {"type": "typing", "room": event.room, "user": user, "active": event.active}
                await self.publish(TargetKind.ROOM, event.room, message)

    # --- features shared by WebSocket and REST ---------------------------------------

    async def post_chat(self, sender: User | Connection, room: str, text: str) -> StoredMessage:
        """Persist, then broadcast: a message is acknowledged only once it is on disk."""
        user_id = sender.id if isinstance(sender, User) else sender.user_id
        stored = await self.db.append_message(NewMessage(room, user_id, text, time.time()))
        await self.publish(TargetKind.ROOM, room, stored.to_event(), stored.seq)
        username = sender.username
        await self.publish_hub_events([e for e in [self.hub.stop_typing(room, user_id, username)] if e])
        return stored

    async def post_dm(self, sender: Connection, to: int, text: str) -> StoredMessage:
        room = dm_room(sender.user_id, to)
        stored = await self.db.append_message(NewMessage(room, sender.user_id, text, time.time()))
        await self.publish(TargetKind.DM, room, stored.to_event(), stored.seq)
        return stored

    async def notify(self, notification: Notification) -> None:
        await self.publish(TargetKind.USERS, str(notification.user_id), notification.to_event())

    async def post_updated(self, post: Post) -> None:
        message = {"type": "post_updated", "post_id": post.id, "likes": post.likes, "comments": post.comments}
        await self.publish(TargetKind.TOPIC, f"post:{post.id}", message)

    async def notify_mentions(self, actor: User, text: str, post_id: int, kind_text: str) -> None:
        for name in dict.fromkeys(n.lower() for n in MENTION.findall(text)):  # names are case-insensitive
            user = await self.db.call("user_by_name", name)
            if user is None or user.id == actor.id:
                continue
            note = await self.db.call("add_notification", user.id, "mention", actor.id, post_id, kind_text, time.time())
            await self.notify(note)

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
        if name in self.private_rooms or self.hub.rooms.get(name):  # someone joined it as a public room
            raise RoomTaken(name)
        self.private_rooms[name] = frozenset()  # reserved: no one joins while the store writes
        try:
            members = await self.db.call("create_private_room", name, owner.id, member_ids, time.time())
        except BaseException:
            del self.private_rooms[name]
            raise
        self.private_rooms[name] = frozenset(members)
        return members

    async def wait_for_room(self, room: str, timeout: float) -> None:
        """Park a long poll until the next message in ``room`` or ``timeout`` seconds.

        Each poll parks its own future and removes it when it returns (or its client goes
        away), so polls on rooms that never get a message leave nothing behind."""
        waiter = asyncio.get_running_loop().create_future()
        waiters = self.room_waiters.setdefault(room, set())
        waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            waiters.discard(waiter)
            if not waiters and self.room_waiters.get(room) is waiters:
                del self.room_waiters[room]

    # --- numbers for /healthz and /observe -----------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            **self.hub.counts(),
            "peers": len(self.peers),  # upgraded /ws sockets, authenticated or not
            "long_polls": sum(len(waiters) for waiters in self.room_waiters.values()),
            "messages_in": self.messages_in,
            "deliveries": self.deliveries,
            "dropped_slow": self.dropped_slow,
            "rss_bytes": rss_bytes(),
        }

    # --- shutdown -----------------------------------------------------------------------

    async def close_all(self, code: int, reason: str) -> None:
        self.closing = True
        peers = list(self.peers) + list(self.observatory.observers)
        await asyncio.gather(*(p.ws.close(code=code, message=reason.encode()) for p in peers), return_exceptions=True)
        for waiters in self.room_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
