"""MNIST digits written out as ordinary image files: what predict.py and inference.prepare must undo.

Each digit is enlarged (60-240 px), inverted to dark ink on light grey paper, shifted on a larger page
and saved as PNG or JPEG (some in colour). Shared by the tests and the predict benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_as_photo(digit: np.ndarray, path: Path, rng: np.random.Generator, colour: bool = False) -> None:
    """Save an MNIST digit as an ordinary image file: enlarged, dark on light, shifted on a bigger page."""
    side = int(rng.integers(60, 240))
    ink = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BILINEAR)
    page = Image.new("L", (side + int(rng.integers(0, 150)), side + int(rng.integers(0, 150))), 235)
    offset = (int(rng.integers(0, page.width - side + 1)), int(rng.integers(0, page.height - side + 1)))
    page.paste(ink.point(lambda v: min(v, 235)), offset)
    if colour:
        page = Image.merge("RGB", (page, page.point(lambda v: v * 0.95), page.point(lambda v: v * 0.8)))
    page.save(path, quality=92) if path.suffix == ".jpg" else page.save(path)


def write_photos(x: np.ndarray, folder: Path, seed: int = 0) -> list[Path]:
    """Every digit of ``x`` (uint8, (N, 28, 28)) as digit<i>.png or .jpg in ``folder``."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, digit in enumerate(x):
        path = folder / f"digit{i:03d}.{'jpg' if i % 2 else 'png'}"
        write_as_photo(digit, path, rng, colour=i % 3 == 0)
        paths.append(path)
    return paths
