"""Where extraction (and selection's candidates) run: the engines `Runtime.engine` names.

- `local`: here, in this process (decoding threads, the forward pass in the calling thread);
- `ray`: on a Ray cluster (`pip install 'originprobe[ray]'`; see `features.ray_engine`), into
  the same content-addressed feature store, which must be on a filesystem every node sees.

An engine has `extract(job, runtime)` (compute an `ExtractionJob`'s missing features into its
store) and `map(fn, tasks, runtime)` (`[fn(t) for t in tasks]`, in order, wherever it runs).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..runtime import ENGINES, Runtime
from .extract import ExtractionJob, extract_here


class LocalEngine:
    name = "local"
    help = "here, in this process"
    in_process = True  # selection's candidates need no mapping elsewhere

    def extract(self, job: ExtractionJob, rt: Runtime) -> None:
        extract_here(job, rt)

    def map(self, fn: Callable, tasks: list, rt: Runtime) -> list:
        return [fn(t) for t in tasks]


class RayEngine:
    name = "ray"
    help = "a Ray cluster (pip install 'originprobe[ray]'; --address)"
    in_process = False

    def extract(self, job: ExtractionJob, rt: Runtime) -> None:
        if job.transform is not None:
            raise ConfigError("--engine ray does not run image perturbations; use --engine local")
        from .ray_engine import extract_on_cluster

        extract_on_cluster(job, rt)

    def map(self, fn: Callable, tasks: list, rt: Runtime) -> list:
        from .ray_engine import ray_map

        return ray_map(fn, tasks, rt.address)


ENGINES.register("local", LocalEngine())
ENGINES.register("ray", RayEngine())
