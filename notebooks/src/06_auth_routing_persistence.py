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
# # 06 · Authentication, userId -> sockets, routing, persistence
#
# A chat app has to answer three questions about every message. **Who sent it?** The
# socket must belong to someone, and a token proves who. **Who gets it?** The server keeps
# a map from each user to their open sockets and routes along it. **Is it safe?** Once the
# sender sees "sent", the message must survive a crash. This lesson answers all three on the
# live lab: you log in, forge tokens the lab refuses, watch a token run out under an open
# socket, route messages to rooms, to every tab of a user and to one socket, and kill the
# server with SIGKILL in the middle of a conversation.
#
# **In this lesson you will**
#
# 1. log in over HTTP, take the JWT you get apart, and connect with it,
# 2. see what a missing, tampered, `alg: none`, wrongly signed or expired token gets: a 401 before the upgrade,
# 3. compare the three ways a token can reach `/ws` (query string, first message, cookie), and keep tokens out of logs,
# 4. watch a token expire under an open socket (close 1008 `token expired`), and a logout close every tab,
# 5. build the user id -> sockets map and route along it: a room, every tab of a user, one socket,
# 6. see who may join or read what: another pair's DMs and private rooms are refused, over WebSocket and HTTP,
# 7. see a message stored with its room's sequence number before it is acknowledged, and read it back over HTTP,
# 8. disconnect, let messages pass, reconnect and resume: exactly the missed ones, in order,
# 9. kill the server mid-conversation and find every acknowledged message, then see what "persist after
#    broadcast" would have lost,
# 10. write a client that keeps its token out of the URL, the routing function and a reconnecting
#     follower, all three checked on the live lab.
#
# **Notes sections covered:** §12 *Socket connection lifecycle* ("`socket.id` is unique per
# connection, changes on reconnect, is NOT the userId"; tokens and logouts on open sockets: parts
# 5 to 7), §15 *Next topics*: every one of them, "WebSocket authentication (JWT)" (parts 2 to 5),
# "Mapping userId → socket" and "Message routing" (parts 6 to 8), "Chat persistence" (parts 9 to
# 12); "Scaling with Redis" is lesson 08, and part 7 shows where it starts. Where the notes
# are short or wrong, the lesson says so and shows why; the summary lists the corrections.

# %% [markdown]
# ## 1. Start the lab
#
# `start_lab(log_level="INFO")` starts the lab with its access log on, so that part 4 can
# read what the server writes about each request. `tokens` is this lesson's small JWT
# toolkit (`labserver/course/tokens.py`): it reads a token's parts and forges bad ones,
# with nothing but the standard library.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import base64
import collections
import json
import logging
import time

import websockets
from IPython.display import SVG
from websockets.exceptions import ConnectionClosed, InvalidStatus

from labserver.__main__ import RedactingFormatter
from labserver.auth import TokenIssuer
from labserver.course import Crowd, Dashboard, LabClient, LabError, LabServer, Progress, start_lab, tokens
from labserver.course.exercises import lesson06 as ex
from labserver.course.source import show_source
from labserver.lab import Lab

lab = start_lab(private="this lesson (the server's log, signing key and a SIGKILL)", log_level="INFO")


