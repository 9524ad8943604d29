"""inference.py: every image mode read without clipping, hostile images and model files refused in one line,
classical models saved and loaded through a trusted-type list, and one predictor face for every model."""

from __future__ import annotations

import io
import operator
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from PIL import Image

from mnistlab import saved_models
from mnistlab.data import load_split
from mnistlab.errors import ProjectError
from mnistlab.images import read_digit, read_grey
from mnistlab.recipes import BENCHMARK_ONLY, CLASSICAL, NETWORKS, PREFERRED
from mnistlab.saved_models import (
    classify_all,
    find_models,
    load_classical,
    load_predictor,
    save_classical,
    train_command,
)
from model_files import DIGITS, Touch, fit_pipeline, png_header, with_eval_payload, with_function, write_network


@pytest.fixture(scope="module")
def digits(full_mnist):
    """(x_train, y_train, x_check): 500 real training digits to fit on, 100 others to compare predictions on."""
    x, y = load_split("train", data_dir=full_mnist[0], size=600)
    return x[:500], y[:500], x[500:]


@pytest.fixture(scope="module")
def page(full_mnist):
    """A real test digit as dark ink on light grey paper, 120x100, uint8."""
    digit = load_split("test", data_dir=full_mnist[0], size=1)[0][0]
    ink = np.asarray(Image.fromarray(255 - digit).resize((84, 84), Image.Resampling.BILINEAR))
    out = np.full((120, 100), 235, np.uint8)
    out[20:104, 8:92] = np.minimum(ink, 235)
    return out


@pytest.fixture(scope="module")
def saved_knn(digits, tmp_path_factory):
    """A plain scikit-learn KNN pipeline saved by save_classical: (path, fitted pipeline)."""
    x, y, check = digits
    pipeline = fit_pipeline("knn", x, y)
    path = tmp_path_factory.mktemp("models") / "mnist" / "knn-paper.skops"
    save_classical(pipeline, path, {"model": "knn", "recipe": "paper", "classes": DIGITS}, check)
    return path, pipeline


