"""Trained networks, kept like features: under a key of everything that decides their weights.

A network learns from 80% of the known-class training split, and the other 20% picks its epoch
and loss (`train_members`); the run's validation split is kept for what comes after it.

The key covers the architecture, the known classes, the training configuration, the content
hashes and labels of every training and validation image, the perturbation applied to them, the
pretrained starting point and `VERSION`. A second run with the same inputs reuses the network
(and so the feature cache, keyed by the network file's hash); a run killed while training resumes
from the checkpoint in the same folder. The test split is never part of a key: it never reaches
training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ..backbones.learned import NetworkFileError, read_network
from ..backbones.networks import NetworkConfig
from ..data import DatasetError, Sample, hash_samples, load_dataset, make_split
from ..data.splits import stratified_indices
from ..fileio import sha256_file
from .loop import TrainConfig, TrainResult, train_network

VERSION = "learned-1"  # bumped when training changes what a key's network would be
NETWORK_FILE = "network.safetensors"
NETWORK_VAL_FRACTION = 0.2  # of the training split: picks the network's epoch and loss


def networks_dir(feature_cache: str | Path) -> Path:
    """Where trained networks are kept: beside the feature cache (`.cache/features-networks`)."""
    c = Path(feature_cache)
    return c.with_name(c.name + "-networks")


def network_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _images(samples: Sequence[Sample]) -> list[list[str]]:
    return sorted([str(s.sha256), s.label] for s in samples)


def trained_network(
    arch: str,
    classes: Sequence[str],
    train: Sequence[Sample],
    val: Sequence[Sample],
    cfg: TrainConfig,
    root: str | Path,
    transform=None,
    pretrain: str | Path | None = None,
    device=None,
    progress: bool = True,
) -> TrainResult:
    """The `arch` network trained on `train` (epochs and loss chosen on `val`): from the cache
    under `root` when these exact inputs trained one before, else trained now (resuming an
    interrupted run) and stored there."""
    init = None
    if pretrain is not None:
        init = pretrained_network(arch, pretrain, cfg, root, device, progress).path
    config = NetworkConfig(arch=arch, classes=tuple(classes))
    key = network_key(
        {
            "version": VERSION,
            "network": config.to_dict(),
            "training": asdict(cfg),
            "train": _images(train),
            "val": _images(val),
            "transform": getattr(transform, "key", None),
            "init": sha256_file(init) if init else None,
        }
    )
    return _cached_or_train(
        Path(root) / key[:24], config, train, val, cfg, key, device, transform, init, progress,
        f"train learned:{arch}",
    )  # fmt: skip


def learned_names(backbone: str) -> list[str]:
    """The `learned:ARCH` members of a backbone spec (a fusion's, or its own)."""
    from ..backbones.fusion import split_fusion, split_variant
    from ..backbones.learned import is_learned

    return [b for b in (split_variant(m)[0] for m in split_fusion(backbone)) if is_learned(b)]


def network_split(
    train: Sequence[Sample], seed: int, fraction: float = NETWORK_VAL_FRACTION
) -> tuple[list[Sample], list[Sample]]:
    """The training split divided for a network: what it learns from, and the part that picks
    its epoch and loss (stratified, seeded)."""
    fit, pick = stratified_indices([s.label for s in train], (1 - fraction, fraction), seed)
    return [train[i] for i in fit], [train[i] for i in pick]


def train_members(
    backbone: str, classes: Sequence[str], train: Sequence[Sample], cfg: TrainConfig,
    root: str | Path, **kw,
) -> tuple[dict[str, str], dict[str, dict]]:  # fmt: skip
    """Every `learned:ARCH` member of `backbone` trained (or reused) by `trained_network` on the
    known-class training split alone: a stratified part of it picks the epoch and the loss, so the
    run's validation split never reaches the network and stays a fair judge of where its features
    help (layer selection) and of the reject threshold.
    → ({member: network file}, {member: training summary})."""
    fit, pick = network_split(train, cfg.seed)
    files, summaries = {}, {}
    for name in learned_names(backbone):
        r = trained_network(name.split(":", 1)[1], classes, fit, pick, cfg, root, **kw)
        files[name] = str(r.path)
        summaries[name] = {k: v for k, v in r.summary.items() if k != "history"}
    return files, summaries


def pretrained_network(
    arch: str, folder: str | Path, cfg: TrainConfig, root: str | Path, device=None,
    progress: bool = True,
) -> TrainResult:  # fmt: skip
    """`arch` trained to tell apart the classes of a folder tree of labelled photos (camera
    models, as in Fang et al.), with the metric loss: the starting point of `trained_network`."""
    ds = load_dataset(folder)
    samples, _ = hash_samples(ds.samples)
    classes = sorted({s.label for s in samples})
    if len(classes) < 2:
        raise DatasetError(f"{folder}: pretraining needs at least two classes (sub-folders)")
    split = make_split(samples, classes, [], [], seed=cfg.seed, fractions=(0.8, 0.2, 0.0))
    pcfg = TrainConfig(**{**asdict(cfg), "loss": "metric"})
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
    return _cached_or_train(
        Path(root) / ("pretrain-" + key[:24]), config, split.train, split.val, pcfg, key, device,
        None, None, progress, f"pretrain learned:{arch}",
    )  # fmt: skip


def _cached_or_train(
    folder: Path, config, train, val, cfg, key, device, transform, init, progress, desc
) -> TrainResult:
    out = folder / NETWORK_FILE
    if out.is_file():
        try:
            _, meta = read_network(out)
            return TrainResult(out, dict(meta.get("training", {}), cached=True))
        except NetworkFileError:
            out.unlink()  # damaged: train it again
    return train_network(
        config, train, val, cfg, out, key, device=device, transform=transform, init=init,
        progress=progress, desc=desc,
    )  # fmt: skip
