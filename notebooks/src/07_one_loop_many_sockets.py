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
# # 07 · One loop, many sockets
#
# How can one server process hold thousands of open WebSockets? Not with thousands of threads:
# with one thread, one **event loop**, and sockets that the operating system watches while
# they are idle, which is nearly always. This lesson opens thousands of real connections to the
# lab, weighs them, and then breaks the loop on purpose, four ways, with the instructor's
# "chaos" switches, and fixes it each time, while a few clients measure what everyone else feels.
#
# **In this lesson you will**
#
# 1. open thousands of real, authenticated WebSockets from a helper process and watch the dashboard count them,
# 2. plot the server's memory against its connections, fit a line and read the cost of one socket in KiB,
# 3. see that a connection is a non-blocking socket, not a thread: the server's thread count stays flat,
# 4. read the event loop's lag, the one number that says whether the loop keeps up,
# 5. flip each chaos switch under load (a blocking call in a handler, CPU-heavy work in a handler, very
#    large payloads, a cleanup that leaks map entries) and plot everyone's latency and the loop lag
#    before, during and after; then flip its fix and plot the same,
# 6. move a blocking call off the loop yourself, and fix the live lab with a switch.
#
# **Notes sections covered:** §13 *How one server handles thousands of users* (parts 2 to 4),
# §14 *What breaks WebSocket servers* (every item of it, part 5), and two lines of §8 *Common
# misconceptions*: "each user gets their own server" and "a connection is a thread" (parts 2
# and 3). Where the notes are short, the lesson says so; the summary lists the corrections.

# %% [markdown]
# ## 1. Start the lab
#
# `start_lab()` starts the lab server in its own process, with an admin token (the chaos switches
# need it) and the open-files limit raised as far as the system allows: every socket is a file
# descriptor, on both ends. `scale` is this lesson's toolkit (`labserver/course/scale.py`).

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import threading
import time

import psutil
import websockets
from IPython.display import SVG, display

from labserver.chaos import Chaos
from labserver.course import Dashboard, scale, start_lab
from labserver.course.exercises import lesson07 as ex
from labserver.course.source import show_source
from labserver.resources import open_files_limit

lab = start_lab(private="this lesson (thousands of sockets, and chaos switches)")
lab

# %% [markdown]
# The dashboard watches the lab live (lesson 00). Keep it in view: its counter of open
# connections climbs in part 2, its **event-loop lag** jumps in part 5, and a red "chaos on" line
# names the switches that are on.

# %%
dashboard = Dashboard(lab)
await dashboard.ready()
dashboard

# %% [markdown]
# ## 2. Thousands of sockets, one process
#
# The crowd is a helper **process** (`python -m labserver.course.scale`): it opens raw WebSockets
# with the handshake of lesson 02, each authenticated with a token in the URL, and then does
# nothing but answer the server's heartbeat pings (lesson 04). Eight accounts are enough: on
# loopback the lab lets one user open many sockets (beyond loopback, 16 per user). It lives in its
# own process so that this notebook's event loop, which draws the dashboard, stays free, and so
# that it has its own budget of file descriptors.
#
# The open-files limit caps both ends. This box's:

# %%
limit = open_files_limit()
N = 5000  # the committed run; part 2b goes as far as the limit allows
print(f"open-files limit: {limit}; sockets in this run: {N}")
if limit is not None and limit < N + 500:
    N = max(500, limit - 500)
    print(f"the open-files limit stops us at {N} sockets (raise the hard limit with ulimit -Hn to go further)")

# %% [markdown]
# Now the crowd grows in steps of 1,000. After each step we read the server process's resident
# memory (RSS), its thread count, and how many file descriptors it has open (psutil, by the
# server's pid).

# %% tags=["nbval-ignore-output"]
tokens = [lab.account(f"crowd{i}").token for i in range(8)]
crowd = scale.SocketCrowd(lab.ws_url, tokens).start()
server = psutil.Process(lab.pid)
steps = list(range(0, N + 1, 1000))
started = time.perf_counter()
samples = await scale.measure_memory(lab.pid, crowd, steps)
elapsed = time.perf_counter() - started
print(f"{crowd.open} sockets open in {elapsed:.1f} s; server: {server.num_fds()} file descriptors, "
      f"{server.num_threads()} threads" + (f"; stopped: {crowd.stopped}" if crowd.stopped else ""))

