"""The ways into the course agree with each other.

* environment.yml (conda/Binder) lists the same packages, with the same version
  bounds, as pyproject.toml's dependencies plus its `course` and `test` extras.
* .ci/run is `python3 course.py test`, and the README tells newcomers to use
  `python3 course.py lab` / `python3 course.py test`.
* course.py stays standard-library only and runs on Python 3.11.
* `python3 course.py test` and plain `pytest` run the same suite: course.py adds
  nothing to pytest's command line, pyproject.toml's [tool.pytest.ini_options]
  says what the suite is (tests/ and strict nbval over notebooks/).
"""

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXTRAS = ("course", "test")
# pip (PyPI) name -> conda-forge name, after normalisation, where they differ.
CONDA_NAMES = {
    "playwright": "playwright-python",
}
# Entries environment.yml has on top of pyproject.toml's.
CONDA_ONLY = {"python", "pip"}

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def split_req(req):
    """'PyJWT >= 2.8' -> ('pyjwt', '>=2.8'). Markers (';') are not supported."""
    assert ";" not in req, f"environment markers can't be mirrored in conda: {req!r}"
    m = _REQ.match(req)
    assert m, f"can't parse requirement {req!r}"
    return norm(m.group(1)), re.sub(r"\s+", "", m.group(2))


def pyproject_requirements(path):
    data = tomllib.loads(Path(path).read_text())
    project = data["project"]
    reqs = list(project.get("dependencies", []))
    for extra in EXTRAS:
        reqs += project["optional-dependencies"][extra]
    out = {}
    for req in reqs:
        name, spec = split_req(req)
        assert name not in out, f"{name} listed twice in pyproject.toml"
        out[name] = spec
    return out


def parse_environment(text):
    """Tiny parser for our environment.yml: top-level scalars, the `channels`
    list, and the `dependencies` list with its nested `pip:` list."""
    env: dict[str, Any] = {"channels": [], "conda": [], "pip": []}
    section = None
    pip_indent = None  # indent of the `- pip:` item while inside its list
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if indent == 0:
            key, _, value = item.partition(":")
            section, pip_indent = key.strip(), None
            if value.strip():
                env[section] = value.strip()
            continue
        if not item.startswith("- "):
            raise ValueError(f"unexpected line in environment.yml: {raw!r}")
        value = item[2:].strip()
        if section == "channels":
            env["channels"].append(value)
        elif section == "dependencies":
            if pip_indent is not None and indent > pip_indent:
                env["pip"].append(value)
            elif value == "pip:":
                pip_indent = indent
            else:
                pip_indent = None
                env["conda"].append(value)
        else:
            raise ValueError(f"list item outside a known section: {raw!r}")
    return env


def conda_spec(item):
    """'python=3.11' / 'pyjwt>=2.8' / 'pip' -> (name, spec)."""
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", item)
    assert m, f"can't parse conda spec {item!r}"
    return norm(m.group(1)), re.sub(r"\s+", "", m.group(2))


def environment_problems(pyproject_path, environment_path):
    """Everything in which environment.yml disagrees with pyproject.toml."""
    want = pyproject_requirements(pyproject_path)
    env = parse_environment(Path(environment_path).read_text())
    problems = []

    if env.get("name") != "websocket-course":
        problems.append(f"name should be websocket-course, is {env.get('name')!r}")
    if env["channels"] != ["conda-forge"]:
        problems.append(f"channels should be [conda-forge], are {env['channels']!r}")

    conda = {}
    for item in env["conda"]:
        name, spec = conda_spec(item)
        if name in conda:
            problems.append(f"{name} listed twice in environment.yml")
        conda[name] = spec
    pip = {}
    editable = False
    for item in env["pip"]:
        if item in ("-e .", "--editable ."):
            editable = True
            continue
        name, spec = split_req(item)
        pip[name] = spec

    if conda.get("python") != "=3.11":
        problems.append(f"python should be pinned to =3.11, is {conda.get('python')!r}")
    if "pip" not in conda:
        problems.append("pip is missing from the conda dependencies")
    if not editable:
        problems.append("pip: section lacks `-e .` for the labserver package")

    expected_conda = set(CONDA_ONLY)
    for name, spec in sorted(want.items()):
        if name in pip:  # deliberately installed from PyPI
            if pip[name] != spec:
                problems.append(f"pip {name}: environment.yml has {pip[name]!r}, pyproject.toml {spec!r}")
            continue
        cname = CONDA_NAMES.get(name, name)
        expected_conda.add(cname)
        if cname not in conda:
            problems.append(f"{name} (conda-forge: {cname}) missing from environment.yml")
        elif conda[cname] != spec:
            problems.append(f"{cname}: environment.yml has {conda[cname]!r}, pyproject.toml {spec!r}")
    for name in sorted(set(conda) - expected_conda):
        problems.append(f"{name} is in environment.yml but not in pyproject.toml")
    for name in sorted(set(pip) - set(want)):
        problems.append(f"pip {name} is in environment.yml but not in pyproject.toml")
    return problems


# ------------------------------------------------------------------ tests ----


def test_environment_yml_matches_pyproject():
    assert environment_problems(ROOT / "pyproject.toml", ROOT / "environment.yml") == []


def test_every_pyproject_requirement_is_checked():
    want = pyproject_requirements(ROOT / "pyproject.toml")
    for name in ("aiohttp", "pyjwt", "jupyterlab", "pytest", "nbval", "playwright"):
        assert name in want
    assert len(want) >= 13


