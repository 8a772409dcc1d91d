"""The head contract: a light classifier over frozen features, with open-set evidence.

Every head follows the scikit-learn estimator contract: `__init__` only stores hyper-parameters;
`fit(X, y)` learns and returns self; learned state ends in `_` (`classes_`, ...); `predict`,
`predict_proba` and `decision_function` work on (n, D) float arrays.

`decision_function(X)` returns (n, K) per-class evidence, columns in `classes_` order: logits for
`linear`, negative distances or log-likelihoods for distance heads. Open-set scores are computed
from it by `originprobe.openset` (higher = more likely known). A head lists the scores it supports
in `supported_scores`.

Heads are saved without pickle: each head lists its learned arrays in `state_arrays`
(attribute → dtype); `get_state()` returns (tensors, params) — those arrays for safetensors, named
without the trailing `_`, and a JSON-serialisable dict — and `from_state(tensors, params)`
rebuilds the head.
A head never sees unknown-class samples: the pipeline only passes known classes to `fit`.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=1)
    return m + np.log(np.exp(logits - m[:, None]).sum(axis=1))


class NotFittedError(RuntimeError):
    pass


class Head:
    """Base class of every head (see the module docstring for the contract)."""

    name: ClassVar[str] = "head"
    supported_scores: ClassVar[tuple[str, ...]] = ()
    default_score: ClassVar[str] = "msp"
    #: hyper-parameters swept on known-class validation data: {param: [values]}
    param_grid: ClassVar[dict[str, list]] = {}
    #: learned arrays saved in a bundle: {attribute ending in "_": numpy dtype}
    state_arrays: ClassVar[dict[str, type]] = {}

    # --- sklearn-style parameter access ---------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        import inspect
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def set_params(self, **params) -> "Head":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"{self.name} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def clone(self, **params) -> "Head":
        return type(self)(**(self.get_params() | params))

    # --- the contract ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> "Head":  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def add_class(self, X: np.ndarray, label: str) -> "Head":  # pragma: no cover - per head
        """Enrol a new class from a few samples without touching the others' training data."""
        raise NotImplementedError(f"head {self.name!r} cannot enrol classes in place")

    # --- saving without pickle ------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors = {attr.rstrip("_"): np.ascontiguousarray(getattr(self, attr), dtype=dtype)
                   for attr, dtype in self.state_arrays.items()}
        return tensors, {"params": self.get_params(), "classes": [str(c) for c in self.classes_]}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], params: dict[str, Any]) -> "Head":
        head = cls(**params["params"])
        head.classes_ = np.array(params["classes"], dtype=object)
        for attr, dtype in cls.state_arrays.items():
            setattr(head, attr, np.asarray(tensors[attr.rstrip("_")], dtype))
        return head

    # --- helpers --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"{self.name} head is not fitted")

    def _fitted_features(self, X: np.ndarray, dim: int) -> np.ndarray:
        """X as (n, dim) float32 for a fitted head; a clear error on the wrong dimension."""
        self._check_fitted()
        X = self._as_2d(X)
        if X.shape[1] != dim:
            raise ValueError(f"{self.name} head expects {dim}-d features, got {X.shape[1]}")
        return X

    def _check_new_class(self, label: str) -> None:
        self._check_fitted()
        if label in set(self.classes_.tolist()):
            raise ValueError(f"class {label!r} is already known")

    @staticmethod
    def _as_2d(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"features must be (n, D), got shape {X.shape}")
        return X
