"""Test helper: every command the README documents, run as written on small slices (a documented command can
never rot).

The commands are read from the README's code blocks and run in the README's order, each in one process through
the script's main(argv) with its outputs in a temporary folder and, where the script has them, small-slice flags
added (--train-size/--test-size, --epochs 1, bench.py --quick): the same parser, the same code path, less data.
They run in GROUPS, each group in a test file of its own (so that pytest-xdist's --dist loadfile can give them to
different workers): the commands of a group need only each other's outputs (predict.py and handwriting.py read
the models the ml_main and dl_main commands trained, report.py the experiment's records). A command documented
twice with the same arguments runs once.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import bench
import data_prep
import dl_main
import experiment
import handwriting
import ml_main
import predict
import report
from mnistlab.data import load_split

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {"data_prep": data_prep, "ml_main": ml_main, "dl_main": dl_main, "predict": predict,
           "handwriting": handwriting, "experiment": experiment, "report": report, "bench": bench}  # fmt: skip
# The groups, each run by a test file of its own, by the commands' leading words: a command belongs to the group
# of its longest matching prefix.
GROUPS = {
    "models": [("data_prep",), ("ml_main",), ("dl_main",), ("predict",), ("handwriting",)],  # ..._commands.py
    "experiment": [("experiment",), ("report",)],  # test_documented_experiment.py
    "seeds": [("experiment", "--recipe", "fast", "--seeds")],  # test_documented_seeds.py
    "bench": [("bench",)],  # test_documented_bench.py
}
COVERED_ELSEWHERE = {
    ("demo",): "a server: tests/test_demo.py starts it and drives it in Chromium",
    ("bench", "--suite", "gpu"): "tests/test_gpu_check.py runs it as written, with --device cpu --quick",
}
SMALL = ["--train-size", "400", "--test-size", "100"]


def documented() -> list[list[str]]:
    """Every `python X.py ...` line in the README's bash blocks, as argv lists (comments dropped)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            found = re.search(r"(?:^|&& |bin/)python ([a-z_]+)\.py(.*?)(?:\s+#.*)?$", line)
            if found:
                commands.append([found[1], *shlex.split(found[2])])
    return commands


def extra_flags(script: str, argv: list[str], out: Path, data: Path) -> list[str]:
    """Where the outputs go, and the small-slice flags the script takes."""
    outputs = ["--results-dir", out / "r", "--plots-dir", out / "p"]
    if script == "data_prep":
        return ["--data-dir", out / "d", "--plots-dir", out / "p", "--no-json"]
    if script in ("ml_main", "dl_main"):
        flags = [*outputs, "--checkpoint-dir", out / "c", "--data-dir", data]
        if "--val-size" in argv:  # a validation run takes no --test-size
            return [*flags, "--train-size", "400"]
        return flags + SMALL + (["--epochs", "1"] if script == "dl_main" else [])  # --resume: the same run's flags
    if script == "experiment":
        return [
            *outputs,
            "--checkpoint-dir",
            out / "c",
            "--data-dir",
            data,
            "--train-size",
            "300",
            "--test-size",
            "100",
        ]
    if script == "report":
        return [*outputs, "--data-dir", data]
    if script == "predict":  # the models the dl_main and ml_main commands above trained, under their run names
        for trained in (out / "c" / "mnist").glob("*-*-*"):
            model, recipe = trained.name.split("-")[:2]
            if trained.suffix in (".pt", ".skops") and ".progress" not in trained.name:
                trained.replace(trained.with_name(f"{model}-{recipe}{trained.suffix}"))
        return ["--checkpoint-dir", out / "c", "--device", "cpu"]
    if script == "handwriting":
        return ["--checkpoint-dir", out / "c", "--results-dir", out / "r", "--device", "cpu"]
    if script == "bench":
        return ["--quick", "--results-dir", out / "r", "--data-dir", data] + (["--device", "cpu"] * ("gpu" in argv))
    return []


def group_of(command: list[str]) -> str | None:
    """The group whose prefix matches the most leading words of ``command``; None: covered elsewhere, or none."""
    if any(tuple(command[: len(c)]) == c for c in COVERED_ELSEWHERE):
        return None
    matches = [(len(p), g) for g, prefixes in GROUPS.items() for p in prefixes if tuple(command[: len(p)]) == p]
    return max(matches)[1] if matches else None


def commands_of(group: str) -> list[list[str]]:
    """The documented commands of ``group``, in the README's order, each distinct one once."""
    chosen = []
    for command in documented():
        if group_of(command) == group and command not in chosen:  # `python experiment.py` is documented twice
            chosen.append(command)
    return chosen


def run_group(group: str, data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Run every documented command of ``group`` in order; each must exit 0 without a traceback."""
    out = tmp_path
    digits = load_split("test", data_dir=data, size=3)[0]
    monkeypatch.chdir(tmp_path)  # predict.py's my_digit.png and digits/*.png: real test digits, as files
    (tmp_path / "digits").mkdir()
    for i, digit in enumerate(digits):
        Image.fromarray(255 - digit).save(tmp_path / ("my_digit.png" if i == 0 else f"digits/{i}.png"))
    monkeypatch.setattr(handwriting, "FONT_VARIANTS", 1)
    monkeypatch.setattr(handwriting, "STROKE_VARIANTS", 1)
    ran = []
    for script, *argv in commands_of(group):
        argv = [str(tmp_path / "digits" / "1.png") if a == "digits/*.png" else a for a in argv]
        if "--source" in argv:
            argv[argv.index("--source") + 1] = str(REPO / "data")
        if "--val-size" in argv:
            argv[argv.index("--val-size") + 1] = "200"
        if script == "ml_main" and "--engine" in argv:
            pytest.importorskip("sklearnex", reason="scikit-learn-intelex is not installed (it is x86-64 only)")
        full = [str(a) for a in [*argv, *extra_flags(script, argv, out, data)]]
        start = time.perf_counter()
        code = SCRIPTS[script].main(full)
        err = capsys.readouterr().err
        print(f"{time.perf_counter() - start:6.1f} s  python {script}.py {' '.join(argv)}", file=sys.__stderr__)
        assert code == 0, f"python {script}.py {' '.join(full)}: exit {code}\n{err}"
        assert "Traceback" not in err
        ran.append((script, *argv))
    assert {prefix[0] for prefix in GROUPS[group]} == {command[0] for command in ran}  # every script of the group
