"""The ``/ws`` and ``/observe`` WebSocket handlers: a thin adapter over the hub.

Every socket follows one shape: check the handshake, prepare, authenticate,
register, ``async for msg in ws``, and unregister in ``finally`` -- so every
kind of disconnect (close frame, TCP reset, heartbeat timeout, slow-reader
drop, server shutdown) cleans the same maps.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from .auth import AuthError
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
    encode,
    error_message,
    parse_client_message,
)
from .frames import ClientFrameGuard, CloseCode, is_valid_close_code, server_text_frame
from .handshake import check_upgrade
from .hub import Connection, TypingDecision
from .lab import Lab, Peer, new_socket_id
from .ratelimit import TokenBucket
from .store import User

log = logging.getLogger("labserver")

LAB: web.AppKey[Lab] = web.AppKey("lab", Lab)


class LabWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocket response plus the RFC 6455 section 5.1 mask check.

    aiohttp (3.14) accepts unmasked client frames. We put a :class:`ClientFrameGuard`
    in front of aiohttp's frame parser; on the first unmasked frame it hands
    aiohttp's reader a protocol error, which aiohttp answers by closing with 1002.
    This is the one place the lab server reaches into aiohttp internals
    (``_message_tail``, ``_payload_parser``, ``_reader``); tests/test_server.py
    fails loudly if a new aiohttp version moves them.
    """

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # aiohttp caps a message's fragments at max(1024, max_msg_size // 256), but counts
        # only non-empty ones; the guard counts every continuation frame.
        guard = ClientFrameGuard(max_fragments=max(1024, self._max_msg_size // 256))
        http_protocol = request.protocol
        tail = bytes(http_protocol._message_tail)  # bytes that came in with the handshake
        super()._post_start(request, protocol, writer)
        http_protocol._payload_parser = _GuardedParser(http_protocol._payload_parser, guard, self)
        self._reader = _CloseCodeCheck(self._reader)  # type: ignore[assignment]
        if tail and guard.feed(tail):
            self._refuse(guard)

    def _refuse(self, guard: ClientFrameGuard) -> None:
        assert self._reader is not None
        self._reader.set_exception(WebSocketError(guard.violation_code, guard.violation or ""))


class _CloseCodeCheck:
    """Wraps aiohttp's message queue; a client close frame with a code no endpoint may
    send reaches aiohttp as the protocol error it is (answered with 1002). aiohttp (3.14)
    refuses most such codes itself but lets 1006 and 5000-65535 through."""

    __slots__ = ("_queue",)

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def read(self) -> Any:
        msg = await self._queue.read()
        if msg.type is WSMsgType.CLOSE and msg.data != 0 and not is_valid_close_code(msg.data):  # 0: no code
            error = WebSocketError(WSCloseCode.PROTOCOL_ERROR, f"Invalid close code: {msg.data}")
            self._queue.set_exception(error)  # as aiohttp's parser does: nothing more is read
            raise error
        return msg


class _GuardedParser:
    __slots__ = ("_inner", "_guard", "_ws")

    def __init__(self, inner: Any, guard: ClientFrameGuard, ws: LabWebSocketResponse) -> None:
        self._inner = inner
        self._guard = guard
        self._ws = ws

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._guard.feed(data) is not None:
            self._ws._refuse(self._guard)
            return True, b""
        return self._inner.feed_data(data)

    def feed_eof(self) -> None:
        self._inner.feed_eof()


def is_admin(request: web.Request) -> bool:
    """The instructor's token, in ``X-Admin-Token`` or (for WebSockets) ``?admin_token=``."""
    expected = request.app[LAB].settings.admin_token
    given = request.headers.get("X-Admin-Token") or request.query.get("admin_token") or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())  # type: ignore[union-attr]


def refusal_response(request: web.Request) -> web.Response | None:
    refusal = check_upgrade(request.headers, request.app[LAB].settings.origins, tuple(request.version))
    if refusal is None:
        return None
    return web.json_response(
        {"error": refusal.code, "message": refusal.message}, status=refusal.status, headers=dict(refusal.headers)
    )


def _new_ws(lab: Lab) -> LabWebSocketResponse:
    return LabWebSocketResponse(
        heartbeat=lab.settings.ping_interval,
        max_msg_size=lab.settings.max_message_bytes,
        # Off on purpose: a broadcast frame is encoded once for every recipient,
        # which per-connection deflate contexts would make impossible.
        compress=False,
    )


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    lab = request.app[LAB]
    refused = refusal_response(request)
    if refused is not None:
        return refused
    user: User | None = None
    expires_at = 0.0
    token = request.query.get("token")
    if token is not None:
        try:
            user, claims = await lab.authenticate(token)
            expires_at = claims.expires_at
        except AuthError as exc:
            return web.json_response({"error": "unauthorized", "message": str(exc)}, status=401)

    ws = _new_ws(lab)
    await ws.prepare(request)
    assert request.transport is not None
    peer = Peer(ws, request.transport)  # type: ignore[arg-type]
    lab.peers.add(peer)
    conn: Connection | None = None
    try:
        if user is None:
            authenticated = await _first_message_auth(lab, ws, peer)
            if authenticated is None:
                return ws
            user, expires_at = authenticated
        now = time.monotonic()
        conn = Connection(
            socket_id=new_socket_id(),
            user_id=user.id,
            username=user.username,
            expires_at=now + (expires_at - time.time()),
            bucket=TokenBucket(lab.settings.rate_per_second, lab.settings.rate_burst, now),
            sink=peer,
        )
        lab.send(peer, {"type": "welcome", "socket_id": conn.socket_id, "user": conn.user, "limits": _limits(lab)})
        await lab.register(conn)
        session = Session(lab, conn)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await session.on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                lab.send(peer, error_message(ErrorCode.BINARY_NOT_SUPPORTED, "send JSON in text messages"))
            elif msg.type is WSMsgType.ERROR:
                break
    finally:
        lab.peers.discard(peer)
        if conn is not None:
            await lab.unregister(conn, ws.close_code, _close_reason(ws))
    return ws


def _close_reason(ws: web.WebSocketResponse) -> str:
    exc = ws.exception()
    if exc is not None:
        return str(exc)
    return "closed" if ws.close_code not in (None, CloseCode.ABNORMAL) else "connection lost"


def _limits(lab: Lab) -> dict[str, Any]:
    s = lab.settings
    return {
        "max_message_bytes": s.max_message_bytes,
        "rate_per_second": s.rate_per_second,
        "rate_burst": s.rate_burst,
        "ping_interval": s.ping_interval,
        "typing_ttl": s.typing_ttl,
        "resume_limit": s.resume_limit,
    }


async def _first_message_auth(lab: Lab, ws: web.WebSocketResponse, peer: Peer) -> tuple[User, float] | None:
    """Without ``?token=``, the first message must be ``auth`` within ``auth_timeout``; else close 1008."""
    try:
        # One deadline for the whole wait: receive(timeout=) restarts its timer after every
        # ping or pong frame, so a client sending only those would never have to authenticate.
        async with asyncio.timeout(lab.settings.auth_timeout):
            msg = await ws.receive()
    except TimeoutError:
        await ws.close(code=CloseCode.POLICY_VIOLATION, message=b"authentication timeout")
        return None
    if msg.type is not WSMsgType.TEXT:
        if msg.type is WSMsgType.BINARY:
            await ws.close(code=CloseCode.POLICY_VIOLATION, message=b"first message must be auth")
        return None
    try:
        message = parse_client_message(msg.data)
        if not isinstance(message, Auth):
            raise EnvelopeError(ErrorCode.NOT_AUTHENTICATED, f"first message must be auth, got {message.type}", message.ref)
        user, claims = await lab.authenticate(message.token)
    except (EnvelopeError, AuthError) as exc:
        reason = exc.message if isinstance(exc, EnvelopeError) else str(exc)
        ref = exc.ref if isinstance(exc, EnvelopeError) else message.ref  # a bad token: the auth parsed
        lab.send(peer, error_message(ErrorCode.NOT_AUTHENTICATED, reason, ref))
        # At most 123 bytes (RFC 6455 section 5.5), cut on a character boundary: a reason
        # that is not valid UTF-8 makes the client fail the connection (1007) instead.
        await ws.close(code=CloseCode.POLICY_VIOLATION, message=reason.encode()[:120].decode(errors="ignore").encode())
        return None
    if message.ref is not None:
        lab.send(peer, {"type": "ack", "ref": message.ref})
    return user, claims.expires_at


class Session:
    """Handles the messages of one authenticated socket."""

    __slots__ = ("lab", "conn", "peer")

    def __init__(self, lab: Lab, conn: Connection) -> None:
        self.lab = lab
        self.conn = conn
        self.peer: Peer = conn.sink

    async def on_text(self, text: str) -> None:
        lab, conn = self.lab, self.conn
        lab.messages_in += 1
        # Every message takes a token, valid or not: garbage floods are limited too.
        allowed = conn.bucket.allow(time.monotonic())
        try:
            message = parse_client_message(text)
        except EnvelopeError as exc:
            if allowed:
                lab.send(self.peer, exc.to_message())
            else:
                await self._rate_limited(exc.ref)
            return
        ref = message.ref
        if not allowed:
            await self._rate_limited(ref)
            return
        conn.strikes = max(0, conn.strikes - 1)  # good behaviour earns strikes back
        try:
            result = await _HANDLERS[type(message)](self, message)
        except EnvelopeError as exc:
            lab.send(self.peer, exc.to_message())
            return
        except Exception:
            log.exception("handler failed for socket %s", conn.socket_id)
            lab.send(self.peer, error_message(ErrorCode.INTERNAL, "internal error; the message was not processed", ref))
            return
        if result is not None and ref is not None:
            lab.send(self.peer, {"type": "ack", "ref": ref, **result})

    async def _rate_limited(self, ref: Ref) -> None:
        conn = self.conn
        conn.strikes += 1
        if conn.strikes >= self.lab.settings.rate_strikes_before_close:
            await self.peer.ws.close(code=CloseCode.POLICY_VIOLATION, message=b"rate limit exceeded")
            return
        self.lab.send(self.peer, error_message(ErrorCode.RATE_LIMITED, "too many messages; slow down", ref))

    # Each handler returns the fields of its ack, or None when it answered itself.

    async def on_auth(self, m: Auth) -> dict[str, Any]:
        raise EnvelopeError(ErrorCode.ALREADY_AUTHENTICATED, "this socket is already authenticated", m.ref)

    async def on_join(self, m: Join) -> dict[str, Any]:
        lab = self.lab
        if (refusal := lab.read_refusal(self.conn.user_id, m.room)) is not None:
            raise EnvelopeError(ErrorCode.FORBIDDEN, refusal, m.ref)
        if m.room not in self.conn.rooms:
            lab.observatory.emit("socket_joined", socket_id=self.conn.socket_id, user=self.conn.user, room=m.room)
        await lab.publish_hub_events(lab.hub.join(self.conn, m.room))
        return {"room": m.room, "last_seq": lab.hub.last_seq.get(m.room, 0), "members": lab.hub.room_members(m.room)}

    async def on_leave(self, m: Leave) -> dict[str, Any]:
        if m.room not in self.conn.rooms:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"not in room {m.room!r}", m.ref)
        await self.lab.publish_hub_events(self.lab.hub.leave(self.conn, m.room))
        self.lab.observatory.emit("socket_left", socket_id=self.conn.socket_id, user=self.conn.user, room=m.room)
        return {"room": m.room}

    async def on_chat(self, m: Chat) -> dict[str, Any]:
        if m.room not in self.conn.rooms:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"join room {m.room!r} before chatting in it", m.ref)
        stored = await self.lab.post_chat(self.conn, m.room, m.text)
        return {"room": m.room, "seq": stored.seq}

    async def on_dm(self, m: DirectMessage) -> dict[str, Any]:
        if m.to == self.conn.user_id:
            raise EnvelopeError(ErrorCode.BAD_FIELD, "cannot send a direct message to yourself", m.ref)
        if not self.lab.hub.is_online(m.to) and await self.lab.db.call("user_by_id", m.to) is None:
            raise EnvelopeError(ErrorCode.NOT_FOUND, f"no user with id {m.to}", m.ref)
        stored = await self.lab.post_dm(self.conn, m.to, m.text)
        return {"room": stored.room, "seq": stored.seq, "to": m.to}

    async def on_typing(self, m: Typing) -> dict[str, Any]:
        lab, conn = self.lab, self.conn
        if m.room not in conn.rooms:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"not in room {m.room!r}", m.ref)
        if not m.active:
            stopped = lab.hub.stop_typing(m.room, conn.user_id, conn.username)
            await lab.publish_hub_events([stopped] if stopped else [])
            return {"room": m.room}
        decision = lab.hub.start_typing(conn, m.room, time.monotonic())
        if decision is TypingDecision.NOT_IN_ROOM:
            raise EnvelopeError(ErrorCode.NOT_IN_ROOM, f"not in room {m.room!r}", m.ref)
        if decision is TypingDecision.BROADCAST:
            message = {"type": "typing", "room": m.room, "user": conn.user, "active": True}
            await lab.publish(TargetKind.ROOM, m.room, message)
        return {"room": m.room}

    async def on_subscribe(self, m: Subscribe) -> dict[str, Any]:
        self.lab.hub.subscribe(self.conn, m.topic)
        result: dict[str, Any] = {"topic": m.topic}
        if m.topic == "presence":
            online = self.lab.hub.user_sockets
            result["online"] = [next(iter(online[uid])).user for uid in sorted(online)]
        return result

    async def on_unsubscribe(self, m: Unsubscribe) -> dict[str, Any]:
        self.lab.hub.unsubscribe(self.conn, m.topic)
        return {"topic": m.topic}

    async def on_signal(self, m: Signal) -> dict[str, Any]:
        lab, conn = self.lab, self.conn
        sockets = lab.hub.user_sockets.get(m.to, ())
        if m.to_socket is not None:
            if not any(s.socket_id == m.to_socket for s in sockets):
                raise EnvelopeError(ErrorCode.NOT_FOUND, f"user {m.to} has no open socket {m.to_socket!r}", m.ref)
        elif not sockets:
            raise EnvelopeError(ErrorCode.NOT_FOUND, f"user {m.to} is not online", m.ref)
        message = {"type": "signal", "from": conn.user, "from_socket": conn.socket_id, "kind": m.kind, "data": m.data}
        if m.to_socket is not None:
            await lab.publish(TargetKind.SOCKET, m.to_socket, message)
        else:
            await lab.publish(TargetKind.USERS, str(m.to), message)
        return {"to": m.to}

    async def on_ping(self, m: Ping) -> None:
        reply: dict[str, Any] = {"type": "pong", "payload": m.payload, "server_time": time.time()}
        if m.ref is not None:
            reply["ref"] = m.ref
        self.lab.send(self.peer, reply)

    async def on_resume(self, m: Resume) -> None:
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
        rows = await lab.db.call("messages_after", room, m.after, limit + 1)
        while True:
            server_last = lab.hub.last_seq.get(room, 0)
            if m.after > server_last:
                self._answer(m, {"type": "resync", "room": room, "reason": "ahead_of_server", "last_seq": server_last})
                return
            # Already a member? What came after its join reached this socket live: not again.
            live_from = conn.live_from(room)
            upper = server_last if live_from is None else min(server_last, live_from)
            replay = [r for r in rows if r.seq <= upper]
            if len(replay) > limit:
                self._answer(m, {"type": "resync", "room": room, "reason": "too_far_behind", "last_seq": server_last})
                return
            have = replay[-1].seq if replay else m.after
            if have >= upper:
                break
            rows = replay + await lab.db.call("messages_between", room, have, upper)
        # No await from the check above until the replay is written: nothing can slip in between.
        # The replay must also fit in send_buffer_limit with what is queued already; otherwise it
        # would be cut off as a slow reader halfway (or by the next broadcast): resync instead.
        frames = [server_text_frame(encode(row.to_event())) for row in replay]
        queued = self.peer.transport.get_write_buffer_size()
        if queued + sum(map(len, frames)) > lab.settings.send_buffer_limit:
            self._answer(m, {"type": "resync", "room": room, "reason": "too_far_behind", "last_seq": server_last})
            return
        events = []
        if dm_parties(room) is None and room not in conn.rooms:
            lab.observatory.emit("socket_joined", socket_id=conn.socket_id, user=conn.user, room=room)
            events = lab.hub.join(conn, room)
        for frame in frames:
            self.peer.transport.write(frame)
        self._answer(m, {"type": "resumed", "room": room, "count": len(replay), "last_seq": server_last})
        await lab.publish_hub_events(events)

    def _answer(self, m: ClientMessage, reply: dict[str, Any]) -> None:
        if m.ref is not None:
            reply["ref"] = m.ref
        self.lab.send(self.peer, reply)


