"""Prediction with every saved model: the one place an image is read and a model file is opened.

Images (``read_grey``, ``to_mnist``, ``prepare``): any file Pillow opens, or its bytes, becomes grey levels
in [0, 1] (16-bit, 32-bit and float images scaled by their range, never clipped; transparent parts as
white paper; EXIF orientation applied), then an MNIST-like 28x28 input. Every bad input, from a text file
to a decompression bomb, is a one-line ProjectError that starts with the file's name.

Models live in ``<checkpoint_dir>/<dataset>/<model>-<recipe>.pt`` (networks, dl_main.py) and
``<checkpoint_dir>/<dataset>/<algo>-<recipe>.skops`` (classical, ml_main.py via ``save_classical``);
``load_predictor`` gives both the same face: ``.predict(x)`` maps (N, 28, 28) images in [0, 1] to
(N, classes) scores.

Why skops with an explicit list of trusted types: a pickle or joblib file runs any code it names while it
is loaded, so a model file from a shared folder or a download could take over the machine. A skops file
is a zip of JSON (which class, which attributes) and .npy arrays (read without pickle). Before skops builds
anything, ``load_classical`` reads that JSON and refuses the file if it names any type outside TRUSTED: the
scikit-learn classes Classifier.py builds, numpy arrays and scalars, plain containers, and the two
Classifier.py functions its FunctionTransformer steps call. skops, given the same list, checks again. A
tampered file (``os.system``, ``builtins.eval``), a pickle renamed .skops or a truncated zip is refused
with one line, and nothing in it is constructed. The metadata (model, recipe, settings, dataset, class
names, score kind) is a JSON string inside the same file, so it cannot drift from the model it describes.

skops cannot save scikit-learn-intelex estimators (the process aborts inside oneDAL), and loading them
would need sklearnex; ``save_classical`` saves each one as its plain scikit-learn class with the same
fitted state, and refuses to write a file whose reloaded pipeline predicts differently from the fitted one.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import skops.io as sio
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from checkpoint import load_model
from cli import CHECKPOINTS, DEVICES, dataset_type
from dataset import INK_THRESHOLD, SIDE
from utils import ProjectError, atomic_path

# scikit-learn is imported inside the functions that use it, so that predict.py --help and a run with a
# network alone do not pay for it (torch comes with checkpoint.py, skops is small).
# The names of Network.MODELS and Classifier.REGISTRY (and of their recipes), written out here because importing
# those modules would import torch's and scikit-learn's model code; a test keeps the two in step.
NETWORKS = ("cnn", "mlp")
CLASSICAL = ("svm", "knn", "dt", "logreg", "pca-svm", "rf", "gb", "sk-mlp")
# Models with benchmark settings alone (the Fashion-MNIST benchmark's): used when saved, never listed as missing.
BENCHMARK_ONLY = ("gb", "sk-mlp")
# Each family's recipes, preferred first: the one a bare --model picks when several are trained.
RECIPES = {"network": ("handwriting", "best", "gpu", "fast", "paper"), "classical": ("tuned", "paper", "benchmark")}
SUFFIX = {"network": ".pt", "classical": ".skops"}
FORMAT = "mnist-classical-model/1"  # the "format" entry of a save_classical file

MAX_SIDE = 20_000  # pixels; a 200-megapixel camera sensor is 16320 wide. Pillow's pixel-count guard applies too.

# Every type a save_classical file may name ("module.name", as skops writes them), and nothing else.
TRUSTED = (
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool",
    "numpy.ndarray", "numpy.float32", "numpy.float64", "numpy.int32", "numpy.int64",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "Classifier.deskew", "Classifier.to_unit",  # the functions those transformers call
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

# ---------------------------------------------------------------- images


def source_name(source, name: str | None = None) -> str:
    return name or ("image" if isinstance(source, bytes | bytearray) else str(source))


def read_grey(source, name: str | None = None) -> np.ndarray:
    """A path's or raw bytes' image as float32 grey levels in [0, 1] (transparent parts as white paper)."""
    name = source_name(source, name)
    if isinstance(source, bytes | bytearray) and not source:
        raise ProjectError(f"{name}: empty file, not an image")
    opened = io.BytesIO(source) if isinstance(source, bytes | bytearray) else Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit at all: refused
            with Image.open(opened) as img:
                if max(img.size) > MAX_SIDE:
                    raise ProjectError(f"{name}: image is {img.width}x{img.height} pixels, over the "
                                       f"{MAX_SIDE}-pixel side limit; scale it down")  # fmt: skip
                return grey_levels(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ProjectError(too_large(name, exc)) from None
    except FileNotFoundError:
        raise ProjectError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        what = "not an image Pillow can read"
        if isinstance(opened, Path) and not opened.is_file():
            what = "not a regular file"  # a device or a pipe (/dev/zero would never end)
        elif isinstance(opened, Path) and opened.stat().st_size == 0:
            what = "empty file"
        raise ProjectError(f"{name}: {what}; use PNG or JPEG") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's ways of saying truncated or damaged
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "damaged or truncated image"
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise ProjectError(f"{name}: cannot be read: {reason} ({detail})") from None


def too_large(name: str, exc: Exception) -> str:
    """Pillow's decompression-bomb refusal, in one line with the sizes."""
    limit = Image.MAX_IMAGE_PIXELS or 0
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found[1]) / 1e6:,.0f} million pixels" if found else "too many pixels"
    return (f"{name}: image has {size}, over the {limit / 1e6:.0f} million-pixel limit that guards against "
            f"decompression bombs; scale it down")  # fmt: skip


