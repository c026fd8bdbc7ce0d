"""Lesson 08's toolkit: several lab processes behind one Redis, and a load balancer in front.

:func:`start_cluster` starts a throwaway ``redis-server`` (:class:`~labserver.course.redis_server.RedisServer`)
and N lab processes (:class:`~labserver.course.lab.LabServer`, so each dies with the kernel like
the lab of every other lesson) that share one data directory (SQLite: one history, one seq per
room) and one admin token, each with ``--redis`` and its own ``--node`` name ``n1``, ``n2``...::

    cluster = start_cluster(3)
    cluster.nodes[0].url, cluster.node("n2").ws_url   # one handle per process
    cluster.kill("n2"); cluster.restart("n2")          # SIGKILL one process; start it again on its port
    proxy = await RoundRobinProxy(cluster).start()     # ws://127.0.0.1:PORT/ws, round-robin to the nodes
    print(await where(cluster))                        # which node each socket is on

:class:`RoundRobinProxy` is the load balancer: a small asyncio reverse proxy that sends each new
TCP connection to the next live node and forwards the HTTP Upgrade (RFC 6455 section 4.1: the
proxy must pass ``Upgrade: websocket`` and ``Connection: Upgrade``, which are hop-by-hop headers
an ordinary HTTP proxy drops), adds ``X-Forwarded-For`` and ``X-Forwarded-Proto``, keeps ``Host``
and ``Origin``, then copies bytes both ways until either side closes. It keeps the headers it
forwarded (:attr:`RoundRobinProxy.forwarded`) so a lesson can show them. No sticky sessions: a
WebSocket is one TCP connection, so it stays on the node that accepted it for its whole life.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import secrets
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import ipywidgets as widgets
import redis.asyncio
import websockets
from redis.exceptions import RedisError

from ..broker import Routed
from ..redis_broker import CHANNEL
from .lab import LabServer
from .observed import ObservedState
from .redis_server import RedisServer, RedisUnavailable, find_redis_server
from .rest_client import DEFAULT_PASSWORD, Account
from .throttle import render_loop

__all__ = [
    "ChannelSpy",
    "Cluster",
    "ClusterBoard",
    "Placement",
    "RedisUnavailable",
    "RoundRobinProxy",
    "find_redis_server",
    "start_cluster",
    "stop_cluster",
    "where",
]

HEAD_LIMIT = 16 * 1024  # bytes of request head the proxy reads before it gives up (431-like)
FORWARDED_KEPT = 20  # request heads the proxy remembers for display
# What the proxy forwards of a request's headers (and shows): the rest is copied as is.
SHOWN_HEADERS = ("Host", "Upgrade", "Connection", "Origin", "X-Forwarded-For", "X-Forwarded-Proto")


class Cluster:
    """N lab processes sharing a data dir, an admin token and one Redis; a handle per node.

    It is also :class:`~labserver.course.lab.LabLike` (``url``, ``ws_url``, ``account``):
    through the first node still running, so a :class:`~labserver.course.client.LabClient`
    or a Crowd can be pointed at the cluster as a whole."""

    def __init__(self, size: int = 2, *, redis: RedisServer | None = None, **options: Any) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        self._own_redis = redis is None
        self.redis = redis if redis is not None else RedisServer()  # RedisUnavailable: no binary
        self._data = tempfile.TemporaryDirectory(prefix="cluster-")
        self.admin_token = secrets.token_urlsafe(16)
        self.options = options
        self.nodes: list[LabServer] = [
            LabServer(self._data.name, admin_token=self.admin_token, redis=self.redis.url, node=f"n{i}", **options)
            for i in range(1, size + 1)
        ]

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start Redis, then every node (each waits until it listens)."""
        self.redis.start()
        try:
            for node in self.nodes:
                node.start()
            self.wait_connected()
        except Exception:
            self.close()
            raise
        return self

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until every running node says ``broker_connected`` (it subscribes just after it listens)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while node.running and not node.health().get("broker_connected"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {node.options['node']} did not connect to Redis at {self.redis.url}")
                time.sleep(0.05)

    def node(self, name: str | int) -> LabServer:
        """A node by name (``"n2"``) or index (``1``)."""
        if isinstance(name, int):
            return self.nodes[name]
        for node in self.nodes:
            if node.options.get("node") == name:
                return node
        raise KeyError(f"no node {name!r}: the nodes are {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [str(node.options["node"]) for node in self.nodes]

    def kill(self, name: str | int) -> LabServer:
        """SIGKILL one node, as a crashed machine: no close frames, its clients see 1006."""
        node = self.node(name)
        node.kill()
        return node

    def restart(self, name: str | int) -> LabServer:
        """Start a stopped (or killed) node again, on the same port; a running one restarts (1012)."""
        node = self.node(name)
        node.restart() if node.running else node.start()
        self.wait_connected()
        return node

    def close(self) -> None:
        """Stop every node, then Redis (if this cluster started it), and remove the data dir."""
        for node in self.nodes:
            node.close()
        if self._own_redis:
            self.redis.close()
        self._data.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- LabLike, through a live node --------------------------------------------------------

    def _live(self) -> LabServer:
        for node in self.nodes:
            if node.running:
                return node
        raise RuntimeError("no node of the cluster is running")

    @property
    def url(self) -> str:
        return self._live().url

    @property
    def ws_url(self) -> str:
        return self._live().ws_url

    @property
    def ws_urls(self) -> list[str]:
        """Every node's WebSocket URL, running or not (a client tries them in turn)."""
        return [node.ws_url for node in self.nodes]

    def account(self, username: str, password: str = DEFAULT_PASSWORD) -> Account:
        return self._live().account(username, password)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return self._live().request(method, path, body, token)

    def drop(self, socket_id: str, mode: Any = "abort") -> dict[str, Any]:
        """Drop a socket, on whichever node holds it (a node only knows its own sockets)."""
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(RuntimeError):
                    return node.drop(socket_id, mode)
        raise RuntimeError(f"no running node holds socket {socket_id}")

    def __repr__(self) -> str:
        states = ", ".join(f"{n.options['node']}={'up' if n.running else 'down'}" for n in self.nodes)
        return (
            f"<Cluster of {len(self.nodes)} lab processes ({states}), Redis {'up' if self.redis.running else 'down'}>"
        )


_running: dict[str, Any] = {"cluster": None, "key": None}


def start_cluster(size: int = 2, **options: Any) -> Cluster:
    """Start (or reuse, if the same) a cluster of ``size`` lab processes and a Redis.

    Raises :class:`RedisUnavailable` (one line: how to install it) when there is no redis-server."""
    key = repr((size, sorted(options.items())))
    cluster: Cluster | None = _running["cluster"]
    if cluster is not None and _running["key"] == key and all(n.running for n in cluster.nodes):
        return cluster
    if cluster is not None:
        cluster.close()
        _running.update(cluster=None, key=None)
    cluster = Cluster(size, **options).start()
    _running.update(cluster=cluster, key=key)
    return cluster


def stop_cluster() -> None:
    """Stop the cluster :func:`start_cluster` started, if any."""
    cluster: Cluster | None = _running["cluster"]
    if cluster is not None:
        cluster.close()
    _running.update(cluster=None, key=None)


# --- which node each socket is on ------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where every socket of the cluster is: ``rows`` of (node, username, socket id, rooms)."""

    rows: tuple[tuple[str, str, str, str], ...]
    down: tuple[str, ...] = field(default=())

    def nodes_of(self, username: str) -> list[str]:
        """The nodes ``username`` has a socket on."""
        return sorted({node for node, user, _, _ in self.rows if user == username})

    def __repr__(self) -> str:
        lines = [f"{node:<4} {user:<12} {rooms}" for node, user, _, rooms in self.rows]
        lines += [f"{node:<4} (down)" for node in self.down]
        return "\n".join(lines) or "(no sockets)"

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td><b>{html.escape(node)}</b></td><td>{html.escape(user)}</td>"
            f"<td><code>{html.escape(sid)}</code></td><td>{html.escape(rooms)}</td></tr>"
            for node, user, sid, rooms in self.rows
        )
        cells += "".join(f"<tr><td><b>{html.escape(n)}</b></td><td colspan=3><i>down</i></td></tr>" for n in self.down)
        return (
            "<table><tr><th>node</th><th>user</th><th>socket</th><th>rooms</th></tr>"
            f"{cells or '<tr><td colspan=4>(no sockets)</td></tr>'}</table>"
        )


async def where(cluster: Cluster) -> Placement:
    """Ask each node's ``/observe`` for its snapshot: which sockets (users, rooms) it holds.

    A node only knows its own sockets; the table is the union, by node, sorted by user."""
    rows: list[tuple[str, str, str, str]] = []
    down: list[str] = []
    for node in cluster.nodes:
        name = str(node.options["node"])
        if not node.running:
            down.append(name)
            continue
        async with websockets.connect(node.observe_url) as observer:
            snapshot = json.loads(await asyncio.wait_for(observer.recv(), 5))
        for sock in snapshot.get("sockets", []):
            rooms = ", ".join(sorted(sock.get("rooms", [])))
            rows.append((str(snapshot.get("node", name)), sock["user"]["username"], sock["socket_id"], rooms))
    rows.sort(key=lambda row: (row[1], row[0]))
    return Placement(tuple(rows), tuple(down))


# --- what travels on the Redis channel ------------------------------------------------------------


class ChannelSpy:
    """A subscriber of its own on the lab's Redis channel: every routed message it sees, as
    ``(kind, name, seq, origin)`` (``("room", "general", 7, "n1")``), payloads left out.

    It sees what any node sees: what was PUBLISHed while it was subscribed. When Redis goes away
    it reconnects by itself (every 0.1 s), so after an outage :attr:`seen` shows the hole pub/sub
    left: the seqs that were never on the channel for anyone."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.seen: list[tuple[str, str, int, str]] = []
        self.outages = 0  # times the spy lost Redis
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Self:
        self._task = asyncio.create_task(self._listen())
        await self.wait_subscribed()
        return self

    async def wait_subscribed(self, timeout: float = 10.0) -> None:
        """Wait until the spy is subscribed (again, after an outage: it sees nothing before)."""
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    def seqs(self, room: str) -> list[int]:
        """The seqs of ``room``'s chats seen on the channel, in arrival order."""
        return [seq for kind, name, seq, _ in self.seen if kind == "room" and name == room and seq > 0]

    async def _listen(self) -> None:
        while True:
            client = redis.asyncio.Redis.from_url(self.redis_url, socket_connect_timeout=1.0)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._subscribed.set()
                    async for item in pubsub.listen():
                        if item.get("type") == "message":
                            routed = Routed.parse(item["data"])
                            self.seen.append((routed.kind.value, routed.name, routed.seq, routed.origin))
            except (RedisError, OSError):
                self._subscribed.clear()
                self.outages += 1
                await asyncio.sleep(0.1)
            finally:
                await client.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def __repr__(self) -> str:
        return f"<ChannelSpy on {CHANNEL}: {len(self.seen)} message(s) seen, {self.outages} outage(s)>"


# --- the cluster's sockets, live ------------------------------------------------------------------

BOARD_INTERVAL = 0.2  # seconds between two renders at most (5 a second: lesson 00's budget is 10)
BOARD_RETRY = 0.3  # seconds before a board reconnects to a node's /observe (a killed node comes back)
BOARD_REPR = "ClusterBoard(live view of which node each socket is on)"


class ClusterBoard(widgets.HTML):
    """A live table: one column per node, its sockets (user and rooms), or *down*.

    One :class:`~labserver.course.observed.ObservedState` per node, fed by that node's own
    ``/observe`` stream (a node only knows its own sockets); a reader per node reconnects
    when its node dies and comes back. Renders at most 5 times a second, only on change,
    inside ``hold_sync()``; the widget's HTML is also the notebook's static snapshot."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(value="")
        self.cluster = cluster
        self.states: dict[str, ObservedState] = {}  # node -> what its /observe said; absent: down
        self.errors: deque[str] = deque(maxlen=20)
        self._dirty = asyncio.Event()
        self._version = 0
        self._rendered: tuple[Any, ...] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.render(force=True)

    def start(self) -> None:
        """Start one reader per node and the render loop, on the running event loop."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = {loop.create_task(self._read(node)) for node in self.cluster.nodes}
        self._tasks.add(
            loop.create_task(
                render_loop(self._dirty, self.render, BOARD_INTERVAL, lambda e: self.errors.append(repr(e)))
            )
        )

    async def ready(self, timeout: float = 10.0) -> ClusterBoard:
        """Start, and wait until every running node has sent its snapshot (then draw it)."""
        self.start()
        async with asyncio.timeout(timeout):
            while not all(str(n.options["node"]) in self.states for n in self.cluster.nodes if n.running):
                await asyncio.sleep(0.02)
        self.render()
        return self

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until the board agrees with :func:`where` (every node's current snapshot), then draw."""
        async with asyncio.timeout(timeout):
            while self._rows() != (await where(self.cluster)).rows:
                await asyncio.sleep(0.05)
        self.render()

    async def stop(self) -> None:
        """Stop reading and rendering; the widget keeps its last picture."""
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.render()

    async def _read(self, node: LabServer) -> None:
        name = str(node.options["node"])
        while True:
            try:
                async with websockets.connect(node.observe_url, open_timeout=2) as stream:
                    state = ObservedState()
                    async for raw in stream:
                        if state.apply(json.loads(raw)):
                            self.states[name] = state
                            self._touch()
            except (OSError, websockets.WebSocketException, TimeoutError, ValueError) as exc:
                self.errors.append(f"{name}: {type(exc).__name__}")
            if self.states.pop(name, None) is not None:
                self._touch()
            await asyncio.sleep(BOARD_RETRY)

    def _touch(self) -> None:
        self._version += 1
        self._dirty.set()

    def _rows(self) -> tuple[tuple[str, str, str, str], ...]:
        rows = [
            (name, state.username(sock["user"]), sid, ", ".join(sorted(sock.get("rooms", ()))))
            for name, state in self.states.items()
            for sid, sock in state.sockets.items()
        ]
        return tuple(sorted(rows, key=lambda row: (row[1], row[0])))

    def render(self, force: bool = False) -> bool:
        """Redraw if anything changed since the last drawing."""
        key = (self._version, tuple(sorted(self.states)))
        if not force and key == self._rendered:
            return False
        self._rendered = key
        columns = []
        for node in self.cluster.nodes:
            name = str(node.options["node"])
            state = self.states.get(name)
            if state is None:
                body = "<i style='color:#c62828'>down (or not watched)</i>"
            else:
                chips = [
                    f"<div><b>{html.escape(state.username(sock['user']))}</b> "
                    f"<span style='color:#666'>{html.escape(', '.join(sorted(sock.get('rooms', ()))))}</span></div>"
                    for sock in sorted(state.sockets.values(), key=lambda s: state.username(s["user"]))
                ]
                body = "".join(chips) or "<i style='color:#666'>no sockets</i>"
            count = "" if state is None else f" ({len(state.sockets)})"
            columns.append(
                "<div style='flex:1;min-width:150px;border:1px solid #ccc;border-radius:6px;padding:6px'>"
                f"<div style='font-weight:bold;margin-bottom:4px'>{html.escape(name)}{count}</div>{body}</div>"
            )
        value = f"<div style='display:flex;gap:8px'>{''.join(columns)}</div>"
        if value != getattr(self, "value"):  # noqa: B009  # ipywidgets' traits are untyped for mypy
            with self.hold_sync():
                self.value = value
        return True

    def __repr__(self) -> str:
        return BOARD_REPR


# --- the load balancer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Forwarded:
    """One request the proxy passed on: to which node, and the headers that matter for an Upgrade."""

    node: str
    request_line: str
    headers: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        return "\n".join([f"-> {self.node}: {self.request_line}", *(f"   {k}: {v}" for k, v in self.headers)])


class RoundRobinProxy:
    """A reverse proxy on 127.0.0.1: each new connection goes to the next running node.

    Only the request head is parsed (to add ``X-Forwarded-For``/``-Proto`` and note where it went);
    after it, bytes are copied both ways, which is all a WebSocket needs once the node has
    answered ``101 Switching Protocols``. A node that refuses the connection (killed) is skipped."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.forwarded: deque[Forwarded] = deque(maxlen=FORWARDED_KEPT)
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def account(self, username: str, password: str = DEFAULT_PASSWORD) -> Account:
        return self.cluster.account(username, password)

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._pipes):
                task.cancel()
            await asyncio.gather(*self._pipes, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await self._forward(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client or node went away mid-request: nothing to tell anyone
        except asyncio.CancelledError:
            pass  # stop(): the connection ends with the proxy
        finally:
            self._pipes.discard(task)
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > HEAD_LIMIT:
            writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n")
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
        client_ip = str(writer.get_extra_info("peername", ("?",))[0])
        headers = [(k, v) for k, v in headers if k.lower() not in ("x-forwarded-for", "x-forwarded-proto")]
        headers += [("X-Forwarded-For", client_ip), ("X-Forwarded-Proto", "http")]
        node_reader, node_writer, name = await self._connect()
        if node_writer is None or node_reader is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        shown = tuple((k, v) for key in SHOWN_HEADERS for k, v in headers if k.lower() == key.lower())
        # The token in the query string is a credential: the log shows that it was there, not what it was.
        self.forwarded.append(Forwarded(name, re.sub(r"token=[^& ]+", "token=…", request_line), shown))
        out = "\r\n".join([request_line, *(f"{k}: {v}" for k, v in headers)]) + "\r\n\r\n"
        node_writer.write(out.encode("latin-1"))
        try:
            await asyncio.gather(self._copy(reader, node_writer), self._copy(node_reader, writer))
        finally:
            node_writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader | None, asyncio.StreamWriter | None, str]:
        nodes = self.cluster.nodes
        for _ in range(len(nodes)):
            node = nodes[next(self._turn) % len(nodes)]
            if not node.running:
                continue
            with contextlib.suppress(OSError):
                node_reader, node_writer = await asyncio.open_connection(node.host, node.port)
                return node_reader, node_writer, str(node.options["node"])
        return None, None, ""

    @staticmethod
    async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                if sink.can_write_eof():
                    sink.write_eof()  # half-close: the other direction may still be talking

    def __repr__(self) -> str:
        return f"<RoundRobinProxy {self.url} -> {', '.join(self.cluster.names)}>"
