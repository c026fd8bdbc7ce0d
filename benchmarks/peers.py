#!/usr/bin/env python3
"""The lab server against its peers: one room's fan-out, measured the same way for each.

Servers (each in its own process, pinned to CPU 0 where ``os.sched_setaffinity`` exists):

* ``lab``: ``python -m labserver`` (token in the URL, welcome, ``join``, chat acked after SQLite);
* ``bare``: a ``websockets`` server that relays every message with ``websockets.broadcast()``;
* ``sio``: a python-socketio ``AsyncServer`` on aiohttp, every client in one room;
* ``lab-redis`` (when ``redis-server`` and ``--redis`` exist): two lab processes on one Redis,
  half the subscribers on each, the sender on the first.

This process is the load generator, pinned to CPU 1, with lean subscribers
(``lean.py``). For each socket count, each round and each server, in an order
rotated every round (interleaved: the ratios compare servers under the same
background load), it starts that server afresh and measures

* connection set-up rate (connections opened 200 at a time until each is ready;
  for the lab, also until the welcome) and KiB of server RSS per idle connection.
  Every server listens with the same backlog, the lab's own (``LISTEN_BACKLOG``,
  set as the lab sets it: asyncio still accepts at most 100 or 128 in one go): with
  200 connects in flight, a default backlog of 100 or 128 made the kernel drop some,
  retried by the client only after 1 s, and a single one of those decided the rate
  at 1,000 sockets;
* maximum deliveries/s: ``--messages`` messages with at most ``--window`` in flight;
* p50/p99 delivery latency at ``--rate`` messages/s (send time in the payload) and
  the server's event-loop lag meanwhile (a 50 ms sleeper in each server, same code);
* CPU % of the server and of this load generator in each phase: the saturated one is
  the bottleneck (the load generator must not be).

    .venv/bin/python benchmarks/peers.py --quick          # < 2 minutes
    .venv/bin/python benchmarks/peers.py                  # 1,000 and 5,000 sockets, 2 rounds
    .venv/bin/python benchmarks/peers.py --setup-only     # the set-up phase only (rates, RSS)
    .venv/bin/python benchmarks/peers.py --chart benchmarks/results/peers.json  # -> images/12_benchmark.svg

Results go to ``benchmarks/results/peers[-setup][-quick].json`` (``--out`` to change).

Every server this starts dies with it: on SIGINT, SIGTERM or SIGHUP the servers are
stopped on the way out, and each one also exits by itself when its stdin (a pipe from
this process) reaches EOF, which happens even when this process is killed with SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from lean import LeanSubscriber, bench_text

from labserver.aiohttp_compat import deepen_backlog, listen_deeper
from labserver.app import LISTEN_BACKLOG
from labserver.course import RestClient
from labserver.rawws import handshake_request

ROOM = "bench"
TEXT_WIDTH = 40  # the chat text; each server's delivered frame is ~100 bytes (reported per server)
SERVER_CPU, LOADGEN_CPU = 0, 1
RESULTS = Path(__file__).resolve().parent / "results"
CHART = Path(__file__).resolve().parent.parent / "images" / "12_benchmark.svg"
KINDS = ("lab", "bare", "sio")
CONNECT_ATTEMPTS, CONNECT_TIMEOUT, READY_TIMEOUT = 5, 10.0, 60.0
BACKLOG = LISTEN_BACKLOG  # every server's listen() backlog: the lab's own (see the module docstring)
CHILDREN: set[subprocess.Popen[str]] = set()  # every server process started and not yet stopped


# --- the servers -------------------------------------------------------------------------


async def lag_monitor(path: str) -> None:
    """Append ``<wall time> <lag ms>`` every 50 ms: how late a 50 ms sleep wakes is the loop's lag."""
    with open(path, "a", buffering=1) as out:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            out.write(f"{time.time():.3f} {(loop.time() - before - 0.05) * 1000:.3f}\n")


