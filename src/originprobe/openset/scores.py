"""Open-set scores: how much a sample looks like one of the known classes.

Convention, for every score in originprobe: **higher = more likely known**. Distances are negated
and energies sign-flipped where the published formula has the other sign, so that one evaluation
path (AUROC, OSCR, thresholds) serves every score.

Each score is a small fitted object in the style of OpenOOD's postprocessors:
`fit(train_features, train_labels, head)` once on known-class training data, then
`score(features)`. Scores that only read the head's outputs (msp, maxlogit, energy, reference)
ignore the features at fit time; the others learn something from them:

| score | published as | what it reads |
|---|---|---|
| `msp` | max softmax probability (Hendrycks & Gimpel, 2017) | the head's posterior |
| `maxlogit` | max logit (Hendrycks et al., 2022) | the head's decision matrix |
| `energy` | negative free energy (Liu et al., 2020) | logits (linear, gaussian heads) |
| `reference` | distance to the nearest reference point (Fang et al., 2023) | reference / ncm heads |
| `knn` | deep k-NN (Sun et al., 2022): minus the distance to the k-th nearest normalised training feature | training features |
| `mahalanobis` | Mahalanobis distance to the nearest class mean, shared covariance (Lee et al., 2018) | training features |
| `vim` | virtual-logit matching (Wang et al., 2022) | features, the linear head's W and b |

Each score declares what it `needs` (the head's posterior, logits, a max-able decision, distances
to references, its linear map, the training features) and each head what it `provides`; a pair
whose needs are not all provided is an `UnsupportedScoreError`. Every score can be given the
head's decision matrix when the caller has it already, so that the head runs once. Scores that
need nothing but the decision matrix (`DECISION_ONLY`) can also be computed on cross-validated
decisions (`score_decisions`), which is how selection estimates them. This module never sees
unknown-class labels.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..heads.base import Head, logsumexp
from ..registry import Registry, UnknownNameError

SCORES: "Registry[type[OpenSetScore]]" = Registry("score")


class UnsupportedScoreError(UnknownNameError):
    """A head was asked for a score it cannot produce, or a score that does not exist."""


#: what a head's decision matrix alone can give (no training features needed)
DECISION_ONLY = frozenset({"posterior", "max_decision", "logits", "distances"})


class OpenSetScore:
    """Base class: `fit(X, y, head)` → self, `score(X, decision=None)` → (n,) higher = known."""

    name: ClassVar[str] = "score"
    #: what the score reads from the head (see `Head.provides`)
    needs: ClassVar[frozenset[str]] = frozenset({"posterior"})

    def fit(self, X: np.ndarray, y: np.ndarray, head: Head) -> "OpenSetScore":
        self.head_ = head
        return self

    def score(self, X: np.ndarray | None, decision: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def _decision(self, X, decision) -> np.ndarray:
        return self.head_.decision_function(X) if decision is None else decision


@SCORES.register("msp")
class MSP(OpenSetScore):
    """The head's top-1 posterior: the same number `predict_proba` shows as the top probability."""

    name = "msp"
    needs = frozenset({"posterior"})

    def score(self, X, decision=None):
        return self.head_.proba_from_decision(self._decision(X, decision)).max(axis=1)


@SCORES.register("maxlogit")
class MaxLogit(OpenSetScore):
    name = "maxlogit"
    needs = frozenset({"max_decision"})

    def score(self, X, decision=None):
        return self._decision(X, decision).max(axis=1)


@SCORES.register("reference")
class ReferenceDistance(MaxLogit):
    """Minus the distance to the nearest reference point (a class's learned point or mean)."""

    name = "reference"
    needs = frozenset({"distances"})


@SCORES.register("energy")
class Energy(OpenSetScore):
    name = "energy"
    needs = frozenset({"logits"})

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def score(self, X, decision=None):
        T = self.temperature
        return T * logsumexp(self._decision(X, decision) / T)


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


@SCORES.register("knn")
class DeepKNN(OpenSetScore):
    """-‖z - z_(k)‖ with z = x/‖x‖ and z_(k) the k-th nearest normalised training feature."""

    name = "knn"
    needs = frozenset({"features"})

    def __init__(self, k: int = 10, chunk: int = 2048):
        self.k = k
        self.chunk = chunk

    def fit(self, X, y, head):
        super().fit(X, y, head)
        self.bank_ = _unit(X)
        return self

    def score(self, X, decision=None):
        import torch

        Q = torch.from_numpy(_unit(X))
        bank = torch.from_numpy(self.bank_)
        k = max(1, min(self.k, len(self.bank_)))
        out = np.empty(len(Q), dtype=np.float32)
        for s in range(0, len(Q), self.chunk):
            sims = Q[s : s + self.chunk] @ bank.T
            kth = sims.topk(k, dim=1).values[:, -1].numpy()
            out[s : s + self.chunk] = -np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0))
        return out


