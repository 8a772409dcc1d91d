"""The open-world step after prediction: group the images a model rejects into candidate new
generators (`discover_images`); a group is then enrolled as a new class by its files.

    found = discover_images(att, paths, min_cluster_size=8, seed=0)
    for c in found.clusters:
        print(c.id, c.size, c.nearest_class, c.claims_text())
    att.enroll("new-generator", cluster_sources(found.to_dict(), 0))

The images are predicted as usual (pixels and provenance); those labelled unknown are projected
into the model's discovery space (`discovery.DiscoverySpace`, fitted on the known training rows
the model carries, so that enrolled classes count as known too) and clustered with HDBSCAN
(`discovery.find_clusters`). Nothing is chosen with the rejected images' labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..discovery import (
    MIN_CLUSTER_SIZE,
    NOISE,
    Cluster,
    DiscoverySpace,
    check_cluster_settings,
    find_clusters,
    summarise,
)
from ..errors import ConfigError
from ..features import ImageInput
from ..openset import UNKNOWN
from .evidence import Attribution, with_evidence

FORMAT = "originprobe-clusters"


@dataclass
class Discovery:
    """What `discover_images` found: every prediction, and the clusters of the rejected ones."""

    attributions: list[Attribution]
    rejected: list[int]  # positions (in `attributions`) of the images rejected as unknown
    labels: np.ndarray  # cluster of each rejected image, or NOISE
    distances: np.ndarray  # of each rejected image to its cluster's centre (nan: noise)
    nearest: list[str]  # per rejected image: the nearest known class in the discovery space
    nearest_distance: np.ndarray
    clusters: list[Cluster] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """One line on what was found, also when there was nothing to group."""
        n, ok = len(self.rejected), sum(a.ok for a in self.attributions)
        if not ok:
            return "no usable image among the inputs: nothing to group"
        if not n:
            return f"no image was rejected as unknown ({ok} attributed): nothing to group"
        if n < self.settings.get("min_cluster_size", MIN_CLUSTER_SIZE):
            return (f"{n} image(s) rejected as unknown, fewer than the minimum cluster size "
                    f"({self.settings['min_cluster_size']}): nothing to group")  # fmt: skip
        clustered = int((self.labels != NOISE).sum())
        return (f"{n} of {ok} images rejected as unknown; {clustered} grouped into "
                f"{len(self.clusters)} cluster(s), {n - clustered} left as noise")  # fmt: skip

    def rows(self) -> list[dict]:
        """One row per rejected image (clusters.csv)."""
        sizes = {c.id: c.size for c in self.clusters}
        out = []
        for j, i in enumerate(self.rejected):
            a, k = self.attributions[i], int(self.labels[j])
            out.append({
                "source": a.source, "cluster": k, "cluster_size": sizes.get(k, 0),
                "distance_to_centre": None if k == NOISE else round(float(self.distances[j]), 6),
                "nearest_class": self.nearest[j],
                "nearest_distance": round(float(self.nearest_distance[j]), 6),
                "score": a.score, "named_by_metadata": _named(a),
            })  # fmt: skip
        return out

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "message": self.message, "settings": self.settings,
            "rejected": len(self.rejected), "clusters": [c.to_dict() for c in self.clusters],
            "images": self.rows(),
        }  # fmt: skip


def _named(a: Attribution) -> str | None:
    return a.evidence.named if a.evidence is not None else None


def discovery_space(att) -> DiscoverySpace:
    """The model's discovery space, fitted on the known rows it carries (built once)."""
    X, y = att.classifier_.reference_
    key = (id(att.classifier_), len(y))
    if getattr(att, "_discovery", (None,))[0] != key:
        att._discovery = (key, DiscoverySpace.fit(X, y, int(att.seed)))
    return att._discovery[1]


def cluster_rows(
    att, X: np.ndarray, min_cluster_size: int, seed: int
) -> tuple[DiscoverySpace, np.ndarray, np.ndarray]:
    """(the model's space, the rows projected into it, a cluster per row or NOISE) for feature
    rows `X` of the model's layer: the one way rejected rows are grouped."""
    space = discovery_space(att)
    E = space.project(X)
    return space, E, find_clusters(E, min_cluster_size, seed)


def discover_images(
    att, images: Iterable[Any], min_cluster_size: int = MIN_CLUSTER_SIZE, seed: int = 0
) -> Discovery:
    """Predict `images`, then cluster the ones rejected as unknown (see the module doc)."""
    check_cluster_settings(min_cluster_size, seed)
    att._check_fitted()
    inputs = [ImageInput.of(it, i) for i, it in enumerate(images)]
    kept: dict[str, Any] = {}
    records = with_evidence(lambda inp: att.predict_pixels(inp, att.top_k, kept), inputs,
                            att.evidence_reader(), att.classes_)  # fmt: skip
    row_of = {i: r for r, i in enumerate(kept.get("order", []))}
    rejected = [i for i, a in enumerate(records) if a.ok and a.label == UNKNOWN]
    settings = {"min_cluster_size": int(min_cluster_size), "seed": int(seed),
                "method": "hdbscan-leaf", "space": f"{att.layer_} standardised, PCA"}  # fmt: skip
    if not rejected:
        return Discovery(records, [], np.zeros(0, np.int64), np.zeros(0), [], np.zeros(0),
                         settings=settings)  # fmt: skip
    X = kept["X"][[row_of[i] for i in rejected]]
    space, E, labels = cluster_rows(att, X, min_cluster_size, seed)
    nearest, near_d = space.nearest_class(E)
    names = [records[i].source for i in rejected]
    clusters = summarise(E, labels, names, space, [_named(records[i]) for i in rejected])
    dist = np.full(len(rejected), np.nan)
    for c in clusters:
        dist[c.members] = c.distances
    return Discovery(records, rejected, labels, dist, nearest, near_d, clusters, settings)


def cluster_sources(found: Mapping, cluster: int, where: str = "clusters.json") -> list[str]:
    """The member files of cluster `cluster` in a clusters.json document."""
    if not isinstance(found, Mapping) or found.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a clusters file written by `originprobe discover`")
    for c in found.get("clusters") or []:
        if isinstance(c, Mapping) and c.get("cluster") == cluster:
            sources = [m.get("source") for m in c.get("members") or [] if isinstance(m, Mapping)]
            if not sources or not all(isinstance(s, str) and s for s in sources):
                raise ConfigError(f"{where}: cluster {cluster} lists no member files")
            return [str(s) for s in sources]
    ids = [c.get("cluster") for c in found.get("clusters") or [] if isinstance(c, Mapping)]
    raise ConfigError(
        f"{where}: no cluster {cluster}"
        + (f" (clusters: {', '.join(map(str, ids))})" if ids else " (it holds no cluster)")
    )