async def until(condition, timeout=5.0):
    """Wait until condition() is true, looking every 20 ms (the lab answers in milliseconds)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


lab

# %% [markdown]
# The dashboard watches the lab live (lesson 00): sockets as they open and close, the user id
# -> sockets map as one row per user with a chip per socket, and every routed message. Keep
# it in view; the crowd it controls joins in part 6.

# %%
crowd = Crowd(lab, rooms=["general"], chat_rate=0.3, seed=6)
dashboard = Dashboard(lab, crowd)
await dashboard.ready()
dashboard

# %% [markdown]
# The people of this lesson sign up first, so that their user ids are 1, 2, 3 and 4 on every
# run: Alice, Bob, Carol, and Dave, who will log out.

# %%
alice, bob, carol, dave = (lab.account(name) for name in ("alice", "bob", "carol", "dave"))
{a.username: a.id for a in (alice, bob, carol, dave)}

# %% [markdown]
# ## 2. Log in over HTTP, get a JWT
#
# Logging in is an ordinary HTTP request: the password goes once, in a `POST` body, and
# the answer carries a **token**. From then on the token stands in for the password, on
# REST calls (`Authorization: Bearer ...`) and on the WebSocket handshake. (Lesson 05 is
# about why login belongs to HTTP and not to the socket.)

# %%
status, body = lab.request("POST", "/api/login", {"username": "alice", "password": "lab-password"})
token = body["token"]
print(status, body["user"])
print(token[:60] + "...")

# %% [markdown]
# The token is a **JSON Web Token** (RFC 7519) in the compact form of RFC 7515: three
# base64url strings joined by dots, a header, a payload and a signature. No key is needed
# to read the first two: base64url is an encoding, not a cipher. By hand:

# %% tags=["nbval-ignore-output"]
header_b64, payload_b64, signature_b64 = token.split(".")
for part in (header_b64, payload_b64):
    print(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode())

# %% [markdown]
# The same, with the toolkit, and the times made readable. The claims are the lab's
# (PROTOCOL.md section 1): `sub` the user id, `name`, `iat` issued at, `exp` expires at
# (an hour later, `--token-ttl`), `aud` and `iss` who it is for and from.

# %% tags=["nbval-ignore-output"]
print("\n".join(tokens.decode(token).lines()))

# %% [markdown]
# **Signed, not encrypted.** The third part is an HMAC-SHA256 of the first two under a key
# only the server holds (`HS256`). It proves the server issued these exact claims: change
# one byte and the signature no longer matches. It hides nothing: whoever holds the token
# reads it, and whoever *presents* it is Alice until `exp` (a **bearer** token). That is
# what parts 3 to 5 are about. (JWE, RFC 7516, is the encrypted kind; hardly
# anyone puts one in a WebSocket URL.)
#
# The signature is a few lines. This is the toolkit's `sign`, which does what the server's
# PyJWT does when it issues a token:

# %%
show_source(tokens.sign)

# %% [markdown]
# ## 3. Connect with the token, and with bad ones
#
# The token goes in the handshake's query string, `/ws?token=...` (a browser cannot set
# headers on a WebSocket handshake; part 4 compares the other ways). The lab checks it
# **before** it answers the upgrade: a good token gets `101 Switching Protocols` and a
# `welcome`; a bad one gets an ordinary HTTP `401`, and no socket ever opens.
#
# `handshake(token)` tries one and says what came back:

# %%
async def handshake(token: str, ws_url: str = lab.ws_url) -> str:
    """Open /ws with ?token=, and say what came back: '101 ...' with the user, or the refusal."""
    try:
        async with websockets.connect(f"{ws_url}?token={token}") as ws:
            welcome = json.loads(await ws.recv())
            return f"101 welcome, you are {welcome['user']['username']}"
    except InvalidStatus as exc:
        answer = json.loads(exc.response.body)
        return f"{exc.response.status_code} {answer['message']}"


print(await handshake(alice.token))

# %% [markdown]
# Now the forgeries. Each tries to become Bob (user 2) with Alice's token:
#
# - **tampered**: the payload says `"sub": "2"`, the signature is Alice's (it covered `"sub": "1"`);
# - **`alg: none`**: the header says the token is not signed at all, and the signature is empty.
#   RFC 7518 section 3.6 defines `none` for tokens protected some other way; a server that lets
#   the token pick its own algorithm accepts it, and anyone becomes anyone;
# - **wrong key**: a proper HS256 signature, made with a key the forger guessed;
# - **not a JWT**, and an **empty** `?token=`.

# %%
forgeries = {
    "Alice's own token": alice.token,
    "tampered: sub=2, old signature": tokens.tamper(alice.token, sub="2"),
    "alg: none, sub=2": tokens.alg_none(alice.token, sub="2"),
    "signed with a guessed key": tokens.resign(alice.token, b"guessed-key-" * 3, sub="2"),
    "not a JWT": "hello",
    "empty ?token=": "",
}
for what, forged in forgeries.items():
    print(f"{what:<32} -> {await handshake(forged)}")

# %% [markdown]
# Every forgery is refused before the upgrade, and the JSON body says why. The `alg: none`
# one is refused because the lab **pins** the algorithm: it verifies with `HS256` whatever
# the header says. This is the lab's check (PyJWT's `algorithms=[...]` is the pin; the
# claims it requires are the rest):

# %%
show_source(TokenIssuer._decode)

# %% [markdown]
# **With the key, anything goes.** HS256 is symmetric: the key that verifies a token also
# signs one. The lab keeps its key in its data directory (`jwt-secret`, readable by its owner
# only). We run this lab, so we can read it, and then mint whatever we like: a token for Bob
# that the lab accepts as Bob, and one that expired a minute ago, refused for that reason alone.

# %%
key = bytes.fromhex((lab.data_dir / "jwt-secret").read_text())
print("sub=2, signed with the lab's key:", await handshake(tokens.resign(alice.token, key, sub=str(bob.id))))
print("exp a minute ago, same key:      ", await handshake(tokens.resign(alice.token, key, exp=int(time.time()) - 60)))

# %% [markdown]
# So the key must never reach a client, a repository or a log. A service that only needs to
# *verify* tokens is better served by an asymmetric algorithm (RS256, EdDSA): it gets the
# public key, which cannot sign. Part 5 shows what expiry does to a socket that is already open.
#
# ## 4. Where the token rides, and why it must stay out of logs
#
# A WebSocket can carry the token three ways, and the lab takes all three
# (PROTOCOL.md section 4):
#
# | | how | checked | the catch |
# |---|---|---|---|
# | query string | `/ws?token=eyJ...` | before the upgrade: 401 | the URL is written to access logs by proxies, load balancers and servers |
# | first message | `/ws`, then `{"type": "auth", "token": ...}` | after the upgrade: close 1008 | an unauthenticated socket exists for a moment: it gets a deadline (`--auth-timeout`, 5 s) |
# | cookie | `lab_session`, HttpOnly, sent by the browser | before the upgrade: 401 | any page can start the handshake: the Origin check (lesson 02) is what protects it |
#
# **First-message auth.** The upgrade happens with no credentials at all, and the first
# message must be `auth`:

# %%
async with websockets.connect(lab.ws_url) as ws:  # no ?token=: the URL holds no secret
    await ws.send(json.dumps({"type": "auth", "token": alice.token, "ref": "a1"}))
    print(json.loads(await ws.recv()))
    print(json.loads(await ws.recv())["type"], "as", alice.username)

# %% [markdown]
# The socket was open (101) before the server knew who was on it, so the refusal is now a
# close frame, not a status: a first message that is not `auth` gets an error and **1008**
# (RFC 6455 section 7.4.1, *policy violation*). Staying silent ends the same way after
# `--auth-timeout` seconds.

# %%
async with websockets.connect(lab.ws_url) as ws:
    await ws.send(json.dumps({"type": "join", "room": "general", "ref": "j1"}))
    print(json.loads(await ws.recv()))
    try:
        await ws.recv()
    except ConnectionClosed:
        print("closed:", ws.close_code, ws.close_reason)

# %% [markdown]
# **Tokens in logs.** A token in a URL travels well beyond the server: every proxy and load
# balancer on the way writes the request line to its access log, and a log is read by far
# more people, tools and backups than the database of sessions. The lab keeps its own log
# clean in two ways (PROTOCOL.md section 2). Its access log writes the path **without the
# query string**: here are the lines of the handshakes above (a WebSocket's line is written
# when it closes), with their times cut off:

# %%
ws_lines = lambda: [line for line in lab.logs if '"GET /ws"' in line]  # noqa: E731
await until(lambda: len(ws_lines()) >= 9)  # the 9 handshakes of parts 3 and 4
for line in ws_lines()[-4:]:
    print(line.split(" INFO ")[1].rsplit(" ", 1)[0])

# %% [markdown]
# And every log line, tracebacks included, goes through a formatter that replaces anything
# that looks like a credential (a JWT, a `token=` value, a `Bearer` header) with
# `<redacted>`. aiohttp logs a malformed request with its raw request line, so this is
# needed even with the access log fixed. Here it is on a line with Alice's real token in it:

# %%
record = logging.LogRecord("aiohttp.server", logging.ERROR, "", 0,
                           f"Error handling request: GET /ws?token={alice.token} HTTP/1.1", None, None)
print(RedactingFormatter("%(levelname)s %(name)s: %(message)s").format(record))

# %% [markdown]
# First-message auth keeps the token out of every URL; the lab's own logs are clean either
# way, but a proxy in front of it is not the lab's to configure. (A WebSocket URL does not
# enter the browser's history: it is not a page navigation.) Question 3 has you write such a
# client.
#
# ## 5. A token that expires under an open socket
#
# The handshake checks the token once. A WebSocket can then stay open for hours, long
# after the token expired, or after the user logged out. A server needs a **policy** for
# that, and the notes have none. Common choices: ignore it (the socket outlives its
# credentials: the classic bug), close the socket when the token expires, or let the
# client send a fresh token over the open socket before then. The lab's policy is the
# second one: it checks every 0.25 s and closes with **1008** `token expired`; the client
# logs in again, reconnects and resumes.
#
# To watch it without waiting an hour, start a second, short-lived lab whose tokens live
# two seconds (`--token-ttl 2`). `LabServer` is what `start_lab()` uses underneath.

# %%
short = LabServer(token_ttl=2).start()
erin = short.account("erin")
exp = tokens.decode(erin.token).payload["exp"]
ws = await websockets.connect(f"{short.ws_url}?token={erin.token}")
print(json.loads(await ws.recv())["type"], "- the socket is open, with a token that lives 2 s")
try:
    async with asyncio.timeout(5):
        await ws.recv()  # nothing else comes: wait for the close
except ConnectionClosed:
    pass
closed_at = time.time()
print("closed:", ws.close_code, ws.close_reason)

# %% tags=["nbval-ignore-output"]
print(f"exp = {exp}; closed {closed_at - exp:+.2f} s from exp (expected 0 to +0.25 s: the lab checks every 0.25 s)")

# %% [markdown]
# The same token at a new handshake is refused before the upgrade, with the reason. A
# new login gives a new token that works:

# %%
print("expired token:", await handshake(erin.token, short.ws_url))
print("after a login:", await handshake(short.account("erin").token, short.ws_url))
short.close()

# %% [markdown]
# **Logout** is the same problem from the other side: the token has not expired, but the
# user wants every session ended. The lab revokes every token issued so far and closes every
# open socket of the user with 1008 `logged out`. Dave has two tabs:

# %%
dave_tabs = [await websockets.connect(f"{lab.ws_url}?token={dave.token}") for _ in range(2)]
for tab in dave_tabs:
    await tab.recv()  # the welcome
print(lab.request("POST", "/api/logout", token=dave.token))
for tab in dave_tabs:
    await tab.wait_closed()
    print("tab closed:", tab.close_code, tab.close_reason)
print("old token:", await handshake(dave.token))

# %% [markdown]
# ## 6. The user id -> sockets map
#
# The notes' §12 has it right: `socket.id` is "unique per connection, changes on reconnect,
# NOT the same as userId". A user is not a socket: Alice has the chat open on her laptop and
# her phone, Bob in two tabs and on his phone. So the server keeps a map from each user id
# to the **set** of that user's open sockets, next to a map from each room to its member
# sockets and one from each socket id to its connection:

# %%
SVG(filename="../images/06_routing.svg")

# %% [markdown]
# The notes' §15 says "Mapping userId → socket", singular. Written that way,
# `users[userId] = socket.id`, each new tab overwrites the last one, and a message "to Alice"
# reaches one of her devices. Let's build the real thing on the lab. A crowd of 8 joins
# `general` and chats; the dashboard (the same one as in part 1) shows one row per user with a
# chip per socket.

# %%
await dashboard.grow(8)
dashboard

# %% [markdown]
# Now the six devices of the figure. Each records what it receives.

# %%
devices = {
    "alice laptop": await LabClient.connect(lab, alice),
    "alice phone": await LabClient.connect(lab, alice),
    "bob tab 1": await LabClient.connect(lab, bob),
    "bob tab 2": await LabClient.connect(lab, bob),
    "bob phone": await LabClient.connect(lab, bob),
    "carol laptop": await LabClient.connect(lab, carol),
}
inbox = {name: [] for name in devices}
for name, device in devices.items():
    device.on("*", inbox[name].append)
for name in ("alice laptop", "bob tab 2", "carol laptop"):
    await devices[name].join("general")
print({name: device.user["id"] for name, device in devices.items()})

# %% [markdown]
# The dashboard's model of the server (`dashboard.state`, rebuilt from `/observe`) holds the
# same map the server does. Alice has two sockets, Bob three, each a different socket id;
# the crowd's users one each:

# %%
sockets_of = dashboard.state.user_sockets  # user id -> set of socket ids
await until(lambda: len(sockets_of.get(bob.id, ())) == 3)
for user in (alice, bob, carol):
    n = len(sockets_of[user.id])
    print(f"user {user.id} {user.username:<6} -> {n} socket{'s' if n != 1 else ''}")

# %% tags=["nbval-ignore-output"]
{user.username: sorted(sockets_of[user.id]) for user in (alice, bob, carol)}

# %% [markdown]
# ## 7. Routing: to a room, to every tab of a user, to one socket
#
# Every message the lab routes has a **target** (PROTOCOL.md section 10): a room, a DM
# between two users, a list of users, a topic, or one socket. Delivering is a lookup in one
# of the maps, then one encoded frame written to each socket found:

# %%
show_source(Lab.deliver)

# %% [markdown]
# `who_got(marker)` lists which of the six devices received a message containing `marker`.
# A ping on each device first acts as a fence: the pong comes after anything routed to that
# socket before it (one TCP connection delivers in order), so no guessing how long to wait.

# %%
async def who_got(marker: str) -> str:
    await asyncio.gather(*(device.send("ping") for device in devices.values()))
    return "  ".join(f"{name}: {'yes' if any(marker in json.dumps(m) for m in inbox[name]) else '-'}"
                     for name in devices)


await devices["carol laptop"].chat("general", "hello room (carol)")
print("chat to #general:   ", await who_got("hello room (carol)"))

# %% [markdown]
# A **room** reaches the sockets that joined it: Alice's laptop, Bob's tab 2, Carol, and the
# crowd, not every device of the users in it. A **direct message** reaches every socket of
# *both* users: all of Alice's devices, and Bob's other tabs too, so each of his screens
# shows the conversation he is having. Carol gets nothing:

# %%
await devices["bob tab 1"].dm(alice.id, "psst, alice (bob)")
print("dm bob -> alice:    ", await who_got("psst, alice (bob)"))

# %% [markdown]
# And sometimes **one socket**: a call rings on the device that was called, not on all of
# them. The lab's WebRTC signaling relay (`signal`, lesson 09) takes a `to_socket`:

# %%
await devices["bob phone"].send("signal", to=alice.id, kind="offer", data={"call": "bob phone -> alice phone"},
                                to_socket=devices["alice phone"].socket_id)
print("signal to one socket:", await who_got("bob phone -> alice phone"))

# %% [markdown]
# What the one-socket map of the notes would have done with that DM: built socket after
# socket, `users[userId] = socket.id` keeps the one it saw last.

# %%
singular = {}
for socket_id, info in dashboard.state.sockets.items():  # in the order the sockets opened
    singular[info["user"]] = socket_id
device_of = {device.socket_id: name for name, device in devices.items()}
print(f"users[alice] = {device_of[singular[alice.id]]}'s socket: the DM would have reached 1 of her "
      f"{len(sockets_of[alice.id])} devices")

# %% [markdown]
# The dashboard's flow shows each routed message with its target and how many sockets the
# server wrote it to (the last three, the crowd's chatter left out):

# %%
await until(lambda: any(e["type"] == "signal" for e in dashboard.state.flow))
ours = [e for e in dashboard.state.flow if e["from"] in ("alice", "bob", "carol")]
for entry in ours[-3:]:
    print(f"{entry['type']:<7} {entry['to_kind']:<7} {entry['to_name'] if entry['to_kind'] != 'socket' else 's_...':<8}"
          f" -> {entry['recipients']} socket{'s' if entry['recipients'] != 1 else ''}")

# %% [markdown]
# The map changes with every connection. Bob puts his phone away: its socket leaves his set,
# and he stays online through his two tabs. The server does this in a `finally` that runs
# however the socket ended (lesson 04 shows the leak when it does not).

# %%
await devices["bob phone"].close()
await until(lambda: len(sockets_of.get(bob.id, ())) == 2)
print(f"bob: {len(sockets_of[bob.id])} sockets, online: {bob.id in dashboard.state.online}")

# %% [markdown]
# **One process, one map.** All of this works because one process holds every socket. Run
# two server processes behind a load balancer and Bob's phone may be connected to the other
# one: no lookup here finds it. The lab already routes every message through a **broker**,
# even alone (`Lab.deliver` above is what the broker calls, in every process); lesson 08
# swaps the in-memory broker for Redis pub/sub, the notes' last topic.
#
# ## 8. Who may join or read what
#
# The user id on a socket comes from its token, never from what the client writes. A chat
# that claims to be from Alice is stored as coming from its real sender:

# %%
ack = await devices["carol laptop"].send("chat", room="general", text="I am alice, honest",
                                         **{"from": {"id": alice.id, "username": "alice"}})
status, page = lab.request("GET", f"/api/rooms/general/messages?after={ack['seq'] - 1}", token=carol.token)
print(page["messages"][0]["from"], page["messages"][0]["text"])

# %% [markdown]
# Alice and Bob's DMs live in the room `dm:1:2`, which only they may read. Carol is refused,
# over WebSocket (a `resume` would replay its history) and over HTTP alike:

# %%
dm_room = f"dm:{alice.id}:{bob.id}"
try:
    await devices["carol laptop"].send("resume", room=dm_room, after=0)
except LabError as exc:
    print("WebSocket:", exc)
status, answer = lab.request("GET", f"/api/rooms/{dm_room}/messages", token=carol.token)
print("HTTP:     ", status, answer["message"])
status, answer = lab.request("GET", f"/api/rooms/{dm_room}/messages", token=bob.token)
print("HTTP, bob:", status, [m["text"] for m in answer["messages"]])

# %% [markdown]
# A **private room** works the same way: Alice creates `club` for herself and Bob, and
# from then on only members may join, resume, read its history or post in it.

# %%
print(lab.request("POST", "/api/rooms", {"name": "club", "members": [bob.id]}, token=alice.token))
try:
    await devices["carol laptop"].join("club")
except LabError as exc:
    print("carol joins club:", exc)
print("carol reads club: ", lab.request("GET", "/api/rooms/club/messages", token=carol.token))
print("bob joins club:   ", (await devices["bob tab 1"].join("club"))["members"])

# %% [markdown]
# The rule lives in one place (`Lab.read_refusal`), and both halves ask it, so the
# WebSocket and the HTTP API cannot disagree about who may read what.

# %%
show_source(Lab.read_refusal)

# %% [markdown]
# ## 9. Persistence: stored with a sequence number, then acknowledged
#
# A chat is acknowledged with its room's **sequence number**: 1, 2, 3... per room, no gaps,
# never reused. The lab writes the message to SQLite (and waits for the commit) *before* it
# broadcasts it, and acknowledges only after that (the session sends the ack when
# `post_chat` returns). The notes list "chat persistence" as a topic; the order is the whole point:

# %%
show_source(Lab.post_chat)

# %% [markdown]
# `_store` is where the write happens. Its `if` is a switch that part 12 turns on, to see
# what the other order costs:

# %%
show_source(Lab._store)

# %% [markdown]
# A writer posts five lines to the room `story`. Each ack carries the line's seq:

# %%
writer = await LabClient.connect(lab, lab.account("writer"))
await writer.join("story")
for i in range(1, 6):
    ack = await writer.chat("story", f"line {i}")
print("last ack:", ack)

# %% [markdown]
# History is plain HTTP: `GET /api/rooms/{room}/messages?after=N` returns what came after
# seq N, oldest first.

# %%
status, page = lab.request("GET", "/api/rooms/story/messages?after=2", token=bob.token)
print(status, [(m["seq"], m["text"]) for m in page["messages"]], "last_seq:", page["last_seq"])

# %% [markdown]
# ## 10. Disconnect, let messages pass, resume
#
# A reader follows `story` on its own `websockets` connection and remembers the last seq it
# saw. It disconnects; four lines are posted while it is away; it reconnects and sends
# `{"type": "resume", "room": "story", "after": <last seq seen>}`. The lab replays exactly the
# missed messages, in order, then answers `resumed`, and everything after that arrives live
# (PROTOCOL.md section 7).

# %%
reader = lab.account("reader")


async def chats_until(ws, stop_type: str) -> list[int]:
    """The seqs of the story's chats received until a message of type stop_type."""
    seqs = []
    while (message := json.loads(await ws.recv()))["type"] != stop_type:
        if message["type"] == "chat" and message["room"] == "story":
            seqs.append(message["seq"])
    return seqs


