"""Build step: get an MNIST-format dataset onto disk, verified, as a fast cache (and JSON).

    python data_prep.py                          # the MNIST copy bundled in data/ (offline)
    python data_prep.py --download               # torchvision's own download instead
    python data_prep.py --source DIR             # any folder with the four IDX files (.gz or not)

Outputs go to ``<data-dir>/<name>/``: ``cache.npz`` (uint8 arrays that every script loads through
``dataset.load_split``), ``train.json`` and ``test.json`` (one ``{"img": 28x28 ints 0-255, "label": int}``
object per line inside a JSON array), ``raw/`` (the decompressed IDX files) and ``manifest.json``
(checksums of everything, written last: loading trusts the cache only when the manifest vouches for it).
A known dataset (mnist, fashion-mnist) is checked against the known checksums of its files, whatever folder
it comes from, so swapped or foreign files are refused.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cli import slug
from dataset import BUNDLED, DATASETS, IDX_NAMES, REPO, known_classes, sha256
from utils import (
    ProjectError,
    atomic_path,
    check_output_dirs,
    pyplot,
    read_json,
    remove_stale_temps,
    run_cli,
    savefig,
    write_json,
)

FORMAT = 2  # bump when the outputs' layout changes, so old outputs are rebuilt


# ---------------------------------------------------------------- sources and checks
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


def find_source_files(src: Path) -> dict:
    """Map (split, kind) to the file in ``src``, accepting .gz or not and the dotted variant."""
    try:
        if not src.is_dir():
            what = ("is a broken symbolic link (or a loop of them)" if src.is_symlink() else
                    "is a file, not a folder" if src.exists() else "does not exist")  # fmt: skip
            raise ProjectError(f"source folder {src} {what}; pass --source DIR with the four IDX files")
        src.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a symlink loop, a path too long...
        raise ProjectError(f"cannot open the source folder {src} ({exc}); pass a real folder") from None
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
    import torchvision.datasets as tvd  # here: slow to import, and only --download needs it

    cls = getattr(tvd, DATASETS[dataset]["torchvision"])
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


def stage_raw(files: dict, raw_dir: Path, expected: dict, fix: str) -> dict:
    """Decompress (or copy) each source file into ``raw_dir`` atomically, checked against ``expected`` sums.

    Returns {IDX name: sha256 of the uncompressed content}.
    """
    sums = {}
    for key, src in files.items():
        base = IDX_NAMES[key]
        with atomic_path(raw_dir / base) as tmp:
            opener = gzip.open if src.suffix == ".gz" else open
            try:
                with opener(src, "rb") as fin:
                    data = fin.read()
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise ProjectError(f"{src} is not a valid gzip file or is truncated ({exc}); replace it") from None
            tmp.write_bytes(data)  # an OSError here (a full disk) is reported by atomic_path, naming the file
            sums[base] = check_sum(tmp, expected.get(base), fix=f"{src} has the wrong content; {fix}")
    return sums


def parse_split(raw_dir: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one split with torchvision's IDX readers; any malformed file is one clear line."""
    from torchvision.datasets.mnist import read_image_file, read_label_file  # here: torchvision is slow to import

    arrays = []
    for kind, reader in (("images", read_image_file), ("labels", read_label_file)):
        path = raw_dir / IDX_NAMES[(split, kind)]
        try:
            arrays.append(reader(str(path)).numpy())
        except (AssertionError, TypeError, ValueError, RuntimeError, KeyError, IndexError) as exc:
            detail = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
            raise ProjectError(f"{path} is not a valid IDX {kind} file ({detail}); truncated, corrupt "
                               f"or the wrong kind of file: replace it") from None  # fmt: skip
    x, y = arrays[0].astype(np.uint8), arrays[1].astype(np.int64)
    if x.shape[1:] != (28, 28):
        raise ProjectError(f"{raw_dir}: {split} images are {x.shape[1]}x{x.shape[2]}, expected 28x28")
    if len(x) != len(y):
        raise ProjectError(
            f"{raw_dir}: the {split} split has {len(x)} images but {len(y)} labels; the files do not belong together"
        )
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        bad = int(y[(y < 0) | (y >= n_classes)][0])
        raise ProjectError(f"{raw_dir}: {split} labels contain {bad}, outside 0-{n_classes - 1}; wrong labels file?")
    return x, y


