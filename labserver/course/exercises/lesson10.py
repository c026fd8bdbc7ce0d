"""Exercises of lesson 10, the capstone: live reactions on a post, built and checked end to end.

The student writes the three handlers of the reactions service (``labserver.course.capstone``);
each live check starts a fresh service in the notebook's event loop with the student's handler
and the reference for the other two, drives it with simulated lab users, and says precisely what
went wrong: a forged token accepted, a map leaking after a disconnect (q1); a reaction lost,
duplicated or out of order, acknowledged or shown before it was stored, sent to a non-viewer, a
reader that never reads stalling everyone, no rate limit (q2); a resume that misses, repeats or
reorders (q3). q4 coalesces counts; q5 is the closing map's question.

    from labserver.course.exercises import lesson10 as ex
    await ex.q1.check_async(handle_socket)
    await ex.q2.check_async(on_react)
    await ex.q3.check_async(on_view)
    ex.q4.check(coalesce)
    ex.q5.check("c")

The reference handlers are :func:`handle_socket`, :func:`on_react` and :func:`on_view` here;
:func:`reference_handlers` gives all three for a finished service.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from websockets.exceptions import InvalidStatus

from ..capstone import Conn, ReactionClient, ReactionsService, StuckReader
from ..tokens import tamper
from .core import ChoiceProblem, FunctionProblem, Incorrect, Lesson, LiveProblem, seq_ranges

lesson = Lesson("lesson10", "Capstone: live reactions on a post")


# --- the reference handlers ------------------------------------------------------------------


async def handle_socket(svc: ReactionsService, request: web.Request) -> web.StreamResponse:
    user = await svc.authenticate(request)  # the lab verifies the JWT (cached)
    if user is None:  # refused before the upgrade: no socket ever opens
        return web.json_response({"error": "unauthorized", "message": "the lab did not accept this token"}, status=401)
    ws = await svc.accept(request)  # 101 Switching Protocols
    conn = svc.register(ws, user)
    try:
        async for message in ws:  # ends on a close frame, a reset, or an error
            if message.type == WSMsgType.TEXT:
                await svc.dispatch(conn, message.data)  # may raise BadMessage: the finally still runs
    finally:
        svc.unregister(conn)  # however the socket ended: the maps never leak
    return ws


async def on_react(svc: ReactionsService, conn: Conn, post: int, emoji: str, ref: str) -> None:
    if not svc.allow(conn.user["id"]):  # per-user rate limit: refused, never stored
        conn.push(svc.encode({"type": "error", "code": "rate_limited", "ref": ref}))
        return
    reaction = await svc.store.append(post, conn.user, emoji)  # committed, with its seq
    frame = svc.encode({"type": "reaction", **reaction})  # encoded once, for every viewer
    for viewer in list(svc.viewers.get(post, ())):  # only the post's viewers
        viewer.push(frame)  # never waits: a slow reader cannot stall the others
    conn.push(svc.encode({"type": "ack", "ref": ref, "seq": reaction["seq"]}))  # after the write


async def on_view(svc: ReactionsService, conn: Conn, post: int, after: int | None) -> None:
    missed, last_seq = await svc.store.since(post, after)  # nothing to replay when after is None
    # No await from here on: no reaction can be fanned out between the read and the registration.
    for reaction in missed:
        conn.push(svc.encode({"type": "reaction", **reaction}))
    svc.add_viewer(conn, post)
    conn.push(svc.encode({"type": "viewing", "post": post, "last_seq": last_seq}))


def reference_handlers() -> dict[str, Any]:
    """The three reference handlers, as ``ReactionsService(lab, **reference_handlers())`` takes them."""
    return {"handle_socket": handle_socket, "on_view": on_view, "on_react": on_react}


# --- shared by the live checks ---------------------------------------------------------------

CHECK_TIMEOUT = 5.0  # seconds a check waits for something that takes milliseconds
STALL = 3.0  # seconds without progress that count as a stall
LEAK_WAIT = 2.0  # seconds the maps get to empty after the last disconnect (it takes milliseconds)


class _Scene:
    """A service with some handlers, lab accounts and posts: what every live check starts with."""

    def __init__(self, lab: Any, prefix: str, **options: Any) -> None:
        self.lab = lab
        self.tag = secrets.token_hex(2)
        self.prefix = f"{prefix}{self.tag}_"
        self.svc = ReactionsService(lab, **options)
        self.clients: list[ReactionClient] = []
        self.stuck: list[StuckReader] = []
        self.author: Any = None

    async def __aenter__(self) -> _Scene:
        await self.svc.start()
        self.author = await self.account("author")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for reader in self.stuck:
            reader.abort()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        await self.svc.stop()

    async def account(self, name: str) -> Any:
        return await asyncio.to_thread(self.lab.account, f"{self.prefix}{name}")

    async def post(self, text: str) -> int:
        status, body = await asyncio.to_thread(
            self.lab.request, "POST", "/api/posts", {"text": text}, self.author.token
        )
        if status != 201:
            raise RuntimeError(f"the lab refused a post: {status} {body}")
        return int(body["post"]["id"])

    async def client(self, name: str) -> ReactionClient:
        account = await self.account(name)
        client = await ReactionClient.connect(self.svc.ws_url, account.token, name=name)
        self.clients.append(client)
        return client

    async def stuck_viewer(self, name: str, post: int) -> StuckReader:
        """A viewer of ``post`` that never reads."""
        account = await self.account(name)
        reader = await StuckReader.connect(self.svc.ws_url, account.token)
        self.stuck.append(reader)
        await reader.send_text(ReactionsService.encode({"type": "view", "post": post, "after": 0}))
        return reader


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    """Wait until ``condition()`` holds (True) or ``timeout`` passes (False), looking every 10 ms."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    return condition()


