"""A throwaway ``redis-server`` for tests and lesson 08: started on a free port, gone with us.

:class:`RedisServer` runs ``redis-server --port <free port> --bind 127.0.0.1 --save ''
--appendonly no`` in a temporary directory (nothing is written to disk: the broker only
uses pub/sub and a few keys with a TTL), waits until it answers ``PING``, and gives
its :attr:`~RedisServer.url` to ``python -m labserver --redis``.

No orphan is left behind, as with the lab server (see :mod:`labserver.launcher`):
redis-server cannot watch a pipe itself, so a tiny Python *watchdog* starts it and
holds a pipe from us as its stdin. When we exit, however we exit (even SIGKILL),
the pipe's write end closes, the watchdog reads EOF and terminates redis-server.

:meth:`RedisServer.pause` is "Redis goes away for a few seconds": it stops the
server and starts it again on the same port, so clients that reconnect by
themselves (the lab's broker does) find it back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

__all__ = ["RedisServer", "RedisUnavailable", "find_redis_server"]

_START_TIMEOUT = 10.0  # seconds for redis-server to answer PING
_STOP_TIMEOUT = 5.0  # seconds for it to exit after SIGTERM before SIGKILL

# Runs as ``python -c _WATCHDOG redis-server args...``: starts redis-server, prints its pid, then
# ends it when stdin reaches EOF (our end of the pipe closed: we stopped or died) and exits with
# redis-server's status when that exits by itself (kill()).
_WATCHDOG = """
import signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
print(child.pid, flush=True)
def watch():
    sys.stdin.read()
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
sys.exit(child.wait())
"""


class RedisUnavailable(RuntimeError):
    """No redis-server binary here, or it did not start (one line saying which)."""


def find_redis_server() -> str | None:
    """The path of the ``redis-server`` binary: on PATH, else /usr/bin or /usr/sbin; None if absent."""
    found = shutil.which("redis-server")
    if found:
        return found
    for directory in ("/usr/bin", "/usr/sbin"):
        candidate = Path(directory) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server child. ``with RedisServer() as redis: ... redis.url`` or ``start()``/``stop()``."""

    def __init__(self, port: int | None = None) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RedisUnavailable(
                "redis-server not found (PATH, /usr/bin, /usr/sbin): install it (apt install redis-server, "
                "brew install redis, conda install -c conda-forge redis-server)"
            )
        self.binary = binary
        self.port = port or _free_port()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._watchdog: subprocess.Popen[str] | None = None
        self.pid: int | None = None  # redis-server's own pid while it runs

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._watchdog is not None and self._watchdog.poll() is None

    def start(self) -> Self:
        """Start redis-server (on :attr:`port`, the same one after a :meth:`stop`) and wait for PING."""
        if self.running:
            return self
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="redis-")
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
        ]
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C meant for us does not reach it
        )
        assert self._watchdog.stdout is not None
        line = self._watchdog.stdout.readline().strip()
        self.pid = int(line) if line.isdigit() else None
        deadline = time.monotonic() + _START_TIMEOUT
        while not _answers_ping(self.port):
            if self._watchdog.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(f"redis-server did not start on port {self.port} (in use?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGTERM redis-server (through the watchdog's stdin EOF) and wait for it to exit."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError):
            assert watchdog.stdin is not None
            watchdog.stdin.close()  # the EOF the watchdog waits for: it sends SIGTERM
        try:
            watchdog.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            watchdog.kill()
            watchdog.wait()
        if watchdog.stdout is not None:
            watchdog.stdout.close()
        self.pid = None

    def kill(self) -> None:
        """SIGKILL redis-server: no goodbye to its clients, as when its machine dies."""
        self._signal(signal.SIGKILL)
        self.stop()

    def pause(self, seconds: float) -> None:
        """Redis goes away for ``seconds``, then comes back on the same port (empty: no data kept)."""
        self.stop()
        time.sleep(seconds)
        self.start()

    def close(self) -> None:
        """Stop it and remove its temporary directory."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _signal(self, signum: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(url={self.url!r}, running={self.running})"
