"""A run's record: its name, the files it writes (under ``<folder>/<dataset>/<run name>``), per-class scores, and
the merge of several seeds."""

from __future__ import annotations

import statistics
from pathlib import Path

from mnistlab.errors import one_line

# Flags that say where or how to run, not what is trained: they never change a run's name (or its results).
RUNTIME = {
    "device",
    "threads",
    "data_dir",
    "results_dir",
    "plots_dir",
    "checkpoint_dir",
    "resume",
    "stop_after",
    "log_every",
    "eval_every",
    "engine",
    "algo",
    "model",
    "recipe",
    "dataset",
}


def run_name(config: dict, explicit: dict) -> str:
    """<model>-<recipe>, then every setting given explicitly (e.g. cnn-paper-epochs2-train_size2000), so that runs
    of different settings never overwrite each other's records, checkpoints or figures; '-val' for tuning runs."""
    parts = [config["model"], config["recipe"]]
    for key in sorted(set(explicit) - RUNTIME - {"val_size"}):
        value = str(explicit[key]).replace("/", "_").replace(" ", "")
        parts.append(f"{key}{value}")
    return "-".join(parts) + ("-val" if config.get("val_size") else "")


def run_paths(config: dict) -> dict:
    """Every file a run writes, from its config (dataset, name and the output folders)."""
    dataset, name = config["dataset"], config["name"]
    out = {
        "record": Path(config["results_dir"]) / dataset / f"{name}.json",
        "confusion": Path(config["plots_dir"]) / dataset / f"confusion_{name}.png",
        "curves": Path(config["plots_dir"]) / dataset / f"curves_{name}.png",
    }
    if config.get("checkpoint_dir"):
        out["checkpoint"] = Path(config["checkpoint_dir"]) / dataset / name
    return out


def per_class_scores(y_true, y_pred, classes) -> dict:
    """Precision, recall, F1 and support per class name: the ``per_class`` field of every results file."""
    from sklearn.metrics import precision_recall_fscore_support  # here: a slow import that --help need not pay

    scores = precision_recall_fscore_support(y_true, y_pred, labels=range(len(classes)), zero_division=0)
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for name, p, r, f, n in zip(classes, *scores, strict=True)
    }


def summarize_seeds(runs: list[dict]) -> dict:
    """One record of several seeds' runs: the first seed's fields (which agree with each other), every seed's own in
    ``runs``, ``accuracy_mean``, ``accuracy_std`` (sample standard deviation; None for one seed) and mean timings."""
    merged = dict(runs[0])
    merged.pop("history", None)
    merged["runs"] = [{k: v for k, v in r.items() if k not in ("history", "config")} for r in runs]
    merged["history"] = runs[0].get("history")
    for key in ("seconds_fit", "seconds_train", "seconds_predict"):
        if key in merged:
            merged[key] = statistics.fmean(r[key] for r in runs)
    accs = [r["accuracy"] for r in runs]
    merged["accuracy_mean"] = statistics.fmean(accs)
    merged["accuracy_std"] = statistics.stdev(accs) if len(accs) > 1 else None
    merged["seeds"] = [r["seed"] for r in runs]
    return merged


def print_config(config: dict) -> None:
    print("config: " + one_line(" ".join(f"{k}={v}" for k, v in config.items())))  # a path may hold a newline
