"""GPU suite: one command that checks a CUDA machine end to end and measures the networks on it.

    python bench.py --suite gpu                          # on the GPU (--device cuda), under 5 minutes on an H100
    python bench.py --suite gpu --device cpu --quick     # the check itself, on small slices (what the tests run)

Steps: 1 the environment; 2 the CUDA-path checks (a short training beats a floor, a resumed run equals an
uninterrupted one, the checkpoint re-evaluates to the record's predictions, a softmax prediction agrees);
3 the fast recipe over 5 seeds and one run's process start-to-exit time; 4 the published CNN's seconds per epoch;
5 the gpu recipe (time to 99%), when dl_main.py has one. Each check is a row: pass, FAIL (with its one-line
reason) or skip; a failure never stops the check. Every dl_main.py run writes into a temporary folder, so the
user's results and checkpoints are never touched. The table goes to <results-dir>/bench-gpu.md and .json.
Only the standard library is imported here at module level: torch, dl_main and the rest load inside each step,
so that a broken import is a failed row, not a crashed check.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnistlab.errors import ProjectError
from mnistlab.files import atomic_path, read_json, write_json
from mnistlab.machine import cpu_model, versions
from mnistlab.paths import REPO
from mnistlab.tables import markdown_table

COLUMNS = ("step", "check", "status", "accuracy", "seconds", "goal", "wall s", "note")
SEEDS = 5
# The short training: the fast recipe for one epoch at batch 32 (enough steps to be well clear of its floor).
SHORT = {"train": 5000, "test": 1000, "floor": 0.90}
RESUME = {"train": 3000, "test": 500, "epochs": 2, "stop_after": 70}  # mlp, paper settings: 200 steps, cheap
# --quick: small slices and one CPU thread (a shared machine's cores make several threads wait on each other);
# the gpu recipe at batch 128, as its 512 would leave one-cycle too few steps on 1000 images.
QUICK = {
    "short_train": 2000,
    "short_test": 500,
    "floor": 0.80,
    "train": 1000,
    "test": 200,
    "epochs": 1,
    "seeds": 2,
    "gpu_batch": 128,
}
FAST_GOAL = 0.990  # the fast recipe's target, mean over seeds, full data
GPU_GOALS = {"accuracy": 0.990, "seconds_train": 0.5, "seconds_process": 8.0}  # the gpu recipe, on an H100
PAPER_H100 = 6.6  # the published CNN's seconds per epoch (batch 30) in the check's last H100 run (docs/speed.md)
PROCESS_TIMEOUT = 240


class CheckFailedError(Exception):
    """A check that did not hold; its message is the row's note."""


class CheckSkippedError(Exception):
    """A check that cannot run here; its message is the row's note."""


def sizes(size: dict) -> list:
    """dl_main.py's data-slice flags for a dict with "train" and "test" image counts."""
    return ["--train-size", size["train"], "--test-size", size["test"]]


def last_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no message)"])[-1].strip()


def check(holds: bool, reason: str) -> None:
    if not holds:
        raise CheckFailedError(reason)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not isinstance(exc, (CheckFailedError, CheckSkippedError, ProjectError)):  # those say it in their words
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:240]


class Check:
    """The settings of one check and what its steps leave for the later ones."""

    def __init__(self, args, tmp: Path):
        self.device = getattr(args, "device", None) or "cuda"
        self.quick, self.data_dir, self.tmp = bool(getattr(args, "quick", False)), Path(args.data_dir), tmp
        self.seeds = QUICK["seeds"] if self.quick else SEEDS
        self.env: dict = {}
        self.short: dict | None = None  # the short training's record, for the evaluation and prediction checks

    def measured(self) -> list[str]:
        """The measured steps' data: all of it, or with --quick a small slice and one epoch."""
        return [*sizes(QUICK), "--epochs", QUICK["epochs"]] * self.quick

    def argv(self, folder: str, flags) -> list[str]:
        """dl_main.py's arguments with every output under a temporary folder, on the checked device and data."""
        out, quick = self.tmp / folder, ["--threads", "1"] if self.quick and self.device == "cpu" else []
        outputs = ("--results-dir", out / "r", "--plots-dir", out / "p", "--checkpoint-dir", out / "c")
        return list(map(str, (*flags, *quick, "--device", self.device, "--data-dir", self.data_dir, *outputs)))


def record_path(argv: list[str]) -> Path:
    import dl_main
    from mnistlab.records import run_paths

    return run_paths(dl_main.make_config(argv))["record"]


