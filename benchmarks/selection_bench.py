"""`make bench` section `selection`: head selection at the seed paper's scale.

Synthetic features of CLIP ViT-L/14's shape on OSMA-sized data (15 classes, 24 blocks × 1024
dims, float16), with class structure that varies by block (the class means live in a subspace
that drifts from block to block; their strength peaks at block 14), written into a real feature
store the way extraction writes it (shards of 4,096 rows). Each measurement runs in a child
process (wall time and peak RSS of that process):

- `Attributor.fit_features` on the store's layers, read one candidate at a time (the default
  selection: 24 × 1024 dims are too wide to concatenate, so forward selection, screened by the
  shrinkage-LDA proxy, cross-validated with 5 folds and withheld generators on a 6,000-row
  subsample, then the chosen candidate cross-fitted and refitted on every row), at 6k / 12k /
  24k / 48k training rows (+ a quarter of that, pooled); goal at 48k + 12k: ≤ 10 min and ≤ 4 GB
  peak RSS;
- the same at 48k from `{layer: np.load(path, mmap_mode="r")}` (one .npy file per layer);
- the kNN, Gaussian, NCM and reference heads fitted on one 1024-d layer of 48k rows and
  predicting 12k: time and peak RSS;
- on a small instance (24 × 128 dims, 2,400 + 600 rows), the exhaustive sweep (every layer × every C,
  sequential scikit-learn, chosen on the 600 validation rows) against originprobe's screened
  cross-validated single-layer selection: the layer and C each chooses, and the validation
  balanced accuracy of both choices on those 600 rows.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

BLOCKS, DIM, CLASSES, RANK = 24, 1024, 15, 32
SHARD = 4096


def _layer_names() -> list[str]:
    return [f"block{i}" for i in range(BLOCKS)]


def _structure(dim: int, seed: int = 0, gain: float = 1.0):
    """Class codes and one drifting projection per block, and each block's signal strength."""
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((CLASSES, RANK)).astype(np.float32)
    U = rng.standard_normal((dim, RANK)).astype(np.float32)
    proj = []
    for _ in range(BLOCKS):
        U = U + 0.35 * rng.standard_normal((dim, RANK)).astype(np.float32)
        proj.append(U / np.linalg.norm(U, axis=0, keepdims=True))
    strength = [
        gain * (0.04 + 0.22 * float(np.exp(-(((b - 14) / 5.0) ** 2)))) for b in range(BLOCKS)
    ]
    return codes, proj, strength


def synthetic_block(y: np.ndarray, b: int, structure, rng) -> np.ndarray:
    codes, proj, strength = structure
    X = rng.standard_normal((len(y), proj[b].shape[0]), dtype=np.float32)
    X += strength[b] * (codes[y] @ proj[b].T)
    return X


def write_store(root: Path, n: int, dim: int = DIM, seed: int = 0):
    """A feature store namespace holding n synthetic images (hash i → row); labels returned."""
    from originprobe.features.store import FeatureStore

    store = FeatureStore(root, f"synthetic-vitl14-{dim}", {"name": "synthetic"})
    labels = (np.arange(n) * 7) % CLASSES  # row i's class, whatever n is (7 ⟂ 15)
    hashes = [f"{i:064x}" for i in range(n)]
    if len(store.missing(hashes, _layer_names())) == 0:
        return store, hashes, labels
    structure = _structure(dim, seed)
    for s in range(0, n, SHARD):
        rng = np.random.default_rng([seed, s])
        y = labels[s : s + SHARD]
        feats = {
            name: synthetic_block(y, b, structure, rng) for b, name in enumerate(_layer_names())
        }
        store.write_shard(hashes[s : s + SHARD], feats)
    return store, hashes, labels


def child_fit(root: str, n_train: int, n_val: int, mode: str) -> None:
    """Runs in a child process: fit an Attributor on the store (or per-layer .npy memmaps)."""
    from originprobe import Attributor
    from originprobe.features.store import StoreRows

    store, hashes, labels = write_store(Path(root), n_train + n_val)
    names = np.array([f"gen{c:02d}" for c in range(CLASSES)], dtype=object)
    y = names[labels]
    t = time.perf_counter()
    att = Attributor(backbone="synthetic", layers="all")
    if mode == "store":
        tr = StoreRows.of(store, hashes[:n_train], _layer_names())
        va = StoreRows.of(store, hashes[n_train : n_train + n_val], _layer_names())
        att.fit_features(tr, y[:n_train], va, y[n_train : n_train + n_val])
    else:
        folder = Path(root) / f"npy-{n_train + n_val}"
        mm = {l: np.load(folder / f"{l}.npy", mmap_mode="r") for l in _layer_names()}
        att.fit_features(
            {l: a[:n_train] for l, a in mm.items()},
            y[:n_train],
            {l: a[n_train : n_train + n_val] for l, a in mm.items()},
            y[n_train : n_train + n_val],
        )
    s = att.selection_summary_
    print(
        json.dumps(
            {
                "selection_s": round(time.perf_counter() - t, 1),
                "layer": s["layer"],
                "C": s["params"].get("C"),
                "score": s["score"],
                "fits": s["fits"],
                "compared_on_rows": s["compared_on_rows"],
                "cv_balanced_accuracy": s["estimate"]["balanced_accuracy"],
                "estimated_auroc": s["estimate"]["auroc"],
                "threshold": round(float(att.threshold_), 4),
            }
        )
    )


