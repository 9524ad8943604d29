"""Classical models on small slices of the real MNIST: accuracy floors, results schema, outputs, seeds, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.svm import SVC

import Classifier
import ml_main
from Classifier import REGISTRY, build, deskew, pixel_moments, settings
from data_prep import load_split

TRAIN, TEST = 2000, 500
# Accuracy on the first 500 test images after fitting the first 2000 training images (chance: 10%).
# The floors sit a few points under what each model scores, so a real regression fails them.
FLOORS = {
    "fast": {"knn": 0.90, "dt": 0.72, "svm": 0.94, "logreg": 0.88, "pca-svm": 0.93, "rf": 0.90},
    "paper": {"knn": 0.84, "dt": 0.66, "svm": 0.90, "logreg": 0.84, "pca-svm": 0.90, "rf": 0.88},
}
RECORD_KEYS = {"model", "dataset", "test_accuracy", "n_train", "n_test", "seconds_fit", "seconds_predict", "config",
               "seed", "versions", "predictions", "per_class", "runs", "test_accuracy_std", "seeds",
               "estimator"}  # fmt: skip


def run(capsys, data_dir, out, *args):
    """Run ml_main's CLI on the test data; return (exit code, stdout, stderr)."""
    argv = ["--data-dir", data_dir, "--results-dir", out / "results", "--plots-dir", out / "plots", *args]
    code = ml_main.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def all_runs(full_mnist, tmp_path_factory):
    """Every registered model under both presets, fitted once on the small slice."""
    outs = {}
    for preset in FLOORS:
        out = tmp_path_factory.mktemp(preset)
        argv = ["--algo", "all", "--preset", preset, "--train-size", TRAIN, "--test-size", TEST]
        argv += ["--data-dir", full_mnist[0], "--results-dir", out / "results", "--plots-dir", out / "plots"]
        assert ml_main.main([str(a) for a in argv]) == 0
        outs[preset] = out
    return outs


def load_record(out, model):
    return json.loads((out / "results" / f"{model}.json").read_text())


@pytest.mark.parametrize("preset", FLOORS)
@pytest.mark.parametrize("model", REGISTRY)
def test_each_model_beats_its_floor_and_follows_the_schema(all_runs, full_mnist, preset, model):
    rec = load_record(all_runs[preset], model)
    assert RECORD_KEYS <= rec.keys()
    assert rec["model"] == model and rec["dataset"] == "mnist" and rec["seed"] == 0 and rec["seeds"] == [0]
    assert (rec["n_train"], rec["n_test"]) == (TRAIN, TEST)
    assert rec["test_accuracy"] >= FLOORS[preset][model], rec["test_accuracy"]
    _, y_test = load_split("test", data_dir=full_mnist[0], size=TEST)
    assert len(rec["predictions"]) == TEST
    assert rec["test_accuracy"] == pytest.approx(np.mean(np.array(rec["predictions"]) == y_test))
    config = rec["config"]
    assert config["preset"] == preset and config["algo"] == model
    assert (config["train_size"], config["test_size"], config["random_subset"]) == (TRAIN, TEST, False)
    assert config["engine"] == ("sklearn" if preset == "paper" else "sklearnex")
    accelerated = preset == "fast" and model != "dt"  # scikit-learn-intelex has no decision tree
    assert rec["estimator"].startswith("sklearnex." if accelerated else "sklearn.")
    assert set(settings(model, preset)) <= config.keys()  # every resolved hyperparameter is recorded
    assert rec["seconds_fit"] > 0 and rec["seconds_predict"] > 0
    assert rec["versions"]["scikit-learn"] and rec["test_accuracy_std"] is None
    assert list(rec["per_class"]) == [str(d) for d in range(10)]
    recall_3 = np.mean(np.array(rec["predictions"])[y_test == 3] == 3)
    assert rec["per_class"]["3"]["recall"] == pytest.approx(recall_3)
    assert rec["per_class"]["3"]["support"] == int(np.sum(y_test == 3))


@pytest.mark.parametrize("model", REGISTRY)
def test_confusion_matrix_and_report_are_written(all_runs, model):
    out = all_runs["fast"]
    png = out / "plots" / f"confusion_{model}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    report = (out / "results" / f"{model}_report.txt").read_text()
    assert "precision" in report and "recall" in report
    accuracy = load_record(out, model)["test_accuracy"]
    assert f"{accuracy:.4f}" in report
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    assert not leftovers


