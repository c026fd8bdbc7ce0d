"""Committed notebooks read well without a kernel: every live widget has a static snapshot.

Where no widget manager runs (GitHub, nbviewer, an untrusted notebook in JupyterLab), a
widget output shows its ``text/html``. tools/build_notebooks.py adds that HTML, drawn
from the widget's final state, which it also saves as the notebook's widget metadata.
This checks, without a kernel, that every widget output in every committed notebook has
a snapshot, that the snapshot is the drawing of the saved state, and that the saved state
is not the widget's empty initial one ("nobody connected yet"); and that strict nbval,
through conftest.py at the repository root, leaves exactly those snapshots out.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> ModuleType:
    """tools/ is not a package, and the root conftest.py is not importable by name from here."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load("build_notebooks", ROOT / "tools" / "build_notebooks.py")
root_conftest = _load("root_conftest", ROOT / "conftest.py")

NOTEBOOKS = sorted(builder.NOTEBOOKS.glob("*.ipynb"))
WITH_WIDGETS = [path for path in NOTEBOOKS if builder.widget_outputs(builder.read_notebook(path))]

# What each live widget shows before anything happened: a snapshot containing any of these
# was taken too early (or from a state the background renders never reached).
EMPTY_STATE = {
    "Dashboard(live view of the lab server)": [
        'data-testid="connections">0<',
        "nobody connected yet",
        "no message routed yet",
    ],
    "FrameInspector(live view of captured frames)": ["no frame captured yet"],
    "ClusterBoard(live view of which node each socket is on)": ["down (or not watched)"],
    "ReactionsBoard: each post's viewers, last seq and reaction counts, and the service's totals (live)": [
        "0 connections, 0 reactions stored"
    ],
}


PROGRESS = "Progress: "  # a Progress bar's repr is its description, one per cell


def _empty_markers(kind: str) -> list[str]:
    if kind.startswith(PROGRESS):
        return ['<progress value="0.0"']  # a bar that never moved
    return EMPTY_STATE[kind]


def _snapshots(path: Path) -> list[tuple[int, Any]]:
    return builder.widget_outputs(builder.read_notebook(path))


def test_the_lessons_with_live_widgets_are_found() -> None:
    assert {path.stem for path in WITH_WIDGETS} >= {"00_welcome", "03_frames"}


@pytest.mark.parametrize("path", WITH_WIDGETS, ids=lambda path: path.stem)
def test_every_widget_output_has_the_snapshot_of_its_saved_final_state(path: Path) -> None:
    notebook = builder.read_notebook(path)
    states = builder.saved_widget_states(notebook)
    for index, output in builder.widget_outputs(notebook):
        model_id = output.data[builder.WIDGET_VIEW]["model_id"]
        assert model_id in states, f"cell {index}: its widget's state is not saved in the notebook"
        snapshot = output.data.get("text/html")
        assert snapshot is not None, f"cell {index}: no text/html snapshot; rebuild {path.name}"
        assert snapshot == builder.widget_snapshot_html(model_id, states), f"cell {index}: not the saved state"


@pytest.mark.parametrize("path", WITH_WIDGETS, ids=lambda path: path.stem)
def test_no_snapshot_shows_an_empty_initial_state(path: Path) -> None:
    for index, output in _snapshots(path):
        shown = output.data["text/html"]
        kind = output.data["text/plain"]
        assert kind in EMPTY_STATE or kind.startswith(PROGRESS), (
            f"cell {index}: a widget this test does not know ({kind}): add its empty state"
        )
        early = [marker for marker in _empty_markers(kind) if marker in shown]
        assert not early, f"cell {index} ({kind}) shows its empty initial state: {early}"


def test_the_dashboard_snapshot_shows_connections_users_and_messages() -> None:
    (index, output), *_ = _snapshots(builder.NOTEBOOKS / "00_welcome.ipynb")
    shown = output.data["text/html"]
    for testid in ("connections", "users", "user-row", "socket-chip", "flow", "flow-item"):
        assert f'data-testid="{testid}"' in shown, testid


def test_the_inspector_snapshot_shows_its_frames() -> None:
    (index, output), *_ = _snapshots(builder.NOTEBOOKS / "03_frames.ipynb")
    assert output.data["text/html"].count('data-testid="frame-row"') >= 5


# ------------------------------------------------------------ the snapshot drawing ----


def _state(name: str, layout: dict[str, Any] | None = None, **state: Any) -> dict[str, Any]:
    return {"model_name": name, "state": state | ({"layout": "IPY_MODEL_L"} if layout is not None else {})}


def test_a_snapshot_draws_boxes_html_labels_and_controls_and_skips_hidden_widgets() -> None:
    states = {
        "root": _state("VBoxModel", children=["IPY_MODEL_html", "IPY_MODEL_row", "IPY_MODEL_gone"]),
        "html": _state("HTMLModel", value="<b>20</b> open connections"),
        "row": _state("HBoxModel", children=["IPY_MODEL_label", "IPY_MODEL_button", "IPY_MODEL_pick"]),
        "label": _state("LabelModel", value="a < b"),
        "button": _state("ButtonModel", description="add 10 users"),
        "pick": _state("DropdownModel", description="connection", _options_labels=["s_1", "s_2"], index=1),
        "gone": _state("HTMLModel", layout={}, value="never shown"),
        "L": _state("LayoutModel", display="none"),
    }
    html = builder.widget_snapshot_html("root", states)
    assert html.startswith(builder.SNAPSHOT_START) and html.endswith("</div>")
    assert "<b>20</b> open connections" in html
    assert "a &lt; b" in html
    assert '<button type="button" disabled>add 10 users</button>' in html
    assert "connection <select disabled><option>s_2</option>" in html
    assert "never shown" not in html
    assert builder.SNAPSHOT_NOTE in html


def test_the_builder_refuses_a_widget_output_whose_state_was_never_reported() -> None:
    notebook = builder.read_notebook(WITH_WIDGETS[0])
    with pytest.raises(RuntimeError, match="never reported its state"):
        builder.save_final_widget_states(notebook, {})


# ------------------------------------------------------------- what nbval compares ----


def _widget_cell(path: Path) -> NotebookNode:
    notebook = builder.read_notebook(path)
    index, _ = builder.widget_outputs(notebook)[0]
    cell: NotebookNode = notebook.cells[index]
    return cell


def test_nbval_compares_a_widget_output_as_before_the_snapshot() -> None:
    cell = _widget_cell(WITH_WIDGETS[0])
    other_outputs = copy.deepcopy([o for o in cell.outputs if builder.WIDGET_VIEW not in o.get("data", {})])
    assert root_conftest.SNAPSHOT_START == builder.SNAPSHOT_START
    assert root_conftest.drop_widget_snapshots(cell.outputs) == 1
    widget = next(o for o in cell.outputs if builder.WIDGET_VIEW in o.get("data", {}))
    assert set(widget.data) == {builder.WIDGET_VIEW, "text/plain"}  # what a live run displays
    assert [o for o in cell.outputs if builder.WIDGET_VIEW not in o.get("data", {})] == other_outputs


def test_nbval_still_compares_html_that_is_not_a_widget_snapshot() -> None:
    outputs = [
        {"data": {"text/html": "<b>an HTML result</b>", "text/plain": "x"}},
        {"data": {builder.WIDGET_VIEW: {"model_id": "m"}, "text/html": "<div>the widget's own HTML</div>"}},
    ]
    kept = copy.deepcopy(outputs)
    assert root_conftest.drop_widget_snapshots(outputs) == 0
    assert outputs == kept
