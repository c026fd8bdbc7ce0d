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
# # 04 · Connection lifecycle
#
# A WebSocket is opened once and then lives for minutes or hours. This lesson follows one
# connection through its whole life on the live lab: how it opens and proves who it is, how
# it stays alive, every way it can end (and the **close code** each ending leaves behind),
# how a client comes back after a failure without knocking the server over, and how the
# server turns open connections into "who is online" without flapping or leaking.
#
# **In this lesson you will**
#
# 1. walk a connection through its four states, CONNECTING, OPEN, CLOSING, CLOSED (RFC 6455),
# 2. see that a reconnection is a *new* connection: a new socket id for the same user,
# 3. make the lab end connections in ten different ways and read each close code as the client sees it,
# 4. pull a client's cable and watch the server notice only through its heartbeat, and plot how
#    long that takes against the ping interval,
# 5. kill the lab under a crowd and watch it come back: a thundering herd without jitter, a
#    spread-out crowd with it,
# 6. build presence from connections: two tabs, a refresh that does not flap (a grace period),
#    and the leak you get when the cleanup in `finally` does not run,
# 7. write a client's decision on close codes, a backoff function and presence with a grace period,
#    all three checked on the live lab.
#
# **Notes sections covered:** §12 *Socket connection lifecycle* (connect, `socket.id` vs user
# id, disconnect reasons, cleanup; the notes' "changes on reconnect" next to Socket.IO 4.6's
# connection state recovery, part 3), §9 *Socket.IO (what we used)* (what "auto reconnection"
# and "heartbeats" are underneath, and what RFC 6455 already has, parts 3, 5 and 6), §5 *Why
# WebSocket is perfect for social media* ("connection closed = offline": only for a clean close,
# and only with a grace period for refreshes, parts 4, 5 and 7), §14 *What breaks WebSocket
# servers* ("memory leaks (not cleaning socket maps)", shown and fixed, part 7).

# %% [markdown]
# ## 1. Start the lab
#
# The lab starts with a short heartbeat (`ping_interval=1`: a silent socket is pinged after 1 s),
# so that dead connections are found in seconds rather than the default 20. Besides the
# dashboard, an `ObserveLog` records what the server reports on `/observe` (sockets opened and
# closed, with the close code the server saw; presence; counters), with the server's times, so
# that cells can measure the server's side of each event.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import json
import statistics
import time

import websockets
from IPython.display import SVG

from labserver import ws as lab_ws
from labserver.course import Crowd, Dashboard, LabClient, LabError, Progress, start_lab
from labserver.course.client import backoff_delay, reconnect_delay
from labserver.course.exercises import lesson04 as ex
from labserver.course.lifecycle import ObserveLog, ended, kill_and_restart, measure_detection, plot_detection, plot_herd
from labserver.course.source import show_source
from labserver.lab import Lab

lab = start_lab(private="this lesson (it drops, kills and restarts the server)", ping_interval=1)
lab

# %%
crowd = Crowd(lab, prefix="herd", rooms=["lobby"], chat_rate=0.1, seed=4)
dashboard = Dashboard(lab, crowd)
observer = await ObserveLog.start(lab)
await dashboard.ready()
dashboard

# %% [markdown]
# ## 2. Four states: connect, authenticate, live, close
#
# RFC 6455 gives a connection four states (the browser's `WebSocket.readyState` has the same
# four): **CONNECTING** while the opening handshake runs (section 4), **OPEN** once the `101`
# has come back and frames may flow (section 5), **CLOSING** once a Close frame has been sent or
# received (section 7.1.2), and **CLOSED** when the TCP connection is gone (section 7.1.4). Every
# path out of OPEN ends in CLOSED; what differs is whether a Close frame was exchanged on the way,
# and which code it carried. The lower half is not in the RFC, but in every client that lasts:
# coming back.

# %%
SVG(filename="../images/04_lifecycle.svg")

