"""Run the lab server as a child process: for notebooks, tests and benchmarks.

:class:`LabProcess` starts ``python -m labserver`` on a free port, waits for the
line that names its URL, and keeps the last log lines so a failed start shows
*why* (not a timeout). On Linux the child is tied to its parent with
``PR_SET_PDEATHSIG``: if the notebook kernel dies, even by SIGKILL, the lab
server gets SIGTERM and no orphan is left behind.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_PREFIX = "labserver listening on "


class LabStartError(RuntimeError):
    """The lab server did not start; the message ends with its last log lines."""


@dataclass(frozen=True, slots=True)
class Account:
    """A signed-up user of the lab: their token and public profile."""

    token: str
    user: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.user["id"])

    @property
    def username(self) -> str:
        return str(self.user["username"])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def options_to_flags(options: dict[str, Any]) -> list[str]:
    """``{"ping_interval": 5, "origin": ["*"]}`` -> ``["--ping-interval", "5", "--origin", "*"]``."""
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list | tuple) else [value]:
            flags += [flag, str(item)]
    return flags


class LabProcess:
    """One lab server child process."""

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, *, admin_token: str | None = None, **options: Any
    ) -> None:
        self.admin_token = admin_token
        self._tmp = None if data_dir is not None else tempfile.TemporaryDirectory(prefix="lab-")
        self.data_dir = Path(data_dir if data_dir is not None else self._tmp.name)  # type: ignore[union-attr]
        self.options = options
        self.port = int(options.pop("port", 0))
        self.host = str(options.pop("host", "127.0.0.1"))
        self.proc: subprocess.Popen[str] | None = None
        self.logs: collections.deque[str] = collections.deque(maxlen=200)
        self.url = ""
        atexit.register(self.stop)

    # --- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> LabProcess:
        if self.running:
            return self
        cmd = [sys.executable, "-m", "labserver", "--host", self.host, "--port", str(self.port),
               "--data-dir", str(self.data_dir), *options_to_flags(self.options)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.admin_token:
            env["LABSERVER_ADMIN_TOKEN"] = self.admin_token
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        ready = threading.Event()
        self._pump_thread = threading.Thread(target=self._pump, args=(self.proc, ready), daemon=True, name="labserver-log")
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
                self.url = line[len(READY_PREFIX):].split()[0]
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

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (the server closes sockets with 1001 and exits 0); SIGKILL if it hangs."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release(proc)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush. What was acknowledged must survive this."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self._release(self.proc)

    def _release(self, proc: subprocess.Popen[str]) -> None:
        # The pump thread ends at EOF once the process is gone; then its pipe can close.
        thread = getattr(self, "_pump_thread", None)
        if thread is not None:
            thread.join(2)
        if proc.stdout is not None and (thread is None or not thread.is_alive()):
            proc.stdout.close()

    def restart(self, timeout: float = 20.0) -> LabProcess:
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LabProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP helpers (blocking, stdlib only) -----------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """One JSON request; returns ``(status, decoded body)`` for error statuses too."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def account(self, username: str, password: str = "lab-password") -> Account:
        """Sign up ``username``, or log in if it exists already."""
        status, body = self.request("POST", "/api/signup", {"username": username, "password": password})
        if status == 409:
            status, body = self.request("POST", "/api/login", {"username": username, "password": password})
        if status not in (200, 201):
            raise RuntimeError(f"could not sign up or log in {username!r}: {status} {body}")
        return Account(body["token"], body["user"])

    def drop(self, socket_id: str, mode: str = "abort") -> dict[str, Any]:
        """Drop one connection server-side (needs ``admin_token``): ``abort`` as a network
        failure would, or ``close`` with a close frame."""
        if not self.admin_token:
            raise RuntimeError("start the lab with an admin_token to drop connections")
        status, body = self.request(
            "POST", f"/api/admin/sockets/{socket_id}/close?mode={mode}", headers={"X-Admin-Token": self.admin_token}
        )
        if status != 200:
            raise RuntimeError(f"could not drop {socket_id}: {status} {body}")
        return body

    def health(self) -> dict[str, Any]:
        status, body = self.request("GET", "/healthz")
        if status != 200:
            raise RuntimeError(f"/healthz answered {status}: {body}")
        return body
