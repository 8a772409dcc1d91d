"""`originprobe compare`: every head × every score it supports, on the same splits and features.

Each head is fitted (layer and hyper-parameters chosen on known-class validation data) exactly as
in `evaluate`; each of its scores is then fitted on the training features and its threshold
calibrated on validation. Rows are ranked by a known-only validation figure — the share of
validation images both correctly classified and accepted at the threshold (`val_ccr`), then
validation balanced accuracy — never by a test figure; test figures are shown for reading.
Configurations that tie on the ranking figures are marked as ties.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..fileio import atomic_write_text, check_run_dir, written_files
from ..heads import HEADS
from ..registry import checked
from ..report.html import build_report
from ..report.results import fmt_params, markdown_table, write_errors_csv, write_json
from .fitting import fit_prepared, test_attributor, validation_figures
from .prepare import RunConfig, prepare

RANK_KEYS = ("val_ccr", "val_balanced_accuracy")


def compare(cfg: RunConfig, heads: Sequence[str] | None, out_dir: str | Path) -> dict:
    """Every head (default: all) × every score it supports, on the same prepared splits; writes
    the run directory and its report. The result lists the files written (`written`)."""
    heads = HEADS.names() if heads is None else [h.strip() for h in heads if h.strip()]
    checked(HEADS, list(heads))
    out = check_run_dir(out_dir)
    p = prepare(cfg)
    rows = []
    for name in dict.fromkeys(heads):
        t = time.perf_counter()
        att = fit_prepared(p, head=name)
        fit_s = time.perf_counter() - t
        for score in HEADS.get(name).supported_scores:
            variant = att if score == att.score_name_ else att.with_score(score)
            m, _ = test_attributor(
                variant,
                p.features("test", variant.layer_),
                p.features.labels("test"),
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
        "val CCR",
        "val bal. acc",
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
            r["val_ccr"],
            r["val_balanced_accuracy"],
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
        "Every head chose its layer and hyper-parameters on known-class validation data. "
        "Rows are ranked by validation figures only (val CCR: validation images correctly "
        "classified and accepted at the threshold; then validation balanced accuracy); test "
        f"figures are shown, never used to rank.{note}\n\n" + markdown_table(head, body) + "\n"
    )
