"""The timm family: CLIP and DINOv2 vision transformers (class token of every block), and any
timm model by name (`timm:NAME`).

Registered short names: clip-vit-b16, clip-vit-l14 (OpenAI CLIP), clip-vit-b16-laion2b,
dinov2-vit-b14, dinov2-vit-l14. Their preprocessing: CLIP's mean/std with a bicubic resize of the
short side and a centre crop (no squashing); DINOv2's ImageNet statistics, resize 256 / centre
crop 224 at patch size 14 (position embeddings resampled by timm).
`timm:NAME` (e.g. `timm:convnext_tiny.fb_in22k`, `timm:vit_small_patch16_224.augreg_in21k`) takes
its preprocessing from the model's own `pretrained_cfg` (input size, crop fraction, crop mode,
interpolation, mean, std). Vision transformers give every block's class token (`block{i}`);
other models the pooled output of every stage timm reports (`stage{i}`).
Weights: a checkpoint file given by `weights=` (.safetensors/.bin/.pth, read with
`weights_only=True`), else the model's hub repository through `backbones.hub` (local cache
first, downloaded when missing and the network allows). They are loaded by timm's own loader
and checkpoint filter, as `timm.create_model(..., pretrained=True)` would. `weights="random"` is
an explicit random initialisation, for speed benchmarks only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..fileio import sha256_file
from .base import Backbone, BackboneSpec, Preprocessing, WeightsNotFoundError
from .hub import fetch_file, is_cached, offline
from .registry import register, register_prefix
from .transformer import RANDOM, TransformerBackbone, clip_preprocessing

HUB_FILES = (
    "model.safetensors",
    "open_clip_model.safetensors",
    "pytorch_model.bin",
    "open_clip_pytorch_model.bin",
)


@dataclass(frozen=True)
class TimmEntry:
    name: str
    timm_name: str  # architecture.pretrained_tag
    description: str
    family: str  # "clip", "dinov2", or "timm" (preprocessing from its config)
    depth: int
    dim: int
    create_kwargs: dict = field(default_factory=dict)


ENTRIES = [
    TimmEntry(
        "clip-vit-b16", "vit_base_patch16_clip_224.openai", "OpenAI CLIP ViT-B/16", "clip", 12, 768
    ),
    TimmEntry(
        "clip-vit-l14",
        "vit_large_patch14_clip_224.openai",
        "OpenAI CLIP ViT-L/14",
        "clip",
        24,
        1024,
    ),
    TimmEntry(
        "clip-vit-b16-laion2b",
        "vit_base_patch16_clip_224.laion2b",
        "OpenCLIP ViT-B/16 trained on LAION-2B",
        "clip",
        12,
        768,
    ),
    TimmEntry(
        "dinov2-vit-b14",
        "vit_base_patch14_dinov2.lvd142m",
        "DINOv2 ViT-B/14 (LVD-142M)",
        "dinov2",
        12,
        768,
        {"img_size": 224},
    ),
    TimmEntry(
        "dinov2-vit-l14",
        "vit_large_patch14_dinov2.lvd142m",
        "DINOv2 ViT-L/14 (LVD-142M)",
        "dinov2",
        24,
        1024,
        {"img_size": 224},
    ),
]


def preprocessing_for(entry: TimmEntry) -> Preprocessing:
    import timm

    cfg = timm.models.get_pretrained_cfg(entry.timm_name)
    if entry.family == "clip":
        return clip_preprocessing(224, cfg.mean, cfg.std)
    # DINOv2 evaluation transform: resize 256 (short side), centre crop 224, ImageNet statistics
    return Preprocessing(
        input_size=224,
        resize_size=256,
        interpolation=cfg.interpolation,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
    )


def hub_files(timm_name: str) -> tuple[str | None, tuple[str, ...]]:
    """(hub repository, candidate weight files) of a timm model name."""
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None or not cfg.hf_hub_id:
        return None, HUB_FILES
    first = (cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else ()
    return cfg.hf_hub_id, tuple(dict.fromkeys(first + HUB_FILES))


def create_timm(name: str, timm_name: str, weights, kwargs: dict):
    """(network without classifier, weights id), weights loaded by timm's own loader."""
    import timm

    arch = timm_name.split(".")[0]
    if weights == RANDOM:
        torch.manual_seed(0)
        net = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
        return net, f"random-init:{arch}:{sorted(kwargs.items())}"
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"{name}: weights file {path} not found")
    else:
        repo, files = hub_files(timm_name)
        if repo is None:
            raise WeightsNotFoundError(
                f"{name}: timm names no hub weights for {timm_name!r}; pass --weights FILE"
            )
        path = Path(fetch_file(name, repo, files))
    try:
        with offline():
            net = timm.create_model(
                timm_name,
                pretrained=True,
                pretrained_cfg_overlay={"file": str(path)},
                num_classes=0,
                **kwargs,
            )
    except (RuntimeError, KeyError, ValueError) as exc:
        raise WeightsNotFoundError(
            f"{name}: {path} does not match the architecture ({str(exc)[:300]})"
        ) from None
    return net, sha256_file(path)


