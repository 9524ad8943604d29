"""The whole experiment in one command: data, classical models, both networks, report.

    python experiment.py                         # MNIST: every model at the published and the tuned settings
    python experiment.py --recipe fast           # the networks' fast recipe instead of 20 published epochs
    python experiment.py --dataset fashion-mnist --source ../shared/fashion-mnist   # against its own table
    python experiment.py --seeds 3               # every model three times: mean ± std in the table
    python experiment.py --update-readme         # also refresh the README's table and figures

It calls each step's functions with one shared set of settings (the same flags as ml_main.py and dl_main.py),
so every run lands in results/<dataset>/ under its own name and the report shows each as a row. The classical
models run twice: at the settings of the dataset's own published table (the write-up's `paper` settings for
MNIST, the Fashion-MNIST benchmark's `benchmark` settings for Fashion-MNIST; published.py) and `tuned`. With two
or more threads (--threads, by default every usable core) the two families and the CNN run side by side, each in a
process of its own with half the threads (libsvm fits on one thread, and at batch 30 the CNN gets little from a
second); --threads 1 runs everything one after the other.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import data_prep
import dl_main
import ml_main
import mnistlab.published as published
import report
from mnistlab.errors import ProjectError, one_line, run_cli
from mnistlab.files import check_output_dirs, write_json
from mnistlab.flags import add_data_flags, add_run_flags, path_type
from mnistlab.machine import usable_cores, versions
from mnistlab.processes import run_side_by_side
from mnistlab.recipes import NETWORK_RECIPES
from mnistlab.records import print_config
from mnistlab.training import StopFlag
from report import README_SECTIONS

STEPS = ("ml-paper", "ml-benchmark", "ml-tuned", "mlp", "cnn")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=path_type, help="folder with the four IDX files of an MNIST-format dataset")
    p.add_argument(
        "--recipe",
        choices=[r for r in NETWORK_RECIPES if r != "gpu"],
        help="the networks' recipe (default: paper, the write-up's settings, on MNIST; fast on other "
        "datasets, where the write-up published no network)",
    )
    p.add_argument(
        "--skip",
        nargs="+",
        choices=STEPS,
        default=[],
        help="steps to leave out (the classical models at the published settings are ml-paper on MNIST, "
        "ml-benchmark on Fashion-MNIST)",
    )
    p.add_argument("--update-readme", action="store_true", help="write the table and figures into README.md/plots/")
    add_data_flags(p)
    add_run_flags(p)
    args = p.parse_args(argv)
    try:
        args.dataset = data_prep.dataset_name(
            args.dataset if args.dataset != "mnist" or not args.source else None, args.source
        )
    except ProjectError as exc:
        p.error(str(exc))
    if args.update_readme and args.dataset not in README_SECTIONS:
        p.error(f"--update-readme is for {' and '.join(README_SECTIONS)} only (the README has their sections)")
    args.recipe = args.recipe or ("paper" if args.dataset == "mnist" else "fast")
    return args


def shared(args) -> dict:
    """The settings every step takes, by the same names."""
    keys = (
        "dataset",
        "data_dir",
        "train_size",
        "val_size",
        "test_size",
        "seed",
        "seeds",
        "threads",
        "results_dir",
        "plots_dir",
        "checkpoint_dir",
    )
    return {k: getattr(args, k) for k in keys}


def plan(args, started: float) -> list[tuple[str, object]]:
    """(title, function) for every step, in order; each function takes no argument (for steps side by side: a list
    of lanes, each a list of such pairs whose functions pickle, functools.partial). ``started``: the
    experiment's perf_counter start, so that the report can say how long everything before it took."""
    common = shared(args)
    prep = {
        "dataset": args.dataset,
        "source": args.source,
        "data_dir": args.data_dir,
        "plots_dir": args.plots_dir,
        "write_json_files": False,
    }  # the models read the cache alone; python data_prep.py writes the JSON too
    steps = [("data", lambda: data_prep.prepare(**prep))]
    recipes = [r for r in (published.recipe(args.dataset), "tuned") if f"ml-{r}" not in args.skip]
    cores = args.threads or usable_cores()
    lanes = len(recipes) == 2 and cores >= 2  # libsvm fits on one thread: two families share the cores better
    each = {"threads": cores // 2} if lanes else {}
    classical = []
    for recipe in recipes:
        configs = ml_main.make_configs(algo="all", recipe=recipe, **{**common, **each})  # checked before any work
        run = functools.partial(ml_main.run_all, configs, progress=not lanes)  # a partial pickles for a child
        classical.append((f"classical models, {recipe} settings", run))
    mlp, cnn = [], []  # each a list of its (title, step), empty where skipped
    for net, out in (("mlp", mlp), ("cnn", cnn)):
        if net not in args.skip:
            config = dl_main.make_config(model=net, recipe=args.recipe, **{**common, **each})
            out.append((f"network {net}, {args.recipe} recipe", functools.partial(run_network, config)))
    if lanes:  # the MLP follows the published family, which ends first; the CNN is a lane of its own (docs/speed.md)
        side = [lane for lane in ([classical[0], *mlp], classical[1:], cnn) if lane]
        threads = f"{cores // 2} thread{'s' if cores // 2 > 1 else ''} each"
        titles = [" then ".join(title for title, _ in lane) for lane in side]
        steps.append((f"{titles[0]}, beside {' and '.join(titles[1:])} ({threads})", side))
    else:
        steps += classical + mlp + cnn
    if args.val_size:  # tuning runs are scored on held-out training images: the report shows test-set runs only
        return steps
    report_args = (args.dataset, args.data_dir, args.results_dir, args.plots_dir, args.update_readme)
    return [*steps, ("report", lambda: report.make_report(*report_args, time.perf_counter() - started))]


class TrainingInterruptedError(ProjectError):
    """Ctrl-C during a network's training: its progress is saved (exit 130, as for any Ctrl-C)."""


def run_network(config: dict) -> None:
    with StopFlag(None) as stop:
        if dl_main.run(config, stop):
            raise TrainingInterruptedError(
                "interrupted; finish that network with python dl_main.py --resume and its flags"
            )


def _main(argv=None) -> int:
    args = parse_args(argv)
    print_config(vars(args))
    start = time.perf_counter()
    steps = plan(args, start)
    folders = {
        "--results-dir": args.results_dir,
        "--plots-dir": args.plots_dir,
        "--checkpoint-dir": args.checkpoint_dir,
    }
    check_output_dirs({flag: Path(folder) / args.dataset for flag, folder in folders.items()})  # before any work
    try:
        timings = run_steps(steps)
    except TrainingInterruptedError as exc:
        print(f"experiment.py: {one_line(exc)}", file=sys.stderr)
        return 130
    if args.val_size:
        print(
            "\nnote: --val-size runs are tuning runs, scored on held-out training images; the report shows "
            f"test-set runs only: their records are in {Path(args.results_dir) / args.dataset}/ (*-val.json)"
        )
    total = time.perf_counter() - start
    record = {
        "config": vars(args),
        "seconds": timings,
        "seconds_total": total,
        "versions": versions("torch", "scikit-learn", "scikit-learn-intelex"),
    }
    name = "timings-val.json" if args.val_size else "timings.json"  # a tuning pass's time is not the report's
    write_json(Path(args.results_dir) / args.dataset / "experiment" / name, record)
    print(f"\nexperiment done in {total / 60:.1f} min: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return 0


def run_steps(steps) -> dict:
    """Run every step in order (a list of steps at once, each in a process of its own); {title: seconds}."""
    timings = {}
    for i, (title, step) in enumerate(steps, 1):
        print(f"\n== [{i}/{len(steps)}] {title}", flush=True)
        if isinstance(step, list):
            timings.update(run_side_by_side(step))
            continue
        t0 = time.perf_counter()
        result = step()
        timings[title] = time.perf_counter() - t0
        if title == "report":
            print(result, end="")
    return timings


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
