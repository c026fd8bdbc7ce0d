"""Exercises of lesson 04, the connection lifecycle: close codes, heartbeats, reconnection, presence.

    from labserver.course.exercises import lesson04 as ex
    ex.q1.check("b")                              # what each side sees when the network vanishes
    ex.q2.check((1, 3))                           # when the heartbeat reaps a vanished client
    ex.q3.check("a")                              # socket ids across a reconnection (and Socket.IO's recovery)
    await ex.q4.check_async(what_next)            # live: your client tells close codes apart
    await ex.q5.check_async(backoff)              # live: your backoff, against a killed and restarted lab
    await ex.q6.check_async(announcements)        # live: presence with a grace period

q4, q5 and q6 are live (:class:`LiveProblem`). q4 makes the lab close fresh sockets in six
ways (an instructor's close, an abort, the rate limit, a handler bug, a full server, an
application code) and asks the student's function what a client should do about each code
it really saw. q5 runs a crowd whose every client waits ``backoff(attempt)`` before
reconnecting, SIGKILLs the lab, starts it again, and looks at when the clients knocked.
q6 runs the student's presence function on small cases, then on the socket events of a
session played on the lab with ``presence_grace = 1``, and compares it with what the lab
announced.
"""

from __future__ import annotations

import asyncio
import copy
import math
import secrets
import statistics
from typing import Any

from ..client import BACKOFF_BASE, BACKOFF_CAP, BACKOFF_FACTOR, LabClient
from ..crowd import Crowd
from ..lifecycle import ObserveLog, close_name, kill_and_restart, provoke_close
from .core import CheckError, ChoiceProblem, FunctionProblem, Incorrect, Lesson, LiveProblem, ValueProblem, show

lesson = Lesson("lesson04", "Connection lifecycle: close codes, heartbeats, reconnection, presence")


q1 = lesson.add(
    "q1",
    ChoiceProblem(
        {
            "a": "Both sides get a Close frame with code 1001 (going away) at once.",
            "b": "Nothing arrives on either side. Each finds out only by its own timer (a ping with no pong, "
            "a write that fails) and then reports 1006: no Close frame came. Until then the server thinks "
            "Bob is online.",
            "c": "Bob's operating system sends the server a Close frame with code 1006.",
            "d": "The server's TCP stack is told at once by a reset, so Bob goes offline at once.",
        },
        "b",
        title="A network that vanishes",
        question=(
            "Bob is chatting on a train. The train enters a tunnel: his network is gone, and no packet "
            "leaves or reaches his phone for a minute. What do Bob's client and the server see?"
        ),
        explanations={
            "a": "1001 is sent by a side that *leaves on purpose* (a tab closing, a server shutting down). "
            "Here nothing can be sent at all: no Close frame gets through.",
            "b": "no packet, no Close frame, no reset: each side learns only from its own timer. The "
            "server's heartbeat pings after `ping_interval` of silence and drops the socket when no pong "
            "comes; the client's library does the same (or fails a write). Each then reports 1006, "
            "the code that is never sent on the wire (RFC 6455 section 7.1.5).",
            "c": "1006 is never sent in a Close frame (RFC 6455 section 7.4.1): it is what an endpoint "
            "*reports* when the connection ended without one. And nothing leaves a phone with no network.",
            "d": "a reset is a packet too: it cannot cross a network that is gone. The server's TCP "
            "connection looks idle, not broken, until the heartbeat (or TCP's own retransmission "
            "timeouts, minutes later) gives up on it.",
        },
        hint=[
            "What can travel over a network that is gone? Think of what a Close frame and a TCP reset are.",
            "1006 appears in RFC 6455 as a code that *must not be sent*. So who could ever see it, and when?",
        ],
        solution=(
            "**b).** A vanished network carries nothing: no Close frame, no FIN, no RST. The server's "
            "socket just looks quiet, and Bob's too. The lab's heartbeat sends a ping after "
            "`ping_interval` seconds of silence and drops the socket when no pong comes within half of "
            "that; `/observe` then reports it closed with 1006 (`No PONG received...`), and presence says "
            "Bob is offline. Bob's client finds out by its own keepalive pings or a failed write, "
            'reports 1006 and starts reconnecting with backoff. The notes\' "connection closed = offline" '
            "is only as fast as this heartbeat."
        ),
    ),
)


