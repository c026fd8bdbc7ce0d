"""``python -m labserver``: the ready line, graceful shutdown on signals, and one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from labserver.launcher import LabProcess, LabStartError

READY = "labserver listening on http://127.0.0.1:"


def labserver(*args: str) -> list[str]:
    return [sys.executable, "-m", "labserver", *args]


def run(*args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(labserver(*args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Server:
    """``python -m labserver --port 0`` as a child, with its first stdout line read."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            labserver("--port", "0", "--data-dir", str(data_dir)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        self.first_line = self._readline(15)
        assert self.first_line.startswith(READY), (self.first_line, self.proc.poll())
        self.url = self.first_line.removeprefix("labserver listening on ").split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def _readline(self, timeout: float) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not box:
            self.proc.kill()
            raise AssertionError(f"no ready line within {timeout} s")
        return box[0].rstrip("\n")

    def signup(self, name: str) -> str:
        body = json.dumps({"username": name, "password": "secret-pw"}).encode()
        req = urllib.request.Request(self.url + "/api/signup", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["token"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    srv.stop()


def test_first_stdout_line_names_the_url(server: Server, tmp_path: Path) -> None:
    assert server.first_line.startswith(READY)
    assert 0 < server.port < 65536
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as resp:
        assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
    assert (tmp_path / "data" / "lab.sqlite3").exists()
    assert (tmp_path / "data" / "uploads").is_dir()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_closes_sockets_with_1001_and_exits_0(server: Server, sig: signal.Signals) -> None:
    token = await asyncio.to_thread(server.signup, "sigtest")
    ws_url = "ws" + server.url.removeprefix("http") + "/ws"
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome"
        started = time.monotonic()
        server.proc.send_signal(sig)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
    code = await asyncio.to_thread(server.proc.wait, 5)
    elapsed = time.monotonic() - started
    _, stderr = server.proc.communicate(timeout=5)
    assert code == 0, stderr
    assert elapsed < 5, elapsed
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


def test_signal_with_no_sockets_exits_0_quickly(server: Server) -> None:
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(5) == 0
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "flags",
    [
        ["--port", "x"],
        ["--port", "70000"],
        ["--port", "-1"],
        ["--ping-interval", "-1"],
        ["--ping-interval", "0"],
        ["--rate", "fast"],
        ["--bogus"],
        ["--log-level", "LOUD"],
        ["--port"],
    ],
    ids=lambda f: " ".join(f),
)
def test_bad_flags_give_one_error_line_and_exit_2(flags: list[str], tmp_path: Path) -> None:
    result = run("--data-dir", str(tmp_path / "data"), *flags)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("labserver: error:"), lines
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()  # nothing created before the flags are checked


def test_help_exits_0(tmp_path: Path) -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "--port" in result.stdout and "--data-dir" in result.stdout


def test_port_in_use_gives_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("labserver: error:"), lines
    assert str(port) in lines[0] and "in use" in lines[0].lower(), lines[0]


def test_lab_process_start_failure_raises_with_the_last_log_lines(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("I am a file")
    lab = LabProcess(not_a_dir)
    started = time.monotonic()
    with pytest.raises(LabStartError) as failed:
        lab.start(timeout=15)
    assert time.monotonic() - started < 10  # it fails on exit, not on the timeout
    message = str(failed.value)
    assert "exited with code" in message and "exited with code 0" not in message
    assert "last log lines" in message
    assert "FileExistsError" in message or "NotADirectoryError" in message, message
    assert str(not_a_dir) in message, message
    assert not lab.running
    lab.close()
    assert not_a_dir.read_text() == "I am a file"


def test_lab_process_stop_is_graceful(tmp_path: Path) -> None:
    lab = LabProcess(tmp_path / "data").start()
    assert lab.running and lab.url.startswith("http://127.0.0.1:")
    assert lab.request("GET", "/healthz")[0] == 200
    assert lab.stop() == 0
    assert not lab.running
    assert os.path.exists(tmp_path / "data" / "lab.sqlite3")


def test_shutdown_answers_a_pending_long_poll_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time as _time

    from labserver.launcher import LabProcess

    lab = LabProcess(tmp_path).start()
    token = lab.account("poller").token
    answer: list = []
    poll = threading.Thread(
        target=lambda: answer.append(lab.request("GET", "/api/rooms/quiet/poll?after=0&timeout=25", token=token))
    )
    poll.start()
    _time.sleep(0.5)
    started = _time.monotonic()
    assert lab.stop() == 0
    poll.join(10)
    assert _time.monotonic() - started < 3, "shutdown waited for the long poll"
    assert answer and answer[0][0] == 200 and answer[0][1]["messages"] == []
    lab.close()


def test_shutdown_ends_an_open_event_stream_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time as _time
    import urllib.request

    from labserver.launcher import LabProcess

    lab = LabProcess(tmp_path).start()
    token = lab.account("streamer").token
    ended: list[float] = []

    def stream() -> None:
        with urllib.request.urlopen(f"{lab.url}/api/rooms/quiet/events?token={token}", timeout=30) as resp:
            resp.read()  # until the server ends the stream
        ended.append(_time.monotonic())

    reader = threading.Thread(target=stream, daemon=True)
    reader.start()
    _time.sleep(0.5)
    started = _time.monotonic()
    assert lab.stop() == 0
    reader.join(10)
    assert ended and ended[0] - started < 3, "shutdown waited for the event stream"
    lab.close()
