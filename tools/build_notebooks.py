"""Build the course notebooks from their percent-format sources and execute them in a fresh kernel.

Each notebook is written as ``notebooks/src/NAME.py`` in jupytext's percent format: a
YAML header (commented out) naming the format and the kernel, then ``# %%`` before each
code cell and ``# %% [markdown]`` before each markdown cell, whose lines start with ``# ``.
Cell tags go on the marker line, e.g. ``# %% tags=["nbval-ignore-output"]`` (nbval then
runs the cell without comparing its output; ``nbval-skip`` and ``raises-exception`` work
the same way). Such a file diffs and reviews like code, and since jupytext is installed
with the course, JupyterLab also opens it as a notebook (right-click, Open With, Notebook).
The sources are the lessons, ``NN_topic.py``, and the start page ``index.py``; every one
names the course's kernel, ``websocket-course`` (``python3 course.py kernel`` registers it).

This script reads each source with jupytext into ``notebooks/NAME.ipynb``, gives its
cells stable ids, runs it top to bottom in a fresh kernel with the working directory set
to ``notebooks/``, and saves it with its outputs and widget state, without execution
timestamps: what strict ``pytest --nbval`` then compares against. The committed
notebooks are always executed ones (a notebook without code cells has nothing to run).

Live widgets (the dashboard, the frame inspector) update from background tasks, whose
messages the executing client never sees; so after each cell the builder asks the kernel
for every widget's state, and saves the *final* state in the notebook's widget metadata.
Each widget output also gets a static ``text/html`` snapshot rendered from that state
(:func:`widget_snapshot_html`): what GitHub, nbviewer or an editor without a widget
manager show instead of "nobody connected yet". nbval leaves the snapshot out of its
comparison (see ``conftest.py`` at the repository root): a live run shows the widget.

``--check`` executes nothing and writes nothing: it lists the notebooks whose cells are no
longer what their source gives, the same comparison tests/test_notebook_sources.py makes.

    .venv/bin/python tools/build_notebooks.py            # every notebook
    .venv/bin/python tools/build_notebooks.py 00 03      # those whose names start with these
    .venv/bin/python tools/build_notebooks.py --check    # which notebooks need a rebuild (no kernel)
"""

from __future__ import annotations

import argparse
import ast
import html
import json
import sys
import time
from pathlib import Path
from typing import Any

import jupytext  # type: ignore[import-untyped]  # no type information shipped
import nbformat
from nbclient import NotebookClient
from nbclient.util import ensure_async

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "notebooks" / "src"
NOTEBOOKS = ROOT / "notebooks"
LESSON_PATTERN = "[0-9][0-9]_*.py"
INDEX = SOURCES / "index.py"  # the start page: the syllabus and a link to every lesson

# The kernel every notebook names: the course's venv, registered by `python3 course.py kernel`.
KERNELSPEC = {"name": "websocket-course", "display_name": "WebSocket course", "language": "python"}

# Cell metadata jupytext keeps only to write the text file back byte for byte (blank lines
# around a cell, the marker it had): layout of the .py, not part of the lesson.
TEXT_LAYOUT_METADATA = ("lines_to_next_cell", "lines_to_end_of_cell_marker", "cell_marker")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # an output showing a live widget
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"  # the notebook's saved widget models
# How a static snapshot begins; conftest.py (repository root) drops exactly these from nbval's comparison.
SNAPSHOT_START = '<div class="widget-snapshot">'
SNAPSHOT_NOTE = (
    '<p style="color:#777;font-size:12px;margin:6px 0 0"><em>A snapshot of this live widget as it stood at the end '
    "of the notebook's run. Run the notebook to see it live.</em></p>"
)

# Evaluated in the kernel (as a user expression, so nothing shows in the notebook) after
# each cell: the state of every widget that exists, as JSON text; "{}" if none was ever made.
_WIDGET_STATES_EXPRESSION = (
    "__import__('json').dumps(__import__('sys').modules['ipywidgets'].Widget.get_manager_state()['state']"
    " if 'ipywidgets' in __import__('sys').modules else {})"
)


