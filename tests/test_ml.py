"""Classical models on small slices of the real MNIST: accuracy floors, results schema, outputs, seeds, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.svm import SVC

import Classifier
import dl_main
import ml_main
import mnistlab.svc as svc
import predict
import report
from Classifier import build, members, settings
from conftest import output_flags
from mnistlab.data import load_split
from mnistlab.features import deskew, pixel_moments

TRAIN, TEST = 2000, 500
# Accuracy on the first 500 test images after fitting the first 2000 training images (chance: 10%).
# The floors sit a few points under what each model scores, so a real regression fails them.
FLOORS = {
    "tuned": {"knn": 0.90, "dt": 0.72, "svm": 0.94, "logreg": 0.88, "pca-svm": 0.93, "rf": 0.90},
    "paper": {"knn": 0.84, "dt": 0.66, "svm": 0.90, "logreg": 0.84, "pca-svm": 0.90, "rf": 0.88},
}
RECORD_KEYS = {
    "model",
    "name",
    "dataset",
    "accuracy",
    "split",
    "n_train",
    "n_eval",
    "seconds_fit",
    "seconds_predict",
    "config",
    "seed",
    "versions",
    "predictions",
    "labels",
    "classes",
    "per_class",
    "runs",
    "accuracy_std",
    "seeds",
    "estimator",
    "accuracy_mean",
    "history",
}


def run(capsys, data_dir, out, *args):
    """Run ml_main's CLI on the test data; return (exit code, stdout, stderr)."""
    argv = ["--data-dir", data_dir, *output_flags(out, "results", "plots", "ckpt"), *args]
    try:
        code = ml_main.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusing a flag's value
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def all_runs(full_mnist, tmp_path_factory):
    """Every registered model under both recipes, fitted once on the small slice."""
    outs = {}
    for recipe in FLOORS:
        out = tmp_path_factory.mktemp(recipe)
        argv = ["--algo", "all", "--recipe", recipe, "--train-size", TRAIN, "--test-size", TEST]
        argv += ["--data-dir", full_mnist[0], *output_flags(out, "results", "plots", "ckpt")]
        assert ml_main.main([str(a) for a in argv]) == 0
        outs[recipe] = out
    return outs


EXPECTED = json.loads((Path(__file__).with_name("expected_predictions.json")).read_text())


@pytest.mark.parametrize("algo", sorted(EXPECTED["runs"]))
def test_pinned_versions_reproduce_the_recorded_predictions(all_runs, algo):
    """A fresh install on the pinned versions gives exactly these predictions; a changed library shows here."""
    rec, expected = load_record(all_runs["paper"], algo), EXPECTED["runs"][algo]
    digest = hashlib.sha256(json.dumps(rec["predictions"]).encode()).hexdigest()
    here = {k: rec["versions"].get(k) for k in EXPECTED["versions"] if k != "python"}
    assert (rec["accuracy"], digest) == (expected["accuracy"], expected["sha256"]), (
        f"{algo}: not the recorded predictions; recorded with {EXPECTED['versions']}, here {here}"
    )


def load_record(out, model):
    """The one record of ``model`` (its name carries the recipe and every setting given explicitly)."""
    found = [
        p
        for p in (out / "results" / "mnist").glob(f"{model}-*.json")
        if not p.name.startswith("pca-") or model == "pca-svm"
    ]
    found = [p for p in found if model == "svm" or not p.name.startswith("svm")]
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


