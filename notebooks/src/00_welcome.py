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
# # 00 · Welcome: a live lab for WebSockets
#
# This course teaches WebSockets by running them. Every lesson drives a real
# server, the **lab server**, that ships with the course: a small social-media
# backend with chat rooms, typing indicators, presence, notifications and live
# counters. You will watch connections and messages move through it, poke it
# with hand-made requests and frames, break it on purpose, and measure it.
#
# **In this lesson you will**
#
# 1. learn what a WebSocket is, and see one carry messages both ways at once,
# 2. start the lab server and read its live dashboard,
# 3. grow, shrink and pause a crowd of simulated users, and drop a connection to watch it come back,
# 4. see that a *connection* is not a *user*: one person, two browser tabs, two sockets (yours, too),
# 5. see how the server learns that someone left: at once after a goodbye, only by its heartbeat after a pulled cable,
# 6. write your own WebSocket client and check it against the lab.
#
# **Notes sections covered** (the course's notes, see [lessons.md](../lessons.md)):
# §1 *What is a WebSocket?*, §3 *What WebSocket changes*, §5 *Why WebSocket is perfect for social media*
# (online/offline status), §7 *Important WebSocket properties*, §8 *Common misconceptions*,
# §12 *Socket connection lifecycle*.
#
# Every lesson has the same shape: a short explanation, then a cell that shows it
# live, then exercises that check themselves (`ex.q1.check(answer)`, `ex.q1.hint()`,
# `ex.q1.solution()`). Run the cells from top to bottom.

# %% [markdown]
# ## 1. What a WebSocket is
#
# A WebSocket (RFC 6455) is **one TCP connection that stays open** between a
# client and a server, on which **either side may send a message at any time**:
#
# - **persistent**: it is opened once, by an HTTP request that asks to *upgrade*
#   (lesson 02), and then stays open for minutes or hours;
# - **full-duplex**: both directions flow at once; the server does not wait for a
#   question before it speaks, and the client does not wait for an answer before it sends again;
# - **stateful**: the connection has an identity (the lab calls it a *socket id*), and the
#   server remembers what belongs to it: who it is, which rooms it joined;
# - **event-driven**: instead of *requests for resources* there are *messages about
#   events*: "Bob said hi", "Ann is typing", "Cat went offline".
#
# The notes' picture: **HTTP is letters, a WebSocket is a phone call.** With letters
# you write, wait for the answer, and write again; every letter carries the full
# address (HTTP headers), and the other side can only *answer* yours. On a phone
# call you dial once, then both of you talk whenever you like, and each of you knows
# at once when the other one hangs up... or do you? Section 7 of this lesson finds out.

# %% [markdown]
# ## 2. Start the lab
#
# `start_lab()` starts the lab server in the background, on a free port, and
# waits until it answers. Running the cell again reuses the same server. When
# the notebook's kernel stops, the server stops with it.
#
# We start it with `ping_interval=2`: the server checks a silent connection after
# 2 seconds instead of its default 20, so that section 6 can show you its
# heartbeat at work in 3 seconds rather than 30.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import time

from labserver.course import Crowd, Dashboard, LabClient, Progress, start_lab
from labserver.course.exercises import lesson00 as ex
from labserver.course.source import show_source

lab = start_lab(ping_interval=2)
lab

# %% [markdown]
# One port serves both halves of the server: plain HTTP for things like sign-up
# and history (`/api/...`), and WebSocket (`/ws`) for everything live. The lab
# also serves a small chat client for your browser, at this link (you will open
# it in section 5):

# %%
lab.browser_url

# %% [markdown]
# ## 3. The dashboard and a crowd
#
# The server publishes a read-only stream of what it does (`/observe`). The
# dashboard below draws it: open connections, who is online with which sockets,
# rooms, and every message the server routes. It updates by itself: keep it in
# view while you run the next cells.
#
# `Crowd` simulates users: each one signs up over HTTP, opens a WebSocket, joins
# the `general` room, and now and then chats or starts typing. The dashboard gets
# the crowd too, for its buttons.
#
# The `await` in this cell is allowed at the top level of a notebook cell: Jupyter
# runs every cell inside one asyncio event loop, the same loop on which the
# dashboard, the crowd and your clients keep running between cells.

