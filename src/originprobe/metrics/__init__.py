"""Stage 6: closed-set and open-set metrics (known = positive, scores higher = known)."""
from .closedset import accuracy, confusion_matrix, macro_f1, per_class_f1
from .openset import (auroc, ccr_at_fpr, oscr, oscr_curve, per_unknown_auroc, roc_curve,
                      tnr_at_tpr)
from .summary import evaluate_open_set

__all__ = ["accuracy", "auroc", "ccr_at_fpr", "confusion_matrix", "evaluate_open_set", "macro_f1",
           "oscr", "oscr_curve", "per_class_f1", "per_unknown_auroc", "roc_curve", "tnr_at_tpr"]