@pytest.mark.parametrize(("recipe", "model"), [(r, m) for r in FLOORS for m in members(r)])
def test_each_model_beats_its_floor_and_follows_the_schema(all_runs, full_mnist, recipe, model):
    rec = load_record(all_runs[recipe], model)
    assert RECORD_KEYS <= rec.keys()
    assert rec["model"] == model and rec["dataset"] == "mnist" and rec["seed"] == 0 and rec["seeds"] == [0]
    assert (rec["n_train"], rec["n_eval"]) == (TRAIN, TEST)
    assert rec["accuracy"] >= FLOORS[recipe][model], rec["accuracy"]
    _, y_test = load_split("test", data_dir=full_mnist[0], size=TEST)
    assert len(rec["predictions"]) == TEST
    assert rec["accuracy"] == pytest.approx(np.mean(np.array(rec["predictions"]) == y_test))
    config = rec["config"]
    assert config["recipe"] == recipe and config["algo"] == model
    assert (config["train_size"], config["test_size"]) == (TRAIN, TEST)
    assert config["engine"] == "sklearn" and rec["estimator"].startswith("sklearn.")  # the default engine
    assert set(settings(model, recipe)) <= config.keys()  # every resolved hyperparameter is recorded
    assert rec["seconds_fit"] > 0 and rec["seconds_predict"] > 0
    assert rec["versions"]["scikit-learn"] and rec["accuracy_std"] is None
    assert list(rec["per_class"]) == [str(d) for d in range(10)]
    recall_3 = np.mean(np.array(rec["predictions"])[y_test == 3] == 3)
    assert rec["per_class"]["3"]["recall"] == pytest.approx(recall_3)
    assert rec["per_class"]["3"]["support"] == int(np.sum(y_test == 3))


@pytest.mark.parametrize("model", members("tuned"))
def test_confusion_matrix_and_fitted_model_are_written(all_runs, model):
    out = all_runs["tuned"]
    name = load_record(out, model)["name"]
    png = out / "plots" / "mnist" / f"confusion_{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (out / "ckpt" / "mnist" / f"{name}.skops").stat().st_size > 0
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name]
    assert not leftovers


@pytest.mark.parametrize("model", ["knn", "svm"])
def test_tuned_recipe_beats_the_published_settings(all_runs, model):
    assert load_record(all_runs["tuned"], model)["accuracy"] > load_record(all_runs["paper"], model)["accuracy"]


def test_paper_recipe_is_the_published_models():
    svm = build("svm", settings("svm", "paper")).named_steps["model"]
    assert type(svm) is SVC  # plain scikit-learn, SVC() defaults apart from the cache size
    expected = SVC().get_params() | {"cache_size": 200, "random_state": 0}
    assert svm.get_params() == expected
    knn = build("knn", settings("knn", "paper"))
    assert list(knn.named_steps) == ["scale", "model"]  # raw pixels / 255, nothing else
    assert knn.named_steps["model"].get_params()["n_neighbors"] == 3
    dt = build("dt", settings("dt", "paper")).named_steps["model"]
    assert type(dt).__name__ == "DecisionTreeClassifier" and dt.max_depth == 16


@pytest.mark.slow
def test_same_seed_same_results_and_seeds_matter(full_mnist, tmp_path, capsys):
    args = ["--algo", "rf", "--train-size", 1000, "--test-size", 300, "--n-estimators", 20]
    preds = []
    for i, seed in enumerate((3, 3, 4)):
        code, out, _ = run(capsys, full_mnist[0], tmp_path / str(i), *args, "--seed", seed)
        assert code == 0 and "test accuracy" in out
        preds.append(load_record(tmp_path / str(i), "rf")["predictions"])
    assert preds[0] == preds[1]
    assert preds[0] != preds[2]  # the seed reaches the forest's random_state


