"""The embedded backbones: weights mapping and preprocessing are right (checked as ImageNet
classifiers on realgen's photos), and all layers come from one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import read_manifest
from originprobe.backbones import BACKBONES, load_backbone
from originprobe.data import load_dataset, load_image


def _top1(realgen, name: str, pre=None) -> float:
    rows = [r for r in read_manifest(realgen) if r["label"] == "real" and r["imagenet_class"]]
    assert len(rows) > 500
    bb = load_backbone(name).eval()
    pre = pre or bb.preprocessing
    hits = 0
    with torch.inference_mode():
        for i in range(0, len(rows), 64):
            chunk = rows[i : i + 64]
            x = torch.stack([pre(load_image(realgen / r["path"])) for r in chunk])
            pred = bb.classify(x.contiguous(memory_format=torch.channels_last)).argmax(1)
            hits += sum(int(p) == int(r["imagenet_class"]) for p, r in zip(pred, chunk))
    acc = hits / len(rows)
    print(f"{name}: ImageNet top-1 on {len(rows)} realgen photos: {acc:.3f}")
    return acc


@pytest.mark.parametrize(
    "name,least",
    [("efficientnet-lite0", 0.80), ("efficientnet-lite1", 0.83), ("efficientnet-lite2", 0.83)],
)
def test_bundled_backbones_name_the_imagenet_class_of_realgen_photos(realgen, name, least):
    assert _top1(realgen, name) >= least


def test_a_wrong_normalisation_is_visibly_worse(realgen):
    """The check has teeth: ImageNet mean/std instead of the weights' own 0.5 loses ≥ 4 points."""
    from dataclasses import replace

    bb = load_backbone("efficientnet-lite1")
    wrong = replace(bb.preprocessing, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert (
        _top1(realgen, "efficientnet-lite1", wrong) <= _top1(realgen, "efficientnet-lite1") - 0.04
    )


def test_preprocessing_travels_with_the_backbone():
    bb = BACKBONES["efficientnet-lite0"].build()
    p = bb.preprocessing
    assert (p.input_size, p.interpolation, p.squash) == (224, "bicubic", False)
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)


def test_every_layer_from_one_forward_pass(realgen):
    bb = load_backbone("efficientnet-lite0").eval()
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
