"""Shared fixtures: small MNIST-format folders cut from the real bundled data."""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
from pathlib import Path

try:
    import fcntl  # POSIX: lets the xdist workers build the shared data once
except ImportError:  # Windows: each worker builds its own
    fcntl = None

import numpy as np
import pytest

from data_prep import prepare
from mnistlab.datasets import IDX_NAMES
from mnistlab.paths import BUNDLED, REPO

SMALL_TRAIN, SMALL_TEST = 300, 100
CHECKOUT = pytest.StashKey[dict]()
WATCHED = ("data", "plots", "results", "checkpoints")  # the checkout's own folders: tests write elsewhere


def checkout_files() -> dict:
    return {str(p.relative_to(REPO)): p.stat().st_mtime_ns for d in WATCHED for p in (REPO / d).rglob("*")}


def pytest_sessionstart(session):
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the main process, before any worker starts
        session.config.stash[CHECKOUT] = checkout_files()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any test created, changed or removed a file in the checkout's data and output folders."""
    before = session.config.stash.get(CHECKOUT, None)
    if before is None:
        return
    after = checkout_files()
    changed = sorted({k for k in before.keys() | after.keys() if before.get(k) != after.get(k)})
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        print(f"\nFAILED: the tests changed the checkout (tests must write to temporary folders): {shown}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Module and session fixtures that train or run many models: every test that takes one is slow.
SLOW_FIXTURES = ("all_runs", "fashion_run", "fashion", "trained")  # test_ml, test_experiment, test_fashion, test_demo


def pytest_collection_modifyitems(config, items):
    """Marks every test taking one of SLOW_FIXTURES slow. Then orders the files: those holding slow or browser
    tests first, the files of fewest tests first among them, then the others; each file's tests keep their order.

    Why: under the README's ``--dist loadfile`` a file is one unit of work for one worker, handed out in this
    order (pytest_configure keeps pytest-xdist from re-sorting it by test count, which would hand out the files
    of one long test last). A file of one long test cannot be shared out, so it starts first; the many quick
    files then fill in, and both workers finish together.
    """
    files: dict[str, list] = {}
    for item in items:
        if set(getattr(item, "fixturenames", ())) & set(SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def heavy(tests) -> bool:
        return any(t.get_closest_marker("slow") or t.get_closest_marker("browser") for t in tests)

    order = sorted(files.values(), key=lambda tests: (0, len(tests)) if heavy(tests) else (1, 0))
    items[:] = [item for tests in order for item in tests]


def pytest_configure(config):
    """Under pytest-xdist (``-n``), keep the order of pytest_collection_modifyitems and give each worker its own
    share of the cores.

    Why: every worker's torch, OpenMP and scikit-learn threads would otherwise use all cores, and the
    oversubscribed workers run slower together than one alone. The scripts size their threads from the
    usable cores (utils.usable_cores), so pinning the process is enough.
    """
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist >= 3.6 re-sorts --dist loadfile by test count
        config.option.loadscopereorder = False
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker and count > 1 and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        share = cores[int(worker.removeprefix("gw")) % count :: count]
        if share:
            os.sched_setaffinity(0, share)


def output_flags(out: Path, results: str = "r", plots: str = "p", checkpoints: str = "c") -> list[str]:
    """--results-dir, --plots-dir and --checkpoint-dir in folders under ``out`` (tests never write to the checkout)."""
    folders = {"--results-dir": results, "--plots-dir": plots, "--checkpoint-dir": checkpoints}
    return [text for flag, name in folders.items() for text in (flag, str(out / name))]


@pytest.fixture
def no_test_split(monkeypatch):
    """Fails the test if anything takes images of the test split (mnistlab.data.first): a validation run must not."""
    from mnistlab import data

    real = data.first

    def no_test(x, y, size, what):
        assert "test" not in what, "a validation run loaded the test split"
        return real(x, y, size, what)

    monkeypatch.setattr(data, "first", no_test)


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, gz: bool = True) -> Path:
    """Write an IDX file (images if 3-D, labels if 1-D), gzip-compressed by default."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x803 if array.ndim == 3 else 0x801
    header = struct.pack(">II", magic, len(array)) + b"".join(struct.pack(">I", d) for d in array.shape[1:])
    path = path.with_name(path.name + ".gz") if gz else path
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def write_source(folder: Path, arrays: dict, gz: bool = True) -> Path:
    """A folder holding the four IDX files of ``arrays`` (keys x_train, y_train, x_test, y_test)."""
    folder.mkdir(parents=True, exist_ok=True)
    for (split, kind), name in IDX_NAMES.items():
        write_idx(folder / name, arrays[f"{'x' if kind == 'images' else 'y'}_{split}"], gz=gz)
    return folder


@contextlib.contextmanager
def shared(tmp_path_factory, name: str):
    """The path ``name`` in the test run's own folder, held under a lock: under pytest-xdist the workers share it,
    the first one builds it and the others wait, then reuse it (read only: no test writes into it)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and fcntl:
        root = root.parent  # the run's folder, shared by its workers (with a lock; without one, each its own)
    with open(root / f"{name}.lock", "w") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield root / name


@pytest.fixture(scope="session")
def full_mnist(tmp_path_factory):
    """The bundled MNIST prepared (without the large JSON files) into a temporary data dir, once per test run and
    shared by the workers."""
    with shared(tmp_path_factory, "shared-mnist") as data_dir:
        manifest = prepare("mnist", data_dir=data_dir, plots_dir=data_dir, write_json_files=False, quiet=True)
    return data_dir, manifest


@pytest.fixture(scope="session")
def svm_paper_file(tmp_path_factory, full_mnist) -> Path:
    """svm-paper.skops: the published SVC() fitted on the first 3000 training images and saved as ml_main.py saves
    it, once per test run and shared by the workers (read only: tests copy it into their checkpoint folders)."""
    from mnistlab.data import load_split
    from mnistlab.saved_models import save_classical
    from model_files import DIGITS, fit_pipeline

    with shared(tmp_path_factory, "shared-svm-paper.skops") as path:
        if not path.is_file():
            x, y = load_split("train", data_dir=full_mnist[0], size=3000)
            meta = {"model": "svm", "recipe": "paper", "classes": DIGITS}
            save_classical(fit_pipeline("svm", x, y), path, meta, x[:50])  # written atomically
    return path


def copy_svm_paper(svm_paper_file: Path, checkpoint_dir: Path) -> Path:
    """The shared svm-paper.skops, copied into ``checkpoint_dir``/mnist/ under its own name."""
    target = checkpoint_dir / "mnist" / "svm-paper.skops"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(svm_paper_file.read_bytes())
    return target


@pytest.fixture(scope="session")
def small_arrays(full_mnist):
    """The first real images of each split, for fast tests."""
    with np.load(full_mnist[0] / "mnist" / "cache.npz") as npz:
        return {
            "x_train": npz["x_train"][:SMALL_TRAIN],
            "y_train": npz["y_train"][:SMALL_TRAIN],
            "x_test": npz["x_test"][:SMALL_TEST],
            "y_test": npz["y_test"][:SMALL_TEST],
        }


@pytest.fixture
def small_source(tmp_path, small_arrays):
    return write_source(tmp_path / "small-src", small_arrays)


@pytest.fixture
def bundled_copy(tmp_path):
    """A writable copy of the bundled archives and their checksum files."""
    folder = tmp_path / "bundled"
    folder.mkdir()
    for f in BUNDLED.iterdir():
        if f.is_file() and (f.suffix == ".gz" or f.name.startswith("SHA256SUMS")):
            (folder / f.name).write_bytes(f.read_bytes())
    return folder
