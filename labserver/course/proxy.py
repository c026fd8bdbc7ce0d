"""jupyter-server-proxy entry point: the JupyterLab launcher can start the lab server.

Registered in pyproject.toml under ``jupyter_serverproxy_servers``. Behind the
proxy, browsers reach the lab at ``{base_url}labserver/`` and their Origin is the
Jupyter host, hence ``--origin *`` (the proxy already requires a Jupyter login).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def setup_labserver() -> dict[str, Any]:
    return {
        "command": [
            sys.executable,
            "-m",
            "labserver",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--data-dir",
            str(Path.home() / "lab-data"),
            "--origin",
            "*",
        ],
        "timeout": 30,
        "launcher_entry": {"enabled": True, "title": "WebSocket lab server"},
        "new_browser_tab": True,
    }
