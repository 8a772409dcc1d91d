"""Stage 6: closed-set and open-set metrics (known = positive, scores higher = known)."""

from .closedset import accuracy, confusion_matrix, macro_f1, per_class_f1
from .openset import (
    aupr_in,
    aupr_out,
    auroc,
    average_precision,
    ccr_at_fpr,
    fpr_at_tpr,
    oscr,
    oscr_curve,
    per_unknown_auroc,
    roc_curve,
    tnr_at_tpr,
)
from .summary import evaluate_open_set, open_set_figures

__all__ = [
    "accuracy",
    "aupr_in",
    "aupr_out",
    "auroc",
    "average_precision",
    "ccr_at_fpr",
    "confusion_matrix",
    "evaluate_open_set",
    "fpr_at_tpr",
    "macro_f1",
    "open_set_figures",
    "oscr",
    "oscr_curve",
    "per_class_f1",
    "per_unknown_auroc",
    "roc_curve",
    "tnr_at_tpr",
]
