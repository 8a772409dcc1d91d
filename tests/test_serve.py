"""`originprobe serve`: the HTTP API (FastAPI's test client), a real server process, and the page
in a real browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import write_subset
from originprobe import Attributor
from originprobe.cli import main
from originprobe.serve import create_app
from originprobe.serve.process import running_server

KNOWN3 = ["real", "dalle-mini", "latent-diffusion"]


@pytest.fixture(scope="module")
def model_dir(realgen, shared_cache, tmp_path_factory) -> Path:
    data = write_subset(realgen, tmp_path_factory.mktemp("serve-data"), {c: 40 for c in KNOWN3})
    out = tmp_path_factory.mktemp("serve-model") / "model"
    Attributor(
        backbone="efficientnet-lite0", layers="stage5,head", score="msp",
        runtime={"cache": str(shared_cache)},
    ).fit(data, known=KNOWN3).save(out)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def client(model_dir):
    asgi, _ = create_app(model_dir, max_upload_mb=1.0, max_batch=16, max_wait_ms=150)
    with TestClient(asgi) as c:
        yield c


def _probe_images(realgen) -> list[Path]:
    return (
        sorted((realgen / "dalle-mini").iterdir())[200:202]
        + sorted((realgen / "pixray-vqgan").iterdir())[:1]
        + sorted((realgen / "real").iterdir())[300:301]
    )


def _upload(paths) -> list:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and header declaring width×height pixels, with 1 row of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_service_answers_equal_predict_json(client, model_dir, realgen, capsys):
    paths = _probe_images(realgen)
    r = client.post("/v1/attribute", files=_upload(paths))
    assert r.status_code == 200, r.text
    body = r.json()
    assert main(["predict", str(model_dir), *map(str, paths), "--json", "--quiet"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert body["model_id"] == cli["model_id"] and body["model_id"]
    # one predict document: the service's body is predict --json's, less the model's path
    assert body["score"] == cli["score"] and body["threshold"] == cli["threshold"]
    assert set(cli) - {"model"} <= set(body) and "model" not in body
    assert len(body["results"]) == len(cli["results"]) == len(paths)
    for got, want, p in zip(body["results"], cli["results"], paths):
        assert got["source"] == p.name and Path(want["source"]).name == p.name
        assert got["label"] == want["label"] and got["closest"] == want["closest"]
        assert got["threshold"] == want["threshold"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert [x["label"] for x in got["probabilities"]] == [
            x["label"] for x in want["probabilities"]
        ]
        for a, b in zip(got["probabilities"], want["probabilities"]):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)
        assert got["label"] in KNOWN3 + ["unknown"]


def test_model_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    m = client.get("/v1/model").json()
    assert m["classes"] == sorted(KNOWN3) and m["layer"] and m["score"] == "msp"
    assert m["backbone"]["name"] == "efficientnet-lite0" and 0 < m["threshold"] < 1
    assert {"originprobe", "torch", "numpy", "scikit-learn"} <= set(m["versions"])
    assert m["limits"]["max_upload_mb"] == 1.0


def test_bad_uploads_get_4xx_naming_the_file_and_the_server_keeps_serving(client, realgen):
    good = _probe_images(realgen)[:1]
    cases = [
        ("notes.jpg", b"just some text, not a picture", 415, "not an image"),
        ("empty.png", b"", 415, "empty"),
        ("truncated.png", good[0].read_bytes()[:40], 415, ""),
        ("bomb.png", _png_header(20000, 20000), 422, "decompression bomb"),
    ]
    for name, data, status, words in cases:
        r = client.post("/v1/attribute", files=[("files", (name, data, "image/png"))])
        assert r.status_code == status, (name, r.text)
        body = r.json()
        assert body["file"] == name and words in body["reason"].lower()
    # a request mixing a good and a bad file is refused as a whole, naming the bad one
    r = client.post(
        "/v1/attribute", files=_upload(good) + [("files", ("x.gif", b"GIF89a-broken", "image/gif"))]
    )
    assert r.status_code in (415, 422) and r.json()["file"] == "x.gif"
    # over --max-upload-mb (1 MB here): 413, declared or streamed
    big = os.urandom(int(1.5 * 2**20))
    r = client.post("/v1/attribute", files=[("files", ("big.png", big, "image/png"))])
    assert r.status_code == 413 and "max-upload-mb" in r.json()["reason"]
    # no files at all: a validation error, not a 500
    assert client.post("/v1/attribute").status_code == 422
    r = client.post("/v1/attribute", files=_upload(good))
    assert r.status_code == 200 and r.json()["results"][0]["label"]


def test_metrics_count_requests_and_latency(client, realgen):
    client.post("/v1/attribute", files=_upload(_probe_images(realgen)[:1]))
    client.post("/v1/attribute", files=[("files", ("n.txt", b"hello", "text/plain"))])
    text = client.get("/metrics").text
    assert re.search(
        r'originprobe_requests_total\{endpoint="/v1/attribute",method="POST",'
        r'status="200"\} [1-9]',
        text,
    )
    assert re.search(
        r'originprobe_requests_total\{endpoint="/v1/attribute",method="POST",'
        r'status="415"\} [1-9]',
        text,
    )
    assert 'originprobe_request_seconds_bucket{endpoint="/v1/attribute",le="0.5"}' in text
    assert "originprobe_batch_images_count" in text


def test_concurrent_requests_share_forward_passes(client, realgen):
    def batches() -> float:
        m = re.search(r"^originprobe_batch_images_count (\S+)$", client.get("/metrics").text, re.M)
        return float(m.group(1))

    before = batches()
    paths = sorted((realgen / "glid3-xl").iterdir())[:12]
    with ThreadPoolExecutor(12) as pool:
        rs = list(pool.map(lambda p: client.post("/v1/attribute", files=_upload([p])), paths))
    assert all(r.status_code == 200 for r in rs)
    assert batches() - before < len(paths)  # some requests were answered together


def test_token_required_when_set(model_dir, realgen):
    asgi, _ = create_app(model_dir, token="s3cret-token")
    with TestClient(asgi) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/model").status_code == 401
        r = c.post("/v1/attribute", files=_upload(_probe_images(realgen)[:1]))
        assert r.status_code == 401 and "ORIGINPROBE_API_TOKEN" in r.json()["reason"]
        auth = {"Authorization": "Bearer s3cret-token"}
        assert c.get("/v1/model", headers=auth).status_code == 200
        assert c.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_serve_refuses_other_interfaces_without_a_token(model_dir, capsys, monkeypatch):
    monkeypatch.delenv("ORIGINPROBE_API_TOKEN", raising=False)
    assert main(["serve", str(model_dir), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "ORIGINPROBE_API_TOKEN" in err
    assert main(["serve", str(model_dir), "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb" in capsys.readouterr().err


def test_page_and_assets_are_served_by_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert src.startswith("/static/"), f"asset {src} is not served locally"
        assert client.get(src).status_code == 200
    assert client.get("/static/../pyproject.toml").status_code == 404


# ---------------------------------------------------------------- a real server and a browser
def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Debian's chromium is needed for the browser test: apt-get install -y chromium "
        "(.ci/run installs it)"
    )


@pytest.fixture()
def server(model_dir, tmp_path):
    with running_server(model_dir, tmp_path / "server.log", ready_timeout=120) as (base, _):
        yield base


def test_page_in_a_real_browser_shows_the_verdict(server, realgen, tmp_path):
    from playwright.sync_api import sync_playwright

    image = sorted((realgen / "dalle-mini").iterdir())[210]
    shot = tmp_path / "page.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(server + "/", timeout=30_000)
            page.wait_for_function(
                "document.getElementById('model').textContent.includes('known classes')",
                timeout=30_000,
            )
            page.set_input_files("#files", str(image))
            verdict = page.wait_for_selector(".card .verdict", timeout=60_000)
            label = verdict.get_attribute("data-label")
            assert label in KNOWN3 + ["unknown"]
            assert page.locator(".card .bar").count() == 3
            assert page.locator(".card .gauge").count() == 1
            # the file's own claims are drawn beside the verdict, never in it
            assert page.locator(".card .evidence").count() == 1
            assert page.locator(".card .evidence").get_attribute("data-agreement") == "no claim"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert all(u.startswith(server) or u.startswith("blob:") for u in requests), requests
    assert shot.stat().st_size > 5000
    with Image.open(shot) as im:
        assert im.size[0] == 1000
    print(f"screenshot: {shot}")


def test_page_discover_tab_groups_the_rejected_uploads(server, realgen):
    from playwright.sync_api import sync_playwright

    images = [str(p) for g in ("pixray-vqgan", "disco-diffusion", "stable-diffusion-v1")
              for p in sorted((realgen / g).iterdir())[:12]]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(server + "/", timeout=30_000)
            page.click("#tab-discover")
            assert page.is_hidden("#drop") and page.is_visible("#discover-panel")
            page.fill("#discover-mcs", "3")
            page.set_input_files("#discover-files", images)
            page.wait_for_function(
                "/rejected|nothing to group/.test(document.getElementById('discover-status')"
                ".textContent)", timeout=120_000,
            )  # fmt: skip
            status = page.text_content("#discover-status")
            m = re.search(r"grouped into (\d+) cluster\(s\), (\d+) left as noise", status)
            assert m, status
            clusters, noise = int(m[1]), int(m[2])
            assert page.locator("section.cluster").count() == clusters + (1 if noise else 0)
            assert page.locator("section.cluster img").count() >= 3 * clusters
            page.click("#tab-attribute")
            assert page.is_visible("#drop")
        finally:
            browser.close()
