"""Native-resolution crops (`NAME@native`), the `forensic` pixel-statistics backbone, and fusions
of backbones (`A+B`): what each reads, and that a fusion is exactly its members side by side."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import write_subset
from originprobe import Attributor
from originprobe.backbones import load_backbone
from originprobe.data import Sample
from originprobe.features import extract_arrays, extract_features, open_store
from originprobe.runtime import Runtime

W0 = Runtime(workers=0)  # decode in the calling thread


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0")


def test_native_crop_keeps_the_pixels(realgen, tmp_path):
    bb = load_backbone("efficientnet-lite0@native")
    pre = bb.preprocessing
    assert bb.name == "efficientnet-lite0@native" and pre.crop == "native"
    assert pre.input_size == 256 and pre.draft_size is None  # never decoded smaller
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)  # the weights' own
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (300, 280, 3), np.uint8)  # H=300, W=280
    x = pre.to_uint8(Image.fromarray(big)).permute(1, 2, 0).numpy()
    assert np.array_equal(x, big[22:278, 12:268])  # the centre, unresampled
    small = rng.integers(0, 256, (60, 100, 3), np.uint8)
    y = pre.to_uint8(Image.fromarray(small)).permute(1, 2, 0).numpy()
    assert y.shape == (256, 256, 3)
    assert np.array_equal(y[:60, :100], small)  # mirrored, not resampled
    assert np.array_equal(y[60:120, :100], small[::-1])
    assert load_backbone("efficientnet-lite0@native320").preprocessing.input_size == 320
    for bad in (
        "efficientnet-lite0@bogus",
        "efficientnet-lite0@native8",
        "efficientnet-lite0+efficientnet-lite0",
        "efficientnet-lite0+",
    ):
        with pytest.raises(ValueError):
            load_backbone(bad)


def test_native_and_resized_views_differ_and_are_cached_apart(lite0):
    nat = load_backbone("efficientnet-lite0@native")
    assert nat.cache_key() != lite0.cache_key() and nat.weights_id == lite0.weights_id


def test_fusion_is_its_members_side_by_side(realgen, lite0, tmp_path):
    paths = sorted((realgen / "glid3-xl").iterdir())[:6] + [tmp_path / "missing.png"]
    fused = load_backbone("efficientnet-lite0+efficientnet-lite0@native+forensic")
    assert fused.layer_names[0] == "efficientnet-lite0/stage0"
    assert "efficientnet-lite0@native/head" in fused.layer_names
    assert "forensic/spectrum" in fused.layer_names
    want = ["efficientnet-lite0/stage5", "efficientnet-lite0@native/head", "forensic/residual"]
    f, order, errors, _ = extract_arrays(paths, fused, want, W0)
    assert order == list(range(6)) and len(errors) == 1 and "missing.png" in errors[0].path
    a, _, _, _ = extract_arrays(paths[:6], lite0, ["stage5"], W0)
    b, _, _, _ = extract_arrays(paths[:6], load_backbone("efficientnet-lite0@native"), ["head"], W0)
    c, _, _, _ = extract_arrays(paths[:6], load_backbone("forensic"), ["residual"], W0)
    np.testing.assert_allclose(f[want[0]], a["stage5"], atol=1e-5)
    np.testing.assert_allclose(f[want[1]], b["head"], atol=1e-5)
    np.testing.assert_allclose(f[want[2]], c["residual"], atol=1e-5)
    assert not np.allclose(
        a["stage5"],
        extract_arrays(paths[:6], load_backbone("efficientnet-lite0@native"), ["stage5"], W0)[0][
            "stage5"
        ],
        atol=1e-3,
    )


def test_fusion_store_reuses_what_each_member_has(realgen, lite0, tmp_path):
    samples = [Sample(path=p, label="x") for p in sorted((realgen / "real").iterdir())[:20]]
    cache = tmp_path / "cache"
    r0 = extract_features(samples, lite0, open_store(cache, lite0), ["stage5"])
    assert r0.computed == 20
    fused = load_backbone("efficientnet-lite0+forensic")
    store = open_store(cache, fused)
    r = extract_features(samples, fused, store, ["efficientnet-lite0/stage5", "forensic/spectrum"])
    assert r.computed == 20 and r.cached == 0  # forensic computed; lite0 rows reused
    assert len(list((cache).glob("efficientnet-lite0-*/shard-*"))) == 1  # nothing rewritten
    from originprobe.data.samples import hash_samples

    hashed, _ = hash_samples(samples)
    np.testing.assert_array_equal(
        store.load([s.sha256 for s in hashed], "efficientnet-lite0/stage5"),
        open_store(cache, lite0).load([s.sha256 for s in hashed], "stage5"),
    )
    again = extract_features(
        samples, fused, store, ["efficientnet-lite0/stage5", "forensic/spectrum"]
    )
    assert again.computed == 0 and again.cached == 20


def test_a_fused_model_fits_saves_loads_and_predicts(realgen, shared_cache, tmp_path):
    known = ["real", "dalle-mini", "latent-diffusion"]
    data = write_subset(realgen, tmp_path / "data", {c: 30 for c in known})
    att = Attributor(
        backbone="efficientnet-lite0+forensic",
        layers="efficientnet-lite0/stage5,forensic/residual,forensic/spectrum",
        runtime={"cache": str(shared_cache)},
    ).fit(data, known=known)
    assert all("/" in p for p in att.layer_.parts)
    probe = sorted((realgen / "dalle-mini").iterdir())[150:154]
    before = att.predict(probe)
    att.save(tmp_path / "model")
    loaded = Attributor.load(tmp_path / "model")
    after = loaded.predict(probe)
    for x, y in zip(before, after):
        assert x.label == y.label and x.score == pytest.approx(y.score, abs=1e-6)
    assert loaded.describe()["backbone"]["name"] == "efficientnet-lite0+forensic"


def test_forensic_spectrum_sees_a_periodic_upsampling_trace(realgen):
    bb = load_backbone("forensic")
    img = np.asarray(Image.open(sorted((realgen / "real").iterdir())[5]).convert("RGB"))
    img = img[:256, :256].astype(np.int16)
    trace = img.copy()
    trace[::2, ::2] += 6  # a period-2 grid, as a stride-2 upsampling leaves
    trace = np.clip(trace, 0, 255).astype(np.uint8)
    f, _, _, _ = extract_arrays(
        [img.astype(np.uint8), trace], bb, ["spectrum", "residual", "autocorr"], W0
    )
    for v in f.values():
        assert np.isfinite(v).all()
    peak_half_freq = 24 + 2  # peak features after the 24 radial bins: (1/2, 1/2) is third
    assert f["spectrum"][1, peak_half_freq] > f["spectrum"][0, peak_half_freq] + 1.0
    g, _, _, _ = extract_arrays([img.astype(np.uint8)], bb, ["spectrum"], W0)
    np.testing.assert_allclose(g["spectrum"][0], f["spectrum"][0], rtol=1e-4, atol=1e-4)
