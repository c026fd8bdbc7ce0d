"""Exercises of lesson 05, social features over a hybrid REST + WebSocket API.

The ideas they practise: a typing indicator is throttled and expires by itself (q1,
the server's rule written by hand); it reaches the room and nothing else, and is never
stored (q2, live); an action done over REST (a like) is pushed to its author's sockets
(q3, live: the student likes over HTTP and catches the notification on the author's
socket); the handler that turns a REST action into pushes, compared live with what the
lab pushes for seven real actions (q4); which half of the hybrid each feature belongs
to (q5); what a large message does to a small one behind it on the same socket (q6).

    from labserver.course.exercises import lesson05 as ex
    ex.q1.check(typing_broadcasts)
    await ex.q2.check_async(announce_typing)
    await ex.q3.check_async(like_and_catch)
    await ex.q4.check_async(pushes_for)
    ex.q5.check({"sign up": "http", ...})
    ex.q6.check(1.07)
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import math
import secrets
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ...tap import FrameTap
from ...wire import C2S, S2C, json_objects
from ..client import LabClient
from ..social import row_counts, typing_broadcasts
from .core import (
    Case,
    CheckError,
    FunctionProblem,
    Incorrect,
    Lesson,
    LiveProblem,
    Problem,
    ValueProblem,
    show,
)

lesson = Lesson("lesson05", "Social features over a hybrid REST + WebSocket API")

STUDENT_TIMEOUT = 15.0  # seconds a student's function may take before the check gives up on it


# --- helpers shared by the live checks ---------------------------------------------------------


def _fresh(prefix: str) -> str:
    """A username no one has yet (3-32 letters, digits or '_')."""
    return f"{prefix}_{secrets.token_hex(3)}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _rest(
    lab: Any, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:  # the blocking RestClient, off the event loop
    return await asyncio.to_thread(lab.request, method, path, body, token)


async def _call(answer: Any, call: str, *args: Any) -> Any:
    """Run the student's function (sync or async) with a time limit; its failures become verdicts."""
    try:
        async with asyncio.timeout(STUDENT_TIMEOUT):
            result = answer(*args)
            if inspect.isawaitable(result):
                result = await result
            return result
    except TimeoutError:
        raise Incorrect(
            f"`{call}` had not finished after {STUDENT_TIMEOUT:g} s. Is it waiting with `recv()` for a message "
            "that never comes, or looping forever?"
        ) from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise Incorrect(
            f"the lab refused your WebSocket handshake with HTTP {status}: the token goes in the URL's query, "
            '`f"{ws_url}?token={token}"`.'
        ) from None
    except ConnectionClosed as exc:
        code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (1006, "no close frame")
        raise Incorrect(
            f"a `send()` or `recv()` of yours failed: the connection was closed ({code} `{reason}`)."
        ) from None
    except Exception as exc:
        raise CheckError(f"`{call}` raised {_describe(exc)}") from None


class _Recorder:
    """Every message a :class:`LabClient` receives from now on, in order."""

    def __init__(self, client: LabClient) -> None:
        self.messages: list[dict[str, Any]] = []
        self.off = client.on("*", self.messages.append)

    def since(self, mark: int, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages[mark:] if not types or m.get("type") in types]


# --- q1: the typing rule ---------------------------------------------------------------------------


def _close_enough(got: Any, expected: list[tuple[float, bool]]) -> bool:
    if not isinstance(got, list | tuple) or len(got) != len(expected):
        return False
    for item, (t, active) in zip(got, expected, strict=True):
        if not isinstance(item, list | tuple) or len(item) != 2:
            return False
        when, flag = item
        if not isinstance(flag, bool) or flag is not active:
            return False
        if isinstance(when, bool) or not isinstance(when, int | float) or not math.isclose(when, t, abs_tol=1e-6):
            return False
    return True


