"""`originprobe discover` and `enroll --from` as library calls: cluster the images a saved model
rejects, write the clusters, and enrol one of them as a new class."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..data import Problem
from ..discovery import MIN_CLUSTER_SIZE, check_cluster_settings
from ..errors import ConfigError
from ..fileio import check_output_dir
from ..model import Attributor
from ..model.discovery import Discovery, cluster_sources, discover_images
from ..report.clusters import write_clusters
from ..runtime import resolve_device
from .prepare import collect_images


def discover_paths(
    model: str | Path, paths: Sequence[str], out: str | Path, *,
    min_cluster_size: int = MIN_CLUSTER_SIZE, seed: int = 0, **runtime,
) -> tuple[Discovery, list[Problem], list[str]]:  # fmt: skip
    """Predict every image under `paths`, cluster the rejected ones, and write clusters.json,
    clusters.csv and clusters.html into `out` (a new folder, or an earlier discover output)."""
    check_cluster_settings(min_cluster_size, seed)
    check_output_dir(out, ("clusters.json",), "discover output")
    resolve_device(runtime.get("device"))
    att = Attributor.load(model, **runtime)
    samples, problems = collect_images(paths)
    found = discover_images(att, [s.path for s in samples], min_cluster_size, seed)
    problems += [Problem(a.source, a.error) for a in found.attributions if not a.ok]
    return found, problems, write_clusters(out, found.to_dict(), str(model))


def read_clusters(path: str | Path) -> dict:
    """A clusters.json written by `discover` (or the folder holding one)."""
    p = Path(path)
    p = p / "clusters.json" if p.is_dir() else p
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: not found (run `originprobe discover MODEL PATHS --out DIR`)"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: not a clusters file ({exc})") from None


def cluster_paths(path: str | Path, cluster: int | None) -> list[str]:
    """The member files of one cluster of a clusters.json (`enroll --from FILE --cluster K`)."""
    if cluster is None:
        raise ConfigError("--cluster is required with --from: the number of the cluster to enrol")
    return cluster_sources(read_clusters(path), int(cluster), str(path))
