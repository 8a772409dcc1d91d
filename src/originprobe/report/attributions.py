"""How attributions are shown and saved: one text line per image, JSON, CSV or JSON Lines.

Formatting only: every value comes from `Attribution` records made by the `Attributor`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write_text

CSV_FIELDS = [
    "source",
    "label",
    "closest",
    "score",
    "threshold",
    "top_labels",
    "top_probabilities",
    "warning",
    "error",
    "evidence_named",
    "evidence_agreement",
    "evidence_signed",
    "evidence_c2pa",
    "evidence_summary",
]


def text_line(rec, score_name: str) -> str:
    if rec.error:
        return f"{rec.source}\tskipped: {rec.error}"
    verdict = rec.label if rec.label != "unknown" else f"unknown (closest: {rec.closest})"
    top = ", ".join(f"{l} {p:.3f}" for l, p in rec.probabilities)
    line = (
        f"{rec.source}\t{verdict}\t{score_name}={rec.score:.4g} "
        f"(threshold {rec.threshold:.4g})\ttop-{len(rec.probabilities)}: {top}"
    )
    line += f"\twarning: {rec.warning}" if rec.warning else ""
    ev = rec.evidence
    if ev is not None and (not ev.empty or ev.warnings):
        line += f"\tevidence: {ev.summary()}"
    return line


def csv_row(rec) -> dict:
    return {
        "source": rec.source,
        "label": rec.label or "",
        "closest": rec.closest or "",
        "score": "" if rec.score is None else f"{rec.score:.6g}",
        "threshold": "" if rec.threshold is None else f"{rec.threshold:.6g}",
        "top_labels": ";".join(l for l, _ in rec.probabilities),
        "top_probabilities": ";".join(f"{p:.6g}" for _, p in rec.probabilities),
        "warning": rec.warning or "",
        "error": rec.error or "",
        **_evidence_columns(rec.evidence),
    }


def _evidence_columns(ev) -> dict:
    if ev is None:
        return {k: "" for k in CSV_FIELDS if k.startswith("evidence_")}
    return {
        "evidence_named": ev.named or "",
        "evidence_agreement": ev.agreement,
        "evidence_signed": "yes" if ev.signed else "no",
        "evidence_c2pa": ev.c2pa.validation if ev.c2pa is not None else "",
        "evidence_summary": ev.summary(),
    }


def render(records: Sequence, fmt: str) -> str:
    """All records as one CSV or JSON Lines document."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(csv_row(r) for r in records)
        return buf.getvalue()
    if fmt == "jsonl":
        return "".join(json.dumps(r.to_dict()) + "\n" for r in records)
    raise ConfigError(f"unknown output format {fmt!r} (csv or jsonl)")


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ConfigError(f"--out {path}: name it FILE.csv or FILE.jsonl")


def write_records(path: str | Path, records: Iterable) -> None:
    """Write atomically: an interrupted run never leaves half a file where one was."""
    atomic_write_text(path, render(list(records), output_format(path)))
