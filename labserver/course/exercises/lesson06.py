"""Exercises of lesson 06: authentication, the user id -> sockets map, routing, persistence.

The ideas they practise: a JWT is signed, not encrypted (q1); which refusal is an HTTP
status before the upgrade and which a close code on an open socket (q2); a client that
keeps its token out of the URL with first-message auth, checked live through a tap (q3); building the
user id -> set of sockets map (q4); routing a message to a room, to every tab of some
users, or to one socket, checked live against what the lab actually wrote to a crowd's
sockets (q5); a client that survives cut connections and resumes, checked live while the
lab cuts it twice mid-stream (q6); what "persist after broadcast" can lose (q7).

    from labserver.course.exercises import lesson06 as ex
    ex.q1.check("b")
    ex.q2.check((401, 401, 1008, 1008))
    await ex.q3.check_async(say_quietly)      # live: through a tap that reads your handshake
    ex.q4.check(user_sockets)
    await ex.q5.check_async(recipients)       # live: a crowd on the lab
    await ex.q6.check_async(follow)           # live: the lab cuts your connection twice
    ex.q7.check(200)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ...tap import FrameTap
from ...wire import C2S, S2C, json_objects
from .core import (
    CheckError,
    ChoiceProblem,
    FunctionProblem,
    Incorrect,
    Lesson,
    LiveProblem,
    ValueProblem,
    seq_ranges,
    show,
)

lesson = Lesson("lesson06", "Authentication, routing and persistence")


# --- q1: signed, not encrypted -----------------------------------------------------------------

q1 = lesson.add(
    "q1",
    ChoiceProblem(
        {
            "a": "nothing: a JWT is encrypted, so without the server's key its content is unreadable",
            "b": "read her user id, name and expiry, and connect as her until the token expires",
            "c": "read the claims, change `sub` to another user's id, and connect as that user",
            "d": "read the claims, but not connect: a WebSocket handshake also needs her password",
        },
        "b",
        title="A token in a log file",
        question=(
            "Alice's token (an HS256 JWT like the lab's) was written to a proxy's access log, as part of "
            "`/ws?token=...`. What can someone who reads that log do with it?"
        ),
        explanations={
            "a": (
                "a JWT is *signed*, not encrypted: its header and payload are base64url JSON that anyone can "
                "decode (`tokens.decode(token)` needs no key). The signature only proves who made it."
            ),
            "b": (
                "the payload is readable by anyone, and the token is a bearer credential: whoever presents it "
                "is Alice until `exp` (or until she logs out, which the lab turns into a revocation). That is "
                "why tokens must stay out of URLs that get logged."
            ),
            "c": (
                "changing any claim breaks the signature: the lab answers 401 `token signature is invalid`. "
                "Re-signing needs the server's key. Using her token as it is, though, works."
            ),
            "d": (
                "the token *replaces* the password after login: the handshake checks only the token "
                "(`?token=`, a first `auth` message or the cookie)."
            ),
        },
        hint=[
            "Decode a token yourself: split it on '.', base64url-decode the first two parts. Did you need a key?",
            "What does the server check at the handshake: a password, or only that the token's signature "
            "verifies and that it has not expired?",
        ],
        solution=(
            "**b).** A JWT is three base64url parts; the first two are plain JSON that anyone can read. "
            "The signature (HMAC-SHA256 with the server's key) stops anyone *changing* the claims, not "
            "reading them, and it does not stop anyone *replaying* the token: it is a bearer credential, "
            "valid until `exp`. Keep it out of URLs that proxies log (first-message `auth`, or the "
            "HttpOnly cookie), keep lifetimes short, and redact logs."
        ),
    ),
)


# --- q2: 401 before the upgrade, 1008 after it ------------------------------------------------------

q2 = lesson.add(
    "q2",
    ValueProblem(
        (401, 401, 1008, 1008),
        title="A status or a close code?",
        question=(
            "What does the lab answer in each case? Give an HTTP status for a refused handshake, or a "
            "close code for a socket that was open.\n\n"
            "1. `/ws?token=` with a token whose header says `alg: none`;\n"
            "2. `/ws?token=` with a token that expired a minute ago;\n"
            "3. a socket opened with a good token that expires while the socket is open;\n"
            "4. a socket opened without `?token=` whose first message is a `join`.\n\n"
            "Answer with a tuple of four numbers."
        ),
        answer_format="a tuple of four numbers, e.g. `(400, 403, 1000, 1011)`",
        explanations=[
            (
                (401, 401, 401, 1008),
                "case 3: the socket is already open: there is no HTTP response left to send. The server "
                "ends it with a close frame, and its code is 1008 (policy violation).",
            ),
            (
                (401, 401, 1008, 401),
                "case 4: without `?token=` the upgrade goes ahead (101): the check happens on the first "
                "message, and a socket is closed with a close code, not answered with a status.",
            ),
            (
                (403, 401, 1008, 1008),
                "case 1: 403 is for a foreign Origin. A token that does not verify is 401, whatever the "
                "reason (here: the algorithm is not the pinned HS256).",
            ),
            (
                (401, 401, 1000, 1008),
                "case 3: 1000 means a normal, wanted closure. The lab's policy refuses an expired token, so "
                "it closes with 1008 (policy violation) and the reason `token expired`.",
            ),
            (
                (401, 401, 1001, 1008),
                "case 3: 1001 is 'going away' (a server shutting down, a tab closing). An expired token is "
                "a policy matter: 1008 `token expired`.",
            ),
        ],
        wrong_message="not quite: which cases still have an HTTP answer to give, and which have a 101 behind them?",
        correct_message=(
            "checks made before the upgrade are answered with an HTTP status (401 `token algorithm is not "
            "HS256`, 401 `token expired`); once the 101 is sent, the only way to refuse is a close frame: "
            "1008 `token expired`, 1008 `first message must be auth, got join`."
        ),
        hint=[
            "Cases 1 and 2 put the token in the URL: the server checks it before it answers the upgrade. "
            "Cases 3 and 4 have a socket that is already open (101 sent).",
            "Refused handshake: 401 Unauthorized. Open socket: RFC 6455 section 7.4.1 has one code for a "
            "message that violates the server's policy. PROTOCOL.md section 8 lists the lab's 1008 reasons.",
        ],
        solution=(
            "`(401, 401, 1008, 1008)`. With `?token=` the lab verifies before the upgrade and refuses with "
            '`401 {"error": "unauthorized", "message": ...}`: `token algorithm is not HS256`, '
            "`token expired`. Once a socket is open the only refusal left is a close frame: the lab checks "
            "every 0.25 s and closes with **1008** `token expired`; a socket opened without a token must "
            "send `auth` first, or it is closed with 1008 `first message must be auth, got join`."
        ),
    ),
)


# --- q3: keep the token out of the URL, checked live through a tap ---------------------------------

QUIET_TIMEOUT = 10.0


class QuietHelloProblem(LiveProblem):
    """The student's ``async def say_quietly(ws_url, token, room, text)``: a websockets client that
    opens ``/ws`` with no credential in its handshake, authenticates with a first ``auth`` message,
    then joins ``room``, chats ``text`` and waits for the ack. It runs through a :class:`FrameTap`,
    which keeps the HTTP request head and every frame."""

    answer_format = "your async function itself, `say_quietly` (no parentheses)"
    call_with = "say_quietly"
    answer_kind = "async"
    why_async = (
        "use `websockets.connect` (a blocking client would freeze the notebook's event loop, and the tap it "
        "talks through)"
    )

    def __init__(self, username: str = "quiet_checker", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.username = username

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        account = await asyncio.to_thread(lab.account, self.username)
        tag = secrets.token_hex(3)
        room, text = f"quiet-{tag}", f"no token in my URL, {tag}"
        async with FrameTap.for_lab(lab) as tap:
            failure = await self._run(answer, tap.ws_url, account.token, room, text)
            heads, frames = tap.heads, tap.frames
        requests = [h for h in heads if h.direction is C2S]
        if not requests:
            raise Incorrect("no WebSocket was opened through the `ws_url` you were given: connect to `ws_url`.")
        for captured in requests:
            head = captured.head
            if account.token in getattr(head, "target", ""):
                raise Incorrect(
                    f"your handshake carried the token in its URL (`{captured.describe()[:60]}...`): every proxy "
                    "and load balancer on the way may log it. Connect to `ws_url` as it is, and send the token in "
                    'the first message: `{"type": "auth", "token": token}`.'
                )
            header = next((name for name, value in head.headers if account.token in value), None)
            if header is not None and header.lower() == "cookie":
                raise Incorrect(
                    "your handshake carried the token in a cookie: that is what a browser does with `lab_session`, "
                    "and it keeps the token out of URLs too. This exercise is the other way, for clients without "
                    'cookies: send it in the first message, `{"type": "auth", "token": token}`.'
                )
            if header is not None:
                raise Incorrect(
                    f"your handshake carried the token in the header `{header}`. A browser cannot set headers on "
                    "a WebSocket handshake (only the cookie rides along), and the lab does not read this one: "
                    'send the token in the first message, `{"type": "auth", "token": token}`.'
                )
        sent = [message for _, message in json_objects(frames, C2S)]
        received = [message for _, message in json_objects(frames, S2C)]
        if not sent or sent[0].get("type") != "auth":
            first = sent[0].get("type") if sent else None
            raise Incorrect(
                (f"your first message was `{first}`" if first else "your client sent no message")
                + ": a socket opened without a token must authenticate first, "
                '`{"type": "auth", "token": token}`, or the lab closes it with 1008.'
            )
        if sent[0].get("token") != account.token:
            raise Incorrect("your `auth` message did not carry the `token` you were given (field `token`).")
        if failure is not None:
            raise Incorrect(failure)
        if not any(m.get("type") == "welcome" for m in received):
            raise Incorrect("the lab never welcomed your socket: was the `auth` message well formed?")
        chats = [m for m in sent if m.get("type") == "chat" and m.get("room") == room and m.get("text") == text]
        if not chats:
            raise Incorrect(f"after authenticating, join `{room}` and send a chat saying {text!r} there.")
        ref = chats[-1].get("ref")
        if ref is None or not any(m.get("type") == "ack" and m.get("ref") == ref for m in received):
            raise Incorrect("send the chat with a `ref`, and wait for the ack that carries it before you close.")
        status, body = await asyncio.to_thread(lab.request, "GET", f"/api/rooms/{room}/messages", None, account.token)
        mine = [m for m in body.get("messages", []) if m.get("text") == text] if status == 200 else []
        if not mine:
            raise Incorrect(f"the lab's history of `{room}` does not have your message (HTTP {status}).")
        return (
            f"your handshake was `{requests[0].describe().split(' ', 2)[2]}`, with no token in it; your first "
            f"message was `auth`, and your chat is message #{mine[0]['seq']} of `{room}`."
        )

    @staticmethod
    async def _run(answer: Any, ws_url: str, token: str, room: str, text: str) -> str | None:
        """Run the student's function; a problem the server caused is returned as the verdict's text."""
        try:
            async with asyncio.timeout(QUIET_TIMEOUT):
                await answer(ws_url, token, room, text)
        except TimeoutError:
            return (
                f"`say_quietly` had not finished after {QUIET_TIMEOUT:g} s: is it waiting for a message that "
                "never comes (an ack for a message sent without a `ref`)?"
            )
        except InvalidStatus as exc:
            return f"the lab refused your handshake with HTTP {exc.response.status_code}."
        except ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (1006, "no close frame")
            return f"the lab closed your socket with {code} `{reason}`."
        except Exception as exc:
            raise CheckError(f"`say_quietly` raised {type(exc).__name__}: {exc}") from None
        return None


async def _say_quietly_reference(ws_url: str, token: str, room: str, text: str) -> None:
    async with websockets.connect(ws_url) as ws:  # no ?token=: nothing secret in the URL
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "join", "room": room}))
        await ws.send(json.dumps({"type": "chat", "room": room, "text": text, "ref": "c1"}))
        while (reply := json.loads(await ws.recv())).get("ref") != "c1":
            pass
        assert reply["type"] == "ack", reply


q3 = lesson.add(
    "q3",
    QuietHelloProblem(
        title="No token in the URL",
        question=(
            "Write `async def say_quietly(ws_url, token, room, text)` with `websockets`: open `ws_url` **as it "
            'is** (no `?token=`), authenticate with a first message `{"type": "auth", "token": token}`, '
            "read the `welcome`, join `room`, send a chat saying `text` with a `ref`, wait for its ack, and "
            "close. The check runs it through a tap that keeps your handshake's request line and headers: "
            "`await ex.q3.check_async(say_quietly)`."
        ),
        hint=[
            "`async with websockets.connect(ws_url) as ws:` then `await ws.send(json.dumps({...}))`. The server "
            "answers a good `auth` with the `welcome` (and an `ack` first, if your auth had a `ref`).",
            'Then `{"type": "join", "room": room}` and `{"type": "chat", "room": room, "text": text, "ref": "c1"}`, '
            'and read messages until the one whose `ref` is `"c1"`: several others come first.',
        ],
        solution=(
            "```python\n"
            "import json, websockets\n\n"
            "async def say_quietly(ws_url, token, room, text):\n"
            "    async with websockets.connect(ws_url) as ws:          # nothing secret in the URL\n"
            '        await ws.send(json.dumps({"type": "auth", "token": token}))\n'
            '        assert json.loads(await ws.recv())["type"] == "welcome"\n'
            '        await ws.send(json.dumps({"type": "join", "room": room}))\n'
            '        await ws.send(json.dumps({"type": "chat", "room": room, "text": text, "ref": "c1"}))\n'
            '        while (reply := json.loads(await ws.recv())).get("ref") != "c1":\n'
            "            pass                                          # member_joined, our own chat...\n"
            '        assert reply["type"] == "ack", reply\n'
            "```\n\n"
            "The handshake is now `GET /ws HTTP/1.1`: a proxy's access log has nothing to leak. The price: the "
            "socket is open before the server knows who it is, so the server gives it a deadline "
            "(`--auth-timeout`) and refuses anything but `auth` first, with a close 1008 instead of a 401."
        ),
    ),
)


# --- q4: build the map ------------------------------------------------------------------------------

EXAMPLE_SOCKETS = [
    {"socket_id": "s_a1", "user": {"id": 1, "username": "ann"}, "rooms": ["general"]},
    {"socket_id": "s_b1", "user": {"id": 2, "username": "bob"}, "rooms": []},
    {"socket_id": "s_a2", "user": {"id": 1, "username": "ann"}, "rooms": ["general", "dev"]},
    {"socket_id": "s_c1", "user": {"id": 3, "username": "cat"}, "rooms": ["dev"]},
]


def _user_sockets_reference(sockets: list[dict[str, Any]]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for socket in sockets:
        out.setdefault(socket["user"]["id"], set()).add(socket["socket_id"])
    return out


q4 = lesson.add(
    "q4",
    FunctionProblem(
        [
            ((EXAMPLE_SOCKETS,), {1: {"s_a1", "s_a2"}, 2: {"s_b1"}, 3: {"s_c1"}}, "ann has two tabs: both in her set"),
            (([],), {}, "no sockets, no users: an empty dict"),
            (
                ([{"socket_id": "s_x", "user": {"id": 7, "username": "x"}, "rooms": []}],),
                {7: {"s_x"}},
                "one socket",
            ),
            (
                ([{"socket_id": f"s_{i}", "user": {"id": 5, "username": "eve"}, "rooms": []} for i in range(3)],),
                {5: {"s_0", "s_1", "s_2"}},
                "three tabs of one user: a set of three, not the last one only",
            ),
        ],
        reference=_user_sockets_reference,
        name="user_sockets",
        title="The user id -> sockets map",
        question=(
            "Write `user_sockets(sockets) -> dict[int, set[str]]`. `sockets` is the list `/observe`'s "
            "snapshot gives, one dict per open socket:\n\n"
            '`{"socket_id": "s_a1", "user": {"id": 1, "username": "ann"}, "rooms": ["general"]}`\n\n'
            "Return a dict from each user id to the **set** of that user's socket ids."
        ),
        hint=[
            "One user may appear several times (one entry per tab). A plain `{user_id: socket_id}` keeps only the "
            "last tab: that is the bug this map exists to avoid.",
            "`out.setdefault(user_id, set()).add(socket_id)` in a loop over the sockets.",
        ],
    ),
)


# --- q5: routing, checked live on a crowd ---------------------------------------------------------------

ROUTING_TIMEOUT = 10.0
ROUTE_KINDS = ("room", "dm", "users", "socket")


def _recipients_reference(target: dict[str, str], sockets: list[dict[str, Any]]) -> set[str]:
    kind, name = target["kind"], target["name"]
    if kind == "socket":
        return {s["socket_id"] for s in sockets if s["socket_id"] == name}
    if kind == "room":
        return {s["socket_id"] for s in sockets if name in s["rooms"]}
    if kind == "dm":
        _, low, high = name.split(":")
        users = {int(low), int(high)}
    elif kind == "users":
        users = {int(u) for u in name.split(",")}
    else:
        raise ValueError(f"unknown target kind {kind!r}")
    return {s["socket_id"] for s in sockets if s["user"]["id"] in users}


# Targets on a made-up snapshot, checked before the live part: quick, and they cover what a
# short live run cannot (several users at once, nobody there).
_OFFLINE_CASES: list[tuple[dict[str, str], set[str], str]] = [
    ({"kind": "room", "name": "dev"}, {"s_a2", "s_c1"}, "the sockets that joined `dev`"),
    ({"kind": "dm", "name": "dm:1:2"}, {"s_a1", "s_a2", "s_b1"}, "every socket of users 1 and 2"),
    ({"kind": "users", "name": "1,3"}, {"s_a1", "s_a2", "s_c1"}, "every socket of users 1 and 3"),
    ({"kind": "users", "name": "9"}, set(), "user 9 has no socket: nobody"),
    ({"kind": "socket", "name": "s_a2"}, {"s_a2"}, "that one socket"),
    ({"kind": "room", "name": "empty"}, set(), "nobody joined `empty`"),
]

_WHY = {
    "room": "a room message goes to the sockets that joined the room (not to every socket of its users)",
    "dm": (
        "a direct message goes to every socket of BOTH users: all the recipient's tabs, and the sender's "
        "other tabs too (so every tab of the sender shows the conversation)"
    ),
    "users": "a message to users goes to every socket of each of them: one user, several tabs",
    "socket": "a message to one socket (a signal with `to_socket`) goes to that socket only",
}


def _describe_sockets(ids: set[str], owners: dict[str, str]) -> str:
    return ", ".join(f"{sid} ({owners.get(sid, '?')})" for sid in sorted(ids))


class RoutingProblem(LiveProblem):
    """The student's ``recipients(target, sockets) -> set[str]``, compared with what the lab writes.

    A crowd joins a fresh room; some of its users open second and third tabs outside the room;
    two outsiders connect too. The check reads ``/observe``'s snapshot, asks the student's
    function where a room chat, a DM, a signal to a user and a signal to one socket go, makes
    the lab send each of them, and compares with the sockets that received it."""

    answer_format = "your function itself, `recipients` (no parentheses)"
    call_with = "recipients"
    answer_kind = "sync"
    why_sync = "it only looks up maps; it awaits nothing"

    def __init__(self, prefix: str = "route", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        for target, expected, why in _OFFLINE_CASES:
            got = self._ask(answer, target, EXAMPLE_SOCKETS)
            if got != expected:
                raise Incorrect(
                    f"on the example snapshot of q4, `recipients({target}, sockets)` returned {show(got)}, "
                    f"expected {show(expected)}: {why}."
                )
        async with asyncio.timeout(ROUTING_TIMEOUT * 3):
            return await self._live(answer, lab)

    def _ask(self, answer: Any, target: dict[str, str], sockets: list[dict[str, Any]]) -> set[str]:
        try:
            got = answer(dict(target), [json.loads(json.dumps(s)) for s in sockets])
        except Exception as exc:
            raise CheckError(f"`recipients({target}, sockets)` raised {type(exc).__name__}: {exc}") from None
        if inspect.iscoroutine(got):
            got.close()
            raise Incorrect("`recipients` returned a coroutine: make it a plain `def` function.")
        if not isinstance(got, set | frozenset | list | tuple) or not all(isinstance(s, str) for s in got):
            raise Incorrect(f"`recipients` should return a set of socket ids (strings), got {show(got)}.")
        if isinstance(got, list | tuple) and len(set(got)) != len(got):
            raise Incorrect(f"`recipients({target}, ...)` named a socket twice: {show(got)}. Return a set.")
        return set(got)

    async def _live(self, answer: Any, lab: Any) -> str:
        from ..client import LabClient
        from ..crowd import Crowd

        tag = secrets.token_hex(2)
        room = f"route-{tag}"
        crowd = Crowd(lab, prefix=f"{self.prefix}{tag}_", rooms=[room], seed=6)
        extra: list[LabClient] = []
        try:
            await crowd.grow(4)  # users 0-3, one socket each, all in the room
            members = crowd.clients  # in index order
            accounts = [await asyncio.to_thread(lab.account, crowd.username(i)) for i in range(4)]
            # Second and third tabs (not in the room), and two users who never join it.
            for i in (0, 0, 1):
                extra.append(await LabClient.connect(lab, accounts[i], name=f"{crowd.username(i)} tab"))
            outsiders = [await asyncio.to_thread(lab.account, f"{self.prefix}{tag}_out{i}") for i in range(2)]
            for account in outsiders:
                extra.append(await LabClient.connect(lab, account))
            clients = [*members, *extra]
            inbox: dict[str, list[dict[str, Any]]] = {}
            owners: dict[str, str] = {}
            for client in clients:
                sid = str(client.socket_id)
                owners[sid] = f"{client.user['username']}"
                inbox[sid] = []
                client.on("*", inbox[sid].append)
            snapshot = await _snapshot(lab)
            ours = set(owners)
            missing = ours - {s["socket_id"] for s in snapshot["sockets"]}
            if missing:
                raise CheckError(f"the lab's snapshot lacks sockets the check opened: {sorted(missing)}")
            u0, u1, u2 = (members[i].user["id"] for i in range(3))
            sender = members[3]
            actions: list[tuple[dict[str, str], Callable[[str], Any]]] = [
                ({"kind": "room", "name": room}, lambda mark: sender.chat(room, mark)),
                (  # user 2 (one socket) writes to user 0 (three): all four sockets get it
                    {"kind": "dm", "name": f"dm:{min(u0, u2)}:{max(u0, u2)}"},
                    lambda mark: members[2].dm(u0, mark),
                ),
                (  # user 1 has two tabs
                    {"kind": "users", "name": str(u1)},
                    lambda mark: sender.send("signal", to=u1, kind="offer", data={"mark": mark}),
                ),
                (
                    {"kind": "socket", "name": str(extra[1].socket_id)},
                    lambda mark: sender.send(
                        "signal", to=u0, kind="offer", data={"mark": mark}, to_socket=extra[1].socket_id
                    ),
                ),
            ]
            lines = []
            for target, act in actions:
                predicted = self._ask(answer, target, snapshot["sockets"])
                mark = f"route check {tag} {target['kind']}"
                await act(mark)
                await _fence(clients)
                delivered = {sid for sid, got in inbox.items() if any(mark in json.dumps(m) for m in got)}
                if predicted & ours != delivered:
                    self._explain(target, predicted & ours, delivered, owners)
                if predicted - ours:
                    raise Incorrect(
                        f"for {target} you also named {_describe_sockets(predicted - ours, {})}, which are not "
                        f"this check's sockets; the lab wrote to {_describe_sockets(delivered, owners)} only. "
                        f"{_WHY[target['kind']].capitalize()}."
                    )
                lines.append(f"{target['kind']} -> {len(delivered)}")
            return (
                f"your function routes like the lab on {len(clients)} live sockets of {len(set(owners.values()))} "
                f"users ({', '.join(lines)} sockets), and on the q4 examples."
            )
        finally:
            for client in extra:
                await client.close()
            await crowd.stop()

    @staticmethod
    def _explain(target: dict[str, str], predicted: set[str], delivered: set[str], owners: dict[str, str]) -> None:
        parts = []
        if delivered - predicted:
            parts.append(f"the lab also wrote to {_describe_sockets(delivered - predicted, owners)}")
        if predicted - delivered:
            parts.append(f"the lab did not write to {_describe_sockets(predicted - delivered, owners)}")
        raise Incorrect(
            f"for {target} your function returned {len(predicted)} socket(s); {' and '.join(parts)}. "
            f"{_WHY[target['kind']].capitalize()}."
        )


async def _snapshot(lab: Any) -> dict[str, Any]:
    """The first message of ``/observe``: every open socket with its user and rooms."""
    async with websockets.connect(lab.observe_url, max_size=None) as ws:
        async with asyncio.timeout(ROUTING_TIMEOUT):
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "snapshot":
                    return dict(message)


async def _fence(clients: list[Any]) -> None:
    """Everything routed to these sockets so far has arrived: each answers a ping after it
    (one TCP connection delivers in order), so no sleep is needed."""
    await asyncio.gather(*(client.send("ping") for client in clients))


q5 = lesson.add(
    "q5",
    RoutingProblem(
        title="Route it like the lab",
        question=(
            "Write `recipients(target, sockets) -> set[str]`: the socket ids a routed message is written to. "
            "`sockets` is the snapshot list of q4. `target` is what the lab's broker carries "
            "(PROTOCOL.md section 10):\n\n"
            '- `{"kind": "room", "name": "general"}`: the sockets that joined the room;\n'
            '- `{"kind": "dm", "name": "dm:1:2"}`: a direct message between users 1 and 2 (lower id first);\n'
            '- `{"kind": "users", "name": "1,3"}`: one or more user ids, comma-separated;\n'
            '- `{"kind": "socket", "name": "s_a2"}`: one socket.\n\n'
            "The check tries your function on q4's example, then on the live lab: a crowd in a fresh room, "
            "some users with extra tabs, two outsiders; it asks your function where four messages go, sends "
            "them, and compares with the sockets that received each one: "
            "`await ex.q5.check_async(recipients)`."
        ),
        hint=[
            "Build the maps first: `user_sockets` (your q4) and room -> sockets (a socket is in a room when "
            "the room is in its `rooms` list). Then each kind is one lookup, or a union of two.",
            "A DM is not a room anyone joins: `dm:1:2` means users 1 and 2, and it goes to every socket of "
            "both, the sender's other tabs included. `name.split(':')` gives `['dm', '1', '2']`; user ids in "
            "the snapshot are ints.",
        ],
        solution=(
            "```python\n"
            "def recipients(target, sockets):\n"
            '    kind, name = target["kind"], target["name"]\n'
            '    if kind == "socket":\n'
            '        return {s["socket_id"] for s in sockets if s["socket_id"] == name}\n'
            '    if kind == "room":\n'
            '        return {s["socket_id"] for s in sockets if name in s["rooms"]}\n'
            '    if kind == "dm":\n'
            '        _, low, high = name.split(":")\n'
            "        users = {int(low), int(high)}\n"
            '    else:  # "users"\n'
            '        users = {int(u) for u in name.split(",")}\n'
            '    return {s["socket_id"] for s in sockets if s["user"]["id"] in users}\n'
            "```\n\n"
            "The lab keeps these maps ready-made (`Hub.user_sockets`, `Hub.rooms`, `Hub.connections` in "
            "`labserver/hub.py`), so each lookup is O(recipients), not a scan of every socket. A user is "
            "never one socket: route to the *set*."
        ),
    ),
)


# --- q6: cut twice, resume, miss nothing ----------------------------------------------------------------

FOLLOW_LAST = 40  # messages the follower must deliver
FOLLOW_BEFORE = 5  # of which posted before it starts (it must fetch them too)
FOLLOW_CUTS = (15, 28)  # the lab aborts the follower's sockets after these seqs are posted
FOLLOW_GAP = 0.02  # seconds between two posted messages
FOLLOW_TIMEOUT = 15.0


class FollowProblem(LiveProblem):
    """The student's ``async def follow(ws_url, token, room, last, deliver)``: every message of the
    room from seq 1 to ``last`` delivered once, in order, although the lab cuts it twice."""

    answer_format = "your async function itself, `follow` (no parentheses)"
    call_with = "follow"
    answer_kind = "async"
    why_async = (
        "use `websockets.connect` (a blocking client would freeze the notebook's event loop, and the lab's "
        "messages with it)"
    )

    def __init__(self, prefix: str = "follower", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        from ..client import LabClient

        tag = secrets.token_hex(2)
        room = f"follow-{tag}"
        reader = await asyncio.to_thread(lab.account, f"{self.prefix}_{tag}")
        async with LabClient.connect(lab, await asyncio.to_thread(lab.account, f"{self.prefix}_sender")) as sender:
            await sender.join(room)
            for seq in range(1, FOLLOW_BEFORE + 1):
                await sender.chat(room, f"m{seq}")
            delivered: list[Any] = []
            task = asyncio.create_task(answer(lab.ws_url, reader.token, room, FOLLOW_LAST, delivered.append))
            cuts: list[str] = []
            try:
                for seq in range(FOLLOW_BEFORE + 1, FOLLOW_LAST + 1):
                    if task.done():
                        break
                    await sender.chat(room, f"m{seq}")
                    if seq in FOLLOW_CUTS:
                        cuts += await self._cut(lab, reader.token, task)
                    await asyncio.sleep(FOLLOW_GAP)  # a conversation, not a burst: some arrive live
                done, _ = await asyncio.wait([task], timeout=FOLLOW_TIMEOUT)
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        return self._judge(task, done, delivered, cuts, room)

    @staticmethod
    async def _cut(lab: Any, token: str, task: asyncio.Task[Any]) -> list[str]:
        """Abort every socket the follower has open (as a network failure would): its ids."""
        sockets: list[str] = []
        for _ in range(200):  # it may be between two connections: wait for the next one
            status, body = await asyncio.to_thread(lab.request, "GET", "/api/me", None, token)
            sockets = list(body.get("sockets", [])) if status == 200 else []
            if sockets or task.done():
                break
            await asyncio.sleep(0.01)
        for sid in sockets:
            try:
                await asyncio.to_thread(lab.drop, sid, "abort")
            except RuntimeError:  # it closed by itself in between
                pass
        return sockets

    def _judge(self, task: asyncio.Task[Any], done: set[Any], delivered: list[Any], cuts: list[str], room: str) -> str:
        if task in done and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            if isinstance(exc, ConnectionClosed):
                raise Incorrect(
                    f"`follow` raised {type(exc).__name__} ({exc}) after delivering {len(delivered)} message(s): "
                    "the lab cut your connection, as a network failure would. Catch "
                    "`websockets.ConnectionClosed`, connect again, and `resume` after the last seq you delivered."
                )
            if isinstance(exc, InvalidStatus):
                raise Incorrect(f"the lab refused your handshake: {exc}. The token goes in `?token=`.")
            raise CheckError(f"`follow` raised {type(exc).__name__}: {exc}")
        for message in delivered:
            if not isinstance(message, dict) or message.get("type") != "chat" or message.get("room") != room:
                what = message.get("type") if isinstance(message, dict) else type(message).__name__
                raise Incorrect(
                    f"`deliver` got a `{what}` message; give it only the room's `chat` messages "
                    f"(`type` 'chat', `room` {room!r}), as received (dicts)."
                )
        seqs = [int(m["seq"]) for m in delivered]
        expected = list(range(1, FOLLOW_LAST + 1))
        duplicates = sorted({s for s in seqs if seqs.count(s) > 1})
        if duplicates:
            raise Incorrect(
                f"seq {seq_ranges(duplicates)} delivered more than once. After a reconnect, resume after the last "
                "seq you *delivered* (not 0), and skip any message whose seq you already have."
            )
        missing = sorted(set(expected) - set(seqs))
        if missing:
            late = "" if task in done else f" (`follow` had not returned after {FOLLOW_TIMEOUT:g} s)"
            raise Incorrect(
                f"seq {seq_ranges(missing)} never delivered{late}. Messages posted while your connection was down "
                "do not come by themselves: after reconnecting, send "
                '`{"type": "resume", "room": room, "after": <last seq delivered>}` (a `join` only brings new ones).'
            )
        if seqs != expected:
            raise Incorrect(f"the messages came out of order: {seqs[:12]}... Deliver them in seq order.")
        if task not in done:
            raise Incorrect(f"every message was delivered, but `follow` had not returned after {FOLLOW_TIMEOUT:g} s.")
        if len(cuts) < len(FOLLOW_CUTS):
            raise Incorrect(
                "the lab found no WebSocket of yours to cut: `follow` must read the room over a WebSocket "
                "(`websockets.connect`), not over HTTP."
            )
        return (
            f"all {FOLLOW_LAST} messages delivered once and in order, although the lab cut {len(cuts)} of your "
            f"connections mid-stream ({FOLLOW_BEFORE} were posted before you connected)."
        )


async def follow_with_resume(
    ws_urls: Sequence[str], token: str, room: str, last: int, deliver: Callable[[Any], Any]
) -> None:
    """The reference follower: deliver ``room``'s chats up to seq ``last`` exactly once and in order,
    reconnecting (to the next URL: lesson 08's processes) and resuming after the last seq delivered."""
    seen, turn = 0, 0  # the last seq delivered; which URL to try
    while seen < last:
        try:
            async with websockets.connect(f"{ws_urls[turn % len(ws_urls)]}?token={token}") as ws:
                await ws.recv()  # the welcome
                await ws.send(json.dumps({"type": "resume", "room": room, "after": seen}))
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "chat" and message.get("room") == room and message["seq"] > seen:
                        deliver(message)
                        seen = message["seq"]
                        if seen >= last:
                            return
        except (ConnectionClosed, OSError):  # cut, or that process is gone: try the next URL
            turn += 1
            await asyncio.sleep(0.05)  # a real client backs off with jitter (lesson 04)


async def _follow_reference(ws_url: str, token: str, room: str, last: int, deliver: Callable[[Any], Any]) -> None:
    await follow_with_resume([ws_url], token, room, last, deliver)


q6 = lesson.add(
    "q6",
    FollowProblem(
        title="Cut twice, miss nothing",
        question=(
            "Write `async def follow(ws_url, token, room, last, deliver)` with `websockets`: call "
            "`deliver(message)` for every `chat` message of `room` from seq 1 to `last`, **exactly once each, "
            "in seq order**, then return. The check posts some messages before it calls you and the rest while "
            "you run, and the lab **cuts your connection twice** (no close frame, like a network failure): "
            "reconnect, and get what was posted meanwhile. `await ex.q6.check_async(follow)`."
        ),
        hint=[
            "Keep `seen`, the last seq you delivered. In a loop: connect, read the `welcome`, send "
            '`{"type": "resume", "room": room, "after": seen}`, then read messages and deliver the chats of '
            "the room. A cut ends the `async for` with `websockets.ConnectionClosed`: catch it and go round again.",
            "`resume` joins the room and replays exactly the messages after `after`, in order, then everything "
            "new arrives live. Return as soon as `seen == last`. Delivering only `seq > seen` makes a "
            "duplicate harmless.",
        ],
        solution=(
            "```python\n"
            "import asyncio, json, websockets\n\n"
            "async def follow(ws_url, token, room, last, deliver):\n"
            "    seen = 0                                   # the last seq delivered\n"
            "    while seen < last:\n"
            "        try:\n"
            '            async with websockets.connect(f"{ws_url}?token={token}") as ws:\n'
            "                await ws.recv()                # the welcome\n"
            '                await ws.send(json.dumps({"type": "resume", "room": room, "after": seen}))\n'
            "                async for raw in ws:\n"
            "                    m = json.loads(raw)\n"
            '                    if m.get("type") == "chat" and m.get("room") == room and m["seq"] > seen:\n'
            "                        deliver(m)\n"
            '                        seen = m["seq"]\n'
            "                        if seen >= last:\n"
            "                            return\n"
            "        except websockets.ConnectionClosed:\n"
            "            await asyncio.sleep(0.05)          # lesson 04: back off with jitter\n"
            "```\n\n"
            "The server does the hard part: a `resume` replays exactly the messages after `after` and hands "
            "over to live delivery with no gap and no duplicate (PROTOCOL.md section 7). The client's part is "
            "to remember the last seq it *delivered*, and to resume from it, never from 0 and never with a "
            "`join`, which brings only what comes next."
        ),
    ),
)


# --- q7: what persist-after-broadcast loses ----------------------------------------------------------------

q7 = lesson.add(
    "q7",
    ValueProblem(
        200,
        tolerance=10,
        title="Acknowledged, then lost",
        question=(
            "A chat server acknowledges each message as soon as it has broadcast it, and writes messages "
            "to its database in the background, committing once a second (the lab's "
            "`persist_after_broadcast` switch). It receives 200 chats a second, steadily, and is killed "
            "with SIGKILL. At most about how many messages that senders saw acknowledged are lost?"
        ),
        answer_format="a number of messages, e.g. `50`",
        explanations=[
            (
                0,
                "0 is the lab's default order: persist, then broadcast, then ack. Here the ack comes before the write.",
            ),
            (400, "the commit runs every second: what was acknowledged before the last commit is on disk."),
            (1, "a crash loses everything not yet committed, not only the message in flight."),
        ],
        wrong_message="not quite: how long can an acknowledged message wait for its commit?",
        correct_message=(
            "up to one commit interval of messages: about 200, each acknowledged, shown to the room, and gone "
            "after the restart. Persist-then-ack makes that number 0, at the price of a commit before each ack "
            "(the lab groups the writes that arrive together into one commit)."
        ),
        hint=[
            "Which messages survive a SIGKILL? Only the committed ones. How old can the newest committed one be?",
            "Up to 1 s of acknowledged messages waits for the next commit. At 200 messages a second...",
        ],
        solution=(
            "**About 200**: everything acknowledged since the last commit, up to one second of traffic. The "
            "lesson showed it live with `persist_after_broadcast`. Persisting before the broadcast and the ack "
            "(the lab's default) makes every acknowledged message survive: an ack is a promise, and a promise "
            "made before the disk has it is one a crash can break."
        ),
    ),
)


__all__ = ["lesson", "q1", "q2", "q3", "q4", "q5", "q6", "q7"]
