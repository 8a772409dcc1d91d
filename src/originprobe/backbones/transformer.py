"""What every transformer backbone shares: one forward pass, the class token of every block.

A `TransformerBackbone` runs its network's blocks one by one and records, for block i, the class
token (`block{i}`) and, when `patch_mean=True`, the mean of the patch tokens
(`block{i}_patchmean`). Intermediate tokens are taken as the block emits them (the final norm is
not applied to them), which is what "features of every block" means in the seed method.
It never loads weights itself: the family modules (vit, openclip, hf) do, through
`backbones.hub` (the local hub cache first, a download when the network allows it) or from a
file the user names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from .base import Backbone, Preprocessing

RANDOM = "random"  # weights="random": explicit random initialisation, for speed benchmarks only


class TransformerBackbone(Backbone):
    prefers_channels_last = False  # ViTs gain nothing from channels-last

    def _setup_layers(self, depth: int, dim: int, patch_mean: bool) -> None:
        self.patch_mean = patch_mean
        self.feature_variant = "patchmean" if patch_mean else ""
        names, dims = [], {}
        for i in range(depth):
            names.append(f"block{i}")
            dims[f"block{i}"] = dim
            if patch_mean:
                names.append(f"block{i}_patchmean")
                dims[f"block{i}_patchmean"] = dim
        self.layer_names, self.feature_dims = names, dims

    def _blocks(self, x: torch.Tensor) -> Iterator[torch.Tensor]:  # pragma: no cover - abstract
        """Yield the (B, tokens, D) output of every block, class token first."""
        raise NotImplementedError

    num_prefix_tokens: int = 1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, tokens in enumerate(self._blocks(x)):
            out[f"block{i}"] = tokens[:, 0].float()
            if self.patch_mean:
                out[f"block{i}_patchmean"] = tokens[:, self.num_prefix_tokens :].mean(1).float()
        return out


def suggest_batch_size(backbone: Backbone, device: torch.device) -> int:
    """A batch size that fits the free GPU memory, from the model size and token count."""
    if device.type != "cuda":
        return 32
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return 64
    params = sum(p.numel() for p in backbone.parameters())
    dim = max(backbone.feature_dims.values())
    size = backbone.preprocessing.input_size
    tokens = (size // 14) ** 2 + 1 if "14" in backbone.name else (size // 16) ** 2 + 1
    # activations of one image in half precision, with head-room for attention and workspace
    per_image = tokens * dim * 2 * 24
    budget = free * 0.6 - params * 2
    return int(max(8, min(1024, 2 ** int(math.log2(max(budget / per_image, 8))))))


def clip_preprocessing(size: int, mean, std) -> Preprocessing:
    """OpenAI CLIP: bicubic resize of the short side to `size`, centre crop `size`."""
    return Preprocessing(
        input_size=size, resize_size=size, interpolation="bicubic", mean=tuple(mean), std=tuple(std)
    )
