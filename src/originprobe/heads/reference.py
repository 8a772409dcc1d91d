"""`reference`: metric learning with learned reference points (Fang et al., BMVC 2023).

A small projection network (MLP on standardised frozen features) maps images into an embedding
space where every known class owns `refs_per_class` learned reference points. Training minimises
cross-entropy over negative squared distances to the nearest reference of each class (a
prototype / distance-based cross-entropy loss) plus a pull term bringing each embedding onto its
own class's nearest reference, which keeps known classes compact so that images of unseen
generators fall far from every reference. Prediction assigns the nearest reference's class;
decision_function[:, c] = -distance to class c's nearest reference, so the `reference` score (row
max) rejects by distance. Enrolling a class adds a reference at the mean embedding of its images
(the projection is frozen). Deterministic for a given `seed`; trains on CPU in seconds.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import HEADS, Head, softmax


@HEADS.register("reference")
class ReferenceHead(Head):
    name: ClassVar[str] = "reference"
    provides: ClassVar[frozenset[str]] = frozenset({"posterior", "distances", "features"})
    state_arrays: ClassVar[dict[str, type]] = {
        "w1_": np.float32,
        "b1_": np.float32,
        "w2_": np.float32,
        "b2_": np.float32,
        "references_": np.float32,
        "mean_": np.float32,
        "scale_": np.float32,
    }
    per_class_arrays: ClassVar[tuple[str, ...]] = ("references_",)
    default_score: ClassVar[str] = "reference"
    param_grid: ClassVar[dict[str, list]] = {"pull_weight": [0.01, 0.1]}

    def __init__(
        self,
        embedding_dim: int = 128,
        hidden_dim: int = 512,
        refs_per_class: int = 1,
        pull_weight: float = 0.1,
        epochs: int = 60,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        temperature: float = 1.0,
        seed: int = 0,
    ):
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.refs_per_class = refs_per_class
        self.pull_weight = pull_weight
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.temperature = temperature
        self.seed = seed

    # --- network ------------------------------------------------------------------------------
    def _net(self, d_in: int):
        import torch
        from torch import nn

        return nn.Sequential(
            nn.Linear(d_in, self.hidden_dim),
            nn.GELU(),
            nn.Linear(self.hidden_dim, self.embedding_dim),
        ).to(torch.float32)

    @staticmethod
    def _sq_dist(z, refs):
        # z (n, e), refs (K, m, e) → (n, K, m)
        return ((z[:, None, None, :] - refs[None]) ** 2).sum(-1)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "ReferenceHead":
        import torch

        X = self._as_2d(X)
        self.classes_, y_idx = self._labels(y)
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ < 1e-8] = 1.0
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        net = self._net(X.shape[1])
        K, m = len(self.classes_), self.refs_per_class
        refs = torch.nn.Parameter(torch.randn(K, m, self.embedding_dim, generator=g))
        opt = torch.optim.AdamW(
            list(net.parameters()) + [refs], lr=self.lr, weight_decay=self.weight_decay
        )
        Z = torch.from_numpy(((X - self.mean_) / self.scale_).astype(np.float32))
        t = torch.from_numpy(y_idx.astype(np.int64))
        # class-balanced sampling weights so that a large "real" class does not dominate
        counts = np.bincount(t.numpy(), minlength=K).astype(np.float64)
        w = torch.from_numpy((1.0 / counts)[t.numpy()])
        n = len(Z)
        steps = max(1, int(np.ceil(n / self.batch_size)))
        net.train()
        for _ in range(self.epochs):
            order = torch.multinomial(w, n, replacement=True, generator=g)
            for s in range(steps):
                idx = order[s * self.batch_size : (s + 1) * self.batch_size]
                emb = net(Z[idx])
                d2 = self._sq_dist(emb, refs).min(dim=2).values  # nearest ref per class
                loss = torch.nn.functional.cross_entropy(-d2 / self.temperature, t[idx])
                loss = loss + self.pull_weight * d2.gather(1, t[idx, None]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        self.w1_, self.b1_ = weights["0.weight"], weights["0.bias"]
        self.w2_, self.b2_ = weights["2.weight"], weights["2.bias"]
        self.references_ = refs.detach().numpy().astype(np.float32)
        return self

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Projection of features into the metric space (numpy; no torch needed at inference)."""
        X = self._fitted_features(X)
        Z = (X - self.mean_) / self.scale_
        h = Z @ self.w1_.T + self.b1_
        h = 0.5 * h * (1.0 + _erf(h / np.sqrt(2.0)))  # exact GELU, as torch's default
        return (h @ self.w2_.T + self.b2_).astype(np.float32)

    def distances(self, X: np.ndarray) -> np.ndarray:
        """(n, K) Euclidean distance to each class's nearest reference point."""
        e = self.embed(X)
        R = self.references_  # (K, m, e)
        d2 = ((e[:, None, None, :] - R[None]) ** 2).sum(-1).min(axis=2)
        return np.sqrt(np.maximum(d2, 0.0))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return -self.distances(X)

    def proba_from_decision(self, decision: np.ndarray) -> np.ndarray:
        return softmax(-(decision**2) / self.temperature)  # decision = -distance

    def feature_axis_arrays(self) -> tuple[str, ...]:
        return ("w1_", "mean_", "scale_")

    def add_class(self, X: np.ndarray, label: str, X_train=None, y_train=None) -> "ReferenceHead":
        self._check_new_class(label)
        new = np.repeat(self.embed(X).mean(axis=0)[None, None, :], self.references_.shape[1], 1)
        refs = {c: r for c, r in zip(self.classes_, self.references_)} | {label: new[0]}
        self.classes_ = np.array(sorted(refs), dtype=object)
        self.references_ = np.stack([refs[c] for c in self.classes_]).astype(np.float32)
        return self


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)
