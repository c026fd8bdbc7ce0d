"""course.py's decisions, without installing anything: which install, when pip runs, what it warns.

course.py is loaded from its file (it is a script, not a module of the package) with its
paths pointed at a temporary directory and its `run` replaced by a recorder, so these tests
see the commands it would run.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_course_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("course_under_test", ROOT / "course.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """Stands in for course.run: records each command, answers 0."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, cmd: list[Any], quiet: bool = False, **kw: Any) -> int:
        self.commands.append([str(c) for c in cmd])
        return 0

    def pip_installs(self) -> list[str]:
        """The `.[extras]` of each `pip install` run so far, and forget them."""
        specs = [cmd[-1] for cmd in self.commands if cmd[1:4] == ["-m", "pip", "install"]]
        self.commands.clear()
        return specs


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """course.py with its repository in tmp_path (copies of pyproject.toml and constraints.txt)."""
    module = load_course_py()
    for name in ("pyproject.toml", "constraints.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    venv = tmp_path / ".venv"
    venv.mkdir()
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "VENV", venv)
    monkeypatch.setattr(module, "STAMP", venv / ".course-installed")
    monkeypatch.setattr(module, "PYPROJECT", tmp_path / "pyproject.toml")
    monkeypatch.setattr(module, "CONSTRAINTS", tmp_path / "constraints.txt")
    monkeypatch.setattr(module, "run", Recorder())
    monkeypatch.setattr(module, "sanity_ok", lambda extras: True)
    return module


def test_lab_installs_the_lessons_only_and_pinned(course: ModuleType) -> None:
    course.ensure_packages(True, course.INSTALLS["lab"])
    (cmd,) = [c for c in course.run.commands if "pip" in c]
    assert cmd[-4:] == ["-c", "constraints.txt", "-e", ".[course]"]


def test_switching_between_lab_and_test_installs_once(course: ModuleType) -> None:
    lab, test = course.INSTALLS["lab"], course.INSTALLS["test"]
    course.ensure_packages(True, lab)
    assert course.run.pip_installs() == [".[course]"]
    course.ensure_packages(False, test)
    assert course.run.pip_installs() == [".[course,test]"]  # the test extra was missing
    for _ in range(2):
        course.ensure_packages(False, lab)  # a test install serves the lessons
        course.ensure_packages(False, test)
    assert course.run.pip_installs() == []


def test_a_changed_pyproject_reinstalls_and_keeps_the_test_extra(course: ModuleType) -> None:
    course.ensure_packages(True, course.INSTALLS["test"])
    course.run.pip_installs()
    course.PYPROJECT.write_text(course.PYPROJECT.read_text() + "\n# changed\n")
    course.ensure_packages(False, course.INSTALLS["lab"])
    assert course.run.pip_installs() == [".[course,test]"]
    course.ensure_packages(False, course.INSTALLS["test"])
    assert course.run.pip_installs() == []


def test_changed_constraints_reinstall(course: ModuleType) -> None:
    course.ensure_packages(True, course.INSTALLS["lab"])
    course.run.pip_installs()
    course.CONSTRAINTS.write_text(course.CONSTRAINTS.read_text() + "\n# changed\n")
    course.ensure_packages(False, course.INSTALLS["lab"])
    assert course.run.pip_installs() == [".[course]"]


def test_a_stamp_from_before_constraints_reinstalls_with_its_extras(course: ModuleType) -> None:
    old = {"pyproject_sha256": course.sha256_of(course.PYPROJECT), "extras": "course,test", "venv": str(course.VENV)}
    course.STAMP.write_text(json.dumps(old))
    course.ensure_packages(False, course.INSTALLS["lab"])
    assert course.run.pip_installs() == [".[course,test]"]


