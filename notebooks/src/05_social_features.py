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
# # 05 · Social features over a hybrid REST + WebSocket API
#
# A social app has two kinds of traffic. Some things a user *asks for*: sign up, log in,
# load a profile, upload a photo, like a post. Others happen *to* a user without asking:
# a chat message arrives, a friend starts typing, comes online, likes your post, and the
# like counter under a post ticks up on everyone's screen. This lesson builds the second
# kind on the live lab, one feature at a time, and measures where the line between the
# two halves belongs.
#
# **In this lesson you will**
#
# 1. see the hybrid design: which actions go over HTTP, which over the WebSocket, and how
#    a REST action becomes pushes; and measure what each costs,
# 2. chat in a room,
# 3. send typing indicators: frequent and tiny, but throttled, expiring and never stored (a
#    crowd types and the database does not move),
# 4. follow presence, and see what "no extra API calls" leaves out,
# 5. like a post over REST and watch the notification reach every tab of its author,
# 6. watch a like counter update on twenty screens at once,
# 7. upload an image both ways, over HTTP and over the WebSocket, and see what a big
#    message does to the chat behind it (head-of-line blocking),
# 8. fetch a cacheable image with `ETag` and `304 Not Modified`, which no WebSocket message can use,
# 9. write the typing rule, a typing client, a like-and-listen client and the handler that
#    turns a REST action into pushes, checked on the live lab.
#
# **Notes sections covered:** §5 *Why WebSocket is perfect for social media* (live chat,
# typing indicators, online/offline status, notifications, live feed updates: parts 3 to 7;
# "voice/video signaling" is lesson 09), §6 *Why not use WebSocket for everything?* (the
# hybrid approach, measured: parts 2, 8 and 9), §10 *Backend architecture with WebSocket*
# ("one server handles REST APIs and WebSocket connections, same port": part 2). Where the
# notes are thin or wrong, the lesson says so and shows why; the summary lists the corrections.

# %% [markdown]
# ## 1. Start the lab
#
# Two options this time. `typing_ttl=2`: a typing indicator expires 2 s after its last
# refresh (the default is 5), so that part 4 shows it in a few seconds. And
# `max_message_bytes=8 * 2**20`: the lab accepts WebSocket messages of up to 8 MiB instead
# of 64 KiB, for part 8, which sends a photo over the socket to see why one shouldn't.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import json
import time

import aiohttp
from IPython.display import SVG

from labserver import rest as lab_rest
from labserver.course import Account, Crowd, Dashboard, LabClient, Progress, start_lab
from labserver.course.exercises import lesson05 as ex
from labserver.course.social import (
    TABLES,
    noise_png,
    row_counts,
    typing_broadcasts,
    upload_over_http,
    upload_over_websocket,
)
from labserver.course.source import show_source
from labserver.tap import FrameTap

lab = start_lab(private="this lesson (its own options, sign-ups and database)", typing_ttl=2, max_message_bytes=8 * 2**20)
lab

# %% [markdown]
# The dashboard, and a crowd of 20 users in the room `lobby`, chatting now and then and
# typing more often. Keep the dashboard in view: its message flow shows every `chat`,
# `typing`, `presence`, `notification` and `post_updated` the server routes in this lesson.

# %%
crowd = Crowd(lab, rooms=["lobby"], chat_rate=0.2, typing_rate=0.5, seed=5)
dashboard = Dashboard(lab, crowd)
await dashboard.ready()
await dashboard.grow(20)
dashboard


# %% [markdown]
# One small helper for the REST calls of this lesson: `lab.request` is a blocking call, so
# it runs in a thread, and the event loop (the dashboard, the crowd, our clients) keeps
# running meanwhile.

# %%
async def rest(method: str, path: str, token: str | None = None, body: object = None) -> tuple[int, dict]:
    """One REST call to the lab: (status, decoded JSON body)."""
    return await asyncio.to_thread(lab.request, method, path, body, token)


# %% [markdown]
# ## 2. The hybrid design
#
# The notes' §6 draws the line: HTTP for login, sign-up, profiles and image uploads;
# the WebSocket for chat, notifications, typing, presence and live updates. The lab is
# built that way ([PROTOCOL.md](../labserver/PROTOCOL.md), section 1), and the bottom half
# of the figure is the part the notes leave out: an action that arrives over HTTP (Bob's
# like) becomes pushes over WebSocket to the people it concerns.