# %%
crowd = Crowd(lab, rooms=["general"], chat_rate=0.5, typing_rate=0.2, seed=0)
dashboard = Dashboard(lab, crowd)
await dashboard.ready()
dashboard

# %% [markdown]
# Zero connections so far. Now 20 users arrive: watch the connection count, the
# user rows and the message flow.

# %%
await dashboard.grow(20)
crowd

# %% [markdown]
# The buttons under the dashboard do the same: **add 10 users**, **remove 10
# users**, **pause crowd**. Try them whenever you like; the cells below use them
# from code as well.
#
# ## 4. Both ways at once
#
# Now you join the room as a user of your own, `you`, and send 20 messages, one
# every 0.1 s. Meanwhile the crowd keeps chatting, and the server pushes each of
# their messages to you **while you are still sending**, on the same connection.
# The cell records every event in order: `→` you sent, `←` the server pushed one.

# %%
you = await LabClient.connect(lab, lab.account("you"))
await you.join("general")

timeline = []  # "→" sent, "←" pushed to us
you.on("chat", lambda m: timeline.append("←") if m["from"]["username"] != you.user["username"] else None)

started = time.monotonic()
for i in range(20):
    you.send_nowait("chat", room="general", text=f"message {i + 1} of 20 from you")
    timeline.append("→")
    await asyncio.sleep(0.1)
elapsed = time.monotonic() - started

# %% tags=["nbval-ignore-output"]
during = "".join(timeline[: len(timeline) - timeline[::-1].index("→")])  # up to our last send
expected = crowd.size * crowd.chat_rate * elapsed
print(during)
print(f"sent {during.count('→')} messages in {elapsed:.1f} s, and received {during.count('←')} "
      f"pushed ones in between (expected about {expected:.0f}: {crowd.size} users x {crowd.chat_rate} chats/s x {elapsed:.1f} s)")

# %% [markdown]
# The arrows interleave: messages went up and came down on one TCP connection at
# the same time, and the client never asked for any of the `←` ones. With plain
# request/response HTTP (the letters) each of them would have needed a request
# from you first; lesson 01 measures what that costs.
#
# ## 5. Live controls: pause, shrink, drop
#
# **Pause.** A paused crowd sends nothing, so nothing is pushed to you: count the
# chats that reach you in one second, paused and then resumed.

# %%
async def pushed_in(seconds: float) -> int:
    """How many chats from others reach `you` in the next `seconds`."""
    before = timeline.count("←")
    await asyncio.sleep(seconds)
    return timeline.count("←") - before


crowd.pause()
await asyncio.sleep(0.2)  # what was already on its way arrives
paused = await pushed_in(1.0)
crowd.resume()
resumed = await pushed_in(1.0)

# %% tags=["nbval-ignore-output"]
print(f"paused:  {paused} chats pushed in 1 s (expected 0)")
print(f"resumed: {resumed} chats pushed in 1 s (expected about {crowd.size * crowd.chat_rate:.0f})")

# %% [markdown]
# **Shrink.** Ten users leave: their sockets close, and the dashboard's
# connection count and user rows follow.

# %%
await dashboard.shrink(10)
crowd

# %% tags=["nbval-ignore-output"]
print(f"open connections: {lab.health()['connections']} (expected 11: 10 crowd users + you)")

# %% [markdown]
# **Drop one connection.** The dashboard's *drop it* control asks the server to
# abort a connection, as a network failure would. Your client notices the
# connection is gone, **reconnects** by itself (with a short random back-off) and
# gets a **new socket id**: the socket id names a connection, not a person. Pick
# a socket in the dashboard and click *drop it* to try it on anyone; this cell
# drops yours.

# %%
old_socket = you.socket_id
started = time.monotonic()
if lab.admin_token:
    await dashboard.drop(old_socket)
else:  # in a class only the instructor may drop: your end aborts it, as a dead network would
    you.ws.transport.abort()
async with asyncio.timeout(10):
    while you.socket_id == old_socket or not you.connected:  # until the client is back, on a new socket
        await asyncio.sleep(0.02)
back_after = time.monotonic() - started
print(f"{you.user['username']}: {you.reconnects} reconnection, a new socket id: {you.socket_id != old_socket}")

# %% tags=["nbval-ignore-output"]
print(f"dropped {old_socket}, back as {you.socket_id} after {back_after * 1000:.0f} ms")

