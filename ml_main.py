"""Train and test the classical models (KNN, decision tree, SVM, logistic regression, PCA+SVM, random forest, and
for the Fashion-MNIST benchmark gradient boosting and scikit-learn's MLP).

    python ml_main.py --algo svm                   # the tuned default (98%+)
    python ml_main.py --algo all --recipe paper    # the published settings (SVC() on 60000 images: slow)
    python ml_main.py --dataset fashion-mnist --algo all --recipe benchmark   # Fashion-MNIST's published settings
    python ml_main.py --algo knn --k 5 --deskew    # any hyperparameter overrides the recipe
    python ml_main.py --algo svm --val-size 10000  # tune: score on 10000 held-out training images, not the test set
    python ml_main.py --algo knn --features hog    # HOG features instead of pixels (after --deskew where set)

Each run is named <algo>-<recipe> (plus any setting given explicitly) and writes its record to
results/<dataset>/<name>.json, its confusion matrix to plots/<dataset>/confusion_<name>.png and its fitted
pipeline to checkpoints/<dataset>/<name>.skops (loaded safely by predict.py and demo.py).
"""

from __future__ import annotations

import mnistlab.errors  # noqa: F401 (first: its hook makes a Ctrl-C during the slow imports below one line)

# isort: split
import contextlib
import sys
import time
import warnings
from argparse import ArgumentParser, BooleanOptionalAction, RawDescriptionHelpFormatter

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import Classifier
from mnistlab import flags
from mnistlab.data import load_splits
from mnistlab.errors import ProjectError, run_cli
from mnistlab.files import check_output_dirs, write_json
from mnistlab.machine import usable_cores, versions
from mnistlab.plots import plot_confusion
from mnistlab.recipes import CLASSICAL_RECIPES, RECIPE_HELP
from mnistlab.records import per_class_scores, print_config, run_name, run_paths, summarize_seeds
from mnistlab.saved_models import save_classical
from mnistlab.svc import fitted_gamma, rbf_predict

LIBRARIES = ("numpy", "scipy", "scikit-learn", "scikit-learn-intelex", "threadpoolctl", "skops")


def fit_predict(config: dict, seed: int, data: dict):
    """Fit on the training images and predict the evaluation images: (fitted pipeline, this seed's figures)."""
    (x_train, y_train), (x_eval, y_eval) = data["train"], data["eval"]
    model = Classifier.build(config["algo"], config, seed, config["threads"])
    # BLAS threads (PCA, logreg, distances) follow --threads; a solver's long warning becomes one line.
    with threadpool_limits(limits=config["threads"]), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        try:
            gamma = fit(model, x_train, y_train)
        except ValueError as exc:  # scikit-learn's parameter validation (InvalidParameterError is a ValueError)
            raise ProjectError(f"{config['algo']}: {' '.join(str(exc).split())[:300]}") from None
        fitted = time.perf_counter()
        pred = predict(model, x_eval, gamma)
        done = time.perf_counter()
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        tqdm.write(f"note: {config['algo']} (seed {seed}) did not converge; raise --max-iter for a converged fit")
    final = type(model.steps[-1][1])  # with --engine sklearnex: record which library really ran
    run = {
        "seed": seed,
        "estimator": f"{final.__module__.split('.')[0]}.{final.__name__}",
        "accuracy": float(np.mean(pred == y_eval)),
        "seconds_fit": fitted - start,
        "seconds_predict": done - fitted,
        "predictions": pred.astype(int).tolist(),
        "per_class": per_class_scores(y_eval, pred, data["classes"]),
    }
    return model, run


def fit(model, x, y) -> float | None:
    """``model.fit(x, y)``; for a pipeline ending in scikit-learn's own RBF SVC also the kernel width it used
    (predict's ``gamma``), else None (oneDAL's SVC under --engine sklearnex too). SVC()'s default width, "scale",
    is the variance of the features the SVC saw: such a pipeline is fitted in Pipeline.fit's own two stages (the
    steps before the SVC, then the SVC on their output), which keeps them."""
    final = model[-1]
    if type(final) is not SVC or final.kernel != "rbf" or final.break_ties:
        model.fit(x, y)
        return None
    if final.gamma != "scale":
        model.fit(x, y)
        return fitted_gamma(final)
    features = model[:-1].fit_transform(x, y)
    final.fit(features, y)
    return fitted_gamma(final, features)


def predict(model, x, gamma: float | None = None):
    """The labels of ``x``. With ``gamma`` (fit's) the SVC's decision values are computed as matrix products
    on the BLAS threads (mnistlab/svc.py: libsvm's labels, several times sooner than its one-image-at-a-time loop on
    one thread); every other model predicts as it does."""
    if gamma is None:
        return model.predict(x)
    return rbf_predict(model[-1], model[:-1].transform(x), gamma)