async def serve_bare(port: int, lag_file: str) -> None:
    """A bare ``websockets`` server: every text message goes to every socket with ``broadcast()``."""
    import websockets
    from websockets.asyncio.server import ServerConnection, serve

    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                websockets.broadcast(clients, message)
        finally:
            clients.discard(ws)

    asyncio.create_task(lag_monitor(lag_file))
    async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=None) as server:
        listen_deeper(server.sockets, BACKLOG)
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()


async def serve_sio(port: int, lag_file: str) -> None:
    """python-socketio on aiohttp: every client enters one room; a ``chat`` is emitted to it."""
    import socketio  # type: ignore[import-untyped]
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=3600, ping_timeout=600, transports=["websocket"])
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.enter_room(sid, ROOM)

    @sio.event
    async def chat(sid: str, data: Any) -> None:
        await sio.emit("chat", data, room=ROOM)

    asyncio.create_task(lag_monitor(lag_file))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    deepen_backlog(site, BACKLOG)
    print(f"listening on {runner.addresses[0][1]}", flush=True)
    await asyncio.Future()


async def serve_lab(argv: list[str], lag_file: str) -> None:
    """``python -m labserver`` with the same lag monitor as the others."""
    from labserver.__main__ import class_mode_admin_token, parse_args, raise_open_files_limit, serve

    settings, _ = parse_args(argv)
    settings = class_mode_admin_token(settings)
    raise_open_files_limit()
    asyncio.create_task(lag_monitor(lag_file))
    await serve(settings, exit_on_stdin_eof=True)  # as every server here: gone with this process


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[str]
    port: int
    lag_file: str
    extra: list[subprocess.Popen[str]] = field(default_factory=list)  # lab-redis: the second process
    extra_ports: list[int] = field(default_factory=list)
    lab: RestClient | None = None

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *(p.pid for p in self.extra)]

    def stop(self) -> None:
        stop_children([self.proc, *self.extra])


def stop_children(procs: list[subprocess.Popen[str]]) -> None:
    """Stop server processes (SIGTERM, SIGKILL after 10 s) and forget them."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        CHILDREN.discard(proc)


def _popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """A server process, remembered in :data:`CHILDREN`; its stdin is a pipe from here, whose EOF
    (this process gone, however it died) makes it exit."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
    CHILDREN.add(proc)
    return proc


