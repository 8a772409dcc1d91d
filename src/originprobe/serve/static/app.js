// originprobe page: drop images, POST them to /v1/attribute, show each verdict.
"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("originprobe-token") || "";
let model = null;

function headers() {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function loadModel() {
  const r = await fetch("/v1/model", { headers: headers() });
  if (r.status === 401) {
    $("token-box").hidden = false;
    $("model").textContent = "this server needs an API token";
    return;
  }
  model = await r.json();
  $("token-box").hidden = true;
  $("model").textContent =
    `${model.classes.length} known classes (${model.classes.join(", ")}) · ` +
    `${model.backbone.name || "features"} / ${model.layer} · ${model.head.name} head · ` +
    `score ${model.score}, reject below ${model.threshold.toPrecision(4)}`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function gauge(score, threshold) {
  // msp lies in [0, 1]; other scores are drawn on a span around the score and the threshold
  let lo = 0, hi = 1;
  if (!(model && model.score === "msp")) {
    const span = Math.max(Math.abs(score - threshold), 1e-6) * 2;
    lo = Math.min(score, threshold) - span / 2;
    hi = Math.max(score, threshold) + span / 2;
  }
  const pos = (v) => Math.max(0, Math.min(100, ((v - lo) / (hi - lo)) * 100)) + "%";
  const g = el("div", "gauge");
  g.title = `score ${score.toPrecision(4)}, threshold ${threshold.toPrecision(4)}`;
  const th = el("div", "th"); th.style.left = pos(threshold);
  const sc = el("div", "sc"); sc.style.left = pos(score);
  g.append(th, sc);
  const wrap = el("div");
  wrap.append(g, el("div", "gauge-label",
    `score ${score.toPrecision(4)} ${score >= threshold ? "≥" : "<"} threshold ${threshold.toPrecision(4)}`));
  return wrap;
}

function card(file, result) {
  const c = el("article", "card");
  const img = el("img"); img.alt = file.name; img.src = URL.createObjectURL(file);
  c.append(img, el("div", "name", file.name));
  if (!result || result.error) {
    c.append(el("div", "verdict error", "not attributed: " + (result ? result.error : "no answer")));
    return c;
  }
  const unknown = result.label === "unknown";
  const v = el("div", "verdict " + (unknown ? "unknown" : "known"),
    unknown ? `unknown source (closest: ${result.closest})` : result.label);
  v.dataset.label = result.label;
  c.append(v);
  if (result.warning) c.append(el("div", "warning", "warning: " + result.warning));
  for (const p of result.probabilities) {
    const row = el("div", "bar");
    const track = el("div", "track"); const fill = el("div", "fill");
    fill.style.width = (p.probability * 100).toFixed(1) + "%";
    track.append(fill);
    row.append(el("span", "", p.label), track, el("span", "", (p.probability * 100).toFixed(1) + "%"));
    c.append(row);
  }
  c.append(gauge(result.score, result.threshold));
  c.append(evidence(result.evidence));
  return c;
}

// the file's own claims: a separate line of evidence, never mixed into the verdict above
function evidence(ev) {
  const box = el("div", "evidence");
  if (!ev) { box.append(el("div", "ev-none", "no file metadata read")); return box; }
  box.dataset.agreement = ev.agreement;
  box.dataset.signed = ev.signed ? "1" : "0";
  if (ev.c2pa) {
    const trust = ev.c2pa.trusted === null ? "no trust list configured"
      : (ev.c2pa.trusted ? "signer on the trust list" : "signer NOT on the trust list");
    box.append(el("div", "ev-c2pa " + (ev.c2pa.validation === "valid" ? "signed" : "invalid"),
      `C2PA: ${ev.c2pa.validation.replace("_", " ")} · ${trust} · signer ${ev.c2pa.signer || "?"}`));
  }
  if (ev.agreement !== "no claim") {
    box.append(el("div", "ev-reason " + (ev.disagreement ? "disagree" : "agree"),
      (ev.disagreement ? "⚠ metadata disagrees: " : "metadata agrees: ") + ev.reason));
  } else {
    box.append(el("div", "ev-none", ev.reason || "no provenance metadata"));
  }
  for (const c of ev.claims) {
    box.append(el("div", "ev-claim", `${c.signed ? "signed" : "bare text"} · ${c.source}: ` +
      `${c.value.slice(0, 160)}${c.generator ? " → " + c.generator : ""}`));
  }
  for (const w of ev.warnings) box.append(el("div", "warning", "metadata warning: " + w));
  return box;
}

async function attribute(files) {
  if (!files.length) return;
  $("status").textContent = `attributing ${files.length} image(s)…`;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  let body;
  try {
    const r = await fetch("/v1/attribute", { method: "POST", body: form, headers: headers() });
    body = await r.json();
    if (r.status === 401) { $("token-box").hidden = false; $("status").textContent = "token needed"; return; }
    if (!r.ok && !body.results) {
      $("status").textContent = `refused (${r.status}): ${body.file ? body.file + ": " : ""}${body.reason || body.error}`;
      return;
    }
  } catch (e) {
    $("status").textContent = "request failed: " + e;
    return;
  }
  const results = body.results || [];
  files.forEach((f, i) => $("results").prepend(card(f, results[i])));
  $("status").textContent = `${results.filter((r) => !r.error).length} of ${files.length} attributed`;
}

const drop = $("drop");
drop.addEventListener("click", () => $("files").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("files").click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  attribute([...e.dataTransfer.files]);
});
$("files").addEventListener("change", (e) => { attribute([...e.target.files]); e.target.value = ""; });
$("token-save").addEventListener("click", () => {
  token = $("token").value.trim();
  sessionStorage.setItem("originprobe-token", token);
  loadModel();
});
function showTab(name) {
  const discover = name === "discover";
  $("discover-panel").hidden = !discover;
  for (const id of ["drop", "status", "results"]) $(id).hidden = discover;
  $("tab-attribute").setAttribute("aria-selected", String(!discover));
  $("tab-discover").setAttribute("aria-selected", String(discover));
}

async function discover(files) {
  if (!files.length) return;
  const mcs = parseInt($("discover-mcs").value, 10) || 8;
  $("discover-status").textContent = `attributing and grouping ${files.length} image(s)…`;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  let body;
  try {
    const r = await fetch(`/v1/discover?min_cluster_size=${mcs}`, { method: "POST", body: form, headers: headers() });
    body = await r.json();
    if (r.status === 401) { $("token-box").hidden = false; $("discover-status").textContent = "token needed"; return; }
    if (!r.ok) {
      $("discover-status").textContent = `refused (${r.status}): ${body.file ? body.file + ": " : ""}${body.reason || body.error}`;
      return;
    }
  } catch (e) {
    $("discover-status").textContent = "request failed: " + e;
    return;
  }
  const byName = new Map(files.map((f) => [f.name, f]));
  const box = $("clusters");
  box.replaceChildren();
  const row = (title, sources) => {
    const sec = el("section", "cluster");
    sec.append(el("h3", null, title));
    const strip = el("div", "strip");
    for (const src of sources) {
      const f = byName.get(src);
      if (!f) continue;
      const img = document.createElement("img");
      img.src = URL.createObjectURL(f); img.alt = src; img.title = src;
      strip.append(img);
    }
    sec.append(strip);
    return sec;
  };
  for (const c of body.clusters) {
    box.append(row(`Cluster ${c.cluster} · ${c.size} images · nearest known class ${c.nearest_class} · ${c.claims_text}`,
      c.members.map((m) => m.source)));
  }
  const noise = body.images.filter((r) => r.cluster === -1).map((r) => r.source);
  if (noise.length) box.append(row(`Not grouped (${noise.length})`, noise));
  $("discover-status").textContent = body.message;
}

$("tab-attribute").addEventListener("click", () => showTab("attribute"));
$("tab-discover").addEventListener("click", () => showTab("discover"));
$("discover-files").addEventListener("change", (e) => { discover([...e.target.files]); e.target.value = ""; });
loadModel();
