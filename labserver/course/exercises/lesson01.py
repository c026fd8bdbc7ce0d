"""Exercises of lesson 01, polling vs push: what polling costs, and what each feature needs.

from labserver.course.exercises import lesson01 as ex
ex.q1.check(requests_per_minute)     # a function (users, interval_s) -> requests per minute
ex.q2.check(2.0)                     # seconds
ex.q3.check({"typing indicator": "websocket", ...})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .core import FunctionProblem, Incorrect, Lesson, ValueProblem, show

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


__all__ = ["FEATURES", "lesson", "q1", "q2", "q3"]
