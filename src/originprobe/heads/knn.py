"""`knn`: cosine k-nearest-neighbour head (Sun et al., 2022 style open-set score).

Features are centred on the training mean and L2-normalised. decision_function[:, c] is the cosine
similarity to the k-th nearest training sample of class c, so the `knn` score (row max) is minus
the k-th-neighbour distance to the nearest known class. Search is exact with torch in chunks
(bounded memory); `backend="faiss"` uses faiss when installed, for millions of vectors.
Enrolling a class appends its vectors.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ._features import centred_unit
from .base import HEADS, Head, softmax


@HEADS.register("knn")
class KNNHead(Head):
    name: ClassVar[str] = "knn"
    provides: ClassVar[frozenset[str]] = frozenset({"posterior", "max_decision", "features"})
    state_arrays: ClassVar[dict[str, type]] = {
        "bank_": np.float32,
        "bank_labels_": np.int64,
        "mean_": np.float32,
    }
    default_score: ClassVar[str] = "knn"
    param_grid: ClassVar[dict[str, list]] = {"k": [1, 3, 5, 10, 20]}

    def __init__(
        self, k: int = 5, temperature: float = 0.05, backend: str = "auto", chunk: int = 4096
    ):
        self.k = k
        self.temperature = temperature
        self.backend = backend
        self.chunk = chunk

    def fit(self, X: np.ndarray, y: np.ndarray) -> "KNNHead":
        X = self._as_2d(X)
        self.classes_, idx = self._labels(y)
        self.mean_ = X.mean(axis=0)
        self.bank_ = centred_unit(X, self.mean_)
        self.bank_labels_ = idx.astype(np.int64)
        return self

    def _kth_similarity(self, Q: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((len(Q), len(self.classes_)), dtype=np.float32)
        bank = torch.from_numpy(self.bank_)
        for ci in range(len(self.classes_)):
            members = bank[torch.from_numpy(self.bank_labels_ == ci)]
            k = min(self.k, len(members))
            if self.backend == "faiss" or (self.backend == "auto" and len(members) > 200_000):
                out[:, ci] = self._faiss_kth(members.numpy(), Q, k)
                continue
            for s in range(0, len(Q), self.chunk):
                sims = torch.from_numpy(Q[s : s + self.chunk]) @ members.T
                out[s : s + self.chunk, ci] = sims.topk(k, dim=1).values[:, -1].numpy()
        return out

    @staticmethod
    def _faiss_kth(members: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
        try:
            import faiss
        except ImportError:
            raise RuntimeError("knn backend 'faiss' needs `pip install faiss-cpu`") from None
        index = faiss.IndexFlatIP(members.shape[1])
        index.add(np.ascontiguousarray(members, dtype=np.float32))
        sims, _ = index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        return sims[:, -1]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = self._fitted_features(X)
        return self._kth_similarity(centred_unit(X, self.mean_))

    def proba_from_decision(self, decision: np.ndarray) -> np.ndarray:
        return softmax(decision / self.temperature)

    def feature_axis_arrays(self) -> tuple[str, ...]:
        return ("bank_", "mean_")

    def _check_state(self) -> None:
        super()._check_state()
        if len(self.bank_labels_) != len(self.bank_) or (
            len(self.bank_labels_)
            and not 0 <= self.bank_labels_.min() <= self.bank_labels_.max() < len(self.classes_)
        ):
            from .base import HeadStateError

            raise HeadStateError("knn head: bank labels do not match the bank or the classes")

    def add_class(self, X: np.ndarray, label: str, X_train=None, y_train=None) -> "KNNHead":
        self._check_new_class(label)
        classes = np.array(sorted(set(self.classes_.tolist()) | {label}), dtype=object)
        old = self.classes_[self.bank_labels_]
        new = centred_unit(self._as_2d(X), self.mean_)
        self.bank_ = np.vstack([self.bank_, new])
        self.classes_ = classes
        self.bank_labels_ = np.searchsorted(
            classes, np.r_[old, [label] * len(new)].astype(object)
        ).astype(np.int64)
        return self
