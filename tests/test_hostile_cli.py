"""Hostile input found by a review, each fixed where it was found: output that cannot be written, a Ctrl-C while
a script imports, messages that span lines, a cache whose header lies, a rebuild on a full disk, results files
that lie or are junk, progress checkpoints that lie, and refusals that came after the work instead of before it.

Small and fast: a 40-image dataset of random pixels, built once for the module; no training.
"""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import experiment
import handwriting
import report
from conftest import output_flags, write_source
from data_prep import prepare
from mnistlab import cache, checkpoints
from mnistlab.errors import ProjectError, run_cli
from mnistlab.files import is_regular, write_error
from mnistlab.paths import REPO
from mnistlab.training import fresh_state
from model_files import write_network
from Network import build_model

resource = pytest.importorskip("resource", reason="file-size limits are a POSIX feature")
DIGITS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(source folder, data dir) of a prepared 30/10-image dataset named "t"."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (30, 28, 28)),
        "y_train": np.arange(30) % 10,
        "x_test": rng.integers(0, 256, (10, 28, 28)),
        "y_test": np.arange(10) % 10,
    }
    source = write_source(root / "src", arrays)
    cache.build_cache("t", source, root / "data", write_json_files=False, quiet=True)  # no samples figure: faster
    return source, root / "data"


def files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- errors.py: every failure one line
def test_a_message_with_a_newline_stays_one_line(capsys):
    def main(argv):
        raise ProjectError("source folder /tmp/a\nb does not exist")

    assert run_cli(main, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/tmp/a\\nb" in err


class Closed(io.StringIO):
    """Standard output whose reader went away: | head."""

    def write(self, text):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_output_to_a_closed_pipe_or_a_full_disk_is_one_line(monkeypatch, capsys):
    def main(argv):
        print("the table")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert run_cli(main, []) == 1
    with open("/dev/full", "w") as full:  # a full disk: the write fails when the buffer is flushed
        monkeypatch.setattr(sys, "stdout", full)
        assert run_cli(main, []) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err), err
    assert "standard output: it was closed" in err[0] and "no space left" in err[1]


def test_ctrl_c_while_a_script_imports_is_one_line():
    code = "import mnistlab.errors; raise KeyboardInterrupt  # as if torch were still importing"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode in (130, -2) and "Traceback" not in run.stderr
    assert run.stderr.strip().endswith("interrupted (Ctrl-C) while starting; nothing was written")


# ---------------------------------------------------------------- files.py: causes said as they are
def test_write_errors_name_their_cause(tmp_path):
    assert "free some space" not in str(write_error(tmp_path / "x", OSError(errno.ENOTDIR, "Not a directory")))
    assert "a folder has this file's name" in str(write_error(tmp_path / "x", OSError(errno.EISDIR, "Is a dir")))
    assert "ulimit -f" in str(write_error(tmp_path / "x", OSError(errno.EFBIG, "File too large")))
    with pytest.raises(ProjectError, match="is a device, not a regular file"):
        is_regular("/dev/null", "source file")


# ---------------------------------------------------------------- cache.py and data_prep.py
def save_cache(folder: Path, **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cache.npz", "wb") as f:
        np.savez(f, **arrays)
    return folder / "cache.npz"


def good_arrays(n_train=4, n_test=2, classes=DIGITS) -> dict:
    return {
        "x_train": np.zeros((n_train, 28, 28), np.uint8),
        "y_train": np.zeros(n_train, np.int64),
        "x_test": np.zeros((n_test, 28, 28), np.uint8),
        "y_test": np.zeros(n_test, np.int64),
        "classes": np.array(classes),
    }


def test_a_cache_whose_header_claims_terabytes_is_refused_before_reading(tmp_path):
    path = save_cache(tmp_path, **good_arrays())
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)})
    with zipfile.ZipFile(path, "a") as zf:  # a second x_train.npy: the last one of a name is the one read
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("x_train.npy", header.getvalue() + bytes(100))
    with pytest.raises(ProjectError, match="x_train claims 784000000000000 bytes"):
        cache.read_arrays(path)  # before the fix: numpy tried to allocate 713 TiB (MemoryError, a traceback)


