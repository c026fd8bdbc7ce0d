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
# # 02 · The Upgrade handshake
#
# Every WebSocket starts its life as an ordinary HTTP request. The client asks
# the server to *upgrade* the connection; the server answers `101 Switching
# Protocols`; and from the next byte on, the same TCP connection carries
# WebSocket frames instead of HTTP. This lesson does that exchange by hand.
#
# **In this lesson you will**
#
# 1. open a plain TCP socket to the lab server and type the HTTP Upgrade request yourself,
# 2. read the `101 Switching Protocols` answer and compute its `Sec-WebSocket-Accept`
#    header yourself (RFC 6455 section 4.2.2),
# 3. receive your first WebSocket frame, raw,
# 4. see what the server answers to handshakes that are wrong, or not welcome,
# 5. offer a subprotocol and an extension, and see what the lab accepts and what it declines,
# 6. open a socket with a login cookie, and see why the server must still check `Origin`,
# 7. see why the upgrade lives inside the HTTP server, on the same port as the REST API, and
#    what Node's `http.createServer(app)` is really about,
# 8. learn what a browser does for you, and where its token should travel,
# 9. break handshakes on purpose, predict the lab's answers, and send them to the lab.
#
# You need Python and the basics of HTTP (a request line, headers, a status
# code). No WebSocket knowledge is assumed.
#
# **Notes sections covered:** §4 *How WebSocket works (internal flow)*: the handshake, and
# what "HTTP is dropped" means on the wire (parts 2 to 4, 8); §10 *Backend architecture with
# WebSocket*: REST and WebSocket in one HTTP server, on one port (part 8); §11 *Why
# `http.createServer(app)` is required*: what the notes get right, and what is dated (part 8).

# %% [markdown]
# ## 1. Start the lab
#
# As in every lesson: start the lab server (or reuse the running one), and sign
# up a user, Alice, whose token (a JWT) we will need to get in.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import base64
import hashlib
import html
import http.client
import json
import os
import socket
from urllib.parse import urlsplit

import jwt
from aiohttp import web
from IPython.display import HTML, SVG

from labserver.course import start_lab
from labserver.course.exercises import lesson02 as ex
from labserver.course.rest_client import DEFAULT_PASSWORD
from labserver.course.source import show_source
from labserver.frames import Frame, Opcode
from labserver.handshake import select_subprotocol
from labserver.rawws import RawWebSocket, close_code, handshake_request

lab = start_lab()
alice = lab.account("alice")
host, port = urlsplit(lab.url).hostname, urlsplit(lab.url).port
lab

# %% [markdown]
# One helper before we start. `print_http` prints an HTTP message line by line
# and shows the `\r\n` that ends each line, because on the wire that is exactly
# what separates them. Two response headers change on every run, `Date` (the
# clock) and `Server` (the Python and aiohttp versions); it prints their values
# as `…` so that this notebook's saved output stays comparable.

# %%
VARIES = {"date", "server"}


def print_http(raw: bytes) -> None:
    """Print an HTTP head (request or response) line by line, with each line's CRLF visible."""
    for line in raw.decode("latin-1").split("\r\n")[:-1]:
        name = line.partition(":")[0]
        print(f"{name}: …\\r\\n" if name.lower() in VARIES else f"{line}\\r\\n")


# %% [markdown]
# ## 2. An Upgrade request, typed by hand
#
# First, a plain TCP connection to the lab server, with nothing but Python's
# `socket` module. At this point it carries no protocol at all: just a byte
# stream in each direction.

# %%
sock = socket.create_connection((host, port), timeout=5)
print(f"connected to {host}:{port}")

# %% [markdown]
# Now the opening handshake of RFC 6455 section 4.1. It is an HTTP/1.1 `GET`
# with a few special headers:
#
# | Header | Says |
# |---|---|
# | `Upgrade: websocket` | "I would like to switch this connection to the WebSocket protocol" |
# | `Connection: Upgrade` | "...and the `Upgrade` header is meant for you, the next hop" |
# | `Sec-WebSocket-Key` | 16 random bytes, base64-encoded; the server must transform it (next section) |
# | `Sec-WebSocket-Version: 13` | the version of the protocol, 13 being RFC 6455 |
# | `Origin` | sent by browsers: which web page opens the socket (parts 5 and 7 of this lesson) |
#
# The token rides in the URL's query string (part 9 of this lesson says why, and what it costs). For the key we
# use the sample from the RFC itself, so you can compare every value below with
# the text of RFC 6455; a real client draws a fresh random key for each connection.

# %%
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the sample key of RFC 6455 section 1.3

request = (
    f"GET /ws?token={alice.token} HTTP/1.1\r\n"
    f"Host: {host}:{port}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {RFC_KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    f"Origin: http://{host}:{port}\r\n"  # what a browser on the lab's own page would send
    "\r\n"  # an empty line ends the head; a GET has no body
).encode()

print_http(request)
sock.sendall(request)

# %% [markdown]
# The answer is HTTP too. We read until the empty line that ends its head
# (`\r\n\r\n`). Whatever came after it is already WebSocket: keep it for later.

