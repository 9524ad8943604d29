"""The data layer every script loads through: constants, the verified cache loader and the one validation split.

``data_prep.py`` builds ``<data-dir>/<dataset>/cache.npz`` and a ``manifest.json`` that records its checksum;
``load_split`` checks the cache against that record (and a known dataset's manifest against the known checksums
of its original files) before any array is used, so a changed or foreign cache is never trained or scored on:
the bundled MNIST is rebuilt from its verified archives, anything else is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from utils import ProjectError

REPO = Path(__file__).resolve().parent
BUNDLED = REPO / "data"  # the four original MNIST archives, committed unchanged
SIDE = 28
N_CLASSES = 10
# Of the brightest ink: fainter pixels (paper texture, JPEG noise) do not set a digit's crop box. Shared by
# inference.to_mnist (users' images) and augment.refit (training batches), which must lay digits out alike.
INK_THRESHOLD = 0.25
SPLIT_SEED = 0  # the validation split is the same for every model and every training seed

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# Known datasets: torchvision's class (for --download), class names, and the SHA-256 of each uncompressed IDX
# file (the content, whatever the compression), so a known dataset is verified from whichever folder it comes.
DATASETS = {
    "mnist": {
        "torchvision": "MNIST",
        "classes": [str(i) for i in range(10)],
        "sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    },
    "fashion-mnist": {
        "torchvision": "FashionMNIST",
        "classes": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],  # fmt: skip
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
    "kmnist": {"torchvision": "KMNIST", "classes": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]},
}
CACHE_KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def known_classes(dataset: str) -> list[str]:
    return DATASETS.get(dataset, {}).get("classes") or [str(i) for i in range(N_CLASSES)]


# ---------------------------------------------------------------- the verified cache
def cache_problem(folder: Path, dataset: str) -> str | None:
    """Why the cache in ``folder`` cannot be trusted, or None when its manifest vouches for it."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        recorded = manifest["outputs"]["cache.npz"]
        idx_sums = manifest.get("idx_sha256", {})
    except FileNotFoundError:
        return "it has no manifest.json (not built by data_prep.py, or its build was interrupted)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "its manifest.json is unreadable"
    known = DATASETS.get(dataset, {}).get("sha256")
    if known and idx_sums != known:
        return f"its manifest does not list the known {dataset} files"
    if sha256(folder / "cache.npz") != recorded:
        return "cache.npz differs from what data_prep.py recorded (changed since it was built)"
    return None


def read_arrays(path: Path) -> dict:
    """The cache's arrays, checked for shape, type and label range; ProjectError when malformed."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            cache = {k: npz[k] for k in CACHE_KEYS}
        n_classes = len(cache["classes"])
        for split in ("train", "test"):
            x, y = cache[f"x_{split}"], cache[f"y_{split}"]
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
                raise ValueError(f"{split} images are {x.dtype} {x.shape}, not uint8 (N, {SIDE}, {SIDE})")
            if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
                raise ValueError(f"{split} labels are {y.dtype} {y.shape}, not {len(x)} whole numbers")
            if len(y) and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(f"{split} labels fall outside 0-{n_classes - 1}")
            cache[f"y_{split}"] = y.astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ProjectError(f"{path} is malformed ({exc}); rebuild it with python data_prep.py --force") from None
    return cache


def load_cache(dataset: str = "mnist", data_dir: Path = BUNDLED) -> dict:
    """The verified cache of a dataset. The bundled MNIST is (re)built on demand; anything else must be prepared."""
    folder = Path(data_dir) / dataset
    bundled = dataset == "mnist" and Path(data_dir).resolve() == BUNDLED.resolve()
    problem = cache_problem(folder, dataset) if (folder / "cache.npz").is_file() else "it has not been built"
    if problem and bundled:
        import data_prep  # here, not at the top: data_prep imports this module

        if (folder / "cache.npz").is_file():
            print(f"note: rebuilding {folder}/ from the bundled archives: {problem}")
        data_prep.prepare(dataset, data_dir=data_dir, force=True, write_json_files=False, quiet=True)
    elif problem:
        raise ProjectError(
            f"cannot use the {dataset} data in {folder}/: {problem}; run python data_prep.py --dataset {dataset} "
            f"--data-dir {data_dir} --force (with --source DIR or --download where it is not bundled)"
        )
    return read_arrays(folder / "cache.npz")


# ---------------------------------------------------------------- splits
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
        raise ProjectError(f"--train-size {train_size}: only {len(rest)} training images are left{held}; "
                           "choose a smaller size")  # fmt: skip
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


def class_names(dataset: str = "mnist", data_dir: Path = BUNDLED) -> list[str]:
    return [str(c) for c in load_cache(dataset, data_dir)["classes"]]
