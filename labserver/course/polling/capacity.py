"""How many receivers this machine lets a run have: lesson 01's sizes, fitted to the open-files limit.

Every receiver holds one socket open, in the notebook's kernel and again in the lab
server, and every socket is a file. :func:`labserver.course.start_lab` raises the
soft open-files limit to the hard one, which is plenty on most machines; where the
hard limit itself is low (1024 on some Linux desktops, against the 1,000 receivers of
the quiet room), :func:`fit_sizes` scales the sizes down to what fits, with headroom
for everything else the kernel has open, and :func:`scaling_note` says so in one line.

Pure: it is told how many descriptors are free (:func:`labserver.resources.free_descriptors`,
the kernel's; the lab server it started inherited the same limit and has fewer files
of its own open) and opens nothing, so it is tested without a socket.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HEADROOM", "HEADROOM_SHARE", "fit_sizes", "receiver_budget", "scaling_note"]

HEADROOM = 64  # descriptors kept for the rest: the producer, REST calls, Jupyter's and asyncio's own
HEADROOM_SHARE = 0.1  # and a tenth of what is left: sockets of the previous run may still be closing


def receiver_budget(free: int | None) -> int | None:
    """How many sockets the receivers of one run may hold, of ``free`` descriptors (None: no limit)."""
    if free is None:
        return None
    return max(0, int((free - HEADROOM) * (1 - HEADROOM_SHARE)))


def fit_sizes(sizes: Sequence[int], free: int | None, *, at_once: int | Sequence[int] = 1) -> tuple[int, ...]:
    """``sizes`` (receivers per group), each scaled down, if need be, to fit in ``free`` descriptors.

    ``at_once`` is how many groups of that size a run holds open together (one number,
    or one per size): four when the four approaches share a room, one when each gets a
    run of its own. A size is never scaled up, nor below 1."""
    counts = [at_once] * len(sizes) if isinstance(at_once, int) else list(at_once)
    if len(counts) != len(sizes):
        raise ValueError(f"at_once has {len(counts)} entries for {len(sizes)} sizes")
    budget = receiver_budget(free)
    if budget is None:
        return tuple(sizes)
    return tuple(max(1, min(n, budget // max(1, k))) for n, k in zip(sizes, counts, strict=True))


def scaling_note(wanted: Sequence[int], fitted: Sequence[int], free: int | None) -> str | None:
    """One line saying what was scaled down and why; None when nothing was."""
    if tuple(wanted) == tuple(fitted):
        return None
    changes = ", ".join(f"{w:,} \u2192 {f:,}" for w, f in zip(wanted, fitted, strict=True) if w != f)
    room = "few" if free is None else f"{free:,}"
    return (
        f"Note: this machine lets the notebook open only {room} more files (its hard limit, `ulimit -Hn`), "
        f"and each receiver is a socket: receivers scaled down to fit ({changes})."
    )
