"""Train and test the classical models (KNN, decision tree, SVM, logistic regression, PCA+SVM, random forest).

    python ml_main.py --algo svm                   # the fast, tuned default (98%+ in well under a minute)
    python ml_main.py --algo all --preset paper    # the published settings (plain scikit-learn SVC: slow)
    python ml_main.py --algo knn --k 5 --deskew    # any hyperparameter overrides the preset
    python ml_main.py --algo svm --val-size 10000  # tune: score on 10000 held-out training images, not the test set

Writes results/<model>.json, results/<model>_report.txt and plots/confusion_<model>.png
(with --val-size: only results/<model>_val.json; the test set is not touched).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

import Classifier
from Classifier import PRESETS, REGISTRY
from utils import (
    ProjectError,
    atomic_path,
    check_writable,
    non_negative,
    per_class_scores,
    plot_confusion,
    positive,
    print_config,
    run_cli,
    summarize_seeds,
    usable_cores,
    versions,
    write_json,
)

HYPERPARAMETERS = ("k", "weights", "criterion", "max_depth", "min_samples_leaf", "n_estimators", "C", "gamma",
                   "max_iter", "cache_mb", "pca", "deskew", "dtype")  # fmt: skip
LIBRARIES = ("numpy", "scipy", "scikit-learn", "scikit-learn-intelex")


def parse_args(argv=None) -> argparse.Namespace:
    from data_prep import BUNDLED

    epilog = "algorithms:\n" + "\n".join(f"  {name:8} {algo.help}" for name, algo in REGISTRY.items())
    p = argparse.ArgumentParser(
        description=__doc__, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algo", default="svm", choices=[*REGISTRY, "all"], help="model to run, or all (default: svm)")
    p.add_argument("--preset", default="fast", choices=PRESETS,
                   help="fast: tuned on a validation split, float32, scikit-learn-intelex, all cores (default); "
                        "paper: the published settings, plain scikit-learn")  # fmt: skip
    p.add_argument(
        "--engine",
        choices=("auto", "sklearnex", "sklearn"),
        help="auto: scikit-learn-intelex when installed (default for fast); sklearn (default for paper)",
    )
    h = p.add_argument_group("hyperparameters (default: the preset's value; each applies to the models that have it)")
    h.add_argument("--k", type=int, help="knn: number of neighbours")
    h.add_argument("--weights", help="knn: uniform or distance")
    h.add_argument("--criterion", help="dt, rf: gini, entropy or log_loss")
    h.add_argument("--max-depth", type=int, help="dt, rf: maximum tree depth (0: unlimited)")
    h.add_argument("--min-samples-leaf", type=int, help="dt, rf: fewest training images in a leaf")
    h.add_argument("--n-estimators", type=int, help="rf: number of trees")
    h.add_argument("--C", type=float, help="svm, pca-svm, logreg: inverse regularisation strength (> 0)")
    h.add_argument("--gamma", type=Classifier.parse_gamma, help="svm, pca-svm: RBF width: scale, auto or a number > 0")
    h.add_argument("--max-iter", type=int, help="logreg: solver iterations")
    h.add_argument("--cache-mb", type=float, help="svm, pca-svm: kernel cache size in MB")
    h.add_argument("--pca", type=int, help="project onto this many principal components first (0: off)")
    h.add_argument("--deskew", action=argparse.BooleanOptionalAction, help="straighten slanted digits first")
    h.add_argument("--dtype", help="float32 or float64 pixels")
    d = p.add_argument_group("data and output")
    d.add_argument("--dataset", default="mnist", help="dataset name under --data-dir (default: mnist)")
    d.add_argument("--data-dir", type=Path, default=BUNDLED, help="data folder (default: the bundled data/)")
    d.add_argument("--train-size", type=positive(int), help="use N training images (default: all)")
    d.add_argument("--test-size", type=positive(int), help="use N test images (default: all)")
    d.add_argument("--random-subset", action="store_true", help="draw the subsets at random (seeded), not the first N")
    d.add_argument("--val-size", type=positive(int),
                   help="hold out N training images, fit on the rest and report validation accuracy only")  # fmt: skip
    d.add_argument(
        "--seed", type=non_negative(int), default=0, help="random seed (models, subsets, validation split; default 0)"
    )
    d.add_argument("--seeds", type=positive(int), default=1, help="run seeds seed..seed+N-1 and report mean and std")
    d.add_argument(
        "--jobs", type=positive(int), default=usable_cores(), help="CPU threads (default: every usable core)"
    )
    d.add_argument("--results-dir", type=Path, help="default: results/, or results/paper/ with --preset paper")
    d.add_argument("--plots-dir", type=Path, help="default: plots/, or plots/paper/ with --preset paper")
    args = p.parse_args(argv)
    # Beside each other, not over each other: the published models' records do not replace the tuned ones,
    # which is also where experiment.py and report.py look for them.
    sub = Path("paper") if args.preset == "paper" else Path()
    args.results_dir = args.results_dir or Path("results") / sub
    args.plots_dir = args.plots_dir or Path("plots") / sub
    return args


def model_settings(args) -> dict[str, dict]:
    """Each chosen model's full settings, validated before anything is loaded or fitted."""
    overrides = {key: getattr(args, key) for key in HYPERPARAMETERS if getattr(args, key) is not None}
    Classifier.check_values(overrides)
    algos = list(REGISTRY) if args.algo == "all" else [args.algo]
    out = {algo: Classifier.settings(algo, args.preset, overrides) for algo in algos}
    for key in overrides:
        if not any(key in s for s in out.values()):  # e.g. --k with --algo svm: say so, do not ignore it
            users = [a for a in REGISTRY if key in Classifier.settings(a, "paper")]
            raise ProjectError(f"{Classifier.flag(key)} does not apply to {args.algo}; it is for {', '.join(users)}")
    for s in out.values():
        Classifier.validate(s)
    return out


