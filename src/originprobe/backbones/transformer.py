"""What every transformer backbone shares: one forward pass, the class token of every block.

A `TransformerBackbone` runs its network's blocks one by one and records, for block i, the class
token (`block{i}`) and, when `patch_mean=True`, the mean of the patch tokens
(`block{i}_patchmean`). Intermediate tokens are taken as the block emits them (the final norm is
not applied to them), which is what "features of every block" means in the seed method.
It never loads weights itself: the family modules (vit, openclip, hf) do, and they never
download — weights come from a local hub cache or a file the user names.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator

import torch

from .base import Backbone, Preprocessing, WeightsNotFoundError

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
                out[f"block{i}_patchmean"] = tokens[:, self.num_prefix_tokens:].mean(1).float()
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


@contextmanager
def offline():
    """Make hub libraries read only their local cache, never the network."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def hub_cached_file(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    """Path of the first of `filenames` present in the local Hugging Face hub cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    for name in filenames:
        p = try_to_load_from_cache(repo_id, name)
        if isinstance(p, str) and os.path.isfile(p):
            return p
    return None


def hub_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
        return str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return os.path.expanduser("~/.cache/huggingface/hub")


def missing_weights(backbone: str, repo_id: str, filenames: tuple[str, ...]) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"{backbone}: weights not found on this machine (no internet here). Looked for "
        f"{' or '.join(filenames)} of hub repository {repo_id!r} in the local cache "
        f"{hub_cache_dir()}. Put the checkpoint there (e.g. copy a `huggingface-cli download "
        f"{repo_id}` cache from a connected machine) or pass --weights FILE/DIR.")


def clip_preprocessing(size: int, mean, std) -> Preprocessing:
    """OpenAI CLIP: bicubic resize of the short side to `size`, centre crop `size`."""
    return Preprocessing(input_size=size, resize_size=size, interpolation="bicubic",
                         mean=tuple(mean), std=tuple(std))