def one_line_error(call, *args) -> str:
    with pytest.raises(ProjectError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- images


def test_16_bit_png_is_scaled_not_clipped(page, tmp_path):
    Image.fromarray(page).save(tmp_path / "eight.png")
    Image.fromarray(page.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as img:
        assert img.mode == "I;16"  # a real 16-bit file; converting it with Pillow's convert("L") clips it white
    assert np.allclose(read_grey(tmp_path / "sixteen.png"), page / 255, atol=1e-6)
    assert np.abs(read_digit(tmp_path / "sixteen.png") - read_digit(tmp_path / "eight.png")).max() <= 1e-5


@pytest.mark.parametrize("mode, dtype, scale, offset", [("F", np.float32, 0.01, -1.0), ("I", np.int32, 1000, -5000)])
def test_float_and_32_bit_tiff_are_scaled_by_their_range(page, tmp_path, mode, dtype, scale, offset):
    Image.fromarray(page).save(tmp_path / "eight.png")
    Image.fromarray(page.astype(dtype) * dtype(scale) + dtype(offset), mode).save(tmp_path / "wide.tiff")
    with Image.open(tmp_path / "wide.tiff") as img:
        assert img.mode == mode
    grey = read_grey(tmp_path / "wide.tiff")
    assert grey.min() == 0 and grey.max() == 1
    assert np.abs(read_digit(tmp_path / "wide.tiff") - read_digit(tmp_path / "eight.png")).max() <= 1e-5


@pytest.mark.parametrize(
    "mode, suffix",
    [
        ("P", ".png"),
        ("P", ".gif"),
        ("RGB", ".png"),
        ("RGBA", ".png"),
        ("LA", ".png"),
        ("CMYK", ".tiff"),
        ("CMYK", ".jpg"),
    ],
)
def test_every_mode_reads_as_its_grey(page, tmp_path, mode, suffix):
    path = tmp_path / f"digit{suffix}"
    Image.fromarray(page).convert(mode).save(path, **({"quality": 100} if suffix == ".jpg" else {}))
    with Image.open(path) as img:
        assert img.mode == mode
    atol = 3 / 255 if suffix == ".jpg" else 1e-6
    assert np.allclose(read_grey(path), page / 255, atol=atol)


def test_bilevel_image(page, tmp_path):
    Image.fromarray(page).convert("1", dither=Image.Dither.NONE).save(tmp_path / "bw.png")
    assert np.array_equal(read_grey(tmp_path / "bw.png"), (page >= 128).astype(np.float32))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_parts_are_white_paper(tmp_path, mode):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)  # black, fully transparent
    rgba[10:30, 18:22] = (0, 0, 0, 255)  # an opaque black stroke
    img = Image.fromarray(rgba, "RGBA")
    if mode == "P":  # a palette image with one transparent index, as GIFs and small PNGs have
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        img.info["transparency"] = int(np.asarray(img)[0, 0])
        img.save(tmp_path / "stroke.png", transparency=img.info["transparency"])
    else:
        img.convert(mode).save(tmp_path / "stroke.png")
    grey = read_grey(tmp_path / "stroke.png")
    assert grey[0, 0] == 1.0 and grey[20, 20] == 0.0


def test_exif_orientation_is_applied(page, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: show it turned 90 degrees clockwise
    Image.fromarray(page).save(tmp_path / "phone.png", exif=exif)
    assert np.allclose(read_grey(tmp_path / "phone.png"), np.rot90(page, -1) / 255)


@pytest.mark.parametrize("width, height, size", [(30000, 30000, "900 million"), (10000, 10000, "100 million")])
def test_decompression_bomb_is_one_line(tmp_path, width, height, size):
    """Over twice Pillow's limit is its error; just over is its warning, which must refuse the image too."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(width, height))
    assert path.stat().st_size < 100
    message = one_line_error(read_grey, path)
    assert message.startswith(f"{path}: image has {size} pixels, over the 89 million-pixel limit")
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the guard itself is left as Pillow sets it


def test_very_long_side_is_refused(tmp_path):
    path = tmp_path / "strip.png"
    path.write_bytes(png_header(25000, 1))
    assert "over the 20000-pixel side limit" in one_line_error(read_grey, path)


def test_bad_files_are_one_line_naming_the_file(page, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "notes.png").write_text("definitely not a PNG")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    expected = {
        "cut.png": "cannot be read",
        "notes.png": "not an image",
        "empty.png": "empty file",
        "missing.png": "no such file",
        "folder.png": "not a regular file (a directory)",
    }
    for name, problem in expected.items():
        message = one_line_error(read_digit, tmp_path / name)
        assert message.startswith(f"{tmp_path / name}: {problem}"), message
    if os.path.exists("/dev/zero"):  # a device never ends: refused without reading it
        assert one_line_error(read_digit, Path("/dev/zero")).startswith("/dev/zero: not a regular file")
    assert one_line_error(read_digit, b"", "upload.png") == "upload.png: empty file, not an image"
    assert one_line_error(read_digit, b"GIF89a", "upload.gif").startswith("upload.gif: ")


def test_blank_image_has_no_ink(tmp_path):
    Image.new("L", (50, 50), 230).save(tmp_path / "blank.png")
    assert one_line_error(read_digit, tmp_path / "blank.png").startswith(f"{tmp_path / 'blank.png'}: no ink found")


def test_bytes_read_like_the_file(page, tmp_path):
    Image.fromarray(page).save(tmp_path / "digit.png")
    assert np.array_equal(
        read_digit((tmp_path / "digit.png").read_bytes(), "upload"), read_digit(tmp_path / "digit.png")
    )


def test_pixel_budget_is_checked_before_decoding(tmp_path, monkeypatch):
    """88 million pixels in a 110-byte PNG: under Pillow's own guard (89 million), over MAX_PIXELS; refused from
    the header, as bytes (an upload) and as a file, before a pixel is decoded."""
    from PIL import ImageFile

    def decoding(self):
        raise AssertionError("pixels decoded before the pixel budget was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoding)
    (tmp_path / "wide.png").write_bytes(png_header(9400, 9400))
    expected = "image is 9400x9400 pixels (88 million), over the 40 million-pixel limit; scale it down"
    assert one_line_error(read_grey, png_header(9400, 9400), "upload.png") == f"upload.png: {expected}"
    assert one_line_error(read_digit, tmp_path / "wide.png") == f"{tmp_path / 'wide.png'}: {expected}"


def test_jpeg_is_decoded_at_a_reduced_scale(page, tmp_path, monkeypatch):
    """A JPEG over the pixel budget that fits once decoded at 1/2 scale (Image.draft) is read; a PNG is not."""
    monkeypatch.setattr("mnistlab.images.MAX_PIXELS", 1_000_000)
    monkeypatch.setattr("mnistlab.images.DRAFT_SIDE", 500)
    big = Image.fromarray(page).resize((2000, 1500))  # 3 million pixels
    big.save(tmp_path / "big.jpg", quality=95)
    big.save(tmp_path / "big.png")
    grey = read_grey(tmp_path / "big.jpg")
    assert grey.shape == (750, 1000)
    assert np.abs(grey - np.asarray(big.resize((1000, 750)), dtype=np.float32) / 255).mean() < 0.02
    assert "over the 1 million-pixel limit" in one_line_error(read_grey, tmp_path / "big.png")


def test_only_regular_files_are_opened(page, tmp_path, monkeypatch):
    """A named pipe is refused before it is opened (opening one blocks until someone writes); a folder, a
    device, a file that may not be read, a name too long, a file over the size limit: one line each."""
    import concurrent.futures
    import errno

    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.png"
        os.mkfifo(fifo)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(one_line_error, read_digit, fifo)
            try:
                message = answer.result(timeout=10)
            except concurrent.futures.TimeoutError:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the blocked reader go
                raise AssertionError("reading a named pipe blocked") from None
        assert message == f"{fifo}: not a regular file (a named pipe); give an image file (PNG, JPEG...)"
    (tmp_path / "folder.png").mkdir()
    assert one_line_error(read_digit, tmp_path / "folder.png").startswith(f"{tmp_path}/folder.png: not a regular file")

    locked = tmp_path / "locked.png"
    Image.fromarray(page).save(locked)
    locked.chmod(0)
    if getattr(os, "geteuid", lambda: 0)() == 0:  # root reads anything: fail the open as it does for others
        real_open = os.open

        def refusing_open(path, *args, **kwargs):
            if Path(path) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    assert one_line_error(read_digit, locked) == f"{locked}: cannot be read: permission denied"
    monkeypatch.undo()

    long = tmp_path / ("x" * 300 + ".png")  # a name over the 255 bytes a file system allows
    assert one_line_error(read_digit, long) == f"{long}: cannot be read: file name too long"
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate((10 << 20) + 1)  # sparse: nothing is written, nothing read
    assert one_line_error(read_digit, huge).startswith(f"{huge}: file is 10.0 MB, over the 10 MB limit")
    odd = tmp_path / "two\nlines.png"
    assert one_line_error(read_digit, odd) == f"{tmp_path}/two\\nlines.png: no such file"


# ---------------------------------------------------------------- classical models


@pytest.mark.parametrize("algo", ["knn", "svm"])
def test_plain_pipeline_round_trip(digits, tmp_path, algo):
    x, y, check = digits
    pipeline = fit_pipeline(algo, x, y)
    path = save_classical(pipeline, tmp_path / f"{algo}-paper.skops", {"model": algo, "classes": DIGITS}, check[:50])
    loaded, meta = load_classical(path)
    assert np.array_equal(loaded.predict(check), pipeline.predict(check))
    kind = "probability" if algo == "knn" else "decision score"  # SVC() has no predict_proba without probability=True
    assert meta["model"] == algo and meta["score_kind"] == kind
    predictor = load_predictor(path)
    assert (predictor.name, predictor.family, predictor.score_kind, predictor.classes) == (
        f"{algo}-paper",
        "classical",
        kind,
        DIGITS,
    )
    scores = predictor.predict(check / 255.0)  # inputs in [0, 1]; the pipeline takes 0-255
    assert scores.shape == (len(check), 10)
    assert np.mean(scores.argmax(axis=1) == pipeline.predict(check)) >= 0.99


def test_save_refuses_a_copy_that_predicts_differently(digits, tmp_path, monkeypatch):
    x, y, check = digits
    pipeline = fit_pipeline("knn", x, y)
    wrong = fit_pipeline("knn", x, np.roll(y, 1))
    import skops.io  # saved_models imports it where it is used

    monkeypatch.setattr(
        skops.io,
        "loads",
        lambda data, trusted: {"format": saved_models.FORMAT, "meta": "{}", "pipeline": wrong},
    )
    message = one_line_error(save_classical, pipeline, tmp_path / "knn-paper.skops", {}, check)
    assert "not saved" in message and "differently" in message
    assert not list(tmp_path.iterdir())  # not even a temporary file is left


def test_save_refuses_a_step_outside_the_trusted_list(digits, tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeClassifier

    x, y, check = digits
    # (skops itself trusts numpy's ufuncs, pure arithmetic such as numpy.sqrt; operator.neg it does not)
    pipeline = make_pipeline(FunctionTransformer(operator.neg), DecisionTreeClassifier(max_depth=3)).fit(
        x.reshape(500, -1), y
    )
    message = one_line_error(save_classical, pipeline, tmp_path / "dt-paper.skops", {}, check.reshape(100, -1))
    assert "operator.neg" in message and "not saved" in message
    assert not list(tmp_path.iterdir())


def test_file_calling_eval_is_refused_and_runs_nothing(saved_knn, tmp_path):
    marker = tmp_path / "code-ran"
    hostile = with_eval_payload(saved_knn[0].read_bytes(), f"open({str(marker)!r}, 'w').close()")
    path = tmp_path / "knn-tuned.skops"
    path.write_bytes(hostile)
    for load in (load_classical, load_predictor):
        message = one_line_error(load, path)
        assert message.startswith(f"{path}: refused") and "builtins.eval" in message
    assert not marker.exists()
    sio.loads(hostile, trusted=sio.get_untrusted_types(data=hostile))  # a loader that trusts the file's own list ...
    assert marker.exists()  # ... runs it: the payload is real


def test_file_naming_os_system_is_refused(saved_knn, tmp_path):
    path = tmp_path / "knn-tuned.skops"
    path.write_bytes(with_function(saved_knn[0].read_bytes(), "os", "system"))
    message = one_line_error(load_classical, path)
    assert message.startswith(f"{path}: refused") and "os.system" in message


def test_pickle_renamed_skops_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "svm-tuned.skops"
    path.write_bytes(pickle.dumps(Touch(marker)))
    assert one_line_error(load_classical, path).startswith(f"{path}: refused: not a readable saved model")
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # what loading it as a pickle would have done
    assert marker.exists()


def test_truncated_or_foreign_skops_is_refused(saved_knn, tmp_path):
    data = saved_knn[0].read_bytes()
    (tmp_path / "cut.skops").write_bytes(data[: len(data) // 2])
    (tmp_path / "other.skops").write_bytes(sio.dumps({"weights": [1, 2, 3]}))
    assert one_line_error(load_classical, tmp_path / "cut.skops").startswith(f"{tmp_path / 'cut.skops'}: refused")
    assert "not a model saved by ml_main.py" in one_line_error(load_classical, tmp_path / "other.skops")
    assert one_line_error(load_classical, tmp_path / "none.skops") == f"{tmp_path / 'none.skops'}: no such file"


# ---------------------------------------------------------------- every model, one face


def test_find_models_prefers_recipes_and_names_what_is_missing(saved_knn, tmp_path):
    folder = tmp_path / "ckpt" / "mnist"
    write_network(folder / "cnn-paper.pt")
    write_network(folder / "cnn-fast.pt", seed=1)
    write_network(folder / "mlp-best.pt", model="mlp")
    for recipe in ("paper", "tuned"):
        (folder / f"knn-{recipe}.skops").write_bytes(saved_knn[0].read_bytes())
    predictors, missing = find_models(tmp_path / "ckpt", device="cpu")
    assert [(p.name, p.family) for p in predictors] == [
        ("cnn-fast", "network"),
        ("mlp-best", "network"),
        ("knn-tuned", "classical"),
    ]
    assert [model for model, _ in missing] == ["svm", "dt", "logreg", "pca-svm", "rf"]
    assert dict(missing)["svm"] == f"python ml_main.py --algo svm --checkpoint-dir {tmp_path / 'ckpt'}"
    gb = f"python ml_main.py --algo gb --recipe benchmark --checkpoint-dir {tmp_path}"
    assert train_command("gb", checkpoint_dir=tmp_path) == gb
    (folder / "gb-benchmark.skops").write_bytes(saved_knn[0].read_bytes())  # a saved benchmark-only model is offered
    assert [p.name for p in find_models(tmp_path / "ckpt", device="cpu")[0]][-1] == "gb-benchmark"
    command = dict(find_models(tmp_path / "ckpt", "fashion-mnist")[1])["cnn"]
    flags = f"--recipe best --dataset fashion-mnist --checkpoint-dir {tmp_path / 'ckpt'}"
    assert command == f"python dl_main.py --model cnn {flags}"


def test_missing_or_unknown_model_file(tmp_path):
    path = tmp_path / "mnist" / "mlp-fast.pt"
    command = f"python dl_main.py --model mlp --recipe fast --checkpoint-dir {tmp_path}"
    assert one_line_error(load_predictor, path) == f"no model at {path}; train it with {command}"
    assert "expected a .pt network checkpoint or a .skops" in one_line_error(load_predictor, tmp_path / "m.pkl")


def test_classify_all_gives_every_model_answer(saved_knn, digits, tmp_path):
    network = load_predictor(write_network(tmp_path / "cnn-paper.pt"), "cpu")
    knn = load_predictor(saved_knn[0])
    x28 = digits[2][0] / 255.0
    rows = classify_all([network, knn], x28, top=3)
    assert [r["name"] for r in rows] == ["cnn-paper", "knn-paper"]
    for row, predictor in zip(rows, (network, knn), strict=True):
        scores = predictor.predict(x28)[0]
        assert row["label"] == predictor.classes[int(np.argmax(scores))] == row["top"][0][0]
        assert [s for _, s in row["top"]] == sorted(scores, reverse=True)[:3]
        assert row["family"] == predictor.family and row["score_kind"] == "probability" and row["ms"] > 0
    assert knn.predict(x28).sum() == pytest.approx(1) and network.predict(x28).sum() == pytest.approx(1, abs=1e-5)
    assert rows[1]["label"] == str(saved_knn[1].predict(digits[2][:1])[0])


def test_model_names_follow_the_registries():
    """predict.py, the page and handwriting.py offer every model and recipe the training scripts can save: the
    names written out in inference (to keep torch's and scikit-learn's model code out of its imports) are the
    registries' own."""
    import Classifier
    import Network
    from mnistlab.recipes import CLASSICAL_RECIPES, NETWORK_RECIPES

    assert set(NETWORKS) == set(Network.MODELS)
    assert set(CLASSICAL) == set(Classifier.REGISTRY)
    assert set(BENCHMARK_ONLY) == set(Classifier.REGISTRY) - set(Classifier.members("tuned"))
    assert set(PREFERRED["network"]) == set(NETWORK_RECIPES)
    assert set(PREFERRED["classical"]) == set(CLASSICAL_RECIPES)
