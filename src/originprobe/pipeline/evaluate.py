"""`originprobe evaluate`: fit an `Attributor` on known-class data, test it open-set.

Order of use of the data, which the code enforces:
train (known) → fit; validation (known) → choose layer and hyper-parameters, calibrate the reject
threshold; test (known + unknown) → metrics only, touched once after every choice is fixed.
Every decision on test data is the Attributor's (`Attributor.decide`).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from ..data.perturb import jpeg_align
from ..discovery import MIN_CLUSTER_SIZE
from ..fileio import atomic_write_text, check_run_dir
from ..metrics import open_set_figures
from ..model import Attributor, Decisions, OpenSetClassifier
from ..model.card import test_figures
from ..openset import calibrate_threshold
from ..report import write_run
from ..report.results import software_versions
from .fitting import fit_prepared, test_attributor
from .prepare import Prepared, RunConfig, prepare
from .studies import discovery_study, low_data, robustness, write_embedding


def candidate_sweep(p: Prepared, att: Attributor) -> list[dict]:
    """Every candidate the selection compared (layer set, parameters, score) with its known-only
    estimate, and, for reading only, its test figures (the choice was made on the estimate)."""
    y_test = p.table.labels("test")
    is_known = np.isin(y_test, p.split.known_classes)
    rows = []
    for spec, scored in att.selection_.candidates.items():
        X = p.table("test", spec)
        for c in scored:
            test = {"test_accuracy": None, "test_auroc": None, "test_oscr": None}
            if c.refit is not None and X.shape[1] == c.refit.n_features_:
                clf = OpenSetClassifier.from_parts(
                    c.refit, c.score, calibrate_threshold(c.oof_scores, att.target_tpr),
                    att.classifier_.reference_ if spec == att.layer_ else _reference(c, p, spec),
                )  # fmt: skip
                d = clf.decide(X)
                fig = open_set_figures(d.score, is_known, d.closest == y_test) \
                    if (~is_known).any() else {"auroc": None, "oscr": None}  # fmt: skip
                test = {
                    "test_accuracy": float(np.mean(d.closest[is_known] == y_test[is_known]))
                    if is_known.any() else None,
                    "test_auroc": fig["auroc"],
                    "test_oscr": fig["oscr"],
                }  # fmt: skip
            rows.append({"layer": str(spec), "params": c.params, "score": c.score,
                         "chosen": spec == att.layer_ and c is att.selection_.chosen,
                         **c.estimate.to_dict(), **test})  # fmt: skip
    return rows


def operating_points(att: Attributor, d: Decisions, p: Prepared) -> list[dict]:
    """At other target TPRs (thresholds from the same out-of-fold scores): the share of known
    test images kept and of unseen generators' images rejected, beside the estimate of the
    latter. For reading; the model's own threshold is `target_tpr`'s."""
    from ..model.crossval import OPERATING_TPRS

    y = p.table.labels("test")
    known = np.isin(y, p.split.known_classes)
    est = (att.selection_summary_.get("estimate") or {}).get("rejected_at") or {}
    rows = []
    for tpr in OPERATING_TPRS:
        thr = calibrate_threshold(att.classifier_.oof_scores_, tpr)
        rows.append({
            "target_tpr": tpr,
            "threshold": thr,
            "known_kept": float(np.mean(d.score[known] >= thr)) if known.any() else None,
            "unseen_rejected": float(np.mean(d.score[~known] < thr)) if (~known).any() else None,
            "estimated_rejected": est.get(f"{tpr:.2f}"),
        })  # fmt: skip
    return rows


def _reference(c, p: Prepared, spec) -> tuple[np.ndarray, np.ndarray]:
    """Reference rows for a candidate's feature-fitted score (knn, mahalanobis, vim)."""
    return p.table("dev", spec), p.table.labels("dev")


def write_predictions(path: Path, p: Prepared, d: Decisions) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "sha256", "label", "predicted", "score", "decision"])
    for s, closest, sc, decided in zip(p.table.samples["test"], d.closest, d.score, d.label):
        w.writerow(
            [
                str(s.path).encode("utf-8", "backslashreplace").decode(),
                s.sha256,
                s.label,
                closest,
                f"{sc:.6g}",
                decided,
            ]
        )
    atomic_write_text(path, buf.getvalue())


