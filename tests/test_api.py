"""The Python API: `originprobe.Attributor` fits, predicts mixed inputs, saves, loads, enrols,
and gives the command line's answers; the README's example runs as written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, write_subset
from originprobe import Attribution, Attributor, BundleError
from originprobe.cli import main
from originprobe.heads import HEADS

KNOWN3 = ["real", "dalle-mini", "latent-diffusion"]


@pytest.fixture(scope="module")
def fitted(realgen, shared_cache, tmp_path_factory):
    data = write_subset(realgen, tmp_path_factory.mktemp("api-data"), {c: 40 for c in KNOWN3})
    att = Attributor(
        backbone="efficientnet-lite0", layers="stage5,head", score="msp",
        runtime={"cache": str(shared_cache)},
    ).fit(data, known=KNOWN3)  # fmt: skip
    return att, data


def _images(realgen, label, start, n):
    return sorted((realgen / label).iterdir())[start : start + n]


def test_predict_takes_paths_pil_images_arrays_and_bytes_mixed(fitted, realgen):
    att, _ = fitted
    paths = _images(realgen, "dalle-mini", 100, 4)
    by_path = att.predict(paths)
    img = Image.open(paths[1])
    inputs = [
        paths[0],
        img,
        np.asarray(Image.open(paths[2]).convert("RGB")),
        paths[3].read_bytes(),
        b"definitely not an image",
    ]
    mixed = att.predict(inputs)
    assert len(mixed) == 5 and all(isinstance(a, Attribution) for a in mixed)
    for a, b in zip(mixed[:4], by_path):
        assert a.error is None and a.label == b.label and a.closest == b.closest
        assert a.score == pytest.approx(b.score, abs=1e-5)
    assert mixed[4].label is None and "not an image" in mixed[4].error
    for a in mixed[:4]:
        assert a.label in KNOWN3 + ["unknown"] and a.closest in KNOWN3
        assert a.threshold == att.threshold_
        assert (a.label == "unknown") == (a.score < a.threshold)
        probs = [p for _, p in a.probabilities]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert a.score == pytest.approx(probs[0], abs=1e-6)  # msp: the score is the top-1
    scores = att.decision_scores(paths)
    assert np.allclose(scores, [a.score for a in by_path], atol=1e-6)


def test_save_load_gives_identical_predictions_and_validates(fitted, realgen, tmp_path):
    att, _ = fitted
    imgs = _images(realgen, "real", 200, 5) + _images(realgen, "pixray-vqgan", 0, 5)
    before = [a.to_dict() for a in att.predict(imgs)]
    att.save(tmp_path / "m")
    again = Attributor.load(tmp_path / "m")
    assert [a.to_dict() for a in again.predict(imgs)] == before
    assert again.describe()["classes"] == sorted(KNOWN3)
    with pytest.raises(RuntimeError, match="not fitted"):
        Attributor().predict(imgs)


def test_fit_features_with_arrays_and_with_layers(fitted):
    att, _ = fitted
    X, y = att.reference_
    plain = Attributor(head="knn").fit_features(X, y)
    assert plain.classes_ == sorted(KNOWN3)
    assert plain.decision_scores(X[:5]).shape == (5,)
    with pytest.raises(ValueError, match="features alone"):
        plain.predict([np.zeros((8, 8, 3), np.uint8)])
    rng = np.random.default_rng(0)
    layers = {"good": X, "noise": rng.normal(size=(len(X), 4)).astype(np.float32)}
    chosen = Attributor(selection={"layer_search": "single"}).fit_features(layers, y)
    assert str(chosen.layer_) == "good"


@pytest.mark.parametrize("head", HEADS.names())
def test_every_head_msp_score_is_the_printed_top1_probability(
    head, fitted, realgen, tmp_path, capsys
):
    """Through the command line, for every head: the msp score printed equals the top-1
    probability printed beside it, and the CLI and the API give the same answer."""
    att, data = fitted
    X, y = att.reference_
    model = Attributor(
        backbone="efficientnet-lite0", head=head, score="msp", layers=str(att.layer_)
    ).use_backbone(att.load_backbone())
    model.fit_features({p: X[:, sl] for p, sl in _slices(att)}, y)
    model.save(tmp_path / "m")
    imgs = _images(realgen, "real", 300, 2) + _images(realgen, "midjourney-v3", 0, 2)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m"), *map(str, imgs), "--json", "--quiet"]) == 0
    cli = json.loads(capsys.readouterr().out)["results"]
    api = [a.to_dict() for a in Attributor.load(tmp_path / "m").predict(imgs)]
    assert cli == api
    for p in cli:
        assert p["score"] == pytest.approx(p["probabilities"][0]["probability"], abs=1e-6)
    assert main(["predict", str(tmp_path / "m"), str(imgs[0]), "--quiet"]) == 0
    line = capsys.readouterr().out
    score = float(re.search(r"msp=([0-9.e-]+)", line).group(1))
    top1 = float(re.search(r"top-3: \S+ ([0-9.]+)", line).group(1))
    assert score == pytest.approx(top1, abs=1e-3)


def _slices(att):
    """Column slices of each base layer inside the selected (concatenated) features."""
    bb = att.load_backbone()
    start = 0
    for p in att.layer_.parts:
        d = bb.feature_dims[p]
        yield p, slice(start, start + d)
        start += d


@pytest.mark.parametrize("head", HEADS.names())
def test_enroll_works_from_the_bundle_alone_for_every_head(head, fitted, realgen, tmp_path):
    """A bundle copied to another place, with no feature cache anywhere, enrols a generator."""
    att, _ = fitted
    X, y = att.reference_
    model = Attributor(
        backbone="efficientnet-lite0", head=head, layers=str(att.layer_)
    ).use_backbone(att.load_backbone())
    model.fit_features({p: X[:, sl] for p, sl in _slices(att)}, y)
    model.save(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere")
    copied = Attributor.load(tmp_path / "elsewhere")
    mj = sorted((realgen / "midjourney-v3").iterdir())
    n, errors = copied.enroll("midjourney-v3", mj[:25])
    assert n == 25 and not errors
    copied.save(tmp_path / "elsewhere")
    back = Attributor.load(tmp_path / "elsewhere")
    assert back.classes_ == sorted(KNOWN3 + ["midjourney-v3"])
    held_out = back.predict(mj[25:45])
    assert np.mean([a.closest == "midjourney-v3" for a in held_out]) >= 0.5, head
    with pytest.raises(ValueError, match="already known"):
        back.enroll("real", mj[:2])


def test_a_hand_edited_bundle_with_a_recomputed_checksum_is_refused(fitted, tmp_path):
    """Schema validation: a shorter class list, a missing threshold, a NaN threshold, an
    unknown score name or a removed tensor are refused at load, naming the file."""
    import hashlib

    from originprobe.fileio import canonical_json

    att, _ = fitted
    att.save(tmp_path / "m")
    original = json.loads((tmp_path / "m" / "model.json").read_text())

    def forged(edit) -> Path:
        d = tmp_path / f"forged-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tmp_path / "m", d)
        meta = json.loads(json.dumps(original))
        edit(meta)
        meta.pop("checksum", None)
        meta["checksum"] = hashlib.sha256(canonical_json(meta)).hexdigest()
        (d / "model.json").write_text(json.dumps(meta))
        return d

    cases = {
        "classes": lambda m: (
            m.__setitem__("classes", m["classes"][:2]),
            m["head"].__setitem__("classes", m["head"]["classes"][:2]),
        ),
        "threshold": lambda m: m.pop("threshold"),
        "finite": lambda m: m.__setitem__("threshold", float("nan")),
        "unknown score": lambda m: m.__setitem__("score", {"name": "telepathy"}),
        "backbone": lambda m: m.pop("backbone"),
        "head": lambda m: m["head"].__setitem__("name", "oracle"),
    }
    for what, edit in cases.items():
        d = forged(edit)
        with pytest.raises(BundleError) as err:
            Attributor.load(d)
        assert "model.json" in str(err.value) or "safetensors" in str(err.value), what
    # a tensor removed from the head file (its digest recomputed too) is refused, not a KeyError
    from safetensors.numpy import load_file, save_file

    d = forged(lambda m: None)
    tensors = load_file(str(d / "head.safetensors"))
    save_file({k: v for k, v in tensors.items() if k != "coef"}, str(d / "head.safetensors"))
    meta = json.loads((d / "model.json").read_text())
    from originprobe.fileio import sha256_file

    meta["files"]["head.safetensors"] = sha256_file(d / "head.safetensors")
    meta.pop("checksum")
    meta["checksum"] = hashlib.sha256(canonical_json(meta)).hexdigest()
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="coef"):
        Attributor.load(d)


def test_signed_bundles(fitted, tmp_path, monkeypatch):
    att, _ = fitted
    att.save(tmp_path / "unsigned")
    monkeypatch.setenv("ORIGINPROBE_BUNDLE_KEY", "correct horse")
    with pytest.raises(BundleError, match="not signed"):
        Attributor.load(tmp_path / "unsigned")
    att.save(tmp_path / "signed")
    Attributor.load(tmp_path / "signed")
    monkeypatch.setenv("ORIGINPROBE_BUNDLE_KEY", "battery staple")
    with pytest.raises(BundleError, match="bad signature"):
        Attributor.load(tmp_path / "signed")
    monkeypatch.delenv("ORIGINPROBE_BUNDLE_KEY")
    Attributor.load(tmp_path / "signed")  # without a key the checksum still guards it


def test_readme_python_example_runs(realgen, shared_cache, tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    code = code.replace('"../shared/data/realgen"', repr(str(realgen)))
    code = code.replace('".cache/features"', repr(str(shared_cache)))
    assert repr(str(shared_cache)) in code  # the example uses the session's feature cache
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=1200
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "runs" / "api-model" / "model.json").is_file()
    lines = r.stdout.strip().splitlines()
    assert any("real" in ln for ln in lines) and "enrolled" in r.stdout
