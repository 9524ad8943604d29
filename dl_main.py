"""Train the published networks (MLP, CNN) on MNIST-format digits, log curves, beat the published accuracy.

    python dl_main.py --model cnn                  # published settings: 20 epochs, batch 30, SGD lr 0.01
    python dl_main.py --model mlp --recipe best    # a stronger recipe (schedule, Adam, more hidden units)
    python dl_main.py --model cnn --recipe fast    # >= 99.0% in under 20 s on 2 cores with native bfloat16
    python dl_main.py --model cnn --resume         # continue an interrupted run from checkpoints/cnn.pt

Writes results/<model>.json (accuracy, predictions, per-class scores, the full train/test history),
plots/curves_<model>.png and plots/confusion_<model>.png, and checkpoints/<model>.pt. Ctrl-C saves a
checkpoint and the curves so far; --resume then finishes the run with the same result as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from augment import KINDS, parse_kinds
from checkpoint import checkpoint_path, load_weights, read_checkpoint, save_checkpoint, set_rng_states
from data_prep import BUNDLED
from trainer import build, evaluate, load_data, resolve_amp, resolve_device, setup_torch, steps_per_epoch, train
from utils import (
    ProjectError,
    check_writable,
    non_negative,
    per_class_scores,
    positive,
    print_config,
    pyplot,
    run_cli,
    summarize_seeds,
    versions,
)

# The published settings; recipes override some of them, explicit flags override the recipe.
PAPER = {
    "epochs": 20,
    "batch_size": 30,
    "lr": 0.01,
    "optimizer": "sgd",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "schedule": "constant",
    "hidden_size": 196,
    "dropout": 0.5,
    "label_smoothing": 0.0,
    "augment": 0.0,
    "distort": "",
    "amp": False,
    "eval_every": 1000,
}
# The recipes were chosen on validation accuracy alone, e.g. python dl_main.py --recipe best --val-size 10000
# (10000 training images held out; the test set played no part); their goals are checked on the test set after.
FAST = {"optimizer": "adam", "schedule": "onecycle", "amp": "auto", "batch_size": 128, "eval_every": 0}
BEST = {**FAST, "augment": 1.0, "eval_every": 2000}
HANDWRITING = {"augment": 0.6, "distort": "shear,elastic,width,blocky,blur,gamma"}
RECIPES = {
    "paper": {"mlp": {}, "cnn": {}},
    "fast": {
        "mlp": {**FAST, "epochs": 3, "lr": 3e-3, "hidden_size": 512, "dropout": 0.2},
        "cnn": {**FAST, "epochs": 2, "lr": 6e-3, "dropout": 0.1, "label_smoothing": 0.1},
    },
    "best": {
        "mlp": {**BEST, "epochs": 30, "lr": 2e-3, "hidden_size": 1024, "dropout": 0.3},
        "cnn": {**BEST, "epochs": 50, "lr": 4e-3, "dropout": 0.3, "label_smoothing": 0.1},
    },
    # For users' own digits (other writers, pens, scans): the best recipe plus slant/aspect, elastic wobble,
    # stroke width, upscaled-scan blockiness, blur and gamma (augment.py), all at strength 0.6; the cnn without
    # dropout, in 40 epochs. Chosen on MNIST validation and handwriting.py's drawn-val set alone (the UCI
    # handwriting set played no part): benchmarks/handwriting_tuning.md.
    "handwriting": {
        "mlp": {**BEST, "epochs": 30, "lr": 2e-3, "hidden_size": 1024, "dropout": 0.3, **HANDWRITING},
        "cnn": {**BEST, "epochs": 40, "lr": 4e-3, "dropout": 0.0, "label_smoothing": 0.1, **HANDWRITING},
    },
}
# Where a run's final-model accuracy should land (the published figure, or the recipe's goal); checked at the end.
TARGETS = {"paper": {"mlp": 0.9386, "cnn": 0.9886}, "fast": {"cnn": 0.990}, "best": {"mlp": 0.980, "cnn": 0.995},
           "handwriting": {"mlp": 0.980, "cnn": 0.993}}  # fmt: skip
# Settings that only say where and how to run; everything else comes from the checkpoint on --resume.
RUNTIME = {"device", "threads", "data_dir", "results_dir", "plots_dir", "checkpoint_dir", "resume", "stop_after"}


# ---------------------------------------------------------------- settings
def distortion_kinds(text: str) -> str:
    """An argparse type: the --distort list, checked and in augment.KINDS order ("" for none)."""
    try:
        return ",".join(parse_kinds(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(with_defaults: bool = True) -> argparse.ArgumentParser:
    """The CLI; without defaults, parsing it yields only the flags given explicitly."""
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=None if with_defaults else argparse.SUPPRESS,
    )

    def add(*flags, default=None, **kwargs):
        p.add_argument(*flags, **kwargs, **({"default": default} if with_defaults else {}))

    add("--model", choices=["mlp", "cnn"], default="cnn", help="network to train (default: cnn)")
    add(
        "--recipe",
        choices=list(RECIPES),
        default="paper",
        help="paper: the published settings (default); fast: Adam, one-cycle, batch 128, bfloat16 where native, "
        "2 epochs (cnn); best: fast plus augmentation, 50 epochs (cnn); handwriting: best plus distortions "
        "of other writers and scans (--distort), 40 epochs (cnn)",
    )
    add("--epochs", type=positive(int), default=PAPER["epochs"], help="passes over the training set (paper: 20)")
    add("--batch-size", type=positive(int), default=PAPER["batch_size"], help="images per step (paper: 30)")
    add("--lr", type=positive(float), default=PAPER["lr"], help="learning rate, peak one for onecycle (paper: 0.01)")
    add("--optimizer", choices=["sgd", "adam", "adamw"], default=PAPER["optimizer"], help="(paper: sgd)")
    add("--momentum", type=non_negative(float), default=PAPER["momentum"], help="SGD momentum (paper: 0)")
    add("--weight-decay", type=non_negative(float), default=PAPER["weight_decay"], help="(paper: 0)")
    add("--schedule", choices=["constant", "onecycle"], default=PAPER["schedule"], help="learning-rate schedule")
    add("--hidden-size", type=positive(int), default=PAPER["hidden_size"], help="hidden units (paper: 196)")
    add("--dropout", type=float, default=PAPER["dropout"], help="dropout probability (paper: 0.5)")
    add("--label-smoothing", type=float, default=PAPER["label_smoothing"], help="(paper: 0)")
    add(
        "--augment",
        type=non_negative(float),
        default=PAPER["augment"],
        help="random shift/rotate/scale strength, 0 = off; also scales the --distort kinds",
    )
    add(
        "--distort",
        type=distortion_kinds,
        default=PAPER["distort"],
        help="distortions besides shift/rotate/scale, applied when --augment > 0: comma-separated from "
        f"{', '.join(KINDS)}, or all (default: none; handwriting recipe: all but refit); see augment.py",
    )
    add(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=PAPER["amp"],
        help="bfloat16 autocast in training (paper: off; fast, best: on where the device has native bfloat16)",
    )
    add("--seed", type=non_negative(int), default=0, help="random seed (default: 0)")
    add("--seeds", type=positive(int), default=1, help="run seeds seed..seed+N-1 and report mean and std")
    add("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="auto: cuda, then mps, then cpu")
    add("--threads", type=non_negative(int), default=0, help="CPU threads (default 0: every available core)")
    add("--dataset", default="mnist", help="dataset name under --data-dir (default: mnist)")
    add("--data-dir", type=Path, default=BUNDLED, help="data folder (default: data/)")
    add("--train-size", type=positive(int), help="use the first N training images (default: all)")
    add("--val-size", type=non_negative(int), default=0, help="hold out N training images to pick a best checkpoint")
    add("--test-size", type=positive(int), help="use the first N test images (default: all)")
    add("--log-every", type=positive(int), default=20, help="log a train point every N steps (default: 20)")
    add("--eval-every", type=non_negative(int), default=PAPER["eval_every"], help="test every N steps, 0: at the end")
    add("--results-dir", type=Path, default=Path("results"), help="default: results/")
    add("--plots-dir", type=Path, default=Path("plots"), help="default: plots/")
    add("--checkpoint-dir", type=Path, default=Path("checkpoints"), help="default: checkpoints/")
    add(
        "--resume",
        action="store_true",
        default=False,
        help="continue from <checkpoint-dir>/<model>.pt with its saved settings",
    )
    add("--stop-after", type=positive(int), help="stop after N steps, saving a checkpoint to --resume from")
    return p


def parse_args(argv=None) -> tuple[argparse.Namespace, set]:
    """The parsed flags and the set of flags given explicitly (they win over the recipe and the checkpoint)."""
    p = build_parser()
    args = p.parse_args(argv)
    explicit = set(vars(build_parser(with_defaults=False).parse_args(argv)))
    for name in ("dropout", "label_smoothing"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    return args, explicit


def resolve_config(args: argparse.Namespace, explicit: set) -> dict:
    """Defaults, then the recipe's settings, then the flags given explicitly."""
    config = vars(args).copy()
    recipe = RECIPES[args.recipe][args.model]
    config.update({k: v for k, v in recipe.items() if k not in explicit})
    config["target"] = TARGETS.get(args.recipe, {}).get(args.model)
    return {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}


