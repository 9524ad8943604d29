"""Classify your own digit images with any trained model, or with all of them side by side.

    python predict.py my_seven.png photo_of_a_3.jpg          # the preferred CNN (best, gpu, fast, paper)
    python predict.py --model svm --top 3 digits/*.png       # a classical model (recipe tuned, else paper)
    python predict.py --model mlp --recipe fast digit.png    # checkpoints/mnist/mlp-fast.pt
    python predict.py --all digits/*.png                     # every trained model, one column each
    python predict.py --checkpoint some/where/knn-tuned.skops digit.png
    python predict.py --number photo_of_2026.jpg             # a whole number: its digits and each one's score
    python predict.py --number --all numbers/*.png           # every model's reading of each number, side by side

Models are found in <checkpoint-dir>/<dataset>/<model>-<recipe>.pt (networks, dl_main.py) or .skops
(classical, ml_main.py); the default checkpoint folder is checkpoints/ beside this script, from any
working folder. Each image (PNG/JPEG/TIFF/..., any size, mode or bit depth, dark ink on light paper or
the reverse) becomes an MNIST-like 28x28 input the way MNIST itself was made: grey, light ink on a dark
background, cropped to the ink, scaled to fit 20x20 keeping its aspect ratio, then placed in 28x28 with
its centre of mass in the middle. A bad image gets one error line; the others are still classified. Each
file is read the one bounded way (mnistlab.images.read_image_file): a regular file of at most MAX_FILE_MB,
whose header declares at most MAX_PIXELS, so a pipe never blocks and a small file cannot cost gigabytes.

With --number each image is read as a whole number of several digits (mnistlab.numbers): its digits are found left
to right, each framed exactly as a single digit is; where digits touch, the first model (with --all: the default
network) chooses the cuts whose pieces it is surest of, and every model reads those digits. An image with nothing
digit-like in it is one error line, never a guess.
See docs/numbers.md.
"""

from __future__ import annotations

import mnistlab.errors  # noqa: F401 (first: its hook makes a Ctrl-C during the slow imports below one line)

# isort: split
import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab.errors import ProjectError, one_line, run_cli
from mnistlab.files import atomic_path
from mnistlab.flags import add_model_flags, check_model_flags, path_type, positive
from mnistlab.images import read_digit
from mnistlab.numbers import read_image, read_number
from mnistlab.saved_models import chosen_models, ranked


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", type=path_type, help="image files to classify")
    add_model_flags(p)
    p.add_argument("--top", type=positive(int), default=1, help="how many of the best classes to print (default: 1)")
    p.add_argument("--save-inputs", type=path_type, help="folder to save each 28x28 model input as PNG, to inspect")
    p.add_argument(
        "--number",
        action="store_true",
        help="read each image as a whole number of several digits: the number, with each digit's score",
    )
    args = p.parse_args(argv)
    check_model_flags(p, args)
    if args.all and args.top > 1:
        p.error("--all shows each model's best class; use --model with --top")
    if args.number and args.top > 1:
        p.error("--number shows each digit's best class; --top is for single digits")
    return args


def read_inputs(paths: list[Path], read=read_digit) -> tuple[list[Path], list, int]:
    """(readable paths, what ``read`` made of each: a 28x28 input, or a number's layout; how many failed); one
    stderr line per image that failed."""
    names, inputs = [], []
    for path in paths:
        try:
            inputs.append(read(path))
            names.append(path)
        except ProjectError as exc:
            print(f"predict.py: error: {one_line(exc)}", file=sys.stderr)
    return names, inputs, len(paths) - len(names)


def cell(predictor, scores: np.ndarray, k: int) -> str:
    """A class with its score: 7 (99.1%) for a probability, 7 (9.31) for a decision score."""
    return f"{one_line(predictor.classes[k])} ({score_text(predictor.score_kind, scores[k])})"


def print_one(predictor, names, inputs, top: int) -> None:
    for path, scores in zip(names, predictor.predict(np.stack(inputs)), strict=True):
        print(f"{one_line(path)}: " + ", ".join(cell(predictor, scores, k) for k in ranked(scores, top)))


def print_table(predictors, names, inputs) -> None:
    """Rows = images, columns = models: each model's best class and its score."""
    batch = np.stack(inputs)
    columns = [[cell(p, s, int(ranked(s, 1)[0])) for s in p.predict(batch)] for p in predictors]
    print_rows(predictors, [[one_line(path), *(column[i] for column in columns)] for i, path in enumerate(names)])


def score_text(kind: str, score: float) -> str:
    return f"{100 * score:.1f}%" if kind == "probability" else f"{score:.2f}"


def number_cell(reading) -> str:
    """A number with each digit's score: 2026 (99.1% 97.0% 98.8% 99.5%), or 2026 (9.31 9.12 ...)."""
    return f"{reading.number} ({' '.join(score_text(reading.score_kind, d.score) for d in reading.digits)})"


def print_numbers(predictors, names, layouts, table: bool) -> list:
    """One line per image (one model), or rows = images and columns = models (--all); the first model's
    readings are returned (--save-inputs writes their digits)."""
    readings = [read_number(layout, predictors) for layout in layouts]
    if not table:
        for path, (reading,) in zip(names, readings, strict=True):
            digits = ", ".join(f"{d.label} ({score_text(reading.score_kind, d.score)})" for d in reading.digits)
            print(f"{one_line(path)}: {reading.number}  [{digits}]")
    else:
        rows = [[one_line(path), *(number_cell(r) for r in row)] for path, row in zip(names, readings, strict=True)]
        print_rows(predictors, rows)
    return [row[0] for row in readings]


def print_rows(predictors, rows: list[list[str]]) -> None:
    rows = [["image", *(p.name for p in predictors)], *rows]
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    for row in rows:
        print("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())


def input_names(paths: list[Path]) -> list[str]:
    """A distinct file name for each image's saved input: d_28x28.png; a/d.png and b/d.png, which share a name,
    as a_d_28x28.png and b_d_28x28.png; a counter (d-2_28x28.png) where even that collides. Compared without
    case, so that none overwrites another on a case-insensitive file system either."""
    shared = Counter(path.stem.lower() for path in paths)
    taken, names = set(), []
    for path in paths:
        base = path.stem if shared[path.stem.lower()] == 1 else "_".join(filter(None, [path.parent.name, path.stem]))
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.lower())
        names.append(f"{name}_28x28.png")
    return names


def save_input(img: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp, format="PNG")


def _main(argv=None) -> int:
    args = parse_args(argv)
    # first: a missing model is one line, before any image is read
    predictors = chosen_models(args, "predict.py")
    if args.number:
        return predict_numbers(args, predictors)
    names, inputs, failed = read_inputs(args.images)
    if inputs:
        if args.all:
            print_table(predictors, names, inputs)
        else:
            print_one(predictors[0], names, inputs, args.top)
    if args.save_inputs:
        for name, img in zip(input_names(names), inputs, strict=True):
            save_input(img, args.save_inputs / name)
    return 1 if failed else 0


def predict_numbers(args, predictors) -> int:
    """--number: each image's number, read by each model; --save-inputs: the first model's digits, one PNG each."""
    names, layouts, failed = read_inputs(args.images, read_image)
    readings = print_numbers(predictors, names, layouts, args.all) if layouts else []
    if args.save_inputs:
        for name, reading in zip(input_names(names), readings, strict=True):
            for k, digit in enumerate(reading.digits, 1):
                save_input(digit.x28, args.save_inputs / name.replace("_28x28.png", f"_digit{k}_28x28.png"))
    return 1 if failed else 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
