"""`linear`: multinomial L2 logistic regression on standardised features (the seed method's probe).

C is not chosen here: `param_grid["C"]` is swept by cross-validation on known-class data
(`model.crossval`). `fit_grid` solves every (layer, C) problem of a sweep, and `cross_decisions`
every (C, fold) problem of a cross-validation, in one batched, preconditioned L-BFGS
(`heads._logistic`), to the same optimum as scikit-learn's `LogisticRegression` (a test checks it).
In `cross_decisions` the features are standardised with the mean and scale of every row given
(label-free statistics; the folds differ only in which rows train), so all folds share one basis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone

from ..errors import ConfigError
from ._logistic import Basis, Problem, Stopping, _weights, fit_multinomial, solve
from .base import HEADS, Head

C_GRID = [float(c) for c in np.logspace(-4, 2, 7)]


def _moments(X: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation, accumulated in float64 over row chunks (X may
    be float16 or memory-mapped)."""
    D = X.shape[1]
    if not standardize:
        return np.zeros(D), np.ones(D)
    s1, s2 = np.zeros(D), np.zeros(D)
    for s in range(0, len(X), 1024):
        x = np.asarray(X[s : s + 1024], dtype=np.float64)
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
    mean = s1 / len(X)
    scale = np.sqrt(np.maximum(s2 / len(X) - mean * mean, 0.0))
    scale[scale < 1e-8] = 1.0
    return mean, scale


class StandardizedRows:
    """(X − mean) / scale, computed for the rows asked (`Z[a:b]`, float64); X stays as given."""

    def __init__(self, X: np.ndarray, mean: np.ndarray, scale: np.ndarray):
        self.X, self.mean, self.scale = X, mean, scale
        self.shape = tuple(np.shape(X))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        return (np.asarray(self.X[rows], dtype=np.float64) - self.mean) / self.scale


