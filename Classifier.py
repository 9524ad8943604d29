"""The classical models, each a scikit-learn Pipeline, and their settings families as data beside them.

Every pipeline takes the raw uint8 images ([N, 28, 28] or [N, 784]) and does its own preprocessing, so the
fit and predict timings include it:

    [deskew] -> pixels / 255 as float -> [HOG features] -> [StandardScaler] -> [PCA] -> classifier

Three settings families (``--recipe``) give each algorithm's settings; any hyperparameter can be overridden:

- ``paper``: the published experiment. KNN = KNeighborsClassifier(n_neighbors=3) and SVM = SVC() defaults on
  pixels in [0, 1] (float64). The published DT figure (75.96%) was the R^2 of a DecisionTreeRegressor(max_depth=16);
  the closest real classifier is DecisionTreeClassifier(max_depth=16), whose true accuracy is reported instead.
- ``benchmark``: the Fashion-MNIST benchmark's own settings (Xiao et al. 2017, Table 3), with its gradient
  boosting (gb) and MLPClassifier (sk-mlp).
- ``tuned`` (default): chosen for each dataset on a validation split held out of the training data (never on the
  test set), float32, all cores, most models on HOG features (``--features hog``: mnistlab.features.HOG) of
  the deskewed digits (docs/classical_tuning.md: every setting tried).

scikit-learn checks every setting itself when the pipeline is fitted (its parameter validation); the flags'
argparse types catch the rest before any data is read.
"""

from __future__ import annotations

from sklearn import ensemble, linear_model, multiclass, neighbors, neural_network, svm, tree
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mnistlab.errors import ProjectError
from mnistlab.features import HOG, N_PIXELS, deskew, hog_length, hog_problem, to_unit
from mnistlab.recipes import CLASSICAL_RECIPES


# ---------------------------------------------------------------- the models
# The estimators are named through their modules (svm.SVC, not SVC) so that ml_main.py's --engine sklearnex,
# which patches oneDAL's kernels into scikit-learn's modules (sklearnex.patch_sklearn), reaches them too.
def make_knn(s: dict, seed: int, threads: int):
    return neighbors.KNeighborsClassifier(n_neighbors=s["k"], weights=s["weights"], p=s["p"], n_jobs=threads)


def make_dt(s: dict, seed: int, threads: int):
    return tree.DecisionTreeClassifier(
        criterion=s["criterion"],
        max_depth=s["max_depth"] or None,
        min_samples_leaf=s["min_samples_leaf"],
        random_state=seed,
    )


def make_svm(s: dict, seed: int, threads: int):  # libsvm itself is single-threaded
    return svm.SVC(C=s["C"], gamma=s["gamma"], cache_size=s["cache_mb"], random_state=seed)


def make_logreg(s: dict, seed: int, threads: int):
    if s["penalty"] == "l1":  # scikit-learn 0.19's default solver: liblinear, one binary model per class
        binary = linear_model.LogisticRegression(
            C=s["C"], l1_ratio=1.0, solver="liblinear", max_iter=s["max_iter"], tol=s["tol"], random_state=seed
        )
        return multiclass.OneVsRestClassifier(binary, n_jobs=threads)
    return linear_model.LogisticRegression(C=s["C"], max_iter=s["max_iter"], tol=s["tol"], random_state=seed)


def make_rf(s: dict, seed: int, threads: int):
    return ensemble.RandomForestClassifier(
        n_estimators=s["n_estimators"],
        criterion=s["criterion"],
        max_depth=s["max_depth"] or None,
        min_samples_leaf=s["min_samples_leaf"],
        n_jobs=threads,
        random_state=seed,
    )


def make_gb(s: dict, seed: int, threads: int):
    # The histogram version of gradient boosting (pixel values binned to 255 levels: uint8 has 256), 31 leaves
    # per tree, no early stopping: exact boosting of the benchmark's 1000 depth-10 trees takes hours on 2 cores.
    return ensemble.HistGradientBoostingClassifier(
        max_iter=s["n_estimators"],
        max_depth=s["max_depth"] or None,
        learning_rate=s["lr"],
        early_stopping=False,
        random_state=seed,
    )


def make_sk_mlp(s: dict, seed: int, threads: int):
    return neural_network.MLPClassifier(
        hidden_layer_sizes=(s["hidden_size"],), activation="relu", max_iter=s["max_iter"], random_state=seed
    )


