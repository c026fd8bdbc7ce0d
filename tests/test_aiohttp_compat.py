"""Canary for labserver.aiohttp_compat: the aiohttp private names the lab server relies on still exist.

If one of these fails after an aiohttp upgrade, the RFC 6455 checks aiohttp does not
make (unmasked frames, endless continuations, invalid close codes) would silently stop
working: fix aiohttp_compat.py for the new version, then move the pin in pyproject.toml.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from labserver.aiohttp_compat import PRIVATE_NAMES, LabWebSocketResponse

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = importlib.metadata.version("aiohttp")


def _owner(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    owner: type = getattr(importlib.import_module(module), name)
    return owner


@pytest.mark.parametrize(("owner", "name"), [(owner, name) for owner, names in PRIVATE_NAMES.items() for name in names])
def test_each_private_name_still_exists(owner: str, name: str) -> None:
    cls = _owner(owner)
    # Instance attributes set in __init__ are found on an instance; slots and methods on the class.
    found = hasattr(cls, name) or (cls is web.WebSocketResponse and hasattr(web.WebSocketResponse(), name))
    assert found, (
        f"aiohttp {INSTALLED} has no {owner}.{name}: labserver/aiohttp_compat.py was written for the "
        f"range pinned in pyproject.toml and must be updated for this version"
    )


def test_post_start_is_overridden_with_the_same_signature() -> None:
    import inspect

    ours = inspect.signature(LabWebSocketResponse._post_start)
    theirs = inspect.signature(web.WebSocketResponse._post_start)
    assert list(ours.parameters) == list(theirs.parameters), f"aiohttp {INSTALLED} changed _post_start"


def test_the_installed_aiohttp_is_in_the_pinned_minor_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [pin] = [d for d in dependencies if d.startswith("aiohttp")]
    match = re.fullmatch(r"aiohttp>=(\d+)\.(\d+)\.(\d+),<(\d+)\.(\d+)", pin.replace(" ", ""))
    assert match, f"pin aiohttp to one minor version, e.g. 'aiohttp>=3.14.4,<3.15', not {pin!r}"
    low = tuple(int(x) for x in match.group(1, 2, 3))
    high = tuple(int(x) for x in match.group(4, 5))
    assert high == (low[0], low[1] + 1), f"{pin!r} spans more than one minor version"
    installed = tuple(int(x) for x in re.findall(r"\d+", aiohttp.__version__)[:3])
    assert low <= installed < high + (0,), f"aiohttp {INSTALLED} is outside {pin!r}"