def exit_at_stdin_eof() -> None:
    """In a ``--serve`` child: exit when stdin reaches EOF, i.e. when the benchmark that started us is gone."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while os.read(sys.stdin.fileno(), 4096):
                pass
        os._exit(0)  # nothing of ours to flush: the results live in the parent

    threading.Thread(target=watch, daemon=True).start()


def _spawn(args: list[str], tmp: str, name: str) -> tuple[subprocess.Popen[str], int, str]:
    lag_file = os.path.join(tmp, f"{name}.lag")
    cmd = [sys.executable, __file__, "--serve", args[0], "--lag-file", lag_file, "--", *args[1:]]
    proc = _popen(cmd, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        stop_children([proc])
        raise SystemExit(f"{name} did not start: {line}{proc.stdout.read()}")
    port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[-1].split("/")[0])
    with contextlib.suppress(OSError):
        os.sched_setaffinity(proc.pid, {SERVER_CPU})
    return proc, port, lag_file


def _lab_args(data_dir: str, redis_url: str | None = None) -> list[str]:
    args = ["lab", "--port", "0", "--data-dir", data_dir, "--rate", "1e6", "--burst", "1000000"]
    args += ["--max-unfinished-per-ip", "100000", "--ping-interval", "3600", "--send-buffer-limit", "67108864"]
    return args + (["--redis", redis_url] if redis_url else [])


def start_server(kind: str, tmp: str, redis_url: str | None = None) -> Server:
    if kind in ("bare", "sio"):
        proc, port, lag = _spawn([kind, "--port", "0"], tmp, kind)
        return Server(kind, proc, port, lag)
    data = tempfile.mkdtemp(dir=tmp)
    proc, port, lag = _spawn(_lab_args(data, redis_url), tmp, kind)
    server = Server(kind, proc, port, lag, lab=RestClient(f"http://127.0.0.1:{port}"))
    if kind == "lab-redis":  # a second process on the same Redis (and database)
        second, port2, _ = _spawn(_lab_args(data, redis_url), tmp, kind + "-2")
        server.extra, server.extra_ports = [second], [port2]
    return server


def redis_mode_available() -> str | None:
    """None if the Redis run can happen, else the one-line reason it cannot."""
    try:
        from labserver.course.redis_server import find_redis_server
    except ImportError:
        return "labserver.course.redis_server is missing"
    if find_redis_server() is None:
        return "no redis-server binary"
    help_text = subprocess.run([sys.executable, "-m", "labserver", "--help"], capture_output=True, text=True).stdout
    if "--redis" not in help_text:
        return "python -m labserver has no --redis option yet"
    return None


# --- one server's measurements -------------------------------------------------------------


def _connect_args(server: Server, port: int, user_token: str | None) -> tuple[bytes, bytes | None, bool]:
    """(what a subscriber writes first, its ready marker, Engine.IO?) for this kind of server."""
    if server.kind == "bare":
        return handshake_request("127.0.0.1", port, "/"), None, False
    if server.kind == "sio":
        return (
            handshake_request("127.0.0.1", port, "/socket.io/?EIO=4&transport=websocket") + _masked(b"40"),
            b'40{"sid"',
            True,
        )
    join = _masked(json.dumps({"type": "join", "room": ROOM, "ref": "j"}).encode())
    return handshake_request("127.0.0.1", port, f"/ws?token={user_token}") + join, b'"ref":"j"', False


def _masked(payload: bytes) -> bytes:
    from lean import masked_text

    return masked_text(payload)


def chat_payload(kind: str) -> bytes:
    """The sender's message for this kind of server; each carries the send time."""
    text = bench_text(TEXT_WIDTH)
    if kind == "sio":
        return ("42" + json.dumps(["chat", {"room": ROOM, "text": text}], separators=(",", ":"))).encode()
    if kind == "bare":  # what a lab chat delivery looks like, about as long
        body = {"type": "chat", "room": ROOM, "seq": 1, "from": {"id": 1, "username": "bench"}, "text": text}
        return json.dumps({**body, "ts": time.time()}, separators=(",", ":")).encode()
    return json.dumps({"type": "chat", "room": ROOM, "text": text}, separators=(",", ":")).encode()