# %%
received = b""
while b"\r\n\r\n" not in received:
    received += sock.recv(4096)
head, _, after_head = received.partition(b"\r\n\r\n")

print_http(head + b"\r\n\r\n")

# %% [markdown]
# **`101 Switching Protocols`**: the server agrees. This is the last HTTP the
# connection will ever carry. Its headers, as a dict:

# %%
status_line, *header_lines = head.decode("latin-1").split("\r\n")
headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}

print(status_line)
for name in ("upgrade", "connection", "sec-websocket-accept"):
    print(f"{name:22} {headers[name]}")

# %% [markdown]
# ## 3. `Sec-WebSocket-Accept`, step by step
#
# The server proves it understood the WebSocket request by transforming the key
# (RFC 6455 section 4.2.2, step 5.4):
#
# 1. append the fixed GUID `258EAFA5-E914-47DA-95CA-C5AB0DC85B11` (section 1.3) to the
#    key, *as text*: the key is not base64-decoded first;
# 2. take the SHA-1 hash of those bytes: 20 bytes;
# 3. base64-encode those 20 bytes.

# %%
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3, the same for every server

step1 = (RFC_KEY + GUID).encode()
step2 = hashlib.sha1(step1).digest()
step3 = base64.b64encode(step2).decode()

print("1. key + GUID:   ", step1.decode())
print("2. SHA-1 (hex):  ", step2.hex(" "))
print("3. base64:       ", step3)
print("server answered: ", headers["sec-websocket-accept"])
print("the same:        ", "yes" if step3 == headers["sec-websocket-accept"] else "NO")

# %% [markdown]
# ### The worked example of RFC 6455 section 1.3
#
# The RFC does this very computation in its text:
#
# > Concretely, if as in the example above, the |Sec-WebSocket-Key| header field
# > had the value "dGhlIHNhbXBsZSBub25jZQ==", the server would concatenate the string
# > "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" to form the string
# > "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11". The server would
# > then take the SHA-1 hash of this, giving the value 0xb3 0x7a 0x4f 0x2c 0xc0 0x62
# > 0x4f 0x16 0x90 0xf6 0x46 0x06 0xcf 0x38 0x59 0x45 0xb2 0xbe 0xc4 0xea. This value
# > is then base64-encoded (see Section 4 of [RFC4648]), to give the value
# > "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
#
# Our three steps give exactly those bytes. And the "random" key of the example
# is not so random: it is 16 bytes of plain text.