def grey_levels(img: Image.Image) -> np.ndarray:
    """float32 grey in [0, 1] for any mode: 16-bit by 65535, 32-bit int and float by their own range."""
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / 65535
    if img.mode in ("I", "F"):
        values = np.nan_to_num(np.asarray(img, dtype=np.float64), posinf=0, neginf=0)
        low, high = values.min(), values.max()
        span = high - low if high > low else 1.0  # a flat image stays flat (and is then blank)
        return ((values - low) / span).astype(np.float32)
    if "A" in img.mode or "a" in img.mode or "transparency" in img.info:
        paper = Image.new("RGBA", img.size, "white")
        img = Image.alpha_composite(paper, img.convert("RGBA"))
    if img.mode not in ("1", "L"):
        img = img.convert("RGB")  # CMYK, YCbCr, P, ... through RGB to Pillow's luma
    return np.asarray(img.convert("L"), dtype=np.float32) / 255


def to_mnist(grey: np.ndarray) -> np.ndarray:
    """Turn a grey image into a 28x28 float array in [0, 1] laid out like an MNIST digit.

    Light ink on a dark background (dark-on-light paper is inverted), cropped to the ink, scaled to fit
    20x20 keeping its aspect ratio, and placed with its centre of mass in the middle: how MNIST was made.
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: MNIST is light on dark
        grey, border = 1.0 - grey, 1.0 - border
    ink = np.clip(grey - np.median(border), 0.0, None)  # remove the paper's grey level
    if ink.max() < 0.05:
        raise ValueError("no ink found: the image is blank or has no contrast")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]

    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    small = np.asarray(small, dtype=np.float32) / 255.0

    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    top, left = (SIDE - small.shape[0]) // 2, (SIDE - small.shape[1]) // 2
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    cy, cx = ndimage.center_of_mass(canvas)
    shifted = ndimage.shift(canvas, (round(SIDE / 2 - cy), round(SIDE / 2 - cx)), order=0, mode="constant")
    return np.clip(shifted, 0.0, 1.0)


def prepare(source, name: str | None = None) -> np.ndarray:
    """A path's or bytes' image as a (28, 28) float32 model input; ProjectError naming it if it cannot be."""
    name = source_name(source, name)
    grey = read_grey(source, name)
    try:
        return to_mnist(grey)
    except ValueError as exc:
        raise ProjectError(f"{name}: {exc}") from None


# ---------------------------------------------------------------- saving and loading classical models


def plain_estimator(est):
    """A scikit-learn-intelex estimator as its scikit-learn class with the same fitted state; others unchanged."""
    cls = type(est)
    package, module = (cls.__module__.split(".") + [""])[:2]
    if package != "sklearnex":
        return est
    try:
        plain_cls = getattr(importlib.import_module(f"sklearn.{module}"), cls.__name__)
    except (ImportError, AttributeError):
        raise ProjectError(f"cannot save {cls.__module__}.{cls.__name__}: scikit-learn has no such class") from None
    state = {k: v for k, v in vars(est).items() if not k.startswith("_onedal") and not k.endswith("_internal")}
    state.pop("_cached_estimators_", None)  # a forest's trees, rebuilt below from the estimators_ property
    for klass in cls.__mro__:  # fitted attributes that sklearnex keeps behind properties (support_vectors_, ...)
        if klass.__module__.split(".")[0] not in ("sklearnex", "onedal"):
            continue
        for attr, value in vars(klass).items():
            if isinstance(value, property) and attr.endswith("_") and not attr.startswith("__"):
                if not isinstance(getattr(plain_cls, attr, None), property) and hasattr(est, attr):
                    state[attr] = getattr(est, attr)
    plain = plain_cls.__new__(plain_cls)
    plain.__dict__.update(state)
    fit_plain_dtypes(plain)
    return plain


def fit_plain_dtypes(est) -> None:
    """Give converted state the array types scikit-learn's compiled code expects (oneDAL keeps others)."""
    from sklearn.ensemble._forest import BaseForest
    from sklearn.svm._base import BaseLibSVM

    if isinstance(est, BaseLibSVM):  # libsvm takes int32 indices and float64 coefficients
        for attr in ("support_", "_n_support"):
            setattr(est, attr, np.ascontiguousarray(getattr(est, attr), dtype=np.int32))
        for attr in ("support_vectors_", "dual_coef_", "_dual_coef_", "intercept_", "_intercept_", "_probA", "_probB"):
            setattr(est, attr, np.ascontiguousarray(getattr(est, attr), dtype=np.float64))
    if isinstance(est, BaseForest):
        for tree in est.estimators_:
            float32_thresholds(tree.tree_)


