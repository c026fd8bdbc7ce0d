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
# # 03 · Frames on the wire
#
# After the handshake of lesson 02, the connection stops speaking HTTP. From then
# on, both sides send **frames**: a few header bytes, then the payload. RFC 6455
# section 5 defines them, and in this lesson you read them byte by byte, build
# them by hand, send them to the lab server, and watch real ones go by.
#
# **In this lesson you will**
#
# 1. read the frame layout: FIN, RSV, opcode, MASK, the 7/16/64-bit payload length,
#    the masking key,
# 2. build a frame by hand, byte by byte, and then with the course's codec,
# 3. mask and unmask a payload, and learn why only clients mask,
# 4. split a message into fragments, and use ping, pong and close frames,
# 5. send a hand-built frame to the lab over a raw socket and decode the answer,
# 6. watch a real client's frames live through a **frame tap**,
# 7. send bad frames and read the close code the server answers with,
# 8. measure what a frame costs next to an HTTP request carrying the same message,
# 9. see what a client offering compression (permessage-deflate, the RSV1 bit) gets from the
#    lab, and measure what compression would save and cost on a chat message,
# 10. measure head-of-line blocking: a small message stuck behind a large one on one socket,
# 11. write your own frame reader and run it on frames captured live from the lab.
#
# **Notes sections covered:** §4 *How WebSocket works (internal flow)*: "messages sent as
# small frames" (parts 2 to 6 and 14; the notes are thin here: a frame's length field goes
# up to 2^63 - 1 bytes, a message may take several frames, and TCP delivers neither frames nor
# messages, only bytes); §7 *Important WebSocket properties*: "low overhead" measured (parts
# 11 and 12: 2 to 14 bytes of header, and no compression in the lab), "stateful" (a
# compression context is state kept per connection, part 12); §1 *What is a WebSocket?*:
# "low latency" holds only while nothing large is ahead on the same socket (part 13); §6
# *Why not use WebSocket for everything?*: "large payloads", measured (part 13).
#
# Keep RFC 6455 section 5 open in a tab if you like: every rule here names its section.

# %% [markdown]
# ## 1. Start the lab
#
# As in every lesson, `start_lab()` starts the lab server (or reuses the running one).
# The other imports are this lesson's tools: `labserver.frames` is a small frame codec
# written to be read next to the RFC, `labserver.rawws` a WebSocket client you can see
# through, and `labserver.tap` a proxy that shows every frame passing through it.

# %%
import importlib.util

if importlib.util.find_spec("labserver") is None:  # this kernel does not have the course installed
    raise ModuleNotFoundError("Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > WebSocket course.")

import asyncio
import json
import random
import statistics
import time
import tracemalloc
import zlib

import matplotlib.pyplot as plt
import websockets
from IPython.display import HTML, SVG

from labserver.course import start_lab
from labserver.course.exercises import lesson03 as ex
from labserver.course.frame_inspector import FrameInspector, frame_fields_html, legend_html
from labserver.frames import (
    Frame,
    FrameError,
    FrameReader,
    MessageAssembler,
    Opcode,
    close_payload,
    describe,
    parse_close,
    parse_header,
)
from labserver.rawws import RawWebSocket, handshake_request
from labserver.tap import Direction, FrameTap

lab = start_lab()
lab

# %% [markdown]
# ## 2. The layout of a frame
#
# A frame starts with two bytes that are always there. Then, depending on what those
# two bytes say, up to 8 more bytes of length and 4 bytes of masking key. Then the
# payload. The colours below are the ones the live frame inspector uses later on.

# %%
SVG(filename="../images/03_frame_layout.svg")

# %% [markdown]
# Reading the first two bytes, bit by bit:
#
# - **FIN** (1 bit): this frame ends a message. A message split over several frames
#   has FIN clear on all but the last.
# - **RSV1-3** (3 bits): reserved for extensions such as compression. Without a
#   negotiated extension they must be 0.
# - **opcode** (4 bits): what the frame carries. `0x1` text, `0x2` binary, `0x0`
#   continuation of a message; `0x8` close, `0x9` ping, `0xA` pong. The other values
#   are reserved.
# - **MASK** (1 bit): the payload is masked with the 4-byte key that follows.
# - **payload len** (7 bits): the payload length, if it is at most 125. The values 126
#   and 127 mean "the length is in the next 2 bytes" and "in the next 8 bytes".

# %% [markdown]
# ## 3. A frame by hand
#
# Let's build the smallest useful frame: the text message `Hello`, sent by a server
# (so, as you will see, not masked). First byte: FIN set and opcode 1. Second byte:
# MASK clear and the length, 5. Then the 5 bytes of UTF-8.

