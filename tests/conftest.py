"""Shared fixtures: a real lab server process per test module, and helpers to talk to it.

Also the session's guard on the working tree: its ``git status`` (with a hash of every
listed file) is recorded when the session starts, and the test marked ``runs_last``
(tests/test_worktree_unchanged.py), which every run orders after all others, fails if
the run changed it. Tests write to ``tmp_path`` or git-ignored paths; the pictures in
images/ are redrawn only by ``python3 course.py figures`` (see :func:`figure_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
import websockets

from labserver.course import Account, LabServer
from labserver.tap import FrameTap


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A lab server with quick timers so tests do not wait long."""
    with LabServer(tmp_path_factory.mktemp("lab"), ping_interval=1, auth_timeout=1, typing_ttl=1) as proc:
        yield proc


_counter = iter(range(10**9))


@pytest.fixture
def account(lab: LabServer) -> Callable[..., Account]:
    """A factory of fresh users: ``account()`` or ``account("ann")``."""

    def make(name: str | None = None) -> Account:
        return lab.account(name or f"user{next(_counter)}_{id(lab) % 1000}")

    return make


class Client:
    """A thin test client over ``websockets``: send with a ref, wait for a given type."""

    def __init__(self, ws: websockets.ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.inbox: list[dict[str, Any]] = []
        self._refs = iter(range(1, 10**9))

    @classmethod
    async def connect(cls, lab: LabServer, account: Account, **kwargs: Any) -> Client:
        ws = await websockets.connect(f"{lab.ws_url}?token={account.token}", **kwargs)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome", welcome
        return cls(ws, welcome)

    async def send(self, type: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": type, **fields}))

    async def request(self, type: str, **fields: Any) -> dict[str, Any]:
        """Send with a fresh ref; return the ack (or error) carrying that ref."""
        ref = f"r{next(self._refs)}"
        await self.send(type, ref=ref, **fields)
        return await self.expect(lambda m: m.get("ref") == ref)

    async def expect(self, match: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The first message (already received or coming) for which ``match`` is true."""
        if isinstance(match, str):
            kind = match
            match = lambda m: m.get("type") == kind  # noqa: E731
        for i, message in enumerate(self.inbox):
            if match(message):
                return self.inbox.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if match(message):
                    return message
                self.inbox.append(message)

    async def nothing_more(self, match: Any, wait: float = 0.3) -> None:
        """Assert no message matching ``match`` arrives within ``wait`` seconds."""
        try:
            got = await self.expect(match, timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {got}")

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def connect(lab: LabServer) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    clients: list[Client] = []

    async def make(account: Account, **kwargs: Any) -> Client:
        client = await Client.connect(lab, account, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.ws.close()


async def until(condition: Callable[[], Any], timeout: float = 3.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy and return its value; fail after ``timeout`` s.

    ``condition`` may return an awaitable (``lambda: asyncio.to_thread(lab.health)``, an
    ``async def``): its result is what counts."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.01)


def count_comm_messages(widget_owner: Any) -> list[int]:
    """Count the comm messages a live widget's parts (its ``_synced`` widgets) would send to
    a frontend; the count is in the returned one-item list."""
    sent = [0]
    for widget in widget_owner._synced:
        original = widget._send

        def counting(msg: Any, buffers: Any = None, _original: Any = original) -> None:
            sent[0] += 1
            _original(msg, buffers=buffers)

        widget._send = counting
    return sent


@dataclass
class RenderLog:
    """The renders of a live widget that changed something: when each happened (on the
    clock its render loop throttles by: ``time.monotonic()``, which ``loop.time()`` reads)
    and which model version it showed."""

    times: list[float] = field(default_factory=list)
    versions: list[Any] = field(default_factory=list)

    def clear(self) -> None:
        self.times.clear()
        self.versions.clear()

    def min_gap(self) -> float:
        """The shortest time between two renders (infinite with fewer than two). Unlike a
        rate over wall-clock time it cannot flake on a loaded machine: load only widens gaps."""
        return min((b - a for a, b in itertools.pairwise(self.times)), default=float("inf"))

    def shows(self, version: Any) -> bool:
        """The last render showed ``version``: the widget has caught up with its model."""
        return bool(self.versions) and self.versions[-1] == version


def log_renders(widget: Any, version: Callable[[], Any]) -> RenderLog:
    """Log each ``widget.render()`` that changed something, with ``version()`` at that moment.

    Call it before the widget's render loop first runs (right after constructing the widget,
    before any ``await``): the loop looks ``render`` up once, when it starts."""
    log = RenderLog()
    original = widget.render

    def logging_render(force: bool = False) -> bool:
        changed = bool(original(force))
        if changed:
            log.times.append(time.monotonic())
            log.versions.append(version())
        return changed

    widget.render = logging_render
    return log


@pytest.fixture
async def tap(lab: LabServer) -> AsyncIterator[FrameTap]:
    """A frame tap in front of the module's lab server."""
    async with FrameTap.for_lab(lab) as t:
        yield t


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# Long runs of what a shorter test already covers: LABSERVER_SOAK=1 adds them (see README, Tests).
SOAK = os.environ.get("LABSERVER_SOAK") == "1"

# --- browser tests: Playwright driving Debian's Chromium (never `playwright install`) ---

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    # The machine's network is closed: no background calls home, no update checks.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, with the flags above, from a Playwright context manager's object."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for a test module (a module that uses it calls require_browser() first)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


def require_browser() -> None:
    """Skip the calling test module where Chromium or Playwright is missing; on CI, fail instead."""
    missing = None if CHROMIUM.exists() else f"{CHROMIUM} is not installed (apt-get install chromium)"
    if missing is None:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            missing = f"playwright is not installed ({exc})"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run on CI: {missing}", pytrace=False)
    pytest.skip(missing, allow_module_level=True)


def free_port() -> int:
    """A TCP port free on loopback now (for a server this test starts itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_jupyter(workdir: Path, app: list[str], *options: str) -> Iterator[tuple[str, str]]:
    """Run ``python -m <app> <options>`` (a Jupyter server or JupyterLab) on a free port with its
    own config dir under ``workdir``; yield (base URL, token) once it answers, stop it after."""
    port, token = free_port(), secrets.token_hex(16)
    log_path = workdir / "jupyter.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                *app,
                "--no-browser",
                f"--port={port}",
                "--ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
                "--allow-root",
                "--ServerApp.terminals_enabled=False",
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, "JUPYTER_CONFIG_DIR": str(workdir / ".jupyter")},
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(app)} did not start:\n" + log_path.read_text()[-3000:]) from exc
                time.sleep(0.3)  # the poll interval of this wait for Jupyter to answer
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A bare Jupyter server (no JupyterLab frontend) with jupyter-server-proxy, as on a
    JupyterHub or Binder: (base URL, token). It forwards ``/proxy/<port>/`` to a lab server on
    that port. One per test session: the browser client's and the projector's proxy tests share it."""
    workdir = tmp_path_factory.mktemp("jupyter")
    with running_jupyter(workdir, ["jupyter_server"], f"--ServerApp.root_dir={workdir}") as server:
        yield server


def answer_cells(notebook: str) -> list[str]:
    """The code cells of a committed lesson notebook that check an answer."""
    cells = nbformat.read(NOTEBOOKS / notebook, as_version=4).cells
    return [c.source for c in cells if c.cell_type == "code" and (".check(" in c.source or ".check_async(" in c.source)]


# --- pictures: written into images/ only by `python3 course.py figures` ---

ROOT = Path(__file__).resolve().parent.parent
WRITE_FIGURES = "LABSERVER_WRITE_FIGURES"  # set to 1 by tools/figures/screenshots.py


def figure_path(name: str, tmp_path: Path) -> Path:
    """Where a test saves the picture ``name``: ``images/name`` when ``LABSERVER_WRITE_FIGURES=1``
    (``python3 course.py figures`` regenerates the committed pictures), else ``tmp_path``."""
    return (ROOT / "images" if os.environ.get(WRITE_FIGURES) == "1" else tmp_path) / name


# --- the run leaves the working tree as it found it ---

WORKTREE_AT_START = pytest.StashKey[dict[str, str] | None]()


def worktree_state(root: Path) -> dict[str, str] | None:
    """``git status`` of ``root``: each changed or untracked path with its status and a hash of its
    content (so that a file modified before and modified again shows); None outside a git checkout."""
    try:
        listed = subprocess.run(
            ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8", "surrogateescape")
    except (OSError, subprocess.CalledProcessError):
        return None
    state = {}
    fields = iter(listed.split("\0"))
    for entry in fields:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            path = f"{next(fields)} -> {path}"  # -z lists a rename's new path, then its old one
        file = root / path.split(" -> ")[-1]
        content = hashlib.sha256(file.read_bytes()).hexdigest()[:16] if file.is_file() else "-"
        state[path] = f"{status} {content}"
    return state


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "runs_last: run after every other test of the session")


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[WORKTREE_AT_START] = worktree_state(ROOT)


def pytest_collection_finish(session: pytest.Session) -> None:
    """``runs_last`` tests last. Here rather than in ``pytest_collection_modifyitems``: there,
    ``--ff`` and ``--nf`` reorder the items after any conftest's hook (their wrappers are
    outermost); this runs once every plugin has chosen the order, before the first test."""
    session.items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)
