"""Classical models suite: every model's default (fast) setting on the full split, what each speed option
costs and gains, and the plain scikit-learn SVC() measured in the same run as the baseline.

The plain SVC() takes many minutes on the full split with 2 cores, so the SVM speed options are compared
on the first 10000 training images (all 10000 test images), where the baseline runs in well under a minute.
"""

from __future__ import annotations

import time

import Classifier
from Classifier import REGISTRY
from dataset import load_split
from ml_main import fit_predict
from utils import usable_cores

SUBSET = 10000  # training images for the SVM comparison against the plain SVC() baseline


def timed_row(name: str, algo: str, data, preset: str = "fast", engine: str = "auto", jobs: int | None = None,
              baseline: str | None = None, note: str = "", **overrides) -> dict:  # fmt: skip
    """Fit and predict one setting; a bench row with accuracy and fit + predict seconds."""
    s = Classifier.settings(algo, preset, overrides)
    Classifier.validate(s, n_train=len(data[1]))
    run = fit_predict(algo, s, 0, jobs or usable_cores(), Classifier.resolve_engine(engine), data)
    secs = f"fit {run['seconds_fit']:.1f}s + predict {run['seconds_predict']:.1f}s"
    detail = f"{len(data[1])} train; {secs}; {run['estimator']}"
    row = {
        "name": name,
        "accuracy": run["test_accuracy"],
        "seconds": run["seconds_fit"] + run["seconds_predict"],
        "note": f"{note}; {detail}" if note else detail,
    }
    print(f"  {name}: {100 * row['accuracy']:.2f}% in {row['seconds']:.1f}s", flush=True)
    return row | ({"baseline": baseline} if baseline else {})


def default_models(full) -> list[dict]:
    """One row per registered model, default (fast) preset, full split: what `ml_main.py --algo all` does."""
    return [timed_row(f"{algo} (default)", algo, full) for algo in REGISTRY]


def svm_options(data) -> list[dict]:
    """The plain SVC() against each speed option, added one at a time, then the tuned settings."""
    base = f"svm paper: sklearn SVC(), float64 ({SUBSET} train)"
    paper = {"preset": "paper", "baseline": base}
    return [
        timed_row(base, "svm", data, preset="paper", engine="sklearn", note="the published model, plain scikit-learn"),
        timed_row(f"svm paper + sklearnex ({SUBSET} train)", "svm", data, **paper, note="same model, oneDAL solver"),
        timed_row(f"svm paper + sklearnex + float32 ({SUBSET} train)", "svm", data, **paper, dtype="float32"),
        timed_row(
            f"svm paper + sklearnex + float32 + PCA 50 ({SUBSET} train)", "svm", data, **paper, dtype="float32", pca=50
        ),  # fmt: skip
        timed_row(
            f"svm paper + sklearnex + float32, 1 core ({SUBSET} train)",
            "svm",
            data,
            **paper,
            dtype="float32",
            jobs=1,
            note="what the second core gives",
        ),  # fmt: skip
        timed_row(f"svm default ({SUBSET} train)", "svm", data, baseline=base, note="deskew, C=5, gamma=0.04"),
        timed_row(f"pca-svm default ({SUBSET} train)", "pca-svm", data, baseline=base, note="deskew, PCA 40, C=5"),
    ]


def other_options(full) -> list[dict]:
    """KNN, tree and forest options on the full split: the published settings and each engine."""
    knn_base = "knn paper: sklearn k=3, float64"
    return [
        timed_row(knn_base, "knn", full, preset="paper", engine="sklearn", note="the published model"),
        timed_row("knn paper + sklearnex + float32", "knn", full, preset="paper", dtype="float32", baseline=knn_base),
        timed_row(
            "knn paper + sklearnex + float32 + PCA 60",
            "knn",
            full,
            preset="paper",
            dtype="float32",
            pca=60,
            baseline=knn_base,
            note="speed option, no deskew",
        ),  # fmt: skip
        timed_row("knn default, sklearn engine", "knn", full, engine="sklearn", baseline=knn_base),
        timed_row(
            "dt paper: DecisionTreeClassifier(max_depth=16)",
            "dt",
            full,
            preset="paper",
            engine="sklearn",
            note="real accuracy; the published 75.96% was a regressor's R^2",
        ),  # fmt: skip
        timed_row("rf default, sklearn engine", "rf", full, engine="sklearn", note="compare rf (default): sklearnex"),
    ]


def deskew_cost(full) -> dict:
    """Seconds to deskew all 70000 images: part of every default model's fit and predict time."""
    images = [full[0], full[2]]
    start = time.perf_counter()
    for x in images:
        Classifier.deskew(x)
    seconds = time.perf_counter() - start
    print(f"  deskew: {seconds:.1f}s", flush=True)
    return {"name": "deskew 70000 images (preprocessing cost)", "seconds": seconds, "note": "scipy map_coordinates"}


def run(args) -> list[dict]:
    x_train, y_train = load_split("train", data_dir=args.data_dir)
    x_test, y_test = load_split("test", data_dir=args.data_dir)
    full = (x_train, y_train, x_test, y_test)
    subset = (x_train[:SUBSET], y_train[:SUBSET], x_test, y_test)
    return [*default_models(full), deskew_cost(full), *svm_options(subset), *other_options(full)]
