"""`--engine ray`: feature extraction on a Ray cluster, into the same feature store.

The pipeline is Ray Data's: a dataset of (path, content hash) rows → decoding and preprocessing
to uint8 at the backbone's input size as CPU tasks → the backbone in a pool of actors, each of
which loads the model once (one per GPU when the cluster has GPUs, else sized to its CPUs) and
commits its rows to the feature store itself, as atomic shards under unique names. The driver
only plans, claims the work (the same bucket claims as a local run, so a local run and a Ray job
on one cache share it) and shows progress for the whole job.

The store must be on a filesystem every node sees (NFS, a cluster filesystem, or one machine).
Rows already in the store are never recomputed: the driver skips them, and an actor re-checks
before writing (a batch retried after a worker died is not written twice).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.samples import Problem, Sample
from ..errors import ConfigError
from .store import FeatureStore

INSTALL_HINT = "--engine ray needs Ray: pip install 'originprobe[ray]'"


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def connect(address: str | None):
    """Join the cluster at `address` ("auto": the one this machine belongs to; HOST:PORT), or
    start a private local one when None."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kw = dict(ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
    try:
        if address is None:
            ray.init(include_dashboard=False, runtime_env=env, **kw)
        else:
            ray.init(address=address, runtime_env=env, **kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--address {address}: cannot join a Ray cluster there ({exc})") from None
    return ray


class _Decode:
    """CPU task: paths → uint8 pixels at the backbone's input size (failures reported)."""

    def __init__(self, preprocessing: dict):
        from ..backbones.base import Preprocessing

        self.pre = Preprocessing.from_dict(preprocessing)

    def __call__(self, batch: dict) -> dict:
        from ..data.inputs import ImageInput
        from .forward import preprocess_one

        s = self.pre.input_size
        n = len(batch["path"])
        views = (self.pre.views,) if self.pre.views > 1 else ()  # several views: (n, V, 3, s, s)
        pixels = np.zeros((n, *views, 3, s, s), np.uint8)
        errors, warns = [""] * n, [""] * n
        for i, path in enumerate(batch["path"]):
            x, errors[i], warns[i] = preprocess_one(ImageInput.of(Path(str(path)), i), self.pre)
            if x is not None:
                pixels[i] = x.numpy()
        return {
            "sha256": batch["sha256"],
            "path": batch["path"],
            "pixels": pixels,
            "error": np.array([e or "" for e in errors], dtype=object),
            "warning": np.array([w or "" for w in warns], dtype=object),
        }


class _Extract:
    """Actor: loads the backbone once; runs batches and commits them to the store."""

    def __init__(self, settings: dict):
        """`settings`: backbone, weights, networks (its spec), layers, store_root, namespace,
        dtype (the store), device, backend, threads (the forward pass)."""
        import torch

        from ..backbones import load_backbone
        from .forward import ForwardRunner

        k = settings
        # Ray sets OMP_NUM_THREADS=1 in workers; the forward pass gets its share of the node
        torch.set_num_threads(max(1, k["threads"]))
        bb = load_backbone(k["backbone"], weights=k["weights"], networks=k["networks"])
        self.runner = ForwardRunner(bb, k["layers"], k["device"], k["backend"])
        self.store = FeatureStore(k["store_root"], k["namespace"], dtype=k["dtype"])
        self.layers = list(k["layers"])

    def __call__(self, batch: dict) -> dict:
        import torch

        ok = np.flatnonzero(np.asarray([not e for e in batch["error"]], dtype=bool))
        hashes = [str(batch["sha256"][i]) for i in ok]
        if hashes:
            self.store.refresh()
            todo = set(self.store.missing(hashes, self.layers))
            first = {}  # one row per missing hash (a batch may hold the same image twice)
            for i, h in zip(ok, hashes):
                if h in todo:
                    first.setdefault(h, i)
            keep = list(first.values())
            if keep:
                x = torch.from_numpy(np.ascontiguousarray(batch["pixels"][keep]))
                feats = self.runner(x)
                self.store.write_shard([str(batch["sha256"][i]) for i in keep], feats)
        return {
            "sha256": batch["sha256"],
            "path": batch["path"],
            "error": batch["error"],
            "warning": batch["warning"],
        }


def _pool_size(ray, device: str | None) -> tuple[int, float, float, int]:
    """(actors, CPUs reserved per actor, GPUs per actor, forward threads per actor)."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus and device != "cpu":
        return gpus, 1.0, 1.0, 2
    cpus = max(1, int(res.get("CPU", 1)))
    # on CPUs: one actor per two cores, each running the forward pass on two threads; one core
    # each is reserved, so that the decoding tasks always find room beside them
    return max(1, cpus // 2), 1.0, 0.0, 2


RAY_ATTEMPTS = 3  # tries of one claimed batch of buckets on Ray before finishing it here


def extract_on_cluster(job, rt) -> None:
    """The ray engine (`features.engines`): the job's missing buckets on Ray; buckets another
    writer holds are waited for, then whatever they left is done too.

    A worker lost mid-run (killed, out of memory, a node gone) costs at most its batch: the job is
    tried again for what the store still lacks (rows written before are kept, never recomputed),
    and after `RAY_ATTEMPTS` failed tries the rest is extracted here, in this process, from the
    same store (a warning says so)."""
    from .extract import _progress, still_missing

    todo, store, report = job.todo, job.store, job.report
    connect(rt.address)
    report.runtime = f"ray:{rt.backend}"
    bar = _progress(sum(map(len, todo.values())), job.desc or f"extract {job.backbone.name} (ray)",
                    rt.progress)  # fmt: skip
    t0 = time.perf_counter()
    try:
        while todo:
            mine = [b for b in todo if store.claim(b)]
            if not mine:
                time.sleep(0.5)
                store.refresh()
            else:
                try:
                    _resilient([s for b in mine for s in todo[b]], job, rt, bar)
                finally:
                    store.release(mine)
            for b in mine:
                del todo[b]
            store.refresh()
            for b in list(todo):  # buckets of other writers: drop what they have written
                left = still_missing(job, todo[b], bar)
                if left:
                    todo[b] = left
                else:
                    del todo[b]
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t0


def _resilient(samples: Sequence[Sample], job, rt, progress) -> None:
    """`extract_on_ray` tried again on what the store still lacks when the cluster loses work,
    then, after `RAY_ATTEMPTS` tries, finished here (see `extract_on_cluster`)."""
    import warnings

    left = list(samples)
    for attempt in range(RAY_ATTEMPTS):
        try:
            extract_on_ray(left, job, rt, progress)
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds for a lost worker
            job.store.refresh()
            missing = set(job.store.missing([s.sha256 for s in left], job.layers))
            left = [s for s in left if s.sha256 in missing]
            if not left:
                return
            last = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            job.report.retries = attempt + 1
    from .extract import ExtractionJob, buckets_of, extract_here

    warnings.warn(
        f"the Ray cluster lost work {RAY_ATTEMPTS} times ({last}); the {len(left)} image(s) "
        "left are extracted here, into the same store", stacklevel=2,
    )  # fmt: skip
    here = ExtractionJob(buckets_of(left), job.backbone, job.store, job.layers, job.report, job.transform,
                         job.desc, job.failed)  # fmt: skip
    ray_runtime = job.report.runtime
    extract_here(here, rt.replace(progress=False))
    job.report.runtime = f"{ray_runtime}+local:{job.report.runtime}"


def extract_on_ray(todo: Sequence[Sample], job, rt, progress, actors: int | None = None) -> None:
    """Compute the features of `todo` (samples missing from the job's store) on Ray, updating
    the job's report (computed, errors, warnings) and the progress bar as results come back."""
    backbone, store, report = job.backbone, job.store, job.report
    ray = connect(rt.address)
    spec = getattr(backbone, "spec_", None) or (backbone.name, None, None)
    n_actors, cpus, gpus, threads = _pool_size(ray, rt.device)
    n_actors = actors or n_actors
    batch_size = rt.batch_size or (64 if gpus else 16)
    rows = [{"path": str(s.path), "sha256": s.sha256} for s in todo]
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items(
        rows, override_num_blocks=max(1, min(len(rows) // batch_size, 4 * n_actors * 4))
    )
    ds = ds.map_batches(
        _Decode,
        fn_constructor_kwargs={"preprocessing": backbone.preprocessing.to_dict()},
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=0.5,
        concurrency=(1, max(1, int(ray.cluster_resources().get("CPU", 2)))),
    )
    settings = {
        "backbone": spec[0], "weights": spec[1], "networks": spec[2], "layers": list(job.layers),
        "store_root": str(store.root), "namespace": store.dir.name, "dtype": store.dtype,
        "device": rt.device, "backend": rt.backend, "threads": threads,
    }  # fmt: skip
    ds = ds.map_batches(
        _Extract,
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=cpus,
        num_gpus=gpus,
        # a lost actor loses at most two batches in flight; it is restarted, they are retried
        compute=ActorPoolStrategy(size=n_actors, max_tasks_in_flight_per_actor=2),
        max_restarts=-1,
        max_task_retries=-1,
        fn_constructor_kwargs={"settings": settings},
    )
    t0 = time.perf_counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for path, err, warn in zip(batch["path"], batch["error"], batch["warning"]):
            if err:
                report.errors.append(Problem(str(path), str(err)))
            else:
                report.computed += 1
                if warn:
                    report.warnings.append(Problem(str(path), str(warn)))
        progress.update(len(batch["path"]))
        progress.set_postfix_str(f"ray, {n_actors} actor(s)", refresh=False)
    report.seconds = time.perf_counter() - t0
    store.refresh()


def ray_map(fn, tasks: list, address: str | None = None) -> list:
    """`[fn(t) for t in tasks]`, each call a Ray task (one CPU), results in order. Used by
    selection for its candidates: each task reads its own features from the feature store."""
    ray = connect(address)
    remote = ray.remote(num_cpus=1)(fn)
    return ray.get([remote.remote(t) for t in tasks])
