"""Saved models, networks (.pt) and classical (.skops), given one face: ``load_predictor(path).predict(x)``.

Models live in ``<checkpoint_dir>/<dataset>/<model>-<recipe>.pt`` (dl_main.py) and ``.skops`` (ml_main.py, via
``save_classical``). skops, not pickle, because loading a pickle runs any code it names: a .skops file is built
only when every type it names is in TRUSTED, else refused with one line. Its metadata is a JSON string inside
the same file, so it cannot drift from the model it describes.
"""

from __future__ import annotations

import json
import sys
import time
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

from mnistlab.datasets import SIDE
from mnistlab.errors import ProjectError, one_line
from mnistlab.files import atomic_path, is_regular, jsonable, read_bytes
from mnistlab.paths import CHECKPOINTS
from mnistlab.recipes import BENCHMARK_ONLY, CLASSICAL, NETWORKS, PREFERRED

SUFFIX = {"network": ".pt", "classical": ".skops"}


MAX_MODEL_BYTES = 2 << 30  # an SVC of 60000 training images is about 100 MB
FORMAT = "mnist-classical-model/1"  # the "format" entry of a save_classical file


# Every type a save_classical file may name ("module.name", as skops writes them), and nothing else.
TRUSTED = (
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool",
    "numpy.ndarray", "numpy.float32", "numpy.float64", "numpy.int32", "numpy.int64",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "mnistlab.features.deskew", "mnistlab.features.to_unit",  # the functions those transformers call
    "mnistlab.features.HOG",  # the HOG feature step (its settings only: it learns nothing)
    "sklearn.decomposition._pca.PCA",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree",  # KNN's index on few features
    "sklearn.svm._classes.SVC",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._tree.Tree",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.linear_model._logistic.LogisticRegression",
    # the Fashion-MNIST benchmark's family: StandardScaler first; l1 logreg one-vs-rest; gb; sk-mlp
    "sklearn.preprocessing._data.StandardScaler", "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.preprocessing._label.LabelBinarizer", "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfMultinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.MultinomialLogit", "sklearn._loss.link.Interval",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "numpy.uint64", "numpy.random._generator.Generator", "numpy.random.mtrand.RandomState",  # fitted RNG states
)  # fmt: skip


def score_kind(model) -> str:
    return "probability" if hasattr(model, "predict_proba") else "decision score"


def save_classical(pipeline, path, meta: dict, check_X) -> Path:
    """Save a fitted Classifier.py pipeline with ``meta`` as a .skops file, atomically.

    ``check_X`` (a few hundred raw images, as the pipeline takes them) proves the file: it is written only
    if the pipeline reloaded from it, through the trusted-type list, predicts their labels as ``pipeline`` does.
    """
    import skops.io as sio  # here: skops imports every scikit-learn estimator and torch, which --help need not wait for

    path = Path(path)
    estimator = type(pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline)
    record = {
        **meta,
        "score_kind": score_kind(pipeline),
        "estimator": f"{estimator.__module__}.{estimator.__name__}",
        "versions": {name: version(name) for name in ("scikit-learn", "skops")},
    }
    saved = {"format": FORMAT, "meta": json.dumps(record, default=jsonable), "pipeline": pipeline}
    data = sio.dumps(saved, compression=zipfile.ZIP_DEFLATED)
    reloaded, _ = loads_trusted(
        data, path, "not saved", "add its types to mnistlab.saved_models.TRUSTED if they are safe"
    )
    check_same_labels(pipeline, reloaded, check_X, path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def check_same_labels(fitted, saved, check_X, path: Path) -> None:
    x = np.asarray(check_X)
    if len(x) == 0:
        raise ValueError("save_classical needs some check_X images to compare the saved model with")
    differ = int(np.sum(fitted.predict(x) != saved.predict(x)))
    if differ:
        raise ProjectError(
            f"{path}: not saved: the saved copy of the model labels {differ} of {len(x)} check "
            f"images differently from the fitted model"
        )


def loads_trusted(data: bytes, path: Path, refusal: str = "refused", fix: str = "delete it and retrain"):
    """(pipeline, meta) from a save_classical file's bytes, refusing any type outside TRUSTED.

    Every problem is one ProjectError line: "<path>: <refusal>: <problem>; <fix>".
    """
    import skops.io as sio

    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED))
        problem = f"it names types outside the trusted list ({', '.join(untrusted[:4])})" if untrusted else None
        if not problem:
            saved = sio.loads(data, trusted=list(TRUSTED))
            ours = isinstance(saved, dict) and saved.get("format") == FORMAT and "pipeline" in saved
            meta = json.loads(saved["meta"]) if ours else None
            problem = None if isinstance(meta, dict) else "not a model saved by ml_main.py"
    except (zipfile.BadZipFile, ValueError, KeyError, TypeError, AttributeError, ImportError, OSError, EOFError) as exc:
        problem = f"not a readable saved model ({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]})"
    if problem:
        raise ProjectError(f"{path}: {refusal}: {problem}; {fix}")
    return saved["pipeline"], meta


