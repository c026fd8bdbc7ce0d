"""``python -m labserver``: the ready line, graceful shutdown on signals or stdin EOF, and one-line errors.

How long a shutdown takes is a figure printed by benchmarks/shutdown.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

import labserver as labserver_package
from labserver.course import LabServer, RestClient
from labserver.launcher import LabProcess, LabStartError

from .conftest import until

READY = "labserver listening on http://127.0.0.1:"


def labserver(*args: str) -> list[str]:
    return [sys.executable, "-m", "labserver", *args]


def run(*args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(labserver(*args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Server:
    """``python -m labserver --port 0`` as a child, with its first stdout line read.

    With ``exit_on_stdin_eof`` its stdin is a pipe we hold (``proc.stdin``), else /dev/null."""

    def __init__(self, data_dir: Path, *, exit_on_stdin_eof: bool = False) -> None:
        flags = ["--exit-on-stdin-eof"] if exit_on_stdin_eof else []
        self.proc = subprocess.Popen(
            labserver("--port", "0", "--data-dir", str(data_dir), *flags),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.PIPE if exit_on_stdin_eof else subprocess.DEVNULL,
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
        return RestClient(self.url).account(name).token

    def stderr_after_exit(self) -> str:
        """All it wrote to stderr; call once it has exited."""
        assert self.proc.stderr is not None and self.proc.poll() is not None
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


async def expect_closed_with_1001(ws: Any) -> None:
    """The server closes ``ws`` with 1001 (going away) within 10 s."""
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert ws.close_code == 1001, (ws.close_code, ws.close_reason)


async def expect_clean_exit(server: Server) -> None:
    """The server process exits 0 within 10 s, with no traceback on stderr."""
    code = await asyncio.to_thread(server.proc.wait, 10)
    stderr = server.stderr_after_exit()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    srv.stop()


@pytest.fixture
def piped_server(tmp_path: Path) -> Iterator[Server]:
    """A server started with ``--exit-on-stdin-eof``, stdin a pipe this test holds."""
    srv = Server(tmp_path / "data", exit_on_stdin_eof=True)
    yield srv
    srv.stop()


def stop_by(server: Server, how: str) -> None:
    """What ends the server: a signal, or its parent's end of the stdin pipe closing."""
    if how == "stdin EOF":
        assert server.proc.stdin is not None
        server.proc.stdin.close()
    else:
        server.proc.send_signal(signal.Signals[how])


GRACEFUL_STOPS = ["SIGTERM", "SIGINT", "stdin EOF"]


def test_first_stdout_line_names_the_url(server: Server, tmp_path: Path) -> None:
    assert server.first_line.startswith(READY)
    assert 0 < server.port < 65536
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as resp:
        assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
    assert (tmp_path / "data" / "lab.sqlite3").exists()
    assert (tmp_path / "data" / "uploads").is_dir()


@pytest.mark.parametrize("how", GRACEFUL_STOPS)
async def test_a_graceful_stop_closes_sockets_with_1001_and_exits_0(piped_server: Server, how: str) -> None:
    server = piped_server
    token = await asyncio.to_thread(server.signup, "sigtest")
    ws_url = "ws" + server.url.removeprefix("http") + "/ws"
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome"
        stop_by(server, how)
        await expect_closed_with_1001(ws)
    await expect_clean_exit(server)


@pytest.mark.parametrize("how", GRACEFUL_STOPS)
def test_a_graceful_stop_with_no_sockets_exits_0(piped_server: Server, how: str) -> None:
    stop_by(piped_server, how)
    assert piped_server.proc.wait(10) == 0
    assert piped_server.stderr_after_exit() == ""


async def test_a_restart_line_before_eof_closes_sockets_with_1012(piped_server: Server) -> None:
    server = piped_server
    token = await asyncio.to_thread(server.signup, "restarter")
    ws_url = "ws" + server.url.removeprefix("http") + "/ws"
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
        assert server.proc.stdin is not None
        server.proc.stdin.write("some noise\nrestart\n")  # other lines are ignored
        server.proc.stdin.flush()
        await asyncio.sleep(0.2)
        assert server.proc.poll() is None  # the line alone does not stop it: the EOF does
        server.proc.stdin.close()
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1012, "service restart")
    await expect_clean_exit(server)


async def test_labprocess_restart_says_1012_and_stop_says_1001(tmp_path: Path) -> None:
    with LabProcess(tmp_path) as proc:
        token = RestClient(proc.url).account("comeback").token
        for action, code in ((proc.restart, 1012), (proc.stop, 1001)):
            async with websockets.connect(f"{proc.ws_url}?token={token}") as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
                await asyncio.to_thread(action)
                with pytest.raises(websockets.ConnectionClosed):
                    async with asyncio.timeout(10):
                        while True:
                            await ws.recv()
                assert ws.close_code == code, (action, ws.close_code, ws.close_reason)


def test_without_the_flag_stdin_eof_is_ignored(server: Server) -> None:
    """The ``server`` fixture's stdin is /dev/null: at EOF from the start, and serving all the same."""
    assert server.proc.poll() is None
    assert RestClient(server.url).health()["status"] == "ok"
    assert server.proc.poll() is None


