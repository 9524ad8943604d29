"""Get an MNIST-format dataset onto disk, verified, as JSON and as a fast cache.

    python data_prep.py                          # the MNIST copy bundled in data/ (offline)
    python data_prep.py --download               # torchvision's own download instead
    python data_prep.py --source DIR             # any folder with the four IDX files (.gz or not)

Outputs go to ``<data-dir>/<name>/``: ``train.json`` and ``test.json`` (one
``{"img": 28x28 ints 0-255, "label": int}`` object per line inside a JSON array),
``cache.npz`` (uint8 arrays that the trainers load in well under a second),
``manifest.json`` (checksums of everything, written last) and ``raw/`` (the
decompressed IDX files that torchvision parses). ``load_split`` is the one loader
that every other script uses.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from utils import ProjectError, atomic_path, pyplot, read_json, run_cli, savefig, write_json

REPO = Path(__file__).resolve().parent
BUNDLED = REPO / "data"  # the four original MNIST archives, committed unchanged
FORMAT = 1  # bump when the outputs' layout changes, so old outputs are rebuilt

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
IDX_MAGIC = {"images": 0x803, "labels": 0x801}
SIDE = 28

# Known datasets: the torchvision class that downloads them and their class names.
DATASETS = {
    "mnist": ("MNIST", [str(i) for i in range(10)]),
    "fashion-mnist": (
        "FashionMNIST",
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    ),
    "kmnist": ("KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
}
N_CLASSES = 10


# ---------------------------------------------------------------- checks
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_sums(path: Path) -> dict:
    """Parse a ``sha256sum``-style file into {file name: digest}; empty if absent."""
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def check_sum(path: Path, expected: str | None, fix: str) -> str:
    digest = sha256(path)
    if expected and digest != expected:
        raise ProjectError(
            f"checksum mismatch for {path} (sha256 {digest[:12]}..., expected {expected[:12]}...); {fix}"
        )
    return digest


def check_idx_header(path: Path, kind: str) -> int:
    """Validate an uncompressed IDX file's magic number and size; return its item count."""
    with open(path, "rb") as f:
        header = f.read(16 if kind == "images" else 8)
    if len(header) < 8:
        raise ProjectError(f"{path} is too short to be an IDX {kind} file; replace it")
    magic, n = struct.unpack(">II", header[:8])
    if magic != IDX_MAGIC[kind]:
        raise ProjectError(
            f"{path}: wrong IDX magic number {magic:#010x} (expected {IDX_MAGIC[kind]:#010x} for {kind}); "
            "is it an MNIST-format file of the right kind?"
        )
    expected = 8 + n
    if kind == "images":
        rows, cols = struct.unpack(">II", header[8:16]) if len(header) == 16 else (0, 0)
        if (rows, cols) != (SIDE, SIDE):
            raise ProjectError(f"{path}: images are {rows}x{cols}, expected {SIDE}x{SIDE}")
        expected = 16 + n * SIDE * SIDE
    size = path.stat().st_size
    if size != expected:
        raise ProjectError(
            f"{path} has {size} bytes but its header promises {expected}: truncated or corrupt; replace it"
        )
    return n


# ---------------------------------------------------------------- sources
def find_source_files(src: Path) -> dict:
    """Map (split, kind) to the file in ``src``, accepting .gz or not and the dotted variant."""
    if not src.is_dir():
        raise ProjectError(f"source folder {src} does not exist; pass --source DIR with the four IDX files")
    found = {}
    for key, base in IDX_NAMES.items():
        dotted = base.replace("-idx", ".idx")
        for name in (base + ".gz", base, dotted + ".gz", dotted):
            if (src / name).is_file():
                found[key] = src / name
                break
        else:
            raise ProjectError(
                f"missing {src / (base + '.gz')} (or uncompressed {base}); "
                "restore the file (git checkout data/ for the bundled copy) or use --download / --source DIR"
            )
    return found


