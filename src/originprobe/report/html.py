"""RUN_DIR/report.html: one self-contained page (plots inlined as PNG) for a run directory.

Reads what `evaluate`/`compare` wrote (results.json, predictions.csv, embedding.csv) and draws the
ROC and OSCR curves, the confusion matrix, per-unknown AUROC, the known-only estimate beside the
test figures, the candidates selection compared, robustness and low-data curves and a 2-D map of
the test features. Tables are the ones `report.tables` defines (the same as results.md). Curves are computed with
`originprobe.metrics` (never a second implementation). The page references nothing outside
itself: no external CSS, scripts, fonts or images.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingInputError
from ..fileio import atomic_write_text
from ..metrics import oscr_curve, roc_curve
from .results import METRIC_ROWS
from .summary import DISCOVERY_NOTE, DISCOVERY_SUMMARY, SUMMARY, discovery_summary_rows
from .tables import (
    CANDIDATES,
    COMPARE,
    DISCOVERY,
    ESTIMATE_VS_TEST,
    OPEN_WORLD,
    estimate_rows,
    fmt,
    fmt_params,
    html_table,
    open_world_rows,
)

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.95em}
td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}th{background:#f3f3f3}
td.num{text-align:right}.meta{color:#555}.sel{background:#fff4c2}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0}
figcaption{color:#555;font-size:.9em;max-width:560px}img{max-width:100%}
"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 12,
            "axes.titlesize": 13,
            "axes.labelsize": 12,
            "legend.fontsize": 10,
            "figure.dpi": 100,
        }
    )
    return plt


def _png(fig) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(fig, caption: str) -> str:
    return (
        f'<figure><img alt="{html.escape(caption)}" src="{_png(fig)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(header, rows) -> str:
    return html_table(header, rows)


def _colors(labels):
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {l: cmap(i % cmap.N) for i, l in enumerate(labels)}


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _curves(res: dict, preds: list[dict]) -> str:
    known = set(res["known_classes"])
    if not preds:
        return ""
    y = np.array([p["label"] for p in preds], dtype=object)
    is_known = np.isin(y, list(known))
    if is_known.all() or not is_known.any():
        return "<p>No unknown classes in the test set: no ROC or OSCR curve.</p>"
    s = np.array([float(p["score"]) for p in preds])
    correct = np.array([p["predicted"] == p["label"] for p in preds])
    plt = _plt()
    fpr, tpr = roc_curve(s, is_known)
    f1, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot(fpr, tpr, lw=2, label=f"AUROC {res['open_set']['auroc']:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(
        xlabel="false-positive rate (unknown accepted)",
        ylabel="true-positive rate (known accepted)",
        title="ROC: known vs unknown",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right")
    ofpr, occr = oscr_curve(s, is_known, correct)
    f2, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot(ofpr, occr, lw=2, c="C2", label=f"OSCR {res['open_set']['oscr']:.3f}")
    th = res.get("selected", {}).get("threshold")
    if th is not None and preds and "decision" in preds[0]:
        acc = np.array([p["decision"] != "unknown" for p in preds])
        px = float(np.mean(acc[~is_known]))
        py = float(np.sum(acc & is_known & correct) / is_known.sum())
        ax.scatter([px], [py], s=80, c="C3", zorder=3, label=f"threshold {th:.3g}")
    ax.set(
        xlabel="false-positive rate (unknown accepted)",
        ylabel="correct classification rate (known)",
        title="OSCR curve",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right")
    return (
        '<div class="grid">'
        + _figure(f1, "ROC curve, known = positive.")
        + _figure(
            f2,
            "Correct-classification rate vs false-positive rate; the dot is the "
            "reject threshold calibrated on known validation data.",
        )
        + "</div>"
    )


def _histogram(res: dict, preds: list[dict]) -> str:
    """Open-set scores of known and unknown test images, with the reject threshold."""
    if not preds:
        return ""
    known = set(res["known_classes"])
    s = np.array([float(p["score"]) for p in preds])
    k = np.array([p["label"] in known for p in preds])
    if k.all() or not k.any():
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    bins = np.linspace(s.min(), s.max(), 41) if s.max() > s.min() else 10
    ax.hist(s[k], bins=bins, alpha=0.6, color="C0", label=f"known ({k.sum()})", density=True)
    ax.hist(s[~k], bins=bins, alpha=0.6, color="C3", label=f"unknown ({(~k).sum()})", density=True)
    th = res.get("selected", {}).get("threshold")
    if th is not None:
        ax.axvline(th, color="k", ls="--", lw=1.5, label=f"threshold {th:.3g}")
    ax.set(
        xlabel=f"open-set score ({res['selected']['score']}; higher = more likely known)",
        ylabel="density",
        title="Scores of test images",
    )
    ax.legend(loc="upper left")
    return _figure(
        fig,
        "Open-set scores of the test images, known vs unknown classes; images "
        "left of the threshold are answered 'unknown'.",
    )


def _confusion(res: dict) -> str:
    conf = (res.get("thresholded") or {}).get("confusion") or res["closed_set"]["confusion"]
    m = np.array(conf["matrix"], dtype=float)
    if m.size == 0:
        return ""
    plt = _plt()
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(conf["cols"]), 0.9 + 0.6 * len(conf["rows"])))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j,
                i,
                int(m[i, j]),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.55 else "black",
                fontsize=11,
            )
    ax.set_xticks(range(len(conf["cols"])), conf["cols"], rotation=35, ha="right")
    ax.set_yticks(range(len(conf["rows"])), conf["rows"])
    ax.set(xlabel="predicted", ylabel="true")
    return _figure(fig, "Confusion matrix of the thresholded decision (colour: share of the row).")


def _bars(res: dict) -> str:
    per = res["open_set"].get("per_unknown_auroc") or {}
    if not per:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 0.6 + 0.5 * len(per)))
    names = sorted(per)
    ax.barh(names, [per[n] or 0 for n in names], color="C1")
    for i, n in enumerate(names):
        ax.text((per[n] or 0) + 0.01, i, fmt(per[n]), va="center")
    ax.set(xlim=(0, 1.1), xlabel="AUROC (all known vs this unknown class)")
    return _figure(fig, "AUROC per unknown class.")


def _candidates(res: dict) -> str:
    rows = res.get("candidates") or []
    if not rows:
        return ""
    plt = _plt()
    names = [f"{r['layer']} · {r['score']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 4.2))
    for key, label in (("criterion", "criterion (chooses)"), ("test_accuracy", "test accuracy"),
                       ("test_auroc", "test AUROC"), ("test_oscr", "test OSCR")):  # fmt: skip
        ax.plot(names, [np.nan if r.get(key) is None else r[key] for r in rows], marker="o",
                label=label)  # fmt: skip
    chosen = [i for i, r in enumerate(rows) if r.get("chosen")]
    for i in chosen:
        ax.axvline(i, color="grey", ls="--", lw=1)
    ax.set(ylim=(0, 1), ylabel="score", title="Candidates")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="lower right")
    return _figure(fig, "Each candidate the selection compared; the chosen one (dashed) has the "
                   "best known-only criterion.") + CANDIDATES.html(rows)  # fmt: skip


def _estimate(res: dict) -> str:
    if not res.get("estimate"):
        return ""
    return (
        "<p>The estimate chose the model and uses no test or unknown image: cross-validated "
        "balanced accuracy; AUROC, OSCR and the share rejected with each known generator "
        "withheld in turn.</p>" + ESTIMATE_VS_TEST.html(estimate_rows(res))
    )


def _rejected(res: dict) -> str:
    per = (res.get("thresholded") or {}).get("rejected_per_unknown") or {}
    if not per:
        return ""
    return html_table(["unseen generator", "images rejected as unknown"], sorted(per.items()))


def _robustness(res: dict) -> str:
    rob = res.get("robustness") or {}
    if not rob:
        return ""
    plt = _plt()
    figs = []
    for kind, rows in rob.items():
        # clean first, then increasing strength, evenly spaced so that every level is readable
        rows = sorted(rows, key=lambda r: (r["level"] != "none", _strength(kind, r["level"])))
        fig, ax = plt.subplots(figsize=(4.6, 3.8))
        x = np.arange(len(rows))
        for i, m in enumerate(("accuracy", "auroc", "oscr")):
            ax.plot(
                x, [np.nan if r[m] is None else r[m] for r in rows], marker="o", c=f"C{i}", label=m
            )
        ax.set_xticks(x, ["clean" if r["level"] == "none" else fmt_level(r["level"]) for r in rows])
        ax.set(
            title=f"{kind}",
            xlabel={
                "jpeg": "JPEG quality",
                "blur": "Gaussian sigma (px)",
                "downscale": "scale factor",
                "crop": "kept fraction",
            }.get(kind, "level"),
            ylim=(0, 1),
            ylabel="score",
        )
        ax.legend(loc="lower left", fontsize=9)
        figs.append(_figure(fig, f"{kind}: test figures, strength increasing to the right."))
    return '<div class="grid">' + "".join(figs) + "</div>"


def _strength(kind: str, level) -> float:
    """Larger = stronger perturbation (JPEG quality, scale and kept fraction decrease)."""
    if level == "none":
        return 0.0
    v = float(level)
    return -v if kind in ("jpeg", "downscale", "crop") else v


def fmt_level(level) -> str:
    v = float(level)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def _discovery(res: dict) -> str:
    from .analyst import thumbnail

    d = res.get("discovery")
    if not d:
        return ""
    rows = [DISCOVERY.html([d]), OPEN_WORLD.html(open_world_rows(d))]
    for c in d.get("cluster_list") or []:
        imgs = "".join(f'<img src="{u}" alt="" style="max-height:64px">'
                       for u in map(thumbnail, c["sources"]) if u)  # fmt: skip
        rows.append(f"<p>cluster {c['cluster']} · {c['size']} images · majority "
                    f"{html.escape(str(c['majority']))}<br>{imgs}</p>")  # fmt: skip
    return "".join(rows)


def _low_data(res: dict) -> str:
    rows = res.get("low_data") or []
    if not rows:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    n = [r["per_class"] for r in rows]
    for i, m in enumerate(("accuracy", "auroc", "oscr")):
        mean = np.array([np.nan if r[f"{m}_mean"] is None else r[f"{m}_mean"] for r in rows])
        std = np.array([0 if r[f"{m}_std"] is None else r[f"{m}_std"] for r in rows])
        ax.plot(n, mean, marker="o", c=f"C{i}", label=m)
        ax.fill_between(n, mean - std, mean + std, color=f"C{i}", alpha=0.2)
    ax.set(
        xscale="log",
        xlabel="training images per class",
        ylim=(0, 1),
        ylabel="score",
        title=f"Low-data regime ({rows[0]['seeds']} seeds, mean ± std)",
    )
    ax.set_xticks(n, [str(v) for v in n])
    ax.minorticks_off()
    ax.legend(loc="lower right")
    return _figure(fig, "Figures vs training images per class.")


def _embedding(run: Path, res: dict) -> str:
    rows = _read_csv(run / "embedding.csv")
    if not rows:
        return ""
    plt = _plt()
    known = res.get("known_classes", [])
    labels = known + sorted({r["label"] for r in rows} - set(known))
    colors = _colors(labels)
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    for l in labels:
        pts = np.array([[float(r["x"]), float(r["y"])] for r in rows if r["label"] == l])
        if len(pts):
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=14,
                color=colors[l],
                marker="o" if l in known else "x",
                label=f"{l}{'' if l in known else ' (unknown)'}",
            )
    ax.set(xticks=[], yticks=[], title="t-SNE of test features (selected layer)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5)
    return _figure(fig, "Known classes as dots, unknown classes as crosses.")


def _metrics(res: dict) -> str:
    variants = [("raw", res)]
    if res.get("jpeg_aligned"):
        variants.append((f"JPEG-aligned (q={res['jpeg_aligned']['quality']})", res["jpeg_aligned"]))
    return _table(
        ["metric"] + [n for n, _ in variants],
        [[label] + [get(v) for _, v in variants] for label, get in METRIC_ROWS],
    )


def _counts(res: dict) -> str:
    counts = res.get("counts") or {}
    labels = sorted({l for role in counts.values() for l in role})
    return _table(
        ["class"] + list(counts), [[l] + [counts[r].get(l, 0) for r in counts] for l in labels]
    )


def _summary_page(run: Path, res: dict) -> Path:
    esc = html.escape
    table = SUMMARY.html(res).replace(
        "<td>" + esc("**mean ± std**") + "</td>", "<td><b>mean ± std</b></td>"
    )
    for r in res["runs"]:
        table = table.replace(
            f"<td>{esc(r['name'])}</td>",
            f"<td><a href='{esc(r['name'])}/report.html'>{esc(r['name'])}</a></td>", 1
        )  # fmt: skip
    ci = _table(
        ["run", "AUROC 95% CI", "OSCR 95% CI"],
        [
            [r["name"], _fmt_ci(r.get("auroc_ci95")), _fmt_ci(r.get("oscr_ci95"))]
            for r in res["runs"]
        ],
    )
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>originprobe: "
        f"{esc(res['title'])}</title><style>{CSS}</style></head><body>"
        f"<h1>originprobe summary: {esc(res['title'])}</h1><p class='meta'>{len(res['runs'])} "
        "runs; each chose its layers, parameters and score by cross-validation on its own "
        "known-class training images. The est. columns are that known-only estimate; the "
        "others are test figures. Each run's full report is linked.</p><h2>Figures</h2>"
        + table
        + "<h2>Bootstrap 95% intervals</h2>"
        + ci
        + _summary_discovery(res)
        + "</body></html>"
    )
    out = run / "report.html"
    atomic_write_text(out, page)
    return out


def _summary_discovery(res: dict) -> str:
    """The discovery figures of each run and their mean (`evaluate --discover`), when present."""
    if not res.get("discovery"):
        return ""
    return (f"<h2>Discovery: rejected test images clustered</h2><p class='meta'>{DISCOVERY_NOTE} "
            "Each run's report shows its clusters.</p>"
            + DISCOVERY_SUMMARY.html(discovery_summary_rows(res)))  # fmt: skip


def _fmt_ci(v) -> str:
    return "–" if not v else f"[{v[0]:.3f}, {v[1]:.3f}]"


def build_report(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    if not (run / "results.json").is_file():
        raise MissingInputError(f"{run}/results.json: not found; is this a run directory?")
    try:
        res = json.loads((run / "results.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{run / 'results.json'}: not a valid results file ({exc})") from None
    esc = html.escape
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>originprobe: "
        f"{esc(res.get('title', 'report'))}</title><style>{CSS}</style></head><body>",
        f"<h1>originprobe: {esc(res.get('title', ''))}</h1>",
    ]
    if res.get("kind") == "summary":
        return _summary_page(run, res)
    bb = res.get("backbone", {}).get("name", "?")
    known = ", ".join(res.get("known_classes", []))
    unknown = ", ".join(res.get("unknown_classes", [])) or "(none)"
    if "compare" in res:
        parts.append(
            f"<p class='meta'>Backbone <b>{esc(bb)}</b>. Known: {esc(known)}. "
            f"Unknown: {esc(unknown)}.</p><h2>Heads × scores</h2><p>Ranked by the known-only "
            "criterion (cross-validated balanced accuracy and the AUROC with each known "
            "generator withheld in turn). Test figures are shown, never used to rank.</p>"
        )
        parts.append(COMPARE.html(res["compare"]))
    else:
        sel = res["selected"]
        parts.append(
            f"<p class='meta'>Backbone <b>{esc(bb)}</b>, head <b>{esc(sel['head'])}</b>, score "
            f"<b>{esc(sel['score'])}</b>, layer <b>{esc(sel['layer'])}</b>, parameters "
            f"<code>{esc(fmt_params(sel['params']))}</code>, chosen by cross-validation on the "
            f"known-class training images.<br>Known: {esc(known)}<br>Unknown: {esc(unknown)}</p>"
        )
        preds = _read_csv(run / "predictions.csv")
        parts += [
            "<h2>Metrics</h2>",
            _metrics(res),
            "<h2>Known-only estimate beside the test figures</h2>",
            _estimate(res),
            "<h2>At the model's own threshold</h2>",
            _rejected(res),
            "<h2>Known vs unknown</h2>",
            _curves(res, preds),
            _histogram(res, preds),
            _bars(res),
            "<h2>Confusion matrix</h2>",
            _confusion(res),
        ]
        for title, body in (
            ("Candidates compared", _candidates(res)),
            ("Robustness", _robustness(res)),
            ("Low-data regime", _low_data(res)),
            ("Discovery: the rejected test images clustered", _discovery(res)),
            ("Embedding map", _embedding(run, res)),
        ):
            if body:
                parts += [f"<h2>{title}</h2>", body]
    parts += ["<h2>Samples</h2>", _counts(res)]
    if res.get("errors"):
        parts.append(f"<p>{int(res['errors'])} file(s) skipped: see errors.csv.</p>")
    parts.append("</body></html>")
    out = run / "report.html"
    atomic_write_text(out, "\n".join(parts))
    return out