q1 = lesson.add(
    "q1",
    FunctionProblem(
        [
            Case(
                ([0.0], 1.0, 5.0), [(0.0, True), (5.0, False)], "one keystroke: one broadcast, and ttl later the expiry"
            ),
            Case(
                ([0.0, 0.25, 0.5, 0.75], 1.0, 5.0),
                [(0.0, True), (5.75, False)],
                "keystrokes within min_interval of the last broadcast send nothing: they only push the expiry "
                "back, to ttl after the *last* keystroke",
            ),
            Case(
                ([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], 1.0, 5.0),
                [(0.0, True), (1.0, True), (2.0, True), (7.5, False)],
                "while the user keeps typing, the room is told again once min_interval has passed since the "
                "last broadcast (here at 1.0 and 2.0)",
            ),
            Case(
                ([0.0, 10.0], 1.0, 5.0),
                [(0.0, True), (5.0, False), (10.0, True), (15.0, False)],
                "a pause longer than ttl: the indicator ran out at 5.0, before the next keystroke",
            ),
            Case(
                ([0.0, 0.5, 3.0], 1.0, 2.0),
                [(0.0, True), (2.5, False), (3.0, True), (5.0, False)],
                "the keystroke at 0.5 moved the expiry to 2.5, which came before the keystroke at 3.0",
            ),
            Case(([], 1.0, 5.0), [], "no keystroke, nothing to tell"),
        ],
        reference=typing_broadcasts,
        compare=_close_enough,
        name="typing_broadcasts",
        title="The typing rule, by hand",
        question=(
            "Write `typing_broadcasts(keystrokes, min_interval, ttl)`: a user sends `typing` to a room at each "
            "time in `keystrokes` (seconds, sorted). Return what the lab tells the room, as a list of "
            "`(time, active)` in time order:\n\n"
            "- a `typing` broadcasts `active: True`, **unless** the user is already typing and the last "
            "broadcast was less than `min_interval` seconds ago: then it only pushes the expiry back;\n"
            "- the indicator expires `ttl` seconds after the user's **last** `typing`, which broadcasts "
            "`active: False`.\n\n"
            "For example `typing_broadcasts([0.0, 0.25], 1.0, 5.0)` is `[(0.0, True), (5.25, False)]`."
        ),
        hint=[
            "Keep two numbers while you walk through the keystrokes: when the indicator expires (`None` while "
            "the user is not typing) and when the room was last told. At each keystroke, first ask whether "
            "the indicator ran out *before* it (then record `(expires_at, False)`).",
            "Then: if still typing and `t - last_broadcast < min_interval`, set `expires_at = t + ttl` and go "
            "on; otherwise record `(t, True)`, and set `last_broadcast = t`, `expires_at = t + ttl`. After "
            "the loop, an indicator still on expires at `expires_at`.",
        ],
        solution=(
            "```python\n"
            "def typing_broadcasts(keystrokes, min_interval, ttl):\n"
            "    told = []\n"
            "    expires_at = None          # None: not typing\n"
            "    broadcast_at = 0.0\n"
            "    for t in keystrokes:\n"
            "        if expires_at is not None and expires_at <= t:\n"
            "            told.append((expires_at, False))      # ran out before this keystroke\n"
            "            expires_at = None\n"
            "        if expires_at is not None and t - broadcast_at < min_interval:\n"
            "            expires_at = t + ttl                  # still typing: later expiry, nothing sent\n"
            "            continue\n"
            "        told.append((t, True))\n"
            "        broadcast_at, expires_at = t, t + ttl\n"
            "    if expires_at is not None:\n"
            "        told.append((expires_at, False))\n"
            "    return told\n"
            "```\n\n"
            "The lab does the same in `Hub.start_typing` and `Hub.expire` (`labserver/hub.py`), with the "
            "sweep that ends indicators running every few tens of milliseconds. A client that sends "
            "`typing` on every keystroke costs the room at most one message per second per typist, and a "
            "client that vanishes without `active: false` is cleared by the expiry."
        ),
    ),
)


# --- q2: a typing indicator that reaches only the room -------------------------------------------------