def lesson_sources() -> list[Path]:
    return sorted(SOURCES.glob(LESSON_PATTERN))


def notebook_sources() -> list[Path]:
    """Every notebook's source: the index first, then the lessons in order."""
    return [INDEX, *lesson_sources()]


def notebook_path(source: Path) -> Path:
    return NOTEBOOKS / (source.stem + ".ipynb")


def read_notebook(path: Path) -> nbformat.NotebookNode:
    notebook: nbformat.NotebookNode = nbformat.read(path, as_version=4)
    return notebook


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    """The notebook ``source`` describes, before execution: its cells and kernelspec."""
    notebook: nbformat.NotebookNode = jupytext.reads(source.read_text(encoding="utf-8"), fmt="py:percent")
    if "kernelspec" not in notebook.metadata:
        raise ValueError(f"{source}: no kernelspec; start the file with the jupytext header the other lessons have")
    if dict(notebook.metadata["kernelspec"]) != KERNELSPEC:
        raise ValueError(
            f"{source}: its header names the kernel {dict(notebook.metadata['kernelspec'])}; every notebook runs on "
            f"the course's kernel {KERNELSPEC}"
        )
    notebook.metadata.pop("jupytext", None)  # how the .py is written: no business of the .ipynb
    notebook.metadata["language_info"] = {"name": notebook.metadata["kernelspec"].get("language", "python")}
    for i, cell in enumerate(notebook.cells):
        for key in TEXT_LAYOUT_METADATA:
            cell.metadata.pop(key, None)
        cell["id"] = f"cell-{i:03d}"  # stable ids: rebuilding does not churn the diff
    return notebook


def _first_differing_line(have: str, want: str) -> str:
    """Where two cell sources part, short enough for one line of a report."""
    have_lines, want_lines = have.splitlines(), want.splitlines()
    if have_lines == want_lines:
        return f"ends {have[-1:]!r} instead of {want[-1:]!r}"
    line = next(
        (n for n, (h, w) in enumerate(zip(have_lines, want_lines, strict=False)) if h != w),
        min(len(have_lines), len(want_lines)),
    )
    have_at = have_lines[line] if line < len(have_lines) else "(end)"
    want_at = want_lines[line] if line < len(want_lines) else "(end)"
    return f"line {line + 1} is {have_at!r} instead of {want_at!r}"


def _cell_view(cell: Any) -> dict[str, Any]:
    """What of a cell its source decides (outputs and execution counts come from running it)."""
    return {"id": cell.get("id"), "cell_type": cell.cell_type, "source": cell.source, "metadata": dict(cell.metadata)}


def differences(expected: nbformat.NotebookNode, actual: nbformat.NotebookNode) -> list[str]:
    """How ``actual``'s kernelspec and cells (order, type, source, metadata, id) differ from ``expected``'s."""
    found = []
    if actual.metadata.get("kernelspec") != expected.metadata.get("kernelspec"):
        found.append(f"kernelspec {actual.metadata.get('kernelspec')} instead of {expected.metadata.get('kernelspec')}")
    if len(actual.cells) != len(expected.cells):
        found.append(f"{len(actual.cells)} cells instead of {len(expected.cells)}")
    for i, (want, have) in enumerate(zip(expected.cells, actual.cells, strict=False)):
        want_view, have_view = _cell_view(want), _cell_view(have)
        for field, want_value in want_view.items():
            have_value = have_view[field]
            if have_value == want_value:
                continue
            if field == "source":
                found.append(f"cell {i}: source {_first_differing_line(have_value, want_value)}")
            else:
                found.append(f"cell {i}: {field} {have_value!r} instead of {want_value!r}")
    return found


