"""Summaries of several runs (protocol splits, seeds): the figures averaged and their table.

Formatting only; `pipeline.multirun` computes the runs and calls this.
"""

from __future__ import annotations

from .tables import Column, Table, col, markdown_table

#: the figures a summary averages: (label, path in results.json)
SUMMARY_KEYS = [
    ("est. bal. acc.", ("estimate", "balanced_accuracy")),
    ("est. AUROC", ("estimate", "auroc")),
    ("est. OSCR", ("estimate", "oscr")),
    ("est. rejected", ("estimate", "rejected")),
    ("accuracy", ("closed_set", "accuracy")),
    ("macro-F1", ("closed_set", "macro_f1")),
    ("AUROC", ("open_set", "auroc")),
    ("OSCR", ("open_set", "oscr")),
    ("AUPR-in", ("open_set", "aupr_in")),
    ("AUPR-out", ("open_set", "aupr_out")),
    ("FPR@95", ("open_set", "fpr_at_tpr95")),
    ("CCR@5%", ("open_set", "ccr_at_fpr05")),
    ("unseen rejected", ("thresholded", "unknown_rejected")),
    ("known accepted", ("thresholded", "known_accepted")),
    ("open-set acc.", ("thresholded", "open_set_accuracy")),
]

#: the discovery figures a summary averages (`evaluate --discover`)
DISCOVERY_KEYS = ["purity", "ari", "nmi", "clustered", "found_share", "consistent"]


DISCOVERY_NOTE = (
    "found share: unseen generators that are the majority of a cluster; consistent: after "
    "enrolling every cluster, the share of each unseen generator's images that get one "
    "discovered label."
)
#: the per-run discovery figures and their mean (`discovery_summary_rows`)
DISCOVERY_SUMMARY = Table(
    (col("run", "name"), *(col(k, "discovery", k) for k in DISCOVERY_KEYS)),
    marked=lambda r: r["name"] == "mean",
)


def discovery_summary_rows(s: dict) -> list[dict]:
    return list(s["runs"]) + [{"name": "mean", "discovery": s["discovery"]["mean"]}]


def discovery_figures(d: dict | None) -> dict | None:
    """One run's discovery figures as a summary averages them."""
    if not d:
        return None
    n = d.get("unseen_generators") or 0
    return {"purity": d.get("purity"), "ari": d.get("ari"), "nmi": d.get("nmi"),
            "clustered": d.get("clustered"),
            "found_share": d["generators_found"] / n if n else None,
            "consistent": (d.get("open_world") or {}).get("consistent")}  # fmt: skip


def _mean_std(label: str):
    return lambda r: r[label] if not r.get("_mean") else (
        "–" if r["_mean"][label] is None else f"{r['_mean'][label]:.3f} ± {r['_std'][label]:.3f}"
    )  # fmt: skip


class _Summary:
    """The summary table: one row per run, then mean ± std (columns defined once)."""

    table = Table(
        (col("run", "name"), col("layer", "layer"),
         *(Column(label, _mean_std(label)) for label, _ in SUMMARY_KEYS)),
        marked=lambda r: bool(r.get("_mean")),
    )  # fmt: skip

    def rows(self, s: dict) -> list[dict]:
        mean = {"name": "**mean ± std**", "layer": "", "_mean": s["mean"], "_std": s["std"]}
        return list(s["runs"]) + [mean]

    def markdown(self, s: dict) -> str:
        return self.table.markdown(self.rows(s))

    def html(self, s: dict) -> str:
        return self.table.html(self.rows(s))

    def csv(self, s: dict) -> str:
        return self.table.csv(self.rows(s))


SUMMARY = _Summary()


def summary_value(res: dict, path: tuple[str, str]):
    v = res.get(path[0]) or {}
    return v.get(path[1])


def summary_markdown(s: dict) -> str:
    out = [
        f"# originprobe summary: {s['title']}",
        "",
        f"{len(s['runs'])} runs, each a full run directory (`<name>/results.md`, "
        "`<name>/report.html`); each chose its layers, parameters and score by "
        "cross-validation on its own known-class training images. The `est.` columns are that "
        "known-only estimate (balanced accuracy over folds; AUROC, OSCR and the share rejected "
        "at the threshold with each known generator withheld in turn); the others are the test "
        "figures, shown, never used to choose.",
        "",
        SUMMARY.markdown(s),
    ]
    if s.get("jpeg_aligned"):
        keys = ["est. bal. acc.", "accuracy", "AUROC", "OSCR", "unseen rejected"]
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
    if s.get("discovery"):
        out += ["", f"Discovery (`--discover`: the rejected test images clustered; {DISCOVERY_NOTE})",
                "", DISCOVERY_SUMMARY.markdown(discovery_summary_rows(s))]  # fmt: skip
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