# ---------------------------------------------------------------- outputs
def write_json_split(path: Path, x: np.ndarray, y: np.ndarray, quiet: bool = False) -> None:
    """Stream one split to JSON: an array with one record per line, so it is valid JSON and line-readable."""
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
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.min(initial=0) < 0 or x.max(initial=0) > 255:
            raise ValueError("images are not 28x28 integers in 0-255")
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
    """True when the manifest matches this source and format, lists every ``required`` output, and every output
    still has its recorded checksum."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or manifest.get("source_sha256") != fingerprint:
            return False
        return required <= set(manifest["outputs"]) and all(
            (out / name).is_file() and sha256(out / name) == digest for name, digest in manifest["outputs"].items()
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


# ---------------------------------------------------------------- pipeline
def locate(dataset: str, source: Path | None, data_dir: Path, use_download: bool) -> tuple[Path, dict, str]:
    """The source folder, the checksums its files must have (uncompressed), and the fix to suggest."""
    if source is None and not use_download and dataset == "mnist":
        source = BUNDLED
    source = Path(source) if source is not None else download(dataset, data_dir)
    expected = {**read_sums(source / "SHA256SUMS.uncompressed"), **DATASETS.get(dataset, {}).get("sha256", {})}
    fix = "restore the file (git checkout data/ for the bundled copy)"
    if dataset in DATASETS and "sha256" in DATASETS[dataset]:
        fix = f"these are not the original {dataset} files (swapped, modified or another dataset?); restore them"
    return source, expected, fix


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
    data_dir, out = Path(data_dir), Path(data_dir) / dataset
    samples = Path(plots_dir) / dataset / "samples.png"
    check_output_dirs({"--data-dir": out, "--plots-dir": samples.parent})  # before any work
    remove_stale_temps(out, out / "raw")
    source, expected, fix = locate(dataset, source, data_dir, use_download)
    files = find_source_files(source)
    sums_gz = read_sums(source / "SHA256SUMS")
    fingerprint = {f.name: check_sum(f, sums_gz.get(f.name), fix) for f in files.values()}
    if not sums_gz and not expected:
        log(f"note: no SHA256SUMS in {source}; validating the IDX files and labels only")
    required = {"cache.npz", "train.json", "test.json"} if write_json_files else {"cache.npz"}
    if not force and outputs_valid(out, fingerprint, required):  # a --no-json build lacks the JSON
        log(f"reusing verified outputs in {out}/ (use --force to rebuild)")
        manifest = read_json(out / "manifest.json")
    else:
        manifest = build(dataset, source, files, out, expected, fix, fingerprint, write_json_files, quiet)
        log(f"wrote {out}/ ({manifest['n_train']} train, {manifest['n_test']} test)")
    if not samples.is_file():  # also after a reuse: an earlier run may have stopped before drawing it
        from dataset import load_split

        x, y = load_split("train", dataset, data_dir, size=min(40, manifest["n_train"]))
        draw_samples(x, y, manifest["classes"], samples)
        log(f"wrote {samples}")
    return manifest


def build(dataset, source, files, out, expected, fix, fingerprint, write_json_files, quiet) -> dict:
    """Decompress, verify, parse and write every output; the manifest last, as its presence vouches for the rest."""
    (out / "manifest.json").unlink(missing_ok=True)  # from here until the end, the old outputs are not vouched for
    idx_sums = stage_raw(files, out / "raw", expected, fix)
    classes = known_classes(dataset)
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = parse_split(out / "raw", split, len(classes))
    with atomic_path(out / "cache.npz") as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no suffix
        np.savez(f, **arrays, classes=np.array(classes))
    outputs = {"cache.npz": sha256(out / "cache.npz")}
    if write_json_files:
        for split in ("train", "test"):
            write_json_split(out / f"{split}.json", arrays[f"x_{split}"], arrays[f"y_{split}"], quiet)
            outputs[f"{split}.json"] = sha256(out / f"{split}.json")
    manifest = {"format": FORMAT, "dataset": dataset, "source": str(source), "source_sha256": fingerprint,
                "idx_sha256": idx_sums, "checksums_verified": bool(expected), "n_train": len(arrays["y_train"]),
                "n_test": len(arrays["y_test"]), "classes": classes, "outputs": outputs}  # fmt: skip
    write_json(out / "manifest.json", manifest)
    return manifest


# ---------------------------------------------------------------- CLI
def dataset_name(name: str | None, source: Path | None) -> str:
    """--dataset as given, or the --source folder's name; letters, digits and dashes only."""
    if name is None:
        return slug(source.name) if source else "mnist"
    if name != slug(name):
        raise ProjectError(f"--dataset {name!r}: use lower-case letters, digits and dashes")
    return name


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset",
        help="mnist (default), fashion-mnist, kmnist, or any name for a --source folder (default: the folder's name)",
    )
    p.add_argument("--source", type=Path, help="folder holding the four IDX files of an MNIST-format dataset")
    p.add_argument("--download", action="store_true", help="download through torchvision instead of the bundled copy")
    p.add_argument("--data-dir", type=Path, default=BUNDLED, help="where outputs are written (default: data/)")
    p.add_argument("--plots-dir", type=Path, default=REPO / "plots",
                   help="samples.png goes to <plots-dir>/<dataset>/ (default: plots/)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="rebuild even when verified outputs exist")
    p.add_argument("--no-json", action="store_true", help="skip the JSON files (the cache alone feeds the trainers)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    dataset = dataset_name(args.dataset, args.source)
    prepare(dataset, args.source, args.data_dir, args.plots_dir, args.download, args.force, not args.no_json,
            args.quiet)  # fmt: skip
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
