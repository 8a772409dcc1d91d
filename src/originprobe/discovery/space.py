"""The space rejected images are clustered in (`DiscoverySpace`).

It is fitted on the known training rows a model carries (its reference rows, the features of its
chosen layers): standardised on them, then projected on their `dims` (32) principal directions.

The settings come from a study on the public splits with known data only (README, "Discovering
new generators"): two known generators withheld in turn, the pile to cluster made of their images
and 15 % of the known images (what a model falsely rejects). There, the model's own layers beat
the early layers alone, 32 dimensions beat 16, and removing within-class directions lost
purity and found fewer generators (it helped only on a pile of new generators alone). Fitting
reads at most `MAX_ROWS` rows, stratified by class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.splits import stratified_subsample
from ..errors import ConfigError

DIMS = 32
MAX_ROWS = 5000


def _top_directions(M: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The top-k right singular vectors of M (rows), signs fixed (largest entry positive);
    randomized (seeded, 7 power iterations): memory of M and k columns, not of a full SVD."""
    from sklearn.utils.extmath import randomized_svd

    _, _, vt = randomized_svd(M, k, n_iter=7, random_state=seed)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    return (vt * signs[:, None]).astype(np.float32)


@dataclass
class DiscoverySpace:
    """Standardise → project (see the module doc)."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    centre: np.ndarray  # (D,) mean of the standardised training rows
    components: np.ndarray  # (dims, D)
    classes: list[str]
    class_centres: np.ndarray  # (len(classes), dims): where each known class sits

    @classmethod
    def fit(cls, X: np.ndarray, y: Sequence[str], seed: int = 0, dims: int = DIMS):
        """The space of known rows `X` (labels `y`; at most `MAX_ROWS`, stratified, are read)."""
        y = np.asarray([str(v) for v in y], dtype=object)
        keep = stratified_subsample(y, MAX_ROWS, seed)
        if keep is not None:
            X, y = X[keep], y[keep]
        X = np.asarray(X, dtype=np.float32)
        if len(X) < 3:
            raise ConfigError("a discovery space needs at least 3 training images")
        mean, scale = X.mean(0), X.std(0) + 1e-6
        Z = (X - mean) / scale
        centre = Z.mean(0)
        components = _top_directions(Z - centre, min(dims, *Z.shape), seed)
        classes = sorted(set(y.tolist()))
        space = cls(mean.astype(np.float32), scale.astype(np.float32), centre.astype(np.float32),
                    components, classes, np.zeros((0, 0)))  # fmt: skip
        E = space.project(X)
        space.class_centres = np.stack([E[y == c].mean(0) for c in classes]).astype(np.float32)
        return space

    def project(self, X: np.ndarray) -> np.ndarray:
        """(n, D) features of the model's layer → (n, dims)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ConfigError(
                f"the discovery space reads {len(self.mean)}-d features, got shape {X.shape}"
            )
        return ((X - self.mean) / self.scale - self.centre) @ self.components.T

    def nearest_class(self, E: np.ndarray) -> tuple[list[str], np.ndarray]:
        """For each projected row: the nearest known class centre and its distance."""
        d = np.linalg.norm(E[:, None, :] - self.class_centres[None], axis=2)
        j = d.argmin(1)
        return [self.classes[i] for i in j], d[np.arange(len(E)), j]