# %% [markdown]
# Here is one connection, made with the plain `websockets` library so that its state shows at
# each step. In the lab, *authenticate* happens in the handshake (the token rides in `?token=`) and
# the first message, `welcome`, says who you are and names the connection.

# %%
ann = lab.account("ann")
ws = await websockets.connect(f"{lab.ws_url}?token={ann.token}", compression=None)
print(f"1. connect:      {ws.response.status_code} {ws.response.reason_phrase} -> {ws.state.name}")
welcome = json.loads(await ws.recv())
print(f"2. authenticate: {welcome['type']} for user {welcome['user']}, this connection is {welcome['socket_id']}")
await ws.send(json.dumps({"type": "ping", "ref": 1}))
print(f"3. live:         sent a ping, got a {json.loads(await ws.recv())['type']} -> {ws.state.name}")
closing = asyncio.ensure_future(ws.close(1000, "bye"))
await asyncio.sleep(0)  # let close() send its Close frame
print(f"4. close:        our Close frame is out -> {ws.state.name}")
await closing
print(f"5. closed:       the server's Close came back -> {ws.state.name}, code {ws.close_code}")
seen = await observer.wait_for(lambda e: e["ev"] == "socket_closed" and e["socket_id"] == welcome["socket_id"])
print(f"   the server saw: socket_closed with code {seen['code']} ({seen['reason']!r})")

# %% [markdown]
# A connection can also end in CONNECTING: a refused handshake never reaches OPEN. A bad
# token gets `401` before any upgrade (lesson 02), so the client goes straight to CLOSED with an
# HTTP status rather than a close code.

# %%
try:
    await websockets.connect(f"{lab.ws_url}?token=not-a-token", compression=None)
except websockets.InvalidStatus as exc:
    print(f"CONNECTING -> CLOSED: HTTP {exc.response.status_code}, {json.loads(exc.response.body)['message']}")

# %% [markdown]
# ## 3. A reconnection is a new connection: `socket_id` vs user id
#
# The notes (§12) say `socket.id` is "unique per connection, changes on reconnect, NOT same as
# userId". That is exactly what the lab does: the `welcome` of every connection carries a new
# `socket_id`, and the token names the user. `LabClient` reconnects by itself; here the server
# aborts Alice's connection (no Close frame, as a network failure), and she comes back.

# %%
alice = await LabClient.connect(lab, lab.account("alice"))
bob = await LabClient.connect(lab, lab.account("bob"))
await alice.join("lobby")
await bob.join("lobby")
before = alice.socket_id
lab.drop(before)  # abort: the TCP connection dies, no Close frame
lost = await ended(alice, before)
await bob.chat("lobby", "did you miss this one, alice?")  # sent while she may still be away
await alice.wait_connected()
missed = await alice.wait_for(lambda m: m["type"] == "chat" and m["text"].startswith("did you miss"))
print(f"alice's connection ended with {lost.code} (no Close frame) and came back")
print(f"socket id: {before} -> {alice.socket_id} (new: {alice.socket_id != before})")
print(f"user id:   {alice.user['id']} -> {alice.user['id']} (the same person)")
print(f"bob's chat reached her: {missed['text']!r}, seq {missed['seq']}")

# %% tags=["nbval-ignore-output"]
for event in alice.timeline:
    print(f"{event.t - alice.timeline[0].t:6.3f} s  {event.kind:<11} {event.socket_id or ''} "
          f"{'' if event.code is None else event.code} {event.reason[:50]}")

