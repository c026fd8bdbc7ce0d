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
# 2. read the few lines of a short poller, a long poller, a WebSocket receiver and
#    a Server-Sent Events reader: exactly the code the measurements run,
# 3. reproduce the classic claim "1,000 users polling every second = 1,000
#    useless requests per second" with a real count, then predict and measure a poll rate of your own,
# 4. serve the same live room four ways (short polling, long polling,
#    WebSocket push, Server-Sent Events) to 10, 100 and 1,000 simulated users,
#    and compare requests per second, bytes per delivered message, useless
#    requests, latency and connections,
# 5. tell which differences come from the protocols and which from this server,
# 6. see how the polling interval trades requests for latency (latency ≈ T/2),
# 7. decide which features of a social app need push, and which stay on HTTP,
# 8. write a poller of your own and run it against the live lab.
#
# **Notes sections covered** (the course's notes, see [lessons.md](../lessons.md)):
# §2 *Why WebSocket came into the picture* (all of it: server push, polling's wasted
# requests and bandwidth, its latency, the 1,000-users claim), §3 *What WebSocket
# changes* (no repeated requests, the server pushes at once), §5 *Why WebSocket is
# perfect for social media* (which features need push), §6 *Why not use WebSocket for
# everything?* (the hybrid: what stays on HTTP).
#
# The measurements run live, so their exact numbers change from run to run; the
# conclusions do not. Each cell that measures prints what it measured next to what
# theory expects.

# %% [markdown]
# ## 1. Start the lab
#
# The same server as in lesson 00. (In a class, `private=` gives this lesson a lab of your
# own: a thousand pollers from every student would swamp the class's.) It offers all four
# ways to follow a room:
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

import asyncio  # noqa: F401 - your poller of question 4 sleeps with asyncio.sleep

from labserver.course import Progress, polling, polling_plots, start_lab
from labserver.course.exercises import lesson01 as ex
from labserver.course.source import show_source

lab = start_lab(private="this lesson (a thousand pollers and sockets)")
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
# single poll, because HTTP is stateless and each request must prove again who
# sends it. The socket counted exactly the bytes written above, no more, no less:

# %% tags=["nbval-ignore-output"]
same = "the same" if anatomy.matches else "NOT the same"
print(f"counted at the socket: {anatomy.counted.total} B; request + response as written above: "
      f"{anatomy.rebuilt.total} B ({same})")
print(f"headers: {anatomy.header_bytes} B; body: {len(anatomy.body)} B "
      f"({anatomy.header_bytes / anatomy.rebuilt.total:.0%} of the poll is headers)")

# %% [markdown]
# ## 3. A short poller, line by line
#
# This is the short poller every measurement below runs, one task per simulated
# user (`labserver/course/polling/receivers.py`). It knows nothing about the
# measuring: it hands every answer to its `inbox`, which stamps the time and counts
# useless answers; the bytes are counted underneath it, by the socket. `http` is an
# aiohttp session on the lab that adds the user's `Authorization: Bearer <token>`
# header to every request.

# %%
show_source(polling.short_poller)

# %% [markdown]
# Three things to notice:
#
# - **it asks whether or not anything happened**: one request every `interval`,
#   so N users cost N/T requests per second, whatever the room does;
# - **`after` is the memory**: each poll asks only for messages newer than the
#   last one seen (`seq` numbers grow by one per message in a room). A poller that
#   forgets to move it on gets the whole room again, every time;
# - **a message waits for the next poll**: it lands somewhere between two polls,
#   so it waits between 0 and T, **T/2 on average**.
#
# It moves `after` to the last message *it received*, not to the answer's
# `last_seq`: an answer holds at most 100 messages (`limit`), and `last_seq` is the
# room's newest even when the page was cut short.

# %% [markdown]
# ## 4. 1,000 users polling every second
#
# The notes this course grew from say: *"1,000 users polling every second =
# 1,000 useless requests per second"*. Let's check. 1,000 of the short pollers
# above, all in this notebook's event loop, poll a room every second, spread
# evenly over the second (like real clients, which did not start together). The
# room is quiet: one message every 5 seconds. We measure for 5 seconds.

# %%
quiet = await Progress.track(
    polling.quiet_room(lab, receivers=1000, interval=1.0, message_rate=0.2, window=5.0),
    "1,000 short pollers on a quiet room", seconds=9,
)

