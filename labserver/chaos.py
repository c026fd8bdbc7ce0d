"""The chaos switches (PROTOCOL.md section 11): ways a server on one event loop breaks, and their fixes.

One thread runs every socket's handler, taking turns at each ``await``. A handler that does
not ``await`` for a while holds up every other socket of the process for that long: their
pongs, their chats, the heartbeats (RFC 6455 section 5.5.2) and the server's own timers.
Two switches make each ``chat`` handler do such work, and a third is their fix:

* ``block_ms``: a synchronous, *blocking* call (``time.sleep``, standing for a blocking
  database driver or ``requests.get``) of that many milliseconds, on the loop.
* ``cpu_ms``: that many milliseconds of CPU-heavy work (repeated SHA-256 hashing, standing
  for image resizing, password hashing, a big JSON document), on the loop.
* ``offload``: the fix of both. The blocking call goes to a thread of the loop's default
  executor (a sleeping or I/O-waiting thread holds no GIL: the loop runs on); the CPU work goes
  to a pool of worker *processes* (in a thread it would still hold the GIL most of the time).
  The handler ``await``\\ s the result: its own socket waits, the others don't.

The other chaos of section 11 live elsewhere: ``leaky_cleanup`` (the skipped ``finally``) in
``Lab.unregister``, and ``max_message_bytes`` (size limits, close 1009) where a socket opens.

The clock and the sleep are parameters, so the unit tests run without sockets or waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from .config import Settings, Switches

__all__ = ["Chaos", "block", "burn_cpu", "chaos_labels"]

DEFAULT_MESSAGE_BYTES = Settings().max_message_bytes  # the size limit a lab starts with by default

HASH_INPUT = b"x" * 64  # small: hashlib holds the GIL for inputs under 2 KiB, as CPU-bound Python does


def block(milliseconds: int, sleep: Callable[[float], object] = time.sleep) -> None:
    """Wait ``milliseconds`` without yielding: the stand-in for any blocking call."""
    sleep(milliseconds / 1000)


def burn_cpu(milliseconds: int, clock: Callable[[], float] = time.perf_counter) -> int:
    """Hash repeatedly until ``milliseconds`` have passed on ``clock``; the number of hashes done.

    A top-level function, so that a worker process can run it (it is pickled by name)."""
    deadline = clock() + milliseconds / 1000
    digest, rounds = HASH_INPUT, 0
    while clock() < deadline:
        for _ in range(100):  # check the clock every 100 hashes, not after each
            digest = hashlib.sha256(digest).digest()
        rounds += 100
    return rounds


class Chaos:
    """What the ``block_ms``, ``cpu_ms`` and ``offload`` switches do to one chat, before it is stored.

    ``threads``: the executor of blocking calls (None: the loop's default one). ``processes``:
    that of CPU work (None: a pool of two worker processes, started by :meth:`warm_up` or the first
    offloaded chat, so a lab that never uses it never starts one)."""

    def __init__(
        self,
        *,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.perf_counter,
        threads: Executor | None = None,
        processes: Executor | None = None,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._threads = threads
        self._processes = processes
        self._own_pool = processes is None

    async def on_chat(self, switches: Switches) -> None:
        """Do the chat's chaos work: on the loop, or (``offload``) awaited off it."""
        if switches.block_ms:
            if switches.offload:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._threads, block, switches.block_ms, self._sleep)
            else:
                block(switches.block_ms, self._sleep)  # the bug: every socket of the process waits
        if switches.cpu_ms:
            if switches.offload:
                loop = asyncio.get_running_loop()
                # The worker process uses its own clock (only a module-level function pickles).
                await loop.run_in_executor(self._process_pool(), burn_cpu, switches.cpu_ms)
            else:
                burn_cpu(switches.cpu_ms, self._clock)  # the bug: the loop computes, nobody else runs

    def warm_up(self) -> None:
        """Start the worker processes now (``offload`` was switched on), not at the first chat that
        needs them: starting a Python process takes a second, which that chat would wait."""
        pool = self._process_pool()
        for _ in range(2):
            pool.submit(burn_cpu, 0)

    def _process_pool(self) -> Executor:
        if self._processes is None:
            # "spawn": a fork of a process with running threads (aiosqlite's) may copy a held lock.
            self._processes = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
        return self._processes

    def close(self) -> None:
        """Stop the worker processes this object started (a given executor is its owner's)."""
        if self._own_pool and self._processes is not None:
            self._processes.shutdown(wait=False, cancel_futures=True)
            self._processes = None


def chaos_labels(switches: Mapping[str, Any]) -> list[str]:
    """The chaos switches that are on in ``switches`` (as ``/observe`` reports them), one short label each.

    What a dashboard shows, e.g. ``["block_ms 200", "offload"]``; empty when the lab is healthy.
    ``offload`` and a ``max_message_bytes`` at or under the default are fixes, listed only beside
    a chaos so that the one line says what is broken and what is mended."""
    labels = [f"{name} {switches[name]}" for name in ("block_ms", "cpu_ms") if switches.get(name)]
    if switches.get("leaky_cleanup"):
        labels.append("leaky_cleanup")
    size = switches.get("max_message_bytes")
    if isinstance(size, int) and size > DEFAULT_MESSAGE_BYTES:
        labels.append(f"max_message_bytes {size:,}")
    if labels and switches.get("offload"):
        labels.append("offload")
    return labels
