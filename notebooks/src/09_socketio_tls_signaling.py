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
# # 09 · Socket.IO's extras, wss:// over TLS, and WebRTC signaling
#
# The course notes were written by someone who used **Socket.IO** on Node. This lesson
# looks at what that layer adds over a plain WebSocket, what it *is* on the wire (its own
# protocol, which a plain WebSocket client cannot speak), and how the pieces of a real
# deployment fit: **wss://** (WebSocket over TLS) and the proxy that usually terminates it,
# and **WebRTC signaling**, where the WebSocket carries the call set-up and never the media.
#
# **In this lesson you will**
#
# 1. line up what Socket.IO adds (reconnection, heartbeats, events with acknowledgements, rooms,
#    namespaces, connection state recovery) with how the lab's own protocol does the same,
# 2. run the same small chat built with **python-socketio** on aiohttp, and watch a client's
#    connection through a frame tap: an HTTP long-polling start, the upgrade, and packets
#    like `0{...}`, `40`, `42["chat",...]`, `2`/`3`,
# 3. speak Engine.IO by hand over plain HTTP, and see a plain WebSocket client fail against
#    Socket.IO, and exactly why,
# 4. state Node's `http.createServer(app)` + Socket.IO correctly, next to python-socketio's
#    `AsyncServer.attach(app)` and `ASGIApp`,
# 5. start the lab with TLS on a certificate made on the spot, connect with verification,
#    fail against the wrong CA and with `ws://` on the TLS port, and compare what a network
#    observer sees of `ws://` and of `wss://`,
# 6. see where TLS is terminated in production and what the proxy must forward,
# 7. relay a WebRTC offer, answer and ICE candidates through the lab, on the dashboard,
# 8. speak Socket.IO from a plain WebSocket yourself, and signal a call, both checked live.
#
# **Notes sections covered:** §5 *Why WebSocket is perfect for social media* ("voice/video
# signaling: WebSocket used for signaling, actual media uses WebRTC": part 10), §7 *Important
# WebSocket properties* ("secure version: wss://": part 7), §8 *Common misconceptions*
# ("WebSocket is insecure / wss:// is secure": parts 7 and 8), §9 *Socket.IO (what we used)*
# (parts 2 to 5), §11 *Why `http.createServer(app)` is required* (part 6), §12 *Socket
# connection lifecycle* ("`socket.id` changes on reconnect": part 5). Where the notes are short
# or wrong, the lesson says so and shows why; the summary lists the corrections.

# %% [markdown]
# ## 1. Start the lab
#
# The lab as always, and its dashboard, with `ping_interval=1` so that its heartbeat shows
# within a second in part 3. Part 10 sends WebRTC signaling through it; the dashboard shows
# those messages flowing.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import json
import ssl
import tempfile
import urllib.request

import socketio
import websockets
from IPython.display import SVG

from labserver.course import Dashboard, LabClient, LabServer, start_lab
from labserver.course.exercises import lesson09 as ex
from labserver.course.socketio_chat import SocketIOChat, engineio_by_hand, make_app, plain_websocket_attempts
from labserver.course.source import show_source
from labserver.course.tls import RawTap, local_certificate, printable
from labserver.tap import FrameTap

lab = start_lab(ping_interval=1)


