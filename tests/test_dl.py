"""Tests of the networks and their trainer on small slices of the real MNIST data."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dl_main
from conftest import output_flags
from mnistlab.checkpoints import load_model
from mnistlab.data import load_split
from mnistlab.errors import ProjectError
from Network import build_model

# The classical models' record schema, plus what the networks add.
RECORD_KEYS = """model name dataset accuracy split n_train n_eval seconds_train seconds_predict config seed versions
                 predictions labels classes per_class history checkpoint device loss""".split()


@pytest.fixture
def run(full_mnist, tmp_path):
    """Call dl_main.main on a small slice with every output under tmp_path; return (exit code, outputs)."""
    data_dir = full_mnist[0]

    def _run(*flags, train=300, test=200, folder="out"):
        out = tmp_path / folder
        sizes = ["--train-size", str(train)] + (["--test-size", str(test)] if test else [])
        argv = [
            "--data-dir",
            str(data_dir),
            *sizes,
            *output_flags(out, "results", "plots", "ckpt"),
            *map(str, flags),
        ]
        return dl_main.main(argv), out

    return _run


def only(folder, pattern):
    """The one file matching ``pattern`` (run names carry every explicitly given setting)."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def result(out, model="cnn"):
    return json.loads(only(out / "results" / "mnist", f"{model}-*.json").read_text())


def ckpt_path(out, model="cnn"):
    found = sorted((out / "ckpt" / "mnist").glob(f"{model}-*.pt"), key=lambda p: len(p.name))
    assert found, "no checkpoint"
    return found[0]  # the first seed's; later seeds add -seed<S>


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_output_shapes(name):
    model = build_model(name, hidden_size=50, dropout=0.5).eval()
    logits = model(torch.rand(5, 1, 28, 28))
    assert logits.shape == (5, 10)
    assert model.fc2.in_features == 50  # the hidden size is the one asked for


def test_cnn_is_the_published_architecture():
    model = build_model("cnn")
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["conv1.weight"] == (32, 1, 3, 3) and shapes["conv2.weight"] == (64, 32, 2, 2)
    assert shapes["fc1.weight"] == (196, 3136) and shapes["fc2.weight"] == (10, 196)
    assert sum(p.numel() for p in model.parameters()) == 625_590


def test_strided_stem_halves_the_image_in_one_convolution():
    """The fast recipe's CNN: the first block is one 4x4 stride-2 conv at 14x14 positions, no pool; the rest, and
    so every later shape, is the published network's."""
    pooled, strided = build_model("cnn", width=16), build_model("cnn", width=16, stem="stride")
    x = torch.rand(3, 1, 28, 28)
    assert strided.conv1.weight.shape == (16, 1, 4, 4) and strided.conv1.stride == (2, 2)
    assert strided.conv1(x).shape == pooled.conv1(x)[..., ::2, ::2].shape == (3, 16, 14, 14)
    later = {n: p.shape for n, p in strided.named_parameters() if not n.startswith("conv1")}
    assert later == {n: p.shape for n, p in pooled.named_parameters() if not n.startswith("conv1")}
    assert strided.eval()(x).shape == (3, 10)
    with pytest.raises(ValueError, match="unknown stem"):
        build_model("cnn", stem="patch")


@pytest.mark.slow
@pytest.mark.parametrize("name,lr,epochs", [("mlp", 0.1, 3), ("cnn", 0.01, 1)])
def test_short_training_beats_floor(run, name, lr, epochs):
    code, out = run("--model", name, "--lr", lr, "--epochs", epochs, "--eval-every", 0, train=3000, test=500)
    assert code == 0
    assert result(out, name)["accuracy"] > 0.8  # chance is 0.10


@pytest.mark.slow
def test_log_cadence(run, capsys):
    # 300 images in batches of 10: 30 steps an epoch, 60 in all.
    code, out = run(
        "--model", "mlp", "--epochs", 2, "--batch-size", 10, "--log-every", 7, "--eval-every", 25, "--print-every", 21
    )
    assert code == 0
    history = result(out, "mlp")["history"]
    assert [p["step"] for p in history["train"]] == [7, 14, 21, 28, 35, 42, 49, 56]
    assert [p["step"] for p in history["test"]] == [25, 50, 60]  # every 25 steps, and the final model
    lines = capsys.readouterr().out.splitlines()  # the record keeps every point; the console every 21 steps
    assert [line.split("/")[0] for line in lines if "train loss" in line] == ["step 21", "step 42"]
    assert [line.split("/")[0] for line in lines if "test loss" in line] == ["step 25", "step 50", "step 60"]
    assert history["test"][-1]["epoch"] == 2.0
    assert history["val"] == []


