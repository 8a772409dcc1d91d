"""`originprobe predict` and `enroll` as library calls: attribute files and folders with a saved
model, write the requested outputs atomically, and return everything the caller shows.

Outputs that would replace a user's file are refused before any work unless `overwrite`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data import Problem
from ..errors import ConfigError, OutputExistsError
from ..fileio import check_model_dir
from ..model import Attribution, Attributor
from ..model.hub import is_hub_ref
from ..options import option
from ..report.analyst import write_report
from ..report.attributions import output_format, write_records
from ..runtime import resolve_device
from .prepare import collect_images


@dataclass
class PredictOutputs:
    """What `predict` writes and how it decides (each field is also its option)."""

    out: str | None = option(None, "write the attributions to FILE.csv or FILE.jsonl")
    report: str | None = option(
        None,
        "an analyst's offline page (FILE.html): thumbnails, "
        "verdicts, scores, evidence, with filters",
    )
    overwrite: bool = option(False, "replace existing --out and --report files")
    threshold: float | None = option(None, "reject threshold (default: the model's)")
    top_k: int | None = option(None, "classes shown per image (default: the model's, 3)")


@dataclass
class PredictRun:
    model: Attributor
    records: list[Attribution]  # attributed first, then skipped files
    note: str | None = None  # what evidence could not be read
    written: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[Attribution]:
        return [r for r in self.records if r.ok]

    @property
    def flagged(self) -> list[Attribution]:
        return [r for r in self.records if r.warning]


def check_outputs(out: str | None, report: str | None, overwrite: bool) -> None:
    for target in (out, report):
        if target and Path(target).exists() and not overwrite:
            raise OutputExistsError(f"{target}: exists; pass --overwrite to replace it")
    if out:
        output_format(out)
    if report and Path(report).suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--report {report}: name it FILE.html")


def predict_paths(
    model: str | Path,
    paths: Sequence[str],
    *,
    out: str | None = None,
    report: str | None = None,
    overwrite: bool = False,
    threshold: float | None = None,
    top_k: int | None = None,
    **runtime,
) -> PredictRun:
    """Attribute every image under `paths` (folders recursively, images recognised by content);
    `runtime`: Attributor.load's (device, batch_size, workers, provenance, c2pa_trust, ...)."""
    check_outputs(out, report, overwrite)
    resolve_device(runtime.get("device"))
    att = Attributor.load(model, **runtime)
    if threshold is not None:
        att = att.with_threshold(threshold)
    reader = att.evidence_reader()
    samples, problems = collect_images(paths)
    records = att.predict([s.path for s in samples], top_k=top_k) if samples else []
    records += [Attribution(source=p.path, label=None, error=p.reason) for p in problems]
    run = PredictRun(att, records, reader.note if reader is not None else None)
    if out:
        write_records(out, records)
        run.written.append(str(out))
    if report:
        write_report(report, records, att.describe(), run.note)
        run.written.append(str(report))
    return run


def enroll_paths(
    model: str | Path, label: str, paths: Sequence[str], out: str | Path | None = None,
    **runtime,
) -> tuple[Attributor, int, list[Problem]]:  # fmt: skip
    """Add `label` to the saved model from the images under `paths`; saved in place, or as a new
    bundle in `out` (required for a model from the Hub: its cached copy is never changed)."""
    if not label:
        raise ConfigError("--label is required: the name of the new class")
    if out is None and is_hub_ref(model):
        raise ConfigError(
            f"{model} comes from the Hub: give --out DIR for the new local bundle (the cached "
            "copy is never changed)"
        )
    target = check_model_dir(out) if out is not None else Path(model)
    att = Attributor.load(model, **runtime)
    samples, problems = collect_images(paths)
    n, errors = att.enroll(label, [s.path for s in samples])
    att.save(target)
    return att, n, problems + errors
