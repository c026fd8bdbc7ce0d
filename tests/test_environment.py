"""The ways into the course agree with each other.

* environment.yml (conda/Binder) lists the same packages, with the same version
  bounds, as pyproject.toml's dependencies plus its `course` extra (the lessons;
  no test-only package), and postBuild registers the kernel course.py registers.
* constraints.txt pins every requirement of pyproject.toml, extras included, to a
  version inside pyproject.toml's range.
* .ci/run is `python3 course.py test`; the GitHub workflow runs the suite on
  Ubuntu (Python 3.11 and 3.13) and a smoke test on Windows and macOS; the dev
  container sets up the course; the README tells newcomers to use
  `python3 course.py lab` / `python3 course.py test` (`py course.py ...` on
  Windows), and its Binder badge opens lesson 00 of the repository pyproject.toml names.
* course.py stays standard-library only and runs on Python 3.11.
* `python3 course.py test` and plain `pytest` run the same suite: course.py adds
  nothing to pytest's command line, pyproject.toml's [tool.pytest.ini_options]
  says what the suite is (tests/ and strict nbval over notebooks/).
"""

import ast
import importlib
import importlib.util
import json
import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from labserver.config import Settings

ROOT = Path(__file__).resolve().parent.parent

# environment.yml is for the lessons: pyproject.toml's dependencies and these extras.
EXTRAS = ("course",)
# Every extra of pyproject.toml, for what must be pinned in constraints.txt.
ALL_EXTRAS = ("course", "test")
# pip (PyPI) name -> conda-forge name, after normalisation, where they differ.
CONDA_NAMES: dict[str, str] = {
    "playwright": "playwright-python",
    "redis": "redis-py",  # conda-forge's "redis" is an old copy of the client
}
# Entries environment.yml has on top of pyproject.toml's.
CONDA_ONLY = {"python", "pip", "redis-server"}  # redis-server: a binary for --redis, not a Python package

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def split_req(req):
    """'PyJWT >= 2.8' -> ('pyjwt', '>=2.8'). Markers (';') are not supported."""
    assert ";" not in req, f"environment markers can't be mirrored in conda: {req!r}"
    m = _REQ.match(req)
    assert m, f"can't parse requirement {req!r}"
    return norm(m.group(1)), re.sub(r"\s+", "", m.group(2))


