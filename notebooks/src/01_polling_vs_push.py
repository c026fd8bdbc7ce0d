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
# # 01 · Polling vs push
#
# A chat message is posted. How do the other people in the room find out? Over
# plain HTTP the server cannot speak first: clients have to *ask*. Over a
# WebSocket the server simply *sends*. In this lesson you measure the
# difference on the live lab server, with real requests and every byte counted.
#
# **In this lesson you will**
#
# 1. take one polling request apart and count its bytes, headers included,
# 2. reproduce the classic claim "1,000 users polling every second = 1,000
#    useless requests per second" with a real count,
# 3. serve the same live room four ways (short polling, long polling,
#    WebSocket push, Server-Sent Events) to 10, 100 and 1,000 simulated users,
#    and compare requests per second, bytes per delivered message, useless
#    requests and latency,
# 4. see how the polling interval trades requests for latency (latency ≈ T/2),
# 5. decide which features of a social app need push, and which stay on HTTP.
#
# The measurements run live, so their exact numbers change from run to run;
# the conclusions do not.

# %% [markdown]
# ## 1. Start the lab
#
# The same server as in lesson 00. It offers all four ways to follow a room:
#
# | | request | what the server does |
# |---|---|---|
# | **short polling** | `GET /api/rooms/{room}/messages?after=SEQ`, every T seconds | answers at once, with whatever is new (often nothing) |
# | **long polling** | `GET /api/rooms/{room}/poll?after=SEQ&timeout=S`, again as soon as it answers | holds the request until a message exists (or S seconds pass) |
# | **WebSocket push** | `GET /ws` once (the Upgrade), then `join` the room | sends each message down the open socket as it is stored |
# | **Server-Sent Events** | `GET /api/rooms/{room}/events?after=SEQ` once | never ends the response: writes each message into it as an event (`id:` and `data:` lines) |

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

from labserver.course import polling, polling_plots, start_lab
from labserver.course.exercises import lesson01 as ex

lab = start_lab()
lab

# %% [markdown]
# ## 2. What one poll costs
#
# A poll that finds nothing new is still a full HTTP request and response. We
# make one on a fresh connection and count the bytes *at the socket*: every
# receiver in this lesson connects through a counting socket that adds up what
# the kernel accepts and returns. That is everything above TCP: request line,
# headers, body. (TCP/IP headers, roughly 52-66 bytes per packet more, are below
# what we count.)

# %% tags=["nbval-ignore-output"]
anatomy = await polling.anatomy_of_a_poll(lab)
print(anatomy.request.decode())
print(anatomy.response_head.decode() + anatomy.body.decode())
print()
print(anatomy.summary())

# %% [markdown]
# Most of it is headers: the `Authorization` token alone rides along on every
# single poll. The socket counted exactly the bytes written above, no more, no less:

# %%
print("socket count == request + response as written out:", anatomy.matches)
print("headers outweigh the body:", anatomy.header_bytes > len(anatomy.body))

# %% [markdown]
# ## 3. 1,000 users polling every second
#
# The notes this course grew from say: *"1,000 users polling every second =
# 1,000 useless requests per second"*. Let's check. 1,000 simulated users, all
# in this notebook's event loop, poll a room every second (spread evenly over
# the second, like real clients that did not start together). The room is quiet:
# one message every 5 seconds. We measure for 5 seconds.

# %%
quiet = await polling.quiet_room(lab, receivers=1000, interval=1.0, message_rate=0.2, window=5.0)

# %% tags=["nbval-ignore-output"]
print(quiet.summary())

# %% [markdown]
# Theory: N/T = 1,000 requests per second, whatever happens in the room. A
# message every 5 s against a poll every second means only 1 poll in 5 finds
# something: 1 − r·T = 80 % come back empty. The measurement agrees:

# %%
print(f"{quiet.receivers:,} users polling every {quiet.group.interval:g} s, a message every {1 / quiet.message_rate:g} s")
print(f"requests/s within 20% of N/T = {quiet.expected_requests_per_s:,.0f}:          ", quiet.near_theory(0.2))
print("useless share within 10 points of 1 - r*T = 80%:", abs(quiet.useless_fraction - 0.8) <= 0.1)
print("every user got the message exactly once:        ", quiet.exactly_once)

# %% [markdown]
# So the claim holds, and it is the *limit*: the quieter the room, the closer
# the useless requests get to all 1,000 a second. Each one costs the server a
# token check, a database read and about 600 bytes of traffic, to say "nothing
# new". And the users still wait half a second on average for each message.

# %% [markdown]
# ## 4. The same room, four ways
#
# Now the comparison. A producer posts a message every 2 seconds (over HTTP);
# N receivers follow the room by short polling (T = 1 s), long polling,
# WebSocket push or Server-Sent Events. For 10 and 100 receivers the four groups follow the *same*
# room at once; for 1,000 each approach gets a run of its own so that they do
# not slow each other down (the server and this notebook share the machine).
# Each run measures a 4 s window. This cell takes about 35 seconds.

# %%
results = await polling.compare(lab, sizes=(10, 100, 1000), interval=1.0, message_rate=0.5, window=4.0)