def load_classical(path):
    """(pipeline, meta) from a .skops file written by ``save_classical``; nothing untrusted is constructed."""
    path = Path(path)
    data = read_bytes(path, MAX_MODEL_BYTES, "saved model")
    return loads_trusted(data, path)


@dataclass
class Predictor:
    """A saved model ready to score 28x28 inputs: ``predict(x)`` maps (N, 28, 28) in [0, 1] to (N, classes)."""

    name: str  # the file's stem: <model>-<recipe>
    family: str  # "network" or "classical"
    classes: list  # class names, one per score column
    score_kind: str  # "probability" (softmax, predict_proba) or "decision score" (decision_function)
    path: Path
    scores: object = field(repr=False)  # float32 (N, 28, 28) in [0, 1] -> (N, classes)
    meta: dict = field(default_factory=dict, repr=False)

    def predict(self, x) -> np.ndarray:
        x = np.array(x, dtype=np.float32)  # a writable copy: torch warns on read-only arrays
        x = x[None] if x.ndim == 2 else x
        if x.shape[1:] != (SIDE, SIDE):
            raise ValueError(f"{self.name} takes (N, {SIDE}, {SIDE}) images, got shape {x.shape}")
        return self.scores(x)


def network_scores(model):
    import torch  # here: a second of imports that classical models alone need not pay

    device = next(model.parameters()).device

    def scores(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.as_tensor(x, device=device).unsqueeze(1))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    return scores


def classical_scores(pipeline, kind: str):
    method = pipeline.predict_proba if kind == "probability" else pipeline.decision_function

    def scores(x: np.ndarray) -> np.ndarray:
        out = np.asarray(method(x.reshape(len(x), -1) * np.float32(255)), dtype=np.float32)  # pipelines take 0-255
        return out if out.ndim == 2 else np.stack([-out, out], axis=1)  # a two-class decision_function is 1-D

    return scores


def load_predictor(path, device: str = "auto") -> Predictor:
    """The network checkpoint (.pt) or classical model (.skops) at ``path``, as a Predictor."""
    path = Path(path)
    if path.suffix not in SUFFIX.values():
        raise ProjectError(f"{path}: not a saved model; expected a .pt network checkpoint or a .skops classical model")
    if not is_regular(path, "saved model"):
        raise ProjectError(f"no model at {path}; train it with {train_command_for(path)}")
    if path.suffix == ".pt":
        from mnistlab.checkpoints import load_model  # here: torch takes a second to import

        model, config = load_model(path, device)
        width = list(model.parameters())[-1].shape[0]  # the last layer's bias: one logit per class
        classes = [str(c) for c in config.get("classes") or range(width)]
        return Predictor(path.stem, "network", classes, "probability", path, network_scores(model), config)
    pipeline, meta = load_classical(path)
    try:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(pipeline)
        names = meta.get("classes")
        classes = [str(names[int(c)] if names else c) for c in pipeline.classes_]  # the labels this model knows
        kind = score_kind(pipeline)
        predictor = Predictor(path.stem, "classical", classes, kind, path, classical_scores(pipeline, kind), meta)
        probe(predictor)
    except Exception as exc:  # a file of trusted types whose structure lies: whatever it raises, it is refused
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise ProjectError(
            f"{path}: refused: it does not work as a model of 28x28 images ({detail}); retrain it"
        ) from None
    return predictor


def probe(predictor: Predictor) -> None:
    """A loaded model must give one finite score per class for a few 28x28 inputs."""
    x = np.random.default_rng(0).random((3, SIDE, SIDE), dtype=np.float32)
    scores = predictor.predict(x)
    if scores.shape != (3, len(predictor.classes)) or not np.isfinite(scores).all():
        raise ValueError(
            f"its scores have shape {scores.shape} for {len(predictor.classes)} classes, or are not finite"
        )


def family_of(model: str) -> str:
    if model in NETWORKS:
        return "network"
    if model in CLASSICAL:
        return "classical"
    raise ProjectError(f"unknown model {model!r}; choose one of {', '.join(NETWORKS + CLASSICAL)}")


