"""Data suite: preparation time from scratch, the reuse path, and loading the training split."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mnistlab.cache import parse_split, read_json_split
from mnistlab.data import load_split
from mnistlab.paths import REPO


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        quick = getattr(args, "quick", False)  # the suite's own test: no JSON files (most of the time)
        cmd = [sys.executable, str(REPO / "data_prep.py"), "--data-dir", tmp, "--plots-dir", tmp, "--quiet"]
        cmd += ["--no-json"] * quick
        _, prep = timed(lambda: subprocess.run(cmd + ["--force"], check=True))
        rows.append({"name": "data_prep.py (from scratch, process wall)", "seconds": prep, "note": "goal < 15 s"})
        _, reuse = timed(lambda: subprocess.run(cmd, check=True))
        rows.append({"name": "data_prep.py (verified reuse)", "seconds": reuse})

        # The loader against the two slower ways to the same arrays: the JSON files and torchvision's parser.
        (x, y), load = timed(lambda: load_split("train", data_dir=Path(tmp)))
        if quick:
            return rows + [{"name": "load train split: load_split (npz cache)", "seconds": load}]
        (xj, yj), json_load = timed(lambda: read_json_split(Path(tmp) / "mnist" / "train.json"))
        assert np.array_equal(x, xj) and np.array_equal(y, yj)
        from torchvision.datasets import MNIST  # noqa: F401  (import cost kept out of the timing)

        _, tv = timed(lambda: parse_split(Path(tmp) / "mnist" / "raw", "train", 10))
    rows += [
        {"name": "load train split: JSON", "seconds": json_load},
        {"name": "load train split: torchvision IDX parse", "seconds": tv},
        {
            "name": "load train split: load_split (npz cache)",
            "seconds": load,
            "baseline": "load train split: JSON",
            "note": f"{len(y)} images, goal < 1 s",
        },
    ]
    return rows
