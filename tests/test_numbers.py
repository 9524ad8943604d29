"""Reading whole numbers (mnistlab.numbers, predict.py --number, benchmarks/whole_numbers.py) on constructed images.

The images are built from real MNIST test digits (benchmarks.whole_numbers.compose: the benchmark's own renderer) or
drawn as strokes; the model is the published SVM (SVC defaults) fitted on 3000 training images in a second or two.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import predict
from benchmarks import whole_numbers as bench
from conftest import copy_svm_paper
from mnistlab.data import load_split
from mnistlab.errors import ProjectError
from mnistlab.images import read_digit, read_grey, write_as_photo
from mnistlab.numbers import find_digits, find_layout, read_image, read_layout
from mnistlab.saved_models import load_predictor
from model_files import write_network


@pytest.fixture(scope="module")
def mnist_dir(full_mnist):
    return full_mnist[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory, svm_paper_file):
    """A checkpoint folder with a fitted SVM (svm-paper, on 3000 real digits) and an untrained, seeded CNN (for
    --all's columns)."""
    root = tmp_path_factory.mktemp("number-models")
    copy_svm_paper(svm_paper_file, root)
    write_network(root / "mnist" / "cnn-fast.pt")
    return root


@pytest.fixture(scope="module")
def svm(models):
    return load_predictor(models / "mnist" / "svm-paper.skops")


@pytest.fixture(scope="module")
def glyphs(mnist_dir):
    """Per digit, test glyphs (cropped, float light on dark) in their test-set order."""
    x, y = load_split("test", data_dir=mnist_dir, size=2000)
    return {d: [bench.crop(x[i].astype(np.float32) / 255) for i in np.flatnonzero(y == d)] for d in range(10)}


def number_image(glyphs, number: str, touching=(), seed=0, pick=0) -> tuple[np.ndarray, set, list]:
    """Grey levels (dark ink on light paper) of ``number`` written with test glyphs; the pairs that touch and
    each digit's box."""
    canvas, touched, boxes = bench.compose(
        [glyphs[int(d)][pick + i] for i, d in enumerate(number)], set(touching), np.random.default_rng(seed)
    )
    return 1.0 - 0.85 * canvas, touched, boxes


def centres_inside(found, truth) -> bool:
    """Every true digit's centre lies in exactly one found box, in order."""
    owners = []
    for top, left, bottom, right in truth:
        cy, cx = (top + bottom) / 2, (left + right) / 2
        hits = [k for k, (t, lf, b, r) in enumerate(found) if t <= cy <= b and lf <= cx <= r]
        owners.append(hits)
    return all(len(h) == 1 for h in owners) and [h[0] for h in owners] == list(range(len(found)))


# ---------------------------------------------------------------- finding the digits
def test_a_lone_digit_reads_exactly_as_a_single_digit(tmp_path, glyphs, mnist_dir, svm):
    x, _ = load_split("test", data_dir=mnist_dir, size=12)
    rng = np.random.default_rng(0)
    for i, digit in enumerate(x):
        path = tmp_path / f"d{i}.{'jpg' if i % 2 else 'png'}"
        write_as_photo(digit, path, rng, colour=i % 3 == 0)
        (found,) = find_digits(read_grey(path), svm)
        single = read_digit(path)
        assert np.array_equal(found.x28, single), path
        assert found.label == svm.classes[int(svm.predict(single)[0].argmax())]


def test_a_digit_in_several_strokes_is_one_digit():
    img = Image.new("L", (420, 200), 255)
    pen = ImageDraw.Draw(img)
    pen.line([(60, 40), (50, 120), (140, 120)], width=10)  # a 4: the L stroke ...
    pen.line([(120, 30), (118, 170)], width=10)  # ... and its upright, drawn apart
    pen.line([(250, 40), (250, 100)], width=10)  # a 5: its body ...
    pen.arc([(235, 90), (320, 170)], 200, 140, width=10)
    pen.line([(262, 36), (330, 36)], width=10)  # ... and its bar, lifted off
    pen.ellipse([(170, 150), (178, 158)], fill=0)  # a decimal point between them
    digits = find_digits(np.asarray(img, np.float32) / 255)
    assert len(digits) == 2
    (t4, l4, b4, r4), (t5, l5, b5, r5) = (d.box for d in digits)
    assert l4 <= 50 and r4 >= 140 and t4 <= 32 and b4 >= 168  # both strokes of the 4
    assert l5 <= 245 and r5 >= 330 and t5 <= 33  # the 5 with its bar


def test_a_touching_pair_is_cut_where_the_model_reads_it_best(glyphs, svm):
    grey, touched, boxes = number_image(glyphs, "304", touching=[0], seed=3)
    assert touched == {0}  # the 3 and the 0 are one connected mark
    layout = find_layout(grey)
    assert len(layout.groups) == 2
    reading = read_layout(layout, svm)
    assert reading.number == "304"
    assert centres_inside([d.box for d in reading.digits], boxes)


def test_specks_and_dots_are_ignored(glyphs, svm):
    grey, _, boxes = number_image(glyphs, "52817", seed=5)
    clean = read_layout(find_layout(grey), svm)
    rng = np.random.default_rng(1)
    specked = grey.copy()
    height = boxes[0][2] - boxes[0][0]
    for _ in range(25):  # dust: one to four pixels across, anywhere
        y, x = rng.integers(0, grey.shape[0] - 4), rng.integers(0, grey.shape[1] - 4)
        specked[y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = 0.1
    bottom, gap = boxes[2][2], (boxes[2][3] + boxes[3][1]) // 2  # a decimal point between the 8 and the 1
    dot = max(2, height // 10)
    specked[bottom - dot : bottom, gap - dot // 2 : gap + dot // 2 + 1] = 0.1
    reading = read_layout(find_layout(specked), svm)
    assert reading.number == clean.number and len(reading.digits) == 5
    assert [d.box for d in reading.digits] == [d.box for d in clean.digits]


def test_uneven_spacing_a_sloping_baseline_and_varying_sizes(glyphs):
    for seed in range(4):
        grey, _, boxes = number_image(glyphs, "7391562", seed=seed, pick=seed)
        digits = find_digits(grey)
        assert len(digits) == 7 and centres_inside([d.box for d in digits], boxes), seed


@pytest.mark.parametrize(
    "kind, words",
    [
        ("white", "no ink found"),
        ("black", "no ink found"),
        ("all-ink", "of the image is ink"),
        ("specks", "nothing digit-like"),
        ("text", "a page of text"),
        ("lines", "2 lines of writing"),
        ("dash", "nothing digit-like"),
    ],
)
def test_nothing_digit_like_is_one_line_never_a_guess(kind, words):
    img = Image.new("L", (600, 400), 255)
    pen = ImageDraw.Draw(img)
    if kind == "black":
        img = Image.new("L", (600, 400), 0)
    elif kind == "all-ink":
        pen.rectangle([(4, 4), (595, 395)], fill=20)
    elif kind == "specks":
        for x in range(20, 580, 40):
            pen.point([(x, 200), (x + 1, 200)], fill=0)
    elif kind == "text":
        font = ImageFont.load_default(size=18)
        for row in range(12):
            pen.text((20, 20 + 30 * row), "The quick brown fox jumps over the lazy dog", fill=0, font=font)
    elif kind == "lines":
        font = ImageFont.load_default(size=120)
        pen.text((40, 10), "12", fill=0, font=font)
        pen.text((300, 210), "34", fill=0, font=font)
    elif kind == "dash":
        pen.line([(200, 200), (400, 200)], width=8)
    with pytest.raises(ProjectError) as caught:
        find_digits(np.asarray(img, np.float32) / 255)
    message = str(caught.value)
    assert words in message and "\n" not in message, message


def test_a_huge_image_is_refused_before_decoding(tmp_path):
    from model_files import png_header

    path = tmp_path / "huge.png"
    path.write_bytes(png_header(7000, 7000))
    with pytest.raises(ProjectError, match="huge.png: image is 7000x7000 pixels .* over the 40 million-pixel limit"):
        read_image(path)


# ---------------------------------------------------------------- predict.py --number
def write_number(glyphs, path, number: str, seed: int = 0) -> None:
    grey, _, _ = number_image(glyphs, number, seed=seed)
    Image.fromarray((grey * 255).astype(np.uint8)).save(path)


def test_predict_number_prints_each_models_number(tmp_path, glyphs, models, svm, capsys):
    write_number(glyphs, tmp_path / "a.png", "2026", seed=1)
    write_number(glyphs, tmp_path / "b.jpg", "381", seed=2)
    Image.new("L", (80, 60), 255).save(tmp_path / "blank.png")
    files = [str(tmp_path / n) for n in ("a.png", "blank.png", "b.jpg")]
    flags = ["--checkpoint-dir", str(models), "--device", "cpu", "--number"]
    assert predict.main([*files, "--model", "svm", *flags, "--save-inputs", str(tmp_path / "seen")]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [files[0], files[2]]
    assert lines[0].split()[1] == "2026" and lines[1].split()[1] == "381", out
    score = r"\(-?\d+\.\d\d\)"  # each digit with its decision score
    assert re.fullmatch(rf".*: 2026  \[2 {score}, 0 {score}, 2 {score}, 6 {score}\]", lines[0]), lines[0]
    assert err.strip() == f"predict.py: error: {files[1]}: no ink found: the image is blank or has no contrast"
    saved = sorted(p.name for p in (tmp_path / "seen").iterdir())
    assert saved == [f"a_digit{k}_28x28.png" for k in range(1, 5)] + [f"b_digit{k}_28x28.png" for k in range(1, 4)]

    assert predict.main([files[0], "--all", *flags]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["image", "cnn-fast", "svm-paper"]
    assert row.split()[0] == files[0] and "2026 (" in row


def test_predict_number_flags(tmp_path, models, capsys):
    with pytest.raises(SystemExit) as exit_:
        predict.main(["x.png", "--number", "--top", "3", "--checkpoint-dir", str(models)])
    assert exit_.value.code == 2 and "--top is for single digits" in capsys.readouterr().err


# ---------------------------------------------------------------- the benchmark itself
@pytest.mark.slow
def test_the_benchmark_writes_its_tables(tmp_path, models, mnist_dir, capsys):
    docs = tmp_path / "numbers.md"
    docs.write_text("before\n<!-- numbers:start -->\nold\n<!-- numbers:end -->\nafter\n")
    argv = ["--count", "14", "--checkpoint-dir", str(models), "--data-dir", str(mnist_dir), "--docs", str(docs)]
    assert bench.main(argv) == 0
    text = docs.read_text()
    assert text.startswith("before\n<!-- numbers:start -->\n14 numbers") and text.endswith(
        "<!-- numbers:end -->\nafter\n"
    )
    assert "| svm-paper |" in text and "**cnn-fast** by number length:" in text and "6 digits, touching" in text
    assert "Goals, for the default network cnn-fast:" in text
