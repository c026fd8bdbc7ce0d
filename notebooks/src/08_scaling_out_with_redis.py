# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: WebSocket course
#     language: python
#     name: websocket-course
# ---

# %% [markdown]
# # 08 · Scaling out with Redis
#
# One lab process holds thousands of sockets (lesson 07), but it is one process on one machine:
# one event loop, one core, one thing to crash. The way out is more processes, and then a new
# problem appears: each process knows only **its own** sockets. Alice is connected to one
# process, Bob to another; Alice's chat reaches her process's map of sockets, where Bob is not.
# This lesson runs three real lab processes behind a load balancer, joins them with a real Redis,
# and then breaks things on purpose: it kills a process under its users and stops Redis in the
# middle of a conversation, and counts what was lost.
#
# **In this lesson you will**
#
# 1. run two lab processes *without* a broker and watch a chat not reach a user on the other one,
# 2. run three processes with Redis pub/sub between them: chat, presence and notifications cross processes,
#    and you measure what the extra hop costs,
# 3. see which process each socket is on,
# 4. put a round-robin load balancer in front and read the headers it must forward for the Upgrade; see
#    why a WebSocket needs no sticky sessions and HTTP long-polling does,
# 5. SIGKILL a process: its users' clients reconnect to another one and resume with nothing lost, and the
#    others see its stranded users go offline,
# 6. stop Redis for two seconds mid-conversation: count what pub/sub lost and watch the sequence numbers
#    bring every message back from the database,
# 7. write a client that survives the death of its node, checked live while the check kills that node.
#
# **Notes sections covered:** §15 *Next topics*, "Scaling with Redis" (the whole lesson), and the
# notes' claims about scale: §13 "This makes WebSocket scalable" and §15 "How one server scales"
# (parts 2 and 3). Where the notes are short or wrong, the lesson says so; the summary lists the
# corrections.

# %% [markdown]
# ## 1. Start Redis and three lab processes
#
# `cluster` is this lesson's toolkit (`labserver/course/cluster.py`). `start_cluster(3)` starts a
# throwaway `redis-server` on a free port and three lab processes, `n1`, `n2` and `n3`, each one
# `python -m labserver --redis redis://127.0.0.1:PORT/0 --node nK`, all on **one data directory**
# (one SQLite file: one history, one sequence of seqs per room) and with one admin token. All of
# them die with this kernel, like every lesson's lab. Without `redis-server` the lesson says so in
# one line and skips only the cells that need it.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import statistics
import tempfile
import time

from IPython.display import SVG

from labserver.course import LabClient, LabServer, RestClient
from labserver.course.cluster import ChannelSpy, ClusterBoard, RoundRobinProxy, find_redis_server, start_cluster, where
from labserver.course.exercises import lesson08 as ex
from labserver.course.source import show_source

cluster = start_cluster(3, log_level="INFO") if find_redis_server() else None
if cluster is None:
    print("No redis-server here (apt install redis-server, brew install redis): the cells that need it are skipped.")


