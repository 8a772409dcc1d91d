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

_ROWS = 4096  # row chunk of the passes over the training features


@HEADS.register("gaussian")
class GaussianHead(Head):
    name: ClassVar[str] = "gaussian"
    provides: ClassVar[frozenset[str]] = frozenset({"posterior", "logits", "features"})
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
        """Class means and the shared covariance from row chunks (float64 sums; the features
        are never copied whole, so 60k × 1024 rows fit in a few hundred MB)."""
        X = self._as_2d(X)
        self.classes_, idx = self._labels(y)
        n, D = X.shape
        K = len(self.classes_)
        self.mean_ = sum(
            np.asarray(X[s : s + _ROWS], np.float64).sum(0) for s in range(0, n, _ROWS)
        )
        self.mean_ = self.mean_ / n
        sums = np.zeros((K, D))
        for s in range(0, n, _ROWS):
            np.add.at(sums, idx[s : s + _ROWS], centred_unit(X[s : s + _ROWS], self.mean_))
        self.means_ = sums / np.maximum(np.bincount(idx, minlength=K), 1)[:, None]
        scatter, norms4 = np.zeros((D, D)), 0.0
        for s in range(0, n, _ROWS):
            R = centred_unit(X[s : s + _ROWS], self.mean_) - self.means_[idx[s : s + _ROWS]]
            scatter += R.T @ R
            norms4 += float(np.sum(np.einsum("ij,ij->i", R, R) ** 2))
        self.precision_ = self._shrunk_precision(scatter, norms4, n).astype(np.float32)
        return self

    def _shrunk_precision(self, scatter: np.ndarray, norms4: float, n: int) -> np.ndarray:
        """Inverse of the residuals' covariance shrunk towards μ·I: Ledoit–Wolf's factor when
        `shrinkage="auto"` (scikit-learn's estimator, from the scatter and Σ‖r‖⁴ alone)."""
        p = scatter.shape[0]
        emp = scatter / max(n, 1)
        mu = np.trace(emp) / p
        if self.shrinkage == "auto":
            delta_ = float(np.sum(emp**2))
            beta = (norms4 / max(n, 1) - delta_) / (p * max(n, 1))
            delta = (delta_ - 2.0 * mu * np.trace(emp) + p * mu**2) / p
            a = 0.0 if beta == 0 else min(beta, delta) / delta
        else:
            a = float(self.shrinkage)
            if not 0 <= a <= 1:
                raise ConfigError(f"shrinkage must be in [0, 1] or 'auto', got {a}")
        self.shrinkage_ = a
        cov = (1 - a) * emp + a * mu * np.eye(p)
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
