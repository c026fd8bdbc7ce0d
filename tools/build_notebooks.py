"""Build the lesson notebooks from their percent-format sources and execute them in a fresh kernel.

Each lesson is written as ``notebooks/src/NN_topic.py`` in jupytext's percent format: a
YAML header (commented out) naming the format and the kernel, then ``# %%`` before each
code cell and ``# %% [markdown]`` before each markdown cell, whose lines start with ``# ``.
Cell tags go on the marker line, e.g. ``# %% tags=["nbval-ignore-output"]`` (nbval then
runs the cell without comparing its output; ``nbval-skip`` and ``raises-exception`` work
the same way). Such a file diffs and reviews like code, and since jupytext is installed
with the course, JupyterLab also opens it as a notebook (right-click, Open With, Notebook).

This script reads each source with jupytext into ``notebooks/NN_topic.ipynb``, gives its
cells stable ids, runs it top to bottom in a fresh kernel (the one the header names) with
the working directory set to ``notebooks/``, and saves it with its outputs and widget
state, without execution timestamps: what strict ``pytest --nbval`` then compares against.
The committed notebooks are always executed ones. ``--check`` executes nothing and writes
nothing: it lists the notebooks whose cells are no longer what their source gives, the same
comparison tests/test_notebook_sources.py makes.

    .venv/bin/python tools/build_notebooks.py            # every lesson
    .venv/bin/python tools/build_notebooks.py 00 03      # lessons whose names start with these
    .venv/bin/python tools/build_notebooks.py --check    # which notebooks need a rebuild (no kernel)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jupytext  # type: ignore[import-untyped]  # no type information shipped
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "notebooks" / "src"
NOTEBOOKS = ROOT / "notebooks"
LESSON_PATTERN = "[0-9][0-9]_*.py"

# Cell metadata jupytext keeps only to write the text file back byte for byte (blank lines
# around a cell, the marker it had): layout of the .py, not part of the lesson.
TEXT_LAYOUT_METADATA = ("lines_to_next_cell", "lines_to_end_of_cell_marker", "cell_marker")


def lesson_sources() -> list[Path]:
    return sorted(SOURCES.glob(LESSON_PATTERN))


def notebook_path(source: Path) -> Path:
    return NOTEBOOKS / (source.stem + ".ipynb")


def read_notebook(path: Path) -> nbformat.NotebookNode:
    notebook: nbformat.NotebookNode = nbformat.read(path, as_version=4)
    return notebook


def notebook_from_source(source: Path) -> nbformat.NotebookNode:
    """The lesson notebook ``source`` describes, before execution: its cells and kernelspec."""
    notebook: nbformat.NotebookNode = jupytext.reads(source.read_text(encoding="utf-8"), fmt="py:percent")
    if "kernelspec" not in notebook.metadata:
        raise ValueError(f"{source}: no kernelspec; start the file with the jupytext header the other lessons have")
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


def build(source: Path, target: Path | None = None, timeout: int = 600) -> Path:
    """Convert ``source``, execute it in a fresh kernel from ``notebooks/``, save it to ``target``."""
    notebook = notebook_from_source(source)
    target = target or notebook_path(source)
    started = time.monotonic()
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=notebook.metadata["kernelspec"]["name"],
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)  # timestamps: noise in diffs
    nbformat.write(notebook, target)
    print(f"{target}: {len(notebook.cells)} cells, executed in {time.monotonic() - started:.1f} s")
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
    parser.add_argument("prefixes", nargs="*", help="only the lessons whose names start with these")
    parser.add_argument(
        "--check",
        action="store_true",
        help="execute and write nothing; list notebooks whose cells differ from their source",
    )
    args = parser.parse_args(argv)
    chosen = [s for s in lesson_sources() if not args.prefixes or any(s.name.startswith(p) for p in args.prefixes)]
    if not chosen:
        sys.exit(f"no lesson sources match {args.prefixes} in {SOURCES}")
    if args.check:
        sys.exit(0 if check(chosen, every_source=not args.prefixes) else 1)
    for source in chosen:
        build(source)


if __name__ == "__main__":
    main(sys.argv[1:])
