"""show_source: the code a lesson runs, as a Python block with a plain-text repr."""

from __future__ import annotations

import pytest

from labserver.course.source import Source, show_source


def sample(x: int) -> int:
    """Double it."""
    return 2 * x


def test_source_of_a_function_is_its_code() -> None:
    shown = show_source(sample)
    assert repr(shown).startswith("def sample(x: int) -> int:")
    assert repr(shown).endswith("return 2 * x")
    assert shown._repr_markdown_().startswith("```python\ndef sample")
    assert shown.name == "sample"


def test_methods_are_dedented() -> None:
    class Box:
        def value(self) -> int:
            return 1

    assert repr(show_source(Box.value)).startswith("def value(self) -> int:")


def test_a_fence_inside_the_code_gets_a_longer_fence() -> None:
    assert Source('s = "```"')._repr_markdown_().startswith("````python\n")


def test_no_source_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="no source to show for"):
        show_source(len)