# %% [markdown]
# The dashboard's counter says the same (it counts `socket_opened` events from `/observe`):

# %% tags=["nbval-ignore-output"]
await asyncio.sleep(1.5)  # a batch every 100 ms; the stats once a second
print(f"dashboard: {len(dashboard.state.sockets)} open connections, "
      f"{len(dashboard.state.online)} users online")

# %% [markdown]
# Every one of those connections is a separate TCP connection with its own handshake, its own
# socket id and its own heartbeat; eight users own them all. One process serves them: **not a server per
# user** (§8's first misconception), and not a process per user either.
#
# ### Memory per socket
#
# The points lie on a line. Its slope is what one more connection costs; its intercept is the
# server with nobody connected.

# %% tags=["nbval-ignore-output"]
figure, kib_per_socket = scale.plot_memory(samples)
print(f"{kib_per_socket:.1f} KiB per socket; {samples[-1].rss_bytes / 2**20:.0f} MiB at {samples[-1].connections} sockets")
figure

# %% [markdown]
# About 20 KiB a socket on this box (the plot says exactly): the kernel's buffers for the
# connection, aiohttp's response and reader objects, the lab's `Connection` record and its entries
# in the maps. At that price a gigabyte holds some 50,000 idle connections; what usually runs out
# first is the open-files limit, or the CPU once they start talking.
#
# ### Not a thread per connection
#
# The right-hand plot is §8's second misconception, measured: the thread count did not move
# while thousands of connections opened. A thread per connection would need a stack each
# (8 MiB of address space by default on Linux) and a context switch at every message. Here a
# connection is a **non-blocking socket** registered with the operating system's readiness
# API (`epoll` on Linux, `kqueue` on macOS): the loop asks "which of these have data?", and
# handles only those.

# %% tags=["nbval-ignore-output"]
print(f"server threads: {server.num_threads()} for {crowd.open} connections")
print(f"this notebook's threads: {threading.active_count()}")

# %% [markdown]
# In the server, each connection is one *coroutine* of its WebSocket handler (`labserver/ws.py`),
# suspended at `await` while its socket is idle: a few KiB of Python objects, not a thread.
#
# ### 2b. As many as the box allows (optional)
#
# This box's hard open-files limit is 20,000 per process, so one server process can hold about
# 19,000 sockets (each end of each connection needs a descriptor, in its own process). The
# committed run of this notebook skips it to stay under 90 s; set `BIG_RUN = True` to try (about
# 40 s more). When a limit stops the crowd, it says which.

# %% tags=["nbval-ignore-output"]
BIG_RUN = False
if BIG_RUN:
    target = 19_000 if limit is None else min(19_000, limit - 600)
    big = await scale.measure_memory(lab.pid, crowd, list(range(N + 2000, target + 1, 2000)) + [target])
    print(f"{crowd.open} sockets open" + (f"; stopped: {crowd.stopped}" if crowd.stopped else ""))
    figure, kib = scale.plot_memory(samples + big)
    display(figure)
else:
    print("skipped (BIG_RUN = False)")

# %% [markdown]
# ## 3. The loop's lag
#
# One thread runs every handler, taking turns at each `await`. While a handler runs, nobody
# else's runs. The lab measures how well the turns go: a task sleeps 100 ms again and again, and
# how late it wakes up is the **loop lag** (`loop_lag_ms` in `/observe`'s stats, the dashboard's
# "event-loop lag"). With 5,000 idle sockets it stays near zero: idle sockets cost the loop
# nothing. The picture shows the turns, and what part 5 will do to them:

# %%
SVG(filename="../images/07_one_loop.svg")

# %% [markdown]
# And the lab's lag right now:

# %% tags=["nbval-ignore-output"]
print(f"loop lag now: {dashboard.state.stats.get('loop_lag_ms')} ms with {crowd.open} sockets open")

