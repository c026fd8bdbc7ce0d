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
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from .appkeys import LAB
from .auth import TokenIssuer
from .broker import Broker, InMemoryBroker
from .config import Settings
from .frames import CloseCode
from .lab import Lab
from .messages import ObserveEvent
from .rest import json_errors, routes
from .store import AsyncStore, Store
from .ws import observe_handler, websocket_handler

STATIC = Path(__file__).parent / "static"
OBSERVE_FLUSH_INTERVAL = 0.1  # at most 10 observation batches a second
SWEEP_INTERVAL = 0.25


def make_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=settings.upload_max_bytes + 64 * 1024)
    app.add_routes(routes)
    # GET only (RFC 6455 section 4.1): aiohttp would also route HEAD here and upgrade it.
    app.router.add_get("/ws", websocket_handler, allow_head=False)
    app.router.add_get("/observe", observe_handler, allow_head=False)
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC, name="static")
    app.cleanup_ctx.append(_lab_context(settings, broker or InMemoryBroker()))
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_sockets)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def load_or_create_secret(path: Path) -> bytes:
    """The JWT signing key, kept in the data directory so tokens survive a restart."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # readable by the owner only
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key


def _lab_context(settings: Settings, broker: Broker) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.uploads_dir.mkdir(exist_ok=True)
        store = AsyncStore(Store(settings.database_path))
        issuer = TokenIssuer(load_or_create_secret(settings.secret_path), ttl=settings.token_ttl)
        lab = Lab(settings, store, broker, issuer)
        await lab.start()
        app[LAB] = lab
        yield
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
    sockets whose token ran out (1008)."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        now = time.monotonic()
        stopped, expired = lab.hub.expire(now)
        await lab.publish_hub_events(list(stopped))
        await lab.publish_due(now)
        for conn in expired:
            conn.expires_at = float("inf")  # close once
            asyncio.create_task(conn.sink.close(CloseCode.POLICY_VIOLATION, "token expired"))


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
