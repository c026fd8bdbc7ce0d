"""How strict nbval reads the committed notebooks (loaded for every pytest run in this repository).

A committed notebook's widget output carries, besides the widget view and its text/plain
repr, a static ``text/html`` snapshot of the widget's final state, which
tools/build_notebooks.py adds so that GitHub and nbviewer show the dashboard as it ended
(tests/test_widget_snapshots.py checks it). A live run cannot produce that snapshot: the
cell displays the widget itself, whose view nbval already leaves out of the comparison
(its model id is random). So, before nbval compares a cell, the snapshot is removed from
the reference outputs; everything else (the text/plain repr, every other output) is
compared as strictly as before. Only HTML that starts like the builder's snapshot, in an
output that shows a widget, is removed.

This lives at the repository root, not in tests/, because nbval also runs on its own:
``pytest notebooks/00_welcome.ipynb``.
"""

from __future__ import annotations

from typing import Any

import pytest
from nbval.plugin import IPyNbCell  # type: ignore[import-untyped]  # no type information shipped

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SNAPSHOT_START = '<div class="widget-snapshot">'  # tools/build_notebooks.py's SNAPSHOT_START


def drop_widget_snapshots(outputs: list[Any]) -> int:
    """Remove the builder's static snapshots from ``outputs`` (in place); how many there were."""
    dropped = 0
    for output in outputs:
        data = output.get("data", {})
        if WIDGET_VIEW in data and str(data.get("text/html", "")).startswith(SNAPSHOT_START):
            del data["text/html"]
            dropped += 1
    return dropped


def pytest_itemcollected(item: pytest.Item) -> None:
    if isinstance(item, IPyNbCell):
        drop_widget_snapshots(item.cell.get("outputs", []))
