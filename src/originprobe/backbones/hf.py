"""Any Hugging Face vision or CLIP model, named `hf:ORG/NAME`, read with hidden states.

Weights and configuration come from a `save_pretrained` directory given as `weights=`, or from the
hub cache, downloaded there when missing and the network allows it (`backbones.hub`). For CLIP checkpoints the vision tower is
used. Block i's feature is the class token of hidden state i+1 (hidden state 0 is the embedding
output). Preprocessing comes from the model's `preprocessor_config.json` (mean/std, resize of the
shortest edge, centre crop, resampling); without one, it is an error, not a guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from ..fileio import sha256_file
from .base import Backbone, Preprocessing, WeightsNotFoundError
from .hub import fetch_snapshot, offline
from .registry import register_prefix
from .transformer import RANDOM, TransformerBackbone

_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def _resolve_dir(name: str, repo_id: str, weights: str | Path | None) -> Path:
    if weights is not None:
        d = Path(weights)
        if not (d / "config.json").is_file():
            raise WeightsNotFoundError(
                f"{name}: {d} is not a save_pretrained directory (no config.json)"
            )
        return d
    return fetch_snapshot(name, repo_id)


def _preprocessing(d: Path, name: str, squash: bool) -> Preprocessing:
    f = d / "preprocessor_config.json"
    if not f.is_file():
        raise WeightsNotFoundError(
            f"{name}: {f} is missing; the preprocessing must come from "
            "the model's own configuration"
        )
    cfg = json.loads(f.read_text(encoding="utf-8"))
    size = cfg.get("size", 224)
    short = size.get("shortest_edge") if isinstance(size, dict) else size
    if isinstance(size, dict) and short is None:
        short = size.get("height", 224)
    crop = cfg.get("crop_size", short) if cfg.get("do_center_crop", True) else short
    crop = crop.get("height", short) if isinstance(crop, dict) else crop
    return Preprocessing(
        input_size=int(crop),
        resize_size=max(int(short), int(crop)),
        interpolation=_RESAMPLE.get(int(cfg.get("resample", 3)), "bicubic"),
        mean=tuple(cfg.get("image_mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("image_std", (0.229, 0.224, 0.225))),
        squash=squash,
    )


class HFVision(TransformerBackbone):
    def __init__(
        self,
        repo_id: str,
        weights: str | Path | None = None,
        patch_mean: bool = False,
        squash: bool = False,
    ):
        super().__init__()
        from transformers import AutoConfig, AutoModel, CLIPVisionModel

        name = f"hf:{repo_id}"
        random_init = weights == RANDOM
        if random_init:
            raise WeightsNotFoundError(
                f"{name}: random initialisation needs a config; pass a save_pretrained directory"
            )
        d = _resolve_dir(name, repo_id, weights)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # no load reports or progress bars on stdout
        hf_logging.disable_progress_bar()
        with offline():
            cfg = AutoConfig.from_pretrained(d, local_files_only=True)
            if cfg.model_type == "clip":
                model = CLIPVisionModel.from_pretrained(d, local_files_only=True)
            else:
                model = AutoModel.from_pretrained(d, local_files_only=True)
        self.net = model.eval().requires_grad_(False)
        wfile = next((d / f for f in WEIGHT_FILES if (d / f).is_file()), None)
        if wfile is None:
            raise WeightsNotFoundError(f"{name}: no {' or '.join(WEIGHT_FILES)} in {d}")
        self.weights_id = sha256_file(wfile)
        self.name = name
        self.preprocessing = _preprocessing(d, name, squash)
        vcfg = getattr(model.config, "vision_config", model.config)
        self._setup_layers(int(vcfg.num_hidden_layers), int(vcfg.hidden_size), patch_mean)

    def _blocks(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        out = self.net(pixel_values=x, output_hidden_states=True)
        yield from out.hidden_states[1:]


def build(ident: str, weights=None, **kw) -> Backbone:
    return HFVision(ident, weights=weights, **kw)


register_prefix("hf", build)