# %% [markdown]
# ## 6. Two tabs, one user
#
# A WebSocket connection belongs to a browser tab, not to a person. Let's sign
# up Alice and connect her twice, as if she had the chat open in two tabs.

# %%
alice = lab.account("alice")
tab1 = await LabClient.connect(lab, alice)
tab2 = await LabClient.connect(lab, alice)

print("tab 1 socket id:", tab1.socket_id)
print("tab 2 socket id:", tab2.socket_id)
print("same user?      ", tab1.user == tab2.user)
lab.user("alice")

# %% [markdown]
# Two socket ids, one user, `sockets: 2`. The server keeps a map from each user
# id to the set of that user's open sockets: a message *to Alice* goes to both
# tabs. In the dashboard, Alice's row shows two socket chips.
#
# **Your turn, in your browser.** Open the lab's browser client (the link
# `lab.browser_url` printed in section 2) in **two tabs**. Sign up in the first,
# log in with the same name in the second, and find your row in the dashboard:
# one user, two socket chips. Then check it, with both tabs open (put your username
# in place of `...`):

# %%
answer = ...
await ex.q4.check_async(answer)

# %% [markdown]
# ## 7. Who is online? Hanging up, and a pulled cable
#
# Alice is **online while any of her sockets is open**. The other users see her
# presence change through the `presence` topic: Bob subscribes to it.

# %%
bob = await LabClient.connect(lab, lab.account("bob"))
await bob.send("subscribe", topic="presence")

async def offline_after(username: str, since: float, timeout: float = 35.0) -> float:
    """Seconds from `since` until Bob is told that `username` went offline."""
    await bob.wait_for(lambda m: m["type"] == "presence" and m["user"]["username"] == username
                       and not m["online"], timeout=timeout)
    return time.monotonic() - since


await tab1.close()
lab.user("alice")

# %% [markdown]
# Still online, through tab 2. Close the other one, and time how long Bob waits
# to hear that Alice went offline:

# %%
closed_at = time.monotonic()
await tab2.close()
clean = await offline_after(alice.username, since=closed_at)
lab.user("alice")

# %% tags=["nbval-ignore-output"]
print(f"alice offline {clean * 1000:.0f} ms after her last tab closed (expected: a few ms)")

# %% [markdown]
# Instant, and no polling: closing a tab (here `tab2.close()`) sends a **Close
# frame** (RFC 6455 section 5.5.1, the closing handshake of section 7), and the
# server acts on it at once. That is the notes' "connection closed = offline, no extra API calls".
#
# But it holds **only for a clean close**. Laptop lid shut, Wi-Fi gone, cable
# pulled: then nothing arrives at all, no Close frame, no TCP reset, and the
# server's socket just looks quiet. A phone call where the line goes dead without
# a click. The server finds out only with its **heartbeat**: after `ping_interval`
# seconds of silence it sends a ping frame (RFC 6455 section 5.5.2), and if no pong
# (section 5.5.3) or anything else comes back within half the interval, it drops
# the connection ([PROTOCOL.md](../labserver/PROTOCOL.md) section 8). Until then
# the user looks online.
#
# `LabClient.go_silent()` models the pulled cable: the client stops reading and
# writing, without closing anything. (The websockets library answers pings only
# while it reads.)

# %%
show_source(LabClient.go_silent)

# %% [markdown]
# Carol joins, sends one message, and her network vanishes. With
# `ping_interval=2`, expect her offline about 2 + 1 = 3 s after her last message.

# %%
carol = await LabClient.connect(lab, lab.account("carol"))
await carol.join("general")
await carol.chat("general", "brb")
carol.go_silent()
silent_at = time.monotonic()
vanished = await Progress.track(offline_after(carol.user["username"], since=silent_at), "waiting for the heartbeat to notice carol", seconds=3)
await carol.close()

# %% tags=["nbval-ignore-output"]
interval = carol.welcome["limits"]["ping_interval"]  # the server tells every client in its welcome
print(f"carol offline {vanished:.1f} s after her network vanished "
      f"(expected at most {interval:g} + {interval / 2:g} = {interval * 1.5:g} s after her last message)")