def download(dataset: str, data_dir: Path) -> Path:
    """Fetch a known dataset with torchvision's own downloader; return its raw folder."""
    if dataset not in DATASETS:
        raise ProjectError(f"unknown dataset {dataset!r}: pass --source DIR with its four IDX files")
    import torchvision.datasets as tvd  # imported here: torchvision is slow to import and rarely needed

    cls = getattr(tvd, DATASETS[dataset][0])
    root = data_dir / dataset / "download"
    try:
        cls(root=str(root), train=True, download=True)
        cls(root=str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError for network problems
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__  # torchvision's last line holds the cause
        raise ProjectError(
            f"could not download {dataset} through torchvision ({reason}); "
            f"put its four IDX files in a folder and pass --source DIR"
        ) from None
    return root / cls.__name__ / "raw"


def stage_raw(files: dict, raw_dir: Path, sums_raw: dict) -> dict:
    """Decompress (or copy) each source file into ``raw_dir`` atomically and validate it.

    Returns {(split, kind): item count}.
    """
    counts = {}
    for key, src in files.items():
        base = IDX_NAMES[key]
        dest = raw_dir / base
        with atomic_path(dest) as tmp:
            try:
                opener = gzip.open if src.suffix == ".gz" else open
                with opener(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 22)
            except (OSError, EOFError, zlib.error) as exc:
                raise ProjectError(f"{src} is not a valid gzip file or is truncated ({exc}); replace it") from None
            check_sum(tmp, sums_raw.get(base), fix=f"{src} decompresses to the wrong content; replace it")
            counts[key] = check_idx_header(tmp, key[1])
    return counts


def idx_dataset(raw_dir: Path, train: bool, transform=None):
    """torchvision's MNIST dataset reading the four IDX files in ``raw_dir`` (instead of root/MNIST/raw)."""
    from torchvision.datasets import MNIST

    class IDXFolder(MNIST):
        @property
        def raw_folder(self) -> str:
            return str(raw_dir)

    return IDXFolder(root=str(raw_dir), train=train, transform=transform, download=False)


def parse_split(raw_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one split with torchvision's MNIST reader (its IDX parsing), pointed at ``raw_dir``."""
    ds = idx_dataset(raw_dir, train=split == "train")
    x, y = ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)
    if len(x) != len(y):
        raise ProjectError(
            f"{raw_dir}: the {split} split has {len(x)} images but {len(y)} labels; the files do not belong together"
        )
    if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        bad = int(y[(y < 0) | (y >= N_CLASSES)][0])
        raise ProjectError(f"{raw_dir}: {split} labels contain {bad}, outside 0-{N_CLASSES - 1}; wrong labels file?")
    return x, y


# ---------------------------------------------------------------- outputs
def write_json_split(path: Path, x: np.ndarray, y: np.ndarray, quiet: bool = False) -> None:
    """Stream one split to JSON: an array with one record per line, so it is valid JSON and line-readable."""
    from tqdm import tqdm

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("[\n")
        for i in tqdm(range(len(x)), desc=path.name, unit="img", disable=quiet or None, mininterval=0.5):
            record = json.dumps({"img": x[i].tolist(), "label": int(y[i])}, separators=(",", ":"))
            f.write(record + (",\n" if i + 1 < len(x) else "\n"))
        f.write("]\n")


def read_json_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a split written by ``write_json_split`` back into arrays (one line at a time)."""
    xs, ys = [], []
    try:
        with open(path) as f:
            if f.readline().strip() != "[":
                raise ValueError("does not start with '['")
            for line in f:
                line = line.strip().rstrip(",")
                if line == "]":
                    break
                rec = json.loads(line)
                xs.append(rec["img"])
                ys.append(rec["label"])
            else:
                raise ValueError("ends before the closing ']'")
        x = np.asarray(xs, dtype=np.int64)
        if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE) or x.min(initial=0) < 0 or x.max(initial=0) > 255:
            raise ValueError(f"images are not {SIDE}x{SIDE} integers in 0-255")
    except FileNotFoundError:
        raise ProjectError(f"{path} not found; run python data_prep.py") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProjectError(f"{path} is malformed ({exc}); rebuild it with python data_prep.py --force") from None
    return x.astype(np.uint8), np.asarray(ys, dtype=np.int64)


def draw_samples(x: np.ndarray, y: np.ndarray, classes: list, path: Path, rows: int = 4, cols: int = 10) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3))
    for ax, img, label in zip(axes.flat, x, y, strict=False):  # more images than panels
        ax.imshow(img, cmap="gray_r")
        ax.set_title(classes[int(label)], fontsize=9)
        ax.axis("off")
    fig.suptitle("Sample training images and their labels")
    savefig(fig, path)


def outputs_valid(out: Path, fingerprint: dict, required: set) -> bool:
    """True when the manifest matches this source, lists every ``required`` output, and every output still has
    its recorded checksum."""
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT or manifest.get("source_sha256") != fingerprint:
            return False
        return required <= set(manifest["outputs"]) and all(
            (out / name).is_file() and sha256(out / name) == digest for name, digest in manifest["outputs"].items()
        )
    except (OSError, ValueError, KeyError, AttributeError):
        return False


# ---------------------------------------------------------------- pipeline
def prepare(
    dataset: str = "mnist",
    source: Path | None = None,
    data_dir: Path = BUNDLED,
    plots_dir: Path = REPO / "plots",
    use_download: bool = False,
    force: bool = False,
    write_json_files: bool = True,
    quiet: bool = False,
) -> dict:
    """Build (or reuse) the verified outputs for one dataset; return its manifest."""
    log = (lambda *a: None) if quiet else print
    data_dir = Path(data_dir)
    if source is None and not use_download and dataset == "mnist":
        source = BUNDLED
    if source is None:
        source = download(dataset, data_dir)
    source = Path(source)
    files = find_source_files(source)
    sums_gz, sums_raw = read_sums(source / "SHA256SUMS"), read_sums(source / "SHA256SUMS.uncompressed")
    fix = "the file is corrupt or modified: restore it (git checkout data/) or use --download"
    fingerprint = {f.name: check_sum(f, sums_gz.get(f.name), fix) for f in files.values()}
    if not sums_gz and not sums_raw:
        log(f"note: no SHA256SUMS in {source}; validating IDX headers, sizes and labels only")

    out = data_dir / dataset
    required = {"cache.npz", "train.json", "test.json"} if write_json_files else {"cache.npz"}
    if not force and outputs_valid(out, fingerprint, required):  # a --no-json build lacks the JSON
        log(f"reusing verified outputs in {out}/ (use --force to rebuild)")
        return read_json(out / "manifest.json")

    counts = stage_raw(files, out / "raw", sums_raw)
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = parse_split(out / "raw", split)
        assert len(arrays[f"x_{split}"]) == counts[(split, "images")]
    classes = DATASETS.get(dataset, (None, [str(i) for i in range(N_CLASSES)]))[1]

    outputs = {}
    with atomic_path(out / "cache.npz") as tmp:
        with open(tmp, "wb") as f:  # a file object, so numpy does not append its own .npz suffix
            np.savez(f, **arrays, classes=np.array(classes))
    outputs["cache.npz"] = sha256(out / "cache.npz")
    if write_json_files:
        for split in ("train", "test"):
            write_json_split(out / f"{split}.json", arrays[f"x_{split}"], arrays[f"y_{split}"], quiet)
            outputs[f"{split}.json"] = sha256(out / f"{split}.json")
    manifest = {
        "format": FORMAT,
        "dataset": dataset,
        "source": str(source),
        "source_sha256": fingerprint,
        "checksums_verified": bool(sums_gz or sums_raw),
        "n_train": len(arrays["y_train"]),
        "n_test": len(arrays["y_test"]),
        "classes": classes,
        "outputs": outputs,
    }
    write_json(out / "manifest.json", manifest)  # last: its presence vouches for everything above
    name = "samples.png" if dataset == "mnist" else f"samples_{dataset}.png"
    draw_samples(arrays["x_train"], arrays["y_train"], classes, Path(plots_dir) / name)
    log(f"wrote {out}/ ({manifest['n_train']} train, {manifest['n_test']} test) and {Path(plots_dir) / name}")
    return manifest


# ---------------------------------------------------------------- loading
def load_cache(dataset: str = "mnist", data_dir: Path = BUNDLED) -> dict:
    """Load the npz cache of a dataset; the bundled MNIST is prepared on first use, anything else must be."""
    path = Path(data_dir) / dataset / "cache.npz"
    if not path.is_file():
        if dataset != "mnist" or Path(data_dir).resolve() != BUNDLED.resolve():
            # Not built here on the fly: a mistyped --data-dir would silently get a new copy of the data.
            raise ProjectError(
                f"no prepared {dataset} data in {data_dir}/; run python data_prep.py --dataset {dataset} "
                f"--data-dir {data_dir} first (with --source DIR or --download where it is not bundled)"
            )
        prepare(dataset, data_dir=data_dir, quiet=True)
    keys = ("x_train", "y_train", "x_test", "y_test", "classes")
    try:
        with np.load(path) as npz:
            cache = {k: npz[k] for k in keys}
        for split in ("train", "test"):
            x, y = cache[f"x_{split}"], cache[f"y_{split}"]
            if x.dtype != np.uint8 or x.shape[1:] != (SIDE, SIDE) or len(x) != len(y):
                raise ValueError(f"unexpected {split} arrays {x.dtype} {x.shape} / {y.shape}")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ProjectError(
            f"{path} is unreadable or malformed ({exc}); rebuild it with python data_prep.py --force"
        ) from None
    return cache


def select(x: np.ndarray, y: np.ndarray, size: int | None, random: bool = False, seed: int = 0, what: str = "split"):
    """The first ``size`` items, or a seeded random subset (kept in original order)."""
    if size is None or size == len(y):
        return x, y
    if size <= 0 or size > len(y):
        raise ProjectError(f"asked for {size} images but the {what} has {len(y)}; choose a size from 1 to {len(y)}")
    idx = np.sort(np.random.default_rng(seed).choice(len(y), size, replace=False)) if random else slice(size)
    return x[idx], y[idx]


def load_split(
    split: str,
    dataset: str = "mnist",
    data_dir: Path = BUNDLED,
    size: int | None = None,
    random: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (X uint8 [N, 28, 28], y int64 [N]) for ``split`` ('train' or 'test')."""
    if split not in ("train", "test"):
        raise ProjectError(f"unknown split {split!r}; use 'train' or 'test'")
    cache = load_cache(dataset, data_dir)
    return select(cache[f"x_{split}"], cache[f"y_{split}"], size, random, seed, what=f"{dataset} {split} split")


def class_names(dataset: str = "mnist", data_dir: Path = BUNDLED) -> list:
    return [str(c) for c in load_cache(dataset, data_dir)["classes"]]


# ---------------------------------------------------------------- CLI
def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "custom"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset",
        help="name of the dataset: mnist (default), fashion-mnist, kmnist, or any name "
        "for a --source folder (default: the folder's name)",
    )
    p.add_argument("--source", type=Path, help="folder holding the four IDX files of an MNIST-format dataset")
    p.add_argument("--download", action="store_true", help="download through torchvision instead of the bundled copy")
    p.add_argument("--data-dir", type=Path, default=BUNDLED, help="where outputs are written (default: data/)")
    p.add_argument("--plots-dir", type=Path, default=REPO / "plots", help="where samples.png goes (default: plots/)")
    p.add_argument("--force", action="store_true", help="rebuild even when verified outputs exist")
    p.add_argument("--no-json", action="store_true", help="skip the JSON files (the cache alone feeds the trainers)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = p.parse_args(argv)
    if args.dataset is None:
        args.dataset = slug(args.source.resolve().name) if args.source else "mnist"
    elif args.dataset != slug(args.dataset):
        p.error(f"--dataset {args.dataset!r}: use lower-case letters, digits and dashes")
    return args


def _main(argv=None) -> int:
    args = parse_args(argv)
    prepare(
        args.dataset,
        args.source,
        args.data_dir,
        args.plots_dir,
        args.download,
        args.force,
        not args.no_json,
        args.quiet,
    )
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
