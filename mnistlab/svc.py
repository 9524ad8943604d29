"""A fitted RBF SVC's labels from its public attributes, with matrix products: libsvm's formula and one-against-one
vote in double precision, the same labels as ``SVC.predict``, several times sooner (docs/speed.md).

The sums run in another order, so a decision value can differ from libsvm's in its last bits: an image whose vote
could turn on that (any decision value within ``TOLERANCE`` of zero) is predicted by libsvm itself.
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-7  # the rounding of 10^4 double-precision terms is below 1e-11; anything this close goes to libsvm
CHUNK = 1000  # images per kernel block: 1000 x 12336 doubles, about 100 MB


def fitted_gamma(svc, train_features=None) -> float:
    """The gamma a fitted SVC used, by scikit-learn's documented definitions: a number as given; "auto",
    1 / n_features; "scale", 1 / (n_features * X.var()) of ``train_features``, the features it was fitted on (1 where
    they do not vary)."""
    if not isinstance(svc.gamma, str):
        return float(svc.gamma)
    if svc.gamma == "auto":
        return 1.0 / svc.n_features_in_
    variance = np.asarray(train_features, dtype=np.float64).var()
    return 1.0 / (svc.n_features_in_ * variance) if variance != 0 else 1.0


def rbf_predict(svc, features, gamma: float) -> np.ndarray:
    """``svc.predict(features)`` for a fitted dense RBF ``sklearn.svm.SVC`` whose kernel width is ``gamma``."""
    x = np.ascontiguousarray(features, dtype=np.float64)
    pairs = [(i, j) for i in range(len(svc.classes_)) for j in range(i + 1, len(svc.classes_))]  # libsvm's order
    labels, unsure = np.empty(len(x), dtype=svc.classes_.dtype), np.zeros(len(x), dtype=bool)
    for at in range(0, len(x), CHUNK):
        decision = decision_values(svc, x[at : at + CHUNK], gamma)
        votes = np.zeros((len(decision), len(svc.classes_)), dtype=np.int64)
        for p, (i, j) in enumerate(pairs):
            votes[:, i] += decision[:, p] > 0
            votes[:, j] += decision[:, p] <= 0
        labels[at : at + CHUNK] = svc.classes_[np.argmax(votes, axis=1)]  # ties: the first class, as in libsvm
        unsure[at : at + CHUNK] = (np.abs(decision) < TOLERANCE).any(axis=1)
    if unsure.any():  # a vote that rounding could turn: libsvm decides
        labels[unsure] = svc.predict(x[unsure])
    return labels


def decision_values(svc, x, gamma: float) -> np.ndarray:
    """(n, class pairs): the one-against-one decision values, in libsvm's order of the pairs (those of
    ``decision_function`` with ``decision_function_shape="ovo"``)."""
    x = np.asarray(x, dtype=np.float64)  # libsvm computes in double whatever the features' type
    sv, coef, start = svc.support_vectors_, svc.dual_coef_, np.concatenate([[0], np.cumsum(svc.n_support_)])
    squared = np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", sv, sv)[None, :] - 2.0 * (x @ sv.T)
    kernel = np.exp(-gamma * squared)  # (n, support vectors): libsvm's exp(-gamma (x.x + s.s - 2 x.s))
    columns = []
    for i in range(len(svc.classes_)):
        for j in range(i + 1, len(svc.classes_)):  # libsvm's layout of dual_coef_: class j's row for i, i's for j
            si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
            columns.append(kernel[:, si] @ coef[j - 1, si] + kernel[:, sj] @ coef[i, sj])
    return np.stack(columns, axis=1) + svc.intercept_
