"""CLIP and DINOv2 vision transformers through timm, with the class token of every block.

Registered: clip-vit-b16, clip-vit-l14 (OpenAI CLIP), clip-vit-b16-laion2b, dinov2-vit-b14,
dinov2-vit-l14. Preprocessing comes from each model's own configuration: CLIP's mean/std with a
bicubic resize of the short side and a centre crop (no squashing); DINOv2's ImageNet statistics,
resize 256 / centre crop 224 at patch size 14 (position embeddings resampled by timm).
Weights: a checkpoint file given by `weights=` (timm/open_clip .safetensors/.bin/.pth, read with
`weights_only=True`), else timm's entry in the local Hugging Face hub cache. Never downloads;
missing weights raise `WeightsNotFoundError`; `weights="random"` is an explicit random init.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..fileio import sha256_file
from .base import BackboneSpec, Preprocessing, WeightsNotFoundError, state_dict_digest
from .registry import register
from .transformer import (RANDOM, TransformerBackbone, clip_preprocessing, hub_cached_file,
                          missing_weights, offline, suggest_batch_size)

HUB_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin",
             "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class TimmEntry:
    name: str
    timm_name: str           # architecture.pretrained_tag
    description: str
    family: str              # "clip" or "dinov2"
    depth: int
    dim: int
    create_kwargs: dict = field(default_factory=dict)


ENTRIES = [
    TimmEntry("clip-vit-b16", "vit_base_patch16_clip_224.openai", "OpenAI CLIP ViT-B/16", "clip",
              12, 768),
    TimmEntry("clip-vit-l14", "vit_large_patch14_clip_224.openai", "OpenAI CLIP ViT-L/14", "clip",
              24, 1024),
    TimmEntry("clip-vit-b16-laion2b", "vit_base_patch16_clip_224.laion2b",
              "OpenCLIP ViT-B/16 trained on LAION-2B", "clip", 12, 768),
    TimmEntry("dinov2-vit-b14", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14 (LVD-142M)",
              "dinov2", 12, 768, {"img_size": 224}),
    TimmEntry("dinov2-vit-l14", "vit_large_patch14_dinov2.lvd142m", "DINOv2 ViT-L/14 (LVD-142M)",
              "dinov2", 24, 1024, {"img_size": 224}),
]


def preprocessing_for(entry: TimmEntry) -> Preprocessing:
    import timm
    cfg = timm.models.get_pretrained_cfg(entry.timm_name)
    if entry.family == "clip":
        return clip_preprocessing(224, cfg.mean, cfg.std)
    # DINOv2 evaluation transform: resize 256 (short side), centre crop 224, ImageNet statistics
    return Preprocessing(input_size=224, resize_size=256, interpolation=cfg.interpolation,
                         mean=tuple(cfg.mean), std=tuple(cfg.std))


def hub_repo(entry: TimmEntry) -> str:
    import timm
    return timm.models.get_pretrained_cfg(entry.timm_name).hf_hub_id


def local_weights(entry: TimmEntry) -> str | None:
    return hub_cached_file(hub_repo(entry), HUB_FILES)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


class TimmViT(TransformerBackbone):
    def __init__(self, entry: TimmEntry, weights: str | Path | None = None,
                 patch_mean: bool = False, squash: bool = False, arch_overrides: dict | None = None):
        super().__init__()
        import timm
        arch = entry.timm_name.split(".")[0]
        kwargs = dict(entry.create_kwargs) | dict(arch_overrides or {})
        self.net = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
        if weights == RANDOM:
            torch.manual_seed(0)
            self.weights_id = f"random-init:{arch}:{sorted(kwargs.items())}"
        else:
            path = Path(weights) if weights is not None else None
            if path is None:
                found = local_weights(entry)
                if found is None:
                    raise missing_weights(entry.name, hub_repo(entry), HUB_FILES)
                path = Path(found)
            if not path.is_file():
                raise WeightsNotFoundError(f"{entry.name}: weights file {path} not found")
            sd = _read_state_dict(path)
            # timm's own filter maps OpenAI/open_clip/DINOv2 layouts and resamples positions
            from timm.models.vision_transformer import checkpoint_filter_fn
            with offline():
                sd = checkpoint_filter_fn(sd, self.net)
            missing, unexpected = self.net.load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.startswith("head")]
            if missing:
                raise WeightsNotFoundError(
                    f"{entry.name}: {path} does not match the architecture; missing "
                    f"{missing[:5]}{'...' if len(missing) > 5 else ''}")
            self.weights_id = sha256_file(path)
        self.net.eval().requires_grad_(False)
        self.name = entry.name
        self.num_prefix_tokens = int(getattr(self.net, "num_prefix_tokens", 1))
        pre = preprocessing_for(entry)
        self.preprocessing = Preprocessing(**(pre.to_dict() | {"squash": squash}))
        self._setup_layers(len(self.net.blocks), self.net.embed_dim, patch_mean)

    def _blocks(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        net = self.net
        x = net.patch_embed(x)
        x = net._pos_embed(x)
        x = net.patch_drop(x)
        x = net.norm_pre(x)
        for blk in net.blocks:
            x = blk(x)
            yield x


def _builder(entry: TimmEntry):
    def build(weights=None, **kw) -> TimmViT:
        return TimmViT(entry, weights=weights, **kw)
    return build


def _available(entry: TimmEntry):
    def check() -> bool:
        try:
            return local_weights(entry) is not None
        except Exception:  # noqa: BLE001 - a broken cache means "not available"
            return False
    return check


for _e in ENTRIES:
    register(BackboneSpec(
        name=_e.name, source="timm", description=f"{_e.description} (timm {_e.timm_name})",
        builder=_builder(_e), weights_hint=f"hub cache: {_e.timm_name} or --weights FILE",
        weights_available=_available(_e), layers_hint=f"block0..block{_e.depth - 1}",
        dim_hint=str(_e.dim)))

__all__ = ["ENTRIES", "TimmViT", "suggest_batch_size", "state_dict_digest"]
