"""Transformer backbones (timm CLIP/DINOv2, open_clip, Hugging Face): tiny randomly initialised
models are saved the way real checkpoints are distributed and loaded through the user's path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from originprobe.backbones import BACKBONES, WeightsNotFoundError, load_backbone

TINY_TIMM = dict(depth=3, embed_dim=64, num_heads=2)


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(0)
    return torch.randn(2, 3, 224, 224)


def _count_calls(module):
    calls = {"n": 0}
    handle = module.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    return calls, handle


def test_registered_names_and_preprocessing_match_library_configs():
    import open_clip
    from timm.data import (
        IMAGENET_DEFAULT_MEAN,
        IMAGENET_DEFAULT_STD,
        OPENAI_CLIP_MEAN,
        OPENAI_CLIP_STD,
    )
    from transformers import CLIPImageProcessor

    for name in (
        "clip-vit-b16",
        "clip-vit-l14",
        "clip-vit-b16-laion2b",
        "dinov2-vit-b14",
        "dinov2-vit-l14",
    ):
        assert name in BACKBONES
    from originprobe.backbones.vit import ENTRIES, preprocessing_for

    hf = CLIPImageProcessor()
    for e in ENTRIES:
        p = preprocessing_for(e)
        assert p.interpolation == "bicubic" and not p.squash
        if e.family == "clip":
            assert p.mean == OPENAI_CLIP_MEAN == open_clip.constants.OPENAI_DATASET_MEAN
            assert p.std == OPENAI_CLIP_STD == open_clip.constants.OPENAI_DATASET_STD
            assert np.allclose(p.mean, hf.image_mean) and np.allclose(p.std, hf.image_std)
            assert (
                (p.input_size, p.resize_size)
                == (224, 224)
                == (hf.crop_size["height"], hf.size["shortest_edge"])
            )
        else:
            assert p.mean == IMAGENET_DEFAULT_MEAN and p.std == IMAGENET_DEFAULT_STD
            assert (p.input_size, p.resize_size) == (224, 256) and p.input_size % 14 == 0
    cfg = open_clip.get_pretrained_cfg("ViT-B-16", "openai")
    assert cfg["resize_mode"] == "shortest" and cfg["interpolation"] == "bicubic"


def test_timm_clip_checkpoint_every_block_in_one_pass(tmp_path, x):
    import timm
    from safetensors.torch import save_file

    net = timm.create_model(
        "vit_base_patch16_clip_224", pretrained=False, num_classes=0, **TINY_TIMM
    ).eval()
    f = tmp_path / "model.safetensors"
    save_file(net.state_dict(), str(f))
    bb = load_backbone("clip-vit-b16", weights=f, arch_overrides=TINY_TIMM)
    assert bb.layer_names == ["block0", "block1", "block2"]
    assert bb.feature_dims == {f"block{i}": 64 for i in range(3)}
    calls, h = _count_calls(bb.net.patch_embed)
    with torch.inference_mode():
        out = bb(x)
    h.remove()
    assert calls["n"] == 1
    with torch.inference_mode():
        ref = net.forward_features(x)  # the library's own forward: final norm after the blocks
        tokens = net.norm_pre(net._pos_embed(net.patch_embed(x)))
        for i, blk in enumerate(net.blocks):
            tokens = blk(tokens)
            assert torch.allclose(out[f"block{i}"], tokens[:, 0], atol=1e-5)
    assert torch.allclose(bb.net.norm(out["block2"]), ref[:, 0], atol=1e-5)
    assert (
        bb.weights_id
        != load_backbone("clip-vit-b16", weights="random", arch_overrides=TINY_TIMM).weights_id
    )


def test_dinov2_checkpoint_at_518_is_resampled_to_224(tmp_path, x):
    import timm

    net = timm.create_model(
        "vit_base_patch14_dinov2", pretrained=False, num_classes=0, **TINY_TIMM
    )  # timm's default: 518 px, like the released weights
    assert net.pos_embed.shape[1] >= 37 * 37
    f = tmp_path / "dinov2.pth"
    torch.save({"model": net.state_dict()}, f)
    bb = load_backbone("dinov2-vit-b14", weights=f, arch_overrides=TINY_TIMM, patch_mean=True)
    assert bb.layer_names[:2] == ["block0", "block0_patchmean"] and len(bb.layer_names) == 6
    with torch.inference_mode():
        out = bb(x)
    assert all(v.shape == (2, 64) for v in out.values())
    assert (
        bb.cache_key()
        != load_backbone("dinov2-vit-b14", weights=f, arch_overrides=TINY_TIMM).cache_key()
    )


def test_open_clip_checkpoint(tmp_path, x):
    import open_clip

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 224,
            "layers": 2,
            "width": 64,
            "patch_size": 32,
            "head_width": 32,
        },
        "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "Tiny-ViT-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    model = open_clip.create_model("Tiny-ViT-test").eval()
    f = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), f)
    bb = load_backbone("open_clip:Tiny-ViT-test/custom", weights=f)
    assert bb.layer_names == ["block0", "block1"] and bb.feature_dims["block1"] == 64
    p = bb.preprocessing
    assert p.mean == open_clip.constants.OPENAI_DATASET_MEAN and p.interpolation == "bicubic"
    with torch.inference_mode():
        out = bb(x)
        ref = model.encode_image(x)
        v = bb.visual
        assert torch.allclose(v.ln_post(out["block1"]) @ v.proj, ref, atol=1e-4)


def test_hf_clip_save_pretrained_directory(tmp_path, x):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    cfg = CLIPConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=224,
            patch_size=32,
        ),
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=100,
        ),
        projection_dim=16,
    )
    model = CLIPModel(cfg).eval()
    d = tmp_path / "tiny-clip"
    model.save_pretrained(d)
    CLIPImageProcessor().save_pretrained(d)
    bb = load_backbone("hf:tiny/clip", weights=d)
    assert bb.layer_names == ["block0", "block1", "block2"]
    assert bb.feature_dims["block2"] == 32
    assert bb.preprocessing.mean == tuple(CLIPImageProcessor().image_mean)
    with torch.inference_mode():
        out = bb(x)
        ref = model.vision_model(pixel_values=x)
        pooled = model.vision_model.post_layernorm(out["block2"])
    assert torch.allclose(out["block2"], ref.last_hidden_state[:, 0], atol=1e-5)
    assert torch.allclose(pooled, ref.pooler_output, atol=1e-5)


def test_missing_weights_offline_say_which_backbone_and_where(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # (downloads are tested in test_hub_download)
    for name, repo in (
        ("clip-vit-b16", "timm/vit_base_patch16_clip_224.openai"),
        ("dinov2-vit-l14", "timm/vit_large_patch14_dinov2.lvd142m"),
        ("open_clip:ViT-B-16/openai", "timm/vit_base_patch16_clip_224.openai"),
        ("hf:openai/clip-vit-base-patch16", "openai/clip-vit-base-patch16"),
    ):
        with pytest.raises(WeightsNotFoundError) as err:
            load_backbone(name)
        msg = str(err.value)
        assert name in msg and repo in msg and "--weights" in msg, msg
        assert "HF_HUB_OFFLINE" in msg and "hf download" in msg, msg
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_backbone("clip-vit-b16", weights=tmp_path / "nope.safetensors")


def test_weights_found_in_the_local_hub_cache(tmp_path, monkeypatch, x):
    import huggingface_hub.constants as hc
    import timm
    from safetensors.torch import save_file

    hub = tmp_path / "hub"
    snap = hub / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (hub / "models--timm--vit_base_patch16_clip_224.openai" / "refs").mkdir()
    (hub / "models--timm--vit_base_patch16_clip_224.openai" / "refs" / "main").write_text("abc123")
    net = timm.create_model(
        "vit_base_patch16_clip_224", pretrained=False, num_classes=0, **TINY_TIMM
    )
    save_file(net.state_dict(), str(snap / "open_clip_model.safetensors"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    assert BACKBONES["clip-vit-b16"].weights_available()
    bb = load_backbone("clip-vit-b16", arch_overrides=TINY_TIMM)
    with torch.inference_mode():
        assert bb(x)["block0"].shape == (2, 64)


def test_extraction_stores_every_block_from_one_pass(tmp_path, realgen):
    import timm
    from safetensors.torch import save_file

    from originprobe.data import load_dataset
    from originprobe.features import extract_features, open_store

    net = timm.create_model(
        "vit_base_patch16_clip_224", pretrained=False, num_classes=0, **TINY_TIMM
    )
    f = tmp_path / "m.safetensors"
    save_file(net.state_dict(), str(f))
    bb = load_backbone("clip-vit-b16", weights=f, arch_overrides=TINY_TIMM)
    calls, h = _count_calls(bb.net.patch_embed)
    samples = load_dataset(realgen).samples[:10]
    store = open_store(tmp_path / "cache", bb)
    from originprobe.runtime import Runtime

    rep = extract_features(samples, bb, store, None, Runtime(batch_size=10, workers=0))
    h.remove()
    assert rep.computed == 10 and calls["n"] == 1
    assert store.layers() == sorted(bb.layer_names)
    X = store.load([s.sha256 for s in samples], "block2")
    assert X.shape == (10, 64) and np.isfinite(X).all()
