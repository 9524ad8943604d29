"""Train and test the classical models (KNN, decision tree, SVM, logistic regression, PCA+SVM, random forest, and
for the Fashion-MNIST benchmark gradient boosting and scikit-learn's MLP).

    python ml_main.py --algo svm                   # the tuned default (98%+ in well under a minute)
    python ml_main.py --algo all --recipe paper    # the published settings (plain scikit-learn SVC: slow)
    python ml_main.py --dataset fashion-mnist --algo all --recipe benchmark   # Fashion-MNIST's published settings
    python ml_main.py --algo knn --k 5 --deskew    # any hyperparameter overrides the recipe
    python ml_main.py --algo svm --val-size 10000  # tune: score on 10000 held-out training images, not the test set

Each run is named <algo>-<recipe> (plus any setting given explicitly) and writes its record to
results/<dataset>/<name>.json, its confusion matrix to plots/<dataset>/confusion_<name>.png and its fitted
pipeline to checkpoints/<dataset>/<name>.skops (loaded safely by predict.py and demo.py).
"""

from __future__ import annotations

import sys
import time
import warnings
from argparse import ArgumentParser, BooleanOptionalAction, RawDescriptionHelpFormatter

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import Classifier
import cli
from Classifier import RECIPES, REGISTRY
from dataset import load_splits
from inference import save_classical
from utils import (
    ProjectError,
    check_output_dirs,
    per_class_scores,
    plot_confusion,
    print_config,
    run_cli,
    summarize_seeds,
    usable_cores,
    versions,
    write_json,
)

HYPERPARAMETERS = ("k", "weights", "p", "criterion", "max_depth", "min_samples_leaf", "n_estimators", "lr", "C",
                   "gamma", "penalty", "tol", "max_iter", "hidden_size", "cache_mb", "pca", "deskew", "scaler",
                   "dtype")  # fmt: skip
LIBRARIES = ("numpy", "scipy", "scikit-learn", "scikit-learn-intelex", "threadpoolctl")


def build_parser() -> ArgumentParser:
    epilog = "algorithms:\n" + "\n".join(f"  {name:8} {algo.help}" for name, algo in REGISTRY.items())
    p = ArgumentParser(description=__doc__, epilog=epilog, formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="svm", choices=[*REGISTRY, "all"], help="model to run, or all (default: svm)")
    p.add_argument(
        "--recipe",
        default="tuned",
        choices=RECIPES,
        help="; ".join(f"{name}: {text}" for name, text in Classifier.RECIPE_HELP.items()),
    )
    p.add_argument(
        "--engine",
        choices=("auto", "sklearnex", "sklearn"),
        help="auto: scikit-learn-intelex where installed (default for tuned, benchmark); sklearn (for paper)",
    )
    h = p.add_argument_group("hyperparameters (default: the recipe's value; each applies to the models that have it)")
    h.add_argument("--k", type=int, help="knn: number of neighbours")
    h.add_argument("--weights", help="knn: uniform or distance")
    h.add_argument("--p", type=float, help="knn: power of the Minkowski distance (1: Manhattan, 2: Euclidean)")
    h.add_argument("--criterion", help="dt, rf: gini, entropy or log_loss")
    h.add_argument("--max-depth", type=int, help="dt, rf: maximum tree depth (0: unlimited)")
    h.add_argument("--min-samples-leaf", type=int, help="dt, rf: fewest training images in a leaf")
    h.add_argument("--n-estimators", type=int, help="rf: number of trees; gb: boosting rounds")
    h.add_argument("--lr", type=float, help="gb: learning rate (shrinkage)")
    h.add_argument("--C", type=float, help="svm, pca-svm, logreg: inverse regularisation strength (> 0)")
    h.add_argument("--gamma", type=Classifier.parse_gamma, help="svm, pca-svm: RBF width: scale, auto or a number > 0")
    h.add_argument("--penalty", help="logreg: l2 (lbfgs, multinomial) or l1 (liblinear, one-vs-rest)")
    h.add_argument("--tol", type=float, help="logreg: the solver's stopping tolerance")
    h.add_argument("--max-iter", type=int, help="logreg: solver iterations; sk-mlp: epochs")
    h.add_argument("--hidden-size", type=int, help="sk-mlp: hidden units")
    h.add_argument("--cache-mb", type=float, help="svm, pca-svm: kernel cache size in MB")
    h.add_argument("--pca", type=int, help="project onto this many principal components first (0: off)")
    h.add_argument("--deskew", action=BooleanOptionalAction, help="straighten slanted digits first")
    h.add_argument("--scaler", help="unit: pixels / 255; standard: each pixel to zero mean, unit variance")
    h.add_argument("--dtype", help="float32 or float64 pixels")
    cli.add_data_flags(p)
    cli.add_run_flags(p)
    return p


