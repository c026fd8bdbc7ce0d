"""``start_lab()``: the one call every lesson begins with.

It starts the lab server as a child of the notebook kernel (or reuses the one
already running with the same options), waits until it is ready, and returns a
:class:`LabServer` handle: the process (a :class:`~labserver.launcher.LabProcess`)
plus blocking REST calls to it (a :class:`~labserver.course.rest_client.RestClient`).
The child dies with the kernel, even if the kernel is killed, on every OS: it
exits when the pipe the kernel holds as its stdin closes (see :mod:`labserver.launcher`).

When JupyterLab runs remotely (JupyterHub, Binder) the browser cannot reach
``127.0.0.1:PORT`` on the server; :attr:`LabServer.browser_url` then goes through
jupyter-server-proxy at ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/``. When a part
the browser needs is missing (that proxy behind a hub, the widgets' JupyterLab
extension in a kernel), :func:`start_lab` says so once, in one line, and goes on.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from ..launcher import LabProcess
from ..resources import raise_open_files_limit
from .classroom import ClassControls, joined_lab, make_join_code, private_lab, say_once
from .rest_client import DEFAULT_PASSWORD, Account, RestClient

__all__ = ["LabLike", "LabServer", "frontend_warnings", "proxy_prefix", "start_lab", "stop_lab"]


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


class LabServer(ClassControls, LabProcess):
    """A running lab server, as a lesson sees it: the process, and blocking REST calls to it.

    With ``certfile=`` and ``keyfile=`` (PEM files) it serves TLS: :attr:`url` is ``https://``,
    :attr:`ws_url` ``wss://``. ``cafile=`` (not a server flag) is the CA the toolkit's own
    calls trust for it (:attr:`ssl_context`); without it, the system's CAs.

    (Not to be confused with :class:`labserver.lab.Lab`, the server's own core object.)
    """

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, *, admin_token: str | None = None, **options: Any
    ) -> None:
        self.cafile: str | os.PathLike[str] | None = options.pop("cafile", None)  # ours, not a server flag
        super().__init__(data_dir, admin_token=admin_token, **options)

    @property
    def tls(self) -> bool:
        """True when the server speaks TLS (started with ``certfile``/``keyfile``)."""
        return "certfile" in self.options

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context that verifies this server (None for a plain one): pass it as
        ``ssl=`` to ``websockets.connect`` or aiohttp."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=None if self.cafile is None else os.fspath(self.cafile))

    @property
    def rest(self) -> RestClient:
        """Blocking REST calls to this server; the methods below are its, for one-word calls in cells."""
        return RestClient(self.url, self.admin_token, ssl_context=self.ssl_context, join_code=self.join_code)

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

    def drop(
        self,
        socket_id: str,
        mode: Literal["abort", "close"] = "abort",
        code: int | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Drop one connection server-side: ``abort`` it, as a network failure would (the client
        sees 1006), or ``close`` it with a close frame: ``code`` 1000 (the default) or an
        application code 4000-4999, and a ``reason`` of at most 123 bytes, e.g.
        ``lab.drop(sid, mode="close", code=4001, reason="kicked by the instructor")``."""
        if code is None and reason is None:
            return self.rest.drop(socket_id, mode)
        if not self.admin_token:
            raise RuntimeError("start the lab with an admin_token to drop connections")
        query = {"mode": mode, **({"code": str(code)} if code is not None else {})}
        if reason is not None:
            query["reason"] = reason
        path = f"/api/admin/sockets/{urllib.parse.quote(socket_id)}/close?{urllib.parse.urlencode(query)}"
        status, body = self.request("POST", path, headers={"X-Admin-Token": self.admin_token})
        if status == 400 and isinstance(body, dict):
            raise ValueError(body.get("message", body))
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"could not drop {socket_id}: {status} {body}")
        return body

    # --- live switches (PROTOCOL.md section 11) -----------------------------------------------

    def switches(self) -> dict[str, Any]:
        """The lab's live switches, e.g. ``{"ping_interval": 20.0, "presence_grace": 0.0, ...}``."""
        return self._admin_call("GET", "/api/admin/switches", None)

    def set_switches(self, **changes: Any) -> dict[str, Any]:
        """Change some switches while the lab runs, all or none, and return the whole new set:
        ``lab.set_switches(presence_grace=2)``. A bad name or value raises ValueError (nothing changes)."""
        return self._admin_call("PATCH", "/api/admin/switches", changes)

    def _admin_call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        if not self.admin_token:
            raise RuntimeError("start the lab with an admin_token to use the admin API")
        status, answer = self.request(method, path, body, headers={"X-Admin-Token": self.admin_token})
        if status == 400 and isinstance(answer, dict):
            raise ValueError(answer.get("message", answer))
        if status != 200 or not isinstance(answer, dict) or "switches" not in answer:
            raise RuntimeError(f"{method} {path} failed: {status} {answer}")
        switches: dict[str, Any] = answer["switches"]
        return switches

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


