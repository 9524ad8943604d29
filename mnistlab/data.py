"""The splits every script trains and scores on, from the verified cache, with the one validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.cache import load_cache
from mnistlab.errors import ProjectError
from mnistlab.paths import BUNDLED

SPLIT_SEED = 0  # the validation split is the same for every model and every training seed


def first(x: np.ndarray, y: np.ndarray, size: int | None, what: str):
    """The first ``size`` items (all with None); an impossible size is one clear line."""
    if size is None:
        return x, y
    if not 1 <= size <= len(y):
        raise ProjectError(f"asked for {size} images but the {what} has {len(y)}; choose a size from 1 to {len(y)}")
    return x[:size], y[:size]


def load_split(split: str, dataset: str = "mnist", data_dir: Path = BUNDLED, size: int | None = None):
    """(images uint8 (N, 28, 28), labels int64 (N,)) of ``split`` ('train' or 'test'): its first ``size`` items."""
    if split not in ("train", "test"):
        raise ProjectError(f"unknown split {split!r}; use 'train' or 'test'")
    cache = load_cache(dataset, data_dir)
    return first(cache[f"x_{split}"], cache[f"y_{split}"], size, f"{dataset} {split} split")


def train_val_indices(n: int, train_size: int | None, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The one validation split: ``val_size`` images held out at random (seed SPLIT_SEED) of the ``n`` training
    images; training uses the first ``train_size`` of the rest (all of them with None), in their original order."""
    if val_size >= n:
        raise ProjectError(f"--val-size {val_size} leaves none of the {n} training images to train on; choose fewer")
    order = np.random.default_rng(SPLIT_SEED).permutation(n) if val_size else np.arange(n)
    val, rest = np.sort(order[:val_size]), np.sort(order[val_size:])
    if train_size is not None and train_size > len(rest):
        held = f" after holding out --val-size {val_size}" if val_size else ""
        raise ProjectError(
            f"--train-size {train_size}: only {len(rest)} training images are left{held}; choose a smaller size"
        )
    return rest[:train_size], val


def load_splits(config: dict) -> dict:
    """What a run trains and scores on, from the config keys dataset, data_dir, train_size, val_size, test_size.

    With ``val_size`` the run is a tuning run: it is scored on the held-out training images and the test set is
    not loaded at all, so nothing can be chosen on it. Returns {train, eval: (x, y), eval_split, classes}.
    """
    cache = load_cache(config["dataset"], config["data_dir"])
    x, y = cache["x_train"], cache["y_train"]
    train, val = train_val_indices(len(y), config.get("train_size"), config.get("val_size") or 0)
    out = {"train": (x[train], y[train]), "classes": [str(c) for c in cache["classes"]]}
    if len(val):
        out["eval"], out["eval_split"] = (x[val], y[val]), "val"
    else:
        what = f"{config['dataset']} test split"
        out["eval"], out["eval_split"] = first(cache["x_test"], cache["y_test"], config.get("test_size"), what), "test"
    return out