def timm_preprocessing(net, squash: bool = False) -> Preprocessing:
    """A timm model's own evaluation transform, from its pretrained_cfg."""
    import math

    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=net)
    size = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    interp = cfg.get("interpolation", "bicubic")
    return Preprocessing(
        input_size=size,
        resize_size=max(size, int(math.floor(size / crop_pct))),
        interpolation=interp
        if interp in ("bicubic", "bilinear", "nearest", "lanczos")
        else "bicubic",
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        squash=squash or cfg.get("crop_mode") == "squash",
    )


class TimmViT(TransformerBackbone):
    def __init__(
        self,
        entry: TimmEntry,
        weights: str | Path | None = None,
        patch_mean: bool = False,
        squash: bool = False,
        arch_overrides: dict | None = None,
        net=None,
        weights_id: str | None = None,
    ):
        super().__init__()
        kwargs = dict(entry.create_kwargs) | dict(arch_overrides or {})
        if net is None:
            net, weights_id = create_timm(entry.name, entry.timm_name, weights, kwargs)
        self.net = net.eval().requires_grad_(False)
        self.weights_id = weights_id
        self.name = entry.name
        self.num_prefix_tokens = int(getattr(self.net, "num_prefix_tokens", 1))
        pre = (
            preprocessing_for(entry)
            if entry.family in ("clip", "dinov2")
            else timm_preprocessing(self.net)
        )
        self.preprocessing = Preprocessing(**(pre.to_dict() | {"squash": squash or pre.squash}))
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


class TimmCNN(Backbone):
    """Any other timm model: the global-average-pooled output of every stage timm reports."""

    def __init__(self, name: str, net, weights_id: str, squash: bool = False):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.name = name
        self.weights_id = weights_id
        self.preprocessing = timm_preprocessing(self.net, squash)
        self.layer_names = [f"stage{i}" for i in range(len(self.net.feature_info))]
        with torch.inference_mode():
            s = self.preprocessing.input_size
            out = self.forward(torch.zeros(1, 3, s, s))
        self.feature_dims = {k: int(v.shape[1]) for k, v in out.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.net.forward_intermediates(x, intermediates_only=True)
        return {
            f"stage{i}": (f.mean(dim=(2, 3)) if f.ndim == 4 else f.mean(dim=1))
            for i, f in enumerate(feats)
        }


def build_any(
    ident: str,
    weights=None,
    squash: bool = False,
    patch_mean: bool = False,
    arch_overrides: dict | None = None,
) -> Backbone:
    """`timm:NAME`: any timm model, its preprocessing from its pretrained_cfg."""
    import timm

    arch = ident.split(".")[0]
    if arch not in timm.list_models():
        raise WeightsNotFoundError(f"timm:{ident}: timm has no model {arch!r}")
    name = f"timm:{ident}"
    net, weights_id = create_timm(name, ident, weights, dict(arch_overrides or {}))
    if hasattr(net, "blocks") and hasattr(net, "_pos_embed"):
        entry = TimmEntry(name, ident, name, "timm", len(net.blocks), net.embed_dim)
        return TimmViT(entry, patch_mean=patch_mean, squash=squash, net=net, weights_id=weights_id)
    if not hasattr(net, "forward_intermediates"):
        raise WeightsNotFoundError(f"{name}: this timm model cannot emit per-stage features")
    return TimmCNN(name, net, weights_id, squash)


register_prefix("timm", build_any)


def _builder(entry: TimmEntry):
    def build(weights=None, **kw) -> TimmViT:
        return TimmViT(entry, weights=weights, **kw)

    return build


def _available(entry: TimmEntry):
    def check() -> bool:
        return is_cached(*hub_files(entry.timm_name))

    return check


for _e in ENTRIES:
    register(
        BackboneSpec(
            name=_e.name,
            source="timm",
            description=f"{_e.description} (timm {_e.timm_name})",
            builder=_builder(_e),
            weights_hint=f"hub: {_e.timm_name} (cached, or downloaded) or --weights FILE",
            weights_available=_available(_e),
            layers_hint=f"block0..block{_e.depth - 1}",
            dim_hint=str(_e.dim),
        )
    )

__all__ = ["ENTRIES", "TimmCNN", "TimmViT", "build_any", "preprocessing_for"]
