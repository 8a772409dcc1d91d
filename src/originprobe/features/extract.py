"""Feature extraction: one forward pass per image yields every requested layer, streamed to the store.

Images are read, decoded and preprocessed in DataLoader workers while the model runs in the main
process. Images already in the store (same content hash, backbone, weights, preprocessing, layers)
are never recomputed. Undecodable images are skipped and reported (`ExtractionReport.errors`),
never fatal. Memory stays bounded: at most one shard of features is held before it is committed.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..backbones.base import Backbone
from ..data.images import ImageDecodeError, load_image
from ..data.samples import Problem, Sample, hash_samples
from .store import FeatureStore

ImageTransform = Callable[["object"], "object"]


@dataclass
class ExtractionReport:
    requested: int = 0
    cached: int = 0
    computed: int = 0
    errors: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    loader_wait_seconds: float = 0.0  # the model idle, waiting for decoded images

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.requested} images: {self.cached} cached, {self.computed} extracted "
                f"({self.images_per_second:.1f} img/s), {len(self.errors)} skipped")


class _ImageFiles(Dataset):
    """Decodes and preprocesses one file; failures become (index, None, reason)."""

    def __init__(self, samples: Sequence[Sample], preprocess, image_transform=None):
        self.samples = list(samples)
        self.preprocess = preprocess
        self.image_transform = image_transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        try:
            img = load_image(s.path)
            if self.image_transform is not None:
                img = self.image_transform(img)
            return i, self.preprocess(img), None
        except ImageDecodeError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a bug in a transform must not kill a million-image run
            return i, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _collate(batch):
    ok = [(i, x) for i, x, err in batch if x is not None]
    bad = [(i, err) for i, x, err in batch if x is None]
    if ok:
        idx = [i for i, _ in ok]
        return idx, torch.stack([x for _, x in ok]), bad
    return [], None, bad


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


def default_batch_size(backbone: Backbone, device: torch.device) -> int:
    if device.type == "cuda":
        try:
            from ..backbones.vit import suggest_batch_size
            return suggest_batch_size(backbone, device)
        except ImportError:
            return 128
    return 32


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True,
                smoothing=0.1, file=sys.stderr)


def _autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def extract_features(
    samples: Sequence[Sample],
    backbone: Backbone,
    store: FeatureStore,
    layers: Sequence[str] | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    shard_size: int = 2048,
    device: str | torch.device | None = None,
    progress: bool = True,
    image_transform=None,
) -> ExtractionReport:
    """Make sure every sample's features for `layers` are in `store`; return what was done.

    `samples` without a content hash are hashed first. `image_transform` (PIL → PIL) is applied
    after decoding and before preprocessing (e.g. JPEG alignment); it must be reflected in the
    store's namespace by the caller.
    """
    t0 = time.perf_counter()
    layers = list(layers or backbone.layer_names)
    unknown = [l for l in layers if l not in backbone.layer_names]
    if unknown:
        raise ValueError(f"{backbone.name} has no layers {unknown}; it has {backbone.layer_names}")
    report = ExtractionReport(requested=len(samples))
    samples, problems = hash_samples(samples)
    report.errors.extend(problems)
    store.clean_stale()
    missing = set(store.missing([s.sha256 for s in samples], layers))
    todo, seen = [], set()
    for s in samples:
        if s.sha256 in missing and s.sha256 not in seen:
            seen.add(s.sha256)
            todo.append(s)
    report.cached = len(samples) - sum(1 for s in samples if s.sha256 in missing)
    if not todo:
        report.seconds = time.perf_counter() - t0
        return report

    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    backbone = backbone.to(device).eval()
    if device.type == "cuda" or getattr(backbone, "prefers_channels_last", True):
        backbone = backbone.to(memory_format=torch.channels_last)
    batch_size = batch_size or default_batch_size(backbone, device)
    num_workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        _ImageFiles(todo, backbone.preprocessing, image_transform), batch_size=batch_size,
        num_workers=num_workers, collate_fn=_collate, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if num_workers > 0 else None,
    )
    pending_hashes: list[str] = []
    pending: dict[str, list[np.ndarray]] = {l: [] for l in layers}
    failed: dict[str, bool] = {}

    def flush() -> None:
        if pending_hashes:
            store.write_shard(pending_hashes, {l: np.concatenate(pending[l]) for l in layers})
            pending_hashes.clear()
            for l in layers:
                pending[l].clear()

    bar = _progress(len(todo), f"extract {backbone.name}", progress)
    t_model = time.perf_counter()
    try:
        with torch.inference_mode():
            batches = iter(loader)
            while True:
                t_wait = time.perf_counter()
                try:
                    idx, x, bad = next(batches)
                except StopIteration:
                    break
                report.loader_wait_seconds += time.perf_counter() - t_wait
                for i, reason in bad:
                    s = todo[i]
                    if s.sha256 not in failed:
                        failed[s.sha256] = True
                        report.errors.append(Problem(str(s.path), reason))
                if x is not None:
                    x = x.to(device, non_blocking=True).to(memory_format=torch.channels_last)
                    with _autocast(device):
                        feats = backbone(x)
                    for l in layers:
                        pending[l].append(feats[l].float().cpu().numpy())
                    pending_hashes.extend(todo[i].sha256 for i in idx)
                    report.computed += len(idx)
                    if len(pending_hashes) >= shard_size:
                        flush()
                bar.update(len(idx) + len(bad))
        flush()
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t_model
    # other samples sharing the content of a failed file fail too
    bad_hashes, todo_ids = set(failed), {id(s) for s in todo}
    for s in samples:
        if s.sha256 in bad_hashes and id(s) not in todo_ids:
            report.errors.append(Problem(str(s.path), "same content as an undecodable file"))
    return report


def open_store(cache_dir: str | Path, backbone: Backbone, variant: str = "",
               dtype: str = "float16") -> FeatureStore:
    """The store namespace for this backbone (name + weights + preprocessing [+ variant])."""
    key = backbone.cache_key()
    if variant:
        import hashlib
        key = hashlib.sha256(f"{key}|{variant}".encode()).hexdigest()[:16]
    desc = backbone.describe() | {"variant": variant, "dtype": dtype}
    safe = backbone.name.replace("/", "_").replace(":", "_")
    return FeatureStore(cache_dir, f"{safe}-{key}", description=desc, dtype=dtype)


def load_features(store: FeatureStore, samples: Sequence[Sample], layer: str) -> np.ndarray:
    return store.load([s.sha256 for s in samples], layer)
