"""The public discovery study (README, "Discovering new generators"): on the 5 realgen splits,
the default discovery (the model's layer standardised, PCA 32, HDBSCAN leaf 8/3) against the plain
baseline (standardised, PCA 16, HDBSCAN min_cluster_size 5, excess of mass), on the same rejected
test images. Run: `.venv/bin/python benchmarks/discovery_study.py` (about 5 minutes, cached)."""

import warnings

import numpy as np
from sklearn.cluster import HDBSCAN
from sklearn.decomposition import PCA

from originprobe.discovery import discovery_metrics
from originprobe.model.discovery import cluster_rows
from originprobe.openset import UNKNOWN
from originprobe.pipeline.config import RunConfig
from originprobe.pipeline.fitting import fit_prepared
from originprobe.pipeline.multirun import planned_runs
from originprobe.pipeline.prepare import prepare

warnings.filterwarnings("ignore")
cfg = RunConfig.from_options(
    {
        "protocol": "realgen",
        "root": "../shared/data/realgen",
        "cache": ".cache/features",
        "progress": False,
    }
)
rows = {"default": [], "baseline": []}
for name, sub in planned_runs(cfg):
    p = prepare(sub)
    att = fit_prepared(p)
    X = p.table("test", att.layer_)
    y = p.table.labels("test")
    d = att.decide(X)
    rej = np.flatnonzero(d.label == UNKNOWN)
    unseen = sorted(set(y) - set(p.split.known_classes))
    lab = cluster_rows(att, X[rej], 8, 0)[2]
    rows["default"].append(discovery_metrics(y[rej], lab, unseen))
    Xtr, _ = att.classifier_.reference_
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    pca = PCA(16, random_state=0).fit((Xtr - mu) / sd)
    lab2 = HDBSCAN(min_cluster_size=5).fit_predict(pca.transform((X[rej] - mu) / sd))
    rows["baseline"].append(discovery_metrics(y[rej], lab2, unseen))
    print(
        name,
        {
            k: {
                m: round(v[-1][m], 3) if isinstance(v[-1][m], float) else v[-1][m]
                for m in (
                    "purity",
                    "ari",
                    "nmi",
                    "clustered",
                    "generators_found",
                    "unseen_generators",
                )
            }
            for k, v in rows.items()
        },
        flush=True,
    )
for k, v in rows.items():
    print(
        k,
        {
            m: round(float(np.nanmean([r[m] for r in v])), 3)
            for m in ("purity", "ari", "nmi", "clustered")
        },
        "found share",
        round(float(np.mean([r["generators_found"] / r["unseen_generators"] for r in v])), 3),
    )
