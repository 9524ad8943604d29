"""Numbers benchmark: whole numbers of 2 to 8 handwritten digits that no model has seen, read by every model.

    python -m benchmarks.whole_numbers                        # 1400 numbers, every trained model; docs/numbers.md
    python -m benchmarks.whole_numbers --count 140 --no-docs  # a quick look, nothing written into the docs
    python -m benchmarks.whole_numbers --split train          # numbers of training digits: for choosing settings

Each number is built from real handwriting (MNIST test digits, or 1 in 4 from the UCI digits handwriting.py uses),
separated or with touching pairs, saved as PNG or JPEG and read back as predict.py --number --all reads it (the
default network cuts; --own-cuts: each model cuts for itself); how they are built: docs/numbers.md. Reported per
model: digit, whole-number and digit-count accuracy, by number length and kind; and the page's time for 6 digits.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mnistlab.data import load_split
from mnistlab.datasets import INK_THRESHOLD
from mnistlab.errors import ProjectError, run_cli
from mnistlab.flags import DEVICES, in_range, path_type, seed_type
from mnistlab.images import to_mnist
from mnistlab.machine import cpu_model, usable_cores
from mnistlab.numbers import read_image, read_layout, read_number
from mnistlab.paths import BUNDLED, CHECKPOINTS, REPO
from mnistlab.saved_models import find_models
from mnistlab.tables import markdown_table, replace_section

LENGTHS = range(2, 9)
DOCS = REPO / "docs" / "numbers.md"
OVERLAP = 0.2  # touching digits' boxes overlap by at most this share of the narrower one: slightly, not interleaved
COLOURS = [(25, 45, 160), (160, 30, 30), (20, 110, 60), (60, 40, 110)]  # ballpoint blue, red, green, violet


# ---------------------------------------------------------------- building the numbers
def glyph_pools(split: str, data_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per source, (glyphs as float light-on-dark 28x28, labels): MNIST's ``split``, and the UCI digits."""
    x, y = load_split(split, data_dir=data_dir)
    pools = {"mnist": (x.astype(np.float32) / 255, y)}
    if split == "test":  # the UCI digits are a held-out set: never used for choosing
        from handwriting import uci_digits

        pools["uci"] = uci_digits("bilinear")
    return pools


