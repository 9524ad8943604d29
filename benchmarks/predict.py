"""Predict suite: own-image prediction on MNIST test digits turned into ordinary image files.

Each digit is enlarged (60-240 px), inverted to dark ink on light grey paper, shifted on a larger
page and saved as PNG or JPEG (some in colour); predict.py must undo all of that.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep import load_split


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
    rng = np.random.default_rng(seed)
    paths = []
    for i, digit in enumerate(x):
        path = folder / f"digit{i:03d}.{'jpg' if i % 2 else 'png'}"
        write_as_photo(digit, path, rng, colour=i % 3 == 0)
        paths.append(path)
    return paths


def run(args, n: int = 200) -> list[dict]:
    import predict
    from checkpoint import load_model

    x, y = load_split("test", data_dir=args.data_dir, size=n, random=True, seed=0)
    rows = []
    for name in ("cnn", "mlp"):
        checkpoint = Path("checkpoints") / f"{name}.pt"
        if not checkpoint.is_file():
            rows.append({"name": f"predict.py with {checkpoint}", "note": "skipped: train it with dl_main.py first"})
            continue
        model, _ = load_model(checkpoint, "cpu")
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_photos(x, Path(tmp))
            start = time.perf_counter()
            inputs = np.stack([predict.to_mnist(predict.load_grey(p)) for p in paths])
            pred = predict.classify(model, inputs).argmax(axis=1)
            seconds = time.perf_counter() - start
        direct = predict.classify(model, x / 255.0).argmax(axis=1)
        rows.append(
            {
                "name": f"predict.py: {n} digits as image files, {name}",
                "accuracy": float((pred == y).mean()),
                "seconds": seconds,
                "note": f"same digits as 28x28 arrays: {100 * (direct == y).mean():.1f}%",
            }
        )
    return rows
