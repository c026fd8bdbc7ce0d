"""Every committed notebook is what its percent-format source builds, and nothing else.

``notebooks/src/NN_topic.py`` is the lesson as written (``notebooks/src/index.py`` the start
page); ``notebooks/NN_topic.ipynb`` is that source executed by ``tools/build_notebooks.py``.
A notebook edited by hand, or a source changed without a rebuild, fails here: the cells
(order, type, source, tags and other metadata, ids) and the kernelspec must be exactly what
jupytext reads from the source. Every source names the course's kernel, and every lesson's
first cell stops with a one-line message in a kernel without the course. No kernel runs;
strict ``pytest --nbval`` checks the outputs.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import jupytext  # type: ignore[import-untyped]  # no type information shipped
import pytest
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parent.parent


def _load_builder() -> ModuleType:
    """tools/ is not a package: load the builder from its file."""
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "tools" / "build_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load_builder()
notebook_from_source: Callable[[Path], NotebookNode] = builder.notebook_from_source
read_notebook: Callable[[Path], NotebookNode] = builder.read_notebook
differences: Callable[[NotebookNode, NotebookNode], list[str]] = builder.differences
notebook_path: Callable[[Path], Path] = builder.notebook_path
SOURCES: list[Path] = builder.notebook_sources()
LESSONS: list[Path] = builder.lesson_sources()


def test_there_are_lessons_and_an_index() -> None:
    assert len(LESSONS) >= 4, LESSONS
    assert SOURCES[0].name == "index.py" and SOURCES[1:] == LESSONS


def test_every_notebook_has_a_source_and_every_source_a_notebook() -> None:
    notebooks = {path.stem for path in builder.NOTEBOOKS.glob("*.ipynb")}
    sources = {path.stem for path in SOURCES}
    assert notebooks - sources == set(), "notebooks without a source in notebooks/src"
    assert sources - notebooks == set(), "sources never built: run tools/build_notebooks.py"


def test_notebooks_src_holds_only_notebook_sources() -> None:
    assert sorted(builder.SOURCES.glob("*.py")) == sorted(SOURCES), (
        f"the builder reads only index.py and {builder.LESSON_PATTERN}"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_notebook_cells_are_what_the_source_builds(source: Path) -> None:
    problems = differences(notebook_from_source(source), read_notebook(notebook_path(source)))
    assert not problems, (
        f"notebooks/{source.stem}.ipynb is not what notebooks/src/{source.name} builds: edit the source, never "
        f"the .ipynb, and run `.venv/bin/python tools/build_notebooks.py {source.name[:2]}`\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_committed_notebook_was_executed(source: Path) -> None:
    unexecuted = [
        i
        for i, cell in enumerate(read_notebook(notebook_path(source)).cells)
        if cell.cell_type == "code" and cell.execution_count is None
    ]
    assert unexecuted == [], "code cells never run: build the notebook, don't only convert it"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_source_opens_as_a_percent_notebook_with_the_course_kernel(source: Path) -> None:
    """What JupyterLab's jupytext sees: the header alone decides the format and the kernel."""
    notebook = jupytext.read(source)  # no format given: from the header, as JupyterLab does
    assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    assert notebook.metadata["kernelspec"] == {
        "name": "websocket-course",
        "display_name": "WebSocket course",
        "language": "python",
    }
    built = notebook_from_source(source)
    assert [cell.cell_type for cell in notebook.cells] == [cell.cell_type for cell in built.cells]


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_nbval_markers_are_cell_tags_not_comments(source: Path) -> None:
    """Students read the source: nbval's instructions belong on the `# %%` line (tags=[...])."""
    marked = [
        i
        for i, cell in enumerate(notebook_from_source(source).cells)
        if cell.cell_type == "code" and "NBVAL_" in cell.source
    ]
    assert marked == []


# ------------------------------------------- a lesson checks its kernel first ----

KERNEL_CHECK_START = 'import importlib.util\n\nif importlib.util.find_spec("labserver") is None:'


