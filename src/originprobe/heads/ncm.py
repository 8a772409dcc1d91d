"""`ncm`: nearest class mean on the unit sphere — one reference point per class, not learned.

Features are centred on the training mean and L2-normalised; each class is represented by the
normalised mean of its samples. decision_function[:, c] is the cosine similarity to class c's mean,
so the `reference` score (row max) is the similarity to the nearest class mean, and `msp` is the
softmax of similarities / temperature. Enrolling a class adds its mean.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ._features import centred_unit, l2_normalize
from .base import HEADS, Head, softmax


@HEADS.register("ncm")
class NCMHead(Head):
    name: ClassVar[str] = "ncm"
    provides: ClassVar[frozenset[str]] = frozenset({"posterior", "distances", "features"})
    state_arrays: ClassVar[dict[str, type]] = {"mean_": np.float32, "centroids_": np.float32}
    per_class_arrays: ClassVar[tuple[str, ...]] = ("centroids_",)
    default_score: ClassVar[str] = "reference"
    param_grid: ClassVar[dict[str, list]] = {"centre": [True, False]}

    def __init__(self, centre: bool = True, temperature: float = 0.05):
        self.centre = centre
        self.temperature = temperature

    def fit(self, X: np.ndarray, y: np.ndarray) -> "NCMHead":
        X = self._as_2d(X)
        self.classes_, idx = self._labels(y)
        self.mean_ = X.mean(axis=0) if self.centre else np.zeros(X.shape[1], np.float32)
        Z = centred_unit(X, self.mean_)
        self.centroids_ = l2_normalize(
            np.stack([Z[idx == c].mean(axis=0) for c in range(len(self.classes_))])
        )
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = self._fitted_features(X)
        return centred_unit(X, self.mean_) @ self.centroids_.T

    def proba_from_decision(self, decision: np.ndarray) -> np.ndarray:
        return softmax(decision / self.temperature)

    def feature_axis_arrays(self) -> tuple[str, ...]:
        return ("mean_", "centroids_")

    def add_class(self, X: np.ndarray, label: str, X_train=None, y_train=None) -> "NCMHead":
        self._check_new_class(label)
        c = l2_normalize(centred_unit(self._as_2d(X), self.mean_).mean(axis=0, keepdims=True))[0]
        cents = {k: v for k, v in zip(self.classes_, self.centroids_)} | {label: c}
        self.classes_ = np.array(sorted(cents), dtype=object)
        self.centroids_ = np.stack([cents[k] for k in self.classes_])
        return self
