"""Exercises of lesson 09: Socket.IO on the wire, wss:// behind a proxy, WebRTC signaling.

The ideas they practise: why a plain WebSocket client cannot talk to a Socket.IO server (q1);
what a proxy terminating TLS must forward for a WebSocket (q2); speaking Engine.IO and
Socket.IO by hand over a plain WebSocket, checked live against a fresh python-socketio
server (q3); relaying a WebRTC offer, answer and ICE candidates through the lab, checked
live through a frame tap (q4).

    from labserver.course.exercises import lesson09 as ex
    ex.q1.check("c")
    ex.q2.check("b")
    await ex.q3.check_async(chat_by_hand)     # live: a Socket.IO server started for the check
    await ex.q4.check_async(place_call)       # live: the lab, through a tap
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import socketio  # type: ignore[import-untyped]  # python-socketio ships no type information
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ...frames.codec import Opcode
from ...tap import FrameTap
from ...wire import C2S, S2C, CapturedFrame
from ..socketio_chat import SocketIOChat
from .core import CheckError, ChoiceProblem, Incorrect, Lesson, LiveProblem

lesson = Lesson("lesson09", "Socket.IO, wss:// and WebRTC signaling")

CHECK_TIMEOUT = 10.0  # seconds a student's function may take


# --- q1: a plain WebSocket client against Socket.IO ---------------------------------------------

q1 = lesson.add(
    "q1",
    ChoiceProblem(
        {
            "a": "Socket.IO servers refuse the WebSocket handshake from any client that is not a browser",
            "b": "Socket.IO uses binary frames only, and a plain client sends text",
            "c": "it can open the WebSocket (at /socket.io/?EIO=4&transport=websocket), but must then speak "
            "Engine.IO and Socket.IO packets: answer the open packet with 40, send events as 42[...]",
            "d": "it cannot: Socket.IO does not use WebSocket at all, only HTTP long polling",
        },
        "c",
        title="A plain WebSocket client and a Socket.IO server",
        question=(
            "A teammate points a browser's `new WebSocket(url)` at the company's Node Socket.IO server and "
            "sends `JSON.stringify({type: 'chat', text: 'hi'})`. Nothing works. Which statement is right?"
        ),
        explanations={
            "a": "the handshake is RFC 6455's and any client may send it (part 5 opened one with `websockets`); "
            "what fails comes after it.",
            "b": 'Socket.IO\'s packets are text frames (`42["chat",...]`); binary frames only carry binary '
            "attachments.",
            "c": "the WebSocket is only Engine.IO's transport: the first message is the open packet `0{...}`, "
            "the client must connect to a namespace with `40`, and every event is `42[...]`. A message starting "
            "with `{` is not a packet: the server drops the connection.",
            "d": "it starts with long polling and *upgrades* to WebSocket when it can (part 3's tap shows the 101).",
        },
        hint=[
            "Part 5 tried three URLs and one plain JSON message. Which step failed, and what did the server "
            "send first?",
            "A Socket.IO message on the wire is a WebSocket text frame whose payload starts with digits.",
        ],
        solution="**c**. The WebSocket opens, but it carries Engine.IO packets (`0` open, `2`/`3` ping/pong, `4` "
        "message) holding Socket.IO packets (`0` connect, `2` event, `3` ack). Use a Socket.IO client, or speak "
        "the packets yourself (q3).",
    ),
)


# --- q2: what the proxy must forward ---------------------------------------------------------------

q2 = lesson.add(
    "q2",
    ChoiceProblem(
        {
            "a": "nothing special: a proxy forwards every header as it is, Upgrade included",
            "b": "Upgrade and Connection set explicitly (they are hop-by-hop), Host and Origin unchanged, and "
            "X-Forwarded-For / X-Forwarded-Proto so the backend knows the client and that it was https",
            "c": "only X-Forwarded-Proto: the backend must see wss:// to accept the upgrade",
            "d": "the TLS certificate, so that the backend can check the client",
        },
        "b",
        title="TLS terminated at a proxy",
        question=(
            "nginx terminates TLS for `wss://chat.example.com/ws` and proxies to the application at "
            "`http://10.0.0.5:8765`. Behind it, every WebSocket handshake gets a 400 and the logs show the "
            "proxy's address for every user. What must the proxy forward?"
        ),
        explanations={
            "a": "`Upgrade` and `Connection` are hop-by-hop (RFC 9110 section 7.6.1): a proxy removes them unless "
            "it sets them again, and the backend sees an ordinary GET: 400.",
            "c": "the backend sees a plain `ws://` upgrade either way; without `Upgrade`/`Connection` there is no "
            "upgrade at all. X-Forwarded-Proto matters for cookies and scheme checks, not for the 400.",
            "d": "the certificate stays at the proxy: TLS ends there. The backend needs headers, not keys.",
        },
        hint=[
            "Which headers does a proxy drop on purpose? Look up *hop-by-hop* headers.",
            "Two symptoms, two fixes: the 400 (the upgrade did not get through) and the wrong address (the "
            "backend only sees the proxy's).",
        ],
        solution="**b**. `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header "
        'Connection "upgrade";` fixes the 400; `Host` and `Origin` unchanged keep the Origin check meaningful; '
        "`X-Forwarded-For` and `X-Forwarded-Proto` tell the backend who and how (trusted from its proxy only).",
    ),
)


# --- q3: Socket.IO by hand over a plain WebSocket ------------------------------------------------------


async def _chat_by_hand_reference(url: str, username: str, room: str, text: str) -> int:
    ws_url = "ws" + url.removeprefix("http") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(ws_url) as ws:
        opened = str(await ws.recv())  # 0{"sid": ..., "pingInterval": ...}
        assert opened.startswith("0"), opened
        await ws.send("40" + json.dumps({"username": username}))  # CONNECT to "/" with auth
        while not (msg := str(await ws.recv())).startswith("40"):
            pass
        await ws.send("421" + json.dumps(["join", room]))  # EVENT, ack id 1
        while not (msg := str(await ws.recv())).startswith("431"):
            if msg == "2":
                await ws.send("3")  # answer the heartbeat
        await ws.send("422" + json.dumps(["chat", {"room": room, "text": text}]))  # EVENT, ack id 2
        while not (msg := str(await ws.recv())).startswith("432"):
            if msg == "2":
                await ws.send("3")
        seq: int = json.loads(msg[3:])[0]["seq"]
        return seq


class SocketIOByHandProblem(LiveProblem):
    """Runs the student's coroutine against a fresh python-socketio chat, with a real client in the room."""

    call_with = "chat_by_hand"
    answer_kind = "async"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        room, text = f"room-{secrets.token_hex(3)}", f"by hand {secrets.token_hex(4)}"
        with SocketIOChat(ping_interval=0.5, ping_timeout=2) as chat:
            listener = socketio.AsyncClient(handle_sigint=False, reconnection=False)
            received: list[dict[str, Any]] = []
            listener.on("chat", lambda data: received.append(data))
            try:
                await listener.connect(chat.url, auth={"username": "listener"}, transports=["websocket"])
                await listener.call("join", room, timeout=5)
                await listener.call("chat", {"room": room, "text": "warm-up"}, timeout=5)  # seq 1
                try:
                    async with asyncio.timeout(CHECK_TIMEOUT):
                        result = await answer(chat.url, "student", room, text)
                except TimeoutError:
                    raise Incorrect(
                        f"`chat_by_hand` had not returned after {CHECK_TIMEOUT:g} s: is it waiting for an ack "
                        "that never comes (an event sent without an ack id), or for a packet it already missed?"
                    ) from None
                except InvalidStatus as exc:
                    raise Incorrect(
                        f"the server refused your handshake with HTTP {exc.response.status_code}: the URL must be "
                        "`/socket.io/?EIO=4&transport=websocket`."
                    ) from None
                except ConnectionClosed:
                    raise Incorrect(
                        "the server dropped your WebSocket: every message must be an Engine.IO packet "
                        '(e.g. `40{...}` to connect, `421["join", ...]` for an event with ack id 1).'
                    ) from None
                except Exception as exc:
                    raise CheckError(f"`chat_by_hand` raised {type(exc).__name__}: {exc}") from None
                async with asyncio.timeout(5):
                    while not any(m.get("text") == text for m in received):
                        await asyncio.sleep(0.02)
            except TimeoutError:
                raise Incorrect(
                    f"a python-socketio client in `{room}` never received a chat saying {text!r}: did you join "
                    'the room first (`["join", room]`) and send `["chat", {"room": room, "text": text}]`?'
                ) from None
            finally:
                await listener.disconnect()
        message = next(m for m in received if m.get("text") == text)
        if message.get("from") != "student":
            raise Incorrect(f'the chat arrived from {message.get("from")!r}: connect with `40{{"username": ...}}`.')
        if result != message["seq"]:
            raise Incorrect(
                f"your function returned {result!r}; the chat's seq is {message['seq']}: return the `seq` of the "
                'server\'s ACK (`432[{"seq": ...}]`).'
            )
        return (
            f"a python-socketio client in `{room}` received your chat as seq {message['seq']}, and you read the same "
            "seq from the ACK: you spoke Engine.IO and Socket.IO with nothing but a WebSocket."
        )