# One dispatch table for every socket (not a dict of bound methods per socket: memory).
_HANDLERS: dict[type[ClientMessage], Callable[[Session, Any], Awaitable[dict[str, Any] | None]]] = {
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


async def observe_handler(request: web.Request) -> web.StreamResponse:
    """Read-only stream of what the server does, for dashboards (see observe.py).

    It shows usernames, rooms and chat previews: when the server has an admin token,
    only the instructor's dashboard (holding that token) may watch."""
    lab = request.app[LAB]
    refused = refusal_response(request)
    if refused is not None:
        return refused
    if lab.settings.admin_token and not is_admin(request):
        return web.json_response({"error": "forbidden", "message": "/observe needs the admin token"}, status=403)
    ws = _new_ws(lab)
    await ws.prepare(request)
    assert request.transport is not None
    peer = Peer(ws, request.transport)  # type: ignore[arg-type]
    snapshot = {"type": "snapshot", **lab.hub.snapshot(), "stats": lab.stats()}
    lab.send(peer, snapshot)
    lab.observatory.observers.add(peer)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                lab.send(peer, error_message(ErrorCode.FORBIDDEN, "/observe is read-only"))
    finally:
        lab.observatory.observers.discard(peer)
        lab.observatory.behind.discard(peer)
    return ws


def flush_observers(lab: Lab) -> None:
    """Send the pending batch to every observer; a snapshot where one was missed or lost."""
    observatory = lab.observatory
    text, stale = observatory.flush()
    if text is None and not stale and not observatory.behind:
        return
    frame = server_text_frame(text) if text is not None else None
    snapshot: bytes | None = None
    limit = lab.settings.send_buffer_limit
    for peer in list(observatory.observers):
        transport = peer.transport
        if transport.is_closing():
            continue
        if transport.get_write_buffer_size() > limit:
            # An observer that cannot keep up misses batches rather than queueing them,
            # and catches up from a snapshot once it drains.
            observatory.behind.add(peer)
            continue
        behind = peer in observatory.behind
        if frame is not None and not behind:
            transport.write(frame)
        if stale or behind:
            if snapshot is None:
                snapshot = server_text_frame(encode({"type": "snapshot", **lab.hub.snapshot(), "stats": lab.stats()}))
            transport.write(snapshot)
            observatory.behind.discard(peer)