# %% tags=["nbval-ignore-output"]
print(quiet.summary())

# %% [markdown]
# Theory: N/T = 1,000 requests per second, whatever happens in the room. A
# message every 5 s against a poll every second means only 1 poll in 5 finds
# something: 1 − r·T = 80 % come back empty. And each user waits for the next
# poll, T/2 = 500 ms on average. The measurement, next to the theory:

# %% tags=["nbval-ignore-output"]
T, rate = quiet.group.interval, quiet.message_rate
print(f"{quiet.receivers:,} users polling every {T:g} s, a message every {1 / rate:g} s")
print(polling.expectation("requests/s", quiet.requests_per_s, quiet.expected_requests_per_s, within=0.1, relative=True))
print(polling.expectation("useless", 100 * quiet.useless_fraction, 100 * polling.expected_useless_fraction(rate, T),
                          within=10, unit="%"))
print(polling.expectation("mean wait for a message", 1000 * quiet.latency_mean, 1000 * polling.expected_latency(T),
                          within=100, unit="ms"))
print(f"bytes per request, both ways: {quiet.window_traffic.total / max(quiet.requests, 1):,.0f} B "
      f"(the one poll of section 2: {anatomy.rebuilt.total} B)")
print(f"every user got every message exactly once: {quiet.exactly_once} "
      f"({quiet.missing} missing, {quiet.duplicates} duplicates)")

# %% [markdown]
# So the claim holds, and it is the *limit*: the quieter the room, the closer
# the useless requests get to all 1,000 a second. Each one costs the server a
# token check, a database read and a few hundred bytes of traffic (the line
# above), to say "nothing new". And the users still wait T/2 on average for each message.

# %% [markdown]
# ## 5. Your turn: predict, then measure
#
# Pick a number of users N and a polling interval T. Before you run the next
# cell, write down what you expect: requests per second, and the mean wait for a
# message, in milliseconds. The room gets 2 messages a second; the run measures 3 s.

# %%
N = 200  # users, 1 to 1,000
T = 0.5  # polling interval in seconds, 0.1 to 2

predicted_requests_per_s = ...  # your prediction: a number
predicted_mean_wait_ms = ...  # your prediction: a number of milliseconds

# %%
mine = await Progress.track(
    polling.short_polling(lab, receivers=N, interval=T, message_rate=2.0, window=3.0),
    f"{N:,} users polling every {T:g} s", seconds=3 + 2 * T + 1,
)

# %% tags=["nbval-ignore-output"]
print(polling.prediction("requests/s", mine.requests_per_s, mine.expected_requests_per_s, predicted_requests_per_s,
                         digits=1))
print(polling.prediction("mean wait", 1000 * mine.latency_mean, 1000 * polling.expected_latency(T),
                         predicted_mean_wait_ms, unit="ms"))
print(f"useless requests: measured {mine.useless_fraction:.0%}, theory 1 - r*T = "
      f"{polling.expected_useless_fraction(2.0, T):.0%}")

# %% [markdown]
# Try T = 0.1 s, then T = 2 s: the wait follows T/2, the requests follow N/T.
# You cannot get one down without the other up. (At very small T, or large N, the
# measurement falls short of N/T: the machine runs the pollers and the server on the
# same cores, and a poll that runs late delays the next.)

# %% [markdown]
# ## 6. Three more receivers: long polling, WebSocket push, Server-Sent Events
#
# The long poller is the short poller without the sleep: it asks again the moment
# an answer comes, and the *server* does the waiting, holding each request until
# a message exists (or `timeout` seconds pass).

# %%
show_source(polling.long_poller)

# %% [markdown]
# WebSocket push pays one request per user, the Upgrade to `/ws`, and one `join`
# message on the open socket (lesson 02 takes the Upgrade apart):

# %%
show_source(polling.open_websocket)

# %% [markdown]
# ...and from then on the receiver makes no request at all. It waits on the socket,
# and the server sends each message as a frame the moment it stores it:

# %%
show_source(polling.websocket_receiver)

# %% [markdown]
# Server-Sent Events are push over plain HTTP: one `GET` whose response never
# ends. The server writes each message into it as a text event (`id: 7`, then
# `data: {...}`, then a blank line), and the receiver reads it line by line, as a
# browser's `EventSource` does:

