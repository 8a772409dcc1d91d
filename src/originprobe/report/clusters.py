"""What `discover` writes: clusters.json (the whole record), clusters.csv (one row per rejected
image) and clusters.html (one row of thumbnails per cluster, the noise apart), self-contained."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..fileio import atomic_directory
from .analyst import THUMB_PX, _e, thumbnail

CSV_FIELDS = ["source", "cluster", "cluster_size", "distance_to_centre", "nearest_class",
              "nearest_distance", "score", "named_by_metadata"]  # fmt: skip
SHOWN = 24  # thumbnails per row; the rest are listed by name
_STYLE = f"""
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}}
h1{{font-size:1.4em;margin:0 0 .3em}} .meta{{color:#555;margin-bottom:1em}}
section{{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;margin:.8em 0}}
.row{{display:flex;flex-wrap:wrap;gap:.4em}} .row figure{{margin:0;width:{THUMB_PX // 2}px}}
.row img{{max-width:{THUMB_PX // 2}px;max-height:{THUMB_PX // 2}px;border:1px solid #ccc}}
figcaption{{font-size:.7em;overflow-wrap:anywhere;color:#555}} .noise{{background:#f3f3f3}}
"""


def _figures(members: list[dict]) -> str:
    out = []
    for m in members[:SHOWN]:
        uri = thumbnail(m["source"], THUMB_PX // 2)
        img = f'<img src="{uri}" alt="">' if uri else "<i>cannot show</i>"
        out.append(f"<figure>{img}<figcaption>{_e(Path(m['source']).name)}</figcaption></figure>")
    more = len(members) - SHOWN
    return "".join(out) + (f"<p>… and {more} more (clusters.csv)</p>" if more > 0 else "")


def render_clusters(doc: dict, model: str) -> str:
    parts = [f"<h1>Candidate new generators</h1><p class=meta>model {_e(model)} · "
             f"{_e(doc['message'])} · min cluster size {doc['settings']['min_cluster_size']}, "
             f"seed {doc['settings']['seed']}</p>"]  # fmt: skip
    for c in doc["clusters"]:
        parts.append(
            f"<section><h2>Cluster {c['cluster']} · {c['size']} images</h2><p>nearest known "
            f"class: {_e(c['nearest_class'])} (distance {c['nearest_distance']:.3g}) · "
            f"provenance: {_e(c['claims_text'])}</p><div class=row>{_figures(c['members'])}"
            "</div></section>"
        )
    noise = [{"source": r["source"]} for r in doc["images"] if r["cluster"] == -1]
    if noise:
        parts.append(f"<section class=noise><h2>Not grouped ({len(noise)})</h2>"
                     f"<div class=row>{_figures(noise)}</div></section>")  # fmt: skip
    return ("<!doctype html><html><head><meta charset=utf-8><title>originprobe discover</title>"
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip


def write_clusters(out: str | Path, doc: dict, model: str) -> list[str]:
    """Write the three files into `out` at once (built beside it, swapped in by rename)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in doc["images"]:
        w.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})
    files = {"clusters.json": json.dumps(doc, indent=2) + "\n", "clusters.csv": buf.getvalue(),
             "clusters.html": render_clusters(doc, model)}  # fmt: skip
    with atomic_directory(out) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return sorted(files)