@pytest.mark.slow
def test_several_seeds_are_merged(full_mnist, tmp_path, capsys):
    args = ["--algo", "dt", "--train-size", 1000, "--test-size", 300, "--seed", 5, "--seeds", 2, "--max-depth", 8]
    assert run(capsys, full_mnist[0], tmp_path, *args)[0] == 0
    rec = load_record(tmp_path, "dt")
    assert rec["seeds"] == [5, 6] and [r["seed"] for r in rec["runs"]] == [5, 6]
    accs = [r["accuracy"] for r in rec["runs"]]
    assert rec["accuracy_mean"] == pytest.approx(np.mean(accs)) and rec["accuracy"] == accs[0]  # seed 5's own
    assert rec["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    labels = np.array(rec["labels"])
    for r in [rec, *rec["runs"]]:  # each seed's predictions score its own accuracy
        assert r["accuracy"] == pytest.approx(np.mean(np.array(r["predictions"]) == labels))


def test_record_is_self_contained(all_runs, full_mnist):
    rec = load_record(all_runs["paper"], "knn")
    _, y = load_split("test", data_dir=full_mnist[0], size=TEST)
    assert rec["labels"] == y.tolist() and rec["classes"] == [str(i) for i in range(10)]
    assert rec["accuracy"] == pytest.approx(np.mean(np.array(rec["predictions"]) == y))


def test_validation_run_never_touches_the_test_set(full_mnist, tmp_path, capsys, no_test_split):
    code, out, _ = run(capsys, full_mnist[0], tmp_path, "--algo", "knn", "--train-size", 1000, "--val-size", 500)
    assert code == 0 and "val accuracy" in out
    rec = load_record(tmp_path, "knn")
    assert rec["name"].endswith("-val") and rec["split"] == "val"
    assert (rec["n_train"], rec["n_eval"]) == (1000, 500) and rec["accuracy"] > 0.85


def test_sklearnex_engine_is_an_option_that_saves_no_model(full_mnist, tmp_path, capsys, monkeypatch):
    import builtins

    pytest.importorskip("sklearnex", reason="scikit-learn-intelex is not installed (it is x86-64 only)")
    code, out, _ = run(
        capsys,
        full_mnist[0],
        tmp_path,
        "--algo",
        "svm",
        "--engine",
        "sklearnex",
        "--train-size",
        500,
        "--test-size",
        100,
    )
    rec = load_record(tmp_path, "svm")
    assert code == 0 and rec["estimator"].startswith("sklearnex.") and "no .skops model is saved" in out
    assert not list((tmp_path / "ckpt").rglob("*.skops"))
    from sklearn import svm

    assert svm.SVC.__module__.startswith("sklearn.")  # unpatched again afterwards
    real_import = builtins.__import__

    def no_intelex(name, *args, **kwargs):
        if name.startswith("sklearnex"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_intelex)
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
    (["--algo", "knn", "--k", "0"], "argument --k: must be > 0"),
    (["--algo", "svm", "--C", "-1"], "argument --C: must be > 0"),
    (["--algo", "all", "--C", "0"], "argument --C: must be > 0"),
    (["--algo", "svm", "--gamma", "wide"], "argument --gamma: invalid gamma_type value"),
    (["--algo", "knn", "--weights", "far"], "argument --weights: invalid choice"),
    (["--algo", "dt", "--criterion", "best"], "argument --criterion: invalid choice"),
    (["--algo", "rf", "--n-estimators", "0"], "argument --n-estimators: must be > 0"),
    (["--algo", "knn", "--features", "pixels", "--pca", "1000"], "exceeds the 784 pixels"),
    (["--algo", "pca-svm", "--pca", "0"], "pca-svm needs --pca N"),
    (["--algo", "knn", "--train-size", "70000"], "--train-size 70000: only 60000 training images are left"),
    (["--algo", "knn", "--val-size", "60000"], "--val-size 60000 leaves none of the 60000 training images"),
    (["--algo", "knn", "--train-size", "59950", "--val-size", "100"], "only 59900 training images are left"),
    (["--algo", "svm", "--train-size", "1"], "hold a single class"),
    (["--algo", "svm", "--threads", "4096"], "cores are usable here"),
    (["--algo", "knn", "--train-size", "5", "--pca", "0", "--k", "6"], "--k 6 exceeds the 5 training images"),
    (["--algo", "svm", "--k", "0"], "argument --k: must be > 0"),
    (["--algo", "svm", "--k", "5"], "--k does not apply to svm; it is for knn"),
    (["--algo", "knn", "--dtype", "float16"], "argument --dtype: invalid choice"),
]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "Big Name"])
def test_dataset_names_cannot_lead_out_of_their_folders(capsys, name):
    """The name becomes a folder under data/, results/, plots/ and checkpoints/: only letters, digits, dashes."""
    for main in (ml_main.main, dl_main.main, report.main, predict.main):
        extra = ["x.png"] if main is predict.main else []
        with pytest.raises(SystemExit) as exit_:
            main([*extra, "--dataset", name])
        assert exit_.value.code == 2 and "use lower-case letters, digits and dashes" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_fails_cleanly(full_mnist, tmp_path, capsys, monkeypatch, args, message):
    fitted = []
    monkeypatch.setattr(Classifier, "build", lambda *a, **k: fitted.append(a))
    code, _, err = run(capsys, full_mnist[0], tmp_path, *args)
    assert code == (2 if "argument" in message else 1)  # argparse's own exit code for a bad flag value
    assert err.strip().splitlines()[-1].endswith(message) or message in err.strip().splitlines()[-1], err
    assert not fitted  # rejected before any model was built or fitted
    assert not list(tmp_path.rglob("*.json"))


