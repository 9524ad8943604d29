"""HOG features (mnistlab.features.HOG) as a Pipeline step: equal to skimage's, fast, saved and loaded safely, bad
settings refused in one line, and the tuned choice made on the validation split only."""

from __future__ import annotations

import numpy as np
import pytest

import Classifier
import ml_main
from conftest import output_flags
from mnistlab import saved_models
from mnistlab.errors import ProjectError
from mnistlab.features import HOG, hog_length, hog_problem
from mnistlab.saved_models import load_classical, save_classical

skimage_feature = pytest.importorskip("skimage.feature", reason="scikit-image is not installed")

# (cell, orientations, block, norm, cell2): the default, each norm, odd and whole-image cells, a second cell size
SETTINGS = [
    (4, 9, 2, "L2-Hys", 0),
    (7, 12, 2, "L2", 0),
    (4, 8, 3, "L1", 7),
    (6, 9, 1, "L1-sqrt", 0),
    (3, 7, 2, "L2-Hys", 14),
    (28, 9, 1, "L2-Hys", 0),
]


@pytest.fixture(scope="module")
def images(small_arrays):
    return small_arrays["x_train"][:40]  # uint8 (40, 28, 28), real digits


def skimage_hog(x: np.ndarray, cell, orientations, block, norm, cell2) -> np.ndarray:
    """The reference: skimage.feature.hog on each image in turn, the two cell sizes concatenated."""
    rows = []
    for image in x:
        parts = [skimage_feature.hog(image, orientations, (c, c), (block, block), norm) for c in (cell, cell2) if c]
        rows.append(np.concatenate(parts))
    return np.stack(rows)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hog_equals_skimage(images, setting, dtype):
    x = images.astype(dtype) / dtype(255)
    ours = HOG(*setting).fit_transform(x)
    reference = skimage_hog(x, *setting)
    assert ours.shape == reference.shape == (len(x), hog_length(*setting[:3], setting[4]))
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_hog_shape_determinism_and_threads(images):
    flat = images.reshape(len(images), -1)
    hog = HOG(4, 9, 2, cell2=7)
    a = hog.fit_transform(flat)
    assert a.shape == (len(images), 6 * 6 * 4 * 9 + 3 * 3 * 4 * 9) == (len(images), hog_length(4, 9, 2, 7))
    assert a.dtype == np.float32 and np.isfinite(a).all()  # uint8 images are taken as float32
    assert np.array_equal(a, hog.transform(images))  # [N, 784] and [N, 28, 28] alike, the same every time
    chunked = HOG(4, 9, 2, cell2=7, n_jobs=2, chunk=7).transform(images)  # uneven chunks on two threads
    assert np.array_equal(a, chunked)
    blank = HOG().transform(np.zeros((3, 28, 28), np.uint8))
    assert blank.shape == (3, hog_length(4, 9, 2)) and not blank.any()  # no ink: zeros, not NaN
    assert HOG().transform(np.zeros((0, 784), np.float32)).shape == (0, hog_length(4, 9, 2))
    with pytest.raises(ValueError, match=r"HOG takes \[N, 784\] or \[N, 28, 28\] images, got shape \(2, 100\)"):
        HOG().transform(np.zeros((2, 100)))


