#!/usr/bin/env python3
"""Copy lesson 01's key figure into ``images/01_polling_vs_push.png``.

The four-panel comparison (requests, bytes, latency and connections for short polling,
long polling, WebSocket push and Server-Sent Events) is drawn by the lesson itself, from
what it measures, and shown inline; the committed notebook keeps it as that cell's
output. This script takes the picture from there, so the image in the repository is
exactly the one the committed lesson shows. Nothing is measured here: to measure anew,
rebuild the lesson (``.venv/bin/python tools/build_notebooks.py 01``), then run this.

    .venv/bin/python tools/figures/01_polling_vs_push.py
"""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_polling_vs_push.ipynb"
OUT = ROOT / "images" / "01_polling_vs_push.png"
DRAWN_BY = "polling_plots.plot_comparison("  # the call in the cell whose output is the figure


def figure_png(notebook: Path) -> bytes:
    """The PNG the cell calling ``plot_comparison`` displays; exactly one such cell and picture."""
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code" and DRAWN_BY in c.source]
    if len(cells) != 1:
        raise SystemExit(f"{notebook}: expected one cell calling {DRAWN_BY}...), found {len(cells)}")
    images = [output.data["image/png"] for output in cells[0].outputs if "image/png" in output.get("data", {})]
    if len(images) != 1:
        raise SystemExit(f"{notebook}: the {DRAWN_BY}...) cell shows {len(images)} images, expected 1; rebuild it")
    return base64.b64decode(images[0])


def main() -> None:
    OUT.write_bytes(figure_png(NOTEBOOK))
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes) from {NOTEBOOK.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
