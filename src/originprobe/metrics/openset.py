"""Open-set metrics: how well a score separates known from unknown classes.

Scores follow originprobe's convention (higher = more likely known). "Positive" = known.
Implemented directly from their definitions (no sklearn at run time); the tests check AUROC
against sklearn's `roc_auc_score` and OSCR against a brute-force sweep of every threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _split(scores, is_known):
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(is_known, dtype=bool)
    return s[k], s[~k]


def auroc(scores: Sequence[float], is_known: Sequence[bool]) -> float:
    """P(score of a known > score of an unknown), ties counted one half (Mann–Whitney U)."""
    pos, neg = _split(scores, is_known)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks of ties
    uniq, start, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def _sweep(scores, is_known, correct):
    """(FPR, CCR, TPR, thresholds) at every distinct threshold, from strictest to most lenient.

    At threshold θ a sample is accepted when score ≥ θ. The first point is θ = +inf (0, 0, 0).
    """
    s = np.asarray(scores, dtype=np.float64)
    k = np.asarray(is_known, dtype=bool)
    c = np.asarray(correct, dtype=bool) & k
    n_known, n_unknown = int(k.sum()), int((~k).sum())
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    cum_unknown = np.cumsum(~k[order])
    cum_correct = np.cumsum(c[order])
    cum_known = np.cumsum(k[order])
    # last index of each run of equal scores: every sample with that score is accepted together
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s.size - 1]
    fpr = np.r_[0.0, cum_unknown[last] / max(n_unknown, 1)]
    ccr = np.r_[0.0, cum_correct[last] / max(n_known, 1)]
    tpr = np.r_[0.0, cum_known[last] / max(n_known, 1)]
    thr = np.r_[np.inf, s_sorted[last]]
    return fpr, ccr, tpr, thr


def oscr(scores, is_known, correct) -> float:
    """Area under the CCR-vs-FPR curve (Dhamija et al., 2018).

    CCR(θ) = fraction of known samples both correctly classified and accepted (score ≥ θ);
    FPR(θ) = fraction of unknown samples accepted. Trapezoidal area over all thresholds.
    """
    fpr, ccr, _, _ = _sweep(scores, is_known, correct)
    if not np.any(~np.asarray(is_known, bool)) or not np.any(is_known):
        return float("nan")
    return float(np.trapezoid(ccr, fpr))


def oscr_curve(scores, is_known, correct) -> tuple[np.ndarray, np.ndarray]:
    fpr, ccr, _, _ = _sweep(scores, is_known, correct)
    return fpr, ccr


def roc_curve(scores, is_known) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) with known = positive."""
    fpr, _, tpr, _ = _sweep(scores, is_known, np.zeros(len(scores), bool))
    return fpr, tpr


def ccr_at_fpr(scores, is_known, correct, max_fpr: float = 0.05) -> float:
    """Highest CCR over thresholds whose FPR ≤ `max_fpr`."""
    if not np.any(~np.asarray(is_known, bool)):
        return float("nan")
    fpr, ccr, _, _ = _sweep(scores, is_known, correct)
    ok = fpr <= max_fpr + 1e-12
    return float(ccr[ok].max())


def tnr_at_tpr(scores, is_known, min_tpr: float = 0.95) -> float:
    """Fraction of unknowns rejected at the strictest threshold that accepts ≥ `min_tpr` knowns."""
    k = np.asarray(is_known, bool)
    if not np.any(~k) or not np.any(k):
        return float("nan")
    fpr, _, tpr, _ = _sweep(scores, is_known, np.zeros(k.size, bool))
    i = int(np.argmax(tpr >= min_tpr - 1e-12))
    return float(1.0 - fpr[i])


def fpr_at_tpr(scores, is_known, min_tpr: float = 0.95) -> float:
    """Fraction of unknowns accepted at the strictest threshold that accepts ≥ `min_tpr` knowns."""
    t = tnr_at_tpr(scores, is_known, min_tpr)
    return float("nan") if np.isnan(t) else 1.0 - t


def average_precision(scores, is_positive) -> float:
    """Area under the precision–recall curve as the step sum Σ (R_n − R_{n−1})·P_n over the
    distinct thresholds (scikit-learn's `average_precision_score`, no interpolation)."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(is_positive, dtype=bool)
    n_pos = int(pos.sum())
    if n_pos == 0 or n_pos == pos.size:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    tp = np.cumsum(pos[order])
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s.size - 1]
    tp, fp = tp[last], (last + 1) - tp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def aupr_in(scores, is_known) -> float:
    """Average precision with known samples as positives, ranked by the score."""
    return average_precision(scores, is_known)


def aupr_out(scores, is_known) -> float:
    """Average precision with unknown samples as positives, ranked by minus the score."""
    return average_precision(-np.asarray(scores, dtype=np.float64), ~np.asarray(is_known, bool))


def per_unknown_auroc(scores, labels, known_classes: Sequence[str]) -> dict[str, float]:
    """AUROC of all known samples against each unknown class in turn."""
    s = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    known = np.isin(labels, list(known_classes))
    out = {}
    for u in sorted(set(labels[~known].tolist())):
        m = known | (labels == u)
        out[str(u)] = auroc(s[m], known[m])
    return out
