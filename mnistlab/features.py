"""Preprocessing steps of the classical pipelines (Classifier.py): deskewing and pixel scaling."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from mnistlab.datasets import SIDE

N_PIXELS = SIDE * SIDE


def pixel_moments(images: np.ndarray):
    """Centre of mass (row, column) and shear (cov(row, col) / var(row)) of each image, in one matrix product."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    r, c = np.mgrid[:SIDE, :SIDE].reshape(2, -1).astype(np.float32)
    m = flat @ np.stack([np.ones_like(r), r, c, r * r, r * c], axis=1)
    total = np.maximum(m[:, 0], 1e-6)  # a blank image has no ink: leave it unchanged
    mr, mc = m[:, 1] / total, m[:, 2] / total
    var_r = m[:, 3] / total - mr**2
    cov_rc = m[:, 4] / total - mr * mc
    return mr, mc, cov_rc / np.maximum(var_r, 1e-6)


def deskew(images: np.ndarray) -> np.ndarray:
    """Undo each digit's slant with a shear that zeroes its row/column covariance (float32, 0-255, [N, 784]).

    Deskewing is the classic MNIST preprocessing step (LeCun et al.'s table lists it for KNN and
    SVMs): writers slant their digits differently, and a shear per image removes that nuisance
    before pixel distances are compared. The centre of mass is also moved to the image centre.
    """
    n = len(images)
    mr, mc, alpha = pixel_moments(images)
    # All images in one tall 2-D picture, each framed by a row and column of zeros, so that a single
    # bilinear map_coordinates call does them all (3.5x faster than a 3-D call over a batch axis).
    framed = np.zeros((n, SIDE + 2, SIDE + 2), np.float32)
    framed[:, 1:-1, 1:-1] = images.reshape(n, SIDE, SIDE)
    r, c = np.mgrid[:SIDE, :SIDE].astype(np.float32)
    half = SIDE / 2
    # Output pixel (r, c) samples the input at (r + mr - 14, c + mc - 14 + alpha * (r - 14)); clipping
    # to the frame keeps every sample inside its own image, where the frame reads as blank paper.
    rows = r[None] + (mr - half)[:, None, None]
    cols = c[None] + (mc - half)[:, None, None] + alpha[:, None, None] * (r[None] - half)
    rows = np.clip(rows, -1, SIDE) + 1 + (SIDE + 2) * np.arange(n, dtype=np.float32)[:, None, None]
    cols = np.clip(cols, -1, SIDE) + 1
    out = map_coordinates(framed.reshape(-1, SIDE + 2), [rows, cols], order=1, prefilter=False)
    return out.reshape(n, N_PIXELS)


def to_unit(images: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """Flatten to [N, 784] and scale pixel values to [0, 1]."""
    flat = np.asarray(images).reshape(len(images), -1)
    return flat.astype(dtype) / np.asarray(255, dtype=dtype)