# %%
SVG(filename="../images/05_hybrid.svg")

# %% [markdown]
# **One server, one port** (§10). The notes' Node stack is "Express app → HTTP logic, HTTP
# server → TCP handling, Socket.IO → WebSocket handling", and "one server handles REST APIs
# and WebSocket connections, same port". The lab is the same in Python: one
# aiohttp application in which `GET /ws` is just another route that answers
# `101 Switching Protocols` (lesson 02). One port is a convenience, not a rule: large
# deployments often put the sockets on their own servers (the load balancer sends `/ws`
# elsewhere), because a socket lives for hours and a request for milliseconds, and the two
# scale, deploy and fail differently. The protocol does not care either way.
#
# **Measured.** Here is the cost of each half, through a tap that counts every byte on the
# wire (lesson 03): four HTTP calls, opening the socket, and three WebSocket messages.
# Dora signs up, logs in, loads her profile, connects, chats, types, and likes a post.

# %%
tap = await FrameTap.for_lab(lab).start()
http = aiohttp.ClientSession()


async def over_http(method: str, path: str, token: str | None = None, body: object = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, tap.url + path, json=body, headers=headers) as resp:
        return await resp.json()


rows = []


async def measure(what: str, over: str, action) -> object:
    before, started = tap.totals(), time.perf_counter()
    result = await action()
    seconds, used = time.perf_counter() - started, tap.totals() - before
    rows.append((what, over, seconds * 1e3, used.sent, used.received))
    return result


credentials = {"username": "dora", "password": "lab-password"}
await measure("sign up", "HTTP", lambda: over_http("POST", "/api/signup", body=credentials))
login = await measure("log in", "HTTP", lambda: over_http("POST", "/api/login", body=credentials))
token = login["token"]
await measure("load the profile", "HTTP", lambda: over_http("GET", "/api/me", token))
dora = await measure("open the socket", "HTTP 101", lambda: LabClient.connect(tap.ws_url, Account(token, login["user"])))
await dora.join("lobby")
await measure("chat (+ echo, ack)", "WebSocket", lambda: dora.chat("lobby", "hi all, dora here"))
await measure("typing (+ echo, ack)", "WebSocket", lambda: dora.typing("lobby"))
await measure("ping (+ pong)", "WebSocket", lambda: dora.send("ping"))
post = (await over_http("POST", "/api/posts", token, {"text": "dora's first post"}))["post"]
await measure("like a post", "HTTP", lambda: over_http("POST", f"/api/posts/{post['id']}/like", token))
[(what, over) for what, over, *_ in rows]

# %% tags=["nbval-ignore-output"]
print(f"{'action':<22}{'over':<11}{'time':>9}{'bytes up':>10}{'bytes down':>12}")
for what, over, ms, up, down in rows:
    print(f"{what:<22}{over:<11}{ms:>7.1f} ms{up:>10,}{down:>12,}")
print("expected: a few hundred bytes each way for every HTTP call (request line, headers, status line, headers), "
      "tens of bytes for a WebSocket message (2-14 bytes of frame header + the JSON)")

# %% [markdown]
# Each HTTP call carries a request line and headers up and a status line and headers
# down, a few hundred bytes before any JSON. A WebSocket message pays 2 to 14 bytes of
# frame header (6 from a client, which masks), so a chat with its echo and its ack costs
# about as much as one HTTP *header*. That is why the frequent, small, pushed traffic
# belongs on the socket. The HTTP calls are not slow because they are HTTP: sign-up and
# log-in spend their milliseconds hashing the password (scrypt, on purpose), and the
# requests here reuse one keep-alive connection, as a browser does.
#
# But the socket does not win everything: the like is an *action* whose answer Dora's
# page needs (did it work? the new count?), and the rest of this lesson shows what else
# HTTP has that a socket lacks. The notes' misconception "WebSocket replaces REST" (§8)
# gets its measured answer in part 8.
#
# **CRUD over the socket?** The notes (§6) say WebSocket is "not good for CRUD APIs". It
# *can* carry them (the lab's `ref` and `ack` are a small request/response protocol, and
# many apps run RPC over a socket), but then the app rebuilds, message by message, what
# HTTP already has: a status per request (`201`, `404`, `409`), safe retries of idempotent
# methods, caching (part 9), a size declared before the body (part 8), per-request
# authentication, logging and rate limits in any proxy, and `curl` to try it. The lab also
# shows that the line is not a wall: a chat can be *sent* over HTTP
# (`POST /api/rooms/{room}/messages`) and is still *pushed* to the room over the sockets.

