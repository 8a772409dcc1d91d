"""Training losses of learned embedding networks: registry objects that own their parameters.

A loss is a small `torch.nn.Module` built for K classes on a D-dimensional embedding; it holds
what only training needs (learned reference points, a linear classifier), so the network saved
for inference holds nothing but its trunk and projection.

- `metric` (Fang et al., BMVC 2023): one learned reference point per class; the logits are the
  negative squared distances to the references (distance-based cross-entropy), plus a pull term
  that draws each embedding onto its class's reference, so known classes stay compact and images
  of unseen generators land far from every reference. Prediction: the nearest reference.
- `ce`: a linear classifier with plain cross-entropy. Prediction: the largest logit.

`TrainConfig.loss = "auto"` trains one network per registered loss and keeps the one with the
better known-only validation balanced accuracy.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

LOSSES: "Registry[type[TrainingLoss]]" = Registry("loss")


class TrainingLoss(nn.Module):
    """`logits(z)` → (B, K) class evidence of embeddings z; `forward(z, y)` → the loss."""

    name: ClassVar[str] = "loss"
    help: ClassVar[str] = ""

    def __init__(self, n_classes: int, embed_dim: int):
        super().__init__()
        self.n_classes, self.embed_dim = int(n_classes), int(embed_dim)

    def logits(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(z), y)


@LOSSES.register("metric")
class MetricLoss(TrainingLoss):
    name = "metric"
    help = "Fang et al.'s learned reference points"

    def __init__(self, n_classes: int, embed_dim: int, pull_weight: float = 0.05):
        super().__init__(n_classes, embed_dim)
        self.pull_weight = float(pull_weight)
        g = torch.Generator().manual_seed(0)  # seeded, near the origin
        self.references = nn.Parameter(0.1 * torch.randn(n_classes, embed_dim, generator=g))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(z.float(), self.references.float()).pow(2)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.logits(z)
        pull = (-logits.gather(1, y[:, None])).mean()
        return F.cross_entropy(logits, y) + self.pull_weight * pull


@LOSSES.register("ce")
class CrossEntropyLoss(TrainingLoss):
    name = "ce"
    help = "a linear classifier with cross-entropy"

    def __init__(self, n_classes: int, embed_dim: int):
        super().__init__(n_classes, embed_dim)
        self.classifier = nn.Linear(embed_dim, n_classes)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)


def loss_choices() -> tuple[str, ...]:
    """What `TrainConfig.loss` accepts: every registered loss, or auto."""
    return ("auto", *LOSSES.names())