def train_command(model: str, recipe: str | None = None, dataset: str = "mnist", checkpoint_dir=CHECKPOINTS) -> str:
    """The command that trains ``model`` (with ``recipe``; default the preferred one) into ``checkpoint_dir``."""
    if family_of(model) == "network":
        command = f"python dl_main.py --model {model} --recipe {recipe or PREFERRED['network'][0]}"
    else:
        recipe = recipe or ("benchmark" if model in BENCHMARK_ONLY else "tuned")
        command = f"python ml_main.py --algo {model}" + (f" --recipe {recipe}" if recipe != "tuned" else "")
    if dataset != "mnist":
        command += f" --dataset {dataset}"
    if Path(checkpoint_dir).resolve() != CHECKPOINTS.resolve():
        command += f" --checkpoint-dir {checkpoint_dir}"
    return command


def train_command_for(path: Path) -> str:
    """The train command for a file named by the convention <dir>/<dataset>/<model>-<recipe>.<suffix>."""
    for model in NETWORKS + CLASSICAL:
        for recipe in PREFERRED[family_of(model)]:
            if path.name == f"{model}-{recipe}{SUFFIX[family_of(model)]}":
                return train_command(model, recipe, path.parent.name, path.parent.parent)
    return "python dl_main.py (networks, .pt) or python ml_main.py (classical models, .skops)"


def find_model(model: str, recipe: str | None = None, checkpoint_dir=CHECKPOINTS, dataset: str = "mnist") -> Path:
    """The saved ``model`` file: with ``recipe``, that one; else the first of RECIPES that exists."""
    family = family_of(model)
    if recipe is not None and recipe not in PREFERRED[family]:
        raise ProjectError(f"{model} has no recipe {recipe!r}; choose one of {', '.join(PREFERRED[family])}")
    folder = Path(checkpoint_dir) / dataset
    names = [f"{model}-{r}{SUFFIX[family]}" for r in ([recipe] if recipe else PREFERRED[family])]
    for name in names:
        if is_regular(folder / name, "saved model"):
            return folder / name
    looked = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
    raise ProjectError(
        f"no {model} model at {folder}/{looked}; train one with {train_command(model, recipe, dataset, checkpoint_dir)}"
    )


def find_models(checkpoint_dir=CHECKPOINTS, dataset: str = "mnist", device: str = "auto"):
    """(predictors, missing): every expected model's preferred saved file, networks first, then classical, and
    (model, the command that trains it) for those with no file yet. A file that cannot be loaded is refused alone,
    with a line on stderr, while the others are used."""
    predictors, missing = [], []
    for model in NETWORKS + CLASSICAL:
        try:
            path = find_model(model, None, checkpoint_dir, dataset)
        except ProjectError:
            if model not in BENCHMARK_ONLY:
                missing.append((model, train_command(model, None, dataset, checkpoint_dir)))
            continue
        try:
            predictors.append(load_predictor(path, device))
        except ProjectError as exc:
            print(f"note: {one_line(exc)}; the other models are used", file=sys.stderr)
    return predictors, missing


def ranked(scores: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` best class indices, best first; ties go to the lower index, as argmax and sklearn's predict do."""
    return np.argsort(-scores, kind="stable")[:top]


def classify_all(predictors, x28, top: int = 3) -> list[dict]:
    """Each model's answer for one (28, 28) input: label, its ``top`` classes with scores, and the milliseconds."""
    rows = []
    for p in predictors:
        start = time.perf_counter()
        scores = p.predict(x28)[0]
        ms = 1000 * (time.perf_counter() - start)
        best = ranked(scores, top)
        rows.append(
            {
                "name": p.name,
                "family": p.family,
                "label": p.classes[best[0]],
                "score_kind": p.score_kind,
                "top": [(p.classes[k], float(scores[k])) for k in best],
                "ms": ms,
            }
        )
    return rows


def chosen_models(args, prog: str) -> list:
    """The predictors to run: --checkpoint, --model/--recipe, --all (noting on stderr which are not trained yet),
    or the preferred CNN."""
    if args.checkpoint:
        return [load_predictor(args.checkpoint, args.device)]
    if not args.all:
        return [
            load_predictor(find_model(args.model or "cnn", args.recipe, args.checkpoint_dir, args.dataset), args.device)
        ]
    predictors, missing = find_models(args.checkpoint_dir, args.dataset, args.device)
    if not predictors:
        raise ProjectError(
            f"no trained models in {args.checkpoint_dir / args.dataset}; train one with, e.g., {missing[0][1]}"
        )
    if missing:
        hints = "; ".join(f"{model}: {command}" for model, command in missing)
        print(f"{prog}: note: not trained yet, so not shown: {one_line(hints)}", file=sys.stderr)
    return predictors
