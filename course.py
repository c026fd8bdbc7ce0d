#!/usr/bin/env python3
"""One entry point for the WebSocket course: set up, open the lab, run the tests.

    python3 course.py lab     # set up the lessons, open the course in JupyterLab
    python3 course.py test    # set up the lessons and the tests, run the whole suite

(On Windows: ``py course.py lab``, ``py course.py test``.)

Other subcommands: ``setup`` (only set up; ``--test`` for the test install),
``kernel`` (register the course's venv as the "WebSocket course" kernel of this
user, for a JupyterHub's or VS Code's own Jupyter), ``lab-server`` (run
``python -m labserver``), ``constraints`` (rewrite constraints.txt from the
venv) and ``figures`` (redraw images/ with tools/figures/*.py).  Arguments
after ``--`` are passed through, e.g.
``python3 course.py lab -- --no-browser --port 8888`` or
``python3 course.py test -- -q -k frames``.

Standard library only.  Everything goes into ``.venv/`` next to this file; the
venv's python is always called explicitly (nothing is ever "activated").
Installs are pinned: ``pip install -c constraints.txt -e .[EXTRAS]``.
Setup is idempotent: a second run only checks a stamp file and returns.  The
lessons need pyproject.toml's ``course`` extra; the tests add its ``test``
extra and Chromium.  A venv keeps every extra it ever had, so switching between
``lab`` and ``test`` installs at most once.
"""

from __future__ import print_function  # so even Python 2 gets to the check below

import sys

if sys.version_info < (3, 11):
    sys.exit(
        "course.py needs Python 3.11 or newer, but this is Python %d.%d (%s); "
        "install Python 3.11+ and run e.g. `%s course.py lab`."
        % (
            sys.version_info[0],
            sys.version_info[1],
            sys.executable,
            "py -3.11" if sys.platform == "win32" else "python3.11",
        )
    )

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".course-installed"
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / "constraints.txt"
NOTEBOOKS = ROOT / "notebooks"

# The page `lab` opens: the course's index if it has one, else the first lesson.
START_PAGES = ("notebooks/index.ipynb", "notebooks/00_welcome.ipynb")

# The notebooks name this kernel.  `setup` registers it inside the venv (for
# JupyterLab started by `lab`, and for nbval); `kernel` registers it for the
# user (for a JupyterHub's or VS Code's own Jupyter).
KERNEL_NAME = "websocket-course"
KERNEL_DISPLAY_NAME = "WebSocket course"
# Also inside the venv: `python3`, the name tests and older notebooks start.
VENV_KERNELS = (("python3", None), (KERNEL_NAME, KERNEL_DISPLAY_NAME))

# The two installs: which extras of pyproject.toml each needs.
INSTALLS = {
    "lab": ("course",),
    "test": ("course", "test"),
}

# Modules whose absence means the venv is damaged even if the stamp matches,
# for the base install and for each extra.
SANITY_MODULES = {
    "": ("aiohttp", "websockets", "jwt"),
    "course": ("jupyterlab", "ipykernel", "ipywidgets"),
    "test": ("pytest", "nbval", "playwright"),
}

# System packages per install: (Debian package, the command that shows it is
# there, what is skipped without it).  The lessons need none.
SYSTEM_PACKAGES = {
    "lab": (),
    "test": (
        ("chromium", "chromium", "the browser tests"),
        ("redis-server", "redis-server", "the scale-out tests (--redis)"),
    ),
}

IS_WINDOWS = os.name == "nt"
PROG = "py course.py" if IS_WINDOWS else "python3 course.py"


# ---------------------------------------------------------------- output ----


def say(msg):
    print("==> " + msg, flush=True)


def warn(msg):
    print("==> WARNING: " + msg, file=sys.stderr, flush=True)


def die(msg, code=1):
    print("==> ERROR: " + msg, file=sys.stderr, flush=True)
    sys.exit(code)


class step:
    """``with step("Doing X"):`` prints ``==> Doing X ...`` then ``    done (1.2s)``."""

    def __init__(self, msg):
        self.msg = msg

    def __enter__(self):
        self.t = time.monotonic()
        say(self.msg + " ...")
        return self

    def fail(self, why):
        self.failed = True
        print("    " + why, flush=True)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not getattr(self, "failed", False):
            print("    done (%.1fs)" % (time.monotonic() - self.t), flush=True)
        return False


# ----------------------------------------------------------------- paths ----


