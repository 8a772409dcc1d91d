"""Embedding networks that originprobe trains itself (see originprobe.training), by architecture.

- `forensic-cnn`: a compact forensic CNN trained from scratch. Its first layer is a constrained
  convolution (Bayar & Stamm's MISLnet): every 5×5 filter predicts the centre pixel from its
  neighbours and subtracts it (centre weight −1, the others summing to 1), so the network sees
  prediction-error residuals, where generators leave their traces, rather than content.
- `efficientnet-lite0/1/2`: the embedded ImageNet EfficientNet-Lite, fine-tuned; its first
  `frozen_stages` stages keep their ImageNet weights (cheaper, and less forgetting). Being fully
  convolutional, it reads the whole native-resolution picture at inference; training runs only
  its later stages, on windows of the frozen stages' activation maps, computed once per image
  (see training.patches.ActivationBank).

Every architecture maps a uint8-range normalised patch (B, 3, P, P), at native resolution, to a
pooled trunk feature (`pool`) and an L2-free embedding (`embed`, `embed_dim` wide). Architectures
are registered in `ARCHITECTURES`, each with what training needs to know of it (its learning-rate
scale: a network fine-tuned from ImageNet weights learns at a quarter of the rate of one trained
from scratch). `EmbeddingNetwork` is inference-only: what only training needs (reference points,
a classifier) belongs to the training losses (`training.losses`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class Architecture:
    """A trainable embedding network: how its trunk is built and how fast it learns."""

    name: str
    build: Callable[["NetworkConfig", bool], nn.Module]  # (config, imagenet weights?) → trunk
    lr_scale: float  # of TrainConfig.lr
    help: str


ARCHITECTURES: Registry[Architecture] = Registry("network", "networks")


@dataclass(frozen=True)
class NetworkConfig:
    """What builds a network (saved with its weights)."""

    arch: str = "forensic-cnn"
    embed_dim: int = 128
    widths: tuple[int, ...] = (24, 48, 96, 192)  # forensic-cnn: channels per stage
    frozen_stages: int = 5  # efficientnet-lite: stages kept at their ImageNet weights
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ARCHITECTURES.get(self.arch)  # an unknown one is an error listing the known ones
        if not 2 <= self.embed_dim <= 4096:
            raise ConfigError("embed_dim must be in 2..4096")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["classes"] = list(self.widths), list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("widths", "classes"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


class ConstrainedConv2d(nn.Module):
    """Bayar & Stamm's constrained convolution: per output filter and input channel, the centre
    weight is −1 and the others sum to 1, enforced in every forward pass (not by projection after
    a step), so the constraint also holds for weights loaded from a file."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 5):
        super().__init__()
        self.k = k
        w = torch.rand(out_ch, in_ch, k, k) + 0.1
        self.weight = nn.Parameter(w)
        mask = torch.ones(1, 1, k, k)
        mask[..., k // 2, k // 2] = 0
        self.register_buffer("mask", mask, persistent=False)

    def constrained_weight(self) -> torch.Tensor:
        w = self.weight * self.mask
        s = w.sum(dim=(2, 3), keepdim=True)
        near_zero = torch.where(s > 0, 1e-3, -1e-3).to(s)  # keep the division finite
        s = torch.where(s.abs() < 1e-3, near_zero, s)
        return w / s - (1 - self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.constrained_weight(), padding=self.k // 2)


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ForensicCNN(nn.Module):
    """Constrained residual layer, then stages of (stride-2 conv, conv) and global pooling."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        self.constrained = ConstrainedConv2d(3, 8)
        stages, cin = [], 8
        for w in widths:
            stages.append(nn.Sequential(_conv_bn(cin, w, 2), _conv_bn(w, w, 1)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.constrained(x)
        for s in self.stages:
            x = s(x)
        return x.mean(dim=(2, 3))


class LiteTrunk(nn.Module):
    """EfficientNet-Lite's trunk (timm layout), its first `frozen_stages` stages frozen."""

    def __init__(self, arch: str, frozen_stages: int, imagenet: bool):
        super().__init__()
        import timm

        from .efficientnet import VARIANTS, EfficientNetLite

        variant = VARIANTS[arch]
        if imagenet:
            net = EfficientNetLite(variant).net
        else:  # weights come from a saved network next
            net = timm.create_model(variant.timm_name, pretrained=False)
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.conv_head, self.bn2 = net.conv_head, net.bn2
        self.frozen_stages = int(frozen_stages)
        self.out_dim = int(net.num_features)
        self.requires_grad_(True)  # the backbone arrives frozen; only the first stages stay so
        if self.frozen_stages > 0:
            for m in [self.conv_stem, self.bn1, *list(self.blocks)[: self.frozen_stages]]:
                m.requires_grad_(False)

    def train(self, mode: bool = True) -> "LiteTrunk":
        super().train(mode)
        if self.frozen_stages > 0:  # frozen stages keep their ImageNet batch statistics
            self.conv_stem.eval(), self.bn1.eval()
            for b in list(self.blocks)[: self.frozen_stages]:
                b.eval()
        return self

    @property
    def stride(self) -> int:
        """Pixels per cell of the frozen stages' activation map."""
        strides = [self.conv_stem.stride[0]] + [b[0].conv_dw.stride[0] if hasattr(b[0], "conv_dw")
                                                else 1 for b in self.blocks]  # fmt: skip
        out = 1
        for st in strides[: self.frozen_stages + 1]:
            out *= st
        return out

    def frozen_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The activation map after the frozen stages."""
        x = self.bn1(self.conv_stem(x))
        for b in list(self.blocks)[: self.frozen_stages]:
            x = b(x)
        return x

    def from_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The trained stages on frozen-stage activation maps → pooled feature."""
        for b in list(self.blocks)[self.frozen_stages :]:
            x = b(x)
        return self.bn2(self.conv_head(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_maps(self.frozen_maps(x))


class EmbeddingNetwork(nn.Module):
    """Trunk → `pool` → linear → `embed` (inference-only: no training heads)."""

    def __init__(self, config: NetworkConfig, imagenet: bool = True):
        super().__init__()
        self.config = config
        self.trunk = ARCHITECTURES.get(config.arch).build(config, imagenet)
        self.project = nn.Linear(self.trunk.out_dim, config.embed_dim)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.trunk(x)
        return {"pool": pooled, "embed": self.project(pooled)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)["embed"]

    @property
    def trains_on_maps(self) -> bool:
        """Whether training runs on cached frozen-stage activation maps (EfficientNet-Lite)."""
        return isinstance(self.trunk, LiteTrunk) and self.trunk.frozen_stages > 0

    def embed_maps(self, maps: torch.Tensor) -> torch.Tensor:
        return self.project(self.trunk.from_maps(maps))

    def with_classes(self, classes: tuple[str, ...]) -> "EmbeddingNetwork":
        """The same trunk and projection for another label set (pretraining on one label set,
        then training on another); only the recorded classes change."""
        new = EmbeddingNetwork.__new__(EmbeddingNetwork)
        nn.Module.__init__(new)
        new.config = NetworkConfig(**{**self.config.__dict__, "classes": tuple(classes)})
        new.trunk, new.project = self.trunk, self.project
        return new


ARCHITECTURES.register(
    "forensic-cnn",
    Architecture("forensic-cnn", lambda c, _: ForensicCNN(c.widths), 1.0,
                 "compact CNN from scratch, constrained (MISLnet) first layer"),
)  # fmt: skip
for _lite in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
    ARCHITECTURES.register(
        _lite,
        Architecture(
            _lite,
            lambda c, imagenet: LiteTrunk(c.arch, c.frozen_stages, imagenet),
            0.25,
            "ImageNet EfficientNet-Lite fine-tuned (later stages on cached activation maps)",
        ),
    )
