"""start_lab() from a real Jupyter kernel: one call, reused, and no orphan when the kernel stops."""

from __future__ import annotations

import os
import signal
import time

import pytest
from jupyter_client.manager import start_new_kernel

from labserver.course.lab import Lab, proxy_prefix, start_lab, stop_lab


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; its parent (the kernel) is gone anyway.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _run(client, code: str) -> str:  # type: ignore[no-untyped-def]
    """Execute code in the kernel and return its stdout."""
    out: list[str] = []

    def hook(msg) -> None:  # type: ignore[no-untyped-def]
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
        out = _run(client, "import os\nfrom labserver.course import start_lab\nlab = start_lab()\nprint(lab.pid, os.getpid())")
        pid, kernel_pid = (int(word) for word in out.split()[:2])
        assert _alive(pid), out
        again = _run(client, "print(start_lab() is lab, start_lab(typing_ttl=2) is lab)")
        assert again.split() == ["True", "False"]  # same options reuse; new options restart
        new_pid = int(_run(client, "print(start_lab(typing_ttl=2).pid)").strip())
        assert _wait_dead(pid), "the replaced lab server is still running"
        pid = new_pid
    finally:
        client.stop_channels()
        if how == "shutdown":
            manager.shutdown_kernel(now=False)
        else:
            os.kill(kernel_pid, signal.SIGKILL)  # no atexit: only PR_SET_PDEATHSIG can save us
            manager.shutdown_kernel(now=True)
    assert _wait_dead(pid), f"lab server {pid} outlived its kernel ({how})"


def test_start_lab_reuses_and_stops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = start_lab(data_dir=str(tmp_path))
    try:
        assert isinstance(lab, Lab) and lab.running
        assert start_lab(data_dir=str(tmp_path)) is lab
        acct = lab.account("starter")
        assert lab.user("starter")["online"] is False and acct.username == "starter"
        assert "running" in lab._repr_html_() and lab.browser_url == lab.url + "/"
    finally:
        stop_lab()
    assert not lab.running


def test_browser_url_goes_through_the_jupyter_proxy(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ann/")
    assert proxy_prefix() == "/user/ann/"
    lab = Lab(tmp_path)
    lab.port = 4321
    assert lab.browser_url == "/user/ann/proxy/4321/"


def test_jupyterlab_launcher_can_start_the_lab_through_server_proxy() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="jupyter_serverproxy_servers") if e.name == "labserver"]
    spec = entry.load()()
    assert spec["command"][1:3] == ["-m", "labserver"] and "{port}" in spec["command"]
    assert spec["launcher_entry"]["title"]
