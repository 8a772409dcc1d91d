"""`originprobe compare`: every head × every score it supports, on the same splits and features.

Each head is selected (layer and hyper-parameters) on known-class validation data exactly as in
`evaluate`; scores never influence selection. The table is sorted by test OSCR, best first.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from ..heads import HEADS
from ..report.results import fmt_params, markdown_table, write_json
from ..atomic import atomic_write_text
from .evaluate import run_selection, test_head
from .prepare import RunConfig, prepare


def compare(cfg: RunConfig, heads: Sequence[str], out_dir: str | Path) -> dict:
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        raise ValueError(f"unknown head(s) {unknown}; heads: {', '.join(sorted(HEADS))}")
    p = prepare(cfg)
    rows = []
    for name in heads:
        t = time.perf_counter()
        sel = run_selection(p, name)
        fit_s = time.perf_counter() - t
        for score in HEADS[name].supported_scores:
            m = test_head(p, sel, score, cfg.target_tpr)["metrics"]
            rows.append({
                "head": name, "score": score, "layer": sel.layer, "params": sel.params,
                "val_balanced_accuracy": max(r.val_balanced_accuracy for r in sel.rows),
                "accuracy": m["closed_set"]["accuracy"], "macro_f1": m["closed_set"]["macro_f1"],
                "auroc": m["open_set"]["auroc"], "oscr": m["open_set"]["oscr"],
                "ccr_at_fpr05": m["open_set"]["ccr_at_fpr05"],
                "tnr_at_tpr95": m["open_set"]["tnr_at_tpr95"],
                "open_set_accuracy": m["thresholded"]["open_set_accuracy"],
                "selection_s": round(fit_s, 2)})
    rows.sort(key=lambda r: -(r["oscr"] if r["oscr"] is not None else -1))
    results = {"title": f"compare on {cfg.title}", "compare": rows,
               "known_classes": list(p.split.known_classes),
               "unknown_classes": list(p.split.unknown_classes), "counts": p.split.counts(),
               "backbone": {k: v for k, v in p.backbone.describe().items() if k != "feature_dims"},
               "errors": len(p.problems)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from ..report.results import write_errors_csv
    write_json(out / "config.json", cfg.to_dict() | {"heads": list(heads)})
    write_errors_csv(out / "errors.csv", p.problems)
    atomic_write_text(out / "results.md", compare_markdown(results))
    write_json(out / "results.json", results)
    return results


def compare_markdown(res: dict) -> str:
    head = ["head", "score", "layer", "params", "val bal. acc", "accuracy", "macro-F1", "AUROC",
            "OSCR", "CCR@FPR5%", "TNR@TPR95%"]
    body = [[r["head"], r["score"], r["layer"], fmt_params(r["params"]),
             r["val_balanced_accuracy"], r["accuracy"], r["macro_f1"], r["auroc"], r["oscr"],
             r["ccr_at_fpr05"], r["tnr_at_tpr95"]] for r in res["compare"]]
    return (f"# originprobe: {res['title']}\n\nBackbone `{res['backbone']['name']}`. Known: "
            f"{', '.join(res['known_classes'])}. Unknown: {', '.join(res['unknown_classes'])}.\n"
            f"Every head chose its layer and hyper-parameters on known-class validation data; "
            f"rows sorted by test OSCR.\n\n" + markdown_table(head, body) + "\n")