def run_one(config: dict, data: dict) -> dict:
    """Every seed of one algorithm; writes its record, figure and (first seed's) fitted model."""
    paths, runs, first_model = run_paths(config), [], None
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
    if config["engine"] == "sklearn":  # skops cannot write oneDAL's estimators
        meta = {
            "name": config["name"],
            "model": config["algo"],
            "recipe": config["recipe"],
            "dataset": config["dataset"],
            "classes": classes,
            "features": config["features"],  # what it sees, for handwriting.py's record and report.py's paragraph
            "deskew": config["deskew"],
        }
        save_classical(first_model, paths["checkpoint"].with_suffix(".skops"), meta, data["eval"][0][:200])
    title = f"{config['name']}: {100 * rec['accuracy']:.2f}% on {len(y_eval)} {data['eval_split']} images"
    plot_confusion(y_eval, rec["predictions"], classes, paths["confusion"], title)
    write_json(paths["record"], rec)  # last: its presence vouches for a finished run
    return rec


def run_all(configs: list[dict], progress: bool = True) -> list[dict]:
    """Every config's run on one load of the data; ``progress=False``: no progress bar (experiment.py's side-by-side
    families print their result lines only, so that two bars do not overwrite each other)."""
    first = configs[0]
    print_config({k: v for k, v in first.items() if k not in ("algo", "model", "name")})
    paths = run_paths(first)
    check_output_dirs(
        {
            "--results-dir": paths["record"].parent,
            "--plots-dir": paths["confusion"].parent,
            "--checkpoint-dir": paths["checkpoint"].parent,
        }
    )
    data = load_splits(first)
    if len(np.unique(data["train"][1])) < 2:
        raise ProjectError(
            f"the {len(data['train'][1])} training image(s) hold a single class; a classifier "
            "needs two or more: use a larger --train-size or a smaller --val-size"
        )
    for config in configs:
        Classifier.check_fits(config, n_train=len(data["train"][1]))
    records = []
    with engine(first["engine"]):
        for config in tqdm(
            configs, desc="models", unit="model", leave=False, disable=not progress or len(configs) == 1 or None
        ):
            rec = run_one(config, data)
            std = f" ± {100 * rec['accuracy_std']:.2f}" if rec["accuracy_std"] is not None else ""
            tqdm.write(
                f"{config['name']}: {rec['split']} accuracy {100 * rec['accuracy_mean']:.2f}%{std}  "
                f"fit {rec['seconds_fit']:.1f}s  predict {rec['seconds_predict']:.1f}s  "
                f"({rec['n_train']} train, {rec['n_eval']} {rec['split']})"
            )
            records.append(rec)
    return records


@contextlib.contextmanager
def engine(name: str):
    """--engine sklearnex: oneDAL's kernels behind scikit-learn's own classes (scikit-learn-intelex's documented
    patching), for speed; skops cannot write its fitted estimators, so no model file is saved."""
    if name == "sklearn":
        yield
        return
    try:
        from sklearnex import patch_sklearn, unpatch_sklearn
    except ImportError:
        raise ProjectError("--engine sklearnex: scikit-learn-intelex is not installed; use --engine sklearn") from None
    print("note: --engine sklearnex: fitted with oneDAL; no .skops model is saved (use --engine sklearn to save)")
    patch_sklearn(verbose=False)
    try:
        yield
    finally:
        unpatch_sklearn()


# ---------------------------------------------------------------- settings
HYPERPARAMETERS = (
    "k",
    "weights",
    "p",
    "criterion",
    "max_depth",
    "min_samples_leaf",
    "n_estimators",
    "lr",
    "C",
    "gamma",
    "penalty",
    "tol",
    "max_iter",
    "hidden_size",
    "cache_mb",
    "pca",
    "deskew",
    "features",
    "scaler",
    "dtype",
)


# Beyond these a typo, not a setting: a deeper tree, a bigger forest or layer than any run of this repo could use
# (scikit-learn overflows on a depth of 10**20, allocates terabytes for 10**12 units, fits 10**8 trees for days).
MAX_DEPTH, MAX_TREES, MAX_UNITS, MAX_ITER, MAX_IMAGES = 10_000, 5_000, 10_000, 100_000, 1_000_000
MAX_CACHE_MB = 1_000_000  # a terabyte of kernel cache


def gamma_type(text: str):
    """The RBF width from the command line: 'scale', 'auto' or a number > 0."""
    if text in ("scale", "auto"):
        return text
    return flags.positive(float)(text)


