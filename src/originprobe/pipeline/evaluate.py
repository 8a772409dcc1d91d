"""`originprobe evaluate`: select a head on known-class validation data, test it open-set.

Order of use of the data, which the code enforces:
train (known) → fit; validation (known) → choose layer and hyper-parameters, calibrate the reject
threshold; test (known + unknown) → metrics only, touched once after every choice is fixed.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from ..heads import HEADS, head_factory
from ..heads.selection import Selection, select_head
from ..metrics import auroc, evaluate_open_set, oscr
from ..openset import calibrate_threshold, check_supported, known_score, scores_from_decision
from ..report import write_run
from ..atomic import atomic_write_text
from .prepare import Prepared, RunConfig, prepare


def resolve_score(head_name: str, score: str | None) -> str:
    if head_name not in HEADS:
        raise ValueError(f"unknown head {head_name!r}; heads: {', '.join(sorted(HEADS))}")
    cls = HEADS[head_name]
    score = score or cls.default_score
    check_supported(cls, score)
    return score


def run_selection(p: Prepared, head_name: str) -> Selection:
    return select_head(head_factory(head_name, p.config.seed), p.features, p.layers,
                       p.features.labels("train"), p.features.labels("val"),
                       p.split.known_classes, combine=p.config.combine_layers)


def test_head(p: Prepared, sel: Selection, score: str, target_tpr: float) -> dict:
    head = sel.head
    threshold = calibrate_threshold(known_score(head, p.features("val", sel.layer), score),
                                    target_tpr)
    decision = head.decision_function(p.features("test", sel.layer))
    pred = head.classes_[np.argmax(decision, axis=1)]
    scores = scores_from_decision(score, decision)
    metrics = evaluate_open_set(p.features.labels("test"), pred, scores, p.split.known_classes,
                                threshold)
    return {"metrics": metrics, "pred": pred, "scores": scores, "threshold": threshold,
            "decision": decision}


def layer_sweep(p: Prepared, sel: Selection, head_name: str, score: str) -> list[dict]:
    """Best validation params of every layer, and what that layer would have given on test.

    Reported for reading only: the selected layer was fixed by validation before this runs."""
    rows = []
    y_test = p.features.labels("test")
    is_known = np.isin(y_test, p.split.known_classes)
    for layer, row in sel.best_per_layer().items():
        if layer == sel.layer and row.params == sel.params:
            head = sel.head
        else:
            head = head_factory(head_name, p.config.seed)(**row.params).fit(p.features("train", layer),
                                                        p.features.labels("train"))
        d = head.decision_function(p.features("test", layer))
        pred = head.classes_[np.argmax(d, axis=1)]
        s = scores_from_decision(score, d)
        rows.append({"layer": layer, "params": row.params,
                     "val_balanced_accuracy": row.val_balanced_accuracy,
                     "test_accuracy": float(np.mean(pred[is_known] == y_test[is_known]))
                     if is_known.any() else None,
                     "test_auroc": auroc(s, is_known) if (~is_known).any() else None,
                     "test_oscr": oscr(s, is_known, pred == y_test) if (~is_known).any() else None})
    return rows


def write_predictions(path: Path, p: Prepared, tested: dict) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "sha256", "label", "predicted", "score", "decision"])
    for s, pr, sc in zip(p.split.test, tested["pred"], tested["scores"]):
        decided = pr if sc >= tested["threshold"] else "unknown"
        w.writerow([str(s.path).encode("utf-8", "backslashreplace").decode(), s.sha256, s.label,
                    pr, f"{sc:.6g}", decided])
    atomic_write_text(path, buf.getvalue())


def _evaluate_prepared(p: Prepared, cfg: RunConfig, score: str) -> tuple[dict, Selection, dict]:
    sel = run_selection(p, cfg.head)
    tested = test_head(p, sel, score, cfg.target_tpr)
    results = {
        **tested["metrics"],
        "selected": {"head": cfg.head, "score": score, "layer": sel.layer, "params": sel.params,
                     "C": sel.params.get("C"), "criterion": "validation balanced accuracy",
                     "threshold": tested["threshold"], "target_tpr": cfg.target_tpr},
        "known_classes": list(p.split.known_classes),
        "unknown_classes": list(p.split.unknown_classes),
        "counts": p.split.counts(),
        "layer_sweep": layer_sweep(p, sel, cfg.head, score),
    }
    return results, sel, tested


def evaluate(cfg: RunConfig, out_dir: str | Path, title: str = "") -> dict:
    from ..data.perturb import jpeg_align, parse_levels
    from .studies import low_data, robustness, write_embedding
    score = resolve_score(cfg.head, cfg.score)  # fail before any extraction
    if cfg.robustness:
        parse_levels(cfg.robustness)
    sizes = [int(x) for x in cfg.low_data.split(",")] if cfg.low_data else []
    aligned = jpeg_align(cfg.jpeg_align) if cfg.jpeg_align else None
    t0 = time.perf_counter()
    p = prepare(cfg)
    t_extract = time.perf_counter() - t0
    core, sel, tested = _evaluate_prepared(p, cfg, score)
    results = {
        "title": title or cfg.title,
        **core,
        "backbone": {k: v for k, v in p.backbone.describe().items() if k != "feature_dims"},
        "timing": {"extract_s": round(t_extract, 2), "selection_s": round(sel.seconds, 2),
                   "images_per_s": round(p.extraction.images_per_second, 1),
                   "extracted": p.extraction.computed, "cached": p.extraction.cached},
    }
    problems = list(p.problems)
    if aligned is not None:
        pa = prepare(cfg, perturbation=aligned, backbone=p.backbone)
        aligned_core, _, _ = _evaluate_prepared(pa, cfg, score)
        results["jpeg_aligned"] = {"quality": cfg.jpeg_align, **aligned_core}
        seen = {(str(x.path), x.reason) for x in problems}
        problems += [x for x in pa.problems if (str(x.path), x.reason) not in seen]
    if cfg.robustness:
        results["robustness"] = robustness(p, sel, score, cfg.robustness)
    if sizes:
        results["low_data"] = low_data(p, cfg.head, score, sizes, cfg.low_data_seeds)
    results["errors"] = len(problems)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.csv", p, tested)
    write_embedding(out / "embedding.csv", p, sel.layer, cfg.seed)
    write_run(out, results, cfg.to_dict(), problems)
    return results
