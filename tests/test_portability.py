"""The server and the toolkit on Windows, macOS and Linux desktops, checked from Linux.

* Windows' event loops have no ``add_signal_handler``: a server whose loop refuses it
  (as theirs do, with NotImplementedError) still starts, serves, and on SIGINT or
  SIGTERM closes its sockets with 1001 and exits 0.
* Nothing reads ``/proc`` or asks for ``PR_SET_PDEATHSIG``: memory and CPU come from
  psutil (:mod:`labserver.resources`).
* A macOS shell allows 256 open files: the server and ``start_lab()`` raise their soft
  limit to the hard one, so lesson 01 (a thousand sockets on each side) runs unchanged
  in a process started with 256.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # ships no type information
import pytest
import websockets

from labserver import resources
from labserver.course import RestClient

from .test_cli import READY, Server, expect_clean_exit, expect_closed_with_1001

ROOT = Path(__file__).resolve().parent.parent

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX; Windows has no such limit")

# The lab server as on Windows: its event loop refuses signal handlers, as Windows' loops do.
WINDOWS_LIKE_SERVER = textwrap.dedent(
    """
    import asyncio.unix_events

    def add_signal_handler(self, sig, callback, *args):
        raise NotImplementedError  # what asyncio's Windows event loops do

    asyncio.unix_events._UnixSelectorEventLoop.add_signal_handler = add_signal_handler

    from labserver.__main__ import main

    main()
    """
)


class WindowsLikeServer(Server):
    """:class:`tests.test_cli.Server`, its event loop without ``add_signal_handler``."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WINDOWS_LIKE_SERVER, "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        self.first_line = self._readline(15)
        assert self.first_line.startswith(READY), (self.first_line, self.proc.poll(), self._stderr_if_exited())
        self.url = self.first_line.removeprefix("labserver listening on ").split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def _stderr_if_exited(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.stderr_after_exit()[-2000:]


@pytest.fixture
def windows_like_server(tmp_path: Path) -> Iterator[WindowsLikeServer]:
    srv = WindowsLikeServer(tmp_path / "data")
    yield srv
    srv.stop()


def test_the_simulated_loop_really_refuses_signal_handlers() -> None:
    """The stand-in above is what the tests below rely on: it must make add_signal_handler fail."""
    script = WINDOWS_LIKE_SERVER.replace(
        "from labserver.__main__ import main\n\nmain()",
        "loop = asyncio.new_event_loop()\n"
        "try:\n"
        "    loop.add_signal_handler(2, print)\n"
        "except NotImplementedError:\n"
        "    print('refused')\n",
    )
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30).stdout == (
        "refused\n"
    )


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
async def test_without_add_signal_handler_the_server_still_stops_gracefully(
    windows_like_server: WindowsLikeServer, how: str
) -> None:
    server = windows_like_server
    rest = RestClient(server.url)
    health = await asyncio.to_thread(rest.health)
    assert health["status"] == "ok"
    token = (await asyncio.to_thread(rest.account, "porter")).token
    ws_url = "ws" + server.url.removeprefix("http") + "/ws"
    async with websockets.connect(f"{ws_url}?token={token}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
        await ws.send(json.dumps({"type": "join", "room": "lobby", "ref": "j"}))
        await ws.send(json.dumps({"type": "chat", "room": "lobby", "text": "hello from anywhere", "ref": "c"}))
        async with asyncio.timeout(5):
            while True:  # our own chat comes back to us, as to every member of the room
                message = json.loads(await ws.recv())
                if message.get("type") == "chat":
                    break
        assert message["text"] == "hello from anywhere" and message["from"]["username"] == "porter"

        server.proc.send_signal(signal.Signals[how])
        await expect_closed_with_1001(ws)
    await expect_clean_exit(server)


def test_nothing_reads_proc_or_asks_for_a_parent_death_signal() -> None:
    """Linux-only mechanisms: paths under /proc (memory, process state) and prctl(PR_SET_PDEATHSIG)."""
    linux_only = re.compile(r"""["']/proc/|PDEATHSIG|\bprctl\(""")
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("labserver", "tests", "benchmarks", "tools")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != Path(__file__).resolve()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if linux_only.search(line)
    ]
    assert found == []


# --- memory and CPU ---------------------------------------------------------------------------