# %%
payload = "Hello".encode("utf-8")
first = 0b1000_0000 | 0x1  # FIN=1, RSV=000, opcode 0x1 (text)
second = 0b0000_0000 | len(payload)  # MASK=0, payload length 5
by_hand = bytes([first, second]) + payload
by_hand.hex(" ")

# %% [markdown]
# Seven bytes, two of them header. The codec's `Frame` builds the same bytes from
# named fields, and `Frame.parse` reads them back: it returns the frame and the
# number of bytes it used.

# %%
frame = Frame(Opcode.TEXT, b"Hello")
print(frame.serialize().hex(" "))
print("the same 7 bytes as by hand" if frame.serialize() == by_hand else "NOT the bytes built by hand")
Frame.parse(by_hand)

# %% [markdown]
# `parse_header` shows the header's fields exactly as the bytes say, and `describe`
# gives one line per frame. You will see that line a lot in this lesson.

# %%
print(parse_header(by_hand))
print(describe(frame))

# %% [markdown]
# ## 4. Three ways to write the length
#
# The 7-bit field holds 0 to 125. For 126 to 65,535 bytes it holds **126** and the
# length follows in 2 bytes; from 65,536 bytes on it holds **127** and the length
# follows in 8 bytes (big-endian, section 5.2). So the header grows from 2 to 4 to 10
# bytes, and a frame can never be mistaken for another: the header always says
# exactly how many bytes belong to it.

# %%
for size in (125, 126, 65536):
    wire = Frame(Opcode.BINARY, bytes(size)).serialize()
    header = parse_header(wire)
    print(f"{size:>6} bytes of payload: header {wire[: header.size].hex(' '):<30} "
          f"({header.size} bytes, 7-bit field = {header.length_code})")

# %% [markdown]
# ## 5. Masking
#
# Every frame a **client** sends must be masked (section 5.1). The client picks a fresh,
# unpredictable 4-byte **masking key** for each frame, puts it in the header, and XORs
# payload byte `i` with `key[i % 4]`. This is the example of section 5.7: `Hello`, masked
# with the key `37 fa 21 3d`. (A real client draws the key from `os.urandom(4)`; it is
# fixed here so that the output stays the same.)

# %%
key = bytes.fromhex("37fa213d")
masked = Frame(Opcode.TEXT, b"Hello", masking_key=key).serialize()
print(masked.hex(" "))
HTML(legend_html() + "<p>" + frame_fields_html(masked[:6], Frame(Opcode.TEXT, b"Hello", masking_key=key)) + "</p>")

# %% [markdown]
# The second byte is now `85`: MASK set, length 5. The four key bytes follow, and the
# payload on the wire is `7f 9f 4d 51 58`, no longer `Hello`. XOR is its own inverse, so
# the server unmasks with the same operation:

# %%
on_the_wire = masked[6:]
unmasked = bytes(b ^ key[i % 4] for i, b in enumerate(on_the_wire))
print(on_the_wire.hex(" "), "->", unmasked)

# %% [markdown]
# **Why clients mask** (section 10.3). Masking is not encryption: the key travels in the
# frame, in the clear. It protects *other people's* caches. A script on a web page chooses
# what its WebSocket sends. If those bytes went on the wire as chosen, a script could write
# bytes that look like an HTTP request (`GET /app.js HTTP/1.1`, `Host: bank.example`) to
# its own server, which answers with bytes that look like a response. A proxy on the path
# that does not understand WebSockets could take that for a real exchange and cache the
# attacker's "`app.js`" for everyone behind it: **cache poisoning**. Because the browser
# picks an unpredictable key for every frame, the script cannot know which bytes will
# appear on the wire, so it cannot forge a request.
#
# **Why servers do not mask.** The attack needs untrusted code choosing what goes *up*
# through the proxy, and that code runs in the browser. A server only sends what its own
# operator wrote, so masking would cost CPU and protect nothing. The RFC forbids it both
# ways: a server closes the connection on an unmasked client frame, and a client on a
# masked server frame (section 5.1).

# %% [markdown]
# ## 6. Fragmentation: one message, several frames
#
# A message does not have to fit in one frame. The first frame carries the opcode (text
# here) with FIN clear, the next ones are **continuation** frames (opcode `0x0`), and the
# last has FIN set (section 5.4). A sender can start a message before it knows its whole
# length, and control frames may slip in between the fragments, like the ping below.

# %%
fragments = [
    Frame(Opcode.TEXT, b"Hel", fin=False),
    Frame(Opcode.PING, b"still there?"),
    Frame(Opcode.CONTINUATION, b"lo, ", fin=False),
    Frame(Opcode.CONTINUATION, b"frames!"),
]
assembler = MessageAssembler()
for fragment in fragments:
    message = assembler.add(fragment)
    print(f"{describe(fragment):<64} -> {message}")
message.text

# %% [markdown]
# `MessageAssembler` also enforces the rules: a continuation with no message started, or a
# new text frame before the last message ended, is a protocol error.