def venv_bin():
    return VENV / ("Scripts" if IS_WINDOWS else "bin")


def venv_python():
    return venv_bin() / ("python.exe" if IS_WINDOWS else "python")


def child_env():
    """Environment for every child process: unbuffered, venv first on PATH."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Kernels/extensions installed in the venv win over ones in ~/.local.
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    # Not an activation: just so `!pytest` or a JupyterLab terminal finds the
    # venv's tools.  We still always call the venv's python by full path.
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = str(venv_bin()) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONHOME", None)
    return env


def run(cmd, quiet=False, **kw):
    """Run a command; with quiet=True its output is shown only if it fails."""
    kw.setdefault("cwd", ROOT)
    kw.setdefault("env", child_env())
    if shutil.which(str(cmd[0])) is None:
        print("    cannot run %s: not found" % cmd[0], file=sys.stderr, flush=True)
        return 127
    if quiet:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", **kw)
        if p.returncode != 0:
            tail = p.stdout.splitlines()[-40:]
            if tail:
                print("\n".join("    | " + line for line in tail), file=sys.stderr)
        return p.returncode
    return subprocess.run(cmd, **kw).returncode


def fmt_cmd(cmd):
    return " ".join(str(c) for c in cmd)


# ------------------------------------------------------------------ venv ----


def venv_is_usable():
    """True if .venv has a working python >= 3.11 that lives at this path."""
    py = venv_python()
    if not py.exists():
        return False
    try:
        out = subprocess.run(
            [str(py), "-c", "import sys; print(sys.version_info >= (3, 11)); print(sys.prefix)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    lines = out.stdout.split("\n")
    if out.returncode != 0 or len(lines) < 2 or lines[0] != "True":
        return False
    try:
        return Path(lines[1]).resolve() == VENV.resolve()
    except OSError:
        return False


def ensure_venv():
    if venv_is_usable():
        stamp = read_stamp()
        if not stamp or stamp.get("venv") in (None, str(VENV)):
            return False
        warn("the repository moved since .venv was built (%s); rebuilding it" % stamp.get("venv"))
    if VENV.exists():
        with step("Removing unusable %s" % VENV.name):
            shutil.rmtree(VENV)
    venv_pkg = "python3.%d-venv" % sys.version_info[1]
    for attempt in (1, 2):
        if attempt == 2:
            # Debian/Ubuntu split venv/ensurepip out of the base python.
            with step("Installing %s with apt-get (this python cannot make virtual environments)" % venv_pkg):
                apt_update()
                if apt_install([venv_pkg]) != 0:
                    die("apt-get install %s failed" % venv_pkg)
        with step(
            "Creating virtual environment %s with %s (Python %s)" % (VENV.name, sys.executable, sys.version.split()[0])
        ) as st:
            rc = run([sys.executable, "-m", "venv", str(VENV)], quiet=True)
            ok = rc == 0 and venv_python().exists()
            if not ok:
                shutil.rmtree(VENV, ignore_errors=True)
                st.fail("failed (exit %d)" % rc)
        if ok:
            return True
        # Only the distribution's own python is fixed by its venv package.
        if not (can_apt() and sys.executable.startswith("/usr/bin/")):
            break
    die(
        "`%s -m venv .venv` failed; on Debian/Ubuntu install %s "
        "(`sudo apt-get install %s`) and rerun" % (sys.executable, venv_pkg, venv_pkg)
    )


# ---------------------------------------------------- Python packages ----


def sha256_of(path):
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def read_stamp():
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def write_stamp(stamp):
    tmp = STAMP.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1) + "\n")
    tmp.replace(STAMP)


def stamp_extras(stamp):
    """The extras a stamp says are installed (older stamps wrote "course,test")."""
    extras = stamp.get("extras") or []
    if isinstance(extras, str):
        extras = extras.split(",")
    return sorted(set(e.strip() for e in extras if e.strip()))


def wanted_stamp(extras):
    """What the stamp must say for an install of `extras` from today's files."""
    return {
        "pyproject_sha256": sha256_of(PYPROJECT),
        "constraints_sha256": sha256_of(CONSTRAINTS),
        "extras": sorted(extras),
        "venv": str(VENV),
    }


def same_files(stamp, want):
    """The stamp was written in this venv for today's pyproject.toml and constraints.txt."""
    return all(stamp.get(key) == want[key] for key in ("pyproject_sha256", "constraints_sha256", "venv"))


