"""The ``/ws`` and ``/observe`` WebSocket handlers: a thin adapter over the session and the lab.

Every socket follows one shape: check the handshake, prepare, authenticate,
register, ``async for msg in ws``, and unregister in ``finally``, so every kind
of disconnect (close frame, TCP reset, heartbeat timeout, slow-reader drop,
server shutdown) cleans the same maps (unless the ``leaky_cleanup`` switch
plays the bug of skipping that, see :meth:`labserver.lab.Lab.unregister`). What
a message *does* is decided in :mod:`labserver.session`; how bytes reach a
socket is :class:`SocketWriter`.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from .aiohttp_compat import LabWebSocketResponse
from .appkeys import LAB, MAX_CLOSE_REASON_BYTES, error_response, is_admin
from .auth import SESSION_COOKIE, AuthError, Claims
from .envelope import Auth, EnvelopeError, ErrorCode, parse_client_message
from .frames import CloseCode
from .handshake import check_upgrade, select_subprotocol
from .lab import Lab
from .messages import AckMessage, ErrorMessage, UserRef
from .session import Session
from .store import User

__all__ = ["SocketWriter", "observe_handler", "websocket_handler"]


class SocketWriter:
    """The :class:`~labserver.outlet.Outlet` of one aiohttp WebSocket.

    :meth:`write` is the only code that writes data frames to the socket's transport.
    aiohttp marks a response closed before it writes its Close frame, so checking
    ``ws.closed`` here means no data frame ever follows the Close frame (section 5.5.1).
    """

    __slots__ = ("_ws", "_transport", "_limit", "_lab", "socket_id", "user")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, lab: Lab) -> None:
        self._ws = ws
        self._transport = transport
        self._limit = lab.settings.send_buffer_limit
        self._lab = lab  # told of a drop (not a bound method kept per socket: 64 bytes each)
        self.socket_id: str | None = None  # who this is, once authenticated (for the drop report)
        self.user: UserRef | None = None

    @property
    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    @property
    def closing(self) -> bool:
        return self._ws.closed or self._transport.is_closing()

    def write(self, frame: bytes) -> bool:
        # Runs once per recipient of every broadcast: the checks are inlined on purpose.
        transport = self._transport
        if self._ws.closed or transport.is_closing():  # closing, closed or lost: its handler unregisters it
            return False
        queued = transport.get_write_buffer_size()
        if queued > self._limit:
            # A reader this far behind would grow our memory and is dropped; it resumes later.
            self._lab.note_dropped(self.socket_id or str(transport.get_extra_info("peername")), self.user, queued)
            transport.abort()  # its handler's finally unregisters it on the next loop turn
            return False
        transport.write(frame)
        return True

    async def close(self, code: int, reason: str) -> None:
        # Cut on a character boundary: a reason that is not valid UTF-8 makes the client
        # fail the connection (1007) instead of reading it.
        message = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()
        await self._ws.close(code=code, message=message)

    def abort(self) -> None:
        self._transport.abort()


def _refusal(request: web.Request) -> web.Response | None:
    """The handshake checks of RFC 6455 section 4.2.1 that aiohttp does not make, or None."""
    version = (request.version.major, request.version.minor)
    refusal = check_upgrade(request.headers, request.app[LAB].settings.origins, version)
    if refusal is None:
        return None
    return error_response(refusal.status, refusal.code, refusal.message, dict(refusal.headers))


async def _prepare(
    request: web.Request, lab: Lab, subprotocol: str | None = None
) -> tuple[web.WebSocketResponse, SocketWriter]:
    ws = LabWebSocketResponse(
        heartbeat=lab.switches.ping_interval,  # live: sockets opened from now on use the switch's value
        max_msg_size=lab.switches.max_message_bytes,  # live, as the heartbeat: sockets opened from now on
        # Off on purpose: a broadcast frame is encoded once for every recipient,
        # which per-connection deflate contexts would make impossible.
        compress=False,
        # aiohttp answers the first offered name it knows: giving it only the one we chose
        # (or none) makes it echo exactly that, and never a name the client did not offer.
        protocols=(subprotocol,) if subprotocol else (),
    )
    await ws.prepare(request)
    assert request.transport is not None
    return ws, SocketWriter(ws, request.transport, lab)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    lab = request.app[LAB]
    if (refused := _refusal(request)) is not None:
        return refused
    authenticated: tuple[User, Claims] | None = None
    if (token := _query_param(request, "token")) is not None:
        try:
            authenticated = await lab.authenticate(token)
        except AuthError as exc:
            return error_response(401, "unauthorized", str(exc))
    elif cookie := request.cookies.get(SESSION_COOKIE):
        # The login's cookie, sent by the browser on its own: the Origin check above
        # (in _refusal) is what stops another site's page from riding on it.
        try:
            authenticated = await lab.authenticate(cookie)
        except AuthError as exc:
            return error_response(401, "unauthorized", f"{SESSION_COOKIE} cookie: {exc}")
    del token  # this frame lives as long as the socket: it keeps no more than it needs

    subprotocol = select_subprotocol(request.headers.get("Sec-WebSocket-Protocol"))
    ping_interval = lab.switches.ping_interval
    ws, writer = await _prepare(request, lab, subprotocol)
    limit = lab.switches.max_connections
    if limit and len(lab.peers) >= limit:
        # Full: the handshake completed (a browser cannot read an HTTP refusal's status), so
        # say it in the close code clients retry on, RFC 6455 section 7.4.1's 1013.
        await writer.close(CloseCode.TRY_AGAIN_LATER, "try again later")
        return ws
    lab.peers.add(writer)
    session: Session | None = None
    try:
        session = await _open_session(lab, ws, writer, authenticated, ping_interval)
        authenticated = None  # the User row (password hash included) and the Claims: not kept per socket
        if session is None:
            return ws
        # ws.receive() rather than `async for`: the same messages, one coroutine frame less
        # parked per idle socket (aiohttp's __anext__ only wraps receive()).
        while (msg := await ws.receive()).type not in _END:
            if msg.type is WSMsgType.TEXT:
                await session.on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await session.on_binary(msg.data)
            elif msg.type is WSMsgType.ERROR:
                break
            del msg  # not kept while the socket idles until the next one
    finally:
        lab.peers.discard(writer)
        if session is not None:
            await session.close(ws.close_code, _close_reason(ws))
    return ws


# What ends a socket's receive loop (as it ends aiohttp's ``async for msg in ws``).
_END = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


def _query_param(request: web.Request, name: str) -> str | None:
    """The first ``name`` in the query string, decoded as ``request.query`` decodes it.

    Not through ``request.query``: the URL would cache that multidict (and the token in
    it) for as long as the socket stays open."""
    for key, value in parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True):
        if key == name:
            return value
    return None


async def _open_session(
    lab: Lab,
    ws: web.WebSocketResponse,
    writer: SocketWriter,
    authenticated: tuple[User, Claims] | None,
    ping_interval: float | None,
) -> Session | None:
    """Authenticate (by the first message if the handshake did not) and open the session;
    None if the socket was closed instead."""
    if authenticated is None:
        authenticated = await _first_message_auth(lab, ws, writer)
        if authenticated is None:
            return None
    user, claims = authenticated
    session = await Session.open(lab, UserRef.of(user), claims.expires_at, writer, ping_interval)
    writer.socket_id, writer.user = session.conn.socket_id, session.conn.user
    return session


def _close_reason(ws: web.WebSocketResponse) -> str:
    exc = ws.exception()
    if exc is not None:
        return str(exc)
    return "closed" if ws.close_code not in (None, CloseCode.ABNORMAL) else "connection lost"


async def _first_message_auth(lab: Lab, ws: web.WebSocketResponse, writer: SocketWriter) -> tuple[User, Claims] | None:
    """Without ``?token=``, the first message must be ``auth`` within ``auth_timeout``; else close 1008."""
    try:
        # One deadline for the whole wait: receive(timeout=) restarts its timer after every
        # ping or pong frame, so a client sending only those would never have to authenticate.
        async with asyncio.timeout(lab.settings.auth_timeout):
            msg = await ws.receive()
    except TimeoutError:
        await writer.close(CloseCode.POLICY_VIOLATION, "authentication timeout")
        return None
    if msg.type is not WSMsgType.TEXT:
        if msg.type is WSMsgType.BINARY:
            await writer.close(CloseCode.POLICY_VIOLATION, "first message must be auth")
        return None
    ref = None
    try:
        message = parse_client_message(msg.data)
        ref = message.ref
        if not isinstance(message, Auth):
            raise EnvelopeError(ErrorCode.NOT_AUTHENTICATED, f"first message must be auth, got {message.type}", ref)
        authenticated = await lab.authenticate(message.token)
    except (EnvelopeError, AuthError) as exc:
        reason = exc.message if isinstance(exc, EnvelopeError) else str(exc)
        ref = exc.ref if isinstance(exc, EnvelopeError) else ref  # a bad token: the auth parsed
        lab.send(writer, ErrorMessage(ErrorCode.NOT_AUTHENTICATED, reason, ref))
        await writer.close(CloseCode.POLICY_VIOLATION, reason)
        return None
    if ref is not None:
        lab.send(writer, AckMessage(ref))
    return authenticated


async def observe_handler(request: web.Request) -> web.StreamResponse:
    """Read-only stream of what the server does, for dashboards (see observe.py).

    It shows usernames, rooms and chat previews: when the server has an admin token, only
    the instructor's dashboard (holding that token) sees it all; a user's ``?token=`` (a
    student's dashboard in class mode) sees the view a server without an admin token gives
    anyone: no private room, DM pair, signal target or text (PROTOCOL.md section 9)."""
    lab = request.app[LAB]
    if (refused := _refusal(request)) is not None:
        return refused
    watcher: int | None = None  # the user whose token opened the hidden view (None: the whole view)
    if lab.settings.admin_token and not is_admin(request):
        if (token := _query_param(request, "token")) is None:
            return error_response(403, "forbidden", "/observe needs the admin token or a user's ?token=")
        try:
            user, _ = await lab.authenticate(token)
        except AuthError as exc:
            return error_response(401, "unauthorized", str(exc))
        del token
        # Each one is sent every event: capped per user as event streams are (8 beyond loopback).
        per_user = lab.settings.streams_per_user_limit
        if per_user and sum(uid == user.id for uid in lab.hidden_observers.values()) >= per_user:
            return error_response(429, "too_many_streams", f"at most {per_user} open /observe streams per user")
        watcher = user.id
    slot = object()  # counted from now on: a burst of handshakes cannot get past the cap
    if watcher is not None:
        lab.hidden_observers[slot] = watcher
    try:
        ws, writer = await _prepare(request, lab)
    finally:
        lab.hidden_observers.pop(slot, None)
    lab.send(writer, lab.snapshot(hidden=watcher is not None))
    lab.observatory.observers.add(writer)
    if watcher is not None:
        lab.hidden_observers[writer] = watcher
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                lab.send(writer, ErrorMessage(ErrorCode.FORBIDDEN, "/observe is read-only"))
    finally:
        lab.observatory.observers.discard(writer)
        lab.observatory.behind.discard(writer)
        lab.hidden_observers.pop(writer, None)
    return ws