# %% [markdown]
# Whether Bob's chat came while Alice was away or just after, she received it exactly once: after
# reconnecting, `LabClient` sends `resume` with the last `seq` it saw in each room, and the server
# replays what came after (lesson 06 looks at this closely). The timeline above is the client's
# own record: the loss, each attempt after its backoff wait, the new socket id.
#
# **What the notes leave out (§12, §9).** In Socket.IO, `socket.id` does change on reconnect by
# default, as the notes say. Since Socket.IO 4.6 (2023) a server may enable **connection state
# recovery**:
#
# ```js
# const io = new Server(httpServer, {
#   connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 },
# });
# io.on("connection", (socket) => {
#   if (socket.recovered) { /* same socket.id, same rooms, missed packets replayed */ }
# });
# ```
#
# A client that comes back within `maxDisconnectionDuration` then gets its old `socket.id`, its
# rooms and the events it missed. It is the lab's `resume`, done for you and keyed by the socket
# rather than by the room. Two things to keep from this. First, presence and routing must be keyed
# by the **user** id: a socket id may change (or, with recovery, may not). Second, the notes' list
# of what Socket.IO "adds" mixes two kinds of things. Auto reconnection is indeed not in the
# browser's WebSocket API: every client must write it (part 6 shows how). Heartbeats are in RFC 6455
# itself (ping and pong frames, part 5); Socket.IO runs its own on top (Engine.IO `ping`/`pong`
# packets, every 25 s by default) because a browser script cannot send WebSocket pings and because
# it may run over HTTP long polling. And Socket.IO is its own protocol on top of WebSocket: a plain
# WebSocket client cannot talk to a Socket.IO server.

# %% [markdown]
# ## 4. Why connections end, and the code each one leaves
#
# The notes list "user closes tab, network drops, app refreshes" as reasons for `disconnect`. There
# are more, and a client can tell them apart by the **close code** (RFC 6455 section 7.4) that
# came in the Close frame, or by the absence of one (1006). Each cell below makes the lab end a
# connection one way, and records what the client saw. `probe` opens a client that does not
# reconnect, so its last close code stays put.

# %%
endings = []  # (what happened, code, reason) as the client saw it


async def probe(name: str = "probe") -> LabClient:
    """A client of `name` that does not reconnect by itself."""
    return await LabClient.connect(lab, lab.account(name), reconnect=False)


def record(what: str, code: int, reason: str, side: str = "the client") -> None:
    endings.append((what, code, reason))
    print(f"{what}: {side} saw {code} {reason!r}")

# %% [markdown]
# **A tab closes.** A browser closing a tab or navigating away sends a Close frame with **1001**
# *going away* (a normal end of a page sends 1000 or 1001; the server cannot tell a closed tab from a
# navigation). The server gets the code in the frame:

# %%
tab = await probe("ann")
sid = tab.socket_id
await tab.close(1001, "tab closed")
seen = await observer.wait_for(lambda e: e["ev"] == "socket_closed" and e["socket_id"] == sid)
record("a tab closing", seen["code"], seen["reason"], side="the server")

# %% [markdown]
# **A refresh** is a close (1001) followed at once by a brand-new connection, with a new socket id
# and nothing carried over but the token. To everyone watching presence, it looks like leaving and
# coming back; part 7 deals with the flapping.

# %%
tab = await probe("ann")
old = tab.socket_id
await tab.close(1001)
tab = await probe("ann")
print(f"refresh: {old} closed with 1001, then a new connection {tab.socket_id}")
await tab.close()

# %% [markdown]
# **The network vanishes.** No Close frame can get through, so the client that finds out (by its
# own keepalive, or a write that fails) reports **1006**, *abnormal closure*: the code that is never
# sent (section 7.1.5). The lab's admin *abort* cuts a TCP connection without a Close frame, which is
# what the client sees when the network dies under it:

# %%
tab = await probe("carol")
lab.drop(tab.socket_id)  # mode="abort"
lost = await ended(tab)
record("the network vanishes (the client's view)", lost.code, lost.reason)

# %% [markdown]
# The **server**, though, learns nothing when a network vanishes: no packet arrives, not even a TCP
# reset. `LabClient.go_silent()` models a pulled cable (the client stops reading and writing,
# without closing anything). Only the heartbeat finds it: after `ping_interval` seconds of silence
# the server pings, waits half the interval for a pong, then drops the socket. Watch Carol's socket
# disappear from the dashboard about 1 to 1.5 s after this cell starts.

