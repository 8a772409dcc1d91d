"""Discovery: group the images a model rejects as unknown into candidate new generators.

space = DiscoverySpace.fit(X_known, y_known, layers)   # at fit time, known data only
labels = find_clusters(space.project(X_rejected))      # HDBSCAN; -1 = noise
clusters = summarise(E, labels, sources, space, named)
"""

from .clusters import (
    MIN_CLUSTER_SIZE,
    NOISE,
    Cluster,
    check_cluster_settings,
    discovery_metrics,
    find_clusters,
    purity,
    summarise,
)
from .space import DiscoverySpace

__all__ = [
    "MIN_CLUSTER_SIZE",
    "NOISE",
    "Cluster",
    "DiscoverySpace",
    "check_cluster_settings",
    "discovery_metrics",
    "find_clusters",
    "purity",
    "summarise",
]