def _sequence_problem(who: str, seqs: list[int], expected: list[int]) -> str | None:
    """What is wrong with the seqs a viewer received, or None."""
    duplicates = sorted({s for s in seqs if seqs.count(s) > 1})
    if duplicates:
        return f"{who} received seq {seq_ranges(duplicates)} twice"
    missing = sorted(set(expected) - set(seqs))
    if missing:
        return f"{who} never received seq {seq_ranges(missing)} (lost)"
    extra = sorted(set(seqs) - set(expected))
    if extra:
        return f"{who} received seq {seq_ranges(extra)}, which it should not have"
    if seqs != expected:
        first = next(i for i, (a, b) in enumerate(zip(seqs, expected, strict=True)) if a != b)
        return f"{who} received the reactions out of order: ... {seqs[max(0, first - 2) : first + 3]} ..."
    return None


class _HandlerProblem(LiveProblem):
    """A problem whose answer is one of the service's handlers (``call_with``), run by the service."""

    answer_kind = "async"
    why_async = "the service awaits it in its event loop"


# --- q1: the WebSocket handler ---------------------------------------------------------------


class SocketProblem(_HandlerProblem):
    """The student's ``handle_socket(svc, request)``, with the reference ``on_view``/``on_react``."""

    answer_format = "your async function itself, `handle_socket` (no parentheses)"
    call_with = "handle_socket"
    VIEWERS_PER_ENDING = 2

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        async with _Scene(lab, "sock", handle_socket=answer, on_view=on_view, on_react=on_react) as scene:
            post = await scene.post("capstone q1: the socket handler")
            await self._refusals(scene)
            endings = ("close", "abort", "bad message")
            viewers = {
                ending: [await scene.client(f"{ending.replace(' ', '_')}{i}") for i in range(self.VIEWERS_PER_ENDING)]
                for ending in endings
            }
            everyone = [c for group in viewers.values() for c in group]
            for client in everyone:
                try:
                    await client.view(post, after=0)
                except (TimeoutError, ConnectionError) as exc:
                    raise Incorrect(
                        f"a `view` got no answer ({type(exc).__name__}): does your loop pass each text message "
                        "to `await svc.dispatch(conn, message.data)`?"
                    ) from None
            if not await _until(lambda: len(scene.svc.conns) == len(everyone), CHECK_TIMEOUT):
                raise Incorrect(
                    f"{len(everyone)} connections are open but `svc.conns` holds {len(scene.svc.conns)}: "
                    "register each one with `conn = svc.register(ws, user)`."
                )
            reactor = everyone[0]
            ack = await reactor.react(post, "🎉")
            await asyncio.gather(*(c.ping() for c in everyone))
            got = sum(1 for c in everyone if c.seqs(post) == [ack.get("seq")])
            if got != len(everyone):
                raise Incorrect(f"a reaction reached {got} of the {len(everyone)} viewers; expected all of them.")
            # Three ways to end: a close frame, a vanished network, a message that breaks the protocol.
            for client in viewers["close"]:
                await client.close()
            for client in viewers["abort"]:
                client.abort()
            for client in viewers["bad message"]:
                await client.send_raw("this is not JSON")
            await _until(lambda: not scene.svc.conns and not scene.svc.viewers, LEAK_WAIT)
            leaked = sorted({c.user["username"].removeprefix(scene.prefix) for c in scene.svc.conns})
            leaked_viewers = sum(len(v) for v in scene.svc.viewers.values())
            if leaked or leaked_viewers:
                kinds = sorted({e for e in endings if any(n.startswith(e.replace(" ", "_")) for n in leaked)})
                how = ", ".join(f"'{k}'" for k in kinds) if kinds else "some"
                raise Incorrect(
                    f"after every client disconnected, `svc.conns` still holds {len(scene.svc.conns)} connection(s) "
                    f"and `svc.viewers` {leaked_viewers} viewer(s): the ones that ended by {how}. "
                    + (
                        "A message that breaks the protocol makes `svc.dispatch` raise `BadMessage`, which leaves "
                        "your loop: clean up in a `finally:`, which runs however the handler ends."
                        if kinds == ["bad message"]
                        else "Call `svc.unregister(conn)` when the connection ends, in a `finally:`."
                    )
                )
            errors = scene.svc.stats.errors
            if errors:
                raise Incorrect(f"your handler raised: {errors[0]}")
        return (
            f"forged and missing tokens refused before the upgrade; {len(everyone)} viewers served; after "
            f"{self.VIEWERS_PER_ENDING} clean closes, {self.VIEWERS_PER_ENDING} aborted connections and "
            f"{self.VIEWERS_PER_ENDING} protocol violations, `svc.conns` and `svc.viewers` are empty."
        )

    async def _refusals(self, scene: _Scene) -> None:
        real = await scene.account("real")
        attempts = {
            "no token": None,
            "a tampered token (another user's id, the old signature)": tamper(real.token, sub=str(scene.author.id)),
            "garbage": "not-a-jwt",
        }
        for what, token in attempts.items():
            try:
                client = await ReactionClient.connect(scene.svc.ws_url, token, name="intruder")
            except InvalidStatus as exc:
                if exc.response.status_code != 401:
                    raise Incorrect(
                        f"a handshake with {what} got {exc.response.status_code}; refuse it with 401."
                    ) from None
                continue
            await client.close()
            raise Incorrect(
                f"a connection with {what} was accepted (101). Call `user = await svc.authenticate(request)` "
                "first, and return a 401 response before `svc.accept(request)` when it is None."
            )


