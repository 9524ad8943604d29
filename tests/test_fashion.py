"""Fashion-MNIST against its own published table, on small slices of the real files in ../shared/fashion-mnist.

A user's clone has no ../shared: these tests then skip, saying why. The settings and published-table tests
need no data and always run.
"""

from __future__ import annotations

import warnings

import matplotlib
import pytest
import torch

import Classifier
import dl_main
import experiment
import ml_main
import mnistlab.augment as augment
import mnistlab.published as published
import report
from data_prep import prepare
from mnistlab.data import load_split
from mnistlab.datasets import known_classes
from mnistlab.paths import REPO
from mnistlab.saved_models import load_classical, save_classical

SHARED = REPO.parent / "shared" / "fashion-mnist"
needs_files = pytest.mark.skipif(not SHARED.is_dir(), reason=f"the Fashion-MNIST files are not at {SHARED}")
CLASSES = known_classes("fashion-mnist")


# ---------------------------------------------------------------- settings (no data)
def final(pipeline):
    return pipeline.steps[-1][1]


def test_benchmark_family_builds_the_published_settings():
    """Each model of Xiao et al.'s Table 3 with its best setting, after a StandardScaler, as its runner did."""
    built = {a: Classifier.build(a, Classifier.settings(a, "benchmark")) for a in Classifier.members("benchmark")}
    published_rows = set(published.TABLES["fashion-mnist"].rows) - {"cnn"}
    assert set(built) == {"svm", "gb", "rf", "sk-mlp", "knn", "logreg", "dt"} == published_rows
    for name, pipe in built.items():
        assert type(pipe.named_steps["standardize"]).__name__ == "StandardScaler", name
        assert "deskew" not in pipe.named_steps and "pca" not in pipe.named_steps, name
    expected = {
        "svm": {"C": 10.0, "gamma": "auto", "kernel": "rbf"},
        "rf": {"n_estimators": 100, "criterion": "entropy", "max_depth": 100},
        "knn": {"n_neighbors": 5, "weights": "distance", "p": 1},
        "dt": {"criterion": "entropy", "max_depth": 10},
        "gb": {"max_iter": 100, "max_depth": 10, "learning_rate": 0.1, "early_stopping": False, "max_leaf_nodes": 31},
        "sk-mlp": {"hidden_layer_sizes": (100,), "activation": "relu", "solver": "adam"},
    }
    for name, params in expected.items():
        got = final(built[name]).get_params()
        assert {k: got[k] for k in params} == params, name
    ovr = final(built["logreg"])
    assert type(ovr).__name__ == "OneVsRestClassifier"
    binary = ovr.estimator.get_params()
    assert (binary["C"], binary["l1_ratio"], binary["solver"]) == (1.0, 1.0, "liblinear")


def test_families_and_datasets():
    """gb and sk-mlp belong to the benchmark only; tuned settings follow the dataset (MNIST's for others)."""
    assert "gb" not in Classifier.members("paper") and "gb" not in Classifier.members("tuned")
    with pytest.raises(Exception, match="gb has no paper settings; use --recipe benchmark"):
        Classifier.settings("gb", "paper")
    assert Classifier.settings("svm", "tuned", dataset="kmnist") == Classifier.settings("svm", "tuned")
    tuned = Classifier.members("tuned")
    assert all(Classifier.settings(a, "tuned")["deskew"] for a in tuned)  # digits: validation chose deskewing
    assert not any(Classifier.settings(a, "tuned", dataset="fashion-mnist")["deskew"] for a in tuned)  # clothes: not
    assert Classifier.settings("svm", "tuned", dataset="fashion-mnist")["gamma"] == 0.02
    assert ml_main.make_configs(["--algo", "all", "--recipe", "benchmark"])[0]["scaler"] == "standard"
    assert [c["algo"] for c in ml_main.make_configs(["--algo", "all", "--recipe", "paper"])] == Classifier.members(
        "paper"
    )


def test_network_targets_follow_the_dataset():
    config = dl_main.make_config(["--model", "cnn", "--recipe", "fast", "--dataset", "fashion-mnist"])
    assert config["target"] == 0.92
    assert dl_main.make_config(["--model", "cnn", "--recipe", "best", "--dataset", "fashion-mnist"])["target"] == 0.945
    assert dl_main.make_config(["--model", "cnn", "--recipe", "fast"])["target"] == 0.99
    assert dl_main.make_config(["--model", "cnn", "--recipe", "fast", "--dataset", "kmnist"])["target"] is None


def test_experiment_runs_each_dataset_against_its_own_table(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "usable_cores", lambda: 1)  # one step after another, each its own title

    def titles(argv):
        return [title for title, _ in experiment.plan(experiment.parse_args(argv + ["--data-dir", str(tmp_path)]), 0)]

    fashion = titles(["--dataset", "fashion-mnist"])
    assert fashion[1:5] == [
        "classical models, benchmark settings",
        "classical models, tuned settings",
        "network mlp, fast recipe",
        "network cnn, fast recipe",
    ]
    assert titles([])[1] == "classical models, paper settings"  # MNIST: the write-up's
    assert titles(["--dataset", "kmnist"])[1] == "classical models, paper settings"


def test_kmnist_rows_get_kmnist_figures():
    record = {"model": "knn", "name": "knn-paper", "dataset": "kmnist", "accuracy": 0.9, "config": {"recipe": "paper"}}
    row = report.table_rows([record], "kmnist")[0]
    assert row["published"] == 0.9156 and "4-nearest" in row["notes"]
    assert "PreActResNet-18 97.82%" in report.published_note("kmnist")
    assert report.table_rows([{**record, "dataset": "x"}], "x")[0]["published"] is None
    assert "No published figures" in report.published_note("x")


