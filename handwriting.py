"""Measure a trained network on digits that are not MNIST, through the preprocessing users' own images get.

    python handwriting.py                                  # the preferred CNN (best, gpu, fast, paper)
    python handwriting.py --all                            # every trained model, side by side
    python handwriting.py --all --update-docs              # and the table into docs/handwriting.md
    python handwriting.py --model mlp --recipe best --sets drawn-val   # validation only, for tuning
    python handwriting.py --checkpoint some/where/cnn-best.pt

Every image below is rendered as a grey picture of dark ink on light paper, 128x128 or so, and then goes
through to_mnist, exactly as a user's PNG does (crop to the ink, fit 20x20, centre of mass):

- ``uci-nearest``, ``uci-bilinear``: real handwriting by other writers, scikit-learn's bundled copy of the UCI
  optical digits (1797 digits of 8x8 pixels, 17 grey levels, by 43 writers; not MNIST), upscaled to 128x128
  with nearest or bilinear interpolation like ordinary upscaled scans. A held-out TEST set: report it, never
  choose anything on it.
- ``drawn-val``, ``drawn-test``: digits drawn by program, with the fonts matplotlib ships (DejaVu, STIX,
  Computer Modern; bold, oblique) and as strokes along hand-designed digit skeletons (random width, slant,
  aspect, jitter, position, blur), a third of them turned into upscaled low-resolution scans; 1630 digits
  each. Same generator, different seeds: drawn-val is for choosing a recipe, drawn-test stays held out.

Writes <results-dir>/<dataset>/handwriting/<model name>.json per model (accuracy per set and per class) and,
with --all, table.md beside them.
"""

from __future__ import annotations

import mnistlab.errors  # noqa: F401 (first: its hook makes a Ctrl-C during the slow imports below one line)

# isort: split
import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnistlab.errors import ProjectError, one_line, run_cli
from mnistlab.files import atomic_path, check_output_dirs, write_json
from mnistlab.flags import add_model_flags, check_model_flags, path_type
from mnistlab.images import to_mnist
from mnistlab.machine import cpu_model, versions
from mnistlab.paths import REPO, RESULTS
from mnistlab.saved_models import chosen_models
from mnistlab.tables import markdown_table, replace_section

CANVAS = 128
SEEDS = {"drawn-val": 1, "drawn-test": 2}
DIGIT_CLASSES = [str(d) for d in range(10)]
SETS = ("uci-nearest", "uci-bilinear", "drawn-val", "drawn-test")
DOCS = REPO / "docs" / "handwriting.md"  # --update-docs: the page whose table this writes
# matplotlib's own TrueType fonts with the usual digit shapes (cmmi10 has old-style figures, so it is left out).
FONTS = """DejaVuSans DejaVuSans-Bold DejaVuSans-Oblique DejaVuSans-BoldOblique DejaVuSerif DejaVuSerif-Bold
           DejaVuSerif-Italic DejaVuSerif-BoldItalic DejaVuSansMono DejaVuSansMono-Bold DejaVuSansMono-Oblique
           DejaVuSansMono-BoldOblique STIXGeneral STIXGeneralBol STIXGeneralItalic STIXGeneralBolIta
           cmr10 cmb10 cmss10 cmtt10 cmti10""".split()
FONT_VARIANTS, STROKE_VARIANTS = 3, 100  # per font and digit; per digit