def test_hog_pipeline_round_trip_through_the_trusted_list(images, small_arrays, tmp_path, monkeypatch):
    x, y = small_arrays["x_train"], small_arrays["y_train"]
    s = Classifier.settings("svm", "tuned", {"features": "hog"})
    pipeline = Classifier.build("svm", s, threads=1).fit(x, y)
    assert [name for name, _ in pipeline.steps] == ["deskew", "scale", "hog", "model"]  # deskew, then HOG
    meta = {"name": "svm-hog", "model": "svm", "recipe": "tuned", "dataset": "mnist", "classes": list("0123456789")}
    path = save_classical(pipeline, tmp_path / "svm-hog.skops", meta, small_arrays["x_test"])
    loaded, loaded_meta = load_classical(path)
    assert loaded_meta["name"] == "svm-hog" and isinstance(loaded.named_steps["hog"], HOG)
    assert loaded.named_steps["hog"].get_params() == pipeline.named_steps["hog"].get_params()
    x_test = small_arrays["x_test"]
    assert np.array_equal(loaded.decision_function(x_test), pipeline.decision_function(x_test))
    # Without its entry in TRUSTED the file is neither written nor loaded.
    monkeypatch.setattr(saved_models, "TRUSTED", tuple(t for t in saved_models.TRUSTED if t != "mnistlab.features.HOG"))
    with pytest.raises(ProjectError, match=r"not saved: .*mnistlab\.features\.HOG"):
        save_classical(pipeline, tmp_path / "again.skops", meta, x_test)
    with pytest.raises(ProjectError, match=r"refused: .*mnistlab\.features\.HOG"):
        load_classical(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hog_cell": 29}, "hog_cell 29: a cell is 1 to 28 pixels wide"),
        ({"hog_cell": 0}, "hog_cell 0: a cell is 1 to 28 pixels wide"),
        ({"hog_orientations": 0}, "hog_orientations 0: a histogram needs at least 1 orientation bin"),
        ({"hog_block": 0}, "hog_block 0: a block needs at least 1 cell"),
        ({"hog_cell": 10, "hog_block": 3}, "hog_cell 10 gives 2x2 cells per image, fewer than a 3x3-cell block"),
        ({"hog_cell2": 15}, "hog_cell2 15 gives 1x1 cells per image, fewer than a 3x3-cell block"),
        ({"hog_norm": "L3"}, "hog_norm 'L3': choose one of L1, L1-sqrt, L2, L2-Hys"),
        ({"hog_cell": 4.5}, "hog_cell must be a whole number"),
        ({"pca": 2026}, "--pca 2026 exceeds the 2025 HOG features; choose 0 (off) to 2025"),
    ],
)
def test_bad_hog_settings_are_one_line(change, message):
    with pytest.raises(ProjectError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        Classifier.settings("svm", "tuned", {"features": "hog", "hog_cell2": 0, **change})
    assert "\n" not in str(refused.value)
    hog_only = {k.removeprefix("hog_").replace("norm", "block_norm"): v for k, v in change.items() if "hog" in k}
    if hog_only:  # the transformer refuses them too, as scikit-learn's own steps do (a ValueError on fit)
        with pytest.raises(ValueError, match="hog_"):
            HOG(**hog_only).fit(np.zeros((1, 784)))
    assert hog_problem(4, 9, 2) is None


def test_features_flag(full_mnist, tmp_path, capsys):
    def run(*args):
        out = output_flags(tmp_path)
        try:
            return ml_main.main([str(a) for a in ["--data-dir", full_mnist[0], *out, *args]])
        except SystemExit as exc:  # argparse refusing a flag's value
            return exc.code

    assert run("--algo", "knn", "--features", "sift") == 2
    err = capsys.readouterr().err
    assert "argument --features: invalid choice: 'sift'" in err and "hog" in err
    assert run("--algo", "svm", "--features", "hog", "--pca", 2026) == 1  # a combination: one line, exit 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pca 2026 exceeds the 2025 HOG features" in err
    (config,) = ml_main.make_configs(["--algo", "rf", "--features", "hog", "--no-deskew"])
    assert (config["features"], config["deskew"], config["hog_cell"]) == ("hog", False, 4)
    assert config["name"] == "rf-tuned-deskewFalse-featureshog"
    (config,) = ml_main.make_configs(["--algo", "svm", "--features", "pixels"])
    assert config["features"] == "pixels" and not any(k.startswith("hog_") for k in config)


def test_published_families_stay_on_pixels_and_tuned_hog_settings_work():
    for recipe in ("paper", "benchmark"):
        for algo in Classifier.members(recipe):
            s = Classifier.settings(algo, recipe)
            assert s["features"] == "pixels" and not any(k.startswith("hog_") for k in s), (recipe, algo)
            assert "hog" not in Classifier.build(algo, s).named_steps
    for dataset in Classifier.TUNED:
        for algo in Classifier.members("tuned"):
            s = Classifier.settings(algo, "tuned", dataset=dataset)
            assert s["features"] in Classifier.FEATURES
            if s["features"] == "hog":
                assert hog_problem(*(s[k] for k in Classifier.HOG_SETTINGS)) is None
                assert Classifier.build(algo, s).named_steps["hog"].cell == s["hog_cell"]


def test_hog_validation_run_never_touches_the_test_set(full_mnist, tmp_path, capsys, monkeypatch, no_test_split):
    from mnistlab import data

    monkeypatch.setattr(data, "load_split", lambda *a, **k: pytest.fail("a validation run loaded a split"))
    out = output_flags(tmp_path)
    argv = ["--data-dir", full_mnist[0], *out, "--algo", "knn", "--features", "hog", "--deskew"]
    code = ml_main.main([str(a) for a in [*argv, "--train-size", 500, "--val-size", 300]])
    assert code == 0 and "val accuracy" in capsys.readouterr().out
    (record,) = (tmp_path / "r" / "mnist").glob("knn-*-val.json")
    assert '"split": "val"' in record.read_text() and '"features": "hog"' in record.read_text()
