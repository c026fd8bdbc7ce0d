#!/usr/bin/env python3
"""One entry point for the WebSocket course: set up, open the lab, run the tests.

    python3 course.py lab     # set everything up, open the course in JupyterLab
    python3 course.py test    # set everything up, run the whole test suite

Other subcommands: ``setup`` (only set up) and ``lab-server`` (run
``python -m labserver``).  Arguments after ``--`` are passed through, e.g.
``python3 course.py lab -- --no-browser --port 8888`` or
``python3 course.py test -- -q -k frames``.

Standard library only.  Everything goes into ``.venv/`` next to this file; the
venv's python is always called explicitly (nothing is ever "activated").
Setup is idempotent: a second run only checks a stamp file and returns.
"""

from __future__ import print_function  # so even Python 2 gets to the check below

import sys

if sys.version_info < (3, 11):
    sys.exit(
        "course.py needs Python 3.11 or newer, but this is Python %d.%d (%s); "
        "install Python 3.11+ and run e.g. `python3.11 course.py lab`."
        % (sys.version_info[0], sys.version_info[1], sys.executable)
    )

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".course-installed"
PYPROJECT = ROOT / "pyproject.toml"
NOTEBOOKS = ROOT / "notebooks"
EXTRAS = "course,test"
KERNEL_NAME = "python3"

# Modules whose absence means the venv is damaged even if the stamp matches.
SANITY_MODULES = ("pytest", "nbval", "jupyterlab", "ipykernel", "aiohttp", "websockets")

# System packages the test suite needs: (Debian package, how we detect it).
SYSTEM_PACKAGES = (
    ("redis-server", "redis-server"),
    ("chromium", "chromium"),
)

IS_WINDOWS = os.name == "nt"


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


def read_stamp():
    try:
        return json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}


def wanted_stamp():
    return {
        "pyproject_sha256": hashlib.sha256(PYPROJECT.read_bytes()).hexdigest(),
        "extras": EXTRAS,
        "venv": str(VENV),
    }


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


def sanity_ok():
    code = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in %r))" % (SANITY_MODULES,)
    return run([str(venv_python()), "-c", code], quiet=True) == 0


def ensure_packages(fresh_venv):
    want = wanted_stamp()
    if not fresh_venv and read_stamp() == want and sanity_ok():
        say("Python packages up to date (pyproject.toml unchanged)")
        return
    STAMP.unlink(missing_ok=True)
    why = (
        "new venv; the first install takes a few minutes"
        if fresh_venv
        else "pyproject.toml changed or install incomplete"
    )
    cmd = [str(venv_python()), "-m", "pip", "install", "-q", "-e", ".[%s]" % EXTRAS]
    with step("Installing Python packages: pip install -q -e '.[%s]' (%s)" % (EXTRAS, why)):
        rc = run(cmd)
        if rc != 0:
            die("pip install failed (exit %d); fix the error above and rerun" % rc)
    # Force the kernel spec to be rewritten against this venv's python.
    kernel_json().unlink(missing_ok=True)
    tmp = STAMP.with_suffix(".tmp")
    tmp.write_text(json.dumps(want, indent=1) + "\n")
    tmp.replace(STAMP)


def kernel_json():
    return VENV / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"