class AnnounceTyping(LiveProblem):
    """The student's ``async def announce_typing(ws_url, token, room)``: show the room that the user
    is typing. Checked through a tap: who got what, and that the database did not change."""

    answer_format = "your async function itself, `announce_typing` (no parentheses)"
    call_with = "announce_typing"
    answer_kind = "async"
    why_async = (
        "use the asyncio API of websockets (`async with websockets.connect(...) as ws`, `await ws.send(...)`, "
        "`await ws.recv()`): a blocking client would freeze the notebook's event loop"
    )

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        typist, member, outsider = await asyncio.gather(
            *(asyncio.to_thread(lab.account, _fresh(p)) for p in ("typist", "reader", "outsider"))
        )
        room, elsewhere = f"q2-{secrets.token_hex(3)}", f"q2-other-{secrets.token_hex(3)}"
        async with (
            FrameTap.for_lab(lab) as tap,
            LabClient.connect(lab, member, reconnect=False) as reader,
            LabClient.connect(lab, outsider, reconnect=False) as other,
        ):
            heard, overheard = _Recorder(reader), _Recorder(other)
            await reader.join(room)
            await other.join(elsewhere)
            before = await asyncio.to_thread(row_counts, lab.data_dir)
            await _call(answer, f"announce_typing(ws_url, token, {room!r})", tap.ws_url, typist.token, room)
            try:
                await reader.wait_for(
                    lambda m: m.get("type") == "typing" and m.get("user", {}).get("id") == typist.id, timeout=2
                )
            except TimeoutError:
                pass
            await asyncio.gather(reader.send("ping"), other.send("ping"))  # whatever was routed has arrived
            after = await asyncio.to_thread(row_counts, lab.data_dir)
            sent = [message for _, message in json_objects(tap.frames, C2S)]
            answers = [message for _, message in json_objects(tap.frames, S2C)]
        from_typist = [m for m in heard.messages if (m.get("user") or m.get("from") or {}).get("id") == typist.id]
        leaked = [
            m
            for m in overheard.messages
            if m.get("type") != "presence" and (m.get("user") or m.get("from") or {}).get("id") == typist.id
        ]
        return self._judge(typist.username, room, sent, answers, from_typist, leaked, before, after)

    def _judge(
        self,
        typist: str,
        room: str,
        sent: list[dict[str, Any]],
        answers: list[dict[str, Any]],
        heard: list[dict[str, Any]],
        leaked: list[dict[str, Any]],
        before: dict[str, int],
        after: dict[str, int],
    ) -> str:
        if not any(m.get("type") == "welcome" for m in answers):
            raise Incorrect(
                'no WebSocket was opened through the `ws_url` you were given: connect to `f"{ws_url}?token={token}"`.'
            )
        stored = {
            t: after[t] - before[t] for t in ("messages", "notifications", "posts", "comments") if after[t] != before[t]
        }
        kinds = sorted({str(m.get("type")) for m in sent} - {"join", "typing", "ping", "leave"})
        if stored:
            what = ", ".join(f"{n} row(s) in `{t}`" for t, n in stored.items())
            raise Incorrect(
                f"the database gained {what} while you announced typing (you sent {', '.join(kinds) or 'it'}). A "
                'typing indicator is never stored: send `{"type": "typing", "room": room}`, not a chat or a DM.'
            )
        typings = [m for m in sent if m.get("type") == "typing"]
        kinds_sent = ", ".join(str(m.get("type")) for m in sent)
        if not typings:
            raise Incorrect(
                f"your client never sent a `typing` message (it sent: {kinds_sent or 'nothing'}). "
                'Send `{"type": "typing", "room": room}`.'
            )
        if not any(m.get("type") == "join" and m.get("room") == room for m in sent):
            refused = next((m for m in answers if m.get("type") == "error"), None)
            why = f" The lab answered `{refused.get('code')}`: {refused.get('message')}." if refused else ""
            raise Incorrect(
                f"your client sent `typing` without joining `{room}` first.{why} Only a socket in a room may say "
                'it is typing there: send `{"type": "join", "room": room, "ref": ...}` and read its ack first.'
            )
        shown = [m for m in heard if m.get("type") == "typing" and m.get("active") is True and m.get("room") == room]
        if not shown:
            if any(m.get("active") is False for m in typings) and not any(m.get("active", True) for m in typings):
                raise Incorrect(
                    "you sent `typing` with `active: false`: that says you *stopped* typing (and, as you were not "
                    'typing, the room is told nothing). Leave `active` out or send `"active": true`.'
                )
            rooms = sorted({str(m.get("room")) for m in typings})
            raise Incorrect(
                f"the reader in `{room}` never saw you typing (your `typing` went to {', '.join(rooms)}). Send it to "
                "the `room` argument, after the ack of your join."
            )
        if leaked:
            raise Incorrect(
                f"a user in another room got {show(leaked[0], 120)} from you: only the room should hear it."
            )
        size = len(json.dumps(typings[0], separators=(",", ":")))
        return (
            f"the reader in `{room}` saw `{typist}` typing, the user in another room saw nothing, and the database "
            f"still holds {after['messages']} message rows, as before. Your `typing` was {size} bytes of JSON; "
            "the room was told in one broadcast of about 90 bytes."
        )


q2 = lesson.add(
    "q2",
    AnnounceTyping(
        title="A typing indicator that reaches only the room",
        question=(
            "Write `async def announce_typing(ws_url, token, room)` with `websockets`: open a socket as the user "
            'of `token` (`f"{ws_url}?token={token}"`), read the `welcome`, join `room` (wait for the ack), tell the '
            "room this user is typing, and close.\n\n"
            "`await ex.q2.check_async(announce_typing)` runs it through a tap with a fresh user and room, with "
            "one reader in that room and one user in another room, and checks that the reader saw you typing, "
            "that the other user saw nothing, and that the database has not one row more."
        ),
        hint=[
            "Three messages go up: the `join` (with a `ref`, and read until the `ack` with that ref comes back), "
            'then `{"type": "typing", "room": room}`, then the close (`async with` closes for you). '
            "Start your cell with `import json` and `import websockets`.",
            "```python\n"
            'async with websockets.connect(f"{ws_url}?token={token}") as ws:\n'
            "    await ws.recv()                                   # the welcome\n"
            '    await ws.send(json.dumps({"type": "join", "room": room, "ref": "j"}))\n'
            '    while json.loads(await ws.recv()).get("ref") != "j":\n'
            "        pass\n"
            "    ...\n"
            "```",
        ],
        solution=(
            "```python\n"
            "import json\n"
            "import websockets\n\n"
            "async def announce_typing(ws_url, token, room):\n"
            '    async with websockets.connect(f"{ws_url}?token={token}") as ws:\n'
            "        await ws.recv()                                            # the welcome\n"
            '        await ws.send(json.dumps({"type": "join", "room": room, "ref": "j"}))\n'
            '        while json.loads(await ws.recv()).get("ref") != "j":      # member_joined, then the ack\n'
            "            pass\n"
            '        await ws.send(json.dumps({"type": "typing", "room": room, "ref": "t"}))\n'
            '        while json.loads(await ws.recv()).get("ref") != "t":      # our own typing echo, then the ack\n'
            "            pass\n"
            "```\n\n"
            "Waiting for the typing's ack is not needed for the room to see it (the server handles a socket's "
            "messages in order, so the typing is broadcast before the close is read), but it tells *you* it "
            "went through. A chat saying 'ann is typing…' would also reach the room, but it is stored, numbered "
            "and replayed forever; a DM to each member would reach users, not the room, and be stored too."
        ),
    ),
)