def build_parser() -> ArgumentParser:
    positive, non_negative = flags.positive, flags.non_negative
    epilog = "algorithms:\n" + "\n".join(f"  {name:8} {entry[0]}" for name, entry in Classifier.REGISTRY.items())
    p = ArgumentParser(description=__doc__, epilog=epilog, formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="svm", choices=[*Classifier.REGISTRY, "all"], help="model, or all (default: svm)")
    p.add_argument(
        "--recipe",
        default="tuned",
        choices=CLASSICAL_RECIPES,
        help="; ".join(f"{r}: {RECIPE_HELP[r]}" for r in CLASSICAL_RECIPES).replace("%", "%%"),
    )
    p.add_argument(
        "--engine",
        choices=("sklearn", "sklearnex"),
        default="sklearn",
        help="sklearn (default); sklearnex: scikit-learn-intelex's oneDAL kernels, faster, no model saved",
    )
    h = p.add_argument_group("hyperparameters (default: the recipe's value; each applies to the models that have it)")
    h.add_argument("--k", type=positive(int), help="knn: number of neighbours")
    h.add_argument("--weights", choices=("uniform", "distance"), help="knn: neighbour weights")
    h.add_argument(
        "--p", type=positive(float, 10), help="knn: power of the Minkowski distance (1: Manhattan, 2: Euclidean)"
    )
    h.add_argument("--criterion", choices=("gini", "entropy", "log_loss"), help="dt, rf: split criterion")
    h.add_argument(
        "--max-depth", type=non_negative(int, MAX_DEPTH), help="dt, rf, gb: maximum tree depth (0: unlimited)"
    )
    h.add_argument(
        "--min-samples-leaf", type=positive(int, MAX_IMAGES), help="dt, rf: fewest training images in a leaf"
    )
    h.add_argument("--n-estimators", type=positive(int, MAX_TREES), help="rf: number of trees; gb: boosting rounds")
    h.add_argument("--lr", type=positive(float), help="gb: learning rate (shrinkage)")
    h.add_argument("--C", type=positive(float), help="svm, pca-svm, logreg: inverse regularisation strength")
    h.add_argument("--gamma", type=gamma_type, help="svm, pca-svm: RBF width: scale, auto or a number > 0")
    h.add_argument("--penalty", choices=("l2", "l1"), help="logreg: l2 (lbfgs, multinomial) or l1 (liblinear, OvR)")
    h.add_argument("--tol", type=positive(float, 1), help="logreg: the solver's stopping tolerance")
    h.add_argument("--max-iter", type=positive(int, MAX_ITER), help="logreg: solver iterations; sk-mlp: epochs")
    h.add_argument("--hidden-size", type=positive(int, MAX_UNITS), help="sk-mlp: hidden units")
    h.add_argument("--cache-mb", type=positive(float, MAX_CACHE_MB), help="svm, pca-svm: kernel cache size in MB")
    h.add_argument("--pca", type=non_negative(int), help="project onto this many principal components first (0: off)")
    h.add_argument("--deskew", action=BooleanOptionalAction, help="straighten slanted digits first")
    h.add_argument(
        "--features",
        choices=Classifier.FEATURES,
        help="what the model sees: pixels, or hog (histograms of oriented gradients of the image, after --deskew)",
    )
    h.add_argument(
        "--scaler",
        choices=("unit", "standard"),
        help="unit: pixels / 255; standard: zero mean, unit variance per pixel",
    )
    h.add_argument("--dtype", choices=("float32", "float64"), help="pixel type")
    flags.add_data_flags(p)
    flags.add_run_flags(p)
    return p


def make_configs(argv=None, **overrides) -> list[dict]:
    """One complete config per chosen algorithm, from the command line or from keyword arguments (experiment.py
    calls this with keywords: the same defaults and checks as the command line)."""
    parser = build_parser()
    args = parser.parse_args([] if argv is None and overrides else argv)
    unknown = set(overrides) - set(vars(args))
    if unknown:
        raise ProjectError(f"unknown ml_main setting(s): {', '.join(sorted(unknown))}")
    vars(args).update(overrides)
    explicit = flags.explicit_flags(parser, args)
    base = {k: v for k, v in vars(args).items() if k not in HYPERPARAMETERS}
    flags.check_common(base)
    base["threads"] = base["threads"] or usable_cores()
    hyper = {key: getattr(args, key) for key in HYPERPARAMETERS if getattr(args, key) is not None}
    algos = Classifier.members(args.recipe) if args.algo == "all" else [args.algo]
    if args.recipe == "tuned" and args.dataset not in Classifier.TUNED:
        print(f"note: no settings were tuned for {args.dataset}; using MNIST's (tune yours with --val-size)")
    configs = []
    for algo in algos:
        s = Classifier.settings(algo, args.recipe, hyper, args.dataset)
        config = {**base, "algo": algo, "model": algo, **s}
        named = {k: v for k, v in explicit.items() if k not in HYPERPARAMETERS or k in s}  # --k names knn runs only
        config["name"] = run_name(config, named)
        configs.append(config)
    for key in hyper:
        if not any(key in c for c in configs):  # e.g. --k with --algo svm: say so, do not ignore it
            users = [a for a, entry in Classifier.REGISTRY.items() if key in entry[2]]
            raise ProjectError(f"--{key.replace('_', '-')} does not apply to {args.algo}; it is for {', '.join(users)}")
    return configs


def _main(argv=None) -> int:
    run_all(make_configs(argv))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
