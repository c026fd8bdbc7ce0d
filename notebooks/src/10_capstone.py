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
# # 10 · Capstone: live reactions on a post
#
# Everything the course taught, in one feature you build: **live reactions on a post**. Ann posts a
# photo; while her friends look at it, each 👍 ❤️ 😂 anyone taps shows up on every screen that has
# the post open, at once, in the same order everywhere, and nothing tapped is lost when a phone
# drops off the network for a moment. It is small enough to finish in a lesson and has every
# problem a real-time feature has.
#
# You will write the three handlers of a small **reactions service** that runs next to the lab,
# inside this notebook's event loop; the lab keeps the accounts, the tokens and the posts. Each
# handler is checked against the live lab by a crowd of simulated users, and the check says
# exactly what went wrong.
#
# **In this lesson you will**
#
# 1. design the feature: what goes over REST (the post), what over a WebSocket (the reactions),
#    what is stored, who receives what,
# 2. watch a finished service on a live board, run with the course's reference handlers, and see each
#    property it must have: users are the lab's users (their JWT checked by the lab, cached), a
#    reaction is stored with its post's sequence number before anyone hears of it, only a post's
#    viewers receive its reactions, a reader that never reads holds nobody up, a viewer that drops off
#    resumes where it stopped, a flooder is rate-limited, and counters can be coalesced,
# 3. write the WebSocket handler (authenticate before the upgrade, register, read, unregister in
#    `finally`), `on_react` (rate, persist with a seq, fan out one frame, ack) and `on_view`
#    (replay what was missed, then live), each checked live,
# 4. coalesce a counter, and answer how WebSockets run over HTTP/2,
# 5. end with a map of the notes: each of the 15 sections, where the course taught it, and what to read next.
#
# **Notes sections covered:** all of them, together. This lesson uses §5 *Why WebSocket is perfect for
# social media* (live counters and updates, part 6), §6 *Why not WebSocket for everything* and §10
# *Backend architecture* (the hybrid split, part 2), §8 *Common misconceptions* ("WebSocket replaces
# REST": it does not, part 2), §12 *Socket connection lifecycle* (q1), §13 *How one server handles
# thousands of users* (one event loop, no task per recipient, part 5), §14 *What breaks WebSocket
# servers* (leaking maps and slow readers, parts 5 and 8) and §15 *Next topics* (JWT, userId ->
# sockets, routing, persistence, parts 3 to 7). Part 10 maps every section to the lesson that taught it.
#
# **About the answer cells.** The exercises in part 9 start as stubs ("not attempted"). The demo in
# parts 3 to 8 runs the course's **reference** handlers, so that you can see what a finished service
# does before you write your own; it does not use your code.

# %% [markdown]
# ## 1. Start the lab
#
# The lab is the same server as in every lesson: accounts, JWTs, posts over REST.
# `labserver.course.capstone` is this lesson's toolkit: the reactions service's skeleton, a
# simulated user (`ReactionClient`), a crowd of them, and a live board.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import json

from aiohttp import WSMsgType, web  # noqa: F401 - for your handle_socket in part 9
from IPython.display import SVG
from websockets.exceptions import InvalidStatus

from labserver.course import start_lab, tokens
from labserver.course.capstone import (
    Conn,
    ReactionClient,
    ReactionCrowd,
    ReactionsBoard,
    ReactionsService,
    ReactionStore,
    StuckReader,
)
from labserver.course.exercises import lesson10 as ex
from labserver.course.source import show_source

lab = start_lab()