# --- what the student's browser needs besides the lab ------------------------------------------


# Where each Jupyter part the browser needs leaves a file that a kernel in another
# environment than JupyterLab's can still see: (Jupyter config or data path, file).
_FOOTPRINTS = {
    "jupyter_server_proxy": ("config", "jupyter_server_config.d/jupyter-server-proxy.json"),
    "jupyterlab_widgets": ("data", "labextensions/@jupyter-widgets/jupyterlab-manager"),
}


def installed(module: str) -> bool:
    """True if ``module`` is importable here, or its footprint is in a Jupyter path this kernel sees.

    A hub's JupyterLab may run from an environment this kernel cannot see, hence warnings
    that say "not found", and a part missing only there goes unsaid.
    """
    if importlib.util.find_spec(module) is not None:
        return True
    try:
        from jupyter_core.paths import jupyter_config_path, jupyter_path
    except ImportError:
        return False
    kind, footprint = _FOOTPRINTS.get(module, ("", ""))
    dirs = jupyter_config_path() if kind == "config" else jupyter_path() if kind == "data" else []
    return any(Path(d, footprint).exists() for d in dirs)


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel, where widgets are shown by the browser (not in a script or a test)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def frontend_warnings(env: Mapping[str, str], has: Callable[[str], bool], in_kernel: bool) -> list[str]:
    """One line for each part of Jupyter the browser will miss, and what that breaks."""
    warnings = []
    if env.get("JUPYTERHUB_SERVICE_PREFIX") is not None and not has("jupyter_server_proxy"):
        warnings.append(
            "jupyter-server-proxy not found: behind this JupyterHub the lab's browser client link "
            "(lab.browser_url, .../proxy/PORT/) will not open; install it where JupyterLab runs "
            "(pip install jupyter-server-proxy) and restart your server."
        )
    if in_kernel and not has("jupyterlab_widgets"):
        warnings.append(
            "the widgets' JupyterLab extension (jupyterlab_widgets) not found: the live dashboard "
            "will not show; install it where JupyterLab runs (pip install jupyterlab_widgets) and reload the page."
        )
    return warnings


_warned: set[str] = set()


def _warn_once_about_the_frontend() -> None:
    for warning in frontend_warnings(os.environ, installed, in_jupyter_kernel()):
        if warning not in _warned:
            _warned.add(warning)
            print(f"Warning: {warning}", file=sys.stderr, flush=True)


_running: dict[str, Any] = {"lab": None, "key": None}


def start_lab(*, class_mode: bool = False, private: str | None = None, **options: Any) -> LabServer:
    """Start the lab server (or reuse the running one if ``options`` are the same).

    ``options`` are the server's flags in Python spelling, e.g.
    ``start_lab(ping_interval=5, typing_ttl=2)``; ``data_dir`` keeps data between
    runs (default: a fresh temporary directory per lab). ``certfile`` and ``keyfile``
    serve TLS (``https://``, ``wss://``), ``cafile`` is the CA the handle's calls trust.

    ``class_mode=True`` starts the instructor's lab for a class: a fresh ``join_code`` (unless
    given), on ``host`` (loopback unless asked: ``host="0.0.0.0"`` for the room's LAN, which the
    server warns about in one line); the handle's ``student_url``, ``join_code`` and ``live_url``
    are what to show. After ``join_lab()`` (a student) it returns the class's shared lab instead.

    ``private="why"`` is for a lesson (or a part) that floods, breaks or restarts the server, or
    needs its admin powers: in a class it is :func:`~labserver.course.classroom.private_lab`, a
    lab of this kernel's own, with a one-line note naming ``why``; outside a class it changes nothing.
    """
    shared = joined_lab()
    if shared is not None and private is not None:
        own: LabServer = private_lab(private, **options)
        return own
    if shared is not None:
        if options or class_mode:
            say_once(
                f"In class: start_lab() uses the instructor's lab at {shared.url}; "
                f"the options {', '.join(sorted(options)) or 'class_mode'} are the instructor's to set."
            )
        return shared  # type: ignore[return-value]  # a LabServer as far as a lesson's calls go
    if class_mode:
        options.setdefault("join_code", make_join_code())
    _warn_once_about_the_frontend()
    # Every socket is a file (a macOS shell allows 256): raised before the server starts, which inherits it.
    raise_open_files_limit()
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
    # Bound to every interface: the handle's own calls go through loopback (Windows can't connect to 0.0.0.0).
    lab.url = lab.url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
    _running.update(lab=lab, key=key)
    return lab


def stop_lab() -> None:
    """Stop the running lab server, if any."""
    lab: LabServer | None = _running["lab"]
    if lab is not None:
        lab.close()
    _running.update(lab=None, key=None)