# --- q3: like over REST, catch the notification on the author's socket ---------------------------------------


class LikeAndCatch(LiveProblem):
    """The student's ``async def like_and_catch(http_url, token, post_id, author_ws)``: like a post over
    REST as one user, then read the notification the lab pushes on the author's socket."""

    answer_format = "your async function itself, `like_and_catch` (no parentheses)"
    call_with = "like_and_catch"
    answer_kind = "async"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        author, liker = await asyncio.gather(*(asyncio.to_thread(lab.account, _fresh(p)) for p in ("author", "liker")))
        status, made = await _rest(lab, "POST", "/api/posts", author.token, {"text": "my first photo"})
        if status != 201:
            raise CheckError(f"could not write the post to like: {status} {made}")
        post_id = int(made["post"]["id"])
        async with websockets.connect(f"{lab.ws_url}?token={author.token}") as author_ws:
            await author_ws.recv()  # the welcome
            # The author also watches the post's counters: a post_updated arrives before the notification.
            await author_ws.send(json.dumps({"type": "subscribe", "topic": f"post:{post_id}", "ref": "s"}))
            while json.loads(await author_ws.recv()).get("ref") != "s":
                pass
            result = await _call(
                answer,
                f"like_and_catch(http_url, token, {post_id}, author_ws)",
                lab.url,
                liker.token,
                post_id,
                author_ws,
            )
        status, listed = await _rest(lab, "GET", f"/api/posts?before={post_id + 1}&limit=1", author.token)
        likes = int(listed["posts"][0]["likes"]) if status == 200 and listed.get("posts") else 0
        status, notes = await _rest(lab, "GET", "/api/notifications", author.token)
        stored = notes.get("notifications", []) if status == 200 else []
        return self._judge(result, likes, stored, post_id, liker.user)

    def _judge(self, result: Any, likes: int, stored: list[dict[str, Any]], post_id: int, liker: dict[str, Any]) -> str:
        if likes == 0:
            raise Incorrect(
                f"post {post_id} has no like: like it over HTTP, `POST {{http_url}}/api/posts/{post_id}/like` with the "
                "header `Authorization: Bearer <token>` (aiohttp: `session.post(url, headers=...)`)."
            )
        if isinstance(result, str | bytes):
            raise Incorrect(
                "you returned the message as text: return it as a dict, `json.loads(await author_ws.recv())`."
            )
        if not isinstance(result, dict):
            raise Incorrect(
                f"the like is there, but you returned {show(result, 60)}: read messages from `author_ws` "
                '(`json.loads(await author_ws.recv())`) until one has `"type": "notification"`, and return it.'
            )
        if result.get("type") == "post_updated":
            raise Incorrect(
                "you returned the `post_updated` message: the author's socket watches the post's counters too (it "
                "subscribed to the post's topic), and that push comes first. Keep reading until the message whose "
                '`type` is `"notification"`.'
            )
        if result.get("type") != "notification":
            raise Incorrect(f'you returned {show(result, 100)}; return the message whose `type` is `"notification"`.')
        if result.get("id") not in {n.get("id") for n in stored}:
            raise Incorrect(
                "that notification is not one the lab stored for the author: return the message as it came."
            )
        if result.get("kind") != "like" or (result.get("from") or {}).get("id") != liker["id"]:
            raise Incorrect(f"you returned {show(result, 120)}; return the `like` notification your like caused.")
        return (
            f"your like went over HTTP, and the lab pushed `{result.get('text')}` to the author's socket at once "
            f"(after the `post_updated` of the post's counter). It is stored too (notification {result.get('id')} "
            "in `GET /api/notifications`), for the tabs that were closed."
        )


