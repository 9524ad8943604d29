"""Own-image prediction: MNIST-style preprocessing of ordinary image files, and the predict.py CLI."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier

import predict
from conftest import copy_svm_paper
from mnistlab.data import load_split
from mnistlab.images import read_digit, to_mnist, write_photos
from mnistlab.paths import REPO
from model_files import DIGITS, fit_pipeline, png_header, write_network


@pytest.fixture(scope="module")
def reference_knn(full_mnist):
    """A plain KNN on 10000 real training digits: a fixed judge of how MNIST-like the inputs are."""
    x, y = load_split("train", data_dir=full_mnist[0], size=10000)
    return KNeighborsClassifier(n_neighbors=3).fit(x.reshape(len(x), -1) / 255.0, y)


@pytest.fixture(scope="module")
def models(full_mnist, tmp_path_factory, svm_paper_file):
    """A checkpoint folder with two (untrained) networks and two classical models fitted on 3000 real digits (the
    SVM shared by the test run)."""
    from mnistlab.saved_models import save_classical

    root = tmp_path_factory.mktemp("checkpoints")
    write_network(root / "mnist" / "cnn-paper.pt")
    write_network(root / "mnist" / "mlp-fast.pt", model="mlp")
    x, y = load_split("train", data_dir=full_mnist[0], size=3000)
    meta = {"model": "knn", "recipe": "paper", "classes": DIGITS}
    save_classical(fit_pipeline("knn", x, y), root / "mnist" / "knn-paper.skops", meta, x[:50])
    copy_svm_paper(svm_paper_file, root)
    return root


@pytest.fixture(scope="module")
def photos(full_mnist, tmp_path_factory):
    """(paths, labels): 30 real test digits saved as ordinary PNG and JPEG files."""
    x, y = load_split("test", data_dir=full_mnist[0], size=30)
    return write_photos(x, tmp_path_factory.mktemp("photos")), y


def run(argv, capsys) -> tuple[int, list[str], list[str]]:
    code = predict.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


# ---------------------------------------------------------------- preprocessing


@pytest.mark.slow
def test_preprocessing_recovers_real_digits(full_mnist, reference_knn, tmp_path):
    x, y = load_split("test", data_dir=full_mnist[0], size=200)
    inputs = np.stack([read_digit(p) for p in write_photos(x, tmp_path)])
    assert inputs.shape == (200, 28, 28) and inputs.min() >= 0 and inputs.max() <= 1
    baseline = (reference_knn.predict(x.reshape(200, -1) / 255.0) == y).mean()
    recovered = (reference_knn.predict(inputs.reshape(200, -1)) == y).mean()
    assert recovered >= 0.9 and recovered >= baseline - 0.03, (recovered, baseline)


def test_layout_matches_mnist(full_mnist):
    """Ink fits a 20x20 box and its centre of mass sits in the middle of 28x28, whatever the input size."""
    digit = load_split("test", data_dir=full_mnist[0], size=1)[0][0]
    page = np.full((300, 500), 255, dtype=np.uint8)
    page[40 : 40 + 224, 250 : 250 + 224] = 255 - np.asarray(Image.fromarray(digit).resize((224, 224)))
    out = to_mnist(page / 255.0)
    rows, cols = np.nonzero(out > 0.25)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21
    yy, xx = np.mgrid[:28, :28]
    cy, cx = (out * yy).sum() / out.sum(), (out * xx).sum() / out.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def test_polarity_is_detected(full_mnist):
    digit = load_split("test", data_dir=full_mnist[0], size=1)[0][0] / 255.0
    big = np.kron(digit, np.ones((5, 5)))
    assert np.allclose(to_mnist(big), to_mnist(1.0 - big), atol=1.5 / 255)  # one grey level of rounding


def test_blank_image_is_rejected():
    with pytest.raises(ValueError, match="no ink"):
        to_mnist(np.full((50, 50), 0.9))


# ---------------------------------------------------------------- the CLI


def test_default_is_the_preferred_cnn_and_a_bomb_is_one_line(models, photos, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(30000, 30000))
    good = photos[0][:2]
    code, out, err = run([good[0], bomb, good[1], "--checkpoint-dir", models, "--top", "2"], capsys)
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"predict.py: error: {bomb}: image has 900 million pixels")
    assert [line.split(": ")[0] for line in out] == [str(p) for p in good]  # both good images, in order
    assert all(re.fullmatch(r".+: \d \(\d+\.\d%\), \d \(\d+\.\d%\)", line) for line in out), out
    write_network(models / "mnist" / "cnn-best.pt", seed=7)  # a preferred recipe appears: it is used instead
    try:
        assert run([good[0], "--checkpoint-dir", models, "--top", "2"], capsys)[1] != out[:1]
    finally:
        (models / "mnist" / "cnn-best.pt").unlink()


def test_all_prints_every_model_side_by_side(models, photos, capsys):
    paths, labels = photos
    code, out, err = run([*paths, "--all", "--checkpoint-dir", models], capsys)
    assert code == 0
    assert out[0].split() == ["image", "cnn-paper", "mlp-fast", "svm-paper", "knn-paper"]
    rows = [line.split() for line in out[1:]]
    assert [row[0] for row in rows] == [str(p) for p in paths]
    assert all(len(row) == 1 + 2 * 4 for row in rows)  # per model: label and (score)
    knn_column = [row[7] for row in rows]
    assert all(re.fullmatch(r"\(\d+\.\d%\)", row[2]) for row in rows)  # probabilities
    assert all(re.fullmatch(r"\(-?\d+\.\d\d\)", row[6]) for row in rows)  # SVC's decision scores
    assert np.mean(np.array(knn_column, dtype=int) == labels) >= 0.9  # real answers, from 3000 training digits
    single = run([*paths, "--model", "knn", "--checkpoint-dir", models], capsys)[1]
    assert [line.split(": ")[1].split()[0] for line in single] == knn_column
    assert len(err) == 1 and "not trained yet" in err[0] and "dt: python ml_main.py --algo dt" in err[0]


def test_checkpoint_and_recipe_pick_the_file(models, photos, tmp_path, capsys):
    path = photos[0][0]
    by_file = run([path, "--checkpoint", models / "mnist" / "svm-paper.skops"], capsys)
    by_name = run([path, "--model", "svm", "--recipe", "paper", "--checkpoint-dir", models], capsys)
    assert by_file == by_name and by_file[0] == 0 and re.fullmatch(r".+: \d \(-?\d+\.\d\d\)", by_file[1][0])
    code, out, err = run([path, "--model", "mlp", "--checkpoint-dir", models, "--save-inputs", tmp_path / "in"], capsys)
    assert code == 0 and len(out) == 1
    saved = np.asarray(Image.open(tmp_path / "in" / f"{path.stem}_28x28.png")) / 255.0
    assert saved.shape == (28, 28) and np.abs(saved - read_digit(path)).max() <= 0.5 / 255 + 1e-6


def tiff_header(width: int, height: int) -> bytes:
    """A tiny TIFF that declares ``width`` x ``height`` 32-bit float pixels (its one strip is 16 bytes)."""
    short, long = 3, 4
    tags = [(256, long, width), (257, long, height), (258, short, 32), (259, short, 1), (262, short, 1)]
    tags += [(273, long, 8 + 2 + 12 * 10 + 4), (277, short, 1), (278, long, height), (279, long, 16), (339, short, 3)]
    entries = b"".join(
        struct.pack("<HHI", tag, kind, 1) + struct.pack("<HH" if kind == short else "<I", value, *[0][: kind == short])
        for tag, kind, value in tags
    )
    return b"II*\0" + struct.pack("<IH", 8, len(tags)) + entries + struct.pack("<I", 0) + bytes(16)


def test_float_tiff_over_the_pixel_budget_is_one_line(models, photos, tmp_path, capsys, monkeypatch):
    """A 190-byte float TIFF declaring 49 million pixels: refused from its header, before a pixel is decoded
    (a 634 KB one cost 3.1 GB), and the good image beside it is still classified."""
    from PIL import ImageFile

    tiff = tmp_path / "float.tiff"
    tiff.write_bytes(tiff_header(7000, 7000))
    with Image.open(tiff) as img:
        assert (img.mode, img.size) == ("F", (7000, 7000))
    good = photos[0][0]
    decode = ImageFile.ImageFile.load
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(img.size) or decode(img))
    code, out, err = run([tiff, good, "--checkpoint-dir", models], capsys)
    assert code == 1 and [line.split(": ")[0] for line in out] == [str(good)] and (7000, 7000) not in decoded
    assert err == [
        f"predict.py: error: {tiff}: image is 7000x7000 pixels (49 million), over the 40 million-pixel limit; "
        "scale it down"
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_or_a_bad_name_is_one_line_and_the_good_image_still_answers(models, photos, tmp_path, capsys):
    """mkfifo f.png; predict.py f.png good.png: it used to block forever on f.png."""
    fifo, long, folder, good = tmp_path / "f.png", tmp_path / ("y" * 300 + ".png"), tmp_path / "d.png", photos[0][0]
    os.mkfifo(fifo)
    folder.mkdir()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(run, [fifo, long, folder, good, "--checkpoint-dir", models], capsys)
        try:
            code, out, err = answer.result(timeout=60)
        except concurrent.futures.TimeoutError:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the blocked reader go
            raise AssertionError("predict.py blocked on a named pipe") from None
    assert code == 1 and [line.split(": ")[0] for line in out] == [str(good)]
    assert err == [
        f"predict.py: error: {fifo}: not a regular file (a named pipe); give an image file (PNG, JPEG...)",
        f"predict.py: error: {long}: cannot be read: file name too long",
        f"predict.py: error: {folder}: not a regular file (a directory); give an image file (PNG, JPEG...)",
    ]


def test_saved_inputs_of_images_with_one_name_do_not_overwrite_each_other(models, photos, tmp_path, capsys):
    """predict.py a/d.png b/d.png --save-inputs out: one file each (a_d_28x28.png, b_d_28x28.png), not one for both."""
    images = [tmp_path / "a" / "d.png", tmp_path / "b" / "d.png", tmp_path / "b" / "d.jpg", tmp_path / "e.png"]
    for image, photo in zip(images, [photos[0][0], photos[0][2], photos[0][1], photos[0][4]], strict=True):
        image.parent.mkdir(exist_ok=True)
        shutil.copy(photo, image)
    out = tmp_path / "out"
    code, lines, _ = run([*images, "--checkpoint-dir", models, "--save-inputs", out], capsys)
    assert code == 0 and len(lines) == 4
    names = ["a_d_28x28.png", "b_d_28x28.png", "b_d-2_28x28.png", "e_28x28.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for image, name in zip(images, names, strict=True):
        saved = np.asarray(Image.open(out / name)) / 255.0
        assert np.abs(saved - read_digit(image)).max() <= 0.5 / 255 + 1e-6, name


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--model", "svm"],
            "no svm model at {dir}/mnist/{{svm-tuned.skops,svm-paper.skops,svm-benchmark.skops}}; "
            "train one with python ml_main.py --algo svm --checkpoint-dir {dir}",
        ),
        (
            ["--model", "cnn", "--recipe", "best"],
            "no cnn model at {dir}/mnist/cnn-best.pt; "
            "train one with python dl_main.py --model cnn --recipe best "
            "--checkpoint-dir {dir}",
        ),
        (["--model", "knn", "--recipe", "fast"], "knn has no recipe 'fast'; choose one of tuned, paper, benchmark"),
    ],
)
def test_missing_model_is_one_line_naming_the_train_command(photos, tmp_path, capsys, argv, expected):
    code, out, err = run([photos[0][0], *argv, "--checkpoint-dir", tmp_path], capsys)
    assert code == 1 and out == []
    assert err == [f"predict: error: {expected.format(dir=tmp_path)}"]


@pytest.mark.slow
def test_runs_from_any_folder_with_the_checkpoints_beside_the_script(photos, tmp_path):
    """A copy of the repository's scripts finds checkpoints/ beside itself, not in the working folder."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for script in REPO.glob("*.py"):
        shutil.copy(script, repo)
    shutil.copytree(REPO / "mnistlab", repo / "mnistlab")
    write_network(repo / "checkpoints" / "mnist" / "cnn-paper.pt")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "checkpoints" / "mnist").mkdir(parents=True)
    (elsewhere / "checkpoints" / "mnist" / "cnn-best.pt").write_text("a decoy: preferred, if it were looked at")
    image = Path(shutil.copy(photos[0][0], elsewhere))
    done = subprocess.run(
        [sys.executable, repo / "predict.py", image.name, "--device", "cpu"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"{image.name}: \d \(\d+\.\d%\)", done.stdout.strip())