# ---------------------------------------------------------------- real handwriting: UCI digits
@functools.cache  # built once per process; returned read-only, so the cache stays intact
def uci_digits(mode: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 UCI digits, each 8x8 image upscaled to CANVAS x CANVAS (``mode``: "nearest" or
    "bilinear") as dark ink on white paper, then through to_mnist: (N, 28, 28) floats in [0, 1], (N,) labels."""
    from sklearn.datasets import load_digits  # here: scikit-learn and matplotlib are slow to import

    digits = load_digits()
    resample = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}[mode]
    out = []
    for img in digits.images:  # (8, 8) in 0..16
        paper = Image.fromarray((1.0 - img / 16.0).astype(np.float32), mode="F")
        out.append(to_mnist(np.asarray(paper.resize((CANVAS, CANVAS), resample), dtype=np.float32)))
    images, labels = np.stack(out), digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


# ---------------------------------------------------------------- digits drawn by program
def _arc(cx, cy, rx, ry, start, stop, n=24):
    """Points of an elliptic arc in the unit box (y down): angle 0 is right, 90 is down, 270 is up."""
    a = np.radians(np.linspace(start, stop, n))
    return list(zip(cx + rx * np.cos(a), cy + ry * np.sin(a), strict=True))


@functools.cache
def skeletons() -> dict[int, list[list[list[tuple[float, float]]]]]:
    """Hand-designed digit skeletons: for each digit a few variants, each a list of strokes (polylines) in
    the unit box, x right and y down, roughly as people write them."""
    top2 = _arc(0.5, 0.3, 0.34, 0.3, 195, 385)  # the hook of a 2
    loop9 = _arc(0.5, 0.3, 0.33, 0.3, 0, 360)  # the head of a 9
    return {
        0: [[_arc(0.5, 0.5, 0.36, 0.5, -90, 275)], [_arc(0.5, 0.5, 0.4, 0.5, -60, 300)]],
        1: [
            [[(0.5, 0.0), (0.5, 1.0)]],
            [[(0.25, 0.22), (0.55, 0.0), (0.55, 1.0)]],
            [[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)], [(0.3, 1.0), (0.8, 1.0)]],
        ],
        2: [[top2 + [(0.1, 1.0), (0.9, 1.0)]], [top2 + [(0.5, 0.68), (0.25, 0.88), (0.1, 1.0), (0.9, 0.97)]]],
        3: [
            [_arc(0.48, 0.25, 0.32, 0.25, 200, 450) + _arc(0.48, 0.74, 0.38, 0.26, 270, 520)],
            [[(0.12, 0.0), (0.85, 0.0), (0.45, 0.42)] + _arc(0.48, 0.7, 0.38, 0.3, 260, 510)],
        ],
        4: [
            [[(0.62, 0.0), (0.08, 0.68), (0.92, 0.68)], [(0.62, 0.0), (0.62, 1.0)]],
            [[(0.2, 0.0), (0.12, 0.6), (0.88, 0.6)], [(0.7, 0.1), (0.7, 1.0)]],
        ],
        5: [
            [[(0.82, 0.0), (0.25, 0.0), (0.2, 0.45)] + _arc(0.48, 0.7, 0.36, 0.3, 215, 515)],
            [[(0.25, 0.0), (0.2, 0.45)] + _arc(0.48, 0.7, 0.36, 0.3, 215, 515), [(0.25, 0.0), (0.85, 0.0)]],
        ],
        6: [[[(0.78, 0.0), (0.45, 0.15), (0.24, 0.42), (0.14, 0.72)] + _arc(0.48, 0.73, 0.34, 0.27, 180, 540)]],
        7: [
            [[(0.08, 0.0), (0.92, 0.0), (0.4, 1.0)]],
            [[(0.08, 0.0), (0.92, 0.0), (0.4, 1.0)], [(0.35, 0.5), (0.82, 0.5)]],
        ],
        8: [
            [_arc(0.5, 0.25, 0.28, 0.25, 90, 450), _arc(0.5, 0.74, 0.34, 0.26, 270, 630)],
            [_arc(0.5, 0.27, 0.24, 0.27, 90, 450), _arc(0.5, 0.76, 0.38, 0.24, 270, 630)],
        ],
        9: [[loop9, [(0.83, 0.3), (0.78, 1.0)]], [loop9 + [(0.83, 0.3), (0.8, 0.7), (0.6, 1.0), (0.3, 0.95)]]],
    }


def random_pose(rng) -> dict:
    """One digit's random shape and place: aspect, slant, rotation, size (of CANVAS) and offset."""
    return {
        "aspect": rng.uniform(0.45, 1.05),  # width relative to height
        "slant": rng.uniform(-0.35, 0.35),  # > 0 leans right
        "angle": np.radians(rng.uniform(-10, 10)),
        "height": CANVAS * rng.uniform(0.35, 0.75),
        "offset": CANVAS / 2 + rng.uniform(-0.1, 0.1, 2) * CANVAS,
    }


def place(points: np.ndarray, pose: dict, rng) -> list[tuple[float, float]]:
    """Unit-box points (K, 2) -> canvas pixels: jittered, then the pose's aspect, slant, rotation, size, place."""
    noise = rng.normal(0, 0.045, (len(points) + 4, 2))
    p = points + (noise[:-4] + noise[1:-3] + noise[2:-2] + noise[3:-1] + noise[4:]) / 5  # smooth wobble, std 0.02
    p[:, 0] = 0.5 + (p[:, 0] - 0.5) * pose["aspect"]
    p[:, 0] += pose["slant"] * (0.5 - p[:, 1])
    a = pose["angle"]
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    p = ((p - 0.5) @ rot.T) * pose["height"] + pose["offset"]  # (K, 2) pixels
    return [tuple(q) for q in p]


def stroke_digit(digit: int, rng) -> np.ndarray:
    """One digit drawn along a random variant of its skeleton: (CANVAS, CANVAS) grey, dark ink on light paper."""
    variants = skeletons()[digit]
    strokes, pose = variants[rng.integers(len(variants))], random_pose(rng)
    paper, ink, width = int(255 * rng.uniform(0.75, 1.0)), int(255 * rng.uniform(0.0, 0.3)), int(rng.integers(2, 15))
    img = Image.new("L", (CANVAS, CANVAS), paper)
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        pts = place(np.asarray(stroke, dtype=float), pose, rng)
        draw.line(pts, fill=ink, width=width, joint="curve")
        for x, y in (pts[0], pts[-1]):  # round caps
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=ink)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 2.0)))
    return np.asarray(img, dtype=np.float32) / 255.0