# ---------------------------------------------------------------- outputs
def plot_curves(history: dict, path: Path, title: str) -> None:
    """Loss and accuracy against the step: train points as a line, test (and validation) points as markers."""
    plt = pyplot()

    from utils import savefig

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for split, style in (("train", {"lw": 0.8, "alpha": 0.7}), ("test", {"marker": "o"}), ("val", {"marker": "s"})):
        pts = history.get(split) or []
        if not pts:
            continue
        steps = [p["step"] for p in pts]
        axes[0].plot(steps, [p["loss"] for p in pts], label=split, **style)
        axes[1].plot(steps, [100 * p["accuracy"] for p in pts], label=split, **style)
    for ax, name in zip(axes, ("cross-entropy loss", "accuracy (%)"), strict=True):
        ax.set_xlabel("step (batches)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:  # a run stopped before its first log point has none
            ax.legend()
    axes[0].set_yscale("log")
    # Zoom on where the evaluated accuracy lies; the first train points, far lower, run in from below.
    evaluated = [100 * p["accuracy"] for split in ("test", "val") for p in history.get(split) or []]
    if evaluated:
        axes[1].set_ylim(max(0.0, min(evaluated) - 3), 100.2)
    fig.suptitle(title)
    savefig(fig, path)


# ---------------------------------------------------------------- one run
def fresh_state() -> dict:
    return {"step": 0, "epoch": 0.0, "history": {"train": [], "test": [], "val": []}, "window": [0.0, 0.0, 0.0],
            "seconds_train": 0.0, "seconds_eval": 0.0, "best_val": None}  # fmt: skip


def saved_config(config: dict, explicit: set, ckpt: dict, path: Path) -> dict:
    """The checkpoint's settings with this invocation's runtime ones; a conflicting explicit flag is an error."""
    saved = ckpt["config"]
    if saved.get("model") != config["model"]:
        raise ProjectError(f"{path} holds a {saved.get('model')!r} network, not {config['model']!r}")
    for key in sorted(explicit - RUNTIME - {"seeds"}):
        if saved.get(key) != config[key]:
            raise ProjectError(
                f"--{key.replace('_', '-')} {config[key]} differs from the checkpoint's {saved.get(key)}; "
                "drop the flag to continue that run, or start afresh without --resume"
            )
    # --seeds given again may extend the run; left out, it is the checkpoint's, so no seed is dropped.
    seeds = config["seeds"] if "seeds" in explicit else saved.get("seeds", 1)
    return {**saved, **{k: config[k] for k in RUNTIME}, "seeds": seeds}


def run_seed(config: dict, index: int, explicit: set, data: dict, device, stop) -> dict | None:
    """Train (or continue) one seed and return its record; None when stopped before the end."""
    import torch

    path, state, ckpt = checkpoint_path(config, index), fresh_state(), None
    if config["resume"] and (index == 0 or path.exists()):  # later seeds may not have started yet
        ckpt = read_checkpoint(path)
        config = saved_config(config, explicit, ckpt, path)
        state.update({k: ckpt[k] for k in state if k in ckpt})
    torch.manual_seed(config["seed"])
    total = config["epochs"] * steps_per_epoch(len(data["train"][1]), config["batch_size"])
    model, opt, sched = build(config, device, total)
    if ckpt:
        load_weights(model, ckpt, path)
        opt.load_state_dict(ckpt["optimizer"])
        if sched:
            sched.load_state_dict(ckpt["scheduler"])
        set_rng_states(ckpt["rng"])
        print(f"resuming {path} at step {state['step']}/{total}")

    def save(best: bool = False) -> None:
        save_checkpoint(checkpoint_path(config, index, best), model, opt, sched, state, config)

    title = f"{config['model']} ({config['recipe']} recipe, seed {config['seed']}) on {config['dataset']}"
    curves = Path(config["plots_dir"]) / f"curves_{config['model']}.png"
    finished, final = train(model, opt, sched, data, config, state, save, stop)
    if not finished:
        save()
        plot_curves(state["history"], curves, title + f", stopped at step {state['step']}")
        return None
    if final is None:  # a finished run resumed: evaluate it here
        start = time.perf_counter()
        final = (*evaluate(model, *data["test"]), time.perf_counter() - start)
    loss, acc, pred, seconds_predict = final
    if index == 0:  # the merged record keeps the first seed's history and predictions; so do the figures
        plot_curves(state["history"], curves, title)
    record = {
        "model": config["model"],
        "dataset": config["dataset"],
        "test_accuracy": acc,
        "test_loss": loss,
        "n_train": len(data["train"][1]),
        "n_val": 0 if data["val"] is None else len(data["val"][1]),
        "n_test": len(data["test"][1]),
        "seconds_train": state["seconds_train"],
        "seconds_eval_during_training": state["seconds_eval"],
        "seconds_per_epoch": state["seconds_train"] / config["epochs"],
        "seconds_predict": seconds_predict,
        "steps": state["step"],
        "seed": config["seed"],
        "device": str(device),
        "checkpoint": str(checkpoint_path(config, index)),
        "predictions": pred.cpu().tolist(),
        "history": state["history"],
        "config": config,
    }
    if state["best_val"]:
        record["best_val"] = {**state["best_val"], "checkpoint": str(checkpoint_path(config, index, best=True))}
    print(f"{config['model']} seed {config['seed']}: test accuracy {100 * acc:.2f}% (final model), "
          f"{record['seconds_per_epoch']:.1f} s/epoch, {state['seconds_train']:.1f} s training")  # fmt: skip
    return record


def write_outputs(record: dict, data: dict, config: dict) -> None:
    """Figures first, the JSON last: its presence vouches for a finished run."""
    from utils import plot_confusion, write_json

    classes, pred = data["classes"], np.asarray(record["predictions"])
    record["per_class"] = per_class_scores(data["y_test_np"], pred, classes)
    record["versions"] = versions("torch", "torchvision", "numpy", "scikit-learn")
    full_mnist = config["dataset"] == "mnist" and not config["train_size"] and not config["test_size"]
    target = config["target"] if full_mnist else None  # the goals hold for the full split only
    record["target"], record["target_met"] = target, None if target is None else record["test_accuracy"] >= target
    title = f"{record['model']} ({config['recipe']}): {100 * record['test_accuracy']:.2f}% on {record['n_test']} images"
    plot_confusion(data["y_test_np"], pred, classes, Path(config["plots_dir"]) / f"confusion_{record['model']}.png",
                   title)  # fmt: skip
    write_json(Path(config["results_dir"]) / f"{record['model']}.json", record)
    if target is not None:
        verdict = "reached" if record["target_met"] else "NOT reached"
        print(f"target {100 * target:.2f}% {verdict} (final model {100 * record['test_accuracy']:.2f}%)")


class StopFlag:
    """Ctrl-C (SIGINT) asks the loop to stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self, stop_after: int | None):
        self.requested, self.budget, self.old = False, stop_after, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self.handle)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        if self.budget is not None:
            self.budget -= 1
            return self.requested or self.budget <= 0
        return self.requested


def _main(argv=None) -> int:
    args, explicit = parse_args(argv)
    with StopFlag(args.stop_after) as stop:  # from the start: a Ctrl-C during set-up also ends cleanly
        return run_all(resolve_config(args, explicit), explicit, stop)


def run_all(config: dict, explicit: set, stop) -> int:
    if config["resume"]:  # the data and every training setting come from the checkpoint
        path = checkpoint_path(config, 0)
        config = saved_config(config, explicit, read_checkpoint(path), path)
    device = resolve_device(config["device"])
    config["amp"] = resolve_amp(config["amp"], device)  # saved resolved: a resumed run repeats it
    print_config(config)
    for key in ("results_dir", "plots_dir", "checkpoint_dir"):
        check_writable(Path(config[key]), "--" + key.replace("_", "-"))
    setup_torch(config, device)
    data = load_data(config, device)
    config["classes"] = data["classes"]
    records = []
    for index in range(config["seeds"]):
        record = run_seed({**config, "seed": config["seed"] + index}, index, explicit, data, device, stop)
        if record is None:
            path = checkpoint_path({**config, "seed": config["seed"] + index}, index)
            why = "interrupted" if stop.requested else f"stopped after --stop-after {config['stop_after']} steps"
            print(f"dl_main.py: {why}; checkpoint saved to {path}; continue with --resume", file=sys.stderr)
            return 130 if stop.requested else 0
        records.append(record)
    merged = summarize_seeds(records)
    write_outputs(merged, data, records[0]["config"])
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