# %%
carol = await probe("carol")
carol.go_silent()
silent_at = time.time()
seen = await observer.wait_for(lambda e: e["ev"] == "socket_closed" and e["socket_id"] == carol.socket_id)
record("the network vanishes (the server's view)", seen["code"], seen["reason"], side="the server")
await carol.close()

# %% tags=["nbval-ignore-output"]
print(f"the server noticed {seen['t'] - silent_at:.2f} s after carol went silent "
      "(expected between 0.5 and 1.5 s with ping_interval = 1)")

# %% [markdown]
# **The server shuts down.** On SIGTERM (or, here, the end of its stdin) the lab closes every socket
# with **1001** *going away*, then exits. `lab.stop()` does that; `lab.start()` brings it back on the
# same port. These calls block for a second or so, so they run in a thread: meanwhile Alice's client,
# on the kernel's event loop, sees the close, and keeps trying until the lab is back.

# %%
before = alice.socket_id
await asyncio.to_thread(lab.stop)
lost = await ended(alice, before)
record("the server shuts down", lost.code, lost.reason)
await asyncio.to_thread(lab.start)
await asyncio.gather(alice.wait_connected(), bob.wait_connected())
print(f"alice is back on {alice.socket_id}, after {alice.reconnects} reconnections in all")

# %% [markdown]
# **A policy refusal.** **1008** *policy violation* is the lab's answer to a client that breaks its
# rules: a token that expires during the connection, a logout, or a flood. The rate limit allows 20
# messages a second (a burst of 40); this client sends 100 pings at once.

# %%
flood = await probe("dave")
for ref in range(100):
    flood.send_nowait("ping", ref=ref)
lost = await ended(flood)
record("a flood (rate limit)", lost.code, lost.reason)

# %% [markdown]
# **A message too big.** The lab reads at most `max_message_bytes` (64 KiB) per message; a bigger
# one is refused with **1009** *message too big*, before it is even read in full. Large things go
# over HTTP (lesson 05).

# %%
big = await probe("erin")
big.send_nowait("ping", payload="x" * 70_000)
lost = await ended(big)
record("a 70,000-byte message", lost.code, lost.reason)

# %% [markdown]
# **A server error.** When a handler fails on a message, the lab closes *that* socket with **1011**
# *internal error* and keeps everyone else. The `bug_on_text` switch plants such a bug: a chat whose
# text equals it raises inside the handler. Alice, in the same room, is not affected.

# %%
lab.set_switches(bug_on_text="boom")
buggy = await probe("frank")
await buggy.join("lobby")
buggy.send_nowait("chat", room="lobby", text="boom")
lost = await ended(buggy)
record("a bug in the server's handler", lost.code, lost.reason)
lab.set_switches(bug_on_text=None)
ack = await alice.chat("lobby", "still here")
print(f"alice, in the same room, still chats: her message got an {ack['type']}")

# %% [markdown]
# **A restart.** A server that stops in order to start again at once (a deployment) says so with
# **1012** *service restart*: "come back soon". `lab.restart()` does that.

# %%
before = alice.socket_id
restart = asyncio.ensure_future(asyncio.to_thread(lab.restart))
lost = await ended(alice, before)
record("the server restarts", lost.code, lost.reason)
await restart
await asyncio.gather(alice.wait_connected(), bob.wait_connected())

# %% [markdown]
# **Overload.** A full server can refuse new connections with **1013** *try again later*. The HTTP
# handshake succeeds (a browser script cannot read an HTTP refusal's status anyway), and the Close
# frame comes at once, before the `welcome`. The `max_connections` switch sets the lab's limit; with it
# set to 1 (Alice and Bob are connected already, and stay so: the limit only refuses new sockets),
# the next one is refused.

# %%
lab.set_switches(max_connections=1)
try:
    await probe("grace")
except LabError as exc:
    record("a full server", exc.close_code, exc.close_reason)
