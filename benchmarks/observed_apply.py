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
import time
from typing import Any

from labserver.course.observed import ObservedState


def crowd_arrives(users: int) -> list[dict[str, Any]]:
    """Each user opens a socket, joins #general and says something: 3 events a user."""
    now = time.time()
    events: list[dict[str, Any]] = []
    for i in range(users):
        user = {"id": i, "username": f"u{i}"}
        events += [
            {"ev": "socket_opened", "t": now, "socket_id": f"s_{i}", "user": user},
            {"ev": "socket_joined", "t": now, "socket_id": f"s_{i}", "user": user, "room": "general"},
            {
                "ev": "routed",
                "t": now,
                "type": "chat",
                "from": user,
                "to": {"kind": "room", "name": "general"},
                "size": 58,
                "recipients": i + 1,
                "seq": i + 1,
                "preview": f"hello {i}",
            },
        ]
    return events


def empty_snapshot() -> dict[str, Any]:
    return {
        "type": "snapshot",
        "sockets": [],
        "online": [],
        "rooms": {},
        "stats": {
            "connections": 0,
            "users_online": 0,
            "rooms": 0,
            "topics": 0,
            "typing": 0,
            "messages_in": 0,
            "deliveries": 0,
            "dropped_slow": 0,
            "rss_bytes": 1,
        },
    }


def best_apply_seconds(events: list[dict[str, Any]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        state = ObservedState()
        state.apply(empty_snapshot())
        batch = {"type": "events", "events": events, "dropped": 0}
        start = time.perf_counter()
        state.apply(batch)
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
