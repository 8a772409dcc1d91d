"""The head contract: a light classifier over frozen features.

Every head is a scikit-learn estimator (`BaseEstimator` + `ClassifierMixin`): `__init__` only
stores hyper-parameters; `fit(X, y)` learns and returns self; learned state ends in `_`
(`classes_`, ...); `predict`, `predict_proba`, `decision_function`, `score` work on (n, D) float
arrays; `get_params(deep=True)`, `set_params` and `sklearn.base.clone` work, so a head can be
cross-validated and compared with scikit-learn's own models.

`decision_function(X)` returns (n, K) per-class evidence, columns in `classes_` order: logits for
`linear`, negative distances or log-likelihoods for the distance heads. `proba_from_decision`
turns that matrix into the head's posterior, so `predict_proba(X)` and the open-set scores that
read probabilities see the same numbers. Open-set scores live in `originprobe.openset`; a head
says what its outputs offer in `provides` (a posterior, logits, distances to references, a linear
map ...) and each score says what it `needs`, so which pairs work is never listed by hand.

`fit_grid(Xs, y, grid)` fits one head per (feature matrix, hyper-parameters) pair, and
`cross_decisions(X, y, splits, grid)` the decision matrices of heads fitted on each split's
training rows, for cross-validation; heads whose solver can share work across the grid and the
splits (the linear head's batched L-BFGS on one shared basis) override them.

Heads are saved without pickle: `state_arrays` names the learned arrays (attribute → dtype);
`get_state()` returns (tensors, params) and `from_state(tensors, params)` rebuilds the head,
checking every array's shape against the class count and feature dimension.
A head never sees unknown-class samples: the pipeline only passes known classes to `fit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError

from ..errors import ConfigError
from ..registry import Registry

HEADS: "Registry[type[Head]]" = Registry("head")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=1)
    return m + np.log(np.exp(logits - m[:, None]).sum(axis=1))


def place_columns(decision: np.ndarray, own: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """A head's (n, k) decision matrix over its own classes, spread over `classes` (n, K); the
    columns of classes it does not know are −inf."""
    out = np.full((len(decision), len(classes)), -np.inf)
    out[:, np.searchsorted(classes, own)] = decision
    return out


class HeadStateError(ConfigError):
    """Saved head state that does not fit together (wrong shapes, missing arrays)."""


class Head(ClassifierMixin, BaseEstimator):
    """Base class of every head (see the module docstring for the contract)."""

    name: ClassVar[str] = "head"
    #: what the head's outputs offer open-set scores (each score in openset.scores `needs` some)
    provides: ClassVar[frozenset[str]] = frozenset({"posterior", "features"})
    default_score: ClassVar[str] = "msp"
    #: hyper-parameters swept on known-class validation data: {param: [values]}
    param_grid: ClassVar[dict[str, list]] = {}
    #: learned arrays saved in a bundle: {attribute ending in "_": numpy dtype}
    state_arrays: ClassVar[dict[str, type]] = {}
    #: learned arrays whose first axis is one row per class (checked at load)
    per_class_arrays: ClassVar[tuple[str, ...]] = ()

    # --- the contract ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> "Head":  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def proba_from_decision(self, decision: np.ndarray) -> np.ndarray:
        return softmax(decision)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.proba_from_decision(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def fit_grid(
        self, Xs: Sequence[np.ndarray], y: np.ndarray, grid: Sequence[Mapping[str, Any]]
    ) -> list[list["Head"]]:
        """Heads fitted on every feature matrix of `Xs` with every parameter set of `grid`."""
        return [[clone(self).set_params(**params).fit(X, y) for params in grid] for X in Xs]

    def cross_decisions(
        self,
        X: np.ndarray,
        y: np.ndarray,
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
        grid: Sequence[Mapping[str, Any]],
        refit: bool = False,
        cache: dict | None = None,
    ) -> tuple[list[list[np.ndarray]], list["Head"]]:
        """Cross-validation: for every parameter set of `grid` and every (train rows, test rows)
        split, the (len(test rows), K) decision matrix of a head fitted on the train rows alone,
        columns in the sorted order of every class in `y`; a class without training rows in a
        split (a generator withheld from it) gets −inf. With `refit`, also one head per
        parameter set fitted on every row. `cache`: a dict kept by the caller between calls on
        the same X and y, where a head may keep work it can reuse."""
        X = self._as_2d(X)
        y = np.asarray(y, dtype=object)
        classes = self._labels(y)[0]
        decisions, refitted = [], []
        for params in grid:
            row = []
            for train, test in splits:
                head = clone(self).set_params(**params).fit(X[train], y[train])
                row.append(place_columns(head.decision_function(X[test]), head.classes_, classes))
            decisions.append(row)
            if refit:
                refitted.append(clone(self).set_params(**params).fit(X, y))
        return decisions, refitted

    def add_class(
        self, X: np.ndarray, label: str, X_train: np.ndarray, y_train: np.ndarray
    ) -> "Head":  # pragma: no cover - per head
        """Enrol a new class from a few samples; `X_train, y_train` are the training features of
        the classes already known (heads that update in place do not need them)."""
        raise NotImplementedError(f"head {self.name!r} cannot enrol classes")

    def enrolment_prototype(self) -> "Head":
        """An unfitted head made as `add_class` makes its refit (to cross-fit a threshold after
        an enrolment)."""
        return clone(self)

    @property
    def n_features_(self) -> int:
        self._check_fitted()
        return int(self.mean_.shape[0])

    # --- saving without pickle ------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors = {
            attr.rstrip("_"): np.ascontiguousarray(getattr(self, attr), dtype=dtype)
            for attr, dtype in self.state_arrays.items()
        }
        return tensors, {
            "params": self.get_params(deep=False),
            "classes": [str(c) for c in self.classes_],
        }

    @classmethod
    def from_state(cls, tensors: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> "Head":
        try:
            head = cls(**dict(params["params"]))
            classes = [str(c) for c in params["classes"]]
        except (KeyError, TypeError) as exc:
            raise HeadStateError(f"{cls.name} head: bad parameters ({exc})") from None
        if len(classes) < 1 or len(set(classes)) != len(classes):
            raise HeadStateError(f"{cls.name} head: class list {classes!r} is empty or repeats")
        head.classes_ = np.array(classes, dtype=object)
        for attr, dtype in cls.state_arrays.items():
            key = attr.rstrip("_")
            if key not in tensors:
                raise HeadStateError(f"{cls.name} head: array {key!r} is missing")
            setattr(head, attr, np.asarray(tensors[key], dtype))
        head._check_state()
        return head

    def _check_state(self) -> None:
        """Shapes of the learned arrays agree with each other and with the class count."""
        K = len(self.classes_)
        for attr in self.per_class_arrays:
            arr = getattr(self, attr)
            if arr.ndim < 1 or arr.shape[0] != K:
                raise HeadStateError(
                    f"{self.name} head: {attr.rstrip('_')} has {arr.shape[0] if arr.ndim else 0} "
                    f"class rows for {K} classes"
                )
        D = self.mean_.shape[0] if hasattr(self, "mean_") else None
        for attr in self.state_arrays:
            arr = getattr(self, attr)
            if not np.all(np.isfinite(arr)):
                raise HeadStateError(
                    f"{self.name} head: {attr.rstrip('_')} holds non-finite values"
                )
        if D is not None:
            for attr in self.feature_axis_arrays():
                arr = getattr(self, attr)
                if arr.shape[-1] != D:
                    raise HeadStateError(
                        f"{self.name} head: {attr.rstrip('_')} is {arr.shape[-1]}-d, "
                        f"the features are {D}-d"
                    )

    def feature_axis_arrays(self) -> tuple[str, ...]:
        """Learned arrays whose last axis is the feature dimension."""
        return ()

    # --- helpers --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"{self.name} head is not fitted")

    def _fitted_features(self, X: np.ndarray) -> np.ndarray:
        """X as (n, D) float32 for a fitted head; a clear error on the wrong dimension."""
        self._check_fitted()
        X = self._as_2d(X)
        if X.shape[1] != self.n_features_:
            raise ConfigError(
                f"{self.name} head expects {self.n_features_}-d features, got {X.shape[1]}"
            )
        return X

    def _check_new_class(self, label: str) -> None:
        self._check_fitted()
        if label in set(self.classes_.tolist()):
            raise ConfigError(f"class {label!r} is already known")

    @staticmethod
    def _labels(y) -> tuple[np.ndarray, np.ndarray]:
        """(sorted class names, index of each label)."""
        y = np.asarray(y, dtype=object).astype(str).astype(object)
        classes = np.array(sorted(set(y.tolist())), dtype=object)
        return classes, np.searchsorted(classes, y)

    @staticmethod
    def _as_2d(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ConfigError(f"features must be (n, D), got shape {X.shape}")
        return X


__all__ = [
    "HEADS",
    "Head",
    "HeadStateError",
    "NotFittedError",
    "logsumexp",
    "place_columns",
    "softmax",
]