# %%
try:
    MessageAssembler().add(Frame(Opcode.CONTINUATION, b"orphan"))
except FrameError as exc:
    print(f"close with {exc.close_code.value} ({exc.close_code.name}): {exc}")

# %% [markdown]
# ## 7. Control frames: ping, pong, close
#
# Opcodes `0x8` to `0xA` are **control frames** (section 5.5). They manage the connection
# rather than carry messages, they may carry at most **125 bytes**, and they are never
# fragmented.
#
# - **ping** asks "are you there?"; the peer answers with a **pong** carrying the same
#   payload. Lesson 04 uses them as a heartbeat to find dead connections.
# - **close** starts the closing handshake. Its payload is a 2-byte **status code** and an
#   optional UTF-8 reason; the other side answers with a close frame of its own, and then
#   the TCP connection ends.

# %%
ping = Frame(Opcode.PING, b"are you there?")
pong = Frame(Opcode.PONG, ping.payload)  # a pong echoes the ping's payload
close = Frame(Opcode.CLOSE, close_payload(1001, "server restarting"))
for control in (ping, pong, close):
    print(describe(control))
print(close.payload.hex(" "))
parse_close(close.payload)

# %% [markdown]
# The codes you will meet most (section 7.4.1):
#
# | Code | Name | Sent when |
# |---|---|---|
# | 1000 | normal closure | all is well, we are done |
# | 1001 | going away | a server shutting down, a browser leaving the page |
# | 1002 | protocol error | a frame broke the framing rules |
# | 1006 | abnormal closure | **never sent**: reported when the TCP connection ended without a close frame |
# | 1007 | invalid payload data | for example, a text message that is not UTF-8 |
# | 1008 | policy violation | the lab: a bad token, the rate limit |
# | 1009 | message too big | over the receiver's size limit |
#
# The 125-byte limit is checked from the header alone, before any payload arrives:

# %%
big_ping = bytes([0x89, 126, 0x00, 200]) + bytes(200)  # a 200-byte ping
try:
    Frame.parse(big_ping)
except FrameError as exc:
    print(f"close with {exc.close_code.value} ({exc.close_code.name}): {exc}")

# %% [markdown]
# ## 8. Live: a hand-built frame to the lab
#
# Time to talk to the real server. `RawWebSocket` opens a plain TCP socket and sends the
# handshake of lesson 02; the server answers `101`. Then the first frame arrives: the
# server's `welcome` message, the `81 7e 00 ...` you received raw in lesson 02. Now you can
# read it: FIN and text; no MASK and 126, so the length is in the next two bytes.

# %%
host, port = lab.host, lab.port
alice = lab.account("alice")
raw = RawWebSocket.connect(host, port, handshake_request(host, port, f"/ws?token={alice.token}"))
print(raw.response.status, raw.response.reason)
welcome = raw.recv_frame()
print(welcome.serialize()[:4].hex(" "), "->", describe(welcome, limit=60))

# %% [markdown]
# Now build a masked text frame yourself, with no codec: the lab's application-level
# ping message `{"type":"ping","ref":1}`, which the server answers with a `pong` message.

# %%
message = b'{"type":"ping","ref":1}'
key = bytes.fromhex("0badf00d")
header = bytes([0x80 | 0x1, 0x80 | len(message)])  # FIN + text; MASK + length
frame_bytes = header + key + bytes(b ^ key[i % 4] for i, b in enumerate(message))
print(frame_bytes.hex(" "))
raw.sock.sendall(frame_bytes)

# %% [markdown]
# The reply is a server frame: not masked. Its payload is the JSON answer, with the
# server's clock in it.

# %%
reply = raw.recv_frame()
print("opcode:", reply.opcode.name, "| FIN:", reply.fin, "| masked:", reply.masking_key is not None)
json.loads(reply.payload)

# %%
raw.close()

# %% [markdown]
# ## 9. Live: a frame tap between a client and the lab
#
# A **frame tap** is a small TCP proxy: clients connect to it, it connects to the lab, and
# it relays bytes both ways unchanged. On the side, it reads the frames going through.
# Client-to-server frames should be masked, server-to-client frames not. Start one in
# front of the lab:

# %%
tap = await FrameTap.for_lab(lab).start()
tap

# %% [markdown]
# The **frame inspector** shows what the tap captures, live: direction (`→` to the server,
# `←` to the client), opcode, FIN, RSV, MASK, payload length, the header's bytes in the
# figure's colours (hover over them for what each field says) and a preview of the
# payload. Keep it in view while the next cells run.

# %%
inspector = FrameInspector(tap)
inspector

# %% [markdown]
# Two ordinary `websockets` clients, Carol and Bob, connect **through the tap** (to
# `tap.ws_url` instead of the lab's URL). Both join the room `frames`, Bob chats, and Bob's
# library sends a ping frame of its own. Watch the rows appear in the inspector.