# %% tags=["nbval-ignore-output"]
print(polling.table(results))

# %% [markdown]
# Read the table row by row before the plots: requests per second, the share of
# them that were useless, bytes on the wire per message delivered (both
# directions, headers and WebSocket frames included), the median and 95th
# percentile delivery latency (server timestamp to the moment the receiver
# parsed the message), and the TCP connections the receivers opened. The facts
# that hold on every run (the tolerances leave room for a busy machine):

# %%
short, long_, push, sse = (polling.select(results, a) for a in ("short", "long", "websocket", "sse"))
print("short polling: requests/s within 20% of N/T, every N:         ", all(r.near_theory(0.2) for r in short))
print("long polling: requests/s within 20% of N x messages/s, every N:", all(r.near_theory(0.2) for r in long_))
print("WebSocket: not one request once connected, every N:            ", all(r.requests == 0 for r in push))
print("SSE: not one request once connected, every N:                  ", all(r.requests == 0 for r in sse))
print("every receiver got every message exactly once, all 12 groups:  ",
      all(r.exactly_once for r in results))
print("bytes per message: WebSocket < long polling < short polling:   ",
      all(p.bytes_per_message < lp.bytes_per_message < s.bytes_per_message for s, lp, p in zip(short, long_, push)))
print("bytes per message: SSE under half of long polling, every N:    ",
      all(2 * e.bytes_per_message < lp.bytes_per_message for lp, e in zip(long_, sse)))
print("median latency: WebSocket at least 5x lower than short polling:",
      all(5 * p.latency_median < s.latency_median for s, p in zip(short, push)))
print("median latency: SSE at least 2x lower than short polling:      ",
      all(2 * e.latency_median < s.latency_median for s, e in zip(short, sse)))

# %% [markdown]
# The four panels below are the lesson's key figure (`python3 course.py figures` copies
# it to `images/01_polling_vs_push.png`). Note the log scales: each step is ten times more.

# %%
fig = polling_plots.plot_comparison(results, title="One room, four ways: short polling (T = 1 s), long polling, WebSocket push, Server-Sent Events")

# %% [markdown]
# **Requests.** Short polling costs N/T requests per second, new messages or
# not: 1,000 a second for 1,000 users. Long polling costs one request per user
# *per message* (N × 0.5 per second here). WebSocket push and Server-Sent Events
# cost none: after the one request per connection (the Upgrade, or the
# `GET .../events`), messages just flow.
#
# **Bytes.** A pushed message is one WebSocket frame: 4 bytes of frame header
# and the JSON, about 170 bytes in all. An SSE event is the same JSON in
# `id:`/`data:` lines and a little chunked-encoding framing, about 200 bytes.
# A polled message drags a whole request
# (with its token) and a response head along, about 600 bytes of headers, and
# short polling adds the useless round trips in between.
#
# **Latency.** Push delivers in milliseconds. Short polling adds the wait for
# the next poll, half the interval on average. Long polling is nearly as quick
# as push for a few users, but look at 1,000: every message wakes 1,000 held
# requests at once, the server answers them one by one (each re-reads the room),
# and then 1,000 new requests arrive together. SSE sits between the two at
# 1,000: no new requests, but the server reads the room once per open stream
# for each message before it writes the event.

# %% [markdown]
# ## 5. Why long polling is not push
#
# Long polling removes the *useless* requests, but not the requests: each
# delivery is still a full HTTP round trip, and right after it the client must
# ask again, with all its headers. And while it waits, every user holds an open
# connection with a request parked on the server. So it pays for both: a
# connection per user, like a WebSocket, *and* a request per message, like polling.

# %%
for r in long_:
    per_message = r.requests / (r.window * r.message_rate)  # requests per message posted in the window
    print(f"long polling, N = {r.receivers:>5,}: connections held = N: {r.connections == r.receivers}; "
          f"requests per message within 20% of N: {abs(per_message - r.receivers) <= 0.2 * r.receivers}")

# %% [markdown]
# The WebSocket keeps the connection and drops the requests: the handshake is
# paid once (about 1.3 kB per connection here, Upgrade, welcome and join
# included), and then each message is a single small frame, sent the moment
# the server stores it. That is why push wins on all four panels at once.
#
# **Server-Sent Events** are push over plain HTTP, one way: one `GET` whose
# response never ends, the server writing each message into it as a text event
# (`id: <seq>`, `data: <json>`, a blank line). Being plain HTTP, they go through
# proxies and need no new protocol, and the browser's `EventSource` reconnects by
# itself after a drop, sending the last `id` it saw as `Last-Event-ID` so the
# server resumes where it left off. What they cannot do is talk back: every
# client-to-server message (sending a chat line, "typing...") is a separate HTTP
# request with all its headers. Fine for feeds, notifications and live counters;
# not for chat typing indicators, where the client speaks as often as it listens.

# %% [markdown]
# ## 6. The polling interval: requests against latency
#
# Short polling has one knob, the interval T. A message lands at a random moment
# between two polls, so it waits between 0 and T: **T/2 on average**. Here are
# 10 receivers per interval, all on the same room, with WebSocket push as the
# floor (4 s window).

