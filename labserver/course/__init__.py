"""The notebook toolkit: everything a lesson imports.

``start_lab()`` runs the lab server and returns its ``LabServer`` handle;
``RestClient`` makes blocking REST calls to a lab; ``LabClient`` is a reconnecting asyncio
client; ``Crowd`` simulates many users; ``Dashboard`` shows the server live; ``Progress`` is the bar of a long cell;
``labserver.course.exercises`` holds the checked exercises of each lesson.
Widgets are imported on first use, so code without ipywidgets still imports this.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..launcher import LabStartError
from .lab import LabLike, LabServer, start_lab, stop_lab
from .rest_client import Account, RestClient

_LAZY = {
    "LabClient": ".client",
    "LabError": ".client",
    "Crowd": ".crowd",
    "Dashboard": ".dashboard",
    "ObservedState": ".observed",
    "FrameInspector": ".frame_inspector",
    "Progress": ".progress",
}

__all__ = ["Account", "LabLike", "LabServer", "LabStartError", "RestClient", "start_lab", "stop_lab"]
__all__ += list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