@pytest.mark.parametrize("model", ["knn", "svm"])
def test_tuned_preset_beats_the_published_settings(all_runs, model):
    assert (
        load_record(all_runs["fast"], model)["test_accuracy"] > load_record(all_runs["paper"], model)["test_accuracy"]
    )


def test_paper_preset_is_the_published_models():
    svm = build("svm", settings("svm", "paper")).named_steps["model"]
    assert type(svm) is SVC  # plain scikit-learn, SVC() defaults apart from the cache size
    expected = SVC().get_params() | {"cache_size": 200, "random_state": 0}
    assert svm.get_params() == expected
    knn = build("knn", settings("knn", "paper"))
    assert list(knn.named_steps) == ["scale", "model"]  # raw pixels / 255, nothing else
    assert knn.named_steps["model"].get_params()["n_neighbors"] == 3
    dt = build("dt", settings("dt", "paper")).named_steps["model"]
    assert type(dt).__name__ == "DecisionTreeClassifier" and dt.max_depth == 16


def test_same_seed_same_results_and_seeds_matter(full_mnist, tmp_path, capsys):
    args = ["--algo", "rf", "--train-size", 1000, "--test-size", 300, "--n-estimators", 20]
    preds = []
    for i, seed in enumerate((3, 3, 4)):
        code, out, _ = run(capsys, full_mnist[0], tmp_path / str(i), *args, "--seed", seed)
        assert code == 0 and "rf: test accuracy" in out
        preds.append(load_record(tmp_path / str(i), "rf")["predictions"])
    assert preds[0] == preds[1]
    assert preds[0] != preds[2]  # the seed reaches the forest's random_state


