"""From a folder of labelled images to results, a saved model and attributions, via the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_KNOWN, DEMO_UNKNOWN, REPO, write_subset
from originprobe import Attributor, BundleError
from originprobe.cli import main
from originprobe.heads import LinearHead
from originprobe.report import REQUIRED_KEYS, get_key

KNOWN = ",".join(DEMO_KNOWN)


@pytest.fixture(scope="module")
def run_dir(small_realgen, shared_cache, tmp_path_factory, monkeypatch_module):
    """One evaluate run; every cross-validation of the head is recorded (rows, labels)."""
    fitted = []
    orig = LinearHead.cross_decisions

    def spy(self, X, y, *args, **kw):
        fitted.append((len(X), set(np.asarray(y).tolist())))
        return orig(self, X, y, *args, **kw)

    monkeypatch_module.setattr(LinearHead, "cross_decisions", spy)
    out = tmp_path_factory.mktemp("run")
    rc = main(
        [
            "evaluate",
            "--data",
            str(small_realgen),
            "--known",
            KNOWN,
            "--cache",
            str(shared_cache),
            "--out",
            str(out),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage4,stage5,head",
        ]
    )
    assert rc == 0
    return out, fitted


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_evaluate_writes_all_required_results(run_dir):
    out, _ = run_dir
    res = json.loads((out / "results.json").read_text())
    for key in REQUIRED_KEYS:
        v = get_key(res, key)
        if key in (
            "closed_set.accuracy",
            "closed_set.macro_f1",
            "open_set.auroc",
            "open_set.oscr",
            "open_set.ccr_at_fpr05",
            "open_set.tnr_at_tpr95",
        ):
            assert 0.0 <= v <= 1.0, key
    assert set(res["open_set"]["per_unknown_auroc"]) == set(DEMO_UNKNOWN)
    assert all(0 <= v <= 1 for v in res["open_set"]["per_unknown_auroc"].values())
    # the layers asked for, combined as the layer search does (auto: concatenated)
    assert res["selected"]["layer"] == "stage4+stage5+head"
    assert {c["layer"] for c in res["candidates"]} == {"stage4+stage5+head"}
    assert res["selected"]["C"] in LinearHead.param_grid["C"]
    assert res["known_classes"] == DEMO_KNOWN
    assert sorted(res["unknown_classes"]) == sorted(DEMO_UNKNOWN)
    assert set(res["counts"]["test"]) == set(DEMO_KNOWN) | set(DEMO_UNKNOWN)
    assert set(res["counts"]["train"]) == set(DEMO_KNOWN) == set(res["counts"]["val"])
    # the head is clearly better than chance even on this small subset
    assert res["closed_set"]["accuracy"] > 0.5
    md = (out / "results.md").read_text()
    assert "OSCR" in md and "chosen" in md and "known-only estimate" in md
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["known"] == DEMO_KNOWN and cfg["seed"] == 0
    assert (out / "errors.csv").read_text().splitlines() == ["path,reason"]
    preds = (out / "predictions.csv").read_text().splitlines()
    assert len(preds) == 1 + sum(res["counts"]["test"].values())


def test_heads_are_fitted_on_known_training_classes_only(run_dir):
    out, fitted = run_dir
    res = json.loads((out / "results.json").read_text())
    n_train = sum(res["counts"]["train"].values()) + sum(res["counts"]["val"].values())
    assert fitted, "the head was never fitted"
    for n, labels in fitted:
        assert labels == set(DEMO_KNOWN)
        assert n == n_train  # every known-class training image, never a test row


def test_second_run_recomputes_nothing(run_dir, small_realgen, shared_cache, tmp_path):
    out, _ = run_dir
    rc = main(
        [
            "evaluate",
            "--data",
            str(small_realgen),
            "--known",
            KNOWN,
            "--cache",
            str(shared_cache),
            "--out",
            str(tmp_path),
            "--no-progress",
            "--seed",
            "5",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage5",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["timing"]["extracted"] == 0
    assert res["timing"]["cached"] > 0


def test_separate_test_data(realgen, shared_cache, small_realgen, tmp_path):
    # images 20..59 of each known class: 10 of them are also in the test manifest (images 0..29)
    train = write_subset(realgen, tmp_path / "train", {c: 40 for c in DEMO_KNOWN}, skip=20)
    rc = main(
        [
            "evaluate",
            "--data",
            str(train),
            "--test-data",
            str(small_realgen),
            "--known",
            KNOWN,
            "--unknown",
            "pixray-vqgan",
            "--cache",
            str(shared_cache),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage5",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["unknown_classes"] == ["pixray-vqgan"]
    # an image used for training or validation is never tested on; other labels are left out
    assert res["counts"]["test"] == {c: 20 for c in DEMO_KNOWN} | {"pixray-vqgan": 25}
    assert res["counts"]["train"] == {c: 30 for c in sorted(DEMO_KNOWN)}


def test_fit_predict_and_bundle_integrity(small_realgen, shared_cache, tmp_path, capsys, realgen):
    model = tmp_path / "model"
    assert (
        main(
            [
                "fit",
                "--data",
                str(small_realgen),
                "--known",
                KNOWN,
                "--cache",
                str(shared_cache),
                "--out",
                str(model),
                "--no-progress",
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage5,head",
            ]
        )
        == 0
    )
    meta = json.loads((model / "model.json").read_text())
    assert meta["format_version"] == 4 and meta["classes"] == sorted(DEMO_KNOWN)
    assert sorted(p.name for p in model.iterdir()) == [
        "README.md",  # the model card
        "head.safetensors",
        "model.json",
        "reference.safetensors",
    ]
    # files the tool writes get the usual permissions, not safetensors' 0600
    assert all((p.stat().st_mode & 0o044) == 0o044 for p in model.iterdir())
    capsys.readouterr()
    imgs = [
        realgen / "real" / sorted((realgen / "real").iterdir())[0].name,
        realgen / "pixray-vqgan",
    ]
    assert main(["predict", str(model), *map(str, imgs), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    preds = [r for r in out["results"] if r["label"]]
    assert len(preds) == 1 + len(list((realgen / "pixray-vqgan").iterdir()))
    for p in preds:
        assert p["label"] in DEMO_KNOWN + ["unknown"]
        assert len(p["probabilities"]) == 3
        probs = [t["probability"] for t in p["probabilities"]]
        assert probs == sorted(probs, reverse=True) and 0 <= probs[0] <= 1
        assert (p["label"] == "unknown") == (p["score"] < out["threshold"])
        if out["score"] == "msp":  # the score is the top-1 probability
            assert p["score"] == pytest.approx(probs[0], abs=1e-6)
    # plain text output names each file and its verdict
    assert main(["predict", str(model), str(imgs[0])]) == 0
    line = capsys.readouterr().out.strip()
    assert str(imgs[0]) in line and "top-3" in line

    # tampering is refused, never loaded
    original = (model / "model.json").read_text()
    (model / "model.json").write_text(
        original.replace(f'"threshold": {meta["threshold"]}', '"threshold": -1000.0')
    )
    with pytest.raises(BundleError, match="checksum"):
        Attributor.load(model)
    assert main(["predict", str(model), str(imgs[0])]) == 2
    assert "checksum" in capsys.readouterr().err
    (model / "model.json").write_text(original)
    Attributor.load(model)
    blob = bytearray((model / "head.safetensors").read_bytes())
    blob[-3] ^= 0xFF
    (model / "head.safetensors").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="head.safetensors"):
        Attributor.load(model)


def test_version_mismatch_is_refused(tmp_path):
    import hashlib

    from originprobe.fileio import canonical_json

    d = tmp_path / "m"
    d.mkdir()
    meta = {"format": "originprobe-model", "format_version": 99}
    meta["checksum"] = hashlib.sha256(canonical_json(meta)).hexdigest()
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="version 99"):
        Attributor.load(d)
    with pytest.raises(BundleError, match="missing"):
        Attributor.load(tmp_path)


def test_bad_input_errors_name_the_file_and_keep_previous_results(tmp_path, capsys, small_realgen):
    missing = tmp_path / "nope"
    assert (
        main(["evaluate", "--data", str(missing), "--known", "a,b", "--out", str(tmp_path / "r")])
        == 2
    )
    assert str(missing) in capsys.readouterr().err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text('{"previous": true}')
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(small_realgen),
                "--known",
                KNOWN,
                "--head",
                "linear",
                "--score",
                "reference",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "does not support score 'reference'" in capsys.readouterr().err
    assert json.loads((tmp_path / "r" / "results.json").read_text()) == {"previous": True}
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(small_realgen),
                "--known",
                "real,not-a-class",
                "--out",
                str(tmp_path / "r2"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "not-a-class" in capsys.readouterr().err


def test_console_entry_point_runs():
    r = subprocess.run(
        [sys.executable, "-m", "originprobe", "backbones"], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 0, r.stderr
    assert "efficientnet-lite0" in r.stdout


def test_enroll_a_new_generator_keeps_earlier_classes(realgen, shared_cache, tmp_path, capsys):
    known = ["real", "dalle-mini", "latent-diffusion"]
    data = write_subset(realgen, tmp_path / "fit", {c: 60 for c in known})
    model = tmp_path / "model"
    assert (
        main(
            [
                "fit",
                "--data",
                str(data),
                "--known",
                ",".join(known),
                "--cache",
                str(shared_cache),
                "--out",
                str(model),
                "--no-progress",
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage5",
            ]
        )
        == 0
    )
    # 20 enrolment images of midjourney-v3, then 30 different ones to check recognition
    mj = sorted((realgen / "midjourney-v3").iterdir())
    enrol, held_out = mj[:20], mj[20:50]
    check_known = [sorted((realgen / c).iterdir())[60:120] for c in known]

    def predictions(paths):
        capsys.readouterr()
        assert main(["predict", str(model), *map(str, paths), "--json"]) == 0
        return {
            Path(p["source"]).name: p["closest"]
            for p in json.loads(capsys.readouterr().out)["results"]
        }

    before = [predictions(paths) for paths in check_known]
    assert (
        main(["enroll", str(model), "--label", "midjourney-v3", *map(str, enrol), "--no-progress"])
        == 0
    )
    assert Attributor.load(model).classes_ == sorted(known + ["midjourney-v3"])
    after_new = predictions(held_out)
    assert np.mean([v == "midjourney-v3" for v in after_new.values()]) >= 0.6
    after = [predictions(paths) for paths in check_known]
    acc_before = np.mean([v == c for c, b in zip(known, before) for v in b.values()])
    acc_after = np.mean([v == c for c, a in zip(known, after) for v in a.values()])
    print(f"earlier classes: accuracy {acc_before:.3f} before enrolment, {acc_after:.3f} after")
    # a fourth class makes the problem harder; earlier classes may lose a little, not collapse
    assert acc_after >= acc_before - 0.05
    assert main(["enroll", str(model), "--label", "real", str(enrol[0])]) == 2
    assert "already known" in capsys.readouterr().err


def test_dry_run_counts_a_dataset_without_extracting(small_realgen, tmp_path, capsys):
    cache = tmp_path / "cache"
    rc = main(
        [
            "evaluate",
            "--data",
            str(small_realgen),
            "--known",
            KNOWN,
            "--dry-run",
            "--cache",
            str(cache),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and not cache.exists()
    assert "| real | 30 |" in out and "| pixray-vqgan | 25 |" in out
    assert "| missing files | 0 |" in out
    assert main(["evaluate", "--data", str(small_realgen), "--known", KNOWN]) == 2
    assert "--out is required" in capsys.readouterr().err
