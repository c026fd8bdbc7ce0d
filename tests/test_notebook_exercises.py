"""Every committed lesson leaves its exercises to the student: each answer cell holds a
placeholder, so its verdict is "not attempted" (never a spoiler, never an error)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from typing import Any

import pytest

from labserver.course.exercises import Status

from .conftest import answer_cells

LESSONS = {  # notebook -> its exercise module and how many answer cells it has
    "00_welcome.ipynb": ("lesson00", 6),
    "01_polling_vs_push.ipynb": ("lesson01", 4),
    "02_the_upgrade_handshake.ipynb": ("lesson02", 4),
    "03_frames.ipynb": ("lesson03", 7),
    "04_connection_lifecycle.ipynb": ("lesson04", 6),
    "05_social_features.ipynb": ("lesson05", 6),
    "06_auth_routing_persistence.ipynb": ("lesson06", 7),
    "07_one_loop_many_sockets.ipynb": ("lesson07", 4),
    "08_scaling_out_with_redis.ipynb": ("lesson08", 4),
    "09_socketio_tls_signaling.ipynb": ("lesson09", 4),
    "10_capstone.ipynb": ("lesson10", 5),
}


async def run_cell(source: str, namespace: dict[str, Any]) -> None:
    """Run a cell's source as IPython would, top-level ``await`` included."""
    code = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


@pytest.mark.parametrize("notebook", sorted(LESSONS))
async def test_answer_cells_hold_placeholders(notebook: str) -> None:
    """Live checks too (``await ex.qN.check_async(...)``): with no answer they never reach the lab."""
    module, count = LESSONS[notebook]
    ex = importlib.import_module(f"labserver.course.exercises.{module}")
    cells = answer_cells(notebook)
    assert len(cells) == count
    for source in cells:
        namespace: dict[str, Any] = {"ex": ex}
        await run_cell(re.sub(r"^(await )?ex\.q", r"verdict = \g<0>", source, flags=re.MULTILINE), namespace)
        assert namespace["verdict"].status is Status.NOT_ATTEMPTED, source
