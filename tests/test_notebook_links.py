"""Links between the course's pages work: the index, the lessons, README.md and lessons.md.

Every relative link (Markdown ``[text](target)``, ``![alt](target)``, reference-style
``[label]: target``, and HTML ``href``/``src``) in the markdown cells of every committed
notebook, and in README.md and lessons.md, must point at a file that exists. The index
notebook links every lesson; every lesson ends with a cell linking the index and its
neighbours (only those that exist).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
INDEX = NOTEBOOKS / "index.ipynb"
PAGES = [ROOT / "README.md", ROOT / "lessons.md", *sorted(NOTEBOOKS.glob("*.ipynb"))]

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)  # code is not a link, even if it looks like one
_TARGETS = [
    re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"),  # [text](target "title")
    re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE),  # [label]: target
    re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']"),  # <a href="target">, <img src="target">
]
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)  # https:, mailto:, //host, #anchor


def markdown_of(page: Path) -> str:
    """The Markdown a reader sees: the file, or a notebook's markdown cells."""
    if page.suffix != ".ipynb":
        return page.read_text(encoding="utf-8")
    cells = nbformat.read(page, as_version=4).cells
    return "\n\n".join(cell.source for cell in cells if cell.cell_type == "markdown")


def relative_links(markdown: str) -> list[str]:
    """The targets of ``markdown``'s links that are paths in the repository (anchors and queries cut)."""
    text = _CODE.sub("", markdown)
    targets = [match for pattern in _TARGETS for match in pattern.findall(text)]
    return [re.split(r"[#?]", target)[0] for target in targets if not _EXTERNAL.match(target)]


def broken_links(page: Path, markdown: str) -> list[str]:
    return [link for link in relative_links(markdown) if not (page.parent / link).exists()]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(page: Path) -> None:
    assert broken_links(page, markdown_of(page)) == []


def test_the_index_links_every_lesson() -> None:
    linked = {NOTEBOOKS / link for link in relative_links(markdown_of(INDEX))}
    assert set(LESSONS) <= linked, sorted(path.name for path in set(LESSONS) - linked)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_every_lesson_ends_with_links_to_the_index_and_its_neighbours(lesson: Path) -> None:
    last = nbformat.read(lesson, as_version=4).cells[-1]
    assert last.cell_type == "markdown", "the last cell is the navigation"
    at = LESSONS.index(lesson)
    neighbours = [LESSONS[i].name for i in (at - 1, at + 1) if 0 <= i < len(LESSONS)]
    assert sorted(relative_links(last.source)) == sorted(["index.ipynb", *neighbours])


# ------------------------------------------------------------- the checker can fail ----


def test_links_are_found_in_every_form_and_code_is_skipped() -> None:
    markdown = """
[a lesson](00_welcome.ipynb) ![a figure](../images/x.png "title") [with anchor](01.ipynb#part-2)
[ref]: ../lessons.md
<a href="page.html">html</a> <img src='pic.svg'>
[external](https://example.org/x) [mail](mailto:a@b.c) [anchor](#top)
`[not a link](code.ipynb)`
```
[nor this](fenced.ipynb)
```
"""
    assert sorted(relative_links(markdown)) == sorted(
        ["00_welcome.ipynb", "../images/x.png", "01.ipynb", "../lessons.md", "page.html", "pic.svg"]
    )


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("x")
    page = tmp_path / "page.md"
    assert broken_links(page, "[ok](here.md) [gone](missing.ipynb) [up](../nowhere/x.md)") == [
        "missing.ipynb",
        "../nowhere/x.md",
    ]
