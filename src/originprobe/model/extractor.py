"""`FeatureExtractor`: images → {layer: features}, the backbone half of a model.

    fx = FeatureExtractor(backbone="efficientnet-lite0+efficientnet-lite2",
                          runtime={"cache": ".cache/features"})
    fx.fit(samples, classes)                  # trains learned:ARCH members (cross-fitted)
    table, report = fx.extract({"dev": samples, "test": test_samples})   # cached, all layers
    feats, order, errors, warnings = fx.transform(images)                 # in memory

It owns the backbone (its preprocessing and layers), the networks it trains for `learned:ARCH`
members (`training`, `pretrain`), a perturbation applied to every image it reads (`jpeg=90`:
JPEG alignment), and where and how it runs (`runtime`, with the feature cache). Cross-fitting: the
rows of the role named `crossfit` (the known-class training images) get each learned member's
features from the network trained without them; every other role, and `transform`, reads the
final network, trained on every training image.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ..backbones import DEFAULT_BACKBONE, Backbone, Preprocessing, load_backbone
from ..backbones.learned import learned_members
from ..data import Problem, Sample
from ..data.perturb import Perturbation
from ..errors import ConfigError
from ..features import (
    ExtractionReport,
    LayerSpec,
    base_layers,
    extract_arrays,
    extract_features,
    open_store,
    parse_layer_list,
)
from ..features.store import FeatureStore, FusedStore, StoreRows
from ..runtime import Runtime
from ..training import TrainConfig
from ..training.cache import (
    TrainedMembers,
    TrainingPlan,
    learned_names,
    networks_dir,
    train_members,
)
from .bundle import BundleError


@dataclass
class FeatureTable:
    """The samples of each role (in row order) and their features, read lazily."""

    samples: dict[str, list[Sample]]
    rows: dict[str, StoreRows]
    widths: dict[str, int] = field(default_factory=dict)

    def labels(self, role: str) -> np.ndarray:
        return np.array([s.label for s in self.samples[role]], dtype=object)

    def __call__(self, role: str, layer: LayerSpec) -> np.ndarray:
        mats = [self.rows[role][p] for p in layer.parts]
        return mats[0] if len(mats) == 1 else np.hstack(mats)


FEATURES = "features"  # the layer name of features handed to `fit_features` as one array


def as_layers(X, layers: Any = "all") -> Mapping[str, Any]:
    """{layer: (n, D) array-like}, kept as given (memory-mapped, float16) until read; one array
    is named after `layers` when that names one layer, else `FEATURES`."""
    if isinstance(X, Mapping):
        if hasattr(X, "n_rows"):  # a reader (store rows): layers are read when asked, not now
            return X
        out = {}
        for k, v in X.items():
            if not hasattr(v, "shape") or len(v.shape) != 2:
                v = np.asarray(v, dtype=np.float32)
                if v.ndim != 2:
                    raise ConfigError(f"layer {k}: features must be (n, D), got {v.shape}")
            out[str(k)] = v
        return out
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ConfigError(f"features must be (n, D) or {{layer: (n, D)}}, got shape {X.shape}")
    single = isinstance(layers, str) and layers != "all" and "," not in layers
    return {str(layers) if single and "+" not in layers else FEATURES: X}


def canonical(samples: Iterable[Sample]) -> list[Sample]:
    """Samples in one order whatever order they came in (label, content hash, path): the same
    images give the same folds, through the command line or the API."""
    return sorted(samples, key=lambda s: (s.label, s.sha256 or "", str(s.path)))


class FeatureExtractor(BaseEstimator):
    """Images → {layer: features} (see the module doc).

    Parameters
    ----------
    backbone : str
        A backbone spec: a registered name, ``NAME@native``, ``learned:ARCH``, a fusion
        ``A+B``.
    layers : str or sequence of str
        ``all``, or layer specs (``stage4+stage5,stage3``).
    weights : str or None
        Weights file or folder of the backbone (or of a ``learned:ARCH`` network).
    training : TrainConfig or mapping or None
        How ``learned:ARCH`` members are trained.
    pretrain : str or None
        A folder tree of real photos a learned network first learns to tell apart.
    perturbation : str or Perturbation or None
        Applied to every image read (``jpeg=90``: JPEG alignment).
    runtime : Runtime or mapping or None
        Device, batch size, workers, engine, feature cache, progress.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        layers: str | Sequence[str] = "all",
        weights: str | None = None,
        training: TrainConfig | Mapping[str, Any] | None = None,
        pretrain: str | None = None,
        perturbation: str | Perturbation | None = None,
        runtime: Runtime | Mapping[str, Any] | None = None,
    ):
        self.backbone = backbone
        self.layers = layers
        self.weights = weights
        self.training = training
        self.pretrain = pretrain
        self.perturbation = perturbation
        self.runtime = runtime

    # ------------------------------------------------------------------ settings
    def runtime_(self) -> Runtime:
        return Runtime.of(self.runtime)

    def transform_(self) -> Perturbation | None:
        return None if self.perturbation is None else Perturbation.parse(self.perturbation)

    def cache_dir(self) -> str:
        """The feature cache: the runtime's, or one temporary folder for this extractor."""
        rt = self.runtime_()
        if rt.cache:
            return rt.cache
        if getattr(self, "_tmp", None) is None:
            self._tmp = tempfile.mkdtemp(prefix="originprobe-features-")
        return self._tmp

    # ------------------------------------------------------------------ fitting
    def fit(self, samples: Sequence[Sample], classes: Sequence[str], seed: int = 0):
        """Train the learned members on `samples` (known classes, cross-fitted) unless
        `weights` gives the network, then build the backbone."""
        TrainConfig.of(self.training)  # a bad training setting fails before any work
        names = learned_names(self.backbone)
        self.trained_ = TrainedMembers()
        if names and not self.weights:
            plan = TrainingPlan(
                TrainConfig.of(self.training, seed=int(seed)),
                networks_dir(self.cache_dir()),
                self.pretrain,
                self.transform_(),
                self.runtime_(),
            )
            self.trained_ = train_members(self.backbone, classes, samples, plan)
        self.use_backbone(self._load(self.trained_.final))
        return self

    def _load(self, networks: Mapping[str, str]) -> Backbone:
        return load_backbone(self.backbone, weights=self.weights, networks=dict(networks))

    def use_backbone(self, backbone: Backbone) -> "FeatureExtractor":
        """Use an already built backbone (it must be the one this extractor names)."""
        if backbone.name != self.backbone:
            raise ConfigError(f"backbone {backbone.name!r} is not this model's {self.backbone!r}")
        self.backbone_ = backbone
        self.networks_ = learned_members(backbone)
        self.layer_specs_ = parse_layer_list(
            self.layers, backbone.layer_names, f"backbone {backbone.name}"
        )
        if not hasattr(self, "trained_"):
            self.trained_ = TrainedMembers(final=dict(self.networks_))
        return self

    def load(self, networks: Mapping[str, str], expected: Mapping[str, Any] | None = None):
        """The backbone of a saved model (its networks' files), checked against the description
        the model was saved with (`describe`)."""
        bb = self._load(networks)
        if expected is not None:
            if bb.weights_id != expected["weights_id"]:
                raise BundleError(
                    f"the model was fitted with {expected['name']} weights "
                    f"{expected['weights_id'][:16]}, but the weights found here are "
                    f"{bb.weights_id[:16]}; pass the original weights (--weights)"
                )
            if bb.preprocessing != Preprocessing.from_dict(expected["preprocessing"]):
                raise BundleError(
                    "the backbone's preprocessing differs from the one the model was fitted with"
                )
            if bb.cache_key() != expected["cache_key"]:
                raise BundleError(
                    "the backbone's image pipeline differs from the one the model was fitted "
                    "with (another originprobe version?)"
                )
        return self.use_backbone(bb)

    def describe(self) -> dict:
        bb = self.backbone_
        return {
            "name": bb.name,
            "weights_id": bb.weights_id,
            "preprocessing": bb.preprocessing.to_dict(),
            "cache_key": bb.cache_key(),
        }

    # ------------------------------------------------------------------ features
    def store(self, backbone: Backbone | None = None) -> FeatureStore | FusedStore:
        pert = self.transform_()
        return open_store(self.cache_dir(), backbone or self.backbone_,
                          variant=pert.key if pert else "")  # fmt: skip

    def extract(
        self, roles: Mapping[str, Sequence[Sample]], crossfit: str | None = "dev",
        layers: Sequence[str] | None = None,
    ) -> tuple[FeatureTable, ExtractionReport]:  # fmt: skip
        """Every role's features in the cache (computed once, reused after), as a table. The
        role `crossfit` is read through the cross-fitted networks (see the module doc)."""
        layers = list(layers or base_layers(self.layer_specs_))
        pert = self.transform_()
        desc = f"extract {self.backbone_.name}" + (f" [{pert.key}]" if pert else "")
        jobs: list[tuple[Backbone, list[Sample]]] = []
        parts: dict[str, list[tuple[Backbone, list[Sample]]]] = {}
        for role, samples in roles.items():
            samples = list(samples)
            if role == crossfit and self.trained_.parts:
                wanted = {(s.sha256, str(s.path)) for s in samples}
                parts[role] = [
                    (self._load(files), [s for s in part if (s.sha256, str(s.path)) in wanted])
                    for files, part in self.trained_.parts
                ]
            else:
                parts[role] = [(self.backbone_, samples)]
            jobs += parts[role]
        reports = []
        stores = {}
        for bb, samples in jobs:
            key = id(bb)
            if key not in stores:
                stores[key] = self.store(bb)
            reports.append(extract_features(samples, bb, stores[key], layers, self.runtime_(),
                                            pert, desc))  # fmt: skip
        report = _merge(reports)
        failed = {p.path for p in report.errors}
        table = FeatureTable({}, {}, dict(self.backbone_.feature_dims))
        for role, role_parts in parts.items():
            kept = [(bb, [s for s in ss if str(s.path) not in failed]) for bb, ss in role_parts]
            table.samples[role] = [s for _, ss in kept for s in ss]
            table.rows[role] = StoreRows(
                [(stores[id(bb)], [str(s.sha256) for s in ss]) for bb, ss in kept], layers
            )
        return table, report

    def transform(
        self, images: Iterable[Any], layers: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], list[int], list[Problem], list[Problem]]:
        """Features of images in memory (paths, bytes, PIL images, arrays), final backbone:
        ({layer: rows}, input positions of the rows, errors, warnings)."""
        return extract_arrays(images, self.backbone_, layers, self.runtime_(), self.transform_())


def _merge(reports: list[ExtractionReport]) -> ExtractionReport:
    if len(reports) == 1:
        return reports[0]
    out = ExtractionReport(
        requested=sum(r.requested for r in reports),
        cached=sum(r.cached for r in reports),
        computed=sum(r.computed for r in reports),
        seconds=sum(r.seconds for r in reports),
        runtime=reports[0].runtime,
    )
    for r in reports:
        out.errors += r.errors
        out.warnings += r.warnings
    return out


def network_files(extractor: FeatureExtractor) -> dict[str, Path]:
    """{learned member: its final network file} (what a bundle carries)."""
    return {k: Path(v) for k, v in getattr(extractor, "networks_", {}).items()}
