#!/usr/bin/env python3
"""How long does the dashboard's model take to apply a batch of /observe events?

:class:`ObservedState` applies every event the kernel hears: a crowd of N users
arriving is N ``socket_opened`` + N ``socket_joined`` + chat ``routed`` events.
Prints, for batches of growing size, the time per batch and per event (best of
``--repeat`` runs): a flat time per event means O(events). tests/test_observed.py
checks what applying such a batch does; this script says how fast it is.

    .venv/bin/python benchmarks/observed_apply.py [--repeat 5] [--sizes 1000,2000,4000,8000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the events are built by the module's tests, in the tests package

from labserver.course.observed import ObservedState  # noqa: E402
from tests.test_observed import batch, crowd_arrives, snapshot  # noqa: E402


def best_apply_seconds(events: list[dict[str, Any]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        state = ObservedState()
        state.apply(snapshot())
        message = batch(*events)
        start = time.perf_counter()
        state.apply(message)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per size; the fastest is reported")
    parser.add_argument("--sizes", default="1000,2000,4000,8000", help="users per batch (3 events each)")
    args = parser.parse_args()
    rows = []
    for users in (int(n) for n in args.sizes.split(",")):
        events = crowd_arrives(users)
        seconds = best_apply_seconds(events, args.repeat)
        rows.append(
            {
                "events": len(events),
                "batch_ms": round(seconds * 1000, 2),
                "us_per_event": round(seconds / len(events) * 1e6, 2),
            }
        )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