q3 = lesson.add(
    "q3",
    LikeAndCatch(
        title="Like over REST, catch the push on the author's socket",
        question=(
            "Write `async def like_and_catch(http_url, token, post_id, author_ws)`: like post `post_id` over HTTP as "
            "the user of `token` (`POST {http_url}/api/posts/{post_id}/like`, header `Authorization: Bearer "
            "<token>`), then read the author's open WebSocket `author_ws` (a `websockets` connection, its "
            "`welcome` already read) until the notification of your like arrives, and return that message as a "
            "dict.\n\n"
            "`await ex.q3.check_async(like_and_catch)` writes a fresh post as a fresh author, opens the author's "
            "socket, and calls your function with a fresh liker's token."
        ),
        hint=[
            "Two halves: an HTTP request (`aiohttp.ClientSession().post(...)`, or the blocking `urllib` in "
            "`await asyncio.to_thread(...)`), then a loop on `json.loads(await author_ws.recv())`. The author's "
            "socket also watches the post's counters: not every message on it is the notification.",
            "```python\n"
            "async with aiohttp.ClientSession() as http:\n"
            '    async with http.post(f"{http_url}/api/posts/{post_id}/like",\n'
            '                         headers={"Authorization": f"Bearer {token}"}) as resp:\n'
            "        resp.raise_for_status()\n"
            "while True:\n"
            "    message = json.loads(await author_ws.recv())\n"
            "    ...\n"
            "```",
        ],
        solution=(
            "```python\n"
            "import json\n"
            "import aiohttp\n\n"
            "async def like_and_catch(http_url, token, post_id, author_ws):\n"
            "    async with aiohttp.ClientSession() as http:\n"
            '        async with http.post(f"{http_url}/api/posts/{post_id}/like",\n'
            '                             headers={"Authorization": f"Bearer {token}"}) as resp:\n'
            "            resp.raise_for_status()                  # 200 {post, liked: true}\n"
            "    while True:\n"
            "        message = json.loads(await author_ws.recv())\n"
            '        if message["type"] == "notification":       # post_updated comes first\n'
            "            return message\n"
            "```\n\n"
            "The like is an HTTP request: it needs an answer (did it work? the new count), it is idempotent "
            "(liking twice is one like), and any client can make it. Its *consequences* for other people are "
            "pushed: before the `200` went back, the lab had written `post_updated` to the post's watchers and "
            "the notification to every socket of the author."
        ),
    ),
)


# --- q4: the handler that turns a REST action into pushes ---------------------------------------------------

_ACTIONS = (  # (who, what, comment text): run in this order on one post
    ("bob", "like", None),
    ("bob", "like", None),
    ("ann", "like", None),
    ("cat", "comment", "what a view"),
    ("ann", "comment", "thanks!"),
    ("bob", "unlike", None),
    ("bob", "unlike", None),
)
_FIELDS = {  # the fields of each pushed message a handler decides (the store adds id and ts)
    "notification": ("kind", "from", "post_id", "text"),
    "post_updated": ("post_id", "likes", "comments"),
}


