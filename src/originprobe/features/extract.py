"""Feature extraction: one forward pass per image yields every requested layer.

Two entry points share one engine:
- `extract_features(samples, backbone, store, ...)` makes sure a dataset's features are in the
  feature store (streamed to disk, flushed every `flush_every` images or `flush_seconds` seconds,
  so `kill -9` loses at most the last interval; images already stored are never recomputed; two
  writers on one store split the work by claiming buckets of image hashes);
- `extract_arrays(inputs, backbone, layers, ...)` returns features in memory for any mix of
  paths, bytes, `PIL.Image`s and numpy arrays (what `Attributor.predict` needs).

Decoding and preprocessing (to uint8 at the model's input size) run in a pool of threads
(Pillow and torch release the GIL), ordered, with a bounded read-ahead, while the model runs in
the calling thread; batches are normalised on the model's device. No image process is forked, so
memory does not grow with the number of decoders. Undecodable inputs are reported
(`ExtractionReport.errors`), never fatal; partly damaged ones are used and flagged (`warnings`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backbones.base import Backbone
from ..backbones.fusion import SEP, FusedBackbone
from ..data.inputs import ImageInput, ImageTransform
from ..data.samples import Problem, Sample, hash_samples
from ..runtime import Runtime
from .forward import (
    ForwardRunner,
    default_batch_size,
    default_workers,
    iter_batches,
)
from .store import FeatureStore, FusedStore

BUCKET_CHARS = 2  # work is claimed in buckets of images sharing a 2-hex-digit hash prefix


@dataclass
class ExtractionReport:
    requested: int = 0
    cached: int = 0
    computed: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    loader_wait_seconds: float = 0.0  # the model idle, waiting for decoded images
    shared: int = 0  # images another writer extracted while this run waited
    runtime: str = ""  # torch or onnx (the forward pass engine)
    retries: int = 0  # times a cluster lost work and the rest was tried again

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        extra = f", {self.shared} by another writer" if self.shared else ""
        warn = f", {len(self.warnings)} damaged but used" if self.warnings else ""
        return (
            f"{self.requested} images: {self.cached} cached, {self.computed} extracted "
            f"({self.images_per_second:.1f} img/s){extra}, {len(self.errors)} skipped{warn}"
        )


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="img",
        disable=not enabled,
        dynamic_ncols=True,
        smoothing=0.1,
        file=sys.stderr,
    )


@dataclass
class ExtractionJob:
    """Missing features to compute: buckets of samples (by hash prefix) for one backbone and
    store, and what the run reports back (what an engine in `features.engines` receives)."""

    todo: dict[str, list[Sample]]
    backbone: Backbone
    store: FeatureStore
    layers: list[str]
    report: ExtractionReport
    transform: ImageTransform | None = None
    desc: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # hash → why its file is unusable


def extract_arrays(
    items: Iterable[Any],
    backbone: Backbone,
    layers: Sequence[str],
    runtime: Runtime | None = None,
    image_transform: ImageTransform | None = None,
) -> tuple[dict[str, np.ndarray], list[int], list[Problem], list[Problem]]:
    """Features of `items` in memory: ({layer: (n_ok, D)}, positions of the rows in the input,
    errors, warnings)."""
    rt = runtime or Runtime()
    inputs = [ImageInput.of(it, i) for i, it in enumerate(items)]
    if isinstance(backbone, FusedBackbone):
        return _fused_arrays(inputs, backbone, layers, rt, image_transform)
    runner = ForwardRunner(backbone, layers, rt.device, rt.backend)
    batch_size = rt.batch_size or default_batch_size(backbone, runner.device)
    workers = default_workers() if rt.workers is None else rt.workers
    parts: dict[str, list[np.ndarray]] = {l: [] for l in runner.layers}
    order: list[int] = []
    errors, warns = [], []
    bar = _progress(len(inputs), f"features {backbone.name}", rt.progress)
    try:
        for b in iter_batches(inputs, backbone, batch_size, workers, image_transform):
            errors += [Problem(inputs[i].name, r) for i, r in b.errors]
            warns += [Problem(inputs[i].name, w) for i, w in b.warnings]
            if b.x is not None:
                for l, a in runner(b.x).items():
                    parts[l].append(a)
                order += b.index
            bar.update(len(b.index) + len(b.errors))
    finally:
        bar.close()
    dims = backbone.feature_dims
    out = {
        l: (np.concatenate(p) if p else np.zeros((0, dims.get(l, 0)), np.float32))
        for l, p in parts.items()
    }
    return out, order, errors, warns


def extract_features(
    samples: Sequence[Sample],
    backbone: Backbone,
    store: FeatureStore | FusedStore,
    layers: Sequence[str] | None = None,
    runtime: Runtime | None = None,
    image_transform: ImageTransform | None = None,
    desc: str | None = None,
) -> ExtractionReport:
    """Make sure every sample's features for `layers` are in `store`; return what was done.

    `samples` without a content hash are hashed first. `image_transform` (PIL → PIL) is applied
    after decoding and before preprocessing (e.g. JPEG alignment); it must be reflected in the
    store's namespace by the caller. Where the missing features are computed is the runtime's
    engine (`runtime.engine`: here, or a Ray cluster).
    """
    rt = runtime or Runtime()
    t0 = time.perf_counter()
    layers = list(layers or backbone.layer_names)
    if isinstance(backbone, FusedBackbone):
        if not isinstance(store, FusedStore):
            raise TypeError("a fused backbone's features go into its FusedStore (open_store)")
        return _merge_reports(
            len(samples),
            [
                extract_features(
                    samples, member, store.member(member.name), mine, rt, image_transform
                )  # fmt: skip
                for member, mine in backbone.by_member(layers)
            ],
        )
    report = ExtractionReport(requested=len(samples))
    samples, problems = hash_samples(samples)
    report.errors.extend(problems)
    store.clean_stale()
    missing = set(store.missing([s.sha256 for s in samples], layers))
    report.cached = sum(1 for s in samples if s.sha256 not in missing)
    fresh: list[Sample] = []  # each missing content once
    seen: set[str] = set()
    for s in sorted(samples, key=lambda s: s.sha256):
        if s.sha256 in missing and s.sha256 not in seen:
            seen.add(s.sha256)
            fresh.append(s)
    todo = buckets_of(fresh)
    job = ExtractionJob(todo, backbone, store, layers, report, image_transform, desc)
    if todo:
        rt.engine_entry().extract(job, rt)
    else:
        report.seconds = time.perf_counter() - t0
    # other samples sharing the content of a failed file fail too
    reported = {p.path for p in report.errors}
    for s in samples:
        if s.sha256 in job.failed and str(s.path) not in reported:
            report.errors.append(
                Problem(str(s.path), f"same content as an unusable file ({job.failed[s.sha256]})")
            )
    return report


def buckets_of(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Samples in the buckets writers claim (`BUCKET_CHARS` of their hash), in order."""
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.sha256[:BUCKET_CHARS], []).append(s)
    return out