async def until(condition, timeout=10.0):
    """Wait until condition() is true, looking every 20 ms."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# %% [markdown]
# Each process says who it is and whether it reaches Redis on `/healthz`, and in the `welcome` it
# sends every socket.

# %%
if cluster:
    for node in cluster.nodes:
        health = node.health()
        print(health["node"], health["broker"], "connected" if health["broker_connected"] else "NOT connected")

# %% [markdown]
# The cluster's board: one column per process, the sockets it holds (user and rooms), fed live
# by each process's own `/observe` stream. Keep it in view: sockets appear on their process in
# part 3, one column goes *down* in part 6 and comes back.

# %%
board = ClusterBoard(cluster) if cluster else None
if board:
    await board.ready()
board

# %% [markdown]
# ## 2. Two processes, no broker: the chat does not cross
#
# First without Redis. Two lab processes on one data directory, Alice on the first, Bob on the
# second, both in room `general`. (This part needs no Redis: it is the problem Redis solves.)

# %%
shared_dir = tempfile.TemporaryDirectory(prefix="two-alone-")
alone = [LabServer(shared_dir.name, node=f"alone{i}").start() for i in (1, 2)]
ann_alone = await LabClient.connect(alone[0], alone[0].account("ann"))
ben_alone = await LabClient.connect(alone[1], alone[1].account("ben"))
await ann_alone.join("general")
await ben_alone.join("general")
ack = await ann_alone.chat("general", "hello from process 1")
try:
    await ben_alone.wait_for("chat", timeout=1)
    print("Ben got it")
except TimeoutError:
    print(f"acknowledged as seq {ack['seq']} on process 1; Ben on process 2 got nothing in 1 s")
status, body = alone[1].request("GET", "/api/rooms/general/messages", token=ben_alone.account.token)
print("yet process 2 can read it from the shared database:", [m["text"] for m in body["messages"]])

# %% [markdown]
# The message was stored (the shared database has it, with its seq) and delivered to every
# socket **process 1** has in `general`. Process 2's map of sockets, where Ben is, never heard of
# it. That is §13's "This makes WebSocket scalable" with its missing half: one event loop scales
# to many *idle* sockets on *one* machine; past one process, the processes must tell each other
# what they route. Ben would see the message only by reloading the history.

# %%
for client in (ann_alone, ben_alone):
    await client.close()
for process in alone:
    process.close()
shared_dir.cleanup()

# %% [markdown]
# ## 3. A broker between the processes: Redis pub/sub
#
# Every process PUBLISHes each message it routes (a chat, a DM, a presence change, a
# notification) on one Redis channel, `labserver:routed`, and SUBSCRIBEs to it. Each process
# delivers what arrives to **its own** sockets, exactly as it does for its own messages. The
# database stays where the message is *kept* (with its seq, before the ack); Redis only
# *carries* it. The numbers are the path of one chat from Alice (on n1) to Bob (on n2).

# %%
SVG(filename="../images/08_redis_fanout.svg")

# %% [markdown]
# Live: Alice on n1, Dan also on n1, Bob on n2, Carol on n3, all in `general`. Bob subscribes to
# presence, so he hears Carol come online on another process.

# %%
if cluster:
    n1, n2, n3 = cluster.nodes
    alice = await LabClient.connect(n1, cluster.account("alice"))
    dan = await LabClient.connect(n1, cluster.account("dan"))
    bob = await LabClient.connect(n2, cluster.account("bob"))
    await bob.send("subscribe", topic="presence")
    carol = await LabClient.connect(n3, cluster.account("carol"))
    for client in (alice, dan, bob, carol):
        await client.join("general")
    print({c.name: c.welcome["node"] for c in (alice, dan, bob, carol)})
    online = await bob.wait_for(lambda m: m["type"] == "presence" and m["user"]["username"] == "carol")
    print("bob (n2) hears:", online["user"]["username"], "online" if online["online"] else "offline")
    await alice.chat("general", "hello from n1")
    for client in (dan, bob, carol):
        message = await client.wait_for("chat")
        print(f"{client.name} on {client.welcome['node']} got seq {message['seq']}: {message['text']}")

# %% [markdown]
# Notifications cross too: Bob posts through n2's REST API, Carol likes it through n3's, and the
# notification reaches Bob's socket on n2.

# %%
if cluster:
    status, body = n2.request("POST", "/api/posts", {"text": "scaling out"}, bob.account.token)
    n3.request("POST", f"/api/posts/{body['post']['id']}/like", None, carol.account.token)
    note = await bob.wait_for("notification")
    print(f"bob (n2) got a {note['type']}: {note['from']['username']} did a {note['kind']} on post {note['post_id']}")

# %% [markdown]
# **What the extra hop costs.** Alice sends 30 chats; each one's arrival is timed at Dan (same
# process: no Redis on the way) and at Bob (another process: n1 -> Redis -> n2). The numbers vary
# with the machine; on a shared 2-core box the cross-process delivery took between a few tenths
# of a millisecond and a millisecond more at the median: the hop is cheap next to the network.

# %% tags=["nbval-ignore-output"]
if cluster:
    arrivals: dict[str, dict[str, float]] = {"dan": {}, "bob": {}}
    offs = [client.on("chat", lambda m, who=client.name: arrivals[who].setdefault(m["text"], time.perf_counter()))
            for client in (dan, bob)]
    sent: dict[str, float] = {}
    for i in range(30):
        text = f"timed {i}"
        sent[text] = time.perf_counter()
        await alice.chat("general", text)
        await asyncio.sleep(0.01)
    await until(lambda: len(arrivals["bob"]) == 30 and len(arrivals["dan"]) == 30)
    for off in offs:
        off()
    for who, where_ in (("dan", "same process"), ("bob", "via Redis   ")):
        ms = sorted((arrivals[who][t] - sent[t]) * 1000 for t in sent)
        print(f"{who:<4} ({where_}): median {statistics.median(ms):5.2f} ms, p90 {ms[26]:5.2f} ms")

# %% [markdown]
# ## 4. Which process is each socket on?
#
# A process only knows its own sockets, so the cluster's picture is the union of what each
# process's `/observe` shows (lesson 00's dashboard reads the same stream from one process).
# The board above shows it live; `where(cluster)` asks each node for its snapshot once, as text.

# %%
if cluster:
    placement = await where(cluster)
    print(placement)

# %% [markdown]
# ## 5. A load balancer in front
#
# Clients are not told about n1, n2 and n3: they connect to one address, and a load balancer
# spreads the connections. `RoundRobinProxy` is a small one (asyncio, about a hundred lines):
# each new TCP connection goes to the next live process. It reads the request head, adds
# `X-Forwarded-For` and `X-Forwarded-Proto`, and from then on copies bytes both ways; after the
# `101 Switching Protocols` those bytes are WebSocket frames, which it never needs to read.

# %%
show_source(RoundRobinProxy._forward)

# %% [markdown]
# Four users connect through it; each lands on the next process in turn. The proxy kept the
# headers that matter for the Upgrade (the token in the query string is masked in its log:
# lesson 06).

# %%
if cluster:
    proxy = await RoundRobinProxy(cluster).start()
    guests = [await LabClient.connect(proxy, proxy.account(f"guest{i}")) for i in range(4)]
    print({guest.name: guest.welcome["node"] for guest in guests})
    print(proxy.forwarded[-1])

# %% [markdown]
# `Upgrade` and `Connection` are **hop-by-hop** headers (RFC 9110 section 7.6.1): an HTTP proxy
# removes them unless told to keep them, and then the server sees an ordinary `GET /ws`, which
# is not an opening handshake (RFC 6455 section 4.2.1 requires both). Here is the handshake with
# the two headers dropped, as a misconfigured proxy would pass it on, and the lab's answer:

# %%
if cluster:
    token = cluster.account("guest0").token
    reader, writer = await asyncio.open_connection(n1.host, n1.port)
    writer.write(
        f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{n1.port}\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n".encode()
    )
    response = (await reader.read()).decode()
    writer.close()
    print(response.splitlines()[0], "|", response.split("\r\n\r\n", 1)[1].splitlines()[0])

# %% [markdown]
# With nginx the same is three lines: `proxy_http_version 1.1;`, `proxy_set_header Upgrade
# $http_upgrade;`, `proxy_set_header Connection "upgrade";` (and a `proxy_read_timeout` above the
# ping interval, or nginx closes an idle socket after 60 s).
#
# **Sticky sessions.** A WebSocket is one TCP connection: the balancer chooses a process once, at
# the handshake, and every frame follows that connection. There is nothing to make sticky. HTTP
# long-polling (Socket.IO's fallback, lesson 09) is a *series* of requests, and the session they
# belong to (its `sid`, the packets queued for it) lives in one process's memory. Round-robin
# sends consecutive requests to different processes:

# %%
if cluster:
    through_proxy = RestClient(proxy.url)  # blocking calls: in a thread, since the proxy runs on this loop
    print([(await asyncio.to_thread(through_proxy.health))["node"] for _ in range(6)])

# %% [markdown]
# Six requests, three processes: a polling session would find its `sid` unknown on two requests
# out of three (Engine.IO answers `400 Session ID unknown`). Hence sticky sessions (by cookie or
# client address) for long-polling, and none needed for WebSocket. Redis does not change that: it
# carries messages between processes, not sessions.

# %% [markdown]
# ## 6. Kill a process
#
# Alice's client connects through the proxy and follows `general`; Bob keeps writing from n2.
# Erin connects straight to the same process as Alice with `reconnect=False`: she will be
# stranded. Then that process gets SIGKILL, as if its machine died: no close frames, no goodbyes.

# %%
if cluster:
    follower = await LabClient.connect(proxy, cluster.account("alice"))
    victim = follower.welcome["node"]
    if victim == "n2":  # Bob writes from n2: move Alice to the next process
        await follower.close()
        follower = await LabClient.connect(proxy, cluster.account("alice"))
        victim = follower.welcome["node"]
    followed: list[int] = []
    follower.on("chat", lambda m: followed.append(m["seq"]) if m["room"] == "general" else None)
    await follower.join("general")
    erin = await LabClient.connect(cluster.node(victim), cluster.account("erin"), reconnect=False)
    start = follower.last_seq.get("general", 0)  # the room's last seq when Alice joined
    for i in range(5):
        await bob.chat("general", f"before the crash {i}")
    await until(lambda: len(followed) == 5)
    await asyncio.sleep(1.2)  # one heartbeat: the others learn that Erin is on this process
    print("Alice is on", victim, "and got", len(followed), "chats; Erin is on", erin.welcome["node"])

# %% tags=["nbval-ignore-output"]
if cluster:
    killed_at = time.perf_counter()
    cluster.kill(victim)
    for i in range(5):
        await bob.chat("general", f"while {victim} is dead {i}")
    offline = await bob.wait_for(lambda m: m["type"] == "presence" and m["user"]["username"] == "erin"
                                 and not m["online"], timeout=10)
    detected = time.perf_counter() - killed_at
    await until(lambda: follower.connected and len(followed) == 10)
    print(f"Alice's client reconnected through the proxy to {follower.welcome['node']} after "
          f"{follower.reconnects} reconnect(s)")
    print(f"Bob heard that Erin went offline {detected:.1f} s after the kill (her node's heartbeat expired)")

# %%
if cluster:
    print("Alice's seqs since she joined:", [s - start for s in followed])
    print("duplicates dropped by her client:", follower.duplicates, "| Erin's client:", erin.closed_reason or "closed")

# %% [markdown]
# Alice got every chat once, in order: her client reconnected (lesson 04's backoff) to the
# address it knew, the proxy sent it to a live process, and `resume` with her last seq was
# answered by **another process from the same database**. Nothing of the conversation was in
# the dead process that mattered: seqs and history are in the shared store. What a process
# *does* hold (who is connected to it) is announced by the others once its heartbeat key in
# Redis expires: Erin went offline for Bob a few seconds after the kill.

# %%
if cluster:
    cluster.restart(victim)
    print(cluster)

# %% [markdown]
# ## 7. Stop Redis for two seconds
#
# Pub/sub is **at most once**: Redis passes a PUBLISH to the subscribers connected at that
# moment and forgets it. A `ChannelSpy` subscribes to the channel like a process does and keeps
# what it sees. Dan (n1) writes; Bob (n2) reads. Then Redis stops, Dan writes five more, and
# Redis comes back.

# %%
if cluster:
    spy = await ChannelSpy(cluster.redis.url).start()
    bob_seqs: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    off = bob.on("chat", lambda m: bob_seqs.append((m["seq"], time.perf_counter() - t0)) if m["room"] == "outage" else None)
    for client in (dan, bob):
        await client.join("outage")
    await dan.chat("outage", "before")
    await until(lambda: len(bob_seqs) == 1)
    cluster.redis.stop()
    stopped = time.perf_counter() - t0
    acks = [await dan.chat("outage", f"during {i}") for i in range(5)]
    print("Redis stopped; Dan's five chats were acknowledged as seqs", [a["seq"] for a in acks])
    await asyncio.sleep(2)
    cluster.redis.start()
    cluster.wait_connected()
    await spy.wait_subscribed()  # the spy too, to see what comes next
    await dan.chat("outage", "after")
    await until(lambda: len(bob_seqs) == 7)
    await until(lambda: 7 in spy.seqs("outage"))
    off()
    print("seqs that travelled on the Redis channel:", spy.seqs("outage"))
    print("seqs Bob's socket on n2 received:       ", [s for s, _ in bob_seqs])

# %% [markdown]
# Seqs 2 to 6 never went through Redis: n1 published them into nothing. Bob has them all the same,
# in order. Where from? n2 saw the room's seq in the shared database run ahead of what it had
# delivered, waited a moment (a message may still be in flight), and delivered the missing rows
# from the store. Its log says so:

# %% tags=["nbval-ignore-output"]
if cluster:
    print("\n".join(line for line in n2.logs if "redis broker" in line or "from the store" in line))
    print(f"Redis stopped at {stopped:.2f} s; Bob's arrivals:", [(s, round(t, 2)) for s, t in bob_seqs])

# %% [markdown]
# The same repair is what every client does for itself after a reconnect: `resume` with the last
# seq it has, and the server replays from the database exactly what came after. A client can
# always ask, from any process:

# %%
if cluster:
    replay = await bob.send("resume", room="outage", after=1)
    print(replay["type"], "- replayed after seq 1 up to", replay.get("last_seq"))

# %% [markdown]
# The rule behind all of it: **the database is the truth, Redis is a pipe.** Every message is
# stored with its seq before it is acknowledged; a seq that jumps is a gap; a gap is filled from
# the store by seq. Redis could lose everything without losing a message.

# %% [markdown]
# ## 8. Check yourself
#
# `ex.qN.hint()` gives a hint, `ex.qN.solution()` the answer with an explanation.
#
# **Question 1.** Redis was away for five messages.

# %%
ex.q1

# %%
answer = ...
ex.q1.check(answer)

# %% [markdown]
# **Question 2.** Who needs sticky sessions?

# %%
ex.q2

# %%
answer = ...
ex.q2.check(answer)

# %% [markdown]
# **Question 3.** The headers a proxy must pass on.

# %%
ex.q3

# %%
answer = ...
ex.q3.check(answer)

# %% [markdown]
# **Question 4: your node dies, you miss nothing.** Write a follower with `websockets` that gets
# the cluster's node URLs, delivers every chat of a room from seq 1 to `last` exactly once, in
# order, and survives the SIGKILL of the node it is on. The check kills it while you read (and
# starts it again afterwards).

# %%
ex.q4

# %%
async def follow(ws_urls: list[str], token: str, room: str, last: int, deliver) -> None:
    ...  # connect to a node, resume after the last seq delivered; on ConnectionClosed or OSError, the next URL


await ex.q4.check_async(follow)

# %% [markdown]
# ## Summary
#
# - One process scales to many idle sockets, but it is one machine and one point of failure. More
#   processes need a **broker**: each process has only its own sockets, and must hear what the
#   others route.
# - With Redis pub/sub each process publishes what it routes and delivers what it hears to its own
#   sockets. Chat, DMs, presence and notifications cross processes for about a millisecond more.
# - A load balancer must forward `Upgrade` and `Connection` (hop-by-hop headers) and should add
#   `X-Forwarded-For`/`-Proto`. A WebSocket needs no sticky sessions; HTTP long-polling does.
# - A process can die: its clients reconnect (through the balancer) to another and `resume` by seq
#   from the shared database; the others announce its users offline when its heartbeat expires.
# - Redis can go away: pub/sub loses what was published meanwhile, for good. Nothing acknowledged is
#   lost, because it was stored with its seq before the ack, and gaps are filled from the store.
#
# **Misconceptions**
#
# - *"Redis stores the messages."* Pub/sub stores nothing: a message published while a process is
#   cut off never reaches it (part 7). History, seqs and resume come from the database. (Redis
#   Streams could store them: another design, with its own retention to manage.)
# - *"You need sticky sessions for WebSockets."* Only for the HTTP long-polling fallback (part 5).
# - *"With Redis, a process can die and nobody notices."* Its sockets die with it; clients must
#   reconnect and resume (part 6), and presence needs heartbeats with an expiry to notice at all.
# - *"Scaling out is just adding processes."* Without a broker, users on different processes do
#   not hear each other (part 2).
#
# **What the notes say, and what to add**
#
# - §13 *"This makes WebSocket scalable"*: an event loop makes **one process** hold many idle
#   sockets. Beyond one process (more cores, more machines, surviving a crash) the processes need
#   a broker, and the load balancer must forward the upgrade.
# - §15 *"How one server scales"*: up to a point; then it scales **out**, and "the server's map of
#   sockets" becomes one map per process.
# - §15 *"Scaling with Redis"*: Redis pub/sub carries messages between processes; it does not store
#   them. The database with per-room seqs is what makes a Redis outage or a dead process lose
#   nothing.

# %%
if cluster:
    await board.settle()
    await board.stop()  # first, so that it keeps its last picture
    await spy.stop()
    for client in (alice, dan, bob, carol, follower, erin, *guests):
        await client.close()
    await proxy.stop()

# %% [markdown]
# ← Previous: [07 · One event loop, thousands of sockets](07_one_loop_many_sockets.ipynb) · [Course index](index.ipynb) · Next: [09 · Socket.IO's extras, wss:// and WebRTC signaling](09_socketio_tls_signaling.ipynb) →
