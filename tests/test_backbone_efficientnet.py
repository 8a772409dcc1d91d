"""The embedded backbone: weights and preprocessing are right, and all layers come from one pass."""
from __future__ import annotations

import numpy as np
import torch

from originprobe.backbones import BACKBONES, load_backbone
from originprobe.data import load_dataset, load_image

from conftest import read_manifest


def test_bundled_backbone_names_imagenet_class_of_80pct_of_realgen_photos(realgen):
    rows = [r for r in read_manifest(realgen) if r["label"] == "real" and r["imagenet_class"]]
    assert len(rows) > 500
    bb = load_backbone("efficientnet-lite0").eval()
    pre = bb.preprocessing
    hits = 0
    with torch.inference_mode():
        for i in range(0, len(rows), 64):
            chunk = rows[i:i + 64]
            x = torch.stack([pre(load_image(realgen / r["path"])) for r in chunk])
            pred = bb.classify(x.contiguous(memory_format=torch.channels_last)).argmax(1)
            hits += sum(int(p) == int(r["imagenet_class"]) for p, r in zip(pred, chunk))
    acc = hits / len(rows)
    print(f"ImageNet top-1 on {len(rows)} realgen photos: {acc:.3f}")
    assert acc >= 0.80


def test_preprocessing_travels_with_the_backbone():
    bb = BACKBONES["efficientnet-lite0"].build()
    p = bb.preprocessing
    assert (p.input_size, p.interpolation, p.squash) == (224, "bicubic", False)
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)


def test_every_layer_from_one_forward_pass(realgen):
    bb = load_backbone().eval()
    calls = {"n": 0}
    hook = bb.net.conv_stem.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    ds = load_dataset(realgen)
    x = torch.stack([bb.preprocessing(load_image(s.path)) for s in ds.samples[:4]])
    with torch.inference_mode():
        feats = bb(x)
    hook.remove()
    assert calls["n"] == 1
    assert list(feats) == bb.layer_names
    assert bb.layer_names == [f"stage{i}" for i in range(7)] + ["head"]
    for name, f in feats.items():
        assert f.shape == (4, bb.feature_dims[name])
        assert torch.isfinite(f).all()
    # different images give different features
    assert not np.allclose(feats["head"][0].numpy(), feats["head"][1].numpy())