def stale(source: Path) -> list[str]:
    """Why ``source``'s committed notebook is not what the source gives (empty if it is)."""
    target = notebook_path(source)
    if not target.exists():
        return [f"{target.relative_to(ROOT)} does not exist"]
    return differences(notebook_from_source(source), read_notebook(target))


# ------------------------------------------------- static snapshots of live widgets ----


def _model_id(reference: Any) -> str:
    """A model id from a widget state's reference to another model (``"IPY_MODEL_<id>"``)."""
    return str(reference).removeprefix("IPY_MODEL_")


def _hidden(state: dict[str, Any], states: dict[str, Any]) -> bool:
    layout = states.get(_model_id(state.get("layout", "")), {}).get("state", {})
    return layout.get("display") == "none" or layout.get("visibility") == "hidden"


def _div(inner: str, style: str = "") -> str:
    return f'<div style="{style}">{inner}</div>' if style else f"<div>{inner}</div>"


def _layout_style(state: dict[str, Any], states: dict[str, Any]) -> str:
    """The widget's size, margin and alignment from its Layout model, as an inline style."""
    layout = states.get(_model_id(state.get("layout", "")), {}).get("state", {})
    return "".join(
        f"{name.replace('_', '-')}:{html.escape(str(layout[name]))};"
        for name in ("width", "min_width", "margin", "align_items")
        if layout.get(name)
    )


def _render_widget(model_id: str, states: dict[str, Any]) -> str:
    """One widget as static HTML, boxes with their children; what it would show, not how it reacts."""
    model = states.get(model_id)
    if model is None:
        return ""
    state: dict[str, Any] = model.get("state", {})
    if _hidden(state, states):
        return ""
    name = model.get("model_name", "")
    style = _layout_style(state, states)
    description = state.get("description") or ""
    label = f"{html.escape(description)} " if description else ""
    if name in ("BoxModel", "VBoxModel", "GridBoxModel"):
        return _div("".join(_render_widget(_model_id(child), states) for child in state.get("children", [])), style)
    if name == "HBoxModel":
        inner = "".join(_render_widget(_model_id(child), states) for child in state.get("children", []))
        return _div(inner, f"display:flex;flex-wrap:wrap;align-items:flex-start;gap:4px 12px;{style}")
    if name in ("HTMLModel", "HTMLMathModel"):
        return _div(f"{label}{state.get('value', '')}", style)
    if name == "LabelModel":
        return _div(label + html.escape(str(state.get("value", ""))), style)
    if name in ("ButtonModel", "ToggleButtonModel"):
        return f'<button type="button" disabled>{html.escape(description)}</button>'
    if name == "DropdownModel":
        options, index = state.get("_options_labels", []), state.get("index")
        chosen = options[index] if isinstance(index, int) and 0 <= index < len(options) else "(none)"
        return f"<span>{label}<select disabled><option>{html.escape(str(chosen))}</option></select></span>"
    if name in ("IntProgressModel", "FloatProgressModel"):
        value, top = state.get("value", 0), state.get("max", 100)
        return f'<span>{label}<progress value="{value}" max="{top}">{value} / {top}</progress></span>'
    return f"<!-- {html.escape(name)}: not drawn in a static snapshot -->"


def widget_snapshot_html(model_id: str, states: dict[str, Any]) -> str:
    """The widget ``model_id`` as one static HTML block, drawn from the saved widget ``states``
    (``{model_id: {"model_name": ..., "state": {...}}}``, the notebook's widget metadata)."""
    return f"{SNAPSHOT_START}{_render_widget(model_id, states)}{SNAPSHOT_NOTE}</div>"


def widget_outputs(notebook: nbformat.NotebookNode) -> list[tuple[int, Any]]:
    """Every output that shows a live widget, with the index of its cell."""
    return [
        (index, output)
        for index, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        if WIDGET_VIEW in output.get("data", {})
    ]


