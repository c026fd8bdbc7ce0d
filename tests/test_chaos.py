"""The chaos switches (PROTOCOL.md section 11, labserver/chaos.py): a blocking handler, CPU-heavy
work in a handler, very large payloads, and their fixes (offload, size limits).

First the chaos module without sockets (a fake sleep and clock; a real loop where the point is
whether the loop stays free), then the real server: one server for the module, started with an
admin token, its switches put back after each test. No test asserts a duration the box could miss
when loaded: a blocked loop delays another socket by at least the block (a lower bound), and an
offloaded block lets another socket's answer come back before the blocked chat's ack (an order).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import websockets

from labserver.chaos import Chaos, block, burn_cpu, chaos_labels
from labserver.config import SwitchError, Switches
from labserver.course import LabServer

from .conftest import Client

ADMIN = "chaos-admin"
CHAOS_OFF = {"block_ms": 0, "cpu_ms": 0, "offload": False, "max_message_bytes": 65536}


# --- the module, without sockets --------------------------------------------------------------


class FakeClock:
    """A clock that advances by ``step`` seconds at each reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.readings = 0.0, step, 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.step
        return self.now


def test_block_sleeps_the_milliseconds_given() -> None:
    slept: list[float] = []
    block(250, slept.append)
    assert slept == [0.25]


def test_burn_cpu_hashes_until_the_clock_passes_the_deadline() -> None:
    clock = FakeClock(step=0.001)
    rounds = burn_cpu(10, clock)
    # Deadline 0.011 s (the first reading is 0.001); readings 0.002 to 0.010 are before it: 9 batches of 100.
    assert clock.readings == 11 and rounds == 900


def test_burn_cpu_really_computes() -> None:
    assert burn_cpu(5) > 0
    assert burn_cpu(0) == 0


async def test_off_switches_do_nothing() -> None:
    slept: list[float] = []
    await Chaos(sleep=slept.append, clock=FakeClock(1.0)).on_chat(Switches())
    assert slept == []


async def test_block_ms_sleeps_on_the_loop_and_offload_in_a_thread() -> None:
    threads_that_slept: list[str] = []

    def sleep(seconds: float) -> None:
        import threading

        threads_that_slept.append(threading.current_thread().name)

    with ThreadPoolExecutor(1, thread_name_prefix="offload") as pool:
        chaos = Chaos(sleep=sleep, threads=pool)
        await chaos.on_chat(Switches(block_ms=100))
        await chaos.on_chat(Switches(block_ms=100, offload=True))
    assert threads_that_slept[0] == "MainThread" and threads_that_slept[1].startswith("offload")