q2 = lesson.add(
    "q2",
    ValueProblem(
        (1.0, 3.0),
        tolerance=0.05,
        title="When the heartbeat notices",
        question=(
            "The lab runs with `ping_interval = 2`: after 2 s without hearing anything from a socket it sends "
            "a ping, and it drops the socket when no pong (nor anything else) comes within half the interval. "
            "A healthy, idle client answers every ping. At a random moment its network vanishes. "
            "Between how many seconds after that moment, at the earliest and at the latest, does the server "
            "drop it? Answer with a tuple `(earliest, latest)`."
        ),
        answer_format="a tuple of two numbers of seconds `(earliest, latest)`, e.g. `(0.5, 4)`",
        explanations=[
            (
                (2.0, 3.0),
                "the latest is right. The earliest: the client may vanish just before the next ping is due, "
                "when nearly 2 s of silence have already passed.",
            ),
            (
                (0.0, 3.0),
                "even if the ping goes out the instant after the client vanishes, the server still waits "
                "half an interval for the pong.",
            ),
            ((3.0, 3.0), "3 s is the worst case: the client vanished right after answering a ping."),
            ((2.0, 2.0), "after 2 s of silence the server only sends a ping; it then waits for the pong."),
            (
                (1.0, 2.0),
                "the earliest is right; the latest is a full interval of silence plus the pong's half interval.",
            ),
        ],
        hint=[
            "The server's clock starts at the last thing it heard: the pong to its last ping. The client "
            "vanishes anywhere between that moment and the next ping.",
            "Vanish right after a pong: 2 s until the ping, plus 1 s for the pong that never comes. "
            "Vanish just before the next ping: almost none of the 2 s is left.",
        ],
        solution=(
            "`(1, 3)`. The server pings 2 s after the last thing it heard, then waits 1 s (half the interval) "
            "for the pong. A client that vanishes right after a pong is dropped 2 + 1 = 3 s later; one that "
            "vanishes just before the next ping, after only about 1 s. On average about 2 s: the interval "
            "itself. The lesson's plot shows the measured points inside this band for several intervals. "
            "Shorter intervals notice sooner but cost a ping and a pong per idle socket per interval: a "
            "million idle sockets at 2 s is a million frames a second."
        ),
    ),
)


q3 = lesson.add(
    "q3",
    ChoiceProblem(
        {
            "a": "In this lab: a new socket id and the same user id; the client resumes each room from its "
            "last seq. With Socket.IO 4.6+ and `connectionStateRecovery` on, a client back within "
            "`maxDisconnectionDuration` keeps its `socket.id` and rooms, and gets the missed events.",
            "b": "The socket id is the user id, so it is the same everywhere, always.",
            "c": "Every WebSocket library keeps the socket id across a reconnection: that is what a reconnection is.",
            "d": "Socket.IO always keeps `socket.id` across reconnections, whatever its options.",
        },
        "a",
        title="Who is back after a reconnection",
        question=(
            "Alice's phone loses its connection for 10 s, then her client reconnects. What happens to the "
            'socket id and the user id? The notes (section 12) say `socket.id` "changes on reconnect".'
        ),
        explanations={
            "a": "a reconnection is a new WebSocket, so a new socket id, unless a layer above keeps state "
            "for the gap: the lab's `resume` (per-room seq numbers) does it for messages, Socket.IO's "
            "connection state recovery for the id, rooms and missed packets.",
            "b": "a user can have several sockets at once (two tabs): one user id, two socket ids. They "
            "cannot be the same thing.",
            "c": "a WebSocket connection ends with its TCP connection; a new one is a new handshake with no "
            "memory of the old. Keeping an identity is the server application's job.",
            "d": "only with `connectionStateRecovery` enabled on the server (Socket.IO 4.6, 2023), within "
            "`maxDisconnectionDuration` (2 minutes by default), and not after an explicit disconnect; "
            "otherwise the notes are right, the id changes.",
        },
        hint=[
            "Is a reconnection the same WebSocket connection, or a new one? What does a new one get in the "
            "lab's welcome?",
            "The notes are right by default. Look for the Socket.IO server option added in version 4.6 that keeps "
            "state for a while after a disconnect.",
        ],
        solution=(
            "**a).** A reconnection is a brand-new WebSocket: the lab greets it with a new `socket_id`, and "
            "the user id from the token is the same. The lab's client then sends `resume` with the last seq "
            "it saw in each room and gets exactly the missed messages. Socket.IO 4.6+ can go further: with "
            "`connectionStateRecovery` enabled, a client that comes back within `maxDisconnectionDuration` "
            "gets its old `socket.id`, its rooms and the packets it missed (`socket.recovered` is true). "
            "Presence and routing must still be keyed by the **user** id, never by a socket id."
        ),
    ),
)