def font_digit(digit: int, font_path: Path, rng) -> np.ndarray:
    """One digit typeset in a font at a random size, slant, rotation and place: (CANVAS, CANVAS) grey."""
    font = ImageFont.truetype(str(font_path), size=int(rng.integers(40, 90)))
    img = Image.new("L", (CANVAS, CANVAS), 0)  # ink as white on black while transforming, so borders stay paper
    offset = CANVAS / 2 + rng.uniform(-0.12, 0.12, 2) * CANVAS
    ImageDraw.Draw(img).text(tuple(offset), str(digit), fill=255, font=font, anchor="mm")
    a, slant = np.radians(rng.uniform(-8, 8)), rng.uniform(-0.3, 0.3)  # slant < 0 leans right
    # Output pixel -> input pixel about the centre: shear [[1, slant], [0, 1]] after rotation by a.
    m = np.array([[1, slant], [0, 1]]) @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = CANVAS / 2 - m @ np.full(2, CANVAS / 2)
    coeffs = (m[0, 0], m[0, 1], c[0], m[1, 0], m[1, 1], c[1])
    img = img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    return 1.0 - np.asarray(img, dtype=np.float32) / 255.0


def font_paths() -> list[Path]:
    """The FONTS that matplotlib ships here (found through its data path)."""
    import matplotlib  # here: see uci_digits

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / f"{name}.ttf" for name in FONTS if (folder / f"{name}.ttf").is_file()]


def low_res_scan(grey: np.ndarray, rng) -> np.ndarray:
    """The same picture as a low-resolution scan upscaled again: box-averaged until the digit is 7-14 px tall
    (or wide), then back to full size by nearest (blocky) or bilinear interpolation. (H, W) -> (H, W)."""
    rows, cols = np.nonzero(grey < (grey.max() + grey.min()) / 2)  # the ink's box (dark ink)
    extent = max(np.ptp(rows), np.ptp(cols)) + 1 if len(rows) else grey.shape[0]
    small = max(4, round(grey.shape[0] * rng.uniform(7, 14) / extent))
    resample = Image.Resampling.NEAREST if rng.random() < 0.5 else Image.Resampling.BILINEAR
    img = Image.fromarray(grey, mode="F").resize((small, small), Image.Resampling.BOX)
    return np.asarray(img.resize(grey.shape[::-1], resample), dtype=np.float32)


def drawn_digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FONT_VARIANTS per font and digit and STROKE_VARIANTS per digit, each through to_mnist: (N, 28, 28) inputs
    in [0, 1], (N,) labels, (N,) kinds ("font" or "stroke", "+scan" for the third made low-resolution scans)."""
    rng = np.random.default_rng(seed)
    images, labels, kinds = [], [], []

    def add(grey: np.ndarray, digit: int, kind: str) -> None:
        if rng.random() < 1 / 3:
            grey, kind = low_res_scan(grey, rng), kind + "+scan"
        images.append(to_mnist(grey))
        labels.append(digit)
        kinds.append(kind)

    for digit in range(10):
        for path in font_paths():
            for _ in range(FONT_VARIANTS):
                add(font_digit(digit, path, rng), digit, "font")
        for _ in range(STROKE_VARIANTS):
            add(stroke_digit(digit, rng), digit, "stroke")
    return np.stack(images), np.asarray(labels, dtype=np.int64), np.asarray(kinds)


# ---------------------------------------------------------------- the sets and the measurement
def build_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One named set: (N, 28, 28) float32 inputs in [0, 1] and (N,) int64 labels; deterministic."""
    if name.startswith("uci-"):
        return uci_digits(name.removeprefix("uci-"))
    if name in SEEDS:
        return drawn_digits(SEEDS[name])[:2]
    raise ValueError(f"unknown set {name!r}; choose from {', '.join(SETS)}")


