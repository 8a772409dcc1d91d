"""The analyst's report: one self-contained offline HTML page for a folder of attributed images.

Per image: a thumbnail (inline JPEG), the pixel verdict, the score against the threshold, the
top-k classes, and the provenance evidence (signed and bare claims kept apart), with filters for
"unknown", "disagreement" and "signed". Formatting only: every value comes from `Attribution`
records; nothing is decided here. The page loads nothing from outside itself.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

from ..fileio import atomic_write_text

THUMB_PX = 160
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em} .meta{color:#555;margin-bottom:1em}
.filters{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd}
.filters label{margin-right:1.2em;cursor:pointer}
.card{display:flex;gap:1em;background:#fff;border:1px solid #ddd;border-radius:6px;
      padding:.8em;margin:.8em 0}
.card.hidden{display:none} .thumb{width:160px;min-width:160px;text-align:center}
.thumb img{max-width:160px;max-height:160px;border:1px solid #ccc}
.verdict{font-size:1.2em;font-weight:600} .verdict.unknown{color:#b35900}
.bar{height:8px;background:#eee;border-radius:4px;position:relative;width:240px;margin:.3em 0}
.bar span{position:absolute;top:0;left:0;height:8px;background:#4a7bd0;border-radius:4px}
.bar i{position:absolute;top:-3px;width:2px;height:14px;background:#c00}
.tag{display:inline-block;padding:0 .5em;border-radius:3px;font-size:.85em;margin-right:.4em}
.tag.signed{background:#d9f2d9} .tag.bare{background:#eee} .tag.disagree{background:#ffd9cc}
.tag.invalid{background:#ffcccc} .tag.agree{background:#e3eefc}
table.claims{border-collapse:collapse;margin-top:.3em;font-size:.9em}
table.claims td{border-top:1px solid #eee;padding:.15em .5em;vertical-align:top;max-width:520px;
               overflow-wrap:anywhere} .warn{color:#a00;font-size:.9em} .err{color:#a00}
"""
_SCRIPT = """
function applyFilters(){
  const want = ['unknown','disagreement','signed'].filter(k => document.getElementById('f-'+k).checked);
  let shown = 0;
  for (const card of document.querySelectorAll('.card')) {
    const ok = want.every(k => card.dataset[k] === '1');
    card.classList.toggle('hidden', !ok);
    if (ok) shown++;
  }
  document.getElementById('shown').textContent = shown;
}
for (const box of document.querySelectorAll('.filters input')) box.addEventListener('change', applyFilters);
applyFilters();
"""


def thumbnail(source: str | Path, max_px: int = THUMB_PX) -> str | None:
    """An inline JPEG data URI of the image (decoded as attribution decodes it: metadata that
    hides the pixels is dropped), or None when it cannot be read."""
    from ..data.images import ImageDecodeError, read_image

    try:
        im = read_image(source, draft_size=max_px).image
        im.thumbnail((max_px, max_px))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
    except (ImageDecodeError, OSError):  # the card says the image could not be shown
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _evidence_html(ev) -> str:
    if ev is None:
        return "<div class='meta'>no file to read metadata from</div>"
    parts = []
    if ev.c2pa is not None:
        c = ev.c2pa
        cls = "signed" if c.validation == "valid" else "invalid"
        trust = {
            True: "signer on the trust list",
            False: "signer NOT on the trust list",
            None: "no trust list configured",
        }[c.trusted]
        parts.append(
            f"<span class='tag {cls}'>C2PA: {_e(c.validation.replace('_', ' '))}</span>"
            f"<span class='tag bare'>{_e(trust)}</span>"
            f"<div>claim generator: {_e(c.claim_generator)}; signer: {_e(c.signer)} "
            f"({_e(c.issuer)}); signed at: {_e(c.signed_at or 'no time-stamp')}</div>"
            + (
                f"<div>digital source type: {_e(c.digital_source_type)}</div>"
                if c.digital_source_type
                else ""
            )
        )
    if ev.agreement != "no claim":
        cls = "disagree" if ev.disagreement else "agree"
        parts.append(f"<span class='tag {cls}'>{_e(ev.agreement)}</span> {_e(ev.reason)}")
    elif ev.empty:
        parts.append("<span class='meta'>no provenance metadata</span>")
    else:
        parts.append(f"<span class='meta'>{_e(ev.reason)}</span>")
    if ev.claims:
        rows = "".join(
            f"<tr><td><span class='tag {'signed' if c.signed else 'bare'}'>"
            f"{'signed' if c.signed else 'bare text'}</span></td><td>{_e(c.source)}</td>"
            f"<td>{_e(c.generator or '')}</td><td>{_e(c.value[:400])}</td></tr>"
            for c in ev.claims
        )
        parts.append(f"<table class='claims'>{rows}</table>")
    parts += [f"<div class='warn'>⚠ {_e(w)}</div>" for w in ev.warnings]
    return "".join(parts)