async with websockets.connect(f"{lab.ws_url}?token={reader.token}") as ws:
    await ws.recv()  # welcome
    await ws.send(json.dumps({"type": "resume", "room": "story", "after": 0}))  # from the start
    seen = await chats_until(ws, "resumed")
print("before the break:", seen)

for i in range(6, 10):
    await writer.chat("story", f"line {i}")  # nobody is reading

async with websockets.connect(f"{lab.ws_url}?token={reader.token}") as ws:
    await ws.recv()
    await ws.send(json.dumps({"type": "resume", "room": "story", "after": seen[-1]}))
    missed = await chats_until(ws, "resumed")
    await writer.chat("story", "line 10")  # acked once it is written to every socket in the room
    await ws.send(json.dumps({"type": "ping"}))  # the pong comes after line 10 on this connection
    live = await chats_until(ws, "pong")
print("replayed:", missed, "then live:", live)

# %% [markdown]
# Exactly 6 to 9, then 10 live: nothing missed, nothing twice. A `join` instead of the
# `resume` would have brought only what came next (10), and resuming from 0 every time would
# bring duplicates. `LabClient` (lesson 04) does this for you after every reconnect;
# question 6 has you write it.
#
# ## 11. SIGKILL mid-conversation
#
# Now the promise behind the ack. Ten users talk in `durable`, each waiting for the ack of one
# message before sending the next (within the lab's rate limit of 20 messages a second per
# socket). After 1.5 s the server is killed with **SIGKILL**: no shutdown, no flush, like a
# power cut. Then it is started again on the same port and data directory, and the history
# is compared with what was acknowledged.

