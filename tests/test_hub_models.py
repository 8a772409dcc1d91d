"""Fitted models on the Hugging Face Hub, for real but without the internet: `originprobe push`
into a stand-in Hub on 127.0.0.1 (tests/hub_server.py), then `hf://ORG/NAME[@REVISION]` in
predict, enroll and the API: round trip, revision pin, offline use from the cache, a tampered
cached file, the standard cache layout made by hand, the model card, and no token anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import small_model
from hub_server import FakeHub
from originprobe import Attributor
from originprobe.model.card import front_matter

KNOWN3 = ["real", "dalle-mini", "latent-diffusion"]
TOKEN = "hf_secretTOKENvalue1234567890"


def _env(tmp: Path, hub: FakeHub | None, **more) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_HOME": str(tmp / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1", "HF_ENDPOINT": hub.url if hub else "http://127.0.0.1:9",
            "HF_TOKEN": TOKEN}  # fmt: skip
    return env | more


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "originprobe", *args], capture_output=True,
                       text=True, env=env, timeout=300)  # fmt: skip
    assert TOKEN not in r.stdout + r.stderr  # never printed, whatever happened
    return r


def _labels(r: subprocess.CompletedProcess) -> list[tuple[str, str, float]]:
    assert r.returncode == 0, r.stderr
    return [(Path(x["source"]).name, x["label"], round(x["score"], 5))
            for x in json.loads(r.stdout)["results"]]  # fmt: skip


@pytest.fixture(scope="module")
def bundle(realgen, shared_cache, tmp_path_factory) -> Path:
    return small_model(
        realgen, shared_cache, tmp_path_factory, 30, KNOWN3, layers="stage5", score="msp"
    )


@pytest.fixture(scope="module")
def probes(realgen) -> list[str]:
    return [str(p) for c in ("dalle-mini", "real", "pixray-vqgan")
            for p in sorted((realgen / c).iterdir())[40:43]]  # fmt: skip


def test_card_front_matter_parses_and_its_metrics_are_model_json_s(bundle):
    meta = json.loads((bundle / "model.json").read_text())
    card = (bundle / "README.md").read_text()
    fm = front_matter(card)
    assert fm["library_name"] == "originprobe"
    assert {"image-forensics", "synthetic-image-attribution", "open-set"} <= set(fm["tags"])
    assert fm["originprobe"]["classes"] == meta["classes"]
    assert fm["originprobe"]["weights_id"] == meta["backbone"]["weights_id"]
    est = meta["selection"]["estimate"]
    metrics = {m["type"]: m["value"] for m in fm["model-index"][0]["results"][0]["metrics"]}
    assert metrics["balanced_accuracy"] == round(est["balanced_accuracy"], 4)
    assert metrics["roc_auc"] == round(est["auroc"], 4)
    assert metrics["oscr"] == round(est["oscr"], 4)
    data = meta["card"]["training_data"]
    assert data["per_class"] == {c: 30 for c in sorted(KNOWN3)} and len(data["list_sha256"]) == 64
    assert "predict hf://" in card and f"{meta['threshold']:.6g}" in card
    # an edited card is refused on load, named
    edited = bundle.parent / "edited"
    shutil.copytree(bundle, edited)
    (edited / "README.md").write_text(card.replace("statistical", "certain"))
    with pytest.raises(Exception, match="README.md: checksum mismatch"):
        Attributor.load(edited)


def test_push_then_pull_revision_pin_offline_and_tamper(bundle, probes, tmp_path):
    local = _labels(_cli(_env(tmp_path, None), "predict", str(bundle), *probes, "--json",
                         "--no-evidence"))  # fmt: skip
    enrolled = tmp_path / "enrolled"
    with FakeHub({}, token=TOKEN) as hub:
        env = _env(tmp_path, hub)
        r = _cli(env, "push", str(bundle), "lab/detector")
        assert r.returncode == 0, r.stderr
        assert "hf://lab/detector" in r.stdout
        assert set(hub.files("lab/detector")) >= {"model.json", "README.md", "head.safetensors"}
        assert hub.auth and all(a == f"Bearer {TOKEN}" for a in hub.auth)
        assert hub.validated == [True]  # the card's YAML, as the Hub checks it
        pulled = _labels(_cli(env, "predict", "hf://lab/detector", *probes, "--json",
                              "--no-evidence"))  # fmt: skip
        assert pulled == local
        # a second model on a branch: each revision gives its own model
        r = _cli(env, "enroll", "hf://lab/detector", "--name", "pixray", *probes[6:9],
                 "--quiet")  # fmt: skip
        assert r.returncode == 2 and "--out" in r.stderr  # never the cached copy
        r = _cli(env, "enroll", "hf://lab/detector", "--name", "pixray", *probes[6:9],
                 "--out", str(enrolled), "--quiet")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert _cli(env, "push", str(enrolled), "lab/detector", "--revision", "v2").returncode == 0
        main_commit = hub.store["lab/detector"]["branches"]["main"]
        v2_commit = hub.store["lab/detector"]["branches"]["v2"]
        assert main_commit != v2_commit
        describe = ("import json, sys; from originprobe import Attributor; "
                    "a = Attributor.load(sys.argv[1]); "
                    "print(json.dumps([a.classes_, a.describe()['source']]))")  # fmt: skip
        out = subprocess.run([sys.executable, "-c", describe, "hf://lab/detector@v2"], env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        classes, source = json.loads(out.stdout)
        assert "pixray" in classes and source == {"repo": "lab/detector", "revision": "v2",
                                                  "commit": v2_commit}  # fmt: skip
        # refused: a repository holding something else; a bad token
        hub.store["lab/other"] = {"branches": {"main": "c0"},
                                  "commits": {"c0": {"config.json": b"{}"}}}  # fmt: skip
        r = _cli(env, "push", str(bundle), "lab/other")
        assert r.returncode == 2 and "something other than an originprobe model" in r.stderr
        assert set(hub.files("lab/other")) == {"config.json"}
    # offline, from the cache: the same answers; the Hub is gone
    offline = _env(tmp_path, None, HF_HUB_OFFLINE="1")
    assert _labels(_cli(offline, "predict", "hf://lab/detector", *probes, "--json",
                        "--no-evidence")) == local  # fmt: skip
    r = _cli(offline, "predict", "hf://lab/never-pulled", *probes[:1])
    assert r.returncode == 2 and "not in the Hub cache" in r.stderr
    # a tampered cached file is refused, named
    snap = Path(tmp_path / "hf" / "hub" / "models--lab--detector" / "snapshots" / main_commit)
    head = (snap / "head.safetensors").resolve()
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.write_bytes(bytes(data))
    r = _cli(offline, "predict", "hf://lab/detector", *probes[:1])
    assert r.returncode == 2 and "head.safetensors: checksum mismatch" in r.stderr


def test_a_bundle_placed_in_the_standard_cache_layout_works_offline(bundle, probes, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--acme--probe"
    shutil.copytree(bundle, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = _env(tmp_path, None, HF_HUB_OFFLINE="1")
    local = _labels(_cli(env, "predict", str(bundle), *probes, "--json", "--no-evidence"))
    hub = _labels(_cli(env, "predict", "hf://acme/probe", *probes, "--json", "--no-evidence"))
    assert hub == local
    r = _cli(env, "predict", "hf://acme/probe@../../etc", *probes[:1])
    assert r.returncode == 2 and "revision" in r.stderr


def test_evaluate_save_model_card_carries_the_test_figures(small_realgen, shared_cache, tmp_path):
    from conftest import DEMO_KNOWN
    from originprobe.cli import main

    out = tmp_path / "run"
    assert main(["evaluate", "--data", str(small_realgen), "--known", ",".join(DEMO_KNOWN),
                 "--cache", str(shared_cache), "--out", str(out), "--no-progress", "--no-report",
                 "--save-model", "--backbone", "efficientnet-lite0", "--layers", "stage5"]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    fm = front_matter((out / "model" / "README.md").read_text())
    test = fm["model-index"][0]["results"][1]
    assert test["dataset"]["split"] == "test"
    got = {m["type"]: m["value"] for m in test["metrics"]}
    assert got["accuracy"] == round(res["closed_set"]["accuracy"], 4)
    assert got["roc_auc"] == round(res["open_set"]["auroc"], 4)
    assert got["oscr"] == round(res["open_set"]["oscr"], 4)
    assert Attributor.load(out / "model").classes_ == sorted(DEMO_KNOWN)


def test_a_format_3_bundle_without_a_card_is_still_read(bundle, tmp_path, probes):
    from originprobe.model.bundle import _checksum

    old = tmp_path / "v3"
    shutil.copytree(bundle, old)
    meta = json.loads((old / "model.json").read_text())
    meta.pop("card")
    meta["files"].pop("README.md")
    meta["format_version"] = 3
    meta["checksum"] = _checksum(meta)
    (old / "model.json").write_text(json.dumps(meta))
    (old / "README.md").unlink()
    att = Attributor.load(old)
    assert [a.label for a in att.predict(probes)] == \
        [a.label for a in Attributor.load(bundle).predict(probes)]  # fmt: skip
    att.save(tmp_path / "v4")  # saved again: the current format, with its card
    assert json.loads((tmp_path / "v4" / "model.json").read_text())["format_version"] == 4
    assert (tmp_path / "v4" / "README.md").is_file()


def test_serve_an_hf_model_from_the_cache(bundle, probes, tmp_path, monkeypatch):
    import httpx

    from originprobe.serve.process import running_server

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hf" / "hub" / "models--acme--served"
    shutil.copytree(bundle, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for k, v in _env(tmp_path, None, HF_HUB_OFFLINE="1").items():
        monkeypatch.setenv(k, v)  # the server process inherits them
    local = {a.source: a.label for a in Attributor.load(bundle).predict(probes)}
    with running_server("hf://acme/served", tmp_path / "server.log", ready_timeout=120) as (
        base, _,
    ):  # fmt: skip
        model = httpx.get(base + "/v1/model", timeout=30).json()
        assert model["source"] == {"repo": "acme/served", "revision": "main", "commit": commit}
        files = [("files", (Path(p).name, Path(p).read_bytes(), "image/png")) for p in probes]
        body = httpx.post(base + "/v1/attribute", files=files, timeout=120).json()
    assert [r["label"] for r in body["results"]] == [local[p] for p in probes]
