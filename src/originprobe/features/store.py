"""The feature store: per-image, per-layer features on disk, computed once and reused.

Layout of a store rooted at DIR:

    DIR/<backbone-name>-<cache-key>/          one namespace per (backbone, weights, preprocessing)
        backbone.json                          what produced these features
        shard-<id>/                            an immutable shard, committed by an atomic rename
            meta.json                          image hashes (row order), layers, dims, the sha256 of
                                               every .npy file, and a checksum of itself
            <layer>.npy                        (n_rows, dim) float16 by default, memory-mapped on read
        .tmp-<pid>-<id>/                       a shard being written (ignored by readers)
        claims/<bucket>.claim                  which writer is extracting which images right now

Features are keyed by image content hash + namespace (backbone name, weights hash,
preprocessing) + layer. Guarantees:
- a shard is visible only once complete (temporary directory + fsync + rename), so `kill -9` loses
  at most the rows not yet flushed (extraction flushes by count and by time);
- concurrent writers (two local runs, or many distributed workers) never overwrite each other:
  unique shard ids, commits under a file lock; writers that claim buckets of images (by the
  first hex digits of their hash) share the work instead of duplicating it;
- reads are verified: each shard's meta.json checksum when the store is indexed, and each .npy
  file's sha256 the first time this process reads it, so a damaged, truncated or edited shard is
  an error naming the shard, never a silently different feature; `verify()` checks everything;
- reading never loads a whole store in memory: shards are memory-mapped and only the requested
  rows are copied.
The store never decides what to extract; that is `originprobe.features.extract`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from ..errors import ConfigError, OriginprobeError
from ..fileio import (
    atomic_write_text,
    canonical_json,
    fsync_dir,
    normal_mode,
    sha256_bytes,
    sha256_file,
)

META = "meta.json"
FORMAT_VERSION = 2
CLAIM_STALE_S = 600.0  # a claim not refreshed for this long is taken over
_VERIFIED: set[tuple[str, float, int]] = set()  # (file, mtime, size) checked in this process


class StoreError(OriginprobeError):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _meta_checksum(meta: dict) -> str:
    return sha256_bytes(canonical_json({k: v for k, v in meta.items() if k != "checksum"}))


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


@dataclass
class StoreInfo:
    namespace: str
    backbone: str
    layers: list[str]
    images: int
    shards: int
    bytes: int
    last_used: float


def read_shard_meta(d: Path) -> ShardInfo:
    """A shard's description, after checking its own checksum (StoreError naming the shard)."""
    try:
        m = json.loads((d / META).read_text(encoding="utf-8"))
        if m.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{d}: shard format {m.get('format_version')!r} is not {FORMAT_VERSION}"
            )
        if m.get("checksum") != _meta_checksum(m):
            raise StoreError(f"{d}: {META} does not match its checksum (edited or damaged)")
        hashes, layers = list(m["hashes"]), dict(m["layers"])
    except StoreError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{d}: unreadable {META} ({type(exc).__name__})") from None
    return ShardInfo(d, hashes, layers)


def _host_tag() -> str:
    import hashlib

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _index_shard(index: dict[str, dict[str, tuple[int, int]]], si: int, sh: ShardInfo) -> None:
    """Add shard number `si`'s rows to `index` (layer → hash → (shard, row)); the first shard
    holding an image wins."""
    for layer in sh.layers:
        idx = index.setdefault(layer, {})
        for row, h in enumerate(sh.hashes):
            idx.setdefault(h, (si, row))


