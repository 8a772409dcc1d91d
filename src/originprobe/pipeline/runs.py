"""Which runs a configuration asks for, and running them: one `evaluate_one`, or, for a protocol
family (`--protocol realgen`) or several seeds, every run and their summary (`multirun`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..fileio import check_run_dir, written_files
from ..protocols import expand
from ..report.html import build_report
from .evaluate import evaluate_one
from .multirun import evaluate_many, planned_runs
from .prepare import RunConfig


def evaluate(cfg: RunConfig, out_dir: str | Path, title: str = "", report: bool = True) -> dict:
    """One run; or, for a protocol family or several seeds, every run and their summary. With
    `report`, RUN_DIR/report.html too. The result lists the files written (`written`)."""
    check_run_dir(out_dir)
    if len(planned_runs(cfg)) > 1:
        res = evaluate_many(cfg, out_dir)
    else:
        if cfg.protocol:
            cfg = replace(cfg, protocol=expand(cfg.protocol)[0])
        if cfg.seeds:
            cfg = replace(cfg, seed=cfg.seeds[0], seeds=None)
        res = evaluate_one(cfg, out_dir, title)
    if report:
        build_report(out_dir)
    res["written"] = written_files(out_dir)
    return res