def _pushes_for_reference(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    post, actor = event["post"], event["actor"]
    if not event["changed"]:
        return []  # a repeated like or unlike: nothing happened, nothing to tell
    pushes: list[tuple[str, dict[str, Any]]] = [
        (
            f"topic:post:{post['id']}",
            {"type": "post_updated", "post_id": post["id"], "likes": post["likes"], "comments": post["comments"]},
        )
    ]
    author = post["author"]
    if event["action"] in ("like", "comment") and actor["id"] != author["id"]:
        verb = "liked" if event["action"] == "like" else "commented on"
        note = {
            "type": "notification",
            "kind": event["action"],
            "from": actor,
            "post_id": post["id"],
            "text": f"{actor['username']} {verb} your post",
        }
        pushes.append((f"user:{author['id']}", note))
    return pushes


def _describe_action(who: str, what: str, repeat: bool) -> str:
    if what == "like":
        return f"{who} liked the post" + (" again (the like was already there)" if repeat else "")
    if what == "unlike":
        return f"{who} took the like back" + (" again (there was none left to remove)" if repeat else "")
    return f"{who} commented"


class PushHandler(LiveProblem):
    """The student's ``pushes_for(event)``, run on seven real REST actions and compared with what
    the lab pushed for each to the author's two tabs and to a viewer of the post."""

    answer_format = "your function itself, `pushes_for` (no parentheses)"
    call_with = "pushes_for"
    answer_kind = "function"  # a plain def or an async def: both are awaited or called as they are

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        names = {who: _fresh(who) for who in ("ann", "bob", "cat", "viewer")}
        accounts = dict(
            zip(names, await asyncio.gather(*(asyncio.to_thread(lab.account, n) for n in names.values())), strict=True)
        )
        ann = accounts["ann"]
        status, made = await _rest(lab, "POST", "/api/posts", ann.token, {"text": "sunset from the hill"})
        if status != 201:
            raise CheckError(f"could not write the post: {status} {made}")
        post_id = int(made["post"]["id"])
        topic, ann_target = f"topic:post:{post_id}", f"user:{ann.id}"
        clients = await asyncio.gather(
            LabClient.connect(lab, ann, reconnect=False, name="ann tab 1"),
            LabClient.connect(lab, ann, reconnect=False, name="ann tab 2"),
            LabClient.connect(lab, accounts["viewer"], reconnect=False),
        )
        try:
            tab1, tab2, viewer = clients
            await viewer.send("subscribe", topic=f"post:{post_id}")
            records = [_Recorder(c) for c in clients]
            likes = 0
            seen: set[tuple[str, str]] = set()
            totals = {"notification": 0, "post_updated": 0, "nothing": 0}
            for who, what, text in _ACTIONS:
                actor = accounts[who]
                marks = [len(r.messages) for r in records]
                if what == "comment":
                    status, body = await _rest(
                        lab, "POST", f"/api/posts/{post_id}/comments", actor.token, {"text": text}
                    )
                else:
                    method = "POST" if what == "like" else "DELETE"
                    status, body = await _rest(lab, method, f"/api/posts/{post_id}/like", actor.token)
                if status not in (200, 201):
                    raise CheckError(f"the lab answered {status} {body} to {who}'s {what}")
                post = body["post"]
                changed = {"like": post["likes"] > likes, "unlike": post["likes"] < likes, "comment": True}[what]
                likes = post["likes"]
                event = {"action": what, "actor": dict(actor.user), "post": post, "changed": changed}
                await asyncio.gather(*(c.send("ping") for c in clients))  # every push of this action has arrived
                live = self._live_pushes(records, marks, ann_target, topic)
                said = _describe_action(who, what, (who, what) in seen)
                seen.add((who, what))
                mine = await _call(answer, "pushes_for(event)", copy.deepcopy(event))
                self._compare(mine, live, event, said)
                for _, message in live:
                    totals[message["type"]] += 1
                totals["nothing"] += not live
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return (
            f"for all {len(_ACTIONS)} REST actions your handler decided exactly what the lab pushed: "
            f"{totals['notification']} notifications (each reached both of the author's tabs), "
            f"{totals['post_updated']} `post_updated` to the post's viewer, and nothing for the "
            f"{totals['nothing']} actions that changed nothing."
        )

    @staticmethod
    def _live_pushes(
        records: list[_Recorder], marks: list[int], ann_target: str, topic: str
    ) -> list[tuple[str, dict[str, Any]]]:
        tab1, tab2, viewer = (r.since(m, "notification", "post_updated") for r, m in zip(records, marks, strict=True))
        if [m.get("id") for m in tab1] != [m.get("id") for m in tab2]:
            raise CheckError("the author's two tabs did not get the same pushes: a bug in the lab, not in your answer")
        return [(ann_target, m) for m in tab1] + [(topic, m) for m in viewer]

    def _compare(self, mine: Any, live: list[tuple[str, dict[str, Any]]], event: dict[str, Any], said: str) -> None:
        if mine is None:
            mine = []
        if not isinstance(mine, list | tuple):
            raise Incorrect(
                f"after `{said}`, `pushes_for` returned {show(mine, 60)}: return a list of `(target, message)`."
            )
        pushes = []
        for item in mine:
            if not (
                isinstance(item, list | tuple)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], dict)
            ):
                raise Incorrect(
                    f"after `{said}`, your list holds {show(item, 80)}: each push is a pair `(target, message)`, "
                    'e.g. `("user:1", {"type": "notification", ...})`.'
                )
            pushes.append((item[0], item[1]))
        post = event["post"]
        for target, message in live:
            kind = message["type"]
            match = [p for p in pushes if p[1].get("type") == kind]
            if not match:
                if kind == "post_updated":
                    why = (
                        f"the post's counters changed (likes {post['likes']}, comments {post['comments']}), so "
                        f'everyone watching it is told: `("{target}", {{"type": "post_updated", ...}})`'
                    )
                else:
                    why = (
                        f"{event['actor']['username']} is not the author, so the author "
                        f"({post['author']['username']}) gets a `{message.get('kind')}` notification on every tab: "
                        f'`("{target}", {{"type": "notification", ...}})`'
                    )
                raise Incorrect(f"after `{said}`, the lab pushed a `{kind}` and your handler did not: {why}.")
            got_target, got = match[0]
            if got_target != target:
                raise Incorrect(
                    f"after `{said}`, your `{kind}` goes to `{got_target}`; the lab sent it to `{target}` "
                    + (
                        "(the post's author, on every tab: not the user who acted)."
                        if kind == "notification"
                        else "(the sockets watching this post)."
                    )
                )
            for field in _FIELDS[kind]:
                if got.get(field) != message.get(field):
                    raise Incorrect(
                        f"after `{said}`, your `{kind}` has `{field}` = {show(got.get(field), 60)}; the lab pushed "
                        f"{show(message.get(field), 60)}."
                    )
            pushes.remove(match[0])
        if pushes:
            extra_target, extra = pushes[0]
            if not live:
                why = (
                    "nothing changed, so there is nothing to tell (`event['changed']` is False): a repeated like "
                    "or unlike gets the same `200` answer, but no push"
                )
            elif extra.get("type") == "notification":
                why = "nobody is notified of their own action on their own post, and an unlike notifies no one"
            else:
                why = "the lab pushed one message of that type for this action"
            raise Incorrect(
                f"after `{said}`, your handler pushes {show((extra_target, extra), 100)} that the lab did not: {why}."
            )