# %%
await dora.close()

# %% [markdown]
# ## 3. Live chat in rooms
#
# Ann and Bob join the room `book-club`. A chat goes to every socket in the room, the
# sender's included; it is stored with the room's next sequence number before anyone
# gets it, and the sender's ack comes last (lesson 06 takes that order apart). The crowd in
# `lobby` never sees it: a room is the set of sockets a message fans out to.

# %%
ann = await LabClient.connect(lab, lab.account("ann"), name="ann (laptop)")
bob = await LabClient.connect(lab, lab.account("bob"))
await ann.join("book-club")
joined = await bob.join("book-club")
print("members:", [m["username"] for m in joined["members"]])

ack = await ann.chat("book-club", "chapter 3 tonight?")
got = await bob.wait_for("chat")
print(f"bob got seq {got['seq']} from {got['from']['username']}: {got['text']!r}")
print(f"ann's ack: seq {ack['seq']}")

# %% [markdown]
# ## 4. Typing indicators: frequent, tiny, throttled, expiring, never stored
#
# The notes (§5): "frequent, tiny messages; should not hit the database; needs low
# latency". All true, and three things are missing. A client that sends `typing` on every
# keystroke would have the server fan each one out to the whole room: five keystrokes a
# second from each of 20 typists in a room of 200 is 20,000 messages a second for nothing.
# So the indicator is **throttled**: the lab tells the room at most once a second per user
# and room (`typing_min_interval`, 1 s, no flag), and a repeat within that second only
# refreshes it. It **expires**: a client that vanishes never sends "stopped typing", so the
# server ends the indicator by itself `typing_ttl` seconds after the last refresh (2 s here).
# And it is **never stored**: not in the database, not replayed on resume.
#
# First, how tiny: the message up, and what the room gets.

# %%
up = json.dumps({"type": "typing", "room": "book-club"}, separators=(",", ":"))
down = json.dumps({"type": "typing", "room": "book-club", "user": bob.user, "active": True}, separators=(",", ":"))
print(f"up:   {up}  ({len(up.encode())} bytes + 6 of frame header)")
print(f"down: {len(down.encode())} bytes + 2 of frame header, to each socket in the room")

# %% [markdown]
# Now Bob types for 3 seconds, sending `typing` on **every keystroke**, 4 a second (12 in
# all), and Ann records what she is told. The rule, as q1 asks you to write it
# (`typing_broadcasts`), predicts what she gets:

# %%
ttl = ann.welcome["limits"]["typing_ttl"]  # every socket's welcome says it
keystrokes = [i * 0.25 for i in range(12)]
print(f"typing_ttl = {ttl} s, typing_min_interval = 1 s")
typing_broadcasts(keystrokes, min_interval=1.0, ttl=ttl)

# %%
told = []
ann.on("typing", lambda m: told.append((time.perf_counter(), m["active"])) if m["user"]["username"] == "bob" else None)


async def bob_types() -> None:
    for _ in keystrokes:
        bob.send_nowait("typing", room="book-club")
        await asyncio.sleep(0.25)
    await ann.wait_for(lambda m: m["type"] == "typing" and m["user"]["username"] == "bob" and not m["active"], timeout=5)


started = time.perf_counter()
await Progress.track(bob_types(), "bob types for 3 s, then stops", seconds=5)

# %% tags=["nbval-ignore-output"]
print(f"bob sent {len(keystrokes)} typing messages; ann was told {len(told)} times: "
      f"{sum(a for _, a in told)} x active true, {sum(not a for _, a in told)} x active false "
      "(expected 3 and 1, as the rule said)")
for t, active in told:
    print(f"  at {t - started:4.2f} s: active {active}")
print(f"expected: true at about 0, 1 and 2 s; false at about {keystrokes[-1] + ttl:.2f} s "
      f"({ttl:g} s after the last keystroke, at {keystrokes[-1]:.2f} s, plus up to 0.25 s: the lab "
      "sweeps expired indicators 4 times a second)")

