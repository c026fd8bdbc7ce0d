"""Exercises of lesson 01, polling vs push: what polling costs, and what each feature needs.

from labserver.course.exercises import lesson01 as ex
ex.q1.check(requests_per_minute)     # a function (users, interval_s) -> requests per minute
ex.q2.check(2.0)                     # seconds
ex.q3.check({"typing indicator": "websocket", ...})
await ex.q4.check_async(poll_room)   # an async def poller, run against the live lab while messages are posted
"""

from __future__ import annotations

import asyncio
import inspect
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .core import CheckError, FunctionProblem, Incorrect, Lesson, LiveProblem, Status, ValueProblem, Verdict, show

lesson = Lesson("lesson01", "Polling vs push: requests, latency, and which feature needs what")


# --- q1: requests per minute ----------------------------------------------------------------


def _requests_per_minute_reference(users: int, interval_s: float) -> float:
    return users * 60 / interval_s


def _same_number(got: Any, expected: float) -> bool:
    if isinstance(got, bool) or not isinstance(got, int | float):
        return False
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)


q1 = lesson.add(
    "q1",
    FunctionProblem(
        [
            ((1000, 1), 60_000, "1,000 users, one request a second each, and a minute has 60 seconds"),
            ((1000, 2), 30_000, "polling every 2 s halves the requests"),
            ((100, 5), 1_200, "each user asks 60 / 5 = 12 times a minute"),
            ((10, 0.5), 1_200, "every half second is twice a second: 120 requests a minute per user"),
            ((1, 60), 1, "once a minute is one request a minute"),
            ((0, 1), 0, "no users, no requests"),
        ],
        reference=_requests_per_minute_reference,
        compare=_same_number,
        name="requests_per_minute",
        title="Requests per minute",
        question=(
            "Write `requests_per_minute(users: int, interval_s: float) -> float`: how many HTTP requests "
            "reach the server in one minute when `users` clients each poll every `interval_s` seconds? "
            "(Whether or not anything new happened: polling asks anyway.) Then check it with "
            "`ex.q1.check(requests_per_minute)`."
        ),
        hint=[
            "One user polling every `interval_s` seconds makes `1 / interval_s` requests per second.",
            "Per second, all users together: `users / interval_s`. A minute has 60 seconds.",
        ],
        solution=(
            "```python\n"
            "def requests_per_minute(users: int, interval_s: float) -> float:\n"
            "    return users * 60 / interval_s\n"
            "```\n\n"
            "Each user asks `60 / interval_s` times a minute, and the server answers every one of them, "
            "new message or not: 1,000 users polling every second are 60,000 requests a minute, "
            "1,000 a second. Halving the interval to cut latency doubles them."
        ),
    ),
)


# --- q2: the latency short polling adds -------------------------------------------------------


q2 = lesson.add(
    "q2",
    ValueProblem(
        2.0,
        tolerance=0.05,
        title="The wait short polling adds",
        question=(
            "Clients poll every T = 4 seconds. A message is posted at a random moment. On average, "
            "how many seconds does it wait on the server before a client's poll picks it up? "
            "Ignore the network and the server's own time. Answer with a number of seconds."
        ),
        answer_format="a number of seconds, e.g. `1.5`",
        explanations=[
            (
                4,
                "4 s is the worst case: a message posted just after a poll waits the whole interval. "
                "One posted just before the next poll hardly waits. What is the average of the two?",
            ),
            (0, "only a message that lands exactly at a poll waits 0 s; most land somewhere in between."),
            (8, "a poll comes every 4 s, so no message waits longer than 4 s."),
        ],
        wrong_message="not quite: the wait is anywhere between 0 and T, equally likely.",
        correct_message=(
            "the wait is spread evenly between 0 and T, so it is T/2 = 2 s on average (you measured "
            "the same above: mean latency about T/2 for every T). Push delivers in milliseconds."
        ),
        hint=[
            "The message lands at a random moment between two polls that are T = 4 s apart. "
            "What is the shortest possible wait, and the longest?",
            "Any wait between 0 and T is equally likely: the average of a uniform wait is halfway.",
        ],
        solution=(
            "`2.0` seconds, T/2. A poll comes every T = 4 s and the message lands at a random moment in "
            "between: it waits anywhere from 0 s (just before a poll) to 4 s (just after one), all equally "
            "likely, so 2 s on average. To halve that wait you must halve T, which doubles the requests: "
            "short polling trades requests for latency, push does not have to."
        ),
    ),
)


