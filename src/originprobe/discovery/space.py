"""The space rejected images are clustered in (`DiscoverySpace`).

It is fitted on the known training rows a model carries (its reference rows, the features of its
chosen layers): standardised on them, then projected on their `dims` (32) principal directions.
Optionally (`content_dims` > 0) it first removes the directions along which images of one known
class vary most (within-class principal directions: content rather than generator).

The settings come from a study on the public splits with known data only (README, "Discovering
new generators"): two known generators withheld in turn, the pile to cluster made of their images
and 15 % of the known images (what a model falsely rejects). There, the model's own layers beat
the early layers alone, 32 dimensions beat 16, and removing within-class directions lost
purity and found fewer generators (it helped only on a pile of new generators alone). Fitting
reads at most `MAX_ROWS` rows, stratified by class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

CONTENT_DIMS = 0
DIMS = 32
MAX_ROWS = 5000
PREFIX = "discovery/"  # of its arrays in a bundle's reference file


def sample_rows(y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Row indices: every row, or `max_rows` of them in proportion to the classes (seeded)."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    out = []
    for c in sorted(set(y.tolist())):
        rows = np.flatnonzero(y == c)
        take = max(1, round(max_rows * len(rows) / len(y)))
        out.append(np.sort(rng.choice(rows, min(take, len(rows)), replace=False)))
    return np.sort(np.concatenate(out))


def _top_directions(M: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The top-k right singular vectors of M (rows), signs fixed (largest entry positive);
    randomized (seeded, 7 power iterations): memory of M and k columns, not of a full SVD."""
    from sklearn.utils.extmath import randomized_svd

    _, _, vt = randomized_svd(M, k, n_iter=7, random_state=seed)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    return (vt * signs[:, None]).astype(np.float32)


@dataclass
class DiscoverySpace:
    """Standardise → remove content directions → project (see the module doc)."""

    layers: list[str]
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    content: np.ndarray  # (k, D) removed directions
    centre: np.ndarray  # (D,) mean of the deflated training rows
    components: np.ndarray  # (dims, D)
    classes: list[str]
    class_centres: np.ndarray  # (len(classes), dims): where each known class sits

    @classmethod
    def fit(
        cls, X: np.ndarray, y: Sequence[str], layers: Sequence[str], seed: int = 0,
        content_dims: int = CONTENT_DIMS, dims: int = DIMS,
    ) -> "DiscoverySpace":  # fmt: skip
        y = np.asarray([str(v) for v in y], dtype=object)
        keep = sample_rows(y, MAX_ROWS, seed)
        X, y = np.asarray(X[keep], dtype=np.float32), y[keep]
        if len(X) < 3:
            raise ConfigError("a discovery space needs at least 3 training images")
        mean, scale = X.mean(0), X.std(0) + 1e-6
        Z = (X - mean) / scale
        classes = sorted(set(y.tolist()))
        k = min(content_dims, Z.shape[1] // 2, max(len(Z) - len(classes) - 1, 0))
        content = np.zeros((0, Z.shape[1]), np.float32)
        if k:
            R = np.vstack([Z[y == c] - Z[y == c].mean(0) for c in classes])
            content = _top_directions(R, k, seed)
        D = Z - (Z @ content.T) @ content
        centre = D.mean(0)
        components = _top_directions(D - centre, min(dims, *D.shape), seed)
        space = cls(list(layers), mean.astype(np.float32), scale.astype(np.float32), content,
                    centre.astype(np.float32), components, classes, np.zeros((0, 0)))  # fmt: skip
        E = space.project(X)
        space.class_centres = np.stack([E[y == c].mean(0) for c in classes]).astype(np.float32)
        return space

    def project(self, X: np.ndarray) -> np.ndarray:
        """(n, D) features of `layers`, concatenated → (n, dims)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ConfigError(
                f"the discovery space reads {len(self.mean)}-d features, got shape {X.shape}"
            )
        Z = (X - self.mean) / self.scale
        Z = Z - (Z @ self.content.T) @ self.content
        return (Z - self.centre) @ self.components.T

    def with_class(self, label: str, E: np.ndarray) -> "DiscoverySpace":
        """A copy that also knows where class `label` sits (its rows `E`, already projected)."""
        centres = np.vstack([self.class_centres, np.asarray(E, np.float32).mean(0)[None]])
        return DiscoverySpace(**{**self.__dict__, "classes": [*self.classes, label],
                                 "class_centres": centres})  # fmt: skip

    def nearest_class(self, E: np.ndarray) -> tuple[list[str], np.ndarray]:
        """For each projected row: the nearest known class centre and its distance."""
        d = np.linalg.norm(E[:, None, :] - self.class_centres[None], axis=2)
        j = d.argmin(1)
        return [self.classes[i] for i in j], d[np.arange(len(E)), j]

    # ------------------------------------------------------------------ bundle
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON description, arrays) as a bundle keeps them."""
        arrays = {k: getattr(self, k) for k in ARRAYS}
        meta = {"layers": list(self.layers), "classes": list(self.classes),
                "dims": int(self.components.shape[0]), "content_dims": int(len(self.content))}  # fmt: skip
        return meta, {PREFIX + k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}

    @classmethod
    def from_state(cls, meta: Mapping, arrays: Mapping[str, np.ndarray]) -> "DiscoverySpace":
        """The space a bundle holds; ValueError says what does not fit."""
        try:
            a = {k: np.asarray(arrays[PREFIX + k], np.float32) for k in ARRAYS}
            layers, classes = [str(l) for l in meta["layers"]], [str(c) for c in meta["classes"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"discovery space incomplete ({exc})") from None
        D = len(a["mean"])
        shapes_fit = (
            a["scale"].shape == (D,) and a["centre"].shape == (D,)
            and a["content"].ndim == 2 and a["content"].shape[1] == D
            and a["components"].ndim == 2 and a["components"].shape[1] == D
            and a["class_centres"].shape == (len(classes), a["components"].shape[0])
            and all(np.all(np.isfinite(v)) for v in a.values()) and np.all(a["scale"] > 0)
        )  # fmt: skip
        if not layers or not shapes_fit:
            raise ValueError("discovery space arrays do not fit together")
        return cls(layers, a["mean"], a["scale"], a["content"], a["centre"], a["components"],
                   classes, a["class_centres"])  # fmt: skip


ARRAYS = ("mean", "scale", "content", "centre", "components", "class_centres")