# %% [markdown]
# ## 4. The probe
#
# To see what users feel, `scale.run_phases` connects a few clients to a room `probe`: one
# chats every 200 ms, three listen and send a `ping` about every 200 ms (at jittered times). It
# records each listener's **ping round trip** (the service everyone else gets) and each chat's
# **delivery latency** (sent -> received by a listener, one clock), and the lab's loop lag from
# `/observe`. It goes through phases, flipping switches between them. First, calm:

# %% tags=["nbval-ignore-output"]
calm = await scale.run_phases(lab, [("calm", {})], seconds=3)
print(calm.table())

# %% [markdown]
# ## 5. Four ways to break the loop, and their fixes
#
# The lab has a "chaos" switch for each line of §14, off by default, flipped with the admin token
# (`lab.set_switches(...)`, PROTOCOL.md section 11), and shown on the dashboard while on. What
# they do is in one small module:

# %%
show_source(Chaos.on_chat)

# %% [markdown]
# ### 5a. A blocking call in a handler
#
# `block_ms=100`: each chat handler calls `time.sleep(0.1)`, standing for a blocking database
# driver or `requests.get`. The probe chats 5 times a second, so the loop is stuck half the
# time. The fix, `offload=True`, sends the call to a thread and awaits it.

# %% tags=["nbval-ignore-output"]
phases = [("before", {}), ("block_ms 100", {"block_ms": 100}), ("+ offload", {"offload": True}), ("after", scale.CHAOS_OFF)]
blocking = await scale.run_phases(lab, phases, seconds=2.5)
print(blocking.table())
scale.plot_phases(blocking, f"A blocking handler, {crowd.open} sockets open")

# %% [markdown]
# During `block_ms`, the loop lag is the block, and a listener's ping waits for whatever block
# is in progress: up to 100 ms for a message that needs microseconds. **Every** socket waits,
# the 5,000 idle ones included: their heartbeats too. With `offload`, the lag is back near
# zero and pings are fast again. The chats themselves still take 100 ms (the purple crosses):
# offloading does not make slow work fast, it stops it from making everyone else slow.
#
# (A lone spike in a calm phase is something else stopping the loop for a moment: the garbage
# collector walking the objects of 5,000 connections, or another program on a shared machine.
# Compare the medians, and the shape of each phase.)
#
# ### 5b. CPU-heavy work in a handler
#
# `cpu_ms=100`: each chat hashes for 100 ms, standing for image resizing or password hashing.
# Same picture on the loop. Its fix is a **process** pool: a thread would hold Python's GIL while
# it computes and take turns with the loop, so `offload` sends CPU work to two worker processes
# (they start when `offload` is switched on: a Python process takes a second to start).

# %% tags=["nbval-ignore-output"]
phases = [("before", {}), ("cpu_ms 100", {"cpu_ms": 100}), ("+ offload", {"offload": True}), ("after", scale.CHAOS_OFF)]
cpu = await scale.run_phases(lab, phases, seconds=2.5)
print(cpu.table())
scale.plot_phases(cpu, f"CPU work in a handler, {crowd.open} sockets open")

# %% [markdown]
# ### 5c. Very large payloads
#
# The lab reads at most 64 KiB per message (`max_message_bytes`); a bigger one is refused with
# close **1009** from its frame header, before the server reads it (RFC 6455 section 7.4.1). The
# switch raises that limit for sockets opened from then on. A "hog" client sends 16 MiB chats,
# opening a new connection every three of them. With the limit at 64 MiB, the server reads
# every one into memory and parses it on the loop before refusing it (a chat's text is at most
# 4,000 characters): everyone waits. With the limit back, each hog connection is closed 1009 at
# its first frame header.

# %% tags=["nbval-ignore-output"]
hog = scale.Hog(lab).start()
phases = [("limit 64 KiB", {}), ("limit 64 MiB", {"max_message_bytes": 64 * 2**20}), ("limit back", {"max_message_bytes": 65536})]
payloads = await scale.run_phases(lab, phases, seconds=2.5)
await hog.stop()
print(payloads.table())
print(f"hog: {hog.sent} huge messages sent, {hog.closed_1009} connections closed with 1009")
scale.plot_phases(payloads, "Very large payloads, then the size limit")

