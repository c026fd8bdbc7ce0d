"""``start_lab()``: the one call every lesson begins with.

It starts the lab server as a child of the notebook kernel (or reuses the one
already running with the same options), waits until it is ready, and returns a
:class:`Lab` handle. The child dies with the kernel: on Linux through
``PR_SET_PDEATHSIG`` (even if the kernel is killed), elsewhere through ``atexit``.

When JupyterLab runs remotely (JupyterHub, Binder) the browser cannot reach
``127.0.0.1:PORT`` on the server; :attr:`Lab.browser_url` then goes through
jupyter-server-proxy at ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/``.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from ..launcher import Account, LabProcess, LabStartError

__all__ = ["Account", "Lab", "LabStartError", "start_lab", "stop_lab", "proxy_prefix"]


def proxy_prefix() -> str | None:
    """The URL prefix of jupyter-server-proxy when running behind JupyterHub/Binder."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    return None if prefix is None else prefix.rstrip("/") + "/"


class Lab(LabProcess):
    """A running lab server, as a lesson sees it."""

    @property
    def browser_url(self) -> str:
        """Where a browser (the student's) reaches the lab: direct, or through the Jupyter proxy."""
        prefix = proxy_prefix()
        return self.url + "/" if prefix is None else f"{prefix}proxy/{self.port}/"

    def users(self) -> list[dict[str, Any]]:
        """Every user with ``online`` and the number of open ``sockets`` (GET /api/users)."""
        status, body = self.request("GET", "/api/users", headers={"X-Admin-Token": self.admin_token or ""})
        if status != 200:
            raise RuntimeError(f"/api/users answered {status}: {body}")
        return body["users"]

    def user(self, username: str) -> dict[str, Any]:
        for user in self.users():
            if user["username"].lower() == username.lower():
                return user
        raise KeyError(username)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Lab {state} at {self.url or '(not started)'}>"

    def _repr_html_(self) -> str:
        if not self.running:
            return "<b>Lab server stopped.</b>"
        return (
            f"<b>Lab server running</b> at <code>{self.url}</code> "
            f"(WebSocket <code>{self.ws_url}</code>; browser client "
            f'<a href="{self.browser_url}" target="_blank">{self.browser_url}</a>)'
        )


_running: dict[str, Any] = {"lab": None, "key": None}


def start_lab(**options: Any) -> Lab:
    """Start the lab server (or reuse the running one if ``options`` are the same).

    ``options`` are the server's flags in Python spelling, e.g.
    ``start_lab(ping_interval=5, typing_ttl=2)``; ``data_dir`` keeps data between
    runs (default: a fresh temporary directory per lab).
    """
    key = repr(sorted(options.items()))
    lab: Lab | None = _running["lab"]
    if lab is not None and lab.running and _running["key"] == key:
        return lab
    if lab is not None:
        lab.close()
    if proxy_prefix() is not None:
        # Behind jupyter-server-proxy the browser's Origin is the Jupyter host.
        options.setdefault("origin", ["*"])
    lab = Lab(options.pop("data_dir", None), admin_token=secrets.token_urlsafe(16), **options)
    lab.start()
    _running.update(lab=lab, key=key)
    return lab


def stop_lab() -> None:
    """Stop the running lab server, if any."""
    lab: Lab | None = _running["lab"]
    if lab is not None:
        lab.close()
    _running.update(lab=None, key=None)