# --- q3: which approach each feature needs ---------------------------------------------------------

WEBSOCKET, HTTP = "websocket", "http"
_ALIASES = {
    "websocket": WEBSOCKET,
    "websockets": WEBSOCKET,
    "web socket": WEBSOCKET,
    "ws": WEBSOCKET,
    "wss": WEBSOCKET,
    "push": WEBSOCKET,
    "socket": WEBSOCKET,
    "http": HTTP,
    "https": HTTP,
    "rest": HTTP,
    "http request": HTTP,
    "request": HTTP,
}

FEATURES: dict[str, tuple[str, str]] = {
    "new chat messages": (
        WEBSOCKET,
        "others must see a message the moment it is sent: the server pushes it to the room",
    ),
    "typing indicator": (
        WEBSOCKET,
        "many tiny, short-lived updates, useless a second late and never stored: only push fits",
    ),
    "who is online": (
        WEBSOCKET,
        "the server sees a socket close the moment it closes and pushes the change; "
        "polling a presence list would be late and costly",
    ),
    "like notification": (
        WEBSOCKET,
        "the author should learn about it when it happens, without asking every few seconds",
    ),
    "live like counter": (
        WEBSOCKET,
        "every viewer of the post gets the new count pushed (subscribe to the post's topic)",
    ),
    "sign up / log in": (
        HTTP,
        "one request, one answer (the token), nothing to push: plain HTTP, before any socket opens",
    ),
    "upload a photo": (
        HTTP,
        "a large body with a content type and a status code: HTTP (multipart) does that, and "
        "the result is cacheable at a URL",
    ),
    "load older messages": (HTTP, "history is asked for once, paginated and cacheable: a GET, not a stream"),
    "like a post (the click)": (
        HTTP,
        "the click is an action that needs an answer (did it work?): POST it over HTTP; "
        "its effects, the counter and the notification, are then pushed",
    ),
}


def _approach(value: Any) -> Any:
    """``"WS"``, ``" WebSocket "``, ``"REST"``... -> ``"websocket"`` / ``"http"``; anything else unchanged."""
    if isinstance(value, str):
        return _ALIASES.get(" ".join(value.split()).casefold(), value)
    return value


def _feature(key: Any) -> Any:
    return " ".join(key.split()).casefold() if isinstance(key, str) else key


def _template() -> str:
    lines = ",\n".join(f"    {name!r}: ..." for name in FEATURES)
    return "answer = {\n" + lines + ",\n}"


class ApproachProblem(ValueProblem):
    """A dict feature -> ``"websocket"`` or ``"http"``, checked feature by feature: every wrong
    feature is named with why. A dict whose values are all still ``...`` is not attempted yet."""

    answer_format = "a dict mapping each feature to `'websocket'` or `'http'` (the template in the cell)"

    def _is_placeholder(self, answer: Any) -> bool:
        if super()._is_placeholder(answer):
            return True
        return (
            isinstance(answer, Mapping)
            and bool(answer)
            and all(any(v is p for p in self.placeholders) for v in answer.values())
        )

    def _check(self, answer: Any) -> str | None:
        if not isinstance(answer, Mapping):
            raise Incorrect(f"pass a dict, got {show(answer, 60)}. Pass {self.answer_format}.")
        given = {_feature(k): v for k, v in answer.items()}
        known = {_feature(k): k for k in FEATURES}
        unknown = [k for k in given if k not in known]
        if unknown:
            raise Incorrect(
                f"unknown feature {show(unknown[0])}: use the keys of the template, "
                f"{', '.join(repr(k) for k in FEATURES)}."
            )
        unanswered = [known[k] for k in known if k not in given or any(given[k] is p for p in self.placeholders)]
        if unanswered:
            raise Incorrect(f"still to answer: {', '.join(repr(k) for k in unanswered)}.")
        bad = [(known[k], v) for k, v in given.items() if _approach(v) not in (WEBSOCKET, HTTP)]
        if bad:
            name, value = bad[0]
            raise Incorrect(f"{show(value)} for {name!r}: answer 'websocket' or 'http'.")
        wrong = [name for name, (expected, _) in FEATURES.items() if _approach(given[_feature(name)]) != expected]
        if wrong:
            reasons = "; ".join(f"{name!r} needs {FEATURES[name][0]}: {FEATURES[name][1]}" for name in wrong)
            count = f"{len(wrong)} of {len(FEATURES)} features"
            raise Incorrect(f"{count} need another answer. {reasons}.")
        return None


