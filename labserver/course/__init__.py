"""The notebook toolkit: everything a lesson imports.

``start_lab()`` runs the lab server; ``LabClient`` is a reconnecting asyncio
client; ``Crowd`` simulates many users; ``Dashboard`` shows the server live;
``labserver.course.exercises`` holds the checked exercises of each lesson.
Widgets are imported on first use, so code without ipywidgets still imports this.
"""

from __future__ import annotations

import importlib
from typing import Any

from .lab import Account, Lab, LabStartError, start_lab, stop_lab

_LAZY = {
    "LabClient": ".client",
    "LabError": ".client",
    "Crowd": ".crowd",
    "Dashboard": ".dashboard",
    "ObservedState": ".observed",
    "FrameInspector": ".frame_inspector",
}

__all__ = ["Account", "Lab", "LabStartError", "start_lab", "stop_lab", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
