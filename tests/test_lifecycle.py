"""labserver.course.lifecycle against a real lab server: the /observe log, close codes provoked
seven ways, heartbeat detection, a kill-and-restart under a crowd, and the two plots."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import matplotlib
import pytest

from labserver.course import LabServer
from labserver.course.client import LabClient, backoff_delay
from labserver.course.crowd import Crowd
from labserver.course.lifecycle import (
    SCENARIOS,
    HerdRun,
    ObserveLog,
    close_name,
    closed_with,
    connect_raw,
    ended,
    kill_and_restart,
    measure_detection,
    plot_detection,
    plot_herd,
    provoke_close,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with LabServer(tmp_path_factory.mktemp("lab"), admin_token="x", ping_interval=1) as proc:
        yield proc


def test_close_names() -> None:
    assert close_name(1008) == "policy violation"
    assert close_name(1006) == "abnormal closure (no close frame)"
    assert close_name(4321) == "application code"
    assert close_name(None) == "still open" and close_name(1234) == "unknown code"


@pytest.mark.parametrize(
    ("scenario", "code", "reason"),
    [
        ("normal", 1000, "closed by the instructor"),
        ("abort", 1006, ""),
        ("rate_limit", 1008, "rate limit exceeded"),
        ("too_big", 1009, ""),
        ("bug", 1011, "internal error"),
        ("full", 1013, "try again later"),
        ("kicked", 4001, "kicked by the instructor"),
    ],
)
async def test_provoke_close(lab: LabServer, scenario: Any, code: int, reason: str) -> None:
    assert scenario in SCENARIOS
    assert await provoke_close(lab, scenario) == (code, reason)
    switches = lab.switches()
    assert switches["max_connections"] == 0 and switches["bug_on_text"] is None  # put back


async def test_provoke_close_refuses_an_unknown_scenario(lab: LabServer) -> None:
    with pytest.raises(ValueError, match="unknown scenario 'nap'"):
        await provoke_close(lab, "nap")  # type: ignore[arg-type]


async def test_observe_log_sees_the_servers_side(lab: LabServer) -> None:
    log = await ObserveLog.start(lab)
    try:
        ws, welcome = await connect_raw(lab, lab.account("obs"))
        sid = welcome["socket_id"]
        await log.wait_for(lambda e: e["ev"] == "socket_opened" and e["socket_id"] == sid)
        await ws.close(1001, "bye")
        await closed_with(ws)  # what came back: the server's own Close
        closed = await log.wait_for(lambda e: e["ev"] == "socket_closed" and e["socket_id"] == sid)
        assert closed["code"] == 1001 and log.closed(sid) == closed
        assert log.events("socket_closed", since=closed["t"]) == [closed]
        assert "sockets" in log.snapshot and repr(log).startswith("ObserveLog(")
        with pytest.raises(TimeoutError):
            await log.wait_for(lambda e: False, timeout=0.2)
    finally:
        await log.close()


async def test_ended_gives_the_close_the_client_saw(lab: LabServer) -> None:
    client = await LabClient.connect(lab, lab.account("ends"), reconnect=False)
    assert client.socket_id is not None
    lab.drop(client.socket_id, mode="close", code=4002, reason="bye")
    event = await ended(client)
    assert (event.kind, event.code, event.reason) == ("lost", 4002, "bye")
    await client.close()


async def test_measure_detection_reaps_each_silent_client(lab: LabServer) -> None:
    log = await ObserveLog.start(lab)
    try:
        points = await measure_detection(lab, log, intervals=(0.5, 1), per_interval=2)
    finally:
        await log.close()
    assert sorted(p.interval for p in points) == [0.5, 0.5, 1.0, 1.0]
    assert all(p.seconds > 0 and "PONG" in p.reason for p in points)
    assert lab.switches()["ping_interval"] == 1.0  # put back
    fig = plot_detection(points)
    assert fig.axes[0].get_xlabel() == "server ping interval (s)"


def test_herd_peak_and_summary() -> None:
    run = HerdRun(
        "x",
        clients=3,
        back=1.0,
        attempts=[0.1, 0.5, 1.2, 1.25, 1.29, 2.0],
        failures=[0.1, 0.5],
        reconnected=[1.2, 1.25, 2.0],
    )
    assert run.peak() == 3 and run.peak(window=0.01) == 1  # only attempts on the running server count
    assert run.all_back == 2.0
    assert "all 3 back 2.0 s after the kill" in run.summary()
    assert HerdRun("y", clients=2, back=1.0, reconnected=[1.5]).all_back is None
    fig = plot_herd([run, HerdRun("y", clients=2, back=1.0)])
    assert len(fig.axes) == 2


async def test_kill_and_restart_brings_the_crowd_back(lab: LabServer) -> None:
    crowd = Crowd(lab, prefix="kr", backoff=backoff_delay)
    try:
        with pytest.raises(ValueError, match="the crowd is empty"):
            await kill_and_restart(lab, crowd)
        await crowd.grow(5)
        run = await kill_and_restart(lab, crowd, down=0.3, label="no jitter")
    finally:
        await crowd.stop()
    assert run.label == "no jitter" and run.clients == 5 and run.back > 0.3
    assert len(run.reconnected) == 5 and len(run.attempts) == len(run.failures) + 5
    assert lab.running and lab.health()["status"] == "ok"
    await asyncio.sleep(0)