def still_missing(job: ExtractionJob, samples: Sequence[Sample], bar) -> list[Sample]:
    """The samples of a bucket another writer held that the store still lacks; the others are
    counted as shared work (report and progress)."""
    left = [s for s in samples if job.store.missing([s.sha256], job.layers)]
    job.report.shared += len(samples) - len(left)
    bar.update(len(samples) - len(left))
    return left


def extract_here(job: ExtractionJob, rt: Runtime) -> None:
    """The local engine: buckets this process can claim are extracted here; buckets another live
    writer holds are waited for, then whatever they left is done too."""
    todo, store, layers, report = job.todo, job.store, job.layers, job.report
    runner = ForwardRunner(job.backbone, layers, rt.device, rt.backend)
    report.runtime = runner.runtime
    bar = _progress(sum(map(len, todo.values())), job.desc or f"extract {job.backbone.name}",
                    rt.progress)  # fmt: skip
    t_model = time.perf_counter()
    try:
        deferred = _extract_buckets(job, todo, runner, rt, bar)
        while deferred:  # buckets another live writer holds: wait, then finish what is left
            time.sleep(0.2)
            store.refresh()
            again = {}
            for b in deferred:
                left = still_missing(job, todo[b], bar)
                if left and store.claimed_by_other(b):
                    again[b] = left
                elif left:
                    todo[b] = left
                    again.update(_extract_buckets(job, {b: left}, runner, rt, bar))
            deferred = again
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t_model