def train(ctx: Check, folder: str, *flags) -> dict | None:
    """dl_main.main in this process, its console output kept back; its record (None when it stopped early)."""
    import dl_main

    argv, err = ctx.argv(folder, flags), io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = dl_main.main(argv)
        except SystemExit as exc:  # argparse refused the flags (e.g. a recipe this dl_main.py does not have)
            code = exc.code
    if code != 0:
        raise CheckFailedError(f"dl_main {' '.join(map(str, flags))} exited {code}: {last_line(err.getvalue())}")
    path = record_path(argv)
    return read_json(path) if path.is_file() else None


def process(ctx: Check, folder: str, *flags) -> tuple[dict, float]:
    """python dl_main.py in a fresh process; (its record, seconds from process start to exit). Skipped by --quick."""
    if ctx.quick:
        raise CheckSkippedError("--quick: the process time is not measured")
    argv = ctx.argv(folder, flags)
    cmd, env = [sys.executable, str(REPO / "dl_main.py"), *argv], {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise CheckFailedError(f"python dl_main.py exited {proc.returncode}: {last_line(proc.stderr)}")
    return read_json(record_path(argv)), wall


def verdict(ctx: Check, holds: bool) -> str:
    return "n/a (--quick)" if ctx.quick else "met" if holds else "NOT met"


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


# ---------------------------------------------------------------- 1. environment
def step_environment(ctx: Check) -> dict:
    import torch
    import torchvision

    from mnistlab.devices import native_bf16, resolve_device

    device = resolve_device(ctx.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
        memory = f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
        extra = {"capability": cap, "memory": memory, "cudnn": torch.backends.cudnn.version()}
    else:
        name, extra = cpu_model() if device.type == "cpu" else device.type, {}
    ctx.env.update(
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        cuda=torch.version.cuda,
        device=str(device),
        device_name=name,
        bf16_native=native_bf16(device),
        **extra,
    )
    return {"note": ", ".join(f"{k} {v}" for k, v in ctx.env.items() if k != "device")}


# ---------------------------------------------------------------- 2. the CUDA-path checks
def step_short_training(ctx: Check) -> dict:
    size = {"train": QUICK["short_train"], "test": QUICK["short_test"], "floor": QUICK["floor"]} if ctx.quick else SHORT
    floor = size["floor"]
    rec = train(ctx, "short", "--model", "cnn", "--recipe", "fast", "--epochs", 1, "--batch-size", 32, *sizes(size))
    ctx.short = rec
    check(rec["accuracy"] > floor, f"accuracy {pct(rec['accuracy'])} is not above the floor {pct(floor)}")
    note = f"cnn fast recipe at batch 32, 1 epoch, {rec['n_train']} train / {rec['n_eval']} test images; s: training"
    return {"accuracy": rec["accuracy"], "seconds": rec["seconds_train"], "goal": f"> {pct(floor)}", "note": note}


def step_resume(ctx: Check) -> dict:
    flags = ("--model", "mlp", "--recipe", "paper", "--epochs", RESUME["epochs"], *sizes(RESUME))
    whole = train(ctx, "resume-whole", *flags)
    stopped = train(ctx, "resume-parts", *flags, "--stop-after", RESUME["stop_after"])
    check(stopped is None, f"--stop-after {RESUME['stop_after']} wrote a finished record instead of stopping")
    resumed = train(ctx, "resume-parts", *flags, "--resume")
    n = len(whole["predictions"])
    differ = sum(a != b for a, b in zip(whole["predictions"], resumed["predictions"], strict=True))
    check(differ == 0, f"{differ} of {n} predictions differ between the resumed and the uninterrupted run")
    check(
        resumed["accuracy"] == whole["accuracy"],
        f"accuracy {resumed['accuracy']!r} resumed against {whole['accuracy']!r} uninterrupted",
    )
    note = (
        f"mlp paper settings, {whole['n_train']} images, {whole['steps']} steps, stopped at "
        f"{RESUME['stop_after']} and resumed: all {n} predictions and the accuracy equal"
    )
    return {"accuracy": whole["accuracy"], "note": note}


def reloaded(ctx: Check) -> tuple:
    """The short training's record and its checkpoint reloaded: (record, model, its dataset, its device)."""
    if ctx.short is None:
        raise CheckSkippedError("needs the short training's checkpoint, which is missing (see its row)")
    from mnistlab.checkpoints import load_model

    model, config = load_model(ctx.short["checkpoint"], ctx.device)
    return ctx.short, model, config["dataset"], next(model.parameters()).device


def step_evaluation(ctx: Check) -> dict:
    """The checkpoint, reloaded with checkpoint.load_model, re-evaluates to the record's predictions."""
    import torch

    from mnistlab.data import load_split
    from mnistlab.training import evaluate
    from Network import has_conv

    rec, model, dataset, device = reloaded(ctx)
    if has_conv(model) and device.type != "mps":  # the layout dl_main.py trains and evaluates in
        model = model.to(memory_format=torch.channels_last)
    x, y = load_split("test", dataset, ctx.data_dir, rec["n_eval"])
    xt = torch.from_numpy(x).to(device).unsqueeze(1).float().div_(255).contiguous(memory_format=torch.channels_last)
    _, acc, pred = evaluate(model, xt, torch.from_numpy(y).to(device))
    pred, n = pred.cpu().tolist(), len(rec["predictions"])
    differ = sum(a != b for a, b in zip(pred, rec["predictions"], strict=True))
    check(differ == 0, f"{differ} of {n} predictions of the reloaded checkpoint differ from the record's")
    check(acc == rec["accuracy"], f"accuracy {acc!r} reloaded against {rec['accuracy']!r} recorded")
    return {"accuracy": acc, "note": f"checkpoint.load_model on {device}: all {n} predictions equal the record's"}


def step_prediction(ctx: Check, count: int = 32) -> dict:
    """A softmax over a few test images of the reloaded model, as predict.py does: its argmax is the record's."""
    try:
        import torch

        from mnistlab.data import load_split
    except ImportError as exc:
        raise CheckSkippedError(f"an import failed ({exc})") from None
    rec, model, dataset, device = reloaded(ctx)
    x, _ = load_split("test", dataset, ctx.data_dir, min(count, rec["n_eval"]))
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(x).to(device).unsqueeze(1).float() / 255).float(), dim=1)
    check(bool(torch.isfinite(probs).all()), "non-finite probabilities")
    check(bool(torch.allclose(probs.sum(1), torch.ones(len(x), device=device), atol=1e-4)), "rows not summing to 1")
    pred, expected = probs.argmax(1).cpu().tolist(), rec["predictions"][: len(x)]
    differ = sum(a != b for a, b in zip(pred, expected, strict=True))
    check(differ == 0, f"{differ} of {len(x)} softmax predictions differ from the record's")
    confidence = probs.max(1).values.mean().item()
    return {
        "note": f"{len(x)} test images, batch of {len(x)}: argmax equals the record's; mean top "
        f"probability {confidence:.3f}"
    }


