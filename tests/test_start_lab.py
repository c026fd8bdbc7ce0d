"""start_lab() from a real Jupyter kernel: one call, reused, and no orphan when its parent stops.

The lab server exits when the stdin pipe its parent holds closes (labserver.launcher). The
tests below make sure nothing else is what stops it: jupyter_client signals the kernel's
whole process group (an interrupt, a forced shutdown), so each test waits for the lab
server to be gone *before* letting jupyter_client do that, and checks the lab server is
in a session of its own, where those signals do not reach.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # ships no type information
import pytest
import websockets
from jupyter_client.manager import start_new_kernel

from labserver.course import LabServer, RestClient
from labserver.course.lab import proxy_prefix, start_lab, stop_lab

from .conftest import until


def _alive(pid: int) -> bool:
    # A zombie is dead for our purpose: whoever adopted it just has not reaped it yet.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pid: int, what: str, timeout: float = 15.0) -> None:
    """For the tests that drive a kernel: jupyter_client's blocking calls cannot run in an event loop."""
    asyncio.run(until(lambda: not _alive(pid), timeout, what))


def _run(client: Any, code: str) -> str:
    """Execute code in the kernel and return its stdout."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("ERROR " + "\n".join(msg["content"]["traceback"]))

    client.execute_interactive(code, output_hook=hook, timeout=60)
    return "".join(out)


@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
def test_lab_dies_with_its_kernel(how: str) -> None:
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        code = "import os\nfrom labserver.course import start_lab\nlab = start_lab()\nprint(lab.pid, os.getpid())"
        out = _run(client, code)
        pid, kernel_pid = (int(word) for word in out.split()[:2])
        assert _alive(pid), out
        assert os.getsid(pid) != os.getsid(kernel_pid)  # out of reach of the kernel's group signals
        again = _run(client, "print(start_lab() is lab, start_lab(typing_ttl=2) is lab)")
        assert again.split() == ["True", "False"]  # same options reuse; new options restart
        new_pid = int(_run(client, "print(start_lab(typing_ttl=2).pid)").strip())
        _wait_dead(pid, "the replaced lab server gone")
        pid = new_pid
    except BaseException:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        raise
    client.stop_channels()
    if how == "shutdown":
        manager.shutdown_kernel(now=False)  # the kernel exits normally: atexit stops the lab
        _wait_dead(pid, f"lab server {pid} gone after its kernel shut down")
    else:
        os.kill(kernel_pid, signal.SIGKILL)  # no atexit runs: only the stdin pipe's EOF can stop the lab
        try:
            _wait_dead(pid, f"lab server {pid} gone after its kernel was SIGKILLed")
        finally:
            manager.shutdown_kernel(now=True)  # SIGKILLs the kernel's process group: only after the check


def test_interrupting_the_kernel_leaves_the_lab_running() -> None:
    """JupyterLab's "interrupt the kernel" sends SIGINT to the kernel's process group: not the lab's."""
    manager, client = start_new_kernel(kernel_name="python3")
    pid = None
    try:
        out = _run(client, "from labserver.course import start_lab\nlab = start_lab()\nprint(lab.pid)")
        pid = int(out.strip())
        manager.interrupt_kernel()
        assert _run(client, "print(lab.running, lab.health()['status'], lab.pid)").split() == ["True", "ok", str(pid)]
        assert _alive(pid)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    if pid is not None:
        _wait_dead(pid, f"lab server {pid} gone after its kernel shut down")


PARENT = """
import sys, time
from labserver.launcher import LabProcess
lab = LabProcess(sys.argv[1]).start()
print(lab.pid, lab.url, flush=True)
time.sleep(600)
"""


async def test_sigkilling_the_parent_stops_the_lab_server_cleanly(tmp_path: Path) -> None:
    """A plain Python parent, SIGKILLed: no atexit, no kernel manager. The lab server reads EOF
    on its stdin and shuts down as on SIGTERM: its WebSockets are closed with 1001."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    pid = None
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), 30)
        pid_text, url = line.split()
        pid = int(pid_text)
        token = (await asyncio.to_thread(RestClient(url).account, "orphan")).token
        ws_url = "ws" + url.removeprefix("http") + "/ws"
        async with websockets.connect(f"{ws_url}?token={token}") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
            os.kill(parent.pid, signal.SIGKILL)
            await asyncio.to_thread(parent.wait, 10)
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(15):
                    while True:
                        await ws.recv()
            assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
        await until(lambda: not _alive(pid), 15, f"lab server {pid} gone after its parent was SIGKILLed")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)  # only if the test failed: leave no orphan behind
        if parent.stdout is not None:
            parent.stdout.close()


def test_start_lab_reuses_and_stops(tmp_path: Path) -> None:
    lab = start_lab(data_dir=str(tmp_path))
    try:
        assert isinstance(lab, LabServer) and lab.running
        assert start_lab(data_dir=str(tmp_path)) is lab
        acct = lab.account("starter")
        assert lab.user("starter")["online"] is False and acct.username == "starter"
        assert "running" in lab._repr_html_() and lab.browser_url == lab.url + "/"
        assert repr(lab) == f"<LabServer running at {lab.url}>"
    finally:
        stop_lab()
    assert not lab.running


def test_the_handle_makes_its_rest_calls_through_a_rest_client(tmp_path: Path) -> None:
    with LabServer(tmp_path, admin_token="secret") as lab:
        assert lab.rest == RestClient(lab.url, "secret")
        signed_up = lab.account("ann")
        assert lab.rest.account("ann").user == signed_up.user  # the second call logs her in
        assert lab.health()["status"] == "ok"
        assert [u["username"] for u in lab.users()] == ["ann"]


def test_browser_url_goes_through_the_jupyter_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ann/")
    assert proxy_prefix() == "/user/ann/"
    lab = LabServer(tmp_path)
    lab.port = 4321
    assert lab.browser_url == "/user/ann/proxy/4321/"


def test_jupyterlab_launcher_can_start_the_lab_through_server_proxy() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="jupyter_serverproxy_servers") if e.name == "labserver"]
    spec = entry.load()()
    assert spec["command"][1:3] == ["-m", "labserver"] and "{port}" in spec["command"]
    assert spec["launcher_entry"]["title"]