def load_data(args):
    """(x_train, y_train, x_eval, y_eval): the test split, or with --val-size a held-out part of training."""
    from data_prep import load_split

    x, y = load_split("train", args.dataset, args.data_dir, args.train_size, args.random_subset, args.seed)
    if args.val_size is None:
        return (x, y, *load_split("test", args.dataset, args.data_dir, args.test_size, args.random_subset, args.seed))
    if args.val_size >= len(y):
        raise ProjectError(f"--val-size {args.val_size} leaves no training images out of {len(y)}; choose fewer")
    held = np.random.default_rng(args.seed).permutation(len(y))  # fixed across --seeds, like the subsets
    val, fit = np.sort(held[: args.val_size]), np.sort(held[args.val_size :])
    return x[fit], y[fit], x[val], y[val]


def fit_predict(algo: str, s: dict, seed: int, jobs: int, engine: str, data) -> dict:
    """Fit on the training images, predict the evaluation images; the record of one run."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    x_train, y_train, x_eval, y_eval = data
    model = Classifier.build(algo, s, seed, jobs, engine)
    # BLAS threads (PCA, logreg, distances) follow --jobs; a solver's long warning becomes one line.
    with threadpool_limits(limits=jobs), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x_train, y_train)
        fitted = time.perf_counter()
        pred = model.predict(x_eval)
        done = time.perf_counter()
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        tqdm.write(f"note: {algo} (seed {seed}) did not converge; raise --max-iter for a converged fit")
    final = type(model.steps[-1][1])  # sklearnex has no tree: record which library really ran
    return {
        "seed": seed,
        "estimator": f"{final.__module__.split('.')[0]}.{final.__name__}",
        "test_accuracy": float(np.mean(pred == y_eval)),
        "seconds_fit": fitted - start,
        "seconds_predict": done - fitted,
        "predictions": pred.astype(int).tolist(),
    }


def record(algo: str, s: dict, args, engine: str, runs: list[dict], data) -> dict:
    merged = summarize_seeds(runs)
    options = {k: v for k, v in vars(args).items() if k not in HYPERPARAMETERS}  # s holds the resolved ones
    config = {**options, "algo": algo, **s, "engine": engine, "subset_seed": args.seed}
    return {
        "model": algo,
        "dataset": args.dataset,
        **merged,
        "n_train": len(data[1]),
        "n_test": len(data[3]),
        "config": config,
        "versions": versions(*LIBRARIES),
    }


def write_outputs(rec: dict, y_eval: np.ndarray, args) -> None:
    """Report text and confusion matrix first, the JSON last: its presence vouches for a finished run."""
    from sklearn.metrics import classification_report

    from data_prep import class_names

    model = rec["model"]
    classes = class_names(args.dataset, args.data_dir)
    labels = list(range(len(classes)))
    pred = np.asarray(rec["predictions"])
    kwargs = {"labels": labels, "target_names": classes, "digits": 4, "zero_division": 0}
    rec["per_class"] = per_class_scores(y_eval, pred, classes)
    text = classification_report(y_eval, pred, **kwargs)
    with atomic_path(args.results_dir / f"{model}_report.txt") as tmp:
        tmp.write_text(f"{model} on {args.dataset} ({rec['n_train']} train, {rec['n_test']} test)\n\n{text}")
    title = f"{model} ({rec['config']['preset']}): {100 * rec['test_accuracy']:.2f}% on {rec['n_test']} test images"
    plot_confusion(y_eval, pred, classes, args.plots_dir / f"confusion_{model}.png", title)
    write_json(args.results_dir / f"{model}.json", rec)


def write_validation(rec: dict, args) -> None:
    """A validation run's record: accuracy on held-out training images, no predictions, no test numbers."""
    out = {k: v for k, v in rec.items() if k not in ("predictions", "test_accuracy", "test_accuracy_std", "runs")}
    out.update(val_accuracy=rec["test_accuracy"], val_accuracy_std=rec["test_accuracy_std"], n_val=out.pop("n_test"))
    out["runs"] = [{"seed": r["seed"], "val_accuracy": r["test_accuracy"]} for r in rec["runs"]]
    write_json(args.results_dir / f"{rec['model']}_val.json", out)


