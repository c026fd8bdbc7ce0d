"""The SVG writer the figure scripts share: primitives, fonts and palette.

Each figure in ``images/`` is written element by element as plain SVG text (no plotting
library), so the file is small, sharp at any zoom, diffs like code and is the same every
time it is drawn. This module holds what the scripts have in common: an :class:`Svg` that
appends one element per call (text, rect, line or arrow, path, circle, polygon, numbered
disc) and writes the document around them (accessible name, arrowhead markers, white
background); :func:`save`, which puts it in ``images/``; the two font stacks; and the
colours more than one figure uses. What each figure draws, and what its colours mean
there, stays in its own script.

The leading underscore keeps ``python3 course.py figures``, which runs every script in
this directory, from running it as a figure. A script run as ``python tools/figures/x.py``
has this directory first on ``sys.path``, so ``from _svg import ...`` works from anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import TypedDict, Unpack

ROOT = Path(__file__).resolve().parents[2]

# DejaVu first: the boxes are sized for its metrics (the widest of the stack), so text
# fits wherever a figure is opened; the others are what a machine without DejaVu has.
SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"

# The palette. Scripts give these their meaning (``HTTP = BLUE``), not new values.
INK = "#222222"  # text and outlines
MUTED = "#666666"  # secondary text, neutral arrows
RULE = "#bbbbbb"  # rules, axes, quiet outlines
PALE = "#f4f4f4"  # a neutral box
WHITE = "#ffffff"
BLUE = "#1565c0"
BLUE_TINT = "#e3f2fd"
NAVY = "#0d47a1"
GREEN = "#2e7d32"
GREEN_TINT = "#e8f5e9"
DARK_GREEN = "#1b5e20"
ORANGE = "#e65100"
AMBER = "#ef6c00"
RED = "#c62828"
DARK_RED = "#b71c1c"
RED_TINT = "#ffebee"
PURPLE = "#6a1b9a"
NOTE = ("#b28704", "#fff8e1")  # line, fill of an aside (a dashed box)


class TextStyle(TypedDict, total=False):
    """The keyword arguments of :meth:`Svg.text`, for helpers that pass them on."""

    size: float
    anchor: str
    weight: str
    fill: str
    mono: bool
    italic: bool
    keep_spaces: bool


class Svg:
    """A tiny SVG writer: each method appends one element, :meth:`render` writes the document.

    ``label`` is the figure's accessible name (``aria-label``); with ``desc`` as well, the
    two become its ``<title>`` and ``<desc>`` (``aria-labelledby``). Coordinates are in px.
    """

    def __init__(self, width: float, height: float = 0, *, label: str, desc: str = "") -> None:
        self.width = width
        self.height = height  # may be given to render() instead, once the drawing knows it
        self.label = label
        self.desc = desc
        self.parts: list[str] = []
        self.markers: dict[tuple[str, float], str] = {}  # (colour, size) -> marker id

    def add(self, element: str) -> None:
        """Append one element written by hand."""
        self.parts.append(element)

    def to_back(self, start: int) -> None:
        """Move the elements added since ``len(parts)`` was ``start`` beneath all the others."""
        self.parts[:] = self.parts[start:] + self.parts[:start]

    def text(
        self,
        x: float,
        y: float,
        s: str,
        *,
        size: float = 12,
        anchor: str = "start",
        weight: str = "normal",
        fill: str = INK,
        mono: bool = False,
        italic: bool = False,
        keep_spaces: bool = False,
    ) -> None:
        """One line of text; ``keep_spaces`` keeps runs of spaces (SVG collapses them by default)."""
        extra = ' font-style="italic"' if italic else ""
        extra += ' xml:space="preserve"' if keep_spaces else ""
        self.add(
            f'<text x="{x:g}" y="{y:g}" font-family="{MONO if mono else SANS}" font-size="{size:g}" '
            f'font-weight="{weight}" text-anchor="{anchor}" fill="{fill}"{extra}>{escape(s)}</text>'
        )

    def lines(self, x: float, y: float, rows: Iterable[str], *, step: float = 16, **style: Unpack[TextStyle]) -> None:
        """Lines of text ``step`` apart, the first at ``y``."""
        for i, row in enumerate(rows):
            self.text(x, y + step * i, row, **style)

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        fill: str,
        stroke: str | None = INK,
        *,
        width: float = 1.2,
        rx: float = 6,
        dash: str | None = None,
    ) -> None:
        """A rectangle with rounded corners ``rx``; ``stroke=None`` for no outline."""
        outline = "" if stroke is None else f' stroke="{stroke}" stroke-width="{width:g}"{_dash(dash)}'
        self.add(f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="{rx:g}" fill="{fill}"{outline}/>')

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        stroke: str = MUTED,
        *,
        width: float = 1,
        dash: str | None = None,
        head: float = 0,
    ) -> None:
        """A straight line from (x1, y1) to (x2, y2), with an arrowhead there if ``head`` (its size, in widths)."""
        self.add(
            f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="{stroke}" stroke-width="{width:g}"'
            f"{_dash(dash)}{self._head(stroke, head)}/>"
        )

    def path(self, d: str, stroke: str, *, width: float = 2, dash: str | None = None, head: float = 0) -> None:
        """An unfilled path (``d`` as in SVG), with an arrowhead at its end if ``head``."""
        self.add(
            f'<path d="{d}" fill="none" stroke="{stroke}" stroke-width="{width:g}"{_dash(dash)}'
            f"{self._head(stroke, head)}/>"
        )

    def circle(self, cx: float, cy: float, r: float, fill: str) -> None:
        self.add(f'<circle cx="{cx:g}" cy="{cy:g}" r="{r:g}" fill="{fill}"/>')

    def polygon(self, points: Sequence[tuple[float, float]], fill: str) -> None:
        self.add(f'<polygon points="{" ".join(f"{x:g},{y:g}" for x, y in points)}" fill="{fill}"/>')

    def disc(self, x: float, y: float, n: int, fill: str) -> None:
        """A numbered disc: a step on a path the figure follows."""
        self.circle(x, y, 9, fill)
        self.text(x, y + 4, str(n), size=11, anchor="middle", weight="bold", fill=WHITE)

    def _head(self, colour: str, size: float) -> str:
        """The ``marker-end`` of an arrowhead in ``colour``, defined once per colour and size ("" if 0)."""
        if not size:
            return ""
        name = self.markers.setdefault((colour, size), f"head{len(self.markers) + 1}")
        return f' marker-end="url(#{name})"'

    def render(self, height: float | None = None) -> str:
        """The whole document: header, arrowhead markers, white background, the elements."""
        width, height = self.width, (self.height if height is None else height)
        if self.desc:
            name = 'aria-labelledby="title desc"'
            head = [f'<title id="title">{escape(self.label)}</title>', f'<desc id="desc">{escape(self.desc)}</desc>']
        else:
            name, head = f'aria-label="{escape(self.label)}"', []
        if self.markers:
            head.append("<defs>")
            head += [
                f'  <marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="{size:g}" '
                f'markerHeight="{size:g}" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
                f'fill="{colour}"/></marker>'
                for (colour, size), marker in self.markers.items()
            ]
            head.append("</defs>")
        head.append(f'<rect width="{width:g}" height="{height:g}" fill="{WHITE}"/>')
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
            f'viewBox="0 0 {width:g} {height:g}" role="img" {name}>\n'
            + "".join(f"  {element}\n" for element in head + self.parts)
            + "</svg>\n"
        )


def save(name: str, document: str) -> None:
    """Write ``document`` to ``images/name`` and say so."""
    out = ROOT / "images" / name
    out.write_text(document, encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size:,} bytes)")


def _dash(dash: str | None) -> str:
    return f' stroke-dasharray="{dash}"' if dash else ""