# %% [markdown]
# Three seconds of Carol "online" although nobody was there, and with the default
# 20 s interval it would have been 30. The notes' §12 lists "network drops" among
# the disconnects a server handles: it does, but only as fast as its heartbeat.
#
# ## 8. Check yourself
#
# Replace `...` with your answer and run the cell. `ex.q1.hint()` gives a hint,
# `ex.q1.solution()` the answer with an explanation.
#
# **Question 1.** Alice has the chat open in two browser tabs. How many WebSocket
# connections does the server hold for her, and is she online after she closes
# one tab? Answer with a tuple `(number_of_sockets, still_online)`.

# %%
answer = ...
ex.q1.check(answer)

# %%
# ex.q1.hint()
# ex.q1.solution()

# %% [markdown]
# **Question 2.** What identifies a *connection*, and changes when it reconnects?
# Answer with a letter.

# %%
ex.q2

# %%
answer = ...
ex.q2.check(answer)

# %% [markdown]
# **Question 3.** Write `is_online(user_sockets, user_id)`: given the server's map
# from user id to a set of socket ids, is that user online?

# %%
def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:
    ...


ex.q3.check(is_online)

# %% [markdown]
# **Question 5: your own WebSocket client.** Until now `LabClient` did the talking.
# Write one yourself with the `websockets` library (installed): connect with your
# token, read the `welcome`, join the room, send a chat message with a `ref`,
# wait for its ack, and close. The messages are in
# [PROTOCOL.md](../labserver/PROTOCOL.md), sections 4 to 6:
#
# ```
# ← {"type": "welcome", "socket_id": "s_...", "user": {...}, "limits": {...}}
# → {"type": "join", "room": "lobby", "ref": "j1"}
# ← {"type": "ack", "ref": "j1", "room": "lobby", "last_seq": 0, "members": [...]}
# → {"type": "chat", "room": "lobby", "text": "hello", "ref": "c1"}
# ← {"type": "chat", "room": "lobby", "seq": 1, "from": {...}, "text": "hello", "ts": ...}
# ← {"type": "ack", "ref": "c1", "room": "lobby", "seq": 1}
# ```
#
# The check calls your function with the lab's WebSocket URL, a token, a fresh room
# and a text, through a tap that sees every frame, then looks for your message in
# the room's history. Start your cell with `import json` and `import websockets`.

# %%
ex.q5

# %%
async def say_hello(ws_url: str, token: str, room: str, text: str) -> None:
    ...  # import json and websockets; connect, read the welcome, join, chat, wait for the ack, close


await ex.q5.check_async(say_hello)

# %% [markdown]
# **Question 6.** The lab runs with its default `--ping-interval 20`. A student's
# laptop sends a chat message, then its Wi-Fi dies. At most how many seconds after
# that last message does the server mark the student offline?

# %%
answer = ...
ex.q6.check(answer)

# %% [markdown]
# ## Summary
#
# - A **WebSocket** is one persistent TCP connection on which both sides send
#   whenever they like (full-duplex): the server pushed the crowd's chats to you
#   while you were sending.
# - The lab server speaks HTTP and WebSocket on **one port**.
# - A **socket** is one connection (one tab) with its own socket id, new on every
#   reconnect; a **user** may have several. The server keeps a map from user id to
#   that user's sockets; a user is **online while any of them is open**.
# - **A clean close is noticed at once** (the Close frame). **A vanished network is
#   noticed only by the heartbeat**: after `ping_interval` seconds of silence plus
#   half of that for a pong (3 s here, 30 s by default). "Connection closed =
#   offline, no polling needed" is true for the first case only.
#
# **Common misconceptions** (from the notes this course grew from)
#
# - *"Each user gets their own server."* No: one server process held every socket
#   in this lesson, and later lessons push it to thousands.
# - *"WebSocket replaces REST."* No: sign-up and history went over plain HTTP
#   here; only the live part uses the socket.
# - *"The server always knows at once when a client is gone."* Only if the client
#   says goodbye; otherwise the heartbeat decides, seconds later.
#
# Next: [01 · Polling vs push](01_polling_vs_push.ipynb), where we measure why the
# server pushing beats the client asking.

# %%
await dashboard.stop()  # first, so that it keeps its last picture of the crowd
for client in (you, bob):
    await client.close()
await crowd.stop()

# %% [markdown]
# [Course index](index.ipynb) · Next: [01 · Polling vs push](01_polling_vs_push.ipynb) →