q1 = lesson.add(
    "q1",
    SocketProblem(
        title="The WebSocket handler",
        question=(
            "Write `async def handle_socket(svc, request)`, the service's `GET /reactions` handler: "
            "authenticate the lab token (`await svc.authenticate(request)`, None when it does not verify) and "
            "refuse with a 401 response *before* the upgrade; accept (`ws = await svc.accept(request)`), "
            "register (`conn = svc.register(ws, user)`), pass every text message to "
            "`await svc.dispatch(conn, message.data)`, and unregister (`svc.unregister(conn)`) however the "
            "connection ends; return `ws`. The check tries forged tokens, serves six viewers, ends their "
            "connections three ways (a close frame, an aborted TCP connection, a message that is not JSON) "
            "and looks at `svc.conns` and `svc.viewers`."
        ),
        hint=[
            "The shape is the lab's own handler (lesson 04): register, `async for message in ws:`, and the "
            "cleanup in a `finally:`. A refusal is an ordinary response: "
            '`return web.json_response({"error": "unauthorized"}, status=401)`.',
            "`svc.dispatch` raises `BadMessage` for a message that is not JSON; it leaves your `async for`, and "
            "the skeleton closes the socket with 1008. Code after the loop does not run then: only a `finally` does.",
        ],
        solution=(
            "```python\n"
            "from aiohttp import WSMsgType, web\n\n"
            "async def handle_socket(svc, request):\n"
            "    user = await svc.authenticate(request)       # the lab checks the JWT (cached)\n"
            "    if user is None:\n"
            '        return web.json_response({"error": "unauthorized"}, status=401)\n'
            "    ws = await svc.accept(request)                # 101\n"
            "    conn = svc.register(ws, user)\n"
            "    try:\n"
            "        async for message in ws:\n"
            "            if message.type == WSMsgType.TEXT:\n"
            "                await svc.dispatch(conn, message.data)\n"
            "    finally:\n"
            "        svc.unregister(conn)                      # however it ended\n"
            "    return ws\n"
            "```\n\n"
            "Check the token before `accept`: after the 101 the only refusal left is a close frame, and the "
            "socket has existed. The `finally` is the whole fix for notes §14's leak: a clean close and a "
            "reset end the loop normally, but an exception (a bad message, a bug, a cancellation) jumps over "
            "anything written after it."
        ),
    ),
)