def test_memory_and_cpu_of_this_process() -> None:
    assert resources.rss_bytes() == psutil.Process().memory_info().rss
    before = resources.cpu_seconds()
    assert before > 0
    while resources.cpu_seconds() == before:  # burn CPU until its clock ticks (pytest's timeout bounds it)
        sum(range(10_000))
    assert resources.cpu_seconds() > before


# --- the open-files limit ---------------------------------------------------------------------

INF = -1  # stands for RLIM_INFINITY (its value differs between systems)


@pytest.mark.parametrize(
    "soft, hard, targets",
    [
        (256, 20000, [20000, resources.OPEN_MAX]),  # Linux: the hard limit, macOS's cap if refused
        (1024, 4096, [4096]),
        (256, INF, [resources.OPEN_MAX]),  # macOS: an unlimited hard limit cannot be the soft one
        (20000, 20000, []),  # already as high as it goes
        (12000, INF, []),  # above macOS's cap already
        (INF, INF, []),
    ],
)
def test_which_soft_limits_are_tried(soft: int, hard: int, targets: list[int]) -> None:
    assert resources.limit_targets(soft, hard, INF) == targets


def run_with_open_files(code: str, soft: int = 256) -> subprocess.CompletedProcess[str]:
    """``python -c code``, started with ``soft`` as its soft open-files limit (the hard one kept)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lower_open_files(soft),
        cwd=ROOT,
    )


def lower_open_files(soft: int) -> Callable[[], None]:
    def lower() -> None:  # runs in the child, between fork and exec
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return lower


def hard_open_files_limit() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return resources.OPEN_MAX if hard == resource.RLIM_INFINITY else hard


@posix_only
def test_raise_open_files_limit_lifts_the_soft_limit_to_the_hard_one() -> None:
    result = run_with_open_files(
        "from labserver import resources\n"
        "before = resources.open_files_limit()\n"
        "print(before, resources.raise_open_files_limit(), resources.open_files_limit())"
    )
    assert result.returncode == 0, result.stderr
    before, raised, after = (int(word) for word in result.stdout.split())
    assert before == 256
    assert raised == after == hard_open_files_limit()


@posix_only
def test_free_descriptors_counts_every_open_socket() -> None:
    result = run_with_open_files(
        "import socket\n"
        "from labserver import resources\n"
        "before = resources.free_descriptors()\n"
        "sockets = [socket.socket() for _ in range(5)]\n"
        "print(before, resources.free_descriptors())"
    )
    assert result.returncode == 0, result.stderr
    before, after = (int(word) for word in result.stdout.split())
    assert 0 < before < 256 and after == before - 5


@posix_only
@pytest.mark.skipif(not hasattr(psutil.Process, "rlimit"), reason="psutil reads another process's limits on Linux")
def test_the_server_raises_its_own_open_files_limit(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "labserver", "--port", "0", "--data-dir", str(tmp_path), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lower_open_files(256),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith(READY)
        hard = hard_open_files_limit()
        assert psutil.Process(proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (hard, hard)
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        assert proc.wait(15) == 0
        proc.stdout.close()


LESSON_01 = "notebooks/01_polling_vs_push.ipynb"


@posix_only
@pytest.mark.skipif(
    sys.platform == "win32" or hard_open_files_limit() < 4096,
    reason="the hard open-files limit is too low for lesson 01 in full: it scales its receivers down",
)
@pytest.mark.timeout(400)  # the lesson alone takes about a minute
def test_lesson_01_runs_unchanged_from_a_shell_that_allows_256_open_files() -> None:
    """Strict nbval over lesson 01 in a process started with 256 open files (a macOS shell's default).

    ``start_lab()`` raises the kernel's limit to the hard one before the lab server starts
    (which inherits it and raises its own): the thousand sockets of each side fit, and the
    outputs are the committed ones. Without that the quiet room fails with Errno 24."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "-p",
            "no:cacheprovider",
            LESSON_01,
            "--nbval-sanitize-with",
            "tests/nbval_sanitize.cfg",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=380,
        preexec_fn=lower_open_files(256),
        cwd=ROOT,
    )
    out_of_files = sorted({line.strip() for line in result.stdout.splitlines() if "Too many open files" in line})
    assert out_of_files == []
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