_ = lab.set_switches(max_connections=0)

# %% [markdown]
# **Application codes.** 4000-4999 are free for applications to give their own meanings (section
# 7.4.2). The lab's instructor can close a socket with one, and a reason; here 4001 means "kicked".

# %%
kicked = await probe("heidi")
lab.drop(kicked.socket_id, mode="close", code=4001, reason="kicked by the instructor")
lost = await ended(kicked)
record("an application's own code", lost.code, lost.reason)

# %% [markdown]
# All of them, as the clients saw them:

# %%
for what, code, reason in endings:
    print(f"{what:<42} {code:>5}  {reason}")

# %% [markdown]
# A client that reads these codes can decide what to do next: come back at once (1001, 1006, 1011,
# 1012), come back later (1013), or not come back by itself (1000, 1008, and here 4000-4999).
# Question 4 asks you to write exactly that, and checks it on codes the lab really sends.

# %% [markdown]
# ## 5. Heartbeats: how long until a dead client is noticed
#
# Part 4 showed the server reaping a silent client. How long does it take? The lab pings a socket
# that has been silent for `ping_interval` seconds (a ping frame, RFC 6455 section 5.5.2), and drops
# it if no pong (section 5.5.3) or other data comes within half the interval. A client that
# vanishes right after answering a ping lasts the full `1.5 x ping_interval`; one that vanishes just
# before the next ping, only about half an interval.
#
# The `ping_interval` switch sets the heartbeat of sockets opened from then on, so one lab can show
# several intervals at once. For each of 0.5, 1 and 2 s, four clients connect, then each goes silent
# at a random moment, and the server's `socket_closed` event tells when it noticed. Watch the
# twelve `vanishing` sockets leave the dashboard.

# %%
show_source(measure_detection)

# %%
detections = await Progress.track(
    measure_detection(lab, observer, intervals=(0.5, 1, 2), per_interval=4), "waiting for the heartbeat", seconds=3.5
)

# %% tags=["nbval-ignore-output"]
for interval in (0.5, 1, 2):
    times = [d.seconds for d in detections if d.interval == interval]
    print(f"ping_interval {interval:>3g} s: noticed after {min(times):.2f} to {max(times):.2f} s, "
          f"mean {statistics.mean(times):.2f} s (expected between {0.5 * interval:g} and {1.5 * interval:g}, "
          f"mean about {interval:g})")
print("the server's reason:", detections[0].reason)

# %% tags=["nbval-ignore-output"]
fig = plot_detection(detections)

# %% [markdown]
# Detection time grows with the interval, inside the band. The trade-off: a short interval notices a
# vanished user sooner (and frees its memory sooner), but costs a ping and a pong per idle socket per
# interval. The lab's default is 20 s (a vanished user looks online for up to 30 s); Socket.IO's is
# 25 s plus a 20 s timeout. Browsers answer pings by themselves, so a live tab never gets dropped.

# %% [markdown]
# ## 6. Reconnection: backoff, jitter, and the thundering herd
#
# A client whose connection dies should come back by itself, but not at once and not all together.
# If the server is down, trying every few milliseconds wastes everyone's effort; so each attempt
# waits longer than the last (**exponential backoff**), up to a cap. And if a thousand clients lost
# the server at the same moment, they all compute the same waits and knock at the same instants: a
# **thundering herd** that can take the server down again as it comes back. So each client waits a
# random fraction of its backoff (**full jitter**). This is `LabClient`'s policy:

# %%
show_source(backoff_delay)

# %%
show_source(reconnect_delay)

# %% [markdown]
# Let's test both on the live lab. The crowd of 40 connects with **no jitter**: each waits exactly
# `backoff_delay(attempt)` (0.1, 0.2, 0.4, 0.8 s... after the kill, attempts at 0.1, 0.3, 0.7, 1.5,
# 3.1 s). Then the lab is **killed** (SIGKILL: every client sees 1006 at once), kept down for a
# second, and started again. Each client's timeline records its attempts.

