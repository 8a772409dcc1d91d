"""The shared first half of every command: data → split, then the model's one preparation path
(`model.preparation`: networks → cached features).

`prepare()` loads and hashes the samples, builds a checked open-set split from the run's data or
protocol, and hands it to `model.prepare_split` with the extractor the run's options describe:
exactly what `Attributor.fit` does with the same options. Nothing here trains a head or looks at
unknown classes beyond placing them in test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..backbones import Backbone, load_backbone
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
from ..data.perturb import Perturbation
from ..data.splits import split_from_roles
from ..errors import ConfigError
from ..features import ExtractionReport, FeatureStore
from ..model import FeatureExtractor, prepare_split
from ..model import Prepared as ModelPrepared
from .config import RunConfig


@dataclass
class Prepared(ModelPrepared):
    """A run's prepared split: the model's (split, extractor, features) and where they came from."""

    config: RunConfig | None = None
    dataset: Dataset | None = None


def extractor_for(cfg: RunConfig, perturbation: Perturbation | None = None) -> FeatureExtractor:
    """The feature extractor a run's options describe (what `Attributor(**cfg.model_params())`
    builds for itself)."""
    return FeatureExtractor(cfg.backbone, cfg.layers, cfg.weights, cfg.training, cfg.pretrain,
                            perturbation, cfg.runtime)  # fmt: skip


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


def prepare(cfg: RunConfig, with_test: bool = True, perturbation=None) -> Prepared:
    """`perturbation` (e.g. JPEG alignment) is applied to every image of every role, and learned
    networks are trained on the perturbed images."""
    cfg.runtime.torch_device()  # a bad device is an error before any work
    if cfg.protocol:
        ds, split, problems = _protocol_split(cfg, with_test)
    else:
        ds, split, problems = _data_split(cfg, with_test)
    core = prepare_split(split, extractor_for(cfg, perturbation), cfg.seed, problems)
    return Prepared(**vars(core), config=cfg, dataset=ds)


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
    cfg.runtime.torch_device()
    ds = extraction_dataset(cfg)
    fx = extractor_for(cfg).use_backbone(load_backbone(cfg.backbone, weights=cfg.weights))
    _, report = fx.extract({"all": ds.samples}, crossfit=None)
    backbone, store = fx.backbone_, fx.store()
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
