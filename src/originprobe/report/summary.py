"""Summaries of several runs (protocol splits, seeds): the figures averaged and their table.

Formatting only; `pipeline.multirun` computes the runs and calls this.
"""

from __future__ import annotations

from .results import markdown_table

#: the figures a summary averages: (label, path in results.json)
SUMMARY_KEYS = [
    ("val bal. acc.", ("selected", "val_balanced_accuracy")),
    ("accuracy", ("closed_set", "accuracy")),
    ("macro-F1", ("closed_set", "macro_f1")),
    ("AUROC", ("open_set", "auroc")),
    ("OSCR", ("open_set", "oscr")),
    ("AUPR-in", ("open_set", "aupr_in")),
    ("AUPR-out", ("open_set", "aupr_out")),
    ("FPR@95", ("open_set", "fpr_at_tpr95")),
    ("CCR@5%", ("open_set", "ccr_at_fpr05")),
    ("open-set acc.", ("thresholded", "open_set_accuracy")),
]


def summary_value(res: dict, path: tuple[str, str]):
    v = res.get(path[0]) or {}
    return v.get(path[1])


def summary_markdown(s: dict) -> str:
    labels = [label for label, _ in SUMMARY_KEYS]
    body = [[r["name"], r["layer"]] + [r[l] for l in labels] for r in s["runs"]]
    body.append(
        ["**mean ± std**", ""]
        + [
            "–" if s["mean"][l] is None else f"{s['mean'][l]:.3f} ± {s['std'][l]:.3f}"
            for l in labels
        ]
    )
    out = [
        f"# originprobe summary: {s['title']}",
        "",
        f"{len(s['runs'])} runs, each a full run directory (`<name>/results.md`, "
        "`<name>/report.html`); each selected its layer and parameters on its own "
        "known-class validation data.",
        "",
        markdown_table(["run", "layer"] + labels, body),
    ]
    if s.get("jpeg_aligned"):
        keys = ["val bal. acc.", "accuracy", "AUROC", "OSCR"]
        rows = [[r["name"]] + [(r.get("jpeg_aligned") or {}).get(k) for k in keys]
                for r in s["runs"]]  # fmt: skip
        rows.append(["**mean**"] + [s["jpeg_aligned"]["mean"][k] for k in keys])
        out += [
            "",
            f"JPEG-aligned twin (every image recompressed at quality "
            f"{s['jpeg_aligned']['quality']}, learned networks retrained on it):",
            "",
            markdown_table(["run"] + keys, rows),
        ]
    ci = [[r["name"], _ci(r["auroc_ci95"]), _ci(r["oscr_ci95"])] for r in s["runs"]]
    out += [
        "",
        "Bootstrap 95% intervals (test set resampled):",
        "",
        markdown_table(["run", "AUROC 95% CI", "OSCR 95% CI"], ci),
    ]
    return "\n".join(out) + "\n"


def _ci(v) -> str:
    return "–" if not v else f"[{v[0]:.3f}, {v[1]:.3f}]"
