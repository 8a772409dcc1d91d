"""Provenance evidence beside the pixels: C2PA content credentials (signed here with c2pa-python
under a certificate chain the test makes), PNG text chunks, EXIF and XMP, shown by predict (text,
--json, --out, --report), serve and the Python API, and never changing the pixel verdict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import small_model
from originprobe import Attributor
from originprobe.cli import main
from originprobe.provenance import EvidenceReader
from originprobe.serve import create_app
from provenance_files import make_files, png_with_huge_text

KNOWN3 = ["real", "dalle-mini", "latent-diffusion"]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def files(realgen, tmp_path_factory) -> dict[str, Path]:
    return make_files(realgen, tmp_path_factory.mktemp("provenance"))


@pytest.fixture(scope="module")
def model_dir(realgen, shared_cache, tmp_path_factory) -> Path:
    return small_model(realgen, shared_cache, tmp_path_factory, 40, KNOWN3, layers="stage5,head")


def _images(files) -> list[Path]:
    return [p for k, p in files.items() if "trust" not in k]


# ---------------------------------------------------------------- the reader
def test_each_kind_of_metadata_is_read_with_its_raw_value(files):
    r = EvidenceReader()
    a1111 = r.read(files["a1111.png"])
    assert [(c.source, c.generator, c.signed) for c in a1111.claims] == [
        ("png:parameters", "stable-diffusion", False)
    ]
    assert "Model: v1-5-pruned-emaonly" in a1111.claims[0].value  # raw value kept
    comfy = r.read(files["comfyui.png"])
    assert comfy.claims[0].source == "png:prompt" and "sd_xl_base_1.0" in comfy.claims[0].value
    assert comfy.claims[0].generator == "stable-diffusion"
    exif = r.read(files["exif-software.jpg"])
    assert [(c.source, c.value, c.generator) for c in exif.claims] == [
        ("exif:Software", "Midjourney v6", "midjourney")
    ]
    xmp = r.read(files["xmp-source-type.jpg"])
    assert [(c.source, c.generator, c.generated) for c in xmp.claims] == [
        ("xmp:DigitalSourceType", None, True)
    ]
    assert xmp.claims[0].value.endswith("/trainedAlgorithmicMedia")
    for name in ("plain.png", "plain.jpg"):
        ev = r.read(files[name])
        assert ev.empty and not ev.warnings and ev.to_dict()["claims"] == []


def test_c2pa_validation_states_and_trust_are_separate_facts(files):
    plain, trusting, other = (
        EvidenceReader(),
        EvidenceReader(files["trust"]),
        EvidenceReader(files["other-trust"]),
    )
    signed = plain.read(files["signed.jpg"])
    c = signed.c2pa
    assert c is not None and c.validation == "valid" and c.trusted is None and signed.signed
    assert c.signer == "Test Generator Signer" and c.issuer == "originprobe tests"
    assert c.digital_source_type.endswith("trainedAlgorithmicMedia")
    assert c.actions[0]["action"] == "c2pa.created" and c.actions[0]["software_agent"] == "DALL-E 3"
    assert "originprobe-test-signer" in c.claim_generator
    assert {cl.source for cl in signed.claims if cl.signed} >= {
        "c2pa:softwareAgent",
        "c2pa:digitalSourceType",
    }
    assert (
        next(cl for cl in signed.claims if cl.source == "c2pa:softwareAgent").generator == "dalle"
    )
    # on the configured trust list / not on it: the signature is valid either way
    assert trusting.read(files["signed.jpg"]).c2pa.trusted is True
    untrusted = other.read(files["signed.jpg"])
    assert untrusted.c2pa.validation == "valid" and untrusted.c2pa.trusted is False
    # pixels changed after signing: the content hash no longer matches
    changed = plain.read(files["signed-then-changed.jpg"])
    assert changed.c2pa.validation == "content_changed" and not changed.signed
    assert "assertion.dataHash.mismatch" in changed.c2pa.failures
    assert not any(cl.signed for cl in changed.claims)
    assert any("content changed" in w for w in changed.warnings)


def test_broken_or_outside_manifests_are_warnings_on_the_record(files):
    r = EvidenceReader()
    outside = r.read(files["manifest-outside.jpg"])
    assert outside.c2pa is None and any(
        "not in the file" in w and "not fetched" in w for w in outside.warnings
    )
    truncated = r.read(files["truncated-jumbf.jpg"])
    assert truncated.c2pa is None and any(
        "C2PA manifest unreadable" in w for w in truncated.warnings
    )


def test_huge_metadata_is_refused_within_a_fixed_memory_budget(realgen, tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_with_huge_text(sorted((realgen / "dalle-mini").iterdir())[0], 50))
    tracemalloc.start()
    try:
        ev = EvidenceReader().read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ev.claims == [] and any("50.0 MB exceed" in w for w in ev.warnings)
    assert peak < 8 << 20, f"reading the metadata allocated {peak / 2**20:.1f} MB"


# ---------------------------------------------------------------- predict, API, report
def test_predict_shows_the_evidence_in_every_output(files, model_dir, tmp_path, capsys):
    imgs = [str(p) for p in _images(files)]
    out_csv, out_jsonl, report = tmp_path / "a.csv", tmp_path / "a.jsonl", tmp_path / "r.html"
    assert (
        main(
            [
                "predict",
                str(model_dir),
                *imgs,
                "--json",
                "--quiet",
                "--c2pa-trust",
                str(files["other-trust"]),
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    by = {Path(p["source"]).name: p for p in doc["results"]}
    assert set(by) == {Path(p).name for p in imgs}
    assert doc["evidence_note"] is None
    for name, p in by.items():
        ev = p["evidence"]
        assert ev is not None and p["label"] in KNOWN3 + ["unknown"]
        # the pixel verdict is never overridden: label follows score and threshold alone
        assert (p["label"] == "unknown") == (p["score"] < p["threshold"])
        if ev["named"] not in (None, "generated", "real"):
            assert ev["disagreement"] == (ev["named"] != p["label"])
    assert by["signed.jpg"]["evidence"]["c2pa"]["trusted"] is False
    assert by["signed.jpg"]["evidence"]["signed"] is True
    assert by["signed.jpg"]["evidence"]["disagreement"] is True  # names dalle, a class unknown here
    assert by["signed-then-changed.jpg"]["evidence"]["c2pa"]["validation"] == "content_changed"
    assert by["a1111.png"]["evidence"]["named"] == "stable-diffusion"
    assert by["a1111.png"]["evidence"]["disagreement"] is True
    xmp = by["xmp-source-type.jpg"]
    assert xmp["evidence"]["named"] == "generated"
    assert xmp["evidence"]["disagreement"] == (xmp["label"] == "real")
    assert (
        by["plain.jpg"]["evidence"]["claims"] == []
        and by["plain.jpg"]["evidence"]["agreement"] == "no claim"
    )

    assert (
        main(
            [
                "predict",
                str(model_dir),
                *imgs,
                "--quiet",
                "--out",
                str(out_csv),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    rows = {Path(r["source"]).name: r for r in csv.DictReader(out_csv.open())}
    assert (
        rows["signed.jpg"]["evidence_c2pa"] == "valid"
        and rows["signed.jpg"]["evidence_signed"] == "yes"
    )
    assert rows["plain.png"]["evidence_agreement"] == "no claim"
    assert rows["a1111.png"]["evidence_agreement"] == "disagrees"
    assert main(["predict", str(model_dir), *imgs, "--quiet", "--out", str(out_jsonl)]) == 0
    lines = [json.loads(ln) for ln in out_jsonl.read_text().splitlines()]
    assert {Path(ln["source"]).name: ln["evidence"]["agreement"] for ln in lines} == {
        n: p["evidence"]["agreement"] for n, p in by.items()
    }
    capsys.readouterr()
    assert main(["predict", str(model_dir), str(files["signed.jpg"]), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "evidence: C2PA signature valid" in text and "names dalle" in text
    assert (
        main(
            [
                "predict",
                str(model_dir),
                str(files["signed.jpg"]),
                "--quiet",
                "--no-evidence",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["results"][0]["evidence"] is None


def test_api_and_serve_return_the_same_evidence(files, model_dir):
    att = Attributor.load(model_dir)
    imgs = _images(files)
    api = {p.name: a for p, a in zip(imgs, att.predict(imgs))}
    assert api["signed.jpg"].evidence.signed
    assert api["signed-then-changed.jpg"].evidence.c2pa.validation == "content_changed"
    asgi, _ = create_app(model_dir, max_upload_mb=5.0)
    with TestClient(asgi) as client:
        r = client.post(
            "/v1/attribute",
            files=[("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in imgs],
        )
    assert r.status_code == 200, r.text
    for got in r.json()["results"]:
        assert got["evidence"] == api[got["source"]].to_dict()["evidence"]


def test_without_the_c2pa_extra_predict_works_and_says_how_to_enable_it(files, model_dir):
    code = (
        f"import sys; sys.modules['c2pa'] = None; sys.path.insert(0, {str(TESTS)!r}); "
        "from originprobe.cli import main; "
        f"sys.exit(main(['predict', {str(model_dir)!r}, {str(files['signed.jpg'])!r}, "
        f"{str(files['a1111.png'])!r}, '--json', '--quiet']))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pip install 'originprobe[provenance]'" in r.stderr
    doc = json.loads(r.stdout)
    assert "originprobe[provenance]" in doc["evidence_note"]
    by = {Path(p["source"]).name: p["evidence"] for p in doc["results"]}
    assert by["signed.jpg"]["c2pa"] is None
    assert by["a1111.png"]["named"] == "stable-diffusion"  # unsigned metadata still read


def test_the_analyst_report_filters_in_a_real_browser(files, model_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    from test_serve import _chromium

    report = tmp_path / "report.html"
    imgs = [str(p) for p in _images(files)]
    assert main(["predict", str(model_dir), *imgs, "--quiet", "--report", str(report)]) == 0
    att = Attributor.load(model_dir)
    recs = att.predict(imgs)
    want = {
        "unknown": sum(r.label == "unknown" for r in recs),
        "disagreement": sum(r.evidence.disagreement for r in recs),
        "signed": sum(r.evidence.signed for r in recs),
    }
    assert want["signed"] == 1 and want["disagreement"] >= 3
    page_text = report.read_text()
    assert "src='http" not in page_text and 'src="http' not in page_text
    shot = tmp_path / "report.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), timeout=30_000)
            assert page.locator(".card").count() == len(imgs)
            assert page.locator(".card img").count() == len(imgs)  # every thumbnail inline
            assert page.locator("#shown").text_content() == str(len(imgs))
            for name, n in want.items():
                page.check(f"#f-{name}")
                assert page.locator(".card:not(.hidden)").count() == n, name
                assert page.locator("#shown").text_content() == str(n)
                page.uncheck(f"#f-{name}")
            assert page.locator(".card:not(.hidden) .verdict").count() == len(imgs)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert all(u.startswith("file:") or u.startswith("data:") for u in requests), requests
    assert shot.stat().st_size > 10_000