q4 = lesson.add(
    "q4",
    PushHandler(
        title="The handler that turns a REST action into pushes",
        question=(
            "A like, an unlike or a comment arrives over HTTP. After storing it, the REST handler knows an `event`:\n\n"
            "```python\n"
            '{"action": "like",                       # or "unlike", "comment"\n'
            ' "actor": {"id": 2, "username": "bob"},  # who did it\n'
            ' "post": {"id": 7, "author": {"id": 1, "username": "ann"}, "likes": 1, "comments": 0, ...},  # after it\n'
            ' "changed": True}                        # False: a repeated like or unlike, nothing happened\n'
            "```\n\n"
            "Write `pushes_for(event)`: return the list of pushes it causes, each `(target, message)`, where "
            '`target` is `"user:<id>"` (every socket of that user) or `"topic:post:<id>"` (every socket '
            "watching that post), and `message` is the message without `id` and `ts` (the store adds them):\n\n"
            '- `{"type": "post_updated", "post_id": ..., "likes": ..., "comments": ...}`\n'
            '- `{"type": "notification", "kind": "like" or "comment", "from": <actor>, "post_id": ..., '
            '"text": "bob liked your post" or "bob commented on your post"}`\n\n'
            "`await ex.q4.check_async(pushes_for)` makes seven real REST actions on a fresh post (likes, a repeated "
            "like, the author liking her own post, comments, unlikes), and compares your handler's decision with "
            "what the lab pushed to the author's two tabs and to a viewer of the post. Leave mentions out."
        ),
        hint=[
            "Three questions per event: did anything change (if not: no push at all)? The counters changed, so "
            "who watches the post? Should the author hear about it: not for an unlike, and not for her own action?",
            "`post_updated` goes to `f\"topic:post:{post['id']}\"` whenever `event['changed']`; the notification "
            "goes to `f\"user:{post['author']['id']}\"` for a like or a comment by someone other than the author, "
            "with `kind` the action and `text` f\"{actor['username']} liked your post\" (or `commented on`).",
        ],
        solution=(
            "```python\n"
            + inspect.getsource(_pushes_for_reference).replace("_pushes_for_reference", "pushes_for")
            + "```\n\n"
            "The lab's own handlers do exactly this after the database write (`labserver/rest.py`: `like`, "
            "`unlike`, `comment`), and before answering the HTTP request, so the liker's `200` comes after the "
            "pushes have been written. The targets are not sockets: `user:<id>` becomes every socket of that "
            "user (the userId -> sockets map) and `topic:post:<id>` every socket that subscribed, looked up at "
            "delivery time, in every server process (lesson 08)."
        ),
    ),
)


# --- q5: which half of the hybrid --------------------------------------------------------------------------

FEATURES = {
    "sign up": "http",
    "upload a profile picture": "http",
    "load a post's image": "http",
    "like a post": "http",
    "the like counter on every viewer's screen": "ws",
    "show that Bob is typing": "ws",
    "a chat message": "ws",
    "Bob came online": "ws",
    "tell Ann that Bob liked her post": "ws",
}

_WHY = {
    "sign up": "a request that needs one answer (your token, or `username_taken`): request/response is HTTP's shape",
    "upload a profile picture": "megabytes on the chat socket hold up every message behind them (part 8), and HTTP "
    "has a size check before the body, progress, retries and resumable uploads",
    "load a post's image": "cacheable: a URL, an `ETag`, `Cache-Control`; a browser or CDN answers it without the "
    "server, which no WebSocket message can use",
    "like a post": "an action that needs an answer (did it work? the new count), idempotent, easy to retry: HTTP. "
    "Its consequences for *others* (counter, notification) are then pushed over WebSocket",
    "the like counter on every viewer's screen": "others must hear about it without asking: a push to the post's topic",
    "show that Bob is typing": "frequent, tiny, ephemeral and pushed to the room: the WebSocket's job",
    "a chat message": "pushed to everyone in the room as it happens; the socket also carries its ack",
    "Bob came online": "presence is pushed to subscribers; with HTTP everyone would have to poll",
    "tell Ann that Bob liked her post": "a push to every tab of Ann's; it is also stored, for tabs that were closed",
}