# --- q4: what a client does about a close code, live ------------------------------------------

WHAT_NEXT = {  # code -> what a client should do, and why
    1000: ("stop", "a normal closure: the other side is done with this connection on purpose."),
    1001: ("reconnect", "going away: the server is shutting down, and another one (or it) will be back."),
    1006: ("reconnect", "no Close frame: the network or the server broke; try again with backoff."),
    1008: (
        "stop",
        "a policy violation (rate limit, expired or revoked token): the same client would be "
        "refused again. Fix it first (log in again, slow down).",
    ),
    1011: ("reconnect", "the server failed on something; this connection is gone but the service is not."),
    1012: ("reconnect", "a service restart: the server says it will be back. Reconnect with backoff."),
    1013: ("wait", "try again later: the server is full. Reconnect, but after a longer wait than usual."),
    4000: ("stop", "in this lab, 4000-4999 mean the instructor closed you on purpose."),
    4001: ("stop", "in this lab, 4000-4999 mean the instructor closed you on purpose."),
    4999: ("stop", "in this lab, 4000-4999 mean the instructor closed you on purpose."),
}
LIVE_SCENARIOS = ("normal", "abort", "rate_limit", "bug", "full", "kicked")
ACTIONS = ("reconnect", "wait", "stop")


def _what_next_reference(code: int) -> str:
    if code == 1013:
        return "wait"
    if code in (1000, 1008) or 4000 <= code <= 4999:
        return "stop"
    return "reconnect"