@pytest.mark.parametrize(
    "arrays, message",
    [(good_arrays(n_test=0), "test split is empty"), (good_arrays(classes=["0"]), "not two or more distinct")],
)
def test_a_cache_with_an_empty_split_or_a_single_class_is_refused(tmp_path, arrays, message):
    with pytest.raises(ProjectError, match=message):  # before: torch.cat of nothing; a one-class "classifier"
        cache.read_arrays(save_cache(tmp_path, **arrays))


def test_a_manifest_that_cannot_be_read_names_the_rebuild(tiny, tmp_path):
    source, _ = tiny
    cache.build_cache("t", source, tmp_path, write_json_files=False, quiet=True)
    manifest = tmp_path / "t" / "manifest.json"
    manifest.write_text("{oops")
    with pytest.raises(ProjectError, match="its manifest.json is unreadable; run python data_prep.py"):
        cache.load_cache("t", tmp_path)
    manifest.unlink()
    manifest.mkdir()  # before the fix: "... is a folder, not a regular file; give a regular file"
    with pytest.raises(ProjectError, match="manifest.json is a folder, not a regular file; run python data_prep.py"):
        cache.load_cache("t", tmp_path)


def test_a_rebuild_on_a_full_disk_keeps_the_good_build(tiny, tmp_path):
    source, _ = tiny
    cache.build_cache("t", source, tmp_path, quiet=True)  # with the JSON splits
    before = files(tmp_path / "t")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40 << 10, hard))  # the cache (26 KB) fits, train.json (65 KB) not
    try:
        with pytest.raises(ProjectError, match=r"cannot write .*train\.json: .*ulimit -f"):
            cache.build_cache("t", source, tmp_path, force=True, quiet=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert files(tmp_path / "t") == before  # the manifest too: before the fix it was deleted first


def test_a_source_folder_that_is_a_loop_of_links_is_named_as_the_folder(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ProjectError, match=f"source folder {tmp_path / 'a'} is a broken symbolic link"):
        cache.build_cache("t", tmp_path / "a", tmp_path / "d", quiet=True)  # before: "checksum file ...: a loop"


def test_plots_dir_is_checked_before_the_build(tiny, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="a file stands where the folder"):
        prepare("t", source=tiny[0], data_dir=tmp_path / "d", plots_dir=tmp_path / "file", quiet=True)
    assert not (tmp_path / "d" / "t" / "cache.npz").exists()


# ---------------------------------------------------------------- report.py
def record(**changes) -> dict:
    """A coherent results record of dataset "t" (its first 10 test labels, every prediction right)."""
    labels = [i % 10 for i in range(10)]
    rec = {
        "model": "knn",
        "name": "knn-paper",
        "dataset": "t",
        "split": "test",
        "config": {"recipe": "paper"},
        "classes": DIGITS,
        "labels": labels,
        "predictions": labels,
        "accuracy": 1.0,
        "accuracy_mean": 1.0,
        "accuracy_std": None,
        "runs": [{"seed": 0, "accuracy": 1.0}],
        "seeds": [0],
        "n_train": 30,
        "n_eval": 10,
        "seconds_fit": 0.1,
        "seconds_predict": 0.1,
        "versions": {"cpu": "x", "cpus": 2},
    }
    return {**rec, **changes}


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"accuracy": float("nan")}, "not a number from 0 to 1"),
        ({"accuracy_mean": 0.999}, "not the mean of its seeds"),
        ({"accuracy_mean": "x"}, "not the mean of its seeds"),
        ({"accuracy_std": "x"}, "not the spread"),
        ({"seconds_fit": "x"}, "not a number of seconds"),
        ({"n_eval": "x"}, "not the number of its labels"),
        ({"versions": [1]}, "versions"),
        ({"seeds": 5}, "do not match"),
        ({"dataset": "mnist"}, "a record of the dataset 'mnist', not of t"),
        ({"model": "knn|x\ny", "name": "knn|x\ny-paper"}, "wrong type"),
    ],
)
def test_a_record_that_lies_is_left_out(changes, why):
    assert report.record_problem(record(), "t") is None
    assert why in report.record_problem(record(**changes), "t")