def build(algo: str, s: dict, seed: int = 0, threads: int = 1) -> Pipeline:
    """The Pipeline for ``algo`` with settings ``s`` (from ``settings``)."""
    steps = [("deskew", FunctionTransformer(deskew))] if s["deskew"] else []
    steps.append(("scale", FunctionTransformer(to_unit, kw_args={"dtype": s["dtype"]})))
    if s["features"] == "hog":  # histograms of oriented gradients of the (deskewed) image instead of its pixels
        hog = HOG(s["hog_cell"], s["hog_orientations"], s["hog_block"], s["hog_norm"], s["hog_cell2"], threads)
        steps.append(("hog", hog))
    if s["scaler"] == "standard":  # each pixel (or feature) to zero mean and unit variance over the training images
        steps.append(("standardize", StandardScaler()))
    if s["pca"]:
        steps.append(("pca", PCA(n_components=s["pca"], random_state=seed)))
    steps.append(("model", REGISTRY[algo][1](s, seed, threads)))
    return Pipeline(steps)


# ---------------------------------------------------------------- their settings
# Preprocessing of the write-up: pixels / 255.0 as float64. Each family's changes for all its members:
PREPROCESSING = {"deskew": False, "features": "pixels", "pca": 0, "scaler": "unit", "dtype": "float64"}
FEATURES = ("pixels", "hog")  # what the model sees: the pixels, or HOG features computed from them
# HOG's settings, in a model's settings only when it uses HOG (cell side in pixels, unsigned orientation bins,
# block side in cells, skimage's block norm, a second cell size whose features are appended, 0: none); chosen on
# MNIST's validation split (docs/classical_tuning.md). A model's own entry below may change any of them.
HOG_SETTINGS = {"hog_cell": 4, "hog_orientations": 9, "hog_block": 3, "hog_norm": "L1-sqrt", "hog_cell2": 0}
FAMILY = {"paper": {}, "tuned": {"dtype": "float32"}, "benchmark": {"scaler": "standard", "dtype": "float32"}}
# algorithm -> (help, maker, base settings: the write-up's values or the library defaults where it had none)
REGISTRY = {
    "knn": ("k-nearest neighbours (published: k=3 on raw pixels)", make_knn, {"k": 3, "weights": "uniform", "p": 2}),
    "dt": ("decision tree classifier (published figure was a regressor's R^2)", make_dt,
           {"criterion": "gini", "max_depth": 16, "min_samples_leaf": 1}),
    "svm": ("support vector machine, RBF kernel, all pixels (published: SVC() defaults)", make_svm,
            {"C": 1.0, "gamma": "scale", "cache_mb": 200}),
    "logreg": ("logistic regression (scikit-learn defaults in the paper recipe: multinomial, lbfgs)", make_logreg,
               {"C": 1.0, "max_iter": 100, "penalty": "l2", "tol": 1e-4}),
    "pca-svm": ("PCA compression, then an RBF SVM", make_svm, {"C": 1.0, "gamma": "scale", "cache_mb": 200, "pca": 50}),
    "rf": ("random forest, the strong tree baseline (scikit-learn defaults in the paper recipe)", make_rf,
           {"n_estimators": 100, "max_depth": 0, "min_samples_leaf": 1, "criterion": "gini"}),
    "gb": ("gradient-boosted trees (Fashion-MNIST benchmark only: 100 rounds of depth-10 trees)", make_gb,
           {"n_estimators": 100, "max_depth": 10, "lr": 0.1}),
    "sk-mlp": ("scikit-learn's MLPClassifier (Fashion-MNIST benchmark only: 100 relu units, adam)", make_sk_mlp,
               {"hidden_size": 100, "max_iter": 200}),
}  # fmt: skip
# Each family's changes to the base settings; a model absent from a family has no settings in it.
PAPER = {"knn": {}, "dt": {}, "svm": {}, "logreg": {}, "pca-svm": {}, "rf": {}}
# The Fashion-MNIST benchmark (its benchmark/runner.py): each model's best setting of its Table 3, otherwise
# scikit-learn 0.19's defaults (SVC's gamma was 'auto'); logreg's liblinear tolerance 1e-2 instead of 1e-4: 35 s
# instead of well over 10 minutes on 2 cores (on 10000 training images 81.90% against 81.69%).
BENCHMARK = {
    "knn": {"k": 5, "weights": "distance", "p": 1},
    "dt": {"criterion": "entropy", "max_depth": 10},
    "svm": {"C": 10.0, "gamma": "auto", "cache_mb": 1000},
    "logreg": {"penalty": "l1", "tol": 1e-2},
    "rf": {"criterion": "entropy", "max_depth": 100},
    "gb": {},
    "sk-mlp": {},
}
# Chosen on validation accuracy (ml_main.py --algo A --val-size 10000 [flags]), per dataset; other datasets
# use MNIST's. Deskewing lost on clothes for every model, so no Fashion-MNIST setting deskews. HOG features
# (HOG_SETTINGS unless an entry changes them) won over pixels on validation for every model tried, except the
# forest on clothes; Fashion-MNIST's svm and dt were not tried with them (docs/classical_tuning.md).
TUNED = {
    "mnist": {
        "knn": {"k": 3, "weights": "distance", "deskew": True, "features": "hog", "pca": 60},
        "dt": {"criterion": "entropy", "deskew": True, "features": "hog", "pca": 60},
        # svm on HOG won on validation (99.19% vs 98.93%) but fits in minutes, not seconds, on 2 cores: pixels kept
        "svm": {"C": 5.0, "gamma": 0.04, "cache_mb": 1000, "deskew": True},
        "logreg": {"C": 1.0, "max_iter": 300, "deskew": True, "features": "hog"},
        "pca-svm": {"C": 10.0, "cache_mb": 1000, "deskew": True, "features": "hog", "pca": 60},
        "rf": {"deskew": True, "features": "hog", "hog_block": 2},
    },
    "fashion-mnist": {
        "knn": {"k": 5, "weights": "distance", "features": "hog", "pca": 100},
        "dt": {"criterion": "entropy", "max_depth": 10},
        "svm": {"C": 5.0, "gamma": 0.02, "cache_mb": 1000},
        # logreg on HOG won on validation (89.43% vs 85.95%) but took 8 minutes: pixels kept, as for MNIST's svm
        "logreg": {"C": 0.1, "max_iter": 300},
        "pca-svm": {"C": 10.0, "cache_mb": 1000, "features": "hog", "hog_cell2": 7, "pca": 100},
        "rf": {},
    },
}