# %%
talkers = [await LabClient.connect(lab, lab.account(f"talker{i}")) for i in range(10)]


async def history(room: str) -> dict[int, str]:
    """seq -> text of every message of `room` the server has, page after page."""
    stored, after = {}, 0
    while True:
        status, page = await asyncio.to_thread(
            lab.request, "GET", f"/api/rooms/{room}/messages?after={after}&limit=1000", None, alice.token)
        stored.update({m["seq"]: m["text"] for m in page["messages"]})
        if not page["messages"] or page["messages"][-1]["seq"] >= page["last_seq"]:
            return stored
        after = page["messages"][-1]["seq"]


async def talk_then_kill(room: str, seconds: float = 1.5) -> dict[int, str]:
    """The talkers chat in `room` until the lab is SIGKILLed; then it restarts. Returns seq -> text acked."""
    acked = {}

    async def talk(talker):
        for i in range(1, 10**6):
            ack = await talker.chat(room, f"{talker.name} #{i}")
            acked[ack["seq"]] = f"{talker.name} #{i}"
            await asyncio.sleep(0.07)

    for talker in talkers:
        await talker.join(room)
    tasks = [asyncio.create_task(talk(t)) for t in talkers]
    await asyncio.sleep(seconds)
    lab.kill()  # SIGKILL: the process gets no chance to do anything
    await asyncio.gather(*tasks, return_exceptions=True)  # each talker's last chat never got its ack
    lab.start()
    await until(lambda: all(t.connected for t in talkers), timeout=15)
    return acked