q3 = lesson.add(
    "q3",
    SocketIOByHandProblem(
        title="Socket.IO from a plain WebSocket",
        question=(
            "Write `async def chat_by_hand(url, username, room, text)` with `websockets` only (no socketio). "
            "`url` is a Socket.IO chat like part 3's (`http://127.0.0.1:PORT`). Open the WebSocket at "
            '`/socket.io/?EIO=4&transport=websocket`, connect with `auth` `{"username": username}`, join '
            "`room` and send a chat saying `text`, each with an ack id, and return the `seq` from the chat's "
            "acknowledgement. The check starts a fresh Socket.IO chat with a python-socketio client in the room: "
            "`await ex.q3.check_async(chat_by_hand)`."
        ),
        hint=[
            "Part 3's tap is the script: the server speaks first (`0{...}`), then `40{...}` connects, "
            '`421["join","lobby"]` is answered `431[...]`.',
            "An event with ack id 2 is `'422' + json.dumps(['chat', {...}])`; read messages until one starts "
            "with `432`, and `json.loads(msg[3:])[0]['seq']`.",
            "The server pings (`2`) every `pingInterval`: answer `3`, or it drops you after `pingTimeout`.",
        ],
        solution=(
            "```python\n"
            "import json, websockets\n\n"
            "async def chat_by_hand(url, username, room, text):\n"
            '    ws_url = "ws" + url.removeprefix("http") + "/socket.io/?EIO=4&transport=websocket"\n'
            "    async with websockets.connect(ws_url) as ws:\n"
            "        await ws.recv()                                        # 0{...}: Engine.IO open\n"
            '        await ws.send("40" + json.dumps({"username": username}))   # Socket.IO CONNECT, with auth\n'
            '        while not (msg := await ws.recv()).startswith("40"):\n'
            "            pass\n"
            '        await ws.send("421" + json.dumps(["join", room]))        # EVENT, ack id 1\n'
            '        while not (msg := await ws.recv()).startswith("431"):\n'
            '            if msg == "2":\n'
            '                await ws.send("3")                             # pong\n'
            '        await ws.send("422" + json.dumps(["chat", {"room": room, "text": text}]))\n'
            '        while not (msg := await ws.recv()).startswith("432"):\n'
            '            if msg == "2":\n'
            '                await ws.send("3")\n'
            '        return json.loads(msg[3:])[0]["seq"]\n'
            "```\n\n"
            "All of Socket.IO's extras are in these digits: the CONNECT with auth, the event name as the array's "
            "first element, the ack id between type and data, the heartbeat as text. A library writes them for "
            "you, and both ends must agree on them."
        ),
    ),
)