def family(recipe: str, dataset: str = "mnist") -> dict:
    """{algorithm: its changes} of one settings family on ``dataset``."""
    return {"paper": PAPER, "benchmark": BENCHMARK, "tuned": TUNED.get(dataset, TUNED["mnist"])}[recipe]


def members(recipe: str) -> list[str]:
    """The algorithms that have settings in ``recipe`` (what --algo all runs)."""
    return [name for name in REGISTRY if name in family(recipe)]


def settings(algo: str, recipe: str, overrides: dict | None = None, dataset: str = "mnist") -> dict:
    """Every setting of ``algo`` under ``recipe`` on ``dataset``, with the non-None ``overrides`` that apply."""
    if algo not in family(recipe, dataset):
        has = [r for r in CLASSICAL_RECIPES if algo in family(r)]
        raise ProjectError(f"{algo} has no {recipe} settings; use --recipe {' or '.join(has)}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    out = {**PREPROCESSING, **REGISTRY[algo][2], **FAMILY[recipe], **family(recipe, dataset)[algo]}
    if given.get("features", out["features"]) == "hog":
        out = {**HOG_SETTINGS, **out}
    out.update({k: v for k, v in given.items() if k in out})
    if out["features"] not in FEATURES:
        raise ProjectError(f"features {out['features']!r}: choose one of {', '.join(FEATURES)}")
    if out["features"] == "pixels":  # HOG's settings would be recorded but do nothing
        out = {k: v for k, v in out.items() if not k.startswith("hog_")}
    elif problem := hog_problem(*(out[k] for k in HOG_SETTINGS)):
        raise ProjectError(problem)
    if algo == "pca-svm" and not out["pca"]:
        raise ProjectError("pca-svm needs --pca N with N >= 1 (use --algo svm for no PCA)")
    if out["pca"] > n_features(out):
        n, what = n_features(out), "pixels" if out["features"] == "pixels" else "HOG features"
        raise ProjectError(f"--pca {out['pca']} exceeds the {n} {what}; choose 0 (off) to {n}")
    return out


def n_features(s: dict) -> int:
    """How many numbers per image reach the [scaler, PCA and] model: the pixels or the HOG features."""
    if s["features"] == "pixels":
        return N_PIXELS
    return hog_length(s["hog_cell"], s["hog_orientations"], s["hog_block"], s["hog_cell2"])


def check_fits(s: dict, n_train: int) -> None:
    """Settings that cannot work on ``n_train`` training images, said before fitting."""
    if s["pca"] > n_train:
        raise ProjectError(f"--pca {s['pca']} exceeds the {n_train} training images; use fewer components")
    if s.get("k", 0) > n_train:
        raise ProjectError(f"--k {s['k']} exceeds the {n_train} training images; choose a smaller k")