acked = await Progress.track(talk_then_kill("durable"), "talking, then SIGKILL and restart", seconds=3)
stored = await history("durable")
lost = [seq for seq, text in acked.items() if stored.get(seq) != text]
print(f"acknowledged messages lost in the SIGKILL: {len(lost)}")

# %% tags=["nbval-ignore-output"]
print(f"{len(acked)} messages acknowledged in 1.5 s, {len(stored)} in the history after the restart, "
      f"{len(lost)} acknowledged ones lost (expected 0)")

# %% [markdown]
# Nothing acknowledged was lost. The history may even hold a message or two *more* than were
# acknowledged: stored, but the process died before their acks went out. Their senders
# never heard "sent" and would retry; that is the safe side of the line (a retry can store a
# message twice: the usual cure is a client-chosen message id that the server deduplicates on,
# which the lab does not have). The crowd and the dashboard reconnected by
# themselves; the talkers resumed `durable` from the last seq they had seen.
#
# ## 12. What "persist after broadcast" would have lost
#
# The tempting order is the other one: broadcast, ack, and write to the database in the
# background, in batches, because the disk is slow. The lab has it, behind a switch that is
# off by default: `persist_after_broadcast` acknowledges at once and commits at most once a
# second. Same conversation, same SIGKILL:

# %%
for attempt in range(3):  # a kill a few ms after a commit loses (almost) nothing: then once more
    lab.set_switches(persist_after_broadcast=True)
    room = f"durable{attempt + 2}"
    acked = await Progress.track(talk_then_kill(room), "talking, then SIGKILL and restart", seconds=3)
    stored = await history(room)
    lost = sorted(seq for seq, text in acked.items() if stored.get(seq) != text)
    if lost:
        break