@pytest.mark.slow
def test_outputs_written_and_checkpoint_reloads(run, full_mnist):
    code, out = run("--model", "cnn", "--epochs", 1, "--eval-every", 0)
    assert code == 0
    rec = result(out)
    assert set(RECORD_KEYS) <= set(rec), set(RECORD_KEYS) - set(rec)
    assert (rec["n_train"], rec["n_eval"], len(rec["predictions"])) == (300, 200, 200)
    assert 0 <= rec["accuracy"] <= 1 and rec["config"]["batch_size"] == 30
    assert set(rec["per_class"]) == {str(i) for i in range(10)}
    timings = rec["timings"]  # where the seconds went, for the speed benchmark
    assert set(timings) == {"startup", "data", "model", "training", "evaluation", "record", "figures"}
    assert all(v >= 0 for v in timings.values()) and timings["figures"] > 0 and timings["training"] > 0
    # The final test point is the final evaluation: counted once, not again as its prediction time.
    assert timings["evaluation"] == pytest.approx(rec["seconds_eval_during_training"])
    assert only(out / "plots" / "mnist", "curves_cnn-*.png").stat().st_size > 0
    assert only(out / "plots" / "mnist", "confusion_cnn-*.png").stat().st_size > 0
    ckpt = torch.load(ckpt_path(out), weights_only=True)
    assert {"model", "optimizer", "step", "epoch", "config", "rng"} <= set(ckpt) and ckpt["step"] == 10

    # The checkpoint is the final model: reloaded, it makes exactly the recorded predictions.
    model, config = load_model(ckpt_path(out))
    assert not model.training and config["model"] == "cnn"
    x, y = load_split("test", data_dir=full_mnist[0], size=200)
    with torch.inference_mode():
        logits = model(torch.from_numpy(x).float().div(255).unsqueeze(1))
    pred = logits.argmax(1).numpy()
    assert pred.tolist() == rec["predictions"]
    assert rec["accuracy"] == pytest.approx(float(np.mean(pred == y)))
    # The true mean loss over the test images (the original divided a sum of batch means by 10000).
    assert rec["loss"] == pytest.approx(F.cross_entropy(logits, torch.from_numpy(y)).item(), rel=1e-4)


@pytest.mark.slow
def test_validation_run_never_touches_the_test_set(run):
    code, out = run("--model", "mlp", "--epochs", 2, "--val-size", 100, "--eval-every", 10, test=None)
    assert code == 0
    rec = result(out, "mlp")
    assert rec["name"].endswith("-val") and rec["split"] == "val"
    assert rec["n_train"] == 300 and rec["n_eval"] == 100 and len(rec["labels"]) == 100
    assert len(rec["history"]["val"]) == 2 and rec["history"]["test"] == []


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(run):
    flags = [
        "--model",
        "cnn",
        "--epochs",
        2,
        "--batch-size",
        20,
        "--log-every",
        4,
        "--eval-every",
        10,
        "--optimizer",
        "adam",
        "--lr",
        0.003,
        "--schedule",
        "onecycle",
        "--augment",
        1,
    ]
    code, whole = run(*flags, folder="whole")
    assert code == 0
    code, parts = run(*flags, "--stop-after", 7, folder="parts")  # mid-epoch and mid-log-window
    assert code == 0 and not (parts / "results" / "cnn.json").exists()
    assert torch.load(ckpt_path(parts), weights_only=True)["step"] == 7
    code, parts = run(*flags, "--resume", "--stop-after", 11, folder="parts")
    assert code == 0
    code, parts = run(*flags, "--resume", folder="parts")
    assert code == 0
    a, b = result(whole), result(parts)
    assert a["predictions"] == b["predictions"]
    assert (a["accuracy"], a["loss"]) == (b["accuracy"], b["loss"])
    assert a["history"] == b["history"]


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(run):
    records = []
    for folder, seed in (("a", 1), ("b", 1), ("c", 2)):
        code, out = run("--model", "mlp", "--epochs", 1, "--seed", seed, folder=folder)
        assert code == 0
        records.append(result(out, "mlp"))
    assert records[0]["history"] == records[1]["history"]
    assert records[0]["history"] != records[2]["history"]