class FeatureStore:
    """Features of one backbone namespace (see module docstring)."""

    def __init__(
        self,
        root: str | Path,
        namespace: str,
        description: dict | None = None,
        dtype: str = "float16",
    ):
        if dtype not in ("float16", "float32"):
            raise ConfigError("dtype must be float16 or float32")
        self.root = Path(root)
        self.dir = self.root / namespace
        self.dtype = dtype
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"{self.root}: feature cache path is not a directory") from None
        self.lock = FileLock(str(self.dir / ".lock"))
        if description is not None and not (self.dir / "backbone.json").exists():
            atomic_write_text(self.dir / "backbone.json", json.dumps(description, indent=2))
        self._shards: list[ShardInfo] | None = None
        self._index: dict[str, dict[str, tuple[int, int]]] = {}
        self.damaged: list[tuple[str, str]] = []

    def __getstate__(self) -> dict:
        """Pickled as where it is (for Ray tasks on a shared filesystem); the lock and the
        index are rebuilt where it is unpickled."""
        return {"root": self.root, "namespace": self.dir.name, "dtype": self.dtype}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["namespace"], dtype=state["dtype"])

    # ---------------------------------------------------------------- reading
    def refresh(self) -> None:
        shards: list[ShardInfo] = []
        damaged = []
        for d in sorted(self.dir.glob("shard-*")):
            try:
                shards.append(read_shard_meta(d))
            except StoreError as exc:
                damaged.append((str(d), str(exc)))  # never read; recomputed; `verify` reports it
        index: dict[str, dict[str, tuple[int, int]]] = {}
        for si, sh in enumerate(shards):
            _index_shard(index, si, sh)
        self._shards, self._index, self.damaged = shards, index, damaged  # swapped at once

    def refresh_new(self) -> None:
        """Index only the shards committed since the last look (cheap: one directory listing),
        so a writer that takes over a bucket sees what its previous holder committed."""
        if self._shards is None:
            self.refresh()
            return
        known = {sh.path.name for sh in self._shards} | {Path(p).name for p, _ in self.damaged}
        for d in sorted(self.dir.glob("shard-*")):
            if d.name in known:
                continue
            try:
                sh = read_shard_meta(d)
            except StoreError as exc:
                self.damaged.append((str(d), str(exc)))
                continue
            self._shards.append(sh)
            _index_shard(self._index, len(self._shards) - 1, sh)

    @property
    def shards(self) -> list[ShardInfo]:
        if self._shards is None:
            self.refresh()
        assert self._shards is not None
        return self._shards

    def dim(self, layer: str) -> int | None:
        """A layer's width, from the shards' descriptions (nothing read), or None."""
        for sh in self.shards:
            if layer in sh.layers:
                return int(sh.layers[layer]["dim"])
        return None

    def layers(self) -> list[str]:
        _ = self.shards
        return sorted(self._index)

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

    def _array(self, shard: ShardInfo, layer: str) -> np.ndarray:
        f = shard.path / f"{layer}.npy"
        try:
            st = f.stat()
            key = (str(f), st.st_mtime, st.st_size)
            if key not in _VERIFIED:
                if sha256_file(f) != shard.layers[layer]["sha256"]:
                    raise StoreError(
                        f"{shard.path}: {f.name} does not match its checksum "
                        "(damaged or edited); run `originprobe cache verify "
                        f"{self.root} --repair`"
                    )
                _VERIFIED.add(key)
            arr = np.load(f, mmap_mode="r")
        except StoreError:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise StoreError(
                f"{shard.path}: {f.name} is unreadable or truncated ({exc}); run "
                f"`originprobe cache verify {self.root} --repair`"
            ) from None
        want = (len(shard.hashes), shard.layers[layer]["dim"])
        if arr.shape != want:
            raise StoreError(f"{shard.path}: {f.name} has shape {arr.shape}, expected {want}")
        return arr

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
        dim = next(sh.layers[layer]["dim"] for sh in self.shards if layer in sh.layers)
        out = np.empty((len(locs), dim), dtype=np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for i, (si, row) in enumerate(locs):
            by_shard.setdefault(si, []).append((i, row))
        for si, items in by_shard.items():
            arr = self._array(self.shards[si], layer)
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
            if "/" in layer or layer.startswith(".") or not layer:
                raise StoreError(f"invalid layer name {layer!r}")
        sid = uuid.uuid4().hex[:16]
        tmp = self.dir / f".tmp-{os.getpid()}-{sid}-{_host_tag()}"
        tmp.mkdir()
        try:
            layers = {}
            for layer, arr in features.items():
                f = tmp / f"{layer}.npy"
                with open(f, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(arr, dtype=self.dtype))
                    fh.flush()
                    os.fsync(fh.fileno())
                layers[layer] = {
                    "dim": int(arr.shape[1]),
                    "dtype": self.dtype,
                    "sha256": sha256_file(f),
                }
            meta = {"format_version": FORMAT_VERSION, "hashes": list(hashes), "layers": layers}
            meta["checksum"] = _meta_checksum(meta)
            with open(tmp / META, "w", encoding="utf-8") as fh:
                json.dump(meta, fh)
                fh.flush()
                os.fsync(fh.fileno())
            for f in tmp.iterdir():
                normal_mode(f)
            normal_mode(tmp, directory=True)
            fsync_dir(tmp)
            final = self.dir / f"shard-{sid}"
            with self.lock:
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
        with self.lock:
            for d in self.dir.glob(".tmp-*"):
                try:
                    pid = int(d.name.split("-")[1])
                    old = time.time() - d.stat().st_mtime > CLAIM_STALE_S
                except (IndexError, ValueError, OSError):
                    continue
                here = d.name.split("-")[3:] in ([], [_host_tag()])  # writers of other hosts
                if (here and pid != os.getpid() and not _pid_alive(pid)) or old:  # age out
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
        return removed

    # ---------------------------------------------------------------- sharing work
    @staticmethod
    def _me() -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname()}

    def _claim_state(self, bucket: str) -> str:
        """ "mine", "held" (by another live writer) or "free"."""
        f = self.dir / "claims" / f"{bucket}.claim"
        try:
            owner = json.loads(f.read_text(encoding="utf-8"))
            age = time.time() - f.stat().st_mtime
        except (OSError, ValueError):
            return "free"
        if owner == self._me():
            return "mine"
        if age >= CLAIM_STALE_S:
            return "free"
        if owner.get("host") == socket.gethostname():  # same machine: ask the OS
            return "held" if _pid_alive(int(owner.get("pid", -1))) else "free"
        return "held"

    def claim(self, bucket: str) -> bool:
        """Take bucket `bucket` (a prefix of image hashes) for this process; False if another
        live writer holds it. Claims of dead processes, or not refreshed for CLAIM_STALE_S,
        are taken over."""
        (self.dir / "claims").mkdir(exist_ok=True)
        with self.lock:
            if self._claim_state(bucket) == "held":
                return False
            atomic_write_text(self.dir / "claims" / f"{bucket}.claim", json.dumps(self._me()))
        return True

    def claimed_by_other(self, bucket: str) -> bool:
        return self._claim_state(bucket) == "held"

    def touch_claims(self, buckets: Iterable[str]) -> None:
        for b in buckets:
            try:
                os.utime(self.dir / "claims" / f"{b}.claim")
            except OSError:
                pass

    def release(self, buckets: Iterable[str]) -> None:
        with self.lock:
            for b in buckets:
                if self._claim_state(b) == "mine":
                    (self.dir / "claims" / f"{b}.claim").unlink(missing_ok=True)

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
                info = read_shard_meta(d)
            except StoreError as exc:
                damaged.append((str(d), str(exc).replace(f"{d}: ", "")))
                continue
            bad = None
            for layer, meta in info.layers.items():
                f = d / f"{layer}.npy"
                if not f.is_file():
                    bad = f"missing {f.name}"
                    break
                if sha256_file(f) != meta["sha256"]:
                    bad = f"checksum mismatch in {f.name}"
                    break
                try:
                    arr = np.load(f, mmap_mode="r")
                except (ValueError, OSError, EOFError) as exc:
                    bad = f"{f.name} is not a valid array ({exc})"
                    break
                if arr.shape != (len(info.hashes), meta["dim"]):
                    bad = f"{f.name} has shape {arr.shape}, expected {(len(info.hashes), meta['dim'])}"
                    break
            if bad:
                damaged.append((str(d), bad))
            else:
                rows += len(info.hashes)
        if repair and damaged:
            with self.lock:
                for path, _ in damaged:
                    d = Path(path)
                    if d.is_dir():
                        os.rename(d, d.with_name(f"damaged-{d.name}"))
                fsync_dir(self.dir)
            self._shards = None
        return VerifyReport(shards=len(dirs), rows=rows, damaged=damaged)

    def info(self) -> StoreInfo:
        size, last = 0, 0.0
        for f in self.dir.rglob("*"):
            try:
                st = f.stat()
            except OSError:
                continue
            if f.is_file():
                size += st.st_size
            last = max(last, st.st_mtime)
        backbone = "?"
        try:
            backbone = json.loads((self.dir / "backbone.json").read_text(encoding="utf-8"))["name"]
        except (OSError, ValueError, KeyError):
            pass
        images = len({h for sh in self.shards for h in sh.hashes})
        return StoreInfo(
            self.dir.name, backbone, self.layers(), images, len(self.shards), size, last
        )


