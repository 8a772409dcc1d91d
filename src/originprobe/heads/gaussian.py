"""`gaussian`: class-conditional Gaussians with one shared, shrunk covariance (Mahalanobis).

Features are centred on the training mean and L2-normalised, then every class gets its mean and all
share one covariance, shrunk towards a scaled identity (Ledoit–Wolf when `shrinkage="auto"`, else
the given factor) so it stays invertible with more dimensions than samples.
decision_function[:, c] = -½·(x-μ_c)ᵀ Σ⁻¹ (x-μ_c): with equal priors this is the LDA log-likelihood
up to a constant, so `msp` is its posterior and `mahalanobis` (row max) is minus half the squared
distance to the nearest class. Enrolling a class adds its mean; the covariance is kept.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ._features import centred_unit
from .base import HEADS, Head


@HEADS.register("gaussian")
class GaussianHead(Head):
    name: ClassVar[str] = "gaussian"
    supported_scores: ClassVar[tuple[str, ...]] = ("mahalanobis", "msp", "energy", "knn")
    state_arrays: ClassVar[dict[str, type]] = {
        "mean_": np.float32,
        "means_": np.float32,
        "precision_": np.float32,
    }
    per_class_arrays: ClassVar[tuple[str, ...]] = ("means_",)
    default_score: ClassVar[str] = "mahalanobis"
    param_grid: ClassVar[dict[str, list]] = {"shrinkage": ["auto", 0.1, 0.5]}

    def __init__(self, shrinkage: float | str = "auto"):
        self.shrinkage = shrinkage

    def fit(self, X: np.ndarray, y: np.ndarray) -> "GaussianHead":
        X = self._as_2d(X).astype(np.float64)
        self.classes_, idx = self._labels(y)
        self.mean_ = X.mean(axis=0)
        Z = centred_unit(X, self.mean_).astype(np.float64)
        self.means_ = np.stack([Z[idx == c].mean(axis=0) for c in range(len(self.classes_))])
        R = Z - self.means_[idx]
        self.precision_ = self._shrunk_precision(R).astype(np.float32)
        return self

    def _shrunk_precision(self, R: np.ndarray) -> np.ndarray:
        if self.shrinkage == "auto":
            from sklearn.covariance import ledoit_wolf

            cov, self.shrinkage_ = ledoit_wolf(R, assume_centered=True)
        else:
            a = float(self.shrinkage)
            if not 0 <= a <= 1:
                raise ConfigError(f"shrinkage must be in [0, 1] or 'auto', got {a}")
            emp = R.T @ R / max(len(R), 1)
            mu = np.trace(emp) / emp.shape[0]
            cov = (1 - a) * emp + a * mu * np.eye(emp.shape[0])
            self.shrinkage_ = a
        return np.linalg.pinv(cov, hermitian=True)

    def mahalanobis_sq(self, X: np.ndarray) -> np.ndarray:
        """(n, K) squared Mahalanobis distances to every class mean."""
        X = self._fitted_features(X)
        Z = centred_unit(X, self.mean_.astype(np.float32))
        P = self.precision_
        M = self.means_.astype(np.float32)
        ZP = Z @ P
        quad_z = np.einsum("ij,ij->i", ZP, Z)
        quad_m = np.einsum("ij,ij->i", M @ P, M)
        return np.maximum(quad_z[:, None] - 2 * ZP @ M.T + quad_m[None, :], 0.0)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return -0.5 * self.mahalanobis_sq(X)

    def feature_axis_arrays(self) -> tuple[str, ...]:
        return ("mean_", "means_", "precision_")

    def add_class(self, X: np.ndarray, label: str, X_train=None, y_train=None) -> "GaussianHead":
        self._check_new_class(label)
        mu = centred_unit(self._as_2d(X), self.mean_.astype(np.float32)).mean(axis=0)
        classes = np.array(sorted(set(self.classes_.tolist()) | {label}), dtype=object)
        means = {c: m for c, m in zip(self.classes_, self.means_)} | {label: mu}
        self.classes_ = classes
        self.means_ = np.stack([means[c] for c in classes])
        return self
