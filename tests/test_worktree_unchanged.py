"""Running the lessons and the tests changes nothing that git tracks or would list.

tests/conftest.py records ``git status`` (each listed path with a hash of its content)
when the session starts; the last test of the session compares. A test or a notebook
that writes into the repository (a figure into images/, a stray file anywhere not
git-ignored) fails it: write to ``tmp_path``, or regenerate pictures with
``python3 course.py figures``.

The check runs when this file is collected: in the whole suite (plain ``pytest``), it
runs after everything else, the notebooks included, whatever order other plugins chose.
A run of selected files that does not name this one does not check the tree.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT, WORKTREE_AT_START, worktree_state


@pytest.mark.runs_last
def test_the_run_left_the_working_tree_as_it_found_it(request: pytest.FixtureRequest) -> None:
    before = request.config.stash.get(WORKTREE_AT_START, None)
    if before is None:
        pytest.skip("not a git checkout (or no git): nothing to compare")
    after = worktree_state(ROOT)
    assert after is not None
    changed = {
        path: (before.get(path, "clean"), after.get(path, "clean"))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    }
    assert not changed, (
        "the test run changed the working tree (path: status and content hash before -> after); tests write to "
        "tmp_path or git-ignored paths, pictures are redrawn by `python3 course.py figures`:\n"
        + "\n".join(f"  {path}: {was} -> {now}" for path, (was, now) in changed.items())
    )


# ---------------------------------------------------- the comparison can fail ----


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "tracked.txt").write_text("one\n")
    (tmp_path / "edited.txt").write_text("one\n")
    (tmp_path / ".gitignore").write_text("ignored/\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "start")
    (tmp_path / "edited.txt").write_text("edited before the run\n")
    return tmp_path


def test_a_clean_checkout_lists_only_what_was_already_changed(repo: Path) -> None:
    state = worktree_state(repo)
    assert state is not None and list(state) == ["edited.txt"]
    assert worktree_state(repo) == state


@pytest.mark.parametrize(
    "change",
    [
        lambda repo: (repo / "tracked.txt").write_text("two\n"),
        lambda repo: (repo / "tracked.txt").unlink(),
        lambda repo: (repo / "new.png").write_bytes(b"\x89PNG"),
        lambda repo: _write(repo / "new" / "dir" / "x.txt", "x"),
        lambda repo: (repo / "edited.txt").write_text("edited again during the run\n"),
    ],
    ids=["modified", "deleted", "untracked", "untracked-in-new-dir", "modified-again"],
)
def test_every_kind_of_change_is_seen(repo: Path, change: Callable[[Path], object]) -> None:
    before = worktree_state(repo)
    change(repo)
    assert worktree_state(repo) != before


def test_git_ignored_files_do_not_count(repo: Path) -> None:
    before = worktree_state(repo)
    (repo / "ignored").mkdir()
    (repo / "ignored" / "lab.db").write_text("data")
    assert worktree_state(repo) == before


def test_outside_a_checkout_there_is_nothing_to_compare(tmp_path: Path) -> None:
    assert worktree_state(tmp_path) is None


def test_the_check_is_ordered_last(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    last = [item.name for item in items if item.get_closest_marker("runs_last")]
    if not last:
        pytest.skip("the check was deselected in this run (-k, --deselect)")
    assert last == ["test_the_run_left_the_working_tree_as_it_found_it"]
    assert items[-1].name == last[0]
