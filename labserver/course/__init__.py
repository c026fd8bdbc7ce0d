"""The notebook toolkit: everything a lesson imports.

``start_lab()`` runs the lab server; ``LabClient`` is a reconnecting asyncio
client; ``Crowd`` simulates many users; ``Dashboard`` shows the server live;
``labserver.course.exercises`` holds the checked exercises of each lesson.
"""

from __future__ import annotations

from .lab import Account, Lab, LabStartError, start_lab, stop_lab

__all__ = ["Account", "Lab", "LabStartError", "start_lab", "stop_lab"]