def saved_widget_states(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    """The notebook's saved widget models, ``{model_id: {"model_name": ..., "state": {...}}}``."""
    states: dict[str, Any] = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return states


def save_final_widget_states(notebook: nbformat.NotebookNode, states: dict[str, Any]) -> None:
    """Save ``states`` as the notebook's widget metadata and snapshot every widget output from them."""
    if not states:
        notebook.metadata.pop("widgets", None)
    else:
        notebook.metadata["widgets"] = {WIDGET_STATE: {"state": states, "version_major": 2, "version_minor": 0}}
    for index, output in widget_outputs(notebook):
        model_id = output.data[WIDGET_VIEW]["model_id"]
        if model_id not in states:
            raise RuntimeError(f"cell {index} shows widget {model_id}, but the kernel never reported its state")
        output.data["text/html"] = widget_snapshot_html(model_id, states)


# ----------------------------------------------------------------------- building ----


def execute(notebook: nbformat.NotebookNode, timeout: int) -> dict[str, Any]:
    """Run ``notebook`` in a fresh kernel from ``notebooks/``; return every widget's last state.

    After each cell the kernel reports the state of the widgets that exist then; a widget
    closed later keeps the last state reported."""
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=notebook.metadata["kernelspec"]["name"],
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    states: dict[str, Any] = {}

    async def collect_widget_states(cell: Any, cell_index: int, execute_reply: Any) -> None:
        assert client.kc is not None
        msg_id = await ensure_async(
            client.kc.execute(
                "", silent=True, store_history=False, user_expressions={"states": _WIDGET_STATES_EXPRESSION}
            )
        )
        reply = await client.async_wait_for_reply(msg_id)
        result: dict[str, Any] = reply["content"]["user_expressions"]["states"] if reply else {"status": "no reply"}
        if result.get("status") != "ok":
            raise RuntimeError(f"after cell {cell_index} the kernel did not report its widgets: {result}")
        states.update(json.loads(ast.literal_eval(result["data"]["text/plain"])))

    client.on_cell_executed = collect_widget_states
    client.execute()
    return states


def build(source: Path, target: Path | None = None, timeout: int = 600) -> Path:
    """Convert ``source``, execute it in a fresh kernel from ``notebooks/``, save it to ``target``."""
    notebook = notebook_from_source(source)
    target = target or notebook_path(source)
    started = time.monotonic()
    runs = any(cell.cell_type == "code" for cell in notebook.cells)
    if runs:
        save_final_widget_states(notebook, execute(notebook, timeout))
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)  # timestamps: noise in diffs
    nbformat.write(notebook, target)
    ran = f"executed in {time.monotonic() - started:.1f} s" if runs else "no code to execute"
    print(f"{target}: {len(notebook.cells)} cells, {ran}")
    return target


def check(chosen: list[Path], every_source: bool) -> bool:
    """Report which of ``chosen``'s notebooks need a rebuild (and, for ``every_source``, orphans)."""
    problems = {source.name: stale(source) for source in chosen}
    if every_source:
        for orphan in sorted({n.stem for n in NOTEBOOKS.glob("*.ipynb")} - {s.stem for s in chosen}):
            problems[f"{orphan}.ipynb"] = [f"no source notebooks/src/{orphan}.py"]
    for name, found in problems.items():
        print(f"{name}: {'needs a rebuild' if found else 'up to date'}")
        for problem in found:
            print(f"    {problem}")
    return not any(problems.values())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="only the notebooks whose names start with these")
    parser.add_argument(
        "--check",
        action="store_true",
        help="execute and write nothing; list notebooks whose cells differ from their source",
    )
    args = parser.parse_args(argv)
    chosen = [s for s in notebook_sources() if not args.prefixes or any(s.name.startswith(p) for p in args.prefixes)]
    if not chosen:
        sys.exit(f"no notebook sources match {args.prefixes} in {SOURCES}")
    if args.check:
        sys.exit(0 if check(chosen, every_source=not args.prefixes) else 1)
    for source in chosen:
        build(source)


if __name__ == "__main__":
    main(sys.argv[1:])
