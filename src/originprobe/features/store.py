"""The feature store: per-image, per-layer features on disk, computed once and reused.

Layout of a store rooted at DIR:

    DIR/<backbone-name>-<cache-key>/          one namespace per (backbone, weights, preprocessing)
        backbone.json                          what produced these features
        shard-<id>/                            an immutable shard, committed by an atomic rename
            meta.json                          image hashes (row order), layers, dims, file checksums
            <layer>.npy                        (n_rows, dim) float16 by default, memory-mapped on read
        .tmp-<pid>-<id>/                       a shard being written (ignored by readers)

Features are keyed by image content hash + namespace (backbone name, weights hash,
preprocessing) + layer. Guarantees:
- a shard is visible only once complete (temporary directory + fsync + rename), so `kill -9` loses
  at most the shard in flight;
- concurrent writers never overwrite each other (unique shard ids; commits under a file lock);
- `verify()` recomputes every file's checksum and reports damaged shards;
- reading never loads a whole store in memory: shards are memory-mapped and only the requested
  rows are copied.
The store never decides what to extract; that is `originprobe.features.extract`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from filelock import FileLock

from ..atomic import atomic_write_text, fsync_dir

META = "meta.json"
FORMAT_VERSION = 1


class StoreError(Exception):
    pass


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ShardInfo:
    path: Path
    hashes: list[str]
    layers: dict[str, dict]  # layer -> {"dim", "dtype", "sha256"}


@dataclass
class VerifyReport:
    shards: int
    rows: int
    damaged: list[tuple[str, str]]  # (shard path, reason)

    @property
    def ok(self) -> bool:
        return not self.damaged


class FeatureStore:
    """Features of one backbone namespace (see module docstring)."""

    def __init__(self, root: str | Path, namespace: str, description: dict | None = None,
                 dtype: str = "float16"):
        if dtype not in ("float16", "float32"):
            raise ValueError("dtype must be float16 or float32")
        self.root = Path(root)
        self.dir = self.root / namespace
        self.dtype = dtype
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / ".lock"))
        if description is not None and not (self.dir / "backbone.json").exists():
            atomic_write_text(self.dir / "backbone.json", json.dumps(description, indent=2))
        self._shards: list[ShardInfo] | None = None
        self._index: dict[str, dict[str, tuple[int, int]]] = {}

    # ---------------------------------------------------------------- reading
    def refresh(self) -> None:
        shards: list[ShardInfo] = []
        for d in sorted(self.dir.glob("shard-*")):
            meta = d / META
            try:
                m = json.loads(meta.read_text(encoding="utf-8"))
                shards.append(ShardInfo(d, list(m["hashes"]), dict(m["layers"])))
            except (OSError, ValueError, KeyError):
                continue  # damaged shards are reported by verify(), never read
        index: dict[str, dict[str, tuple[int, int]]] = {}
        for si, sh in enumerate(shards):
            for layer in sh.layers:
                idx = index.setdefault(layer, {})
                for row, h in enumerate(sh.hashes):
                    idx.setdefault(h, (si, row))
        self._shards, self._index = shards, index

    @property
    def shards(self) -> list[ShardInfo]:
        if self._shards is None:
            self.refresh()
        assert self._shards is not None
        return self._shards

    def layers(self) -> list[str]:
        _ = self.shards
        return sorted(self._index)

    def has(self, image_hash: str, layer: str) -> bool:
        _ = self.shards
        return image_hash in self._index.get(layer, {})

    def missing(self, hashes: Iterable[str], layers: Sequence[str]) -> list[str]:
        """Hashes lacking at least one of `layers` (in first-seen order, without repeats)."""
        _ = self.shards
        out, seen = [], set()
        for h in hashes:
            if h in seen:
                continue
            seen.add(h)
            if any(h not in self._index.get(layer, {}) for layer in layers):
                out.append(h)
        return out

    def load(self, hashes: Sequence[str], layer: str) -> np.ndarray:
        """(len(hashes), dim) float32 matrix of one layer; every hash must be present."""
        _ = self.shards
        idx = self._index.get(layer)
        if idx is None:
            raise StoreError(f"{self.dir}: no features for layer {layer!r}")
        locs = []
        for h in hashes:
            loc = idx.get(h)
            if loc is None:
                raise StoreError(f"{self.dir}: image {h[:16]} has no cached {layer!r} feature")
            locs.append(loc)
        if not locs:
            dim = next(sh.layers[layer]["dim"] for sh in self.shards if layer in sh.layers)
            return np.zeros((0, dim), dtype=np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for i, (si, row) in enumerate(locs):
            by_shard.setdefault(si, []).append((i, row))
        dim = self.shards[locs[0][0]].layers[layer]["dim"]
        out = np.empty((len(locs), dim), dtype=np.float32)
        for si, items in by_shard.items():
            arr = np.load(self.shards[si].path / f"{layer}.npy", mmap_mode="r")
            pos = np.fromiter((i for i, _ in items), dtype=np.int64)
            rows = np.fromiter((r for _, r in items), dtype=np.int64)
            order = np.argsort(rows)
            out[pos[order]] = arr[rows[order]]
        return out

    # ---------------------------------------------------------------- writing
    def write_shard(self, hashes: Sequence[str], features: dict[str, np.ndarray]) -> Path:
        """Commit one shard atomically. `features[layer]` has one row per hash."""
        if not hashes:
            raise StoreError("empty shard")
        for layer, arr in features.items():
            if arr.shape[0] != len(hashes):
                raise StoreError(f"layer {layer}: {arr.shape[0]} rows for {len(hashes)} hashes")
            if "/" in layer or layer.startswith("."):
                raise StoreError(f"invalid layer name {layer!r}")
        sid = uuid.uuid4().hex[:16]
        tmp = self.dir / f".tmp-{os.getpid()}-{sid}"
        tmp.mkdir()
        try:
            layers = {}
            for layer, arr in features.items():
                f = tmp / f"{layer}.npy"
                with open(f, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(arr, dtype=self.dtype))
                    fh.flush()
                    os.fsync(fh.fileno())
                layers[layer] = {"dim": int(arr.shape[1]), "dtype": self.dtype,
                                 "sha256": _sha256_file(f)}
            meta = {"format_version": FORMAT_VERSION, "hashes": list(hashes), "layers": layers}
            with open(tmp / META, "w", encoding="utf-8") as fh:
                json.dump(meta, fh)
                fh.flush()
                os.fsync(fh.fileno())
            fsync_dir(tmp)
            final = self.dir / f"shard-{sid}"
            with self._lock:
                os.rename(tmp, final)
                fsync_dir(self.dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._shards = None
        return final

    def clean_stale(self) -> int:
        """Remove temporary shards left by writers that died (never those of live processes)."""
        removed = 0
        with self._lock:
            for d in self.dir.glob(".tmp-*"):
                try:
                    pid = int(d.name.split("-")[1])
                except (IndexError, ValueError):
                    continue
                if pid != os.getpid() and not _pid_alive(pid):
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
        return removed

    # ---------------------------------------------------------------- checking
    def verify(self, repair: bool = False) -> VerifyReport:
        """Check every shard against its recorded checksums and shapes.

        With `repair`, damaged shards are moved aside to `damaged-<shard>/` (kept for inspection,
        never read), so the next extraction recomputes exactly their rows."""
        damaged: list[tuple[str, str]] = []
        rows = 0
        dirs = sorted(self.dir.glob("shard-*"))
        for d in dirs:
            try:
                m = json.loads((d / META).read_text(encoding="utf-8"))
                hashes, layers = m["hashes"], m["layers"]
            except (OSError, ValueError, KeyError) as exc:
                damaged.append((str(d), f"unreadable {META} ({type(exc).__name__})"))
                continue
            bad = None
            for layer, info in layers.items():
                f = d / f"{layer}.npy"
                if not f.is_file():
                    bad = f"missing {f.name}"
                    break
                if _sha256_file(f) != info["sha256"]:
                    bad = f"checksum mismatch in {f.name}"
                    break
                try:
                    arr = np.load(f, mmap_mode="r")
                except ValueError as exc:
                    bad = f"{f.name} is not a valid array ({exc})"
                    break
                if arr.shape != (len(hashes), info["dim"]):
                    bad = f"{f.name} has shape {arr.shape}, expected {(len(hashes), info['dim'])}"
                    break
            if bad:
                damaged.append((str(d), bad))
            else:
                rows += len(hashes)
        if repair and damaged:
            with self._lock:
                for path, _ in damaged:
                    d = Path(path)
                    if d.is_dir():
                        os.rename(d, d.with_name(f"damaged-{d.name}"))
                fsync_dir(self.dir)
            self._shards = None
        return VerifyReport(shards=len(dirs), rows=rows, damaged=damaged)


def open_namespaces(root: str | Path) -> list[FeatureStore]:
    """Every namespace found under a store root (for `originprobe cache verify`)."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: not a feature store directory")
    return [FeatureStore(root, d.name) for d in sorted(root.iterdir())
            if d.is_dir() and (any(d.glob("shard-*")) or (d / "backbone.json").exists())]