def test_temporary_and_junk_files_in_the_results_folder_are_left_out(tmp_path, capsys):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "knn-paper.json").write_text(json.dumps(record()))
    (folder / ".knn-paper.json.999999.abcdef.tmp.json").write_text(json.dumps(record()))  # a killed run's
    (folder / ".mlp-x.json.1.abcdef.tmp.json").write_text('{"model": "ml')  # a running writer's, half written
    (folder / "junk.json").write_bytes(b"\xc1\x00junk")
    (folder / "dir.json").mkdir()
    assert [r["name"] for r in report.load_results(tmp_path, "t")] == ["knn-paper"]
    err = capsys.readouterr().err
    assert "junk.json left out" in err and "dir.json left out" in err and ".tmp" not in err
    (folder / "experiment").mkdir()
    (folder / "experiment" / "timings.json").write_text('{"seconds": {"data": NaN, "ml": Infinity}}')
    assert report.last_experiment_seconds(folder) is None  # not "took nan min"


def test_report_refuses_before_writing(tiny, tmp_path, capsys):
    _, data = tiny
    (tmp_path / "r" / "t").mkdir(parents=True)
    (tmp_path / "r" / "t" / "knn-paper.json").write_text(json.dumps(record()))
    with pytest.raises(ProjectError, match="--update-readme"):
        report.make_report("t", data, tmp_path / "r", tmp_path / "p", update=True)
    with pytest.raises(ProjectError, match="cannot use the t data"):
        report.make_report("t", tmp_path / "no-data", tmp_path / "r", tmp_path / "p")
    assert not (tmp_path / "r" / "t" / "report.md").exists() and not (tmp_path / "p").exists()
    other = record(labels=[(i + 1) % 10 for i in range(10)], predictions=[(i + 1) % 10 for i in range(10)])
    kept = report.check_against_data([record(), other], "t", data, tmp_path)  # scored on other test images
    assert len(kept) == 1 and "labels are not the t test labels" in capsys.readouterr().err


# ---------------------------------------------------------------- experiment.py and handwriting.py
def test_experiment_checks_its_folders_first_and_a_tuning_run_has_no_report(tiny, tmp_path):
    source, data = tiny
    (tmp_path / "file").write_text("x")
    argv = ["--source", str(source), "--dataset", "t", "--data-dir", str(tmp_path / "d"), "--skip", "ml-paper", "cnn"]
    argv += ["--plots-dir", str(tmp_path / "p"), "--checkpoint-dir", str(tmp_path / "c")]
    assert experiment.main([*argv, "--results-dir", str(tmp_path / "file")]) == 1
    assert not (tmp_path / "d").exists()  # refused before the data step
    args = experiment.parse_args([*argv, "--val-size", "10", "--results-dir", str(tmp_path / "r")])
    assert [title for title, _ in experiment.plan(args, 0.0)][-1] != "report"  # it always failed: no test runs


def test_a_ctrl_c_in_the_experiments_network_exits_130(tiny, tmp_path, monkeypatch, capsys):
    source, data = tiny
    monkeypatch.setattr(experiment.dl_main, "run", lambda config, stop: 130)  # as after a Ctrl-C mid-training
    argv = ["--source", str(source), "--dataset", "t", "--data-dir", str(data), "--skip", "ml-paper", "ml-tuned", "cnn"]
    dirs = ["--results-dir", str(tmp_path / "r"), "--plots-dir", str(tmp_path / "p"), "--checkpoint-dir", str(tmp_path)]
    (tmp_path / "p" / "t").mkdir(parents=True)
    (tmp_path / "p" / "t" / "samples.png").write_bytes(b"")  # drawn already: the data step has nothing to draw
    assert experiment.main([*argv, *dirs]) == 130
    assert "dl_main.py --resume" in capsys.readouterr().err


def test_handwriting_measures_each_set_once():
    assert handwriting.parse_args(["--sets", "uci-nearest, uci-nearest,drawn-val"]).sets == ["uci-nearest", "drawn-val"]