# %%
async def send_and_wait(ws, message):
    """Send ``message`` and return the server's answer to it (same ``ref``)."""
    await ws.send(json.dumps(message))
    while True:
        answer = json.loads(await ws.recv())
        if answer.get("ref") == message["ref"]:
            return answer


carol = await websockets.connect(f"{tap.ws_url}?token={lab.account('carol').token}", compression=None)
bob = await websockets.connect(f"{tap.ws_url}?token={lab.account('bob').token}", compression=None)
bob_id = tap.connections()[-1].id  # Bob's connection through the tap
await send_and_wait(carol, {"type": "join", "room": "frames", "ref": 1})
await send_and_wait(bob, {"type": "join", "room": "frames", "ref": 1})
await (await bob.ping(b"still there?"))  # a ping frame; wait for the pong
await send_and_wait(bob, {"type": "chat", "room": "frames", "text": "hello, frames!", "ref": 2})

# %% [markdown]
# The same capture as text, one connection at a time: every frame Bob's library sent is
# masked, every frame from the server is not. Carol received the `member_joined` and the
# `chat` that Bob's actions caused, without asking for anything.

# %%
for connection in tap.connections():
    print(f"connection #{connection.id}:")
    for captured in tap.frames:
        if captured.connection_id == connection.id:
            f = captured.frame
            what = json.loads(f.payload)["type"] if f.opcode is Opcode.TEXT else f.payload.decode()
            print(f"  {captured.direction.arrow} {f.opcode.name:<5} masked={f.masking_key is not None!s:<5} {what}")

# %% [markdown]
# The server encodes a broadcast **once** and writes the same bytes to every recipient.
# The tap can check: the `chat` frame that reached Carol and the one that reached Bob are
# byte for byte identical.

# %%
chats = [c for c in tap.frames if c.direction is Direction.SERVER_TO_CLIENT and c.frame.payload.startswith(b'{"type":"chat"')]
print(len(chats), "chat frames, on connections", [c.connection_id for c in sorted(chats, key=lambda c: c.connection_id)])
same = chats[0].raw_header + chats[0].frame.payload == chats[1].raw_header + chats[1].frame.payload
print("Carol's and Bob's chat frames:", "byte for byte identical" if same else "different")

# %% [markdown]
# ## 10. Bad frames and the close codes they earn
#
# A well-behaved library never sends a bad frame, so we write the bytes ourselves, over
# a hand-made connection through the tap. `send_bad_frame` opens a connection with the
# handshake from `labserver.rawws`, waits for the `welcome`, sends `wire`, and reads frames
# with a `FrameReader` until the server's close frame arrives. The `FrameReader` keeps
# whatever part of a frame has arrived, since TCP delivers bytes in pieces of any size.

# %%
mallory = lab.account("mallory")


async def send_bad_frame(wire: bytes):
    reader, writer = await asyncio.open_connection(tap.host, tap.port)
    writer.write(handshake_request(tap.host, tap.port, f"/ws?token={mallory.token}"))
    await reader.readuntil(b"\r\n\r\n")  # the 101 response head
    frames = FrameReader(expect_masked=False)  # what a server sends
    sent = False
    try:
        while True:
            for frame in frames.feed(await asyncio.wait_for(reader.read(65536), 5)):
                if frame.opcode is Opcode.CLOSE:
                    return parse_close(frame.payload)
                if not sent:  # the welcome is in: now the bad frame
                    writer.write(wire)
                    sent = True
    finally:
        writer.close()


key = bytes.fromhex("0badf00d")
bad_frames = {
    "unmasked text frame": Frame(Opcode.TEXT, b'{"type":"ping"}').serialize(),
    "reserved opcode 0x3": bytes([0x80 | 0x3, 0x80]) + key,
    "invalid UTF-8 text": Frame(Opcode.TEXT, b"\xff\xfe", masking_key=key).serialize(),
    "64 KiB + 1 byte text": Frame(Opcode.TEXT, b"x" * (64 * 1024 + 1), masking_key=key).serialize(),
}
for name, wire in bad_frames.items():
    print(f"{name:<22} -> server closes with {await send_bad_frame(wire)}")

# %% [markdown]
# Each failure has its code: breaking the framing rules is **1002** (the unmasked frame is
# forbidden by section 5.1; opcode 3 is reserved), text that is not UTF-8 is **1007**
# (section 8.1), and a message over the server's limit (`max_message_bytes` in the
# `welcome`: 65,536) is **1009**. Look at the inspector: the unmasked frame's MASK cell is
# flagged, and the reserved opcode appears as a row the tap could not read. The tap
# records that and keeps relaying:

# %%
for error in tap.errors:
    print(error.describe())