# --- q2: on_react ------------------------------------------------------------------------------

REACTORS = 4
REACTIONS_EACH = 100
FLOOD = 20  # reactions sent at once by one user, against rate 2/s, burst 5


class ReactProblem(_HandlerProblem):
    """The student's ``on_react(svc, conn, post, emoji, ref)``, with the reference socket handler and ``on_view``."""

    answer_format = "your async function itself, `on_react` (no parentheses)"
    call_with = "on_react"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        options = {"rate": 1000.0, "burst": 1000.0, "send_limit": 8 * 1024, "disk_delay": 0.002}
        async with _Scene(lab, "react", handle_socket=handle_socket, on_view=on_view, on_react=answer, **options) as s:
            post, other = await s.post("capstone q2: react here"), await s.post("capstone q2: another post")
            viewers = [await s.client(f"viewer{i}") for i in range(5)]
            outsiders = [await s.client(f"other{i}") for i in range(2)]
            reactors = [await s.client(f"reactor{i}") for i in range(REACTORS)]
            for client in viewers:
                await client.view(post, after=0)
            for client in outsiders:
                await client.view(other, after=0)
            await s.stuck_viewer("never_reads", post)
            if not await _until(lambda: len(s.svc.viewers.get(post, ())) == len(viewers) + 1, CHECK_TIMEOUT):
                raise RuntimeError("the viewer that never reads did not become a viewer")
            early: list[str] = []

            def watch(who: str) -> Callable[[dict[str, Any]], None]:
                def check(message: dict[str, Any]) -> None:
                    kind, seq = message.get("type"), message.get("seq")
                    if kind in ("ack", "reaction") and message.get("post", post) == post and not early:
                        if not isinstance(seq, int):
                            early.append(
                                f"{who} got {'an' if kind == 'ack' else 'a'} `{kind}` without a seq: {message}"
                            )
                        elif s.svc.store.committed(post) < seq:
                            early.append(
                                f"{who} got the {kind} of seq {seq} before it was committed to the store: "
                                + ("acknowledge" if kind == "ack" else "push it")
                                + " only after `await svc.store.append(...)` has returned"
                            )

                return check

            for client in [*viewers, *reactors]:
                client.on_message = watch(client.name)
            await self._react_all(s, reactors, viewers, post)
            if early:
                raise Incorrect(early[0] + ".")
            total = REACTORS * REACTIONS_EACH
            await asyncio.gather(*(c.ping() for c in [*viewers, *outsiders]))
            for client in viewers:
                problem = _sequence_problem(client.name, client.seqs(post), list(range(1, total + 1)))
                if problem:
                    raise Incorrect(f"{problem}. Every viewer must get every reaction once, in seq order.")
            for client in outsiders:
                if client.seqs(post):
                    raise Incorrect(
                        f"{client.name}, who views another post, received {len(client.seqs(post))} reactions to "
                        "this one: push only to `svc.viewers.get(post, ())`, the post's viewers."
                    )
            stored = await s.svc.store.counts(post)
            if sum(stored.values()) != total:
                raise Incorrect(f"{total} reactions were acknowledged but the store holds {sum(stored.values())}.")
            limited = await self._flood(s, post)
            dropped = "and was dropped as a slow reader" if s.svc.stats.dropped_slow else "and held no one up"
        return (
            f"{total} reactions from {REACTORS} users: each stored before its ack and its fan-out, each "
            f"delivered once and in seq order to the 5 viewers while a 6th never read ({dropped}), none to the "
            f"2 viewers of another post; a burst of {FLOOD} from one user: {FLOOD - limited} stored, {limited} "
            "refused `rate_limited`."
        )

    async def _react_all(
        self, s: _Scene, reactors: list[ReactionClient], viewers: list[ReactionClient], post: int
    ) -> None:
        progress = [0]

        async def react(client: ReactionClient) -> None:
            for i in range(REACTIONS_EACH):
                answer = await client.react(post, "❤️", timeout=60)
                if answer.get("type") != "ack":
                    raise Incorrect(f"reaction {i + 1} of {client.name} was answered {answer}, not an `ack`.")
                progress[0] += 1

        tasks = [asyncio.create_task(react(c)) for c in reactors]
        try:
            last, still = -1, 0.0
            while not all(t.done() for t in tasks):
                await asyncio.sleep(0.05)
                if progress[0] != last:
                    last, still = progress[0], 0.0
                    continue
                still += 0.05
                if still >= STALL:
                    seen = max((max(c.seqs(post), default=0) for c in viewers), default=0)
                    raise Incorrect(
                        f"everything stopped after {progress[0]} acknowledged reactions: for {STALL:g} s no ack came "
                        f"back and the viewers got nothing after seq {seen}. One viewer never reads: a send to it "
                        "waits for ever once its buffers are full, and so did your fan-out, and every reaction behind "
                        "it. Use `viewer.push(frame)`, which never waits, not `await viewer.ws.send_str(...)`."
                    )
            for task in tasks:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _flood(self, s: _Scene, post: int) -> int:
        s.svc.limiter.reset(rate=2.0, burst=5.0)
        flooder = await s.client("flooder")
        answers = await asyncio.gather(*(flooder.react(post, "😂") for _ in range(FLOOD)))
        refused = sum(1 for a in answers if a.get("type") == "error" and a.get("code") == "rate_limited")
        if refused == 0:
            raise Incorrect(
                f"one user sent {FLOOD} reactions at once (the service's limit: 2 a second, a burst of 5) and every "
                "one was stored: ask `svc.allow(conn.user['id'])` first, and answer "
                '`{"type": "error", "code": "rate_limited", "ref": ref}` when it says no.'
            )
        if refused < FLOOD - 6:
            raise Incorrect(f"of a burst of {FLOOD} (burst 5 allowed), only {refused} were refused.")
        stored = (await s.svc.store.counts(post)).get("😂", 0)
        if stored != FLOOD - refused:
            raise Incorrect(
                f"{refused} reactions were refused `rate_limited` but {stored} of the {FLOOD} were stored: "
                "check the rate before you store, and store nothing you refuse."
            )
        return refused