async def until(condition, timeout=5.0):
    """Wait until condition() is true, looking every 20 ms."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


lab

# %% [markdown]
# ## 2. The design
#
# Start from who does what. The notes' §6 and §10 give the split, and lesson 05 measured it: HTTP
# for what is requested, created and cached; a WebSocket for what is pushed as it happens.
#
# | | over | why |
# |---|---|---|
# | log in, get a JWT | REST, the lab (`POST /api/login`) | a request and an answer; the password goes once |
# | the post itself | REST, the lab (`POST /api/posts`, `GET /api/posts/{id}` with its ETag) | created once, read often, cacheable |
# | "I'm looking at post 7" | WebSocket, the service (`view`) | it holds for as long as the socket stays open |
# | a reaction | WebSocket (`react`, answered `ack`) | tiny and frequent; the socket is already open |
# | reactions of post 7, live | WebSocket (`reaction`, pushed) | only a push reaches a screen at once |
# | what I missed while away | WebSocket (`view` with `after`) | the same stream, from where I stopped |
#
# The reactions service is a second small server with its own port. It trusts the lab for *who*
# (it asks the lab whose token it was given) and for *which posts exist*, and keeps what is its
# own: the open connections, who views what, the reactions with their sequence numbers.

# %%
SVG(filename="../images/10_reactions.svg")

# %% [markdown]
# The service's messages, all JSON text frames on `ws://127.0.0.1:<port>/reactions?token=<the lab's JWT>`:
#
# | client → service | service → client |
# |---|---|
# | `{"type": "view", "post": 7, "after": 12}` (`after` optional) | the reactions after seq 12, then `{"type": "viewing", "post": 7, "last_seq": 15}` |
# | `{"type": "react", "post": 7, "emoji": "👍", "ref": "r1"}` | `{"type": "ack", "ref": "r1", "seq": 16}`, or `{"type": "error", "code": "rate_limited", ...}` |
# | | to each viewer of post 7: `{"type": "reaction", "post": 7, "seq": 16, "user": {...}, "emoji": "👍", "ts": ...}` |
# | `{"type": "unview", "post": 7}`, `{"type": "ping"}` | `{"type": "unviewed", ...}`, `{"type": "pong"}` |
#
# Anything else (not JSON, an unknown type, a post id that is not a number) breaks the protocol,
# and the service closes the connection with **1008** (policy violation, RFC 6455 section 7.4.1).

# %% [markdown]
# ## 3. A finished service, live
#
# Three people and two posts, made over the lab's REST API. Ann's photo is the post everyone looks at.

# %%
ann, bob, cat = (lab.account(name) for name in ("ann", "bob", "cat"))
status, body = lab.request("POST", "/api/posts", {"text": "sunset from the pier"}, token=ann.token)
photo = body["post"]["id"]
status, body = lab.request("POST", "/api/posts", {"text": "a quiet post"}, token=bob.token)
quiet = body["post"]["id"]
print("posts:", photo, quiet)

# %% [markdown]
# Now the service, with the **reference** handlers from the exercises package (`ex.reference_handlers()`
# gives the three functions you will write in part 9). It listens on a free loopback port in this
# kernel's event loop; the board below shows it live: each post's viewers, its last committed seq and
# its counts, and the service's totals.

# %%
service = ReactionsService(lab, **ex.reference_handlers(), send_limit=16 * 1024)  # the course's answers, not yours
await service.start()
board = ReactionsBoard(service, posts=[photo, quiet])
board

# %% [markdown]
# A crowd of 12 lab users connects: 8 view the photo, 4 the quiet post, and each reacts now and then
# (twice a second on average). A `watcher` views both posts and feeds the board's counts.

# %%
watcher = await ReactionClient.connect(service.ws_url, cat.token, name="watcher")
board.follow(watcher)
for post in (photo, quiet):
    await watcher.view(post, after=0)
crowd = ReactionCrowd(service, lab, posts=[photo, photo, quiet], prefix="fan", rate=2.0, seed=10)
await crowd.grow(12)
await asyncio.sleep(2)  # let them react for a while: watch the board
print(f"{len(service.conns)} connections; viewers: {({p: len(v) for p, v in service.viewers.items()})}")

# %% tags=["nbval-ignore-output"]
print(f"{service.stats.reactions} reactions stored in about 2 s (expected about 12 users x 2/s x 2 s = 48), "
      f"{service.stats.deliveries} frames pushed")

# %% [markdown]
# ## 4. Who is this? The lab's token, checked by the lab, cached
#
# The service has no accounts of its own: it takes the lab's JWT in `?token=` and asks the lab whose it
# is (`GET /api/me`). The answer is cached for a minute, so that a user opening three tabs, or coming
# back after a network blip, costs the lab one call, not one per connection. The check happens *before*
# the upgrade: a bad token gets a 401 and no socket ever opens (lesson 06).

# %%
show_source(ReactionsService.authenticate)

# %%
forged = tokens.tamper(bob.token, sub=str(ann.id))  # bob's token, claiming to be ann
for what, token in {"no token": None, "bob's token, sub changed to ann": forged, "garbage": "x.y.z"}.items():
    try:
        await ReactionClient.connect(service.ws_url, token)
        print(f"{what:<34} -> 101 (accepted!)")
    except InvalidStatus as exc:
        print(f"{what:<34} -> {exc.response.status_code} {json.loads(exc.response.body)}")

# %% [markdown]
# The crowd's 12 users and the watcher connected once each; ann opens three tabs:

# %%
before = service.stats.auth_lab_calls
tabs = [await ReactionClient.connect(service.ws_url, ann.token, name=f"ann tab {i}") for i in range(3)]
print("calls to the lab for ann's 3 tabs:", service.stats.auth_lab_calls - before)

# %% [markdown]
# The cache is also a policy choice: for a minute, a token revoked at the lab (a logout) still opens
# sockets here. Lesson 06's lab closes sockets when their token expires or is revoked; a service
# like this one would re-check its open connections' tokens now and then, or subscribe to logouts.
#
# ## 5. Persisted with a seq, then fanned out, then acknowledged
#
# This is the reference `on_react`, the function q2 asks you to write. Read it in order: the rate
# check; the write, which returns once the row is committed, with the post's next **seq**; one frame,
# encoded once; a push to each viewer of the post; the ack last.

# %%
show_source(ex.on_react)

# %% [markdown]
# `svc.store.append` runs on the store's one thread, so two reactions never get the same seq, and the
# seqs of a post are 1, 2, 3... in commit order. This is lesson 06's rule, *persist, then broadcast,
# then ack*: by the time anyone hears of a reaction, a crash can no longer lose it.

# %%
show_source(ReactionStore.append)

# %% [markdown]
# Ann reacts from one of her tabs. Her ack carries the seq, and the same seq is already committed
# (and, look, the watcher has it too: it viewed the photo):

# %%
ack = await tabs[0].react(photo, "🎉")
await watcher.ping()  # a fence: everything pushed to the watcher before the pong has arrived
print("ack has a seq:", isinstance(ack["seq"], int), "| committed when acked:", service.store.committed(photo) >= ack["seq"],
      "| the watcher got it:", ack["seq"] in watcher.seqs(photo))

# %% [markdown]
# **Only the post's viewers.** The notes' §5 wants "like count updates" live; that does not mean for
# everyone. `svc.viewers` maps each post to the connections that view it (lesson 06's room -> sockets
# map; a *topic* in the lab's terms), and a reaction goes to that set only. Ann's three tabs are
# connected but view nothing, so they received none of the crowd's reactions:

# %%
print("reactions received by ann's 3 tabs:", [len(t.seqs(photo)) + len(t.seqs(quiet)) for t in tabs])
print("viewers of the photo:", len(service.viewers[photo]), "| of the quiet post:", len(service.viewers[quiet]))

# %% [markdown]
# ## 6. A reader that never reads
#
# The notes' §14 lists what breaks a server; one item it misses is the **slow reader**: a phone in a
# tunnel, a frozen tab, anything that stops reading while its connection stays open. Its socket's
# buffers fill, and then a send to it can only wait. A fan-out that *awaits* each send waits with it,
# and every other viewer waits too.
#
# `Conn.push` never waits. Each connection has its own queue and its own writer task; a connection
# whose queue passes `send_limit` is dropped (its TCP connection aborted) and comes back with `view`
# and `after` when it is ready. The lab does the same (`SocketWriter` in `labserver/ws.py`):

# %%
show_source(Conn.push)

# %% [markdown]
# Eve opens the photo and then never reads. (`StuckReader` opens the WebSocket by hand and stops
# reading its socket, with a tiny receive buffer. The service gives every connection small buffers, so
# that this shows after a few KB rather than a few MB; this one may queue 16 KB per connection.) The
# crowd keeps reacting; cat floods the photo on top, under a generous rate limit, until eve is dropped:

# %%
eve = lab.account("eve")
stuck = await StuckReader.connect(service.ws_url, eve.token)
await stuck.send_text(json.dumps({"type": "view", "post": photo, "after": 0}))
service.limiter.reset(rate=1000, burst=1000)  # for this demo only: the flood is not the point here
flooder = await ReactionClient.connect(service.ws_url, cat.token, name="cat")
acked = sent = 0
while not service.stats.dropped_slow and sent < 3000:  # in rounds of 100, until eve's queue overflows
    acks = await asyncio.gather(*(flooder.react(photo, "❤️", timeout=30) for _ in range(100)))
    sent += len(acks)
    acked += sum(a["type"] == "ack" for a in acks)
service.limiter.reset(rate=5, burst=10)  # back to the service's limit: 5 a second, a burst of 10
await watcher.ping()
print("eve dropped as a slow reader:", service.stats.dropped_slow >= 1, "| every flood reaction acknowledged:", acked == sent)
seqs = watcher.seqs(photo)
print(f"the watcher has every seq of the photo from 1, once, in order: {seqs == list(range(1, len(seqs) + 1))}")

# %% tags=["nbval-ignore-output"]
print(f"eve was dropped within the flood's first {sent} reactions, about 110 bytes a frame "
      f"(expected after a few hundred: a few KB of socket buffers, then her 16 KB queue)")

# %% [markdown]
# Nobody waited for Eve: the other viewers got every reaction, and every ack came back. The
# exercise q2 puts a reader like Eve among its viewers: an `on_react` that writes
# `await viewer.ws.send_str(...)` in its loop (or gathers the sends, which waits for the slowest all
# the same) stalls after about a hundred reactions, and the check says so.
#
# ## 7. Gone for a moment, back without a gap
#
# The crowd's first three users lose their connection (aborted, like a network failure) and stay away
# for a second while the others keep reacting. Each comes back with a new connection and `view` with
# `after` = the last seq it saw; the service replays exactly what it missed, then the live ones follow.

# %%
show_source(ex.on_view)

# %% [markdown]
# The reference `on_view` reads the store, then replays and registers the viewer **with no `await` in
# between**: in one event loop nothing else runs there, so no reaction can be pushed live between the
# read and the registration (a duplicate), or fall between them (a gap). Three reconnections:

# %%
back = await crowd.reconnect(3, away=1.0)
await asyncio.sleep(0.5)  # more reactions, live, after the replay
await asyncio.gather(*(c.ping() for c in crowd.clients[:3]))
for name, _, _ in back:
    client = next(c for c in crowd.clients if c.name == name)
    post = crowd.watching[name]
    seqs = client.seqs(post)
    print(f"{name}: every seq once and in order after the reconnect: {seqs == list(range(1, seqs[-1] + 1))}")

# %% tags=["nbval-ignore-output"]
for name, last, replayed in back:
    print(f"{name}: saw up to seq {last}, got {replayed} replayed that it had missed while away")

# %% [markdown]
# ## 8. Throttling: a rate per user, and coalesced counters
#
# **A rate per user.** A reaction is a write to the database and a frame to every viewer. One user
# holding a key down must not cost everyone: `svc.allow(user_id)` is a token bucket per user, 5
# reactions a second with a burst of 10. Bob taps 30 times at once:

# %% tags=["nbval-ignore-output"]
bob_tab = await ReactionClient.connect(service.ws_url, bob.token, name="bob")
answers = await asyncio.gather(*(bob_tab.react(photo, "😂") for _ in range(30)))
kinds = [a.get("code", a["type"]) for a in answers]
print({kind: kinds.count(kind) for kind in sorted(set(kinds))},
      "(expected about 10 acks, the burst, and 20 rate_limited: the bucket refills 5 a second)")

# %% [markdown]
# **Coalescing.** The rate limit bounds each user; a popular post still gets many users. At 100
# reactions a second and 1,000 viewers, pushing each reaction is 100,000 frames a second, for a
# number that changes faster than anyone reads it. A counter can be **coalesced**: sent at once when
# nothing went out for a while, otherwise once at the end of a window, with the total by then (lesson
# 05's typing rule). Each reaction is still stored, and the list of who reacted is still there for
# whoever opens it. Here is the rule (q4 asks you to write it), applied to the times at which the
# photo's reactions were stored:

# %%
show_source(ex.coalesce)

# %% tags=["nbval-ignore-output"]
missed, last = await service.store.since(photo, 0)
times = [r["ts"] - missed[0]["ts"] for r in missed]
updates = ex.coalesce(times, window=0.25)
print(f"{len(times)} reactions to the photo -> {len(updates)} counter updates per viewer with a 0.25 s window "
      f"(at most 4 a second, whatever the rate)")

# %% [markdown]
# **Nothing leaks.** The crowd leaves, by clean closes and vanished connections; the handler's `finally`
# (q1) took each connection out of `conns` and every `viewers` set. What remains is the watcher, ann's
# three tabs, cat's and bob's:

# %%
await crowd.stop()
stuck.abort()
await until(lambda: len(service.conns) == 6)
print("connections:", len(service.conns), "| viewers:", {p: len(v) for p, v in service.viewers.items()})

# %% [markdown]
# ## 9. Your turn: the three handlers
#
# Everything above ran the reference handlers. Now write your own. Each check starts a fresh service
# in this kernel with **your** function and the reference for the other two, drives it with lab
# users, and tells you precisely what failed: a forged token accepted, a connection left in a map,
# a reaction lost, repeated or out of order, acknowledged before it was stored, sent to a non-viewer,
# a reader that never reads stalling everyone, a flood not limited, a resume with a gap.
#
# What the skeleton gives you (`svc` is the service, `conn` one connection; `show_source(...)` any of them):
#
# | | |
# |---|---|
# | `await svc.authenticate(request)` | the lab user (`{"id", "username"}`) whose token is in `?token=`, or None |
# | `await svc.accept(request)` | completes the upgrade (101), returns the aiohttp `WebSocketResponse` |
# | `svc.register(ws, user)`, `svc.unregister(conn)` | a `Conn` added to `svc.conns`; removed from everything |
# | `await svc.dispatch(conn, text)` | handles one message: calls your `on_view` / `on_react`; raises `BadMessage` on garbage |
# | `svc.allow(user_id)` | the per-user rate limit |
# | `await svc.store.append(post, user, emoji)` | the stored reaction with its seq, once committed |
# | `await svc.store.since(post, after)` | `(reactions after seq after, last seq)`; no reactions when `after` is None |
# | `svc.viewers` | post id -> set of `Conn`; `svc.add_viewer(conn, post)` |
# | `svc.encode(message)`, `conn.push(frame)` | a message as frame text; queue it for one connection (never waits) |
#
# Each check takes a few seconds. `ex.qN.hint()` gives a hint, `ex.qN.solution()` the answer.
#
# **Question 1: the WebSocket handler.**

# %%
ex.q1

# %%
async def handle_socket(svc, request):
    ...  # authenticate (401 if None), accept, register, async for -> dispatch, finally: unregister; return ws


await ex.q1.check_async(handle_socket)

# %% [markdown]
# **Question 2: react.**

# %%
ex.q2

# %%
async def on_react(svc, conn, post, emoji, ref):
    ...  # rate, append (seq), one frame pushed to each viewer, ack with the seq


await ex.q2.check_async(on_react)

# %% [markdown]
# **Question 3: view, and resume.**

# %%
ex.q3

# %%
async def on_view(svc, conn, post, after):
    ...  # read what was missed, replay it, add_viewer (no await in between), then "viewing"


await ex.q3.check_async(on_view)

# %% [markdown]
# When all three pass, run **your** service the way part 3 ran the reference, and open it to the crowd:
#
# ```python
# mine = ReactionsService(lab, handle_socket=handle_socket, on_view=on_view, on_react=on_react)
# await mine.start()
# my_board = ReactionsBoard(mine, posts=[photo]); my_board.widget
# my_crowd = ReactionCrowd(mine, lab, posts=[photo], prefix="mine", rate=2.0); await my_crowd.grow(10)
# ```
#
# **Question 4: coalesce the counter.**

# %%
ex.q4

# %%
def coalesce(times: list[float], window: float) -> list[tuple[float, int]]:
    ...


ex.q4.check(coalesce)

# %% [markdown]
# **Question 5: beyond HTTP/1.1.**

# %%
ex.q5

# %%
answer = ...
ex.q5.check(answer)

# %% [markdown]
# ## 10. The closing map: the notes, section by section
#
# The course started from fifteen numbered sections of notes, written while building a social app with
# Node and Socket.IO. Here is each one, where the course taught it, and what the course added or
# corrected.
#
# | § | Notes section | Taught in | What to keep |
# |---|---|---|---|
# | 1 | What is a WebSocket? | 00, 03 | one TCP connection, full-duplex, frames (RFC 6455 section 5); "low latency" is measured, not assumed (01) |
# | 2 | Why WebSocket came into the picture | 01 | polling's cost, measured: N/T requests a second, T/2 of added wait; "1,000 useless requests/s" holds for a quiet room |
# | 3 | What WebSocket changes | 00, 01 | the server pushes; no request per message; one connection serves every message |
# | 4 | How WebSocket works | 02, 03 | the Upgrade is HTTP (`101`, `Sec-WebSocket-Accept`); the TCP connection stays and carries frames, which can be large; TCP delivers bytes, not frames |
# | 5 | Why perfect for social media | 00, 01, 04, 05, 09, 10 | closed = offline only for a clean close (the heartbeat for the rest); typing throttled and never stored; counters to a post's viewers, coalesced (10) |
# | 6 | Why not WebSocket for everything | 01, 03, 05, 10 | uploads, CRUD and cacheable data stay on HTTP; a large payload blocks the socket it shares |
# | 7 | Important WebSocket properties | 00, 03, 09 | stateful: the server holds every connection's state; `wss://` is TLS |
# | 8 | Common misconceptions | 00, 07, 09, 10 | one process holds thousands of sockets; WebSocket complements REST (10's design); `wss://` secures the channel, not the application |
# | 9 | Socket.IO | 04, 09 | its own protocol over WebSocket or long polling: reconnection, heartbeats, events with acks, rooms, recovery |
# | 10 | Backend architecture | 02, 05, 10 | one port is a choice; here the reactions service has its own, and trusts the lab for who and what |
# | 11 | Why `http.createServer(app)` | 02, 09 | the upgrade lives in the HTTP server; `app.listen()` returns one too, the bug is two servers |
# | 12 | Socket connection lifecycle | 00, 04, 06, 10 | four states, close codes, a new socket id on reconnect; cleanup in `finally` (q1) |
# | 13 | How one server handles thousands | 07, 10 | one event loop, no thread per connection; no task or await per recipient in a fan-out |
# | 14 | What breaks WebSocket servers | 04, 07, 10 | blocking code, CPU in handlers, large payloads, leaking maps, **slow readers** |
# | 15 | Next topics | 06, 08, 10 | JWT (signed, not encrypted; expiry on open sockets), userId -> a *set* of sockets, routing, persist before the ack, resume by seq, Redis pub/sub between processes |
#
# **What to read next**
#
# - [RFC 6455](https://www.rfc-editor.org/rfc/rfc6455), *The WebSocket Protocol*: the handshake
#   (section 4), frames (5), closing (7), security (10). Short, and the source of everything in lessons 02-04.
# - [RFC 8441](https://www.rfc-editor.org/rfc/rfc8441), *Bootstrapping WebSockets with HTTP/2* (q5),
#   and [RFC 9220](https://www.rfc-editor.org/rfc/rfc9220) for HTTP/3.
# - [RFC 7692](https://www.rfc-editor.org/rfc/rfc7692), *Compression Extensions for WebSocket*
#   (permessage-deflate, measured in lesson 03).
# - The [python-websockets documentation](https://websockets.readthedocs.io/): its pages on deployment,
#   broadcasting ("don't await each send") and keepalive say in prose what this course measured.
# - The [Socket.IO protocol](https://socket.io/docs/v4/socket-io-protocol/) and
#   [Engine.IO protocol](https://socket.io/docs/v4/engine-io-protocol/) specifications: what the
#   notes' library sends on the wire (lesson 09).
# - The [aiohttp WebSockets documentation](https://docs.aiohttp.org/en/stable/web_quickstart.html#websockets),
#   the server this lab and your reactions service run on.
#
# ## Summary
#
# - **Split by what the data is**: the post and the login over REST (the lab), the reactions over a
#   WebSocket (the service). WebSocket complements REST, as the notes' §8 says.
# - **Who**: the lab's JWT, verified before the upgrade (401, no socket), by the lab, cached; a cache
#   is a delay in seeing a logout, so it needs a policy.
# - **Persist, then fan out, then ack**, with a seq per post from the store: every viewer sees 1, 2,
#   3... and a reconnecting one says where it stopped.
# - **Only the post's viewers**: post -> set of connections, registered by `view`, cleaned by the
#   handler's `finally` however the connection ended.
# - **Never wait on a reader in a fan-out**: one encoded frame, pushed to a queue per connection;
#   a reader too far behind is dropped and resumes.
# - **Throttle**: a rate per user, and coalesced counters where a number changes faster than it is read.
#
# **What the notes say, and what to add**
#
# - §14 *"Memory leaks (not cleaning socket maps)"*: the fix is a `finally` (q1), and the list needs
#   one more item, **slow readers**: an awaited send to a reader that never reads stalls a whole
#   fan-out (part 6, q2).
# - §5 *"Like count updates, real-time engagement"*: to the post's viewers only, and coalesced when
#   busy: a counter pushed on every reaction costs rate × audience frames (part 8).
# - §15 *"Chat persistence"*: the order is the point, for reactions as for chat: stored, then shown,
#   then acknowledged (part 5, q2).
# - §8 *"WebSocket replaces REST ❌"*: right, and this feature shows the line: the post is REST, the
#   reactions are pushed.
#
# That is the course. Keep the lab: `python3 course.py lab-server` runs it on its own, and the browser
# client at its URL is a place to try anything new.

# %%
await board.stop()  # first, so that it keeps its last picture
for client in [watcher, *tabs, flooder, bob_tab]:
    await client.close()
await service.stop()

# %% [markdown]
# ← Previous: [09 · Socket.IO's extras, wss:// and WebRTC signaling](09_socketio_tls_signaling.ipynb) · [Course index](index.ipynb)
