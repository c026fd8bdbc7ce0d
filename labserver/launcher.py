"""Run the lab server as a child process: for notebooks, tests and benchmarks.

:class:`LabProcess` starts ``python -m labserver`` on a free port, waits for the
line that names its URL, and keeps the last log lines so a failed start shows
*why* (not a timeout). It only runs the process; talking to the server over
HTTP is :class:`labserver.course.rest_client.RestClient`'s job.

No orphan is left behind, on Linux, macOS and Windows alike: the child is
started with ``--exit-on-stdin-eof`` and a pipe as its stdin whose write end
only this process holds. When this process dies, however it dies (even by
SIGKILL, when no ``atexit`` runs), the operating system closes that end; the
server reads EOF and shuts down as on SIGTERM (sockets closed with 1001, exit 0).
The pipe is the only tie: the child runs in a process group of its own, so a
Ctrl-C or a Jupyter "interrupt the kernel" meant for the parent does not stop it.

The same pipe is how :meth:`LabProcess.stop` stops the server gracefully everywhere:
closing it is the EOF a dying parent would cause. A signal would not do on Windows,
where ``send_signal(SIGTERM)`` is TerminateProcess, as abrupt as a kill. And it is how
:meth:`LabProcess.restart` tells the server it will be back: the line ``restart``
written before the EOF makes it close its sockets with 1012 (service restart) instead
of 1001 (going away), so clients know to reconnect.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

READY_PREFIX = "labserver listening on "
RESTART_LINE = "restart\n"  # see labserver.__main__.stop_at_stdin_eof
EXIT_WITH_PARENT_FLAG = "--exit-on-stdin-eof"
_TERMINATE_GRACE = 5.0  # seconds between terminate() and kill() when stdin's EOF did not stop the server

# A signal meant for our process group (Ctrl-C in a terminal, JupyterLab's "interrupt the
# kernel", jupyter_client killing the kernel's group) must not reach the lab server.
_OWN_PROCESS_GROUP: dict[str, Any]
if sys.platform == "win32":
    _OWN_PROCESS_GROUP = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
else:
    _OWN_PROCESS_GROUP = {"start_new_session": True}


class LabStartError(RuntimeError):
    """The lab server did not start; the message ends with its last log lines."""


def options_to_flags(options: dict[str, Any]) -> list[str]:
    """``{"ping_interval": 5, "origin": ["*"]}`` -> ``["--ping-interval", "5", "--origin", "*"]``."""
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list | tuple) else [value]:
            flags += [flag, str(item)]
    return flags


class LabProcess:
    """One lab server child process: start, stop, kill, restart, and where it listens."""

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, *, admin_token: str | None = None, **options: Any
    ) -> None:
        self.admin_token = admin_token
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lab-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.options = options
        self.port = int(options.pop("port", 0))
        self.host = str(options.pop("host", "127.0.0.1"))
        self.proc: subprocess.Popen[str] | None = None
        self.logs: collections.deque[str] = collections.deque(maxlen=200)
        self.url = ""
        self._pump_thread: threading.Thread | None = None
        atexit.register(self.stop)

    # --- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> Self:
        if self.running:
            return self
        cmd = [
            sys.executable,
            "-m",
            "labserver",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            EXIT_WITH_PARENT_FLAG,
            *options_to_flags(self.options),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.admin_token:
            env["LABSERVER_ADMIN_TOKEN"] = self.admin_token
        # stdin=PIPE: we never write to it; its EOF is the child's cue that we are gone.
        # (Popen's pipes are not inherited by other children, so only we hold the write end.)
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            text=True,
            env=env,
            **_OWN_PROCESS_GROUP,
        )
        ready = threading.Event()
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self.proc, ready), daemon=True, name="labserver-log"
        )
        self._pump_thread.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                why = f"exited with code {code}" if code is not None else f"not ready after {timeout:.0f} s"
                tail = "\n".join(list(self.logs)[-15:]) or "(no output)"
                raise LabStartError(f"lab server {why}. Its last log lines:\n{tail}")
        # Keep the port so a restart (e.g. after a SIGKILL) comes back where clients look.
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _pump(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.logs.append(line)
            if not ready.is_set() and line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].split()[0]
                ready.set()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws"

    @property
    def observe_url(self) -> str:
        """The /observe stream, carrying the admin token when the server has one."""
        url = "ws" + self.url.removeprefix("http") + "/observe"
        return f"{url}?admin_token={self.admin_token}" if self.admin_token else url

    def stop(self, timeout: float = 10.0, *, restarting: bool = False) -> int | None:
        """Stop gracefully, on every OS: the server closes its sockets with 1001 and exits 0
        (with ``restarting``, 1012: the server says it will be back, see :meth:`restart`).

        Closing the child's stdin does it (the EOF of ``--exit-on-stdin-eof``). Should the
        server not be gone within ``timeout`` seconds, ``terminate()`` (SIGTERM on POSIX,
        TerminateProcess on Windows), then ``kill()``. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            if restarting and proc.stdin is not None and not proc.stdin.closed:
                with contextlib.suppress(OSError):  # it died meanwhile: nothing left to tell
                    proc.stdin.write(RESTART_LINE)
                    proc.stdin.flush()
            self._close_stdin(proc)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(_TERMINATE_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._release(proc)
        return proc.returncode

    def kill(self) -> None:
        """The hard stop (SIGKILL; TerminateProcess on Windows): no shutdown, no flush.

        What the server acknowledged must survive this."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self._release(self.proc)

    @staticmethod
    def _close_stdin(proc: subprocess.Popen[str]) -> None:
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):  # a restart line is flushed already; a dead child: nothing to do
                proc.stdin.close()

    def _release(self, proc: subprocess.Popen[str]) -> None:
        """Close our ends of the pipes of a process that has exited."""
        self._close_stdin(proc)
        # The pump thread ends at EOF once the process is gone; then its pipe can close.
        thread = self._pump_thread
        if thread is not None:
            thread.join(2)
        if proc.stdout is not None and (thread is None or not thread.is_alive()):
            proc.stdout.close()

    def restart(self, timeout: float = 20.0) -> Self:
        """Stop gracefully, telling clients 1012 (service restart), and start again on the same port."""
        self.stop(restarting=True)
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
