"""All test-set figures of one evaluation, as the nested dict written to results.json.

This module computes figures from decisions it is given (closest class, decided label, score);
it never decides anything itself: the `Attributor` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..openset.threshold import UNKNOWN
from .closedset import accuracy, confusion_matrix, macro_f1, per_class_f1
from .openset import (
    aupr_in,
    aupr_out,
    auroc,
    ccr_at_fpr,
    fpr_at_tpr,
    oscr,
    per_unknown_auroc,
    tnr_at_tpr,
)


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def open_set_figures(scores, is_known, correct) -> dict:
    """The open-set figures of one score vector (known = positive, higher = known)."""
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(is_known, dtype=bool)
    c = np.asarray(correct, dtype=bool)
    return {
        "auroc": _clean(auroc(s, k)),
        "oscr": _clean(oscr(s, k, c)),
        "aupr_in": _clean(aupr_in(s, k)),
        "aupr_out": _clean(aupr_out(s, k)),
        "fpr_at_tpr95": _clean(fpr_at_tpr(s, k, 0.95)),
        "tnr_at_tpr95": _clean(tnr_at_tpr(s, k, 0.95)),
        "ccr_at_fpr01": _clean(ccr_at_fpr(s, k, c, 0.01)),
        "ccr_at_fpr05": _clean(ccr_at_fpr(s, k, c, 0.05)),
        "ccr_at_fpr10": _clean(ccr_at_fpr(s, k, c, 0.10)),
    }


def evaluate_open_set(
    y_true: Sequence[str],
    y_closest: Sequence[str],
    scores: Sequence[float],
    known_classes: Sequence[str],
    y_decided: Sequence[str] | None = None,
    threshold: float | None = None,
) -> dict:
    """`y_closest` are closed-set predictions (always a known class); `scores` higher = known;
    `y_decided` the model's final labels (`unknown` where it rejected), when there are any.

    Closed-set figures use the known-class test samples only. Open-set figures use all test
    samples. With `y_decided`, also the figures of the thresholded decision.
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_closest, dtype=object)
    s = np.asarray(scores, dtype=np.float64)
    known = list(known_classes)
    is_known = np.isin(y_true, known)
    correct = y_pred == y_true
    unknown_labels = sorted(set(y_true[~is_known].tolist()))
    out = {
        "closed_set": {
            "accuracy": _clean(accuracy(y_true[is_known], y_pred[is_known])),
            "balanced_accuracy": _clean(
                float(
                    np.mean(
                        [np.mean(y_pred[y_true == c] == c) for c in known if (y_true == c).any()]
                    )
                )
                if is_known.any()
                else float("nan")
            ),  # fmt: skip
            "macro_f1": _clean(macro_f1(y_true[is_known], y_pred[is_known], known)),
            "per_class_f1": per_class_f1(y_true[is_known], y_pred[is_known], known),
            "confusion": {
                "rows": known,
                "cols": known,
                "matrix": confusion_matrix(y_true[is_known], y_pred[is_known], known, known),
            },
        },
        "open_set": {
            **open_set_figures(s, is_known, correct),
            "per_unknown_auroc": {
                k: _clean(v) for k, v in per_unknown_auroc(s, y_true, known).items()
            },
        },
    }
    if y_decided is not None:
        decided = np.asarray(y_decided, dtype=object)
        accepted = decided != UNKNOWN
        truth = np.where(is_known, y_true, UNKNOWN)
        cols = known + [UNKNOWN]
        out["thresholded"] = {
            "threshold": None if threshold is None else float(threshold),
            "open_set_accuracy": _clean(accuracy(truth, decided)),
            "known_accepted": _clean(
                float(np.mean(accepted[is_known])) if is_known.any() else float("nan")
            ),
            "unknown_rejected": _clean(
                float(np.mean(~accepted[~is_known])) if (~is_known).any() else float("nan")
            ),
            # what the analyst sees at the model's own threshold, per unseen generator
            "rejected_per_unknown": {
                g: float(np.mean(~accepted[y_true == g])) for g in unknown_labels
            },
            "macro_f1": _clean(macro_f1(truth, decided, cols)),
            "confusion": {
                "rows": known + unknown_labels,
                "cols": cols,
                "matrix": confusion_matrix(y_true, decided, known + unknown_labels, cols),
            },
        }
    return out
