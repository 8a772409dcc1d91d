"""`originprobe compare`: every head × every score it supports, on the same splits and features.

Each (head, score) is fitted exactly as in `evaluate` with that head and score fixed: layers and
hyper-parameters chosen by cross-validation on the known-class training images, the threshold
from out-of-fold scores. Rows are ranked by the known-only criterion that `evaluate` chooses by
(the mean of cross-validated balanced accuracy and the leave-one-known-generator-out AUROC),
then the balanced accuracy — never by a test figure; test figures are shown for reading.
Configurations that tie on the ranking figures are marked as ties.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..fileio import atomic_write_text, check_run_dir, written_files
from ..heads import HEADS
from ..openset import supported_scores
from ..registry import checked
from ..report.html import build_report
from ..report.results import fmt_params, markdown_table, write_errors_csv, write_json
from .fitting import fit_prepared, test_attributor, validation_figures
from .prepare import RunConfig, prepare

RANK_KEYS = ("criterion", "val_balanced_accuracy")


def compare(cfg: RunConfig, heads: Sequence[str] | None, out_dir: str | Path) -> dict:
    """Every head (default: all) × every score it supports, on the same prepared splits; writes
    the run directory and its report. The result lists the files written (`written`)."""
    heads = HEADS.names() if heads is None else [h.strip() for h in heads if h.strip()]
    checked(HEADS, list(heads))
    out = check_run_dir(out_dir)
    p = prepare(cfg)
    rows = []
    for name in dict.fromkeys(heads):
        for score in supported_scores(HEADS.get(name)):
            t = time.perf_counter()
            variant = att = fit_prepared(p, head=name, score=score)
            fit_s = time.perf_counter() - t
            m, _ = test_attributor(
                variant,
                p.table("test", variant.layer_),
                p.table.labels("test"),
                p.split.known_classes,
            )
            o = m["open_set"]
            rows.append(
                {
                    "head": name,
                    "score": score,
                    "layer": str(variant.layer_),
                    "params": att.selection_summary_["params"],
                    **validation_figures(variant),
                    "accuracy": m["closed_set"]["accuracy"],
                    "macro_f1": m["closed_set"]["macro_f1"],
                    **{
                        k: o[k]
                        for k in (
                            "auroc",
                            "oscr",
                            "aupr_in",
                            "aupr_out",
                            "fpr_at_tpr95",
                            "ccr_at_fpr01",
                            "ccr_at_fpr05",
                            "ccr_at_fpr10",
                            "tnr_at_tpr95",
                        )
                    },
                    "open_set_accuracy": m["thresholded"]["open_set_accuracy"],
                    "selection_s": round(fit_s, 2),
                }
            )
    rank(rows)
    results = {
        "title": f"compare on {cfg.title}",
        "heads": list(dict.fromkeys(heads)),
        "compare": rows,
        "ranked_by": list(RANK_KEYS),
        "known_classes": list(p.split.known_classes),
        "unknown_classes": list(p.split.unknown_classes),
        "counts": p.split.counts(),
        "backbone": {k: v for k, v in p.backbone.describe().items() if k != "feature_dims"},
        "errors": len(p.problems),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    write_errors_csv(out / "errors.csv", p.problems)
    atomic_write_text(out / "results.md", compare_markdown(results))
    write_json(out / "results.json", results)
    build_report(out)
    results["written"] = written_files(out)
    return results


def rank(rows: list[dict]) -> None:
    """Sort by the validation figures, best first; give each row its rank, equal for ties."""

    def key(r):
        return tuple(round(r[k], 6) for k in RANK_KEYS)

    rows.sort(key=lambda r: tuple(-v for v in key(r)))
    prev, place = None, 0
    for i, r in enumerate(rows):
        if key(r) != prev:
            place, prev = i + 1, key(r)
        r["rank"] = place
    counts: dict[int, int] = {}
    for r in rows:
        counts[r["rank"]] = counts.get(r["rank"], 0) + 1
    for r in rows:
        r["tie"] = counts[r["rank"]] > 1


def compare_markdown(res: dict) -> str:
    head = [
        "rank",
        "head",
        "score",
        "layer",
        "params",
        "criterion",
        "est. bal. acc",
        "est. AUROC",
        "accuracy",
        "AUROC",
        "OSCR",
        "AUPR-in",
        "AUPR-out",
        "FPR@95",
        "CCR@1%",
        "CCR@5%",
        "CCR@10%",
    ]
    body = [
        [
            f"{r['rank']}{' (tie)' if r['tie'] else ''}",
            r["head"],
            r["score"],
            r["layer"],
            fmt_params(r["params"]),
            r["criterion"],
            r["val_balanced_accuracy"],
            r["est_auroc"],
            r["accuracy"],
            r["auroc"],
            r["oscr"],
            r["aupr_in"],
            r["aupr_out"],
            r["fpr_at_tpr95"],
            r["ccr_at_fpr01"],
            r["ccr_at_fpr05"],
            r["ccr_at_fpr10"],
        ]
        for r in res["compare"]
    ]
    ties = sorted({r["rank"] for r in res["compare"] if r["tie"]})
    note = (
        f" Ranks {', '.join(map(str, ties))} are ties: those configurations cannot be told "
        "apart on validation data."
        if ties
        else ""
    )
    return (
        f"# originprobe: {res['title']}\n\nBackbone `{res['backbone']['name']}`. Known: "
        f"{', '.join(res['known_classes'])}. Unknown: {', '.join(res['unknown_classes'])}.\n"
        "Every (head, score) chose its layers and hyper-parameters by cross-validation on the "
        "known-class training images. Rows are ranked by the known-only criterion (the mean of "
        "cross-validated balanced accuracy and the AUROC with each known generator withheld in "
        "turn; then the balanced accuracy); test figures are shown, never used to rank."
        f"{note}\n\n" + markdown_table(head, body) + "\n"
    )