# ---------------------------------------------------------------- real Fashion-MNIST slices
@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """The real Fashion-MNIST prepared from ../shared; three models run on its first 1000/200 images."""
    if not SHARED.is_dir():
        pytest.skip(f"the Fashion-MNIST files are not at {SHARED}")
    root = tmp_path_factory.mktemp("fashion")
    prepare("fashion-mnist", source=SHARED, data_dir=root / "data", plots_dir=root, write_json_files=False, quiet=True)
    dirs = [f"--{name}-dir={root / name}" for name in ("data", "results", "plots", "checkpoint")]
    common = ["--dataset", "fashion-mnist", "--train-size", "1000", "--test-size", "200", *dirs]
    for argv in (
        ["--algo", "svm", "--recipe", "benchmark"],
        ["--algo", "knn", "--recipe", "benchmark"],
        ["--algo", "svm"],
    ):
        assert ml_main.main(argv + common) == 0
    return root


@needs_files
def test_fashion_runs_are_compared_with_fashion_figures(fashion):
    records = report.load_results(fashion / "results", "fashion-mnist")
    rows = {r["setting"].split("-")[0] + ":" + r["model"]: r for r in report.table_rows(records, "fashion-mnist")}
    assert rows["benchmark:svm"]["published"] == 0.897 and "C=10" in rows["benchmark:svm"]["notes"]
    assert rows["benchmark:knn"]["published"] == 0.854 and "p=1" in rows["benchmark:knn"]["notes"]
    assert rows["tuned:svm"]["published"] == 0.897 and "tuned for fashion-mnist" in rows["tuned:svm"]["notes"]
    assert records[0]["classes"] == CLASSES
    assert 0.6 < rows["benchmark:svm"]["this_repo"] < 1
    pipeline, meta = load_classical(fashion / "checkpoint" / "fashion-mnist" / f"{records[0]['name']}.skops")
    assert meta["classes"] == CLASSES and type(pipeline.steps[-1][1]).__name__ in ("SVC", "OneVsRestClassifier")


@needs_files
def test_class_names_reach_every_figure(fashion, monkeypatch):
    drawn = {}

    def keep(fig, path):
        drawn[path.name] = fig

    monkeypatch.setattr(report, "savefig", keep)
    monkeypatch.setattr("mnistlab.plots.savefig", keep)
    table = report.make_report("fashion-mnist", fashion / "data", fashion / "results", fashion / "plots")
    assert "| svm | benchmark-test_size200-train_size1000 | pixels | 89.70% |" in table
    assert "Xiao, Rasul & Vollgraf (2017)" in table
    assert "human 83.50%" in table
    grid = drawn["confusion_matrices.png"].axes[0]
    assert [t.get_text() for t in grid.get_xticklabels()] == CLASSES
    assert [t.get_text() for t in grid.get_yticklabels()] == CLASSES
    titles = [ax.get_title() for ax in drawn["misclassified.png"].axes if ax.get_title()]
    pairs = [t.replace("\n", "").split("→") for t in titles]  # true (new line) →predicted
    assert pairs and all(true in CLASSES and pred in CLASSES and true != pred for true, pred in pairs)
    comparison = drawn["comparison.png"].axes[0]
    assert comparison.get_xscale() == "log"  # test errors
    assert any(line.get_xdata()[0] == pytest.approx(16.5) for line in comparison.get_lines())  # human: 83.5%
    labels = [t.get_text() for t in comparison.get_yticklabels()]
    rows = report.table_rows(report.load_results(fashion / "results", "fashion-mnist"), "fashion-mnist")
    fewest_errors_first = sorted(rows, key=lambda r: -r["this_repo"])
    assert labels == [f"{r['model']} ({r['setting']})" for r in fewest_errors_first]
    for fig in drawn.values():
        matplotlib.pyplot.close(fig)


def test_flip_mirrors_about_half_the_batch():
    """The clothes augmentation: each image left as it is or mirrored left-right, nothing else (at a strength
    that leaves the always-applied affine map at the identity)."""
    x = torch.rand(200, 1, 28, 28)
    out = augment.distort(x, strength=1e-9, kinds="flip", generator=torch.Generator().manual_seed(0))
    same = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-4
    mirrored = (out - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert bool((same ^ mirrored).all()) and 70 < int(mirrored.sum()) < 130


@pytest.mark.slow
def test_benchmark_models_save_and_load_through_the_trusted_list(full_mnist, tmp_path):
    """gb, sk-mlp and the one-vs-rest l1 logreg hold types of their own (binners, optimisers, RNG states):
    each is saved as .skops and loaded back through inference.TRUSTED, predicting as the fitted pipeline."""
    x, y = load_split("train", data_dir=full_mnist[0], size=300)
    quick = {"gb": {"n_estimators": 2}, "sk-mlp": {"max_iter": 5}, "logreg": {}}
    for algo, overrides in quick.items():
        pipe = Classifier.build(algo, Classifier.settings(algo, "benchmark", overrides), threads=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # five epochs do not converge, as intended
            pipe.fit(x, y)
        path = save_classical(pipe, tmp_path / f"{algo}.skops", {"model": algo, "classes": list("0123456789")}, x[:50])
        loaded, meta = load_classical(path)
        assert meta["model"] == algo and (loaded.predict(x) == pipe.predict(x)).all()
