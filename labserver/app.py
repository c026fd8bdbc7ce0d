"""The aiohttp application: REST and WebSocket on one port.

The upgrade to WebSocket happens in the HTTP server itself (a ``GET /ws`` route
that answers ``101 Switching Protocols``), which is why one port serves both
halves of the hybrid. Shared state lives in ``app[LAB]``; background work
(expiry sweeps, observation batches and stats) runs in ``cleanup_ctx``; shutdown
closes every socket with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from .appkeys import LAB, error_response
from .auth import TokenIssuer
from .broker import Broker, InMemoryBroker
from .config import Settings
from .frames import CloseCode
from .lab import Lab
from .messages import ObserveEvent
from .redis_broker import RedisBroker
from .rest import as_json_error, routes
from .store import AsyncStore, NotFound, Store
from .ws import observe_handler, websocket_handler

log = logging.getLogger("labserver")

STATIC = Path(__file__).parent / "static"
OBSERVE_FLUSH_INTERVAL = 0.1  # at most 10 observation batches a second
SWEEP_INTERVAL = 0.25
LISTEN_BACKLOG = 4096
"""Connections the kernel may hold, set up but not yet accepted (``listen()``'s backlog; the
server sets it with :func:`~labserver.aiohttp_compat.deepen_backlog`).

aiohttp's default is 128. A class reconnecting after a restart, or a crowd joining at once,
sends its connections within milliseconds while the loop is busy with the ones before: past
the backlog the kernel drops the new ones, which the client only retries after 1 s (then 3,
7...), so a burst of a few hundred set-ups took seconds instead of a fraction of one. 4096 is
Linux's own cap (``net.core.somaxconn`` since 5.4; the kernel lowers a larger value to it); a
waiting connection costs the kernel a few hundred bytes, nothing here until it is accepted."""
FULL_GC_AFTER = 100
"""Young (generation 1) collections between two full ones: Python's third GC threshold (default 10)."""


def tune_gc() -> None:
    """Make Python's full garbage collections rarer in this process (the server's, not a test's).

    A full collection traverses every object alive, and each open socket keeps a few hundred
    (aiohttp's request, response, parser and transport, the session...). With Python's default
    thresholds one ran every 70,000 allocations or so, whenever the heap had grown by a quarter:
    while a crowd connected, a third of each connection's set-up CPU went to traversing the
    sockets already open (1.4 s for 10,000 set-ups with 5,000 open, here). Reference counting
    frees almost everything the lab drops, so a collection is rarely what gives memory back;
    the young generations are still collected as often as before."""
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_GC_AFTER)


def make_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    app = web.Application(middlewares=[front_door], client_max_size=settings.upload_max_bytes + 64 * 1024)
    app.add_routes(routes)
    # GET only (RFC 6455 section 4.1): aiohttp would also route HEAD here and upgrade it.
    app.router.add_get("/ws", websocket_handler, allow_head=False)
    app.router.add_get("/observe", observe_handler, allow_head=False)
    app.router.add_get("/", _index)
    app.router.add_get("/live", _live)  # the projector view (class mode), fed by /observe
    app.router.add_static("/static/", STATIC, name="static")
    app.on_response_prepare.append(_security_headers)
    if broker is None and settings.redis_url is not None:
        broker = RedisBroker(settings.redis_url, settings.node or f"p{os.getpid()}")
    app.cleanup_ctx.append(_lab_context(settings, broker or InMemoryBroker()))
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_sockets)
    return app


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request's first and last stop. First the ``Host`` check, on every path, before a
    token, an Origin or a handshake is looked at: 403 for a Host that does not name this server
    (DNS rebinding). Last, errors as JSON under /api (:func:`~labserver.rest.as_json_error`).

    One middleware, not two: a middleware's frame lives as long as its request, and a
    WebSocket's request lasts as long as the socket (one frame less is ~0.3 KiB per socket)."""
    settings = request.app[LAB].settings
    host = request.headers.get("Host")
    if not settings.host_allowed(host):
        return error_response(
            403,
            "forbidden_host",
            f"Host {host!r} is not allowed (DNS rebinding?): use localhost or an IP address, or start the "
            "lab with --allowed-host NAME",
        )
    try:
        return await handler(request)
    except (NotFound, web.HTTPException) as exc:
        as_json = as_json_error(request, exc)
        if as_json is exc:
            raise
        raise as_json from None


