"""Small helpers shared by every script: clean errors, atomic writes, run records."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
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


def idle_cores(samples: int = 5, interval: float = 0.02, loadavg: str = "/proc/loadavg") -> int:
    """Usable cores not already busy with other work, at least 1 (Linux: /proc/loadavg's running tasks).

    Why: threads of one PyTorch op wait for each other at its end, so when another busy process takes a
    core, every op waits for the thread that was switched out. Measured on 2 cores beside two busy
    processes: 3.3x slower with 2 threads, 2.1x with 1 (the fair share is 2x). Sampled a few times, since
    one look may catch a process that is about to sleep.
    """
    running = []
    for _ in range(samples):
        try:
            with open(loadavg) as f:
                running.append(int(f.read().split()[3].split("/")[0]) - 1)  # minus this process
        except (OSError, ValueError, IndexError):
            return usable_cores()
        time.sleep(interval)
    return max(1, usable_cores() - sorted(running)[len(running) // 2])


def run_cli(main_fn, argv=None) -> int:
    """Run ``main_fn(argv)`` turning ProjectError into one stderr line and exit code 1."""
    try:
        return main_fn(argv) or 0
    except ProjectError as exc:
        prog = Path(sys.argv[0]).name if argv is None else main_fn.__module__
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def temp_name(path: Path) -> str:
    """A hidden temporary name beside ``path`` that carries this process's id, so a later run can tell a file
    left by a killed run (its process is gone) from one that a running process is still writing."""
    return f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp{path.suffix}"


TEMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{6}\.tmp")


def remove_stale_temps(*folders: Path) -> None:
    """Delete temporary files that killed runs left in ``folders`` (their process no longer exists)."""
    for folder in map(Path, folders):
        for path in folder.glob(".*.tmp*") if folder.is_dir() else ():
            match = TEMP_PATTERN.match(path.name)
            if match and not process_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    path.unlink()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else (or we cannot tell): leave its file alone
    return True


def write_error(path: Path, exc: OSError) -> ProjectError:
    """One line for a failed write, naming the file and the cause."""
    causes = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied"}  # fmt: skip
    cause = causes.get(exc.errno, exc.strerror or str(exc))
    return ProjectError(f"cannot write {path}: {cause}; free some space or choose another output folder")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """The one way files are written: yield a temporary path beside ``path``; on success flush it to disk and
    rename it over ``path``; on any failure remove it.

    A run that is interrupted (exception, Ctrl-C, a full disk) leaves nothing under the final name, so a later
    run can never mistake a half-written file for a good one; an ``OSError`` becomes one line naming the file.
    """
    path = Path(path)
    tmp = path.parent / temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~umask))
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    except RuntimeError as exc:  # torch.save reports a failed write as RuntimeError ("enforce fail ...")
        if "enforce fail" not in str(exc):
            raise
        raise write_error(path, OSError(errno.EIO, "the write failed (disk full?)")) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


MIN_FREE_MB = 50  # room that a run needs for its records, figures and checkpoints


def check_output_dirs(folders: dict) -> None:
    """Fail before any work, not after minutes of training, when an output folder cannot be written.

    ``folders`` maps the flag that chooses a folder to the folder. Each is created, written to, checked for
    free space, and cleaned of the temporary files a killed run left there.
    """
    for flag, folder in folders.items():
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder) as f:
                f.write(b"x")
                f.flush()
            free_mb = shutil.disk_usage(folder).free / 2**20
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ProjectError(f"cannot write to {folder}/: {reason}; choose a writable folder with {flag}") from None
        if free_mb < MIN_FREE_MB:
            raise ProjectError(f"only {free_mb:.0f} MB free in {folder}/; free some space or choose another {flag}")
        remove_stale_temps(folder)


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
    """matplotlib.pyplot on the file-only Agg backend: figures are saved, never shown.

    matplotlib and scikit-learn are imported inside the helpers that draw or score (here and below), not at
    the top: every script imports this module, and those two take about a second that --help, a bad flag
    or a refused input should not wait for.
    """
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


def replace_section(path: Path, marker: str, body: str) -> None:
    """Replace what lies between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` in a text file (the README's
    generated tables), atomically; one line naming the markers when they are missing."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = Path(path).read_text()
    if start not in text or end not in text:
        raise ProjectError(f"{path} has no '{start}' ... '{end}' section to fill in")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    with atomic_path(path) as tmp:
        tmp.write_text(f"{head}{start}\n{body}{end}{tail}")


def _jsonable(obj):
    if hasattr(obj, "item"):  # numpy and torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def process_age() -> float | None:
    """Seconds since this process started (Linux, from /proc), so that start-up and imports can be counted."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def cpu_model() -> str:
    """The CPU's marketing name (absolute times mean little without it), or the platform's word for it."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions(*packages: str) -> dict:
    """Python, platform and installed package versions, for run records."""
    out = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
           "cpus": usable_cores()}  # fmt: skip
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
    fig, ax = plt.subplots(figsize=(7, 6))
    draw_confusion(ax, y_true, y_pred, classes, title)
    savefig(fig, path)


def names_are_words(classes) -> bool:
    """Whether class names are words (Fashion-MNIST's "T-shirt/top"), not digits: figures then lay them out
    with more room (turned tick labels, titles on two lines)."""
    return max(len(str(c)) for c in classes) > 2


def confusion_counts(y_true, y_pred, n_classes: int):
    """(n, n) counts, rows the true class and columns the predicted one, as scikit-learn's confusion_matrix.

    This and the two helpers below use numpy alone: importing scikit-learn's metrics costs about 0.8 s, a tenth
    of dl_main.py's fast recipe, which otherwise never needs scikit-learn (tests check they agree with it).
    """
    import numpy as np

    codes = n_classes * np.asarray(y_true, dtype=np.int64) + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(codes, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def draw_confusion(ax, y_true, y_pred, classes, title: str, fontsize: float | None = None) -> None:
    """One confusion matrix on ``ax`` drawn as scikit-learn's ConfusionMatrixDisplay does (counts in the cells,
    in the colour map's other end where the cell is dark or light), its axes labelled with the class names
    (turned when they are words)."""
    import numpy as np

    n = len(classes)
    counts = confusion_counts(y_true, y_pred, n)
    image = ax.imshow(counts, interpolation="nearest", cmap="viridis")
    low, high = image.cmap(0.0), image.cmap(1.0)
    middle = (counts.max() + counts.min()) / 2
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", color=high if count < middle else low, fontsize=fontsize)
    ax.set(xticks=range(n), yticks=range(n), xticklabels=classes, yticklabels=classes, xlabel="Predicted label",
           ylabel="True label", title=title)  # fmt: skip
    ax.set_ylim(n - 0.5, -0.5)
    if names_are_words(classes):
        for label in ax.get_xticklabels():
            label.set(rotation=45, horizontalalignment="right", rotation_mode="anchor")


def per_class_scores(y_true, y_pred, classes) -> dict:
    """Precision, recall, F1 and support per class name: the ``per_class`` field of every results file
    (scikit-learn's classification_report with zero_division=0)."""
    import numpy as np

    counts = confusion_counts(y_true, y_pred, len(classes))
    hits, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)

    def ratio(top, bottom):  # 0 where the bottom is 0, as zero_division=0
        return np.divide(top, bottom, out=np.zeros(len(classes)), where=bottom > 0)

    precision, recall, f1 = ratio(hits, predicted), ratio(hits, support), ratio(2 * hits, support + predicted)
    return {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(classes)
    }  # fmt: skip


def summarize_seeds(records: list[dict]) -> dict:
    """Merge the records of one model run with several seeds into one record.

    The merged record keeps the first run's fields (config, predictions, history), sets
    ``accuracy`` and the timings to the mean over seeds, and adds ``accuracy_std``
    (sample standard deviation; None for a single run) and ``runs`` (per-seed figures).
    """
    keys = ("seed", "accuracy", "seconds_fit", "seconds_train", "seconds_predict")
    merged = dict(records[0])
    merged["runs"] = [{k: r[k] for k in keys if k in r} for r in records]
    for key in keys[1:]:
        if key in merged:
            merged[key] = statistics.fmean(r[key] for r in records)
    accs = [r["accuracy"] for r in records]
    merged["accuracy_std"] = statistics.stdev(accs) if len(accs) > 1 else None
    merged["seeds"] = [r["seed"] for r in records]
    return merged