def test_several_seeds_are_merged(full_mnist, tmp_path, capsys):
    args = ["--algo", "dt", "--train-size", 1000, "--test-size", 300, "--seed", 5, "--seeds", 2, "--max-depth", 8]
    assert run(capsys, full_mnist[0], tmp_path, *args)[0] == 0
    rec = load_record(tmp_path, "dt")
    assert rec["seeds"] == [5, 6] and [r["seed"] for r in rec["runs"]] == [5, 6]
    accs = [r["test_accuracy"] for r in rec["runs"]]
    assert rec["test_accuracy"] == pytest.approx(np.mean(accs))
    assert rec["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))


def test_random_subset_is_recorded_so_it_can_be_rebuilt(full_mnist, tmp_path, capsys):
    args = ["--algo", "knn", "--train-size", 1000, "--test-size", 200, "--random-subset", "--seed", 7]
    assert run(capsys, full_mnist[0], tmp_path, *args)[0] == 0
    rec = load_record(tmp_path, "knn")
    config = rec["config"]
    _, y = load_split("test", data_dir=full_mnist[0], size=200, random=True, seed=config["subset_seed"])
    assert config["random_subset"] is True
    assert rec["test_accuracy"] == pytest.approx(np.mean(np.array(rec["predictions"]) == y))
    assert rec["test_accuracy"] > 0.85  # predictions line up with the rebuilt subset, not the first 200


def test_validation_run_never_touches_the_test_set(full_mnist, tmp_path, capsys, monkeypatch):
    import data_prep

    real = data_prep.load_split

    def train_only(split, *a, **k):
        assert split == "train", "a validation run loaded the test split"
        return real(split, *a, **k)

    monkeypatch.setattr(data_prep, "load_split", train_only)
    code, out, _ = run(capsys, full_mnist[0], tmp_path, "--algo", "knn", "--train-size", 1500, "--val-size", 500)
    assert code == 0 and "knn: val accuracy" in out
    rec = json.loads((tmp_path / "results" / "knn_val.json").read_text())
    assert (rec["n_train"], rec["n_val"]) == (1000, 500) and rec["val_accuracy"] > 0.85
    assert "test_accuracy" not in rec and not (tmp_path / "results" / "knn.json").exists()


def test_falls_back_to_scikit_learn_without_intelex(full_mnist, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Classifier, "intelex_available", lambda: False)
    assert run(capsys, full_mnist[0], tmp_path, "--algo", "svm", "--train-size", 500, "--test-size", 100)[0] == 0
    assert load_record(tmp_path, "svm")["config"]["engine"] == "sklearn"
    code, _, err = run(capsys, full_mnist[0], tmp_path / "x", "--algo", "svm", "--engine", "sklearnex")
    assert code == 1 and "scikit-learn-intelex is not installed" in err


def test_deskew_straightens_and_centres_digits(full_mnist):
    x, _ = load_split("train", data_dir=full_mnist[0], size=300)
    _, _, slant = pixel_moments(x)
    rows, cols, slant_after = pixel_moments(deskew(x))
    assert np.abs(slant).mean() > 0.1 and np.abs(slant_after).mean() < 0.005 and np.abs(slant_after).max() < 0.05
    assert np.abs(rows - 14).max() < 0.5 and np.abs(cols - 14).max() < 0.5
    blank = deskew(np.zeros((2, 28, 28), np.uint8))
    assert blank.shape == (2, 784) and not blank.any()


# ---------------------------------------------------------------- bad input
BAD = [
    (["--algo", "knn", "--k", "0"], "--k must be at least 1"),
    (["--algo", "svm", "--C", "-1"], "--C must be greater than 0"),
    (["--algo", "all", "--C", "0"], "--C must be greater than 0"),
    (["--algo", "svm", "--gamma", "wide"], "--gamma must be scale, auto or a number"),
    (["--algo", "knn", "--weights", "far"], "--weights must be one of uniform, distance"),
    (["--algo", "dt", "--criterion", "best"], "--criterion must be one of"),
    (["--algo", "rf", "--n-estimators", "0"], "--n-estimators must be at least 1"),
    (["--algo", "knn", "--pca", "1000"], "exceeds the 784 pixels"),
    (["--algo", "pca-svm", "--pca", "0"], "pca-svm needs --pca N"),
    (["--algo", "knn", "--train-size", "70000"], "asked for 70000 images but the mnist train split has 60000"),
    (["--algo", "knn", "--train-size", "100", "--val-size", "100"], "--val-size 100 leaves no training images"),
    (["--algo", "knn", "--train-size", "5", "--pca", "0", "--k", "6"], "--k 6 exceeds the 5 training images"),
    (["--algo", "svm", "--k", "0"], "--k must be at least 1"),
    (["--algo", "svm", "--k", "5"], "--k does not apply to svm; it is for knn"),
    (["--algo", "knn", "--dtype", "float16"], "--dtype must be one of float32, float64"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_fails_cleanly(full_mnist, tmp_path, capsys, monkeypatch, args, message):
    fitted = []
    monkeypatch.setattr(Classifier, "build", lambda *a, **k: fitted.append(a))
    code, _, err = run(capsys, full_mnist[0], tmp_path, *args)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not fitted  # rejected before any model was built or fitted
    assert not list(tmp_path.rglob("*.json"))


def test_hyperparameters_are_checked_before_the_data_is_loaded(full_mnist, tmp_path, capsys, monkeypatch):
    import data_prep

    monkeypatch.setattr(data_prep, "load_split", lambda *a, **k: pytest.fail("data loaded before validation"))
    code, _, err = run(capsys, full_mnist[0], tmp_path, "--algo", "all", "--k", "-3")
    assert code == 1 and "--k must be at least 1" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--algo", "nope"],
        ["--test-size", "0"],
        ["--seeds", "0"],
        ["--k", "three"],
        ["--preset", "slow"],
        ["--seed", "-2"],
    ],
)
def test_malformed_arguments_exit_2(full_mnist, tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exc:
        run(capsys, full_mnist[0], tmp_path, *args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))


def test_unwritable_results_folder(full_mnist, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    code, _, err = run(capsys, full_mnist[0], tmp_path, "--algo", "knn", "--train-size", 100, "--test-size", 50)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "cannot write to" in err and "choose a writable folder" in err
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "plots").exists()


def test_paper_preset_writes_beside_the_tuned_results(full_mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default folders are relative to where the command runs
    for preset in ("fast", "paper"):
        argv = ["--algo", "knn", "--preset", preset, "--data-dir", full_mnist[0], "--train-size", 500,
                "--test-size", 100]  # fmt: skip
        assert ml_main.main([str(a) for a in argv]) == 0
    tuned, paper = (
        json.loads(p.read_text()) for p in (tmp_path / "results/knn.json", tmp_path / "results/paper/knn.json")
    )
    assert tuned["config"]["preset"] == "fast" and paper["config"]["preset"] == "paper"
    assert (tmp_path / "plots/confusion_knn.png").exists() and (tmp_path / "plots/paper/confusion_knn.png").exists()
