"""Show the code a lesson runs, so students read the mechanism, not a black box.

``show_source(fn)`` displays a function's (or class's) source as a Python code block
in Jupyter; its ``repr`` (what nbval compares and a terminal prints) is the plain
source, which only changes when the code does::

    from labserver.course.source import show_source
    show_source(short_poller)
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

__all__ = ["Source", "show_source"]


class Source:
    """Source code shown as a Python block in Jupyter and as plain text elsewhere."""

    def __init__(self, code: str, name: str = "") -> None:
        self.code = textwrap.dedent(code).strip("\n")
        self.name = name

    def _repr_markdown_(self) -> str:
        fence = "````" if "```" in self.code else "```"
        return f"{fence}python\n{self.code}\n{fence}"

    def __repr__(self) -> str:
        return self.code

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self.code == other.code

    __hash__ = None  # type: ignore[assignment]


def show_source(obj: Any) -> Source:
    """The source of ``obj`` (a function, class, method or module) as it is in the installed package."""
    try:
        code = inspect.getsource(obj)
    except (OSError, TypeError) as exc:
        raise TypeError(f"no source to show for {obj!r}: {exc}") from None
    return Source(code, getattr(obj, "__qualname__", getattr(obj, "__name__", "")))
