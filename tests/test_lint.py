"""Lint, format and type checks are part of the suite: `pytest` and `.ci/run` run them like any test.

Each runs the tool as a subprocess with the settings in pyproject.toml ([tool.ruff],
[tool.mypy]: --strict on the server), so the same command works by hand:
`.venv/bin/ruff check .`, `.venv/bin/ruff format --check .`, `.venv/bin/mypy`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> None:
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"`{' '.join(args[2:])}` failed:\n{output[-6000:]}"


@pytest.mark.timeout(600)
def test_ruff_finds_nothing() -> None:
    _run(sys.executable, "-m", "ruff", "check", "--no-cache", ".")


@pytest.mark.timeout(600)
def test_the_code_is_formatted() -> None:
    _run(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".")


@pytest.mark.timeout(600)
def test_mypy_finds_nothing() -> None:
    _run(sys.executable, "-m", "mypy")