def test_seeds_are_merged(run):
    code, out = run("--model", "mlp", "--epochs", 1, "--seed", 3, "--seeds", 2)
    assert code == 0
    rec = result(out, "mlp")
    assert rec["seeds"] == [3, 4] and len(rec["runs"]) == 2 and rec["accuracy_std"] is not None
    assert ckpt_path(out, "mlp").exists() and only(out / "ckpt" / "mnist", "mlp-*-seed4.pt").exists()


@pytest.mark.slow
def test_resume_keeps_every_seed(run):
    flags = ("--model", "mlp", "--epochs", 1, "--seed", 3, "--seeds", 2)
    code, whole = run(*flags)
    assert code == 0
    code, parts = run(*flags, "--stop-after", 15, folder="parts")  # 10 steps a seed: stops inside the second
    assert code == 0 and not list((parts / "results").rglob("*.json"))
    code, parts = run(*flags, "--resume", folder="parts")
    assert code == 0
    rec, expected = result(parts, "mlp"), result(whole, "mlp")
    assert rec["seeds"] == [3, 4] and rec["accuracy_std"] is not None
    assert [r["accuracy"] for r in rec["runs"]] == [r["accuracy"] for r in expected["runs"]]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_curves(run):
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code, out = run("--model", "cnn", "--epochs", 500)  # minutes of work unless interrupted
    finally:
        timer.cancel()
    assert code == 130
    assert torch.load(ckpt_path(out), weights_only=True)["step"] > 0
    assert only(out / "plots" / "mnist", "curves_cnn-*.png").exists()
    assert not list((out / "results").rglob("*.json"))


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--batch-size", "0"], "--batch-size: must be > 0"),
        (["--epochs", "-1"], "--epochs: must be > 0"),
        (["--lr", "0"], "--lr: must be > 0"),
        (["--lr", "nan"], "--lr: must be > 0"),
        (["--momentum", "-0.5"], "--momentum: must be >= 0"),
        (["--weight-decay", "nan"], "--weight-decay: must be >= 0"),
        (["--augment", "-3"], "--augment: must be >= 0"),
        (["--seed", "-1"], "--seed: must be from 0 to 4294967295"),
        (["--model", "rnn"], "invalid choice"),
        (["--device", "tpu"], "invalid choice"),
    ],
)
def test_bad_settings_exit_2(run, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        run(*flags)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def fails_cleanly(capsys, code_out, message, model="cnn"):
    code, out = code_out
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert message in err and len(err.splitlines()) == 1, err
    assert not list((out / "results").rglob("*.json"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(run, capsys):
    fails_cleanly(capsys, run("--device", "cuda"), "no CUDA GPU is available")


@pytest.mark.parametrize("folder", ["results", "plots", "ckpt"])
def test_unwritable_output_folder_fails_before_training(run, capsys, tmp_path, folder):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / folder).write_text("a file where the folder should be")
    fails_cleanly(capsys, run("--model", "mlp"), "cannot write to", "mlp")
    assert not list((tmp_path / "out").rglob("*.pt")) and not list((tmp_path / "out").rglob("*.png"))


def test_nan_loss(run, capsys):
    fails_cleanly(capsys, run("--model", "mlp", "--lr", 1e30, "--log-every", 1), "loss became nan", model="mlp")


def test_sizes_too_large(run, capsys):
    fails_cleanly(capsys, run("--val-size", 59_900, test=None), "only 100 training images are left")
    fails_cleanly(capsys, run("--val-size", 60_000, test=None), "leaves none of the 60000 training images")
    fails_cleanly(capsys, run("--val-size", 100), "--test-size does nothing with --val-size")
    fails_cleanly(capsys, run("--dropout", 1), "--dropout must be in [0, 1)")


def test_resume_without_checkpoint(run, capsys):
    fails_cleanly(capsys, run("--resume"), "no checkpoint at")


@pytest.mark.slow
def test_wrong_checkpoints(run, capsys, tmp_path):
    code, out = run("--model", "mlp", "--epochs", 1)
    assert code == 0
    path = ckpt_path(out, "mlp")
    saved = torch.load(path, weights_only=True)
    only(out / "results" / "mnist", "*.json").unlink()
    for key in ("optimizer", "rng"):  # a checkpoint without its training state cannot be resumed
        torch.save({k: v for k, v in saved.items() if k != key}, path)
        fails_cleanly(capsys, run("--model", "mlp", "--epochs", 1, "--resume"), f"lacks its training state ({key}")
    # Checkpoints whose config or weights do not describe a network of this repo are refused.
    bad = {
        "bad_shape.pt": ({**saved, "config": {**saved["config"], "hidden_size": 64}}, "do not fit the network"),
        "huge.pt": ({**saved, "config": {**saved["config"], "hidden_size": 10**15}}, "refused"),
        "negative.pt": ({**saved, "config": {**saved["config"], "hidden_size": -5}}, "refused"),
        "stem.pt": ({**saved, "config": {**saved["config"], "model": "cnn", "stem": "nope"}}, "stem 'nope'"),
        "nan.pt": ({**saved, "model": {k: v * float("nan") for k, v in saved["model"].items()}}, "non-finite"),
    }
    for name, (ckpt, _) in bad.items():
        torch.save(ckpt, path.parent / name)
    (path.parent / "garbage.pt").write_bytes(b"not a checkpoint")
    cases = [(n, m) for n, (_, m) in bad.items()] + [("garbage.pt", "refused"), ("missing.pt", "no checkpoint at")]
    for name, message in cases:
        with pytest.raises(dl_main.ProjectError, match=message):
            load_model(path.parent / name)
    marker = tmp_path / "owned"
    torch.save({**saved, "model": ShellCommand(f"touch {marker}")}, path.parent / "evil.pt")
    with pytest.raises(dl_main.ProjectError) as refused:
        load_model(path.parent / "evil.pt")
    message = str(refused.value)  # torch's reason, not its advice to load with weights_only=False
    assert "unsupported GLOBAL" in message and "system" in message and "weights_only" not in message
    assert not marker.exists()


class ShellCommand:
    """Unpickling this runs a shell command: what a hostile checkpoint would do if it were loaded unsafely."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.slow
def test_nan_weights_never_replace_a_good_checkpoint(run, capsys):
    code, out = run("--model", "mlp", "--epochs", 1)
    assert code == 0
    good = ckpt_path(out, "mlp").read_bytes()
    code, _ = run("--model", "mlp", "--epochs", 2, "--lr", 1e30, "--log-every", 1000, "--eval-every", 1000)
    err = capsys.readouterr().err
    assert code == 1 and ("non-finite" in err or "became nan" in err), err
    assert ckpt_path(out, "mlp").read_bytes() == good
    for path in (out / "ckpt" / "mnist").glob("*.pt"):  # no checkpoint with NaN weights was written at all
        weights = torch.load(path, weights_only=True)["model"]
        assert all(w.isfinite().all() for w in weights.values()), path


def test_nothing_to_train_on(run, capsys):
    fails_cleanly(capsys, run("--model", "mlp", "--recipe", "fast", train=1), "make no batch")


@pytest.mark.slow
@pytest.mark.parametrize("native", [True, False])
def test_fast_recipe_uses_bfloat16_only_where_native(run, monkeypatch, capsys, native):
    # Emulated bfloat16 made a CNN step 8x slower than float32 on an AVX2-only CPU: "auto" must fall back.
    from mnistlab import devices

    monkeypatch.setattr(devices, "native_bf16", lambda device: native)
    code, out = run("--model", "mlp", "--recipe", "fast", "--epochs", 1)
    assert code == 0
    assert result(out, "mlp")["config"]["amp"] is native
    assert ("training runs in float32" in capsys.readouterr().out) is not native


def test_explicit_amp_is_kept_with_a_warning(monkeypatch, capsys):
    from mnistlab import devices

    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    cpu = torch.device("cpu")
    assert devices.resolve_amp(True, cpu) is True and "slower than float32" in capsys.readouterr().out
    assert devices.resolve_amp(False, cpu) is False and capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("running", "cores", "threads"),
    [("1/300", 2, 2), ("2/300", 2, 1), ("3/300", 2, 1), ("5/300", 2, 1), ("3/300", 8, 6)],
)
def test_threads_leave_the_cores_that_others_are_busy_on(tmp_path, monkeypatch, running, cores, threads):
    """--threads 0 trains on the cores not busy with other work (this process itself is one running task)."""
    from mnistlab import machine

    loadavg = tmp_path / "loadavg"
    loadavg.write_text(f"0.50 0.40 0.30 {running} 12345\n")
    monkeypatch.setattr(machine, "usable_cores", lambda: cores)
    assert machine.idle_cores(samples=3, interval=0, loadavg=str(loadavg)) == threads
    assert machine.idle_cores(loadavg=str(tmp_path / "missing")) == cores  # no /proc: every usable core


# ---------------------------------------------------------------- finished vs in progress (issue: trust under attack)
@pytest.mark.slow
def test_interrupted_rerun_never_replaces_the_finished_model(run, capsys):
    from mnistlab.checkpoints import load_model

    code, out = run("--model", "mlp", "--recipe", "fast", "--epochs", 1)
    assert code == 0
    final = only(out / "ckpt" / "mnist", "mlp-*.pt")
    finished = final.read_bytes()
    record = result(out, "mlp")
    code, out = run("--model", "mlp", "--recipe", "fast", "--epochs", 1, "--stop-after", 1)  # the same run, stopped
    assert code == 0 and final.read_bytes() == finished  # the finished model is untouched
    assert only(out / "ckpt" / "mnist", "mlp-*.progress.pt").exists()
    assert result(out, "mlp") == record
    model, config = load_model(final)  # the finished one loads; the progress file is refused as unfinished
    progress = only(out / "ckpt" / "mnist", "mlp-*.progress.pt")
    with pytest.raises(ProjectError, match="unfinished run .*--resume"):
        load_model(progress)


@pytest.mark.slow
def test_every_seed_keeps_predictions_that_agree_with_its_accuracy(run):
    code, out = run("--model", "mlp", "--recipe", "fast", "--epochs", 1, "--seeds", 2)
    rec, labels = result(out, "mlp"), None
    labels = np.array(rec["labels"])
    assert code == 0 and len(rec["runs"]) == 2
    for r in [rec, *rec["runs"]]:  # the record's own figures are the first seed's, and each seed's agree
        assert r["accuracy"] == pytest.approx(np.mean(np.array(r["predictions"]) == labels))
        assert r["per_class"]["3"]["recall"] == pytest.approx(np.mean(np.array(r["predictions"])[labels == 3] == 3))
    assert rec["accuracy_mean"] == pytest.approx(np.mean([r["accuracy"] for r in rec["runs"]]))


@pytest.mark.slow
@pytest.mark.parametrize("train", [500, 512])  # 4 steps of 128 made OneCycleLR divide by zero
def test_one_cycle_schedule_works_for_any_step_count(run, train):
    code, out = run("--model", "cnn", "--recipe", "fast", "--epochs", 1, train=train, test=100)
    assert code == 0 and result(out)["steps"] == 4


def test_recipe_without_settings_for_the_model_is_refused(run, capsys):
    fails_cleanly(capsys, run("--model", "mlp", "--recipe", "gpu"), "--recipe gpu has no mlp settings")
    fails_cleanly(capsys, run("--seed", 2**32 - 1, "--seeds", 2), "runs past the largest seed")


def test_native_bfloat16_is_read_from_the_cpus_own_flags(tmp_path, monkeypatch):
    from mnistlab import devices, machine

    for flags, native in (("fpu sse2 avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("fp asimd bf16", True)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert machine.cpu_flags(str(tmp_path / "cpuinfo")) == set(flags.split())
        monkeypatch.setattr(devices, "cpu_flags", lambda f=flags: set(f.split()))
        assert devices.native_bf16(torch.device("cpu")) is native
    assert machine.cpu_flags(str(tmp_path / "missing")) == set()
