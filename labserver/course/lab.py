"""``start_lab()``: the one call every lesson begins with.

It starts the lab server as a child of the notebook kernel (or reuses the one
already running with the same options), waits until it is ready, and returns a
:class:`LabServer` handle: the process (a :class:`~labserver.launcher.LabProcess`)
plus blocking REST calls to it (a :class:`~labserver.course.rest_client.RestClient`).
The child dies with the kernel, even if the kernel is killed, on every OS: it
exits when the pipe the kernel holds as its stdin closes (see :mod:`labserver.launcher`).

When JupyterLab runs remotely (JupyterHub, Binder) the browser cannot reach
``127.0.0.1:PORT`` on the server; :attr:`LabServer.browser_url` then goes through
jupyter-server-proxy at ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/``.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Literal, Protocol

from ..launcher import LabProcess
from .rest_client import DEFAULT_PASSWORD, Account, RestClient

__all__ = ["LabLike", "LabServer", "proxy_prefix", "start_lab", "stop_lab"]


class LabLike(Protocol):
    """What the toolkit's clients need of a lab: where it is, and a way to get an account.

    The handle :func:`start_lab` returns fits, and so does any object with these three
    (a test's stand-in, a lab on another machine)."""

    @property
    def url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...

    def account(self, username: str, password: str = ...) -> Account: ...


def proxy_prefix() -> str | None:
    """The URL prefix of jupyter-server-proxy when running behind JupyterHub/Binder."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    return None if prefix is None else prefix.rstrip("/") + "/"


class LabServer(LabProcess):
    """A running lab server, as a lesson sees it: the process, and blocking REST calls to it.

    (Not to be confused with :class:`labserver.lab.Lab`, the server's own core object.)
    """

    @property
    def rest(self) -> RestClient:
        """Blocking REST calls to this server; the methods below are its, for one-word calls in cells."""
        return RestClient(self.url, self.admin_token)

    @property
    def browser_url(self) -> str:
        """Where a browser (the student's) reaches the lab: direct, or through the Jupyter proxy."""
        prefix = proxy_prefix()
        return self.url + "/" if prefix is None else f"{prefix}proxy/{self.port}/"

    # --- REST, through self.rest ----------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """See :meth:`RestClient.request`: ``(status, decoded body)``, error statuses included."""
        return self.rest.request(method, path, body, token, headers)

    def account(self, username: str, password: str = DEFAULT_PASSWORD) -> Account:
        """Sign up ``username``, or log in if it exists already."""
        return self.rest.account(username, password)

    def health(self) -> dict[str, Any]:
        """GET /healthz: ``status``, ``uptime_s`` and the server's counters."""
        return self.rest.health()

    def users(self) -> list[dict[str, Any]]:
        """Every user with ``online`` and the number of open ``sockets`` (GET /api/users)."""
        return self.rest.users()

    def user(self, username: str) -> dict[str, Any]:
        """One entry of :meth:`users`, by username."""
        return self.rest.user(username)

    def drop(self, socket_id: str, mode: Literal["abort", "close"] = "abort") -> dict[str, Any]:
        """Drop one connection server-side (``abort``, as a network failure would, or ``close``)."""
        return self.rest.drop(socket_id, mode)

    # --- display ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LabServer {state} at {self.url or '(not started)'}>"

    def _repr_html_(self) -> str:
        if not self.running:
            return "<b>Lab server stopped.</b>"
        return (
            f"<b>Lab server running</b> at <code>{self.url}</code> "
            f"(WebSocket <code>{self.ws_url}</code>; browser client "
            f'<a href="{self.browser_url}" target="_blank">{self.browser_url}</a>)'
        )


_running: dict[str, Any] = {"lab": None, "key": None}


def start_lab(**options: Any) -> LabServer:
    """Start the lab server (or reuse the running one if ``options`` are the same).

    ``options`` are the server's flags in Python spelling, e.g.
    ``start_lab(ping_interval=5, typing_ttl=2)``; ``data_dir`` keeps data between
    runs (default: a fresh temporary directory per lab).
    """
    key = repr(sorted(options.items()))
    lab: LabServer | None = _running["lab"]
    if lab is not None and lab.running and _running["key"] == key:
        return lab
    if lab is not None:
        lab.close()
    if proxy_prefix() is not None:
        # Behind jupyter-server-proxy the browser's Origin is the Jupyter host.
        options.setdefault("origin", ["*"])
    lab = LabServer(options.pop("data_dir", None), admin_token=secrets.token_urlsafe(16), **options)
    lab.start()
    _running.update(lab=lab, key=key)
    return lab


def stop_lab() -> None:
    """Stop the running lab server, if any."""
    lab: LabServer | None = _running["lab"]
    if lab is not None:
        lab.close()
    _running.update(lab=None, key=None)
