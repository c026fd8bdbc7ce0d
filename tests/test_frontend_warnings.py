"""start_lab() says, once and in one line, which part of Jupyter the student's browser will miss.

Behind a JupyterHub the browser reaches the lab only through jupyter-server-proxy; in a kernel
the dashboard needs the widgets' JupyterLab extension (jupyterlab_widgets). Without either the
lesson still runs, so start_lab() warns and goes on; where nothing is missing it says nothing.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import jupyter_core.paths
import pytest

from labserver.course import lab as lab_module
from labserver.course.lab import frontend_warnings, in_jupyter_kernel, installed, start_lab, stop_lab

HUB = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ann/"}


def everything(module: str) -> bool:
    return True


def nothing(module: str) -> bool:
    return False


def test_nothing_is_said_when_nothing_is_missing() -> None:
    assert frontend_warnings(HUB, everything, in_kernel=True) == []
    assert frontend_warnings({}, everything, in_kernel=True) == []


def test_a_hub_without_the_proxy_loses_the_browser_client_link() -> None:
    (warning,) = frontend_warnings(HUB, lambda m: m != "jupyter_server_proxy", in_kernel=True)
    assert "jupyter-server-proxy" in warning and "browser client link" in warning
    assert "pip install jupyter-server-proxy" in warning
    assert "\n" not in warning


def test_the_proxy_is_not_needed_off_a_hub() -> None:
    assert frontend_warnings({}, lambda m: m != "jupyter_server_proxy", in_kernel=True) == []


def test_a_kernel_without_the_widget_frontend_loses_the_dashboard() -> None:
    (warning,) = frontend_warnings({}, lambda m: m != "jupyterlab_widgets", in_kernel=True)
    assert "jupyterlab_widgets" in warning and "live dashboard will not show" in warning
    assert "\n" not in warning


def test_a_script_shows_no_widgets_so_it_is_not_warned() -> None:
    assert frontend_warnings({}, nothing, in_kernel=False) == []
    assert len(frontend_warnings(HUB, nothing, in_kernel=False)) == 1  # the proxy, still


def test_both_missing_behind_a_hub() -> None:
    warnings = frontend_warnings(HUB, nothing, in_kernel=True)
    assert [("proxy" in w, "dashboard" in w) for w in warnings] == [(True, False), (False, True)]


def test_this_venv_has_both_parts() -> None:
    assert installed("jupyter_server_proxy")
    assert installed("jupyterlab_widgets")
    assert not installed("no_such_jupyter_part")


@pytest.fixture
def not_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a kernel whose environment is not JupyterLab's: the parts cannot be imported."""
    monkeypatch.setattr(lab_module.importlib.util, "find_spec", lambda name: None)


@pytest.mark.usefixtures("not_importable")
def test_a_part_installed_only_where_jupyterlab_runs_is_found_by_its_footprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, data = tmp_path / "etc", tmp_path / "share"
    monkeypatch.setattr(jupyter_core.paths, "jupyter_config_path", lambda: [str(config)])
    monkeypatch.setattr(jupyter_core.paths, "jupyter_path", lambda *sub: [str(data)])
    assert not installed("jupyter_server_proxy")
    assert not installed("jupyterlab_widgets")
    (config / "jupyter_server_config.d").mkdir(parents=True)
    (config / "jupyter_server_config.d" / "jupyter-server-proxy.json").write_text("{}")
    (data / "labextensions" / "@jupyter-widgets" / "jupyterlab-manager").mkdir(parents=True)
    assert installed("jupyter_server_proxy")
    assert installed("jupyterlab_widgets")


def test_in_jupyter_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not in_jupyter_kernel()  # pytest is no kernel
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert in_jupyter_kernel()
    shell.kernel = None  # a terminal IPython
    assert not in_jupyter_kernel()


@pytest.fixture
def fresh_lab_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(lab_module, "_warned", set())
    stop_lab()
    yield
    stop_lab()


@pytest.mark.usefixtures("fresh_lab_state")
def test_start_lab_warns_once_in_one_line_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ann/")
    monkeypatch.setattr(lab_module, "installed", lambda m: m != "jupyter_server_proxy")
    lab = start_lab()
    assert start_lab() is lab
    assert start_lab(typing_ttl=2) is not lab  # a restart: still said only once
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Warning: jupyter-server-proxy not found") and "browser client link" in lines[0]
    assert "Traceback" not in err
    assert start_lab(typing_ttl=2).browser_url.startswith("/user/ann/proxy/")


@pytest.mark.usefixtures("fresh_lab_state")
def test_start_lab_says_nothing_when_nothing_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ann/")
    start_lab()
    assert capsys.readouterr().err == ""
