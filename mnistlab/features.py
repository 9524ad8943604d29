"""Preprocessing steps of the classical pipelines (Classifier.py): deskewing, pixel scaling and HOG features."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.ndimage import map_coordinates
from sklearn.base import BaseEstimator, TransformerMixin

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
    """Undo each digit's slant with a shear that zeroes its row/column covariance, and move its centre of mass to the
    middle (float32, 0-255, [N, 784]): the classic MNIST preprocessing (LeCun et al.'s table lists it for KNN and
    SVMs), as writers slant their digits differently and pixel distances should not see that."""
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


# ---------------------------------------------------------------- HOG
# Histograms of oriented gradients (Dalal and Triggs 2005): each cell of cell x cell pixels votes its pixels'
# gradient magnitudes into ``orientations`` unsigned direction bins, each block of block x block cells is normalised
# for contrast. skimage.feature.hog's computation step for step, but for a whole batch of images at once;
# tests/test_features.py checks that the two agree.
HOG_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
HOG_EPS = 1e-5


def hog_problem(cell, orientations, block, block_norm="L2-Hys", cell2=0) -> str | None:
    """What is wrong with these HOG settings for SIDE x SIDE images, in one line; None when they work."""
    ints = {"hog_cell": cell, "hog_orientations": orientations, "hog_block": block, "hog_cell2": cell2}
    for name, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return f"{name} must be a whole number, got {value!r}"
    if orientations < 1:
        return f"hog_orientations {orientations}: a histogram needs at least 1 orientation bin"
    if block < 1:
        return f"hog_block {block}: a block needs at least 1 cell"
    if block_norm not in HOG_NORMS:
        return f"hog_norm {block_norm!r}: choose one of {', '.join(HOG_NORMS)}"
    for name, size in (("hog_cell", cell), ("hog_cell2", cell2)):
        if name == "hog_cell2" and size == 0:  # 0: no second cell size
            continue
        if not 1 <= size <= SIDE:
            return f"{name} {size}: a cell is 1 to {SIDE} pixels wide (the images are {SIDE}x{SIDE})"
        if SIDE // size < block:
            return (
                f"{name} {size} gives {SIDE // size}x{SIDE // size} cells per image, fewer than a "
                f"{block}x{block}-cell block (hog_block {block}); use a smaller cell or block"
            )
    return None


def hog_length(cell, orientations, block, cell2=0) -> int:
    """How many features HOG(cell, orientations, block, cell2=cell2) gives per image."""
    return sum((SIDE // c - block + 1) ** 2 * block * block * orientations for c in (cell, cell2) if c)


def hog_batch(images: np.ndarray, cell: int, orientations: int, block: int, block_norm: str) -> np.ndarray:
    """skimage.feature.hog(image, orientations, (cell, cell), (block, block), block_norm) of every image in
    ``images`` ([N, SIDE, SIDE], float), as [N, features] in the images' dtype."""
    n = len(images)
    g_row, g_col = np.zeros_like(images), np.zeros_like(images)
    g_row[:, 1:-1, :] = images[:, 2:, :] - images[:, :-2, :]  # central differences, 0 on the border
    g_col[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
    # Only pixels with a gradient vote (most of a digit's page is blank): their angles, in float64 as skimage's.
    where = np.flatnonzero((g_row != 0) | (g_col != 0))
    g_row, g_col = g_row.reshape(-1)[where].astype(np.float64), g_col.reshape(-1)[where].astype(np.float64)
    magnitude = np.hypot(g_col, g_row)
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    # skimage's bin i takes angles from float32(180 / orientations) * i up to (not including) the next edge
    edges = np.float32(180 / orientations) * np.arange(orientations + 1, dtype=np.float32)
    bins = np.searchsorted(edges.astype(np.float64), angle, side="right") - 1
    # Every vote goes to (image, cell row, cell column, bin) in one bincount; pixels past the last whole cell
    # (28 is not a multiple of every cell size) and angles past the last edge do not vote.
    cells = SIDE // cell
    r = np.arange(SIDE) // cell
    cell_of = np.where((r[:, None] < cells) & (r[None, :] < cells), r[:, None] * cells + r[None, :], -1).ravel()
    image, pixel = np.divmod(where, SIDE * SIDE)
    index = (image * (cells * cells) + cell_of[pixel]) * orientations + bins
    votes = (cell_of[pixel] >= 0) & (bins < orientations)
    hist = np.bincount(index[votes], magnitude[votes], minlength=n * cells * cells * orientations)
    hist = (hist / (cell * cell)).astype(images.dtype).reshape(n, cells, cells, orientations)
    # Blocks: every block x block window of cells, flattened as skimage does (block row, block column, cell
    # row, cell column, bin), each normalised on its own (in the images' dtype, scaled in place: the blocks
    # repeat each cell up to block^2 times, so this is the largest array).
    spots = cells - block + 1  # block positions along each side
    out = np.empty((n, spots, spots, block, block, orientations), images.dtype)
    for i in range(block):
        for j in range(block):
            out[:, :, :, i, j] = hist[:, i : i + spots, j : j + spots]
    out = out.reshape(n, spots * spots, block * block * orientations)
    if block_norm in ("L1", "L1-sqrt"):
        out /= out.sum(axis=2, keepdims=True) + out.dtype.type(HOG_EPS)  # votes are >= 0: the sum is the L1 norm
        if block_norm == "L1-sqrt":
            np.sqrt(out, out=out)
    else:
        scale_to_unit(out)
        if block_norm == "L2-Hys":  # clipped at 0.2, then normalised again
            np.minimum(out, out.dtype.type(0.2), out=out)
            scale_to_unit(out)
    return out.reshape(n, -1)


def scale_to_unit(blocks: np.ndarray) -> None:
    """Divide each block (the last axis) by its L2 norm (plus eps, as skimage does), in place."""
    squares = np.einsum("ijk,ijk->ij", blocks, blocks)
    blocks *= (1 / np.sqrt(squares + blocks.dtype.type(HOG_EPS**2)))[..., None]


class HOG(TransformerMixin, BaseEstimator):
    """HOG features of [N, 784] or [N, 28, 28] images, as a Pipeline step (stateless: ``fit`` only checks the
    settings). ``cell2`` > 0 appends a second HOG with that cell size (same orientations, block and norm).

    Images are worked through in chunks of ``chunk`` on ``n_jobs`` threads (numpy releases the GIL inside its
    array operations, so the threads run on separate cores); integer images are taken as float32.
    """

    def __init__(self, cell=4, orientations=9, block=2, block_norm="L2-Hys", cell2=0, n_jobs=1, chunk=500):
        self.cell = cell
        self.orientations = orientations
        self.block = block
        self.block_norm = block_norm
        self.cell2 = cell2
        self.n_jobs = n_jobs
        self.chunk = chunk

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    def _check(self):
        problem = hog_problem(self.cell, self.orientations, self.block, self.block_norm, self.cell2)
        if problem:
            raise ValueError(problem)
        for name, value in (("n_jobs", self.n_jobs), ("chunk", self.chunk)):
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"HOG {name} must be a whole number >= 1, got {value!r}")

    def fit(self, X, y=None):
        self._check()
        return self

    def transform(self, X):
        self._check()
        x = np.asarray(X)
        if x.shape[1:] not in ((N_PIXELS,), (SIDE, SIDE)):
            raise ValueError(f"HOG takes [N, {N_PIXELS}] or [N, {SIDE}, {SIDE}] images, got shape {x.shape}")
        x = x.reshape(len(x), SIDE, SIDE)
        x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)
        cells = [c for c in (self.cell, self.cell2) if c]

        def one(start: int) -> np.ndarray:
            part = x[start : start + self.chunk]
            return np.hstack([hog_batch(part, c, self.orientations, self.block, self.block_norm) for c in cells])

        starts = range(0, len(x), self.chunk)
        if self.n_jobs == 1 or len(x) <= self.chunk:
            parts = [one(s) for s in starts]
        else:
            with ThreadPoolExecutor(max_workers=self.n_jobs) as pool:
                parts = list(pool.map(one, starts))
        if not parts:  # no images: no rows, every feature column
            return np.zeros((0, hog_length(self.cell, self.orientations, self.block, self.cell2)), x.dtype)
        return np.concatenate(parts)
