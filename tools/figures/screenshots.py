#!/usr/bin/env python3
"""Take the README's two screenshots again, in headless Chromium:

* ``images/00_welcome_dashboard.png``: lesson 00 in a real JupyterLab, its dashboard live
  (tests/test_jupyterlab.py);
* ``images/browser_client.png``: the lab's browser client, two users chatting, a post liked
  live, the wire panel (tests/test_browser_client.py::test_notifications_and_readme_screenshot).

Those tests take the pictures on every run, into a temporary directory; this script runs
just them with ``LABSERVER_WRITE_FIGURES=1``, which points them at images/ instead. It
needs Chromium (``apt-get install chromium``) and fails, rather than skipping, without it.

    .venv/bin/python tools/figures/screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = {
    ROOT / "images" / "00_welcome_dashboard.png": "tests/test_jupyterlab.py",
    ROOT / "images" / "browser_client.png": "tests/test_browser_client.py::test_notifications_and_readme_screenshot",
}


def main() -> None:
    started = time.time()
    env = {**os.environ, "LABSERVER_WRITE_FIGURES": "1", "CI": "true"}  # CI=true: no Chromium fails, never skips
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SCREENSHOTS.values()]
    if subprocess.run(command, cwd=ROOT, env=env).returncode != 0:
        sys.exit("the screenshot tests failed; images/ may be partly updated")
    stale = [path for path in SCREENSHOTS if not path.exists() or path.stat().st_mtime < started]
    if stale:
        sys.exit(f"not rewritten: {', '.join(str(path.relative_to(ROOT)) for path in stale)}")
    for path in SCREENSHOTS:
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