# %%
rfc_sha1 = "0xb3 0x7a 0x4f 0x2c 0xc0 0x62 0x4f 0x16 0x90 0xf6 0x46 0x06 0xcf 0x38 0x59 0x45 0xb2 0xbe 0xc4 0xea"
print("SHA-1, ours:     ", " ".join(f"0x{b:02x}" for b in step2))
print("SHA-1, the RFC:  ", rfc_sha1)
print("accept, ours:    ", step3)
print("accept, the RFC: ", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
print("the key decodes to:", base64.b64decode(RFC_KEY))

# %% [markdown]
# **What the key is for.** It is *not* a password and it does not make anything
# secure: it travels in clear text and anybody can compute the answer. It proves
# that the server really speaks WebSocket, since an ordinary HTTP server, or a
# cache replaying an old response, would not answer with the right
# `Sec-WebSocket-Accept` for a key it has never seen. That is why clients draw a
# fresh random key for every connection, like this one (its values change on every run):

# %% tags=["nbval-ignore-output"]
fresh_key = base64.b64encode(os.urandom(16)).decode()  # 16 random bytes -> 24 characters
trial = RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={alice.token}", key=fresh_key))
expected = base64.b64encode(hashlib.sha1((fresh_key + GUID).encode()).digest()).decode()
print("status:", trial.response.status, trial.response.reason)
print("fresh key:       ", fresh_key, f"({len(fresh_key)} characters)")
print("we expect accept:", expected)
print("the lab answered:", trial.response.headers["sec-websocket-accept"])
trial.close()

# %% [markdown]
# ## 4. Your first frame
#
# Right after the `101`, with no request from us, the server sends a first
# message: `welcome`, with our socket id and the server's limits. It is a
# WebSocket **frame**: a small binary header, then the payload. We read its
# first two bytes from what arrived after the HTTP head (and from the socket if
# that was not enough).

# %%
buffer = bytearray(after_head)


def read_exactly(n: int) -> bytes:
    """The next n bytes of the connection: from what we already have, then from the socket."""
    while len(buffer) < n:
        buffer.extend(sock.recv(4096))
    chunk = bytes(buffer[:n])
    del buffer[:n]
    return chunk


first_two = read_exactly(2)
print("first two bytes:", first_two.hex(" "))
print(f"byte 0 = {first_two[0]:08b}: FIN=1 (a whole message), opcode={first_two[0] & 0x0F} (text)")
print(f"byte 1 = {first_two[1]:08b}: MASK=0 (servers never mask), length code={first_two[1] & 0x7F}")

# %% [markdown]
# A length code of 126 means "the real length follows, in the next 2 bytes".
# Then come the payload bytes: JSON text, the `welcome` message.

# %%
length = int.from_bytes(read_exactly(2), "big")
payload = read_exactly(length)
print("payload length:", length, "bytes")
print(payload.decode())
sock.close()

# %% [markdown]
# That was a whole WebSocket session by hand: TCP, an HTTP request, an HTTP
# answer, and a frame. Lesson 03 takes frames apart bit by bit; here, two bits
# matter: frames are *not* HTTP (no headers, no status, a 2-byte header), and the
# server sent this one on its own, without being asked.
#
# The notes (section 4) put it as "HTTP is dropped, WebSocket protocol takes over, TCP
# connection stays open". On the wire, nothing is dropped or reopened: the TCP connection
# you opened in part 2 carried HTTP for exactly two messages, the request and the `101`, and
# the very next byte on the same stream was the first byte of a frame.
#
# From now on, two helpers from `labserver.rawws` do the typing for us:
# `handshake_request` writes the same bytes as our hand-made request (no
# `Origin` unless we add one), and `RawWebSocket` reads the answer and the frames.

# %%
same = handshake_request(host, port, f"/ws?token={alice.token}", key=RFC_KEY,
                         extra_headers={"Origin": f"http://{host}:{port}"})
print("the same bytes as our request:", "yes" if same == request else "NO")

ws = RawWebSocket.connect(host, port, same)
print(ws.response.status, ws.response.reason)
welcome = ws.recv_frame()
print(welcome.opcode.name, json.loads(welcome.payload)["type"])
ws.close()

# %% [markdown]
# ## 5. When the server says no
#
# Before it upgrades, the server checks the handshake; anything it refuses gets
# an ordinary HTTP answer, and the connection never speaks WebSocket. Each row
# below is a real handshake sent to the lab server, a good one with a single
# change, and what came back.

# %%
def attempt(path: str = f"/ws?token={alice.token}", **options) -> RawWebSocket:
    """Send one handshake (RFC key unless another is given) and return the connection, closed."""
    options.setdefault("key", RFC_KEY)
    sent = RawWebSocket.connect(host, port, handshake_request(host, port, path, **options))
    sent.close()
    return sent


def forge(token: str) -> str:
    """Alice's token rewritten to say it is user 2, signed with a key the attacker made up."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode({**claims, "sub": "2", "name": "mallory"}, "a-key-the-attacker-made-up-32-bytes", "HS256")


cases = [
    ("a good handshake", attempt()),
    ("<code>Origin</code> of the lab's own page", attempt(extra_headers={"Origin": f"http://{host}:{port}"})),
    ("no <code>Sec-WebSocket-Key</code>", attempt(extra_headers={"Sec-WebSocket-Key": None})),
    ("a key of 12 bytes, not 16", attempt(key=base64.b64encode(b"not 16 bytes").decode())),
    ("<code>Sec-WebSocket-Version: 8</code>", attempt(version="8")),
    ("<code>Origin: http://evil.example</code>", attempt(extra_headers={"Origin": "http://evil.example"})),
    ("<code>?token=</code> a forged token", attempt(f"/ws?token={forge(alice.token)}")),
    ("<code>?token=</code> empty", attempt("/ws?token=")),
    ("no token at all", attempt("/ws")),
    ("<code>POST</code> instead of <code>GET</code>", attempt(method="POST")),
    ("<code>Connection: keep-alive</code>", attempt(extra_headers={"Connection": "keep-alive"})),
]

BORING = {"date", "server", "content-type", "content-length"}


def row(change: str, sent: RawWebSocket) -> str:
    r = sent.response
    noted = "<br>".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in r.headers.items() if k not in BORING) or "-"
    try:
        body = json.loads(r.body)
        body_text = f"{body['error']}: {body['message']}"
    except ValueError:
        body_text = r.body.decode(errors="replace").splitlines()[0] if r.body else ""
    colour = "#2e7d32" if r.status == 101 else "#c62828"
    cells = [change, f"<b style='color:{colour}'>{r.status}</b> {html.escape(r.reason)}", f"<code>{noted}</code>",
             html.escape(body_text)]
    return "<tr>" + "".join(f"<td style='text-align:left'>{cell}</td>" for cell in cells) + "</tr>"


heading = "".join(f"<th style='text-align:left'>{name}</th>" for name in
                  ("handshake", "status", "headers worth noting", "body"))
HTML(f"<table><tr>{heading}</tr>" + "".join(row(change, sent) for change, sent in cases) + "</table>")

# %% [markdown]
# Reading the table from the top:
#
# - **101**: only a good handshake opens the socket. An `Origin` from the lab's own
#   page is fine.
# - **400 Bad Request**: a missing or malformed `Sec-WebSocket-Key`, or a
#   `Connection` header without the `Upgrade` token. The request is not a valid
#   handshake (RFC 6455 section 4.2.1). The last row's plain-text body comes from
#   aiohttp itself, which does that check.
# - **426 Upgrade Required** with `Sec-WebSocket-Version: 13`: the client asked for a
#   version the server does not speak, and the answer says which one to use (section
#   4.4). Not every server is this helpful: many answer a bare `400` here. The
#   `websockets` library, for one, answers `400` "invalid Sec-WebSocket-Version
#   header", and aiohttp on its own even accepts the old drafts 7 and 8. The lab
#   server does the section 4.4 check itself.
# - **403 Forbidden**: an `Origin` header from another site's page. Part 7 shows why this
#   check matters even more once cookies are involved.
# - **401 Unauthorized**, *before* the upgrade: a token in the query string that
#   does not verify, here one whose signature is not the server's, or an empty one.
#   The socket never opens, so nothing has to be cleaned up.
# - **No token at all gets 101.** That is on purpose: the client may send its token
#   in the first *message* instead (part 9), or in a cookie (part 7). The server then waits a few
#   seconds for it, and closes the socket (code 1008) if it does not come.
# - **405 Method Not Allowed**: the opening handshake must be a `GET`.

# %% [markdown]
# ## 6. Subprotocols and extensions
#
# Two more headers can ride on the handshake. Both are lists that the *client* offers
# and the *server* picks from:
#
# | Header | The client offers | RFC |
# |---|---|---|
# | `Sec-WebSocket-Protocol` | application protocols it can speak over this socket, most wanted first, e.g. `chat, lab.v1` | RFC 6455 sections 1.9, 4.1, 4.2.2 |
# | `Sec-WebSocket-Extensions` | changes to the framing itself, with parameters, e.g. `permessage-deflate; client_max_window_bits` | RFC 6455 section 9; RFC 7692 for deflate |
#
# The rules are the same for both. The server answers **at most one subprotocol, and
# only one the client offered** (section 4.2.2), and accepts only extensions the client
# offered (section 9.1). When it supports none of them it does *not* refuse the handshake:
# it **leaves the header out** of its `101`. The client then checks the answer (section
# 4.1): a subprotocol or an extension it did not offer makes it fail the connection.
#
# The lab speaks one subprotocol, `lab.v1`, the name of its JSON protocol
# (`labserver/PROTOCOL.md`), and no extension. Five handshakes, each offering something else:

# %%
OFFERS = [  # (Sec-WebSocket-Protocol, Sec-WebSocket-Extensions) offered by the client
    ("lab.v1", None),
    ("chat, lab.v1", None),
    ("chat, superchat", None),
    (None, "permessage-deflate; client_max_window_bits"),
    ("lab.v1", "permessage-deflate, x-webkit-deflate-frame"),
]

print(f"{'offered protocol':18} {'offered extensions':45} {'status':7} {'answered protocol':18} answered extensions")
for protocol, extensions in OFFERS:
    headers = {"Sec-WebSocket-Protocol": protocol, "Sec-WebSocket-Extensions": extensions}
    answer = attempt(extra_headers=headers).response
    print(f"{protocol or '-':18} {extensions or '-':45} {answer.status:<7} "
          f"{answer.headers.get('sec-websocket-protocol', '(none)'):18} "
          f"{answer.headers.get('sec-websocket-extensions', '(none)')}")

# %% [markdown]
# Every handshake got `101`: nothing here is a reason to refuse. `lab.v1` is answered
# whenever it was offered, first or second in the list; `chat, superchat` gets no
# `Sec-WebSocket-Protocol` at all, never a name the client did not ask for. The choice
# is one small function of the server:

# %%
show_source(select_subprotocol)

# %% [markdown]
# What a client does with "no subprotocol" is its own choice. A browser's
# `new WebSocket(url, ["chat"])` fails the connection when the `101` names none
# (the WHATWG WebSockets standard), so a page that insists on `chat` cannot use the lab,
# and `new WebSocket(url, ["lab.v1"])` can. A subprotocol is how one URL can serve two
# versions of an application protocol (`lab.v1`, `lab.v2`) and tell the client which
# one it got before the first message. (Socket.IO does not use this header: its protocol
# version travels in the URL, `?EIO=4`.)
#
# **Extensions: declined, every time.** No `Sec-WebSocket-Extensions` in the answer means
# no extension is in use: frames go uncompressed, and a client frame with the RSV1
# ("compressed") bit set is a protocol error. The lab turns `permessage-deflate` down on
# purpose (`compress=False` in `labserver/ws.py`): it encodes a broadcast once and writes
# the same bytes to every recipient, while deflate keeps a compression context per
# connection, so every recipient would need its own compressed copy; and a small
# compressed frame could inflate far past the message-size limit. Lesson 03 measures
# what deflate would save on a chat message, and what it costs.

# %% [markdown]
# ## 7. A cookie at the handshake, and why `Origin` still matters
#
# A page cannot put a header of its own on the handshake, but the browser adds one by
# itself: `Cookie`. A WebSocket handshake is an HTTP request to the lab's host, so it
# carries the cookies the lab has set. The lab's login sets one, `lab_session`,
# holding the same token as the JSON body. Bob logs in:

# %%
# In a class, a lesson account has no password to log in with: from here on, a lab of your own.
lab = start_lab(private="the rest of this lesson (Bob logs in with a password)")
host, port = urlsplit(lab.url).hostname, urlsplit(lab.url).port
alice = lab.account("alice")
bob = lab.account("bob")  # signs Bob up; the login below is the one we look at


def login(username: str) -> tuple[str, str]:
    """POST /api/login; the token from the JSON body and the Set-Cookie header."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    credentials = json.dumps({"username": username, "password": DEFAULT_PASSWORD})
    conn.request("POST", "/api/login", credentials, {"Content-Type": "application/json"})
    response = conn.getresponse()
    token, set_cookie = json.loads(response.read())["token"], response.getheader("Set-Cookie")
    conn.close()
    return token, set_cookie


bob_token, set_cookie = login("bob")
cookie = set_cookie.split(";")[0].partition("=")[2]
print("Set-Cookie:", set_cookie.replace(cookie, "<the token>"))
print("the cookie holds the token of the JSON body:", "yes" if cookie == bob_token else "no")

# %% [markdown]
# Each attribute has a job:
#
# - `HttpOnly`: page scripts cannot read the cookie (`document.cookie` does not show it),
#   so a script injected into the page (XSS) cannot steal the token.
# - `SameSite=Lax`: requests that a page of another *site* makes do not carry it (more below).
# - `Path=/`: it goes with every request to the lab, `/ws` included.
# - `Max-Age=3600`: it lives as long as the token. It has no `Secure` here because the lab
#   runs on plain `http://`; behind `https://` the lab adds `Secure`.
#
# `/ws` accepts that cookie in place of `?token=` (and `?token=`, when present, still
# decides alone, exactly as before). Now play the browser: the same cookie, no token in
# the URL, from four places.

# %%
COOKIE_ORIGINS = [
    (f"http://{host}:{port}", "the lab's own page"),
    ("http://evil.example", "another site's page"),
    (f"http://{host}:8888", "a page on another port of this host"),
    (None, "no Origin: a program, not a browser"),
]

for origin, who in COOKIE_ORIGINS:
    sent = RawWebSocket.connect(host, port, handshake_request(
        host, port, "/ws", extra_headers={"Cookie": f"lab_session={cookie}", "Origin": origin}))
    answer = sent.response
    said = json.loads(sent.recv_frame().payload)["user"]["username"] if answer.status == 101 else None
    sent.close()
    outcome = f"welcome, {said}" if said else json.loads(answer.body)["error"]
    print(f"{answer.status} {answer.reason:20} {who:45} -> {outcome}")

# %% [markdown]
# The cookie alone would have let *every* page in: the browser attaches it on its own,
# to a handshake that any page starts. WebSockets are not covered by CORS: a page may open
# a socket to any server, and the server is the only one that can say no. If `/ws`
# trusted the cookie alone, a page on `evil.example` could run
# `new WebSocket("ws://lab.example/ws")` and chat *as Bob*, reading everything the socket
# receives: **cross-site WebSocket hijacking**. What the browser does give the server is an
# `Origin` header that page scripts cannot change, and the server must check it (RFC 6455
# section 10.2). The lab checks it *before* it reads the cookie, hence `403` for both foreign
# pages above.
#
# **What `SameSite` does, and what it does not.** A cookie marked `SameSite=Lax` or `Strict`
# is not sent with requests that a page of another *site* makes, a WebSocket handshake
# included; `SameSite=None; Secure` is sent from anywhere. A cookie with no `SameSite`
# attribute is treated as `Lax` by Chromium (not by every browser, so set it explicitly).
# But a *site* is not an *origin*:
#
# - an **origin** is scheme, host and port: `http://127.0.0.1:8765`;
# - a **site** is scheme and *registrable domain*: `https://chat.example.com` and
#   `https://blog.example.com` are two origins of one site, `example.com`; so are
#   `http://127.0.0.1:8765` and `http://127.0.0.1:8888` (ports do not count, and cookies
#   ignore ports anyway).
#
# So `SameSite`, even `Strict`, does not stop a *same-site, cross-origin* page: a sibling
# subdomain, or another port of the same host. The third row above is exactly that: any
# page served on another port of this host (8888 is JupyterLab's usual one) is same-site
# with the lab, so the browser would send Bob's cookie with its handshake, and only the
# `Origin` check stops it. `SameSite` narrows the risk; checking `Origin` closes it.
#
# The last row is a reminder of what `Origin` does *not* do: a program (our raw socket,
# `curl`) sends whatever `Origin` it likes, or none, so the check protects *browser users*,
# not the server. Authentication is the cookie's or the token's job.
#
# **Logging out** revokes every token Bob holds, the cookie's too, and tells the browser
# to drop the cookie:

# %%
conn = http.client.HTTPConnection(host, port, timeout=5)
conn.request("POST", "/api/logout", headers={"Authorization": f"Bearer {bob_token}"})
logout = conn.getresponse()
logout.read()
print("POST /api/logout ->", logout.status, "| Set-Cookie:", logout.getheader("Set-Cookie"))
conn.close()

stale = attempt("/ws", extra_headers={"Cookie": f"lab_session={cookie}", "Origin": f"http://{host}:{port}"})
print("the old cookie ->", stale.response.status, stale.response.reason, "|", json.loads(stale.response.body)["message"])

# %% [markdown]
# ## 8. One port for REST and WebSocket
#
# The lab server's REST API and its WebSocket are on the same port. Here are two
# raw sockets to that one port: the first asks `GET /ws` with the Upgrade headers
# and stays open as a WebSocket; meanwhile the second asks `GET /healthz`, plain HTTP.

# %%
def recv_until_closed(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    return data


live = RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={alice.token}", key=RFC_KEY))
live_peer = live.sock.getpeername()

rest = socket.create_connection((host, port), timeout=5)
rest_peer = rest.getpeername()
rest.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
rest_head, _, rest_body = recv_until_closed(rest).partition(b"\r\n\r\n")
rest.close()

live_status_line = live.response.raw.decode().split("\r\n")[0]
rest_status_line = rest_head.decode().split("\r\n")[0]
print(f"socket 1 -> {live_peer[0]}:{live_peer[1]}  GET /ws      -> {live_status_line}")
print(f"socket 2 -> {rest_peer[0]}:{rest_peer[1]}  GET /healthz -> {rest_status_line}, {rest_body[:16].decode()}...")
print("one server address and port for both:", "yes" if rest_peer == live_peer else "NO")

# %% [markdown]
# Same port, one HTTP server. The upgrade is not a second server listening
# somewhere else: `/ws` is an ordinary route of the HTTP server, like `/healthz`.
# In aiohttp, which the lab server is built on, it looks like this:
#
# ```python
# async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
#     ws = web.WebSocketResponse()
#     await ws.prepare(request)   # checks the headers, writes "101 Switching Protocols"
#     async for msg in ws:        # from here on, this TCP connection carries frames
#         ...
#     return ws
#
# app = web.Application()
# app.router.add_get("/healthz", healthz)            # plain HTTP
# app.router.add_get("/ws", websocket_handler)       # same server, same port
# web.run_app(app, port=8765)
# ```
#
# aiohttp's HTTP server parses the request line and headers of *every*
# connection; the route handler decides to answer `101` and then keeps the
# connection, which from then on speaks frames. That is also why WebSockets pass
# where HTTP passes: ports 80 and 443, and reverse proxies, which must be told to
# forward the `Upgrade` and `Connection` headers (nginx drops them unless configured
# to pass them on).
#
# ### Node's `http.createServer(app)`, stated correctly
#
# The notes (section 11) say: upgrades happen at the HTTP server level, not in Express
# middleware, "therefore `app.listen()` ❌, `server.listen()` ✅". The reason is right; the
# rule is dated. Express's `app.listen(port)` *is* `http.createServer(app).listen(port)`,
# and it returns that `http.Server`:
#
# ```javascript
# const server = app.listen(8765);   // an http.Server, listening
# const io = new Server(server);     // Socket.IO on the server that listens: works
# ```
#
# works as well as `http.createServer(app)` followed by `server.listen(8765)`. The real bug
# is **two servers**:
#
# ```javascript
# const server = http.createServer(app);
# const io = new Server(server);     // Socket.IO attached to server 1...
# app.listen(8765);                  // ...but app.listen creates server 2, and that one listens
# ```
#
# Server 1, which has the WebSocket, never listens. Server 2 gets every request, and it has
# no WebSocket: the handshake is answered as an ordinary request (Express: `404`, "Cannot
# GET /socket.io/"). The same mistake in Python: a second aiohttp server, in this kernel,
# on another port, with the lab's `/healthz` route but not its `/ws`. The same handshake,
# to each port:

# %%
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


http_only = web.Application()
http_only.router.add_get("/healthz", healthz)  # REST only: nobody added the /ws route here
runner = web.AppRunner(http_only, access_log=None)
await runner.setup()
await web.TCPSite(runner, host, 0).start()  # port 0: any free port
other_port = runner.addresses[0][1]

for server_port, what in [(port, "the lab: REST and /ws"), (other_port, "second server: REST only")]:
    probe = handshake_request(host, server_port, f"/ws?token={alice.token}", key=RFC_KEY)
    # In a thread: this kernel's event loop must stay free to run the second server.
    sent = await asyncio.to_thread(RawWebSocket.connect, host, server_port, probe)
    sent.close()
    print(f"GET /ws -> {host}:{server_port}  {what:26} {sent.response.status} {sent.response.reason}")
await runner.cleanup()

# %% [markdown]
# The second server answers the upgrade with `404 Not Found`: for it, `/ws` is just an
# unknown path. One HTTP server must own both the routes and the upgrade, and it must be the
# one that listens; in the lab that is one aiohttp application (`labserver/app.py`).
#
# Back to socket 1 of the lab, still open. After the `101` it carries frames: the
# `welcome`, then anything either side sends. We send an application-level `ping`
# message; the server answers `pong`.

# %%
print("server:", json.loads(live.recv_frame().payload)["type"])
live.send_text(json.dumps({"type": "ping", "ref": "p1"}))  # a masked text frame (lesson 03)
pong = json.loads(live.recv_frame().payload)
print("server:", pong["type"], "for ref", pong["ref"])

# %% [markdown]
# And it carries *only* frames now. Send it an HTTP request and the server reads
# its first bytes as a frame header: `GE` is `0x47 0x45`, `01000111 01000101` in
# binary, a frame with a reserved bit set, the reserved opcode 7, and no mask.
# That is a protocol error three times over: the server closes the connection
# with a Close frame carrying code **1002** (RFC 6455 sections 5.2 and 7.4.1).

# %%
live.sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
answer_frame = live.recv_frame()
print(answer_frame.opcode.name, "frame, code", close_code(answer_frame))
live.close()

# %% [markdown]
# The polite way to end a WebSocket is the **closing handshake** (section 7): one
# side sends a Close frame with a code (1000: normal), the other answers with a
# Close frame, and the server then closes the TCP connection.

# %%
bye = RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={alice.token}", key=RFC_KEY))
bye.recv_frame()  # the welcome
bye.send_frame(Frame(Opcode.CLOSE, (1000).to_bytes(2, "big") + b"bye", masking_key=os.urandom(4)))
echo = bye.recv_frame()
print("server answered:", echo.opcode.name, "frame, code", close_code(echo))
print("then the TCP connection:", "ended (no more bytes)" if bye.recv_frame() is None else "still open")
bye.close()

# %% [markdown]
# ## 9. How a browser does it
#
# In a web page, all of the above is one line. The browser opens the TCP
# connection, writes the `GET` with `Upgrade`, `Connection`, a fresh
# `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13` and the page's `Origin`, checks
# `Sec-WebSocket-Accept`, and only then fires `open`:
#
# ```javascript
# const ws = new WebSocket(`ws://${location.host}/ws?token=${token}`);
# ws.onopen = () => ws.send(JSON.stringify({ type: "join", room: "general" }));
# ws.onmessage = (event) => console.log(JSON.parse(event.data));
# ws.onclose = (event) => console.log("closed", event.code);
# ```
#
# Two consequences:
#
# - **A page cannot set headers on the handshake.** `new WebSocket(url, protocols)`
#   takes a URL and a list of subprotocols, nothing else: no `Authorization:
#   Bearer ...`. That is why the lab server takes the token in the **query
#   string** (`?token=`), in the **first message**, or from the login's **cookie**
#   (part 7). The query string is simple, but the whole URL, token included, is written
#   to access logs: the web server's, a reverse proxy's (nginx logs the request line with
#   its query string by default), a load balancer's. (A WebSocket URL is not a page
#   navigation: it never shows in the address bar and does not enter the browser's
#   history.) The lab keeps query strings out of its own access log, but it cannot speak
#   for the proxies in front of it. The first message keeps the token out of every URL,
#   at the cost of one round trip; the cookie does too, at the price of the `Origin`
#   check.
# - **A page never sees the refusal.** Whether the server answered 400, 401 or 403,
#   the browser only fires `error` and then `close` with code 1006. The JSON bodies
#   in the table above are for programs and for you, in the browser's network tab.
#
# The first-message way, on our raw socket: the handshake carries no token, the
# server upgrades, and waits for `auth`.

# %%
late = RawWebSocket.connect(host, port, handshake_request(host, port, "/ws", key=RFC_KEY))
print(late.response.status, late.response.reason, "(nobody has said who they are yet)")
late.send_text(json.dumps({"type": "auth", "token": alice.token, "ref": "a1"}))
print(late.recv_frame().payload.decode())
print(late.recv_frame().payload.decode())
late.close()

# %% [markdown]
# ## 10. The whole exchange in one picture
#
# The TCP connection opens; one HTTP request and one HTTP answer switch it to
# WebSocket; frames then flow both ways, whenever either side has something to
# say, until the closing handshake. One TCP connection all the way down.

# %%
SVG(filename="../images/02_handshake_sequence.svg")

# %% [markdown]
# **Footnote: WebSockets over HTTP/2 and HTTP/3.** Everything in this lesson is HTTP/1.1,
# the only version RFC 6455 defines. HTTP/2 has no `Upgrade` and no `101`. RFC 8441
# (HTTP/2) and RFC 9220 (HTTP/3) open a WebSocket as one stream of an existing connection,
# with an **extended CONNECT**: the request carries `:method = CONNECT`,
# `:protocol = websocket`, `:scheme`, `:path`, `:authority` and `sec-websocket-version: 13`
# (plus `origin`, `sec-websocket-protocol` and `-extensions` as usual), and the server
# answers `200`. There is no `101`, no `Sec-WebSocket-Key` and no `Sec-WebSocket-Accept`:
# the server has already announced `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`, which says it
# understands. The frames that follow are the same RFC 6455 frames, carried in the stream's
# DATA frames, so many WebSockets can share one TCP (or QUIC) connection. The lab speaks
# HTTP/1.1 only, as aiohttp does.

# %% [markdown]
# ## 11. Check yourself
#
# Replace the `...` with your answer and run the cell; `ex.q1.hint()` gives a hint
# and `ex.q1.solution()` the answer with an explanation.
#
# **Question 1.** Write `accept_key(key)`: the `Sec-WebSocket-Accept` value for a
# client's `Sec-WebSocket-Key`. It is checked on five keys, the RFC's among them.

# %%
def accept_key(key: str) -> str:
    ...


ex.q1.check(accept_key)

# %%
# ex.q1.hint()
# ex.q1.solution()

# %% [markdown]
# **Question 2.** Five requests meant to open a WebSocket; at most one thing is
# wrong with each. Which? Answer with one letter per request.

# %%
ex.q2

# %%
answer = ...  # e.g. ("a", "b", "c", "d", "e")
ex.q2.check(answer)

# %% [markdown]
# **Question 3.** Which status code does the lab server answer to each of these
# handshakes? Fill in the numbers.

# %%
answer = {
    "a good handshake": ...,
    "no Sec-WebSocket-Key": ...,
    "Sec-WebSocket-Version: 8": ...,
    "Origin: http://evil.example": ...,
    "?token= with a forged token": ...,
    "POST /ws": ...,
}
ex.q3.check(answer)

# %% [markdown]
# **Question 4, against the live lab.** Break handshakes on purpose. Write
# `broken_handshake(flaw, host, port, token)`: for each flaw below it returns the bytes of
# an opening handshake to the lab's `/ws` with exactly that flaw and nothing else wrong,
# and the status code you predict the lab answers. The check calls it for every flaw,
# checks that each request is broken as asked, sends it to the lab on a raw socket, and
# compares your prediction with the lab's answer.

# %%
for flaw, what in ex.FLAWS.items():
    print(f"{flaw!r:13} {what}")

# %%
def broken_handshake(flaw: str, host: str, port: int, token: str) -> tuple[bytes, int]:
    ...


await ex.q4.check_async(broken_handshake)

# %%
# ex.q4.hint()
# ex.q4.solution()

# %% [markdown]
# ## Summary
#
# - A WebSocket starts as an **HTTP/1.1 `GET`** with `Upgrade: websocket`,
#   `Connection: Upgrade`, a random `Sec-WebSocket-Key` and `Sec-WebSocket-Version:
#   13`; browsers add `Origin`.
# - The server answers **`101 Switching Protocols`** with `Sec-WebSocket-Accept` =
#   base64(SHA-1(key + `258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)). After that, the
#   **same TCP connection** carries only frames, both ways.
# - Anything else is an ordinary HTTP refusal: **400** for a malformed handshake,
#   **426** with `Sec-WebSocket-Version: 13` for a wrong version, **403** for a
#   foreign `Origin`, **401** for a bad token or cookie, **405** for a method other than `GET`.
# - The upgrade is a **route of the HTTP server**, so REST and WebSocket share one
#   server and one port.
# - **Subprotocols and extensions** are offers: the server answers at most one subprotocol
#   the client offered (the lab: `lab.v1`) and only extensions it offered, or leaves the
#   header out; the lab declines `permessage-deflate` to encode each broadcast once.
# - A browser cannot put headers on the handshake: the token goes in the **query
#   string** (and so into every access log on the way), the **first message**, or a
#   **cookie** the browser sends by itself. The server must check **`Origin`** against
#   cross-site WebSocket hijacking: `SameSite` does not stop a same-site page on another
#   origin.
# - Node: `app.listen()` returns an `http.Server` too; the bug is attaching the WebSocket
#   to one server and listening with another.
# - Over HTTP/2 and HTTP/3 a WebSocket starts with an extended `CONNECT` (RFC 8441, 9220):
#   no `101`, no key.
#
# **Common misconceptions**
#
# - *"WebSocket is a separate protocol on a separate port."* After the handshake it
#   is a different protocol, but it starts as HTTP on the HTTP port (80 for `ws://`,
#   443 for `wss://`), and it shares the server with the REST API, as you saw.
# - *"The handshake is secure without TLS."* Nothing in it is secret or encrypted:
#   the key and its answer only prove that the server speaks WebSocket. Anyone on
#   the path can read the token in the URL and every frame after it. Use
#   **`wss://`**, WebSocket over TLS, exactly as you use `https://` (lesson 09).
# - *"Checking `Origin` keeps other programs out."* It only protects users of
#   browsers, which tell the truth about `Origin`; a program can send anything.
#   Authenticate with a token or a cookie.
# - *"`SameSite` cookies make the `Origin` check unnecessary."* `SameSite` is about
#   *sites* (registrable domains), not origins: a sibling subdomain or another port of
#   the same host still gets the cookie sent.
# - *"A token in a WebSocket URL ends up in the browser's history."* It does not (a
#   socket is not a navigation); it ends up in server, proxy and load-balancer logs.
#
# Next: [03 · Frames on the wire](03_frames.ipynb), where the bytes
# `81 7e 00 ...` get taken apart bit by bit.

# %% [markdown]
# ← Previous: [01 · Polling vs push](01_polling_vs_push.ipynb) · [Course index](index.ipynb) · Next: [03 · Frames on the wire](03_frames.ipynb) →
