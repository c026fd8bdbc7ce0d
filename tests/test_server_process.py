"""What ``python -m labserver`` sets for its own process: a listen backlog deep enough for a
crowd connecting at once, and rarer full garbage collections (see labserver.app)."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labserver.app import FULL_GC_AFTER, LISTEN_BACKLOG, tune_gc
from labserver.course import LabServer


@pytest.mark.skipif(
    sys.platform != "linux" or not (shutil.which("ss") and shutil.which("sysctl")),
    reason="reads the backlog with ss and the kernel's cap with sysctl (Linux)",
)
def test_the_server_listens_with_a_backlog_a_crowd_fits_in(tmp_path: Path) -> None:
    cap = int(subprocess.run(["sysctl", "-n", "net.core.somaxconn"], capture_output=True, check=True).stdout)
    with LabServer(tmp_path) as lab:
        # For a listening socket, ss shows the backlog in its Send-Q column.
        listing = subprocess.run(["ss", "-ltnH", f"sport = :{lab.port}"], capture_output=True, text=True, check=True)
    backlogs = {int(line.split()[2]) for line in listing.stdout.splitlines()}
    assert backlogs == {min(LISTEN_BACKLOG, cap)}, listing.stdout  # aiohttp's default: 128


def test_tune_gc_makes_only_full_collections_rarer() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (before[0], before[1], FULL_GC_AFTER)
        assert FULL_GC_AFTER > 10  # Python's default
    finally:
        gc.set_threshold(*before)
