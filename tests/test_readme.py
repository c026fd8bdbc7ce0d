"""The README's module map names every module of the lab server and the toolkit, and only those."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    design = readme.split("## Design", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(labserver(?:\.\w+)+)` \|", design, flags=re.MULTILINE))


def _modules() -> set[str]:
    """Every top-level module of labserver and of labserver.course (a package counts as one)."""
    found = set()
    for package in ("labserver", "labserver.course"):
        path = ROOT.joinpath(*package.split("."))
        for info in pkgutil.iter_modules([str(path)]):
            name = f"{package}.{info.name}"
            if name != "labserver.course":
                found.add(name)
    return found


def test_the_module_map_matches_the_code() -> None:
    documented, actual = _documented(), _modules()
    assert documented, "no module map found in the README's Design section"
    assert not actual - documented, f"modules missing from the README's module map: {sorted(actual - documented)}"
    assert not documented - actual, (
        f"the README's module map names modules that do not exist: {sorted(documented - actual)}"
    )