print(f"acknowledged messages lost: {'some' if lost else 'none, three times in a row'}")
print("the switch after the restart:", lab.switches()["persist_after_broadcast"])

# %% tags=["nbval-ignore-output"]
rate = len(acked) / 1.5
print(f"{len(acked)} acknowledged, {len(lost)} lost: seq {lost[0] if lost else '-'} to {lost[-1] if lost else '-'} "
      f"(expected up to one commit interval: about {rate:.0f} at {rate:.0f} messages/s)")

# %% [markdown]
# Every one of those messages was acknowledged to its sender *and shown to everyone in the
# room*, and then it was gone. It is worse than a gap: the room's counter went back to the
# last committed seq, so the next messages get the lost seqs again, and a client that
# saw seq N before the crash now resumes "after N" in a room that reused N. The talkers
# noticed: their `resume` was answered `resync` (`ahead_of_server`), the server knowing
# less than they did.

# %%
ack = await talkers[0].chat(room, "first message after the restart")
print("the next message got a seq that named a lost message before the crash:", ack["seq"] in lost)
print("the talkers' resumes were answered:", dict(collections.Counter(r["reason"] for t in talkers for r in t.resyncs)))

# %% tags=["nbval-ignore-output"]
print(f"seq {ack['seq']}: {acked.get(ack['seq'])!r} before the crash, 'first message after the restart' now")

