"""The lessons in a real JupyterLab, driven by Playwright in Debian's Chromium.

JupyterLab runs headless on a free port over a *copy* of the notebooks and images
(running them autosaves outputs, which must not touch the committed ones). One test runs
the welcome lesson cell by cell and watches the dashboard's connection count rise as the
crowd grows; its screenshot (images/00_welcome_dashboard.png in the README) goes to
``tmp_path``, or into images/ with ``LABSERVER_WRITE_FIGURES=1`` (what ``python3 course.py
figures`` sets). Another runs every lesson to the end and finds each widget it displays
rendered as a live view, not as "Error displaying widget" or a text fallback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import SOAK, figure_path, launch_chromium, require_browser, running_jupyter

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(path.name for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Lessons whose widgets all render in lighter lessons too (Progress, Dashboard: 00, 05, 06) and
# that take long to run again here (nbval runs each whole anyway): only with LABSERVER_SOAK=1.
LONG = {"01": "a thousand pollers, 62 s", "04": "kills and restarts, 40 s", "07": "thousands of sockets, 57 s"}


def lesson_param(notebook: str) -> Any:
    long = LONG.get(notebook[:2])
    skip = pytest.mark.skipif(not SOAK, reason=f"{long}; its widgets render in 00, 05, 06; LABSERVER_SOAK=1 runs it")
    return pytest.param(notebook, marks=[skip] if long else [], id=notebook)


require_browser()

import playwright.sync_api as sync_api  # noqa: E402


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("jlab")
    # The repository's layout: lessons show figures from ../images.
    (workdir / "notebooks").mkdir()
    for notebook in LESSONS:
        shutil.copy(ROOT / "notebooks" / notebook, workdir / "notebooks")
    shutil.copytree(ROOT / "images", workdir / "images")
    settings = workdir / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    # Render every cell (no virtual scrolling, so the dashboard is in the DOM) and ask no news.
    for extension, name, value in [
        ("notebook-extension", "tracker", {"windowingMode": "none"}),
        ("apputils-extension", "notification", {"fetchNews": "false"}),
    ]:
        (settings / extension).mkdir(parents=True, exist_ok=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(value))
    with running_jupyter(
        workdir,
        ["jupyter", "lab"],
        f"--notebook-dir={workdir}",
        "--LabApp.news_url=",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: its commands say when a cell has run
    ) as (base, token):
        yield f"{base}/lab/workspaces/{{workspace}}/tree/notebooks/{{notebook}}?reset&token={token}", workdir


def _connections(page: Page) -> int | None:
    # Read in one evaluate: the dashboard re-renders its counter several times a second, so
    # an element handle taken now may be detached by the time it is read.
    text = page.evaluate("""() => document.querySelector('[data-testid="connections"]')?.innerText ?? null""")
    if text is None:
        return None
    text = text.strip().replace(",", "")
    return int(text) if text.isdigit() else None


def _wait_for_the_kernel(page: Page) -> None:
    """Until the notebook's kernel has answered a kernel_info request: its cells can run."""
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel", timeout=60_000
    )
    page.evaluate("""async () => {
        const context = window.jupyterapp.shell.currentWidget.sessionContext;
        await context.ready;
        await context.session.kernel.info;
    }""")


