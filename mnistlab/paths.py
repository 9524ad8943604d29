"""Where the repo's folders are: the bundled data, and the default output folders of every script."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "data"  # the four original MNIST archives, committed unchanged
RESULTS, PLOTS, CHECKPOINTS = REPO / "results", REPO / "plots", REPO / "checkpoints"
STATIC = REPO / "static"  # the page's HTML, CSS and script