def make_configs(argv=None, **overrides) -> list[dict]:
    """One complete, validated config per chosen algorithm, from the command line or from keyword arguments
    (experiment.py calls this with keywords: the same defaults and checks as the command line)."""
    parser = build_parser()
    args = parser.parse_args([] if argv is None and overrides else argv)
    unknown = set(overrides) - set(vars(args))
    if unknown:
        raise ProjectError(f"unknown ml_main setting(s): {', '.join(sorted(unknown))}")
    vars(args).update(overrides)
    explicit = cli.explicit_flags(parser, args)
    base = {k: v for k, v in vars(args).items() if k not in HYPERPARAMETERS}
    cli.check_common(base)
    base["threads"] = base["threads"] or usable_cores()
    base["engine"] = Classifier.resolve_engine(args.engine or ("sklearn" if args.recipe == "paper" else "auto"))
    hyper = {key: getattr(args, key) for key in HYPERPARAMETERS if getattr(args, key) is not None}
    Classifier.check_values(hyper)
    algos = Classifier.members(args.recipe) if args.algo == "all" else [args.algo]
    if args.recipe == "tuned" and args.dataset not in Classifier.TUNED:
        print(f"note: no settings were tuned for {args.dataset}; using MNIST's (tune yours with --val-size)")
    configs = []
    for algo in algos:
        s = Classifier.settings(algo, args.recipe, hyper, args.dataset)
        Classifier.validate(s)
        config = {**base, "algo": algo, "model": algo, **s}
        named = {k: v for k, v in explicit.items() if k not in HYPERPARAMETERS or k in s}  # --k names knn runs only
        config["name"] = cli.run_name(config, named)
        configs.append(config)
    for key in hyper:
        if not any(key in c for c in configs):  # e.g. --k with --algo svm: say so, do not ignore it
            users = [a for a in REGISTRY if key in REGISTRY[a].base]
            raise ProjectError(f"{Classifier.flag(key)} does not apply to {args.algo}; it is for {', '.join(users)}")
    return configs


def fit_predict(config: dict, seed: int, data: dict):
    """Fit on the training images and predict the evaluation images: (fitted pipeline, this seed's figures)."""
    (x_train, y_train), (x_eval, y_eval) = data["train"], data["eval"]
    model = Classifier.build(config["algo"], config, seed, config["threads"], config["engine"])
    # BLAS threads (PCA, logreg, distances) follow --threads; a solver's long warning becomes one line.
    with threadpool_limits(limits=config["threads"]), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x_train, y_train)
        fitted = time.perf_counter()
        pred = model.predict(x_eval)
        done = time.perf_counter()
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        tqdm.write(f"note: {config['algo']} (seed {seed}) did not converge; raise --max-iter for a converged fit")
    final = type(model.steps[-1][1])  # sklearnex has no tree: record which library really ran
    run = {"seed": seed, "estimator": f"{final.__module__.split('.')[0]}.{final.__name__}",
           "accuracy": float(np.mean(pred == y_eval)), "seconds_fit": fitted - start,
           "seconds_predict": done - fitted, "predictions": pred.astype(int).tolist()}  # fmt: skip
    return model, run


def run_one(config: dict, data: dict) -> dict:
    """Every seed of one algorithm; writes its record, figure and (first seed's) fitted model."""
    paths = cli.run_paths(config)
    runs, first_model = [], None
    for seed in range(config["seed"], config["seed"] + config["seeds"]):
        model, run = fit_predict(config, seed, data)
        runs.append(run)
        first_model = first_model or model
    (_, y_eval), classes = data["eval"], data["classes"]
    rec = {
        "model": config["algo"],
        "name": config["name"],
        "dataset": config["dataset"],
        **summarize_seeds(runs),
        "split": data["eval_split"],
        "n_train": len(data["train"][1]),
        "n_eval": len(y_eval),
        "labels": y_eval.tolist(),
        "classes": classes,
        "config": config,
        "versions": versions(*LIBRARIES),
    }
    rec["per_class"] = per_class_scores(y_eval, np.asarray(rec["predictions"]), classes)
    meta = {"name": config["name"], "model": config["algo"], "recipe": config["recipe"],
            "dataset": config["dataset"], "classes": classes}  # fmt: skip
    save_classical(first_model, paths["checkpoint"].with_suffix(".skops"), meta, data["eval"][0][:200])
    title = f"{config['name']}: {100 * rec['accuracy']:.2f}% on {len(y_eval)} {data['eval_split']} images"
    plot_confusion(y_eval, rec["predictions"], classes, paths["confusion"], title)
    write_json(paths["record"], rec)  # last: its presence vouches for a finished run
    return rec


def run_all(configs: list[dict]) -> list[dict]:
    first = configs[0]
    print_config({k: v for k, v in first.items() if k not in ("algo", "model", "name")})
    paths = cli.run_paths(first)
    check_output_dirs({"--results-dir": paths["record"].parent, "--plots-dir": paths["confusion"].parent,
                       "--checkpoint-dir": paths["checkpoint"].parent})  # fmt: skip
    data = load_splits(first)
    if len(np.unique(data["train"][1])) < 2:
        raise ProjectError(f"the {len(data['train'][1])} training image(s) hold a single class; a classifier "
                           "needs two or more: use a larger --train-size or a smaller --val-size")  # fmt: skip
    for config in configs:
        Classifier.validate(config, n_train=len(data["train"][1]))
    records = []
    for config in tqdm(configs, desc="models", unit="model", leave=False, disable=len(configs) == 1 or None):
        rec = run_one(config, data)
        std = f" ± {100 * rec['accuracy_std']:.2f}" if rec["accuracy_std"] is not None else ""
        tqdm.write(f"{config['name']}: {rec['split']} accuracy {100 * rec['accuracy']:.2f}%{std}  "
                   f"fit {rec['seconds_fit']:.1f}s  predict {rec['seconds_predict']:.1f}s  "
                   f"({rec['n_train']} train, {rec['n_eval']} {rec['split']})")  # fmt: skip
        records.append(rec)
    return records


def _main(argv=None) -> int:
    run_all(make_configs(argv))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