# %% [markdown]
# Twelve messages up, four down. The last "false" came from the server's own expiry: Bob
# never said he stopped. (A chat from Bob in the room would have ended the indicator at
# once, and so would his leaving.)
#
# **Never stored**, checked on the database itself. `row_counts` opens the lab's SQLite file
# read-only and counts the rows of each table. The crowd stops chatting and starts typing
# hard (3 typing messages a second each) for 3 seconds; the dashboard's flow fills with
# `typing`.

# %%
show_source(row_counts)

# %%
crowd.chat_rate = 0
await asyncio.sleep(0.5)  # chats already on their way are stored before we count
before, health_before, sent_before = row_counts(lab.data_dir), lab.health(), crowd.sent["typing"]
crowd.typing_rate = 3
active_at_once = []


async def crowd_types(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        active_at_once.append((await asyncio.to_thread(lab.health))["typing"])
        await asyncio.sleep(0.2)


await Progress.track(crowd_types(3), "20 users typing", seconds=3)
crowd.typing_rate = 0.5
after, health_after = row_counts(lab.data_dir), lab.health()
print("rows added while the crowd typed:", {table: after[table] - before[table] for table in TABLES})

# %% tags=["nbval-ignore-output"]
typed = crowd.sent["typing"] - sent_before
print(f"the crowd sent {typed} typing messages in 3 s (expected about 20 x 3 x 3 = 180); "
      f"up to {max(active_at_once)} indicators were active at once (one per user and room)")
print(f"the server received {health_after['messages_in'] - health_before['messages_in']} messages and wrote "
      f"{health_after['deliveries'] - health_before['deliveries']} to sockets meanwhile")
print(f"database rows: {before} -> {after}")

# %% [markdown]
# Hundreds of messages, not one row. For contrast, one chat is one row more:

# %%
before = row_counts(lab.data_dir)["messages"]
await bob.chat("book-club", "ok, chapter 3")
crowd.chat_rate = 0.2
print("messages rows after one chat:", row_counts(lab.data_dir)["messages"] - before, "more")

# %% [markdown]
# ## 5. Presence
#
# The notes (§5): "connection open = online, connection closed = offline, no extra API
# calls needed". Lesson 00 showed the first correction: a user is online while *any* of
# their sockets is open, and a vanished network is noticed only by the heartbeat (lesson 04
# adds the grace period that stops a page refresh from flapping offline and online). Here
# is the second: the pushes carry only *changes*. A page that opens needs the current
# state first, so the lab answers a `subscribe` to `presence` with the list of users online
# now (the same list as `GET /api/users`), and pushes each change after that.

# %%
ack = await ann.send("subscribe", topic="presence")
online_now = sorted(u["username"] for u in ack["online"])
print(f"the subscribe ack lists {len(online_now)} users online; GET /api/users says "
      f"{sum(u['online'] for u in lab.users())}")

carol = await LabClient.connect(lab, lab.account("carol"))
came = await ann.wait_for(lambda m: m["type"] == "presence" and m["user"]["username"] == "carol")
await carol.close()
went = await ann.wait_for(lambda m: m["type"] == "presence" and m["user"]["username"] == "carol")
print(f"ann was told: carol online {came['online']}, then carol online {went['online']}")

# %% [markdown]
# Presence goes only to the sockets subscribed to it (the crowd is not). That matters: with
# N users all subscribed, every change is N messages, and N users coming and going make N²;
# real apps send presence only for the people on screen (friends, the members of the open
# room), which is what a topic per group would do.
#
# ## 6. Notifications: a like over REST, pushed to every tab of the author
#
# Ann opens the app on her phone too: two sockets, one user. She writes a post over HTTP,
# and Bob likes it over HTTP. Neither Ann's laptop nor her phone asks for anything; the
# lab's REST handler stores the like, then pushes.

# %%
ann_phone = await LabClient.connect(lab, lab.account("ann"), name="ann (phone)")
arrived = {}
for tab in (ann, ann_phone):
    tab.on("notification", lambda m, tab=tab: arrived.setdefault(tab.name, (time.perf_counter(), m)))

status, made = await rest("POST", "/api/posts", ann.account.token, {"text": "sunset from the hill"})
post_id = made["post"]["id"]
liked_at = time.perf_counter()
status, liked = await rest("POST", f"/api/posts/{post_id}/like", bob.account.token)
answered_at = time.perf_counter()
for tab in (ann, ann_phone):
    note = await tab.wait_for("notification")
    print(f"{tab.name:<13} got: {note['text']!r} (kind {note['kind']!r})")
print(f"bob's like answered {status} with likes = {liked['post']['likes']}")

# %% tags=["nbval-ignore-output"]
for name, (t, _) in arrived.items():
    print(f"{name:<13} {(t - liked_at) * 1e3:5.1f} ms after bob sent the like")
print(f"bob's 200      {(answered_at - liked_at) * 1e3:5.1f} ms after (the pushes are written before the answer)")

# %% [markdown]
# Here is the lab's handler: store the like, and only if it is new, push `post_updated` to
# the post's watchers and a notification to the author (not for liking your own post).

# %%
show_source(lab_rest.like)

# %% [markdown]
# The notes' §5 says "notifications: server pushes instantly". Yes, and **a notification
# must also be stored**, unlike a typing indicator: a push reaches only the sockets open at
# that moment. Ann's tablet, switched off, sees the like when it opens the app and asks
# `GET /api/notifications`. Push is the fast path; the database is the truth.

# %%
status, listed = await rest("GET", "/api/notifications", ann.account.token)
[n["text"] for n in listed["notifications"]]

# %% [markdown]
# ## 7. Live counters for every viewer of a post
#
# Everyone who has Ann's post on screen should see its like counter move. The lab does not
# push every counter to everyone: a page **subscribes to the topic of each post it shows**
# (`post:<id>`), and the REST handler pushes `post_updated` to that topic. The 20 users of
# the crowd open Ann's post now, and 10 new users like it, all at once, over HTTP.

# %%
counters = {}
for viewer in crowd.clients:
    viewer.on("post_updated", lambda m, name=viewer.name: counters.__setitem__(name, m["likes"]))
    viewer.send_nowait("subscribe", topic=f"post:{post_id}")
await asyncio.gather(*(c.send("ping") for c in crowd.clients))  # every subscribe is in
pushed_before = sum(c.received["post_updated"] for c in crowd.clients)

likers = await asyncio.gather(*(asyncio.to_thread(lab.account, f"fan{i}") for i in range(10)))
answers = await asyncio.gather(*(rest("POST", f"/api/posts/{post_id}/like", fan.token) for fan in likers))
final = max(body["post"]["likes"] for _, body in answers)
await asyncio.gather(*(c.send("ping") for c in crowd.clients))  # every push has arrived
showing = sum(likes == final for likes in counters.values())
pushed = sum(c.received["post_updated"] for c in crowd.clients) - pushed_before
print(f"{showing} of {crowd.size} viewers show {final} likes; the post has {final} likes over REST")
print(f"post_updated messages pushed: {pushed} (10 likes x {crowd.size} viewers)")

# %% [markdown]
# In the dashboard's flow, each like shows as one `post_updated` to `topic post:…` with 20
# recipients, and one `notification` to Ann (two sockets).
#
# Two hundred pushes for ten likes. The notes' "like count updates" (§5, live feed updates)
# hides this multiplication: the cost of a counter is its rate times its audience. A post
# with a thousand likes a minute and fifty thousand viewers would be 830,000 messages a
# second. Real feeds therefore **coalesce** (send the latest count at most every second or
# so, which a client cannot tell from live) and **show counters only to those who look**
# (the topic), and Ann, who is not subscribed, got her ten notifications instead.
#
# ## 8. The wrong tool: an image upload over the WebSocket
#
# The notes (§6): WebSocket is not good for file uploads, large payloads and cacheable
# data. Let's see why, measured. A 2 MiB photo (random pixels, so it does not compress),
# uploaded by Erin through a tap that limits each direction of each connection to
# 4,000,000 bytes/s, a decent home uplink:
#
# - **over HTTP**: `POST /api/uploads`, multipart, on its own connection;
# - **over the WebSocket**: the same bytes as one binary message on Erin's chat socket
#   (the lab takes a binary message as an image upload, for this comparison only, and answers
#   `uploaded` or an error, without a `ref`: [PROTOCOL.md](../labserver/PROTOCOL.md), sections 4 and 6).
#
# And each time, Erin sends a chat to `book-club` right after the photo started. Bob times
# when it reaches him.

# %%
show_source(upload_over_websocket)

# %%
photo = noise_png(2 * 2**20)
rate = 4_000_000
slow = await FrameTap.for_lab(lab, bytes_per_second=rate).start()
erin = await LabClient.connect(slow.ws_url, lab.account("erin"))
await erin.join("book-club")
print(f"the photo: {len(photo):,} bytes; alone on the link it takes {len(photo) / rate:.2f} s")


async def chat_behind(upload, text: str) -> tuple[float, dict, float]:
    """Start `upload`, send a chat right behind it; (upload seconds, its answer, the chat's delay at bob)."""
    uploading = asyncio.ensure_future(upload())
    await asyncio.sleep(0.05)  # the upload has started
    sent_at = time.perf_counter()
    erin.send_nowait("chat", room="book-club", text=text)
    await bob.wait_for(lambda m: m["type"] == "chat" and m["text"] == text, timeout=30)
    delay = time.perf_counter() - sent_at
    seconds, answer = await uploading
    return seconds, answer, delay


async def both_ways() -> dict:
    return {
        "HTTP": await chat_behind(lambda: upload_over_http(slow.url, erin.account.token, photo), "look! (http)"),
        "WebSocket": await chat_behind(lambda: upload_over_websocket(erin, photo), "look! (websocket)"),
    }


results = await Progress.track(both_ways(), "uploading 2 MiB twice at 4 MB/s", seconds=2)
for way, (_, answer, _) in results.items():
    print(f"over {way:<9}: stored as {answer.get('url')}, {answer.get('size'):,} bytes")

# %% tags=["nbval-ignore-output"]
by_connection = {c.upgraded: c.traffic for c in slow.connections()}
print(f"{'':<14}{'upload':>10}{'bytes up':>12}   a chat sent right behind it reached bob after")
for (way, (seconds, _, delay)), upgraded in zip(results.items(), (False, True)):
    print(f"over {way:<9}{seconds:>8.2f} s{by_connection[upgraded].sent:>12,}   {delay * 1e3:7.0f} ms")
print(f"expected: the chat behind the rest of the photo on the WebSocket, about {len(photo) / rate - 0.05:.2f} s "
      f"({len(photo):,} bytes at {rate:,} bytes/s, minus the 0.05 s already sent); a few ms over HTTP")

# %% [markdown]
# The bytes and the upload time are about the same both ways: a binary frame has less
# header than a multipart request, and the link is the limit. The difference is the chat.
# Over HTTP the photo went on its own TCP connection, and the chat did not wait for it. On
# the WebSocket, the chat's frame could only start after the photo's last byte: half a second
# of **head-of-line blocking** (lesson 03), for every message Erin sent or the server sent
# her meanwhile, pings and acks included. And the server handles one socket's messages one
# at a time, so it read the chat only after it had stored the photo.
#
# Other costs do not show in a table:
#
# - **The limit is per socket, not per upload.** To take this photo, the lab had to accept
#   8 MiB messages on *every* socket (`max_message_bytes`, 64 KiB by default; a bigger
#   message closes the socket with 1009). A WebSocket message is read whole into memory
#   before it is handled: a thousand sockets sending 8 MiB each is 8 GB. HTTP declares the
#   size first (`Content-Length`), so the lab refuses a too-large upload before reading it.
# - **No progress, no resume, no retry semantics**: browsers report upload progress for
#   HTTP, and a failed `POST` can be retried or resumed (in chunks, or a protocol like tus);
#   a dropped socket loses the message halfway, and the client cannot tell how much arrived.
# - **Nothing in between can help**: proxies, CDNs and upload services understand HTTP
#   requests, not messages inside a socket.
#
# ## 9. Cacheable data: `ETag` and `304 Not Modified`
#
# The photo, uploaded over HTTP, has a URL. Every view of it is a `GET` that an HTTP cache
# can answer. The lab sends it with `Cache-Control: public, max-age=31536000, immutable` (the
# name is the content's hash, so the bytes behind a name never change) and an `ETag`, a
# validator that changes whenever the content does (RFC 9110 section 8.8.3). A client that
# has the image asks again with `If-None-Match: <etag>`, and the answer is
# `304 Not Modified`, with no body (RFC 9110 section 15.4.5).

# %%
image_url = results["HTTP"][1]["url"]


async def view(headers: dict | None = None) -> tuple:
    """GET the image through the tap: (status, body bytes, bytes on the wire, response headers)."""
    before = tap.totals()
    async with http.get(tap.url + image_url, headers=headers or {}) as resp:
        body = await resp.read()
        return resp.status, len(body), (tap.totals() - before).received, resp.headers.copy()


first = await view()
etag = first[3]["ETag"]
again = await view({"If-None-Match": etag})
for status, size, _, headers in (first, again):
    print(f"{status}: body {size:,} bytes; Cache-Control: {headers['Cache-Control']}; ETag: {headers['ETag']}")
print(f"the image's name: {image_url}")

# %% tags=["nbval-ignore-output"]
for status, _, wire, _ in (first, again):
    print(f"{status}: {wire:,} bytes on the wire, headers included")

# %% [markdown]
# The second view cost a couple of hundred bytes instead of two megabytes, and with
# `immutable` a browser does not even ask again for a year: it takes the image from its
# cache, and a CDN in front of the lab would answer everyone else's views without
# reaching the server at all. (The lab's `ETag` for an upload is the content hash, which is
# also its name: the same on every server.)
#
# Data that *does* change can be cached too. `GET /api/posts/{id}` sends `ETag` (a hash of the
# JSON) with `Cache-Control: private, no-cache`: keep it, but ask before using it. Ann's page
# loads her post, asks again with the `ETag` (nothing changed: `304`), then Carol likes the
# post, and the same question gets the new counts with a new `ETag`.

# %%
async def get_post(etag: str | None = None) -> tuple[int, str, dict | None]:
    headers = {"Authorization": f"Bearer {ann.account.token}"}
    if etag:
        headers["If-None-Match"] = etag
    async with http.get(f"{tap.url}/api/posts/{post_id}", headers=headers) as resp:
        body = await resp.read()
        return resp.status, resp.headers["ETag"], json.loads(body) if body else None


status, post_etag, body = await get_post()
print(f"first load:            {status}, likes {body['post']['likes']}")
status, _, body = await get_post(post_etag)
print(f"again, If-None-Match:  {status}, body {body}")
await rest("POST", f"/api/posts/{post_id}/like", lab.account("carol").token)
status, new_etag, body = await get_post(post_etag)
print(f"after carol's like:    {status}, likes {body['post']['likes']}, a new ETag: {new_etag != post_etag}")

# %% [markdown]
# This is how the two halves meet after a disconnect. Pushes are ephemeral: a page that was
# offline missed the `post_updated` messages. When it comes back, it revalidates what it
# shows over HTTP, and every post that did not change costs a `304` of a few hundred bytes.
#
# A WebSocket can use none of this. A message has no URL to be cached under, no
# `ETag`, no `If-None-Match`, no `Cache-Control`; nothing between the two ends may keep
# or answer it. An app that fetched images (or profiles, or any data that changes rarely)
# over its socket would send the full bytes at every view, and queue them ahead of the
# chats. Caching is the strongest reason for the notes' "cacheable data: HTTP".
#
# So the line of the hybrid, measured: requests that need an answer, a size check, a cache,
# a retry or a URL go over HTTP; what other people must hear about *as it happens* goes over
# the socket, and an HTTP action that others must hear about becomes a push.

# %%
await erin.close()
await slow.close()
await tap.close()
await http.close()

# %% [markdown]
# ## Check yourself
#
# Replace `...` with your answer and run the cell. `ex.q1.hint()` gives a hint,
# `ex.q1.solution()` the answer with an explanation. Questions 2 to 4 run your code against
# the live lab.
#
# **Question 1.** The typing rule, by hand.

# %%
ex.q1


# %%
def typing_broadcasts(keystrokes, min_interval, ttl):
    ...


ex.q1.check(typing_broadcasts)

# %% [markdown]
# **Question 2.** A typing indicator that reaches only the room. Start the cell with
# `import json` and `import websockets`.

# %%
ex.q2


# %%
async def announce_typing(ws_url, token, room):
    ...


await ex.q2.check_async(announce_typing)

# %% [markdown]
# **Question 3.** Like a post over REST, and catch the notification on the author's socket.

# %%
ex.q3


# %%
async def like_and_catch(http_url, token, post_id, author_ws):
    ...


await ex.q3.check_async(like_and_catch)

# %% [markdown]
# **Question 4.** The handler that turns a REST action into pushes. The check makes seven
# real REST actions and compares your decisions with what the lab pushed.

# %%
ex.q4


# %%
def pushes_for(event):
    ...


await ex.q4.check_async(pushes_for)

# %%
# ex.q4.hint()
# ex.q4.solution()

# %% [markdown]
# **Question 5.** Which half of the hybrid?

# %%
answer = {
    "sign up": ...,
    "upload a profile picture": ...,
    "load a post's image": ...,
    "like a post": ...,
    "the like counter on every viewer's screen": ...,
    "show that Bob is typing": ...,
    "a chat message": ...,
    "Bob came online": ...,
    "tell Ann that Bob liked her post": ...,
}
ex.q5.check(answer)

# %% [markdown]
# **Question 6.** A chat behind a photo.

# %%
ex.q6

# %%
answer = ...
ex.q6.check(answer)

# %% [markdown]
# ## Summary
#
# - The **hybrid design**: sign-up, log-in, profiles, uploads, cacheable downloads and the
#   actions themselves (post, like, comment) over HTTP; chat, typing, presence,
#   notifications and live counters over the WebSocket; one server and one port in the lab.
# - **A REST action becomes pushes**: the handler stores, then publishes to *targets*
#   (`user:<id>`: every socket of a user; `topic:post:<id>`: every socket watching a post),
#   then answers the request. A repeated like changes nothing and pushes nothing.
# - **Typing indicators** are throttled (at most one broadcast a second per user and room),
#   expire by themselves (`typing_ttl`), and are never stored: twenty users typing hard
#   added no row to the database.
# - **Presence** pushes changes; the current state comes with the subscription.
# - **Notifications** are pushed to every tab *and stored*: a push reaches only open sockets.
# - **Live counters** go to the sockets subscribed to the post: rate times audience.
# - **Uploads and large payloads** on the chat socket block everything behind them
#   (half a second here), and force a per-socket message limit that every socket then gets.
#   **Cacheable data** needs URLs, `ETag`, `304` and `Cache-Control`, which only HTTP has.
#
# **What the notes say, corrected**
#
# - §5 *Typing indicators: "frequent, tiny, should not hit the database"*: frequent on the
#   client, but the server must **throttle** them (or a room's traffic grows with keystrokes
#   times members) and **expire** them (a vanished client never says it stopped).
# - §5 *Online/offline: "no extra API calls needed"*: a fresh page needs the current list
#   first (the `subscribe` ack, or `GET /api/users`); pushes bring only changes. And
#   "connection closed" is per user (the last tab), noticed at once only for a clean close.
# - §5 *Notifications: "server pushes instantly"*: and stores them, for the tabs that are closed.
# - §5 *Live feed updates*: to the viewers of the post only, and coalesced under load: every
#   counter push is multiplied by its audience.
# - §6 *"WebSocket is not good for CRUD, uploads, large payloads, cacheable data"*: right, and
#   now measured: a chat waited half a second behind a 2 MiB photo on the same socket, the
#   message limit is per socket, and a revalidated image cost a few hundred bytes over HTTP
#   where a socket would resend it whole. A like is *both*: the action over HTTP, its news
#   over the socket.
# - §10 *One server, REST and WebSocket on the same port*: true of the lab and of most small
#   apps, because the upgrade is just an HTTP route; but not a requirement, and big systems
#   often run the sockets on servers of their own.
#
# Next: [06 · Authentication, userId -> sockets, routing, persistence](06_auth_routing_persistence.ipynb):
# who is behind a socket, how a message finds all the sockets of a user, and why an
# acknowledged message survives a crash.

# %%
await dashboard.stop()  # first, so that it keeps its last picture
for client in (ann, ann_phone, bob):
    await client.close()
await crowd.stop()

# %% [markdown]
# ← Previous: [04 · Connection lifecycle](04_connection_lifecycle.ipynb) · [Course index](index.ipynb) · Next: [06 · Auth, routing, persistence](06_auth_routing_persistence.ipynb) →