def crop(glyph: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(glyph.max(axis=1) > 0.05), np.flatnonzero(glyph.max(axis=0) > 0.05)
    return glyph[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def scaled(glyph: np.ndarray, factor: float) -> np.ndarray:
    size = (max(2, round(glyph.shape[1] * factor)), max(2, round(glyph.shape[0] * factor)))
    img = Image.fromarray((np.clip(glyph, 0, 1) * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255


def touching_shift(a: np.ndarray, ax: int, ay: int, b: np.ndarray, by: int) -> int | None:
    """The leftmost x for ``b`` (top at ``by``) whose ink just touches ``a``'s (at ``ax``, ``ay``), or None when
    no row holds ink of both."""
    best = None
    for r in range(max(ay, by), min(ay + a.shape[0], by + b.shape[0])):
        ra, rb = np.flatnonzero(a[r - ay] > INK_THRESHOLD), np.flatnonzero(b[r - by] > INK_THRESHOLD)
        if len(ra) and len(rb):
            x = ax + ra[-1] - rb[0] + 1
            best = x if best is None else max(best, x)
    return best


def compose(glyphs: list[np.ndarray], touching: set[int], rng) -> tuple[np.ndarray, set[int], list]:
    """The digits' ink on a canvas (float, 0 paper, 1 ink), the pairs (i: digits i and i+1) that touch, and each
    digit's box (top, left, bottom, right)."""
    height = float(rng.uniform(30, 80))
    slope, parts, x = float(rng.uniform(-0.08, 0.08)), [], 0
    for i, glyph in enumerate(glyphs):
        g = scaled(glyph, height / 20 * float(rng.uniform(0.85, 1.15)))
        y = int(round(slope * x + rng.uniform(-0.06, 0.06) * height + (height - g.shape[0])))
        if parts and i - 1 in touching:
            prev, px, py = parts[-1]
            shift = touching_shift(prev, px, py, g, y)
            deepest = px + prev.shape[1] - int(OVERLAP * min(prev.shape[1], g.shape[1]))
            x = x if shift is None else max(shift - int(rng.integers(0, max(1, int(0.03 * height)) + 1)), deepest)
        elif parts:
            x = parts[-1][1] + parts[-1][0].shape[1] + max(3, int(rng.uniform(0.08, 0.6) * height))
        parts.append((g, x, y))
    left, top = min(p[1] for p in parts), min(p[2] for p in parts)
    margin = [int(rng.uniform(0.3, 1.0) * height) for _ in range(4)]
    width = max(p[1] + p[0].shape[1] for p in parts) - left + margin[0] + margin[1]
    tall = max(p[2] + p[0].shape[0] for p in parts) - top + margin[2] + margin[3]
    canvas, owner, boxes = np.zeros((tall, width), np.float32), np.full((tall, width), -1), []
    for i, (g, gx, gy) in enumerate(parts):
        oy, ox = gy - top + margin[2], gx - left + margin[0]
        boxes.append((oy, ox, oy + g.shape[0], ox + g.shape[1]))
        region = np.s_[oy : oy + g.shape[0], ox : ox + g.shape[1]]
        canvas[region] = np.maximum(canvas[region], g)
        owner[region][g > INK_THRESHOLD] = i
    return canvas, touched_pairs(canvas, owner, len(parts)), boxes


def touched_pairs(canvas: np.ndarray, owner: np.ndarray, n: int) -> set[int]:
    """Which neighbours share a connected mark of ink (to_mnist's threshold) on the final canvas."""
    labels, _ = ndimage.label(canvas > INK_THRESHOLD * canvas.max(), structure=np.ones((3, 3)))
    marks = [set(np.unique(labels[owner == i])) - {0} for i in range(n)]
    return {i for i in range(n - 1) if marks[i] & marks[i + 1]}


def paper(canvas: np.ndarray, rng, colour: bool) -> Image.Image:
    """Dark ink on light paper, grey or a coloured ink on cream, with a little sensor noise."""
    ink = canvas[..., None]
    if colour:
        sheet = np.array([245, 240, 222], np.float32) + rng.uniform(-10, 5)
        pen = np.array(COLOURS[int(rng.integers(len(COLOURS)))], np.float32)
    else:
        sheet = np.full(3, rng.uniform(200, 250), np.float32)
        pen = np.full(3, rng.uniform(0, 70), np.float32)
    rgb = sheet * (1 - ink) + pen * ink + rng.normal(0, 3, canvas.shape + (1,))
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    return img if colour else img.convert("L")


def make_numbers(count: int, split: str, data_dir: Path, seed: int = 0) -> list[dict]:
    """``count`` numbers: length, digits, source, separated or touching; with their images (see compose)."""
    rng = np.random.default_rng(seed)
    pools = glyph_pools(split, data_dir)
    by_label = {s: [np.flatnonzero(y == d) for d in range(10)] for s, (_, y) in pools.items()}
    numbers = []
    for i in range(count):
        length, touching = LENGTHS[i % len(LENGTHS)], (i // len(LENGTHS)) % 2 == 1
        source = "uci" if "uci" in pools and rng.random() < 0.25 else "mnist"
        digits = rng.integers(0, 10, length)
        pairs = set(rng.choice(length - 1, max(1, round(length / 5)), replace=False).tolist()) if touching else set()
        for _ in range(50):  # other writings of the same digits until the planned pairs do touch (slightly)
            glyphs = [crop(pools[source][0][rng.choice(by_label[source][d])]) for d in digits]
            canvas, touched, boxes = compose(glyphs, pairs, rng)
            if touched == pairs:
                break
        numbers.append(
            {
                "number": "".join(map(str, digits)),
                "source": source,
                "kind": "touching" if touched else "separated",
                "boxes": boxes,
                "glyphs": glyphs,
                "image": paper(canvas, rng, colour=rng.random() < 0.2),
            }
        )
    return numbers


def write_files(numbers: list[dict], folder: Path) -> list[Path]:
    """Each number as an ordinary image file: PNG, or JPEG (quality 85 to 95) for every other one."""
    paths = []
    for i, n in enumerate(numbers):
        path = folder / f"number{i:04d}.{'jpg' if i % 2 else 'png'}"
        n["image"].save(path, quality=85 + i % 11) if path.suffix == ".jpg" else n["image"].save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- reading them back
def read_all(paths: list[Path], predictors, own_cuts: bool = False) -> list[list[str]]:
    """Per model, the number it reads in each file (read as predict.py --number --all reads it: the default network
    cuts; with ``own_cuts`` each model cuts for itself; "" when refused)."""
    out = [[] for _ in predictors]
    for path in paths:
        try:
            layout = read_image(path)
        except ProjectError:
            readings = [None] * len(predictors)
        else:
            readings = [read_layout(layout, p) for p in predictors] if own_cuts else read_number(layout, predictors)
        for column, reading in zip(out, readings, strict=True):
            column.append(reading.number if reading else "")
    return out


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def scores(numbers: list[dict], read: list[str]) -> dict:
    """Digit accuracy (1 - edit distance / digits), whole-number and digit-count accuracy, and how many."""
    if not numbers:
        return {"digits": None, "whole": None, "count": None, "n": 0}
    pairs = list(zip(read, (n["number"] for n in numbers), strict=True))
    return {
        "digits": 1 - sum(edit_distance(r, t) for r, t in pairs) / sum(len(t) for _, t in pairs),
        "whole": float(np.mean([r == t for r, t in pairs])),
        "count": float(np.mean([len(r) == len(t) for r, t in pairs])),
        "n": len(numbers),
    }


def breakdown(numbers: list[dict], read: list[str]) -> dict:
    """scores() of every slice: all, per kind, per length and kind, per source."""

    def where(test):
        chosen = [i for i, n in enumerate(numbers) if test(n)]
        return scores([numbers[i] for i in chosen], [read[i] for i in chosen])

    out = {"all": where(lambda n: True)}
    for kind in ("separated", "touching"):
        out[kind] = where(lambda n, k=kind: n["kind"] == k)
        for length in LENGTHS:
            out[f"{length} {kind}"] = where(lambda n, k=kind, m=length: n["kind"] == k and len(n["number"]) == m)
    for source in ("mnist", "uci"):
        out[source] = where(lambda n, s=source: n["source"] == s)
        for kind in ("separated", "touching"):  # the goals' slices, per source: UCI's writers read worse alone
            out[f"4 {kind} {source}"] = where(
                lambda n, s=source, k=kind: n["source"] == s and n["kind"] == k and len(n["number"]) == 4
            )
    return out


def alone(numbers: list[dict], predictor) -> float:
    """The same digits read one by one (each glyph alone through to_mnist): what perfect cutting would reach."""
    x = np.stack([to_mnist(np.pad(g, 2)) for n in numbers for g in n["glyphs"]])
    truth = [d for n in numbers for d in n["number"]]
    labels = [predictor.classes[k] for k in predictor.predict(x).argmax(axis=1)]
    return float(np.mean([a == b for a, b in zip(labels, truth, strict=True)]))


# ---------------------------------------------------------------- the page's time
def page_drawing(rng, touching: bool, data_dir: Path) -> bytes:
    """A 6-digit number as the page's number mode sends it: white strokes on a black 840x280 canvas, as PNG."""
    x, y = load_split("train", data_dir=data_dir, size=600)  # any handwriting: only the time is measured
    glyphs = [crop(x[rng.choice(np.flatnonzero(y == d))].astype(np.float32) / 255) for d in rng.integers(0, 10, 6)]
    canvas, _, _ = compose(glyphs, {2} if touching else set(), rng)
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8)).convert("L")
    img.thumbnail((840, 280))
    page = Image.new("L", (840, 280), 0)
    page.paste(img, ((840 - img.width) // 2, (280 - img.height) // 2))
    buf = io.BytesIO()
    page.save(buf, format="PNG")
    return buf.getvalue()


def page_times(checkpoint_dir: Path, data_dir: Path, repeats: int = 7) -> dict:
    """Median milliseconds for POST /api/number of a 6-digit drawing (separated, and with one touching pair)
    through demo.py's own server on this machine, every model answering; and each model's share."""
    import demo

    args = demo.parse_args(["--port", "0", "--device", "cpu", "--checkpoint-dir", str(checkpoint_dir)])
    server = demo.make_server(args)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rng, out = np.random.default_rng(7), {}
    try:
        for kind in ("separated", "touching"):
            body, times, reply = page_drawing(rng, kind == "touching", data_dir), [], None
            for _ in range(repeats + 1):  # the first warms the caches up; the server's request log is dropped
                conn = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
                start = time.perf_counter()
                with contextlib.redirect_stderr(io.StringIO()):
                    conn.request("POST", "/api/number", body=body, headers={"Content-Type": "image/png"})
                    reply = json.loads(conn.getresponse().read())
                times.append(1000 * (time.perf_counter() - start))
                conn.close()
            models = {r["name"]: r["ms"] for r in reply.get("results", [])}
            out[kind] = {"ms": float(np.median(times[1:])), "layout_ms": reply.get("layout_ms"), "models": models}
    finally:
        server.shutdown()
        server.server_close()
    return out


# ---------------------------------------------------------------- the tables
GOALS = [  # (slice, metric, floor, what): the goals for the default network
    ("4 separated", "whole", 0.97, "whole 4-digit numbers, separated digits"),
    ("4 touching", "whole", 0.90, "whole 4-digit numbers with one touching pair"),
    ("separated", "count", 0.99, "digit count, separated digits"),
]
# The same slices of the numbers built from MNIST digits alone, shown beside the goals (not judged).
BY_SOURCE = {"4 separated": "4 separated mnist", "4 touching": "4 touching mnist"}


def pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


SUMMARY = [  # (column, slice, metric)
    ("digits", "all", "digits"),
    ("whole numbers", "all", "whole"),
    ("digit count", "all", "count"),
    ("separated: whole", "separated", "whole"),
    ("touching: whole", "touching", "whole"),
    ("4 separated: whole", "4 separated", "whole"),
    ("4 touching: whole", "4 touching", "whole"),
    ("separated: count", "separated", "count"),
    ("MNIST: whole", "mnist", "whole"),
    ("UCI: whole", "uci", "whole"),
]


def summary_table(results: dict) -> str:
    """One row per model: the headline figures, and its accuracy on the same digits read one by one."""
    header = ["model", *(title for title, _, _ in SUMMARY), "digits read alone"]
    rows = [
        [name, *(pct(r["breakdown"][part][metric]) for _, part, metric in SUMMARY), pct(r["alone"])]
        for name, r in results.items()
    ]
    return markdown_table(header, rows)


def model_table(breakdown: dict) -> str:
    """One model by number length: digits / whole / count, for separated and for touching numbers."""
    header = ["digits in the number"]
    header += [f"{kind}: {what}" for kind in ("separated", "touching") for what in ("digits", "whole", "count", "n")]
    rows = []
    for length in [*LENGTHS, "all"]:
        row = [str(length)]
        for kind in ("separated", "touching"):
            part = breakdown[kind if length == "all" else f"{length} {kind}"]
            row += [pct(part["digits"]), pct(part["whole"]), pct(part["count"]), str(part["n"])]
        rows.append(row)
    return markdown_table(header, rows)


def goal_lines(results: dict) -> list[str]:
    """The goals, judged on the default network (the first network: predict.py's preferred cnn)."""
    networks = [name for name, r in results.items() if r["family"] == "network"]
    if not networks:
        return ["No network is trained: the goals (for the default network) are not judged."]
    r, lines = results[networks[0]], [f"Goals, for the default network {networks[0]}:"]
    for part, metric, floor, what in GOALS:
        value = r["breakdown"][part][metric]
        verdict = "met" if value is not None and value >= floor else "MISSED"
        mnist = r["breakdown"].get(BY_SOURCE.get(part, ""))
        alone = f"; MNIST-built numbers only: {pct(mnist[metric])} of {mnist['n']}" if mnist else ""
        lines.append(f"- {what}: {pct(value)} (goal >= {pct(floor)}): {verdict}{alone}")
    return lines


def timing_lines(times: dict) -> list[str]:
    cpu = f"{cpu_model()} ({usable_cores()} cores)"
    lines = [f"The page (POST /api/number through demo.py's server, every model answering), median on {cpu}:"]
    for kind, t in times.items():
        slowest = ", ".join(f"{name} {ms:.0f} ms" for name, ms in sorted(t["models"].items(), key=lambda kv: -kv[1]))
        lines.append(
            f"- 6 digits, {kind}: {t['ms']:.0f} ms in all (finding the digits {t['layout_ms']:.0f} ms; {slowest})"
        )
    return lines


def report(results: dict, times: dict, config: dict) -> str:
    parts = [
        f"{config['count']} numbers ({config['split']} digits, seed {config['seed']}), "
        f"`python -m benchmarks.whole_numbers` on {cpu_model()}. Digits: 1 - edit distance / digits; whole: the number "
        "read exactly; count: as many digits as written. Digits read alone: the same digits, one image each.",
        summary_table(results),
        "\n".join(goal_lines(results)),
        "\n".join(timing_lines(times)) if times else "The page's time was not measured (--no-timing).",
    ]
    for name, r in results.items():
        parts += [f"**{name}** by number length:", model_table(r["breakdown"])]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- the command
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=in_range(int, 14, 20000), default=1400, help="numbers to build (default: 1400)")
    p.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="whose digits: MNIST test (and UCI) digits, or training digits for choosing settings",
    )
    p.add_argument("--seed", type=seed_type, default=0, help="which numbers (default: 0)")
    p.add_argument(
        "--checkpoint-dir", type=path_type, default=CHECKPOINTS, help="the trained models (default: checkpoints/)"
    )
    p.add_argument("--data-dir", type=path_type, default=BUNDLED, help="data folder (default: the repo's data/)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="for the networks (default: cpu)")
    p.add_argument(
        "--docs", type=path_type, default=DOCS, help=f"where the tables go (default: {DOCS.relative_to(REPO)})"
    )
    p.add_argument("--no-docs", action="store_true", help="print the tables only")
    p.add_argument("--no-timing", action="store_true", help="skip the page's timing")
    p.add_argument(
        "--own-cuts",
        action="store_true",
        help="each model chooses its own cuts (slow for the SVMs: they score every candidate piece)",
    )
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    predictors, missing = find_models(args.checkpoint_dir, device=args.device)
    if not predictors:
        raise ProjectError(f"no trained models in {args.checkpoint_dir / 'mnist'}; train one with {missing[0][1]}")
    numbers = make_numbers(args.count, args.split, args.data_dir, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        read = read_all(write_files(numbers, Path(tmp)), predictors, args.own_cuts)
        print(f"read {len(numbers)} numbers with {len(predictors)} models in {time.perf_counter() - start:.0f} s")
    results = {
        p.name: {"family": p.family, "breakdown": breakdown(numbers, column), "alone": alone(numbers, p)}
        for p, column in zip(predictors, read, strict=True)
    }
    times = {} if args.no_timing else page_times(args.checkpoint_dir, args.data_dir)
    text = report(results, times, vars(args))
    print(text)
    if not args.no_docs:
        replace_section(args.docs, "numbers", text)
        print(f"{args.docs}: tables updated")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
