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
from ..report.html import build_report
from ..report.results import write_json
from ..report.summary import (
    DISCOVERY_KEYS,
    SUMMARY_KEYS,
    discovery_figures,
    summary_markdown,
    summary_value,
)
from .evaluate import evaluate_one
from .prepare import RunConfig


def planned_runs(cfg: RunConfig) -> list[tuple[str, RunConfig]]:
    from ..protocols import expand

    protocols = expand(cfg.protocol) if cfg.protocol else [None]
    seeds = list(cfg.seeds) if cfg.seeds else [cfg.seed]
    runs = []
    for p in protocols:
        for s in seeds:
            name = (
                "-".join(
                    x
                    for x in (
                        (p or "").split(":")[-1] if p else "",
                        f"seed{s}" if len(seeds) > 1 else "",
                    )
                    if x
                )
                or "run"
            )
            runs.append((name, replace(cfg, protocol=p, seed=s, seeds=None)))
    return runs


def _mean(vals) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def training_seconds(res: dict) -> float | None:
    """Seconds spent training learned networks in a run (raw and JPEG twin), None when none
    trained (no learned member, or every network came from the cache)."""
    parts = [res.get("training") or {}, (res.get("jpeg_aligned") or {}).get("training") or {}]
    secs = [t.get("total_seconds") for p in parts for t in p.values() if not t.get("cached")]
    return round(sum(secs), 1) if secs else None


def evaluate_many(cfg: RunConfig, out_dir: str | Path) -> dict:
    out = Path(out_dir)
    rows = []
    for name, sub in planned_runs(cfg):
        res = evaluate_one(sub, out / name)
        build_report(out / name)
        rows.append(
            {
                "name": name,
                "protocol": sub.protocol,
                "seed": sub.seed,
                "layer": res["selected"]["layer"],
                "params": res["selected"]["params"],
                "errors": res["errors"],
                "warnings": res.get("warnings", 0),
                **{label: summary_value(res, path) for label, path in SUMMARY_KEYS},
                "auroc_ci95": res["open_set"].get("auroc_ci95"),
                "oscr_ci95": res["open_set"].get("oscr_ci95"),
                "jpeg_aligned": {
                    label: summary_value(res["jpeg_aligned"], path) for label, path in SUMMARY_KEYS
                }
                if "jpeg_aligned" in res
                else None,
                "training_s": training_seconds(res),
                "discovery": discovery_figures(res.get("discovery")),
            }
        )
    mean, std = {}, {}
    for label, _ in SUMMARY_KEYS:
        vals = [r[label] for r in rows if r[label] is not None]
        mean[label] = float(np.mean(vals)) if vals else None
        std[label] = float(np.std(vals)) if vals else None
    aligned = [r["jpeg_aligned"] for r in rows if r["jpeg_aligned"]]
    summary = {
        "kind": "summary",
        "title": f"{cfg.protocol or cfg.title}" + (f", seeds {cfg.seeds}" if cfg.seeds else ""),
        "runs": rows,
        "mean": mean,
        "std": std,
        "config": cfg.to_dict(),
        "errors": sum(r["errors"] for r in rows),
        "warnings": sum(r["warnings"] for r in rows),
    }
    if aligned:
        summary["jpeg_aligned"] = {
            "quality": cfg.jpeg_align,
            "mean": {l: _mean([a[l] for a in aligned]) for l, _ in SUMMARY_KEYS},
        }
    found = [r["discovery"] for r in rows if r.get("discovery")]
    if found:
        summary["discovery"] = {"mean": {k: _mean([f[k] for f in found]) for k in DISCOVERY_KEYS}}
    write_json(out / "config.json", cfg.to_dict())
    atomic_write_text(out / "results.md", summary_markdown(summary))
    write_json(out / "results.json", summary)
    return summary
