"""The one vocabulary of every script: argparse types and the shared flags, each defined once.

Every main adds its flags from here, so ``--val-size`` or ``--threads`` mean the same thing in ml_main.py,
dl_main.py, experiment.py, predict.py and demo.py.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from mnistlab.errors import ProjectError, one_line
from mnistlab.machine import usable_cores
from mnistlab.paths import BUNDLED, CHECKPOINTS, PLOTS, RESULTS
from mnistlab.recipes import CLASSICAL, NETWORKS, PREFERRED


def _bounded(kind, holds, bound: str, most=None):
    bound += "" if most is None else f" and at most {most}"

    def check(text: str):
        value = kind(text)
        if not holds(value):  # a comparison with nan is False: nan is rejected too
            raise argparse.ArgumentTypeError(f"must be {bound}, got {one_line(text)}")
        if kind is float and not math.isfinite(value):  # inf passes "> 0" but is no setting of any model
            raise argparse.ArgumentTypeError(f"must be a finite number, got {one_line(text)}")
        return value

    check.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return check


def positive(kind, most=None):
    """An argparse type: ``kind(text)`` that must be > 0 (and at most ``most``: beyond it a typo, not a setting)."""
    return _bounded(kind, lambda v: 0 < v <= (most or math.inf), "> 0", most)


def non_negative(kind, most=None):
    """An argparse type: ``kind(text)`` that must be >= 0 (and at most ``most``)."""
    return _bounded(kind, lambda v: 0 <= v <= (most or math.inf), ">= 0", most)


def in_range(kind, low, high):
    """An argparse type: ``kind(text)`` from ``low`` to ``high``."""
    return _bounded(kind, lambda v: low <= v <= high, f"from {low} to {high}")


def path_type(text: str) -> Path:
    """An argparse type for every file and folder flag: an empty (or blank) path would silently mean the
    current folder, so it is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty path ({text!r}) names no file or folder; for this folder give .")
    return Path(text)


MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take 0 to 2**32 - 1
seed_type = in_range(int, 0, MAX_SEED)  # the argparse type of --seed


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "custom"


def dataset_type(name: str) -> str:
    """An argparse type for --dataset: the name becomes a folder under data/, results/, plots/, checkpoints/,
    so it is lower-case letters, digits and dashes only (no slashes or dots that would lead elsewhere)."""
    if name != slug(name):
        raise argparse.ArgumentTypeError(f"{name!r}: use lower-case letters, digits and dashes (e.g. {slug(name)})")
    return name


DEVICES = ("auto", "cpu", "cuda", "mps")


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset", type=dataset_type, default="mnist", help="dataset prepared under --data-dir (default: mnist)"
    )
    g.add_argument("--data-dir", type=path_type, default=BUNDLED, help="data folder (default: the repo's data/)")
    g.add_argument("--train-size", type=positive(int), help="train on the first N training images (default: all)")
    g.add_argument(
        "--val-size",
        type=non_negative(int),
        default=0,
        help="hold out N training images (a fixed random draw) and score on them instead of the test "
        "set, which is then not touched: for choosing settings (default: 0)",
    )
    g.add_argument("--test-size", type=positive(int), help="score on the first N test images (default: all)")


def add_run_flags(p: argparse.ArgumentParser, checkpoints: bool = True) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=seed_type, default=0, help=f"random seed, 0 to {MAX_SEED} (default: 0)")
    g.add_argument(
        "--seeds", type=in_range(int, 1, 1000), default=1, help="run seeds seed..seed+N-1; report mean ± std"
    )
    g.add_argument(
        "--threads",
        type=non_negative(int),
        default=0,
        help=f"CPU threads (default 0: every usable core, {usable_cores()} here)",
    )
    add_output_flags(g, checkpoints)


def add_output_flags(g, checkpoints: bool = True) -> None:
    g.add_argument("--results-dir", type=path_type, default=RESULTS, help="run records (default: the repo's results/)")
    g.add_argument("--plots-dir", type=path_type, default=PLOTS, help="figures (default: the repo's plots/)")
    if checkpoints:
        g.add_argument(
            "--checkpoint-dir",
            type=path_type,
            default=CHECKPOINTS,
            help="saved models (default: the repo's checkpoints/)",
        )


def add_device_flag(p) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda, then mps, then cpu (default)")


def check_common(config: dict) -> None:
    """Checks shared by every main, before any work."""
    if config.get("threads", 0) > usable_cores():
        raise ProjectError(
            f"--threads {config['threads']}: only {usable_cores()} cores are usable here; choose fewer (0: all of them)"
        )
    if config.get("seed", 0) + config.get("seeds", 1) - 1 > MAX_SEED:
        raise ProjectError(
            f"--seed {config['seed']} with --seeds {config['seeds']} runs past the largest seed "
            f"{MAX_SEED}; choose a smaller --seed"
        )
    if config.get("val_size") and config.get("test_size"):
        raise ProjectError("--test-size does nothing with --val-size (a validation run never touches the test set)")


def explicit_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The flags given on the command line, with their values: those whose value differs from the default
    or that were given at all where the default is None (recipe settings default to None for this reason)."""
    return {k: v for k, v in vars(args).items() if v is not None and v != parser.get_default(k)}


# ---------------------------------------------------------------- model-choosing flags (predict, handwriting, demo)
def add_model_flags(p) -> None:
    """--checkpoint FILE, --model M [--recipe R], or --all; with --checkpoint-dir, --dataset and --device."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint", type=path_type, help="a saved model file (.pt network or .skops classical model)"
    )
    which.add_argument("--model", choices=NETWORKS + CLASSICAL, help="which model (default: cnn)")
    which.add_argument("--all", action="store_true", help="every trained model, side by side")
    p.add_argument(
        "--recipe",
        help=f"the model's recipe (networks: {', '.join(PREFERRED['network'])}; classical: "
        f"{', '.join(PREFERRED['classical'])}); default: the first of those that is trained",
    )
    add_models_location(p)


def add_models_location(p) -> None:
    """--checkpoint-dir, --dataset and --device: where trained models are found and where networks run."""
    p.add_argument(
        "--checkpoint-dir",
        type=path_type,
        default=CHECKPOINTS,
        help="where the trained models are, in <dir>/<dataset>/ (default: the repo's checkpoints/)",
    )
    p.add_argument("--dataset", type=dataset_type, default="mnist", help="whose models to load (default: mnist)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="for the networks (default: auto)")


def check_model_flags(p, args) -> None:
    if args.recipe and (args.checkpoint or args.all):
        p.error("--recipe picks the file of one --model; it does not apply to --checkpoint or --all")