# %%
show_source(polling.sse_receiver)

# %% [markdown]
# ## 7. The same room, four ways
#
# Now the comparison, with exactly those four receivers. A producer posts a
# message every 2 seconds (over HTTP); N receivers follow the room by short
# polling (T = 1 s), long polling, WebSocket push or Server-Sent Events. For 10 and
# 100 receivers the four groups follow the *same* room at once; for 1,000 each
# approach gets a run of its own so that they do not slow each other down (the
# server and this notebook share the machine). Each run measures a 4 s window
# (two messages).

# %%
results = await Progress.track(
    polling.compare(lab, sizes=(10, 100, 1000), interval=1.0, message_rate=0.5, window=4.0),
    "10, 100 and 1,000 receivers, four ways", seconds=35,
)

# %% tags=["nbval-ignore-output"]
print(polling.table(results))

# %% [markdown]
# Read the table row by row before the plots: requests per second, the share of
# them that were useless, bytes on the wire per message delivered (both
# directions, headers and WebSocket frames included), the median and 95th
# percentile delivery latency (server timestamp to the moment the receiver
# parsed the message), and the TCP connections the receivers opened (section 8).
# What theory expects, next to what was measured (the margins leave room for a busy machine):

# %% tags=["nbval-ignore-output"]
short, long_, push, sse = (polling.select(results, a) for a in ("short", "long", "websocket", "sse"))
for r in short + long_:
    name = "short polling, N/T" if r.approach == "short" else "long polling, N x messages/s"
    print(polling.expectation(f"{name:<28} N = {r.receivers:>5,}: requests/s", r.requests_per_s,
                              r.expected_requests_per_s, within=0.2, relative=True, digits=1))
for r in push + sse:
    print(f"{polling.LABELS[r.approach]:<28} N = {r.receivers:>5,}: requests/s measured {r.requests_per_s:g}, expected 0")
delivered = sum(r.exactly_once for r in results)
print(f"groups whose every receiver got every message exactly once: {delivered} of {len(results)}")

# %% [markdown]
# And per message, for each N: the bytes it cost and how long it took, for each approach.

# %% tags=["nbval-ignore-output"]
for s, lp, p, e in zip(short, long_, push, sse, strict=True):
    print(f"N = {s.receivers:>5,}: bytes/message  short {s.bytes_per_message:>6,.0f}   long {lp.bytes_per_message:>4,.0f}"
          f"   WebSocket {p.bytes_per_message:>4,.0f}   SSE {e.bytes_per_message:>4,.0f}")
    print(f"           median ms      short {1000 * s.latency_median:>6,.1f}   long {1000 * lp.latency_median:>4,.0f}"
          f"   WebSocket {1000 * p.latency_median:>4,.0f}   SSE {1000 * e.latency_median:>4,.0f}")

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
# **Bytes.** A pushed message is one WebSocket frame: the JSON and a 4-byte
# frame header (2 bytes for payloads up to 125 bytes, 4 up to 65,535; a server's
# frames carry no mask, RFC 6455 §5.2). An SSE event is the same JSON in `id:` and
# `data:` lines, plus the chunked-encoding framing HTTP/1.1 puts around each write:
# a little more than the frame, tens of bytes at most. A polled message drags a whole request (with its token)
# and a response head along, several hundred bytes of headers, and short polling
# adds the useless round trips in between. Compare the lines above.
#
# **Latency.** Push delivers in milliseconds. Short polling adds the wait for
# the next poll, T/2 on average. Long polling is nearly as quick as push for a
# few users; at 1,000, every message wakes 1,000 held requests at once, the
# server answers them one by one, and then 1,000 new requests arrive together.
# SSE usually trails WebSocket push (compare the medians above), for a reason that
# has to do with this server, not with SSE (section 9).

# %% [markdown]
# ## 8. The connections column
#
# The last column of the table counts the TCP connections each group opened.
# It is not the same kind of number for every approach:
#
# - **Short polling** shares connections. The simulated pollers of a group all use
#   one aiohttp session, whose pool keeps connections alive and hands an idle one
#   to the next request. Polls spread over the interval rarely overlap, so a
#   group needs far fewer connections than it has pollers (the lines below).
#   Real users do not share: 1,000 browsers are 1,000 clients, each with at least
#   one connection of its own (kept alive between polls, or opened anew for each).
# - **Long polling, WebSocket, SSE** hold one connection per user *by design*:
#   a held request, an open socket or a never-ending response occupies its
#   connection for as long as the user waits. Here the simulation and real
#   browsers agree: N users, N connections.