def float32_thresholds(tree) -> None:
    """Round a converted tree's split values to float32, as oneDAL holds them.

    scikit-learn compares float32 pixels with float64 split values; without this, a forest fitted by
    sklearnex on float64 pixels (the paper settings with --engine sklearnex) labelled 41 of 10000 test
    digits differently once converted, and 1 with it (10 trees on 1000 digits; float32 pixels: 1 either way).
    """
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    split = nodes["left_child"] != -1
    nodes["threshold"][split] = nodes["threshold"][split].astype(np.float32)
    tree.__setstate__({**state, "nodes": nodes})


def plain_pipeline(model):
    """``model`` (a Pipeline or one estimator) with every sklearnex step replaced by its plain class."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return Pipeline([(name, plain_estimator(step)) for name, step in model.steps])
    return plain_estimator(model)


def score_kind(model) -> str:
    return "probability" if hasattr(model, "predict_proba") else "decision score"


def save_classical(pipeline, path, meta: dict, check_X) -> Path:
    """Save a fitted Classifier.py pipeline with ``meta`` as a .skops file, atomically.

    ``check_X`` (a few hundred raw images, as the pipeline takes them) proves the file: it is written only
    if the pipeline reloaded from it, through the trusted-type list, predicts their labels as ``pipeline`` does.
    """
    path = Path(path)
    record = {**meta, "score_kind": score_kind(pipeline), "estimator": qualified(type(final_step(pipeline))),
              "versions": {name: version(name) for name in ("scikit-learn", "skops")}}  # fmt: skip
    saved = {"format": FORMAT, "meta": json.dumps(record, default=plain_json), "pipeline": plain_pipeline(pipeline)}
    data = sio.dumps(saved, compression=zipfile.ZIP_DEFLATED)
    reloaded, _ = loads_trusted(data, path, "not saved", "add its types to inference.TRUSTED if they are safe")
    check_same_labels(pipeline, reloaded, check_X, path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def final_step(model):
    return model.steps[-1][1] if hasattr(model, "steps") else model


def qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def plain_json(obj):
    return obj.item() if hasattr(obj, "item") else obj.tolist() if hasattr(obj, "tolist") else str(obj)


def check_same_labels(fitted, saved, check_X, path: Path) -> None:
    x = np.asarray(check_X)
    if len(x) == 0:
        raise ValueError("save_classical needs some check_X images to compare the saved model with")
    differ = int(np.sum(fitted.predict(x) != saved.predict(x)))
    if differ:
        raise ProjectError(f"{path}: not saved: the saved copy of the model labels {differ} of {len(x)} check "
                           f"images differently from the fitted model")  # fmt: skip


def schema_types(data: bytes) -> set[str]:
    """Every "module.name" a skops file's schema names, read as plain JSON without building anything."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    found, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def loads_trusted(data: bytes, path: Path, refusal: str = "refused", fix: str = "delete it and retrain"):
    """(pipeline, meta) from a save_classical file's bytes, refusing any type outside TRUSTED.

    Every problem is one ProjectError line: "<path>: <refusal>: <problem>; <fix>".
    """
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        untrusted = sorted(schema_types(data) - set(TRUSTED))
        problem = f"it names types outside the trusted list ({', '.join(untrusted[:4])})" if untrusted else None
        if not problem:
            saved = sio.loads(data, trusted=list(TRUSTED))
            ours = isinstance(saved, dict) and saved.get("format") == FORMAT and "pipeline" in saved
            meta = json.loads(saved["meta"]) if ours else None
            problem = None if isinstance(meta, dict) else "not a model saved by ml_main.py"
    except UntrustedTypesFoundException as exc:
        problem = f"it names untrusted types ({exc})"
    except (zipfile.BadZipFile, ValueError, KeyError, TypeError, AttributeError, ImportError, OSError, EOFError) as exc:
        problem = f"not a readable saved model ({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]})"
    if problem:
        raise ProjectError(f"{path}: {refusal}: {problem}; {fix}")
    return saved["pipeline"], meta


