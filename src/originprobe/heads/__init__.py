"""Stage 4: light heads trained on frozen features (scikit-learn estimator contract).

Every head registers itself in `HEADS` when its module is imported here.
"""

from __future__ import annotations

from .base import HEADS, Head, HeadStateError, NotFittedError, logsumexp, softmax
from .gaussian import GaussianHead
from .knn import KNNHead
from .linear import LinearHead
from .ncm import NCMHead
from .reference import ReferenceHead


def head_factory(name: str, seed: int = 0):
    """`make(**params)` building unfitted `name` heads, seeded when the head takes a seed."""
    cls = HEADS.get(name)
    seeded = {"seed": seed} if "seed" in cls().get_params() else {}

    def make(**params) -> Head:
        return cls(**(seeded | params))

    return make


__all__ = [
    "HEADS",
    "GaussianHead",
    "Head",
    "HeadStateError",
    "KNNHead",
    "LinearHead",
    "NCMHead",
    "NotFittedError",
    "ReferenceHead",
    "head_factory",
    "logsumexp",
    "softmax",
]
