"""STAND-IN for the real ``inference`` module (branch ``infer``): replace this whole file with it at merge.

It exists only so that ``demo.py`` and its tests run before that merge. It implements the agreed API and
nothing more:

- ``prepare(source, name=None)``: bytes or a path -> (28, 28) float32 in [0, 1], through
  ``predict.load_grey`` and ``predict.to_mnist`` (the command line's MNIST-style preprocessing);
- ``find_models(checkpoint_dir, dataset="mnist", device="cpu")``: the dl_main.py networks saved as
  ``<checkpoint_dir>/<dataset>/*.pt`` (named by file stem), and the networks missing there with the command
  that trains them; classical models (``*.skops``) are ignored here, the real module loads them;
- ``classify_all(predictors, x28)``: one result dict per predictor.

Unlike the real module it has no pixel-count limit of its own beyond Pillow's decompression-bomb check.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils import ProjectError

NETWORKS = ("cnn", "mlp")  # what dl_main.py trains; listed as missing when absent


@dataclass
class Predictor:
    name: str
    family: str  # "network" | "classical"
    classes: list
    score_kind: str  # "probability" | "decision score"
    model: object = field(repr=False)

    def scores(self, x28: np.ndarray) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        x = torch.as_tensor(x28, dtype=torch.float32, device=device)[None, None]
        with torch.inference_mode():
            return torch.softmax(self.model(x), dim=1)[0].float().cpu().numpy()


def prepare(source: bytes | Path, name: str | None = None) -> np.ndarray:
    """The model input for an image file's bytes (or path): (28, 28) float32 in [0, 1]."""
    from PIL import Image

    from predict import load_grey, to_mnist

    label = name or (str(source) if isinstance(source, Path) else "image")
    try:
        grey = load_grey(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        return to_mnist(grey).astype(np.float32)
    except ProjectError as exc:  # load_grey names its argument, here a BytesIO: name the upload instead
        raise ProjectError(f"{label}: {str(exc).split(': ', 1)[-1]}") from None
    except ValueError as exc:  # to_mnist: blank image
        raise ProjectError(f"{label}: {exc}") from None
    except Image.DecompressionBombError:
        raise ProjectError(f"{label}: too many pixels to be a digit (a decompression bomb?)") from None


def find_models(checkpoint_dir: Path, dataset: str = "mnist", device: str = "cpu"):
    """(predictors, missing): the networks found, and (name, command) for each network not trained yet."""
    from checkpoint import load_model

    folder = Path(checkpoint_dir) / dataset
    predictors, have = [], set()
    for path in sorted(folder.glob("*.pt")):
        model, config = load_model(path, device)
        classes = [str(c) for c in config.get("classes") or range(10)]
        predictors.append(Predictor(path.stem, "network", classes, "probability", model))
        have.add(config.get("model"))
    missing = [
        (name, f"python dl_main.py --model {name} --dataset {dataset} --checkpoint-dir {folder}")
        for name in NETWORKS
        if name not in have
    ]
    return predictors, missing


def classify_all(predictors, x28: np.ndarray) -> list[dict]:
    """Every predictor's answer for one (28, 28) input, with its top classes and the time it took."""
    results = []
    for p in predictors:
        start = time.perf_counter()
        scores = p.scores(x28)
        ms = 1000 * (time.perf_counter() - start)
        order = np.argsort(scores)[::-1]
        results.append({
            "name": p.name,
            "family": p.family,
            "label": p.classes[order[0]],
            "top": [[p.classes[k], float(scores[k])] for k in order[:3]],
            "score_kind": p.score_kind,
            "ms": ms,
        })  # fmt: skip
    return results
