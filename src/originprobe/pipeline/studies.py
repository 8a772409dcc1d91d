"""Studies run on top of an evaluation: robustness to test-time perturbations, the low-data
regime, and a 2-D map of the test features.

Each reuses the model chosen by cross-validation on clean known-class training data; none of them
chooses anything on test data. Robustness perturbs test images only (training is clean);
low-data subsamples the training images per class with several seeds (each subset chooses by
cross-validation on itself) and reports mean ± std.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import clone

from ..data.perturb import Perturbation, parse_levels
from ..data.splits import per_class_subset
from ..features import LayerSpec
from ..fileio import atomic_write_text
from ..metrics import auroc, oscr
from ..model import Attributor
from .fitting import fit_prepared
from .prepare import Prepared


def _figures(att: Attributor, X: np.ndarray, y: np.ndarray, known: Sequence[str]) -> dict:
    d = att.decide(X)
    k = np.isin(y, list(known))
    has_unknown = bool((~k).any())
    return {
        "accuracy": float(np.mean(d.closest[k] == y[k])) if k.any() else None,
        "auroc": auroc(d.score, k) if has_unknown else None,
        "oscr": oscr(d.score, k, d.closest == y) if has_unknown else None,
    }


def robustness(p: Prepared, att: Attributor, spec: str | None) -> dict[str, list[dict]]:
    """Accuracy / AUROC / OSCR of the fitted model on perturbed test images, per intensity."""
    y = p.table.labels("test")
    known = p.split.known_classes
    clean = {"level": "none", **_figures(att, p.table("test", att.layer_), y, known)}
    out: dict[str, list[dict]] = {}
    for kind, levels in parse_levels(spec).items():
        rows = [dict(clean)]
        for level in levels:
            # the same fitted extractor (networks included), the test images perturbed
            fx = clone(p.extractor).set_params(perturbation=Perturbation(kind, level))
            fx.use_backbone(p.backbone)
            table, _ = fx.extract({"test": p.table.samples["test"]}, crossfit=None,
                                  layers=list(att.layer_.parts))  # fmt: skip
            kept = {(s.sha256, str(s.path)) for s in table.samples["test"]}
            keep = [i for i, s in enumerate(p.table.samples["test"]) if (s.sha256, str(s.path))
                    in kept]  # fmt: skip
            rows.append({"level": level, **_figures(att, table("test", att.layer_), y[keep],
                                                    known)})  # fmt: skip
        out[kind] = rows
    return out


def low_data(p: Prepared, sizes: Sequence[int], seeds: int) -> list[dict]:
    """Figures vs training samples per class: seeded subsets, selection on the same validation."""
    y_train = p.table.labels("dev")
    y_test = p.table.labels("test")
    known = p.split.known_classes
    rows = []
    for n in sizes:
        runs = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            idx = per_class_subset(y_train, n, rng, classes=known)
            att = fit_prepared(p, train_index=idx)
            runs.append(_figures(att, p.table("test", att.layer_), y_test, known))
        row = {"per_class": int(n), "seeds": seeds}
        for m in ("accuracy", "auroc", "oscr"):
            vals = [r[m] for r in runs if r[m] is not None]
            row[f"{m}_mean"] = float(np.mean(vals)) if vals else None
            row[f"{m}_std"] = float(np.std(vals)) if vals else None
        rows.append(row)
    return rows


def write_embedding(
    path: Path, p: Prepared, layer: LayerSpec, seed: int = 0, max_points: int = 2000
) -> None:
    """t-SNE map of the test features of `layer` (standardised; at most `max_points`, seeded)."""
    from sklearn.manifold import TSNE

    X = p.table("test", layer).astype(np.float64)
    samples = p.table.samples["test"]
    if len(samples) < 5:
        return
    idx = np.arange(len(samples))
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    Z = X[idx]
    Z = (Z - Z.mean(0)) / (Z.std(0) + 1e-8)
    xy = TSNE(
        n_components=2,
        perplexity=float(min(30, max(2, (len(idx) - 1) // 3))),
        init="pca",
        max_iter=500,  # a map to read, not a figure: half the default iterations
        random_state=seed,
    ).fit_transform(Z)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "x", "y"])
    for i, (x, yv) in zip(idx, xy):
        w.writerow(
            [
                str(samples[i].path).encode("utf-8", "backslashreplace").decode(),
                samples[i].label,
                f"{x:.4f}",
                f"{yv:.4f}",
            ]
        )
    atomic_write_text(path, buf.getvalue())


def discovery_study(att: Attributor, X: np.ndarray, y: np.ndarray, d, known: Sequence[str],
                    min_cluster_size: int, seed: int, paths: Sequence[str]) -> dict:  # fmt: skip
    """`evaluate --discover`: cluster the test images the model rejects, score the clusters
    against their true sources, then the open-world round: enrol every cluster as a class
    (`discovered-K`, from its rows) and decide every test image again; per unseen generator,
    the share of its images that now get one and the same discovered label."""
    from collections import Counter

    from ..discovery import discovery_metrics
    from ..model.discovery import cluster_rows
    from ..openset import UNKNOWN

    unseen = sorted(set(y.tolist()) - set(known))
    rej = np.flatnonzero(d.label == UNKNOWN)
    labels = np.zeros(0, np.int64)
    if len(rej):
        labels = cluster_rows(att, X[rej], min_cluster_size, seed)[2]
    out = discovery_metrics(y[rej], labels, unseen)
    out["min_cluster_size"] = int(min_cluster_size)
    out["cluster_list"] = [
        {"cluster": k, "size": int((labels == k).sum()),
         "majority": Counter(y[rej][labels == k].tolist()).most_common(1)[0][0],
         "sources": [str(paths[i]) for i in rej[labels == k][:12].tolist()]}
        for k in range(int(labels.max()) + 1 if len(labels) else 0)
    ]  # fmt: skip
    clf = att.classifier_
    for k in range(len(out["cluster_list"])):
        clf = clf.enrolled(f"discovered-{k}", X[rej][labels == k])
    after = clf.decide(X).label if out["cluster_list"] else d.label
    per = {}
    for g in unseen:
        new = Counter(l for l in after[y == g].tolist() if str(l).startswith("discovered-"))
        top = new.most_common(1)
        per[g] = {"images": int((y == g).sum()), "label": top[0][0] if top else None,
                  "consistent": top[0][1] / int((y == g).sum()) if top else 0.0}  # fmt: skip
    is_known = np.isin(y, list(known))
    out["open_world"] = {
        "per_generator": per,
        "consistent": float(np.mean([v["consistent"] for v in per.values()])) if per else None,
        "known_kept_before": float(np.mean(d.label[is_known] != UNKNOWN)),
        "known_kept_after": float(np.mean(np.isin(after[is_known], list(known)))),
    }
    return out
