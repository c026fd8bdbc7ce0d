"""Exercises of lesson 07: one event loop, many sockets, and what stalls it.

The ideas they practise: which fix each way of stalling the loop needs (q1); reading memory per
socket off two measurements (q2); moving a blocking call off the loop, checked by a task that must
keep running meanwhile (q3); fixing the live lab's blocking handler with a switch, without
switching the slow work off, checked by another socket's ping coming back while a chat is still
stuck (q4).

    from labserver.course.exercises import lesson07 as ex
    ex.q1.check("b")
    ex.q2.check(19.5)
    await ex.q3.check_async(off_the_loop)   # in this notebook's own event loop
    await ex.q4.check_async(calm)           # live: on the lab, with block_ms on
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets

from .core import ChoiceProblem, Incorrect, Lesson, LiveProblem, ValueProblem, show

lesson = Lesson("lesson07", "One loop, many sockets")


# --- q1: which fix --------------------------------------------------------------------------------

q1 = lesson.add(
    "q1",
    ChoiceProblem(
        {
            "a": "make the handler `async def`: then it no longer blocks the others",
            "b": "run the work in a pool of worker processes (or a queue to a worker) and `await` its result",
            "c": "run the work in a thread with `asyncio.to_thread` and `await` it",
            "d": "open fewer sockets per process: each one then waits less",
        },
        "b",
        title="CPU work in a handler",
        question=(
            "A chat handler resizes an image: 80 ms of pure Python computation per message. Under load every "
            "user's messages arrive late and the loop lag reads 80 ms and more. Which change gives the other "
            "sockets their event loop back?"
        ),
        explanations={
            "a": (
                "`async def` only *allows* the handler to pause at an `await`; 80 ms of computation has no "
                "`await` in it, so it holds the loop all the same (part 5: `cpu_ms` on the lab)."
            ),
            "b": (
                "another process has its own interpreter and its own GIL, on another core: the loop only awaits "
                "a future meanwhile. That is the lab's `offload` for `cpu_ms`."
            ),
            "c": (
                "right for a *blocking* call (a sleep, a blocking driver: the thread waits without the GIL), "
                "but Python computation in a thread holds the GIL and takes turns with the loop: the lag "
                "shrinks, it does not go. Processes, not threads, for CPU work."
            ),
            "d": (
                "the stall is per message, not per socket: one chat stops everyone for 80 ms however few "
                "sockets there are. Fewer sockets would only waste the server."
            ),
        },
        hint=[
            "What does the loop do during those 80 ms? Can any other handler run before the computation ends?",
            "Python threads share one GIL; processes do not.",
        ],
        solution=(
            "**b**. The work has to leave the loop's thread *and* the GIL: "
            "`await loop.run_in_executor(process_pool, resize, image)`, or a job queue read by worker "
            "processes. A thread (c) is the fix for a blocking call, not for computation."
        ),
    ),
)


# --- q2: memory per socket ------------------------------------------------------------------------

q2 = lesson.add(
    "q2",
    ValueProblem(
        19.5,
        tolerance=0.2,  # 19.0 (MiB taken as 1000 KiB) is a mistake of its own
        title="Memory per socket",
        question=(
            "A server process uses 60 MiB with no client and 155 MiB with 5,000 idle WebSocket connections "
            "open. About how many **KiB** does one connection cost? (1 MiB = 1024 KiB.)"
        ),
        answer_format="a number of KiB, e.g. `12.5`",
        explanations=[
            (31.0, "that is 155 MiB / 5,000: the 60 MiB the process uses with no client are not the sockets'."),
            (0.019, "that is MiB per socket: multiply by 1024 for KiB."),
            (19.0, "close: 95 MiB is 95 x 1024 KiB, not 95 x 1000."),
        ],
        wrong_message="not quite: the slope is (memory with - memory without) / connections.",
        correct_message=(
            "(155 - 60) x 1024 / 5000 = 19.5 KiB: the socket's kernel buffers, aiohttp's response and "
            "reader objects, the lab's Connection record and map entries. No thread, no stack: "
            "a thread alone reserves megabytes of stack."
        ),
        hint=[
            "Memory per socket is the slope of the line: how much it grows per connection added.",
            "Subtract the empty server first, then convert MiB to KiB.",
        ],
        solution="(155 - 60) MiB = 95 MiB = 97,280 KiB; / 5,000 = **19.5 KiB** per connection.",
    ),
)


# --- q3: off the loop ------------------------------------------------------------------------------


def _slow_lookup(seconds: float, answer: int) -> int:
    """A blocking call (as a blocking database driver would be): sleeps, then answers."""
    time.sleep(seconds)
    return answer


class OffTheLoopProblem(LiveProblem):
    """The student's ``async def off_the_loop(blocking, *args)``: run ``blocking(*args)`` without
    stopping the event loop and return its result. Checked in the notebook's own loop: a ticker task
    must keep running while a 0.3 s blocking call is in progress."""

    answer_format = "your async function itself, `off_the_loop` (no parentheses)"
    call_with = "off_the_loop"
    answer_kind = "async"
    why_async = "it must `await` the blocking call's result, letting the loop run meanwhile"
    block_seconds = 0.3

    def _find_lab(self) -> Any:
        return None  # runs in this process's loop: no lab needed

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(answer(_slow_lookup, self.block_seconds, 42), 10)
        except TimeoutError:
            raise Incorrect("`off_the_loop` did not return within 10 s.") from None
        finally:
            task.cancel()
        took = time.perf_counter() - started
        if result != 42:
            raise Incorrect(
                f"`off_the_loop(blocking, *args)` must return what `blocking(*args)` returns: got {show(result)}."
            )
        if took < self.block_seconds * 0.9:
            raise Incorrect("`blocking` did not run: call it (in another thread) with the `*args` you were given.")
        if ticks <= 2:
            raise Incorrect(
                f"the loop stopped while `blocking` ran: another task ran {ticks} time(s) in {took:.2f} s. "
                "Calling it directly, even inside an `async def`, runs it on the loop's thread."
            )
        return f"the loop ran another task {ticks} times while the blocking call took {took:.2f} s."


q3 = lesson.add(
    "q3",
    OffTheLoopProblem(
        title="Move a blocking call off the loop",
        question=(
            "Write `async def off_the_loop(blocking, *args)` that runs the blocking function `blocking(*args)` "
            "(a `time.sleep` inside, standing for a blocking database driver) **without stopping the event "
            "loop**, and returns its result. The check runs another task meanwhile and counts how often it got "
            "to run: `await ex.q3.check_async(off_the_loop)`."
        ),
        hint=[
            "An `async def` that calls `blocking(*args)` directly still runs it on the loop's one thread.",
            "`asyncio.to_thread(f, *args)` (or `loop.run_in_executor(None, f, *args)`) runs it in a thread "
            "and gives you something to `await`.",
        ],
        solution=(
            "```python\n"
            "async def off_the_loop(blocking, *args):\n"
            "    return await asyncio.to_thread(blocking, *args)\n"
            "```\n\n"
            "The thread waits in `time.sleep` without holding the GIL, so the loop goes on serving "
            "everyone. For CPU work, a thread would not do: use a process pool (q1)."
        ),
    ),
)


# --- q4: fix the live lab --------------------------------------------------------------------------


class CalmTheLabProblem(LiveProblem):
    """The student's ``def calm(lab)``: with ``block_ms`` on, make the lab serve everyone again by
    switching on the fix (``offload``), not by switching the slow work off. Checked live: while one
    socket's chat is stuck in its 1.5 s block, another socket's ping must come back."""

    answer_format = "your function itself, `calm` (no parentheses)"
    call_with = "calm"
    answer_kind = "sync"
    why_sync = "it only flips a switch with `lab.set_switches(...)`, which is a plain call"
    block_ms = 1500

    async def _check_async(self, answer: Any, lab: Any) -> str | None:
        await asyncio.to_thread(lab.set_switches, block_ms=self.block_ms, offload=False)
        try:
            await asyncio.to_thread(answer, lab)
            switches = await asyncio.to_thread(lab.switches)
            if switches["block_ms"] != self.block_ms:
                raise Incorrect(
                    f"`block_ms` is now {switches['block_ms']}: you removed the slow work. The handler's work has "
                    "to be done; the fix moves it off the loop. Leave `block_ms` as it is."
                )
            if not switches["offload"]:
                raise Incorrect("`offload` is still off: the blocking call still runs on the loop.")
            return await self._served_meanwhile(lab)
        finally:
            await asyncio.to_thread(lab.set_switches, block_ms=0, offload=False)

    async def _served_meanwhile(self, lab: Any) -> str:
        chatter = await asyncio.to_thread(lab.account, "calm_chatter")
        bystander = await asyncio.to_thread(lab.account, "calm_bystander")
        async with (
            websockets.connect(f"{lab.ws_url}?token={chatter.token}") as slow,
            websockets.connect(f"{lab.ws_url}?token={bystander.token}") as other,
        ):
            await slow.recv()
            await other.recv()
            await slow.send(json.dumps({"type": "join", "room": "calm", "ref": "j"}))
            while json.loads(await slow.recv()).get("ref") != "j":
                pass
            await slow.send(json.dumps({"type": "chat", "room": "calm", "text": "stuck 1.5 s", "ref": "c"}))
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            await other.send(json.dumps({"type": "ping", "ref": "p"}))
            while json.loads(await asyncio.wait_for(other.recv(), 10)).get("ref") != "p":
                pass
            pong_ms = (time.perf_counter() - started) * 1000
            # The chat's ack must still be on its way: the pong did not wait for the block.
            try:
                while json.loads(await asyncio.wait_for(slow.recv(), 0.01)).get("ref") != "c":
                    pass
                raise Incorrect("the chat was acknowledged before the other socket's pong: the loop was blocked.")
            except TimeoutError:
                pass
        return f"another socket's ping came back in {pong_ms:.0f} ms while a chat waited out its 1.5 s block."


q4 = lesson.add(
    "q4",
    CalmTheLabProblem(
        title="Calm the lab",
        question=(
            "The check turns the lab's `block_ms` switch on (each chat makes a 1.5 s blocking call on the loop), "
            "then calls your `def calm(lab)`. Make the lab serve everyone again **without** switching the slow "
            "work off. It then sends a stuck chat from one socket and a ping from another: "
            "`await ex.q4.check_async(calm)`."
        ),
        hint=[
            "`lab.switches()` lists the switches; part 5 used the fix.",
            "`lab.set_switches(offload=True)`: the blocking call goes to a thread.",
        ],
        solution=(
            "```python\n"
            "def calm(lab):\n"
            "    lab.set_switches(offload=True)\n"
            "```\n\n"
            "The chat still takes 1.5 s to be acknowledged (the work is done), but it waits in a thread, so the "
            "loop answers everyone else meanwhile."
        ),
    ),
)
