"""`make bench` section `discovery`: clustering 50,000 rejected images on 2 cores.

Synthetic features of the default model's width (4,608 dims: every stage of EfficientNet-Lite0
and Lite2), float32: 5,000 known training rows (5 classes) fit the discovery space; 50,000
rejected rows (24 groups of 2,000 and 2,000 scattered ones) are projected (32 dims) and
clustered (HDBSCAN on a seeded 20,000-row sample, the rest joined by nearest core neighbour).
Run in a child process: wall time and peak RSS of that process (goal: ≤ 5 min, ≤ 2 GB, the
50,000 rows' features included), and how well the 24 groups come back.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

DIM, KNOWN, REJECTED, GROUPS = 4608, 5000, 50000, 24


def _child() -> None:
    from originprobe.discovery import DiscoverySpace, discovery_metrics, find_clusters

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(64, DIM)).astype(np.float32) / 8
    content = rng.normal(size=(256, DIM)).astype(np.float32) / 32

    def rows(n: int, centre: np.ndarray) -> np.ndarray:  # generator trace + content + noise
        return (centre @ basis + rng.normal(size=(n, 256)).astype(np.float32) @ content
                + rng.normal(0, 0.3, (n, DIM)).astype(np.float32))  # fmt: skip

    t0 = time.perf_counter()
    centres = rng.normal(0, 3, (5 + GROUPS, 64)).astype(np.float32)
    X_known = np.vstack([rows(KNOWN // 5, centres[i]) for i in range(5)])
    y_known = np.repeat([f"k{i}" for i in range(5)], KNOWN // 5)
    per = (REJECTED - 2000) // GROUPS
    X = np.empty((per * GROUPS + 2000, DIM), np.float32)  # filled in place: one copy held
    for g in range(GROUPS):
        X[g * per : (g + 1) * per] = rows(per, centres[5 + g])
    X[GROUPS * per :] = rng.normal(0, 2, (2000, 64)).astype(np.float32) @ basis
    y = np.concatenate([np.repeat([f"g{g}" for g in range(GROUPS)], per), ["noise"] * 2000])
    made = time.perf_counter() - t0
    t = time.perf_counter()
    space = DiscoverySpace.fit(X_known, y_known, seed=0)
    E = np.vstack([space.project(X[i : i + 8192]) for i in range(0, len(X), 8192)])
    projected = time.perf_counter() - t
    labels = find_clusters(E, 8, seed=0)
    m = discovery_metrics(y, labels, [f"g{g}" for g in range(GROUPS)])
    print(json.dumps({"rows": len(X), "dims": DIM, "data_s": round(made, 1),
                      "fit_and_project_s": round(projected, 1),
                      "cluster_s": round(time.perf_counter() - t - projected, 1),
                      "clusters": m["clusters"], "purity": round(m["purity"], 3),
                      "clustered": round(m["clustered"], 3),
                      "groups_found": f"{m['generators_found']} of {GROUPS}"}))  # fmt: skip


def main(work: Path, quick: bool) -> None:
    from common import emit, run_measured

    wall, rss, out = run_measured([sys.executable, __file__, "--child"])
    row = json.loads(out.strip().splitlines()[-1])
    emit("discovery", {**row, "wall_s": round(wall, 1), "peak_rss_mb": round(rss)})


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
