"""`originprobe evaluate`: fit an `Attributor` on known-class data, test it open-set.

Order of use of the data, which the code enforces:
train (known) → fit; validation (known) → choose layer and hyper-parameters, calibrate the reject
threshold; test (known + unknown) → metrics only, touched once after every choice is fixed.
Every decision on test data is the Attributor's (`Attributor.decide`).
"""
from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text
from ..features import LayerSpec, base_layers
from ..heads import HEADS
from ..metrics import evaluate_open_set, open_set_figures
from ..model import Attributor, Decisions
from ..openset import check_supported
from ..report import write_run
from .prepare import Prepared, RunConfig, prepare


def resolve_score(head_name: str, score: str | None) -> str:
    cls = HEADS.get(head_name)
    score = score or cls.default_score
    check_supported(cls, score)
    return score


def new_attributor(cfg: RunConfig, head: str | None = None, score: str | None = None) -> Attributor:
    return Attributor(backbone=cfg.backbone, layers=cfg.layers, head=head or cfg.head,
                      score=score if head else (score or cfg.score),
                      target_tpr=cfg.target_tpr, combine_layers=cfg.combine_layers,
                      weights=cfg.weights, seed=cfg.seed, device=cfg.device,
                      batch_size=cfg.batch_size, workers=cfg.workers, progress=cfg.progress,
                      runtime=cfg.runtime)


def role_features(p: Prepared, role: str) -> dict[str, np.ndarray]:
    return {l: p.features(role, LayerSpec((l,))) for l in base_layers(p.layers)}


def fit_prepared(p: Prepared, head: str | None = None, score: str | None = None,
                 train_index: np.ndarray | None = None) -> Attributor:
    """An Attributor fitted on the prepared train/val features (optionally a train subset)."""
    att = new_attributor(p.config, head, score).use_backbone(p.backbone)
    X, y = role_features(p, "train"), p.features.labels("train")
    if train_index is not None:
        X, y = {l: a[train_index] for l, a in X.items()}, y[train_index]
    att.counts_ = p.split.counts()
    return att.fit_features(X, y, role_features(p, "val"), p.features.labels("val"))


def test_attributor(att: Attributor, X: np.ndarray, y: np.ndarray, known,
                    bootstrap: int = 0, seed: int = 0) -> tuple[dict, Decisions]:
    d = att.decide(X)
    m = evaluate_open_set(y, d.closest, d.score, known, d.label, d.threshold)
    if bootstrap:
        m["open_set"] |= bootstrap_ci(d.score, np.isin(y, list(known)), d.closest == y,
                                      bootstrap, seed)
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
    return {"auroc_ci95": [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))],
            "oscr_ci95": [float(np.percentile(o, 2.5)), float(np.percentile(o, 97.5))],
            "bootstrap_resamples": n}


def validation_figures(att: Attributor) -> dict:
    """Known-only figures on the stored validation features: closed-set balanced accuracy, and
    the share of validation images both correctly classified and accepted at the threshold."""
    X, y = att.calibration_
    d = att.decide(X)
    recalls = [np.mean(d.closest[y == c] == c) for c in np.unique(y)]
    return {"val_balanced_accuracy": float(np.mean(recalls)),
            "val_ccr": float(np.mean((d.closest == y) & (d.label != "unknown")))}


def layer_sweep(p: Prepared, att: Attributor) -> list[dict]:
    """Every swept layer with its best validation parameters: its test figures (for reading
    only; the layer was chosen on validation)."""
    y_test = p.features.labels("test")
    is_known = np.isin(y_test, p.split.known_classes)
    rows = []
    y_tr, y_va = p.features.labels("train"), p.features.labels("val")
    for layer, row in att.selection_.best_per_layer().items():
        head = att.selection_.best_heads[layer]
        if layer == att.layer_:
            variant = att
        else:
            variant = att.with_head(layer, head, p.features("train", layer), y_tr,
                                    p.features("val", layer), y_va)
        d = variant.decide(p.features("test", layer))
        fig = open_set_figures(d.score, is_known, d.closest == y_test) if (~is_known).any() \
            else {"auroc": None, "oscr": None}
        rows.append({"layer": str(layer), "params": row.params,
                     "val_balanced_accuracy": row.val_balanced_accuracy,
                     "test_accuracy": float(np.mean(d.closest[is_known] == y_test[is_known]))
                     if is_known.any() else None,
                     "test_auroc": fig["auroc"], "test_oscr": fig["oscr"]})
    return rows


