"""The tables of results, each defined once (`Table`: its columns) and rendered to Markdown
(results.md), HTML (report.html) and CSV (candidates.csv, ...).

A column is a label and how to read its value from a row (a results.json dict); renderers format
numbers the same way everywhere (3 decimals, "–" for missing). Formatting only: nothing here
computes a figure.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_params(params: dict) -> str:
    """Hyper-parameters for reading: floats to 3 significant digits ({"C": 0.0316})."""
    return json.dumps(
        {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in (params or {}).items()}
    )


@dataclass(frozen=True)
class Column:
    label: str
    get: Callable[[dict], Any]


def col(label: str, *path: str) -> Column:
    """A column reading `row[path[0]][path[1]]...` (None where a step is missing)."""

    def get(row: dict):
        cur: Any = row
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        return cur

    return Column(label, get)


@dataclass(frozen=True)
class Table:
    """Columns, and which rows are marked (the chosen candidate, the mean)."""

    columns: tuple[Column, ...]
    marked: Callable[[dict], bool] = lambda row: False

    def values(self, rows: Iterable[dict]) -> list[list[Any]]:
        return [[c.get(r) for c in self.columns] for r in rows]

    def markdown(self, rows: Sequence[dict]) -> str:
        return markdown_table([c.label for c in self.columns], self.values(rows))

    def html(self, rows: Sequence[dict]) -> str:
        return html_table([c.label for c in self.columns], self.values(rows),
                          [self.marked(r) for r in rows])  # fmt: skip

    def csv(self, rows: Sequence[dict]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([c.label for c in self.columns])
        for vals in self.values(rows):
            w.writerow(["" if v is None else json.dumps(v) if isinstance(v, dict) else v
                        for v in vals])  # fmt: skip
        return buf.getvalue()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(v) for v in r) + " |")
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Iterable[Sequence], marked=None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        cls = ' class="sel"' if marked is not None and marked[i] else ""
        out.append(
            f"<tr{cls}>"
            + "".join(
                f'<td class="num">{fmt(v)}</td>'
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                else f"<td>{html.escape(fmt(v))}</td>"
                for v in r
            )
            + "</tr>"
        )
    return "".join(out) + "</table>"


#: every candidate the selection compared: its known-only estimate, then its test figures
CANDIDATES = Table(
    (
        col("layer", "layer"),
        Column("params", lambda r: fmt_params(r.get("params"))),
        col("score", "score"),
        col("criterion", "criterion"),
        col("est. bal. acc.", "balanced_accuracy"),
        col("est. AUROC", "auroc"),
        col("est. OSCR", "oscr"),
        col("est. rejected", "rejected"),
        col("test acc.", "test_accuracy"),
        col("test AUROC", "test_auroc"),
        col("test OSCR", "test_oscr"),
        Column("", lambda r: "chosen" if r.get("chosen") else ""),
    ),
    marked=lambda r: bool(r.get("chosen")),
)

#: the known-only estimate beside the test figure it predicts
ESTIMATE_VS_TEST = Table(
    (
        col("figure", "figure"),
        col("known-only estimate", "estimate"),
        col("test", "test"),
    )
)


def estimate_rows(res: dict) -> list[dict]:
    est, os_, th = res.get("estimate") or {}, res.get("open_set") or {}, res.get("thresholded")
    return [
        {"figure": "balanced accuracy (closed set)", "estimate": est.get("balanced_accuracy"),
         "test": (res.get("closed_set") or {}).get("balanced_accuracy")},
        {"figure": "AUROC", "estimate": est.get("auroc"), "test": os_.get("auroc")},
        {"figure": "OSCR", "estimate": est.get("oscr"), "test": os_.get("oscr")},
        {"figure": "unseen images rejected at the threshold", "estimate": est.get("rejected"),
         "test": (th or {}).get("unknown_rejected")},
    ]  # fmt: skip


#: compare: every head × score, ranked by the known-only criterion
COMPARE = Table(
    (
        Column("rank", lambda r: f"{r['rank']}{' (tie)' if r.get('tie') else ''}"),
        col("head", "head"),
        col("score", "score"),
        col("layer", "layer"),
        Column("params", lambda r: fmt_params(r.get("params"))),
        col("criterion", "criterion"),
        col("est. bal. acc", "val_balanced_accuracy"),
        col("est. AUROC", "est_auroc"),
        col("accuracy", "accuracy"),
        col("AUROC", "auroc"),
        col("OSCR", "oscr"),
        col("AUPR-in", "aupr_in"),
        col("AUPR-out", "aupr_out"),
        col("FPR@95", "fpr_at_tpr95"),
        col("CCR@1%", "ccr_at_fpr01"),
        col("CCR@5%", "ccr_at_fpr05"),
        col("CCR@10%", "ccr_at_fpr10"),
    )
)


#: evaluate --discover: the rejected test images clustered (one row: results.json "discovery")
DISCOVERY = Table(
    (
        col("rejected", "rejected"),
        col("clustered", "clustered"),
        col("clusters", "clusters"),
        col("purity", "purity"),
        col("ARI", "ari"),
        col("NMI", "nmi"),
        Column("unseen found", lambda d: f"{d['generators_found']} of {d['unseen_generators']}"),
    )
)

#: the open-world round: every cluster enrolled, per unseen generator (`open_world_rows`)
OPEN_WORLD = Table(
    (
        col("unseen generator", "generator"),
        col("images", "images"),
        col("one discovered label", "consistent"),
        col("label", "label"),
    )
)


def open_world_rows(d: dict) -> list[dict]:
    per = (d.get("open_world") or {}).get("per_generator") or {}
    return [{"generator": g, **v} for g, v in per.items()]