def test_hyperparameters_are_checked_before_the_data_is_loaded(full_mnist, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ml_main, "load_splits", lambda *a, **k: pytest.fail("data loaded before validation"))
    code, _, err = run(capsys, full_mnist[0], tmp_path, "--algo", "all", "--k", "-3")
    assert code == 2 and "argument --k: must be > 0" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--algo", "nope"],
        ["--test-size", "0"],
        ["--seeds", "0"],
        ["--k", "three"],
        ["--recipe", "slow"],
        ["--seed", "-2"],
    ],
)
def test_malformed_arguments_exit_2(full_mnist, tmp_path, capsys, args):
    code, _, err = run(capsys, full_mnist[0], tmp_path, *args)
    assert code == 2
    assert "error:" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))


def test_unwritable_results_folder(full_mnist, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    code, _, err = run(capsys, full_mnist[0], tmp_path, "--algo", "knn", "--train-size", 100, "--test-size", 50)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "cannot write to" in err and "choose a writable folder" in err
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "plots").exists()


@pytest.mark.slow
def test_recipes_and_settings_never_overwrite_each_other(full_mnist, tmp_path, capsys):
    for flags in (["--recipe", "tuned"], ["--recipe", "paper"], ["--recipe", "paper", "--k", "5"]):
        code, _, _ = run(
            capsys, full_mnist[0], tmp_path, "--algo", "knn", "--train-size", 500, "--test-size", 100, *flags
        )
        assert code == 0
    names = sorted(p.stem for p in (tmp_path / "results" / "mnist").glob("*.json"))
    assert names == [
        "knn-paper-k5-test_size100-train_size500",
        "knn-paper-test_size100-train_size500",
        "knn-tuned-test_size100-train_size500",
    ]
    assert len(list((tmp_path / "ckpt" / "mnist").glob("knn-*.skops"))) == 3
    assert len(list((tmp_path / "plots" / "mnist").glob("confusion_knn-*.png"))) == 3


