"""Build step: get an MNIST-format dataset onto disk, verified, as a fast cache (and JSON).

    python data_prep.py                          # the MNIST copy bundled in data/ (offline)
    python data_prep.py --download               # torchvision's own download instead
    python data_prep.py --source DIR             # any folder with the four IDX files (.gz or not)

Outputs go to ``<data-dir>/<name>/``: ``cache.npz`` (uint8 arrays that every script loads through
``mnistlab.data``), ``train.json`` and ``test.json`` (one ``{"img": 28x28 ints 0-255, "label": int}``
object per line inside a JSON array), ``raw/`` (the decompressed IDX files) and ``manifest.json``
(checksums of everything, written last: loading trusts the cache only when the manifest vouches for it).
A known dataset (mnist, fashion-mnist) is checked against the known checksums of its files, whatever folder
it comes from, so swapped or foreign files are refused.
"""

from __future__ import annotations

import mnistlab.errors  # noqa: F401 (first: its hook makes a Ctrl-C during the slow imports below one line)

# isort: split
import argparse
import sys
from pathlib import Path

import numpy as np

from mnistlab.cache import build_cache
from mnistlab.data import load_split
from mnistlab.errors import ProjectError, run_cli
from mnistlab.files import check_output_dirs
from mnistlab.flags import path_type, slug
from mnistlab.paths import BUNDLED, PLOTS
from mnistlab.plots import pyplot, savefig


def prepare(
    dataset: str = "mnist",
    source: Path | None = None,
    data_dir: Path = BUNDLED,
    plots_dir: Path = PLOTS,
    use_download: bool = False,
    force: bool = False,
    write_json_files: bool = True,
    quiet: bool = False,
) -> dict:
    """Build (or reuse) the verified outputs for one dataset and draw its samples; return its manifest."""
    samples = Path(plots_dir) / dataset / "samples.png"
    check_output_dirs({"--plots-dir": samples.parent})  # before any work, not after the build
    manifest = build_cache(dataset, source, data_dir, use_download, force, write_json_files, quiet)
    if not samples.is_file():  # also after a reuse: an earlier run may have stopped before drawing it
        x, y = load_split("train", dataset, data_dir, size=min(40, manifest["n_train"]))
        draw_samples(x, y, manifest["classes"], samples)
        if not quiet:
            print(f"wrote {samples}")
    return manifest


def draw_samples(x: np.ndarray, y: np.ndarray, classes: list, path: Path, rows: int = 4, cols: int = 10) -> None:
    """The first rows x cols images as one mosaic, each labelled above: one axes (40 of them took 0.7 s)."""
    plt = pyplot()
    h, w = x.shape[1:]
    gap_w, gap_h = w // 4, h // 2  # room between the images, and above each for its label
    tiles = np.zeros((rows * (h + gap_h), cols * (w + gap_w)), dtype=x.dtype)
    fig, ax = plt.subplots(figsize=(cols * 1.1, rows * 1.3))
    for i, (img, label) in enumerate(zip(x[: rows * cols], y, strict=False)):
        top, left = (i // cols) * (h + gap_h) + gap_h, (i % cols) * (w + gap_w) + gap_w // 2
        tiles[top : top + h, left : left + w] = img
        ax.text(left + w / 2, top - 2, classes[int(label)], ha="center", va="bottom", fontsize=9)
    ax.imshow(tiles, cmap="gray_r")
    ax.axis("off")
    fig.suptitle("Sample training images and their labels")
    savefig(fig, path)


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
    p.add_argument("--source", type=path_type, help="folder holding the four IDX files of an MNIST-format dataset")
    p.add_argument("--download", action="store_true", help="download through torchvision instead of the bundled copy")
    p.add_argument("--data-dir", type=path_type, default=BUNDLED, help="where outputs are written (default: data/)")
    p.add_argument(
        "--plots-dir",
        type=path_type,
        default=PLOTS,
        help="samples.png goes to <plots-dir>/<dataset>/ (default: plots/)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even when verified outputs exist")
    p.add_argument("--no-json", action="store_true", help="skip the JSON files (the cache alone feeds the trainers)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    dataset = dataset_name(args.dataset, args.source)
    prepare(
        dataset, args.source, args.data_dir, args.plots_dir, args.download, args.force, not args.no_json, args.quiet
    )
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