# %% [markdown]
# The switch lives in the server process, so the restart put it back to its default: the lab
# persists before it acknowledges again. A write before each ack is cheaper than it sounds:
# the lab's store groups the messages that arrive together into one commit (group commit,
# `labserver/store.py`), so a busy room pays one fsync per batch, not per message.
#
# ## 13. Check yourself
#
# `ex.qN.hint()` gives a hint, `ex.qN.solution()` the answer with an explanation.
#
# **Question 1.** A token in a log file.

# %%
ex.q1

# %%
answer = ...
ex.q1.check(answer)

# %% [markdown]
# **Question 2.** A status or a close code?

# %%
ex.q2

# %%
answer = ...
ex.q2.check(answer)

# %% [markdown]
# **Question 3: no token in the URL.** Write a client with `websockets` that authenticates
# with its first message instead of `?token=`. The check runs it through a frame tap (lesson
# 03) that keeps your handshake's request line and headers. Start the cell with `import json`
# and `import websockets`.

# %%
ex.q3

# %%
async def say_quietly(ws_url: str, token: str, room: str, text: str) -> None:
    ...  # connect to ws_url as it is, send auth first, read the welcome, join, chat with a ref, wait for its ack


await ex.q3.check_async(say_quietly)

# %% [markdown]
# **Question 4.** Build the map from the snapshot `/observe` gives:
# `{"socket_id": "s_a1", "user": {"id": 1, "username": "ann"}, "rooms": ["general"]}` per socket.

