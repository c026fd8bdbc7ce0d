"""This process's share of the machine, the same way on Linux, macOS and Windows.

Two jobs, both about what the operating system gives one process:

* what it uses: resident memory (:func:`rss_bytes`) and CPU time (:func:`cpu_seconds`),
  through psutil, since only Linux has ``/proc``;
* how many files it may open: :func:`raise_open_files_limit` lifts the soft
  ``RLIMIT_NOFILE`` to the hard one, and :func:`free_descriptors` says how many are
  left. Every socket is a file here: a macOS shell starts at 256 and many Linux
  desktops at 1024, while lesson 01 holds a thousand sockets open in the notebook's
  kernel and as many in the lab server. Windows has no such limit on sockets (and no
  ``resource`` module): there both answer None.
"""

from __future__ import annotations

import functools
import os
import sys

import psutil  # type: ignore[import-untyped]  # ships no type information

if sys.platform != "win32":
    import resource

__all__ = [
    "OPEN_MAX",
    "cpu_seconds",
    "free_descriptors",
    "limit_targets",
    "open_files_limit",
    "raise_open_files_limit",
    "rss_bytes",
]

# macOS refuses a soft limit above kern.maxfilesperproc, even when the hard limit is
# RLIM_INFINITY (as it often is there); its <sys/syslimits.h> OPEN_MAX, 10240, is accepted.
OPEN_MAX = 10240


@functools.lru_cache(maxsize=1)
def _process(pid: int) -> psutil.Process:
    """This process; keyed by pid, so that a forked child does not measure its parent."""
    return psutil.Process(pid)


def rss_bytes() -> int:
    """Resident memory of this process, in bytes."""
    return int(_process(os.getpid()).memory_info().rss)


def cpu_seconds() -> float:
    """CPU time this process has used since it started (user + system, every thread), in seconds."""
    times = _process(os.getpid()).cpu_times()
    return float(times.user + times.system)


def limit_targets(soft: int, hard: int, infinity: int) -> list[int]:
    """The soft ``RLIMIT_NOFILE`` values worth trying, best first (none if ``soft`` is as high).

    The hard limit itself when it is finite; :data:`OPEN_MAX` as the fallback, for
    macOS, where the hard limit may be ``infinity`` or above what the kernel allows."""
    if soft == infinity:
        return []
    wanted = {OPEN_MAX if hard == infinity else min(hard, OPEN_MAX)}
    if hard != infinity:
        wanted.add(hard)
    return sorted((n for n in wanted if n > soft), reverse=True)


def raise_open_files_limit() -> int | None:
    """Raise this process's soft open-files limit as far as the hard limit allows.

    Returns the soft limit now in force (None: Windows, or no limit). Children started
    afterwards inherit it. Never raises: a limit that cannot move stays where it was."""
    if sys.platform == "win32":
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in limit_targets(soft, hard, resource.RLIM_INFINITY):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # above what this kernel allows (macOS): try the next
            continue
        return target
    return None if soft == resource.RLIM_INFINITY else soft


def open_files_limit() -> int | None:
    """The soft open-files limit in force (None: Windows, or no limit)."""
    if sys.platform == "win32":
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def free_descriptors() -> int | None:
    """How many more files (sockets included) this process may open now (None: no limit)."""
    limit = open_files_limit()
    if limit is None:
        return None
    return max(0, limit - int(_process(os.getpid()).num_fds()))