def ensure_kernel():
    """Register the venv's python as the `python3` Jupyter kernel (sys-prefix)."""
    try:
        argv0 = json.loads(kernel_json().read_text())["argv"][0]
        if Path(argv0) == venv_python():
            return
    except (OSError, ValueError, KeyError, IndexError):
        pass
    with step("Registering Jupyter kernel '%s' -> %s" % (KERNEL_NAME, venv_python())):
        rc = run([str(venv_python()), "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME], quiet=True)
        if rc != 0:
            die("`python -m ipykernel install --sys-prefix` failed (exit %d)" % rc)


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


def missing_system_packages():
    return [pkg for pkg, exe in SYSTEM_PACKAGES if shutil.which(exe) is None]


def in_ci():
    return os.environ.get("CI", "").strip().lower() == "true"


def ensure_system_packages(install):
    missing = missing_system_packages()
    if not missing:
        say("System packages present: " + ", ".join(p for p, _ in SYSTEM_PACKAGES))
        return
    if install and can_apt():
        with step("Running: apt-get update"):
            apt_update()
        with step("Running: apt-get install -y --no-install-recommends " + " ".join(missing)):
            if apt_install(missing) != 0 and len(missing) > 1:
                # One unavailable package (e.g. `chromium` on Ubuntu) must not
                # block the others.
                for pkg in missing:
                    apt_install([pkg])
        missing = missing_system_packages()
        if not missing:
            return
    elif not install:
        say(
            "Note: %s not installed; the notebook parts that use Redis or a "
            "browser will not work (`python3 course.py setup` as root installs "
            "them)" % ", ".join(missing)
        )
        return
    else:
        say("Cannot install %s here (needs root and apt-get)" % ", ".join(missing))
    msg = (
        "missing system package(s): %s -- the Redis/browser tests will be "
        "SKIPPED. Install them (Debian: `sudo apt-get install -y "
        "--no-install-recommends %s`) and rerun." % (", ".join(missing), " ".join(missing))
    )
    if in_ci():
        die(msg.replace("will be SKIPPED", "would be skipped") + " (CI=true: refusing to skip silently)")
    warn(msg)


# ----------------------------------------------------------------- setup ----


def setup(system="install"):
    """system: 'install' (apt-get if needed), 'check' (warn only), 'skip'."""
    t0 = time.monotonic()
    if not PYPROJECT.exists():
        die("no pyproject.toml next to course.py (%s)" % ROOT)
    if system != "skip":
        ensure_system_packages(install=(system == "install"))
    fresh = ensure_venv()
    ensure_packages(fresh)
    ensure_kernel()
    say("Setup complete (%.1fs)" % (time.monotonic() - t0))


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
    setup("skip" if ns.no_system else "install")


def cmd_lab(ns, extra):
    setup("check")
    if not NOTEBOOKS.is_dir():
        die("no notebooks/ directory in %s" % ROOT)
    args = ["-m", "jupyterlab", "--notebook-dir=" + str(NOTEBOOKS)]
    if is_root() and "--allow-root" not in extra:
        # Jupyter refuses to start as root otherwise (containers, CI, VMs).
        args.append("--allow-root")
    exec_venv(args + extra)


def cmd_lab_server(ns, extra):
    setup("check")
    exec_venv(["-m", "labserver"] + extra)


def pytest_args(extra):
    """The venv python's arguments for `test`: pytest from the repository root.

    Which paths and options make up the suite (tests/ and strict nbval over
    notebooks/) is pyproject.toml's [tool.pytest.ini_options], so plain
    `pytest` runs the same suite; paths among `extra` replace its testpaths.
    """
    return ["-m", "pytest"] + list(extra)


def cmd_test(ns, extra):
    setup("skip" if ns.no_system else "install")
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
        prog="python3 course.py",
        description="Set up and run the WebSocket course (everything lives in .venv/).",
        epilog="Arguments after `--` are passed through, e.g. "
        "`python3 course.py lab -- --no-browser --port 8888` or "
        "`python3 course.py test -- -q -x tests/test_frames.py`.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("setup", help="create .venv and install everything (idempotent)")
    p.add_argument("--no-system", action="store_true", help="do not check or apt-get install redis-server/chromium")
    p.set_defaults(func=cmd_setup)
    p = sub.add_parser(
        "lab", help="setup, then open the notebooks in JupyterLab (extra args after -- go to `jupyter lab`)"
    )
    p.set_defaults(func=cmd_lab)
    p = sub.add_parser(
        "test", help="setup, then run pytest over tests/ and the notebooks (extra args after -- go to pytest)"
    )
    p.add_argument("--no-system", action="store_true", help="do not apt-get install redis-server/chromium")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("lab-server", help="setup, then run `python -m labserver` (extra args after -- go to it)")
    p.set_defaults(func=cmd_lab_server)

    ns = parser.parse_args(argv)
    try:
        ns.func(ns, extra)
    except KeyboardInterrupt:
        print("\n==> interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