@SCORES.register("mahalanobis")
class Mahalanobis(OpenSetScore):
    """-½ min_c (z-μ_c)ᵀ Σ⁻¹ (z-μ_c) on centred, L2-normalised features, one shared shrunk
    covariance; a Gaussian head is its own model, any other head gets one fitted on the training
    features."""

    name = "mahalanobis"
    needs = frozenset({"features"})

    def fit(self, X, y, head):
        super().fit(X, y, head)
        from ..heads.gaussian import GaussianHead

        self.model_ = head if isinstance(head, GaussianHead) else GaussianHead().fit(X, y)
        return self

    def score(self, X, decision=None):
        d = (
            decision
            if decision is not None and self.model_ is self.head_
            else self.model_.decision_function(X)
        )
        return d.max(axis=1)


@SCORES.register("vim")
class ViM(OpenSetScore):
    """logsumexp(logits) - α·‖(x-o)⊥‖: the residual of x off the principal subspace of the training
    features (origin o = -W⁺b), scaled so that it matches the logits on training data."""

    name = "vim"
    needs = frozenset({"linear_map", "features"})

    def __init__(self, dim: int | None = None):
        self.dim = dim

    def fit(self, X, y, head):
        super().fit(X, y, head)
        if not hasattr(head, "linear_map"):
            raise UnsupportedScoreError(f"score 'vim' needs a linear head, not {head.name!r}")
        W, b = (a.astype(np.float64) for a in head.linear_map())
        X = np.asarray(X, dtype=np.float64)
        D = X.shape[1]
        # softmax ignores a shift shared by all logits, and a multinomial fit leaves W one rank
        # short (its rows sum to zero): centre the rows and drop numerically null directions
        Wc, bc = W - W.mean(axis=0), b - b.mean()
        self.origin_ = -np.linalg.pinv(Wc, rcond=1e-6) @ bc
        Xc = X - self.origin_
        d = self.dim or (1000 if D >= 1500 else 512 if D >= 768 else max(1, D // 2))
        d = min(d, D - 1) if D > 1 else 1
        _, vecs = np.linalg.eigh(Xc.T @ Xc / max(len(Xc), 1))
        self.residual_basis_ = np.ascontiguousarray(vecs[:, : D - d])  # smallest eigenvalues
        vlogit = np.linalg.norm(Xc @ self.residual_basis_, axis=1)
        logits = X @ W.T.astype(np.float64) + b
        self.alpha_ = float(logits.max(axis=1).mean() / max(vlogit.mean(), 1e-12))
        return self

    def score(self, X, decision=None):
        d = self._decision(X, decision)
        resid = (np.asarray(X, np.float64) - self.origin_) @ self.residual_basis_
        return logsumexp(d) - self.alpha_ * np.linalg.norm(resid, axis=1)


def supported_scores(head: Head | type[Head]) -> list[str]:
    """The scores whose needs the head provides, its default first."""
    names = [n for n, cls in SCORES.items() if cls.needs <= head.provides]
    return sorted(names, key=lambda n: (n != head.default_score, n))


def decision_scores_of(head: Head | type[Head]) -> list[str]:
    """The supported scores that read nothing but the head's decision matrix."""
    return [n for n in supported_scores(head) if SCORES.get(n).needs <= DECISION_ONLY]


def check_supported(head: Head | type[Head], name: str) -> None:
    if name not in SCORES:
        raise UnsupportedScoreError(f"unknown score {name!r}; scores: {', '.join(SCORES.names())}")
    if not SCORES.get(name).needs <= head.provides:
        missing = sorted(SCORES.get(name).needs - head.provides)
        raise UnsupportedScoreError(
            f"head {head.name!r} does not support score {name!r} (it needs {', '.join(missing)}); "
            f"it supports {', '.join(supported_scores(head))}"
        )


def score_decisions(name: str, head: Head, decision: np.ndarray) -> np.ndarray:
    """Score `name` (decision-only) of a decision matrix that `head`'s kind produced (columns of
    classes a fold did not train are −inf and never win)."""
    if not SCORES.get(name).needs <= DECISION_ONLY:
        raise UnsupportedScoreError(f"score {name!r} needs training features, not only decisions")
    return SCORES.get(name)().fit(None, None, head).score(None, decision)


def fit_score(name: str, X: np.ndarray, y: np.ndarray, head: Head) -> OpenSetScore:
    """The score `name`, fitted for `head` on its known-class training features."""
    check_supported(head, name)
    return SCORES.get(name)().fit(X, y, head)