# ---------------------------------------------------------------- 3-5. measured recipes
def seeds_row(ctx: Check, rec: dict, goal: float | None, what: str) -> dict:
    accs = [r["accuracy"] for r in rec["runs"]]
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    each = "/".join(f"{100 * a:.2f}" for a in accs)
    note = f"{what}; ± {100 * std:.2f} over {len(accs)} seeds, min {pct(min(accs))} (seeds {each}); s: mean training"
    row = {"accuracy": statistics.fmean(accs), "seconds": rec["seconds_train"], "note": note, "runs": rec["runs"]}
    if goal is not None:
        row["goal"] = f"mean ≥ {pct(goal)}: {verdict(ctx, row['accuracy'] >= goal)}"
    return row


def step_fast_seeds(ctx: Check) -> dict:
    rec = train(ctx, "fast", "--model", "cnn", "--recipe", "fast", "--seeds", ctx.seeds, *ctx.measured())
    return seeds_row(ctx, rec, FAST_GOAL, f"cnn fast recipe, {rec['n_train']} train images")


def process_row(ctx: Check, rec: dict, wall: float, goal: float | None) -> dict:
    note = f"one seed; s: process start to exit (imports, data, training {rec['seconds_train']:.2f} s, figures)"
    row = {"accuracy": rec["accuracy"], "seconds": wall, "note": note}
    if goal is not None:
        row["goal"] = f"≤ {goal:g} s (H100 goal): {verdict(ctx, wall <= goal)}"
    return row


def step_fast_process(ctx: Check) -> dict:
    rec, wall = process(ctx, "fast-process", "--model", "cnn", "--recipe", "fast")
    return process_row(ctx, rec, wall, None)


def step_paper_epoch(ctx: Check) -> dict:
    rec = train(ctx, "paper", "--model", "cnn", "--recipe", "paper", *ctx.measured(), "--epochs", 1)
    evals, seconds = len(rec["history"]["test"]), rec["seconds_eval_during_training"]
    note = (
        f"1 epoch at batch 30, {rec['steps']} steps; s: the epoch, incl. {evals} test evaluation(s) "
        f"({seconds:.2f} s); earlier H100 figure {PAPER_H100} s"
    )
    return {"accuracy": rec["accuracy"], "seconds": rec["seconds_per_epoch"], "note": note}