def pyproject_requirements(path, extras=EXTRAS):
    data = tomllib.loads(Path(path).read_text())
    project = data["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
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
    for name in ("aiohttp", "pyjwt", "jupyterlab", "ipykernel", "ipywidgets", "jupyter-server-proxy"):
        assert name in want
    assert len(want) >= 9


def test_environment_yml_has_no_test_only_package():
    test_only = set(pyproject_requirements(ROOT / "pyproject.toml", ("test",))) - set(
        pyproject_requirements(ROOT / "pyproject.toml")
    )
    assert {"pytest", "nbval", "playwright", "mypy"} <= test_only
    conda = {conda_spec(item)[0] for item in parse_environment((ROOT / "environment.yml").read_text())["conda"]}
    assert not conda & {CONDA_NAMES.get(name, name) for name in test_only}


@pytest.mark.parametrize(
    "perturb, expect",
    [
        (lambda t: t.replace("websockets>=15", "websockets>=14"), "websockets"),
        (lambda t: t.replace("  - jupytext>=1.16\n", ""), "jupytext"),
        (lambda t: t.replace("  - pip:\n", "  - requests>=2\n  - pip:\n"), "requests"),
        (lambda t: t.replace("  - pip:\n", "  - pytest>=8\n  - pip:\n"), "pytest"),
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


def test_binder_registers_the_kernel_course_py_registers():
    course = load_course_py()
    commands = _commands(ROOT / "postBuild")
    assert "set -euo pipefail" in commands
    installs = [line for line in commands if "ipykernel install" in line]
    name, display_name = course.KERNEL_NAME, course.KERNEL_DISPLAY_NAME
    assert installs == [f'python -m ipykernel install --sys-prefix --name {name} --display-name "{display_name}"']


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
    text = (ROOT / "README.md").read_text()
    assert "python3 course.py lab" in text
    assert "python3 course.py test" in text
    assert "py course.py lab" in text.replace("python3 course.py", "")  # Windows
    assert "py course.py test" in text.replace("python3 course.py", "")
    assert "python3 course.py kernel" in text  # JupyterHub


# ---------------------------------------------------------- the repository ----


def repository_slug() -> str:
    """owner/name of the course's public repository: pyproject.toml's [project.urls] is its one home."""
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", url)
    assert match, url
    return match.group(1)


def test_the_binder_badge_opens_lesson_00_of_the_repository_pyproject_names():
    text = (ROOT / "README.md").read_text()
    badges = re.findall(r"\(https://mybinder\.org/v2/gh/([^)]*)\)", text)
    assert len(badges) == 1, badges
    slug, _, rest = badges[0].partition("/HEAD?")
    assert slug == repository_slug()
    assert rest == "labpath=notebooks%2F00_welcome.ipynb"
    assert (ROOT / "notebooks" / "00_welcome.ipynb").is_file()


def test_the_readme_names_no_other_repository():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"(?:github\.com|/v2/gh)/([\w.-]+/[\w.-]+)", text))
    assert named == {repository_slug()}, named


def test_one_license_story():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    license_text = (ROOT / "LICENSE").read_text()
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## License\n", 1)[1].split("\n## ", 1)[0]
    for text in (license_text, section):
        assert "MIT License" in text
        assert "CC BY 4.0" in text
        for lesson_text in ("notebooks/", "lessons.md", "images/"):
            assert lesson_text in text
    assert "Permission is hereby granted, free of charge" in license_text


# ------------------------------------------------------------- constraints ----


def constraints(path: Path = ROOT / "constraints.txt") -> dict[str, Version]:
    """{normalised name: pinned version} from a constraints file of `Name==version` lines."""
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        name = norm(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Version(match.group(2))
    return pins


def constraint_problems(pyproject_path: Path, constraints_path: Path) -> list[str]:
    """Every requirement of pyproject.toml (extras included) unpinned or pinned out of its range."""
    project = tomllib.loads(pyproject_path.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in ALL_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    pins = constraints(constraints_path)
    problems = []
    if norm(project["name"]) in pins:
        problems.append(f"{project['name']} itself is pinned (it is installed from this checkout)")
    for text in requirements:
        req = Requirement(text)
        pinned = pins.get(norm(req.name))
        if pinned is None:
            problems.append(f"{req.name} is not in constraints.txt")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}=={pinned} is outside pyproject.toml's {req.specifier}")
    return problems


def test_every_requirement_is_pinned_inside_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(ALL_EXTRAS) == set(project["optional-dependencies"])
    assert constraint_problems(ROOT / "pyproject.toml", ROOT / "constraints.txt") == []


@pytest.mark.parametrize(
    "perturb, expect",
    [
        (lambda t: re.sub(r"(?m)^aiohttp==.*$", "aiohttp==3.15.0", t), "aiohttp==3.15.0 is outside"),
        (lambda t: re.sub(r"(?m)^nbval==.*\n", "", t), "nbval is not in"),
        (lambda t: t + "labserver==0.1.0\n", "itself is pinned"),
    ],
)
def test_constraint_drift_is_caught(tmp_path, perturb, expect):
    text = (ROOT / "constraints.txt").read_text()
    changed = perturb(text)
    assert changed != text, "perturbation did not apply; update this test"
    (tmp_path / "constraints.txt").write_text(changed)
    problems = constraint_problems(ROOT / "pyproject.toml", tmp_path / "constraints.txt")
    assert any(expect in p for p in problems), problems


def test_constraints_are_what_course_py_constraints_writes_for_this_venv():
    """The generator follows the requirement graph: every pin it writes is installed here, and it
    reaches past the direct requirements (aiohttp's multidict, jupyterlab's jupyter_server)."""
    from importlib import metadata

    course = load_course_py()
    where, lines = course.constraint_lines(sys.executable, course.INSTALLS["test"])
    assert where == f"Python {sys.version_info[0]}.{sys.version_info[1]} on {platform.system()}"
    pins = course.pins_by_name(lines)
    for name, pin in pins.items():
        assert pin == f"{metadata.metadata(name)['Name']}=={metadata.version(name)}"
    assert {"aiohttp", "multidict", "jupyterlab", "jupyter-server", "pytest", "psutil"} <= set(pins)
    assert "labserver" not in pins


# --------------------------------------------------------- CI, dev container ----


def workflow() -> dict[str, Any]:
    yaml = importlib.import_module("yaml")  # PyYAML: in every course venv (jupyter-events needs it)
    data: dict[str, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    return data


def _runs(job: dict[str, Any]) -> list[str]:
    return [" ".join(step["run"].split()) for step in job["steps"] if "run" in step]


def test_ci_runs_the_suite_on_ubuntu_with_python_311_and_313():
    jobs = workflow()["jobs"]
    suite = jobs["suite"]
    assert suite["runs-on"] == "ubuntu-latest"
    assert suite["strategy"]["matrix"]["python-version"] == ["3.11", "3.13"]
    (setup_python,) = [step for step in suite["steps"] if step.get("uses", "").startswith("actions/setup-python")]
    assert setup_python["with"]["python-version"] == "${{ matrix.python-version }}"
    assert "bash .ci/run" in _runs(suite)
    assert suite["env"]["CI"] == "true"  # a missing chromium fails instead of skipping


def test_ci_smoke_tests_windows_and_macos():
    jobs = workflow()["jobs"]
    smoke = jobs["smoke"]
    assert smoke["runs-on"] == "${{ matrix.os }}"
    assert smoke["strategy"]["matrix"]["os"] == ["windows-latest", "macos-latest"]
    runs = _runs(smoke)
    assert "python course.py setup --test --no-system" in runs
    assert "$VENV_PYTHON tools/smoke.py" in runs
    nbval = [run for run in runs if "--nbval" in run]
    assert nbval == [
        "$VENV_PYTHON -m pytest --nbval notebooks/00_welcome.ipynb --nbval-sanitize-with tests/nbval_sanitize.cfg "
        '-p no:cacheprovider -o addopts=""'
    ]
    assert (ROOT / "tools" / "smoke.py").is_file()
    oses = {jobs["suite"]["runs-on"]} | set(smoke["strategy"]["matrix"]["os"])
    assert oses == {"ubuntu-latest", "windows-latest", "macos-latest"}


def test_nothing_installs_redis_yet():
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "redis" not in text.lower()
    assert not (ROOT / "apt.txt").exists()  # Binder's system packages: the lessons need none


def test_the_dev_container_sets_up_the_course():
    course = load_course_py()
    container = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert re.search(r"/python:[\w.-]*3\.11", container["image"]), container["image"]
    assert container["postCreateCommand"] == "python3 course.py setup"
    assert set(container["forwardPorts"]) == {8888, Settings().port}
    vscode = container["customizations"]["vscode"]
    assert {"ms-python.python", "ms-toolsai.jupyter"} <= set(vscode["extensions"])
    interpreter = vscode["settings"]["python.defaultInterpreterPath"]
    assert interpreter == "${containerWorkspaceFolder}/" + course.venv_python().relative_to(ROOT).as_posix()


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