def child_heads(root: str, n_train: int, n_val: int, head: str) -> None:
    from originprobe.heads import HEADS

    store, hashes, labels = write_store(Path(root), n_train + n_val)
    names = np.array([f"gen{c:02d}" for c in range(CLASSES)], dtype=object)
    X = store.load(hashes[:n_train], "block14")
    Xv = store.load(hashes[n_train : n_train + n_val], "block14")
    t = time.perf_counter()
    h = HEADS.get(head)().fit(X, names[labels[:n_train]])
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    pred = h.predict(Xv)
    pred_s = time.perf_counter() - t
    acc = float(np.mean(pred == names[labels[n_train : n_train + n_val]]))
    print(
        json.dumps(
            {"fit_s": round(fit_s, 1), "predict_s": round(pred_s, 1), "val_accuracy": round(acc, 4)}
        )
    )


def write_npy(root: Path, n: int) -> Path:
    """One float16 .npy per layer, for the memory-mapped variant."""
    folder = root / f"npy-{n}"
    if (folder / "done").is_file():
        return folder
    store, hashes, _ = write_store(root, n)
    folder.mkdir(parents=True, exist_ok=True)
    for l in _layer_names():
        np.save(folder / f"{l}.npy", store.load(hashes, l).astype(np.float16))
    (folder / "done").write_text("")
    return folder


def exhaustive_vs_screened() -> dict:
    """Small instance: every layer × every C with scikit-learn, against the screened selection."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from originprobe import Attributor
    from originprobe.heads.linear import C_GRID
    from originprobe.heads.selection import balanced_accuracy

    dim, n_tr, n_va = 128, 2400, 600
    structure = _structure(dim, seed=3, gain=2.0)
    rng = np.random.default_rng(7)
    y = np.arange(n_tr + n_va) % CLASSES
    rng.shuffle(y)
    names = np.array([f"gen{c:02d}" for c in range(CLASSES)], dtype=object)[y]
    feats = {f"block{b}": synthetic_block(y, b, structure, rng) for b in range(BLOCKS)}
    t = time.perf_counter()

    def val_bacc(layer: str, C: float) -> float:
        sc = StandardScaler().fit(feats[layer][:n_tr])
        Ztr, Zva = sc.transform(feats[layer][:n_tr]), sc.transform(feats[layer][n_tr:])
        clf = LogisticRegression(C=C, class_weight="balanced", max_iter=1000, tol=1e-4)
        return balanced_accuracy(names[n_tr:], clf.fit(Ztr, names[:n_tr]).predict(Zva))

    best = (-1.0, "", 0.0)
    for l in feats:
        for C in C_GRID:  # ties: the smaller C (earlier grid entry), as selection does
            bacc = val_bacc(l, C)
            if bacc > best[0]:
                best = (bacc, l, C)
    exhaustive_s = time.perf_counter() - t
    from originprobe.model import selection

    selection.SCREEN_COST = 1.0  # screen whatever the size, as at full scale
    t = time.perf_counter()
    att = Attributor(selection={"layer_search": "forward", "combine_layers": 1}).fit_features(
        {l: X[:n_tr] for l, X in feats.items()}, names[:n_tr]
    )  # the 600 validation rows stay out: cross-validation on the training rows chooses
    ours_s = time.perf_counter() - t
    ours = (str(att.layer_), att.selection_summary_["params"]["C"])
    return {
        "exhaustive_layer": best[1],
        "exhaustive_C": best[2],
        "exhaustive_val_bacc": round(best[0], 4),
        "exhaustive_fits": BLOCKS * len(C_GRID),
        "exhaustive_s": round(exhaustive_s, 1),
        "screened_layer": ours[0],
        "screened_C": ours[1],
        "screened_val_bacc": round(val_bacc(*ours), 4),
        "screened_fits": att.selection_summary_["fits"],
        "screened_s": round(ours_s, 1),
        "bacc_gap": round(best[0] - val_bacc(*ours), 4),
    }


def main(work: Path, quick: bool) -> None:
    from common import emit, run_measured

    root = work / "selection-store"
    sizes = [6000, 12000] if quick else [6000, 12000, 24000, 48000]
    emit("selection", {"check": "small instance", **exhaustive_vs_screened()})
    total = max(sizes) * 5 // 4
    t = time.perf_counter()
    write_store(root, total)
    emit(
        "selection",
        {
            "step": "synthetic store written",
            "rows": total,
            "layers": BLOCKS,
            "dims": DIM,
            "seconds": round(time.perf_counter() - t, 1),
        },
    )
    me = str(Path(__file__).resolve())
    for n in sizes:
        wall, rss, out = run_measured(
            [sys.executable, me, "fit", str(root), str(n), str(n // 4), "store"]
        )
        emit(
            "selection",
            {
                "train_rows": n,
                "val_rows": n // 4,
                "source": "feature store",
                "wall_s": round(wall, 1),
                "peak_rss_mb": round(rss),
                **json.loads(out.strip().splitlines()[-1]),
            },
        )
    n = max(sizes)
    write_npy(root, n * 5 // 4)
    wall, rss, out = run_measured(
        [sys.executable, me, "fit", str(root), str(n), str(n // 4), "npy"]
    )
    emit(
        "selection",
        {
            "train_rows": n,
            "val_rows": n // 4,
            "source": "np.load mmap",
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(rss),
            **json.loads(out.strip().splitlines()[-1]),
        },
    )
    for head in ("knn", "gaussian", "ncm", "reference"):
        wall, rss, out = run_measured(
            [sys.executable, me, "heads", str(root), str(n), str(n // 4), head]
        )
        emit(
            "selection",
            {
                "head": head,
                "train_rows": n,
                "dims": DIM,
                "wall_s": round(wall, 1),
                "peak_rss_mb": round(rss),
                **json.loads(out.strip().splitlines()[-1]),
            },
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    what, root, n_train, n_val, arg = sys.argv[1:6]
    (child_fit if what == "fit" else child_heads)(root, int(n_train), int(n_val), arg)