# %% tags=["nbval-ignore-output"]
for r in results:
    if r.receivers == max(x.receivers for x in results):
        print(f"{r.group.label:<24} N = {r.receivers:,}: {r.connections:>5,} TCP connections opened "
              f"({r.connections / r.receivers:.2f} per user)")

# %% [markdown]
# **A browser's six connections.** Over HTTP/1.1 a browser opens at most **six
# connections per host** (per origin's host and port, shared by all the tabs of a
# profile), and each one carries one request at a time. An `EventSource`, or a
# parked long poll, keeps one of the six busy for as long as it is open: a user
# with the app open in six tabs has no connection left for anything else on that
# host, not even an image, and a seventh tab's stream waits. Over HTTP/2 all the
# tab's requests and streams share one connection as multiplexed streams (about
# 100 at once by default), so the limit goes away. WebSockets are counted apart
# from that pool of six, with far higher limits.
#
# **HTTP/2 and polling's bytes.** HTTP/2 compresses headers (HPACK, RFC 7541): a
# header sent before, like the long `Authorization` token, becomes an index of a
# byte or two in a table both sides keep. That shrinks polling's bytes a lot. It
# does not remove a single request: the server still receives N/T of them a
# second, still checks each token and reads the room for each, and the latency is
# still T/2.

# %% [markdown]
# ## 9. The protocol, or this server?
#
# Some differences you measured are properties of the protocols, and will show
# on any server. Others come from how *this* server is written, and another
# server could do better.
#
# | what you saw | why | protocol or implementation? |
# |---|---|---|
# | short polling: N/T requests a second, whatever happens | the client cannot know when to ask | **protocol** (HTTP: only the client starts an exchange) |
# | a message waits T/2 on average for a poll | it waits for the next request | **protocol** |
# | headers on every poll, the token included | HTTP is stateless: every request stands alone | **protocol** (HTTP/2 compresses them; the requests remain) |
# | long polling: one request per user per message, and a held connection each | the answer ends the exchange; the client must ask again | **protocol** |
# | long polling at 1,000: every message wakes all held requests, then all ask again | the same | **protocol**; how fast the server answers them is its own |
# | WebSocket: a few bytes of frame per message, no request | RFC 6455 frames on an open connection | **protocol** |
# | SSE: no request per message, one way only | one response that never ends | **protocol** |
# | SSE trailing WebSocket push | for each message, this server reads the room from the database once per open stream; a WebSocket message is encoded once and the same bytes written to every socket | **implementation**: an SSE server can fan out a pre-encoded event the same way |
# | long-poll answers slower with more receivers | each woken request reads the room again | **implementation** in part (one read could serve them all); the wave of new requests is protocol |
# | chunked-encoding bytes around each SSE event | HTTP/1.1 frames a streamed body in chunks | **transport**: HTTP/2 frames it differently |
# | short polling's few connections | the simulated pollers share a pool | **the client** (section 8): real browsers do not share |

# %% [markdown]
# ## 10. Why long polling is not push
#
# Long polling removes the *useless* requests, but not the requests: each
# delivery is still a full HTTP round trip, and right after it the client must
# ask again, with all its headers. And while it waits, every user holds an open
# connection with a request parked on the server. So it pays for both: a
# connection per user, like a WebSocket, *and* a request per message, like polling.

# %% tags=["nbval-ignore-output"]
for r in long_:
    per_message = r.requests / (r.window * r.message_rate)  # requests per message posted in the window
    print(f"long polling, N = {r.receivers:>5,}: {r.connections:>5,} connections held (expected N); "
          + polling.expectation("requests per message", per_message, r.receivers, within=0.2, relative=True))