def stamp_covers(stamp, want):
    """True if the install a stamp records serves `want`: same files and venv, and
    at least the wanted extras (a test install serves the lessons too)."""
    return same_files(stamp, want) and set(want["extras"]) <= set(stamp_extras(stamp))


def extras_to_install(stamp, extras):
    """The wanted extras plus those this venv already has: when `lab` reinstalls
    (pyproject.toml changed) a test install stays one, so switching between `lab`
    and `test` never installs twice."""
    had = stamp_extras(stamp) if stamp.get("venv") == str(VENV) else []
    return sorted(set(extras) | set(had))


def pip_install_command(extras):
    """`pip install -c constraints.txt -e .[extras]`, as the venv's python."""
    cmd = [str(venv_python()), "-m", "pip", "install", "-q"]
    if CONSTRAINTS.exists():
        cmd += ["-c", CONSTRAINTS.name]
    return cmd + ["-e", ".[%s]" % ",".join(extras)]


def sanity_ok(extras):
    modules = list(SANITY_MODULES[""])
    for extra in extras:
        modules += SANITY_MODULES.get(extra, ())
    code = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in %r))" % (modules,)
    return run([str(venv_python()), "-c", code], quiet=True) == 0


def ensure_packages(fresh_venv, extras):
    stamp = {} if fresh_venv else read_stamp()
    want = wanted_stamp(extras)
    if stamp_covers(stamp, want) and sanity_ok(extras):
        say("Python packages up to date (.[%s], pinned by %s)" % (",".join(stamp_extras(stamp)), CONSTRAINTS.name))
        return
    if fresh_venv:
        why = "new venv; the first install takes a few minutes"
    elif not stamp:
        why = "no finished install recorded"
    elif not same_files(stamp, want):
        why = "pyproject.toml or %s changed" % CONSTRAINTS.name
    elif not set(extras) <= set(stamp_extras(stamp)):
        why = "adds the %s extra" % ", ".join(sorted(set(extras) - set(stamp_extras(stamp))))
    else:
        why = "install incomplete"
    extras = extras_to_install(stamp, extras)
    if not CONSTRAINTS.exists():
        warn("no %s: installing the newest versions pyproject.toml allows, not the tested ones" % CONSTRAINTS.name)
    STAMP.unlink(missing_ok=True)
    cmd = pip_install_command(extras)
    with step("Installing Python packages: %s (%s)" % (fmt_cmd(["pip"] + cmd[3:]), why)):
        rc = run(cmd)
        if rc != 0:
            die("pip install failed (exit %d); fix the error above and rerun" % rc)
    # Force the kernel specs to be rewritten against this venv's python.
    for name, _ in VENV_KERNELS:
        kernel_json(name).unlink(missing_ok=True)
    write_stamp(wanted_stamp(extras))


# --------------------------------------------------------------- kernels ----


def kernel_json(name):
    return VENV / "share" / "jupyter" / "kernels" / name / "kernel.json"


def kernel_is_registered(name, display_name):
    try:
        spec = json.loads(kernel_json(name).read_text())
        return Path(spec["argv"][0]) == venv_python() and display_name in (None, spec.get("display_name"))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False


def ipykernel_install(name, display_name, where):
    """`python -m ipykernel install` for the venv's python; where: --sys-prefix or --user."""
    cmd = [str(venv_python()), "-m", "ipykernel", "install", where, "--name", name]
    if display_name:
        cmd += ["--display-name", display_name]
    return run(cmd, quiet=True)


def ensure_kernels():
    """Register the venv's python as Jupyter kernels inside the venv (sys-prefix)."""
    for name, display_name in VENV_KERNELS:
        if kernel_is_registered(name, display_name):
            continue
        with step("Registering Jupyter kernel '%s' -> %s" % (name, venv_python())):
            rc = ipykernel_install(name, display_name, "--sys-prefix")
            if rc != 0:
                die("`python -m ipykernel install --sys-prefix --name %s` failed (exit %d)" % (name, rc))


# ------------------------------------------------------- system packages ----


def is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def can_apt():
    return is_root() and shutil.which("apt-get") is not None


def apt_env():
    env = child_env()
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def apt_update():
    if run(["apt-get", "update", "-q"], quiet=True, env=apt_env()) != 0:
        warn("apt-get update failed; trying the install anyway")