# %% [markdown]
# ## 11. What a frame costs, next to HTTP
#
# A WebSocket frame adds 2 to 14 bytes to a message. An HTTP request adds a request line
# and headers, and the response adds a status line and headers. Let's measure, through
# the tap, a **short poll** asking for the room's messages: `GET
# /api/rooms/frames/messages` with a bearer token, by hand, with no extra headers. It
# carries the same chat message Carol received in one frame.

# %%
async def short_poll(after: int) -> bytes:
    reader, writer = await asyncio.open_connection(tap.host, tap.port)
    writer.write(
        f"GET /api/rooms/frames/messages?after={after} HTTP/1.1\r\nHost: {tap.host}:{tap.port}\r\n"
        f"Authorization: Bearer {mallory.token}\r\nAccept: application/json\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return body


body = await short_poll(after=0)  # the chat is message 1
with_message = tap.connections()[-1].traffic
empty = await short_poll(after=1)  # nothing new after it
nothing_new = tap.connections()[-1].traffic
pushed = chats[0]  # the chat frame Carol received

# %% tags=["nbval-ignore-output"]
print(f"WebSocket push:         {pushed.size:>4} bytes ({len(pushed.raw_header)} of header)")
print(f"HTTP poll with message: {with_message.total:>4} bytes ({with_message.sent} request + {with_message.received} response)")
print(f"HTTP poll, nothing new: {nothing_new.total:>4} bytes, for {empty.decode()}")

# %% [markdown]
# In a chart, splitting each into the JSON the client wanted and the rest:

# %%
bars = {
    "WebSocket frame\n(server push)": (len(pushed.frame.payload), pushed.size - len(pushed.frame.payload)),
    "HTTP short poll\nwith the message": (len(body), with_message.total - len(body)),
    "HTTP short poll,\nnothing new": (0, nothing_new.total),
}
fig, ax = plt.subplots(figsize=(8, 3))
names = list(bars)
ax.barh(names, [useful for useful, _ in bars.values()], color="#9ecae1", label="JSON the client wanted")
ax.barh(names, [rest for _, rest in bars.values()], left=[useful for useful, _ in bars.values()],
        color="#fdae6b", label="headers and framing")
for y, (useful, rest) in enumerate(bars.values()):
    ax.text(useful + rest + 8, y, f"{useful + rest} B", va="center")
ax.invert_yaxis()
ax.set_xlabel("bytes on the wire for one message")
ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()

# %% [markdown]
# The frame's overhead is a few bytes; the HTTP exchange spends hundreds on headers, and it
# does so even when there is nothing new, which is most of the time for a poll. Real
# browsers send more headers than this hand-written request (cookies, `User-Agent`,
# `Accept-*`), so the gap is usually wider. Lesson 01 compares short polling, long polling
# and push in full, with many clients.

# %% [markdown]
# ## 12. Compression: permessage-deflate and the RSV1 bit
#
# RFC 7692 defines an extension, **permessage-deflate**, that compresses each message with
# DEFLATE (the algorithm of gzip and zlib). A client offers it in its handshake with
# `Sec-WebSocket-Extensions: permessage-deflate`. If the server accepts, its `101` carries
# that header back with the parameters it agreed to, and from then on the first frame of
# every compressed message has **RSV1** set (RFC 7692 section 6). If the `101` has no such
# header, nothing is negotiated, nothing is compressed, and a frame with RSV1 set is a
# protocol error (RFC 6455 section 5.2).
#
# The `websockets` library offers it by default (Carol and Bob above turned it off with
# `compression=None`). Dave connects with the default settings, through the tap, joins a
# room of his own and chats:

# %%
dave = await websockets.connect(f"{tap.ws_url}?token={lab.account('dave').token}")  # compression offered
dave_id = tap.connections()[-1].id
await send_and_wait(dave, {"type": "join", "room": "deflate", "ref": 1})
await send_and_wait(dave, {"type": "chat", "room": "deflate", "text": "is this compressed?", "ref": 2})
await tap.wait_for(lambda c: c.connection_id == dave_id and c.frame.payload.startswith(b'{"type":"chat"'))

request, response = [captured.head for captured in tap.heads if captured.connection_id == dave_id]
print("Dave's request:  Sec-WebSocket-Extensions:", request.header("Sec-WebSocket-Extensions"))
print(f"the lab answers: {response.status} {response.reason}, "
      f"Sec-WebSocket-Extensions: {response.header('Sec-WebSocket-Extensions')}")
dave_frames = [captured.frame for captured in tap.frames if captured.connection_id == dave_id]
print(f"frames with RSV1 set: {sum(f.rsv1 for f in dave_frames)} of {len(dave_frames)} "
      "(expected 0: the 101 accepted no extension)")
print("what Dave's library agreed to:", dave.protocol.extensions)

# %% [markdown]
# The offer was declined by silence: a server accepts an extension by naming it in its
# `101` and declines it by leaving it out (RFC 6455 sections 4.2.2 and 9.1). Both sides then
# send plain frames, with RSV1 = 0 on every one. (Lesson 02 showed the same answer from the
# handshake's side.)
#
# **Why the lab declines it.** A DEFLATE compressor is a context: a 32 KiB window of recent
# bytes plus hash tables, which permessage-deflate keeps from one message to the next on
# each connection ("context takeover"). That is where most of its gain comes from, since
# chat messages repeat the same keys, names and room. But it makes compressed bytes
# **per connection**. The lab encodes a broadcast **once** (one JSON text, one frame) and
# writes the same bytes to every recipient in the room (part 9 checked that with the tap);
# with deflate, a room of 1,000 would need 1,000 compressions of the same message, and
# 1,000 contexts held in memory. There is also a safety reason: a few kilobytes of
# compressed input can inflate to megabytes (a "compression bomb"), and a server that never
# negotiates compression never inflates anything.
#
# What would it buy, and cost? The next cell measures with zlib, the DEFLATE of
# permessage-deflate, on the chat message Carol received in part 9 and 200 more like it:
# raw DEFLATE (`wbits=-15`, the default 32 KiB window), each message flushed and its last 4
# bytes `00 00 ff ff` removed (RFC 7692 section 7.2.1). zlib's documentation predicts the
# memory of one compression context: 2^(15+2) + 2^(8+9) bytes = 256 KiB with the default
# window and memory level, plus a little bookkeeping.

# %% tags=["nbval-ignore-output"]
record = json.loads(chats[0].frame.payload)  # the chat Carol received, as the lab encoded it
words = "see you at noon lunch tomorrow the train is late again coffee photo party tonight thanks great ok".split()
rng = random.Random(3)
messages = [
    json.dumps({**record, "seq": seq, "text": " ".join(rng.choices(words, k=rng.randint(3, 12))),
                "ts": record["ts"] + 7.3 * seq}, separators=(",", ":"), ensure_ascii=False).encode()
    for seq in range(1, 201)
]  # 200 chat messages like it: other words, seq and time


def deflate(context, message: bytes) -> bytes:
    """One permessage-deflate message: compress, flush, drop the 4-byte 00 00 ff ff tail."""
    return (context.compress(message) + context.flush(zlib.Z_SYNC_FLUSH))[:-4]


def compress_all(keep_context: bool) -> tuple[list[int], float]:
    """Compressed sizes of the 200 messages, and the seconds each took (best of 3 runs)."""
    best = float("inf")
    for _ in range(3):
        kept = zlib.compressobj(wbits=-15)  # one connection's context, kept between messages
        start = time.perf_counter()
        sizes = [len(deflate(kept if keep_context else zlib.compressobj(wbits=-15), m)) for m in messages]
        best = min(best, (time.perf_counter() - start) / len(messages))
    return sizes, best


alone, alone_s = compress_all(keep_context=False)
takeover, takeover_s = compress_all(keep_context=True)
size = statistics.mean(len(m) for m in messages)
print(f"a chat message: {size:.0f} bytes of JSON on average")
print(f"  compressed alone (a fresh context each):  {statistics.mean(alone):3.0f} bytes, "
      f"{1 - statistics.mean(alone) / size:.0%} saved, {alone_s * 1e6:.0f} µs each")
print(f"  with the context kept (after the first):   {statistics.mean(takeover[1:]):3.0f} bytes, "
      f"{1 - statistics.mean(takeover[1:]) / size:.0%} saved, {takeover_s * 1e6:.0f} µs each")

tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
contexts = [zlib.compressobj(wbits=-15) for _ in range(100)]
for context in contexts:
    deflate(context, messages[0])
per_context = (tracemalloc.get_traced_memory()[0] - before) / len(contexts)
tracemalloc.stop()
del contexts
print(f"memory per compression context: {per_context / 1024:.0f} KiB (zlib's formula: 256 KiB + bookkeeping)")
room = 1_000
print(f"a broadcast to {room:,} sockets, compressed per connection: {room * takeover_s * 1e3:.0f} ms of CPU for "
      f"each message and {room * per_context / 2**20:.0f} MiB of contexts; uncompressed and encoded once: one "
      f"encode and {room * size / 1024:.0f} KiB written (compressed: {room * statistics.mean(takeover[1:]) / 1024:.0f} KiB)")

# %% [markdown]
# So for small chat messages, the trade is real. A message compressed alone shrinks a
# little (DEFLATE has little to work with in 150 bytes); with the context kept, the savings
# are large, at the price of a quarter megabyte of memory per connection and CPU time per
# recipient. For a server that fans out to big rooms and holds many idle sockets (lesson
# 07), the memory alone rules it out; for a one-to-one connection carrying large, repetitive
# messages, it can be well worth it. RFC 7692 lets both sides shrink the window
# (`server_max_window_bits`, `client_max_window_bits`) or drop the context
# (`server_no_context_takeover`) to trade savings for memory.

# %% [markdown]
# ## 13. Head-of-line blocking: a large message delays a small one
#
# The frames of one connection travel in order on one TCP stream. A frame can only start
# once the one before it has been written in full, and TCP hands bytes over in order. So a
# small message queued behind a large one waits until the large one has gone through the
# slowest link on the way. Fragmentation does not help between messages: only *control*
# frames may be slipped between the fragments of a message (section 5.4); the fragments of
# two data messages must not be interleaved, unless an extension says how.
#
# Over loopback, 64 KiB take microseconds, so we measure through a tap with a **bandwidth
# limit**: 1,000,000 bytes/s each way, a modest mobile link. Erin sends a small
# application-level `ping` five times and times each answer; then five times a 65,535-byte
# `ping` followed at once by the small one, and times the small one from the moment it is
# sent. (65,535 bytes is the largest message the lab accepts: the `welcome` says
# `max_message_bytes` is 65,536, but aiohttp, under the lab, refuses a message of exactly
# that size too.)

# %%
rate = 1_000_000  # bytes per second, each way
slow = await FrameTap.for_lab(lab, bytes_per_second=rate).start()
erin = await websockets.connect(f"{slow.ws_url}?token={lab.account('erin').token}", compression=None, max_size=None)
await erin.recv()  # the welcome


async def small_ping_wait(big_first: bool) -> float:
    """Seconds from sending a small ping to receiving its pong, with or without a 64 KiB ping ahead of it."""
    if big_first:
        await erin.send(ex.big_ping())  # 65,535 bytes up; a 65,568-byte pong comes back
    start = time.perf_counter()
    await erin.send(json.dumps({"type": "ping", "ref": "small"}))
    while json.loads(await erin.recv()).get("ref") != "small":  # the big pong comes first
        pass
    return time.perf_counter() - start


alone = [await small_ping_wait(big_first=False) for _ in range(5)]
behind = [await small_ping_wait(big_first=True) for _ in range(5)]
big_frames = [c for c in slow.frames if c.size > 65_000]
ahead = sum(c.size for c in big_frames) / 5  # the big ping up and its pong down, per round

# %% tags=["nbval-ignore-output"]
print(f"small ping alone:           {statistics.median(alone) * 1e3:6.1f} ms (median of 5)")
print(f"small ping behind a big one: {statistics.median(behind) * 1e3:5.1f} ms (median of 5); "
      f"expected about {ahead / rate * 1e3:.0f} ms: {ahead:,.0f} bytes ahead of it at {rate:,} bytes/s")

# %%
await erin.close()
await slow.close()

# %% [markdown]
# The small message's own bytes take about 30 µs at this rate; all the rest of its wait is
# the big message in front of it: first the big ping has to go up (the small one is queued
# behind it on the uplink), then the big pong down (the small pong is queued behind it). The
# notes (§6) say WebSocket is "not good for large payloads": this is one reason why. Ways
# out: send files and other bulk data over HTTP (an upload endpoint, as the lab has) and only
# a short message on the socket; cut a large payload into small messages the application
# interleaves with the urgent ones; or open a second connection for bulk data. A lost TCP
# segment causes the same effect one layer down: everything behind it waits for the
# retransmission. WebSocket over HTTP/2 (RFC 8441) shares one TCP connection among many
# streams, so it has that TCP-level blocking too; over HTTP/3 (RFC 9220, QUIC) a lost packet
# only delays its own stream, but each WebSocket is still one ordered stream.

# %% [markdown]
# ## 14. Reading frames from a byte stream
#
# A program does not receive frames: it receives whatever bytes `recv()` returns, anywhere
# from 1 byte to many frames at once. So a frame reader keeps a buffer: it adds each read to
# it, cuts off every complete frame at its front, and keeps the rest for the next read. Here
# is what Bob's socket received in part 9, as the tap saw it (`tap.frame_bytes` puts the
# captured frames back together, byte for byte), fed to `labserver.frames.FrameReader` in
# three ways:

# %%
stream = tap.frame_bytes(bob_id, Direction.SERVER_TO_CLIENT)
splits = {
    "all in one read": [stream],
    "reads of 7 bytes": [stream[i : i + 7] for i in range(0, len(stream), 7)],
    "1 byte per read": [stream[i : i + 1] for i in range(len(stream))],
}
for name, chunks in splits.items():
    reader = FrameReader()
    frames = [frame for chunk in chunks for frame in reader.feed(chunk)]
    print(f"{name:<16} -> {len(frames)} frames: {', '.join(f.opcode.name for f in frames)}")

# %% [markdown]
# The same frames, however the bytes were cut. In question 7 below you write such a reader
# yourself, and the check runs it on traffic it captures live, through a new tap, cut in
# awkward ways.

# %% [markdown]
# ## Check yourself
#
# Replace `...` with your answer and run the cell. `ex.q1.hint()` gives a hint,
# `ex.q1.solution()` the answer with an explanation. Use the codec to check your
# reasoning, but try each one by hand first.
#
# **Question 1.** Decode a frame the tap captured.

# %%
ex.q1

# %%
answer = ...  # (opcode, payload_length, payload_text)
ex.q1.check(answer)

# %% [markdown]
# **Question 2.** Read the header of a client's frame.

# %%
ex.q2

# %%
answer = ...  # (fin, opcode, masked, payload_length)
ex.q2.check(answer)

# %% [markdown]
# **Question 3.** Build a masked text frame yourself: header, key and masked payload.

# %%
def build_masked_text_frame(text: str, key: bytes) -> bytes:
    ...


ex.q3.check(build_masked_text_frame)

# %% [markdown]
# **Questions 4 to 6.** Pick the close code. Answer each with a letter.

# %%
ex.q4

# %%
answer = ...
ex.q4.check(answer)

# %%
ex.q5

# %%
answer = ...
ex.q5.check(answer)

# %%
ex.q6

# %%
answer = ...
ex.q6.check(answer)

# %% [markdown]
# **Question 7.** Write a frame reader, and run it on traffic captured live. This is the
# one that talks to the lab: the check opens a tap, captures a fresh conversation (both
# directions, every length encoding, a fragmented message, a ping, a close) and feeds it to
# your function cut in five ways, from one frame per read to 1 byte per read.

# %%
ex.q7

# %%
def read_frames(chunks):
    ...


await ex.q7.check_async(read_frames)

# %%
# ex.q7.hint()
# ex.q7.solution()

# %% [markdown]
# ## Summary
#
# - After the handshake, a WebSocket carries **frames**: a 2 to 14-byte header (FIN, RSV,
#   opcode, MASK, a 7, 7+16 or 7+64-bit length, a masking key) and the payload.
# - **Clients mask** every frame with a fresh random key, so that scripts cannot choose the
#   bytes on the wire (section 10.3); **servers never mask**. Either mistake closes the
#   connection with 1002.
# - A **message** can span several frames (continuations, FIN on the last); **control
#   frames** (ping, pong, close) are at most 125 bytes, never fragmented, and may come
#   between fragments.
# - Broken frames get **1002**, bad UTF-8 **1007**, oversized messages **1009**; **1006** is
#   never sent, only reported.
# - TCP delivers **bytes**, not frames: a reader buffers, cuts off whole frames, and keeps
#   the rest (your `read_frames`).
# - **permessage-deflate** (RFC 7692) sets RSV1 on compressed messages once a `101` accepts
#   it. The lab declines by leaving the header out: compression is per connection, so it
#   would cost a compression per recipient and about 256 KiB of memory per socket, where
#   the lab encodes a broadcast once.
# - **Head-of-line blocking**: on one socket, a small message waits behind a large one for
#   as long as the slowest link needs to carry it. Keep large payloads off the socket that
#   carries the urgent small ones.
#
# **Common misconceptions**
#
# - *"Masking encrypts the data."* No: the key is in the frame, in the clear. For secrecy
#   use `wss://` (TLS), as lesson 09 shows.
# - *"One `send()` is one TCP packet, and one `recv()` one frame."* No: TCP is a byte stream.
#   A frame can arrive in pieces, and several frames can arrive together; that is why a
#   reader like `FrameReader` keeps what it has not used yet.
# - *"A message is a frame."* Often, but not always: a message may be fragmented, and a
#   ping may arrive in the middle of it.
# - *"A WebSocket adds a lot of overhead."* The opposite: after the one-time handshake, a
#   small message costs 2 bytes of header from a server and 6 from a client. Without
#   compression, though, the JSON itself goes as it is.
# - *"WebSocket messages are always fast."* Only while nothing large is ahead of them on the
#   same connection.
#
# Next: [04 · Connection lifecycle](04_connection_lifecycle.ipynb): closing handshakes and
# close codes, heartbeats, reconnecting with backoff and resuming.

# %% [markdown]
# When you are done, stop the inspector and the tap (the lab keeps running for the next
# lesson).

# %%
inspector.stop()
await carol.close()
await bob.close()
await dave.close()
await tap.close()

# %% [markdown]
# ← Previous: [02 · The Upgrade handshake](02_the_upgrade_handshake.ipynb) · [Course index](index.ipynb) · Next: [04 · Connection lifecycle](04_connection_lifecycle.ipynb) →