def _run_cell_and_select_next(page: Page) -> bool:
    """What Shift+Enter does, through the command it is bound to: its promise resolves once
    the cell has run (to true unless it raised)."""
    return bool(page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell-and-select-next')"))


def test_welcome_lesson_runs_and_the_dashboard_goes_live(jupyterlab: tuple[str, Path], tmp_path: Path) -> None:
    """Run the lesson cell by cell, as a student does, reading the dashboard after each."""
    url = jupyterlab[0].format(workspace="welcome", notebook="00_welcome.ipynb")
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        _wait_for_the_kernel(page)
        page.click(".jp-Notebook .jp-Cell >> nth=0")
        seen: list[int] = []
        for cell in range(40):  # far more cells than it takes; stops once the crowd is in
            assert _run_cell_and_select_next(page), f"cell {cell} failed"
            count = _connections(page)
            if count is not None:
                seen.append(count)
            if seen and max(seen) >= 20 and seen[0] < max(seen):
                break
        assert seen, "the dashboard never rendered in the browser"
        assert seen[0] == 0 and max(seen) >= 20, f"connection counts seen after each cell: {seen}"
        assert not errors, errors
        # A moment of live traffic, then the picture for the README.
        # Scrolled in one evaluate, for the same reason as _connections reads in one: a
        # handle's "wait until stable" never ends on a counter that re-renders while live.
        assert page.evaluate(
            """() => {
                const counter = document.querySelector('[data-testid="connections"]');
                counter?.scrollIntoView({block: "center"});
                return counter !== null;
            }"""
        )
        page.wait_for_timeout(3000)  # not a wait for something: the picture should show a few seconds of it
        page.screenshot(path=str(figure_path("00_welcome_dashboard.png", tmp_path)))
        browser.close()


# For each code cell: its widget outputs in the notebook model, and how many of them the page
# shows as a live widget view (ipywidgets puts a .jupyter-widgets node in the output; a view that
# failed to render shows "Error displaying widget" or falls back to the text repr instead).
_WIDGET_VIEWS = """() => {
    const cells = window.jupyterapp.shell.currentWidget.content.widgets;
    const report = [];
    cells.forEach((cell, index) => {
        if (cell.model.type !== "code") return;
        let expected = 0;
        for (let k = 0; k < cell.model.outputs.length; k++) {
            const data = cell.model.outputs.get(k).data;
            if (data && data["application/vnd.jupyter.widget-view+json"]) expected++;
        }
        const rendered = [...cell.node.querySelectorAll(".jp-OutputArea-output")].filter(
            (node) => node.querySelector(":scope > .jupyter-widgets")
                && !node.innerText.includes("Error displaying widget")
        ).length;
        if (expected) report.push({index, expected, rendered});
    });
    return report;
}"""


def _run_every_cell(page: Page) -> list[int]:
    """Run the notebook cell by cell as Shift+Enter does; the indexes of the cells that raised.

    Not "run all": the kernel aborts everything queued after a cell that raises, and some
    lessons have cells that raise on purpose (tagged ``raises-exception``)."""
    count = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
    page.click(".jp-Notebook .jp-Cell >> nth=0")
    return [index for index in range(count) if not _run_cell_and_select_next(page)]


def _committed_cells(notebook: str) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    return cells


def _raising_cells(notebook: str) -> list[int]:
    cells = _committed_cells(notebook)
    return [i for i, cell in enumerate(cells) if "raises-exception" in cell.get("metadata", {}).get("tags", [])]


def _committed_widget_outputs(notebook: str) -> int:
    return sum(
        "application/vnd.jupyter.widget-view+json" in output.get("data", {})
        for cell in _committed_cells(notebook)
        for output in cell.get("outputs", [])
    )


@pytest.mark.parametrize("notebook", [lesson_param(n) for n in LESSONS])
def test_every_widget_of_a_lesson_renders_in_jupyterlab(
    notebook: str, jupyterlab: tuple[str, Path], tmp_path: Path
) -> None:
    """Run a whole lesson in JupyterLab and find every widget it displays rendered as a live view,
    with a screenshot of each (in ``tmp_path``: evidence when it fails, not a committed figure)."""
    url = jupyterlab[0].format(workspace=notebook[:2], notebook=notebook)
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        _wait_for_the_kernel(page)
        assert _run_every_cell(page) == _raising_cells(notebook), "cells that raised differ from those tagged"
        report = page.evaluate(_WIDGET_VIEWS)
        for entry in report:
            page.evaluate(
                "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].node.scrollIntoView()",
                entry["index"],
            )
            page.screenshot(path=str(tmp_path / f"{notebook[:2]}_cell{entry['index']:02d}.png"))
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        browser.close()
    shown = sum(entry["expected"] for entry in report)
    assert shown == _committed_widget_outputs(notebook), "the run displayed another number of widgets than committed"
    missing = [entry for entry in report if entry["rendered"] < entry["expected"]]
    assert not missing, f"widget outputs not rendered (cell index, expected, rendered): {missing}"
    assert not errors, errors