# %%
sweep = await polling.interval_sweep(lab, intervals=(0.25, 0.5, 1.0, 2.0), receivers=10, message_rate=1.0, window=4.0)
fig = polling_plots.plot_latency_vs_interval(sweep)

# %% tags=["nbval-ignore-output"]
print(polling.table(sweep))

# %%
for r in sweep:
    if r.approach == "short":
        half = polling.expected_latency(r.group.interval)
        close = abs(r.latency_mean - half) <= 0.3 * half + 0.02  # 30%, plus 20 ms for the network and the server
        print(f"T = {r.group.interval:<4g} s: mean latency ≈ T/2 = {half:g} s: {close}")

# %% [markdown]
# To halve the latency you halve T, which doubles the requests. Push gets the
# low latency without the requests.

# %% [markdown]
# ## 7. Which feature needs which?
#
# Push is not for everything. The rule of thumb: **what others must see the moment
# it happens is pushed; what a user asks for, or does and wants an answer to,
# is a request.** The lab server is built this way (the *hybrid* approach):
#
# | feature | how | why |
# |---|---|---|
# | chat messages | WebSocket | others must see them at once |
# | typing indicator | WebSocket | tiny, frequent, useless a second late, never stored |
# | presence (who is online) | WebSocket | the server sees a socket close; it pushes the change |
# | notifications | WebSocket | pushed when they happen, not found on the next poll |
# | live counters (likes, comments) | WebSocket | every viewer's count updates together |
# | sign-up, login | HTTP | one request, one answer (the token) |
# | uploads | HTTP | large bodies, content types, status codes, cacheable URLs |
# | history, feeds, profiles | HTTP | asked for once, paginated, cacheable |
# | a like, a comment, a new post | HTTP, then push | the action needs an answer; its effects on others are pushed |
#
# A like goes `POST /api/posts/{id}/like` over HTTP; the server then pushes
# `post_updated` to everyone watching the post and a `notification` to its
# author, over their WebSockets. You will build that in lesson 05.

# %% [markdown]
# ## 8. Check yourself
#
# Replace the `...` and run the cell. `ex.q1.hint()` gives a hint,
# `ex.q1.solution()` the answer with an explanation.
#
# **Question 1.** Write `requests_per_minute(users, interval_s)`: how many
# requests reach the server in a minute when `users` clients poll every
# `interval_s` seconds?

# %%
def requests_per_minute(users: int, interval_s: float) -> float:
    ...


ex.q1.check(requests_per_minute)

# %%
# ex.q1.hint()
# ex.q1.solution()

# %% [markdown]
# **Question 2.** Clients poll every T = 4 seconds. On average, how many seconds
# does a new message wait before a poll picks it up (ignoring the network)?

# %%
answer = ...
ex.q2.check(answer)

# %% [markdown]
# **Question 3.** For each feature, `'websocket'` (the server pushes it) or
# `'http'` (a plain request/response)?

# %%
answer = {
    "new chat messages": ...,
    "typing indicator": ...,
    "who is online": ...,
    "like notification": ...,
    "live like counter": ...,
    "sign up / log in": ...,
    "upload a photo": ...,
    "load older messages": ...,
    "like a post (the click)": ...,
}
ex.q3.check(answer)

# %% [markdown]
# ## Summary
#
# - **Short polling** costs N/T requests per second whatever happens: 1,000 users
#   polling every second are 1,000 requests a second, most of them useless when
#   messages are rarer than polls (1 − r·T of them). It adds T/2 of latency on
#   average, and lowering T multiplies the requests.
# - **Long polling** answers only when there is news, so almost nothing is
#   useless, but every message is still a full HTTP round trip per user, every
#   user holds a connection, and each message wakes everyone at once.
# - **WebSocket push**: one handshake per connection, then about 170 bytes per
#   message (long polling: about 830, short polling: 1,500 and up), no
#   requests, and latency in milliseconds.
# - **Server-Sent Events**: push over plain HTTP, about 200 bytes per message
#   and no requests, but one way only: what the client sends still goes as
#   separate HTTP requests.
# - **Hybrid**: push what others must see live; keep actions, uploads and history on HTTP.
#
# **Common misconceptions**
#
# - *"WebSocket replaces REST."* No: sign-up, uploads, history and the like
#   button itself stay on HTTP, cacheable and simple; the socket carries what is
#   live. The lab server does both on one port.
# - *"Long polling is push."* It looks like push to the user, but each message
#   is still a request and a response with all their headers, per user.
# - *"Poll faster and the latency problem is gone."* Latency falls with T, the
#   requests grow with 1/T: at T = 0.1 s, 1,000 users are 10,000 requests a second.
# - *"An idle WebSocket costs as much as polling."* An idle socket sends nothing
#   but an occasional ping; polling pays full requests to learn that nothing happened.
#
# Next: **02 · The Upgrade handshake**, the one HTTP request that turns into a
# WebSocket.

# %% [markdown]
# ← Previous: [00 · Welcome](00_welcome.ipynb) · [Course index](index.ipynb) · Next: [02 · The Upgrade handshake](02_the_upgrade_handshake.ipynb) →
