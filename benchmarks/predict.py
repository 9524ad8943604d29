"""Predict suite: own-image prediction on MNIST test digits turned into ordinary image files.

Each digit is enlarged, inverted to dark ink on light grey paper, shifted on a larger page and saved as
PNG or JPEG (mnistlab.images.write_photos); mnistlab.images.read_digit must undo all of that. Every saved model
is scored (--quick: 20 digits).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mnistlab.data import load_split
from mnistlab.images import read_digit, write_photos
from mnistlab.saved_models import find_models


def run(args, n: int = 200) -> list[dict]:
    n = 20 if getattr(args, "quick", False) else n
    x, y = load_split("test", data_dir=args.data_dir, size=n)
    predictors, missing = find_models(device="cpu")
    rows = [
        {"name": f"predict.py with {model}", "note": f"skipped: train it with {command}"} for model, command in missing
    ]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        inputs = np.stack([read_digit(p) for p in write_photos(x, Path(tmp))])
        seconds_prepare = time.perf_counter() - start
    for p in predictors:
        start = time.perf_counter()
        pred = p.predict(inputs).argmax(axis=1)
        seconds = seconds_prepare + time.perf_counter() - start
        direct = p.predict(x / 255.0).argmax(axis=1)
        known = np.array([int(c) for c in p.classes])  # score columns are the classes the model knows
        rows.append(
            {
                "name": f"predict.py: {n} digits as image files, {p.name}",
                "accuracy": float((known[pred] == y).mean()),
                "seconds": seconds,
                "note": f"same digits as 28x28 arrays: {100 * (known[direct] == y).mean():.1f}%",
            }
        )
    return rows