# ---------------------------------------------------------------- checkpoints.py
@pytest.fixture(scope="module")
def progress(tmp_path_factory):
    """A real progress checkpoint of a small MLP, as dl_main.py writes one (3 steps of 10 per epoch)."""
    path = tmp_path_factory.mktemp("ckpt") / "mlp-paper.progress.pt"
    model = build_model("mlp", 16, 0.5, 10, 32, "pool")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    config = {
        "model": "mlp",
        "name": "mlp-paper",
        "epochs": 1,
        "batch_size": 30,
        "lr": 0.01,
        "optimizer": "sgd",
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
        "hidden_size": 16,
        "width": 32,
        "stem": "pool",
        "dropout": 0.5,
        "label_smoothing": 0.0,
        "augment": 0.0,
        "distort": "",
        "amp": False,
        "print_every": 500,
        "target": None,
        "seed": 0,
        "seeds": 1,
        "train_size": None,
        "val_size": 0,
        "test_size": None,
        "classes": DIGITS,
    }
    state = {**fresh_state(), "step": 3, "epoch": 0.3}
    checkpoints.save_checkpoint(path, model, opt, None, state, config, final=False)
    return path


@pytest.mark.parametrize(
    "change, why",
    [
        ("c['optimizer'] = {}", "optimizer state is not one group"),
        ("c['optimizer']['param_groups'][0]['params'] = [0, 1]", "optimizer state is not one group"),
        ("c['rng']['torch'] = torch.zeros(10)", "random-number state"),
        ("c['step'] = '5'", "not a position"),
        ("c['step'] = 10**9", "not a whole number of steps per epoch"),
        ("c['window'] = [float('nan')] * 3", "log window"),
        ("c['history'] = []", "history"),
        ("c['seconds_train'] = 'x'", "seconds_train"),
        ("c['config']['lr'] = 'x'", "saved lr is 'x'"),
        ("c['config']['optimizer'] = 'rmsprop'", "saved optimizer"),
        ("c['config']['name'] = '../../escape'", "not a run name"),
        ("c['config']['hidden_size'] = -5", "does not describe a network"),
    ],
)
def test_a_progress_checkpoint_that_lies_is_not_resumed(progress, tmp_path, change, why):
    assert checkpoints.read_checkpoint(progress, need_training_state=True)["step"] == 3  # the real one resumes
    c = torch.load(progress, weights_only=True)
    exec(change, {"c": c, "torch": torch})
    torch.save(c, tmp_path / progress.name)
    with pytest.raises(ProjectError, match="cannot be resumed") as refused:  # before: a traceback in dl_main.py
        checkpoints.read_checkpoint(tmp_path / progress.name, need_training_state=True)
    assert why in str(refused.value)


def test_random_states_that_torch_did_not_write_are_one_line():
    with pytest.raises(ProjectError, match="random-number states"):
        checkpoints.set_rng_states({"torch": torch.zeros(10)})


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda c: c.update(model={k: v.to(torch.complex64) for k, v in c["model"].items()}), "do not fit"),
        (lambda c: c["config"].update(classes=[str(i) * (1 << 20) for i in range(10)]), "does not describe"),
        (lambda c: c["config"].update(classes=[{"a": i} for i in range(10)]), "does not describe"),
    ],
)
def test_a_finished_network_with_odd_weights_or_class_names_is_refused(tmp_path, change, why):
    path = write_network(tmp_path / "mlp-paper.pt", model="mlp")
    c = torch.load(path, weights_only=True)
    change(c)
    torch.save(c, path)
    with pytest.raises(ProjectError, match=why):  # before: complex weights cast silently; 10 MB printed per answer
        checkpoints.load_model(path)


