"""Open-set and closed-set metrics agree with independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve
from sklearn.metrics import confusion_matrix as sk_confusion

from originprobe.metrics import (
    accuracy,
    aupr_in,
    aupr_out,
    auroc,
    ccr_at_fpr,
    confusion_matrix,
    evaluate_open_set,
    fpr_at_tpr,
    macro_f1,
    oscr,
    per_unknown_auroc,
    tnr_at_tpr,
)


def brute_force_curve(scores, is_known, correct):
    """(FPR, CCR) at every threshold taken from the scores themselves, plus +inf."""
    scores, is_known, correct = map(np.asarray, (scores, is_known, correct))
    pts = []
    for t in np.concatenate([[np.inf], np.unique(scores)]):
        acc = scores >= t
        ccr = np.sum(acc & is_known & correct) / is_known.sum()
        fpr = np.sum(acc & ~is_known) / (~is_known).sum()
        tpr = np.sum(acc & is_known) / is_known.sum()
        pts.append((fpr, ccr, tpr))
    pts.sort()
    return np.array(pts)


def brute_force_oscr(scores, is_known, correct):
    pts = brute_force_curve(scores, is_known, correct)
    # trapezoids between consecutive thresholds (sorted by FPR, then CCR)
    return float(sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts[:-1], pts[1:])))


@pytest.mark.parametrize("seed", range(8))
def test_auroc_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    is_known = rng.random(n) < rng.uniform(0.2, 0.8)
    # coarse scores create many ties
    scores = np.round(rng.normal(is_known * rng.uniform(0, 2), 1.0), int(rng.integers(0, 3)))
    assert auroc(scores, is_known) == pytest.approx(roc_auc_score(is_known, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_oscr_equals_brute_force_definition(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(20, 300))
    is_known = rng.random(n) < 0.6
    correct = rng.random(n) < 0.8
    scores = np.round(rng.normal(is_known * 1.0 + correct * 0.5, 1.0), int(rng.integers(0, 3)))
    assert oscr(scores, is_known, correct) == pytest.approx(
        brute_force_oscr(scores, is_known, correct), abs=1e-12
    )


def test_oscr_limits():
    is_known = np.array([1, 1, 1, 0, 0], bool)
    correct = np.array([1, 1, 0, 0, 0], bool)
    # perfect separation: OSCR = closed-set accuracy of the knowns
    assert oscr([5, 4, 3, 1, 0], is_known, correct) == pytest.approx(2 / 3)
    # an all-equal score accepts everything at once: triangle up to (1, accuracy)
    assert oscr([1, 1, 1, 1, 1], is_known, correct) == pytest.approx(1 / 3)


def test_ccr_and_tnr_operating_points_match_brute_force():
    rng = np.random.default_rng(7)
    n = 500
    is_known = rng.random(n) < 0.5
    correct = rng.random(n) < 0.85
    scores = rng.normal(is_known * 1.5, 1.0)
    pts = brute_force_curve(scores, is_known, correct)
    assert ccr_at_fpr(scores, is_known, correct, 0.05) == pytest.approx(
        pts[pts[:, 0] <= 0.05, 1].max()
    )
    ok = pts[pts[:, 2] >= 0.95]
    assert tnr_at_tpr(scores, is_known, 0.95) == pytest.approx(1 - ok[:, 0].min())


def test_closed_set_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    labels = ["real", "a", "b", "c"]
    y = rng.choice(labels, 300)
    p = np.where(rng.random(300) < 0.7, y, rng.choice(labels, 300))
    assert accuracy(y, p) == pytest.approx(np.mean(y == p))
    assert macro_f1(y, p, labels) == pytest.approx(f1_score(y, p, labels=labels, average="macro"))
    assert confusion_matrix(y, p, labels, labels) == sk_confusion(y, p, labels=labels).tolist()


def test_per_unknown_auroc_and_summary_keys():
    rng = np.random.default_rng(5)
    known = ["real", "a"]
    y = np.array(["real"] * 50 + ["a"] * 50 + ["u1"] * 30 + ["u2"] * 30, dtype=object)
    s = np.r_[rng.normal(2, 1, 100), rng.normal(0, 1, 30), rng.normal(1, 1, 30)]
    per = per_unknown_auroc(s, y, known)
    k = np.isin(y, known)
    for u in ("u1", "u2"):
        m = k | (y == u)
        assert per[u] == pytest.approx(roc_auc_score(k[m], s[m]))
    assert per["u1"] > per["u2"]
    pred = np.where(k, y, "real")
    decided = np.where(s >= 1.0, pred, "unknown")
    res = evaluate_open_set(y, pred, s, known, decided, threshold=1.0)
    for v in (
        res["closed_set"]["accuracy"],
        res["open_set"]["auroc"],
        res["open_set"]["oscr"],
        res["open_set"]["ccr_at_fpr05"],
        res["open_set"]["tnr_at_tpr95"],
    ):
        assert 0.0 <= v <= 1.0
    conf = res["thresholded"]["confusion"]
    assert conf["cols"][-1] == "unknown" and conf["rows"] == ["real", "a", "u1", "u2"]
    assert sum(map(sum, conf["matrix"])) == len(y)


@pytest.mark.parametrize("seed", range(8))
def test_aupr_in_and_out_equal_sklearn_average_precision(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(20, 400))
    is_known = rng.random(n) < rng.uniform(0.2, 0.8)
    scores = np.round(rng.normal(is_known * rng.uniform(0, 2), 1.0), int(rng.integers(0, 3)))
    assert aupr_in(scores, is_known) == pytest.approx(
        average_precision_score(is_known, scores), abs=1e-12
    )
    assert aupr_out(scores, is_known) == pytest.approx(
        average_precision_score(~is_known, -scores), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(8))
def test_fpr_at_95_tpr_matches_sklearn_roc_curve(seed):
    """The FPR at the first ROC point (strictest threshold) whose TPR reaches 95%."""
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(50, 400))
    is_known = rng.random(n) < 0.6
    scores = np.round(rng.normal(is_known * 1.5, 1.0), int(rng.integers(0, 3)))
    fpr, tpr, _ = roc_curve(is_known, scores, drop_intermediate=False)
    expected = fpr[np.argmax(tpr >= 0.95)]
    assert fpr_at_tpr(scores, is_known, 0.95) == pytest.approx(expected, abs=1e-12)
    assert tnr_at_tpr(scores, is_known, 0.95) == pytest.approx(1 - expected, abs=1e-12)


@pytest.mark.parametrize("max_fpr", [0.01, 0.05, 0.10])
def test_ccr_at_fpr_matches_brute_force(max_fpr):
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(50, 300))
        is_known = rng.random(n) < 0.6
        correct = rng.random(n) < 0.8
        scores = np.round(rng.normal(is_known * 1.2, 1.0), int(rng.integers(0, 3)))
        pts = brute_force_curve(scores, is_known, correct)
        expected = max(c for f, c, _ in pts if f <= max_fpr + 1e-12)
        assert ccr_at_fpr(scores, is_known, correct, max_fpr) == pytest.approx(expected)
