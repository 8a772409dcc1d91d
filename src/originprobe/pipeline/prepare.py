"""The shared first half of every command: data → split → backbone → cached features.

`prepare()` loads and hashes the samples, builds a checked open-set split, extracts (or reuses)
the features of every sample once, and drops the files that could not be read, recording why.
`FeatureTable` then serves features per split role and layer; a layer spec "a+b" concatenates
layers. Nothing here trains a head or looks at unknown classes beyond placing them in test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backbones import Backbone, load_backbone, resolve_device
from ..data import (
    Dataset,
    DatasetError,
    OpenSetSplit,
    Problem,
    Sample,
    hash_samples,
    load_dataset,
    make_split,
)
from ..data.samples import without_failed
from ..data.splits import split_from_roles
from ..errors import ConfigError
from ..features import (
    ExtractionReport,
    FeatureStore,
    LayerSpec,
    base_layers,
    extract_features,
    open_store,
    parse_layer_list,
)
from .config import RunConfig


class FeatureTable:
    """Features of the samples of each split role, loaded lazily from the store, kept in RAM."""

    def __init__(self, store: FeatureStore, roles: dict[str, Sequence[Sample]]):
        self.store = store
        self.roles = {r: list(s) for r, s in roles.items()}
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def labels(self, role: str) -> np.ndarray:
        return np.array([s.label for s in self.roles[role]], dtype=object)

    def __call__(self, role: str, layer: LayerSpec) -> np.ndarray:
        mats = []
        for p in layer.parts:
            key = (role, p)
            if key not in self._cache:
                self._cache[key] = self.store.load([s.sha256 for s in self.roles[role]], p)
            mats.append(self._cache[key])
        return mats[0] if len(mats) == 1 else np.hstack(mats)


@dataclass
class Prepared:
    config: RunConfig
    dataset: Dataset
    split: OpenSetSplit
    backbone: Backbone
    store: FeatureStore
    layers: list[LayerSpec]
    features: FeatureTable
    extraction: ExtractionReport
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # used, but damaged
    training: dict[str, dict] = field(default_factory=dict)  # learned member → its training


def train_networks(
    cfg: RunConfig, split: OpenSetSplit, perturbation=None
) -> tuple[dict[str, str], dict[str, dict]]:
    """The `learned:ARCH` members of the run's backbone, trained on the split's known-class train
    images alone (a part of them picks epochs and loss; cached; see training.cache):
    ({member: network file}, {member: training summary}). Validation and test images never
    reach them."""
    from ..training import TrainConfig
    from ..training.cache import learned_names, networks_dir, train_members

    if cfg.weights or not learned_names(cfg.backbone):
        return {}, {}
    tc = TrainConfig(
        loss=cfg.train_loss, epochs=cfg.train_epochs, patch=cfg.train_patch, seed=cfg.seed
    )
    return train_members(
        cfg.backbone, split.known_classes, split.train, tc, networks_dir(cfg.cache),
        transform=perturbation, pretrain=cfg.pretrain, device=cfg.device, progress=cfg.progress,
    )  # fmt: skip


def _load(spec: str, cfg: RunConfig) -> tuple[Dataset, list[Sample], list[Problem]]:
    ds = load_dataset(
        spec, class_names=cfg.class_names, root=cfg.root, allow_outside_root=cfg.allow_outside_root
    )
    samples, problems = hash_samples(ds.samples)
    problems = list(ds.problems) + problems
    if not samples:
        first = "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
        raise DatasetError(
            f"{spec}: no usable image ({len(problems)} skipped"
            + (f"; first: {first}" if first else "")
            + ")"
        )
    return ds, samples, problems


def extract_for(
    samples: Sequence[Sample],
    backbone: Backbone,
    cfg: RunConfig,
    layers: Sequence[LayerSpec],
    perturbation=None,
) -> tuple[FeatureStore, ExtractionReport]:
    """Features of `samples` (optionally perturbed images) in the matching cache namespace."""
    store = open_store(cfg.cache, backbone, variant=perturbation.key if perturbation else "")
    desc = f"extract {backbone.name}" + (f" [{perturbation.key}]" if perturbation else "")
    report = extract_features(
        samples,
        backbone,
        store,
        base_layers(layers),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        device=cfg.device,
        progress=cfg.progress,
        image_transform=perturbation,
        flush_every=cfg.flush_every,
        flush_seconds=cfg.flush_seconds,
        desc=desc,
        runtime=cfg.runtime,
        engine=cfg.engine,
        address=cfg.address,
    )
    return store, report


def _data_split(
    cfg: RunConfig, with_test: bool, loaded=None, known=None, unknown=None
) -> tuple[Dataset, OpenSetSplit, list[Problem]]:
    """Split one labelled dataset (--data, or a protocol's) into train/val/test."""
    if loaded is None and not cfg.data:
        raise ConfigError("no data: give --data (or --protocol with --root)")
    ds, samples, problems = loaded or _load(cfg.data, cfg)
    known = cfg.known if known is None else known
    unknown = cfg.unknown if unknown is None else unknown
    test_samples = None
    if cfg.test_data:
        _, test_samples, test_problems = _load(cfg.test_data, cfg)
        problems += test_problems
    if with_test:
        split = make_split(
            samples, known, unknown, test_samples, seed=cfg.seed, fractions=cfg.fractions
        )
    else:  # fitting a model to ship: known classes only, train + validation
        fr = cfg.fractions
        split = make_split(samples, known, [], [], seed=cfg.seed, fractions=(fr[0], fr[1], 0.0))
    return ds, split, problems


def resolve_for(cfg: RunConfig):
    """The protocol of a run, bound to files under cfg.root (see originprobe.protocols)."""
    from ..protocols import ProtocolError, resolve_protocol

    if not cfg.root:
        raise ProtocolError(
            f"{cfg.protocol}: --root DIR is required (the folder that the "
            "annotation files' image paths are relative to)"
        )
    return resolve_protocol(
        cfg.protocol,
        cfg.root,
        group=cfg.group,
        annotations=cfg.annotations,
        seed=cfg.seed,
        train_per_class=cfg.train_per_class,
        test_per_class=cfg.test_per_class,
        allow_outside_root=cfg.allow_outside_root,
    )


def _protocol_split(cfg: RunConfig, with_test: bool) -> tuple[Dataset, OpenSetSplit, list[Problem]]:
    rp = resolve_for(cfg)
    if rp.protocol.data is not None:  # one labelled dataset, split here
        ds = rp.datasets["data"]
        samples, hash_problems = hash_samples(ds.samples)
        return _data_split(
            cfg, with_test, (ds, samples, list(ds.problems) + hash_problems), rp.known, rp.unknown
        )
    if cfg.test_data:
        raise ConfigError(
            f"--test-data cannot be combined with --protocol {cfg.protocol}: its "
            "annotation files name the test set"
        )
    problems = rp.problems()
    roles = {}
    for role, ds in rp.datasets.items():
        if ds is None or (not with_test and role.startswith("test")):
            roles[role] = None
            continue
        roles[role], hash_problems = hash_samples(ds.samples)
        problems += hash_problems
    test = (roles["test_known"] or []) + (roles["test_unknown"] or [])
    split = split_from_roles(
        roles["train"],
        roles["val"],
        test,
        rp.known,
        rp.unknown if with_test else [],
        seed=cfg.seed,
        fractions=cfg.fractions[:2],
    )
    ds = Dataset(
        samples=split.train + split.val + split.test, source=cfg.protocol, problems=problems
    )
    return ds, split, problems


def prepare(
    cfg: RunConfig, with_test: bool = True, perturbation=None, backbone: Backbone | None = None
) -> Prepared:
    """`perturbation` (e.g. JPEG alignment) is applied to every image of every role."""
    resolve_device(cfg.device)  # a bad device is an error before any work
    if cfg.protocol:
        ds, split, problems = _protocol_split(cfg, with_test)
    else:
        ds, split, problems = _data_split(cfg, with_test)
    networks, training = train_networks(cfg, split, perturbation) if backbone is None else ({}, {})
    backbone = backbone or load_backbone(cfg.backbone, weights=cfg.weights, networks=networks)
    layers = parse_layer_list(cfg.layers, backbone.layer_names, f"backbone {backbone.name}")
    store, report = extract_for(
        split.train + split.val + split.test, backbone, cfg, layers, perturbation
    )
    problems += report.errors
    if report.errors:  # unreadable files leave every role; the run goes on without them
        roles = (without_failed(ss, report.errors) for ss in (split.train, split.val, split.test))
        split = OpenSetSplit(split.known_classes, split.unknown_classes, *roles).check()
    table = FeatureTable(store, {"train": split.train, "val": split.val, "test": split.test})
    return Prepared(cfg, ds, split, backbone, store, layers, table, report, problems,
                    list(report.warnings), training)  # fmt: skip


def extraction_dataset(cfg: RunConfig) -> Dataset:
    """Every image a run names: its data (and test data), or every role of its protocol."""
    if cfg.protocol:
        rp = resolve_for(cfg)
        return Dataset(
            [s for d in rp.datasets.values() if d for s in d.samples], cfg.protocol, rp.problems()
        )
    if not cfg.data:
        raise ConfigError("give DATA or --protocol NAME --root DIR")
    ds = load_dataset(
        cfg.data,
        class_names=cfg.class_names,
        root=cfg.root,
        allow_outside_root=cfg.allow_outside_root,
    )
    if cfg.test_data:
        t = load_dataset(
            cfg.test_data,
            class_names=cfg.class_names,
            root=cfg.root,
            allow_outside_root=cfg.allow_outside_root,
        )
        ds = Dataset(ds.samples + t.samples, ds.source, ds.problems + t.problems)
    return ds


def extract_only(
    cfg: RunConfig, errors_csv: str | None = None
) -> tuple[Backbone, FeatureStore, ExtractionReport, list[Problem]]:
    """`originprobe extract`: cache the features of every image of a run, all layers asked;
    skipped files are also written to `errors_csv` when given."""
    resolve_device(cfg.device)
    ds = extraction_dataset(cfg)
    backbone = load_backbone(cfg.backbone, weights=cfg.weights)
    layers = parse_layer_list(cfg.layers, backbone.layer_names, f"backbone {backbone.name}")
    store, report = extract_for(ds.samples, backbone, cfg, layers)
    if report.computed + report.cached == 0:
        problems = list(ds.problems) + report.errors
        first = "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
        raise DatasetError(
            f"{ds.source}: no usable image ({len(problems)} skipped"
            + (f"; first: {first}" if first else "")
            + ")"
        )
    problems = list(ds.problems) + report.errors
    if errors_csv:
        from ..report.results import write_errors_csv

        write_errors_csv(errors_csv, problems)
    return backbone, store, report, problems


def collect_images(paths: Sequence[str | Path]) -> tuple[list[Sample], list[Problem]]:
    """Files named on a command line; folders are walked recursively. Every file is a candidate:
    images are recognised by content when read, and what is not an image is reported."""
    from ..data.samples import walk_files

    samples, problems = [], []
    for p in map(Path, paths):
        if p.is_dir():
            samples += [Sample(path=f, label="") for f in walk_files(p, problems)]
        elif p.exists() or p.is_symlink():
            samples.append(Sample(path=p, label=""))
        else:
            problems.append(Problem(str(p), "no such file or directory"))
    return samples, problems