class WhatNext(LiveProblem):
    """``what_next(code) -> "reconnect" | "wait" | "stop"``, asked about the codes the lab really sends."""

    answer_format = "your function itself, `what_next` (no parentheses)"
    call_with = "what_next"
    answer_kind = "sync"

    def __init__(self, username: str = "q4_probe", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.username = username

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        seen: list[tuple[str, int, str]] = []
        for scenario in LIVE_SCENARIOS:
            code, reason = await provoke_close(lab, scenario, self.username)  # type: ignore[arg-type]
            seen.append((scenario, code, reason))
        expected_live = {1000, 1006, 1008, 1011, 1013, 4001}
        if {code for _, code, _ in seen} != expected_live:
            raise CheckError(f"the lab closed the probes with {sorted(c for _, c, _ in seen)}, not as expected")
        cases = [
            (code, f"the lab closed a socket with {code} ({_reason_text(reason, code)})") for _, code, reason in seen
        ]
        cases += [
            (1001, "a server shutting down closes with 1001"),
            (1012, "`lab.restart()` closes with 1012"),
            (4000, "an application code"),
            (4999, "an application code"),
        ]
        for code, where in cases:
            try:
                got = answer(code)
            except Exception as exc:
                raise CheckError(f"`what_next({code})` raised {type(exc).__name__}: {exc}") from None
            action = got.strip().lower() if isinstance(got, str) else got
            if action not in ACTIONS:
                raise Incorrect(
                    f"{where}: `what_next({code})` returned {show(got)}; return one of 'reconnect', 'wait', 'stop'."
                )
            want, why = WHAT_NEXT[code]
            if action != want:
                raise Incorrect(f"{where}: `what_next({code})` returned '{action}', expected '{want}': {why}")
        live = ", ".join(str(code) for _, code, _ in seen)
        return (
            f"the lab closed six sockets with {live} and your function chose right for each, and for 1001, "
            "1012 and the application range."
        )


def _reason_text(reason: str, code: int) -> str:
    return f"“{reason}”, {close_name(code)}" if reason else close_name(code)


q4 = lesson.add(
    "q4",
    WhatNext(
        title="Tell the close codes apart",
        question=(
            "Write `what_next(code: int) -> str`: what should a client do when its connection ends with "
            "`code`? Return `'reconnect'` (again, with the usual backoff), `'wait'` (reconnect, but only "
            "after a longer pause than usual) or `'stop'` (do not reconnect by yourself). The check makes "
            "the live lab close fresh sockets six ways (an instructor's close, an abort with no Close frame, "
            "the rate limit, a bug in a handler, a full server, an application code), asks your function "
            "about each code the client really saw, and then about 1001, 1012, 4000 and 4999. In this lab, "
            "codes 4000-4999 mean the instructor closed you on purpose."
        ),
        hint=[
            "Sort the codes by whose fault it is: the network or the server (try again), the server being "
            "full (try again, later), or the client itself and its manners (trying again changes nothing).",
            "1008 is a policy violation: rate limit, an expired or revoked token. Reconnecting with the same "
            'token and habits gets you refused again. 1013 is the only code that says "later".',
        ],
        solution=(
            "```python\n"
            "def what_next(code: int) -> str:\n"
            "    if code == 1013:                       # try again later: the server is full\n"
            "        return 'wait'\n"
            "    if code in (1000, 1008) or 4000 <= code <= 4999:\n"
            "        return 'stop'                      # done on purpose, refused, or the app said so\n"
            "    return 'reconnect'                     # 1001, 1006, 1011, 1012: the service will be back\n"
            "```\n\n"
            "1000 says the other side finished on purpose. 1008 is a policy the client broke: with the same "
            "token (expired, revoked) or the same flood, a new connection is refused again, so a real app "
            "asks the user to log in again or slows down. 4000-4999 are the application's own codes: here, "
            "kicked by the instructor. Everything else is the network or the server, and a client comes back "
            "with backoff; 1013 asks for a longer wait than usual, or the full server is hammered at once."
        ),
    ),
)


# --- q5: your backoff against a live restart --------------------------------------------------------

SAMPLES = 300  # calls per attempt number
ATTEMPTS = (*range(12), 40)
CROWD = 20


def _backoff_reference(attempt: int) -> float:
    import random

    return random.uniform(0, min(5.0, 0.1 * 2 ** min(attempt, 64)))


def _judge_backoff(answer: Any) -> None:
    """The statistical part: right range, growth, cap and spread (full jitter), for attempts 0-11 and 40."""
    for attempt in ATTEMPTS:
        bound = min(BACKOFF_CAP, BACKOFF_BASE * BACKOFF_FACTOR**attempt)
        values = []
        for _ in range(SAMPLES):
            try:
                value = answer(attempt)
            except Exception as exc:
                raise CheckError(f"`backoff({attempt})` raised {type(exc).__name__}: {exc}") from None
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise Incorrect(f"`backoff({attempt})` returned {show(value)}: return a number of seconds.")
            values.append(float(value))
        low, high, mean = min(values), max(values), statistics.mean(values)
        if low < 0:
            raise Incorrect(f"`backoff({attempt})` returned {low:g}: a wait cannot be negative.")
        if high > bound * 1.001 + 1e-9:
            cap_note = " (the cap: no wait over 5 s)" if bound == BACKOFF_CAP else ""
            raise Incorrect(
                f"`backoff({attempt})` returned {high:.3g}, over min(5, 0.1 * 2**{attempt}) = {bound:g}{cap_note}."
            )
        if high - low < bound * 0.2:
            raise Incorrect(
                f"`backoff({attempt})` always returned about {mean:.3g}: no jitter. Clients cut off together "
                "would all come back at that same instant, a thundering herd."
            )
        if low > bound * 0.1 or high < bound * 0.8 or not bound * 0.4 <= mean <= bound * 0.6:
            raise Incorrect(
                f"`backoff({attempt})` returned values from {low:.3g} to {high:.3g} (mean {mean:.3g}): full "
                f"jitter draws uniformly from 0 to {bound:g}, so they should spread over that whole range, "
                f"mean about {bound / 2:g}."
            )


class LiveBackoff(LiveProblem):
    """``backoff(attempt) -> seconds``, full jitter; then a crowd using it rides out a killed lab."""

    answer_format = "your function itself, `backoff` (no parentheses)"
    call_with = "backoff"
    answer_kind = "sync"

    def __init__(self, prefix: str = "q5_bot", down: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix
        self.down = down

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        _judge_backoff(answer)
        crowd = Crowd(lab, prefix=self.prefix, rooms=("q5-restart",), backoff=answer)
        try:
            await crowd.grow(CROWD)
            run = await kill_and_restart(lab, crowd, down=self.down, label="your backoff", timeout=30)
            back = len(run.reconnected)
            notes = [(e, " ".join(getattr(e, "__notes__", ()))) for c in crowd.clients for e in c.errors]
            if errors := [e for e, note in notes if "the backoff policy" in note]:
                raise CheckError(f"the clients' backoff failed while they reconnected: {errors[0]!r}")
        finally:
            await crowd.stop()
        if back < CROWD:
            raise Incorrect(f"only {back} of {CROWD} clients were back 30 s after the server restarted.")
        peak = run.peak()
        if peak > CROWD // 2:
            raise Incorrect(
                f"{peak} of {CROWD} clients knocked within 0.1 s of each other once the server was back: a herd."
            )
        assert run.all_back is not None
        return (
            f"the lab was killed and back after {run.back:.1f} s; your {CROWD} clients made {len(run.attempts)} "
            f"attempts and were all back after {run.all_back:.1f} s, at most {peak} in any 0.1 s "
            f"(without jitter: all {CROWD} at once)."
        )


q5 = lesson.add(
    "q5",
    LiveBackoff(
        title="Your backoff, against a live restart",
        question=(
            "Write `backoff(attempt: int) -> float`: how many seconds a client waits before reconnection "
            "attempt `attempt` (0 for the first). Use exponential backoff with **full jitter**: a random "
            "number between 0 and `min(cap, base * 2**attempt)`, with `base = 0.1` and `cap = 5` seconds, as "
            "the course's client does. The check first calls it many times for each attempt (range, growth, "
            "cap, spread); then 20 clients that wait `backoff(attempt)` before each attempt are connected, the "
            "lab is killed (SIGKILL), kept down half a second and started again, and the check looks at when "
            "they knocked. Write it as a plain `def`; `import random` inside it."
        ),
        hint=[
            "Two parts: the ceiling `min(cap, base * 2**attempt)`, which doubles with each attempt and stops "
            "at 5 s; then a random wait below it.",
            "`random.uniform(0, ceiling)`. Not `ceiling` itself (no jitter: a herd), not `ceiling / 2 + "
            'random.uniform(0, ceiling / 2)` ("equal jitter": it never waits less than half).',
        ],
        solution=(
            "```python\n"
            "def backoff(attempt: int) -> float:\n"
            "    import random\n"
            "    ceiling = min(5.0, 0.1 * 2 ** min(attempt, 64))   # min(): no float overflow after hours\n"
            "    return random.uniform(0, ceiling)\n"
            "```\n\n"
            "This is `reconnect_delay` in `labserver/course/client.py`. Exponential growth keeps a client "
            "that keeps failing from hammering a server that is down; the cap keeps it from waiting for "
            "ever; and full jitter spreads a crowd that was cut off at the same moment over the whole "
            "window, so the restarted server takes a few connections at a time instead of all at once "
            "(AWS Architecture Blog, *Exponential Backoff And Jitter*, 2015)."
        ),
    ),
)


# --- q6: presence with a grace period ---------------------------------------------------------------


def _announcements_reference(events: list[tuple[float, str, str]], grace: float) -> list[tuple[float, bool]]:
    announced: list[tuple[float, bool]] = []
    open_sockets: set[str] = set()
    online = False
    offline_due: float | None = None
    for t, socket_id, what in events:
        if offline_due is not None and offline_due <= t:  # the grace ran out before this event
            announced.append((offline_due, False))
            online, offline_due = False, None
        if what == "open":
            open_sockets.add(socket_id)
            offline_due = None  # a socket came back in time: nothing to announce
            if not online:
                announced.append((t, True))
                online = True
        else:
            open_sockets.discard(socket_id)
            if not open_sockets:
                offline_due = t + grace
    if offline_due is not None:
        announced.append((offline_due, False))
    return announced


def _same_announcements(got: Any, expected: list[tuple[float, bool]]) -> bool:
    if not isinstance(got, list | tuple) or len(got) != len(expected):
        return False
    for item, (t, online) in zip(got, expected, strict=True):
        if not isinstance(item, list | tuple) or len(item) != 2:
            return False
        when, state = item
        if not isinstance(state, bool) or state is not online or not isinstance(when, int | float):
            return False
        if abs(when - t) > 1e-6:
            return False
    return True


PRESENCE_CASES = FunctionProblem(
    [
        (([(0, "a", "open"), (5, "a", "close")], 0), [(0, True), (5, False)], "one tab, no grace"),
        (
            ([(0, "a", "open"), (5, "a", "close"), (5.3, "b", "open"), (9, "b", "close")], 1),
            [(0, True), (10, False)],
            "a refresh (close, then a new socket 0.3 s later) within a 1 s grace shows nothing",
        ),
        (
            ([(0, "a", "open"), (5, "a", "close"), (5.3, "b", "open"), (9, "b", "close")], 0),
            [(0, True), (5, False), (5.3, True), (9, False)],
            "without a grace, the same refresh flaps offline and online",
        ),
        (
            ([(0, "a", "open"), (1, "b", "open"), (2, "a", "close"), (3, "b", "close")], 0),
            [(0, True), (3, False)],
            "two tabs: online while any socket is open",
        ),
        (
            ([(0, "a", "open"), (5, "a", "close"), (7, "b", "open")], 1),
            [(0, True), (6, False), (7, True)],
            "back after the grace ran out: offline at 5 + 1, online again at 7",
        ),
        (
            ([(0, "a", "open"), (1, "a", "close"), (2, "b", "open"), (2.5, "b", "close")], 2),
            [(0, True), (4.5, False)],
            "each last close starts the grace again",
        ),
        (
            ([(0, "a", "open"), (4, "a", "close"), (4.5, "b", "open"), (4.6, "b", "close"), (4.7, "c", "open")], 1),
            [(0, True)],
            "three quick refreshes, and still connected at the end: only the first online",
        ),
        (([], 2), [], "no sockets, nothing to announce"),
    ],
    reference=_announcements_reference,
    compare=_same_announcements,
    name="announcements",
)
GRACE = 1.0  # the presence_grace the live part runs with
TIME_TOLERANCE = 0.4  # the lab publishes due offlines 4 times a second; /observe stamps to 0.1 ms


class LivePresence(LiveProblem):
    """``announcements(events, grace)``: first the small cases, then a replay of a live session:
    one user's sockets opened and closed on the lab with ``presence_grace = 1``, fed to the
    student's function and compared with the presence changes the lab really published."""

    answer_format = "your function itself, `announcements` (no parentheses)"
    call_with = "announcements"
    answer_kind = "sync"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        PRESENCE_CASES.key, PRESENCE_CASES.lesson = self.key, self.lesson  # its messages name ex.q6
        PRESENCE_CASES._check(answer)  # raises Incorrect on the first failing case
        sockets, published = await _live_presence_session(lab)
        try:
            got = answer(copy.deepcopy(sockets), GRACE)
        except Exception as exc:
            raise CheckError(
                f"`announcements(<the live events>, {GRACE:g})` raised {type(exc).__name__}: {exc}"
            ) from None
        events_text = ", ".join(f"({t:.2f}, {sid[:6]}…, {what!r})" for t, sid, what in sockets)
        said = ", ".join(f"({t:.2f}, {online})" for t, online in published)
        shaped = isinstance(got, list | tuple) and all(
            isinstance(item, list | tuple)
            and len(item) == 2
            and isinstance(item[1], bool)
            and isinstance(item[0], int | float)
            and not isinstance(item[0], bool)
            for item in got
        )
        if not shaped or [online for _, online in got] != [online for _, online in published]:
            raise Incorrect(
                f"on a live session (times in seconds from its start) the lab saw the sockets {events_text} and, "
                f"with presence_grace = {GRACE:g}, announced [{said}]; your function returned {show(got, 300)}."
            )
        late = [(t, w) for (t, _), (w, _) in zip(published, got, strict=True) if abs(t - w) > TIME_TOLERANCE]
        if late:
            raise Incorrect(
                f"on a live session the lab announced [{said}]; your function has the right changes but "
                f"puts one at {late[0][1]!r} s instead of about {late[0][0]:.2f} s."
            )
        return (
            f"all {len(PRESENCE_CASES.cases)} cases pass, and on a live session (two tabs, a refresh, a real "
            f"exit, a late return) your function announced exactly what the lab did: [{said}]."
        )


async def _live_presence_session(lab: Any) -> tuple[list[tuple[float, str, str]], list[tuple[float, bool]]]:
    """One user's life on the lab with presence_grace = 1, as (socket events, presence published),
    times in seconds from the first event."""
    switches = await asyncio.to_thread(lab.switches)
    if switches["leaky_cleanup"]:
        raise CheckError("the lab's `leaky_cleanup` switch is on: `lab.set_switches(leaky_cleanup=False)` first.")
    account = await asyncio.to_thread(lab.account, f"q6_{secrets.token_hex(4)}")
    user_id = account.user["id"]
    observer = await ObserveLog.start(lab)
    await asyncio.to_thread(lab.set_switches, presence_grace=GRACE)
    try:

        async def tab() -> LabClient:
            return await LabClient.connect(lab, account, reconnect=False)

        async def offline(count: int) -> None:
            await observer.wait_for(
                lambda e: (
                    e["ev"] == "presence"
                    and e["user"]["id"] == user_id
                    and not e["online"]
                    and len([x for x in observer.events("presence") if x["user"]["id"] == user_id and not x["online"]])
                    >= count
                ),
                timeout=10,
            )

        first, second = await tab(), await tab()  # two tabs
        await asyncio.sleep(0.1)
        await first.close(1001)
        await asyncio.sleep(0.1)
        await second.close(1001)  # a refresh: close, and at once a new socket
        third = await tab()
        await asyncio.sleep(0.3)
        await third.close(1001)  # a real exit: offline one grace period later
        await offline(1)
        await asyncio.sleep(0.1)
        fourth = await tab()  # back after the grace ran out
        await asyncio.sleep(0.1)
        await fourth.close(1001)
        await offline(2)
    finally:
        await asyncio.to_thread(lab.set_switches, presence_grace=switches["presence_grace"])
        await observer.close()
    mine = [e for e in observer.log if e.get("user", {}).get("id") == user_id]
    start = min(float(e["t"]) for e in mine)
    sockets = [
        (round(float(e["t"]) - start, 4), str(e["socket_id"]), "open" if e["ev"] == "socket_opened" else "close")
        for e in mine
        if e["ev"] in ("socket_opened", "socket_closed")
    ]
    published = [(round(float(e["t"]) - start, 4), bool(e["online"])) for e in mine if e["ev"] == "presence"]
    return sockets, published


q6 = lesson.add(
    "q6",
    LivePresence(
        title="Presence with a grace period",
        question=(
            "Write `announcements(events, grace)` for one user. `events` is a time-ordered list of "
            "`(t, socket_id, 'open' | 'close')`; return the list of `(t, online)` presence changes a server "
            "with the lab's `presence_grace = grace` publishes: online when the user's first socket opens "
            "(unless an offline is still being held back), offline `grace` seconds after the last socket "
            "closed, and not at all if a socket opens before then. Include an offline still due after the "
            'last event. With `grace = 0` it is plain "online while any socket is open".'
        ),
        solution=(
            "```python\n"
            "def announcements(events, grace):\n"
            "    announced = []\n"
            "    open_sockets = set()\n"
            "    online = False\n"
            "    offline_due = None                      # when a held-back offline will be published\n"
            "    for t, socket_id, what in events:\n"
            "        if offline_due is not None and offline_due <= t:\n"
            "            announced.append((offline_due, False))   # the grace ran out before this event\n"
            "            online, offline_due = False, None\n"
            "        if what == 'open':\n"
            "            open_sockets.add(socket_id)\n"
            "            offline_due = None               # back in time: the offline is cancelled\n"
            "            if not online:\n"
            "                announced.append((t, True))\n"
            "                online = True\n"
            "        else:\n"
            "            open_sockets.discard(socket_id)\n"
            "            if not open_sockets:\n"
            "                offline_due = t + grace\n"
            "    if offline_due is not None:\n"
            "        announced.append((offline_due, False))\n"
            "    return announced\n"
            "```\n\n"
            "The lab's hub does the same with the `presence_grace` switch: the last close schedules the "
            "offline, a new socket of the user cancels it, and a task publishes those that fall due (4 times "
            "a second). The price: a user who really left shows online `grace` seconds longer."
        ),
        hint=[
            "Keep the set of open sockets, whether the user is shown online, and the time an offline is due "
            "(or None). Before handling each event, publish the offline if it fell due before that event.",
            "On 'close' of the last socket: offline due at `t + grace`. On 'open': forget the due offline; "
            "publish online only if the user was shown offline.",
        ],
    ),
)
