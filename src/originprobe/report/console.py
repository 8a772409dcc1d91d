"""What the command line prints: every text and JSON document of a command, built from library
results. Formatting only; nothing here decides or computes a figure.

The predict answer of `predict --json` and `serve` is `report.documents.predict_document`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..features.store import StoreInfo
from .attributions import text_line
from .documents import predict_document
from .tables import markdown_table


def predict_output(run: Any, model_name: str, as_json: bool, to_file: bool) -> tuple[str, str]:
    """(stdout, stderr) of `originprobe predict` for a `pipeline.predict.PredictRun`; with
    `to_file` (--out) the attributions went to a file and stdout stays empty."""
    if as_json:
        out = json.dumps(predict_document(run.model, run.records, model_name, run.note), indent=2)
    else:
        out = "" if to_file else "\n".join(text_line(r, run.model.score_name_) for r in run.ok)
    err = [f"note: {run.note}"] if run.note else []
    err += [f"{r.source}\tskipped: {r.error}" for r in run.records if not r.ok]
    err += [f"{r.source}\twarning: {r.warning}" for r in run.flagged]
    summary = (
        f"{len(run.ok)} image(s) attributed, {len(run.records) - len(run.ok)} skipped, "
        f"{len(run.flagged)} flagged as damaged"
    )
    err.append(summary + "".join(f"; wrote {w}" for w in run.written))
    if not run.ok:
        err.append("originprobe predict: error: no usable image among the inputs")
    return out, "\n".join(err)


def cache_verify_text(reports: Sequence[tuple[Any, Any]], repair: bool) -> str:
    lines = []
    for st, rep in reports:
        status = (
            "ok"
            if rep.ok
            else f"DAMAGED ({len(rep.damaged)} shard(s))"
            + (
                ", moved aside to damaged-*; the next extraction recomputes them"
                if repair
                else "; run with --repair to move them aside"
            )
        )
        lines.append(f"{st.dir.name}: {rep.shards} shards, {rep.rows} rows: {status}")
        lines += [f"  {path}: {reason}" for path, reason in rep.damaged]
    return "\n".join(lines)


def cache_prune_text(removed: Sequence[StoreInfo], dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    return "\n".join(
        [
            f"{verb} {i.namespace} ({i.backbone}, {i.images} images, {i.bytes / 1e6:.1f} MB)"
            for i in removed
        ]
        + [f"{verb} {len(removed)} namespace(s)"]
    )


def protocols_text(protocols: Sequence, as_json: bool) -> str:
    if as_json:
        return json.dumps([p.describe() for p in protocols], indent=2)
    rows = [
        [
            p.name,
            len(p.known),
            ", ".join(f"{g} ({len(c)})" for g, c in p.unknown.items()),
            ", ".join(p.known),
        ]
        for p in protocols
    ]
    return (
        markdown_table(["protocol", "known", "unknown groups", "known classes"], rows)
        + "\n\nRun one: originprobe evaluate --protocol NAME --root DIR --out RUN "
        "[--group G] [--dry-run]; details: originprobe protocols --json"
    )


def format_cache_table(rows: list[StoreInfo]) -> str:
    now = time.time()
    body = [
        [
            r.namespace,
            r.backbone,
            r.images,
            len(r.layers),
            ", ".join(r.layers[:4]) + (" ..." if len(r.layers) > 4 else ""),
            f"{r.bytes / 1e6:.1f}",
            f"{(now - r.last_used) / 86400:.1f}",
        ]
        for r in rows
    ]
    total = sum(r.bytes for r in rows)
    return (
        markdown_table(
            ["namespace", "backbone", "images", "layers", "names", "MB", "days since used"], body
        )
        + f"\n{len(rows)} namespace(s), {total / 1e6:.1f} MB"
    )


def run_text(res: dict, out: str) -> str:
    """What `evaluate` prints: the results (or summary) table and the files written."""
    from .results import results_markdown
    from .summary import summary_markdown

    text = summary_markdown(res) if res.get("kind") == "summary" else results_markdown(res)
    text += f"\nwrote {out}/: {', '.join(res['written'])}"
    if res.get("warnings"):
        text += f"\n{res['warnings']} file(s) used although partly damaged; see {out}/warnings.csv"
    return text


def fit_text(att: Any, out: str) -> str:
    from .tables import fmt_params

    sel = att.selection_summary_
    est = sel.get("estimate") or {}
    bb = att.load_backbone()
    trained = [m for m in (getattr(bb, "members", None) or [bb]) if hasattr(m, "network_name")]
    return "".join(
        training_text(m.network_name, m.info.get("training", {})) + "\n" for m in trained
    ) + (  # fmt: skip
        f"saved {out}: {att.head_.name} head on {att.backbone}/{att.layer_} params "
        f"{fmt_params(sel['params'])}; score {att.score_name_}, reject below "
        f"{att.threshold_:.4g} (keeps {att.target_tpr:.0%} of known images, out-of-fold)\n"
        f"known-only estimate ({sel.get('folds', 5)}-fold cross-validation): balanced accuracy "
        f"{_f(est.get('balanced_accuracy'))}; with each known generator withheld in turn: AUROC "
        f"{_f(est.get('auroc'))}, OSCR {_f(est.get('oscr'))}, images of an unseen generator "
        f"rejected at the threshold {_f(est.get('rejected'))}"
    )


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def training_text(name: str, t: dict) -> str:
    """One line on how a learned network was trained (its file's training summary)."""
    if not t:
        return f"{name}: trained elsewhere (no training record)"
    others = ", ".join(
        f"{k} {v:.3f}" if v is not None else f"{k} –" for k, v in t.get("candidates", {}).items()
    )
    return (
        f"{name}: {t['loss']} loss kept (validation balanced accuracy: {others}); "
        f"epoch {t['best_epoch']} of {t['epochs_run']} run, {t['images_per_second']} patches/s, "
        f"{t['total_seconds']:.0f} s on {t['device']}"
        + (f", started from {t['init']}" if t.get("init") else "")
    )


def extract_text(backbone: Any, store: Any, report: Any, problems: Sequence) -> tuple[str, str]:
    """(stdout, stderr) of `originprobe extract`: where the features went, and what was skipped
    (the first 20)."""
    err = "".join(f"  skipped {p.path}: {p.reason}\n" for p in problems[:20])
    return f"{backbone.name} → {store.dir}\n{report.summary()}", err


def enroll_text(att: Any, label: str, n: int, model: str, skipped: Sequence) -> tuple[str, str]:
    """(stdout, stderr) of `originprobe enroll`."""
    out = (
        f"enrolled {label!r} from {n} image(s) into {model}; classes: "
        f"{', '.join(att.classes_)}; threshold {att.threshold_:.4g}"
    )
    return out, "".join(f"  skipped {p.path}: {p.reason}\n" for p in skipped)


def discover_text(
    found: Any, out: str, written: Sequence[str], skipped: Sequence
) -> tuple[str, str]:
    """(stdout, stderr) of `originprobe discover`: one line per cluster, then where it wrote."""
    lines = [found.message]
    for c in found.clusters:
        lines.append(f"  cluster {c.id}: {c.size} images, nearest known class {c.nearest_class} "
                     f"(distance {c.nearest_distance:.3g}); {c.claims_text()}")  # fmt: skip
    lines.append(f"wrote {', '.join(str(Path(out) / w) for w in written)}")
    return "\n".join(lines), "".join(f"  skipped {p.path}: {p.reason}\n" for p in skipped)


def push_text(done: dict, model: str) -> str:
    """What `originprobe push` prints: where the bundle went and how to use it."""
    ref = f"hf://{done['repo']}" + ("" if done["revision"] == "main" else f"@{done['revision']}")
    return (f"pushed {len(done['files'])} files of {model} to hf://{done['repo']}@"
            f"{done['revision']} (commit {done['commit'][:12]}); use it as {ref}")  # fmt: skip


def cache_ls_text(rows: Sequence[StoreInfo], as_json: bool) -> str:
    """What `originprobe cache ls` prints."""
    return json.dumps([r.__dict__ for r in rows], indent=2) if as_json else format_cache_table(rows)