# %%
crowd.backoff = backoff_delay  # no jitter: the ceiling itself, the same for everyone
await dashboard.grow(40)
herd = await Progress.track(kill_and_restart(lab, crowd, down=1.0, label="no jitter"), "kill, restart, reconnect", seconds=3)

# %% [markdown]
# Now the same with full jitter, the client's default:

# %%
crowd.backoff = reconnect_delay  # full jitter
spread = await Progress.track(kill_and_restart(lab, crowd, down=1.0, label="full jitter"), "kill, restart, reconnect", seconds=6)

# %% tags=["nbval-ignore-output"]
print(herd.summary())
print(spread.summary())

# %% tags=["nbval-ignore-output"]
fig = plot_herd([herd, spread], title="The lab killed under 40 connected clients, and started again")

# %% [markdown]
# Without jitter, every client's attempts land in the same 50 ms: all 40 at 0.1, 0.3 and 0.7 s
# (refused: the server is down), then all 40 at once on the restarted server (at 1.5 s, or at 3.1 s
# if it took longer than that to start). Forty is harmless;
# forty thousand, each with a TLS handshake, a token check and a resume, is how a server that just
# came back goes down again. With full jitter the same crowd arrives a few at a time. The price is
# in the tail: the last client waits longer, since some draw long waits. Question 5 asks you to
# write this function, and checks it the same way, with a kill and a restart.

# %% [markdown]
# ## 7. Presence from connections
#
# A user is **online while any of their sockets is open**: the server keeps `user id -> set of
# socket ids`, and presence changes only when that set goes from empty to non-empty or back. Two
# tabs:

# %%
watcher = await LabClient.connect(lab, lab.account("watcher"))
await watcher.send("subscribe", topic="presence")
seen_presence = []  # what a friend watching presence sees
watcher.on("presence", lambda m: seen_presence.append((time.time(), m["user"]["username"], m["online"])))

kim = lab.account("kim")
tab1 = await LabClient.connect(lab, kim)
tab2 = await LabClient.connect(lab, kim)
await tab1.close(1001)
print("one tab closed:", {key: lab.user("kim")[key] for key in ("username", "online", "sockets")})

# %% [markdown]
# **A refresh flaps.** Kim refreshes the other tab: its socket closes, and a new one opens a moment
# later. With no grace period (the lab's default, `presence_grace = 0`), her friends see her go
# offline and come back online within milliseconds:


# %%
kim_tab = tab2


async def refresh() -> None:
    """Close Kim's tab's socket (1001) and open a new one for her, as a page reload does."""
    global kim_tab
    await kim_tab.close(1001)
    kim_tab = await LabClient.connect(lab, kim)


async def presence_during(action, settle: float) -> list[tuple[str, bool]]:
    """The presence changes a friend sees during `action()` and `settle` seconds after it."""
    seen_presence.clear()
    await action()
    await asyncio.sleep(settle)
    return [(name, online) for _, name, online in seen_presence if name == "kim"]


changes = await presence_during(refresh, settle=0.5)
print("without a grace period, a refresh shows:", changes)

# %% [markdown]
# **With a grace period** the server waits `presence_grace` seconds after a user's last socket
# closes before announcing the offline, and cancels it if a socket of theirs opens meanwhile. Set it
# to 1 s and refresh again: nothing to see. Then Kim really leaves, and the offline comes one grace
# period later.

# %%
lab.set_switches(presence_grace=1)
changes = await presence_during(refresh, settle=1.5)
print("with presence_grace = 1, a refresh shows:", changes)

# %%
seen_presence.clear()
left_at = time.time()
await kim_tab.close(1001)
async with asyncio.timeout(5):
    while not [online for _, name, online in seen_presence if name == "kim" and not online]:
        await asyncio.sleep(0.02)
print("kim left for real; her friends saw:", [(name, online) for _, name, online in seen_presence if name == "kim"])