# --- q4: a call signaled through the lab ------------------------------------------------------------------


async def _place_call_reference(ws_url: str, caller_token: str, callee_token: str, callee_id: int) -> None:
    async with (
        websockets.connect(f"{ws_url}?token={caller_token}") as caller,
        websockets.connect(f"{ws_url}?token={callee_token}") as callee,
    ):
        caller_welcome = json.loads(await caller.recv())
        await callee.recv()  # welcome

        async def next_signal(ws: Any, kind: str) -> dict[str, Any]:
            while (msg := json.loads(await ws.recv())).get("type") != "signal" or msg.get("kind") != kind:
                pass
            return dict(msg)

        offer = {"type": "signal", "to": callee_id, "kind": "offer", "data": {"sdp": "v=0 offer"}}
        await caller.send(json.dumps(offer))
        got = await next_signal(callee, "offer")
        caller_id = got["from"]["id"]
        answer = {"to": caller_id, "to_socket": got["from_socket"], "kind": "answer", "data": {"sdp": "v=0 answer"}}
        await callee.send(json.dumps({"type": "signal", **answer}))
        await next_signal(caller, "answer")
        ice = {"candidate": "candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host"}
        await caller.send(json.dumps({"type": "signal", "to": callee_id, "kind": "ice", "data": ice}))
        await callee.send(
            json.dumps(
                {
                    "type": "signal",
                    "to": caller_id,
                    "to_socket": caller_welcome["socket_id"],
                    "kind": "ice",
                    "data": ice,
                }
            )
        )
        await next_signal(callee, "ice")
        await next_signal(caller, "ice")