def rss(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


@contextlib.contextmanager
def cpu_meter(pids: list[int], out: dict[str, Any], key: str) -> Iterator[None]:
    """CPU % of the servers (summed) and of this process over the block."""
    procs = [psutil.Process(pid) for pid in pids]
    me = psutil.Process()

    def used(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    start, server0, me0 = time.perf_counter(), sum(map(used, procs)), used(me)
    yield
    elapsed = time.perf_counter() - start
    server_cpu = (sum(map(used, procs)) - server0) / elapsed * 100
    me_cpu = (used(me) - me0) / elapsed * 100
    out[key] = {
        "server_cpu_pct": round(server_cpu, 1),
        "loadgen_cpu_pct": round(me_cpu, 1),
        "saturated": "server" if server_cpu >= 90 * len(pids) else "load generator" if me_cpu >= 90 else "neither",
    }


def loop_lag(lag_file: str, since: float, until: float) -> dict[str, float]:
    samples = []
    with contextlib.suppress(FileNotFoundError), open(lag_file) as f:
        for line in f:
            at, lag = map(float, line.split())
            if since <= at <= until:
                samples.append(lag)
    if not samples:
        return {"lag_p99_ms": 0.0, "lag_max_ms": 0.0}
    samples.sort()
    return {"lag_p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2), "lag_max_ms": round(samples[-1], 2)}


async def open_subscribers(server: Server, count: int, token: str | None, inflight: int = 200) -> list[LeanSubscriber]:
    """``count`` subscribers, at most ``inflight`` setting up at a time; lab-redis alternates processes."""
    loop = asyncio.get_running_loop()
    ports = [server.port, *server.extra_ports]
    gate = asyncio.Semaphore(inflight)
    retries = [0]
    subs: list[LeanSubscriber] = []

    async def one(i: int) -> None:
        port = ports[i % len(ports)]
        request, marker, engineio = _connect_args(server, port, token)
        async with gate:
            for attempt in range(CONNECT_ATTEMPTS):  # a full accept backlog drops SYNs: retry, as a client would
                try:
                    _, sub = await asyncio.wait_for(
                        loop.create_connection(
                            lambda: LeanSubscriber(request, marker, engineio=engineio), "127.0.0.1", port
                        ),
                        CONNECT_TIMEOUT,
                    )
                    break
                except (OSError, TimeoutError):
                    if attempt == CONNECT_ATTEMPTS - 1:
                        raise
                    retries[0] += 1
            subs.append(sub)
            await asyncio.wait_for(sub.ready, READY_TIMEOUT)

    await asyncio.gather(*(one(i) for i in range(count)))
    if retries[0]:
        print(f"{server.kind}: {retries[0]} connection attempts retried", file=sys.stderr, flush=True)
    return subs


async def measure(
    server: Server, sockets: int, messages: int, window: int, rate: float, seconds: float, setup_only: bool = False
) -> dict[str, Any]:
    """Every figure for one server at one socket count."""
    out: dict[str, Any] = {"server": server.kind, "sockets": sockets, "loadavg": [round(x, 2) for x in os.getloadavg()]}
    token = server.lab.account("bench_sub").token if server.lab else None
    sender_token = server.lab.account("bench_send").token if server.lab else None
    await asyncio.sleep(0.3)
    rss_before = rss(server.pids)
    start = time.perf_counter()
    with cpu_meter(server.pids, out, "setup_cpu"):
        subs = await open_subscribers(server, sockets, token)
    setup_s = max(s.ready_at for s in subs) - start
    out["setup_per_s"] = round(sockets / setup_s)
    if server.lab:
        out["welcome_per_s"] = round(sockets / (max(s.welcomed_at for s in subs) - start))
    await asyncio.sleep(1.0)
    out["kib_per_idle_socket"] = round((rss(server.pids) - rss_before) / sockets / 1024, 2)
    if setup_only:
        for sub in subs:
            sub.close()
        await asyncio.sleep(1.5)  # let the server forget them before the next server's turn
        return out
    (sender,) = await open_subscribers(server, 1, sender_token)
    everyone = [*subs, sender]

    # Maximum deliveries/s: the sender gets its own copy of each message; that is its "ack" for the window.
    loop = asyncio.get_running_loop()
    for sub in everyone:
        sub.target, sub.done = sub.hits + messages, loop.create_future()
    start = time.perf_counter()
    with cpu_meter(server.pids, out, "fanout_cpu"):
        sent = 0
        while sent < messages:
            while sent < messages and sent - sender.hits < window:
                sender.send_text(chat_payload(server.kind))
                sent += 1
            await asyncio.sleep(0)
            if sent - sender.hits >= window:
                await asyncio.sleep(0.0005)
        await asyncio.wait_for(asyncio.gather(*(s.done for s in everyone if s.done)), timeout=120)
    out["deliveries_per_s"] = round(messages * len(everyone) / (time.perf_counter() - start))
    await asyncio.sleep(0.5)

    # Latency at a fixed moderate rate.
    for sub in subs:
        sub.latencies = []
    wall0 = time.time()
    with cpu_meter(server.pids, out, "latency_cpu"):
        begin = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
            sender.send_text(chat_payload(server.kind))
        await asyncio.sleep(1.0)
    lat = sorted(x for s in subs for x in (s.latencies or ()))
    out["latency_rate_per_s"] = rate
    out["latency_samples"] = len(lat)
    out["expected_samples"] = total * len(subs)
    if lat:
        out["p50_ms"] = round(statistics.median(lat) * 1000, 3)
        out["p99_ms"] = round(lat[int(0.99 * (len(lat) - 1))] * 1000, 3)
    out.update(loop_lag(server.lag_file, wall0, time.time()))
    for sub in everyone:
        sub.close()
    await asyncio.sleep(1.5)  # let the server forget them before the next server's turn
    return out


# --- the run -------------------------------------------------------------------------------


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each server's figures over the bare server's, per socket count, from the best (or median) round."""
    out: dict[str, Any] = {}
    for sockets in sorted({r["sockets"] for r in rows}):

        def figure(kind: str, key: str, pick: Any, sockets: int = sockets) -> float | None:
            values = [r[key] for r in rows if r["server"] == kind and r["sockets"] == sockets and r.get(key)]
            return pick(values) if values else None

        bare = {k: figure("bare", k, p) for k, p in _PICKS.items()}
        per: dict[str, Any] = {}
        for kind in sorted({r["server"] for r in rows} - {"bare"}):
            per[kind] = {}
            for key, pick in _PICKS.items():
                mine, theirs = figure(kind, key, pick), bare[key]
                if mine is not None and theirs:
                    per[kind][key] = round(mine / theirs, 2)
            if kind == "lab":
                welcome = figure("lab", "welcome_per_s", max)
                if welcome and bare["setup_per_s"]:
                    per[kind]["welcome_per_s_over_bare_handshake"] = round(welcome / bare["setup_per_s"], 2)
        out[str(sockets)] = per
    return out


_PICKS: dict[str, Any] = {
    "deliveries_per_s": max,
    "setup_per_s": max,
    "p50_ms": statistics.median,
    "p99_ms": statistics.median,
    "kib_per_idle_socket": statistics.median,
    "lag_p99_ms": statistics.median,
}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {LOADGEN_CPU})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kinds = list(args.servers)
    redis_note = None
    if "lab-redis" in kinds or args.redis:
        redis_note = redis_mode_available()
        if redis_note is None and "lab-redis" not in kinds:
            kinds.append("lab-redis")
        elif redis_note is not None:
            kinds = [k for k in kinds if k != "lab-redis"]
            print(f"Redis mode skipped: {redis_note}", flush=True)
    rows: list[dict[str, Any]] = []
    redis_ctx: Any = contextlib.nullcontext(None)
    if "lab-redis" in kinds:
        from labserver.course.redis_server import RedisServer

        redis_ctx = RedisServer()
    with tempfile.TemporaryDirectory() as tmp, redis_ctx as redis:
        for sockets in args.sockets:
            for round_no in range(args.rounds):
                # Fresh servers every round: the RSS per socket is a first fill, and no round inherits
                # the last one's thousands of aborted connections (a bare server reused so could stall).
                order = kinds[round_no % len(kinds) :] + kinds[: round_no % len(kinds)]
                for kind in order:
                    server = start_server(kind, tmp, redis.url if redis is not None and kind == "lab-redis" else None)
                    try:
                        row = await measure(
                            server, sockets, args.messages, args.window, args.rate, args.seconds, args.setup_only
                        )
                    except (OSError, TimeoutError) as exc:  # say so and go on with the others
                        row = {"server": kind, "sockets": sockets, "error": f"{type(exc).__name__}: {exc}"}
                    finally:
                        server.stop()
                    row["round"] = round_no
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "pinned": hasattr(os, "sched_setaffinity"),
        },
        "config": {
            k: v
            for k, v in vars(args).items()
            if k not in ("chart", "chart_out", "out", "serve", "lag_file", "port", "rest")
        },
        "redis_mode": "ran" if "lab-redis" in kinds else f"skipped: {redis_note or 'not asked'}",
        "rows": rows,
        "ratios_vs_bare": ratios(rows),
    }


# --- big rooms: a join storm into one room, and a reconnect storm after a restart --------------


def start_lab_plain(data_dir: str, source: str | None, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    """``python -m labserver`` from this checkout or ``source`` (an older one), pinned to CPU 0."""
    env = dict(os.environ, PYTHONPATH=source) if source else None
    args = _lab_args(data_dir)[1:]
    args[args.index("--port") + 1] = str(port)
    cmd = [sys.executable, "-m", "labserver", *args, "--exit-on-stdin-eof"]
    proc = _popen(cmd, text=True, env=env, cwd=source)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        stop_children([proc])
        raise SystemExit(f"the lab did not start: {line}{proc.stdout.read()}")
    with contextlib.suppress(OSError):
        os.sched_setaffinity(proc.pid, {SERVER_CPU})
    return proc, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[-1])


async def join_storm(sockets: int, source: str | None) -> dict[str, Any]:
    """Fill one room with ``sockets`` sockets (handshake, welcome, join, ack each), 200 at a time,
    and the bare server with as many handshakes: joins/s against connections/s."""
    out: dict[str, Any] = {"sockets": sockets, "server_source": source or "this checkout"}
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_lab_plain(tmp, source)
        try:
            lab = Server("lab", proc, port, "", lab=RestClient(f"http://127.0.0.1:{port}"))
            token = lab.lab.account("bench_sub").token if lab.lab else None
            out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            start = time.perf_counter()
            with cpu_meter([proc.pid], out, "lab_cpu"):
                subs = await open_subscribers(lab, sockets, token)
            out["lab_joins_per_s"] = round(sockets / (max(s.ready_at for s in subs) - start))
            out["lab_welcomes_per_s"] = round(sockets / (max(s.welcomed_at for s in subs) - start))
            for sub in subs:
                sub.close()
        finally:
            stop_children([proc])
        bare_proc, bare_port, lag = _spawn(["bare", "--port", "0"], tmp, "bare")
        try:
            bare = Server("bare", bare_proc, bare_port, lag)
            start = time.perf_counter()
            subs = await open_subscribers(bare, sockets, None)
            out["bare_connections_per_s"] = round(sockets / (max(s.ready_at for s in subs) - start))
            for sub in subs:
                sub.close()
        finally:
            bare.stop()
    out["lab_joins_over_bare"] = round(out["lab_joins_per_s"] / out["bare_connections_per_s"], 2)
    out["lab_welcomes_over_bare"] = round(out["lab_welcomes_per_s"] / out["bare_connections_per_s"], 2)
    return out


async def reconnect_storm(clients: int, missed: int, source: str | None) -> dict[str, Any]:
    """``clients`` sockets in one room; the server restarts; ``missed`` messages are posted as it
    comes back; every client reconnects at once with ``resume``. How long until all have them?"""
    out: dict[str, Any] = {"clients": clients, "missed": missed, "server_source": source or "this checkout"}
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_lab_plain(tmp, source)
        lab = RestClient(f"http://127.0.0.1:{port}")
        server = Server("lab", proc, port, "", lab=lab)
        try:
            token, poster = lab.account("bench_sub").token, lab.account("bench_post")
            subs = await open_subscribers(server, clients, token)
            after = lab.request("POST", f"/api/rooms/{ROOM}/messages", {"text": "before"}, poster.token)[1]["seq"]
            stop_children([proc])
            for sub in subs:
                sub.close()
            proc, _ = start_lab_plain(tmp, source, port)
            server.proc = proc
            out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            start = time.perf_counter()
            for _ in range(missed):
                lab.request("POST", f"/api/rooms/{ROOM}/messages", {"text": bench_text(TEXT_WIDTH)}, poster.token)
            resume = _masked(json.dumps({"type": "resume", "room": ROOM, "after": after, "ref": "j"}).encode())
            loop = asyncio.get_running_loop()
            request = handshake_request("127.0.0.1", port, f"/ws?token={token}") + resume

            def fresh() -> LeanSubscriber:
                sub = LeanSubscriber(request, b'"ref":"j"')
                sub.target, sub.done = missed, loop.create_future()
                return sub

            gate = asyncio.Semaphore(500)

            async def one() -> LeanSubscriber:
                async with gate:
                    _, sub = await loop.create_connection(fresh, "127.0.0.1", port)
                    await sub.ready
                    return sub

            with cpu_meter([proc.pid], out, "lab_cpu"):
                back = await asyncio.gather(*(one() for _ in range(clients)))
                await asyncio.wait_for(asyncio.gather(*(s.done for s in back if s.done)), timeout=120)
            out["all_caught_up_s"] = round(time.perf_counter() - start, 2)
            out["every_client_got_every_missed_message"] = all(s.hits >= missed for s in back)
            for sub in back:
                sub.close()
        finally:
            stop_children([server.proc])
    return out


def chart(results_path: Path, target: Path = CHART) -> Path:
    """Bars of each figure over the bare server's (1.0 = as the bare server), per socket count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results_path.read_text())
    counts = list(data["ratios_vs_bare"])
    keys = ["deliveries_per_s", "setup_per_s", "p50_ms", "p99_ms", "kib_per_idle_socket"]
    labels = [
        "fan-out\n(higher better)",
        "set-up rate\n(higher better)",
        "p50\n(lower better)",
        "p99\n(lower better)",
        "KiB/socket\n(lower better)",
    ]
    fig, axes = plt.subplots(1, len(counts), figsize=(5.5 * len(counts), 3.8), squeeze=False)
    for ax, count in zip(axes[0], counts, strict=True):
        per = data["ratios_vs_bare"][count]
        kinds = sorted(per)
        width = 0.8 / max(1, len(kinds))
        for i, kind in enumerate(kinds):
            values = [per[kind].get(k, 0) for k in keys]
            ax.bar([x + i * width for x in range(len(keys))], values, width, label=kind)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([x + width * (len(kinds) - 1) / 2 for x in range(len(keys))], labels, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{count} sockets: ratio to a bare websockets server")
        ax.legend(fontsize=8)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, metadata={"Date": None})
    plt.close(fig)
    return target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 and 1,000 sockets, 1 round, short phases (< 2 min)")
    parser.add_argument("--sockets", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--messages", type=int, default=100, help="messages in the fan-out phase")
    parser.add_argument("--window", type=int, default=20, help="messages in flight in the fan-out phase")
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase")
    parser.add_argument("--setup-only", action="store_true", help="measure the set-up phase only (rates, RSS)")
    parser.add_argument("--servers", nargs="+", default=list(KINDS), choices=[*KINDS, "lab-redis"])
    parser.add_argument("--redis", action="store_true", help="add the lab in Redis mode (two processes)")
    parser.add_argument("--out", type=Path, help="where the JSON goes (default benchmarks/results/peers[-quick].json)")
    parser.add_argument("--chart", type=Path, metavar="RESULTS_JSON", help="only draw images/12_benchmark.svg from it")
    parser.add_argument("--chart-out", type=Path, default=CHART, help=argparse.SUPPRESS)
    parser.add_argument("--join-storm", type=int, metavar="N", help="only fill one room with N sockets (joins/s)")
    parser.add_argument("--reconnect-storm", type=int, metavar="N", help="only: N clients resume after a restart")
    parser.add_argument("--server-source", help="--join-storm/--reconnect-storm: run the lab from this checkout")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run one server
    parser.add_argument("--lag-file", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sockets, args.rounds, args.messages, args.seconds = [200, 1000], 1, 100, 3.0
    return args


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: the servers are stopped


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        if args.serve != "lab":  # the lab watches its stdin itself (exit_on_stdin_eof)
            exit_at_stdin_eof()
        serve = {
            "bare": lambda: serve_bare(args.port, args.lag_file),
            "sio": lambda: serve_sio(args.port, args.lag_file),
        }
        coro = serve[args.serve]() if args.serve in serve else serve_lab(args.rest, args.lag_file)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(coro)
        return
    if args.chart:
        print(chart(args.chart, args.chart_out))
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):  # SIGINT already raises KeyboardInterrupt
        signal.signal(sig, _raise_exit)
    try:
        _run_benchmarks(args)
    finally:
        stop_children(list(CHILDREN))  # after an exception or a signal: none is left behind


def _run_benchmarks(args: argparse.Namespace) -> None:
    if args.join_storm or args.reconnect_storm:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, {LOADGEN_CPU})
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
        if args.join_storm:
            print(json.dumps(asyncio.run(join_storm(args.join_storm, args.server_source))))
        if args.reconnect_storm:
            print(json.dumps(asyncio.run(reconnect_storm(args.reconnect_storm, 5, args.server_source))))
        return
    results = asyncio.run(run(args))
    name = "peers" + ("-setup" if args.setup_only else "") + ("-quick" if args.quick else "")
    out = args.out or RESULTS / f"{name}.json"  # a set-up-only run never replaces a whole one
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["ratios_vs_bare"], indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