q2 = lesson.add(
    "q2",
    ReactProblem(
        title="React: persist, fan out, acknowledge",
        question=(
            "Write `async def on_react(svc, conn, post, emoji, ref)`, called for each "
            '`{"type": "react", "post": ..., "emoji": ..., "ref": ...}` from a connection: within the user\'s rate '
            "(`svc.allow(conn.user['id'])`, else an `error` with code `rate_limited`), store the reaction "
            "(`reaction = await svc.store.append(post, conn.user, emoji)`: a dict with its per-post `seq`), push "
            '`{"type": "reaction", **reaction}` to each viewer of the post (`svc.viewers.get(post, ())`, '
            '`viewer.push(frame)`), and acknowledge with `{"type": "ack", "ref": ref, "seq": ...}` '
            "(`conn.push`). Encode with `svc.encode(message)`. The check sends 400 reactions from 4 users to 5 "
            "viewers, 2 viewers of another post, and one viewer that never reads; then one user floods."
        ),
        hint=[
            "Order matters: the rate check, then the write, then the fan-out, then the ack. Anything pushed "
            "before `append` returns describes a reaction a crash could lose (lesson 06's persist before ack).",
            "Encode the reaction once and `push` the same string to every viewer: `push` queues it on that "
            "connection's writer and returns at once. `await viewer.ws.send_str(...)` in a loop waits on the "
            "slowest reader, and a reader that never reads makes it wait for ever.",
        ],
        solution=(
            "```python\n"
            "async def on_react(svc, conn, post, emoji, ref):\n"
            "    if not svc.allow(conn.user['id']):\n"
            '        conn.push(svc.encode({"type": "error", "code": "rate_limited", "ref": ref}))\n'
            "        return\n"
            "    reaction = await svc.store.append(post, conn.user, emoji)   # committed, with its seq\n"
            '    frame = svc.encode({"type": "reaction", **reaction})          # encoded once\n'
            "    for viewer in list(svc.viewers.get(post, ())):\n"
            "        viewer.push(frame)                                        # never waits\n"
            '    conn.push(svc.encode({"type": "ack", "ref": ref, "seq": reaction["seq"]}))\n'
            "```\n\n"
            "`list(...)` copies the set: a viewer dropped as a slow reader leaves it during the loop. The "
            "per-post seq comes from the store, in the order of the commits, so every viewer sees 1, 2, 3... "
            "and a reconnecting one can say where it stopped (q3)."
        ),
    ),
)


