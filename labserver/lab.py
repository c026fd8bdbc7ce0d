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
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .auth import AuthError, Claims, TokenIssuer
from .broker import Broker, Routed, TargetKind
from .config import Settings, Switches
from .envelope import dm_parties, dm_room
from .frames import CloseCode, server_text_frame
from .hub import Connection, Hub, HubEvent, MembershipChanged, PresenceChanged, TypingChanged
from .messages import (
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
from .resources import cpu_seconds, rss_bytes
from .store import AsyncStore, NewMessage, Post, RoomTaken, StoredMessage, User

log = logging.getLogger("labserver")

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,32})\b")
IMAGE_TYPES = {  # magic bytes -> (extension, content type); the client's Content-Type is not trusted
    b"\x89PNG\r\n\x1a\n": ("png", "image/png"),
    b"\xff\xd8\xff": ("jpg", "image/jpeg"),
    b"GIF87a": ("gif", "image/gif"),
    b"GIF89a": ("gif", "image/gif"),
}
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


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)


class Lab:
    def __init__(self, settings: Settings, store: AsyncStore, broker: Broker, issuer: TokenIssuer) -> None:
        self.settings = settings
        self.switches = Switches.of(settings)  # live: changed by PATCH /api/admin/switches
        self.db = store
        self.broker = broker
        self.issuer = issuer
        self.hub = Hub(typing_ttl=settings.typing_ttl, typing_min_interval=settings.typing_min_interval)
        self.observatory = Observatory(clock=time.time)
        self.process_id = f"p{os.getpid()}"
        self.started_at = time.time()
        self.peers: set[Outlet] = set()  # every upgraded /ws socket, authenticated or not
        self.sockets_open = 0  # authenticated /ws sockets whose handler still runs (leak or not)
        self.room_waiters: dict[str, set[asyncio.Future[None]]] = {}  # long polls parked on a room
        self.closing = False  # set at shutdown: long polls answer at once
        # How shutdown closes every socket: 1001, or 1012 when the parent said it will restart us.
        self.shutdown_close: tuple[int, str] = (CloseCode.GOING_AWAY, "server shutting down")
        self.private_rooms: dict[str, frozenset[int]] = {}  # private room -> its members' ids
        # counters for /observe stats and /healthz
        self.messages_in = 0
        self.deliveries = 0
        self.dropped_slow = 0

    async def start(self) -> None:
        self.hub.last_seq.update(await self.db.last_seqs())
        self.private_rooms.update(await self.db.private_rooms())
        await self.broker.start(self.deliver)

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

    async def authenticate(self, token: str) -> tuple[User, Claims]:
        claims = self.issuer.verify(token, now=time.time())
        user = await self.db.user_by_id(claims.user_id)
        if user is None:
            raise AuthError("token names a user that does not exist")
        if claims.issued_at < user.tokens_valid_after:
            raise AuthError("token was revoked by a logout")
        return user, claims

    # --- lifecycle of an authenticated socket ----------------------------------------

    async def register(self, conn: Connection) -> None:
        self.sockets_open += 1
        self.observatory.emit(ObserveEvent.socket_opened(conn.socket_id, conn.user))
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

    def set_switches(self, changes: dict[str, Any]) -> Switches:
        """Change some switches, all or none (:class:`~labserver.config.SwitchError` names a bad one)."""
        self.switches.apply(changes)
        self.observatory.emit(ObserveEvent.switches(self.switches.to_json()))
        return self.switches

    async def publish_hub_events(self, events: Iterable[HubEvent]) -> None:
        """Turn the hub's decisions into messages and route them."""
        for event in events:
            user = UserRef(event.user_id, event.username)
            if isinstance(event, PresenceChanged):
                self.observatory.emit(ObserveEvent.presence(user, event.online))
                await self.publish(TargetKind.TOPIC, "presence", PresenceMessage(user, event.online))
            elif isinstance(event, MembershipChanged):
                self.observatory.emit(ObserveEvent.membership(user, event.room, joined=event.joined))
                message = (MemberJoinedMessage if event.joined else MemberLeftMessage)(event.room, user)
                await self.publish(TargetKind.ROOM, event.room, message)
            elif isinstance(event, TypingChanged):
                await self.publish(TargetKind.ROOM, event.room, TypingMessage(event.room, user, event.active))

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

    async def save_upload(self, data: bytes) -> Upload:
        """Check and store one image, the same for ``POST /api/uploads`` and a binary message on
        ``/ws``: its type sniffed from its bytes, at most ``upload_max_bytes``, named by its hash."""
        limit = self.settings.upload_max_bytes
        if len(data) > limit:
            raise UploadRefused("too_large", f"upload over {limit} bytes")
        kind = sniff_image(data[:16])
        if kind is None:
            raise UploadRefused("unsupported_type", "only PNG, JPEG, GIF and WebP images are accepted")
        ext, content_type = kind
        name = f"{hashlib.sha256(data).hexdigest()[:32]}.{ext}"
        path = self.settings.uploads_dir / name
        if not path.exists():
            await asyncio.to_thread(_write_atomically, path, data)
        return Upload(name, len(data), content_type)

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
            members = await self.db.create_private_room(name, owner.id, member_ids, time.time())
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
            "sockets_open": self.sockets_open,
            "sockets_tracked": self.hub.tracked_sockets(),  # > sockets_open: the cleanup leaks
            "peers": len(self.peers),  # upgraded /ws sockets, authenticated or not
            "long_polls": sum(len(waiters) for waiters in self.room_waiters.values()),
            "messages_in": self.messages_in,
            "deliveries": self.deliveries,
            "dropped_slow": self.dropped_slow,
            "rss_bytes": rss_bytes(),
            "cpu_s": round(cpu_seconds(), 3),  # since the process started; a rate is two samples apart
        }

    def snapshot(self) -> SnapshotMessage:
        return SnapshotMessage.of(self.hub, self.stats(), self.switches.to_json())

    def flush_observers(self) -> None:
        """Send the pending observation batch to every observer; a snapshot where one was missed or lost.

        An observer that cannot keep up misses batches rather than queueing them (it is not
        dropped like a slow chat reader), and catches up from a snapshot once it drains."""
        observatory = self.observatory
        batch, stale = observatory.flush()
        if batch is None and not stale and not observatory.behind:
            return
        frame = server_text_frame(batch.encode()) if batch is not None else None
        snapshot: bytes | None = None
        limit = self.settings.send_buffer_limit
        for outlet in list(observatory.observers):
            if outlet.closing:
                continue
            if outlet.buffered > limit:
                observatory.behind.add(outlet)
                continue
            behind = outlet in observatory.behind
            if frame is not None and not behind:
                outlet.write(frame)
            if stale or behind:
                if snapshot is None:
                    snapshot = server_text_frame(self.snapshot().encode())
                outlet.write(snapshot)
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