def _signals(frames: list[CapturedFrame], direction: Any) -> list[tuple[int, dict[str, Any]]]:
    """``(connection id, message)`` for every JSON ``signal`` text frame in one direction."""
    out = []
    for captured in frames:
        if captured.direction is not direction or captured.frame.opcode is not Opcode.TEXT:
            continue
        try:
            message = json.loads(captured.frame.payload)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("type") == "signal":
            out.append((captured.connection_id, message))
    return out


class PlaceCallProblem(LiveProblem):
    """Runs the student's coroutine through a frame tap in front of the lab and reads the signaling."""

    call_with = "place_call"
    answer_kind = "async"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        tag = secrets.token_hex(3)
        caller, callee = await asyncio.gather(
            asyncio.to_thread(lab.account, f"caller_{tag}"), asyncio.to_thread(lab.account, f"callee_{tag}")
        )
        async with FrameTap.for_lab(lab) as tap:
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    await answer(tap.ws_url, caller.token, callee.token, callee.id)
            except TimeoutError:
                raise Incorrect(
                    f"`place_call` had not returned after {CHECK_TIMEOUT:g} s: is one side waiting for a signal "
                    "that was sent to the other user, or before it was connected?"
                ) from None
            except InvalidStatus as exc:
                raise Incorrect(f"the lab refused a handshake with HTTP {exc.response.status_code}.") from None
            except Exception as exc:
                raise CheckError(f"`place_call` raised {type(exc).__name__}: {exc}") from None
            frames = tap.frames
        sent = _signals(frames, C2S)
        received = _signals(frames, S2C)
        welcomes = {}
        for captured in frames:
            if captured.direction is S2C and captured.frame.opcode is Opcode.TEXT:
                try:
                    message = json.loads(captured.frame.payload)
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("type") == "welcome":
                    welcomes[message["user"]["id"]] = (captured.connection_id, message["socket_id"])
        if caller.id not in welcomes or callee.id not in welcomes:
            raise Incorrect("open two sockets through `ws_url`, one with each token (`?token=`).")
        caller_conn, caller_socket = welcomes[caller.id]
        callee_conn, _ = welcomes[callee.id]
        kinds_sent = {(conn, m.get("kind")) for conn, m in sent}
        if (caller_conn, "offer") not in kinds_sent:
            raise Incorrect("the caller never sent a `signal` of kind `offer` to the callee.")
        if (callee_conn, "answer") not in kinds_sent:
            raise Incorrect("the callee never answered: a `signal` of kind `answer` back to the caller.")
        answers = [m for conn, m in sent if conn == callee_conn and m.get("kind") == "answer"]
        if any(m.get("to_socket") != caller_socket for m in answers):
            raise Incorrect(
                "the answer must go to the one tab that called, not to every tab of the caller: "
                "`to_socket` = the offer's `from_socket`."
            )
        for conn, who in ((caller_conn, "caller"), (callee_conn, "callee")):
            if (conn, "ice") not in kinds_sent:
                raise Incorrect(f"the {who} sent no ICE candidate (a `signal` of kind `ice`).")
        got = {(conn, m.get("kind")) for conn, m in received}
        missing = [
            f"{kind} at the {who}"
            for conn, who, kind in (
                (callee_conn, "callee", "offer"),
                (caller_conn, "caller", "answer"),
                (callee_conn, "callee", "ice"),
                (caller_conn, "caller", "ice"),
            )
            if (conn, kind) not in got
        ]
        if missing:
            raise Incorrect(f"these signals never arrived: {', '.join(missing)}. Wait for each before you close.")
        return (
            f"{len(sent)} signals relayed by the lab (offer, answer to the calling socket, ICE both ways); "
            "the media would now flow peer to peer, never through the lab."
        )