class FusedStore:
    """The features of a fused backbone: one namespace per member, read by qualified layer name
    (`member/layer`). Writes go to the members' own stores (see features.extract)."""

    def __init__(self, members: "dict[str, FeatureStore]"):
        self.members = dict(members)
        self.dir = next(iter(self.members.values())).dir

    def member(self, name: str) -> FeatureStore:
        return self.members[name]

    def _split(self, layer: str) -> tuple[FeatureStore, str]:
        name, sep, inner = layer.rpartition("/")
        if not sep or name not in self.members:
            raise KeyError(f"no member of this fusion emits layer {layer!r}")
        return self.members[name], inner

    def load(self, hashes: Sequence[str], layer: str) -> np.ndarray:
        store, inner = self._split(layer)
        return store.load(hashes, inner)

    def dim(self, layer: str) -> int | None:
        store, inner = self._split(layer)
        return store.dim(inner)

    def missing(self, hashes: Iterable[str], layers: Sequence[str]) -> list[str]:
        hashes = list(hashes)
        by_store: dict[int, tuple[FeatureStore, list[str]]] = {}
        for l in layers:
            store, inner = self._split(l)
            by_store.setdefault(id(store), (store, []))[1].append(inner)
        out: dict[str, None] = {}
        for store, mine in by_store.values():
            out.update(dict.fromkeys(store.missing(hashes, mine)))
        return list(out)

    def clean_stale(self) -> int:
        return sum(s.clean_stale() for s in self.members.values())

    def refresh(self) -> None:
        for s in self.members.values():
            s.refresh()


