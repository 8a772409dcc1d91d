"""Fitting and testing an `Attributor` on prepared features: the steps every run, study and
comparison shares. Known-class train data fits, known-class validation data selects and
calibrates, test data is only scored (`test_attributor`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..features import LayerRows, LayerSpec, base_layers
from ..features.store import StoreRows
from ..heads.selection import balanced_accuracy
from ..metrics import evaluate_open_set
from ..model import Attributor, Decisions
from .prepare import Prepared, RunConfig


def new_attributor(cfg: RunConfig, head: str | None = None, score: str | None = None) -> Attributor:
    return Attributor(
        backbone=cfg.backbone,
        layers=cfg.layers,
        head=head or cfg.head,
        score=score if head else (score or cfg.score),
        target_tpr=cfg.target_tpr,
        combine_layers=cfg.combine_layers,
        weights=cfg.weights,
        seed=cfg.seed,
        device=cfg.device,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        progress=cfg.progress,
        runtime=cfg.runtime,
        engine=cfg.engine,
        address=cfg.address,
    )


def role_features(p: Prepared, role: str) -> Mapping[str, np.ndarray]:
    """{layer: features of a split role}: from the run's in-memory table, or, when selection
    runs on Ray, read from the store by each task."""
    if p.config.engine == "ray":
        hashes = [str(s.sha256) for s in getattr(p.split, role)]
        return StoreRows(p.store, hashes, base_layers(p.layers))
    return {l: p.features(role, LayerSpec((l,))) for l in base_layers(p.layers)}


def fit_prepared(
    p: Prepared,
    head: str | None = None,
    score: str | None = None,
    train_index: np.ndarray | None = None,
) -> Attributor:
    """An Attributor fitted on the prepared train/val features (optionally a train subset)."""
    att = new_attributor(p.config, head, score).use_backbone(p.backbone)
    X, y = role_features(p, "train"), p.features.labels("train")
    if train_index is not None:
        X, y = LayerRows(X, train_index), y[train_index]
    return att.fit_features(
        X,
        y,
        role_features(p, "val"),
        p.features.labels("val"),
        counts=p.split.counts(),
        problems=p.problems,
    )


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
    """Known-only figures on the stored validation features: closed-set balanced accuracy, and
    the share of validation images both correctly classified and accepted at the threshold."""
    X, y = att.calibration_
    d = att.decide(X)
    return {
        "val_balanced_accuracy": balanced_accuracy(y, d.closest),
        "val_ccr": float(np.mean((d.closest == y) & (d.label != "unknown"))),
    }
