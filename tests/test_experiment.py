"""The whole experiment on another MNIST-format dataset, the report, and predict.py end to end."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import experiment
import predict
import report
from conftest import write_source
from mnistlab.data import load_split
from mnistlab.files import read_json
from mnistlab.images import write_photos


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory, full_mnist):
    """experiment.py --fast on a small real dataset given with --source, named tdigits (a dataset of its own).

    The images are real MNIST digits (no Fashion-MNIST copy is reachable offline), transposed so
    the folder is a dataset of its own; the name gives it Fashion-MNIST's class names.
    """
    root = tmp_path_factory.mktemp("exp")
    x_train, y_train = load_split("train", data_dir=full_mnist[0], size=2000)
    x_test, y_test = load_split("test", data_dir=full_mnist[0], size=300)
    arrays = {
        "x_train": x_train.transpose(0, 2, 1),
        "y_train": y_train,
        "x_test": x_test.transpose(0, 2, 1),
        "y_test": y_test,
    }
    source = write_source(root / "fashion", arrays)
    dirs = {name: root / name for name in ("data", "results", "plots", "checkpoint")}
    argv = ["--source", source, "--dataset", "tdigits", "--recipe", "fast"]
    argv += [f"--{name}-dir={path}" for name, path in dirs.items()]
    code = experiment.main([str(a) for a in argv])
    return code, dirs


def records_of(dirs) -> dict:
    return {p.stem: read_json(p) for p in (dirs["results"] / "tdigits").glob("*.json")}


def test_experiment_runs_every_model_on_a_source_dataset(fashion_run):
    code, dirs = fashion_run
    assert code == 0
    records = records_of(dirs)
    assert {"knn-paper", "knn-tuned", "dt-paper", "svm-tuned", "mlp-fast", "cnn-fast"} <= set(records)
    _, y = load_split("test", dataset="tdigits", data_dir=dirs["data"])
    for name, r in records.items():
        assert r["dataset"] == "tdigits" and r["n_eval"] == 300 and 0 <= r["accuracy"] <= 1, name
        assert r["labels"] == y.tolist()
        assert r["accuracy"] == pytest.approx(float((np.asarray(r["predictions"]) == y).mean())), name
    assert records["svm-tuned"]["accuracy"] > 0.85 and records["cnn-fast"]["accuracy"] > 0.8
    assert (dirs["checkpoint"] / "tdigits" / "cnn-fast.pt").is_file()
    assert (dirs["checkpoint"] / "tdigits" / "svm-tuned.skops").is_file()
    assert read_json(dirs["results"] / "tdigits" / "experiment" / "timings.json")["seconds_total"] > 0


def test_report_table_and_figures(fashion_run):
    _, dirs = fashion_run
    table = (dirs["results"] / "tdigits" / "report.md").read_text()
    assert "# Results on tdigits" in table and "| knn | paper |" in table and "| knn | tuned |" in table
    assert "| cnn | fast | learned from pixels |" in table  # every run is its own row, with what it saw
    assert "| knn | tuned | HOG, deskewed |" in table and "| knn | paper | pixels |" in table
    assert "On the tdigits test set the best classical model on pixels (" in table  # the paragraph under it
    assert re.search(r"Measured on .+ \(\d+ cores?\) with python .*`python experiment.py` took \d+\.\d min", table)
    assert "97.50%" not in table  # published MNIST figures are not compared with another dataset
    with open(dirs["results"] / "tdigits" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} >= {"knn", "dt", "svm", "mlp", "cnn"}
    for name in ("comparison.png", "misclassified.png", "confusion_matrices.png", "samples.png"):
        assert (dirs["plots"] / "tdigits" / name).stat().st_size > 5_000, name


def test_report_on_mnist_names_published_figures(fashion_run, tmp_path):
    """The same records relabelled as MNIST: published column, notes and a README section."""
    _, dirs = fashion_run
    records = report.load_results(dirs["results"], "tdigits")
    rows = report.table_rows(records, "mnist")
    by_model = {(r["model"], r["setting"]): r for r in rows}
    assert by_model["knn", "paper"]["published"] == 0.9750 and by_model["cnn", "fast"]["published"] == 0.9886
    assert "R²" in by_model["dt", "paper"]["notes"] and "validation split" in by_model["dt", "tuned"]["notes"]
    assert by_model["logreg", "defaults"]["notes"].startswith("not in the write-up")  # its paper run: defaults
    assert ("logreg", "paper") not in by_model and by_model["logreg", "defaults"]["published"] is None
    by_hand = {"model": "cnn", "name": "cnn-paper-epochs2", "config": {"recipe": "paper"}}
    assert report.note(by_hand) == ""  # published settings changed by hand: no note claims a validation choice
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\noutro\n")
    report.update_readme(readme, report.markdown(rows))
    text = readme.read_text()
    assert "old" not in text and "| svm |" in text and text.startswith("intro") and text.endswith("outro\n")


def test_misclassified_gallery_counts_real_errors(fashion_run, tmp_path):
    _, dirs = fashion_run
    record = read_json(dirs["results"] / "tdigits" / "dt-tuned.json")
    _, y = load_split("test", dataset="tdigits", data_dir=dirs["data"])
    wrong = report.plot_misclassified(record, dirs["data"], [str(i) for i in range(10)], tmp_path / "m.png")
    assert wrong == int((np.asarray(record["predictions"]) != y).sum()) > 0


def test_report_flags_rows_from_different_test_splits(fashion_run):
    _, dirs = fashion_run
    rows = report.table_rows(report.load_results(dirs["results"], "tdigits"), "tdigits")
    assert "Not comparable" not in (dirs["results"] / "tdigits" / "report.md").read_text()  # one experiment, one split
    assert report.mixed_splits_note(rows) == ""
    rows[0] = {**rows[0], "n_test": rows[0]["n_test"] // 2}  # as if one model had been rerun with --test-size
    assert "Not comparable" in report.mixed_splits_note(rows)


def test_report_without_results_fails_cleanly(tmp_path, capsys):
    assert report.main(["--results-dir", str(tmp_path), "--plots-dir", str(tmp_path / "plots")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no model results" in err


def test_predict_cli_classifies_files_and_reports_bad_ones(fashion_run, full_mnist, tmp_path, capsys):
    """predict.py with an MNIST CNN checkpoint: real digits as image files, and one file that is not an image."""
    import dl_main

    ckpt = tmp_path / "ckpt"
    args = [
        "--model",
        "cnn",
        "--recipe",
        "fast",
        "--epochs",
        "1",
        "--train-size",
        "6000",
        "--test-size",
        "500",
        "--data-dir",
        full_mnist[0],
        "--results-dir",
        tmp_path,
        "--plots-dir",
        tmp_path,
        "--checkpoint-dir",
        ckpt,
    ]
    assert dl_main.main([str(a) for a in args]) == 0
    x, y = load_split("test", data_dir=full_mnist[0], size=20)
    paths = write_photos(x, tmp_path)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    capsys.readouterr()
    code = predict.main([str(p) for p in [paths[0], bad, *paths[1:]]] + ["--checkpoint", cnn_ckpt(ckpt)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip().count("\n") == 0 and "notes.png" in err and "not an image" in err
    lines = out.strip().splitlines()
    assert len(lines) == 20
    predicted = [int(line.split(": ")[1].split(" ")[0]) for line in lines]
    assert np.mean(np.array(predicted) == y) >= 0.85
    # --device auto resolves to this machine's device, and gives the same answers.
    assert predict.main([str(p) for p in paths] + ["--checkpoint", cnn_ckpt(ckpt), "--device", "auto"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines


def cnn_ckpt(ckpt) -> str:
    return str(next((ckpt / "mnist").glob("cnn-fast-*.pt")))


def test_predict_cli_missing_model(tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.new("L", (30, 30), 255).save(img)
    assert predict.main([str(img), "--checkpoint", str(tmp_path / "none.pt")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_table_shows_mean_and_std_over_seeds(fashion_run):
    _, dirs = fashion_run
    record = read_json(dirs["results"] / "tdigits" / "knn-tuned.json")
    merged = {**record, "accuracy_mean": 0.9612, "accuracy_std": 0.0021, "seeds": [0, 1, 2]}
    line = next(r for r in report.markdown(report.table_rows([merged], "mnist")).splitlines() if "| knn |" in r)
    assert "96.12% ± 0.21 (3 seeds)" in line


def test_redrawn_report_keeps_the_experiment_time(fashion_run, tmp_path, monkeypatch):
    """report.py run later (say, with a run added) still names how long the experiment took, from its timings."""
    _, dirs = fashion_run
    for name in ("plot_comparison", "plot_misclassified", "plot_confusions"):  # the table alone is checked here
        monkeypatch.setattr(report, name, lambda *args, **kwargs: 0)
    table = report.make_report("tdigits", dirs["data"], dirs["results"], dirs["plots"])
    assert re.search(r"`python experiment.py` took \d+\.\d min", table)
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "timings.json").write_text("[1, 2]")  # not the expected record: no time, no error
    assert report.last_experiment_seconds(tmp_path) is None and report.last_experiment_seconds(tmp_path / "x") is None
    side_by_side = {"seconds": {"data": 2, "paper": 327, "tuned": 377, "report": 2}, "seconds_total": 708}
    (tmp_path / "experiment" / "timings.json").write_text(json.dumps(side_by_side))
    assert report.last_experiment_seconds(tmp_path) == 706  # wall time, not the sum of overlapping steps
    (tmp_path / "experiment" / "timings.json").write_text(json.dumps({"seconds": {"data": 2, "cnn": 270}}))
    assert report.last_experiment_seconds(tmp_path) == 272  # a record without its total: the steps' sum


# ---------------------------------------------------------------- pixels against features (records made here, no data)
DIGITS = [str(d) for d in range(10)]


def fake_run(model, recipe, accuracy, features=None, deskew=False, suffix="", **fields) -> dict:
    """A test-set record with the fields the table, the paragraph and the figure read; ``features`` None: a record
    with no features setting (a network's, or a classical one from before HOG)."""
    config = {"recipe": recipe} if features is None else {"recipe": recipe, "features": features, "deskew": deskew}
    return {"model": model, "name": f"{model}-{recipe}{suffix}", "dataset": "mnist", "config": config,
            "accuracy": accuracy, "n_eval": 10000, "n_train": 60000, "classes": DIGITS, **fields}  # fmt: skip


MNIST_RUNS = [
    fake_run("knn", "paper", 0.9705, "pixels"),
    fake_run("svm", "tuned", 0.9897, "pixels", deskew=True),
    fake_run("svm", "paper", 0.9990, "pixels", suffix="-train_size2000"),  # a quick check on a slice: not ranked
    fake_run("pca-svm", "tuned", 0.9916, "hog", deskew=True),
    fake_run("rf", "tuned", 0.9767),  # recorded before HOG existed: pixels
    fake_run("cnn", "best", 0.9970, accuracy_mean=0.9965),  # several seeds: their mean counts
    fake_run("mlp", "fast", 0.9792),
]


def test_the_table_says_what_each_model_saw(tmp_path):
    rows = report.table_rows(MNIST_RUNS, "mnist")
    table = report.markdown(rows)
    assert table.startswith("| model | setting | features | published | this repo |")
    assert "| svm | tuned | pixels, deskewed | 97.92% | 98.97% |" in table
    assert "| pca-svm | tuned | HOG, deskewed |  | 99.16% |" in table
    assert "| knn | paper | pixels | 97.50% | 97.05% |" in table and "| rf | tuned | pixels |" in table
    assert "| cnn | best | learned from pixels | 98.86% | 99.65% |" in table
    report.write_csv(rows, tmp_path / "report.csv")
    with open(tmp_path / "report.csv") as f:
        features = {(r["model"], r["setting"]): r["features"] for r in csv.DictReader(f)}
    assert features["pca-svm", "tuned"] == "HOG, deskewed" and features["mlp", "fast"] == "learned from pixels"


def test_the_paragraph_measures_the_gap_the_features_close():
    paragraph = report.features_paragraph(MNIST_RUNS, "mnist", [])
    assert (
        "On the MNIST test set the best classical model on pixels (svm-tuned 98.97%) is 0.68 points behind the best "
        "network (cnn-best 99.65%); on HOG features (pca-svm-tuned 99.16%) it is 0.49 points behind it: the features "
        "close 28% of the gap."  # (0.68 - 0.49) / 0.68
    ) in paragraph
    assert (
        f"{report.OTHER_WRITERS} there is no record of a network, a classical model on pixels or a classical model on "
        "HOG features yet (python handwriting.py --all measures them), so the gap is not measured."
    ) in paragraph
    clothes = [{**r, "classes": list("abcdefghij")} for r in MNIST_RUNS]  # handwriting.py measures digit models only
    assert "other writers" not in report.features_paragraph(clothes, "fashion-mnist", [])


def test_the_paragraph_says_which_record_is_missing():
    no_hog = [r for r in MNIST_RUNS if r["config"].get("features") != "hog"]
    assert "On the Fashion-MNIST test set there is no record of a classical model on HOG features yet" in (
        report.features_paragraph(no_hog, "fashion-mnist", [])
    )
    no_network = [r for r in MNIST_RUNS if r["model"] not in ("cnn", "mlp")]
    assert "there is no record of a network yet" in report.features_paragraph(no_network, "mnist", [])


@pytest.mark.parametrize(
    "gap, left, wording",
    [
        (0.0068, 0.0049, "the features close 28% of the gap"),
        (0.0068, -0.0010, "the features close 115% of the gap and overtake the network"),
        (0.0068, 0.0080, "the features widen the gap by 18%"),
        (-0.0010, 0.0020, "pixels already reach the network, so there is no gap for the features to close"),
    ],
)
def test_the_share_of_the_gap_is_worded_for_every_case(gap, left, wording):
    assert report.closed(gap, left) == wording


def write_handwriting(folder, name, family, nearest, bilinear, **fields) -> None:
    """One handwriting.py record: its accuracy on the two UCI renderings (and a drawn set the paragraph ignores)."""
    sets = {"uci-nearest": {"accuracy": nearest}, "uci-bilinear": {"accuracy": bilinear}, "drawn-test": {"accuracy": 1}}
    (folder / "handwriting").mkdir(exist_ok=True)
    record = {"name": name, "family": family, "sets": sets, **fields}
    (folder / "handwriting" / f"{name}.json").write_text(json.dumps(record))


def test_other_writers_digits_come_from_handwriting_records(tmp_path, capsys):
    write_handwriting(tmp_path, "cnn-best", "network", 0.97, 0.96)
    write_handwriting(tmp_path, "svm-tuned", "classical", 0.91, 0.884)  # names no features: its test run's (pixels)
    write_handwriting(tmp_path, "knn-tuned", "classical", 0.90, 0.872, features="hog", deskew=True)  # its own
    write_handwriting(tmp_path, "rf-tuned", "classical", 0.99, 0.99)  # what it saw is known nowhere: left out
    write_handwriting(tmp_path, "dt-tuned", "classical", 0.99, None, features="hog")  # one rendering only: left out
    (tmp_path / "handwriting" / "table.md").write_text("| model |")
    runs = [r for r in MNIST_RUNS if r["model"] != "rf"]
    scores = {s.name: (s.kind, s.accuracy) for s in report.load_handwriting(tmp_path, runs)}
    assert scores == {
        "cnn-best": ("network", pytest.approx(0.965)),
        "svm-tuned": ("pixels", pytest.approx(0.897)),
        "knn-tuned": ("HOG", pytest.approx(0.886)),
    }
    err = capsys.readouterr().err
    assert "rf-tuned.json left out: it does not say what rf-tuned saw" in err and "dt-tuned.json left out" in err
    paragraph = report.features_paragraph(runs, "mnist", report.load_handwriting(tmp_path, runs))
    assert (
        f"{report.OTHER_WRITERS} the best classical model on pixels (svm-tuned 89.70%) is 6.80 points behind the "
        "best network (cnn-best 96.50%); on HOG features (knn-tuned 88.60%) it is 7.90 points behind it: the "
        "features widen the gap by 16%."
    ) in paragraph


def drawn_comparison(monkeypatch, rows, dataset):
    """The comparison figure's axes, as plot_comparison draws them (nothing written)."""
    import matplotlib.pyplot as plt

    drawn = []

    def keep(fig, path) -> None:
        drawn.append(fig)
        plt.close(fig)  # the figure stays readable

    monkeypatch.setattr(report, "savefig", keep)
    report.plot_comparison(rows, Path("comparison.png"), dataset)
    return drawn[0].axes[0]


def test_comparison_figure_shows_test_errors_on_a_log_axis(monkeypatch):
    from matplotlib.collections import PathCollection

    ax = drawn_comparison(monkeypatch, report.table_rows(MNIST_RUNS, "mnist"), "mnist")
    assert ax.get_xscale() == "log" and "test error" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:3] == ["svm (paper-train_size2000)", "cnn (best)", "pca-svm (tuned)"]  # fewest errors on top
    assert labels[-1] == "knn (paper)"
    points = {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)}
    network = points["this repo: network (features learned from pixels)"]
    assert sorted(network[:, 0]) == pytest.approx([0.35, 2.08])  # 100 - 99.65 (the mean), 100 - 97.92
    assert points["this repo: classical model on HOG features"][:, 0].tolist() == pytest.approx([0.84])
    published = {labels[int(y)]: x for x, y in points["published"]}
    assert published["knn (paper)"] == pytest.approx(2.50) and published["cnn (best)"] == pytest.approx(1.14)
    assert "pca-svm (tuned)" not in published  # no published figure
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "published" in legend and "this repo: classical model on pixels" in legend
    assert ax.get_xlim()[0] < 0.35 and ax.get_xlim()[1] > 2.50


def test_comparison_figure_draws_published_ranges_and_references_as_errors(monkeypatch):
    clothes = [
        fake_run("cnn", "best", 0.9311),
        fake_run("svm", "benchmark", 0.8985, "pixels"),
        fake_run("knn", "x", 1.0),
    ]
    rows = report.table_rows(clothes, "fashion-mnist")
    assert report.published_errors(rows[0]) == pytest.approx((6.8, 8.4))  # 91.6%-93.2%
    assert report.error_pct(1.0, 10000) == pytest.approx(0.005)  # no errors: half an image, a log axis has no zero
    ax = drawn_comparison(monkeypatch, rows, "fashion-mnist")
    assert ax.get_xscale() == "log"
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [pytest.approx(16.5)]  # human 83.5%
    assert "0 wrong" in [t.get_text() for t in ax.texts]