@pytest.mark.parametrize(
    "flags",
    [
        ["--port", "x"],
        ["--port", "70000"],
        ["--port", "-1"],
        ["--ping-interval", "-1"],
        ["--ping-interval", "0"],
        ["--presence-grace", "-1"],
        ["--presence-grace", "nan"],
        ["--presence-grace", "soon"],
        ["--rate", "fast"],
        ["--header-timeout", "0"],
        ["--max-unfinished-per-ip", "-1"],
        ["--max-sockets-per-user", "many"],
        ["--signups-per-minute", "-5"],
        ["--upload-quota-bytes", "0"],
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
    assert "--exit-on-stdin-eof" in result.stdout


def test_every_flag_is_in_the_protocols_flag_table() -> None:
    flags = set(re.findall(r"(--[a-z][a-z-]+)", run("--help").stdout))
    protocol = (Path(labserver_package.__file__).parent / "PROTOCOL.md").read_text()
    table = protocol.split("| Flag ", 1)[1].split("\n\n", 1)[0]
    assert not {f for f in flags if f"`{f}" not in table}, "flags missing from PROTOCOL.md section 2"


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result
    assert result.stdout == f"labserver {labserver_package.__version__}\n"


def test_help_names_the_admin_token_variable_and_what_it_enables() -> None:
    text = " ".join(run("--help").stdout.split())  # argparse wraps lines: compare with spaces normalised
    assert "LABSERVER_ADMIN_TOKEN" in text
    assert "admin API" in text and "/observe" in text
    assert "not show in the process list" in text


def test_ping_interval_help_says_what_protocol_section_8_says() -> None:
    text = " ".join(run("--help").stdout.split())
    help_text = text.split("--ping-interval PING_INTERVAL")[-1].split("--auth-timeout", 1)[0]  # not the usage line
    assert "before the server pings it" in help_text
    assert "within half of that is dropped" in help_text
    assert "PROTOCOL.md section 8" in help_text and "(default 20.0)" in help_text
    protocol = " ".join((Path(labserver_package.__file__).parent / "PROTOCOL.md").read_text().split())
    assert "sent nothing for `ping_interval` seconds, the server sends an RFC 6455 **ping frame**" in protocol
    assert "within **half the interval**" in protocol


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
    with pytest.raises(LabStartError) as failed:
        lab.start(timeout=60)
    message = str(failed.value)
    # It fails when the server exits, not on the timeout ("not ready after 60 s").
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
    assert RestClient(lab.url).request("GET", "/healthz")[0] == 200
    assert lab.stop() == 0
    assert not lab.running
    assert lab.proc is not None and lab.proc.stdin is not None and lab.proc.stdin.closed  # no fd left behind
    assert os.path.exists(tmp_path / "data" / "lab.sqlite3")


def _no_signals(proc: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of signalling ``proc`` fail the test: on Windows they are all TerminateProcess."""

    def refuse(*args: object) -> None:
        raise AssertionError("stop() signalled the server: on Windows that is TerminateProcess, not graceful")

    for name in ("send_signal", "terminate", "kill"):
        monkeypatch.setattr(proc, name, refuse)


async def test_lab_process_stop_closes_sockets_with_1001_without_a_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() closes the server's stdin: graceful on every OS, where a signal would not be on Windows."""
    lab = LabProcess(tmp_path / "data").start()
    try:
        assert lab.proc is not None
        _no_signals(lab.proc, monkeypatch)
        token = (await asyncio.to_thread(RestClient(lab.url).account, "stopper")).token
        async with websockets.connect(f"{lab.ws_url}?token={token}") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
            code = await asyncio.to_thread(lab.stop)
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
        assert code == 0
    finally:
        monkeypatch.undo()
        lab.close()


def test_lab_process_stop_terminates_a_server_that_ignores_its_stdin(tmp_path: Path) -> None:
    """Should EOF on stdin not stop the child within the timeout, stop() falls back to terminate()."""
    lab = LabProcess(tmp_path / "data")
    lab.proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"], stdin=subprocess.PIPE, text=True
    )
    assert lab.running
    code = lab.stop(timeout=0.5)
    assert not lab.running and code is not None and code != 0
    assert lab.proc.stdin is not None and lab.proc.stdin.closed
    lab.close()


async def test_shutdown_answers_a_pending_long_poll_at_once(tmp_path: Path) -> None:
    with LabServer(tmp_path) as lab:
        token = lab.account("poller").token
        answers: list[tuple[int, Any] | BaseException] = []

        def poll() -> None:
            try:
                answers.append(lab.request("GET", "/api/rooms/quiet/poll?after=0&timeout=25", token=token))
            except (OSError, http.client.HTTPException) as exc:  # cut off: shutdown did not answer it
                answers.append(exc)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        await until(lambda: lab.health()["long_polls"] == 1, what="the long poll is waiting")
        assert await asyncio.to_thread(lab.stop) == 0
        await asyncio.to_thread(poller.join, 10)
    # Answered (200, no messages) long before its 25 s: had shutdown not answered it, the
    # server would have cut it after its shutdown timeout, and urllib raised.
    (answer,) = answers
    assert isinstance(answer, tuple) and answer[0] == 200 and answer[1]["messages"] == [], answer


async def test_shutdown_ends_an_open_event_stream_at_once(tmp_path: Path) -> None:
    with LabServer(tmp_path) as lab:
        token = lab.account("streamer").token
        endings: list[str] = []

        def stream() -> None:
            try:
                with urllib.request.urlopen(f"{lab.url}/api/rooms/quiet/events?token={token}", timeout=30) as resp:
                    resp.read()  # until the server ends the stream
                endings.append("ended by the server")
            except (OSError, http.client.HTTPException) as exc:  # IncompleteRead, reset...: cut off
                endings.append(f"cut off: {exc!r}")

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        await until(lambda: lab.health()["long_polls"] == 1, what="the event stream is waiting")  # it waits like a poll
        assert await asyncio.to_thread(lab.stop) == 0
        await asyncio.to_thread(reader.join, 10)
    # A clean end (the last chunk written) means shutdown ended the stream itself; the
    # shutdown timeout would have cancelled it mid-response instead.
    assert endings == ["ended by the server"]