def apt_install(pkgs):
    return run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + list(pkgs), quiet=True, env=apt_env())


def missing_system_packages(kind):
    return [(pkg, needed_by) for pkg, exe, needed_by in SYSTEM_PACKAGES[kind] if shutil.which(exe) is None]


def in_ci():
    return os.environ.get("CI", "").strip().lower() == "true"


def ensure_system_packages(kind):
    """Install (as root, with apt-get) what the `kind` install needs; else say what
    will be skipped, and on CI refuse to go on."""
    if not SYSTEM_PACKAGES[kind]:
        return
    missing = missing_system_packages(kind)
    if not missing:
        say("System packages present: " + ", ".join(p for p, _, _ in SYSTEM_PACKAGES[kind]))
        return
    names = [pkg for pkg, _ in missing]
    if can_apt():
        with step("Running: apt-get update"):
            apt_update()
        with step("Running: apt-get install -y --no-install-recommends " + " ".join(names)):
            if apt_install(names) != 0 and len(names) > 1:
                # One unavailable package must not block the others.
                for pkg in names:
                    apt_install([pkg])
        missing = missing_system_packages(kind)
        if not missing:
            return
        names = [pkg for pkg, _ in missing]
    else:
        say("Cannot install %s here (needs root and apt-get)" % ", ".join(names))
    msg = "missing system package(s): %s -- %s will be SKIPPED. Install %s (Debian: `%s`) and rerun." % (
        ", ".join(names),
        " and ".join(needed_by for _, needed_by in missing),
        "them" if len(names) > 1 else "it",
        "sudo apt-get install -y --no-install-recommends " + " ".join(names),
    )
    if in_ci():
        die(msg.replace("will be SKIPPED", "would be skipped") + " (CI=true: refusing to skip silently)")
    warn(msg)


# ----------------------------------------------------------------- setup ----


def setup(kind, system=True):
    """Make .venv the `kind` install ("lab" or "test"); system=False skips the
    system packages (chromium for "test")."""
    t0 = time.monotonic()
    if not PYPROJECT.exists():
        die("no pyproject.toml next to course.py (%s)" % ROOT)
    if system:
        ensure_system_packages(kind)
    fresh = ensure_venv()
    ensure_packages(fresh, INSTALLS[kind])
    ensure_kernels()
    say("Setup complete (%.1fs)" % (time.monotonic() - t0))


# -------------------------------------------------------- constraints ----

# Run by the venv's python (`-I`: the repository is not on sys.path): which Python
# and OS, then every distribution that pyproject.toml's dependencies and EXTRAS
# need, following each requirement's markers and extras, as "Name==version".
# (From pyproject.toml itself: the venv's labserver metadata can be older.)
# packaging is in every course venv (jupyterlab needs it).
CONSTRAINTS_SCRIPT = r"""
import platform, re, sys, tomllib
from importlib import metadata
from packaging.requirements import Requirement

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
wanted = list(project.get("dependencies", []))
for extra in sys.argv[2].split(","):
    wanted += project["optional-dependencies"][extra]
dists = {norm(d.metadata["Name"]): d for d in metadata.distributions()}
pins, seen = {}, set()
todo = [(req.name, frozenset(req.extras)) for req in map(Requirement, wanted)]
while todo:
    name, extras = todo.pop()
    key = norm(name)
    if (key, extras) in seen:
        continue
    seen.add((key, extras))
    dist = dists.get(key)
    if dist is None:
        sys.exit("required but not installed: %s" % name)
    pins[key] = "%s==%s" % (dist.metadata["Name"], dist.version)
    for text in dist.requires or ():
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            todo.append((req.name, frozenset(req.extras)))
print("Python %d.%d on %s" % (sys.version_info[0], sys.version_info[1], platform.system()))
print("\n".join(pins[key] for key in sorted(pins)))
"""

CONSTRAINTS_HEADER = """\
# The exact versions the whole suite passed with: labserver[%s] and everything
# it needs (%s).  pyproject.toml keeps ranges; installs use both:
#     pip install -c constraints.txt -e .[course]        (what course.py does)
# Regenerate from .venv after the suite passes: %s constraints
"""