q3 = lesson.add(
    "q3",
    ApproachProblem(
        {name: expected for name, (expected, _) in FEATURES.items()},
        title="Which feature needs what",
        question=(
            "For each feature of a social app, does it need the server to **push** over a WebSocket "
            "(`'websocket'`), or is a plain request/response enough (`'http'`)? Fill in every `...` "
            "of this template:\n\n```python\n" + _template() + "\n```"
        ),
        correct_message=(
            "the hybrid: everything *live* that others must see at once is pushed over one WebSocket "
            "(chat, typing, presence, notifications, counters); actions that need an answer, uploads and "
            "history stay on HTTP, cacheable and simple. WebSocket does not replace REST."
        ),
        hint=[
            "Ask of each feature: does someone *else* need to see it the moment it happens, without asking? "
            "Then the server must push it.",
            "A user's own action (a click, a form, an upload, asking for old data) wants one answer: that "
            "is a request. Its effect on *other* users is what gets pushed. The lab server does exactly "
            "this: `POST /api/posts/{id}/like`, then `post_updated` and `notification` over `/ws`.",
        ],
        solution=(
            "- **websocket**: new chat messages, typing indicator, who is online, like notification, live like "
            "counter. They happen at moments nobody can predict, and others should see them at once: push.\n"
            "- **http**: sign up / log in, upload a photo, load older messages, like a post (the click). One "
            "request, one answer, often cacheable.\n\n"
            "A like is both: the click is a `POST` (did it work? a status code says), and what it changes for "
            "*others* (the counter, the author's notification) is pushed. That is the hybrid approach."
        ),
    ),
)


# --- q4: a poller of your own, run against the live lab -------------------------------------------

#: When the check posts, in seconds after your poller starts, and how many messages at once
#: (the bursts put several messages in one answer).
POSTS: tuple[tuple[float, int], ...] = ((0.6, 1), (1.4, 3), (2.3, 1), (3.0, 2))
LATE = 1.5  # seconds: a message slower than this was not polled for often enough (a 0.5 s poll needs 0.5)
GRACE = 2.5  # seconds the check waits after the last post for the last messages to arrive
MAX_RATE = 20.0  # requests a second above this hammer the server (a poll every 50 ms)
Q4_PRODUCER, Q4_POLLER = "q4_producer", "q4_poller"
Q4_END = "[end of the check]"  # posted after the check: wakes a long poll still parked on the server
ENDPOINTS = ("messages", "poll")


@dataclass
class _Request:
    """One request the student's poller made, as the session's trace saw it."""

    started: float
    path: str
    after: str | None  # the ``after`` query parameter as sent (None: not sent)
    ended: float | None = None
    status: int | None = None  # None: no answer (failed, or still waiting when the check ended)