def _card(rec, score_name: str) -> str:
    ev = rec.evidence
    unknown = rec.ok and rec.label == "unknown"
    flags = {
        "unknown": unknown,
        "disagreement": bool(ev is not None and ev.disagreement),
        "signed": bool(ev is not None and ev.signed),
    }
    data = " ".join(f"data-{k}='{int(v)}'" for k, v in flags.items())
    thumb = thumbnail(rec.source) if not rec.source.startswith("<") else None
    img = (
        f"<img alt='{_e(Path(rec.source).name)}' src='{thumb}'>"
        if thumb
        else "<div class='meta'>(no preview)</div>"
    )
    if not rec.ok:
        body = f"<div class='err'>skipped: {_e(rec.error)}</div>"
    else:
        verdict = rec.label if not unknown else f"unknown (closest: {rec.closest})"
        hi = max(1.0, rec.score, rec.threshold) if rec.score is not None else 1.0
        lo = min(0.0, rec.score, rec.threshold)
        pos = lambda v: 100.0 * (v - lo) / (hi - lo) if hi > lo else 0.0  # noqa: E731
        top = ", ".join(f"{_e(l)} {p:.3f}" for l, p in rec.probabilities)
        body = (
            f"<div class='verdict{' unknown' if unknown else ''}' data-label='{_e(rec.label)}'>"
            f"{_e(verdict)}</div>"
            f"<div>{_e(score_name)} = {rec.score:.4g} (threshold {rec.threshold:.4g})</div>"
            f"<div class='bar'><span style='width:{pos(rec.score):.1f}%'></span>"
            f"<i style='left:{pos(rec.threshold):.1f}%'></i></div>"
            f"<div>top-{len(rec.probabilities)}: {top}</div>"
            + (f"<div class='warn'>⚠ {_e(rec.warning)}</div>" if rec.warning else "")
        )
    return (
        f"<div class='card' {data}><div class='thumb'>{img}</div><div>"
        f"<div><b>{_e(rec.source)}</b></div>{body}"
        f"<div style='margin-top:.4em'>{_evidence_html(ev)}</div></div></div>"
    )


def render_report(records: Sequence, model: dict, note: str | None = None) -> str:
    """The page for these records; `model` is `Attributor.describe()`."""
    n_unknown = sum(1 for r in records if r.ok and r.label == "unknown")
    n_dis = sum(1 for r in records if r.evidence is not None and r.evidence.disagreement)
    n_signed = sum(1 for r in records if r.evidence is not None and r.evidence.signed)
    meta = (
        f"{len(records)} image(s); known classes: {', '.join(model['classes'])}; score "
        f"{model['score']}, threshold {model['threshold']:.4g}; {n_unknown} unknown, "
        f"{n_dis} where metadata and pixels disagree, {n_signed} with valid C2PA signatures"
    )
    cards = "".join(_card(r, model["score"]) for r in records)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>originprobe: attribution report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>originprobe attribution report</h1>"
        f"<div class='meta'>{_e(meta)}</div>"
        + (f"<div class='warn'>{_e(note)}</div>" if note else "")
        + "<div class='meta'>The verdict comes from the pixels alone. File metadata is shown "
        "beside it as a separate line of evidence: it can be stripped or forged; only claims "
        "marked <i>signed</i> are covered by a valid C2PA signature.</div>"
        "<div class='filters'>Show only: "
        "<label><input type='checkbox' id='f-unknown'> unknown</label>"
        "<label><input type='checkbox' id='f-disagreement'> disagreement</label>"
        "<label><input type='checkbox' id='f-signed'> signed</label>"
        "<span class='meta'><span id='shown'></span> shown</span></div>"
        f"<div id='cards'>{cards}</div>"
        f"<script>{_SCRIPT}</script>"
        f"<script type='application/json' id='model'>{_e(json.dumps(model))}</script>"
        "</body></html>"
    )


def write_report(path: str | Path, records: Sequence, model: dict, note: str | None = None) -> None:
    """Write atomically: an interrupted run never leaves half a page where one was."""
    atomic_write_text(path, render_report(records, model, note))
