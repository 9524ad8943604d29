"""Own-image prediction: MNIST-style preprocessing of ordinary image files, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier

from benchmarks.predict import write_photos
from data_prep import load_split
from predict import load_grey, to_mnist
from utils import ProjectError


@pytest.fixture(scope="module")
def reference_knn(full_mnist):
    """A plain KNN on 10000 real training digits: a fixed judge of how MNIST-like the inputs are."""
    x, y = load_split("train", data_dir=full_mnist[0], size=10000)
    return KNeighborsClassifier(n_neighbors=3).fit(x.reshape(len(x), -1) / 255.0, y)


def test_preprocessing_recovers_real_digits(full_mnist, reference_knn, tmp_path):
    x, y = load_split("test", data_dir=full_mnist[0], size=200, random=True, seed=1)
    inputs = np.stack([to_mnist(load_grey(p)) for p in write_photos(x, tmp_path)])
    assert inputs.shape == (200, 28, 28) and inputs.min() >= 0 and inputs.max() <= 1
    baseline = (reference_knn.predict(x.reshape(200, -1) / 255.0) == y).mean()
    recovered = (reference_knn.predict(inputs.reshape(200, -1)) == y).mean()
    assert recovered >= 0.9 and recovered >= baseline - 0.03, (recovered, baseline)


def test_layout_matches_mnist(full_mnist):
    """Ink fits a 20x20 box and its centre of mass sits in the middle of 28x28, whatever the input size."""
    digit = load_split("test", data_dir=full_mnist[0], size=1)[0][0]
    page = np.full((300, 500), 255, dtype=np.uint8)
    page[40:40 + 224, 250:250 + 224] = 255 - np.asarray(Image.fromarray(digit).resize((224, 224)))  # fmt: skip
    out = to_mnist(page / 255.0)
    rows, cols = np.nonzero(out > 0.25)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21
    yy, xx = np.mgrid[:28, :28]
    cy, cx = (out * yy).sum() / out.sum(), (out * xx).sum() / out.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def test_polarity_is_detected(full_mnist):
    digit = load_split("test", data_dir=full_mnist[0], size=1)[0][0] / 255.0
    big = np.kron(digit, np.ones((5, 5)))
    assert np.allclose(to_mnist(big), to_mnist(1.0 - big), atol=1.5 / 255)  # one grey level of rounding


def test_blank_image_is_rejected():
    with pytest.raises(ValueError, match="no ink"):
        to_mnist(np.full((50, 50), 0.9))


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("definitely not a PNG")
    with pytest.raises(ProjectError, match="not an image"):
        load_grey(path)
    with pytest.raises(ProjectError, match="no such file"):
        load_grey(tmp_path / "missing.png")


def test_transparent_png_reads_as_white_paper(tmp_path):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[10:30, 18:22] = (0, 0, 0, 255)  # an opaque black stroke on a fully transparent page
    Image.fromarray(rgba, "RGBA").save(tmp_path / "stroke.png")
    grey = load_grey(tmp_path / "stroke.png")
    assert grey[0, 0] == 1.0 and grey[20, 20] == 0.0