def evaluate_prepared(p: Prepared, cfg: RunConfig) -> tuple[dict, Attributor, Decisions]:
    t0 = time.perf_counter()
    att = fit_prepared(p)
    fit_s = time.perf_counter() - t0
    metrics, d = test_attributor(
        att,
        p.table("test", att.layer_),
        p.table.labels("test"),
        p.split.known_classes,
        bootstrap=1000,
        seed=cfg.seed,
    )
    sel = att.selection_summary_
    results = {
        **metrics,
        "selected": {
            "head": att.head,
            "score": att.score_name_,
            "layer": str(att.layer_),
            "params": sel["params"],
            "C": sel["params"].get("C"),
            "criterion": sel["criterion"],
            "folds": sel["folds"],
            "threshold": float(att.threshold_),
            "target_tpr": cfg.target_tpr,
        },
        # the known-only estimate that chose, beside the test figures it predicts
        "estimate": sel["estimate"],
        "known_classes": list(p.split.known_classes),
        "unknown_classes": list(p.split.unknown_classes),
        "counts": p.split.counts(),
        "candidates": candidate_sweep(p, att),
        "operating_points": operating_points(att, d, p),
        "selection_seconds": round(fit_s, 2),
        "selection_fits": sel["fits"],
    }
    return results, att, d


def evaluate_one(cfg: RunConfig, out_dir: str | Path, title: str = "") -> dict:
    out = check_run_dir(out_dir)
    sizes = [int(x) for x in cfg.low_data.split(",")] if cfg.low_data else []
    aligned = jpeg_align(cfg.jpeg_align) if cfg.jpeg_align else None
    t0 = time.perf_counter()
    p = prepare(cfg)
    t_extract = time.perf_counter() - t0
    core, att, d = evaluate_prepared(p, cfg)
    results = {
        "title": title or cfg.title,
        **core,
        "backbone": {k: v for k, v in p.backbone.describe().items() if k != "feature_dims"},
        "software": software_versions(p.backbone, p.extraction.runtime),
        "timing": {
            "extract_s": round(t_extract, 2),
            "selection_s": core.pop("selection_seconds"),
            "images_per_s": round(p.extraction.images_per_second, 1),
            "extracted": p.extraction.computed,
            "cached": p.extraction.cached,
        },
    }
    if p.training:
        results["training"] = p.training
    problems = list(p.problems)
    if aligned is not None:
        # a learned network is trained again on the aligned images: the twin must not keep
        # what the network learned from file formats
        pa = prepare(cfg, perturbation=aligned)
        aligned_core, _, _ = evaluate_prepared(pa, cfg)
        aligned_core.pop("selection_seconds", None)
        results["jpeg_aligned"] = {"quality": cfg.jpeg_align, **aligned_core}
        if pa.training:
            results["jpeg_aligned"]["training"] = pa.training
        seen = {(str(x.path), x.reason) for x in problems}
        problems += [x for x in pa.problems if (str(x.path), x.reason) not in seen]
    if cfg.robustness:
        results["robustness"] = robustness(p, att, cfg.robustness)
    if sizes:
        results["low_data"] = low_data(p, sizes, cfg.low_data_seeds)
    if cfg.discover:
        results["discovery"] = discovery_study(
            att, p.table("test", att.layer_), p.table.labels("test"), d,
            p.split.known_classes, MIN_CLUSTER_SIZE, cfg.seed,
            [str(s.path) for s in p.table.samples["test"]],
        )  # fmt: skip
    results["errors"] = len(problems)
    results["warnings"] = len(p.warnings)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.csv", p, d)
    write_embedding(out / "embedding.csv", p, att.layer_, cfg.seed)
    write_run(out, results, cfg.to_dict(), problems, p.warnings)
    if cfg.save_model:
        protocol, _, split = (cfg.protocol or "").partition(":")
        att.card_test_ = test_figures(results, protocol or cfg.data, split or "test")
        att.save(out / "model")
    return results
