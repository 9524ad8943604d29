"""Model files that lie: made only of trusted types (or a finite-looking checkpoint) yet broken inside. Each is
refused with one line when loaded, and a broken file never stops the good models from answering."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import skops.io as sio
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mnistlab.data import load_split
from mnistlab.errors import ProjectError
from mnistlab.saved_models import FORMAT, find_models, load_predictor
from model_files import DIGITS, fit_pipeline, write_network


@pytest.fixture(scope="module")
def digits(full_mnist):
    x, y = load_split("train", data_dir=full_mnist[0], size=400)
    return x, y


def save_raw(path, pipeline, classes=DIGITS):
    """A .skops file in save_classical's format, written without its checks (as a hostile file would be)."""
    meta = json.dumps({"model": "knn", "recipe": "paper", "classes": classes})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        sio.dumps({"format": FORMAT, "meta": meta, "pipeline": pipeline}, compression=zipfile.ZIP_DEFLATED)
    )
    return path


def refused(path) -> str:
    with pytest.raises(ProjectError) as info:
        load_predictor(path, "cpu")
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def lying_files(digits, folder) -> dict:
    x, y = digits
    good = fit_pipeline("knn", x, y)
    nan_logreg = fit_pipeline("logreg", x, y)
    nan_logreg.steps[-1][1].coef_[:] = np.nan  # finite-looking types, NaN inside: every score is NaN
    features100 = Pipeline([("model", KNeighborsClassifier(3).fit(x.reshape(len(x), -1)[:, :100], y))])
    return {
        "short class list": save_raw(folder / "a" / "knn-paper.skops", good, classes=DIGITS[:3]),
        "class list of numbers": save_raw(folder / "b" / "knn-paper.skops", good, classes=[[1], {}, 2.5]),
        "a dict as pipeline": save_raw(folder / "c" / "knn-paper.skops", {"steps": [1, 2]}),
        "a lone scaler": save_raw(folder / "d" / "knn-paper.skops", StandardScaler().fit(x.reshape(len(x), -1))),
        "an unfitted estimator": save_raw(
            folder / "e" / "knn-paper.skops", Pipeline([("model", LogisticRegression())])
        ),
        "100 features": save_raw(folder / "f" / "knn-paper.skops", features100),
        "NaN coefficients": save_raw(folder / "g" / "logreg-paper.skops", nan_logreg),
    }


def test_lying_skops_files_are_refused_in_one_line(digits, tmp_path):
    for what, path in lying_files(digits, tmp_path).items():
        assert "refused" in refused(path), what


def test_negative_batch_norm_variance_is_refused(tmp_path):
    path = write_network(tmp_path / "cnn-paper.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["bn1.running_var"] = -torch.ones_like(ckpt["model"]["bn1.running_var"])  # finite, yet sqrt(-1)
    torch.save(ckpt, path)
    assert "non-finite scores" in refused(path)


def test_a_config_that_would_allocate_gigabytes_is_refused_before_building(tmp_path):
    path = write_network(tmp_path / "cnn-paper.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"].update(width=1024, hidden_size=65536)  # inside the limits; the weights are a small network's
    torch.save(ckpt, path)
    assert "do not fit the network its config describes" in refused(path)


def test_a_broken_model_is_refused_alone(digits, tmp_path, capsys):
    x, y = digits
    folder = tmp_path / "ckpt" / "mnist"
    write_network(folder / "cnn-paper.pt")
    save_raw(folder / "knn-paper.skops", {"steps": []})  # broken
    save_raw(folder / "dt-paper.skops", fit_pipeline("dt", x, y))  # good
    predictors, _ = find_models(tmp_path / "ckpt", device="cpu")
    assert [p.name for p in predictors] == ["cnn-paper", "dt-paper"]
    assert "knn-paper.skops: refused" in capsys.readouterr().err
