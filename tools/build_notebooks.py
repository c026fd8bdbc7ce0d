#!/usr/bin/env python3
"""Build the lesson notebooks from their sources and execute them in a fresh kernel.

Lessons are written as percent-format scripts in ``notebooks/src/NN_topic.py``
(``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines
start with ``# ``), which diff and review like code. This script turns each into
``notebooks/NN_topic.ipynb``, runs it top to bottom in a fresh kernel with the
working directory set to ``notebooks/``, and saves it with its outputs: what
strict ``pytest --nbval`` then compares against.

    python tools/build_notebooks.py            # every lesson
    python tools/build_notebooks.py 00 03      # lessons whose names start with these
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "notebooks" / "src"
NOTEBOOKS = ROOT / "notebooks"


def parse_percent(text: str) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    kind, lines = None, []

    def flush() -> None:
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            notebook.cells.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "code" and body:
            notebook.cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    for i, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{i:03d}"  # stable ids: rebuilding does not churn the diff
    return notebook


def build(source: Path, timeout: int = 600) -> Path:
    notebook = parse_percent(source.read_text())
    target = NOTEBOOKS / (source.stem + ".ipynb")
    started = time.monotonic()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)  # timestamps: noise in diffs
    nbformat.write(notebook, target)
    print(f"{target.relative_to(ROOT)}: {len(notebook.cells)} cells, executed in {time.monotonic() - started:.1f} s")
    return target


def main(prefixes: list[str]) -> None:
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    chosen = [s for s in sources if not prefixes or any(s.name.startswith(p) for p in prefixes)]
    if not chosen:
        sys.exit(f"no lesson sources match {prefixes} in {SOURCES}")
    for source in chosen:
        build(source)


if __name__ == "__main__":
    main(sys.argv[1:])