# %% [markdown]
# ### 5d. A handler that leaks map entries
#
# The lab's `leaky_cleanup` switch (lesson 04) skips the cleanup a socket's handler does in
# `finally`: the closed socket stays in the user id -> sockets map and in its rooms, its user
# stays online, and every broadcast still visits it. The fix is the `finally`: switching the bug
# off. Twenty sockets open and close with the bug on, twenty with the fix:

# %% tags=["nbval-ignore-output"]
async def open_and_close(count):
    token = lab.account("leaker").token
    for _ in range(count):
        async with websockets.connect(f"{lab.ws_url}?token={token}") as ws:
            await ws.recv()  # the welcome: registered


lab.set_switches(leaky_cleanup=True)
await open_and_close(20)
await asyncio.sleep(0.3)
leaky = lab.health()
lab.set_switches(leaky_cleanup=False)
await open_and_close(20)
await asyncio.sleep(0.3)
fixed = lab.health()
print(f"bug on:  {leaky['sockets_tracked'] - leaky['sockets_open']} dead sockets still in the maps")
print(f"fix on:  {fixed['sockets_tracked'] - fixed['sockets_open']} (the 20 old ones stay: only a restart heals them)")

# %% [markdown]
# Twenty entries are 20 x a few KiB; a leak per connection on a server that sees a million
# connections a day is a server that restarts every night, or dies. Part 2's line is what a
# **healthy** server's memory does: it goes back down when the sockets close.
#
# ## 6. Exercises
#
# `ex.qN.hint()` gives a hint, `ex.qN.solution()` the answer with an explanation.

# %%
ex.q1

# %%
answer = ...  # "a", "b", "c" or "d"
ex.q1.check(answer)

# %%
ex.q2

# %%
answer = ...  # KiB per socket
ex.q2.check(answer)

# %%
ex.q3


# %%
async def off_the_loop(blocking, *args):
    ...


await ex.q3.check_async(off_the_loop)

# %%
ex.q4


# %%
def calm(lab):
    ...


await ex.q4.check_async(calm)

# %% [markdown]
# ## Summary
#
# - One process, one thread, one event loop served thousands of real WebSocket connections: a
#   connection is a **non-blocking socket** the OS watches, about 20 KiB here (part 2's line),
#   not a thread (the thread count stayed flat) and not a server per user.
# - Idle sockets cost the loop nothing. Work costs everyone: while one handler runs without
#   `await`, every socket waits. The **loop lag** says so, in milliseconds.
# - §14's four breakers, measured: a blocking call and CPU work in a handler stall everyone for
#   as long as they run; huge payloads are read and parsed on the loop; a skipped cleanup leaks.
# - Their fixes: blocking calls to a thread (`asyncio.to_thread`), CPU work to a process pool or a
#   job queue, a message size limit (close 1009) that refuses before reading, cleanup in `finally`.
#
# **What the notes say, and what to add**
#
# - §13 *"Single thread, event loop, non-blocking I/O"*: right, and Python's asyncio is the same
#   design as Node's. "Events are processed one at a time, very fast" is a **rule you must keep**,
#   not a property you get: one slow handler stops all of them (part 5).
# - §13 *"Sockets do not block CPU"*: idle ones don't; the limit is memory (~20 KiB each here)
#   and file descriptors (this box: 20,000 per process), then CPU once they talk.
# - §14 *"Delegate heavy work to workers/queues"*: which worker matters in Python: a thread for
#   waiting (I/O, blocking drivers), a **process** for computing (the GIL).
# - §14 *"Large payloads"*: the fix is a limit enforced from the frame header (close 1009), so
#   the server never reads the payload; and big files go over HTTP (lesson 05).
# - §8 *"Connection = non-blocking socket"*: yes, and part 2 measured it; a thread per connection
#   would be megabytes of stack each.
#
# Next: lesson 08 runs several such processes behind one address and connects them with Redis
# pub/sub, for when one loop is no longer enough.

# %%
await dashboard.stop()
crowd.close()
lab.set_switches(**scale.CHAOS_OFF)

# %% [markdown]
# ← Previous: [06 · Auth, userId -> sockets, routing, persistence](06_auth_routing_persistence.ipynb) · [Course index](index.ipynb) · Next: [08 · Scaling out with Redis pub/sub](08_scaling_out_with_redis.ipynb) →