@HEADS.register("linear")
class LinearHead(Head):
    name: ClassVar[str] = "linear"
    provides: ClassVar[frozenset[str]] = frozenset(
        {"posterior", "max_decision", "logits", "linear_map", "features"}
    )
    state_arrays: ClassVar[dict[str, type]] = {
        "coef_": np.float32,
        "intercept_": np.float32,
        "mean_": np.float32,
        "scale_": np.float32,
    }
    per_class_arrays: ClassVar[tuple[str, ...]] = ("coef_", "intercept_")
    default_score: ClassVar[str] = "msp"
    param_grid: ClassVar[dict[str, list]] = {"C": C_GRID}

    def __init__(
        self,
        C: float = 1.0,
        tol: float = 1e-4,
        max_iter: int = 1000,
        standardize: bool = True,
        class_weight: str | None = "balanced",
    ):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.standardize = standardize
        self.class_weight = class_weight

    def feature_axis_arrays(self) -> tuple[str, ...]:
        return ("coef_", "mean_", "scale_")

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LinearHead":
        fitted = self.fit_grid([X], y, [{}])[0][0]
        self.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
        return self

    def fit_grid(
        self, Xs: Sequence[np.ndarray], y: np.ndarray, grid: Sequence[Mapping[str, Any]]
    ) -> list[list["LinearHead"]]:
        """One batched solve for every (feature matrix, C); other parameters must not vary."""
        heads = [clone(self).set_params(**params) for params in grid]
        if any(
            {k: v for k, v in h.get_params().items() if k != "C"}
            != {k: v for k, v in self.get_params().items() if k != "C"}
            for h in heads
        ):
            return super().fit_grid(Xs, y, grid)
        classes, y_idx = self._labels(y)
        if len(classes) < 2:
            raise ConfigError("the linear head needs at least two known classes")
        if self.class_weight not in ("balanced", None):
            raise ConfigError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        Zs, moments = [], []
        for X in Xs:
            if np.ndim(X) != 2:
                raise ConfigError(f"features must be (n, D), got shape {np.shape(X)}")
            mean, scale = _moments(X, self.standardize)
            Zs.append(StandardizedRows(X, mean, scale))  # standardised chunk by chunk, never whole
            moments.append((mean, scale))
        solved = fit_multinomial(
            Zs, y_idx, len(classes), [h.C for h in heads], self.class_weight == "balanced",
            Stopping(self.tol, self.max_iter),
        )  # fmt: skip
        out = []
        for (mean, scale), row in zip(moments, solved):
            fitted = []
            for h, sol in zip(heads, row):
                h = clone(h)
                h.classes_ = classes
                h.mean_, h.scale_ = mean.astype(np.float32), scale.astype(np.float32)
                h.coef_ = sol.coef.astype(np.float32)
                h.intercept_ = sol.intercept.astype(np.float32)
                h.n_iter_, h.converged_, h.objective_ = sol.n_iter, sol.converged, sol.objective
                fitted.append(h)
            out.append(fitted)
        return out

    def cross_decisions(self, X, y, splits, grid, refit=False, cache=None):
        """As `Head.cross_decisions`, every (C, split) problem in one solve on a shared basis
        (kept in `cache` for the next call on the same X)."""
        fixed = {k: v for k, v in self.get_params().items() if k != "C"}
        if any(set(p) - {"C"} for p in grid) or self.class_weight not in ("balanced", None):
            return super().cross_decisions(X, y, splits, grid, refit)
        classes, y_idx = self._labels(y)
        if len(classes) < 2:
            raise ConfigError("the linear head needs at least two known classes")
        K, balanced = len(classes), self.class_weight == "balanced"
        key = ("linear", self.standardize, balanced)
        if cache is None or key not in cache:
            mean, scale = _moments(X, self.standardize)
            w8 = _weights(y_idx, K, None, balanced)[0]
            made = (mean, scale, Basis(StandardizedRows(X, mean, scale), w8))
            if cache is not None:
                cache[key] = made
        mean, scale, basis = made if cache is None else cache[key]
        Cs = [float(p.get("C", self.C)) for p in grid]
        # a fold's C is scaled by (all rows / its rows): its penalty per unit of data is the
        # refit's, so its scores have the refit's scale (an out-of-fold threshold then keeps
        # about `target_tpr` of new known images, not more)
        n = len(y_idx)
        problems = [
            Problem(C * n / max(len(tr), 1), np.asarray(tr)) for C in Cs for tr, _ in splits
        ]
        problems += [Problem(C) for C in Cs] if refit else []
        solved = solve(basis, y_idx, K, problems, balanced, Stopping(self.tol, self.max_iter))
        decisions = []
        for g in range(len(grid)):
            row = []
            for s, (_, test) in enumerate(splits):
                v, fit = solved[g * len(splits) + s]
                L = basis.logits(v, np.asarray(test)).T
                L[:, ~fit.present] = -np.inf
                row.append(L)
            decisions.append(row)
        refitted = []
        for C, (v, fit) in zip(Cs, solved[len(grid) * len(splits) :]):
            h = clone(self).set_params(**fixed, C=C)
            h.classes_ = classes
            h.mean_, h.scale_ = mean.astype(np.float32), scale.astype(np.float32)
            coef, intercept = basis.to_features(v)
            h.coef_, h.intercept_ = coef.astype(np.float32), intercept.astype(np.float32)
            h.n_iter_, h.converged_, h.objective_ = fit.n_iter, fit.converged, fit.objective
            refitted.append(h)
        return decisions, refitted

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = self._fitted_features(X)
        return ((X - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_

    def linear_map(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) with logits = X·Wᵀ + b on the raw features (for scores such as ViM)."""
        W = self.coef_ / self.scale_
        return W, self.intercept_ - W @ self.mean_

    def enrolment_prototype(self) -> "LinearHead":
        return clone(self).set_params(class_weight=None)

    def add_class(
        self, X: np.ndarray, label: str, X_train: np.ndarray, y_train: np.ndarray
    ) -> "LinearHead":
        """Refit with the new class on the stored training features of the others."""
        self._check_new_class(label)
        X = self._as_2d(X)
        Xn = np.vstack([self._as_2d(X_train), X])
        yn = np.concatenate(
            [np.asarray(y_train, dtype=object), np.array([label] * len(X), dtype=object)]
        )
        # a class enrolled from a handful of images is not up-weighted to the size of the others:
        # balanced weights would multiply its few samples and push its boundary into theirs
        weight, self.class_weight = self.class_weight, None
        try:
            return self.fit(Xn, yn)
        finally:
            self.class_weight = weight
