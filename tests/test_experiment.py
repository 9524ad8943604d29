"""The whole experiment on another MNIST-format dataset, the report, and predict.py end to end."""

from __future__ import annotations

import csv
import re

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
    assert "| cnn | fast |" in table  # every run is its own row
    assert re.search(r"Measured on .+ \(\d+ cores\) with python .*`python experiment.py` took \d+\.\d min", table)
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