# %% tags=["nbval-ignore-output"]
print(f"the offline came {seen_presence[-1][0] - left_at:.2f} s after her last tab closed "
      "(expected 1 s, the grace period, + up to 0.25 s: the server checks 4 times a second)")

# %% [markdown]
# That is the trade: no flapping, and a user who leaves looks online one grace period longer. It
# is the same pattern as question 6's `announcements()`.
#
# **The leak.** Every socket the server tracks must be forgotten when it ends, in every map: user
# -> sockets, rooms, topics. The notes (§14) name this among what breaks servers: "memory leaks (not
# cleaning socket maps)". The lab's `leaky_cleanup` switch skips that cleanup on purpose. Ten users
# connect and leave three times over; watch the dashboard's socket-map counter grow while the open
# sockets do not (and the leaked users stay "online" for ever).

# %%
async def health_when(condition, timeout: float = 10.0) -> dict:
    """GET /healthz until `condition(health)` holds (a closed socket's handler ends a moment after the client's close)."""
    async with asyncio.timeout(timeout):
        while not condition(health := lab.health()):
            await asyncio.sleep(0.05)
    return health


baseline = lab.health()["sockets_open"]  # the crowd, alice, bob and the watcher
lab.set_switches(presence_grace=0, leaky_cleanup=True)
leaky = Crowd(lab, prefix="leaky", rooms=["lobby"])
for _ in range(3):  # three rounds of arriving and leaving
    await leaky.grow(10)
    await leaky.shrink(10)
health = await health_when(lambda h: h["sockets_open"] == baseline)
print(f"sockets open: {health['sockets_open']}, sockets tracked in the maps: {health['sockets_tracked']} "
      f"({health['sockets_tracked'] - health['sockets_open']} leaked)")

# %% [markdown]
# The numbers differ by the 30 leaked sockets. In a real server this grows with every connection
# until memory runs out, and every broadcast to the room still walks over the dead entries. The fix
# is to do the cleanup where it cannot be skipped: in the `finally` of the handler that owns the
# socket, so it runs however the socket ends (a Close frame, an abort, a heartbeat reap, an
# exception). Here is the lab's `/ws` handler; its `finally` calls `session.close()`, which ends in
# `Lab.unregister`:

# %%
show_source(lab_ws.websocket_handler)

# %%
show_source(Lab.unregister)

# %% [markdown]
# With the switch on, `unregister` returns before `hub.disconnect()`. Switching it off stops new
# leaks, but does not heal the old ones: the dead entries have no handler left to clean them. Only a
# restart does (every socket closed with 1012, the maps rebuilt from the clients that come back):

# %%
_ = lab.set_switches(leaky_cleanup=False)
await leaky.grow(10)
await leaky.shrink(10)
health = await health_when(lambda h: h["sockets_open"] == baseline)
print(f"switch off: open {health['sockets_open']}, tracked {health['sockets_tracked']} (the 30 old leaks stay)")
await asyncio.to_thread(lab.restart)
health = await health_when(lambda h: h["sockets_open"] == h["sockets_tracked"] == baseline)
async with asyncio.timeout(5):  # the dashboard's next stats event (once a second) shows it too
    while dashboard.state.stats.get("sockets_tracked") != baseline:
        await asyncio.sleep(0.05)
print(f"after a restart: open {health['sockets_open']}, tracked {health['sockets_tracked']}")

# %% [markdown]
# ## Check yourself
#
# Replace `...` with your answer and run the cell. `ex.q1.hint()` gives a hint, `ex.q1.solution()`
# the answer with an explanation.
#
# **Question 1.** A network that vanishes.

# %%
ex.q1

# %%
answer = ...
ex.q1.check(answer)

# %% [markdown]
# **Question 2.** When does the heartbeat notice?

# %%
ex.q2

# %%
answer = ...  # (earliest, latest)
ex.q2.check(answer)

# %% [markdown]
# **Question 3.** Who is back after a reconnection?

