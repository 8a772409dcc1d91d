"""Closed-set metrics over the known classes ("real" included), computed without rejection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def per_class_f1(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    out = {}
    for c in labels:
        tp = float(np.sum((y_true == c) & (y_pred == c)))
        fp = float(np.sum((y_true != c) & (y_pred == c)))
        fn = float(np.sum((y_true == c) & (y_pred != c)))
        out[str(c)] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0
    return out


def macro_f1(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> float:
    """Unweighted mean of the per-class F1 over `labels` (sklearn's average="macro")."""
    f1 = per_class_f1(y_true, y_pred, labels)
    return float(np.mean(list(f1.values()))) if f1 else float("nan")


def confusion_matrix(
    y_true: Sequence, y_pred: Sequence, rows: Sequence[str], cols: Sequence[str]
) -> list[list[int]]:
    """Counts with true labels as rows and predicted labels as columns."""
    r = {c: i for i, c in enumerate(rows)}
    k = {c: i for i, c in enumerate(cols)}
    m = np.zeros((len(rows), len(cols)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in r and p in k:
            m[r[t], k[p]] += 1
    return m.tolist()
