"""Exercises of lesson 00, the welcome lesson: connections, users and presence.

The idea they practise: the server holds one WebSocket connection per tab
(each with its own socket id), and groups them per user in
``user_sockets: user id -> set of socket ids``. A user is online while that
set is non-empty.

    from labserver.course.exercises import lesson00 as ex
    ex.q1.check((2, True))
    ex.q2.check("b")
    ex.q3.check(is_online)
    await ex.q4.check_async("your username")        # live: your two browser tabs
    await ex.q5.check_async(say_hello)              # live: your own websockets client
    ex.q6.check(30)

q4 and q5 are live (:class:`LiveProblem`): they look at the running lab. q5 runs the
student's client through a frame tap (:class:`labserver.tap.FrameTap`) that holds
the server's first message back a little, like a slow network, and then reads what
went each way and in which order.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any, cast

from websockets.exceptions import ConnectionClosed, InvalidStatus

from ...frames.codec import Opcode
from ...tap import FrameTap
from ...wire import C2S, S2C, CapturedFrame, Direction, json_objects
from .core import CheckError, ChoiceProblem, FunctionProblem, Incorrect, Lesson, LiveProblem, ValueProblem

lesson = Lesson("lesson00", "Welcome: connections, users and presence")


q1 = lesson.add(
    "q1",
    ValueProblem(
        (2, True),
        title="Two tabs, one user",
        question=(
            "Alice has the chat open in two browser tabs. How many WebSocket connections (sockets) "
            "does the server hold for her, and is she online after she closes one tab? "
            "Answer with a tuple `(sockets, online)`, e.g. `(3, False)`."
        ),
        answer_format="a tuple `(sockets, online)`, e.g. `(3, False)`",
        explanations=[
            (
                (1, True),
                "each tab opens its own socket: the server holds one connection per tab, "
                "not one per user, so two tabs are two sockets.",
            ),
            (
                (2, False),
                "a user is online while ANY of their sockets is open: closing one tab "
                "leaves the other socket open, so Alice is still online.",
            ),
            (
                (1, False),
                "two things to fix: each tab opens its own socket (so two, not one), and a user "
                "is online while ANY of their sockets is open.",
            ),
            (
                (0, False),
                "the server holds a socket for every open tab; Alice has two tabs open.",
            ),
        ],
        correct_message=(
            "two tabs are two sockets in Alice's set; closing one leaves the set non-empty, so she stays online."
        ),
        hint=[
            "Think of the server's `user_sockets`: user id -> the *set* of that user's open sockets. "
            "What does each tab add to Alice's set?",
            "Closing a tab removes one socket from the set. A user is online while their set is not empty.",
        ],
        solution=(
            "`(2, True)`. Every tab runs its own `new WebSocket(...)`, so it is its own connection "
            "with its own socket id: the server holds two for Alice. Presence is per *user*, not "
            "per socket: she is online while `user_sockets[alice]` is non-empty. Closing one tab "
            "removes one socket; the other keeps her online. She goes offline only when her last "
            "socket closes."
        ),
    ),
)


q2 = lesson.add(
    "q2",
    ChoiceProblem(
        {
            "a": "the user id",
            "b": "the socket id",
            "c": "the JWT",
            "d": "the room name",
        },
        "b",
        title="What names a connection",
        question="What identifies a connection, and changes when it reconnects?",
        explanations={
            "a": (
                "the user id names the *person*: it is the same in both of Alice's tabs and after "
                "every reconnect, so it cannot tell her two connections apart."
            ),
            "b": (
                "the server gives every connection a fresh socket id (you see it in the `welcome` "
                "message). A reconnect is a brand-new connection, so it gets a new socket id, "
                "while the user id stays the same."
            ),
            "c": (
                "the token proves *who* the user is: both of Alice's tabs can use the same one, "
                "and a reconnect can reuse it. It authenticates the user; it does not name a connection."
            ),
            "d": (
                "a room names a conversation: it holds many connections, and one connection can be in several rooms."
            ),
        },
        hint=(
            "Alice's two tabs must be told apart, and a reconnect opens a brand-new WebSocket. "
            "Which of these is different for every WebSocket, even for the same user?"
        ),
        solution=(
            "**b) the socket id.** Each connection gets its own socket id when it opens (the "
            "`welcome` message carries it). Two tabs: two socket ids, one user id. After a "
            "reconnect: a new socket id, the same user id. That is why the server keeps both "
            "maps: `connections` by socket id, and `user_sockets` by user id."
        ),
    ),
)


def _is_online_reference(user_sockets: dict[int, set[str]], user_id: int) -> bool:
    return bool(user_sockets.get(user_id))


q3 = lesson.add(
    "q3",
    FunctionProblem(
        [
            (({1: {"s1"}}, 1), True, "one open socket: online"),
            (({1: {"s1", "s2"}}, 1), True, "two tabs: online"),
            (({1: set()}, 1), False, "an empty set means every socket has closed: offline"),
            (({1: {"s1"}}, 2), False, "a user missing from the dict has no socket at all: offline"),
            (({}, 7), False, "nobody is connected: offline"),
            (({1: set(), 2: {"s9"}}, 2), True, "user 2 has a socket, whatever user 1 has"),
            (({1: set(), 2: {"s9"}}, 1), False, "user 1's set is empty, even though user 2 is online"),
        ],
        reference=_is_online_reference,
        name="is_online",
        title="Is this user online?",
        question=(
            "Write `is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool`. "
            "`user_sockets` maps a user id to the set of that user's open socket ids. "
            "Return `True` if the user has at least one open socket, `False` otherwise "
            "(also when the user is not in the dict at all). Then check it with "
            "`ex.q3.check(is_online)`."
        ),
        hint=[
            "Online means at least one open socket. There are two ways to be offline: no entry "
            "for the user at all, or an entry whose set is empty.",
            "`user_sockets.get(user_id)` gives `None` for a missing user, and an empty set is falsy. "
            "Return a real bool: `bool(...)`.",
        ],
        solution=(
            "```python\n"
            "def is_online(user_sockets: dict[int, set[str]], user_id: int) -> bool:\n"
            "    return bool(user_sockets.get(user_id))\n"
            "```\n\n"
            "`.get` returns `None` for a user with no entry, and `bool()` of `None` or of an empty "
            "set is `False`. The lab server deletes a user's entry when their last socket closes, "
            "so there `user_id in user_sockets` is enough; checking that the set is non-empty "
            "as well keeps the function right even if an empty set is left behind."
        ),
    ),
)


# --- q4: your own two tabs, live ----------------------------------------------------------


class YourTwoTabs(LiveProblem):
    """The student opened the browser client in two tabs as one user: that user has 2+ sockets."""

    answer_format = "the username you logged in with in the browser, as a string, e.g. `'ada'`"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        if not isinstance(answer, str) or not answer.strip():
            raise Incorrect(f"pass your username as a string, e.g. `{self.ref}.check_async('ada')`.")
        name = answer.strip()
        users = await asyncio.to_thread(lab.users)
        row = next((u for u in users if str(u["username"]).lower() == name.lower()), None)
        if row is None:
            raise Incorrect(
                f"the lab has no user `{name}` yet: open the browser client (the link `lab.browser_url` "
                "shows), sign up as that name, then check again."
            )
        sockets = int(row.get("sockets", 0))
        if sockets == 0:
            raise Incorrect(
                f"`{name}` exists but has no open socket: log in to the browser client in a tab and keep it open."
            )
        if sockets == 1:
            raise Incorrect(
                f"`{name}` has 1 open socket: open the browser client in a second tab (same link) and log in "
                "there too, as the same user."
            )
        return (
            f"`{name}` has {sockets} open sockets, one per tab, and is online once. Find the row `{name}` "
            f"in the dashboard: {sockets} socket chips on one user row."
        )


q4 = lesson.add(
    "q4",
    YourTwoTabs(
        title="Your two tabs",
        question=(
            "Open the lab's browser client (`lab.browser_url`) in two tabs, and log in as the same user in "
            "both (sign up in the first). Then pass that username: "
            "`await ex.q4.check_async('your name')`."
        ),
        hint=[
            "Run `lab.browser_url` in a cell and open the link; in a JupyterLab tab, middle-click it twice "
            "(or copy it into a second tab). Sign up in the first tab, log in with the same name in the second.",
            "Each tab runs its own `new WebSocket(...)`: that is two sockets for one user. The check asks the lab "
            "(`lab.users()`) how many sockets your user has open right now, so keep both tabs open while it runs.",
        ],
        solution=(
            "Open `lab.browser_url` twice, log in as, say, `ada` in both, then run "
            "`await ex.q4.check_async('ada')`. The dashboard's row for `ada` shows two socket chips: one user, "
            "two connections. Close one tab and the row keeps one chip, still online; close both and `ada` "
            "goes offline."
        ),
    ),
)


# --- q5: write a client with websockets, live -----------------------------------------------

WELCOME_DELAY = 0.2  # seconds the tap holds the server's first message back (a slow network)
HELLO_TIMEOUT = 10.0  # seconds the student's client gets to finish


class _HoldFirstMessage:
    """Wraps the server's side of a tapped connection: once the HTTP head (the 101) has gone
    through, the next bytes (the ``welcome``) wait ``delay`` s, once. Only ``read`` is used."""

    def __init__(self, reader: asyncio.StreamReader, delay: float) -> None:
        self._reader = reader
        self._delay = delay
        self._head_seen = False
        self._held = False
        self._rest = b""

    async def read(self, n: int = -1) -> bytes:
        if self._rest:
            data, self._rest = self._rest, b""
        else:
            data = await self._reader.read(n)
        if not data or self._held:
            return data
        if not self._head_seen:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                return data
            self._head_seen = True
            head, self._rest = data[: end + 4], data[end + 4 :]
            return head  # the 101 goes at once: the client's connect() returns
        self._held = True
        await asyncio.sleep(self._delay)
        return data


class _SlowWelcomeTap(FrameTap):
    """A :class:`FrameTap` whose connections deliver the server's first message late."""

    async def _pump(self, conn: Any, direction: Direction, reader: asyncio.StreamReader, writer: Any) -> None:
        if direction is S2C:
            reader = cast(asyncio.StreamReader, _HoldFirstMessage(reader, WELCOME_DELAY))
        await super()._pump(conn, direction, reader, writer)


