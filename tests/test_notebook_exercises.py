"""Every committed lesson leaves its exercises to the student: each answer cell holds a
placeholder, so its verdict is "not attempted" (never a spoiler, never an error)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from labserver.course.exercises import Status

from .conftest import answer_cells

LESSONS = {  # notebook -> its exercise module and how many answer cells it has
    "00_welcome.ipynb": ("lesson00", 3),
    "01_polling_vs_push.ipynb": ("lesson01", 3),
    "02_the_upgrade_handshake.ipynb": ("lesson02", 3),
    "03_frames.ipynb": ("lesson03", 6),
}


@pytest.mark.parametrize("notebook", sorted(LESSONS))
def test_answer_cells_hold_placeholders(notebook: str) -> None:
    module, count = LESSONS[notebook]
    ex = importlib.import_module(f"labserver.course.exercises.{module}")
    cells = answer_cells(notebook)
    assert len(cells) == count
    for source in cells:
        namespace: dict[str, Any] = {"ex": ex}
        exec(source.replace("ex.q", "verdict = ex.q"), namespace)
        assert namespace["verdict"].status is Status.NOT_ATTEMPTED, source