def _extract_buckets(
    job: ExtractionJob, todo: dict[str, list[Sample]], runner: ForwardRunner, rt: Runtime, bar
) -> dict[str, list[Sample]]:
    """Extract the buckets of `todo` this process can claim, claiming each as the decoders reach
    it; return those another live writer holds (the caller waits for them)."""
    store, report, failed, transform = job.store, job.report, job.failed, job.transform
    batch_size = rt.batch_size or default_batch_size(runner.backbone, runner.device)
    workers = default_workers() if rt.workers is None else rt.workers
    flush_every, flush_seconds = rt.flush_every, rt.flush_seconds
    deferred: dict[str, list[Sample]] = {}
    claimed: list[str] = []
    order: list[Sample] = []
    left_in_bucket: dict[str, int] = {}

    def feed() -> Iterator[ImageInput]:
        for b, items in todo.items():
            if not store.claim(b):
                deferred[b] = items
                continue
            claimed.append(b)
            # another writer may have held this bucket and committed it since `todo` was made
            store.refresh_new()
            left = set(store.missing([s.sha256 for s in items], runner.layers))
            report.shared += len(items) - len(left)
            bar.update(len(items) - len(left))
            items = [s for s in items if s.sha256 in left]
            if not items:
                store.release([b])
                continue
            left_in_bucket[b] = len(items)
            for s in items:
                order.append(s)
                yield ImageInput.of(s, len(order) - 1)

    pending_hashes: list[str] = []
    pending: dict[str, list[np.ndarray]] = {l: [] for l in runner.layers}
    unflushed: list[Sample] = []  # extracted, not yet committed
    done_buckets: list[str] = []
    last_flush = time.monotonic()

    def settle(s: Sample) -> None:
        b = s.sha256[:BUCKET_CHARS]
        left_in_bucket[b] -= 1
        if left_in_bucket[b] == 0:
            done_buckets.append(b)

    def flush() -> None:
        nonlocal last_flush
        if pending_hashes:
            store.write_shard(
                list(pending_hashes), {l: np.concatenate(pending[l]) for l in runner.layers}
            )
            pending_hashes.clear()
            for l in runner.layers:
                pending[l].clear()
        for s in unflushed:
            settle(s)
        unflushed.clear()
        store.release(done_buckets)  # only once their rows are committed
        done_buckets.clear()
        store.touch_claims(b for b in claimed if left_in_bucket[b] > 0)
        last_flush = time.monotonic()

    try:
        t_wait = time.perf_counter()
        for batch in iter_batches(feed(), runner.backbone, batch_size, workers, transform):
            report.loader_wait_seconds += time.perf_counter() - t_wait
            for i, reason in batch.errors:
                s = order[i]
                failed[s.sha256] = reason
                report.errors.append(Problem(str(s.path), reason))
                settle(s)
            for i, msg in batch.warnings:
                report.warnings.append(Problem(str(order[i].path), msg))
            if batch.x is not None:
                feats = runner(batch.x)
                for l in runner.layers:
                    pending[l].append(feats[l])
                pending_hashes.extend(order[i].sha256 for i in batch.index)
                unflushed.extend(order[i] for i in batch.index)
                report.computed += len(batch.index)
            bar.update(len(batch.index) + len(batch.errors))
            if len(pending_hashes) >= flush_every or time.monotonic() - last_flush >= flush_seconds:
                flush()
            t_wait = time.perf_counter()
        flush()
    except BaseException:
        store.release(claimed)  # what was flushed stays; the rest is free again
        raise
    return deferred


def _merge_reports(requested: int, reports: list[ExtractionReport]) -> ExtractionReport:
    """A fusion's report from its members' (an image counts once)."""
    out = ExtractionReport(
        requested=requested,
        cached=min(r.cached for r in reports),
        computed=max(r.computed for r in reports),
        seconds=sum(r.seconds for r in reports),
        loader_wait_seconds=sum(r.loader_wait_seconds for r in reports),
        shared=max(r.shared for r in reports),
        runtime="+".join(r.runtime or "cached" for r in reports),
    )
    for r in reports:
        seen = {p.path for p in out.errors}
        out.errors += [p for p in r.errors if p.path not in seen]
        seen_w = {(p.path, p.reason) for p in out.warnings}
        out.warnings += [p for p in r.warnings if (p.path, p.reason) not in seen_w]
    return out


def _fused_arrays(
    inputs: list[ImageInput], backbone: "FusedBackbone", layers: Sequence[str], rt: Runtime,
    transform: ImageTransform | None,
) -> tuple[dict[str, np.ndarray], list[int], list[Problem], list[Problem]]:  # fmt: skip
    """extract_arrays for a fusion: member by member, keeping the inputs every member read."""
    runs = [
        (m, extract_arrays(inputs, m, mine, rt, transform))
        for m, mine in backbone.by_member(layers)
    ]
    common = set.intersection(*(set(order) for _, (_, order, _, _) in runs))
    order = [i for i in runs[0][1][1] if i in common]
    feats: dict[str, np.ndarray] = {}
    errors: list[Problem] = []
    warns: list[Problem] = []
    for m, (f, o, e, w) in runs:
        row = {pos: r for r, pos in enumerate(o)}
        take = np.asarray([row[i] for i in order], dtype=np.int64)
        for l, a in f.items():
            feats[f"{m.name}{SEP}{l}"] = a[take] if len(a) else a
        errors += [p for p in e if p.path not in {q.path for q in errors}]
        warns += [p for p in w if (p.path, p.reason) not in {(q.path, q.reason) for q in warns}]
    dropped = [i for m, (_, o, _, _) in runs for i in o if i not in common]
    for i in sorted(set(dropped)):
        if inputs[i].name not in {q.path for q in errors}:
            errors.append(Problem(inputs[i].name, "unreadable for one member of the fusion"))
    return {l: feats[l] for l in layers}, order, errors, warns


def open_store(
    cache_dir: str | Path, backbone: Backbone, variant: str = "", dtype: str = "float16"
) -> FeatureStore:
    """The store namespace for this backbone (name + weights + preprocessing [+ variant]); for a
    fusion, a view over one namespace per member."""
    if isinstance(backbone, FusedBackbone):
        return FusedStore(
            {m.name: open_store(cache_dir, m, variant, dtype) for m in backbone.members}
        )
    key = backbone.cache_key()
    if variant:
        import hashlib

        key = hashlib.sha256(f"{key}|{variant}".encode()).hexdigest()[:16]
    desc = backbone.describe() | {"variant": variant, "dtype": dtype}
    safe = backbone.name.replace("/", "_").replace(":", "_")
    return FeatureStore(cache_dir, f"{safe}-{key}", description=desc, dtype=dtype)