# %%
ex.q3

# %%
answer = ...
ex.q3.check(answer)

# %% [markdown]
# **Question 4: tell the close codes apart, live.** The check makes the lab close fresh sockets six
# ways and asks your function about each code the client really saw.

# %%
ex.q4

# %%
def what_next(code):
    ...  # return "reconnect", "wait" or "stop"


await ex.q4.check_async(what_next)

# %% [markdown]
# **Question 5: your backoff, against a live restart.** The check runs 20 clients with your
# function as their reconnection policy, kills the lab, and starts it again (about 5 s).

# %%
ex.q5

# %%
def backoff(attempt):
    ...  # import random; full jitter: between 0 and min(5, 0.1 * 2**attempt)


await ex.q5.check_async(backoff)

# %% [markdown]
# **Question 6: presence with a grace period, live.** After the small cases, the check plays a
# session on the lab (two tabs, a refresh, an exit, a return, with `presence_grace = 1`), gives your
# function the socket events the server recorded, and compares its answer with what the lab announced.

# %%
ex.q6

# %%
def announcements(events, grace):
    ...


await ex.q6.check_async(announcements)

# %% [markdown]
# ## Summary
#
# - A connection is **CONNECTING** (handshake), **OPEN** (frames, heartbeats), **CLOSING** (a Close
#   frame is out) and **CLOSED** (RFC 6455 sections 4, 5, 7). A refused handshake ends with an HTTP
#   status, never reaching OPEN.
# - A reconnection is a **new connection**: a new socket id, the same user id. Keep presence and
#   routing by user id; resume by sequence number (the lab) or connection state recovery (Socket.IO 4.6+).
# - Every ending leaves a **close code**: 1000 normal, 1001 going away (a tab, a server shutting
#   down), 1006 no Close frame at all (never sent), 1008 policy, 1009 too big, 1011 server error,
#   1012 restart, 1013 try again later, 4000-4999 the application's own. A client decides from it
#   whether to come back.
# - A vanished network sends nothing: the server notices only by its **heartbeat**, between 0.5 and
#   1.5 ping intervals later.
# - Clients come back with **exponential backoff and full jitter**: without jitter, a crowd cut off
#   together returns as a herd.
# - **Presence** is "any socket open", with a **grace period** so a refresh does not flap; and the
#   socket maps are cleaned in a **`finally`**, or they leak.
#
# **Common misconceptions** (from the notes this course grew from)
#
# - *"Connection closed = offline, no extra API calls needed"* (§5). Only for a clean close; a
#   vanished client stays "online" until the heartbeat, and a refresh flaps without a grace period.
# - *"`socket.id` changes on reconnect"* (§12). True of plain WebSocket servers and of Socket.IO by
#   default; Socket.IO 4.6+ with connection state recovery keeps it for a short disconnection.
# - *"Socket.IO adds heartbeats"* (§9). RFC 6455 has ping and pong frames of its own; what Socket.IO
#   adds is its own heartbeat (a browser script cannot send a ping frame) and reconnection, in a
#   protocol of its own that plain WebSocket clients cannot speak.
# - *"A reconnecting client should retry as fast as it can."* It should back off, with jitter, and
#   read the close code first: some endings (1008, 4000-4999) ask it not to come back by itself.
#
# Next: [05 · Social features over one socket](05_social_features.ipynb): chat, typing, presence,
# notifications and live counters on the lab, and what goes over HTTP instead.

# %% [markdown]
# When you are done, stop the dashboard, the clients and the crowds (the lab keeps running for the
# next lesson).

# %%
await dashboard.stop()  # first, so that it keeps its last picture
await observer.close()
for client in (alice, bob, watcher, tab1):
    await client.close()
await leaky.stop()
await crowd.stop()

# %% [markdown]
# ← Previous: [03 · Frames on the wire](03_frames.ipynb) · [Course index](index.ipynb) · Next: [05 · Social features over one socket](05_social_features.ipynb) →
