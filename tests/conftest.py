"""Shared fixtures: the realgen dataset (../shared/data/realgen) and small subsets of it.

realgen is required: a missing copy fails the tests with a clear message instead of skipping them.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REALGEN = Path(os.environ.get("ORIGINPROBE_REALGEN", REPO.parent / "shared" / "data" / "realgen"))
DEMO_KNOWN = ["real", "dalle-mini", "latent-diffusion", "glid3-xl", "midjourney-v3"]
DEMO_UNKNOWN = ["stable-diffusion-v1", "disco-diffusion", "pixray-vqgan"]

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# no test reaches the internet; the download path is tested against a local stand-in hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def realgen() -> Path:
    manifest = REALGEN / "manifest.csv"
    if not manifest.is_file():
        pytest.fail(f"realgen not found at {REALGEN} (set ORIGINPROBE_REALGEN); the tests need it")
    return REALGEN


def read_manifest(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_subset(root: Path, out: Path, per_class: dict[str, int], skip: int = 0) -> Path:
    """A manifest in `out` naming n images of each class of realgen, after the first `skip` of
    each class in path order. The images are copied into `out` (a dataset's files must lie
    inside its root), under the same relative paths."""
    rows = read_manifest(root)
    taken: dict[str, int] = {}
    keep = []
    out.mkdir(parents=True, exist_ok=True)
    for r in sorted(rows, key=lambda r: r["path"]):
        n = per_class.get(r["label"], 0) + skip
        if skip <= taken.get(r["label"], 0) < n:
            taken[r["label"]] = taken.get(r["label"], 0) + 1
            keep.append({"path": r["path"], "label": r["label"]})
            dst = out / r["path"]
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / r["path"], dst)
        elif taken.get(r["label"], 0) < skip:
            taken[r["label"]] = taken.get(r["label"], 0) + 1
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label"])
        w.writeheader()
        w.writerows(keep)
    return out / "manifest.csv"


@pytest.fixture(scope="session")
def small_realgen(realgen, tmp_path_factory) -> Path:
    """~230 realgen images: 30 of each known class, 25 of each unknown class."""
    per = {c: 30 for c in DEMO_KNOWN} | {c: 25 for c in DEMO_UNKNOWN}
    return write_subset(realgen, tmp_path_factory.mktemp("subset"), per)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One feature cache for the whole session, so each image is extracted once."""
    return tmp_path_factory.mktemp("feature-cache")


def small_model(
    realgen: Path, cache: Path, tmp_path_factory, per_class: int, known=None, **params
) -> Path:
    """A model fitted on `per_class` realgen images of each `known` class (default: real,
    dalle-mini, latent-diffusion) and saved; `params`: the Attributor's (backbone, layers, ...)."""
    from originprobe import Attributor

    known = list(known or ["real", "dalle-mini", "latent-diffusion"])
    data = write_subset(realgen, tmp_path_factory.mktemp("model-data"),
                        {c: per_class for c in known})  # fmt: skip
    out = tmp_path_factory.mktemp("model") / "model"
    params = {"backbone": "efficientnet-lite0", **params, "runtime": {"cache": str(cache)}}
    Attributor(**params).fit(data, known=known).save(out)
    return out