def write_predictions(path: Path, p: Prepared, d: Decisions) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "sha256", "label", "predicted", "score", "decision"])
    for s, closest, sc, decided in zip(p.split.test, d.closest, d.score, d.label):
        w.writerow([str(s.path).encode("utf-8", "backslashreplace").decode(), s.sha256, s.label,
                    closest, f"{sc:.6g}", decided])
    atomic_write_text(path, buf.getvalue())


def evaluate_prepared(p: Prepared, cfg: RunConfig) -> tuple[dict, Attributor, Decisions]:
    t0 = time.perf_counter()
    att = fit_prepared(p)
    fit_s = time.perf_counter() - t0
    metrics, d = test_attributor(att, p.features("test", att.layer_), p.features.labels("test"),
                                 p.split.known_classes, bootstrap=1000, seed=cfg.seed)
    sel = att.selection_summary_
    results = {
        **metrics,
        "selected": {"head": att.head, "score": att.score_name_, "layer": str(att.layer_),
                     "params": sel["params"], "C": sel["params"].get("C"),
                     "criterion": sel["criterion"],
                     "val_balanced_accuracy": sel["val_balanced_accuracy"],
                     "threshold": float(att.threshold_), "target_tpr": cfg.target_tpr},
        "known_classes": list(p.split.known_classes),
        "unknown_classes": list(p.split.unknown_classes),
        "counts": p.split.counts(),
        "layer_sweep": layer_sweep(p, att),
        "selection_seconds": round(fit_s, 2), "selection_fits": sel["fits"],
    }
    return results, att, d


def check_out_dir(out: str | Path) -> Path:
    """A run directory that may be written: new, empty, or an earlier run (never a file);
    checked before any work, so that a long run does not fail at its end."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not ((out / "results.json").exists() or
                                                    (out / "config.json").exists()):
        raise FileExistsError(f"{out}: directory is not empty and is not an originprobe run; "
                              "refusing to write into it")
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{out}: cannot write there ({parent} is not a writable folder)")
    return out


def evaluate(cfg: RunConfig, out_dir: str | Path, title: str = "") -> dict:
    """One run; or, for a protocol family or several seeds, every run and their summary."""
    from .multirun import evaluate_many, planned_runs
    check_out_dir(out_dir)
    if len(planned_runs(cfg)) > 1:
        return evaluate_many(cfg, out_dir)
    if cfg.protocol:
        from ..protocols import expand
        cfg = replace(cfg, protocol=expand(cfg.protocol)[0])
    if cfg.seeds:
        cfg = replace(cfg, seed=cfg.seeds[0], seeds=None)
    return evaluate_one(cfg, out_dir, title)


def evaluate_one(cfg: RunConfig, out_dir: str | Path, title: str = "") -> dict:
    from ..data.perturb import jpeg_align, parse_levels
    from .studies import low_data, robustness, write_embedding
    out = check_out_dir(out_dir)
    resolve_score(cfg.head, cfg.score)  # fail before any extraction
    if cfg.robustness:
        parse_levels(cfg.robustness)
    sizes = [int(x) for x in cfg.low_data.split(",")] if cfg.low_data else []
    aligned = jpeg_align(cfg.jpeg_align) if cfg.jpeg_align else None
    t0 = time.perf_counter()
    p = prepare(cfg)
    t_extract = time.perf_counter() - t0
    core, att, d = evaluate_prepared(p, cfg)
    from ..report.results import provenance
    results = {
        "title": title or cfg.title,
        **core,
        "backbone": {k: v for k, v in p.backbone.describe().items() if k != "feature_dims"},
        "provenance": provenance(p.backbone, p.extraction.runtime),
        "timing": {"extract_s": round(t_extract, 2), "selection_s": core.pop("selection_seconds"),
                   "images_per_s": round(p.extraction.images_per_second, 1),
                   "extracted": p.extraction.computed, "cached": p.extraction.cached},
    }
    problems = list(p.problems)
    if aligned is not None:
        pa = prepare(cfg, perturbation=aligned, backbone=p.backbone)
        aligned_core, _, _ = evaluate_prepared(pa, cfg)
        aligned_core.pop("selection_seconds", None)
        results["jpeg_aligned"] = {"quality": cfg.jpeg_align, **aligned_core}
        seen = {(str(x.path), x.reason) for x in problems}
        problems += [x for x in pa.problems if (str(x.path), x.reason) not in seen]
    if cfg.robustness:
        results["robustness"] = robustness(p, att, cfg.robustness)
    if sizes:
        results["low_data"] = low_data(p, sizes, cfg.low_data_seeds)
    results["errors"] = len(problems)
    results["warnings"] = len(p.warnings)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.csv", p, d)
    write_embedding(out / "embedding.csv", p, att.layer_, cfg.seed)
    write_run(out, results, cfg.to_dict(), problems, p.warnings)
    return results
