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
# # WebSockets, hands-on: start here
#
# A course on WebSockets you *run*. Each lesson is a notebook that drives a live
# **lab server**, a small social-media backend that ships with the course: you watch
# connections, presence and messages move through it, type an HTTP Upgrade by hand,
# read RFC 6455 frames byte by byte, and measure what polling costs.
#
# **How a lesson works.** Open it, check that the kernel (top right) is
# **WebSocket course**, and run the cells from top to bottom (Shift+Enter). The first
# cell starts the lab with `lab = start_lab()`; each part explains, then shows it live;
# the exercises check themselves: `q1.check(answer)`, `q1.hint()`, `q1.solution()`.
# If the first cell says *Wrong kernel*, run `python3 course.py kernel` in the course
# folder, then choose *Kernel > Change Kernel > WebSocket course*.

# %% [markdown]
# ## Lessons
#
# | # | Lesson | Duration | Goals |
# |---|--------|----------|-------|
# | 00 | [Welcome: the lab, the dashboard, a crowd, two tabs](00_welcome.ipynb) | 20 min | start the lab; read its live dashboard; see that a connection is not a user (two tabs, one user, two sockets) |
# | 01 | [Polling vs push](01_polling_vs_push.ipynb) | 45 min | measure why HTTP polling wastes requests and adds latency: short polling, long polling, WebSocket push and Server-Sent Events on the same room, for 10 to 1,000 users |
# | 02 | [The Upgrade handshake](02_the_upgrade_handshake.ipynb) | 40 min | type an HTTP Upgrade on a raw TCP socket, read `101 Switching Protocols`, compute `Sec-WebSocket-Accept` (RFC 6455 section 4.2.2); why the upgrade shares the port with REST |
# | 03 | [Frames on the wire](03_frames.ipynb) | 60 min | read RFC 6455 section 5 frames byte by byte: FIN, RSV, opcode, mask, 7/16/64-bit lengths, masking, fragmentation, control frames, close codes |
# | 04 | [Connection lifecycle](04_connection_lifecycle.ipynb) | 40 min | the four states and every way a connection ends, with its close code; heartbeats reaping vanished clients; reconnection with backoff and full jitter vs a thundering herd; presence with a grace period, and the leak a missing `finally` causes |
# | 05 | [Social features over a hybrid REST + WebSocket API](05_social_features.ipynb) | 60 min | chat, typing indicators (throttled, expiring, never stored), presence, notifications and live counters pushed after REST actions; why uploads and cacheable data stay on HTTP, measured |
# | 06 | [Auth, userId -> sockets, routing, persistence](06_auth_routing_persistence.ipynb) | 60 min | log in and connect with a JWT; forged, `alg: none` and expired tokens refused; tokens out of logs; a token expiring under an open socket; the user id -> set of sockets map; routing to a room, every tab of a user, one socket; persist before the ack, resume, SIGKILL |
# | 07 | [One event loop, thousands of sockets](07_one_loop_many_sockets.ipynb) | 60 min | thousands of real sockets in one process: server memory per socket, threads flat, event-loop lag; what breaks a server (a blocking call, CPU work, huge payloads, leaking maps), switched on live under load, and each fix measured |
# | 08 | [Scaling out with Redis pub/sub](08_scaling_out_with_redis.ipynb) | 45 min | three lab processes and a real Redis: chat, presence and notifications across processes and what the hop costs; a load balancer forwarding the Upgrade, and why long polling needs sticky sessions and WebSocket does not; kill a process and resume elsewhere with nothing lost; stop Redis and see what pub/sub loses and the seqs bring back |
# | 09 | [Socket.IO's extras, wss:// and WebRTC signaling](09_socketio_tls_signaling.ipynb) | 45 min | what Socket.IO adds over a plain WebSocket and what it is on the wire (Engine.IO); `http.createServer(app)` and one port; the lab over TLS (`wss://`) on a certificate made on the spot, and what an eavesdropper sees; where TLS ends in production; WebRTC offer/answer/ICE relayed by the lab |
# | 10 | [Capstone: live reactions on a post](10_capstone.ipynb) | 90 min | build one real-time feature end to end next to the lab: REST for the post, a WebSocket for reactions, persisted with a seq before the fan-out, viewers only, resume without gaps, rate limits, no stall or leak; checked live by a crowd |
#
# The full syllabus, with each lesson's live demo and exercises, is in
# [lessons.md](../lessons.md); how to install and run everything is in the
# [README](../README.md).

# %% [markdown]
# Start with [00 · Welcome](00_welcome.ipynb) →
