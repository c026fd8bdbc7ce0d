"""The peers benchmark's plumbing, in a tiny configuration: every server answers and the JSON
has every figure. Shapes only: no timing is asserted (the box is shared; figures are printed
by ``benchmarks/peers.py`` itself)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("setup_per_s", "kib_per_idle_socket", "deliveries_per_s", "p50_ms", "p99_ms", "lag_p99_ms")


@pytest.mark.timeout(90)
def test_a_tiny_run_measures_all_three_servers(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    # Its own process: the benchmark pins itself to a CPU, which must not stick to pytest.
    command = [sys.executable, "benchmarks/peers.py", "--sockets", "20", "--rounds", "1", "--messages", "5"]
    command += ["--seconds", "1", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    rows = results["rows"]
    assert sorted(r["server"] for r in rows) == ["bare", "lab", "sio"]
    for row in rows:
        assert row["sockets"] == 20 and len(row["loadavg"]) == 3
        assert all(isinstance(row[key], int | float) for key in FIGURES), row
        assert row["latency_samples"] == row["expected_samples"] == 10 * 20  # every subscriber got every message
        for phase in ("setup_cpu", "fanout_cpu", "latency_cpu"):
            assert set(row[phase]) == {"server_cpu_pct", "loadgen_cpu_pct", "saturated"}
    assert "welcome_per_s" in next(r for r in rows if r["server"] == "lab")
    assert set(results["ratios_vs_bare"]["20"]) == {"lab", "sio"}
    assert results["redis_mode"].startswith("skipped")
    assert results["machine"]["cpus"] >= 1


def test_the_chart_is_drawn_from_the_json_only_when_asked(tmp_path: Path) -> None:
    results = {"ratios_vs_bare": {"20": {"lab": {"deliveries_per_s": 1.2, "p50_ms": 0.9}, "sio": {"setup_per_s": 0.5}}}}
    source, target = tmp_path / "r.json", tmp_path / "chart.svg"
    source.write_text(json.dumps(results))
    command = [sys.executable, "benchmarks/peers.py", "--chart", str(source), "--chart-out", str(target)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=60)
    assert target.read_text().lstrip().startswith("<?xml")


def _running_benchmark_and_its_servers(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
    """peers.py in a long run, once it has a server process running."""
    command = [sys.executable, "benchmarks/peers.py", "--setup-only", "--sockets", "50", "--rounds", "50"]
    bench = subprocess.Popen([*command, "--servers", "lab", "bare", "--out", str(tmp_path / "p.json")], cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        servers = [p for p in psutil.Process(bench.pid).children() if "--serve" in p.cmdline()]
        if servers:
            return bench, servers
        time.sleep(0.05)
    bench.kill()
    raise AssertionError("no server process started")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_the_benchmark_stops_its_servers(tmp_path: Path, how: signal.Signals) -> None:
    """SIGTERM: the benchmark stops them on its way out; SIGKILL: each sees its stdin close and exits."""
    bench, servers = _running_benchmark_and_its_servers(tmp_path)
    bench.send_signal(how)
    bench.wait(60)
    _, alive = psutil.wait_procs(servers, timeout=30)
    for proc in alive:
        proc.kill()
    assert not alive, [p.cmdline() for p in alive]