# --- q3: on_view, with resume ------------------------------------------------------------------

STREAM = 80  # reactions posted while the followers come and go
FOLLOWERS = 3


class ViewProblem(_HandlerProblem):
    """The student's ``on_view(svc, conn, post, after)``, with the reference socket handler and ``on_react``."""

    answer_format = "your async function itself, `on_view` (no parentheses)"
    call_with = "on_view"

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        options = {"rate": 1000.0, "burst": 1000.0, "disk_delay": 0.002}
        async with _Scene(lab, "view", handle_socket=handle_socket, on_view=answer, on_react=on_react, **options) as s:
            post = await s.post("capstone q3: come and go")
            reactor = await s.client("reactor")
            for _ in range(10):  # history before anyone views
                await reactor.react(post, "👍")
            live_only = await s.client("live_only")
            viewing = await self._view(live_only, post, None)
            if live_only.seqs(post):
                raise Incorrect(
                    f"a viewer that sent no `after` (live reactions only) got {len(live_only.seqs(post))} old "
                    "ones replayed: replay only when `after` is not None."
                )
            if viewing.get("last_seq") != 10:
                raise Incorrect(f"the `viewing` answer said last_seq {viewing.get('last_seq')!r}; the post has 10.")
            followers = [await s.client(f"follower{i}") for i in range(FOLLOWERS)]
            accounts = {c.name: await s.account(c.name) for c in followers}
            for client in followers:
                await self._view(client, post, 0)
            done = asyncio.Event()

            async def stream() -> None:
                for _ in range(STREAM):
                    await reactor.react(post, "🎉")
                    await asyncio.sleep(0.005)
                done.set()

            task = asyncio.create_task(stream())
            received: dict[str, list[int]] = {c.name: [] for c in followers}
            reconnects = 0
            try:
                while not done.is_set():
                    await asyncio.sleep(0.06)
                    for i, client in enumerate(followers):
                        received[client.name] += client.seqs(post)
                        client.abort()
                        await client.close()
                        fresh = await ReactionClient.connect(
                            s.svc.ws_url, accounts[client.name].token, name=client.name
                        )
                        s.clients.append(fresh)
                        seen = received[client.name]
                        await self._view(fresh, post, seen[-1] if seen else 0)
                        followers[i] = fresh
                        reconnects += 1
                await task
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            total = 10 + STREAM
            await asyncio.gather(*(c.ping() for c in [*followers, live_only]))
            for client in followers:
                seqs = received[client.name] + client.seqs(post)
                who = f"{client.name} (reconnected {reconnects // FOLLOWERS} times)"
                problem = _sequence_problem(who, seqs, list(range(1, total + 1)))
                if problem:
                    raise Incorrect(f"{problem}. {self._advice(problem)}")
            problem = _sequence_problem("the live-only viewer", live_only.seqs(post), list(range(11, total + 1)))
            if problem:
                raise Incorrect(f"{problem}. {self._advice(problem)}")
        return (
            f"{FOLLOWERS} viewers dropped and back {reconnects // FOLLOWERS} times each while {STREAM} reactions "
            f"streamed in: each has seq 1 to {total} exactly once, in order; a live-only viewer got 11 to {total}."
        )

    @staticmethod
    async def _view(client: ReactionClient, post: int, after: int | None) -> dict[str, Any]:
        try:
            return await client.view(post, after=after)
        except (TimeoutError, ConnectionError):
            raise Incorrect(
                f'{client.name} sent {{"type": "view", "post": {post}, "after": {after}}} and got no `viewing` '
                'answer: push `{"type": "viewing", "post": post, "last_seq": last_seq}` at the end.'
            ) from None

    @staticmethod
    def _advice(problem: str) -> str:
        if "twice" in problem or "out of order" in problem:
            return (
                "A reaction fanned out live while you were reading the store arrives twice, or before the replay: "
                "read first (`await svc.store.since(post, after)`), then replay and `svc.add_viewer(conn, post)` "
                "with no `await` in between."
            )
        if "lost" in problem:
            return (
                "After a reconnect the viewer says where it stopped (`after`): replay every stored reaction after "
                "it (`svc.store.since(post, after)`), then add it as a viewer for what comes next."
            )
        return "Replay the reactions after `after`, in seq order, then register the viewer."


