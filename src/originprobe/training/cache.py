"""Trained networks, kept like features: under a key of everything that decides their weights.

Cross-fitting (`train_members`): the known-class training images are split into
`TrainConfig.folds` stratified parts; for each part a network learns from the other parts, and
only that network gives the part's features, so a head never learns from features of images their
network trained on. A last network learns from every training image and serves at inference (and
in the model bundle). Each network learns from 80% of its images, and the other 20% pick its
epoch and loss.

The key covers the architecture, the known classes, the training configuration, the content
hashes and labels of every training and validation image, the perturbation applied to them, the
pretrained starting point and `VERSION`. A second run with the same inputs reuses the network
(and so the feature cache, keyed by the network's tensors); a run killed while training resumes
from the checkpoint in the same folder. Two processes that need the same key take turns on a file
lock: the second waits, then reuses the first one's network; the operating system releases the
lock of a process that dies, so a killed run never blocks the next. Test images never reach a key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from filelock import FileLock

from ..backbones.learned import NetworkFileError, read_network
from ..backbones.networks import NetworkConfig
from ..data import DatasetError, Sample, hash_samples, load_dataset, make_split
from ..data.splits import stratified_indices
from ..fileio import sha256_file
from ..runtime import Runtime
from .loop import TrainConfig, TrainResult, TrainRun, train_network

VERSION = "learned-2"  # bumped when training changes what a key's network would be
NETWORK_FILE = "network.safetensors"
NETWORK_VAL_FRACTION = 0.2  # of a network's images: pick its epoch and loss


@dataclass(frozen=True)
class TrainingPlan:
    """What every network of a run shares: how it trains, its seed, where networks are kept,
    a pretraining folder, the image transform of the run and the runtime."""

    config: TrainConfig
    root: Path
    pretrain: str | None = None
    transform: object = None
    runtime: Runtime = field(default_factory=Runtime)


@dataclass
class TrainedMembers:
    """The networks of a backbone's `learned:ARCH` members: the final ones (trained on every
    training image) and, per cross-fitting part, those trained without it."""

    final: dict[str, str] = field(default_factory=dict)  # member → network file
    parts: list[tuple[dict[str, str], list[Sample]]] = field(default_factory=list)
    summaries: dict[str, dict] = field(default_factory=dict)


def networks_dir(feature_cache: str | Path) -> Path:
    """Where trained networks are kept: beside the feature cache (`.cache/features-networks`)."""
    c = Path(feature_cache)
    return c.with_name(c.name + "-networks")


def network_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _images(samples: Sequence[Sample]) -> list[list[str]]:
    return sorted([str(s.sha256), s.label] for s in samples)


def learned_names(backbone: str) -> list[str]:
    """The `learned:ARCH` members of a backbone spec (a fusion's, or its own)."""
    from ..backbones.fusion import split_fusion, split_variant
    from ..backbones.learned import is_learned

    return [b for b in (split_variant(m)[0] for m in split_fusion(backbone)) if is_learned(b)]


def network_split(
    samples: Sequence[Sample], seed: int, fraction: float = NETWORK_VAL_FRACTION
) -> tuple[list[Sample], list[Sample]]:
    """A network's images divided: what it learns from, and the part that picks its epoch and
    loss (stratified, seeded)."""
    fit, pick = stratified_indices([s.label for s in samples], (1 - fraction, fraction), seed)
    return [samples[i] for i in fit], [samples[i] for i in pick]


def crossfit_parts(samples: Sequence[Sample], folds: int, seed: int) -> list[list[Sample]]:
    """The training images in `folds` stratified, seeded parts (canonical order inside each)."""
    ordered = sorted(samples, key=lambda s: (s.label, s.sha256 or "", str(s.path)))
    idx = stratified_indices([s.label for s in ordered], [1.0] * folds, seed)
    return [[ordered[i] for i in part] for part in idx]


def train_members(
    backbone: str, classes: Sequence[str], samples: Sequence[Sample], plan: TrainingPlan
) -> TrainedMembers:
    """Every `learned:ARCH` member of `backbone` trained (or reused) on the known-class training
    images alone, cross-fitted (see the module doc)."""
    names = learned_names(backbone)
    out = TrainedMembers()
    if not names:
        return out
    seed = plan.config.seed
    parts = crossfit_parts(samples, plan.config.folds, seed)
    for i, part in enumerate(parts):
        rest = [s for j, other in enumerate(parts) if j != i for s in other]
        files = {}
        for name in names:
            r = trained_network(name.split(":", 1)[1], classes, rest, plan,
                                f"train {name} [part {i + 1}/{len(parts)}]")  # fmt: skip
            files[name] = str(r.path)
        out.parts.append((files, part))
    for name in names:
        r = trained_network(name.split(":", 1)[1], classes, samples, plan, f"train {name}")
        out.final[name] = str(r.path)
        out.summaries[name] = {k: v for k, v in r.summary.items() if k != "history"}
    return out


def trained_network(
    arch: str, classes: Sequence[str], samples: Sequence[Sample], plan: TrainingPlan, desc: str
) -> TrainResult:
    """The `arch` network trained on `samples` (80% learn, 20% pick epochs and loss): from the
    cache under `plan.root` when these exact inputs trained one before, else trained now
    (resuming an interrupted run) and stored there."""
    cfg = plan.config
    train, val = network_split(samples, cfg.seed)
    init = None
    if plan.pretrain is not None:
        init = pretrained_network(arch, plan.pretrain, plan).path
    config = NetworkConfig(arch=arch, classes=tuple(classes))
    key = network_key(
        {
            "version": VERSION,
            "network": config.to_dict(),
            "training": asdict(cfg),
            "train": _images(train),
            "val": _images(val),
            "transform": getattr(plan.transform, "key", None),
            "init": sha256_file(init) if init else None,
        }
    )
    run = TrainRun(key, plan.runtime.device, plan.transform, init, plan.runtime.progress, desc)
    return _cached_or_train(Path(plan.root) / key[:24], config, train, val, cfg, run)


def pretrained_network(arch: str, folder: str | Path, plan: TrainingPlan) -> TrainResult:
    """`arch` trained to tell apart the classes of a folder tree of labelled photos (camera
    models, as in Fang et al.), with the metric loss: the starting point of `trained_network`."""
    cfg = plan.config
    ds = load_dataset(folder)
    samples, _ = hash_samples(ds.samples)
    classes = sorted({s.label for s in samples})
    if len(classes) < 2:
        raise DatasetError(f"{folder}: pretraining needs at least two classes (sub-folders)")
    split = make_split(samples, classes, [], [], seed=cfg.seed, fractions=(0.8, 0.2, 0.0))
    pcfg = replace(cfg, loss="metric")
    config = NetworkConfig(arch=arch, classes=tuple(classes))
    key = network_key(
        {
            "version": VERSION,
            "pretrain": True,
            "network": config.to_dict(),
            "training": asdict(pcfg),
            "train": _images(split.train),
            "val": _images(split.val),
        }
    )
    run = TrainRun(key, plan.runtime.device, None, None, plan.runtime.progress,
                   f"pretrain learned:{arch}")  # fmt: skip
    folder_out = Path(plan.root) / ("pretrain-" + key[:24])
    return _cached_or_train(folder_out, config, split.train, split.val, pcfg, run)


def _cached(out: Path) -> TrainResult | None:
    if out.is_file():
        try:
            _, meta = read_network(out)
            return TrainResult(out, dict(meta.get("training", {}), cached=True))
        except NetworkFileError:
            out.unlink()  # damaged: train it again
    return None


def _cached_or_train(
    folder: Path, config: NetworkConfig, train, val, cfg: TrainConfig, run: TrainRun
) -> TrainResult:
    out = folder / NETWORK_FILE
    found = _cached(out)
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):  # another process training this key: wait for it
        found = _cached(out)
        if found is not None:
            return found
        return train_network(config, train, val, cfg, out, run)