# The page's own rules (static/index.html repeats them in a meta tag), plus what only a header
# can say: no page may frame it (clickjacking). No inline script or handler anywhere in static/.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def _security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """The page and its assets: no MIME sniffing (uploads set it themselves). Every HTML page: its
    Content-Security-Policy, no framing. (JSON answers and handshakes keep their few headers, which
    the lessons show.)"""
    if response.status == 101:
        # A handshake's answer has no body to sniff or frame. Returning before reading the path or
        # the content type also keeps aiohttp from caching both on objects each open socket keeps
        # alive (about 1.5 KiB a socket: past CPython's shared instance keys, each __dict__ grows).
        return
    if request.path.startswith("/static/") or response.content_type == "text/html":
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _live(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "live.html")


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) readable by its owner only, 0700: it holds password
    hashes, every DM and the signing key. One that exists already is left as it is (it may be
    shared on purpose); :func:`warn_if_readable_by_others` says so when others can read it."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode passes through the umask; the parents keep the default


def warn_if_readable_by_others(data_dir: Path) -> None:
    """One warning line when the data directory or the database is readable by other local users."""
    if os.name != "posix":
        return  # Windows: ACLs, not mode bits
    for path in (data_dir, data_dir / "lab.sqlite3"):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning(
                "%s is readable by other users (mode %o): it holds password hashes and every DM; chmod go-rwx it",
                path,
                mode & 0o777,
            )
            return


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The text in ``path``; if there is none, ``make()``'s, written there (mode 0600) first.

    Safe when several processes share the data directory and start together (``--redis``):
    the text is written whole to a file of our own, then linked to ``path``, which fails if
    another process got there first; then everyone reads the one that won, never a half file."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # readable by the owner only
    with os.fdopen(fd, "w") as f:
        f.write(make() + "\n")
    try:
        os.link(part, path)
    except FileExistsError:
        pass  # another process made it first: its text is the one
    finally:
        part.unlink()
    return path.read_text().strip()


def load_or_create_secret(path: Path) -> bytes:
    """The JWT signing key, kept in the data directory so tokens survive a restart (and every
    process sharing the directory signs and checks tokens with the same key)."""
    return bytes.fromhex(read_or_create(path, lambda: secrets.token_bytes(32).hex()))


def _lab_context(settings: Settings, broker: Broker) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        private_dir(settings.data_dir)
        warn_if_readable_by_others(settings.data_dir)
        settings.uploads_dir.mkdir(mode=0o700, exist_ok=True)
        store = AsyncStore(Store(settings.database_path))
        issuer = TokenIssuer(load_or_create_secret(settings.secret_path), ttl=settings.token_ttl)
        lab = Lab(settings, store, broker, issuer)
        await lab.start()
        app[LAB] = lab
        yield
        lab.chaos.close()  # the worker processes of offloaded CPU work, if any
        await broker.close()
        await store.close()

    return context


async def _close_sockets(app: web.Application) -> None:
    lab = app[LAB]
    await lab.close_all(*lab.shutdown_close)  # 1001 going away, or 1012 for a restart


async def _background(app: web.Application) -> AsyncIterator[None]:
    lab = app[LAB]
    tasks = [asyncio.create_task(_sweep(lab)), asyncio.create_task(_observe_loop(lab))]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sweep(lab: Lab) -> None:
    """Expire typing indicators, announce offlines whose presence grace is over, and close
    sockets (1008), SSE streams and long polls whose token ran out."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        now = time.monotonic()
        stopped, expired = lab.hub.expire(now)
        await lab.publish_hub_events(list(stopped))
        await lab.publish_due(now)
        for conn in expired:
            conn.expires_at = float("inf")  # close once
            asyncio.create_task(conn.sink.close(CloseCode.POLICY_VIOLATION, "token expired"))
        lab.expire_long_reads(time.time())  # SSE streams and long polls end with their token too


async def _observe_loop(lab: Lab) -> None:
    """Flush observation batches every 100 ms; measure loop lag and rates every ``stats_interval``."""
    loop = asyncio.get_running_loop()
    interval = lab.settings.stats_interval
    last_stats = loop.time()
    last_in, last_out = lab.messages_in, lab.deliveries
    lag = 0.0
    while True:
        before = loop.time()
        await asyncio.sleep(OBSERVE_FLUSH_INTERVAL)
        # A blocked loop wakes us late: the delay past the requested sleep is the lag.
        lag = max(lag, loop.time() - before - OBSERVE_FLUSH_INTERVAL)
        now = loop.time()
        if now - last_stats >= interval and lab.observatory.active:
            elapsed = now - last_stats
            rates = {
                "messages_in_per_s": round((lab.messages_in - last_in) / elapsed, 1),
                "deliveries_per_s": round((lab.deliveries - last_out) / elapsed, 1),
                "loop_lag_ms": round(lag * 1000, 2),
            }
            lab.observatory.emit(ObserveEvent.stats({**lab.stats(), **rates}))
            last_stats, last_in, last_out, lag = now, lab.messages_in, lab.deliveries, 0.0
        lab.flush_observers()