def load_classical(path):
    """(pipeline, meta) from a .skops file written by ``save_classical``; nothing untrusted is constructed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProjectError(f"{path}: no such file") from None
    except OSError as exc:
        raise ProjectError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return loads_trusted(data, path)


# ---------------------------------------------------------------- one face for every model


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
    if not path.is_file():
        raise ProjectError(f"no model at {path}; train it with {train_command_for(path)}")
    if path.suffix == ".pt":
        model, config = load_model(path, device)
        classes = [str(c) for c in config.get("classes") or range(final_width(model))]
        return Predictor(path.stem, "network", classes, "probability", path, network_scores(model), config)
    pipeline, meta = load_classical(path)
    names = meta.get("classes")
    classes = [str(names[int(c)] if names else c) for c in pipeline.classes_]  # the labels this model knows
    kind = score_kind(pipeline)
    return Predictor(path.stem, "classical", classes, kind, path, classical_scores(pipeline, kind), meta)


def final_width(model) -> int:
    return list(model.parameters())[-1].shape[0]  # the last layer's bias: one logit per class


def family_of(model: str) -> str:
    if model in NETWORKS:
        return "network"
    if model in CLASSICAL:
        return "classical"
    raise ProjectError(f"unknown model {model!r}; choose one of {', '.join(NETWORKS + CLASSICAL)}")


def train_command(model: str, recipe: str | None = None, dataset: str = "mnist", checkpoint_dir=CHECKPOINTS) -> str:
    """The command that trains ``model`` (with ``recipe``; default the preferred one) into ``checkpoint_dir``."""
    if family_of(model) == "network":
        command = f"python dl_main.py --model {model} --recipe {recipe or RECIPES['network'][0]}"
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
        for recipe in RECIPES[family_of(model)]:
            if path.name == f"{model}-{recipe}{SUFFIX[family_of(model)]}":
                return train_command(model, recipe, path.parent.name, path.parent.parent)
    return "python dl_main.py (networks, .pt) or python ml_main.py (classical models, .skops)"


def find_model(model: str, recipe: str | None = None, checkpoint_dir=CHECKPOINTS, dataset: str = "mnist") -> Path:
    """The saved ``model`` file: with ``recipe``, that one; else the first of RECIPES that exists."""
    family = family_of(model)
    if recipe is not None and recipe not in RECIPES[family]:
        raise ProjectError(f"{model} has no recipe {recipe!r}; choose one of {', '.join(RECIPES[family])}")
    folder = Path(checkpoint_dir) / dataset
    names = [f"{model}-{r}{SUFFIX[family]}" for r in ([recipe] if recipe else RECIPES[family])]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    looked = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
    raise ProjectError(f"no {model} model at {folder}/{looked}; train one with "
                       f"{train_command(model, recipe, dataset, checkpoint_dir)}")  # fmt: skip


def find_models(checkpoint_dir=CHECKPOINTS, dataset: str = "mnist", device: str = "auto"):
    """(predictors, missing): every expected model's preferred saved file, networks first, then classical.

    ``missing`` lists (model, the command that trains it) for those with no file yet. A file that exists
    but cannot be loaded (tampered, truncated, another format) is a ProjectError naming it, not a gap.
    """
    predictors, missing = [], []
    for model in NETWORKS + CLASSICAL:
        try:
            path = find_model(model, None, checkpoint_dir, dataset)
        except ProjectError:
            if model not in BENCHMARK_ONLY:
                missing.append((model, train_command(model, None, dataset, checkpoint_dir)))
            continue
        predictors.append(load_predictor(path, device))
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
        rows.append({"name": p.name, "family": p.family, "label": p.classes[best[0]], "score_kind": p.score_kind,
                     "top": [(p.classes[k], float(scores[k])) for k in best], "ms": ms})  # fmt: skip
    return rows


# ---------------------------------------------------------------- model-choosing flags (predict, handwriting, demo)
def add_model_flags(p) -> None:
    """--checkpoint FILE, --model M [--recipe R], or --all; with --checkpoint-dir, --dataset and --device."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", type=Path, help="a saved model file (.pt network or .skops classical model)")
    which.add_argument("--model", choices=NETWORKS + CLASSICAL, help="which model (default: cnn)")
    which.add_argument("--all", action="store_true", help="every trained model, side by side")
    p.add_argument("--recipe", help=f"the model's recipe (networks: {', '.join(RECIPES['network'])}; classical: "
                   f"{', '.join(RECIPES['classical'])}); default: the first of those that is trained")  # fmt: skip
    p.add_argument("--checkpoint-dir", type=Path, default=CHECKPOINTS,
                   help="where the models are (default: checkpoints/ beside this script)")  # fmt: skip
    p.add_argument("--dataset", type=dataset_type, default="mnist", help="which dataset's models (default: mnist)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="for networks (default: auto)")


def check_model_flags(p, args) -> None:
    if args.recipe and (args.checkpoint or args.all):
        p.error("--recipe picks the file of one --model; it does not apply to --checkpoint or --all")


def chosen_models(args, prog: str) -> list:
    """The predictors to run: --checkpoint, --model/--recipe, --all (noting on stderr which are not trained yet),
    or the preferred CNN."""
    if args.checkpoint:
        return [load_predictor(args.checkpoint, args.device)]
    if not args.all:
        return [load_predictor(find_model(args.model or "cnn", args.recipe, args.checkpoint_dir, args.dataset),
                               args.device)]  # fmt: skip
    predictors, missing = find_models(args.checkpoint_dir, args.dataset, args.device)
    if not predictors:
        raise ProjectError(f"no trained models in {args.checkpoint_dir / args.dataset}; train one with, e.g., "
                           f"{missing[0][1]}")  # fmt: skip
    if missing:
        hints = "; ".join(f"{model}: {command}" for model, command in missing)
        print(f"{prog}: note: not trained yet, so not shown: {hints}", file=sys.stderr)
    return predictors