q3 = lesson.add(
    "q3",
    ViewProblem(
        title="View, and resume after a reconnect",
        question=(
            "Write `async def on_view(svc, conn, post, after)`, called for "
            '`{"type": "view", "post": ..., "after": ...}`: if `after` is a seq, first push every stored reaction '
            "of the post after it (`missed, last_seq = await svc.store.since(post, after)`: none when `after` is "
            "None), then make the connection a viewer (`svc.add_viewer(conn, post)`), then push "
            '`{"type": "viewing", "post": post, "last_seq": last_seq}`. The check streams reactions while three '
            "viewers are dropped and come back again and again, each resuming after the last seq it saw: each must "
            "end with every seq once, in order."
        ),
        hint=[
            "The client remembers the last seq it saw and says `after` when it comes back; the server replays "
            "what the store has after it (lesson 06's `resume`, here for reactions).",
            "Reactions keep coming while you read the store. If the connection is a viewer before the read "
            "finishes, a reaction can arrive live *and* in the replay. Read, then replay and `add_viewer` with "
            "no `await` in between: in one event loop nothing else runs there.",
        ],
        solution=(
            "```python\n"
            "async def on_view(svc, conn, post, after):\n"
            "    missed, last_seq = await svc.store.since(post, after)\n"
            "    for reaction in missed:                      # no await from here on\n"
            '        conn.push(svc.encode({"type": "reaction", **reaction}))\n'
            "    svc.add_viewer(conn, post)\n"
            '    conn.push(svc.encode({"type": "viewing", "post": post, "last_seq": last_seq}))\n'
            "```\n\n"
            "Why no gap and no duplicate: a reaction committed before the read is in `missed`, and its own "
            "fan-out ran before this connection was a viewer (the store answers in order, on one thread); a "
            "reaction committed after the read is fanned out after `add_viewer`, live. Across processes the same "
            "rule needs the broker's delivery order (lesson 08)."
        ),
    ),
)


# --- q4: coalescing counts --------------------------------------------------------------------


def coalesce(times: list[float], window: float) -> list[tuple[float, int]]:
    """When a post's counter is sent, and the total it shows: at most one update per ``window``."""
    sent: list[tuple[float, int]] = []
    last = -float("inf")  # when the last update went out
    pending = None  # when a held-back update is due
    total = 0
    for t in times:
        if pending is not None and pending <= t:  # the held update went out before this reaction
            sent.append((pending, total))
            last, pending = pending, None
        total += 1
        if pending is not None:
            continue  # already due: this reaction rides along
        if t - last >= window:
            sent.append((t, total))
            last = t
        else:
            pending = last + window
    if pending is not None:
        sent.append((pending, total))
    return sent