q4 = lesson.add(
    "q4",
    PlaceCallProblem(
        title="Signal a call through the lab",
        question=(
            "Write `async def place_call(ws_url, caller_token, callee_token, callee_id)` with `websockets`: open "
            "one socket per token (`?token=`); the caller sends a `signal` of kind `offer` to `callee_id`; the "
            "callee, on receiving it, answers with kind `answer` to the offer's `from` user **and** its "
            "`from_socket` (`to_socket`); then each side sends one `ice` candidate to the other, and both wait "
            "until they have received the other's. `data` can be any small JSON (a fake SDP). The check runs it "
            "through a frame tap in front of the lab: `await ex.q4.check_async(place_call)`."
        ),
        hint=[
            'A signal: `{"type": "signal", "to": user_id, "kind": "offer", "data": {"sdp": "v=0 ..."}}` '
            "(PROTOCOL.md section 6). The receiver gets `from` (the user) and `from_socket`.",
            "Read each socket's `welcome` first: the caller's has its own `socket_id`, which the callee needs "
            "for its ICE candidate (or take it from the offer's `from_socket`).",
            "Other messages may arrive in between (presence, acks): loop until the `signal` of the kind you expect.",
        ],
        solution=(
            "```python\n"
            "import json, websockets\n\n"
            "async def place_call(ws_url, caller_token, callee_token, callee_id):\n"
            '    async with websockets.connect(f"{ws_url}?token={caller_token}") as caller, \\\n'
            '               websockets.connect(f"{ws_url}?token={callee_token}") as callee:\n'
            "        await caller.recv(); await callee.recv()            # the welcomes\n\n"
            "        async def next_signal(ws, kind):\n"
            '            while (m := json.loads(await ws.recv())).get("type") != "signal" or m["kind"] != kind:\n'
            "                pass\n"
            "            return m\n\n"
            '        await caller.send(json.dumps({"type": "signal", "to": callee_id, "kind": "offer",\n'
            '                                      "data": {"sdp": "v=0 offer"}}))\n'
            '        offer = await next_signal(callee, "offer")\n'
            '        caller_id, caller_socket = offer["from"]["id"], offer["from_socket"]\n'
            '        await callee.send(json.dumps({"type": "signal", "to": caller_id, "to_socket": caller_socket,\n'
            '                                      "kind": "answer", "data": {"sdp": "v=0 answer"}}))\n'
            '        await next_signal(caller, "answer")\n'
            '        ice = {"candidate": "candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host"}\n'
            '        await caller.send(json.dumps({"type": "signal", "to": callee_id, "kind": "ice", "data": ice}))\n'
            '        await callee.send(json.dumps({"type": "signal", "to": caller_id, "to_socket": caller_socket,\n'
            '                                      "kind": "ice", "data": ice}))\n'
            '        await next_signal(callee, "ice"); await next_signal(caller, "ice")\n'
            "```\n\n"
            "Four small messages through the server; then the peers talk directly. The answer goes to the calling "
            "*socket*: a user with three tabs must not have all three start the call."
        ),
    ),
)