# %% [markdown]
# The WebSocket keeps the connection and drops the requests: the handshake is
# paid once per connection (the Upgrade, the welcome and the join), and then each
# message is a single small frame, sent the moment the server stores it. That is
# why push wins on all four panels at once.
#
# **Server-Sent Events** go through proxies as plain HTTP and need no new
# protocol, and the browser's `EventSource` reconnects by itself after a drop,
# sending the last `id` it saw as `Last-Event-ID` so the server resumes where it
# left off. What they cannot do is talk back: every client-to-server message
# (sending a chat line, "typing...") is a separate HTTP request with all its
# headers. Fine for feeds, notifications and live counters; not for chat typing
# indicators, where the client speaks as often as it listens.

# %% [markdown]
# ## 11. The polling interval: requests against latency
#
# Short polling has one knob, the interval T. A message lands at a random moment
# between two polls, so it waits between 0 and T: **T/2 on average**. Here are
# 10 receivers per interval, all on the same room, with WebSocket push as the
# floor (3 s window).

# %%
sweep = await Progress.track(
    polling.interval_sweep(lab, intervals=(0.25, 0.5, 1.0, 2.0), receivers=10, message_rate=1.0, window=3.0),
    "short polling at four intervals, and push", seconds=9,
)
fig = polling_plots.plot_latency_vs_interval(sweep)

# %% tags=["nbval-ignore-output"]
print(polling.table(sweep))

# %% tags=["nbval-ignore-output"]
for r in sweep:
    if r.approach == "short":
        half = 1000 * polling.expected_latency(r.group.interval)
        print(polling.expectation(f"T = {r.group.interval:<4g} s: mean latency", 1000 * r.latency_mean, half,
                                  within=0.3 * half + 20, unit="ms"))  # 30 %, plus 20 ms for the network and the server

# %% [markdown]
# To halve the latency you halve T, which doubles the requests. Push gets the
# low latency without the requests.

# %% [markdown]
# ## 12. Which feature needs which?
#
# Push is not for everything. The rule of thumb: **what others must see the moment
# it happens is pushed; what a user asks for, or does and wants an answer to,
# is a request.** The lab server is built this way (the *hybrid* approach of the notes, §6):
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
# ## 13. Check yourself
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
# **Question 4: your own poller, on the live lab.** Write `poll_room(http, room,
# token, deliver)`: it follows `room` over HTTP and calls `deliver(message)` once
# for every new chat message, oldest first, until the check stops it.
#
# - `http` is an `aiohttp.ClientSession` on the lab: `http.get("/api/rooms/...")`
#   works as is (like `polling.short_poller` above). It does *not* send your token:
#   every request must carry `Authorization: Bearer <token>` itself.
# - Short polling every 0.5 s (`GET /api/rooms/{room}/messages?after=SEQ`) or long
#   polling (`GET /api/rooms/{room}/poll?after=SEQ&timeout=S`): both pass.
#
# The check runs your function on a fresh room while it posts 7 messages over 3
# seconds (some of them together), then tells you whether every message arrived
# once, in order and in time, and how many requests you made. It takes about 4 seconds.

# %%
async def poll_room(http, room, token, deliver):
    ...


await ex.q4.check_async(poll_room)

# %%
# ex.q4.hint()
# ex.q4.solution()

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
# - **WebSocket push**: one handshake per connection, then one small frame per
#   message (the JSON and a few bytes of header), no requests, and latency in milliseconds.
# - **Server-Sent Events**: push over plain HTTP, no request per message, but one
#   way only: what the client sends still goes as separate HTTP requests; and a
#   browser's six HTTP/1.1 connections per host limit the streams it can hold open.
# - **Protocol or server**: requests per poll, the T/2 wait and header overhead are
#   HTTP's; how fast a server fans out SSE or long-poll answers is its own.
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
# - *"HTTP/2 fixes polling."* Its header compression shrinks the bytes of each
#   poll; the number of polls, and the T/2 wait, stay the same.
# - *"An idle WebSocket costs as much as polling."* An idle socket sends nothing
#   but an occasional ping; polling pays full requests to learn that nothing happened.
#
# Nothing to stop: every experiment closed its connections when it ended, and the
# lab stops with this notebook's kernel.
#
# Next: **02 · The Upgrade handshake**, the one HTTP request that turns into a
# WebSocket.

# %% [markdown]
# ← Previous: [00 · Welcome](00_welcome.ipynb) · [Course index](index.ipynb) · Next: [02 · The Upgrade handshake](02_the_upgrade_handshake.ipynb) →
