"""The GPU check (python bench.py --suite gpu), run on the CPU on small slices: every step is a row, the CUDA-path
checks hold on the CPU too, a failing step is a row with its reason, and the table is written."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from benchmarks import gpu
from mnistlab.recipes import RECIPES

REPO = Path(__file__).resolve().parent.parent
CUDA_PATH = (
    "short training beats the floor",
    "resume equals uninterrupted",
    "evaluation of the checkpoint",
    "prediction (softmax)",
)


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu(full_mnist, tmp_path):
    """As on the GPU machines: in a process where skops, scikit-image, scikit-learn-intelex and Playwright cannot
    be imported (tests/gpu_image.py), so that the check never needs what their image lacks."""
    results = tmp_path / "results"
    argv = ["--suite", "gpu", "--device", "cpu", "--quick", "--data-dir", full_mnist[0], "--results-dir", results]
    done = subprocess.run(
        [sys.executable, REPO / "tests" / "gpu_image.py", REPO / "bench.py", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    code, out = done.returncode, done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    saved = json.loads((results / "bench-gpu.json").read_text())
    rows = {r["check"]: r for r in saved["rows"]}
    assert [(r["step"], r["check"]) for r in saved["rows"]] == [(step, name) for step, name, _ in gpu.STEPS]
    failed = {name: r.get("note") for name, r in rows.items() if r["status"] == "FAIL"}
    assert code == 0 and not failed, failed
    for name in CUDA_PATH:
        assert rows[name]["status"] == "pass", rows[name]
    assert rows["short training beats the floor"]["accuracy"] > gpu.QUICK["floor"]
    assert "all 500 predictions and the accuracy equal" in rows["resume equals uninterrupted"]["note"]
    assert rows["evaluation of the checkpoint"]["accuracy"] == rows["short training beats the floor"]["accuracy"]
    assert [rows[n]["status"] for n in ("fast recipe, process time", "gpu recipe, process time")] == ["skip"] * 2
    assert rows["fast recipe, seeds"]["status"] == "pass" and len(rows["fast recipe, seeds"]["runs"]) == 2
    assert rows["gpu recipe, seeds"]["status"] == ("pass" if "gpu" in RECIPES else "skip")
    assert rows["published cnn, s/epoch"]["seconds"] > 0
    assert all(r["wall"] >= 0 for r in saved["rows"])
    env = saved["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["torchvision"] and isinstance(env["bf16_native"], bool)
    table = (results / "bench-gpu.md").read_text()
    assert table.splitlines()[2].startswith("| " + " | ".join(gpu.COLUMNS))
    assert all(f"| {name} |" in table for _, name, _ in gpu.STEPS) and table.split("\n\n")[1] in out
    # dl_main.py's runs went to a temporary folder: only the check's own two files are in the results folder.
    assert sorted(p.name for p in results.iterdir()) == ["bench-gpu.json", "bench-gpu.md"]


def test_a_failing_step_is_a_row_and_the_check_goes_on(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("no kernel image is available\nfor execution on the device")

    def skipped(ctx):
        raise gpu.CheckSkippedError("not here")

    def fine(ctx):
        return {"accuracy": 0.5, "seconds": 1.0, "note": "a | b"}

    monkeypatch.setattr(gpu, "STEPS", (("1", "broken", broken), ("2", "skipped", skipped), ("3", "fine", fine)))
    args = argparse.Namespace(device="cpu", quick=True, data_dir=tmp_path, results_dir=tmp_path / "r")
    assert gpu.main(args) == 1  # a failure makes the exit code 1, after the table is written
    rows = json.loads((tmp_path / "r" / "bench-gpu.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["FAIL", "skip", "pass"]
    assert rows[0]["note"] == "RuntimeError: no kernel image is available for execution on the device"
    assert "| 3 | fine | pass | 50.00% | 1.00 |" in (tmp_path / "r" / "bench-gpu.md").read_text()
    assert "a / b" in (tmp_path / "r" / "bench-gpu.md").read_text()  # a note cannot break the table


def test_speed_table_is_written_from_one_run(tmp_path, capsys, monkeypatch):
    """The README's speed table comes from the dl suite's rows (figures and ratios computed, not typed) and goes
    between its markers, leaving the rest of the file as it was; without the dl suite, or the markers, one line."""
    from benchmarks import dl
    from mnistlab.errors import ProjectError
    from mnistlab.tables import replace_section

    fast = {
        "accuracy": 0.9919,
        "seconds": 12.0,
        "accuracies": [0.9923, 0.9917, 0.9917],
        "breakdown": "training 9.6",
        "typical_seed": 2,
        "goal": 8.0,
        "fixed": 2.4,
    }
    shared = {"name": "cnn fast recipe beside two busy processes", "seconds": 30.0, "alone": 12.0, "goal": 2.5}
    old, new = {"accuracy": 0.981, "seconds": 30.0}, {"accuracy": 0.982, "seconds": 20.0, "goal": 2.0}
    experiment = {"seconds": 1150.0, "note": "... seconds: data 6, cnn 638"}
    peer = {"accuracy": 0.9906, "seconds": 270.0, "epochs": 4}
    suite = {"seconds": 101.6, "goal": 60.0}
    rows = [fast, {"accuracy": 0.9914, "seconds": 27.0}, old, new, experiment, suite, peer, shared]
    text = dl.readme(rows, {"cpu": "AMD EPYC", "cpus": 2, "torch": "2.14.1"})
    assert "AMD EPYC (2 cores), PyTorch 2.14.1" in text and "(4 epochs) | 99.06% | 270.0 | 1x | |" in text
    assert "| 99.19% (99.23 / 99.17 / 99.17) | 12.0 | **22.5x** | <= 8 s, mean >= 99.0%: NOT met |" in text
    assert "| 99.14% | 27.0 | 10.0x |" in text and "| | 2.4 | | <= 2 s: NOT met |" in text
    assert "this tree | 98.20% after 1 epoch | 20.0 | 1.50x | 2x less: NOT met (1.50x) |" in text
    assert "| whole experiment (`python experiment.py`), from its last record | | 1150 | | <= 600 s: NOT met |" in text
    assert "| test suite (the README's test command) | | 102 | | <= 60 s: NOT met |" in text
    assert "(its median run, seed 2): training 9.6." in text and "parts (seconds): data 6, cnn 638." in text
    assert "| the fast recipe beside two busy processes | | 30.0 | 2.50x its time alone | <= 2.5x: met |" in text
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:dl:start -->\nold table\n<!-- bench:dl:end -->\nrest\n")
    replace_section(readme, "bench:dl", text)
    assert readme.read_text() == f"intro\n<!-- bench:dl:start -->\n{text}<!-- bench:dl:end -->\nrest\n"
    readme.write_text("no markers\n")
    with pytest.raises(ProjectError, match="no '<!-- bench:dl:start -->'"):
        replace_section(readme, "bench:dl", text)
    # The other CPU suites get their rows as a table, the machine and libraries above it.
    env = {"cpu": "Intel Xeon", "cpus": 2, "scikit-learn": "1.9.1", "scikit-learn-intelex": None}
    ml_rows = [{"suite": "ml", "name": "svm tuned, sklearn", "accuracy": 0.9897, "seconds": 503.0}]
    text = bench.suite_section("ml", ml_rows, env)
    assert "on Intel Xeon (2 cores), scikit-learn 1.9.1, in one run:" in text
    assert "| svm tuned, sklearn | 98.97% | 503.00 |  |  |  |" in text and "| suite" not in text
    assert bench.main(["--suite", "gpu", "--update-readme", "--results-dir", str(tmp_path)]) == 1
    assert "the gpu suite has its own file" in capsys.readouterr().err and not list(tmp_path.glob("bench*"))
    monkeypatch.setattr(bench, "SPEED_PAGE", readme)  # no bench:ml markers: refused before the suite runs
    assert bench.main(["--suite", "ml", "--update-readme", "--results-dir", str(tmp_path)]) == 1
    assert "no '<!-- bench:ml:start -->'" in capsys.readouterr().err and not list(tmp_path.glob("bench*"))


def test_suite_row_runs_the_readmes_test_command(monkeypatch):
    """The benchmark times the README's own pytest flags; a failing or missing pytest gives a note, not a time."""
    import subprocess

    from benchmarks import dl

    ran = []

    def fake_run(cmd, **kwargs):
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, len(ran) - 1, stdout="== 444 passed in 61.0s ==\n", stderr="")

    monkeypatch.setattr(dl.subprocess, "run", fake_run)
    timed, failed = dl.suite_row(), dl.suite_row()
    assert ran[0][1:] == ["-m", "pytest", "-q", "-n", "auto", "--dist", "loadfile"]
    assert timed["seconds"] >= 0 and timed["goal"] == 60.0 and timed["note"].endswith("444 passed in 61.0s")
    assert "seconds" not in failed and failed["note"] == "not timed: pytest exit 1: 444 passed in 61.0s"