def constraint_lines(python, extras):
    """Where (e.g. "Python 3.11 on Linux"), and the `Name==version` of every
    package that pyproject.toml's dependencies and `extras` need, as installed
    for `python`."""
    out = subprocess.run(
        [str(python), "-I", "-c", CONSTRAINTS_SCRIPT, str(PYPROJECT), ",".join(extras)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        die("could not list the venv's packages: " + (out.stderr.strip() or out.stdout.strip()))
    lines = out.stdout.splitlines()
    return lines[0], [line for line in lines[1:] if line]


def pins_by_name(lines):
    """{normalised name: "Name==version"} from constraints lines (comments allowed)."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split("==", 1)[0].strip()
            pins[re.sub(r"[-_.]+", "-", name).lower()] = line
    return pins


def cmd_constraints(ns, extra):
    if extra:
        die("`constraints` takes no pass-through arguments")
    setup("test", system=False)
    extras = INSTALLS["test"]
    where, lines = constraint_lines(venv_python(), extras)
    old = pins_by_name(CONSTRAINTS.read_text().splitlines()) if CONSTRAINTS.exists() else {}
    new = pins_by_name(lines)
    CONSTRAINTS.write_text(CONSTRAINTS_HEADER % (",".join(extras), where, PROG) + "\n".join(lines) + "\n")
    changes = ["%s -> %s" % (old.get(key, "(new)"), pin) for key, pin in sorted(new.items()) if old.get(key) != pin]
    changes += ["%s -> (gone)" % pin for key, pin in sorted(old.items()) if key not in new]
    for change in changes:
        print("    " + change)
    say("Wrote %s: %d packages, %d changed" % (CONSTRAINTS.name, len(lines), len(changes)))
    # The venv is what the file now says: no reinstall next time.
    write_stamp(wanted_stamp(stamp_extras(read_stamp())))


# -------------------------------------------------------------- commands ----


def exec_venv(args):
    """Replace this process with the venv's python running `args`."""
    cmd = [str(venv_python())] + list(args)
    say("Running: " + fmt_cmd([venv_python().relative_to(ROOT)] + list(args)))
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(ROOT)
    if IS_WINDOWS:
        try:
            sys.exit(subprocess.run(cmd, env=child_env()).returncode)
        except KeyboardInterrupt:
            sys.exit(130)
    os.execve(cmd[0], cmd, child_env())


def cmd_setup(ns, extra):
    if extra:
        die("`setup` takes no pass-through arguments")
    setup("test" if ns.test else "lab", system=not ns.no_system)


def start_page():
    """The page `lab` opens, relative to the repository root (None: JupyterLab's own)."""
    for page in START_PAGES:
        if (ROOT / page).is_file():
            return page
    return None


def lab_args(extra):
    """The venv python's arguments for `lab`: JupyterLab at the repository root,
    opening the course's first page.  `extra` comes last, so it can override."""
    args = ["-m", "jupyterlab", "--notebook-dir=" + str(ROOT)]
    page = start_page()
    if page is not None:
        # The URL printed and opened; `lab/tree/PATH` opens PATH in JupyterLab.
        args.append("--LabApp.default_url=/lab/tree/" + page)
    if is_root() and "--allow-root" not in extra:
        # Jupyter refuses to start as root otherwise (containers, CI, VMs).
        args.append("--allow-root")
    return args + list(extra)


def cmd_lab(ns, extra):
    setup("lab", system=False)
    if not NOTEBOOKS.is_dir():
        die("no notebooks/ directory in %s" % ROOT)
    exec_venv(lab_args(extra))


def cmd_lab_server(ns, extra):
    setup("lab", system=False)
    exec_venv(["-m", "labserver"] + extra)


def cmd_class(ns, extra):
    """Run one lab for the whole class: a join code, the students' URL and the projector link."""
    setup("lab", system=False)
    exec_venv(["-c", "from labserver.course.classroom import main; main()"] + extra)


def cmd_kernel(ns, extra):
    if extra:
        die("`kernel` takes no pass-through arguments")
    setup("lab", system=False)
    with step("Registering %s as the Jupyter kernel '%s' of this user" % (venv_python(), KERNEL_DISPLAY_NAME)):
        rc = ipykernel_install(KERNEL_NAME, KERNEL_DISPLAY_NAME, "--user")
        if rc != 0:
            die("`python -m ipykernel install --user --name %s` failed (exit %d)" % (KERNEL_NAME, rc))
    say(
        "Now open notebooks/00_welcome.ipynb in your JupyterLab (JupyterHub, VS Code...) and pick the "
        "'%s' kernel (Kernel > Change Kernel)." % KERNEL_DISPLAY_NAME
    )


def cmd_figures(ns, extra):
    """Redraw images/: every script in tools/figures/ (figures, lesson 01's plot, screenshots).
    Nothing else writes there: lessons show their figures inline, tests save to temporary paths."""
    if extra:
        die("`figures` takes no pass-through arguments")
    setup("test")  # the screenshots need the test extra (pytest, Playwright) and Chromium
    failed = []
    for script in sorted((ROOT / "tools" / "figures").glob("*.py")):
        if script.name.startswith("_"):  # a module the scripts import (_svg.py), not a figure
            continue
        with step("Running " + fmt_cmd([venv_python().relative_to(ROOT), script.relative_to(ROOT)])) as st:
            rc = run([str(venv_python()), str(script)])
            if rc != 0:
                failed.append(script.name)
                st.fail("failed (exit %d)" % rc)
    if failed:
        die("figure script(s) failed: " + ", ".join(failed))


def pytest_args(extra):
    """The venv python's arguments for `test`: pytest from the repository root.

    Which paths and options make up the suite (tests/ and strict nbval over
    notebooks/) is pyproject.toml's [tool.pytest.ini_options], so plain
    `pytest` runs the same suite; paths among `extra` replace its testpaths.
    """
    return ["-m", "pytest"] + list(extra)


def cmd_test(ns, extra):
    setup("test", system=not ns.no_system)
    args = pytest_args(extra)
    cmd = [str(venv_python())] + args
    say("Running: " + fmt_cmd([venv_python().relative_to(ROOT)] + args))
    t0 = time.monotonic()
    try:
        rc = subprocess.run(cmd, cwd=ROOT, env=child_env()).returncode
    except KeyboardInterrupt:
        rc = 130
    took = time.monotonic() - t0
    if rc == 0:
        say("Tests passed (%.1fs)" % took)
    elif rc == 5:
        print(
            "==> ERROR: pytest collected no tests (exit 5) -- treating that as a failure (%.1fs)" % took,
            file=sys.stderr,
            flush=True,
        )
    else:
        print("==> ERROR: tests failed, pytest exit code %d (%.1fs)" % (rc, took), file=sys.stderr, flush=True)
    sys.exit(rc)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Set up and run the WebSocket course (everything lives in .venv/).",
        epilog="Arguments after `--` are passed through, e.g. "
        "`%s lab -- --no-browser --port 8888` or "
        "`%s test -- -q -x tests/test_frames.py`." % (PROG, PROG),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("setup", help="create .venv and install the lessons (--test: and the tests); idempotent")
    p.add_argument("--test", action="store_true", help="the test install: add the `test` extra and Chromium")
    p.add_argument("--no-system", action="store_true", help="do not check or apt-get install chromium (with --test)")
    p.set_defaults(func=cmd_setup)
    p = sub.add_parser(
        "lab", help="setup, then open the course in JupyterLab (extra args after -- go to `jupyter lab`)"
    )
    p.set_defaults(func=cmd_lab)
    p = sub.add_parser(
        "test", help="setup --test, then run pytest over tests/ and the notebooks (extra args after -- go to pytest)"
    )
    p.add_argument("--no-system", action="store_true", help="do not check or apt-get install chromium")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser(
        "kernel",
        help="setup, then register .venv as this user's '%s' Jupyter kernel (for a JupyterHub's own JupyterLab)"
        % KERNEL_DISPLAY_NAME,
    )
    p.set_defaults(func=cmd_kernel)
    p = sub.add_parser("lab-server", help="setup, then run `python -m labserver` (extra args after -- go to it)")
    p.set_defaults(func=cmd_lab_server)
    p = sub.add_parser(
        "class",
        help="setup, then run one lab for a class with a join code (after --: --host 0.0.0.0 for the room's LAN, "
        "--port, --code, --accounts-per-code, --data-dir)",
    )
    p.set_defaults(func=cmd_class)
    p = sub.add_parser(
        "constraints", help="setup --test, then rewrite %s from the versions installed in .venv" % CONSTRAINTS.name
    )
    p.set_defaults(func=cmd_constraints)
    p = sub.add_parser("figures", help="setup --test, then redraw images/ with tools/figures/*.py (incl. screenshots)")
    p.set_defaults(func=cmd_figures)

    ns = parser.parse_args(argv)
    try:
        ns.func(ns, extra)
    except KeyboardInterrupt:
        print("\n==> interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