@dataclass
class _Watch:
    """What a poller did, seen from outside: its requests (through a trace) and its deliveries."""

    loop: asyncio.AbstractEventLoop
    start: float
    requests: list[_Request] = field(default_factory=list)
    deliveries: list[tuple[float, Any]] = field(default_factory=list)
    recording: bool = True

    def deliver(self, message: Any) -> None:
        """The ``deliver`` the student's poller calls, once per message."""
        if self.recording:
            self.deliveries.append((self.loop.time(), message))

    def trace(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()
        pending: dict[int, _Request] = {}

        async def started(_: Any, ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
            request = _Request(self.loop.time(), params.url.path, params.url.query.get("after"))
            pending[id(ctx)] = request
            if self.recording:
                self.requests.append(request)

        async def ended(_: Any, ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
            request = pending.pop(id(ctx), None)
            if request is not None:
                request.ended, request.status = self.loop.time(), params.response.status

        async def failed(_: Any, ctx: Any, params: aiohttp.TraceRequestExceptionParams) -> None:
            request = pending.pop(id(ctx), None)
            if request is not None:
                request.ended = self.loop.time()

        trace.on_request_start.append(started)
        trace.on_request_end.append(ended)
        trace.on_request_exception.append(failed)
        return trace

    def longest_idle(self, until: float) -> float:
        """The longest time, from the start to ``until``, with no request of the poller in flight."""
        idle, free_since = 0.0, self.start
        for r in sorted(self.requests, key=lambda r: r.started):
            idle = max(idle, r.started - free_since)
            free_since = max(free_since, until if r.ended is None else r.ended)
        return max(idle, until - free_since)


def _sum_up(ran_for: float, requests: int, late: float, long_polling: bool) -> str:
    rate = requests / ran_for
    how = (
        "Long polling: one request per answer, and each answer came the moment a message was stored."
        if long_polling
        else f"Short polling: {rate:.1f} requests a second whatever happens in the room, and each message "
        "waits for the next poll."
    )
    return (
        f"every message arrived once and in order, with {requests} requests in {ran_for:.1f} s "
        f"({rate:.1f} a second); the slowest took {late * 1000:,.0f} ms. {how}"
    )


class PollerProblem(LiveProblem):
    """The student's ``async def poll_room(http, room, token, deliver)``, run against the live lab.

    The check opens an aiohttp session on the lab (``http``, with ``base_url`` set and no
    token: sending it is part of the exercise), starts the poller on a fresh room, posts
    :data:`POSTS` over HTTP as another user, and waits until every message was delivered
    (or :data:`GRACE` seconds after the last post). Then it stops the poller (cancels its
    task) and judges what it saw: every message delivered once, in order, soon enough,
    with a sensible number of requests, each carrying the token and an advancing ``after``.
    """

    answer_format = "your async function itself, e.g. `poll_room`"
    call_with = "poll_room"
    answer_kind = "async"
    why_async = "write it as `async def poll_room(http, room, token, deliver):` (it awaits the requests and the sleeps)"

    def _not_attempted(self) -> Verdict:
        return Verdict(
            Status.NOT_ATTEMPTED,
            f"write the body of your poller (replace the `...`), then run `await {self.ref}.check_async(poll_room)`.",
        )

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        name = getattr(answer, "__name__", "poll_room")
        try:
            inspect.signature(answer).bind(None, None, None, None)
        except TypeError:
            raise Incorrect(f"`{name}` must take four arguments: `(http, room, token, deliver)`.") from None
        producer, poller = await asyncio.gather(
            asyncio.to_thread(lab.account, Q4_PRODUCER), asyncio.to_thread(lab.account, Q4_POLLER)
        )
        loop = asyncio.get_running_loop()
        watch = _Watch(loop, loop.time())
        room = f"q4-{secrets.token_hex(4)}"
        posted: dict[int, float] = {}  # seq -> when the check sent its POST
        auth = {"Authorization": f"Bearer {producer.token}"}
        timeout = aiohttp.ClientTimeout(total=60)
        async with (
            aiohttp.ClientSession(base_url=lab.url, headers=auth, timeout=timeout) as post_http,
            aiohttp.ClientSession(base_url=lab.url, trace_configs=[watch.trace()], timeout=timeout) as http,
        ):
            task = asyncio.ensure_future(answer(http, room, poller.token, watch.deliver))
            try:
                for offset, count in POSTS:
                    await asyncio.sleep(max(0.0, watch.start + offset - loop.time()))
                    if task.done():
                        break
                    for _ in range(count):
                        sent = loop.time()
                        posted[await _post(post_http, room, f"message {len(posted) + 1}")] = sent
                deadline = loop.time() + GRACE
                while loop.time() < deadline and not task.done() and not _all_in(watch, posted):
                    await asyncio.sleep(0.02)
            finally:
                watch.recording = False
                stopped = loop.time()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await _post(post_http, room, Q4_END)
        outcome: BaseException | str = "running" if task.cancelled() else (task.exception() or "returned")
        return _judge(name, watch, posted, outcome, stopped)


async def _post(http: aiohttp.ClientSession, room: str, text: str) -> int:
    async with http.post(f"/api/rooms/{room}/messages", json={"text": text}) as resp:
        resp.raise_for_status()
        return int((await resp.json())["seq"])


def _seqs(watch: _Watch) -> list[int]:
    return [m["seq"] for _, m in watch.deliveries if isinstance(m, Mapping) and isinstance(m.get("seq"), int)]


def _all_in(watch: _Watch, posted: Mapping[int, float]) -> bool:
    return set(posted) <= set(_seqs(watch))


def _judge(name: str, watch: _Watch, posted: Mapping[int, float], outcome: BaseException | str, stopped: float) -> str:
    """Raise :class:`Incorrect` for the first thing wrong (the likeliest cause first), or say what went right."""
    requests = watch.requests
    ran_for = max(stopped - watch.start, 0.1)
    if any(r.status == 401 for r in requests):
        raise Incorrect(
            "the server answered `401 unauthorized`: every request must carry the token, in the header "
            "`Authorization: Bearer <token>`, e.g. "
            '`http.get(url, params=..., headers={"Authorization": f"Bearer {token}"})`.'
        )
    refused = [r for r in requests if r.status is not None and r.status >= 400]
    if refused:
        r = refused[0]
        why = {
            404: "no such endpoint: poll `/api/rooms/{room}/messages` or `/api/rooms/{room}/poll`, "
            "with the room you were given",
            400: "a query parameter is wrong: `after` is a whole number >= 0, `timeout` whole seconds from 0 to 30",
            405: "use GET to poll (POST sends a message)",
        }.get(r.status or 0, "see labserver/PROTOCOL.md, section 3")
        raise Incorrect(f"the server answered `{r.status}` to `GET {r.path}`: {why}.")
    if isinstance(outcome, BaseException):
        described = f"{type(outcome).__name__}: {outcome}" if str(outcome) else type(outcome).__name__
        raise CheckError(f"`{name}` raised {described} after {len(requests)} request(s).")
    odd = [m for _, m in watch.deliveries if not (isinstance(m, Mapping) and isinstance(m.get("seq"), int))]
    if odd:
        raise Incorrect(
            f"`deliver` got {show(odd[0], 80)}: call it once per message, with the message itself "
            '(a dict with its "seq"): `for message in messages: deliver(message)`.'
        )
    if not requests:
        raise Incorrect(
            f"no request reached the lab in {ran_for:.1f} s: poll with the `http` session you are given, "
            'e.g. `async with http.get(f"/api/rooms/{room}/messages", ...) as resp:`.'
        )
    if outcome == "returned":
        raise Incorrect(
            f"`{name}` returned after {len(requests)} request(s): a poller keeps asking until it is stopped. "
            "Put the polling in a `while True:` loop (the check stops it)."
        )
    rate = len(requests) / ran_for
    if rate > MAX_RATE:
        raise Incorrect(
            f"{len(requests):,} requests in {ran_for:.1f} s ({rate:,.0f} a second) for {len(posted)} messages: "
            "your poller asks again the moment it has an answer, hammering the server. Short polling waits "
            "between polls (`await asyncio.sleep(0.5)`); a long poll (`/poll`) waits on the server, "
            "so give it a `timeout` above 0."
        )
    seqs = [s for s in _seqs(watch) if s in posted]
    afters = {r.after for r in requests}
    first_delivery = min((at for at, _ in watch.deliveries), default=math.inf)
    if len(afters) == 1 and any(r.started > first_delivery for r in requests):  # asked again, same `after`
        sent = "no `after`" if None in afters else f"`after={afters.pop()}`"
        raise Incorrect(
            f"all {len(requests)} requests sent {sent}, so every answer starts again from the beginning of the "
            "room. After each answer, set `after` to the `seq` of the last message you got, and send it: "
            '`params={"after": after}`.'
        )
    counts: dict[int, int] = {}
    for s in seqs:
        counts[s] = counts.get(s, 0) + 1
    twice = [s for s, c in counts.items() if c > 1]
    if twice:
        raise Incorrect(
            f"message seq={twice[0]} was delivered {counts[twice[0]]} times. The server answers with the "
            "messages whose seq is greater than `after`: set `after` to the seq of the last message you "
            "delivered (the last one of the answer), no less."
        )
    if seqs != sorted(seqs):
        first = next(b for a, b in zip(seqs, seqs[1:], strict=False) if b < a)
        raise Incorrect(
            f"out of order: seq={first} was delivered after a newer message. The server lists messages "
            "oldest first; deliver them in that order."
        )
    arrived = {m["seq"]: at for at, m in watch.deliveries if isinstance(m, Mapping) and m.get("seq") in posted}
    missing = sorted(set(posted) - set(arrived))
    idle = watch.longest_idle(stopped)
    if missing and idle <= LATE:
        raise Incorrect(
            f"{len(missing)} of {len(posted)} messages never arrived (seq {', '.join(map(str, missing))}), "
            f"although your poller kept asking. Some answers hold several messages (3 were posted at once): "
            "deliver every message of `messages`, and move `after` to the seq of the last one."
        )
    late = max((arrived[s] - posted[s] for s in arrived), default=0.0)
    if missing or late > LATE:
        in_time = sum(arrived[s] - posted[s] <= LATE for s in arrived)
        slowest = "some never arrived" if missing else f"the slowest took {late:.1f} s"
        raise Incorrect(
            f"too slow: {in_time} of {len(posted)} messages arrived within {LATE:g} s of being posted "
            f"({slowest}), and for {idle:.1f} s in a row your poller "
            "had no request in flight. Poll every 0.5 s, or long-poll (`/poll`: the server answers the "
            "moment a message is stored)."
        )
    long_polling = any(r.path.endswith("/poll") for r in requests)
    return _sum_up(ran_for, len(requests), late, long_polling)


async def poll_room(http: aiohttp.ClientSession, room: str, token: str, deliver: Callable[[Any], None]) -> None:
    """The model answer to q4 (short polling every 0.5 s); the tests run it against the lab."""
    after = 0
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        async with http.get(f"/api/rooms/{room}/messages", params={"after": after}, headers=headers) as resp:
            resp.raise_for_status()
            body = await resp.json()
        for message in body["messages"]:
            deliver(message)
            after = message["seq"]
        await asyncio.sleep(0.5)


def _solution_source() -> str:
    """The model answer as the student would write it: no type hints, no docstring."""
    lines = inspect.getsource(poll_room).splitlines()
    return "\n".join(["async def poll_room(http, room, token, deliver):", *lines[2:]])  # after the docstring


q4 = lesson.add(
    "q4",
    PollerProblem(
        title="Write a poller, run it on the live lab",
        question=(
            "Write `async def poll_room(http, room, token, deliver)`, a client that follows `room` by "
            "polling the lab over HTTP and calls `deliver(message)` once for every new chat message, "
            "oldest first. `http` is an `aiohttp.ClientSession` whose `base_url` is the lab "
            '(`http.get("/api/rooms/...")`); `token` is your user\'s token, which every request must carry '
            "as `Authorization: Bearer <token>`. Short polling (`GET /api/rooms/{room}/messages?after=SEQ`, "
            "every 0.5 s) or long polling (`GET /api/rooms/{room}/poll?after=SEQ&timeout=S`) both pass. "
            "Keep polling until the check stops you: it posts 7 messages over 3 s, some together, and "
            "checks that each arrived once, in order, within 1.5 s, with a sensible number of requests."
        ),
        hint=[
            "Keep `after`, the seq of the last message you delivered (0 at the start), and send it with every "
            "request: the answer lists only the messages with a greater seq, oldest first, as "
            '`{"room": ..., "messages": [...], "last_seq": ...}`. Move `after` on to the last message you got.',
            'The loop, for short polling: `async with http.get(url, params={"after": after}, '
            'headers={"Authorization": f"Bearer {token}"}) as resp:` then `body = await resp.json()`; '
            "deliver each of `body['messages']`, move `after`, then `await asyncio.sleep(0.5)` before the next "
            "poll. Without the sleep you ask hundreds of times a second; without the header the answer is 401.",
        ],
        solution=(
            "```python\n" + _solution_source() + "\n```\n\n"
            "That is short polling: two requests a second whatever happens, most answered with `[]`, and each "
            "message waits up to 0.5 s (0.25 s on average) for the next poll. For long polling, ask "
            '`f"/api/rooms/{room}/poll"` with `params={"after": after, "timeout": 25}` and drop the sleep: the '
            "server holds the request until a message exists, so you get it at once, with one request per answer."
        ),
    ),
)


__all__ = ["FEATURES", "POSTS", "PollerProblem", "lesson", "q1", "q2", "q3", "q4"]