def test_a_damaged_venv_reinstalls(course: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    course.ensure_packages(True, course.INSTALLS["test"])
    course.run.pip_installs()
    monkeypatch.setattr(course, "sanity_ok", lambda extras: False)
    course.ensure_packages(False, course.INSTALLS["lab"])
    assert course.run.pip_installs() == [".[course,test]"]


def test_without_a_constraints_file_it_installs_unpinned_and_says_so(
    course: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    course.CONSTRAINTS.unlink()
    course.ensure_packages(True, course.INSTALLS["lab"])
    (cmd,) = [c for c in course.run.commands if "pip" in c]
    assert "-c" not in cmd
    assert "no constraints.txt" in capsys.readouterr().err


def test_sanity_modules_follow_the_extras(course: ModuleType) -> None:
    assert set(course.SANITY_MODULES) == {"", *course.INSTALLS["test"]}
    assert "pytest" not in course.SANITY_MODULES[""] + course.SANITY_MODULES["course"]


# --- system packages ---------------------------------------------------------------------------


def test_the_lessons_need_no_system_package_and_the_tests_need_chromium_and_redis(course: ModuleType) -> None:
    assert course.SYSTEM_PACKAGES["lab"] == ()
    assert [pkg for pkg, _, _ in course.SYSTEM_PACKAGES["test"]] == ["chromium", "redis-server"]


@pytest.fixture
def no_system_packages(course: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(course.shutil, "which", lambda exe: None)
    monkeypatch.setattr(course, "can_apt", lambda: False)


@pytest.mark.usefixtures("no_system_packages")
def test_lab_warns_about_nothing(
    course: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI", "true")
    course.ensure_system_packages("lab")
    out = capsys.readouterr()
    assert out.out == out.err == ""


@pytest.mark.usefixtures("no_system_packages")
def test_test_warns_that_the_browser_tests_will_be_skipped(
    course: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    course.ensure_system_packages("test")
    err = capsys.readouterr().err
    assert "chromium" in err and "redis-server" in err
    assert "the browser tests and the scale-out tests (--redis) will be SKIPPED" in err


@pytest.mark.usefixtures("no_system_packages")
def test_ci_refuses_to_skip_the_browser_tests_silently(
    course: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(SystemExit) as exit_info:
        course.ensure_system_packages("test")
    assert exit_info.value.code == 1
    assert "refusing to skip silently" in capsys.readouterr().err


# --- JupyterLab, kernels -----------------------------------------------------------------------


def test_lab_opens_lesson_00_at_the_course_root(course: ModuleType) -> None:
    (course.ROOT / "notebooks").mkdir()
    (course.ROOT / "notebooks" / "00_welcome.ipynb").write_text("{}")
    args = course.lab_args(["--no-browser"])
    assert args[:2] == ["-m", "jupyterlab"]
    assert "--notebook-dir=" + str(course.ROOT) in args
    assert "--LabApp.default_url=/lab/tree/notebooks/00_welcome.ipynb" in args
    assert args[-1] == "--no-browser"  # the student's options last, so they win


def test_lab_opens_the_index_when_there_is_one(course: ModuleType) -> None:
    (course.ROOT / "notebooks").mkdir()
    for name in ("00_welcome.ipynb", "index.ipynb"):
        (course.ROOT / "notebooks" / name).write_text("{}")
    assert "--LabApp.default_url=/lab/tree/notebooks/index.ipynb" in course.lab_args([])


def test_setup_registers_both_kernels_in_the_venv(course: ModuleType) -> None:
    course.ensure_kernels()
    installs = [cmd[cmd.index("install") + 1 :] for cmd in course.run.commands if "ipykernel" in cmd]
    assert installs == [
        ["--sys-prefix", "--name", "python3"],
        ["--sys-prefix", "--name", "websocket-course", "--display-name", "WebSocket course"],
    ]


def test_registered_kernels_are_left_alone(course: ModuleType) -> None:
    for name, display_name in course.VENV_KERNELS:
        spec = course.kernel_json(name)
        spec.parent.mkdir(parents=True)
        spec.write_text(json.dumps({"argv": [str(course.venv_python())], "display_name": display_name or "Python 3"}))
    course.ensure_kernels()
    assert course.run.commands == []


def test_kernel_registers_the_venv_for_the_user(course: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    setups: list[tuple[str, bool]] = []
    monkeypatch.setattr(course, "setup", lambda kind, system=True: setups.append((kind, system)))
    course.cmd_kernel(None, [])
    assert setups == [("lab", False)]
    (cmd,) = course.run.commands
    assert cmd[1:] == [
        "-m",
        "ipykernel",
        "install",
        "--user",
        "--name",
        "websocket-course",
        "--display-name",
        "WebSocket course",
    ]
