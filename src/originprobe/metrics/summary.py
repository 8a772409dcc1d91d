"""All test-set figures of one evaluation, as the nested dict written to results.json."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .closedset import accuracy, confusion_matrix, macro_f1, per_class_f1
from .openset import auroc, ccr_at_fpr, oscr, per_unknown_auroc, tnr_at_tpr

UNKNOWN = "unknown"


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def evaluate_open_set(y_true: Sequence[str], y_pred: Sequence[str], scores: Sequence[float],
                      known_classes: Sequence[str], threshold: float | None = None) -> dict:
    """`y_pred` are closed-set predictions (always a known class); `scores` higher = known.

    Closed-set figures use the known-class test samples only. Open-set figures use all test
    samples. With a `threshold`, also the figures of the thresholded decision (`unknown` below it).
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    s = np.asarray(scores, dtype=np.float64)
    known = list(known_classes)
    is_known = np.isin(y_true, known)
    correct = y_pred == y_true
    unknown_labels = sorted(set(y_true[~is_known].tolist()))
    out = {
        "closed_set": {
            "accuracy": _clean(accuracy(y_true[is_known], y_pred[is_known])),
            "macro_f1": _clean(macro_f1(y_true[is_known], y_pred[is_known], known)),
            "per_class_f1": per_class_f1(y_true[is_known], y_pred[is_known], known),
            "confusion": {"rows": known, "cols": known,
                          "matrix": confusion_matrix(y_true[is_known], y_pred[is_known], known,
                                                     known)},
        },
        "open_set": {
            "auroc": _clean(auroc(s, is_known)),
            "oscr": _clean(oscr(s, is_known, correct)),
            "ccr_at_fpr05": _clean(ccr_at_fpr(s, is_known, correct, 0.05)),
            "tnr_at_tpr95": _clean(tnr_at_tpr(s, is_known, 0.95)),
            "per_unknown_auroc": {k: _clean(v) for k, v in
                                  per_unknown_auroc(s, y_true, known).items()},
        },
    }
    if threshold is not None:
        decided = y_pred.copy()
        decided[s < threshold] = UNKNOWN
        truth = np.where(is_known, y_true, UNKNOWN)
        cols = known + [UNKNOWN]
        out["thresholded"] = {
            "threshold": float(threshold),
            "open_set_accuracy": _clean(accuracy(truth, decided)),
            "known_accepted": _clean(float(np.mean(s[is_known] >= threshold))
                                     if is_known.any() else float("nan")),
            "unknown_rejected": _clean(float(np.mean(s[~is_known] < threshold))
                                       if (~is_known).any() else float("nan")),
            "macro_f1": _clean(macro_f1(truth, decided, cols)),
            "confusion": {"rows": known + unknown_labels, "cols": cols,
                          "matrix": confusion_matrix(y_true, decided, known + unknown_labels, cols)},
        }
    return out