q4 = lesson.add(
    "q4",
    FunctionProblem(
        [
            (([0.0], 1.0), [(0.0, 1)], "one reaction goes out at once"),
            (([0.0, 0.1, 0.2], 1.0), [(0.0, 1), (1.0, 3)], "the two inside the window wait for its end, together"),
            (
                ([0.0, 0.1, 2.5], 1.0),
                [(0.0, 1), (1.0, 2), (2.5, 3)],
                "at 2.5 the last update (at 1.0) is over a window old",
            ),
            (([0.0, 0.1, 1.2], 1.0), [(0.0, 1), (1.0, 2), (2.0, 3)], "1.2 is within 1 s of the send at 1.0"),
            (([0.0, 0.5, 0.6, 0.7, 3.0], 0.25), [(0.0, 1), (0.5, 2), (0.75, 4), (3.0, 5)], ""),
            (([], 1.0), [], "no reactions, no updates"),
            (
                ([i / 100 for i in range(300)], 0.5),
                [(0.0, 1), (0.5, 50), (1.0, 100), (1.5, 150), (2.0, 200), (2.5, 250), (3.0, 300)],
                "100 reactions a second",
            ),
        ],
        reference=coalesce,
        title="Coalesce the counter",
        question=(
            "A popular post gets 100 reactions a second; pushing each one to 1,000 viewers is 100,000 frames a "
            "second, for a number that changes faster than anyone reads it. Coalesce: write "
            "`coalesce(times, window) -> list[(time_sent, total)]`. `times` are the reactions' arrival times in "
            "seconds, sorted; the counter (the running total) goes out **at once** when nothing was sent in the "
            "last `window` seconds, otherwise **once, at the end of the window**, with the total reached by then."
        ),
        hint=[
            "Keep `last` (when the last update went out) and `pending` (when a held-back one is due, or None). "
            "A reaction at `t >= last + window` goes out at once; otherwise it waits for `last + window`.",
            "Before handling a reaction at `t`, send a pending update that was due at or before `t`, with the "
            "total *before* this reaction. At the end, send the one still pending. Exactly lesson 05's typing rule.",
        ],
    ),
)


# --- q5: the closing map ------------------------------------------------------------------------

q5 = lesson.add(
    "q5",
    ChoiceProblem(
        {
            "a": "RFC 6455, section 4: the HTTP/1.1 Upgrade carries over to HTTP/2 unchanged",
            "b": "nothing: WebSockets cannot run over HTTP/2, which is why browsers keep HTTP/1.1 for them",
            "c": "RFC 8441: an extended CONNECT with `:protocol: websocket` opens a WebSocket on one HTTP/2 stream",
            "d": "RFC 7692: permessage-deflate makes WebSocket frames fit in HTTP/2 frames",
        },
        "c",
        title="WebSockets over HTTP/2",
        question=(
            "HTTP/2 has no `Upgrade` header and no `101 Switching Protocols`: one TCP connection carries many "
            "streams. What lets a browser open a WebSocket over an HTTP/2 connection anyway?"
        ),
        explanations={
            "a": "HTTP/2 forbids the Upgrade mechanism (RFC 9113 section 8.6): no 101 can happen on a stream.",
            "b": "it can: RFC 8441 (2018) bootstraps WebSockets on an HTTP/2 stream, and browsers and servers use it.",
            "c": (
                "an extended CONNECT (`:method: CONNECT`, `:protocol: websocket`, after the server advertised "
                "`SETTINGS_ENABLE_CONNECT_PROTOCOL`) turns one stream into the WebSocket's byte stream; the frames "
                "are RFC 6455's. RFC 9220 does the same for HTTP/3."
            ),
            "d": "RFC 7692 compresses message payloads (lesson 03); it has nothing to do with the HTTP version.",
        },
        hint=[
            "The RFC is from 2018, and its title says *Bootstrapping WebSockets with HTTP/2*.",
            "HTTP/2's CONNECT opens a tunnel on one stream; the RFC extends it with a `:protocol` pseudo-header.",
        ],
        solution=(
            "**c), RFC 8441.** The client sends `:method: CONNECT`, `:protocol: websocket`, `:path: /ws` on a "
            "new stream (allowed once the server sent `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`); a `200` opens it, "
            "and RFC 6455's frames flow as the stream's DATA. Many WebSockets then share one TCP connection. "
            "RFC 9220 is the same for HTTP/3."
        ),
    ),
)


__all__ = [
    "coalesce",
    "handle_socket",
    "lesson",
    "on_react",
    "on_view",
    "q1",
    "q2",
    "q3",
    "q4",
    "q5",
    "reference_handlers",
]
