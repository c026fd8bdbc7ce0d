#!/usr/bin/env python3
"""How much does a client that stops reading delay a broadcast to 500 others?

Runs the scenario of tests/test_adversarial_slow.py (500 receivers in a helper
process timestamp every delivery of a steady stream of broadcasts; segments
without and with a slow client alternate, so a change in machine load hits both
alike) and prints the delivery latency of each: p50 and p95, and their ratio.
Isolation means the ratio stays near 1 (within about 2x). The test checks that
every broadcast arrives and the slow client is dropped; it asserts no latency.

    .venv/bin/python benchmarks/slow_consumer.py [--receivers 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scenario lives with its test, in the tests package

from labserver.course import LabServer  # noqa: E402
from tests.test_adversarial_slow import (  # noqa: E402
    RECEIVERS,
    ROUNDS,
    SERVER_OPTIONS,
    broadcast_with_a_slow_consumer,
)


async def run(receivers: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-slow-") as data_dir, LabServer(data_dir, **SERVER_OPTIONS) as lab:
        result = await broadcast_with_a_slow_consumer(lab, receivers, rounds)
    base, slow = result.percentiles_ms("baseline"), result.percentiles_ms("slow")
    print(
        json.dumps(
            {
                "receivers": receivers,
                "broadcasts": result.counts,
                "deliveries": {phase: len(values) for phase, values in result.latencies.items() if phase != "warmup"},
                "slow_clients_dropped": result.last["dropped_slow"] - result.first["dropped_slow"],
                "latency_ms_p50": {"baseline": round(base[0], 2), "slow": round(slow[0], 2)},
                "latency_ms_p95": {"baseline": round(base[1], 2), "slow": round(slow[1], 2)},
                "slow_over_baseline_p50": round(slow[0] / base[0], 2) if base[0] else None,
                "slow_over_baseline_p95": round(slow[1] / base[1], 2) if base[1] else None,
                "rss_mib": [round(result.first["rss_bytes"] / 2**20, 1), round(result.last["rss_bytes"] / 2**20, 1)],
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=RECEIVERS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="baseline + slow segment pairs")
    args = parser.parse_args()
    asyncio.run(run(args.receivers, args.rounds))


if __name__ == "__main__":
    main()
