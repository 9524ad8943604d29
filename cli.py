"""The one vocabulary of every script: the shared flags, their defaults, and where a run's files go.

Every main adds its flags from here, so ``--val-size`` or ``--threads`` mean the same thing in ml_main.py,
dl_main.py, experiment.py, predict.py and demo.py. Output folders default to the repo's own folders (not the
working folder), so every script works from anywhere; each run writes under ``<folder>/<dataset>/<run name>``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dataset import BUNDLED, REPO
from utils import ProjectError, non_negative, positive, usable_cores

RESULTS, PLOTS, CHECKPOINTS = REPO / "results", REPO / "plots", REPO / "checkpoints"
DEVICES = ("auto", "cpu", "cuda", "mps")
# Flags that say where or how to run, not what is trained: they never change a run's name (or its results).
RUNTIME = {"device", "threads", "data_dir", "results_dir", "plots_dir", "checkpoint_dir", "resume", "stop_after",
           "log_every", "eval_every", "engine", "algo", "model", "recipe", "dataset"}  # fmt: skip


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "custom"


def dataset_type(name: str) -> str:
    """An argparse type for --dataset: the name becomes a folder under data/, results/, plots/, checkpoints/,
    so it is lower-case letters, digits and dashes only (no slashes or dots that would lead elsewhere)."""
    if name != slug(name):
        raise argparse.ArgumentTypeError(f"{name!r}: use lower-case letters, digits and dashes (e.g. {slug(name)})")
    return name


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", type=dataset_type, default="mnist",
                   help="dataset prepared under --data-dir (default: mnist)")  # fmt: skip
    g.add_argument("--data-dir", type=Path, default=BUNDLED, help="data folder (default: the repo's data/)")
    g.add_argument("--train-size", type=positive(int), help="train on the first N training images (default: all)")
    g.add_argument("--val-size", type=non_negative(int), default=0,
                   help="hold out N training images (a fixed random draw) and score on them instead of the test "
                        "set, which is then not touched: for choosing settings (default: 0)")  # fmt: skip
    g.add_argument("--test-size", type=positive(int), help="score on the first N test images (default: all)")


def add_run_flags(p: argparse.ArgumentParser, checkpoints: bool = True) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=non_negative(int), default=0, help="random seed (default: 0)")
    g.add_argument("--seeds", type=positive(int), default=1, help="run seeds seed..seed+N-1; report mean ± std")
    g.add_argument("--threads", type=non_negative(int), default=0,
                   help=f"CPU threads (default 0: every usable core, {usable_cores()} here)")  # fmt: skip
    add_output_flags(g, checkpoints)


def add_output_flags(g, checkpoints: bool = True) -> None:
    g.add_argument("--results-dir", type=Path, default=RESULTS, help="run records (default: the repo's results/)")
    g.add_argument("--plots-dir", type=Path, default=PLOTS, help="figures (default: the repo's plots/)")
    if checkpoints:
        g.add_argument("--checkpoint-dir", type=Path, default=CHECKPOINTS,
                       help="saved models (default: the repo's checkpoints/)")  # fmt: skip


def add_device_flag(p) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda, then mps, then cpu (default)")


def check_common(config: dict) -> None:
    """Checks shared by every main, before any work."""
    if config.get("threads", 0) > usable_cores():
        raise ProjectError(f"--threads {config['threads']}: only {usable_cores()} cores are usable here; "
                           "choose fewer (0: all of them)")  # fmt: skip
    if config.get("val_size") and config.get("test_size"):
        raise ProjectError("--test-size does nothing with --val-size (a validation run never touches the test set)")


def run_name(config: dict, explicit: dict) -> str:
    """<model>-<recipe>, then every setting given explicitly (e.g. cnn-paper-epochs2-train_size2000), so that runs
    of different settings never overwrite each other's records, checkpoints or figures; '-val' for tuning runs."""
    parts = [config["model"], config["recipe"]]
    for key in sorted(set(explicit) - RUNTIME - {"val_size"}):
        value = str(explicit[key]).replace("/", "_").replace(" ", "")
        parts.append(f"{key}{value}")
    return "-".join(parts) + ("-val" if config.get("val_size") else "")


def run_paths(config: dict) -> dict:
    """Every file a run writes, from its config (dataset, name and the output folders)."""
    dataset, name = config["dataset"], config["name"]
    out = {
        "record": Path(config["results_dir"]) / dataset / f"{name}.json",
        "confusion": Path(config["plots_dir"]) / dataset / f"confusion_{name}.png",
        "curves": Path(config["plots_dir"]) / dataset / f"curves_{name}.png",
    }
    if config.get("checkpoint_dir"):
        out["checkpoint"] = Path(config["checkpoint_dir"]) / dataset / name
    return out


def explicit_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The flags given on the command line, with their values: those whose value differs from the default
    or that were given at all where the default is None (recipe settings default to None for this reason)."""
    return {k: v for k, v in vars(args).items() if v is not None and v != parser.get_default(k)}