# ---------------------------------------------------------------- flags.py: sizes bounded, paths never empty
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo", "dt", "--max-depth", str(10**20)], "--max-depth: must be >= 0 and at most 10000"),  # OverflowError
        (["--algo", "rf", "--max-depth", str(10**20)], "--max-depth: must be >= 0 and at most 10000"),
        (["--algo", "sk-mlp", "--hidden-size", str(10**12)], "--hidden-size: must be > 0 and at most 10000"),
        (["--algo", "rf", "--n-estimators", str(10**8)], "--n-estimators: must be > 0 and at most 5000"),  # days
        (["--algo", "dt", "--min-samples-leaf", str(10**20)], "--min-samples-leaf: must be > 0 and at most 1000000"),
        (["--algo", "logreg", "--max-iter", str(10**20)], "--max-iter: must be > 0 and at most 100000"),
        (["--algo", "knn", "--p", "1e300"], "--p: must be > 0 and at most 10"),  # every distance inf: one class
        (["--algo", "logreg", "--tol", "1e300"], "--tol: must be > 0 and at most 1"),  # stops at once: one class
        (["--algo", "svm", "--C", "inf"], "--C: must be a finite number, got inf"),
        (["--algo", "svm", "--gamma", "inf"], "--gamma: must be a finite number, got inf"),
        (["--algo", "gb", "--lr", "inf"], "--lr: must be a finite number, got inf"),
        (["--algo", "svm", "--cache-mb", "1e300"], "--cache-mb: must be > 0 and at most 1000000"),
    ],
)
def test_absurd_model_sizes_are_refused_by_argparse(argv, message, tmp_path, capsys):
    import ml_main

    with pytest.raises(SystemExit) as exit_:  # no data there: had argparse taken it, no fit would start
        ml_main.main([*argv, "--data-dir", str(tmp_path / "none")])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert exit_.value.code == 2 and len(errors) == 1 and message in errors[0], errors


def script_parsers() -> dict:
    """Each script's command-line parsing alone: a flag taken there would start no work in this test."""
    import bench
    import data_prep
    import demo
    import dl_main
    import ml_main
    import predict

    parsers = {"bench": bench.parse_args, "data_prep": data_prep.parse_args, "demo": demo.parse_args}
    parsers.update(experiment=experiment.parse_args, handwriting=handwriting.parse_args, report=report.parse_args)
    parsers.update(dl_main=lambda a: dl_main.build_parser().parse_args(a), predict=predict.parse_args)
    return {**parsers, "ml_main": lambda a: ml_main.build_parser().parse_args(a)}


