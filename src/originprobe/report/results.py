"""Run directory output: results.json, results.md, config.json, errors.csv, candidates.csv.

Every file is written atomically (temporary file + rename): an interrupted run never leaves a
half-written results file over a previous one. This module formats; it never computes metrics.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..fileio import atomic_write_text
from .tables import (
    CANDIDATES,
    DISCOVERY,
    ESTIMATE_VS_TEST,
    OPEN_WORLD,
    estimate_rows,
    fmt_params,
    markdown_table,
    open_world_rows,
)

REQUIRED_KEYS = (
    "closed_set.accuracy",
    "closed_set.macro_f1",
    "open_set.auroc",
    "open_set.oscr",
    "open_set.ccr_at_fpr05",
    "open_set.tnr_at_tpr95",
    "open_set.per_unknown_auroc",
    "selected.layer",
    "selected.C",
    "estimate.balanced_accuracy",
    "known_classes",
    "unknown_classes",
    "counts",
)


def software_versions(backbone=None, runtime: str = "") -> dict:
    """What software produced a result: versions, the checkout's commit, the weights, the
    machine (results.json → "software")."""
    import platform
    import subprocess
    import sys
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in (
        "originprobe",
        "torch",
        "timm",
        "scikit-learn",
        "numpy",
        "pillow",
        "onnxruntime",
        "transformers",
        "open_clip_torch",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    commit = None
    here = Path(__file__).resolve()
    for d in here.parents:
        if (d / ".git").exists():
            try:
                r = subprocess.run(
                    ["git", "-C", str(d), "rev-parse", "HEAD"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                commit = r.stdout.strip() or None
                dirty = subprocess.run(
                    ["git", "-C", str(d), "status", "--porcelain", "--untracked-files=no"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.strip()
                if commit and dirty:
                    commit += "+uncommitted-changes"
            except (OSError, subprocess.SubprocessError):
                pass
            break
    return {
        "versions": versions,
        "git_commit": commit,
        "weights_sha256": getattr(backbone, "weights_id", None),
        "runtime": runtime or None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "command": " ".join(sys.argv),
    }


def get_key(d: dict, dotted: str):
    cur = d
    for part in dotted.split("."):
        cur = cur[part]
    return cur


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_errors_csv(path: str | Path, problems: Iterable) -> int:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "reason"])
    n = 0
    for p in problems:
        w.writerow([_printable(p.path), p.reason])
        n += 1
    atomic_write_text(path, buf.getvalue())
    return n


def _printable(path) -> str:
    # non-UTF-8 file names must not break the CSV writer
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def write_table_csv(path: str | Path, rows: Sequence[dict]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _pm(mean, std) -> str:
    return "–" if mean is None else f"{mean:.3f} ± {std:.3f}"


def _th(key):
    return lambda r: (r.get("thresholded") or {}).get(key)


def _os(key):
    return lambda r: r["open_set"].get(key)


def _ci(key):
    return lambda r: (
        "–" if not r["open_set"].get(key) else "[{:.3f}, {:.3f}]".format(*r["open_set"][key])
    )


METRIC_ROWS = [
    ("closed-set accuracy", lambda r: r["closed_set"]["accuracy"]),
    ("closed-set macro-F1", lambda r: r["closed_set"]["macro_f1"]),
    ("AUROC (known vs unknown)", _os("auroc")),
    ("AUROC 95% bootstrap interval", _ci("auroc_ci95")),
    ("OSCR", _os("oscr")),
    ("OSCR 95% bootstrap interval", _ci("oscr_ci95")),
    ("AUPR-In (known positive)", _os("aupr_in")),
    ("AUPR-Out (unknown positive)", _os("aupr_out")),
    ("FPR @ TPR 95%", _os("fpr_at_tpr95")),
    ("TNR @ TPR 95%", _os("tnr_at_tpr95")),
    ("CCR @ FPR 1%", _os("ccr_at_fpr01")),
    ("CCR @ FPR 5%", _os("ccr_at_fpr05")),
    ("CCR @ FPR 10%", _os("ccr_at_fpr10")),
    ("open-set accuracy @ threshold", _th("open_set_accuracy")),
    ("known accepted @ threshold", _th("known_accepted")),
    ("unknown rejected @ threshold", _th("unknown_rejected")),
]


def results_markdown(res: dict) -> str:
    os_ = res["open_set"]
    sel = res["selected"]
    out = [f"# originprobe results: {res.get('title', 'evaluation')}", ""]
    out.append(
        f"Backbone `{res['backbone']['name']}`, head `{sel['head']}`, score `{sel['score']}`, "
        f"layer `{sel['layer']}`, params `{fmt_params(sel['params'])}`, threshold "
        f"{sel['threshold']:.4g} (keeps {sel['target_tpr']:.0%} of known images), all chosen "
        f"by {sel.get('folds', 5)}-fold cross-validation on the known-class training images."
    )
    out.append("")
    out.append(f"Known: {', '.join(res['known_classes'])}  ")
    out.append(f"Unknown: {', '.join(res['unknown_classes']) or '(none)'}")
    out.append("")
    variants = [("raw", res)]
    if res.get("jpeg_aligned"):
        variants.append((f"JPEG-aligned (q={res['jpeg_aligned']['quality']})", res["jpeg_aligned"]))
    names = [name for name, _ in variants]
    rows = []
    for label, get in METRIC_ROWS:
        rows.append([label] + [get(v) for _, v in variants])
    out.append(markdown_table(["metric"] + (names if len(variants) > 1 else ["value"]), rows))
    if len(variants) > 1:
        a = res["jpeg_aligned"]["selected"]
        out.append("")
        out.append(
            f"JPEG-aligned: every image of every class and role recompressed at quality "
            f"{res['jpeg_aligned']['quality']} before extraction; its own selection chose "
            f"layer `{a['layer']}`, params `{json.dumps(a['params'])}`."
        )
    if res.get("estimate"):
        out += ["", "## Known-only estimate beside the test figures", "",
                "The estimate chose the model; it uses no test and no unknown image "
                "(cross-validated balanced accuracy; AUROC, OSCR and the share rejected with "
                "each known generator withheld in turn, playing the unknown).", ""]  # fmt: skip
        out.append(ESTIMATE_VS_TEST.markdown(estimate_rows(res)))
    th = res.get("thresholded")
    if th and th.get("rejected_per_unknown"):
        out += ["", "## What the analyst sees at the model's own threshold", ""]
        out.append(
            markdown_table(
                ["unseen generator", "images rejected as unknown"],
                sorted(th["rejected_per_unknown"].items()),
            )
        )
    if os_["per_unknown_auroc"]:
        out += ["", "## AUROC per unknown class", ""]
        out.append(
            markdown_table(["unknown class", "AUROC"], sorted(os_["per_unknown_auroc"].items()))
        )
    if th:
        conf = th["confusion"]
        out += ["", f"## Confusion matrix (threshold {th['threshold']:.4g}; rows = true)", ""]
        out.append(
            markdown_table(
                ["true \\ predicted"] + conf["cols"],
                [[r] + row for r, row in zip(conf["rows"], conf["matrix"])],
            )
        )
    if res.get("candidates"):
        out += ["", "## Candidates compared (known-only estimate chooses; test shown)", ""]
        out.append(CANDIDATES.markdown(res["candidates"]))
    if res.get("robustness"):
        out += [
            "",
            "## Robustness (test images perturbed; head, layer and threshold unchanged)",
            "",
        ]
        rob_rows = []
        for kind, rows_k in res["robustness"].items():
            for r in rows_k:
                level = r["level"] if isinstance(r["level"], str) else f"{r['level']:g}"
                rob_rows.append([kind, level, r["accuracy"], r["auroc"], r["oscr"]])
        out.append(markdown_table(["perturbation", "level", "accuracy", "AUROC", "OSCR"], rob_rows))
    if res.get("low_data"):
        out += ["", "## Low-data regime (training images per class; mean ± std over seeds)", ""]
        out.append(
            markdown_table(
                ["per class", "seeds", "accuracy", "AUROC", "OSCR"],
                [
                    [r["per_class"], r["seeds"]]
                    + [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in ("accuracy", "auroc", "oscr")]
                    for r in res["low_data"]
                ],
            )
        )
    if res.get("discovery"):
        out += [
            "",
            "## Discovery (rejected test images clustered)",
            "",
            discovery_markdown(res["discovery"]),
        ]
    out += ["", "## Samples", ""]
    counts = res["counts"]
    labels = sorted({l for role in counts.values() for l in role})
    out.append(
        markdown_table(
            ["class"] + list(counts), [[l] + [counts[r].get(l, 0) for r in counts] for l in labels]
        )
    )
    if res.get("errors"):
        out += ["", f"{res['errors']} file(s) skipped: see errors.csv"]
    if res.get("warnings"):
        out += ["", f"{res['warnings']} file(s) used although partly damaged: see warnings.csv"]
    return "\n".join(out) + "\n"


def format_dry_run(dr) -> str:
    """What `--dry-run` prints: the header, samples per class and role, missing files."""
    roles = list(dr.counts)
    labels = sorted({l for c in dr.counts.values() for l in c})
    rows = [[l] + [dr.counts[r].get(l, 0) for r in roles] for l in labels]
    rows.append(["**total**"] + [sum(dr.counts[r].values()) for r in roles])
    rows.append(["missing files"] + [len(dr.missing.get(r, [])) for r in roles])
    out = list(dr.header) + ["", markdown_table(["class"] + roles, rows)]
    for role, paths in dr.missing.items():
        out += [f"missing ({role}): {path}" for path in paths[:5]]
        if len(paths) > 5:
            out.append(f"missing ({role}): ... and {len(paths) - 5} more")
    out += [f"unusable line {pr.path}: {pr.reason}" for pr in dr.problems[:10]]
    return "\n".join(out)


def write_run(
    out_dir: str | Path,
    results: dict,
    config: dict,
    problems: Sequence = (),
    warnings: Sequence = (),
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config)
    write_errors_csv(out / "errors.csv", problems)
    write_errors_csv(out / "warnings.csv", warnings)
    if results.get("candidates"):
        atomic_write_text(out / "candidates.csv", CANDIDATES.csv(results["candidates"]))
    atomic_write_text(out / "results.md", results_markdown(results))
    write_json(out / "results.json", results)  # last: its presence marks a complete run
    return out


def discovery_markdown(d: dict) -> str:
    """`evaluate --discover`'s figures, clusters and open-world round as Markdown."""
    ow = d.get("open_world") or {}
    lines = [DISCOVERY.markdown([d])]
    if d.get("cluster_list"):
        lines += ["", markdown_table(["cluster", "size", "majority source"],
                                     [[c["cluster"], c["size"], c["majority"]]
                                      for c in d["cluster_list"]])]  # fmt: skip
    if ow.get("per_generator"):
        lines += ["", "Open-world round (every cluster enrolled, test images decided again):", "",
                  OPEN_WORLD.markdown(open_world_rows(d)),
                  "", f"known test images kept: {ow['known_kept_before']:.3f} before, "
                  f"{ow['known_kept_after']:.3f} after enrolling"]  # fmt: skip
    return "\n".join(lines)
