"""`linear`: multinomial L2 logistic regression on standardised features (the seed method's probe).

C is not chosen here: `param_grid["C"]` is swept by `heads.selection` on known-class validation data.
"""
from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from .base import Head

C_GRID = [float(c) for c in np.logspace(-4, 2, 13)]


class LinearHead(Head):
    name: ClassVar[str] = "linear"
    supported_scores: ClassVar[tuple[str, ...]] = ("msp", "maxlogit", "energy")
    state_arrays: ClassVar[dict[str, type]] = {"coef_": np.float32, "intercept_": np.float32,
                                                "mean_": np.float32, "scale_": np.float32}
    default_score: ClassVar[str] = "msp"
    param_grid: ClassVar[dict[str, list]] = {"C": C_GRID}

    def __init__(self, C: float = 1.0, max_iter: int = 2000, standardize: bool = True,
                 class_weight: str | None = "balanced", seed: int = 0):
        self.C = C
        self.max_iter = max_iter
        self.standardize = standardize
        self.class_weight = class_weight
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LinearHead":
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        X = self._as_2d(X).astype(np.float64)
        y = np.asarray(y)
        self.classes_ = np.array(sorted(set(y.tolist())), dtype=object)
        if len(self.classes_) < 2:
            raise ValueError("the linear head needs at least two known classes")
        self._store_train = (X, y)  # kept in memory only, for refits on enrol
        self.mean_ = X.mean(axis=0) if self.standardize else np.zeros(X.shape[1])
        self.scale_ = X.std(axis=0) if self.standardize else np.ones(X.shape[1])
        self.scale_[self.scale_ < 1e-8] = 1.0
        Z = (X - self.mean_) / self.scale_
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight,
                                 random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(Z, y)
        order = [list(clf.classes_).index(c) for c in self.classes_]
        coef, intercept = clf.coef_, clf.intercept_
        if coef.shape[0] == 1:  # binary: sklearn stores one row; make it symmetric logits
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef_ = coef[order].astype(np.float32)
        self.intercept_ = intercept[order].astype(np.float32)
        self.n_iter_ = int(np.max(clf.n_iter_))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = self._fitted_features(X, self.mean_.shape[0])
        Z = (X - self.mean_.astype(np.float32)) / self.scale_.astype(np.float32)
        return Z @ self.coef_.T + self.intercept_

    def add_class(self, X: np.ndarray, label: str, X_train=None, y_train=None) -> "LinearHead":
        """Refit with the new class; needs the cached training features of the others."""
        self._check_new_class(label)
        if X_train is None:
            if not hasattr(self, "_store_train"):
                raise NotImplementedError(
                    "the linear head refits on enrolment and needs the training features of the "
                    "known classes (the bundle's feature cache)")
            X_train, y_train = self._store_train
        Xn = np.vstack([np.asarray(X_train, np.float64), np.asarray(X, np.float64)])
        yn = np.concatenate([np.asarray(y_train, dtype=object), np.array([label] * len(X), object)])
        # a class enrolled from a handful of images is not up-weighted to the size of the others:
        # balanced weights would multiply its few samples and push its boundary into theirs
        weight, self.class_weight = self.class_weight, None
        try:
            return self.fit(Xn, yn)
        finally:
            self.class_weight = weight