def test_scores_and_confusion_agree_with_scikit_learn():
    """The per-class scores (a class never predicted and one never present included) and the drawn cells of a
    record's confusion matrix are scikit-learn's own, passed through as they are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import classification_report, confusion_matrix

    from mnistlab.plots import draw_confusion
    from mnistlab.records import per_class_scores

    rng = np.random.default_rng(0)
    classes = [str(c) for c in range(6)]
    y_true = rng.integers(0, 5, 300)  # class 5 never present
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 6, 300))
    y_pred[y_pred == 2] = 3  # class 2 never predicted
    expected = confusion_matrix(y_true, y_pred, labels=range(6))
    report = classification_report(
        y_true, y_pred, labels=range(6), target_names=classes, output_dict=True, zero_division=0
    )
    scores = per_class_scores(y_true, y_pred, classes)
    for name in classes:
        row = report[name]
        assert scores[name] == pytest.approx(
            {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"], "support": row["support"]}
        )
    assert scores["2"]["precision"] == 0 and scores["5"]["support"] == 0
    fig, ax = plt.subplots()
    draw_confusion(ax, y_true, y_pred, classes, "t")
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert cells == {(i, j): expected[i, j] for i in range(6) for j in range(6)}
    assert [t.get_text() for t in ax.get_yticklabels()] == classes and ax.get_ylabel() == "True label"
    plt.close(fig)


@pytest.mark.parametrize("classes", [[str(c) for c in range(10)], ["T-shirt/top", "Trouser", "Ankle boot"]])
def test_a_runs_figures_keep_their_size_with_a_long_title_and_plain_loss_labels(tmp_path, monkeypatch, classes):
    """A run's two figures are laid out by fixed margins (saved without a second, measuring drawing): their size
    is fixed, a long run name wraps inside the figure instead of widening it, and the loss axis is labelled as
    plain numbers."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from mnistlab import plots

    name = "cnn-fast-batch_size64-epochs1-test_size1000-train_size10000-width16-threads1-seed3-" + "x" * 40
    rng = np.random.default_rng(0)
    y = rng.integers(0, len(classes), 500)
    plots.plot_confusion(y, np.where(rng.random(500) < 0.8, y, 0), classes, tmp_path / "c.png", f"{name}: 80.00%")
    history = {"train": [{"step": 20 * i, "loss": 2.3 / (i + 1), "accuracy": 0.9} for i in range(1, 200)]}
    history["test"] = [{"step": 2000, "loss": 0.05, "accuracy": 0.98}]
    kept = []
    save = plots.savefig
    monkeypatch.setattr(plots, "savefig", lambda fig, path, tight=True: kept.append(fig) or save(fig, path, tight))
    plots.plot_curves(history, tmp_path / "curves.png", f"{name} (seed 0) on mnist")
    for png, size in (("c.png", (700, 600)), ("curves.png", (1200, 420))):
        with Image.open(tmp_path / png) as img:
            assert img.size == size, png
    fig = kept[0]
    assert next(t for t in fig.texts if t.get_text().startswith("cnn-fast")).get_wrap()  # wrapped at the edge
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and all("$" not in t and float(t) > 0 for t in labels), labels  # 0.05, 0.1 ...: no mathtext
    plt.close(fig)
    narrow = {
        "train": [{"step": 20, "loss": 1.25, "accuracy": 0.6}],
        "test": [{"step": 24, "loss": 0.73, "accuracy": 0.7}],
    }
    plots.plot_curves(narrow, tmp_path / "narrow.png", "a short run")  # within a decade: more than the 1 labelled
    ax = kept[1].axes[0]
    low, high = ax.get_ylim()
    ticks = [t for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if low <= t.get_position()[1] <= high]
    labelled = {float(t.get_text()) for t in ticks if t.get_text()}  # matplotlib 3.10 also labels 1.1 and 1.2
    assert {0.8, 0.9, 1.0} <= labelled, labelled  # within a decade the minor ticks are labelled too
    plt.close(kept[1])


@pytest.mark.parametrize(
    ("algo", "recipe"), [("svm", "paper"), ("svm", "tuned"), ("pca-svm", "paper"), ("knn", "tuned")]
)
def test_an_svc_predicts_with_matrix_products_and_libsvms_labels(full_mnist, monkeypatch, algo, recipe):
    """ml_main fits a scikit-learn RBF SVC as Pipeline.fit does and predicts it with matrix products (mnistlab/svc.py):
    its decision values are libsvm's (SVC.decision_function) to rounding, its labels are SVC.predict's, and libsvm
    is asked only for the images whose vote rounding could turn; other models predict as they do."""
    x, y = load_split("train", data_dir=full_mnist[0], size=700)
    model, reference = build(algo, settings(algo, recipe)), build(algo, settings(algo, recipe)).fit(x[:500], y[:500])
    gamma = ml_main.fit(model, x[:500], y[:500])
    whole, calls, final = reference.predict(x[500:]), [], model[-1]
    final.predict = lambda part, predict=final.predict: calls.append(len(part)) or predict(part)
    assert np.array_equal(ml_main.predict(model, x[500:], gamma), whole)
    if algo == "knn":
        assert gamma is None and calls == [200]
        return
    assert calls == [] and np.array_equal(final.dual_coef_, reference[-1].dual_coef_)  # fitted as Pipeline.fit does
    features = model[:-1].transform(x[500:])
    final.set_params(decision_function_shape="ovo")
    assert np.allclose(svc.decision_values(final, features, gamma), final.decision_function(features), atol=1e-12)
    monkeypatch.setattr(svc, "TOLERANCE", np.inf)  # every vote in doubt: libsvm labels every image, the same way
    assert np.array_equal(ml_main.predict(model, x[500:], gamma), whole) and calls == [200]