async def ticks_during(work: Any) -> int:
    """How many times another task ran on this loop while ``work`` was awaited."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let it start: one tick
    before = ticks
    await work
    task.cancel()
    return ticks - before


async def test_a_blocking_handler_freezes_the_loop_and_offload_frees_it() -> None:
    chaos = Chaos()
    # On the loop: no other task runs at all during the 200 ms (a certainty, not a timing).
    assert await ticks_during(chaos.on_chat(Switches(block_ms=200))) == 0
    # Offloaded: the loop kept running the other task while the thread slept.
    assert await ticks_during(chaos.on_chat(Switches(block_ms=200, offload=True))) > 10


async def test_cpu_work_freezes_the_loop_and_offload_sends_it_to_a_worker_process() -> None:
    with ThreadPoolExecutor(1) as stand_in_pool:  # the real pool spawns processes: tested live below
        chaos = Chaos(processes=stand_in_pool)
        assert await ticks_during(chaos.on_chat(Switches(cpu_ms=100))) == 0
        assert await ticks_during(chaos.on_chat(Switches(cpu_ms=100, offload=True))) > 0


def test_the_own_process_pool_is_closed() -> None:
    chaos = Chaos()
    pool = chaos._process_pool()
    assert pool.submit(burn_cpu, 1).result(timeout=60) > 0
    chaos.close()
    with pytest.raises(RuntimeError):
        pool.submit(burn_cpu, 1)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"block_ms": -1}, "'block_ms' must be an integer of milliseconds, 0 to 10000"),
        ({"block_ms": 10001}, "'block_ms' must be an integer of milliseconds"),
        ({"block_ms": 1.5}, "'block_ms' must be an integer"),
        ({"cpu_ms": True}, "'cpu_ms' must be an integer"),
        ({"cpu_ms": "50"}, "'cpu_ms' must be an integer"),
        ({"offload": 1}, "'offload' must be true or false"),
        ({"max_message_bytes": 100}, "'max_message_bytes' must be an integer of bytes, 1024 to 67108864"),
        ({"max_message_bytes": 2**27}, "'max_message_bytes' must be an integer of bytes"),
    ],
)
def test_bad_values_are_refused_in_one_line(changes: dict[str, Any], says: str) -> None:
    switches = Switches()
    with pytest.raises(SwitchError, match=says) as refused:
        switches.apply({"offload": True, **changes})
    assert "\n" not in str(refused.value)
    assert switches == Switches()  # all or nothing


def test_chaos_labels_name_what_is_on() -> None:
    assert chaos_labels(Switches().to_json()) == []
    assert chaos_labels({**Switches().to_json(), "offload": True}) == []  # a fix alone is nothing to show
    on = {**Switches().to_json(), "block_ms": 200, "cpu_ms": 50, "offload": True, "max_message_bytes": 2**20}
    assert chaos_labels(on) == ["block_ms 200", "cpu_ms 50", "max_message_bytes 1,048,576", "offload"]
    assert chaos_labels({"leaky_cleanup": True}) == ["leaky_cleanup"]


# --- the real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with LabServer(tmp_path_factory.mktemp("chaos"), admin_token=ADMIN, rate=1000, burst=1000) as proc:
        yield proc


@pytest.fixture
def lab(server: LabServer) -> Iterator[LabServer]:
    yield server
    server.set_switches(**CHAOS_OFF)


_names = iter(range(10**6))


@pytest.fixture
async def pair(lab: LabServer) -> AsyncIterator[tuple[Client, Client]]:
    """Two sockets of two users in one room: ``chatter`` triggers the chaos, ``bystander`` pings."""
    n = next(_names)
    chatter = await Client.connect(lab, lab.account(f"chatter{n}"))
    bystander = await Client.connect(lab, lab.account(f"bystander{n}"))
    await chatter.request("join", room="chaos")
    yield chatter, bystander
    await chatter.close()
    await bystander.close()


async def ping_seconds(client: Client) -> float:
    """Round trip of one application ``ping`` (PROTOCOL.md section 6)."""
    started = time.perf_counter()
    pong = await client.request("ping", payload="x")
    assert pong["type"] == "pong"
    return time.perf_counter() - started


async def test_a_blocking_handler_delays_another_sockets_pong_by_the_block(
    lab: LabServer, pair: tuple[Client, Client]
) -> None:
    chatter, bystander = pair
    lab.set_switches(block_ms=800)
    await chatter.send("chat", ref="blocked", room="chaos", text="I block the loop")
    await asyncio.sleep(0.1)  # the server is inside the 800 ms sleep by now (it only needs to read the chat)
    # The bystander's ping waits for the sleep to end: at least the rest of the block.
    assert await ping_seconds(bystander) >= 0.5
    assert (await chatter.expect(lambda m: m.get("ref") == "blocked"))["type"] == "ack"


async def test_offload_lets_another_socket_be_served_during_the_block(
    lab: LabServer, pair: tuple[Client, Client]
) -> None:
    chatter, bystander = pair
    lab.set_switches(block_ms=1500, offload=True)
    await chatter.send("chat", ref="offloaded", room="chaos", text="I wait in a thread")
    await asyncio.sleep(0.1)
    await bystander.request("ping", payload="x")
    # The pong came back while the chat still waited in its thread: its ack is not there yet.
    assert not any(m.get("ref") == "offloaded" for m in chatter.inbox)
    with pytest.raises(TimeoutError):
        await chatter.expect(lambda m: m.get("ref") == "offloaded", timeout=0)
    ack = await chatter.expect(lambda m: m.get("ref") == "offloaded", timeout=10)
    assert ack["type"] == "ack"


async def test_cpu_work_offloaded_to_the_process_pool_still_delivers(
    lab: LabServer, pair: tuple[Client, Client]
) -> None:
    chatter, bystander = pair
    await bystander.request("join", room="chaos")
    lab.set_switches(cpu_ms=30, offload=True)
    ack = await chatter.request("chat", room="chaos", text="hashed in a worker process")
    assert ack["type"] == "ack"
    chat = await bystander.expect(lambda m: m.get("type") == "chat" and m.get("seq") == ack["seq"], timeout=30)
    assert chat["text"] == "hashed in a worker process"


async def test_cpu_work_on_the_loop_delays_another_socket(lab: LabServer, pair: tuple[Client, Client]) -> None:
    chatter, bystander = pair
    lab.set_switches(cpu_ms=800)
    await chatter.send("chat", ref="hashing", room="chaos", text="I compute on the loop")
    await asyncio.sleep(0.1)
    assert await ping_seconds(bystander) >= 0.5
    await chatter.expect(lambda m: m.get("ref") == "hashing")


async def test_the_size_limit_is_live_for_new_sockets_and_closes_1009(lab: LabServer) -> None:
    account = lab.account(f"big{next(_names)}")
    lab.set_switches(max_message_bytes=4 * 1024 * 1024)
    raised = await Client.connect(lab, account, max_size=None)
    assert raised.welcome["limits"]["max_message_bytes"] == 4 * 1024 * 1024
    lab.set_switches(max_message_bytes=65536)
    limited = await Client.connect(lab, account, max_size=None)
    assert limited.welcome["limits"]["max_message_bytes"] == 65536
    huge = json.dumps({"type": "chat", "room": "chaos", "text": "x" * 1_000_000})
    # The socket opened under the raised limit reads all of it, then refuses it as a message.
    await raised.ws.send(huge)
    error = await raised.expect("error")
    assert error["code"] == "bad_field"
    # The one opened under the limit is closed with 1009 (RFC 6455 section 7.4.1).
    await limited.ws.send(huge)
    with pytest.raises(websockets.ConnectionClosed):
        await limited.ws.recv()
    assert limited.ws.close_code == 1009
    await raised.close()


def test_bad_values_over_http_are_400_bad_field_one_line(lab: LabServer) -> None:
    status, answer = lab.request("PATCH", "/api/admin/switches", {"block_ms": -5}, headers={"X-Admin-Token": ADMIN})
    assert status == 400 and answer["error"] == "bad_field" and "'block_ms'" in answer["message"]
    assert "\n" not in answer["message"]
    assert {k: lab.switches()[k] for k in CHAOS_OFF} == CHAOS_OFF


async def test_observe_reports_the_chaos_switches(lab: LabServer) -> None:
    async with websockets.connect(lab.observe_url) as watcher:
        snapshot = json.loads(await watcher.recv())
        assert {k: snapshot["switches"][k] for k in CHAOS_OFF} == CHAOS_OFF
        assert "loop_lag_ms" not in snapshot["stats"]  # lag is a rate over a period: in the stats events
        await asyncio.to_thread(lab.set_switches, block_ms=100, offload=True)
        async with asyncio.timeout(5):
            while True:
                batch = json.loads(await watcher.recv())
                changes = [e for e in batch.get("events", []) if e["ev"] == "switches"]
                if changes:
                    break
        assert changes[0]["switches"]["block_ms"] == 100 and changes[0]["switches"]["offload"] is True
        async with asyncio.timeout(5):
            while True:
                batch = json.loads(await watcher.recv())
                stats = [e for e in batch.get("events", []) if e["ev"] == "stats"]
                if stats:
                    break
        assert isinstance(stats[0]["loop_lag_ms"], float | int)


def test_the_dashboard_names_the_chaos_switches_that_are_on(server: LabServer) -> None:
    from labserver.course import Dashboard

    dashboard = Dashboard(server)  # not started: only its header is drawn, from the state it is given
    dashboard.state.switches = Switches().to_json()
    assert 'data-testid="chaos"' not in dashboard._header_html()  # a healthy lab shows nothing new
    dashboard.state.switches = {**Switches().to_json(), "cpu_ms": 100, "offload": True}
    header = dashboard._header_html()
    assert 'data-testid="chaos"' in header and "cpu_ms 100 · offload" in header and "chaos on" in header


def test_warm_up_starts_the_own_pool_once() -> None:
    chaos = Chaos()
    chaos.warm_up()
    pool = chaos._processes
    chaos.warm_up()
    assert pool is not None and chaos._processes is pool
    assert pool.submit(burn_cpu, 1).result(timeout=60) > 0
    chaos.close()
