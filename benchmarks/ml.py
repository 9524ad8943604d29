"""Classical models suite: each tuned model fitted by plain scikit-learn (the default engine) and by
scikit-learn-intelex (``--engine sklearnex``) on the full split, so that the engine's speed-up and any change of
accuracy are measured side by side; the published SVC() on the first 10000 training images; the deskew's cost.

With ``--quick`` (the suite's own test) every row runs on 500 training and 200 test images.
"""

from __future__ import annotations

import time

import Classifier
import ml_main
from mnistlab.data import load_splits
from mnistlab.features import deskew

SUBSET = 10000  # training images for the published SVC(), which takes many minutes on the full split


def timed_row(name: str, data: dict, baseline: str | None = None, **flags) -> dict:
    """Fit and predict one setting through ml_main (the same configs as the command line): a bench row."""
    (config,) = ml_main.make_configs(**flags)
    with ml_main.engine(config["engine"]):
        _, run = ml_main.fit_predict(config, config["seed"], data)
    detail = f"{len(data['train'][1])} train; fit {run['seconds_fit']:.1f}s + predict {run['seconds_predict']:.1f}s"
    row = {
        "name": name,
        "accuracy": run["accuracy"],
        "seconds": run["seconds_fit"] + run["seconds_predict"],
        "note": f"{detail}; {run['estimator']}",
    }
    print(f"  {name}: {100 * row['accuracy']:.2f}% in {row['seconds']:.1f}s", flush=True)
    return row | ({"baseline": baseline} if baseline else {})


def both_engines(name: str, data: dict, has_intelex: bool, **flags) -> list[dict]:
    """The row of ``name`` (", sklearn" in it) and, when scikit-learn-intelex is installed, its sklearnex row."""
    rows = [timed_row(name, data, **flags)]
    if has_intelex:
        rows.append(timed_row(name.replace(", sklearn", ", sklearnex"), data, name, engine="sklearnex", **flags))
    return rows


def run(args) -> list[dict]:
    quick = getattr(args, "quick", False)
    sizes = {"train_size": 500, "test_size": 200} if quick else {}
    common = {"data_dir": args.data_dir, **sizes}
    data = load_splits({"dataset": "mnist", **common})
    try:
        import sklearnex  # noqa: F401

        has_intelex = True
    except ImportError:
        has_intelex = False
    start = time.perf_counter()
    deskew(data["train"][0])
    deskew(data["eval"][0])
    n = len(data["train"][1]) + len(data["eval"][1])
    rows = [{"name": f"deskew {n} images", "seconds": time.perf_counter() - start, "note": "scipy map_coordinates"}]
    for algo in Classifier.members("tuned"):  # the figures behind the choice of plain scikit-learn as default
        rows += both_engines(f"{algo} tuned, sklearn", data, has_intelex, algo=algo, **common)
    subset = {**common, "train_size": sizes.get("train_size", SUBSET)}
    small = load_splits({"dataset": "mnist", **subset})
    name = f"svm paper: SVC() float64, sklearn ({subset['train_size']} train)"
    return rows + both_engines(name, small, has_intelex, algo="svm", recipe="paper", **subset)