# %%
def user_sockets(sockets: list[dict]) -> dict[int, set[str]]:
    ...


ex.q4.check(user_sockets)

# %% [markdown]
# **Question 5: route it like the lab.** Your function gets a target and the snapshot's
# sockets and returns the socket ids to write to. The check runs it on a live crowd, with
# extra tabs and outsiders, sends the four messages, and compares with who received them.

# %%
ex.q5

# %%
def recipients(target: dict, sockets: list[dict]) -> set[str]:
    ...


await ex.q5.check_async(recipients)

# %% [markdown]
# **Question 6: cut twice, miss nothing.** Write a follower with `websockets` that delivers
# every chat of a room from seq 1 to `last` exactly once, in order, while the lab cuts its
# connection twice.

# %%
ex.q6

# %%
async def follow(ws_url: str, token: str, room: str, last: int, deliver) -> None:
    ...  # connect, resume after the last seq delivered, deliver chats; on ConnectionClosed, go round again


await ex.q6.check_async(follow)

# %% [markdown]
# **Question 7.** Acknowledged, then lost.

# %%
ex.q7

# %%
answer = ...
ex.q7.check(answer)

# %% [markdown]
# ## Summary
#
# - **Log in over HTTP, connect with the token.** The lab checks a token in `?token=` (or the
#   `lab_session` cookie) before the upgrade: a missing, tampered, `alg: none`, wrongly signed,
#   expired or revoked token gets **401** with the reason, and no socket opens. First-message
#   `auth` checks after the upgrade, so its refusal is a close, **1008**.
# - **A JWT is signed, not encrypted**: anyone can read its claims, nobody can change them
#   without the key, and whoever holds it *is* the user until `exp`. Keep it out of URLs that
#   get logged (first-message auth, the HttpOnly cookie), and redact logs.
# - **A token can expire under an open socket.** The handshake checks once; the lab closes
#   the socket with 1008 `token expired` when its token runs out, and every tab with 1008
#   `logged out` on logout.
# - **User id -> a *set* of sockets.** Route a room to the sockets that joined it, a DM to
#   every socket of both users, a notification to every socket of a user, a call to one
#   socket. One process's maps see only its own sockets: lesson 08's broker.
# - **Persist, then broadcast, then ack**, with a per-room sequence number. `resume` after
#   the last seq seen gets exactly the missed messages; a SIGKILL loses nothing
#   acknowledged. Acknowledging before the commit lost up to a second of "sent" messages,
#   and handed their seqs out again.
#
# **What the notes say, and what to add**
#
# - §15 *"Mapping userId → socket"*: a user has **several** sockets (tabs, devices); the map
#   is user id -> set of sockets. A one-socket map delivers to one device (part 7).
# - §12 *"socket.id ... NOT same as userId"*: right, and it is why routing is by user id and
#   only calls go to one socket id. (Socket.IO 4.6+'s connection state recovery keeps the id
#   across a short disconnect: lesson 04. Key nothing durable by it either way.)
# - §15 *"WebSocket authentication (JWT)"*: a JWT is **signed, not encrypted**; checking it at
#   the handshake is only half of it: an open socket needs an expiry and logout policy (part 5),
#   and a token in the query string ends up in other people's logs (part 4).
# - §15 *"Chat persistence"*: what matters is the **order**: written before it is
#   acknowledged. "Save it to the database" after the broadcast loses acknowledged messages
#   (part 12).
# - §15 *"Scaling with Redis"*: Redis pub/sub carries messages between processes, it does not
#   store them; the database stays the source of truth for history and resume (lesson 08).
#
# Next: lesson 07, one event loop and thousands of sockets.

# %%
await dashboard.stop()  # first, so that it keeps its last picture
for client in [*devices.values(), writer, *talkers]:
    await client.close()
await crowd.stop()

# %% [markdown]
# ← Previous: [05 · Social features over a hybrid REST + WebSocket API](05_social_features.ipynb) · [Course index](index.ipynb) · Next: [07 · One event loop, thousands of sockets](07_one_loop_many_sockets.ipynb) →