def gpu_recipe() -> None:
    from mnistlab.recipes import RECIPES

    if "cnn" not in RECIPES.get("gpu", {}):
        raise CheckSkippedError("mnistlab.recipes.RECIPES has no 'gpu' recipe for the cnn (yet)")


def step_gpu_seeds(ctx: Check) -> dict:
    gpu_recipe()
    quick = ["--batch-size", QUICK["gpu_batch"]] * ctx.quick
    rec = train(ctx, "gpu", "--model", "cnn", "--recipe", "gpu", "--seeds", ctx.seeds, *ctx.measured(), *quick)
    row = seeds_row(ctx, rec, GPU_GOALS["accuracy"], f"cnn gpu recipe, {rec['n_train']} train images")
    limit = GPU_GOALS["seconds_train"]
    row["goal"] += f"; training ≤ {limit} s (H100 goal): {verdict(ctx, rec['seconds_train'] <= limit)}"
    return row


def step_gpu_process(ctx: Check) -> dict:
    gpu_recipe()
    rec, wall = process(ctx, "gpu-process", "--model", "cnn", "--recipe", "gpu")
    return process_row(ctx, rec, wall, GPU_GOALS["seconds_process"])


STEPS = (
    ("1", "environment", step_environment),
    ("2", "short training beats the floor", step_short_training),
    ("2", "resume equals uninterrupted", step_resume),
    ("2", "evaluation of the checkpoint", step_evaluation),
    ("2", "prediction (softmax)", step_prediction),
    ("3", "fast recipe, seeds", step_fast_seeds),
    ("3", "fast recipe, process time", step_fast_process),
    ("4", "published cnn, s/epoch", step_paper_epoch),
    ("5", "gpu recipe, seeds", step_gpu_seeds),
    ("5", "gpu recipe, process time", step_gpu_process),
)


# ---------------------------------------------------------------- the check
def run_step(ctx: Check, step: str, name: str, fn) -> dict:
    print(f"== {step}. {name}", flush=True)
    row, start = {"step": step, "check": name}, time.perf_counter()
    try:
        row.update(fn(ctx))
        row["status"] = "pass"
    except CheckSkippedError as exc:
        row.update(status="skip", note=one_line(exc))
    except (Exception, SystemExit) as exc:  # a failed step is a row with its reason; the check goes on
        row.update(status="FAIL", note=one_line(exc))
    row["wall"] = time.perf_counter() - start
    print(f"   {row['status']}: {row.get('note', '')}", flush=True)
    return row


def cell(row: dict, key: str) -> str:
    value = row.get("wall" if key == "wall s" else key)
    if value is None:
        return ""
    if key == "accuracy":
        return pct(value)
    if key in ("seconds", "wall s"):
        return f"{value:.2f}"
    return str(value)


def write_outputs(ctx: Check, args, rows: list[dict], seconds: float) -> str:
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "FAIL", "skip")}
    name = ctx.env.get("device_name", ctx.device)
    summary = f"{counts['pass']} passed, {counts['FAIL']} failed, {counts['skip']} skipped in {seconds:.1f} s"
    text = f"# GPU check on {name} (--device {ctx.device}{', --quick' if ctx.quick else ''})\n\n"
    text += markdown_table(COLUMNS, [[cell(r, k) for k in COLUMNS] for r in rows]) + f"\n\n{summary}\n"
    results = Path(args.results_dir)
    environment = {**versions("numpy", "torch", "torchvision", "scikit-learn", "Pillow"), **ctx.env}
    config = {"device": ctx.device, "quick": ctx.quick, "data_dir": str(ctx.data_dir), "seeds": ctx.seeds}
    write_json(
        results / "bench-gpu.json",
        {
            "rows": rows,
            "counts": counts,
            "environment": environment,
            "config": config,
            "goals": {"fast": FAST_GOAL, "gpu": GPU_GOALS},
            "seconds_total": seconds,
        },
    )
    with atomic_path(results / "bench-gpu.md") as tmp:
        tmp.write_text(text)
    return text


def main(args) -> int:
    """Run every step; print and save the table. 0 when no check failed, else 1."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        ctx = Check(args, Path(tmp))
        rows = [run_step(ctx, step, name, fn) for step, name, fn in STEPS]
    text = write_outputs(ctx, args, rows, time.perf_counter() - start)
    print("\n" + text + f"written to {Path(args.results_dir) / 'bench-gpu.md'} and bench-gpu.json")
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0
