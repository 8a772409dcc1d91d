"""Figures a selection reads from a head's predictions, and the closed-form proxy that ranks
layers before any head is fitted.

- `balanced_accuracy`: the mean per-class recall (so a large "real" class does not dominate);
- `check_roles`: the leak check every selection starts with: labels that are not known classes
  are refused (`SelectionLeakError`), so an unknown-class sample cannot reach a choice;
- `lda_proxy`: a shrinkage LDA with balanced priors on standardised features (one O(nD²) pass,
  several shrinkages from one eigendecomposition), scored by balanced accuracy; `model.selection`
  ranks many wide layers with it before cross-validating the best.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

SHRINKAGES = (1e-3, 1e-2, 1e-1, 1.0)  # LDA proxy: ridge on the within-class covariance, × mean ev
_CHUNK = 1024  # rows per pass of the proxy's accumulations


class SelectionLeakError(ConfigError):
    """Selection was given samples of classes that are not known (or an empty class)."""


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else 0.0


def check_roles(y: "np.ndarray | Sequence[str]", known_classes: Sequence[str]) -> None:
    """Refuse labels that are not known classes, and known classes without a sample."""
    labels = set(np.asarray(y, dtype=object).tolist())
    extra = labels - set(known_classes)
    if extra:
        raise SelectionLeakError(f"training labels {sorted(extra)} are not known classes")
    missing = set(known_classes) - labels
    if missing:
        raise SelectionLeakError(f"known classes {sorted(missing)} have no training samples")


def lda_proxy(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    classes: Sequence[str],
) -> float:
    """Validation balanced accuracy of the best of a few shrinkage-LDA classifiers (balanced
    priors) on standardised features: a closed-form stand-in for a linear head's sweep."""
    classes = list(classes)
    yi = np.searchsorted(classes, np.asarray(y_train, dtype=object).astype(str))
    n, D = X_train.shape
    K = len(classes)
    s1, s2 = np.zeros(D), np.zeros(D)
    sums = np.zeros((K, D))
    counts = np.bincount(yi, minlength=K).astype(np.float64)
    for s in range(0, n, _CHUNK):
        x = np.asarray(X_train[s : s + _CHUNK], dtype=np.float64)
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
        np.add.at(sums, yi[s : s + _CHUNK], x)
    mean = s1 / n
    scale = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    scale[scale < 1e-8] = 1.0
    mu = (sums / np.maximum(counts, 1)[:, None] - mean) / scale  # class means, standardised
    Sw = np.zeros((D, D))
    for s in range(0, n, _CHUNK):
        z = (np.asarray(X_train[s : s + _CHUNK], dtype=np.float64) - mean) / scale
        z -= mu[yi[s : s + _CHUNK]]
        z32 = z.astype(np.float32)
        Sw += z32.T @ z32
    Sw /= max(n - K, 1)
    ev, Q = np.linalg.eigh(Sw)
    ev = np.maximum(ev, 0.0)
    Zv = ((np.asarray(X_val, dtype=np.float64) - mean) / scale) @ Q
    muQ = mu @ Q
    best = 0.0
    for shrink in SHRINKAGES:
        inv = 1.0 / (ev + shrink * max(float(ev.mean()), 1e-12))
        W = muQ * inv  # (K, D) discriminants
        b = -0.5 * np.einsum("kd,kd->k", W, muQ)  # balanced (equal) priors
        pred = np.asarray(classes, dtype=object)[np.argmax(Zv @ W.T + b, axis=1)]
        best = max(best, balanced_accuracy(y_val, pred))
    return best
