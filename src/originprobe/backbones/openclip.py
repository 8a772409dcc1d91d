"""Any open_clip vision tower, named `open_clip:ARCH/PRETRAINED`, with every block's class token.

ARCH is an open_clip model config (built in, or added with `open_clip.add_model_config`);
PRETRAINED a tag (`openai`, `laion2b_s34b_b88k`, ...) whose checkpoint must be in the local
Hugging Face hub cache, or any checkpoint file passed as `weights=`. Preprocessing is open_clip's
own for that model (mean/std, bicubic resize of the short side, centre crop). Weights come
from the hub cache, downloaded there when missing and the network allows (`backbones.hub`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from ..fileio import sha256_file
from .base import Backbone, Preprocessing, WeightsNotFoundError
from .hub import fetch_file, offline
from .registry import register_prefix
from .transformer import RANDOM, TransformerBackbone

HUB_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)


def _hub_source(arch: str, tag: str) -> tuple[str | None, str | None]:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    hub = (cfg or {}).get("hf_hub", "")
    repo = hub.rstrip("/").split("/", 2)
    repo_id = "/".join(repo[:2]) if len(repo) >= 2 else None
    return repo_id, (repo[2] if len(repo) > 2 else None)


class OpenClipViT(TransformerBackbone):
    def __init__(
        self,
        ident: str,
        weights: str | Path | None = None,
        patch_mean: bool = False,
        squash: bool = False,
    ):
        super().__init__()
        import open_clip

        arch, _, tag = ident.partition("/")
        if arch not in open_clip.list_models():
            raise WeightsNotFoundError(
                f"open_clip:{ident}: unknown open_clip architecture {arch!r}"
            )
        name = f"open_clip:{ident}"
        if weights == RANDOM:
            model = open_clip.create_model(arch, pretrained=None)
            self.weights_id = f"random-init:{arch}"
        else:
            path = Path(weights) if weights is not None else None
            if path is None:
                repo_id, _ = _hub_source(arch, tag)
                if not repo_id:
                    raise WeightsNotFoundError(
                        f"{name}: open_clip names no hub repository for "
                        f"{arch}/{tag}; pass --weights FILE"
                    )
                path = Path(fetch_file(name, repo_id, HUB_FILES))
            if not path.is_file():
                raise WeightsNotFoundError(f"{name}: weights file {path} not found")
            with offline():
                model = open_clip.create_model(arch, pretrained=str(path), weights_only=True)
            self.weights_id = sha256_file(path)
        self.visual = model.visual.eval().requires_grad_(False)
        del model  # the text tower is not needed
        if not hasattr(self.visual, "transformer"):
            raise WeightsNotFoundError(f"{name}: not a vision transformer (no blocks to read)")
        self.name = name
        self.preprocessing = self._preprocessing(squash)
        width = self.visual.class_embedding.shape[-1]
        self._setup_layers(len(self.visual.transformer.resblocks), width, patch_mean)

    def _preprocessing(self, squash: bool) -> Preprocessing:
        cfg = getattr(self.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", self.visual.image_size)
        size = size[0] if isinstance(size, (tuple, list)) else size
        return Preprocessing(
            input_size=int(size),
            resize_size=int(size),
            interpolation=cfg.get("interpolation", "bicubic"),
            mean=tuple(cfg.get("mean", self.visual.image_mean)),
            std=tuple(cfg.get("std", self.visual.image_std)),
            squash=squash or cfg.get("resize_mode") == "squash",
        )

    def _blocks(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        v = self.visual
        x = v._embeds(x)
        tr = v.transformer
        if not tr.batch_first:
            x = x.transpose(0, 1)
        for blk in tr.resblocks:
            x = blk(x)
            yield x if tr.batch_first else x.transpose(0, 1)


def build(ident: str, weights=None, **kw) -> Backbone:
    return OpenClipViT(ident, weights=weights, **kw)


register_prefix("open_clip", build)