def _kernel_check(source: Path) -> str:
    """The first two paragraphs of the lesson's first code cell: the import and the check."""
    first = next(cell for cell in notebook_from_source(source).cells if cell.cell_type == "code")
    assert first.source.startswith(KERNEL_CHECK_START), f"{source.name}: the first code cell does not check its kernel"
    return "\n\n".join(first.source.split("\n\n")[:2])


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("source", LESSONS, ids=lambda path: path.stem)
def test_without_the_course_the_first_cell_stops_with_one_line_saying_what_to_do(source: Path) -> None:
    hidden = "import sys; sys.modules['labserver'] = None  # as in a kernel without the course\n"
    stopped = _run(hidden + _kernel_check(source))
    assert stopped.returncode == 1
    assert stopped.stderr.splitlines()[-1] == (
        "ModuleNotFoundError: Wrong kernel: run `python3 course.py kernel`, then choose Kernel > Change Kernel > "
        f"{builder.KERNELSPEC['display_name']}."
    )
    assert _run(_kernel_check(source)).returncode == 0, "the course's kernel passes the check"


def test_course_py_registers_the_kernel_the_notebooks_name() -> None:
    spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
    assert spec is not None and spec.loader is not None
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    assert (course.KERNEL_NAME, course.KERNEL_DISPLAY_NAME) == (
        builder.KERNELSPEC["name"],
        builder.KERNELSPEC["display_name"],
    )


# ------------------------------------------------- the comparison can fail ----

LESSON = next(source for source in SOURCES if "nbval-ignore-output" in source.read_text())


def _edited(edit: Callable[[NotebookNode], object]) -> list[str]:
    notebook = notebook_from_source(LESSON)
    edit(notebook)
    return differences(notebook_from_source(LESSON), notebook)


def _first_code_cell(notebook: NotebookNode) -> NotebookNode:
    cell: NotebookNode = next(cell for cell in notebook.cells if cell.cell_type == "code")
    return cell


def _tagged_cell(notebook: NotebookNode) -> NotebookNode:
    cell: NotebookNode = next(c for c in notebook.cells if "nbval-ignore-output" in c.metadata.get("tags", []))
    return cell


@pytest.mark.parametrize(
    "edit, expect",
    [
        (
            lambda nb: setattr(_first_code_cell(nb), "source", _first_code_cell(nb).source + "\nprint('hand edit')"),
            "source",
        ),
        (lambda nb: _tagged_cell(nb).metadata.pop("tags"), "metadata"),
        (lambda nb: _first_code_cell(nb).metadata.update(tags=["nbval-skip"]), "metadata"),
        (lambda nb: nb.cells.insert(1, nb.cells.pop(2)), "cell 1"),
        (lambda nb: nb.cells.append(copy.deepcopy(_first_code_cell(nb))), "cells instead of"),
        (lambda nb: nb.cells.pop(), "cells instead of"),
        (lambda nb: setattr(nb.cells[0], "cell_type", "raw"), "cell_type"),
        (
            lambda nb: nb.metadata.update(kernelspec={"name": "other", "display_name": "Other", "language": "python"}),
            "kernelspec",
        ),
    ],
    ids=["source", "tag-removed", "tag-added", "order", "cell-added", "cell-removed", "cell-type", "kernel"],
)
def test_a_hand_edit_is_caught(edit: Callable[[NotebookNode], object], expect: str) -> None:
    problems = _edited(edit)
    assert any(expect in problem for problem in problems), problems


def test_an_unchanged_notebook_passes() -> None:
    assert _edited(lambda nb: None) == []


def test_a_changed_source_is_caught(tmp_path: Path) -> None:
    text = LESSON.read_text()
    changed = tmp_path / LESSON.name
    changed.write_text(text.replace('# %% tags=["nbval-ignore-output"]', "# %%", 1))
    problems = differences(notebook_from_source(changed), notebook_from_source(LESSON))
    assert any("metadata" in problem for problem in problems), problems


def test_a_source_without_its_header_is_refused(tmp_path: Path) -> None:
    text = LESSON.read_text()
    headless = tmp_path / LESSON.name
    headless.write_text(text[text.index("# %%") :])
    with pytest.raises(ValueError, match="kernelspec"):
        notebook_from_source(headless)