@pytest.mark.parametrize(
    "perturb, expect",
    [
        (lambda t: t.replace("websockets>=15", "websockets>=14"), "websockets"),
        (lambda t: t.replace("  - nbval>=0.11\n", ""), "nbval"),
        (lambda t: t.replace("  - pip:\n", "  - requests>=2\n  - pip:\n"), "requests"),
        (lambda t: t.replace("playwright-python>=1.45", "playwright>=1.45"), "playwright"),
        (lambda t: t.replace("python=3.11", "python=3.12"), "python"),
        (lambda t: t.replace("      - -e .\n", "      - PyJWT>=2.8\n"), "-e ."),
        (
            lambda t: t.replace("  - pyjwt>=2.8\n", "").replace("      - -e .\n", "      - -e .\n      - PyJWT>=2.7\n"),
            "pyjwt",
        ),
    ],
)
def test_drift_in_environment_yml_is_caught(tmp_path, perturb, expect):
    text = (ROOT / "environment.yml").read_text()
    changed = perturb(text)
    assert changed != text, "perturbation did not apply; update this test"
    env_file = tmp_path / "environment.yml"
    env_file.write_text(changed)
    problems = environment_problems(ROOT / "pyproject.toml", env_file)
    assert any(expect in p for p in problems), problems


def test_drift_in_pyproject_is_caught(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    changed = text.replace('"matplotlib>=3.8"', '"matplotlib>=3.9"')
    assert changed != text
    (tmp_path / "pyproject.toml").write_text(changed)
    problems = environment_problems(tmp_path / "pyproject.toml", ROOT / "environment.yml")
    assert any("matplotlib" in p for p in problems), problems


def test_hand_parser_agrees_with_yaml():
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "environment.yml").read_text()
    data = yaml.safe_load(text)
    ours = parse_environment(text)
    conda = [d for d in data["dependencies"] if isinstance(d, str)]
    pips = [d["pip"] for d in data["dependencies"] if isinstance(d, dict)]
    assert ours["name"] == data["name"]
    assert ours["channels"] == data["channels"]
    assert ours["conda"] == conda
    assert [ours["pip"]] == pips


def test_binder_apt_txt_lists_redis():
    lines = (ROOT / "apt.txt").read_text().split()
    assert "redis-server" in lines


def _commands(path):
    return [
        line.strip()
        for line in Path(path).read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_ci_run_is_course_test():
    lines = _commands(ROOT / ".ci" / "run")
    assert "set -euo pipefail" in lines
    runs = [line for line in lines if "course.py" in line]
    assert len(runs) == 1, runs
    assert re.search(r"(^|\s)python3 course\.py test(\s|$)", runs[0]), runs[0]
    assert '"$@"' in runs[0]


def test_readme_points_at_course_py():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("no README.md yet")
    text = readme.read_text()
    assert "python3 course.py lab" in text
    assert "python3 course.py test" in text


def test_course_py_is_stdlib_only():
    tree = ast.parse((ROOT / "course.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module is not None  # "from . import x" has level 1
            imported.add(node.module.split(".")[0])
    assert imported, "found no imports at all?"
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_course_py_parses_on_python_311():
    ast.parse((ROOT / "course.py").read_text(), feature_version=(3, 11))


# ------------------------------------------------------ the test command ----


def load_course_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_ini_options() -> dict[str, Any]:
    options: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return options


def collect(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start collecting, in the repository root, with ``argv`` (a command line)."""
    return subprocess.Popen(
        argv + ["--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def node_ids(proc: subprocess.Popen[str]) -> tuple[list[str], int]:
    """The node ids a ``collect()`` run printed, and its exit code."""
    out, _ = proc.communicate(timeout=100)
    ids = [line for line in out.splitlines() if line.split("::")[0].endswith((".py", ".ipynb"))]
    return ids, proc.returncode


def test_pytest_config_is_the_whole_suite_with_strict_nbval() -> None:
    ini = pytest_ini_options()
    assert ini["testpaths"] == ["tests", "notebooks"]
    addopts = ini["addopts"]
    assert "--nbval" in addopts and "--nbval-lax" not in addopts
    sanitize = addopts[addopts.index("--nbval-sanitize-with") + 1]
    assert (ROOT / sanitize).is_file(), sanitize
    assert not any("--soak" in marker for marker in ini.get("markers", []))


def test_course_py_test_adds_nothing_to_pytest() -> None:
    course = load_course_py()
    assert course.pytest_args([]) == ["-m", "pytest"]
    assert course.pytest_args(["-q", "-k", "frames"]) == ["-m", "pytest", "-q", "-k", "frames"]


def test_plain_pytest_collects_what_course_py_test_collects() -> None:
    course = load_course_py()
    plain_pytest = Path(sys.executable).with_name("pytest")
    if not plain_pytest.exists():
        pytest.skip(f"no pytest script next to {sys.executable}")
    # Both at once: each collection takes several seconds.
    readme = collect([sys.executable] + course.pytest_args([]), env=course.child_env())
    plain = collect([str(plain_pytest)])
    readme_ids, readme_rc = node_ids(readme)
    plain_ids, plain_rc = node_ids(plain)
    assert (plain_ids, plain_rc) == (readme_ids, readme_rc)
    assert any(i.startswith("tests/") for i in readme_ids)
    assert any(i.startswith("notebooks/") and ".ipynb::" in i for i in readme_ids)


def test_a_path_after_dashdash_replaces_the_configured_paths() -> None:
    course = load_course_py()
    ids, rc = node_ids(collect([sys.executable] + course.pytest_args(["tests/test_frames.py"]), env=course.child_env()))
    assert rc == 0 and ids, ids
    assert all(i.startswith("tests/test_frames.py::") for i in ids), ids
