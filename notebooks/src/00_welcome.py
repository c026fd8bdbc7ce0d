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
# 1. start the lab server with one call,
# 2. open a live dashboard of what the server is doing,
# 3. watch a crowd of simulated users connect and chat,
# 4. see that a *connection* is not a *user*: one person, two browser tabs, two sockets,
# 5. check your understanding with a few exercises.
#
# Every lesson has the same shape: a short explanation, then a cell that shows it
# live, then exercises that check themselves (`q1.check(answer)`, `q1.hint()`,
# `q1.solution()`). Run the cells from top to bottom.

# %% [markdown]
# ## 1. Start the lab
#
# `start_lab()` starts the lab server in the background, on a free port, and
# waits until it answers. Running the cell again reuses the same server. When
# the notebook's kernel stops, the server stops with it.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

from labserver.course import Crowd, Dashboard, LabClient, start_lab
from labserver.course.exercises import lesson00 as ex

lab = start_lab()
lab

# %% [markdown]
# One port serves both halves of the server: plain HTTP for things like sign-up
# and history (`/api/...`), and WebSocket (`/ws`) for everything live. The
# address printed above is also a small chat client you can open in your
# browser.
#
# ## 2. The dashboard
#
# The server publishes a read-only stream of what it does (`/observe`). The
# dashboard below draws it: open connections, who is online with which sockets,
# rooms, and every message the server routes. It updates by itself: keep it in
# view while you run the next cells.

# %%
dashboard = Dashboard(lab)
await dashboard.ready()
dashboard

# %% [markdown]
# ## 3. A crowd arrives
#
# `Crowd` simulates users: each one signs up over HTTP, opens a WebSocket, joins
# the `general` room, and now and then chats or starts typing. Watch the
# connection count and the message flow in the dashboard as 20 users arrive.

# %%
crowd = Crowd(lab, rooms=["general"], chat_rate=0.2, typing_rate=0.2, seed=0)
await crowd.grow(20)
crowd

# %% [markdown]
# Twenty simulated users, and the server holds twenty sockets. Every chat
# message one of them sends is *pushed* by the server to the other members of
# the room: nobody asks "anything new?", the server just sends. That is what
# WebSockets are for.

# %%
health = lab.health()
print("open connections:", health["connections"])
print("users online:    ", health["users_online"])

# %% [markdown]
# ## 4. Two tabs, one user
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
# Alice is **online while any of her sockets is open**. Close one tab:

# %%
await tab1.close()
lab.user("alice")

# %% [markdown]
# Still online, through tab 2. Close the other one and she goes offline: the
# server notices the connection closing, with no extra request from anyone.

# %%
await tab2.close()
lab.user("alice")

# %% [markdown]
# ## 5. Check yourself
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
# ## Summary
#
# - The lab server speaks HTTP and WebSocket on **one port**.
# - A **socket** is one connection (one tab); a **user** may have several. The
#   server keeps a map from user id to that user's sockets.
# - A user is **online while any of their sockets is open**; closing the last one
#   is what makes them offline. No polling needed: the server knows at once.
#
# **Common misconceptions** (from the notes this course grew from)
#
# - *"Each user gets their own server."* No: one server process holds all these
#   sockets, and later lessons push it to thousands.
# - *"WebSocket replaces REST."* No: sign-up and history went over plain HTTP
#   here; only the live part uses the socket.
#
# Next: [01 · Polling vs push](01_polling_vs_push.ipynb), where we measure why the
# server pushing beats the client asking.

# %%
await dashboard.stop()  # first, so that it keeps its last picture of the crowd
await crowd.stop()

# %% [markdown]
# [Course index](index.ipynb) · Next: [01 · Polling vs push](01_polling_vs_push.ipynb) →
