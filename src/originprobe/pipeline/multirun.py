"""Several evaluations as one: every split of a protocol family (`--protocol realgen`) and/or
several seeds (`--seeds 0,1,2`), each a full run directory, summarised as mean ± std.

Features are extracted once: every run reads the same feature cache. Nothing is chosen across
runs; each run selects on its own known-class validation data.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text
from ..report.results import markdown_table, write_json
from .prepare import RunConfig

#: the figures a summary averages: (label, path in results.json)
SUMMARY_KEYS = [
    ("val bal. acc.", ("selected", "val_balanced_accuracy")),
    ("accuracy", ("closed_set", "accuracy")), ("macro-F1", ("closed_set", "macro_f1")),
    ("AUROC", ("open_set", "auroc")), ("OSCR", ("open_set", "oscr")),
    ("AUPR-in", ("open_set", "aupr_in")), ("AUPR-out", ("open_set", "aupr_out")),
    ("FPR@95", ("open_set", "fpr_at_tpr95")), ("CCR@5%", ("open_set", "ccr_at_fpr05")),
    ("open-set acc.", ("thresholded", "open_set_accuracy")),
]


def planned_runs(cfg: RunConfig) -> list[tuple[str, RunConfig]]:
    from ..protocols import expand
    protocols = expand(cfg.protocol) if cfg.protocol else [None]
    seeds = list(cfg.seeds) if cfg.seeds else [cfg.seed]
    runs = []
    for p in protocols:
        for s in seeds:
            name = "-".join(x for x in ((p or "").split(":")[-1] if p else "",
                                        f"seed{s}" if len(seeds) > 1 else "") if x) or "run"
            runs.append((name, replace(cfg, protocol=p, seed=s, seeds=None)))
    return runs


def _get(res: dict, path: tuple[str, str]):
    v = res.get(path[0]) or {}
    return v.get(path[1])


def evaluate_many(cfg: RunConfig, out_dir: str | Path) -> dict:
    from .evaluate import evaluate
    out = Path(out_dir)
    rows = []
    for name, sub in planned_runs(cfg):
        res = evaluate(sub, out / name)
        from ..report.html import build_report
        build_report(out / name)
        rows.append({"name": name, "protocol": sub.protocol, "seed": sub.seed,
                     "layer": res["selected"]["layer"], "params": res["selected"]["params"],
                     "errors": res["errors"], "warnings": res.get("warnings", 0),
                     **{label: _get(res, path) for label, path in SUMMARY_KEYS},
                     "auroc_ci95": res["open_set"].get("auroc_ci95"),
                     "oscr_ci95": res["open_set"].get("oscr_ci95")})
    mean, std = {}, {}
    for label, _ in SUMMARY_KEYS:
        vals = [r[label] for r in rows if r[label] is not None]
        mean[label] = float(np.mean(vals)) if vals else None
        std[label] = float(np.std(vals)) if vals else None
    summary = {"kind": "summary", "title": f"{cfg.protocol or cfg.title}"
                                            + (f", seeds {cfg.seeds}" if cfg.seeds else ""),
               "runs": rows, "mean": mean, "std": std, "config": cfg.to_dict(),
               "errors": sum(r["errors"] for r in rows),
               "warnings": sum(r["warnings"] for r in rows)}
    write_json(out / "config.json", cfg.to_dict())
    atomic_write_text(out / "results.md", summary_markdown(summary))
    write_json(out / "results.json", summary)
    return summary


def summary_markdown(s: dict) -> str:
    labels = [label for label, _ in SUMMARY_KEYS]
    body = [[r["name"], r["layer"]] + [r[l] for l in labels] for r in s["runs"]]
    body.append(["**mean ± std**", ""] + [
        "–" if s["mean"][l] is None else f"{s['mean'][l]:.3f} ± {s['std'][l]:.3f}"
        for l in labels])
    out = [f"# originprobe summary: {s['title']}", "",
           f"{len(s['runs'])} runs, each a full run directory (`<name>/results.md`, "
           "`<name>/report.html`); each selected its layer and parameters on its own "
           "known-class validation data.", "",
           markdown_table(["run", "layer"] + labels, body)]
    ci = [[r["name"], _ci(r["auroc_ci95"]), _ci(r["oscr_ci95"])] for r in s["runs"]]
    out += ["", "Bootstrap 95% intervals (test set resampled):", "",
            markdown_table(["run", "AUROC 95% CI", "OSCR 95% CI"], ci)]
    return "\n".join(out) + "\n"


def _ci(v) -> str:
    return "–" if not v else f"[{v[0]:.3f}, {v[1]:.3f}]"
