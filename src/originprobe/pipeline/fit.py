"""`originprobe fit`: train an attributor on known classes and save it as a bundle.

Known classes are split train/validation (stratified, seeded). Layer and hyper-parameters are
chosen on validation, the head is fitted on train, and the reject threshold is calibrated on the
validation scores for the target TPR (default: keep 95% of known validation samples).
"""
from __future__ import annotations

from pathlib import Path

from ..openset import calibrate_threshold, known_score
from .bundle import Bundle, save_bundle
from .evaluate import resolve_score, run_selection
from .prepare import RunConfig, prepare


def fit(cfg: RunConfig, out_dir: str | Path) -> Bundle:
    score = resolve_score(cfg.head, cfg.score)
    p = prepare(cfg, with_test=False)
    sel = run_selection(p, cfg.head)
    threshold = calibrate_threshold(known_score(sel.head, p.features("val", sel.layer), score),
                                    cfg.target_tpr)
    b = p.backbone
    bundle = Bundle(
        head=sel.head,
        backbone={"name": b.name, "weights_id": b.weights_id, "cache_key": b.cache_key(),
                  "preprocessing": b.preprocessing.to_dict()},
        layer=sel.layer, score=score, threshold=threshold, target_tpr=cfg.target_tpr,
        known_classes=list(p.split.known_classes),
        extra={
            "selection": {"params": sel.params, "criterion": "validation balanced accuracy",
                          "val_balanced_accuracy": max(r.val_balanced_accuracy for r in sel.rows)},
            "counts": p.split.counts(),
            "training_set": {"cache": str(Path(cfg.cache).resolve()),
                             "hashes": [s.sha256 for s in p.split.train],
                             "labels": [s.label for s in p.split.train]},
            "config": cfg.to_dict(),
            "skipped_files": len(p.problems),
        },
    )
    save_bundle(bundle, out_dir)
    return bundle