def _main(argv=None) -> int:
    args = parse_args(argv)
    all_settings = model_settings(args)
    engine = Classifier.resolve_engine(args.engine or ("sklearn" if args.preset == "paper" else "auto"))
    print_config({**{k: v for k, v in vars(args).items() if v is not None}, "engine": engine})
    check_writable(args.results_dir, "--results-dir")
    if args.val_size is None:
        check_writable(args.plots_dir, "--plots-dir")
    data = load_data(args)
    for s in all_settings.values():
        Classifier.validate(s, n_train=len(data[1]))
    what = "val" if args.val_size else "test"
    for algo, s in progress(all_settings.items()):
        runs = [
            fit_predict(algo, s, seed, args.jobs, engine, data) for seed in range(args.seed, args.seed + args.seeds)
        ]
        rec = record(algo, s, args, engine, runs, data)
        std = f" ± {100 * rec['test_accuracy_std']:.2f}" if rec["test_accuracy_std"] is not None else ""
        tqdm.write(f"{algo}: {what} accuracy {100 * rec['test_accuracy']:.2f}%{std}  fit {rec['seconds_fit']:.1f}s  "
              f"predict {rec['seconds_predict']:.1f}s  ({rec['n_train']} train, {rec['n_test']} {what})")  # fmt: skip
        write_validation(rec, args) if args.val_size else write_outputs(rec, data[3], args)
    return 0


def progress(items):
    """A progress bar over several models; a plain loop for one."""
    items = list(items)
    return tqdm(items, desc="models", unit="model", leave=False) if len(items) > 1 else items


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
