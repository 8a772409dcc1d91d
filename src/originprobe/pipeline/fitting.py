"""Fitting and testing an `Attributor` on prepared features: the steps every run, study and
comparison shares. Known-class train data fits, known-class validation data selects and
calibrates, test data is only scored (`test_attributor`)."""

from __future__ import annotations

import numpy as np

from ..features import LayerRows
from ..metrics import evaluate_open_set
from ..model import Attributor, Decisions
from .prepare import Prepared, RunConfig


def new_attributor(cfg: RunConfig, head: str | None = None, score: str | None = None) -> Attributor:
    """The Attributor a run's options describe (`head` given: that head, with `score` or its
    own choice)."""
    params = cfg.model_params()
    if head is not None:
        params.update(head=head, score=score or "auto")
    return Attributor(**params)


def fit_prepared(
    p: Prepared,
    head: str | None = None,
    score: str | None = None,
    train_index: np.ndarray | None = None,
) -> Attributor:
    """An Attributor fitted on the prepared known-class training features (optionally a subset
    of their rows: the low-data study)."""
    att = new_attributor(p.config, head, score)
    if train_index is None:
        return att.fit_prepared(p)
    att.use_extractor(p.extractor)
    return att.fit_features(
        LayerRows(p.table.rows["dev"], train_index), p.table.labels("dev")[train_index],
        problems=p.problems,
    )  # fmt: skip


def test_attributor(
    att: Attributor, X: np.ndarray, y: np.ndarray, known, bootstrap: int = 0, seed: int = 0
) -> tuple[dict, Decisions]:
    d = att.decide(X)
    m = evaluate_open_set(y, d.closest, d.score, known, d.label, d.threshold)
    if bootstrap:
        m["open_set"] |= bootstrap_ci(
            d.score, np.isin(y, list(known)), d.closest == y, bootstrap, seed
        )
    return m, d


def bootstrap_ci(scores, is_known, correct, n: int = 1000, seed: int = 0) -> dict:
    """95% percentile intervals of AUROC and OSCR over test sets resampled with replacement
    (known and unknown samples resampled separately, so every resample has both)."""
    from ..metrics import auroc, oscr

    rng = np.random.default_rng(seed)
    k_idx, u_idx = np.flatnonzero(is_known), np.flatnonzero(~is_known)
    if not len(k_idx) or not len(u_idx):
        return {}
    a, o = [], []
    for _ in range(n):
        idx = np.r_[rng.choice(k_idx, len(k_idx)), rng.choice(u_idx, len(u_idx))]
        a.append(auroc(scores[idx], is_known[idx]))
        o.append(oscr(scores[idx], is_known[idx], correct[idx]))
    return {
        "auroc_ci95": [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))],
        "oscr_ci95": [float(np.percentile(o, 2.5)), float(np.percentile(o, 97.5))],
        "bootstrap_resamples": n,
    }


def validation_figures(att: Attributor) -> dict:
    """The model's known-only estimate (cross-validated balanced accuracy; AUROC, OSCR and the
    share rejected, with each known generator withheld in turn)."""
    est = (getattr(att, "selection_summary_", {}) or {}).get("estimate") or {}
    return {
        "val_balanced_accuracy": est.get("balanced_accuracy"),
        "est_auroc": est.get("auroc"),
        "est_oscr": est.get("oscr"),
        "est_rejected": est.get("rejected"),
        "criterion": est.get("criterion"),
    }
