"""The notebook Dashboard against a real lab server (and a scripted /observe for timing).

No Jupyter kernel: ipywidgets work without a frontend (their comm messages go nowhere),
so the tests read the widgets' values and count renders and comm messages.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

import pytest
import websockets

from labserver.course.dashboard import REPR, Dashboard, flow_text, sparkline_svg
from labserver.course.lab import LabServer

from .conftest import count_comm_messages, log_renders
from .conftest import until as _until

until = functools.partial(_until, timeout=2.0)  # this file's default wait


REPR_TEXT = "Dashboard(live view of the lab server)"
TOKEN = "dash-admin-secret"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with LabServer(tmp_path_factory.mktemp("dash"), admin_token=TOKEN) as proc:
        yield proc


@pytest.fixture
async def dashboards() -> AsyncIterator[Callable[..., Dashboard]]:
    made: list[Dashboard] = []

    def make(lab: Any, crowd: Any = None, **kwargs: Any) -> Dashboard:
        dash = Dashboard(lab, crowd, **kwargs)
        made.append(dash)
        return dash

    yield make
    for dash in made:
        await dash.stop()


@pytest.fixture
async def tabs(lab: LabServer) -> AsyncIterator[Callable[..., Any]]:
    """Open plain /ws sockets: ``await tab("alice")`` -> (socket, welcome)."""
    opened: list[Any] = []

    async def tab(name: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        ws = await websockets.connect(f"{lab.ws_url}?token={lab.account(name).token}", **kwargs)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome"
        opened.append(ws)
        return ws, welcome

    yield tab
    for ws in opened:
        await ws.close()


async def request(ws: Any, type: str, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": type, "ref": "r", **fields}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message.get("ref") == "r":
            return message


def user_row(dash: Dashboard, username: str) -> str:
    match = re.search(rf'<tr data-testid="user-row" data-user="{username}".*?</tr>', dash.users_view.value)
    assert match, dash.users_view.value
    return match.group(0)


# --- against the real lab ------------------------------------------------------------


async def test_shows_connections_users_and_rooms(lab: LabServer, dashboards: Any, tabs: Any) -> None:
    dash = dashboards(lab)
    await dash.ready()
    assert dash.connected and dash.running
    base = len(dash.state.sockets)
    ws1, w1 = await tabs("alice")
    ws2, w2 = await tabs("alice")  # a second tab of the same user
    ws3, w3 = await tabs("bob")
    await request(ws1, "join", room="general")
    await request(ws3, "join", room="general")
    await until(lambda: {w1["socket_id"], w2["socket_id"], w3["socket_id"]} <= set(dash.state.sockets), what="sockets")
    alice = w1["user"]["id"]
    assert dash.state.user_sockets[alice] == {w1["socket_id"], w2["socket_id"]}  # one user, two sockets
    assert alice in dash.state.online
    await until(lambda: dash.state.rooms.get("general") == {w1["socket_id"], w3["socket_id"]}, what="room")

    total = base + 3
    await until(lambda: f'data-testid="connections">{total}<' in dash.header.value, what="rendered count")
    await until(lambda: 'data-user="alice" data-sockets="2"' in dash.users_view.value, what="rendered row")
    row = user_row(dash, "alice")
    assert row.count('data-testid="socket-chip"') == 2
    assert w1["socket_id"] in row and w2["socket_id"] in row and "lab-dash-dot on" in row
    await until(lambda: 'data-room="general"' in dash.rooms_view.value, what="rendered room")
    assert "alice, bob" in dash.rooms_view.value
    assert 'data-testid="sparkline"' in dash.header.value and "<svg" in dash.header.value

    # a chat shows in the flow, newest on top, the text escaped
    await request(ws1, "chat", room="general", text="hi <b>all</b>")
    await until(lambda: "alice \u2192 #general \u00b7 chat" in dash.flow_view.value, what="flow line")
    first = re.search(r'<li data-testid="flow-item">(.*?)</li>', dash.flow_view.value)
    assert first and first.group(1).startswith("alice \u2192 #general \u00b7 chat \u00b7 ")
    assert "\u2192 2 sockets" in first.group(1) and "&lt;b&gt;all&lt;/b&gt;" in first.group(1)
    assert "<b>all</b>" not in dash.flow_view.value

    # one tab closes: alice is still online with one socket
    await ws2.close()
    await until(lambda: dash.state.user_sockets.get(alice) == {w1["socket_id"]}, what="one socket left")
    assert alice in dash.state.online
    await ws1.close()
    await until(lambda: alice not in dash.state.online, what="alice offline")
    await until(lambda: 'data-user="alice" data-sockets="0"' in dash.users_view.value, what="offline row")

    # stats arrive once a second: rates and the history
    await until(lambda: dash.state.history, timeout=3, what="a stats event")
    assert 'data-testid="loop-lag">' in dash.header.value
    # the server's memory, and its CPU from two stats in a row (psutil: on every OS)
    await until(lambda: dash.state.cpu_percent is not None, timeout=10, what="a second stats event")
    await until(lambda: re.search(r"server RSS \d+\.\d MB \u00b7 CPU \d+%", dash.header.value), what="shown")
    assert not dash.errors


async def test_repr_is_stable_and_summary_describes(lab: LabServer, dashboards: Any, tabs: Any) -> None:
    dash = dashboards(lab)
    assert repr(dash) == REPR == REPR_TEXT
    assert dash._repr_mimebundle_()["text/plain"] == REPR_TEXT  # what nbval compares
    await dash.ready()
    ws, welcome = await tabs("carol")
    await until(lambda: welcome["socket_id"] in dash.state.sockets)
    assert repr(dash) == REPR_TEXT and str(dash) == REPR_TEXT
    assert dash._repr_mimebundle_()["text/plain"] == REPR_TEXT
    assert dash.summary() == dash.state.describe()
    assert re.fullmatch(r"\d+ connections?, \d+ users? online, rooms: .+", dash.summary())


async def test_flood_through_the_server_renders_at_most_ten_times_a_second(
    lab: LabServer, dashboards: Any, tabs: Any
) -> None:
    dash = dashboards(lab)
    log = log_renders(dash, lambda: dash.state.version)
    await dash.ready()
    sockets = []
    for i in range(20):
        # max_queue=None: these sockets never read, and websockets' close() would wait
        # close_timeout (10 s) behind a full receive queue for the server's close frame
        ws, _ = await tabs(f"flood{i}", max_queue=None)
        await request(ws, "join", room="flood")
        sockets.append(ws)
    sent = count_comm_messages(dash)
    renders, messages = dash.renders, sent[0]
    log.clear()
    # 20 sockets x 35 chats (inside the burst allowance) = 700 chats fanned out to 20 = 14,000 deliveries
    for _ in range(35):
        for ws in sockets:
            await ws.send(json.dumps({"type": "chat", "room": "flood", "text": "x" * 20}))
    await until(lambda: dash.state.totals["routed"] >= 700, timeout=5, what="the flood observed")
    await until(lambda: log.shows(dash.state.version), what="the flood rendered")
    done = dash.renders - renders
    assert done >= 1
    assert log.min_gap() >= dash.render_interval - 0.001, log.times  # at most ten renders a second
    # each render sends at most one message per widget whose state changed
    assert sent[0] - messages <= done * len(dash._synced)
    assert dash.flow_view.value.count('data-testid="flow-item"') == 15
    for ws in sockets:
        await ws.close()


async def test_drop_button_drops_the_chosen_connection(
    lab: LabServer, dashboards: Any, tabs: Any, monkeypatch: Any
) -> None:
    calls: list[str] = []
    original = lab.drop

    def spy(socket_id: str, mode: Literal["abort", "close"] = "abort") -> Any:
        calls.append(socket_id)
        return original(socket_id, mode)

    monkeypatch.setattr(lab, "drop", spy)
    dash = dashboards(lab)
    await dash.ready()
    ws, welcome = await tabs("dave")
    sid = welcome["socket_id"]
    await until(lambda: sid in [value for _, value in dash.drop_choice.options], timeout=3, what="socket in picker")
    assert dash.drop_box.layout.display == "flex"
    label = dict((v, k) for k, v in dash.drop_choice.options)[sid]
    assert label.startswith("dave \u00b7 ")
    dash.drop_choice.value = sid
    await until(lambda: not dash.drop_button.disabled, what="drop button enabled")
    dash.drop_button.click()
    await dash.actions_done()
    assert calls == [sid]
    await until(lambda: sid not in dash.state.sockets, what="socket gone from the model")
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 2)
    await until(lambda: f"dropped {sid}" in dash.status_view.value, what="note")
    assert not dash.errors or all(e.startswith("connect") for e in dash.errors)
    await until(lambda: dash.drop_choice.value is None, timeout=3, what="picker cleared")


async def test_the_admin_token_is_never_shown(lab: LabServer, dashboards: Any, tabs: Any, capfd: Any) -> None:
    assert TOKEN in lab.observe_url  # /observe needs it
    dash = dashboards(lab)
    await dash.ready()
    await tabs("erin")
    dash.render(force=True)
    shown = [str(getattr(w, "value", "")) for w in dash._synced] + [str(dash.drop_choice.options)]
    assert not [text for text in shown if TOKEN in text or "admin_token" in text]
    assert dash._display_url() + "?admin_token=" + TOKEN == lab.observe_url

    class WrongToken:
        observe_url = lab.observe_url.replace(TOKEN, "wrong-token-123")
        admin_token = "wrong-token-123"

    refused = dashboards(WrongToken())
    with pytest.raises(TimeoutError) as info:
        await refused.ready(timeout=0.5)
    assert "wrong-token-123" not in str(info.value)
    assert refused.errors and "403" in refused.errors[-1]
    assert not [e for e in refused.errors if "wrong-token-123" in e]
    out, err = capfd.readouterr()
    assert out == "" and err == ""


async def test_reconnects_when_the_lab_restarts(tmp_path: Any, dashboards: Any, capfd: Any) -> None:
    with LabServer(tmp_path, admin_token=TOKEN) as own:
        dash = dashboards(own)
        await dash.ready()
        ws = await websockets.connect(f"{own.ws_url}?token={own.account('frank').token}")
        sid = json.loads(await ws.recv())["socket_id"]
        await until(lambda: sid in dash.state.sockets, what="socket seen")
        await asyncio.to_thread(own.restart)
        await until(lambda: dash.connections_made >= 2 and dash.connected, timeout=10, what="reconnected")
        await until(lambda: sid not in dash.state.sockets, what="fresh snapshot")  # that socket died with the server
        await until(lambda: 'data-testid="status">live<' in dash.status_view.value, what="live again")
        await ws.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


async def test_a_connect_error_is_shown_until_the_lab_is_back(tmp_path: Any, dashboards: Any) -> None:
    with LabServer(tmp_path, admin_token=TOKEN) as own:
        dash = dashboards(own)
        await dash.ready()
        own.kill()
        await until(lambda: 'data-testid="error">connect:' in dash.status_view.value, timeout=10, what="error shown")
        await asyncio.to_thread(own.start)
        await until(lambda: 'data-testid="status">live<' in dash.status_view.value, timeout=10, what="live again")
        assert 'data-testid="error"' not in dash.status_view.value
        await dash.stop()  # stopped after the lab came back: the old refusal is not news
        assert 'data-testid="status">stopped<' in dash.status_view.value
        assert 'data-testid="error"' not in dash.status_view.value


async def test_close_leaves_no_running_task(lab: LabServer) -> None:
    dash = Dashboard(lab)
    await dash.ready()
    tasks = set(dash._tasks)
    assert tasks and all(not t.done() for t in tasks)
    dash.close()
    await until(lambda: all(t.done() for t in tasks), timeout=2, what="tasks finished")
    assert not dash.running
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not names & {"dashboard-reader", "dashboard-renderer"}
    assert dash.comm is None  # the widget itself is closed too
    assert repr(dash) == REPR_TEXT


async def test_stop_keeps_the_widget_and_marks_it_stopped(lab: LabServer) -> None:
    dash = Dashboard(lab)
    await dash.ready()
    await dash.stop()
    assert not dash.running and dash._ws is None
    assert 'data-testid="status">stopped<' in dash.status_view.value
    dash.close()


# --- controls with a duck-typed crowd --------------------------------------------------------


class FakeCrowd:
    def __init__(self) -> None:
        self.size = 0
        self.paused = False
        self.calls: list[Any] = []
        self.gate = asyncio.Event()

    async def grow(self, n: int, progress: Callable[[int, int], None] | None = None) -> None:
        self.calls.append(("grow", n))
        for i in range(n):
            if i == n // 2:
                await self.gate.wait()  # the test looks at the dashboard mid-way
            self.size += 1
            if progress:
                progress(i + 1, n)
            await asyncio.sleep(0)

    async def shrink(self, n: int) -> None:
        self.calls.append(("shrink", n))
        self.size = max(0, self.size - n)

    def pause(self) -> None:
        self.calls.append("pause")
        self.paused = True

    def resume(self) -> None:
        self.calls.append("resume")
        self.paused = False


async def test_crowd_controls(lab: LabServer, dashboards: Any) -> None:
    crowd = FakeCrowd()
    dash = dashboards(lab, crowd)
    await dash.ready()
    assert dash.crowd_box.layout.display == "flex"
    assert dash.progress.layout.display == "none"
    await until(lambda: dash.remove_button.disabled and not dash.add_button.disabled, what="initial buttons")

    dash.add_button.click()
    await until(lambda: crowd.calls == [("grow", 10)], what="grow called")
    assert dash.add_button.disabled and dash.remove_button.disabled  # at once, while it runs
    await until(lambda: dash.progress.layout.display == "flex" and dash.progress.value == 5, what="progress shown")
    assert dash.progress.max == 10
    dash.add_button.click()  # ignored: disabled in the browser, and busy here
    crowd.gate.set()
    await dash.actions_done()
    await until(lambda: dash.progress.layout.display == "none" and not dash.add_button.disabled, what="grow done")
    assert crowd.calls == [("grow", 10)] and crowd.size == 10
    assert not dash.remove_button.disabled
    assert "crowd: 10 users" in dash.crowd_label.value

    dash.remove_button.click()
    await dash.actions_done()
    assert crowd.calls[-1] == ("shrink", 10) and crowd.size == 0
    await until(lambda: dash.remove_button.disabled, what="nothing to remove")

    dash.pause_button.value = True
    assert crowd.calls[-1] == "pause" and crowd.paused
    await until(lambda: dash.pause_button.description == "resume crowd", what="toggle label")
    dash.pause_button.value = False
    assert crowd.calls[-1] == "resume" and not crowd.paused
    crowd.pause()  # paused from code: the toggle follows within a second
    await until(lambda: dash.pause_button.value is True, timeout=2, what="toggle follows the crowd")
    assert crowd.calls[-1] == "pause"  # the toggle's own update did not call pause() again
    assert not dash.errors or all(e.startswith("connect") for e in dash.errors)


async def test_controls_hidden_when_not_relevant(lab: LabServer, dashboards: Any) -> None:
    class ObserveOnly:
        observe_url = lab.observe_url
        admin_token = None

        def drop(self, socket_id: str) -> None:
            raise AssertionError("no admin token: never called")

    dash = dashboards(ObserveOnly())
    await dash.ready()
    dash.render(force=True)
    assert dash.crowd_box.layout.display == "none"
    assert dash.drop_box.layout.display == "none"
    assert dash.progress.layout.display == "none"


# --- timing and failures with a scripted /observe ---------------------------------------------


class ScriptedObserve:
    """A stand-in /observe: sends a snapshot on connect, then whatever the test pushes."""

    def __init__(self) -> None:
        self.connections: list[Any] = []
        self.server: Any = None
        self.snapshot: dict[str, Any] = {"type": "snapshot", "sockets": [], "online": [], "rooms": {}, "stats": {}}

    async def start(self) -> ScriptedObserve:
        async def handler(ws: Any) -> None:
            self.connections.append(ws)
            await ws.send(json.dumps(self.snapshot))
            await ws.wait_closed()

        self.server = await websockets.serve(handler, "127.0.0.1", 0)
        return self

    @property
    def observe_url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/observe"

    async def push(self, message: dict[str, Any]) -> None:
        await self.connections[-1].send(json.dumps(message))

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedObserve]:
    server = await ScriptedObserve().start()
    yield server
    await server.close()


def routed(i: int) -> dict[str, Any]:
    return {
        "ev": "routed",
        "t": time.time(),
        "type": "chat",
        "from": {"id": 1, "username": "ann"},
        "to": {"kind": "room", "name": "general"},
        "size": 58,
        "recipients": 12,
        "seq": i,
        "preview": "hi",
    }


async def test_renders_at_most_ten_times_a_second_under_5000_events(scripted: ScriptedObserve, dashboards: Any) -> None:
    dash = dashboards(scripted)
    log = log_renders(dash, lambda: dash.state.version)
    await dash.ready()
    renders = dash.renders
    log.clear()
    seq = 0
    for _ in range(50):  # 5,000 events in ~1 s, in 50 batches (5x the server's own batch rate)
        await scripted.push({"type": "events", "events": [routed(seq + i) for i in range(100)], "dropped": 0})
        seq += 100
        await asyncio.sleep(0.02)  # not a wait for something: it spreads the events over a second
    await until(lambda: dash.state.totals["routed"] == 5000, what="all events applied")
    await until(lambda: log.shows(dash.state.version), what="the last render")
    done = dash.renders - renders
    assert done >= 2, done  # it rendered while the events came, not only once they stopped
    assert log.min_gap() >= dash.render_interval - 0.001, log.times  # at most ten renders a second
    assert f"seq {5000}" not in dash.flow_view.value  # (seq is not shown)
    top = re.search(r'<li data-testid="flow-item">(.*?)</li>', dash.flow_view.value)
    assert top and top.group(1).startswith("ann \u2192 #general \u00b7 chat \u00b7 58 B \u2192 12 sockets")
    assert dash.state.flow[-1]["seq"] == 4999 and len(dash.state.flow) == 50

    # idle: nothing changes, nothing is rendered
    idle = dash.renders
    await asyncio.sleep(1.2)  # not a wait for something: longer than the renderer's idle wake (1 s)
    assert dash.renders == idle


async def test_model_fed_directly_is_throttled_too(scripted: ScriptedObserve, dashboards: Any) -> None:
    dash = dashboards(scripted)
    log = log_renders(dash, lambda: dash.state.version)
    await dash.ready()
    renders = dash.renders
    log.clear()
    for i in range(5000):
        dash.apply({"type": "events", "events": [routed(i)], "dropped": 0})
        if i % 50 == 0:
            await asyncio.sleep(0.002)  # not a wait for something: the render loop gets its turns
    await until(lambda: log.shows(dash.state.version), what="the last render")
    assert dash.renders - renders >= 1
    assert log.min_gap() >= dash.render_interval - 0.001, log.times  # at most ten renders a second


async def test_reconnects_quietly_and_resyncs(scripted: ScriptedObserve, dashboards: Any, capfd: Any) -> None:
    scripted.snapshot = {
        "type": "snapshot",
        "online": [1],
        "rooms": {},
        "sockets": [{"socket_id": "s_1", "user": {"id": 1, "username": "ann"}, "rooms": []}],
        "stats": {"connections": 1},
    }
    dash = dashboards(scripted)
    await dash.ready()
    assert set(dash.state.sockets) == {"s_1"} and dash.connections_made == 1
    # the server restarts: the next snapshot replaces the state
    scripted.snapshot = {**scripted.snapshot, "sockets": [], "online": [], "stats": {"connections": 0}}
    await scripted.connections[-1].close(1001, "server shutting down")
    await until(lambda: dash.connections_made == 2 and not dash.state.sockets, what="reconnected")
    # events were lost (stats disagree twice): the dashboard reconnects for a fresh snapshot
    stats = {"ev": "stats", "t": time.time(), "connections": 5}
    await scripted.push({"type": "events", "events": [stats], "dropped": 0})
    await scripted.push({"type": "events", "events": [stats], "dropped": 3})
    await until(lambda: dash.connections_made == 3 and dash.resyncs == 1, what="resync")
    assert dash.state.totals["dropped"] == 3
    await until(lambda: "3 events not shown" in dash.status_view.value, what="dropped shown")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


async def test_header_shows_the_servers_memory_and_cpu(scripted: ScriptedObserve, dashboards: Any) -> None:
    scripted.snapshot = {**scripted.snapshot, "stats": {"connections": 0, "rss_bytes": 50 * 2**20, "cpu_s": 2.0}}
    dash = dashboards(scripted)
    await dash.ready()
    await until(lambda: "server RSS 50.0 MB" in dash.header.value, what="memory shown")
    assert "CPU" not in dash.header.value  # no rate from a snapshot alone
    now = time.time()
    for cpu_s, t in ((2.0, now), (2.5, now + 2)):  # half a second of CPU in two seconds: 25 %
        stats = {"ev": "stats", "t": t, "connections": 0, "rss_bytes": 60 * 2**20, "cpu_s": cpu_s}
        await scripted.push({"type": "events", "events": [stats], "dropped": 0})
    await until(lambda: "server RSS 60.0 MB \u00b7 CPU 25%" in dash.header.value, what="memory and CPU shown")


async def test_unreachable_lab_keeps_errors_and_prints_nothing(dashboards: Any, capfd: Any) -> None:
    class Gone:
        observe_url = "ws://127.0.0.1:9/observe"  # discard port: connection refused

    dash = dashboards(Gone())
    with pytest.raises(TimeoutError, match="no snapshot from ws://127.0.0.1:9/observe"):
        await dash.ready(timeout=0.5)
    assert dash.running  # still trying, quietly
    assert dash.errors and dash.errors[-1].startswith("connect: ")
    assert len(dash.errors) == 1  # the same refusal is not repeated
    await until(lambda: 'data-testid="status">connecting' in dash.status_view.value, what="status")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# --- pure helpers ----------------------------------------------------------------------------


def test_flow_text_and_sparkline() -> None:
    entry = {"from": "alice", "to_kind": "room", "to_name": "general", "type": "chat", "size": 58, "recipients": 12}
    assert flow_text(entry) == "alice \u2192 #general \u00b7 chat \u00b7 58 B \u2192 12 sockets"
    assert (
        flow_text(
            {
                **entry,
                "from": None,
                "to_kind": "topic",
                "to_name": "presence",
                "type": "presence",
                "size": 2048,
                "recipients": 1,
            }
        )
        == "server \u2192 topic presence \u00b7 presence \u00b7 2.0 kB \u2192 1 socket"
    )
    svg = sparkline_svg([0, 1, 3, 2])
    assert svg.startswith('<svg data-testid="sparkline"') and svg.count("<polyline") == 1
    assert len(re.search(r'<polyline points="([^"]*)"', svg).group(1).split()) == 4  # type: ignore[union-attr]
    assert "<polyline" in sparkline_svg([]) and "<polyline" in sparkline_svg([5])


async def test_header_shows_a_leak_in_the_socket_maps(scripted: ScriptedObserve, dashboards: Any) -> None:
    stats = {"connections": 3, "sockets_open": 3, "sockets_tracked": 3}
    scripted.snapshot = {**scripted.snapshot, "stats": stats}
    dash = dashboards(scripted)
    await dash.ready()
    await until(lambda: 'data-testid="sockets-tracked">3</b>' in dash.header.value, what="maps shown")
    assert "sockets in the maps, 3 open</span>" in dash.header.value
    assert "leaked" not in dash.header.value and "#c62828" not in dash.header.value
    leak = {"ev": "stats", "t": time.time(), "connections": 3, "sockets_open": 1, "sockets_tracked": 13}
    await scripted.push({"type": "events", "events": [leak], "dropped": 0})
    await until(lambda: "sockets in the maps, 1 open (12 leaked)" in dash.header.value, what="leak shown")
    assert 'data-testid="sockets-tracked" style="color:#c62828">13</b>' in dash.header.value


def test_no_socket_map_figures_without_them() -> None:
    assert Dashboard._maps_html({"connections": 3}) == ""
    assert 'data-open="2"' in Dashboard._maps_html({"sockets_open": 2, "sockets_tracked": 2})