def measure(predictor, images: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy (overall and per class) of a saved model on one set, as predict.py scores it."""
    pred = np.concatenate([predictor.predict(images[i : i + 1000]).argmax(1) for i in range(0, len(labels), 1000)])
    pred = np.asarray(predictor.classes)[pred].astype(int)  # column -> class label (a model may lack a class)
    per_class = {str(c): float(np.mean(pred[labels == c] == c)) for c in np.unique(labels)}
    return {"n": len(labels), "accuracy": float(np.mean(pred == labels)), "per_class_accuracy": per_class}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(p)
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)} (default: all)")
    p.add_argument("--results-dir", type=path_type, default=RESULTS, help="(default: the repo's results/)")
    p.add_argument(
        "--update-docs",
        nargs="?",
        const=DOCS,
        type=path_type,
        metavar="PAGE",
        help=f"with --all: write the table into PAGE, between its handwriting markers (default: docs/{DOCS.name})",
    )
    args = p.parse_args(argv)
    check_model_flags(p, args)
    if args.update_docs and not args.all:
        p.error("--update-docs writes the table of every model: add --all")
    args.sets = list(dict.fromkeys(s.strip() for s in args.sets.split(",") if s.strip()))  # each set once
    unknown = sorted(set(args.sets) - set(SETS))
    if unknown or not args.sets:
        p.error(f"--sets: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(SETS)}")
    return args


def measure_all(predictors, sets) -> dict:
    """{model name: record}: every model on every set; each set is built once."""
    records = {p.name: {"name": p.name, "path": str(p.path), "family": p.family, "sets": {}} for p in predictors}
    for p in predictors:  # what each model was trained with (a network) or sees (a classical model), for the record
        trained = ("model", "recipe", "epochs", "augment", "distort", "features", "deskew")
        records[p.name].update({k: p.meta.get(k) for k in trained})
    for name in sets:
        start = time.perf_counter()
        images, labels = build_set(name)
        built = time.perf_counter() - start
        for p in predictors:
            start = time.perf_counter()
            result = measure(p, images, labels)
            seconds = {"seconds_build": built, "seconds_eval": time.perf_counter() - start}
            records[p.name]["sets"][name] = {**result, **seconds}
            print(f"{p.name:>16} {name:>13}: {100 * result['accuracy']:6.2f}% of {result['n']}")
    return records


def _main(argv=None) -> int:
    args = parse_args(argv)
    out = args.results_dir / args.dataset / "handwriting"
    check_output_dirs({"--results-dir": out})
    predictors = chosen_models(args, "handwriting.py")
    for p in predictors:  # the sets are handwritten digits: a model of other classes (clothes) cannot be scored
        if not all(c in DIGIT_CLASSES for c in p.classes):
            raise ProjectError(f"{p.path}: its classes are {', '.join(p.classes[:3])}, ... not digits; handwriting.py "
                               "measures digit models (MNIST's)")  # fmt: skip
    records = measure_all(predictors, args.sets)
    env = versions("torch", "numpy", "scikit-learn", "Pillow", "matplotlib", "skops")
    for name, record in records.items():
        write_json(out / f"{name}.json", {**record, "versions": env})
    if args.all:
        rows = [[name, *(f"{100 * r['sets'][s]['accuracy']:.2f}%" for s in args.sets)] for name, r in records.items()]
        text = markdown_table(["model", *args.sets], rows) + "\n"
        print("\n" + text, end="")
        with atomic_path(out / "table.md") as tmp:
            tmp.write_text(text)
    if args.update_docs:
        note = f"`python handwriting.py --all --update-docs` on {cpu_model()}, {len(records)} models:"
        replace_section(args.update_docs, "handwriting", f"{note}\n\n{text}")
        print(f"{one_line(args.update_docs)}: handwriting table updated")
    print(f"wrote {one_line(out)}/")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
