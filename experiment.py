"""The whole experiment in one command: data, classical models, both networks, report.

    python experiment.py                         # MNIST: every model, published and tuned settings
    python experiment.py --fast                  # the networks' fast recipe instead of 20 published epochs
    python experiment.py --dataset fashion-mnist --source ~/datasets/fashion
    python experiment.py --seeds 3               # every model three times: mean and std in the table

MNIST results go to results/ and plots/ (the classical models at the published settings to
results/paper/ and plots/paper/); any other dataset's to results/<name>/ and plots/<name>/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data_prep import REPO
from utils import ProjectError, positive, print_config, run_cli, versions, write_json


def parse_args(argv=None):
    from data_prep import BUNDLED, slug

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="mnist (default), fashion-mnist, kmnist, or a name for --source")
    p.add_argument("--source", type=Path, help="folder with the four IDX files of an MNIST-format dataset")
    p.add_argument("--data-dir", type=Path, default=BUNDLED, help="data folder (default: data/)")
    p.add_argument("--results-dir", type=Path, help="default: results/ for MNIST, results/<dataset>/ otherwise")
    p.add_argument("--plots-dir", type=Path, help="default: plots/ for MNIST, plots/<dataset>/ otherwise")
    p.add_argument(
        "--checkpoint-dir", type=Path, help="default: checkpoints/ for MNIST, checkpoints/<dataset>/ otherwise"
    )
    p.add_argument("--fast", action="store_true", help="train the networks with the fast recipe, not the paper's")
    p.add_argument("--seeds", type=positive(int), default=1, help="run every model with this many seeds (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--train-size", type=positive(int), help="use the first N training images (default: all)")
    p.add_argument("--test-size", type=positive(int), help="use the first N test images (default: all)")
    p.add_argument("--skip", nargs="+", choices=["ml-paper", "ml", "mlp", "cnn"], default=[], help="steps to leave out")
    p.add_argument("--update-readme", action="store_true", help="write the results table into README.md")
    args = p.parse_args(argv)
    if args.dataset is None:
        args.dataset = slug(args.source.resolve().name) if args.source else "mnist"
    sub = Path() if args.dataset == "mnist" else Path(args.dataset)
    args.results_dir = args.results_dir or Path("results") / sub
    args.plots_dir = args.plots_dir or Path("plots") / sub
    args.checkpoint_dir = args.checkpoint_dir or Path("checkpoints") / sub
    return args


def common_flags(args, sub: str = "") -> list[str]:
    flags = ["--dataset", args.dataset, "--data-dir", args.data_dir, "--results-dir", args.results_dir / sub,
             "--plots-dir", args.plots_dir / sub, "--seed", args.seed, "--seeds", args.seeds]  # fmt: skip
    if args.train_size:
        flags += ["--train-size", args.train_size]
    if args.test_size:
        flags += ["--test-size", args.test_size]
    return [str(f) for f in flags]


def steps(args) -> list[tuple[str, object, list[str]]]:
    """(title, main function, argv) for every step, in order."""
    import data_prep
    import dl_main
    import ml_main
    import report

    prep = ["--dataset", args.dataset, "--data-dir", str(args.data_dir), "--plots-dir", str(args.plots_dir)]
    if args.source:
        prep += ["--source", str(args.source)]
    recipe = ["--recipe", "fast" if args.fast else "paper"]
    plan = [("data", data_prep.main, prep)]
    if "ml-paper" not in args.skip:  # the published settings, to reproduce the table before beating it
        paper = ["--algo", "all", "--preset", "paper", *common_flags(args, "paper")]
        plan.append(("classical models, published settings", ml_main.main, paper))
    if "ml" not in args.skip:
        plan.append(("classical models, tuned", ml_main.main, ["--algo", "all", *common_flags(args)]))
    for net in ("mlp", "cnn"):
        if net not in args.skip:
            net_argv = ["--model", net, *recipe, "--checkpoint-dir", str(args.checkpoint_dir), *common_flags(args)]
            plan.append((f"network {net}", dl_main.main, net_argv))
    rep = ["--results-dir", str(args.results_dir), "--plots-dir", str(args.plots_dir), "--data-dir", str(args.data_dir)]
    if args.update_readme:
        rep += ["--readme", str(REPO / "README.md")]
    plan.append(("report", report.main, rep))
    return plan


def _main(argv=None) -> int:
    args = parse_args(argv)
    print_config(vars(args))
    if args.update_readme and args.dataset != "mnist":
        raise ProjectError("--update-readme is for the bundled MNIST run only")
    plan = steps(args)
    timings, start = {}, time.perf_counter()
    for i, (title, fn, step_argv) in enumerate(plan, 1):
        print(f"\n== [{i}/{len(plan)}] {title}", flush=True)
        t0 = time.perf_counter()
        code = fn(step_argv)
        timings[title] = time.perf_counter() - t0
        if code:
            raise ProjectError(f"step '{title}' failed (exit code {code}); see the message above")
    total = time.perf_counter() - start
    record = {"config": vars(args), "seconds": timings, "seconds_total": total, "versions": versions("torch")}
    write_json(Path(args.results_dir) / "experiment" / "timings.json", record)
    print(f"\nexperiment done in {total / 60:.1f} min: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