async def until(condition, timeout=5.0):
    """Wait until condition() is true, looking every 20 ms."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


lab

# %%
dashboard = Dashboard(lab)
await dashboard.ready()
dashboard

# %% [markdown]
# ## 2. What Socket.IO adds, next to the lab's own protocol
#
# The notes (§9) list what Socket.IO adds: "auto reconnection, heartbeats, event system, rooms &
# namespaces, better reliability". Every one of these is something an application protocol on a
# plain WebSocket must do, and the lab's protocol (PROTOCOL.md) does each of them its own way:
#
# | Socket.IO gives you | How it does it | The lab's own protocol |
# |---|---|---|
# | automatic reconnection | the client retries with backoff and randomization (`reconnection_delay`, `randomization_factor`) | `LabClient` reconnects with full jitter (lesson 04) |
# | heartbeats | Engine.IO packets `2` (ping, from the server) and `3` (pong), as text *messages* | RFC 6455 Ping/Pong *control frames* every `--ping-interval` (lessons 00, 04) |
# | an event system | `emit("chat", data)`: a packet `42["chat", data]` | `{"type": "chat", ...}`: the `type` field is the event name |
# | acknowledgements | `emit(..., callback=)` / `call()`: an ack id in the packet, `421[...]` answered `431[...]` | a `ref` in the message, answered by an `ack` with the same `ref` |
# | rooms | `enter_room(sid, "lobby")`, `emit(..., room=)`: server-side only | `join` / `leave`, and the server routes by room (lesson 06) |
# | namespaces | `/chat`, `/admin` multiplexed on one connection (`40/admin,`) | separate endpoints, `/ws` and `/observe` |
# | connection state recovery (Node, 4.6+) | the client reconnects with its private id and last offset; the server gives the **same** `socket.id` and replays what was missed | a new socket id, the same user id, and `resume` after the last seq (lesson 06) |
#
# What it costs: Socket.IO is **its own protocol** on top of WebSocket (and of HTTP long
# polling). Both ends must speak it, the same version, and every message carries its framing.

# %% [markdown]
# ## 3. The same chat with python-socketio
#
# `SocketIOChat` starts a second server in a process of its own (as the lab is), built with
# python-socketio on aiohttp: users connect with a username, `join` a room, and `chat`; a chat
# is acknowledged with its sequence number and emitted to the room's other members. Here it is,
# every line of it. `sio.attach(app)` adds Socket.IO's routes to an ordinary aiohttp
# application, which also answers plain HTTP on `/`: one port for both.

# %%
show_source(make_app)

# %% [markdown]
# `ping_interval=1` makes its heartbeat visible in a few seconds (the default is 25 s).

# %%
chat = SocketIOChat(ping_interval=1, ping_timeout=1).start()
print(chat)

# %% [markdown]
# A python-socketio client, through a frame tap (lessons 03, 05) so that we see the wire. The
# client does what a browser's `io(url)` does: it asks for `/socket.io/` (not `/ws`), connects
# with `auth`, and then emits events. `sio.call()` is an emit that waits for the server's
# acknowledgement. (`handle_sigint=False`: the client must not take over the kernel's Ctrl-C.)

# %% tags=["nbval-ignore-output"]
tap = await FrameTap("127.0.0.1", chat.port).start()
sio = socketio.AsyncClient(handle_sigint=False, reconnection=False)
await sio.connect(tap.url, auth={"username": "ann"})
joined = await sio.call("join", "lobby")
acked = await sio.call("chat", {"room": "lobby", "text": "hello from python-socketio"})
print("transport:", sio.transport())
print("join ack:", joined)
print("chat ack:", acked)

# %% [markdown]
# Let two heartbeats pass, then read what the tap saw: the HTTP heads, then every frame.

# %% tags=["nbval-ignore-output"]
await asyncio.sleep(2.2)
await sio.disconnect()
await until(lambda: any(f.frame.opcode.name == "CLOSE" for f in tap.frames))
for head in tap.heads:
    print(head.describe().split("&t=")[0])
print()
for captured in tap.frames:
    frame = captured.frame
    text = frame.payload.decode(errors="replace") if frame.opcode.name == "TEXT" else frame.opcode.name
    print(f"{captured.direction.arrow} {text}")
await tap.close()

# %% [markdown]
# Read it top to bottom:
#
# 1. **`GET /socket.io/?EIO=4&transport=polling`, 200.** The session starts over **HTTP long
#    polling**, not WebSocket. Its answer (not shown by the tap, which keeps heads only; part 4
#    shows it) is the Engine.IO *open* packet `0{"sid": ..., "upgrades": ["websocket"], "pingInterval": ...}`.
# 2. **`GET /socket.io/?EIO=4&transport=websocket&sid=...`, 101.** Then the **upgrade**, the same
#    RFC 6455 handshake as the lab's, on a URL that names the Engine.IO session.
# 3. **`2probe` / `3probe`, then `5`.** The client checks the new WebSocket works (a ping and pong
#    with the word *probe*), then `5` (*upgrade*): from now on, the WebSocket only. `6` is a *noop*
#    that ends the pending long poll.
# 4. **`40{"username":"ann"}` → `40{"sid":...}`.** An Engine.IO *message* (`4`) holding a Socket.IO
#    *CONNECT* (`0`) with the `auth` data; the answer names the Socket.IO socket id.
# 5. **`421["join","lobby"]` → `431[...]`.** Message (`4`), EVENT (`2`), ack id `1`, then the event
#    as a JSON array; the server's ACK (`3`) carries the same id.
# 6. **`2` / `3`.** Engine.IO's heartbeat: the **server** sends ping `2` every `pingInterval`, the
#    client answers pong `3`. These are ordinary text frames, not RFC 6455 Ping/Pong frames.
#
# Every Socket.IO message is a WebSocket text frame whose payload starts with these digits.
#
# The same conversation with the lab, through a tap too: one handshake, JSON messages whose
# `type` is the event and whose `ref` is the ack id, and the heartbeat as RFC 6455 **Ping/Pong
# control frames** (opcodes 0x9 and 0xA, lesson 03), which the WebSocket library answers by
# itself, below the application.

# %% tags=["nbval-ignore-output"]
ann = lab.account("ann")
async with FrameTap.for_lab(lab) as lab_tap:
    async with websockets.connect(f"{lab_tap.ws_url}?token={ann.token}") as ws:
        await ws.send(json.dumps({"type": "join", "room": "lobby", "ref": "j1"}))
        await ws.send(json.dumps({"type": "chat", "room": "lobby", "text": "hello from websockets", "ref": "c1"}))
        await asyncio.sleep(1.6)  # silence: the lab pings after ping_interval (1 s)
for head in lab_tap.heads:
    print(head.describe().split("?")[0])
print()
for captured in lab_tap.frames:
    frame = captured.frame
    text = frame.payload.decode(errors="replace")[:90] if frame.opcode.name == "TEXT" else frame.opcode.name
    print(f"{captured.direction.arrow} {text}")

# %% [markdown]
# The figure puts the two side by side:

# %%
SVG(filename="../images/09_engineio.svg")

# %% [markdown]
# ## 4. Engine.IO by hand, over plain HTTP
#
# Nothing in Socket.IO *needs* a WebSocket: the same session works over HTTP requests alone,
# which is how it got through old proxies. `engineio_by_hand` opens a session with a `GET`,
# sends packets in `POST` bodies and collects the server's packets with `GET`s (each one
# a long poll), using nothing but aiohttp.

# %%
show_source(engineio_by_hand)

# %% tags=["nbval-ignore-output"]
for exchange in await engineio_by_hand(chat.url, username="bob"):
    print(exchange.describe())

# %% [markdown]
# The Engine.IO session id (`sid` in `0{...}`, in every URL) and the Socket.IO socket id (in
# `40{"sid": ...}`) are two different ids. `1` closes the session. What a browser's
# `socket.emit("chat", {...})` becomes on the wire is exactly the `42["chat", {...}]` above.

# %% [markdown]
# ## 5. A plain WebSocket client against Socket.IO, and the reverse
#
# The notes say "Socket.IO is built on top of WebSocket". It is built on top of *Engine.IO*,
# which uses WebSocket as one of its transports. So what does a plain WebSocket client
# (`websockets`, or a browser's `new WebSocket(url)`) get from a Socket.IO server?

# %% tags=["nbval-ignore-output"]
for what, outcome in await plain_websocket_attempts(chat.url):
    print(f"{what}\n    -> {outcome}")

# %% [markdown]
# 1. At `/`, the aiohttp app answers its plain page: 200, not 101. There is no WebSocket there.
# 2. At `/socket.io/` without `EIO=4&transport=websocket`, Engine.IO refuses the request: 400.
# 3. With the right query, the WebSocket **opens**, and the server speaks first: the open packet
#    `0{...}`. A client that does not know it has to answer `40` to connect to Socket.IO.
# 4. Our plain JSON message starts with `{`, which is not an Engine.IO packet type. The server's
#    parser fails, and it drops the connection without a close frame (1006). Its log says why:

# %%
print(next(line for line in chat.logs if line.startswith("ValueError")))

# %% [markdown]
# The reverse fails too: a Socket.IO client asks for `/socket.io/`, and the lab has no such
# path (its WebSocket is `/ws`, and it speaks its own JSON, not Engine.IO):

# %%
stray = socketio.AsyncClient(handle_sigint=False, reconnection=False)
try:
    await stray.connect(lab.url, wait_timeout=3)
except socketio.exceptions.ConnectionError as exc:
    print("ConnectionError:", exc)

# %% [markdown]
# **Automatic reconnection, and socket ids (§12).** A python-socketio client reconnects by
# itself, with a randomized backoff (here 0.2 to 0.5 s, to be quick). We restart the chat server
# under it, as a deploy would, and watch its `connect` and `disconnect` events:

# %% tags=["nbval-ignore-output"]
events = []
sio = socketio.AsyncClient(handle_sigint=False, reconnection_delay=0.2, reconnection_delay_max=0.5)
sio.on("connect", lambda: events.append(("connect", sio.get_sid())))
sio.on("disconnect", lambda reason=None: events.append(("disconnect", reason)))
await sio.connect(chat.url, auth={"username": "ann"}, transports=["websocket"])
await sio.call("join", "lobby")
await asyncio.to_thread(chat.restart)
await until(lambda: len(events) >= 3, timeout=15)
for kind, detail in events:
    print(f"{kind:10} {detail}")
print("same socket id after the reconnection:", events[0][1] == events[2][1])
print("a chat to lobby now:", await sio.call("chat", {"room": "lobby", "text": "still there?"}))
await sio.disconnect()

# %% [markdown]
# The client came back on its own, with a **new** socket id, as the notes say (§12), and
# **without its room**: rooms live on the server, and this server's memory was wiped (a
# plain disconnect loses them too). A Socket.IO app re-joins in its `connect` handler; the lab's
# `LabClient` re-joins and `resume`s after the last seq it saw (lessons 04, 06).

# %% [markdown]
# Since **Socket.IO 4.6 on Node**, *connection state recovery* changes that: with
# `new Server(httpServer, { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 } })`
# the server gives each socket a private id (`pid`) in its CONNECT answer, the client reconnects
# with that `pid` and the offset of the last event it received, and, if the disconnect was short
# enough, the server restores the **same `socket.id`**, its rooms, and replays the missed events
# (`socket.recovered` is `true`). The notes are dated there. python-socketio 5.18 (installed here)
# does not implement it: its CONNECT answer in part 3 is `40{"sid":...}` with no `pid`. The lab's way
# is the one lesson 06 taught: the socket id is new, the *user* id is the same, and `resume`
# replays what was missed by sequence number. Either way, key nothing durable by socket id.

# %% [markdown]
# ## 6. One port for HTTP and WebSocket: Node and Python
#
# The notes (§11) say "WebSocket upgrades happen at the HTTP server level, not at Express
# middleware level. Therefore `app.listen()` ❌ `server.listen()` ✅". Stated correctly:
#
# ```js
# const app = express();                        // a request handler, not a server
# const server = http.createServer(app);        // the http.Server that owns the TCP port
# const io = new Server(server);                // Socket.IO hooks that server's 'request' and 'upgrade'
# server.listen(3000);                          // REST and Socket.IO on port 3000
# ```
#
# `app.listen(3000)` *also* returns an `http.Server` (it calls `http.createServer(this)`), so
# `const server = app.listen(3000); const io = new Server(server);` works just as well. The bug the
# rule prevents is **two servers**: `new Server(http.createServer(app))` on one, `app.listen()` on
# another; the port's server never sees Socket.IO (lesson 02 showed this with aiohttp).
#
# In Python, python-socketio does the same two ways:
#
# ```python
# sio = socketio.AsyncServer(async_mode="aiohttp")
# app = web.Application()            # your REST routes
# sio.attach(app)                    # adds /socket.io/ to the same app: one port (this lesson's chat)
#
# sio = socketio.AsyncServer(async_mode="asgi")
# app = socketio.ASGIApp(sio, other_asgi_app=fastapi_app)   # /socket.io/ here, the rest to FastAPI
# ```
#
# The chat of this lesson answers both on one port:

# %%
with urllib.request.urlopen(chat.url + "/") as response:
    print(response.status, response.read().decode().strip())
print("the chat's exit code:", chat.stop())

# %% [markdown]
# ## 7. wss://: the lab over TLS
#
# The notes list `wss://` as the "secure version" (§7) and correct "WebSocket is insecure" with
# "wss:// is secure" (§8). `wss://` is the same protocol inside **TLS**, as `https://` is HTTP
# inside TLS (RFC 6455 section 3, default port 443). Let's make it concrete.
#
# First a certificate. `local_certificate` makes a throwaway certificate authority (trustme, in
# memory), has it sign a certificate for `localhost` and `127.0.0.1`, and writes three PEM files
# in a temporary directory: nothing is downloaded, nothing is installed system-wide.

# %%
certs_dir = tempfile.TemporaryDirectory(prefix="lesson09-")
cert = local_certificate(certs_dir.name)
print(cert.certfile.name, cert.keyfile.name, cert.cafile.name)

# %% [markdown]
# The lab server takes `--certfile` and `--keyfile` (PROTOCOL.md section 2); from Python,
# `LabServer(certfile=..., keyfile=...)` (or `start_lab(...)`). A second lab, next to the
# plain one. `cafile` tells the handle's own REST calls which CA to trust.

# %% tags=["nbval-ignore-output"]
tls_lab = LabServer(certfile=cert.certfile, keyfile=cert.keyfile, cafile=cert.cafile).start()
print(tls_lab.url, tls_lab.ws_url)
eve = tls_lab.account("eve")

# %% [markdown]
# A client that verifies: its SSL context trusts our CA (and only it). The TLS handshake runs
# first, on the TCP connection; then the HTTP Upgrade, inside it.

# %%
async with websockets.connect(f"{tls_lab.ws_url}?token={eve.token}", ssl=cert.client_context()) as ws:
    welcome = json.loads(await ws.recv())
    tls_version = ws.transport.get_extra_info("ssl_object").version()
print(welcome["type"], "over", tls_version)

# %% [markdown]
# Three ways to fail. A client that trusts the system's CAs only (the default); one that trusts
# another CA (the "wrong certificate"); and a plain `ws://` client on the TLS port:

# %%
other = local_certificate(f"{certs_dir.name}/other")
attempts = {
    "system CAs only": {"ssl": ssl.create_default_context()},
    "another CA": {"ssl": other.client_context()},
}
for name, options in attempts.items():
    try:
        async with websockets.connect(f"{tls_lab.ws_url}?token={eve.token}", open_timeout=5, **options):
            print(f"{name}: connected (unexpected)")
    except ssl.SSLCertVerificationError as exc:
        print(f"{name}: {type(exc).__name__}: {exc.verify_message}")
try:
    plain = "ws" + tls_lab.url.removeprefix("https")
    async with websockets.connect(f"{plain}/ws?token={eve.token}", open_timeout=5):
        print("ws:// on the TLS port: connected (unexpected)")
except Exception as exc:
    print(f"ws:// on the TLS port: {type(exc).__name__}: {exc}")

# %% [markdown]
# The first two never got as far as HTTP: the certificate did not chain up to a CA the client
# trusts, so the client aborted the TLS handshake. That is the point of verification: a
# machine in the middle can present *a* certificate, not one your CA signed for that name. (Turning
# verification off, `ssl.CERT_NONE`, makes the error go away and the protection with it.) The
# plain client wrote `GET /ws HTTP/1.1` where the server expected a TLS *ClientHello*; the server
# gave up on the connection without an HTTP answer.

# %% [markdown]
# ## 8. What a network observer sees: ws:// vs wss://
#
# `RawTap` relays bytes like the frame tap but reads nothing: it keeps what anyone on the path
# (the café's Wi-Fi, a corporate proxy) could read. The same conversation twice: a token in the
# URL, a welcome, one chat saying *meet me at 6*.

# %%
async def conversation(ws_url, token, **options):
    async with websockets.connect(f"{ws_url}?token={token}", **options) as ws:
        await ws.recv()  # welcome
        await ws.send(json.dumps({"type": "join", "room": "secret"}))
        await ws.send(json.dumps({"type": "chat", "room": "secret", "text": "meet me at 6", "ref": "c1"}))
        while json.loads(await ws.recv()).get("ref") != "c1":
            pass


ann = lab.account("ann")
async with RawTap(lab.port, upstream_host=lab.host) as plain_tap:
    await conversation(f"ws://127.0.0.1:{plain_tap.port}/ws", ann.token)
async with RawTap(tls_lab.port) as tls_tap:
    await conversation(f"wss://127.0.0.1:{tls_tap.port}/ws", eve.token, ssl=cert.client_context())

for name, tapped in (("ws:// ", plain_tap), ("wss://", tls_tap)):
    seen = bytes(tapped.sent + tapped.received)
    print(f"{name} token in clear: {ann.token.encode() in seen or eve.token.encode() in seen}, "
          f"'meet me at 6' in clear: {b'meet me at 6' in seen}")

# %% tags=["nbval-ignore-output"]
print("ws://, client -> server:", printable(bytes(plain_tap.sent), 90))
print("ws://, server -> client:", printable(bytes(plain_tap.received)[200:], 90))
print("wss://, client -> server:", printable(bytes(tls_tap.sent), 90))
print("wss://, server -> client:", printable(bytes(tls_tap.received)[2000:], 90))

# %% [markdown]
# Over `ws://` the handshake's request line carries the token in clear, and every server
# message is readable JSON, the chat included (the room's copy, pushed back to the sender). The
# client's own frames are **masked** (lesson 03), so they do not show as text, but masking is not
# encryption: the 4-byte key travels in the frame header, and
# the tap (or anyone) unmasks it. Over `wss://`, after a few readable fields of the TLS handshake
# (the certificate is sent in clear in TLS 1.2, encrypted in 1.3), everything is ciphertext.
#
# So "wss:// is secure" means: **confidential and authenticated in transit**, against anyone on
# the path, *if* the client verifies the certificate. It says nothing about who may open a socket
# (the token, lesson 06), what a message may do (the server's checks), or which page may connect
# (the `Origin` check, lesson 02).

# %% [markdown]
# ## 9. Where TLS ends in production: the proxy
#
# In production the application server usually does not hold the certificate. A reverse proxy
# or load balancer (nginx, HAProxy, Caddy, a cloud load balancer) **terminates TLS**: the
# browser's `wss://` ends at the proxy, which opens a plain connection to the application on a
# private network. For a WebSocket the proxy must:
#
# - **forward the upgrade.** `Upgrade` and `Connection` are *hop-by-hop* headers (RFC 9110
#   section 7.6.1): a proxy drops them unless told otherwise, and the backend then sees an
#   ordinary `GET` (the lab answers 400). In nginx: `proxy_http_version 1.1;`,
#   `proxy_set_header Upgrade $http_upgrade;`, `proxy_set_header Connection "upgrade";`.
# - **forward `Origin` and `Host` unchanged**, so the backend's Origin check (lesson 02) still
#   compares the page's origin with the site's name.
# - **tell the backend what it replaced**: `X-Forwarded-For` (the client's address, for rate
#   limits and logs), `X-Forwarded-Proto: https` (the original scheme, for `Secure` cookies and
#   for an Origin check that compares schemes), `X-Forwarded-Host`, or the standard `Forwarded`
#   header (RFC 7239). The backend trusts these only from its own proxy.
# - **keep idle sockets open**: proxies close connections idle for 60 s by default
#   (`proxy_read_timeout`); the heartbeat (lesson 04) must be shorter, or the timeout longer.
#
# ```nginx
# location /ws {
#     proxy_pass http://127.0.0.1:8765;
#     proxy_http_version 1.1;
#     proxy_set_header Upgrade $http_upgrade;
#     proxy_set_header Connection "upgrade";
#     proxy_set_header Host $host;
#     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
#     proxy_set_header X-Forwarded-Proto $scheme;
#     proxy_read_timeout 3600s;
# }
# ```
#
# The lab itself is a development server: `--certfile` is for this lesson and a classroom LAN.

# %%
await asyncio.to_thread(tls_lab.close)
certs_dir.cleanup()

# %% [markdown]
# ## 10. WebRTC signaling through the lab
#
# The notes (§5): "voice/video signaling: WebSocket used for signaling, actual media uses
# WebRTC". Two browsers that want a call must first agree on codecs and on how to reach each
# other, and they have no channel yet. So they send three kinds of messages through a server
# both are connected to:
#
# - an **offer** (the caller's SDP, *Session Description Protocol*: media, codecs, keys' fingerprints),
# - an **answer** (the callee's SDP),
# - **ICE candidates** (addresses where each side might be reached: local, via a STUN server's
#   view of its public address, via a TURN relay), sent as they are found.
#
# The lab relays them with its `signal` message (PROTOCOL.md section 6): to every socket of a
# user, or with `to_socket` to the one tab that called. Signals are not stored, and `/observe`
# shows that they flowed, not what they said. Watch the dashboard's message flow.

# %%
alice_account, bob_account = lab.account("alice"), lab.account("bob")
alice = await LabClient.connect(lab, alice_account, name="alice")
bob = await LabClient.connect(lab, bob_account, name="bob")
fake_sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"

await alice.send("signal", to=bob_account.id, kind="offer", data={"type": "offer", "sdp": fake_sdp})
offer = await bob.wait_for("signal")
await bob.send("signal", to=alice_account.id, to_socket=offer["from_socket"], kind="answer",
               data={"type": "answer", "sdp": fake_sdp.replace("4611731400430051336", "7300923845")})
answer = await alice.wait_for("signal")
candidates = {
    "alice": "candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host",
    "bob": "candidate:2 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 10.0.0.5 rport 61000",
}
await alice.send("signal", to=bob_account.id, to_socket=bob.socket_id, kind="ice", data={"candidate": candidates["alice"]})
await bob.send("signal", to=alice_account.id, to_socket=alice.socket_id, kind="ice", data={"candidate": candidates["bob"]})
ice_at_bob = await bob.wait_for(lambda m: m.get("type") == "signal" and m.get("kind") == "ice")
ice_at_alice = await alice.wait_for(lambda m: m.get("type") == "signal" and m.get("kind") == "ice")
for who, message in (("bob", offer), ("alice", answer), ("bob", ice_at_bob), ("alice", ice_at_alice)):
    print(f"{who} got {message['kind']:6} from {message['from']['username']}: {json.dumps(message['data'])[:60]}...")

# %% [markdown]
# What the dashboard's flow shows, from the lab's `/observe` stream: each signal routed, with its
# size and how many sockets received it, and never its content (`preview` is empty for signals).

# %%
await until(lambda: sum(ev["type"] == "signal" for ev in dashboard.state.flow) >= 4)
for ev in [ev for ev in dashboard.state.flow if ev["type"] == "signal"][-4:]:
    print(f"signal from {ev['from']:5} to {ev['to_kind']:6} -> {ev['recipients']} socket, "
          f"preview: {ev.get('preview')}")

# %% [markdown]
# Four `signal` messages routed: the offer to every socket of Bob (he has one), the rest each
# to one socket. Then the browsers try the candidate pairs and, once one works, send the media **directly to each
# other** (or through a TURN relay), over UDP, encrypted with DTLS-SRTP. The WebSocket's work is
# done. Why not send the media through it too?
#
# - **bandwidth**: a video call is ~1-3 Mbit/s each way; a server relaying every call carries
#   all of them, twice (in and out); a peer-to-peer call costs the server nothing.
# - **latency**: through the server is a detour; and TCP delivers in order, so one lost packet
#   holds back everything behind it (head-of-line blocking, lesson 03). Real-time media would
#   rather drop a late packet than wait for it: RTP over UDP does.
# - **the server as a bottleneck**: one event loop, thousands of sockets (lesson 07) is fine for
#   small messages; thousands of video streams are not.
#
# The lab's browser client (`lab.browser_url`, from the classroom issue) opens a real WebRTC data
# channel between two tabs through this same relay: try it with a neighbour for the live
# peer-to-peer part.

# %% [markdown]
# ## 11. Exercises
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
answer = ...  # "a", "b", "c" or "d"
ex.q2.check(answer)

# %%
ex.q3

# %%
async def chat_by_hand(url, username, room, text):
    ...


await ex.q3.check_async(chat_by_hand)

# %%
ex.q4

# %%
async def place_call(ws_url, caller_token, callee_token, callee_id):
    ...


await ex.q4.check_async(place_call)

# %% [markdown]
# ## Summary
#
# - **Socket.IO is its own protocol**: Engine.IO (open `0`, close `1`, ping `2`, pong `3`,
#   message `4`, upgrade `5`, noop `6`) over HTTP long polling or WebSocket, and Socket.IO packets
#   (CONNECT `0`, EVENT `2`, ACK `3`...) inside Engine.IO messages: `42["chat",{...}]`. A plain
#   WebSocket client cannot talk to it without speaking all of that, and a Socket.IO client
#   cannot talk to a plain WebSocket server.
# - What it adds (reconnection, heartbeats, events with acks, rooms, namespaces, state recovery)
#   is what any application protocol needs; the lab does each its own way (`type`, `ref`/`ack`,
#   `join`, RFC 6455 pings, `resume`).
# - **One port**: `AsyncServer.attach(app)` or `ASGIApp(sio, other_asgi_app=...)` in Python;
#   `new Server(httpServer)` on Node, where `httpServer` may come from `http.createServer(app)` or
#   from `app.listen()`: the bug is two servers, not `app.listen()`.
# - **wss://** is WebSocket inside TLS: confidential and authenticated on the path, *when the
#   client verifies the certificate*. Masking is not encryption. TLS usually ends at a proxy that
#   must forward `Upgrade`/`Connection`, `Host`, `Origin` and `X-Forwarded-*`.
# - **WebRTC signaling** (offer, answer, ICE) is small, rare and needs a server both peers know:
#   a WebSocket is right for it. Media goes peer to peer, never through the WebSocket.
#
# **What the notes say, and what to add**
#
# - §9 *"Socket.IO is built on top of WebSocket"*: on top of Engine.IO, which starts with HTTP
#   long polling and upgrades to WebSocket; its own packets on top. Not interchangeable with plain
#   WebSocket on either end (parts 3 to 5).
# - §12 *"socket.id changes on reconnect"*: by default, yes; with Node Socket.IO 4.6+'s connection
#   state recovery, a short disconnect keeps the same `socket.id` and replays missed events.
#   python-socketio 5.18 does not have it; the lab resumes by user id and seq (part 5).
# - §11 *"app.listen() ❌, server.listen() ✅"*: `app.listen()` returns an `http.Server` too; what
#   matters is attaching Socket.IO to the server that listens (part 6).
# - §8 *"wss:// is secure"*: secure *in transit*, with verification; the token, the Origin check
#   and the server's own checks are still needed (parts 7, 8).
# - §5 *"Actual media uses WebRTC"*: right, and the reasons are bandwidth, latency and the server
#   as a bottleneck (part 10).
#
# Next: lesson 10, the capstone.

# %%
await dashboard.stop()  # first, so that it keeps its last picture
await alice.close()
await bob.close()  # the lab stops with this notebook's kernel

# %% [markdown]
# ← Previous: [08 · Scaling out with Redis pub/sub](08_scaling_out_with_redis.ipynb) · [Course index](index.ipynb) · Next: [10 · Capstone](10_capstone.ipynb) →
