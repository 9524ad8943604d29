"""Small helpers shared by every script: clean errors, atomic writes, run records."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path


class ProjectError(Exception):
    """A problem the user can fix; reported as one line, without a traceback."""


def _bounded(kind, holds, bound: str):
    def check(text: str):
        value = kind(text)
        if not holds(value):  # a comparison with nan is False: nan is rejected too
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return check


def positive(kind):
    """An argparse type: ``kind(text)`` that must be > 0."""
    return _bounded(kind, lambda v: v > 0, "> 0")


def non_negative(kind):
    """An argparse type: ``kind(text)`` that must be >= 0."""
    return _bounded(kind, lambda v: v >= 0, ">= 0")


def usable_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit on Linux; every core elsewhere)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def run_cli(main_fn, argv=None) -> int:
    """Run ``main_fn(argv)`` turning ProjectError into one stderr line and exit code 1."""
    try:
        return main_fn(argv) or 0
    except ProjectError as exc:
        prog = Path(sys.argv[0]).name if argv is None else main_fn.__module__
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A run that is interrupted (exception, Ctrl-C) leaves nothing under the final
    name, so a later run can never mistake a half-written file for a good one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    except OSError as exc:
        raise ProjectError(
            f"cannot write to {path.parent}/: {exc.strerror or exc}; choose a writable output folder"
        ) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def check_writable(folder: Path, flag: str) -> None:
    """Fail before minutes of training, not after, when an output folder cannot be written."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ProjectError(
            f"cannot write to {folder}/: {exc.strerror or exc}; choose a writable folder with {flag}"
        ) from None


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
        f.write("\n")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ProjectError(f"{path} not found") from None
    except (OSError, ValueError) as exc:
        raise ProjectError(f"{path} is unreadable or not valid JSON ({exc}); delete it and rerun") from None


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend: figures are saved, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig(fig, path) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=fig.dpi, bbox_inches="tight")
    plt.close(fig)


def _jsonable(obj):
    if hasattr(obj, "item"):  # numpy and torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def versions(*packages: str) -> dict:
    """Python, platform and installed package versions, for run records."""
    out = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def print_config(config: dict) -> None:
    print("config: " + " ".join(f"{k}={v}" for k, v in config.items()))


def plot_confusion(y_true, y_pred, classes, path, title: str) -> None:
    """Confusion-matrix PNG, as in scikit-learn's examples."""
    plt = pyplot()
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(range(len(classes))), display_labels=classes, ax=ax, colorbar=False
    )
    if max(len(str(c)) for c in classes) > 2:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_title(title)
    savefig(fig, path)


def per_class_scores(y_true, y_pred, classes) -> dict:
    """Precision, recall, F1 and support per class name: the ``per_class`` field of every results file."""
    from sklearn.metrics import classification_report

    report = classification_report(
        y_true, y_pred, labels=list(range(len(classes))), target_names=classes, output_dict=True, zero_division=0
    )
    return {
        name: {
            "precision": row["precision"],
            "recall": row["recall"],
            "f1": row["f1-score"],
            "support": int(row["support"]),
        }
        for name, row in report.items()
        if name in classes
    }


def summarize_seeds(records: list[dict]) -> dict:
    """Merge the records of one model run with several seeds into one record.

    The merged record keeps the first run's fields (config, predictions, history), sets
    ``test_accuracy`` and the timings to the mean over seeds, and adds ``test_accuracy_std``
    (sample standard deviation; None for a single run) and ``runs`` (per-seed figures).
    """
    import statistics

    keys = ("seed", "test_accuracy", "seconds_fit", "seconds_train", "seconds_predict")
    merged = dict(records[0])
    merged["runs"] = [{k: r[k] for k in keys if k in r} for r in records]
    for key in keys[1:]:
        if key in merged:
            merged[key] = statistics.fmean(r[key] for r in records)
    accs = [r["test_accuracy"] for r in records]
    merged["test_accuracy_std"] = statistics.stdev(accs) if len(accs) > 1 else None
    merged["seeds"] = [r["seed"] for r in records]
    return merged