def open_namespaces(root: str | Path) -> list[FeatureStore]:
    """Every namespace found under a store root (for `originprobe cache ...`)."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: not a feature store directory")
    return [
        FeatureStore(root, d.name)
        for d in sorted(root.iterdir())
        if d.is_dir() and (any(d.glob("shard-*")) or (d / "backbone.json").exists())
    ]


class StoreRows(Mapping):
    """{layer: the features of some rows}, read from the store(s) on each access and never kept,
    so a layer search holds only the layers it reads; small and picklable (a Ray task reads its
    layers where it runs). The rows are one or more (store, content hashes) parts, stacked in
    order: a cross-fitted role reads each part through the network that did not train on it."""

    def __init__(self, parts: "Sequence[tuple[FeatureStore | FusedStore, Sequence[str]]]",
                 layers: Sequence[str]):  # fmt: skip
        self.parts = [(store, list(hashes)) for store, hashes in parts]
        self.layers = list(layers)

    @classmethod
    def of(cls, store: "FeatureStore | FusedStore", hashes: Sequence[str],
           layers: Sequence[str]) -> "StoreRows":  # fmt: skip
        return cls([(store, hashes)], layers)

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self.layers:
            raise KeyError(layer)
        mats = [store.load(hashes, layer) for store, hashes in self.parts if hashes]
        if not mats:
            return np.zeros((0, 0), np.float32)
        return mats[0] if len(mats) == 1 else np.vstack(mats)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __contains__(self, layer: object) -> bool:
        return layer in self.layers

    @property
    def n_rows(self) -> int:
        return sum(len(h) for _, h in self.parts)

    def width(self, layer: str) -> int | None:
        return self.parts[0][0].dim(layer) if self.parts else None