@pytest.mark.parametrize(
    "script, argv",
    [
        *[("ml_main", [flag, ""]) for flag in ("--results-dir", "--plots-dir", "--checkpoint-dir", "--data-dir")],
        *[("dl_main", [flag, ""]) for flag in ("--results-dir", "--plots-dir", "--checkpoint-dir", "--data-dir")],
        *[("data_prep", [flag, ""]) for flag in ("--source", "--data-dir", "--plots-dir")],
        ("predict", [""]),  # before: "." named as the problem
        ("predict", ["x.png", "--checkpoint", ""]),
        ("predict", ["x.png", "--checkpoint-dir", ""]),
        ("predict", ["x.png", "--save-inputs", " "]),
        ("demo", ["--checkpoint-dir", ""]),
        ("demo", ["--screenshot", ""]),
        ("report", ["--data-dir", ""]),
        ("report", ["--results-dir", ""]),
        ("handwriting", ["--results-dir", ""]),
        ("handwriting", ["--checkpoint-dir", ""]),
        ("bench", ["--results-dir", ""]),
        ("bench", ["--data-dir", ""]),
        ("experiment", ["--source", ""]),
        ("experiment", ["--results-dir", ""]),
    ],
)
def test_an_empty_path_is_refused_not_taken_as_this_folder(script, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        script_parsers()[script](argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert exit_.value.code == 2 and len(errors) == 1, errors
    assert "an empty path" in errors[0] and "names no file or folder" in errors[0] and "'.'" not in errors[0]


@pytest.mark.parametrize("script", ["dl_main", "ml_main", "data_prep", "predict", "demo", "handwriting", "report"])
def test_ctrl_c_while_a_script_imports_its_libraries_is_one_line(script):
    """Ctrl-C arrives while torch (or numpy, scikit-learn, Pillow) is importing: the first import of one of them
    raises it, as the signal would; the hook must be in place before, whatever the script imports first."""
    code = (
        "import runpy, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'numpy', 'sklearn', 'PIL', 'tqdm', 'scipy'}:\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        f"sys.argv = ['{script}.py', '--help']\n"
        f"runpy.run_path('{script}.py', run_name='__main__')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode in (130, -2) and "Traceback" not in run.stderr, run.stderr[-500:]
    assert run.stderr.strip() == f"{script}.py: interrupted (Ctrl-C) while starting; nothing was written"


# ---------------------------------------------------------------- dl_main.py: a resumed step must be in the run
def test_a_progress_step_past_the_end_of_the_run_is_refused(tiny, tmp_path, capsys):
    """A progress checkpoint whose step 10**9 (at epoch 1 of 1) is self-consistent: before, --resume took it for
    a finished run, wrote a record and promoted the step-1 weights to the final model."""
    import dl_main

    out = output_flags(tmp_path)
    argv = [str(a) for a in ["--model", "mlp", "--dataset", "t", "--data-dir", tiny[1], "--epochs", 1, *out]]
    argv += ["--batch-size", "8", "--hidden-size", "16", "--device", "cpu", "--threads", "1"]
    assert dl_main.main([*argv, "--stop-after", "1"]) == 0
    (progress,) = (tmp_path / "c").rglob("*.progress.pt")
    ckpt = torch.load(progress, weights_only=True)
    assert ckpt["step"] == 1 and ckpt["epoch"] == 0.25  # 30 images in batches of 8: 4 steps
    torch.save({**ckpt, "step": 10**9, "epoch": 1.0}, progress)
    capsys.readouterr()
    assert dl_main.main([*argv, "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"dl_main: error: {progress} cannot be resumed: its step 1000000000 is past the end of this run "
        "(4 steps = --epochs 1 x 4 per epoch); start afresh without --resume"
    )
    assert not list((tmp_path / "r").rglob("*.json")) and not list((tmp_path / "c").rglob("*-*[!s].pt"))


def test_a_resumed_position_must_fit_the_runs_epochs_and_schedule():
    ckpt = {"step": 6, "epoch": 1.5, "scheduler": None}
    assert checkpoints.position_problem(ckpt, 2, 8) is None  # 4 steps per epoch: step 6 is epoch 1.5
    assert "past the end of this run (4 steps = --epochs 1 x 4 per epoch)" in checkpoints.position_problem(ckpt, 1, 4)
    assert "does not fit this run's 3 steps per epoch" in checkpoints.position_problem(ckpt, 2, 6)
    sched = {**ckpt, "scheduler": {"total_steps": 10**6, "last_epoch": 6}}
    assert "schedule spans 1000000 steps, not this run's 8" in checkpoints.position_problem(sched, 2, 8)


# ---------------------------------------------------------------- predict.py: one line per image, whatever its name
def test_control_characters_in_image_names_stay_on_their_line(tmp_path, capsys):
    """A newline in a file name split an answer over two lines; a terminal escape recoloured the terminal."""
    from PIL import Image

    import predict
    from model_files import write_network

    write_network(tmp_path / "mnist" / "mlp-fast.pt", model="mlp")
    stroke = np.zeros((60, 60), np.uint8)
    stroke[10:50, 27:33] = 255
    names = [tmp_path / "a\nb.png", tmp_path / "c\r\x1b[31m.png", tmp_path / "tab\t.png"]
    for path in names:
        Image.fromarray(stroke).save(path, format="PNG")
    shown = ["a\\nb.png", "c\\r\\x1b[31m.png", "tab\\t.png"]
    for extra in (["--model", "mlp"], ["--all"], ["--model", "mlp", "--number"]):
        code = predict.main([*map(str, names), str(tmp_path / "gone\n.png"), "--checkpoint-dir", str(tmp_path), *extra])
        out, err = capsys.readouterr()
        rows = out.splitlines()[1:] if extra == ["--all"] else out.splitlines()  # --all: a header row first
        errors = [line for line in err.splitlines() if "error" in line]
        assert code == 1 and len(rows) == 3 and errors == [f"predict.py: error: {tmp_path}/gone\\n.png: no such file"]
        assert all(name in row for name, row in zip(shown, rows, strict=True)), rows
        assert not any(c in out for c in "\r\x1b\t"), out
