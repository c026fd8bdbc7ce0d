"""What one authenticated WebSocket may do, and what it is answered (sans-I/O).

A :class:`Session` receives the socket's text messages one at a time, in order
(PROTOCOL.md section 5), and turns each into effects on the :class:`~labserver.lab.Lab`
(join a room, store and route a chat, relay a signal...) and into replies to
this socket. It reaches the socket only through its :class:`~labserver.outlet.Outlet`,
and imports nothing from aiohttp: the unit tests drive it with a list for a
socket and no server.

Every message takes a rate-limit token, valid or not, so garbage floods are
limited too; a socket that keeps hitting the limit is closed with 1008
(RFC 6455 section 7.4.1: policy violation). A handler that fails unexpectedly
(a bug) closes its own socket with 1011 (internal error), and only that one.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .broker import TargetKind
from .envelope import (
    Auth,
    Chat,
    ClientMessage,
    DirectMessage,
    EnvelopeError,
    ErrorCode,
    Join,
    Leave,
    Ping,
    Ref,
    Resume,
    Signal,
    Subscribe,
    Typing,
    Unsubscribe,
    dm_parties,
    parse_client_message,
)
from .frames import CloseCode, server_text_frame
from .hub import Connection, TypingDecision
from .lab import Lab, UploadRefused
from .messages import (
    AckMessage,
    ErrorMessage,
    Limits,
    ObserveEvent,
    PongMessage,
    ResumedMessage,
    ResyncMessage,
    ServerMessage,
    SignalMessage,
    TypingMessage,
    UploadedMessage,
    UserRef,
    WelcomeMessage,
    message_of,
)
from .outlet import Outlet
from .ratelimit import TokenBucket
from .store import StoredMessage

__all__ = ["ReplayFrames", "Session", "new_socket_id"]

log = logging.getLogger("labserver")

Handler = Callable[["Session", Any], Awaitable[ServerMessage | None]]


class ReplayFrames:
    """The frames of history rows replayed lately, each encoded once: after a restart, every
    client of a room resumes with the same rows (read once, see :class:`~labserver.store.AsyncStore`).

    A frame is a function of its row's whole value (the key), so a cached one is always right.
    Bounded by bytes: once ``budget`` is reached the cache starts again, empty."""

    __slots__ = ("budget", "size", "_frames")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0  # bytes held
        self._frames: dict[StoredMessage, bytes] = {}

    def frame(self, row: StoredMessage) -> bytes:
        frame = self._frames.get(row)
        if frame is None:
            frame = server_text_frame(message_of(row).encode())
            if self.size + len(frame) > self.budget:
                self._frames.clear()
                self.size = 0
            self._frames[row] = frame
            self.size += len(frame)
        return frame


_REPLAYED = ReplayFrames(budget=4 << 20)  # 4 MiB: a thousand-message resume of ordinary chat fits


def new_socket_id() -> str:
    """Per-connection id: random, so it differs on every reconnect and never equals a user id."""
    return "s_" + secrets.token_urlsafe(9)


class Session:
    """The protocol logic of one authenticated socket."""

    __slots__ = ("lab", "conn", "registered")

    def __init__(self, lab: Lab, conn: Connection, *, registered: bool = True) -> None:
        self.lab = lab
        self.conn = conn
        self.registered = registered  # False: refused at open, never in the hub

    @classmethod
    async def open(
        cls, lab: Lab, user: UserRef, token_expires_at: float, outlet: Outlet, ping_interval: float | None = None
    ) -> Session:
        """Welcome an authenticated socket and register it: from here on it is online.

        ``token_expires_at`` is wall-clock time (the token's ``exp``); the sweep closes
        the socket with 1008 when it passes. ``ping_interval``: the socket's heartbeat, told
        in the welcome (default: the ``ping_interval`` switch now)."""
        now = time.monotonic()
        settings = lab.settings
        conn = Connection(
            socket_id=new_socket_id(),
            user_id=user.id,
            username=user.username,
            expires_at=now + (token_expires_at - time.time()),
            bucket=TokenBucket(settings.rate_per_second, settings.rate_burst, now),
            sink=outlet,
        )
        per_user = settings.sockets_per_user_limit
        if per_user and len(lab.hub.user_sockets.get(user.id, ())) >= per_user:
            # Per-socket limits (rate, send buffer) would multiply with the sockets: one user, a few tabs.
            # Closed before its welcome; the handler's loop then ends at once, with nothing to unregister.
            await outlet.close(CloseCode.POLICY_VIOLATION, f"too many sockets for this user (at most {per_user})")
            return cls(lab, conn, registered=False)
        ping = lab.switches.ping_interval if ping_interval is None else ping_interval
        # The message size limit is the live switch's, which the socket got when it opened (ws.py).
        limits = dataclasses.replace(Limits.of(settings, ping), max_message_bytes=lab.switches.max_message_bytes)
        lab.send(outlet, WelcomeMessage(conn.socket_id, conn.user, limits, lab.welcome_node))
        await lab.register(conn)
        return cls(lab, conn)

    async def close(self, code: int | None, reason: str) -> None:
        """The socket has ended, for whatever reason: forget it everywhere."""
        if self.registered:
            await self.lab.unregister(self.conn, code, reason)

    @property
    def outlet(self) -> Outlet:
        return self.conn.sink

    def reply(self, message: ServerMessage) -> None:
        self.lab.send(self.outlet, message)

    # --- one message in ------------------------------------------------------------------

    async def on_binary(self, data: bytes) -> None:
        """A binary message is an image upload, checked and stored as ``POST /api/uploads`` does.

        It is here to be measured against that endpoint (lesson 05), not as the way to upload:
        a big message holds up everything queued behind it on this one socket, both ways, it
        has no ``ref``, no progress, no resumption and no HTTP caching. REST is the way."""
        lab, conn = self.lab, self.conn
        lab.messages_in += 1
        if not conn.bucket.allow(time.monotonic()):
            await self._rate_limited(None)
            return
        conn.strikes = max(0, conn.strikes - 1)
        try:
            upload = await lab.save_upload(data, conn.user.id)
        except UploadRefused as exc:
            self.reply(ErrorMessage(ErrorCode(exc.code), exc.message))
            return
        except Exception as exc:  # a bug (or a full disk): as for a text message, close this socket 1011
            log.error("upload handler failed on socket %s: %s: %s", conn.socket_id, type(exc).__name__, exc)
            await self.outlet.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        self.reply(UploadedMessage.of(upload))

    async def on_text(self, text: str) -> None:
        lab, conn = self.lab, self.conn
        lab.messages_in += 1
        # Every message takes a token, valid or not: garbage floods are limited too.
        allowed = conn.bucket.allow(time.monotonic())
        try:
            message = parse_client_message(text)
        except EnvelopeError as exc:
            if allowed:
                self.reply(ErrorMessage(exc.code, exc.message, exc.ref))
            else:
                await self._rate_limited(exc.ref)
            return
        if not allowed:
            await self._rate_limited(message.ref)
            return
        conn.strikes = max(0, conn.strikes - 1)  # good behaviour earns strikes back
        try:
            answer = await _HANDLERS[type(message)](self, message)
        except EnvelopeError as exc:
            self.reply(ErrorMessage(exc.code, exc.message, exc.ref))
            return
        except Exception as exc:
            # A bug, not bad input: one log line (no traceback per message), and this socket
            # alone is closed with 1011 (RFC 6455 section 7.4.1); every other socket goes on.
            log.error("%s handler failed on socket %s: %s: %s", message.type, conn.socket_id, type(exc).__name__, exc)
            await self.outlet.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        # An ack is sent only when the client asked for one with a ref (section 5).
        if answer is not None and (message.ref is not None or not isinstance(answer, AckMessage)):
            self.reply(answer)

    async def _rate_limited(self, ref: Ref) -> None:
        conn = self.conn
        conn.strikes += 1
        if conn.strikes >= self.lab.settings.rate_strikes_before_close:
            await self.outlet.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
            return
        self.reply(ErrorMessage(ErrorCode.RATE_LIMITED, "too many messages; slow down", ref))

    # --- handlers: each returns its answer (an ack, a pong...) or None -------------------

    async def on_auth(self, m: Auth) -> ServerMessage:
        raise EnvelopeError(ErrorCode.ALREADY_AUTHENTICATED, "this socket is already authenticated", m.ref)

    async def on_join(self, m: Join) -> ServerMessage:
        lab, conn = self.lab, self.conn
        if (refusal := lab.read_refusal(conn.user_id, m.room)) is not None:
            raise EnvelopeError(ErrorCode.FORBIDDEN, refusal, m.ref)
        if m.room not in conn.rooms:
            lab.observatory.emit(ObserveEvent.socket_joined(conn.socket_id, conn.user, m.room))
        await lab.publish_hub_events(lab.hub.join(conn, m.room))
        hub = lab.hub
        members = tuple(lab.room_members(m.room, hub.ack_member_cap))  # O(cap), not O(room); all processes
        count = hub.member_count(m.room)  # told only when the list is cut: a small room's ack is as before
        last_seq = hub.last_seq.get(m.room, 0)
        cut = count if count > len(members) else None
        return AckMessage(m.ref, room=m.room, last_seq=last_seq, members=members, member_count=cut)

    async def on_leave(self, m: Leave) -> ServerMessage:
        lab, conn = self.lab, self.conn
        if m.room not in conn.rooms:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"not in room {m.room!r}", m.ref)
        await lab.publish_hub_events(lab.hub.leave(conn, m.room))
        lab.observatory.emit(ObserveEvent.socket_left(conn.socket_id, conn.user, m.room))
        return AckMessage(m.ref, room=m.room)

    async def on_chat(self, m: Chat) -> ServerMessage:
        if m.room not in self.conn.rooms:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"join room {m.room!r} before chatting in it", m.ref)
        if m.room in self.lab.paused_rooms:
            raise EnvelopeError(ErrorCode.ROOM_PAUSED, f"room {m.room!r} is paused by the instructor", m.ref)
        if m.text == self.lab.switches.bug_on_text:
            raise RuntimeError(f"simulated bug: a chat whose text is {m.text!r} (the bug_on_text switch)")
        await self.lab.chaos.on_chat(self.lab.switches)  # the block_ms / cpu_ms chaos (and offload, their fix)
        stored = await self.lab.post_chat(self.conn.user, m.room, m.text)
        return AckMessage(m.ref, room=m.room, seq=stored.seq)

    async def on_dm(self, m: DirectMessage) -> ServerMessage:
        lab = self.lab
        if m.to == self.conn.user_id:
            raise EnvelopeError(ErrorCode.BAD_FIELD, "cannot send a direct message to yourself", m.ref)
        if not lab.is_online(m.to) and await lab.db.user_by_id(m.to) is None:
            raise EnvelopeError(ErrorCode.NOT_FOUND, f"no user with id {m.to}", m.ref)
        stored = await lab.post_dm(self.conn.user, m.to, m.text)
        return AckMessage(m.ref, room=stored.room, seq=stored.seq, to=m.to)

    async def on_typing(self, m: Typing) -> ServerMessage:
        lab, conn = self.lab, self.conn
        if m.room not in conn.rooms:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"not in room {m.room!r}", m.ref)
        if not m.active:
            stopped = lab.hub.stop_typing(m.room, conn.user_id, conn.username)
            await lab.publish_hub_events([stopped] if stopped else [])
            return AckMessage(m.ref, room=m.room)
        decision = lab.hub.start_typing(conn, m.room, time.monotonic())
        if decision is TypingDecision.NOT_IN_ROOM:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"not in room {m.room!r}", m.ref)
        if decision is TypingDecision.BROADCAST:
            await lab.publish(TargetKind.ROOM, m.room, TypingMessage(m.room, conn.user, True))
        return AckMessage(m.ref, room=m.room)

    async def on_subscribe(self, m: Subscribe) -> ServerMessage:
        hub = self.lab.hub
        hub.subscribe(self.conn, m.topic)
        if m.topic != "presence":
            return AckMessage(m.ref, topic=m.topic)
        online = tuple(self.lab.online_users())  # with Redis: online on any live process
        return AckMessage(m.ref, topic=m.topic, online=online)

    async def on_unsubscribe(self, m: Unsubscribe) -> ServerMessage:
        self.lab.hub.unsubscribe(self.conn, m.topic)
        return AckMessage(m.ref, topic=m.topic)

    async def on_signal(self, m: Signal) -> ServerMessage:
        """Relay WebRTC signaling to every socket of ``m.to``, or to the one ``m.to_socket``."""
        lab, conn = self.lab, self.conn
        sockets = lab.hub.user_sockets.get(m.to, ())
        # With Redis the target may be on another process: its socket ids are not known here.
        elsewhere = not sockets and lab.cluster is not None and lab.cluster.online_elsewhere(m.to)
        if m.to_socket is not None:
            if not elsewhere and not any(s.socket_id == m.to_socket for s in sockets):
                raise EnvelopeError(ErrorCode.NOT_FOUND, f"user {m.to} has no open socket {m.to_socket!r}", m.ref)
        elif not sockets and not elsewhere:
            raise EnvelopeError(ErrorCode.NOT_FOUND, f"user {m.to} is not online", m.ref)
        signal = SignalMessage(conn.user, conn.socket_id, m.kind, m.data)
        if m.to_socket is not None:
            await lab.publish(TargetKind.SOCKET, m.to_socket, signal)
        else:
            await lab.publish(TargetKind.USERS, str(m.to), signal)
        return AckMessage(m.ref, to=m.to)

    async def on_ping(self, m: Ping) -> ServerMessage:
        return PongMessage(m.payload, time.time(), m.ref)

    async def on_resume(self, m: Resume) -> ServerMessage | None:
        """Replay exactly the messages after ``m.after``, then continue live, with no gap.

        History is read from the store (in another thread); messages keep arriving
        meanwhile. We replay only up to ``hub.last_seq`` (the last seq delivered
        live), reading again until the read covers it, and join the room in the
        same loop turn as the replay: everything later arrives live.
        """
        lab, conn, room = self.lab, self.conn, m.room
        if (refusal := lab.read_refusal(conn.user_id, room)) is not None:
            raise EnvelopeError(ErrorCode.FORBIDDEN, refusal, m.ref)
        limit = lab.settings.resume_limit
        await lab.catch_up(room)  # with Redis: what another process stored reaches this one first
        rows = await lab.db.messages_after(room, m.after, limit + 1)
        while True:
            server_last = lab.hub.last_seq.get(room, 0)
            if m.after > server_last:
                return ResyncMessage(room, "ahead_of_server", server_last, m.ref)
            # Already a member? What came after its join reached this socket live: not again.
            live_from = conn.live_from(room)
            upper = server_last if live_from is None else min(server_last, live_from)
            replay = [r for r in rows if r.seq <= upper]
            if len(replay) > limit:
                return ResyncMessage(room, "too_far_behind", server_last, m.ref)
            have = replay[-1].seq if replay else m.after
            if have >= upper:
                break
            rows = replay + await lab.db.messages_between(room, have, upper)
        # No await from the check above until the replay is written: nothing can slip in between.
        # The replay must also fit in send_buffer_limit with what is queued already; otherwise it
        # would be cut off as a slow reader halfway (or by the next broadcast): resync instead.
        frames = [_REPLAYED.frame(row) for row in replay]
        if self.outlet.buffered + sum(map(len, frames)) > lab.settings.send_buffer_limit:
            return ResyncMessage(room, "too_far_behind", server_last, m.ref)
        events = []
        if dm_parties(room) is None and room not in conn.rooms:
            lab.observatory.emit(ObserveEvent.socket_joined(conn.socket_id, conn.user, room))
            events = lab.hub.join(conn, room)
        for frame in frames:
            self.outlet.write(frame)
        self.reply(ResumedMessage(room, len(replay), server_last, m.ref))
        await lab.publish_hub_events(events)  # member_joined comes after resumed (PROTOCOL.md section 6)
        return None


# One dispatch table for every socket (not a dict of bound methods per socket: memory).
_HANDLERS: dict[type[ClientMessage], Handler] = {
    Auth: Session.on_auth,
    Join: Session.on_join,
    Leave: Session.on_leave,
    Chat: Session.on_chat,
    DirectMessage: Session.on_dm,
    Typing: Session.on_typing,
    Subscribe: Session.on_subscribe,
    Unsubscribe: Session.on_unsubscribe,
    Signal: Session.on_signal,
    Resume: Session.on_resume,
    Ping: Session.on_ping,
}