def _side(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace("-", "").replace(" ", "")
    if text in {"http", "https", "rest", "http(s)"}:
        return "http"
    if text in {"ws", "wss", "websocket", "websockets", "socket"}:
        return "ws"
    return None


class HybridProblem(Problem):
    """A dict feature -> "http" or "ws"; each wrong item is explained."""

    answer_format = 'the dict with each `...` replaced by `"http"` or `"ws"`'

    def _is_placeholder(self, answer: Any) -> bool:
        if super()._is_placeholder(answer):
            return True
        return isinstance(answer, dict) and all(v is Ellipsis for v in answer.values())

    def _check(self, answer: Any) -> str | None:
        if not isinstance(answer, dict):
            raise Incorrect(f'pass the dict of features, with `"http"` or `"ws"` for each; got {show(answer, 60)}.')
        missing = [f for f in FEATURES if f not in answer]
        if missing:
            raise Incorrect(f"the dict has no entry for {missing[0]!r}: keep every feature of the question.")
        for feature, side in answer.items():
            if feature in FEATURES and side is Ellipsis:
                raise Incorrect(f'{feature!r} is still `...`: say `"http"` or `"ws"`.')
            if feature in FEATURES and _side(side) is None:
                raise Incorrect(f'{feature!r}: {show(side)} is neither `"http"` nor `"ws"`.')
        wrong = [f for f in FEATURES if _side(answer[f]) != FEATURES[f]]
        if wrong:
            first = wrong[0]
            more = f" ({len(wrong) - 1} more to look at after this one)" if len(wrong) > 1 else ""
            right = "HTTP" if FEATURES[first] == "http" else "WebSocket"
            raise Incorrect(f"{first!r} belongs over {right}: {_WHY[first]}{more}.")
        return (
            "actions and documents over HTTP (they need answers, sizes, caches), and what others must hear at once "
            "over the WebSocket. A like is both: the request is HTTP, its news is pushed."
        )


q5 = lesson.add(
    "q5",
    HybridProblem(
        title="Which half of the hybrid?",
        question=(
            'For each feature of a social app, say whether it goes over HTTP (`"http"`) or over the WebSocket '
            '(`"ws"`) in the hybrid design of this lesson. Replace each `...` in the dict of the answer cell.'
        ),
        hint=[
            "Ask of each: does the client need an *answer* to a request it makes (and could the answer be cached, "
            "or be megabytes)? HTTP. Must *other* people see it as it happens, without asking? WebSocket.",
            "Five are HTTP: signing up, uploading, loading an image, and the like itself (the action). Its effects "
            "on other screens are pushed.",
        ],
        solution="\n".join(f"- **{feature}**: `{side}`: {_WHY[feature]}." for feature, side in FEATURES.items()),
    ),
)


# --- q6: head-of-line blocking, by arithmetic -------------------------------------------------------------

PHOTO_BYTES = 3 * 2**20
UPLINK = 2_000_000
SENT_AFTER = 0.5

q6 = lesson.add(
    "q6",
    ValueProblem(
        PHOTO_BYTES / UPLINK - SENT_AFTER,
        tolerance=0.12,
        title="A chat behind a photo",
        question=(
            f"Ann's phone sends a {PHOTO_BYTES // 2**20} MiB photo as one binary message on her chat WebSocket, "
            f"over an uplink of {UPLINK:,} bytes/s. {SENT_AFTER} s after the photo started, she sends a short chat "
            "on the same socket. About how many seconds after she pressed *send* does her chat reach the server? "
            "(Ignore the round-trip time and the chat's own bytes.)"
        ),
        answer_format="a number of seconds, e.g. `0.3`",
        explanations=[
            (
                PHOTO_BYTES / UPLINK,
                "that is the whole photo's time on the link; half a second of it was already sent when she "
                "pressed send.",
            ),
            (
                0,
                "that is what it would be with the photo on its own HTTP connection. On one WebSocket, frames go in "
                "order: the chat waits for the rest of the photo.",
            ),
            (
                SENT_AFTER,
                "the chat does not wait for as long as the photo was already sending, but for the rest of the photo.",
            ),
        ],
        hint=[
            "On one socket, the chat's frame can only start after the photo's last byte. How many bytes of the photo "
            "are still to go when she presses send?",
            f"The photo takes {PHOTO_BYTES:,} / {UPLINK:,} s on the link; {SENT_AFTER} s of that has passed.",
        ],
        solution=(
            f"`{PHOTO_BYTES:,} / {UPLINK:,} - {SENT_AFTER}` = about **{PHOTO_BYTES / UPLINK - SENT_AFTER:.2f} s**: "
            "the rest of the photo, at the uplink's rate, is ahead of the chat on the same TCP stream "
            "(head-of-line blocking, part 8 and lesson 03). Over a separate HTTP connection, the photo and the chat "
            "share the link's bandwidth, but the chat is not queued behind the whole photo: it goes in milliseconds."
        ),
    ),
)


__all__ = [
    "FEATURES",
    "lesson",
    "q1",
    "q2",
    "q3",
    "q4",
    "q5",
    "q6",
]