class SayHello(LiveProblem):
    """The student's ``async def say_hello(ws_url, token, room, text)``: a websockets client
    that joins ``room`` and posts ``text`` there, waits for the ack, and closes."""

    answer_format = "your async function itself, `say_hello` (no parentheses)"
    call_with = "say_hello"
    # Checked before calling: a blocking client (websockets.sync) would freeze this event loop,
    # and with it the tap it has to go through.
    answer_kind = "async"
    why_async = (
        "use `websockets.connect` from the asyncio API (`async with websockets.connect(...)`, `await ws.send(...)`, "
        "`await ws.recv()`): a notebook cell runs inside an event loop, which a blocking client would freeze"
    )

    def __init__(self, username: str = "hello_checker", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.username = username

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        account = await asyncio.to_thread(lab.account, self.username)
        room = f"hello-{secrets.token_hex(3)}"
        text = f"hello from {self.username}, {secrets.token_hex(2)}"
        tap = _SlowWelcomeTap.for_lab(lab)
        async with tap:
            await self._run(answer, tap.ws_url, account.token, room, text)
            frames = list(tap.frames)
            still_open = await self._still_open(tap, frames)
        return await self._judge(frames, still_open, lab, account, room, text)

    @staticmethod
    async def _still_open(tap: FrameTap, frames: list[CapturedFrame]) -> bool:
        """Did the client leave a WebSocket open? With no close frame from it, give an abort a
        moment to reach the tap (an open connection stays open; an aborted one closes at once)."""
        if any(c.direction is C2S and c.frame.opcode is Opcode.CLOSE for c in frames):
            return False
        for _ in range(20):
            if not any(c.upgraded and c.open for c in tap.connections()):
                return False
            await asyncio.sleep(0.05)
        return True

    async def _run(self, answer: Any, ws_url: str, token: str, room: str, text: str) -> None:
        call = f"say_hello({ws_url!r}, token, {room!r}, {text!r})"
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                await answer(ws_url, token, room, text)
        except TimeoutError:
            raise Incorrect(
                f"`{call}` had not finished after {HELLO_TIMEOUT:g} s. Is it waiting with `recv()` for a "
                "message that never comes (an ack for a message sent without a `ref`, say), or "
                "looping forever?"
            ) from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
            raise Incorrect(
                f"the server refused the handshake with HTTP {status} {body}. The token goes in the URL's "
                'query: `f"{ws_url}?token={token}"`.'
            ) from None
        except ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (1006, "no close frame")
            if code == 1008 and "auth" in reason:
                raise Incorrect(
                    f"the server closed your socket with {code} `{reason}`: a socket opened without `?token=` "
                    'must send an `auth` message first. Put the token in the URL: `f"{ws_url}?token={token}"`.'
                ) from None
            raise Incorrect(
                f"your client's `recv()` or `send()` failed: the connection was closed ({code} `{reason}`). "
                "Did the server close it because of something your client sent?"
            ) from None
        except Exception as exc:
            raise CheckError(f"`{call}` raised {type(exc).__name__}: {exc}") from None

    async def _judge(
        self, frames: list[CapturedFrame], still_open: bool, lab: Any, account: Any, room: str, text: str
    ) -> str:
        sent = json_objects(frames, C2S)
        received = json_objects(frames, S2C)
        if not any(m.get("type") == "welcome" for _, m in received):
            raise Incorrect(
                "no WebSocket with the lab was opened through the `ws_url` you were given: connect to "
                '`f"{ws_url}?token={token}"` with `websockets.connect(...)`.'
            )
        welcome_at = next(t for t, m in received if m.get("type") == "welcome")
        if sent and sent[0][0] < welcome_at:
            raise Incorrect(
                f"your client sent `{sent[0][1].get('type')}` before it had read the server's `welcome`. "
                "The first message on every socket is the `welcome` (your socket id and user): read it first "
                "with `await ws.recv()`, or a later `recv()` you meant for an ack gets it instead."
            )
        joins = [m for _, m in sent if m.get("type") == "join"]
        chats = [(t, m) for t, m in sent if m.get("type") == "chat"]
        if not joins:
            refused = next((m for _, m in received if m.get("type") == "error"), None)
            why = f" (the server answered `{refused.get('code')}`: {refused.get('message')})" if refused else ""
            raise Incorrect(
                f"your client never sent `join`{why}. A socket receives and may post only in rooms it has "
                f'joined: send `{{"type": "join", "room": room, "ref": ...}}` and wait for its ack first.'
            )
        if not any(m.get("room") == room for m in joins):
            rooms = ", ".join(sorted({f"`{m.get('room')}`" for m in joins}))
            raise Incorrect(
                f"your client joined {rooms}, but the room to say hello in is `{room}` (the `room` argument)."
            )
        if not chats:
            raise Incorrect("your client joined, but never sent a `chat` message.")
        in_room = [(t, m) for t, m in chats if m.get("room") == room]
        if not in_room:
            rooms = ", ".join(sorted({f"`{m.get('room')}`" for _, m in chats}))
            raise Incorrect(f"your chat went to {rooms}, but the room to say hello in is `{room}`.")
        chat_at, chat = in_room[-1]
        if chat.get("text") != text:
            raise Incorrect(f"your chat said {chat.get('text')!r}; send the `text` argument, {text!r}.")
        ref = chat.get("ref")
        replies = [(t, m) for t, m in received if ref is not None and m.get("ref") == ref and t >= chat_at]
        if ref is None:
            raise Incorrect(
                "your chat had no `ref`, so the server sent no ack and your client cannot know it was stored. "
                'Add one (`"ref": "c1"`) and wait until the message with `"type": "ack"` and that ref arrives.'
            )
        if replies and replies[0][1].get("type") == "error":
            error = replies[0][1]
            raise Incorrect(f"the server refused your chat: `{error.get('code')}`: {error.get('message')}.")
        closes = [c.t for c in frames if c.direction is C2S and c.frame.opcode is Opcode.CLOSE]
        ack_at = replies[0][0] if replies else None
        if closes and (ack_at is None or closes[0] < ack_at):
            raise Incorrect(
                "your client closed the connection before the server's ack of your chat reached it: it did not "
                'wait for the ack. Read messages until the one with `"type": "ack"` and your chat\'s `ref` '
                "(others come first: the `welcome`, `member_joined`, the join's ack, your own chat echoed)."
            )
        if still_open:
            raise Incorrect(
                "your function returned with its WebSocket still open. Close it (`await ws.close()`), or let "
                "`async with websockets.connect(...) as ws:` close it for you when the block ends."
            )
        if not closes:
            raise Incorrect(
                "your client dropped the TCP connection without a close frame: use `await ws.close()` (or "
                "`async with`), which sends one (RFC 6455 section 7.1.2)."
            )
        status, body = await asyncio.to_thread(lab.request, "GET", f"/api/rooms/{room}/messages", None, account.token)
        stored = [m for m in body.get("messages", [])] if status == 200 else []
        mine = [m for m in stored if m.get("text") == text]
        if not mine:
            raise Incorrect(f"the lab's history of `{room}` does not have your message (HTTP {status}).")
        assert ack_at is not None
        return (
            f"your chat is message #{mine[0]['seq']} of `{room}` in the lab's history; your client read the "
            f"welcome first, joined, waited for the ack ({(ack_at - chat_at) * 1000:.0f} ms after the chat) "
            "and closed cleanly."
        )


async def _say_hello_reference(ws_url: str, token: str, room: str, text: str) -> None:
    import websockets

    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        welcome = json.loads(await ws.recv())  # always the first message
        assert welcome["type"] == "welcome", welcome
        await ws.send(json.dumps({"type": "join", "room": room, "ref": "j1"}))
        await ws.send(json.dumps({"type": "chat", "room": room, "text": text, "ref": "c1"}))
        while True:  # other messages come first: member_joined, the join's ack, our own chat
            message = json.loads(await ws.recv())
            if message.get("ref") == "c1":
                break
        if message["type"] != "ack":
            raise RuntimeError(f"chat refused: {message}")
    # leaving the `async with` block sends a close frame and waits for the server's


_HELLO_SOLUTION = """```python
import json
import websockets

async def say_hello(ws_url, token, room, text):
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        welcome = json.loads(await ws.recv())      # always the first message on a socket
        await ws.send(json.dumps({"type": "join", "room": room, "ref": "j1"}))
        await ws.send(json.dumps({"type": "chat", "room": room, "text": text, "ref": "c1"}))
        while True:                                # member_joined, the join's ack, our own chat...
            reply = json.loads(await ws.recv())
            if reply.get("ref") == "c1":           # ...then the ack that carries our chat's ref
                break
        assert reply["type"] == "ack", reply       # an error would carry the ref too
    # the end of `async with` sends a close frame (code 1000) and waits for the server's
```

Messages on one socket are handled in order, so the chat can follow the join at once: by the
time the server reads it, the socket is in the room. What must wait is the *close*: the ack is
the server saying "stored and sent to the room"; a client that closes before it cannot know.
`ref` is yours to choose; the server echoes it in the answer, which is how a client tells its
ack from everything else that arrives meanwhile."""


q5 = lesson.add(
    "q5",
    SayHello(
        title="Your own WebSocket client",
        question=(
            "Write `async def say_hello(ws_url, token, room, text)` with the `websockets` library: connect to "
            "`ws_url` with your token, read the `welcome`, join `room`, send a chat message saying `text` "
            "with a `ref`, wait for the server's ack of it, and close. The check calls your function with a "
            "fresh room, through a tap that watches the frames each way, then looks for your message in the "
            "room's history: `await ex.q5.check_async(say_hello)`."
        ),
        hint=[
            'The URL is `f"{ws_url}?token={token}"` (a browser cannot set headers on a WebSocket handshake, '
            "so the lab takes the token in the query). `async with websockets.connect(url) as ws:` opens the "
            "connection and closes it, with a close frame, when the block ends. Every message is a JSON object "
            "in a text frame: `await ws.send(json.dumps({...}))` and `json.loads(await ws.recv())`.",
            "The first message the server sends is always `welcome`. Then "
            '`{"type": "join", "room": room, "ref": "j1"}` and '
            '`{"type": "chat", "room": room, "text": text, "ref": "c1"}`. Several messages come back before the '
            "chat's ack (`member_joined`, the join's ack, your own chat): loop on `recv()` until the one whose "
            '`ref` is `"c1"`.',
        ],
        solution=_HELLO_SOLUTION,
    ),
)


# --- q6: how long a vanished client stays "online" ---------------------------------------------

q6 = lesson.add(
    "q6",
    ValueProblem(
        30,
        tolerance=0.5,
        title="A phone call with no goodbye",
        question=(
            "The lab runs with its default `--ping-interval 20`. A student's laptop sends a chat message, "
            "then its Wi-Fi dies: no close frame, no TCP reset, nothing. At most how many seconds after that "
            "last message does the server mark the student offline? Answer with a number."
        ),
        answer_format="a number of seconds, e.g. `12`",
        explanations=[
            (0, "that is a clean close: a close frame tells the server at once. Here nothing arrives at all."),
            (20, "after 20 s of silence the server only *sends a ping*; it then waits for the pong."),
            (10, "10 s is how long the server waits for the pong, after 20 s of silence first."),
            (40, "the server waits half the interval for the pong, not a whole one."),
        ],
        wrong_message="not quite: count the silence before the ping, then the wait for the pong.",
        correct_message=(
            "20 s of silence, then a ping; no pong within half the interval (10 s): the connection is dropped, "
            "30 s after the last message. Until then the user looks online."
        ),
        hint=[
            "Nothing tells the server the network is gone; only the heartbeat does. Read PROTOCOL.md section 8, "
            "*Heartbeat and dead peers*: when does the server ping, and how long does it wait for the answer?",
            "The server pings after `ping_interval` seconds of silence, and drops the peer if no pong comes "
            "within half the interval. Add the two.",
        ],
        solution=(
            "**30 s** = 20 s of silence before the ping + 10 s (half the interval) waiting for a pong that "
            "never comes. This lesson ran the lab with `ping_interval=2`, hence 2 + 1 = 3 s. A shorter "
            "interval notices dead peers sooner but pings every idle socket more often: with 100,000 idle "
            "sockets, a 2 s interval is 50,000 pings a second."
        ),
    ),
)


__all__ = ["lesson", "q1", "q2", "q3", "q4", "q5", "q6"]
