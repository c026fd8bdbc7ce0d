"""Exercises of lesson 08: scaling out with Redis.

The ideas they practise: Redis pub/sub is at most once and stores nothing, so what a node missed
while Redis was away comes back from the database by seq (q1); sticky sessions are for HTTP
long-polling, not for a WebSocket, which is one TCP connection (q2); the headers a proxy must
forward for the Upgrade (q3); a client that survives the death of the node it is on, reconnecting
to another and resuming by seq with no gap and no duplicate, checked live while the check kills
that node (q4).

    from labserver.course.exercises import lesson08 as ex
    ex.q1.check("c")
    ex.q2.check("b")
    ex.q3.check({"Upgrade", "Connection"})
    await ex.q4.check_async(follow)   # live: the check SIGKILLs the node you are on
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus

from .core import CheckError, ChoiceProblem, Incorrect, Lesson, LiveProblem, ValueProblem, seq_ranges
from .lesson06 import follow_with_resume

lesson = Lesson("lesson08", "Scaling out with Redis")

# q4's conversation: messages posted before the follower starts, the last seq, the seq after
# which the follower's node is killed, the pause between live messages, and how long it may take.
FOLLOW_BEFORE = 4
FOLLOW_LAST = 16
FOLLOW_KILL_AFTER = 8
FOLLOW_GAP = 0.03
FOLLOW_TIMEOUT = 10.0


# --- q1: pub/sub stores nothing ------------------------------------------------------------------

q1 = lesson.add(
    "q1",
    ChoiceProblem(
        {
            "a": "when Redis comes back it delivers the 5 messages to node B: Redis keeps a channel's messages",
            "b": "they are lost for good: the lab only had them in Redis",
            "c": "node B never gets them from Redis; Bob gets them by `resume` with his last seq, from the database",
            "d": "node A publishes them again when Redis is back, so node B gets them late but in order",
        },
        "c",
        title="Redis was away for five messages",
        question=(
            "Alice is on node A, Bob on node B, in the same room. Redis stops for three seconds; meanwhile Alice "
            "sends 5 messages, each acknowledged. What happens to them?"
        ),
        explanations={
            "a": "PUBLISH goes to the subscribers connected at that moment and is then forgotten: pub/sub is at "
            "most once, with no history (Redis Streams would be another design).",
            "b": "each was written to the shared database with its seq before Alice's ack: nothing acknowledged "
            "is lost.",
            "d": "the lab's node A does not queue for Redis forever, and nothing tells it which node missed what.",
        },
        correct_message=(
            "Redis pub/sub is a pipe, not a store. The database is the source of truth: Bob's client sees the "
            "next seq jump (or reconnects) and asks `resume` with the last seq it has."
        ),
        hint=[
            "Does Redis keep a message PUBLISHed to a channel after it has passed it to the subscribers "
            "connected at that moment?",
            "Where was each message written before Alice got her ack, and what does `resume` read?",
        ],
        solution=(
            "**c.** Redis pub/sub delivers to whoever is subscribed at the moment of the PUBLISH and keeps "
            "nothing: node B, cut off, never sees the 5 messages. They are in SQLite with seqs (written before "
            "the ack), so Bob's client, seeing seq jump from n to n+6 or reconnecting, sends "
            '`{"type": "resume", "room": ..., "after": n}` and gets exactly the missing ones.'
        ),
    ),
)


# --- q2: sticky sessions -------------------------------------------------------------------------

q2 = lesson.add(
    "q2",
    ChoiceProblem(
        {
            "a": "plain WebSocket clients: otherwise each message could reach another server",
            "b": "Socket.IO clients while they use the HTTP long-polling transport",
            "c": "both",
            "d": "neither, once Redis connects the servers",
        },
        "b",
        title="Who needs sticky sessions?",
        question=(
            "Three servers behind a round-robin load balancer, with a Redis adapter. Which clients need the load "
            "balancer to use sticky sessions (every request of one client to the same server)?"
        ),
        explanations={
            "a": "a WebSocket is one TCP connection: the balancer picks a server once, at the handshake, and "
            "every frame follows that connection. There is nothing to make sticky.",
            "c": "only one of the two sends a client's traffic as many separate HTTP requests.",
            "d": "Redis carries messages between servers, but a long-polling session's state (its sid, its "
            "queued packets) lives in one server's memory: a poll that lands elsewhere gets `400 Session ID unknown`.",
        },
        correct_message=(
            "long-polling is a series of HTTP requests, each one of which the balancer may send elsewhere; a "
            "WebSocket is one connection and stays where it was accepted."
        ),
        hint=[
            "How many TCP connections does a WebSocket client use for all its messages? And a long-polling one?",
            "Where does a Socket.IO server keep a polling client's session (its `sid` and the packets queued for it)?",
        ],
        solution=(
            "**b.** Engine.IO's polling transport sends each poll and each post as its own HTTP request; the "
            "session they belong to lives in one server's memory, so all of them must reach that server "
            "(cookie- or IP-based stickiness). A plain WebSocket is one TCP connection, routed once. Redis does "
            "not change that: it relays messages, not sessions."
        ),
    ),
)


# --- q3: the Upgrade headers ---------------------------------------------------------------------


q3 = lesson.add(
    "q3",
    ValueProblem(
        frozenset({"upgrade", "connection"}),  # compared item by item, case-folded: any spelling
        title="What the proxy must pass on",
        question=(
            "An HTTP reverse proxy drops hop-by-hop headers by default (RFC 9110 section 7.6.1), and then the "
            "lab answers the handshake with 426 instead of 101. Which two request headers must the proxy be "
            "told to forward (nginx: `proxy_set_header`) for the WebSocket upgrade to go through?"
        ),
        answer_format='a set of two header names, e.g. `{"Host", "Origin"}`',
        explanations=[
            (
                frozenset({"host", "origin"}),
                "those two pass by default (and the server checks both); the upgrade needs the hop-by-hop ones.",
            ),
            (
                frozenset({"upgrade"}),
                "`Upgrade: websocket` alone is not enough: `Connection: Upgrade` says the Upgrade header is meant "
                "for this hop (RFC 6455 section 4.1).",
            ),
            (
                frozenset({"x-forwarded-for", "x-forwarded-proto"}),
                "useful (the client's address and scheme), but without them the upgrade still works.",
            ),
            (
                frozenset({"sec-websocket-key", "sec-websocket-version"}),
                "those are end-to-end headers: every proxy passes them untouched.",
            ),
        ],
        wrong_message="not those two: which headers does a proxy drop unless told?",
        correct_message=(
            "`Upgrade` and `Connection` are hop-by-hop: nginx needs `proxy_http_version 1.1; proxy_set_header "
            'Upgrade $http_upgrade; proxy_set_header Connection "upgrade";`.'
        ),
        hint=[
            "Which headers does RFC 9110 call hop-by-hop, meant for the next hop only?",
            "A WebSocket handshake is a GET carrying `Upgrade: websocket` and `Connection: Upgrade`.",
        ],
        solution=(
            '`{"Upgrade", "Connection"}`. Both are hop-by-hop: a proxy removes them unless configured to pass '
            "them, and without them the server sees an ordinary GET (the lab answers 426 Upgrade Required). The "
            "lesson's `RoundRobinProxy` passes them, keeps `Host` and `Origin` and adds `X-Forwarded-For` and "
            "`X-Forwarded-Proto`."
        ),
    ),
)


# --- q4: a follower that outlives its node -------------------------------------------------------


class NodeFailoverProblem(LiveProblem):
    """The student's ``async def follow(ws_urls, token, room, last, deliver)``: every chat of the room
    from seq 1 to ``last`` delivered once, in order, although the node it is on is SIGKILLed."""

    answer_format = "your async function itself, `follow` (no parentheses)"
    call_with = "follow"
    answer_kind = "async"
    why_async = "use `websockets.connect` (a blocking client would freeze the notebook's event loop)"

    def _find_lab(self) -> Any:
        if self.lab is not None:
            return self.lab
        from .. import cluster as cluster_module

        running = cluster_module._running.get("cluster")
        if running is None and cluster_module.find_redis_server() is None:
            raise CheckError("this check needs redis-server, which is not installed here (apt install redis-server).")
        if running is None:
            raise CheckError("no cluster is running: start it first with `cluster = start_cluster(3)`.")
        return running

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        from ..client import LabClient
        from ..cluster import where

        cluster = lab
        for name in cluster.names:  # every node up, so there is one to fail over to
            if not cluster.node(name).running:
                await asyncio.to_thread(cluster.restart, name)
        tag = secrets.token_hex(2)
        room, reader_name = f"failover-{tag}", f"follower_{tag}"
        reader = await asyncio.to_thread(cluster.account, reader_name)
        sender_node = cluster.nodes[-1]  # the sender sits on the last node; the follower starts on the first
        sender_account = await asyncio.to_thread(cluster.account, "failover_sender")
        killed: list[str] = []
        async with LabClient.connect(sender_node, sender_account, reconnect=False) as sender:
            await sender.join(room)
            for seq in range(1, FOLLOW_BEFORE + 1):
                await sender.chat(room, f"m{seq}")
            delivered: list[Any] = []
            task = asyncio.create_task(answer(cluster.ws_urls, reader.token, room, FOLLOW_LAST, delivered.append))
            try:
                for seq in range(FOLLOW_BEFORE + 1, FOLLOW_LAST + 1):
                    if task.done():
                        break
                    await sender.chat(room, f"m{seq}")
                    if seq == FOLLOW_KILL_AFTER:
                        killed = await self._kill_the_followers_node(cluster, reader_name, sender_node, task, where)
                    await asyncio.sleep(FOLLOW_GAP)
                done, _ = await asyncio.wait([task], timeout=FOLLOW_TIMEOUT)
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                for name in killed:  # leave the cluster whole for the rest of the lesson
                    await asyncio.to_thread(cluster.restart, name)
        return self._judge(task, done, delivered, killed, room)

    @staticmethod
    async def _kill_the_followers_node(
        cluster: Any, username: str, sender_node: Any, task: asyncio.Task[Any], where: Callable[..., Any]
    ) -> list[str]:
        """SIGKILL the node the follower's socket is on (not the sender's): its name, or [] if none."""
        for _ in range(200):
            nodes = (await where(cluster)).nodes_of(username)
            if nodes or task.done():
                break
            await asyncio.sleep(0.01)
        victims = [n for n in nodes if cluster.node(n) is not sender_node]
        for name in victims:
            await asyncio.to_thread(cluster.kill, name)
        return victims

    def _judge(
        self, task: asyncio.Task[Any], done: set[Any], delivered: list[Any], killed: list[str], room: str
    ) -> str:
        if task in done and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            if isinstance(exc, ConnectionClosed | OSError):
                raise Incorrect(
                    f"`follow` raised {type(exc).__name__} ({exc}) after delivering {len(delivered)} message(s): "
                    "the node you were on died. Catch `websockets.ConnectionClosed` and `OSError` (a dead node "
                    "refuses connections), and try the next URL of `ws_urls`."
                )
            if isinstance(exc, InvalidStatus):
                raise Incorrect(f"a node refused your handshake: {exc}. The token goes in `?token=`.")
            raise CheckError(f"`follow` raised {type(exc).__name__}: {exc}")
        for message in delivered:
            if not isinstance(message, dict) or message.get("type") != "chat" or message.get("room") != room:
                what = message.get("type") if isinstance(message, dict) else type(message).__name__
                raise Incorrect(f"`deliver` got a `{what}` message; give it only the room's `chat` messages (dicts).")
        seqs = [int(m["seq"]) for m in delivered]
        duplicates = sorted({s for s in seqs if seqs.count(s) > 1})
        if duplicates:
            raise Incorrect(
                f"seq {seq_ranges(duplicates)} delivered more than once: on the new node, resume after the last seq "
                "you *delivered*, not from 0."
            )
        missing = sorted(set(range(1, FOLLOW_LAST + 1)) - set(seqs))
        if missing:
            late = "" if task in done else f" (`follow` had not returned after {FOLLOW_TIMEOUT:g} s)"
            raise Incorrect(
                f"seq {seq_ranges(missing)} never delivered{late}. A dead node stays dead: connect to another URL of "
                '`ws_urls`, then send `{"type": "resume", "room": room, "after": <last seq delivered>}` '
                "(a `join` brings only new messages)."
            )
        if seqs != sorted(seqs):
            raise Incorrect(f"the messages came out of order: {seqs[:12]}... Deliver them in seq order.")
        if task not in done:
            raise Incorrect(f"every message was delivered, but `follow` had not returned after {FOLLOW_TIMEOUT:g} s.")
        if not killed:
            raise Incorrect(
                "the check found no socket of yours on a node it could kill: `follow` must read the room over a "
                "WebSocket to one of `ws_urls`."
            )
        return (
            f"all {FOLLOW_LAST} messages delivered once and in order, although node {', '.join(killed)} was "
            "SIGKILLed under you: another node served the resume from the shared database."
        )


q4 = lesson.add(
    "q4",
    NodeFailoverProblem(
        title="Your node dies, you miss nothing",
        question=(
            "Write `async def follow(ws_urls, token, room, last, deliver)` with `websockets`: call `deliver(message)` "
            "for every `chat` message of `room` from seq 1 to `last`, **exactly once each, in seq order**, then "
            "return. `ws_urls` are the cluster's nodes. The check posts messages from another node, then "
            "**SIGKILLs the node you are on** (it does not come back while you run): connect to another node and "
            "resume. `await ex.q4.check_async(follow)`."
        ),
        hint=[
            "Lesson 06's follower, with a list of URLs: keep `seen` (the last seq delivered) and an index into "
            "`ws_urls`; on `websockets.ConnectionClosed` or `OSError` (a refused connection) move to the next URL.",
            'On every (re)connection: read the `welcome`, send `{"type": "resume", "room": room, "after": seen}`, '
            "and deliver only chats with `seq > seen`. Any node can replay: they share the database.",
        ],
        solution=(
            "```python\n"
            "import asyncio, json, websockets\n\n"
            "async def follow(ws_urls, token, room, last, deliver):\n"
            "    seen, turn = 0, 0                          # last seq delivered; which node to try\n"
            "    while seen < last:\n"
            "        url = ws_urls[turn % len(ws_urls)]\n"
            "        try:\n"
            '            async with websockets.connect(f"{url}?token={token}") as ws:\n'
            "                await ws.recv()                # the welcome (it names the node)\n"
            '                await ws.send(json.dumps({"type": "resume", "room": room, "after": seen}))\n'
            "                async for raw in ws:\n"
            "                    m = json.loads(raw)\n"
            '                    if m.get("type") == "chat" and m.get("room") == room and m["seq"] > seen:\n'
            "                        deliver(m)\n"
            '                        seen = m["seq"]\n'
            "                        if seen >= last:\n"
            "                            return\n"
            "        except (websockets.ConnectionClosed, OSError):\n"
            "            turn += 1                          # that node is gone: the next one\n"
            "            await asyncio.sleep(0.05)          # lesson 04: back off with jitter\n"
            "```\n\n"
            "Any node can serve the resume: the seqs and the history are in the shared database, not in the "
            "dead process. In production the URL list is one address (the load balancer), which skips dead nodes "
            "by itself; the client's part is the same: reconnect, resume after the last seq delivered."
        ),
    ),
)


_follow_reference = follow_with_resume  # lesson 06's follower: with several URLs it moves to the next on a cut


__all__ = ["lesson", "q1", "q2", "q3", "q4"]
